//! Files: `GET /file/sha512/<digest>`, `PATCH` (manage), its history
//! (`GET /file/sha512/<digest>/batches`), and `GET /file?q=`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{SearchQuery, read_json};
use crate::auth::Scope;
use crate::http::Caller;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use tooltool_proto::{Digest, FileBatch, FileInfo, PatchOp, Visibility, Wrapped};

/// The file `digest` names, if `caller` may see its metadata (404 as for an unknown one if
/// not). A malformed digest is answered before the credentials are.
async fn visible_file(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    digest: &str,
) -> Result<std::sync::Arc<crate::db::StoredFile>, ApiError> {
    let digest = Digest::parse(digest)?;
    let caller = caller?;
    let file = state.db.file(&digest).await?.ok_or_else(unknown)?;
    if file.visibility == Visibility::Internal && !state.sees_internal(&caller) {
        return Err(unknown());
    }
    Ok(file)
}

fn unknown() -> ApiError {
    ApiError::not_found("No file has this digest")
}

/// One file, not wrapped.
#[utoipa::path(get, path = "/file/sha512/{digest}", tag = "files", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters")), responses((status = 200, description = "The file", body = tooltool_proto::FileInfo)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let file = visible_file(&state, caller, &path).await?;
    let mut info = FileInfo::from(&*file);
    let proofs = state.db.proofs(file.id).await?.into_iter().filter(|(r, _)| file.instances.contains(r));
    info.proven = proofs.map(|(region, ms)| (region, crate::time::rfc3339_ms(ms))).collect();
    info.lost = state.db.lost_copies_of(file.id).await?.into_iter().collect();
    Ok(HttpResponse::Ok().json(info))
}

/// Applies the operations in order: `set_visibility`, `delete_instances`.
#[utoipa::path(patch, path = "/file/sha512/{digest}", tag = "files", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters")), request_body = Vec<tooltool_proto::PatchOp>, responses((status = 200, description = "The file after the operations", body = tooltool_proto::FileInfo)), security(("bearer" = [])))]
#[tracing::instrument(name = "patch_file", skip_all, fields(digest = %path))]
pub async fn patch(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    http: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let digest = Digest::parse(&path)?;
    let caller = caller?;
    caller.require_authenticated()?;
    caller.require(Scope::Manage)?;
    let ops: Vec<PatchOp> = read_json(&http, body, state.settings.max_body_bytes, &caller).await?;
    if ops.is_empty() {
        return Err(ApiError::new(ErrorCode::NoOperations, "The body must list at least one operation"));
    }
    state.db.file(&digest).await?.ok_or_else(unknown)?;
    for op in ops {
        let (action, details) = match op {
            PatchOp::SetVisibility { visibility } => {
                state.db.set_visibility(&digest, visibility, &caller.actor()).await?;
                ("file.visibility_changed", serde_json::json!({"visibility": visibility.as_str()}))
            }
            PatchOp::DeleteInstances => {
                let regions = state.db.remove_instances(&digest, &caller.actor()).await?;
                // Every configured region, not only those recorded: a copy being made when the
                // instances went may have landed in one. The instances (and pending copies) are
                // already gone from the database, so nothing can download or record the blob; a
                // failed delete leaves an orphan to log, not an error to report.
                for store in state.blobs.all() {
                    if let Err(e) = store.delete_blob(&digest).await {
                        let region = store.region();
                        tracing::warn!(region, error = %e, "could not delete a blob whose instance was removed");
                    }
                }
                ("file.instances_deleted", serde_json::json!({"regions": regions}))
            }
        };
        tracing::info!(caller = caller.id(), action, "file changed");
        state.audit(&caller.actor(), action, digest.as_str(), details).await;
    }
    let file = state.db.file(&digest).await?.ok_or_else(unknown)?;
    Ok(HttpResponse::Ok().json(FileInfo::from(&*file)))
}

/// Removes a file's declaration (its record, its names in batches, its pending uploads and
/// their staged bytes) when it has no verified copy: a declaration with a wrong size or
/// visibility is cleared at once instead of waiting for the sweeper.
#[utoipa::path(delete, path = "/file/sha512/{digest}", tag = "files", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters")), responses((status = 204, description = "The declaration is gone: the digest may be declared afresh")), security(("bearer" = [])))]
#[tracing::instrument(name = "delete_file", skip_all, fields(digest = %path))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let digest = Digest::parse(&path)?;
    let caller = caller?;
    caller.require_authenticated()?;
    caller.require(Scope::Manage)?;
    let has_instances = || {
        ApiError::new(
            ErrorCode::HasInstances,
            "The file has verified copies: delete them first (PATCH with delete_instances)",
        )
    };
    let file = state.db.file(&digest).await?.ok_or_else(unknown)?;
    if !file.instances.is_empty() {
        return Err(has_instances());
    }
    // None: a copy was verified meanwhile.
    let pending = state.db.remove_declaration(&digest, true).await?.ok_or_else(has_instances)?;
    for p in &pending {
        let Some(store) = state.blobs.get(&p.region) else { continue };
        // The rows are gone, so nothing can verify these bytes; a failed delete leaves an
        // orphan the sweeper removes.
        if let Err(e) = crate::uploads::parts::discard(store.as_ref(), p).await {
            tracing::warn!(region = p.region, error = %e, "could not delete a staged upload of a removed declaration");
        }
    }
    tracing::info!(caller = caller.id(), pending = pending.len(), "declaration removed");
    let details = serde_json::json!({"pending_uploads": pending.len()});
    state.audit(&caller.actor(), "file.declaration_removed", digest.as_str(), details).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Files whose name in any batch contains the text, or whose digest starts with it.
#[utoipa::path(get, path = "/file", tag = "files", params(("q" = Option<String>, Query, description = "text to find in file names, or a digest prefix")), responses((status = 200, description = "Matching files, at most 500", body = tooltool_proto::Wrapped<Vec<tooltool_proto::FileInfo>>)))]
pub async fn search(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let sees_internal = state.sees_internal(&caller);
    let files: Vec<FileInfo> = state
        .db
        .search_files(query.text()?)
        .await?
        .iter()
        .filter(|f| sees_internal || f.visibility == Visibility::Public)
        .map(FileInfo::from)
        .collect();
    Ok(HttpResponse::Ok().json(Wrapped { result: files }))
}

/// The batches that carried the file, newest first, one entry per name it had in each.
#[utoipa::path(get, path = "/file/sha512/{digest}/batches", tag = "history", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters")), responses((status = 200, description = "The batches that carried the file and its name in each, newest first, at most 500", body = tooltool_proto::Wrapped<Vec<tooltool_proto::FileBatch>>)), security((), ("bearer" = [])))]
pub async fn batches(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let file = visible_file(&state, caller, &path).await?;
    let result: Vec<FileBatch> = state.db.file_batches(file.id).await?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(Wrapped { result }))
}
