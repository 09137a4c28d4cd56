//! Failure behaviour: requests fail fast while the database is away, and no request waits on
//! a backend without bound.
//!
//! Each replica pings its database every [`PROBE_INTERVAL`] (each ping bounded by
//! [`PROBE_TIMEOUT`]). While the last ping failed, every API request is answered 503
//! `database-unavailable` at once instead of waiting for a pool connection that cannot come;
//! the first good ping serves them again (the pool tests each connection before handing it
//! out, so none is left stuck). On top of that every API request is bounded by
//! `TOOLTOOL_REQUEST_TIMEOUT` and answered 503 `timed-out` past it. The operations routes
//! (heartbeats, version, metrics) and the embedded store's streamed transfers are exempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// How often the database is pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a ping may take before the database counts as away.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the database answered its last ping.
#[derive(Debug)]
pub struct DatabaseHealth(AtomicBool);

impl Default for DatabaseHealth {
    fn default() -> Self {
        Self(AtomicBool::new(true))
    }
}

impl DatabaseHealth {
    /// Whether the last ping succeeded.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        if self.0.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("the database answers again; serving requests");
            } else {
                tracing::error!("the database does not answer; API requests are answered 503 until it does");
            }
        }
    }
}

/// Pings the database for as long as the server runs.
pub async fn watch(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let up = matches!(tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await, Ok(Ok(())));
        state.database_health.set(up);
    }
}

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
