//! `GET /events`: the events feed, oldest first, filtered to what the caller may see, with an
//! optional long poll.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::Scope;
use crate::http::Caller;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use tooltool_proto::{Audience, Event, EventPage};

/// Longest long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;

/// How much sooner than `TOOLTOOL_REQUEST_TIMEOUT` a long poll answers: time to read the page
/// and send it, so that a poll is never cut off as `timed-out` for waiting as long as it asked.
pub const LONG_POLL_MARGIN: Duration = Duration::from_secs(5);

/// How long a poll asking for `wait` seconds waits: as asked, but at most the request timeout
/// less [`LONG_POLL_MARGIN`]. A long poll may always answer early with no event.
fn bounded_wait(wait: u64, request_timeout: Duration) -> Duration {
    Duration::from_secs(wait).min(request_timeout.saturating_sub(LONG_POLL_MARGIN))
}

/// Cursor, page size and long poll.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger `seq` (the `next` of the previous answer); default 0.
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
    /// Seconds to wait for an event when there is none yet, 0 to 30 (default 0).
    wait: Option<u64>,
}

/// The events after `after` that the caller may see: about public files with
/// `download/public`, about internal files with `download/internal`, about clients with
/// `manage`.
#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery), responses((status = 200, description = "Events, oldest first, and the cursor to pass as after= next", body = tooltool_proto::EventPage)), security((), ("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("wait must be between 0 and {MAX_WAIT_SECS} seconds"),
        ));
    }
    let caller = caller?;
    let audiences: Vec<Audience> = [
        (Scope::DownloadPublic, Audience::Public),
        (Scope::DownloadInternal, Audience::Internal),
        (Scope::Manage, Audience::Manage),
    ]
    .into_iter()
    .filter(|(scope, _)| caller.has(*scope))
    .map(|(_, audience)| audience)
    .collect();
    if audiences.is_empty() {
        caller.require(Scope::DownloadPublic)?;
    }
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let wait = bounded_wait(wait, state.settings.request_timeout);
    let rows = state.db.wait_for_events(after, &audiences, limit, wait).await?;
    let events: Vec<Event> = rows.into_iter().map(Event::from).collect();
    let next = events.last().map_or(after, |e| e.seq);
    Ok(HttpResponse::Ok().json(EventPage { events, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_poll_ends_five_seconds_before_the_request_timeout() {
        let timeout = Duration::from_secs(30);
        assert_eq!(bounded_wait(30, timeout), Duration::from_secs(25));
        assert_eq!(bounded_wait(10, timeout), Duration::from_secs(10));
        assert_eq!(bounded_wait(30, Duration::from_secs(3)), Duration::ZERO);
    }
}
