//! The metadata store: files and their verified instances per region, upload batches, pending
//! uploads, copies between regions, clients, the audit trail, Hawk nonces and the signed TUF
//! metadata, on SQLite
//! (embedded default) or PostgreSQL (production). One module per table; [`lookup`] holds the download path's read.
//!
//! One SQL dialect story: runtime queries through sqlx's `Any` driver, written in the subset
//! both databases share (`$N` placeholders, `RETURNING`, `ON CONFLICT`, `LIKE … ESCAPE`), rows
//! read by column name. The download lookup alone reads through each database's own driver
//! ([`lookup`]). The only per-backend SQL is the schema, under `migrations/sqlite` and
//! `migrations/postgres`. Database errors are translated here: a constraint conflict becomes
//! [`DbError::Conflict`]. The layer returns domain rows; `crate::http::wire` turns them into wire
//! types.

use std::time::Duration;

use anyhow::Context;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

mod audit;
mod batches;
mod clients;
mod events;
mod files;
mod import;
mod lookup;
mod nonces;
mod pending;
mod replications;
mod scrub;
mod search;
mod tuf;

pub use audit::{AuditFilter, AuditRow};
pub use batches::{BatchFileRow, BatchRow, CreatedBatch, FileBatchRow};
pub use clients::ClientRecord;
pub use events::{EventRow, LeaderLock, NewEvent};
pub use files::{FileWrite, StoredFile};
pub use import::{BatchHead, ImportedBatch};
pub use lookup::LISTENER_APPLICATION_NAME;
pub use pending::{Multipart, Pending};
pub use replications::{Backlog, Claim, FailedCopy};
pub use scrub::ScrubFilter;
pub use search::SearchLimits;
pub use tuf::{TufCandidate, TufRole, TufState, TufWrite};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Most rows a search returns.
pub const SEARCH_LIMIT: i64 = 500;

/// Longest wait for a pooled connection (which includes connecting): a database that does not
/// answer costs a request at most this before it is answered 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A metadata-store failure, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The request contradicts what is recorded (answered as 400).
    #[error("{0}")]
    Conflict(String),
    /// The database could not be reached or did not answer in time (answered as 503).
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// Anything else (answered as an opaque 500).
    #[error(transparent)]
    Other(sqlx::Error),
    /// A failure of the SQLite download lookup (answered as an opaque 500).
    #[error(transparent)]
    FastRead(#[from] rusqlite::Error),
    /// A search refused for now: every search slot is taken, or it ran out of time (answered
    /// as 503 `search-busy` with `Retry-After`).
    #[error("search refused: {0}")]
    Busy(&'static str),
}

type Result<T, E = DbError> = std::result::Result<T, E>;

impl From<sqlx::Error> for DbError {
    /// Failures to reach the database, or the server going away, are `Unavailable`: the
    /// request may succeed once it is back. Everything else is a fault.
    fn from(e: sqlx::Error) -> Self {
        let gone = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P01-57P03: the server is shutting down or
            // starting up.
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03"))
            }
            _ => false,
        };
        if gone { Self::Unavailable(e) } else { Self::Other(e) }
    }
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: one writer connection, several readers.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
    /// One connection of its own for the health ping: a pool full of searches or slow reads
    /// must not make the database look away (which would refuse every request).
    ping: AnyPool,
    backend: Backend,
    /// The limits searches run under.
    search: std::sync::Arc<search::SearchGate>,
    /// The download path's lookup and its cache.
    lookup: std::sync::Arc<lookup::Lookup>,
    /// The events outbox: the `source` recorded and the wake-up of long polls.
    outbox: std::sync::Arc<events::Outbox>,
    /// The database URL (the relay's lock takes a connection of its own).
    url: std::sync::Arc<str>,
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`), caching up to `cache` download
    /// lookups for at most `max_age` each (0 entries: no cache).
    pub async fn connect(url: &str, cache: usize, max_age: Duration) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let opts = || AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let (read, write) = match backend {
            Backend::Sqlite => {
                // SQLite allows one writer: a single write connection serializes writers so a
                // transaction that reads then writes never fails with SQLITE_BUSY.
                let write = opts().max_connections(1).connect(url).await.context("cannot open the SQLite database")?;
                sqlx::query("PRAGMA journal_mode = WAL").execute(&write).await?;
                let read = opts().max_connections(8).connect(url).await?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = opts().max_connections(16).connect(url).await.context("cannot connect to PostgreSQL")?;
                (pool.clone(), pool)
            }
        };
        let ping = opts().max_connections(1).connect(url).await?;
        let lookup = lookup::Lookup::new(url, &read, cache, max_age).context("cannot set up the download lookup")?;
        let outbox = events::Outbox::new("tooltool");
        let search = std::sync::Arc::new(search::SearchGate::new(SearchLimits::default()));
        Ok(Self { read, write, ping, backend, search, lookup: std::sync::Arc::new(lookup), outbox, url: url.into() })
    }

    /// Records `source` (the service URL) in the events this handle writes. Call before
    /// cloning: clones made earlier keep the previous source and long-poll wake-up.
    pub fn with_event_source(mut self, source: &str) -> Self {
        self.outbox = events::Outbox::new(source);
        self
    }

    /// Sets the limits searches run under. Call before cloning, as [`Db::with_event_source`].
    pub fn with_search_limits(mut self, limits: SearchLimits) -> Self {
        self.search = std::sync::Arc::new(search::SearchGate::new(limits));
        self
    }

    /// Connections of each pool: `(name, idle, in use)`.
    pub fn pool_usage(&self) -> Vec<(&'static str, u32, u32)> {
        let usage = |p: &AnyPool| (p.num_idle() as u32, p.size().saturating_sub(p.num_idle() as u32));
        let mut out = match self.backend {
            Backend::Sqlite => {
                let (ri, ru) = usage(&self.read);
                let (wi, wu) = usage(&self.write);
                vec![("read", ri, ru), ("write", wi, wu)]
            }
            Backend::Postgres => {
                let (i, u) = usage(&self.read);
                vec![("main", i, u)]
            }
        };
        out.extend(self.lookup.pool_usage());
        out
    }

    /// The database kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On PostgreSQL, keeps the lookup cache coherent with writes made by other replicas for
    /// as long as the returned future runs (spawn it); see [`lookup`]. Returns at once on
    /// SQLite, where this process is the only writer.
    pub async fn follow_changes(&self) {
        self.lookup.follow_changes().await;
    }

    /// The `application_name` of this process's change-listener connection (PostgreSQL).
    pub fn listener_name(&self) -> Option<&str> {
        self.lookup.listener_name()
    }

    /// Whether download lookups may be answered from memory now (on PostgreSQL: the change
    /// listener is connected).
    pub fn lookup_cache_active(&self) -> bool {
        self.lookup.cache_active()
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let done = self.migrator().run(&self.write).await.context("migrations failed");
        // A migration may rewrite any row: nothing cached before it is trusted after it.
        self.lookup.forget_all();
        done
    }

    /// Fails unless every migration this build knows has been applied.
    pub async fn check_migrated(&self) -> anyhow::Result<()> {
        use sqlx::migrate::Migrate;
        let mut conn = self.write.acquire().await?;
        conn.ensure_migrations_table().await?;
        let applied = conn.list_applied_migrations().await?;
        let missing = self.migrator().iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).count();
        anyhow::ensure!(missing == 0, "the database lacks {missing} migration(s): run `tooltool-api migrate` first");
        Ok(())
    }

    /// A trivial query, for the heartbeat, on a connection of its own.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.ping).await?;
        Ok(())
    }
}

/// `%q%` for a case-insensitive LIKE, with the wildcards of `q` escaped.
fn contains_pattern(q: &str) -> String {
    format!("%{}%", escape_like(&q.to_lowercase()))
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn corrupt(what: &str) -> DbError {
    DbError::Other(sqlx::Error::Decode(format!("corrupt {what} in the database").into()))
}

/// A migrated SQLite database in `dir` caching `cache` lookups, for this crate's unit tests.
#[cfg(test)]
pub(crate) async fn test_db(dir: &std::path::Path, cache: usize) -> Db {
    let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
    let db = Db::connect(&url, cache, Duration::from_secs(3600)).await.unwrap();
    db.migrate().await.unwrap();
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("GCC_13%"), "%gcc\\_13\\%%");
        assert_eq!(escape_like("a\\b"), "a\\\\b");
    }
}
