//! Table `events`: the transactional outbox. Every change inserts its event in the transaction
//! that makes the change ([`super::FileWrite::record`], the clients' writes), so a committed
//! change always has its event and a rolled-back one never does. `GET /events` reads the
//! table; the RabbitMQ relay ([`crate::relay`]) publishes what it has not published yet.
//!
//! On PostgreSQL, a writer takes a transaction-scoped advisory lock just before inserting its
//! events and keeps it until commit, so events become visible in `seq` order: a feed reader
//! that has seen `seq` N can never miss a smaller one that commits later. SQLite has a single
//! writer connection, which orders them already.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

use super::{Backend, Db, DbError, Result, corrupt};
use tooltool_proto::{Audience, Digest, EventData, EventType, Visibility};

/// The transaction-scoped advisory lock that orders event inserts (PostgreSQL).
const ORDER_LOCK: i64 = 0x7474_6576_0001;
/// The session advisory lock held by the one relay across replicas (PostgreSQL).
const RELAY_LOCK: i64 = 0x7474_6576_0002;
/// The session advisory lock held by the one TUF signer across replicas (PostgreSQL).
const SIGNER_LOCK: i64 = 0x7474_6576_0003;
/// How often a long poll looks at the table for events committed by other replicas.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// An event to record, before the database gives it its `seq`, id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The type.
    pub kind: EventType,
    /// `sha512/<digest>`, `batch/<id>` or `client/<id>`.
    pub subject: String,
    /// Who may see it.
    pub audience: Audience,
    /// The details.
    pub data: EventData,
}

impl NewEvent {
    /// An event about a file, its data holding the digest, size and visibility.
    pub fn file(kind: EventType, digest: &Digest, size: u64, visibility: Visibility, actor: &str) -> Self {
        let data = EventData {
            actor: actor.to_owned(),
            digest: Some(digest.clone()),
            size: Some(size),
            visibility: Some(visibility),
            ..Default::default()
        };
        Self { kind, subject: format!("sha512/{digest}"), audience: Audience::of(visibility), data }
    }

    /// An event about a client, seen by `manage` only.
    pub fn client(kind: EventType, client_id: &str, actor: &str) -> Self {
        let data = EventData { actor: actor.to_owned(), client_id: Some(client_id.to_owned()), ..Default::default() };
        Self { kind, subject: format!("client/{client_id}"), audience: Audience::Manage, data }
    }
}

/// An event as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// The feed position.
    pub seq: i64,
    /// The UUID.
    pub id: String,
    /// The `source` of the server that recorded it.
    pub source: String,
    /// When (unix seconds).
    pub time: i64,
    /// What and about what.
    pub event: NewEvent,
    /// When the broker confirmed it, if it did.
    pub published: Option<i64>,
}

/// The events side of a [`Db`]: the `source` it records and the wake-up of long polls.
#[derive(Debug)]
pub(super) struct Outbox {
    source: String,
    /// Woken whenever this process commits events.
    committed: tokio::sync::Notify,
}

impl Outbox {
    pub(super) fn new(source: &str) -> Arc<Self> {
        Arc::new(Self { source: source.to_owned(), committed: tokio::sync::Notify::new() })
    }

    /// Inserts `events` in the transaction `tx`; on PostgreSQL first takes the order lock,
    /// held until `tx` ends.
    pub(super) async fn insert(
        &self,
        tx: &mut sqlx::AnyConnection,
        backend: Backend,
        events: &[NewEvent],
        now: i64,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ORDER_LOCK).execute(&mut *tx).await?;
        }
        for e in events {
            sqlx::query(
                "INSERT INTO events (id, type, source, time, subject, audience, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(e.kind.as_str())
            .bind(&self.source)
            .bind(now)
            .bind(&e.subject)
            .bind(e.audience.as_str())
            .bind(serde_json::to_string(&e.data).expect("event data serializes"))
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Wakes the long polls and the relay of this process (call after a commit with events).
    pub(super) fn committed(&self) {
        self.committed.notify_waiters();
    }
}

/// The largest event seq, 0 with none.
pub(super) async fn last_seq<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(ex: E) -> Result<i64> {
    let row = sqlx::query("SELECT MAX(seq) AS seq FROM events").fetch_one(ex).await?;
    Ok(row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0))
}

const EVENT_COLUMNS: &str = "seq, id, type, source, time, subject, audience, data, published";

fn event_from_row(row: &AnyRow) -> Result<EventRow> {
    let kind: String = row.try_get("type")?;
    let audience: String = row.try_get("audience")?;
    let data: String = row.try_get("data")?;
    Ok(EventRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        time: row.try_get("time")?,
        event: NewEvent {
            kind: kind.parse().map_err(|_| corrupt("event type"))?,
            subject: row.try_get("subject")?,
            audience: audience.parse().map_err(|_| corrupt("event audience"))?,
            data: serde_json::from_str(&data).map_err(|_| corrupt("event data"))?,
        },
        published: row.try_get("published")?,
    })
}

/// `audience IN ('public', …)` for these audiences (names from the enum, never from input).
fn audience_clause(audiences: &[Audience]) -> String {
    if audiences.is_empty() {
        return "1 = 0".into();
    }
    let names: Vec<String> = audiences.iter().map(|a| format!("'{}'", a.as_str())).collect();
    format!("audience IN ({})", names.join(", "))
}

/// The leadership of the one relay, or of the one TUF signer: on PostgreSQL a session
/// advisory lock held by a connection of its own (released when it closes, so a dead replica
/// frees it); on SQLite nothing, the one process being the only one.
pub struct LeaderLock {
    conn: Option<sqlx::AnyConnection>,
}

impl LeaderLock {
    /// Fails if the lock was lost (its connection broke).
    pub async fn check(&mut self) -> Result<()> {
        if let Some(conn) = &mut self.conn {
            tokio::time::timeout(Duration::from_secs(5), conn.ping())
                .await
                .map_err(|_| DbError::Other(sqlx::Error::PoolTimedOut))??;
        }
        Ok(())
    }
}

impl Db {
    /// Records one event in a transaction of its own: for decisions that change no other
    /// table (a rejected upload).
    pub async fn record_event(&self, event: NewEvent, now: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        self.outbox.insert(&mut tx, self.backend, std::slice::from_ref(&event), now).await?;
        tx.commit().await?;
        self.outbox.committed();
        Ok(())
    }

    /// The largest event seq so far (0 with none).
    pub async fn last_event_seq(&self) -> Result<i64> {
        last_seq(&self.read).await
    }

    /// Up to `limit` events after `after` that one of `audiences` may see, oldest first.
    pub async fn events_after(&self, after: i64, audiences: &[Audience], limit: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND {} ORDER BY seq LIMIT {}",
            audience_clause(audiences),
            limit.clamp(1, 1000)
        ))
        .bind(after)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Like [`Db::events_after`], but when there is none yet waits up to `wait` for one: woken
    /// at once by this process's commits, and looking every [`POLL_INTERVAL`] for those of
    /// other replicas.
    pub async fn wait_for_events(
        &self,
        after: i64,
        audiences: &[Audience],
        limit: i64,
        wait: Duration,
    ) -> Result<Vec<EventRow>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.outbox.committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let events = self.events_after(after, audiences, limit).await?;
            let now = tokio::time::Instant::now();
            if !events.is_empty() || now >= deadline {
                return Ok(events);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL_INTERVAL), notified).await;
        }
    }

    /// Waits until this process commits events, or at most `limit`.
    pub async fn events_committed(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.outbox.committed.notified()).await;
    }

    /// The oldest events the relay has not had confirmed, up to `limit`.
    pub async fn unpublished_events(&self, limit: i64) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE published IS NULL ORDER BY seq LIMIT {}",
            limit.clamp(1, 1000)
        ))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Marks events confirmed by the broker.
    pub async fn mark_published(&self, seqs: &[i64], now: i64) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = seqs.iter().map(i64::to_string).collect();
        sqlx::query(&format!("UPDATE events SET published = $1 WHERE seq IN ({})", list.join(", ")))
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// How many events wait for the broker, and when the oldest of them was recorded.
    pub async fn outbox_backlog(&self) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(time) AS oldest FROM events WHERE published IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    /// Removes events recorded before `before`: only published ones when a relay publishes
    /// them, all of them otherwise (the feed is then their only reader).
    pub async fn forget_events(&self, before: i64, published_only: bool) -> Result<u64> {
        let only = if published_only { " AND published IS NOT NULL" } else { "" };
        let res =
            sqlx::query(&format!("DELETE FROM events WHERE time < $1{only}")).bind(before).execute(&self.write).await?;
        Ok(res.rows_affected())
    }

    /// Tries to become the relay: `None` while another replica is.
    pub async fn relay_lock(&self) -> Result<Option<LeaderLock>> {
        self.leader_lock(RELAY_LOCK).await
    }

    /// Tries to become the TUF signer: `None` while another replica is.
    pub async fn signer_lock(&self) -> Result<Option<LeaderLock>> {
        self.leader_lock(SIGNER_LOCK).await
    }

    async fn leader_lock(&self, key: i64) -> Result<Option<LeaderLock>> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(LeaderLock { conn: None }));
        }
        let mut conn = sqlx::AnyConnection::connect(&self.url).await?;
        let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(key)
            .fetch_one(&mut conn)
            .await?
            .try_get("locked")?;
        Ok(locked.then_some(LeaderLock { conn: Some(conn) }))
    }
}
