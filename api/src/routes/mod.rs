//! The router: one place that lists every route. Handlers live in a file per resource.

pub(crate) mod audit;
pub(crate) mod blobs;
pub(crate) mod download;
pub(crate) mod files;
pub(crate) mod ops;
pub(crate) mod tokens;
pub mod ui;
pub(crate) mod uploads;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, parse_json};

/// `?region=` on the download and upload routes.
#[derive(Debug, Deserialize)]
pub struct RegionQuery {
    /// The preferred region.
    pub region: Option<String>,
}

/// `?q=` on the search routes.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    /// The text to search for.
    #[serde(default)]
    pub q: String,
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
    "/upload/{id}": get => uploads::get;
    "/file": get => files::search;
    "/file/sha512/{digest}": get => files::get, patch => files::patch;
    "/file/sha512/{digest}/batches": get => files::batches;
    "/token": post => tokens::derive;
    "/audit": get => audit::list;
    "/__permissions__": get => tokens::permissions;
    "/__lbheartbeat__": get => ops::lbheartbeat, head => ops::lbheartbeat;
    "/__heartbeat__": get => ops::heartbeat, head => ops::heartbeat;
    "/__version__": get => ops::version;
    "/metrics": get => ops::metrics;
    "/openapi.json": get => ops::openapi;
    "/_blobs/sha512/{digest}": get => blobs::get, head => blobs::get;
    "/_blobs/staging/{key}": put => blobs::put;
}

/// Registers every route and the error handlers of the extractors.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid-query", format!("Invalid query string: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid-path", format!("Invalid path: {e}")).into()),
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
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("The method {} is not allowed for this URL", req.method()),
    ))
}

/// Reads a JSON body of at most `limit` bytes (413 past it), checks it against the caller's
/// Hawk payload hash if any (401), and parses it (400 if malformed).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    mut payload: web::Payload,
    limit: usize,
    caller: &Caller,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("The request body exceeds {limit} bytes"),
        )
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            e => ApiError::bad_request("invalid-body", format!("Could not read the request body: {e}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    caller.check_payload(&buf)?;
    parse_json(&buf)
}
