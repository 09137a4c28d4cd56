//! `GET`/`HEAD /sha512/<digest>`: a 302 to a short-lived signed URL of a verified copy.

use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpResponse, web};

use super::RegionQuery;
use crate::auth::Scope;
use crate::http::Caller;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use tooltool_proto::Digest;

/// Digest → file → permission → signed URL → 302. No span of its own: the request's access line
/// names the path, and this is the route every build worker hits.
#[utoipa::path(method(get, head), path = "/sha512/{digest}", tag = "download", params(("digest" = String, Path, description = "sha512 digest: 128 lowercase hex characters"), ("region" = Option<String>, Query, description = "preferred region")), responses((status = 302, description = "Redirect to a short-lived signed URL of a verified copy", headers(("Location" = String, description = "the signed URL")))), security((), ("bearer" = [])))]
pub async fn download(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    query: web::Query<RegionQuery>,
) -> Result<HttpResponse, ApiError> {
    let digest = Digest::parse_owned(path.into_inner())?;
    redirect(&state, &caller?, &digest, query.region.as_deref()).await
}

/// File → permission → signed URL → 302: the answer of `/sha512/<digest>`, and of the TUF
/// repositories' target URLs.
pub async fn redirect(
    state: &AppState,
    caller: &Caller,
    digest: &Digest,
    region: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let file = state.db.file(digest).await?.filter(|f| !f.instances.is_empty());
    let file = file.ok_or_else(|| ApiError::not_found("No stored file has this digest"))?;
    caller.require(Scope::download(file.visibility))?;
    let store = state
        .blobs
        .for_download(&file.instances, region)
        .ok_or_else(|| ApiError::not_found("No configured region holds a copy of this file"))?;
    let url = state.blobs.download_url(store, digest, state.settings.download_url_ttl).await?;
    state.metrics.redirects.inc();
    Ok(HttpResponse::Found().insert_header((LOCATION, url)).insert_header((CACHE_CONTROL, "no-store")).finish())
}
