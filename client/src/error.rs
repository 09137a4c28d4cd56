//! The client's error type. Every message names the URL or file involved and says what
//! happened; URLs are shown as `scheme://host:port/path` only (see [`redact_url`]), so no
//! token or presigned signature ever reaches a message.

use std::fmt::Write as _;
use std::path::PathBuf;

use tooltool_proto::Problem;

/// Everything that can go wrong talking to tooltool and its storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tooltool server (or the storage behind a redirect / `put_url`) answered with a
    /// status other than the expected success.
    #[error("{method} {url}: {}", describe_api(*status, problem.as_ref(), body))]
    Api {
        /// The HTTP method of the request.
        method: String,
        /// The URL, without its query string.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The error body, when it parsed as `application/problem+json`.
        problem: Option<Problem>,
        /// The raw body text, at most 4 KiB.
        body: String,
    },
    /// The request could not be sent or its answer could not be read.
    #[error("{url}: {}", chain(source))]
    Http {
        /// The URL, without its query string.
        url: String,
        /// The underlying error (its URL removed).
        source: reqwest::Error,
    },
    /// A tooltool server refused every connection (or could not be reached at all) for the
    /// tries the retry policy allows: it is taken as down for the rest of the run.
    #[error("cannot connect to the tooltool server at {url}: {cause}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What the connection attempt ended with (e.g. `Connection refused`).
        cause: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Downloaded bytes do not match the expected size or digest.
    #[error("{what}")]
    Mismatch {
        /// What was expected and what arrived.
        what: String,
    },
    /// Signed metadata (TUF) refused: a role that does not verify, a rollback, an expiry, or a
    /// file the signed repositories do not list as it is.
    #[error("TUF: {0}")]
    Untrusted(String),
    /// The credentials could not be read or are malformed.
    #[error("invalid credentials: {0}")]
    Credentials(String),
    /// The server answered something the protocol does not allow, or the client was asked
    /// something it cannot send (e.g. an invalid URL).
    #[error("{0}")]
    Protocol(String),
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem body of an [`Error::Api`], when the server sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Api { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// An [`Error::Http`] for `url`, with the URL stripped out of the reqwest error too.
    pub(crate) fn http(url: &str, source: reqwest::Error) -> Self {
        Error::Http { url: redact_url(url), source: source.without_url() }
    }

    /// The innermost cause of the error, the part that says what happened
    /// (`Connection refused (os error 111)`).
    pub fn root_cause(&self) -> String {
        let mut cur: &dyn std::error::Error = self;
        while let Some(next) = cur.source() {
            cur = next;
        }
        cur.to_string()
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `404 Not Found: <detail>` from the problem body, else the status and the start of the body.
fn describe_api(status: u16, problem: Option<&Problem>, body: &str) -> String {
    if let Some(p) = problem {
        if !p.title.is_empty() {
            return p.title.clone();
        }
        return format!("{} {}: {}", status, reason(status), p.detail);
    }
    let mut s = format!("{} {}", status, reason(status));
    let body = body.trim();
    if !body.is_empty() {
        let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown: String = one_line.chars().take(300).collect();
        let _ = write!(s, ": {shown}");
        if shown.len() < one_line.len() {
            s.push('…');
        }
    }
    s
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// The error and its sources, joined with `: ` (reqwest's own message alone says little).
fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.ends_with(&msg) {
            let _ = write!(s, ": {msg}");
        }
        cur = c.source();
    }
    s
}

/// Shows a URL as `scheme://host[:port]/path`: no user info, no query string, no fragment, so
/// that tokens and presigned signatures never reach a message or a log line. The port is
/// shown when the URL names one. Text that is not a URL is shown as `<invalid URL>`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.host_str() {
            Some(host) => match u.port() {
                Some(port) => format!("{}://{}:{}{}", u.scheme(), host, port, u.path()),
                None => format!("{}://{}{}", u.scheme(), host, u.path()),
            },
            None => format!("{}:{}", u.scheme(), u.path()),
        },
        Err(_) => "<invalid URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_strips_query_fragment_and_user_info() {
        assert_eq!(
            redact_url("https://bucket.s3.amazonaws.com/sha512/abc?X-Amz-Signature=dead&X-Amz-Credential=AKIA"),
            "https://bucket.s3.amazonaws.com/sha512/abc"
        );
        assert_eq!(redact_url("http://user:pass@127.0.0.1:8080/blobs/x?sig=1#frag"), "http://127.0.0.1:8080/blobs/x");
        assert_eq!(redact_url("http://localhost:9000"), "http://localhost:9000/");
        assert_eq!(redact_url("https://h:443/p"), "https://h/p");
        assert_eq!(redact_url("not a url?token=x"), "<invalid URL>");
    }

    fn problem() -> Problem {
        Problem::new(400, "Bad Request", "Invalid sha512 digest", "invalid-digest")
    }

    #[test]
    fn api_error_shows_method_url_and_problem_title() {
        let e = Error::Api {
            method: "GET".into(),
            url: "http://h:1/sha512/x".into(),
            status: 400,
            problem: Some(problem()),
            body: String::new(),
        };
        assert_eq!(e.to_string(), "GET http://h:1/sha512/x: 400 Bad Request: Invalid sha512 digest");
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.problem().unwrap().code.as_deref(), Some("invalid-digest"));
    }

    #[test]
    fn api_error_without_problem_shows_the_body_start() {
        let e = Error::Api {
            method: "PUT".into(),
            url: "http://h:1/blob".into(),
            status: 503,
            problem: None,
            body: "slow\n down".into(),
        };
        assert_eq!(e.to_string(), "PUT http://h:1/blob: 503 Service Unavailable: slow down");
        assert_eq!(e.problem(), None);
        assert_eq!(Error::Protocol("x".into()).status(), None);
    }
}
