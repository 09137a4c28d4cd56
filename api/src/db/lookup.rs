//! The download path's lookup, digest → file and instances, and the bounded cache in front of
//! it.
//!
//! **Reads.** Each database through its own driver, not `Any`:
//! - SQLite: sqlx runs every SQLite connection on a worker thread of its own and hands each
//!   query and row across channels, which cost more than the whole rest of a redirect. The
//!   lookup runs inline instead, a prepared statement on a read-only rusqlite connection. It
//!   blocks the calling worker for one indexed point lookup: microseconds when the pages are in
//!   memory (mmap), one disk read when they are not. In WAL mode readers never wait for the
//!   writer, and a short busy timeout bounds the rare wait (WAL recovery after a crash). Each
//!   statement sees every commit made before it started.
//! - PostgreSQL: sqlx's PostgreSQL driver with its prepared-statement cache.
//!
//! **The cache** keeps up to `TOOLTOOL_LOOKUP_CACHE` answers (misses included), least recently
//! used out first, each for at most `TOOLTOOL_LOOKUP_MAX_AGE`. It stays exact because:
//! - every write to files or instances is a [`super::FileWrite`], whose [`Invalidation`]
//!   drops the touched digests when the write ends, so the replica that made a change serves
//!   it on its very next request;
//! - on PostgreSQL the write also sends `NOTIFY tooltool_files, '<digest>'` inside its
//!   transaction, and every replica's listener ([`Lookup::follow_changes`]) drops that digest
//!   when the notification arrives, milliseconds after the commit;
//! - while a replica's listener is not connected (at start, or after its connection dropped)
//!   the cache is bypassed: every lookup reads the database. When it listens again the whole
//!   cache is cleared, since changes made meanwhile were never heard of;
//! - a generation counter, bumped by every invalidation, keeps an answer read before a change
//!   from being stored after it;
//! - the maximum age bounds staleness even if a notification were somehow lost.

use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rusqlite::{Connection, OpenFlags};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use super::files::{FILE_QUERY, StoredFile, files_from_rows};
use super::{Result, corrupt};
use tooltool_proto::Digest;

/// The PostgreSQL notification channel of changes to files and instances; the payload is the
/// digest.
pub(super) const CHANNEL: &str = "tooltool_files";

/// `application_name` of each replica's listener connection (followed by a per-process id), so
/// operators (and tests) can find it in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "tooltool-change-listener";

/// Bytes of the SQLite file that may be mapped into memory instead of copying pages.
const MMAP_BYTES: i64 = 1 << 30;
/// SQLite page cache per connection, in KiB (negative in `PRAGMA cache_size` means KiB).
const CACHE_KIB: i64 = 16 * 1024;
/// Longest wait for a SQLite lock a reader may have to take.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);
/// PostgreSQL connections reserved for download lookups.
const PG_LOOKUP_CONNECTIONS: u32 = 8;
/// Waits between attempts to listen again after the listener's connection failed.
const RELISTEN_FIRST: Duration = Duration::from_millis(100);
const RELISTEN_MAX: Duration = Duration::from_secs(5);

/// Where lookups read from.
#[derive(Debug)]
enum Source {
    /// A SQLite file, read inline.
    Sqlite(SqliteReader),
    /// PostgreSQL: a pool for lookups, and one for the change listener.
    Postgres { lookups: PgPool, listener: PgPool, listener_name: String },
    /// An in-memory SQLite database: only the sqlx pool's connection sees it.
    Pool(sqlx::AnyPool),
}

/// The download lookup of one process.
#[derive(Debug)]
pub(super) struct Lookup {
    source: Source,
    cache: Option<Arc<Cache>>,
}

#[derive(Debug)]
struct Cache {
    answers: Mutex<LruCache<Digest, Entry>>,
    generation: AtomicU64,
    /// False while lookups must bypass the cache (PostgreSQL without a listener).
    active: AtomicBool,
    max_age: Duration,
}

#[derive(Debug)]
struct Entry {
    /// Shared with every request served from it: a hit copies no string.
    file: Option<Arc<StoredFile>>,
    read_at: Instant,
}

/// The digests a write touches; dropped with the write, it drops their cached answers.
#[derive(Debug)]
pub(super) struct Invalidation {
    cache: Option<Arc<Cache>>,
    digests: Vec<Digest>,
}

impl Invalidation {
    /// Adds a digest the write changes.
    pub(super) fn add(&mut self, digest: &Digest) {
        if !self.digests.contains(digest) {
            self.digests.push(digest.clone());
        }
    }

    /// The digests touched so far.
    pub(super) fn digests(&self) -> &[Digest] {
        &self.digests
    }
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        if let Some(cache) = &self.cache {
            cache.forget(&self.digests);
        }
    }
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Digest, Entry>> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, digest: &Digest) -> Option<Option<Arc<StoredFile>>> {
        let mut answers = self.lock();
        match answers.get(digest) {
            Some(e) if e.read_at.elapsed() <= self.max_age => Some(e.file.clone()),
            Some(_) => {
                answers.pop(digest);
                None
            }
            None => None,
        }
    }

    /// Stores an answer read at `generation`, unless something was invalidated since.
    fn put(&self, generation: u64, digest: &Digest, file: Option<Arc<StoredFile>>, read_at: Instant) {
        let mut answers = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            answers.put(digest.clone(), Entry { file, read_at });
        }
    }

    fn forget(&self, digests: &[Digest]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.lock();
        for d in digests {
            answers.pop(d);
        }
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.lock().clear();
    }

    /// Turns the cache on or off; either way nothing cached before is kept.
    fn set_active(&self, on: bool) {
        self.forget_all();
        self.active.store(on, Ordering::SeqCst);
    }
}

impl Lookup {
    /// The lookup for the database at `url` (`pool` is its sqlx pool).
    pub(super) fn new(url: &str, pool: &sqlx::AnyPool, capacity: usize, max_age: Duration) -> anyhow::Result<Self> {
        let source = if url.starts_with("sqlite:") {
            SqliteReader::for_url(url).map_or_else(|| Source::Pool(pool.clone()), Source::Sqlite)
        } else {
            let options = PgConnectOptions::from_str(url)?;
            let lookups = PgPoolOptions::new()
                .max_connections(PG_LOOKUP_CONNECTIONS)
                .acquire_timeout(super::ACQUIRE_TIMEOUT)
                .connect_lazy_with(options.clone());
            let listener_name = format!("{LISTENER_APPLICATION_NAME} {}", uuid::Uuid::new_v4().simple());
            let listener = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(super::ACQUIRE_TIMEOUT)
                .connect_lazy_with(options.application_name(&listener_name));
            Source::Postgres { lookups, listener, listener_name }
        };
        // On PostgreSQL the cache starts off: it is turned on once the listener listens.
        let active = !matches!(source, Source::Postgres { .. });
        let cache = NonZeroUsize::new(capacity).map(|n| {
            let cache = Cache {
                answers: Mutex::new(LruCache::new(n)),
                generation: AtomicU64::new(0),
                active: AtomicBool::new(false),
                max_age,
            };
            cache.set_active(active);
            Arc::new(cache)
        });
        Ok(Self { source, cache })
    }

    /// The file with this digest and its instances (regions sorted).
    pub(super) async fn file(&self, digest: &Digest) -> Result<Option<Arc<StoredFile>>> {
        let Some(cache) = self.cache.as_deref().filter(|c| c.active.load(Ordering::SeqCst)) else {
            return Ok(self.read(digest).await?.map(Arc::new));
        };
        let generation = cache.generation.load(Ordering::SeqCst);
        if let Some(hit) = cache.get(digest) {
            return Ok(hit);
        }
        let read_at = Instant::now();
        let found = self.read(digest).await?.map(Arc::new);
        cache.put(generation, digest, found.clone(), read_at);
        Ok(found)
    }

    async fn read(&self, digest: &Digest) -> Result<Option<StoredFile>> {
        match &self.source {
            Source::Sqlite(reader) => reader.file(digest),
            Source::Postgres { lookups, .. } => {
                let rows: Vec<LookupRow> = sqlx::query_as(FILE_QUERY).bind(digest.as_str()).fetch_all(lookups).await?;
                LookupRow::file(digest, &rows)
            }
            Source::Pool(pool) => {
                let rows = sqlx::query(FILE_QUERY).bind(digest.as_str()).fetch_all(pool).await?;
                files_from_rows(digest, &rows)
            }
        }
    }

    /// A new invalidation for a write.
    pub(super) fn invalidation(&self) -> Invalidation {
        Invalidation { cache: self.cache.clone(), digests: Vec::new() }
    }

    /// Drops every cached answer.
    pub(super) fn forget_all(&self) {
        if let Some(cache) = &self.cache {
            cache.forget_all();
        }
    }

    /// Whether lookups may be answered from memory now.
    pub(super) fn cache_active(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| c.active.load(Ordering::SeqCst))
    }

    /// Idle and busy connections of the PostgreSQL lookup pool.
    pub(super) fn pool_usage(&self) -> Option<(&'static str, u32, u32)> {
        let Source::Postgres { lookups, .. } = &self.source else { return None };
        let idle = lookups.num_idle() as u32;
        Some(("lookup", idle, lookups.size().saturating_sub(idle)))
    }

    /// The `application_name` of this process's listener connection (PostgreSQL).
    pub(super) fn listener_name(&self) -> Option<&str> {
        match &self.source {
            Source::Postgres { listener_name, .. } => Some(listener_name),
            _ => None,
        }
    }

    /// Listens for changes made by any replica and drops their cached answers, reconnecting
    /// with backoff whenever the connection is lost; the cache is bypassed while it is. Never
    /// returns on PostgreSQL with a cache; returns at once otherwise (nothing to follow).
    pub(super) async fn follow_changes(&self) {
        let (Source::Postgres { listener, .. }, Some(cache)) = (&self.source, &self.cache) else { return };
        let mut wait = RELISTEN_FIRST;
        loop {
            let listened = listen(listener, cache).await;
            cache.set_active(false);
            match listened {
                Ok(()) => {}
                Err((was_listening, e)) => {
                    tracing::warn!(error = %e, "change listener lost; download lookups read the database until it is back");
                    if was_listening {
                        wait = RELISTEN_FIRST;
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RELISTEN_MAX);
        }
    }
}

/// Listens until the connection fails; the error says whether it had been listening.
async fn listen(pool: &PgPool, cache: &Cache) -> std::result::Result<(), (bool, sqlx::Error)> {
    let mut listener = PgListener::connect_with(pool).await.map_err(|e| (false, e))?;
    listener.listen(CHANNEL).await.map_err(|e| (false, e))?;
    cache.set_active(true);
    tracing::info!("change listener connected; download lookups are cached again");
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match Digest::parse(n.payload()) {
                Ok(digest) => cache.forget(&[digest]),
                Err(_) => cache.forget_all(),
            },
            Ok(None) => return Err((true, sqlx::Error::Protocol("the listener's connection was closed".into()))),
            Err(e) => return Err((true, e)),
        }
    }
}

/// One row of [`FILE_QUERY`] through the PostgreSQL driver.
#[derive(Debug, sqlx::FromRow)]
struct LookupRow {
    id: i64,
    size: i64,
    visibility: String,
    region: Option<String>,
}

impl LookupRow {
    fn file(digest: &Digest, rows: &[Self]) -> Result<Option<StoredFile>> {
        let Some(first) = rows.first() else { return Ok(None) };
        Ok(Some(StoredFile {
            id: first.id,
            digest: digest.clone(),
            size: u64::try_from(first.size).map_err(|_| corrupt("size"))?,
            visibility: first.visibility.parse().map_err(|_| corrupt("visibility"))?,
            instances: rows.iter().filter_map(|r| r.region.clone()).collect(),
        }))
    }
}

/// Read-only connections to one SQLite file, opened on demand. A connection is taken for one
/// synchronous query and put back, so there are never more than the threads that query.
#[derive(Debug)]
struct SqliteReader {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    /// A reader for the database sqlx opens at `url`, or `None` for an in-memory database
    /// (another connection would see another, empty database).
    fn for_url(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Some(Self { path: path.to_owned(), idle: Mutex::new(Vec::new()) })
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        Ok(conn)
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        // A connection whose query failed is dropped rather than reused.
        if out.is_ok() {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
        out
    }

    fn file(&self, digest: &Digest) -> Result<Option<StoredFile>> {
        let rows = self.with_conn(|conn| {
            // SQLite takes `$1` as the first parameter, so both drivers share the query.
            let mut stmt = conn.prepare_cached(FILE_QUERY)?;
            let rows = stmt.query_map([digest.as_str()], |r| {
                Ok(LookupRow {
                    id: r.get("id")?,
                    size: r.get("size")?,
                    visibility: r.get("visibility")?,
                    region: r.get("region")?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        LookupRow::file(digest, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, test_db};
    use tooltool_proto::{Algorithm, FileName, UploadFile, Visibility};

    #[test]
    fn reads_the_file_sqlx_opens_and_not_in_memory_databases() {
        let path = |url: &str| SqliteReader::for_url(url).map(|r| r.path);
        assert_eq!(path("sqlite://data/tooltool.db?mode=rwc").as_deref(), Some("data/tooltool.db"));
        assert_eq!(path("sqlite:///abs/t.db").as_deref(), Some("/abs/t.db"));
        assert_eq!(path("sqlite:t.db").as_deref(), Some("t.db"));
        assert_eq!(path("sqlite::memory:"), None);
        assert_eq!(path("sqlite://:memory:?cache=shared"), None);
        assert_eq!(path("postgres://u@h/db"), None);
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&c.to_string().repeat(128)).unwrap()
    }

    async fn exec(db: &Db, sql: String) {
        sqlx::query(&sql).execute(&db.write).await.unwrap();
    }

    /// A 1-byte internal file of digest `c…c`, inserted behind the Db's back.
    async fn insert_internal(db: &Db, c: char) {
        exec(
            db,
            format!("INSERT INTO files (digest, size, visibility, created) VALUES ('{}', 1, 'internal', 0)", digest(c)),
        )
        .await;
    }

    /// The inline SQLite read answers exactly what the pool answers, and sees each commit at once.
    #[tokio::test]
    async fn answers_like_the_pool_and_sees_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = test_db(dir.path(), 0).await;
        assert!(matches!(db.lookup.source, Source::Sqlite(_)), "a file database is read inline");
        let same = |d: Digest| {
            let db = db.clone();
            async move {
                let (a, b) = (db.file(&d).await.unwrap(), db.file_uncached(&d).await.unwrap());
                assert_eq!(a.as_deref(), b.as_ref());
                a
            }
        };
        assert_eq!(same(digest('a')).await, None);
        let big = 5u64 << 30;
        exec(
            &db,
            format!(
                "INSERT INTO files (digest, size, visibility, created) VALUES ('{}', {big}, 'internal', 0)",
                digest('a')
            ),
        )
        .await;
        let f = same(digest('a')).await.unwrap();
        assert_eq!((f.size, f.visibility, f.instances.len()), (big, Visibility::Internal, 0));
        for region in ["us-west-2", "us-east-1"] {
            exec(
                &db,
                format!("INSERT INTO file_instances (file_id, region, created) VALUES ({}, '{region}', 0)", f.id),
            )
            .await;
        }
        exec(&db, format!("UPDATE files SET visibility = 'public' WHERE id = {}", f.id)).await;
        let f = same(digest('a')).await.unwrap();
        assert_eq!(f.visibility, Visibility::Public);
        assert_eq!(f.instances, ["us-east-1", "us-west-2"]);
        exec(&db, format!("DELETE FROM file_instances WHERE file_id = {}", f.id)).await;
        assert!(same(digest('a')).await.unwrap().instances.is_empty());
        assert_eq!(same(digest('b')).await, None);
    }

    /// With the cache on, a write that bypasses the Db is not seen (the cache answers), and
    /// every write through the Db is seen by the very next lookup.
    #[tokio::test]
    async fn cached_answers_are_dropped_by_every_write_through_the_db() {
        let dir = tempfile::tempdir().unwrap();
        let db = test_db(dir.path(), 100).await;
        assert_eq!(db.file(&digest('c')).await.unwrap(), None, "a miss is cached too");

        let files = std::collections::BTreeMap::from([(
            FileName::parse("c.bin").unwrap(),
            UploadFile {
                size: 3,
                digest: digest('c'),
                algorithm: Algorithm::Sha512,
                visibility: Visibility::Internal,
                parts: false,
            },
        )]);
        db.create_batch("me", "m", &files, "local", 0, 10).await.unwrap();
        let f = db.file(&digest('c')).await.unwrap().expect("create_batch dropped the cached miss");
        assert_eq!((f.visibility, f.instances.len()), (Visibility::Internal, 0));

        exec(&db, "UPDATE files SET visibility = 'public'".into()).await;
        assert_eq!(db.file(&digest('c')).await.unwrap().unwrap().visibility, Visibility::Internal, "served cached");

        db.set_visibility(&digest('c'), Visibility::Internal, "t").await.unwrap();
        db.mark_verified(&f, "local", &"0".repeat(64), "t", 1).await.unwrap();
        assert_eq!(db.file(&digest('c')).await.unwrap().unwrap().instances, ["local"]);
        db.set_visibility(&digest('c'), Visibility::Public, "t").await.unwrap();
        assert_eq!(db.file(&digest('c')).await.unwrap().unwrap().visibility, Visibility::Public);
        db.remove_instances(&digest('c'), "t").await.unwrap();
        assert!(db.file(&digest('c')).await.unwrap().unwrap().instances.is_empty());
    }

    /// A write only drops the digests it touched; other answers stay cached.
    #[tokio::test]
    async fn a_write_drops_only_what_it_touched() {
        let dir = tempfile::tempdir().unwrap();
        let db = test_db(dir.path(), 100).await;
        for c in ['e', 'f'] {
            insert_internal(&db, c).await;
            db.file(&digest(c)).await.unwrap();
        }
        exec(&db, "UPDATE files SET visibility = 'public'".into()).await;
        db.set_visibility(&digest('e'), Visibility::Public, "t").await.unwrap();
        assert_eq!(db.file(&digest('e')).await.unwrap().unwrap().visibility, Visibility::Public);
        assert_eq!(db.file(&digest('f')).await.unwrap().unwrap().visibility, Visibility::Internal, "still cached");
    }

    /// A write that ends without a commit (an error, a cancelled request) still drops what it
    /// touched: the invalidation runs when the write is dropped.
    #[tokio::test]
    async fn a_write_dropped_without_commit_still_clears_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let db = test_db(dir.path(), 100).await;
        insert_internal(&db, 'd').await;
        assert_eq!(db.file(&digest('d')).await.unwrap().unwrap().visibility, Visibility::Internal);
        exec(&db, "UPDATE files SET visibility = 'public'".into()).await;
        assert_eq!(db.file(&digest('d')).await.unwrap().unwrap().visibility, Visibility::Internal, "served cached");
        let mut write = db.write_files().await.unwrap();
        write.set_visibility(&digest('d'), Visibility::Internal, "t").await.unwrap();
        drop(write);
        assert_eq!(
            db.file(&digest('d')).await.unwrap().unwrap().visibility,
            Visibility::Public,
            "rolled back, re-read"
        );
    }

    /// A full cache drops its least recently used answer, and keeps the ones in use.
    #[tokio::test]
    async fn a_full_cache_evicts_the_least_recently_used_answer() {
        let dir = tempfile::tempdir().unwrap();
        let db = test_db(dir.path(), 2).await;
        for c in ['a', 'b', 'c'] {
            insert_internal(&db, c).await;
        }
        let visibility = |c| {
            let db = db.clone();
            async move { db.file(&digest(c)).await.unwrap().unwrap().visibility }
        };
        visibility('a').await;
        visibility('b').await;
        visibility('a').await; // b is now the least recently used
        exec(&db, "UPDATE files SET visibility = 'public'".into()).await;
        assert_eq!(visibility('c').await, Visibility::Public, "read from the database, evicting b");
        assert_eq!(visibility('a').await, Visibility::Internal, "a stayed cached");
        assert_eq!(visibility('b').await, Visibility::Public, "b was evicted, so read again");
    }

    /// An answer older than the maximum age is read again.
    #[tokio::test]
    async fn answers_older_than_the_max_age_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url, 100, Duration::from_millis(200)).await.unwrap();
        db.migrate().await.unwrap();
        insert_internal(&db, '9').await;
        assert_eq!(db.file(&digest('9')).await.unwrap().unwrap().visibility, Visibility::Internal);
        exec(&db, "UPDATE files SET visibility = 'public'".into()).await;
        assert_eq!(db.file(&digest('9')).await.unwrap().unwrap().visibility, Visibility::Internal, "served cached");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(db.file(&digest('9')).await.unwrap().unwrap().visibility, Visibility::Public);
    }
}
