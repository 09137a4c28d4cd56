//! The database watcher: each replica pings its database every [`PROBE_INTERVAL`] (each ping
//! bounded by [`PROBE_TIMEOUT`]) and keeps the answer in [`DatabaseHealth`]. While the last
//! ping failed, the HTTP layer's gate (`http::gate`) answers API requests 503 at once instead
//! of letting them wait for a pool connection that cannot come; the first good ping serves
//! them again (the pool tests each connection before handing it out, so none is left stuck).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::db::Db;

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
pub async fn watch(db: Db, health: Arc<DatabaseHealth>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let up = matches!(tokio::time::timeout(PROBE_TIMEOUT, db.ping()).await, Ok(Ok(())));
        health.set(up);
    }
}
