//! The router: one place that lists every route. Handlers live in a file per resource.

mod audit;
mod blobs;
mod download;
mod files;
mod ops;
mod tokens;
mod uploads;

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

/// Registers every route and the error handlers of the extractors.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid-query", format!("Invalid query string: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::bad_request("invalid-path", format!("Invalid path: {e}")).into()),
    )
    .service(
        resource("/sha512/{digest}").route(web::get().to(download::download)).route(web::head().to(download::download)),
    )
    .service(resource("/upload").route(web::post().to(uploads::create)).route(web::get().to(uploads::search)))
    .service(
        resource("/upload/complete/sha512/{digest}")
            .route(web::get().to(uploads::complete))
            .route(web::post().to(uploads::complete)),
    )
    .service(resource("/upload/{id}").route(web::get().to(uploads::get)))
    .service(resource("/file").route(web::get().to(files::search)))
    .service(resource("/file/sha512/{digest}").route(web::get().to(files::get)).route(web::patch().to(files::patch)))
    .service(
        resource("/__lbheartbeat__").route(web::get().to(ops::lbheartbeat)).route(web::head().to(ops::lbheartbeat)),
    )
    .service(resource("/__heartbeat__").route(web::get().to(ops::heartbeat)).route(web::head().to(ops::heartbeat)))
    .service(resource("/__version__").route(web::get().to(ops::version)))
    .service(resource("/metrics").route(web::get().to(ops::metrics)))
    .service(resource("/__permissions__").route(web::get().to(tokens::permissions)))
    .service(resource("/token").route(web::post().to(tokens::derive)))
    .service(resource("/audit").route(web::get().to(audit::list)))
    .service(resource("/_blobs/sha512/{digest}").route(web::get().to(blobs::get)).route(web::head().to(blobs::get)))
    .service(resource("/_blobs/staging/{key}").route(web::put().to(blobs::put)))
    .default_service(web::to(not_found));
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
