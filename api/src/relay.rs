//! The RabbitMQ relay: publishes each outbox event (`events` table) to a durable topic exchange
//! and marks it published only once the broker confirmed it (publisher confirms).
//!
//! - **At least once, in order.** Events go out oldest first on one channel; a batch is marked
//!   published after every message in it was confirmed. A relay that dies between the confirm
//!   and the mark publishes those events again when it (or another replica) resumes: consumers
//!   de-duplicate by the event `id`.
//! - **Broker down.** Connecting, publishing and confirming all have timeouts; on failure the
//!   relay retries with exponential backoff while the outbox keeps every event.
//! - **One relay at a time** across replicas: the one holding the PostgreSQL advisory lock
//!   ([`Db::relay_lock`]); on SQLite the one process. The others stand by and take over when
//!   the lock frees (its holder's connection closed).
//!
//! Nothing else waits for the relay: requests only write the outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};

use crate::db::{Db, EventRow, LeaderLock};
use crate::settings::Secret;
use tooltool_proto::Event;
use tooltool_proto::events::{CLOUDEVENTS_CONTENT_TYPE, routing_key};

/// Longest wait for any one broker or database step (connect, declare, confirm, lock).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay after a failure; doubled after each further one.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// How often a standing-by replica tries to become the relay.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// How often an idle relay looks for events committed by other replicas.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Most events published before their confirms are awaited and they are marked.
const BATCH: i64 = 100;

/// What the relay of this process is doing, for the heartbeat.
#[derive(Debug, Clone, Default)]
pub struct RelayHealth(Arc<AtomicU8>);

/// The states of [`RelayHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// No broker is configured.
    Disabled = 0,
    /// Configured, not connected yet.
    Starting = 1,
    /// Another replica holds the relay lock.
    Standby = 2,
    /// Connected to the broker and relaying.
    Connected = 3,
    /// The broker cannot be reached (retrying).
    Unavailable = 4,
}

impl RelayState {
    /// The heartbeat's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayState::Disabled => "disabled",
            RelayState::Starting => "starting",
            RelayState::Standby => "standby",
            RelayState::Connected => "ok",
            RelayState::Unavailable => "unavailable",
        }
    }
}

impl RelayHealth {
    /// The current state.
    pub fn get(&self) -> RelayState {
        match self.0.load(Ordering::Relaxed) {
            1 => RelayState::Starting,
            2 => RelayState::Standby,
            3 => RelayState::Connected,
            4 => RelayState::Unavailable,
            _ => RelayState::Disabled,
        }
    }

    fn set(&self, s: RelayState) {
        self.0.store(s as u8, Ordering::Relaxed);
    }
}

/// Why relaying stopped.
enum Stop {
    /// The relay lock's connection broke: another replica may be the relay now.
    LostLock(anyhow::Error),
    /// The broker or the database failed: retry after a backoff.
    Failed(anyhow::Error),
    /// The test fault ([`Relay::crash_after_publishing`]) fired.
    Crashed,
}

/// The relay of one process.
pub struct Relay {
    db: Db,
    url: Secret,
    exchange: String,
    health: RelayHealth,
    metrics: Arc<crate::metrics::Metrics>,
    crash_after_publishing: bool,
}

impl Relay {
    /// A relay from `db`'s outbox to `exchange` on the broker at `url`, reporting to `health`,
    /// counting what it publishes in `metrics`.
    pub fn new(
        db: Db,
        url: Secret,
        exchange: &str,
        health: RelayHealth,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        health.set(RelayState::Starting);
        Self { db, url, exchange: exchange.to_owned(), health, metrics, crash_after_publishing: false }
    }

    /// Test fault: after the first batch is published and confirmed, stop before marking it
    /// published, as a relay killed at that moment would.
    #[doc(hidden)]
    pub fn crash_after_publishing(mut self) -> Self {
        self.crash_after_publishing = true;
        self
    }

    /// Relays for as long as it runs (spawn it). Returns only when the test fault fires.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut lock = match tokio::time::timeout(STEP_TIMEOUT, self.db.relay_lock()).await {
                Ok(Ok(Some(lock))) => lock,
                Ok(Ok(None)) => {
                    self.health.set(RelayState::Standby);
                    tokio::time::sleep(LOCK_RETRY).await;
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "events relay: cannot try the relay lock");
                    tokio::time::sleep(LOCK_RETRY).await;
                    continue;
                }
                Err(_) => {
                    tracing::warn!("events relay: trying the relay lock timed out");
                    continue;
                }
            };
            tracing::info!("events relay: this replica relays events");
            loop {
                match self.connect_and_relay(&mut lock, &mut backoff).await {
                    Stop::Crashed => anyhow::bail!("the events relay stopped at its injected fault"),
                    Stop::LostLock(e) => {
                        tracing::warn!(error = %e, "events relay: lost the relay lock");
                        self.health.set(RelayState::Standby);
                        break;
                    }
                    Stop::Failed(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "events relay: failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }

    async fn connect_and_relay(&self, lock: &mut LeaderLock, backoff: &mut Duration) -> Stop {
        let connected = async {
            let conn = Connection::connect(self.url.expose(), ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
            channel
                .exchange_declare(self.exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
                .await?;
            Ok::<_, lapin::Error>((conn, channel))
        };
        let (conn, channel) = match tokio::time::timeout(STEP_TIMEOUT, connected).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.health.set(RelayState::Unavailable);
                return Stop::Failed(anyhow::anyhow!("cannot reach the broker: {e}"));
            }
            Err(_) => {
                self.health.set(RelayState::Unavailable);
                return Stop::Failed(anyhow::anyhow!("connecting to the broker timed out"));
            }
        };
        self.health.set(RelayState::Connected);
        *backoff = BACKOFF_MIN;
        let stop = self.relay(lock, &channel).await;
        if let Stop::Failed(_) = &stop {
            self.health.set(RelayState::Unavailable);
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
        stop
    }

    /// Publishes batches until something fails.
    async fn relay(&self, lock: &mut LeaderLock, channel: &Channel) -> Stop {
        loop {
            if let Err(e) = lock.check().await {
                return Stop::LostLock(e.into());
            }
            let events = match self.db.unpublished_events(BATCH).await {
                Ok(events) => events,
                Err(e) => return Stop::Failed(e.into()),
            };
            if events.is_empty() {
                self.db.events_committed(IDLE_POLL).await;
                continue;
            }
            let confirmed = match self.publish(channel, &events).await {
                Ok(seqs) => seqs,
                Err((seqs, e)) => {
                    // Mark what the broker did confirm, so it is not sent twice.
                    if let Err(e) = self.db.mark_published(&seqs, crate::time::now()).await {
                        tracing::warn!(error = %e, "events relay: cannot mark confirmed events published");
                    }
                    return Stop::Failed(e);
                }
            };
            if self.crash_after_publishing {
                return Stop::Crashed;
            }
            if let Err(e) = self.db.mark_published(&confirmed, crate::time::now()).await {
                return Stop::Failed(e.into());
            }
            self.metrics.events_published.inc_by(confirmed.len() as u64);
        }
    }

    /// Publishes `events` in order and waits for each confirm; the seqs confirmed, all of them
    /// or, on failure, those before the first that was not.
    async fn publish(&self, channel: &Channel, events: &[EventRow]) -> Result<Vec<i64>, (Vec<i64>, anyhow::Error)> {
        let mut pending = Vec::with_capacity(events.len());
        for row in events {
            let key = routing_key(row.event.kind, row.event.audience);
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(row.id.as_str().into())
                .with_content_type(CLOUDEVENTS_CONTENT_TYPE.into())
                .with_timestamp(row.time.max(0) as u64);
            let body = serde_json::to_vec(&Event::from(row.clone())).expect("events serialize");
            let publish = channel.basic_publish(
                self.exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            );
            match tokio::time::timeout(STEP_TIMEOUT, publish).await {
                Ok(Ok(confirm)) => pending.push((row.seq, confirm)),
                Ok(Err(e)) => {
                    let done = self.confirmed(pending).await;
                    return Err((done, anyhow::anyhow!("publishing failed: {e}")));
                }
                Err(_) => {
                    let done = self.confirmed(pending).await;
                    return Err((done, anyhow::anyhow!("publishing timed out")));
                }
            }
        }
        let total = pending.len();
        let done = self.confirmed(pending).await;
        if done.len() == total {
            Ok(done)
        } else {
            Err((done, anyhow::anyhow!("the broker did not confirm every event")))
        }
    }

    /// The seqs of the leading confirms the broker acknowledged, each awaited with a timeout.
    async fn confirmed(&self, pending: Vec<(i64, lapin::PublisherConfirm)>) -> Vec<i64> {
        let mut done = Vec::with_capacity(pending.len());
        for (seq, confirm) in pending {
            match tokio::time::timeout(STEP_TIMEOUT, confirm).await {
                Ok(Ok(Confirmation::Ack(_))) => done.push(seq),
                Ok(Ok(other)) => {
                    tracing::warn!(seq, confirmation = ?other, "events relay: the broker refused an event");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(seq, error = %e, "events relay: no confirm");
                    break;
                }
                Err(_) => {
                    tracing::warn!(seq, "events relay: the confirm timed out");
                    break;
                }
            }
        }
        done
    }
}
