//! The embedded store's own signed URLs: `GET`/`HEAD /_blobs/sha512/<digest>` serves a verified
//! blob, `PUT /_blobs/staging/<key>` receives an upload, `PUT /_blobs/parts/<key>/<n>` one part
//! of an upload in parts. Both check the signature and expiry;
//! neither is part of the public protocol, they are what its signed URLs point at.

use actix_files::NamedFile;
use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::blobs::{LocalStore, ReceiveError};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use crate::time::unix_now;
use tooltool_proto::Digest;

/// The query of a signed URL.
#[derive(Debug, Deserialize)]
pub struct Signed {
    expires: u64,
    #[serde(default)]
    size: Option<u64>,
    signature: String,
}

fn refused(why: &str) -> ApiError {
    tracing::debug!(reason = why, "signed URL refused");
    ApiError::new(ErrorCode::InvalidSignature, format!("This URL is not valid: {why}"))
}

fn check(local: &LocalStore, method: &str, req: &HttpRequest, q: &Signed) -> Result<(), ApiError> {
    if !local.signer().verify(method, req.path(), q.expires, q.size, &q.signature) {
        return Err(refused("bad signature"));
    }
    if unix_now() > q.expires {
        return Err(refused("it has expired"));
    }
    Ok(())
}

fn local_store(state: &AppState) -> Result<&LocalStore, ApiError> {
    state.local.as_deref().ok_or_else(|| ApiError::not_found("The requested URL was not found on the server"))
}

/// Streams a verified blob (with Range support).
#[utoipa::path(method(get, head), path = "/_blobs/sha512/{digest}", tag = "storage", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters"), ("expires" = u64, Query), ("signature" = String, Query)), responses((status = 200, description = "The blob (Range supported)", content_type = "application/octet-stream")))]
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Signed>,
) -> Result<HttpResponse, ApiError> {
    let local = local_store(&state)?;
    let digest = Digest::parse(&path)?;
    check(local, "GET", &req, &query)?;
    let file = NamedFile::open_async(local.blob_path(&digest))
        .await
        .map_err(|_| ApiError::not_found("No stored file has this digest"))?
        .set_content_type(mime::APPLICATION_OCTET_STREAM)
        .set_content_disposition(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(digest.to_string())],
        });
    Ok(file.into_response(&req))
}

/// Receives an upload into staging; answers exactly 200 on success.
#[utoipa::path(put, path = "/_blobs/staging/{key}", tag = "storage", params(("key" = String, Path), ("expires" = u64, Query), ("size" = u64, Query), ("signature" = String, Query)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "Staged")))]
pub async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Signed>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let local = local_store(&state)?;
    check(local, "PUT", &req, &query)?;
    if !LocalStore::valid_staging_key(&path) {
        return Err(refused("bad key"));
    }
    let limit = query.size.ok_or_else(|| refused("no size"))?;
    // A URL is good for its one pending upload: once that is verified (or swept), bytes sent
    // to it would only lie in staging with nothing to verify or remove them.
    if !state.db.pending_key_exists(&path).await? {
        return Err(ApiError::new(
            ErrorCode::UploadClosed,
            "This upload URL's upload is already verified or has expired; declare the file again for a new URL",
        ));
    }
    received(local.receive(&path, limit, body).await, "upload staged")
}

/// Receives one part of an upload in parts; answers exactly 200 on success.
#[utoipa::path(put, path = "/_blobs/parts/{key}/{number}", tag = "storage", params(("key" = String, Path), ("number" = u32, Path), ("expires" = u64, Query), ("size" = u64, Query), ("signature" = String, Query)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "Stored")))]
pub async fn put_part(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, u32)>,
    query: web::Query<Signed>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let local = local_store(&state)?;
    check(local, "PUT", &req, &query)?;
    let (key, number) = path.into_inner();
    let limit = query.size.ok_or_else(|| refused("no size"))?;
    if !local.parts_open(&key) || !state.db.pending_key_exists(&key).await? {
        return Err(ApiError::new(
            ErrorCode::UploadClosed,
            "This part URL's upload is already complete or has expired; ask for the parts again",
        ));
    }
    received(local.receive_part(&key, number, limit, body).await, "part stored")
}

/// The answer to a PUT the embedded store received.
fn received(result: Result<u64, ReceiveError>, what: &'static str) -> Result<HttpResponse, ApiError> {
    match result {
        Ok(n) => {
            tracing::info!(bytes = n, "{what}");
            Ok(HttpResponse::Ok().finish())
        }
        Err(ReceiveError::TooLarge(n)) => Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("The body is larger than the declared size of {n} bytes"),
        )),
        Err(ReceiveError::Interrupted(why)) => Err(ApiError::new(ErrorCode::UploadInterrupted, why)),
        Err(ReceiveError::NoSpace) => {
            tracing::error!("the embedded store's disk is full; an upload was refused");
            Err(ApiError::new(ErrorCode::InsufficientStorage, "The store has no space left for this upload"))
        }
        Err(ReceiveError::Store(e)) => Err(e.into()),
    }
}
