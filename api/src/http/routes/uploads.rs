//! Upload batches: `POST /upload` (declare files, get upload URLs or parts), `POST
//! /upload/parts/sha512/<digest>` (URLs of the parts not yet sent), `GET|POST
//! /upload/complete/sha512/<digest>` (verify and publish), and the batch history.

use std::collections::{BTreeSet, HashMap};

use actix_web::{HttpRequest, HttpResponse, web};

use super::{RegionQuery, SearchQuery, read_json};
use crate::auth::Scope;
use crate::http::Caller;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use crate::uploads::parts;
use crate::uploads::verify::{self, Outcome};
use tooltool_proto::{
    Algorithm, Batch, Digest, FileInfo, FileName, InvalidValue, PlainText, UploadFile, UploadRequest, Visibility,
    Wrapped, escaped,
};

/// Seconds a client is told to wait before asking again about an upload.
const RETRY_AFTER_SECS: u64 = 2;

/// Validates the batch, checks upload scopes, records it, and signs an upload URL for every
/// file without a verified copy, or for a file declared with `parts: true` at or above
/// `TOOLTOOL_MULTIPART_THRESHOLD`, opens (or resumes) an upload in parts and hands out the
/// URLs of the first parts not yet sent.
#[utoipa::path(post, path = "/upload", tag = "upload", request_body = tooltool_proto::UploadRequest, params(("region" = Option<String>, Query, description = "region to stage the uploads in")), responses((status = 200, description = "The recorded batch; files without a verified copy carry a put_url, or parts when declared with parts: true at or above the multipart threshold", body = tooltool_proto::Wrapped<tooltool_proto::Batch>)), security(("bearer" = [])))]
#[tracing::instrument(name = "upload", skip_all)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    query: web::Query<RegionQuery>,
    http: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let body: serde_json::Value = read_json(&http, body, state.settings.max_body_bytes, &caller).await?;
    let req = parse_request(&body)?;
    if req.author.is_some() {
        return Err(ApiError::new(
            ErrorCode::AuthorNotAllowed,
            "The author must not be given: it is the authenticated caller",
        ));
    }
    if req.message.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::EmptyMessage, "The message must not be empty"));
    }
    PlainText::check(&req.message)?;
    if req.files.is_empty() {
        return Err(ApiError::new(ErrorCode::NoFiles, "The batch must name at least one file"));
    }
    let visibilities = req.files.values().map(|f| f.visibility).collect::<BTreeSet<_>>();
    caller.require_naming(visibilities.into_iter().map(Scope::upload))?;
    check_consistent(&req, state.settings.max_file_size)?;
    check_single_put(&req, state.settings.parts.max_single_put)?;
    let ttl = state.settings.upload_url_ttl;
    let store = state.blobs.for_upload(query.region.as_deref()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownRegion,
            format!("The region {:?} is not configured", query.region.as_deref().unwrap_or("")),
        )
    })?;
    let now = crate::time::now();
    let author = caller.id().unwrap_or("anonymous");
    let created = state
        .db
        .create_batch(author, &req.message, &req.files, store.region(), now, now + ttl.as_secs() as i64)
        .await?;
    let mut batch = Batch::from(&created.batch);
    let in_parts: BTreeSet<&Digest> =
        req.files.values().filter(|f| parts::wanted(&state.settings.parts, f)).map(|f| &f.digest).collect();
    // A digest named twice in the batch has one pending upload, so one plan.
    let mut plans: HashMap<Digest, tooltool_proto::PartsPlan> = HashMap::new();
    for file in batch.files.values_mut() {
        let Some(key) = created.uploads.get(&file.digest) else { continue };
        if !in_parts.contains(&file.digest) {
            file.put_url = Some(crate::blobs::with_explicit_port(&store.upload_url(key, file.size, ttl).await?));
        } else if let Some(plan) = plans.get(&file.digest) {
            file.parts = Some(plan.clone());
        } else {
            let stored =
                state.db.file(&file.digest).await?.ok_or_else(|| ApiError::internal("declared file vanished"))?;
            let plan = parts::open(&state.uploads, store, &stored, key).await?;
            plans.insert(file.digest.clone(), plan.clone());
            file.parts = Some(plan);
        }
    }
    tracing::info!(batch = batch.id, author, files = batch.files.len(), "upload batch recorded");
    let files: serde_json::Map<String, serde_json::Value> =
        batch.files.iter().map(|(name, f)| (name.clone(), f.digest.as_str().into())).collect();
    let details = serde_json::json!({"message": batch.message, "files": files});
    state.audit(&caller.actor(), "batch.uploaded", &format!("batch:{}", batch.id), details).await;
    Ok(HttpResponse::Ok().json(Wrapped { result: batch }))
}

/// Reads an upload batch from its JSON, answering each bad value with its own code
/// (`invalid-filename`, `invalid-size`, `invalid-digest`, `invalid-algorithm`,
/// `invalid-visibility`) rather than `invalid-json`: the typed parse says only that something
/// is wrong, so a failed one is explained by checking each declaration's values with the same
/// validated types.
fn parse_request(body: &serde_json::Value) -> Result<UploadRequest, ApiError> {
    use serde::Deserialize;
    UploadRequest::deserialize(body).map_err(|e| {
        explain(body).unwrap_or_else(|| ApiError::new(ErrorCode::InvalidJson, format!("Invalid JSON body: {e}")))
    })
}

/// A check of one declared value with its validated type.
type Check = fn(&str) -> Result<(), InvalidValue>;

/// The first bad value of a batch's declarations, as its error.
fn explain(body: &serde_json::Value) -> Option<ApiError> {
    let files = body.get("files")?.as_object()?;
    for (name, f) in files {
        if let Err(e) = FileName::parse(name) {
            return Some(e.into());
        }
        let field = |k: &str| f.get(k).and_then(serde_json::Value::as_str);
        let checks: [(&str, Check); 3] = [
            ("digest", |s| Digest::parse(s).map(drop)),
            ("algorithm", |s| s.parse::<Algorithm>().map(drop)),
            ("visibility", |s| s.parse::<Visibility>().map(drop)),
        ];
        for (key, check) in checks {
            if let Some(Err(e)) = field(key).map(check) {
                return Some(ApiError::new(ApiError::from(e.clone()).code(), format!("{}: {e}", escaped(name))));
            }
        }
        if let Some(size) = f.get("size").filter(|s| !s.is_u64()) {
            return Some(ApiError::new(
                ErrorCode::InvalidSize,
                format!("{}: size {size} is not a whole number of bytes from 0 to 2^63-1", escaped(name)),
            ));
        }
    }
    None
}

/// A digest named twice in one batch must be declared the same way; sizes must fit 63 bits
/// and `max_size` (`TOOLTOOL_MAX_FILE_SIZE`).
fn check_consistent(req: &UploadRequest, max_size: u64) -> Result<(), ApiError> {
    let mut seen: HashMap<&Digest, &UploadFile> = HashMap::new();
    for (name, f) in &req.files {
        if f.size > max_size.min(i64::MAX as u64) {
            return Err(ApiError::new(
                ErrorCode::InvalidSize,
                format!(
                    "{name}: size {} is larger than the largest file this server accepts ({max_size} bytes)",
                    f.size
                ),
            ));
        }
        if let Some(prev) = seen.insert(&f.digest, f)
            && (prev.size != f.size || prev.visibility != f.visibility)
        {
            return Err(ApiError::new(
                ErrorCode::InconsistentBatch,
                format!("{name}: the same digest is declared with another size or visibility in this batch"),
            ));
        }
    }
    Ok(())
}

/// A client that cannot send parts (it did not say `parts: true`) cannot upload a file larger
/// than one `PUT` takes: refused before anything is recorded, naming the client that can.
fn check_single_put(req: &UploadRequest, max: u64) -> Result<(), ApiError> {
    match req.files.iter().find(|(_, f)| !f.parts && f.size > max) {
        Some((name, f)) => Err(ApiError::new(
            ErrorCode::FileTooLarge,
            format!(
                "{name}: {} bytes is more than one upload request can carry ({max} bytes); upload it with the \
                 tooltool client of this project (`tooltool upload`), which sends large files in parts",
                f.size
            ),
        )),
        None => Ok(()),
    }
}

/// The URLs of the parts of an open upload in parts that storage does not have yet (at most
/// `TOOLTOOL_PART_URL_BATCH`, lowest numbers first), fresh, found from the store's own
/// listing: to go on after a batch, after a crash, on another machine, or once URLs expired.
#[utoipa::path(post, path = "/upload/parts/sha512/{digest}", tag = "upload", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters"), ("region" = Option<String>, Query, description = "the region the upload was declared in")), responses((status = 200, description = "The parts plan; missing 0 once every part is stored (then complete the upload). 404 when no upload in parts of this file is open (declare it again)", body = tooltool_proto::PartsPlan)), security(("bearer" = [])))]
#[tracing::instrument(name = "upload_parts", skip_all, fields(digest = %path))]
pub async fn parts(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    query: web::Query<RegionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let digest = Digest::parse(&path)?;
    let caller = caller?;
    let none_open =
        || ApiError::not_found("No upload in parts of this file is open; declare it again with POST /upload");
    let file = state.db.file(&digest).await?.ok_or_else(none_open)?;
    caller.require(Scope::upload(file.visibility))?;
    let store = state.blobs.for_upload(query.region.as_deref()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownRegion,
            format!("The region {:?} is not configured", query.region.as_deref().unwrap_or("")),
        )
    })?;
    let plan = parts::reissue(&state.uploads, store, &file).await?.ok_or_else(none_open)?;
    Ok(HttpResponse::Ok().json(plan))
}

/// Verifies the staged bytes of a declared file and publishes them.
#[utoipa::path(method(get, post), path = "/upload/complete/sha512/{digest}", tag = "upload", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters")), responses((status = 200, description = "Verified: the file is downloadable", body = tooltool_proto::FileInfo)))]
#[tracing::instrument(name = "upload_complete", skip_all, fields(digest = %path))]
pub async fn complete(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let digest = Digest::parse(&path)?;
    let caller = caller?;
    let file = state.db.file(&digest).await?;
    let file = file.ok_or_else(|| ApiError::not_found("No upload batch ever declared a file with this digest"))?;
    if !file.instances.is_empty() {
        return Ok(HttpResponse::Ok().json(FileInfo::from(&*file)));
    }
    match verify::complete(&state.uploads, &file, &caller.actor()).await? {
        Outcome::Verified(file) => Ok(HttpResponse::Ok().json(FileInfo::from(&file))),
        Outcome::Rejected(why) => {
            Err(ApiError::new(ErrorCode::UploadMismatch, format!("{why}; the uploaded bytes were discarded")))
        }
        Outcome::NotReady => Err(ApiError::retry_later(
            "The upload has not been received or is still being verified; ask again later",
            RETRY_AFTER_SECS,
        )),
    }
}

/// `GET /upload?q=`: batches whose author or message contains the text.
#[utoipa::path(get, path = "/upload", tag = "history", params(("q" = Option<String>, Query, description = "text to find in author or message (case-insensitive)")), responses((status = 200, description = "Matching batches, newest first, at most 500", body = tooltool_proto::Wrapped<Vec<tooltool_proto::Batch>>)))]
pub async fn search(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let sees_internal = state.sees_internal(&caller);
    let batches: Vec<Batch> = state
        .db
        .search_batches(query.text()?)
        .await?
        .iter()
        .filter(|b| sees_internal || !names_internal(b))
        .map(Batch::from)
        .collect();
    Ok(HttpResponse::Ok().json(Wrapped { result: batches }))
}

/// `GET /upload/<id>`: one batch, not wrapped.
#[utoipa::path(get, path = "/upload/{id}", tag = "history", params(("id" = i64, Path, description = "batch id")), responses((status = 200, description = "The batch", body = tooltool_proto::Batch)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let not_found = || ApiError::not_found("No upload batch has this id");
    let id: i64 = path.parse().map_err(|_| not_found())?;
    let batch = state.db.batch(id).await?.ok_or_else(not_found)?;
    if names_internal(&batch) && !state.sees_internal(&caller) {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok().json(Batch::from(&batch)))
}

/// Whether a batch names an internal file (then, with `TOOLTOOL_INTERNAL_METADATA=restricted`,
/// only callers with `download/internal` see it, as on `/events`).
fn names_internal(batch: &crate::db::BatchRow) -> bool {
    batch.files.values().any(|f| f.visibility == Visibility::Internal)
}
