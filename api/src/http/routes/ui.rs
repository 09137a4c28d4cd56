//! The admin page at `/ui/`: a few static files compiled into the binary (no runtime files, no
//! CDN), served under a strict Content-Security-Policy. Every other path under `/ui/` answers
//! the page itself, so that deep links (`/ui/file/<digest>`, `/ui/batch/<id>`, `/ui/audit`,
//! `/ui/?q=`) can be shared: the page's own router reads the path.
//!
//! These routes are not part of the API, so they stay out of [`super::ROUTE_TABLE`] and the
//! OpenAPI document; [`UI_PREFIX`] is the one place that says which paths are the page's.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sha2::Digest as _;

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Every path the page owns starts with this.
pub const UI_PREFIX: &str = "/ui";

/// The policy of every page response. Scripts, styles, images and requests may only come from
/// the server itself; no inline script or style, no framing, no plugins.
pub const CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The page's files: name under `/ui/assets/`, content type, content.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../../ui/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../../ui/api.js")),
    ("session.js", "text/javascript; charset=utf-8", include_bytes!("../../../ui/session.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_bytes!("../../../ui/dom.js")),
    ("views.js", "text/javascript; charset=utf-8", include_bytes!("../../../ui/views.js")),
    ("actions.js", "text/javascript; charset=utf-8", include_bytes!("../../../ui/actions.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../../ui/style.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../../ui/favicon.svg")),
];

/// The page; `{{SCOPE_PREFIX}}` is replaced by the configured scope prefix, so that the page
/// can tell which of the caller's scopes grant `manage`.
const INDEX: &str = include_str!("../../../ui/index.html");

/// Entity tags, computed once: the files never change while the process runs.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| ASSETS.iter().map(|(_, _, body)| etag(body)).collect());

fn etag(body: &[u8]) -> String {
    let mut tag = String::from('"');
    tooltool_proto::push_hex(&mut tag, &sha2::Sha256::digest(body)[..12]);
    tag.push('"');
    tag
}

/// Registers `/` (a browser is sent to `/ui/`), `/ui` (redirects to `/ui/`),
/// `/ui/assets/<name>`, and the page for every other path below `/ui/`. GET and HEAD only.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(root))
            .route(web::head().to(root))
            .default_service(web::to(super::not_found)),
    )
    .service(super::resource(UI_PREFIX).route(web::get().to(to_slash)).route(web::head().to(to_slash)))
    .service(super::resource("/ui/assets/{name}").route(web::get().to(asset)).route(web::head().to(asset)))
    .service(super::resource("/ui/{tail:.*}").route(web::get().to(page)).route(web::head().to(page)));
}

/// `GET /`: a browser (one that accepts `text/html`) opening the bare address is sent to the
/// admin page; any other caller gets the API's 404, as for every path that is not a route.
async fn root(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let html = req
        .headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/html"));
    if !html {
        return super::not_found(req).await;
    }
    Ok(HttpResponse::Found().insert_header((header::LOCATION, "/ui/")).insert_header((header::VARY, "Accept")).finish())
}

async fn to_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/ui/")).finish()
}

/// The page, for `/ui/` and every deep link below it.
async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let body = INDEX.replace("{{SCOPE_PREFIX}}", &escape_attr(&state.settings.scope_prefix));
    respond(&req, "text/html; charset=utf-8", etag(body.as_bytes()), body.into_bytes())
}

/// One file of the page, or 404.
async fn asset(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().position(|(n, _, _)| *n == name.as_str()) {
        Some(i) => {
            let (_, content_type, body) = ASSETS[i];
            respond(&req, content_type, ETAGS[i].clone(), body.to_vec())
        }
        None => {
            let mut res = ApiError::not_found("No such file of the admin page").error_response();
            secure(&mut res);
            res
        }
    }
}

/// The file with its headers; 304 when the browser's copy is current. `no-cache` makes the
/// browser ask every time (a few hundred bytes with a 304), so a new release is never mixed
/// with an old cached module.
fn respond(req: &HttpRequest, content_type: &'static str, etag: String, body: Vec<u8>) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().insert_header((header::CONTENT_TYPE, content_type)).body(body)
    };
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(&mut res);
    res
}

/// Headers every page response carries.
fn secure(res: &mut HttpResponse) {
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Escapes text for a double-quoted HTML attribute.
fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_files_that_are_served() {
        for line in INDEX.lines().filter(|l| l.contains("/ui/assets/")) {
            let name = line.split("/ui/assets/").nth(1).unwrap().split('"').next().unwrap();
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name} is not served");
        }
        for (name, _, body) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            let text = std::str::from_utf8(body).unwrap();
            for import in text.lines().filter_map(|l| l.split(" from './").nth(1)) {
                let file = import.split('\'').next().unwrap();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == file), "{name} imports {file}, which is not served");
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_no_inner_html() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="), "CSP forbids inline code");
        for (name, _, body) in ASSETS.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            let text = std::str::from_utf8(body).unwrap();
            assert!(!text.contains("innerHTML") && !text.contains("outerHTML"), "{name}: use textContent");
            assert!(!text.contains("localStorage") && !text.contains("document.cookie"), "{name}");
        }
    }

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(escape_attr(r#"a"<b>&"#), "a&quot;&lt;b&gt;&amp;");
    }
}
