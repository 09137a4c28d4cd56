//! `GET /audit`: the audit trail, for callers with `manage`, newest first, paged by id.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::Scope;
use crate::db::AuditFilter;
use crate::http::Caller;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use tooltool_proto::{AuditEntry, AuditPage};

/// Filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    /// Unix seconds, inclusive.
    since: Option<i64>,
    /// Unix seconds, exclusive.
    until: Option<i64>,
    /// Only entries with a smaller id (the `next_before` of the previous page).
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// One page of the trail.
#[utoipa::path(get, path = "/audit", tag = "credentials", params(AuditQuery), responses((status = 200, description = "Entries, newest first", body = tooltool_proto::AuditPage)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_authenticated()?;
    caller.require(Scope::Manage)?;
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AuditFilter {
        action: q.action,
        actor: q.actor,
        target: q.target,
        since: q.since,
        until: q.until,
        before: q.before,
    };
    let result: Vec<AuditEntry> = state.db.audit_entries(&filter, limit).await?.into_iter().map(Into::into).collect();
    let next_before = (result.len() as i64 == limit).then(|| result.last().map(|e| e.id)).flatten();
    Ok(HttpResponse::Ok().json(AuditPage { result, next_before }))
}
