//! When to try a transfer again, and how long to wait: the one retry policy of every download
//! and upload, and how a failed request is sorted.
//!
//! Network errors while a body flows, 5xx, 408 and 429 are retried with exponential backoff;
//! a `Retry-After` (seconds or an HTTP date; `X-Retry-After` when it is absent, read by
//! [`crate::api::response::retry_after`]) replaces the backoff. A server that refuses
//! connections is different: after a few quick tries it is marked down for the whole run
//! ([`crate::transfer::Servers`]), so that every other file gives up on it at once instead of
//! repeating the same retries.

use std::time::Duration;

use crate::api::response::Failure;
use crate::error::Error;

/// How transfers are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per URL for retryable failures (network errors, 5xx, 408, 429).
    pub attempts: u32,
    /// Tries to connect to a tooltool server that refuses connections, before it is marked
    /// down for the rest of the run.
    pub connect_attempts: u32,
    /// The first backoff delay; doubled on each retry.
    pub base_delay: Duration,
    /// The longest backoff delay (a `Retry-After` is honoured up to [`Self::max_retry_after`]).
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// How many times a refused signed URL is requested again, per URL.
    pub refreshes: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            connect_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            refreshes: 3,
        }
    }
}

impl RetryPolicy {
    /// The pause before try number `attempt + 1` (`attempt` ≥ 1 failed tries so far): the
    /// server's `Retry-After` when it sent one, else exponential backoff.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.base_delay.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        retry_after.map_or(backoff, |d| d.min(self.max_retry_after))
    }
}

/// What to do after a failed try.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Worth trying again on the same URL, after the delay the server asked for if any.
    Retry(Error, Option<Duration>),
    /// The tooltool server could not be connected to.
    Unreachable(Error),
    /// The signed URL was refused: ask the server for a new one.
    Refresh(Error),
    /// The storage behind the signed URL failed (refused, reset, 5xx): ask the server for a
    /// copy in another region, then retry as [`Attempt::Retry`] once there is none.
    StorageDown(Error, Option<Duration>),
    /// This URL cannot serve the file: try the next.
    NextUrl(Error),
    /// A local failure: stop.
    Fatal(Error),
}

/// Sorts a failure. `server` says whether the request went to the tooltool server (whose
/// connection failures mark it down) or to storage.
pub(crate) fn classify(f: Failure, server: bool) -> Attempt {
    match &f.error {
        Error::Http { source, .. } if server && source.is_connect() => Attempt::Unreachable(f.error),
        e if !server && is_storage_down(e) => Attempt::StorageDown(f.error, f.retry_after),
        e if is_transient(e) => Attempt::Retry(f.error, f.retry_after),
        Error::Io { .. } => Attempt::Fatal(f.error),
        _ => Attempt::NextUrl(f.error),
    }
}

/// A storage failure another region may not share: no connection (refused, reset, timed out),
/// or a 5xx.
fn is_storage_down(e: &Error) -> bool {
    match e {
        Error::Http { source, .. } => source.is_connect() || source.is_request() || source.is_timeout(),
        Error::Api { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Network errors, 5xx, 408 and 429: worth trying again.
pub(crate) fn is_transient(e: &Error) -> bool {
    match e {
        Error::Http { .. } => true,
        Error::Api { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_retry_after_wins_up_to_its_cap() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..=8).map(|a| p.delay(a, None).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(p.delay(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), p.max_retry_after);
    }
}
