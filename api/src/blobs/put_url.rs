//! The URLs handed out for uploads, as the original client needs them.

/// Makes the port of a URL explicit (`https://h/x` → `https://h:443/x`): the original client
/// assumes 443 when a `put_url` names no port.
pub fn with_explicit_port(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else { return u.to_owned() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host.rfind(']') {
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    };
    let port = match scheme {
        _ if has_port => return u.to_owned(),
        "https" => 443,
        "http" => 80,
        _ => return u.to_owned(),
    };
    format!("{scheme}://{authority}:{port}{tail}")
}

#[cfg(test)]
mod tests {
    use super::with_explicit_port as p;

    #[test]
    fn put_urls_get_an_explicit_port() {
        assert_eq!(p("https://b.s3.amazonaws.com/k?X=1"), "https://b.s3.amazonaws.com:443/k?X=1");
        assert_eq!(p("http://h/k"), "http://h:80/k");
        assert_eq!(p("http://127.0.0.1:9000/b/k?x=y"), "http://127.0.0.1:9000/b/k?x=y");
        assert_eq!(p("http://[::1]/k"), "http://[::1]:80/k");
        assert_eq!(p("http://[::1]:5/k"), "http://[::1]:5/k");
        assert_eq!(p("https://h?x=a:b"), "https://h:443?x=a:b");
    }
}
