//! Wall-clock time as the service records it: unix seconds, and RFC 3339 UTC on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Seconds since the epoch, signed, as the database stores them.
pub fn now() -> i64 {
    unix_now() as i64
}

/// Milliseconds since the epoch, signed (when a stored copy was last proven).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-22T10:00:00.250Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-22T10:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Runs `work` under a claim that lasts `lease`: `renew` is called every third of it until
/// `work` ends (the replicator's copies and the scrubber's reads hold their claims this way).
pub async fn while_renewing<T, R>(lease: Duration, mut renew: impl FnMut() -> R, work: impl Future<Output = T>) -> T
where
    R: Future<Output = ()>,
{
    let renewal = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            renew().await;
        }
    };
    tokio::select! {
        r = work => r,
        () = renewal => unreachable!("the renewal never ends"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_341_600), "2026-11-22T10:00:00Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_795_341_600_250), "2026-11-22T10:00:00.250Z");
    }
}
