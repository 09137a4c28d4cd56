//! `GET /tuf/<repo>/metadata/<file>` and `GET /tuf/<repo>/targets/<name>`: the signed
//! metadata of the two TUF repositories, read from the database, and their targets, answered
//! by the same 302 as `/sha512/<digest>`. `internal` answers only callers holding
//! `download/internal`, `public` those holding `download/public` (anonymous callers, unless
//! switched off).

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};

use super::RegionQuery;
use crate::auth::Scope;
use crate::http::caller::Caller;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use tooltool_proto::{Digest, Visibility};

/// A versioned metadata file never changes (consistent snapshots).
const IMMUTABLE: &str = "max-age=31536000, immutable";

/// The repository named in the path: 404 for any other name.
fn repo(name: &str) -> Result<Visibility, ApiError> {
    name.parse().map_err(|_| ApiError::not_found("No TUF repository has this name"))
}

/// `timestamp.json` → (`timestamp`, newest); `<N>.<role>.json` → (role, N) for the roles
/// served by version (root, snapshot, targets, bins-xx); `None` for any other name.
fn metadata_file(file: &str) -> Option<(String, Option<i64>)> {
    if file == "timestamp.json" {
        return Some(("timestamp".into(), None));
    }
    let (version, role) = file.strip_suffix(".json")?.split_once('.')?;
    let canonical_number =
        !version.is_empty() && !version.starts_with('0') && version.bytes().all(|b| b.is_ascii_digit());
    let version: i64 = version.parse().ok().filter(|_| canonical_number)?;
    let bin = role
        .strip_prefix("bins-")
        .is_some_and(|x| x.len() == 2 && x.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    (bin || matches!(role, "root" | "snapshot" | "targets")).then(|| (role.to_owned(), Some(version)))
}

/// A metadata file; unknown name or version 404.
#[utoipa::path(get, path = "/tuf/{repo}/metadata/{file}", tag = "tuf", params(("repo" = String, Path, description = "`public` or `internal`"), ("file" = String, Path, description = "`timestamp.json`, `<N>.root.json`, `<N>.snapshot.json`, `<N>.targets.json` or `<N>.bins-<xx>.json`")), responses((status = 200, description = "The signed metadata file (canonical JSON); `Cache-Control: no-cache` on timestamp.json, immutable on versioned files", content_type = "application/json")), security((), ("bearer" = [])))]
pub async fn metadata(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (repo_name, file) = path.into_inner();
    let repo = repo(&repo_name)?;
    caller?.require(Scope::download(repo))?;
    let not_found = || ApiError::not_found("No such metadata file in this repository");
    let (role, version) = metadata_file(&file).ok_or_else(not_found)?;
    let body = state.db.tuf_file(repo.as_str(), &role, version).await?.ok_or_else(not_found)?;
    let cache = if version.is_some() { IMMUTABLE } else { "no-cache" };
    let private = if repo == Visibility::Internal { "private, " } else { "" };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((CACHE_CONTROL, format!("{private}{cache}")))
        .body(body))
}

/// A target, `<sha512>` or `<hash>.<sha512>` (the hash prefix TUF clients add under
/// consistent snapshots: the file's sha256 or sha512, anything else 404): as `/sha512/<digest>`.
#[utoipa::path(method(get, head), path = "/tuf/{repo}/targets/{name}", tag = "tuf", params(("repo" = String, Path, description = "`public` or `internal`"), ("name" = String, Path, description = "`<sha512>` or `<sha256 or sha512>.<sha512>`"), ("region" = Option<String>, Query, description = "preferred region")), responses((status = 302, description = "Redirect to a short-lived signed URL of a verified copy", headers(("Location" = String, description = "the signed URL")))), security((), ("bearer" = [])))]
pub async fn target(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    path: web::Path<(String, String)>,
    query: web::Query<RegionQuery>,
) -> Result<HttpResponse, ApiError> {
    let (repo_name, name) = path.into_inner();
    let repo = repo(&repo_name)?;
    let (prefix, digest) = match name.split_once('.') {
        Some((prefix, digest)) => (Some(prefix.to_owned()), digest.to_owned()),
        None => (None, name),
    };
    let digest = Digest::parse_owned(digest)?;
    let caller = caller?;
    caller.require(Scope::download(repo))?;
    if let Some(prefix) = prefix
        && prefix != digest.as_str()
        && state.db.sha256_of(&digest).await?.as_deref() != Some(prefix.as_str())
    {
        return Err(ApiError::not_found("The hash prefix is not this file's sha256 or sha512"));
    }
    super::download::redirect(&state, &caller, &digest, query.region.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::metadata_file;

    #[test]
    fn metadata_names_are_the_timestamp_or_a_canonical_version_of_a_served_role() {
        assert_eq!(metadata_file("timestamp.json"), Some(("timestamp".into(), None)));
        assert_eq!(metadata_file("1.root.json"), Some(("root".into(), Some(1))));
        assert_eq!(metadata_file("12.snapshot.json"), Some(("snapshot".into(), Some(12))));
        assert_eq!(metadata_file("3.targets.json"), Some(("targets".into(), Some(3))));
        assert_eq!(metadata_file("7.bins-0f.json"), Some(("bins-0f".into(), Some(7))));
        for bad in [
            "root.json",
            "01.root.json",
            "0.root.json",
            "+1.root.json",
            "1.timestamp.json",
            "1.bins-0F.json",
            "1.bins-100.json",
            "1.root.json.json",
            "1.mirrors.json",
            "x.root.json",
            "99999999999999999999.root.json",
        ] {
            assert_eq!(metadata_file(bad), None, "{bad}");
        }
    }
}
