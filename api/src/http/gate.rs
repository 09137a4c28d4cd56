//! Failure behaviour at the door: requests fail fast while the database is away, and no
//! request waits on a backend without bound.
//!
//! While the database watcher's last ping failed ([`crate::health`]), every API request is
//! answered 503 `database-unavailable` at once. On top of that every API request is bounded by
//! `TOOLTOOL_REQUEST_TIMEOUT` and answered 503 `timed-out` past it. The operations routes
//! (heartbeats, version, metrics) and the embedded store's streamed transfers are exempt.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;

/// Routes that never wait on the database or are bounded otherwise.
fn exempt(path: &str) -> bool {
    path.starts_with("/__") || path.starts_with("/_blobs/") || matches!(path, "/metrics" | "/openapi.json")
}

/// Middleware: 503 at once while the database is away, 503 past the request timeout. The
/// refusals are errors, rendered as problem+json by [`ApiError`]'s `ResponseError`.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else { return next.call(req).await };
    if exempt(req.path()) {
        return next.call(req).await;
    }
    if !state.database_health.is_up() {
        return Err(ApiError::unavailable(
            ErrorCode::DatabaseUnavailable,
            "The database is unavailable; try again shortly",
            "the last database ping failed",
        )
        .into());
    }
    let limit = state.settings.request_timeout;
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(res) => res,
        Err(_) => Err(ApiError::unavailable(
            ErrorCode::TimedOut,
            "The request did not finish in time; try again shortly",
            format_args!("request exceeded {limit:?}"),
        )
        .into()),
    }
}
