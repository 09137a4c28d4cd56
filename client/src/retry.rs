//! When to try a transfer again, and how long to wait: the one retry policy of every download
//! and upload, the one `Retry-After` parser, and the health of each server in a run.
//!
//! Network errors while a body flows, 5xx, 408 and 429 are retried with exponential backoff;
//! a `Retry-After` (seconds or an HTTP date; `X-Retry-After` when it is absent) replaces the
//! backoff. A server that refuses connections is different: after a few quick tries it is
//! marked down for the whole run, so that every other file gives up on it at once instead of
//! repeating the same retries.

use std::sync::OnceLock;
use std::time::Duration;

use crate::api::{ApiClient, Failure};
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

/// The `Retry-After` delay of an answer (`X-Retry-After` when it has none, as the tooltool
/// server sends on 409): whole seconds, or an HTTP date (RFC 9110), which gives the time left
/// until then (zero once past).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    ["retry-after", "x-retry-after"].iter().find_map(|h| parse_retry_after(headers.get(*h)?.to_str().ok()?))
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The tooltool servers of a run, in `--url` order, each with its health: once one refused
/// every connection for [`RetryPolicy::connect_attempts`] tries, it is down for the run.
#[derive(Debug)]
pub struct Servers {
    list: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    client: ApiClient,
    /// Why it is down (the connection error), once it is.
    down: OnceLock<String>,
}

impl Servers {
    /// The servers, tried in this order.
    pub fn new(clients: impl IntoIterator<Item = ApiClient>) -> Self {
        Self { list: clients.into_iter().map(|client| Server { client, down: OnceLock::new() }).collect() }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The client of server `i`.
    pub(crate) fn client(&self, i: usize) -> &ApiClient {
        &self.list[i].client
    }

    /// The error of a server that is down, if it is.
    pub(crate) fn down(&self, i: usize) -> Option<Error> {
        let why = self.list[i].down.get()?;
        Some(Error::Unreachable { url: crate::error::redact_url(self.list[i].client.base_url()), cause: why.clone() })
    }

    /// Marks server `i` down because of `error`; returns the [`Error::Unreachable`] to report.
    pub(crate) fn mark_down(&self, i: usize, error: &Error) -> Error {
        let _ = self.list[i].down.set(error.root_cause());
        self.down(i).expect("just marked down")
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let left = parse_retry_after(&soon).unwrap();
        assert!(left > Duration::from_secs(27) && left <= Duration::from_secs(30), "{left:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a past date: now");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
    }

    #[test]
    fn retry_after_prefers_the_standard_header() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_retry_after_wins_up_to_its_cap() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..=8).map(|a| p.delay(a, None).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(p.delay(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), p.max_retry_after);
    }
}
