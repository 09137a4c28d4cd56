//! The router: one place that lists every route. Handlers live in a file per resource.
//!
//! One authentication idiom, in every handler that reads credentials: the handler takes
//! `caller: Result<Caller, ApiError>` rather than `Caller`, first validates what needs no
//! database (a malformed digest is 400 `Invalid sha512 digest`, "checked before any lookup or
//! permission check" as PROTOCOL.md puts it), then unwraps the caller with `caller?` (a present
//! but invalid `Authorization` header is 401 on every such route, open ones included, never
//! silently anonymous), and only then authorizes with `caller.require(Scope::…)?` (403).

pub(crate) mod audit;
pub(crate) mod blobs;
pub(crate) mod download;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod ops;
pub(crate) mod tokens;
pub(crate) mod tuf;
pub mod ui;
pub(crate) mod uploads;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::http::Caller;
use crate::http::error::{ApiError, ErrorCode, parse_json};

/// `?region=` on the download and upload routes.
#[derive(Debug, Deserialize)]
pub struct RegionQuery {
    /// The preferred region.
    pub region: Option<String>,
}

/// Longest search text, in characters: longer is 400 `invalid-query` (an unbounded `LIKE`
/// pattern costs the database without bound, and SQLite refuses one past 50,000 bytes).
pub const MAX_QUERY_CHARS: usize = 256;

/// `?q=` on the search routes.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    /// The text to search for.
    #[serde(default)]
    q: String,
}

impl SearchQuery {
    /// The text to search for: 400 `invalid-query` past [`MAX_QUERY_CHARS`].
    pub fn text(&self) -> Result<&str, ApiError> {
        if self.q.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("The search text must be at most {MAX_QUERY_CHARS} characters long"),
            ));
        }
        Ok(&self.q)
    }
}

/// Declares every route once: the same list registers the routes and becomes [`ROUTE_TABLE`],
/// which the OpenAPI test compares with the document, so neither can drift from the other.
macro_rules! routes {
    ($( $path:literal : $( $method:ident => $handler:path ),+ ; )*) => {
        /// Every route the router serves, with its methods.
        pub const ROUTE_TABLE: &[(&str, &[&str])] = &[ $( ($path, &[ $( stringify!($method) ),+ ]) ),* ];

        fn register(cfg: &mut web::ServiceConfig) {
            $( cfg.service(resource($path) $( .route(web::$method().to($handler)) )+ ); )*
        }
    };
}

routes! {
    "/sha512/{digest}": get => download::download, head => download::download;
    "/upload": post => uploads::create, get => uploads::search;
    "/upload/complete/sha512/{digest}": get => uploads::complete, post => uploads::complete;
    "/upload/parts/sha512/{digest}": post => uploads::parts;
    "/upload/{id}": get => uploads::get;
    "/file": get => files::search;
    "/file/sha512/{digest}": get => files::get, patch => files::patch, delete => files::delete;
    "/file/sha512/{digest}/batches": get => files::batches;
    "/token": post => tokens::derive;
    "/audit": get => audit::list;
    "/events": get => events::list;
    "/tuf/{repo}/metadata/{file}": get => tuf::metadata;
    "/tuf/{repo}/targets/{name}": get => tuf::target, head => tuf::target;
    "/__permissions__": get => tokens::permissions;
    "/__lbheartbeat__": get => ops::lbheartbeat, head => ops::lbheartbeat;
    "/__heartbeat__": get => ops::heartbeat, head => ops::heartbeat;
    "/__version__": get => ops::version;
    "/metrics": get => ops::metrics;
    "/openapi.json": get => ops::openapi;
    "/_blobs/sha512/{digest}": get => blobs::get, head => blobs::get;
    "/_blobs/staging/{key}": put => blobs::put;
    "/_blobs/parts/{key}/{number}": put => blobs::put_part;
}

/// Registers every route and the error handlers of the extractors.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::new(ErrorCode::InvalidQuery, format!("Invalid query string: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::new(ErrorCode::InvalidPath, format!("Invalid path: {e}")).into()),
    );
    register(cfg);
    // The admin page is not an API route: it stays out of ROUTE_TABLE and the OpenAPI document.
    cfg.configure(ui::configure);
    cfg.default_service(web::to(not_found));
}

/// A resource whose unknown methods answer 405 in the problem shape.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    tracing::debug!(path = req.path(), "no such route");
    Err(ApiError::not_found("The requested URL was not found on the server"))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed, format!("The method {} is not allowed for this URL", req.method())))
}

/// Whether a Content-Type names JSON: `application/json` or any `+json` type, parameters
/// (`charset=utf-8`) allowed.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.parse::<mime::Mime>().ok()) else { return false };
    mime.type_() == mime::APPLICATION && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Reads a JSON body: 415 unless it is sent as JSON, 413 past `limit` bytes, 401 if it does
/// not match the caller's Hawk payload hash, 400 if malformed or if an object repeats a
/// member name.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    caller: &Caller,
) -> Result<T, ApiError> {
    let content_type = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !is_json(content_type) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "The request body must be sent as application/json",
        ));
    }
    let too_large = || ApiError::new(ErrorCode::BodyTooLarge, format!("The request body exceeds {limit} bytes"));
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            e => ApiError::new(ErrorCode::InvalidBody, format!("Could not read the request body: {e}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    caller.check_payload(&buf)?;
    parse_json(&buf)
}

#[cfg(test)]
mod tests {
    use super::{ROUTE_TABLE, is_json};

    #[test]
    fn the_protocol_doc_routes_table_is_exactly_the_route_table() {
        let doc = include_str!("../../../../docs/protocol.md");
        let section = doc.split("\n## Routes\n").nth(1).expect("docs/protocol.md has a Routes section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let documented: std::collections::BTreeSet<(String, String)> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `/"))
            .flat_map(|row| {
                let mut cells = row.split(" | ");
                let path = format!("/{}", cells.next().unwrap_or("").trim_end_matches('`'));
                let methods = cells.next().unwrap_or("").to_owned();
                methods
                    .split(", ")
                    .map(|m| (path.clone(), m.trim_matches('`').to_ascii_lowercase()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let served: std::collections::BTreeSet<(String, String)> = ROUTE_TABLE
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(|m| ((*path).to_owned(), (*m).to_owned())))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn json_content_types_are_json_and_nothing_else_is() {
        for ok in
            ["application/json", "application/json; charset=utf-8", "application/problem+json", "Application/JSON"]
        {
            assert!(is_json(Some(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json(Some(bad)), "{bad}");
        }
        assert!(!is_json(None));
    }
}
