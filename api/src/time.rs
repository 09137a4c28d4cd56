//! Wall-clock time as the service records it: unix seconds, and RFC 3339 UTC on the wire.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Paces reads to at most `bytes_per_second` on average since it was made, chunk by chunk, so
/// that reading a large copy is spread out instead of taken in one burst and then slept off.
/// Clones share one budget: a pass's reads, in whichever task or thread they run.
#[derive(Debug, Clone)]
pub struct Pace(Arc<PaceBudget>);

#[derive(Debug)]
struct PaceBudget {
    start: Instant,
    bytes: AtomicU64,
    bytes_per_second: Option<f64>,
}

impl Pace {
    /// No faster than `bytes_per_second` (unlimited when `None`).
    pub fn new(bytes_per_second: Option<f64>) -> Self {
        Self(Arc::new(PaceBudget { start: Instant::now(), bytes: AtomicU64::new(0), bytes_per_second }))
    }

    /// Counts `bytes` read; how long until the average is back under the rate.
    fn wait_after(&self, bytes: u64) -> Option<Duration> {
        let rate = self.0.bytes_per_second.filter(|r| *r > 0.0)?;
        let total = self.0.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        Duration::from_secs_f64(total as f64 / rate).checked_sub(self.0.start.elapsed())
    }

    /// Counts `bytes` read, then waits until the average is back under the rate.
    pub async fn read(&self, bytes: u64) {
        if let Some(wait) = self.wait_after(bytes) {
            tokio::time::sleep(wait).await;
        }
    }

    /// [`Pace::read`] for a blocking thread.
    pub fn read_blocking(&self, bytes: u64) {
        if let Some(wait) = self.wait_after(bytes) {
            std::thread::sleep(wait);
        }
    }

    /// `reader`, waiting its turn after every read.
    pub fn reader<R: Read>(&self, reader: R) -> impl Read {
        PacedReader { reader, pace: self.clone() }
    }
}

struct PacedReader<R> {
    reader: R,
    pace: Pace,
}

impl<R: Read> Read for PacedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.pace.read_blocking(n as u64);
        Ok(n)
    }
}
