//! The download path's lookup on SQLite, without sqlx.
//!
//! sqlx runs every SQLite connection on a worker thread of its own and hands each query and
//! each row across channels (and through the `Any` row conversion). For the one query of the
//! redirect path that cost more than the whole rest of the request: 12–15k req/s against
//! 54k for a route with no query. This reader runs that query inline on the calling thread
//! instead, with a prepared statement on a read-only connection, and answers in a few
//! microseconds from SQLite's cache.
//!
//! It blocks the calling worker for one indexed point lookup: microseconds when the pages are
//! in memory (mmap), one disk read when they are not. In WAL mode readers never wait for the
//! writer, and a short busy timeout bounds the rare wait (WAL recovery after a crash). Each statement runs
//! in its own read transaction, so it sees every commit made before it started: the fast path
//! is as fresh as the pool.
//!
//! In front of it sits a bounded cache of answers. It is sound because on SQLite this process
//! is the only writer of files and instances: every write to them holds a [`WriteGuard`], and
//! dropping the guard (after the commit, on an error, or when the write is cancelled) clears
//! the cache and bumps a generation, so that an answer read before the write cannot be stored
//! after it. The cache is never used on PostgreSQL, where other replicas write.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use rusqlite::{Connection, OpenFlags};

use super::{DbError, StoredFile};
use tooltool_proto::Digest;

/// Bytes of the database file SQLite may map into memory instead of copying pages: lookups in
/// a large catalogue read the index straight from the page cache.
const MMAP_BYTES: i64 = 1 << 30;
/// Page cache per connection, in KiB (negative in `PRAGMA cache_size` means KiB).
const CACHE_KIB: i64 = 16 * 1024;
/// Longest wait for a lock a reader may have to take.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

const FILE_QUERY: &str = "SELECT f.id, f.size, f.visibility, i.region FROM files f \
     LEFT JOIN file_instances i ON i.file_id = f.id WHERE f.digest = ?1 ORDER BY i.region";

/// Read-only connections to one SQLite file, opened on demand. A connection is taken for one
/// synchronous query and put back, so there are never more than the threads that query.
#[derive(Debug)]
pub struct FastReader {
    path: String,
    idle: Mutex<Vec<Connection>>,
    generation: AtomicU64,
    /// The cached answers, least recently used out first; `None` when the cache is off.
    answers: Option<Mutex<LruCache<Digest, Option<StoredFile>>>>,
}

/// Held across a write to files or instances; clears the cache when dropped.
#[must_use]
pub struct WriteGuard(pub(super) Option<Arc<FastReader>>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some(reader) = &self.0 {
            reader.generation.fetch_add(1, Ordering::SeqCst);
            if let Some(answers) = &reader.answers {
                answers.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
        }
    }
}

impl FastReader {
    /// A reader for the database sqlx opens at `url`, or `None` for an in-memory database
    /// (another connection would see another, empty database).
    pub fn for_url(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Some(Self { path: path.to_owned(), idle: Mutex::new(Vec::new()), generation: AtomicU64::new(0), answers: None })
    }

    /// Keeps up to `capacity` answers (0: none).
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.answers = NonZeroUsize::new(capacity).map(|n| Mutex::new(LruCache::new(n)));
        self
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

    /// The file with this digest and its instances (regions sorted), from the cache when it
    /// holds the answer.
    pub fn file(&self, digest: &Digest) -> Result<Option<StoredFile>, DbError> {
        let Some(answers) = &self.answers else { return self.query(digest) };
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(hit) = answers.lock().unwrap_or_else(|e| e.into_inner()).get(digest).cloned() {
            return Ok(hit);
        }
        let found = self.query(digest)?;
        let mut answers = answers.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            answers.put(digest.clone(), found.clone());
        }
        Ok(found)
    }

    fn query(&self, digest: &Digest) -> Result<Option<StoredFile>, DbError> {
        let rows = self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(FILE_QUERY)?;
            let rows = stmt.query_map([digest.as_str()], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let Some((id, size, visibility, _)) = rows.first() else { return Ok(None) };
        Ok(Some(StoredFile {
            id: *id,
            digest: digest.clone(),
            size: u64::try_from(*size).map_err(|_| super::corrupt("size"))?,
            visibility: visibility.parse().map_err(|_| super::corrupt("visibility"))?,
            instances: rows.iter().filter_map(|r| r.3.clone()).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use tooltool_proto::Visibility;

    #[test]
    fn reads_the_file_sqlx_opens_and_not_in_memory_databases() {
        let path = |url: &str| FastReader::for_url(url).map(|r| r.path);
        assert_eq!(path("sqlite://data/tooltool.db?mode=rwc").as_deref(), Some("data/tooltool.db"));
        assert_eq!(path("sqlite:///abs/t.db").as_deref(), Some("/abs/t.db"));
        assert_eq!(path("sqlite:t.db").as_deref(), Some("t.db"));
        assert_eq!(path("sqlite::memory:"), None);
        assert_eq!(path("sqlite://:memory:?cache=shared"), None);
        assert_eq!(path("postgres://u@h/db"), None);
    }

    /// A migrated SQLite database in `dir`, caching `cache` lookups.
    async fn migrated_db(dir: &std::path::Path, cache: usize) -> Db {
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let db = Db::connect(&url).await.unwrap().with_lookup_cache(cache);
        db.migrate().await.unwrap();
        db
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&c.to_string().repeat(128)).unwrap()
    }

    /// The fast path answers exactly what the pool answers, and sees each commit at once.
    #[tokio::test]
    async fn answers_like_the_pool_and_sees_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated_db(dir.path(), 0).await;
        let fast = db.fast.clone().expect("a file database gets the fast path");
        let same = |d: Digest| {
            let (db, fast) = (db.clone(), fast.clone());
            async move {
                let (a, b) = (fast.file(&d).unwrap(), db.file_through_pool(&d).await.unwrap());
                assert_eq!(a, b);
                a
            }
        };
        assert_eq!(same(digest('a')).await, None);

        let exec = |sql: String| {
            let db = db.clone();
            async move { sqlx::query(&sql).execute(&db.write).await.unwrap() }
        };
        let big = 5u64 << 30;
        exec(format!(
            "INSERT INTO files (digest, size, visibility, created) VALUES ('{}', {big}, 'internal', 0)",
            digest('a')
        ))
        .await;
        let f = same(digest('a')).await.unwrap();
        assert_eq!((f.size, f.visibility, f.instances.len()), (big, Visibility::Internal, 0));

        for region in ["us-west-2", "us-east-1"] {
            exec(format!("INSERT INTO file_instances (file_id, region, created) VALUES ({}, '{region}', 0)", f.id))
                .await;
        }
        exec(format!("UPDATE files SET visibility = 'public' WHERE id = {}", f.id)).await;
        let f = same(digest('a')).await.unwrap();
        assert_eq!(f.visibility, Visibility::Public);
        assert_eq!(f.instances, ["us-east-1", "us-west-2"]);

        exec(format!("DELETE FROM file_instances WHERE file_id = {}", f.id)).await;
        assert!(same(digest('a')).await.unwrap().instances.is_empty());
        assert_eq!(same(digest('b')).await, None);
    }

    /// With the cache on, a write that bypasses the Db is not seen (the cache answers), and
    /// every write through the Db is seen by the very next lookup.
    #[tokio::test]
    async fn cached_answers_are_dropped_by_every_write_through_the_db() {
        use std::collections::BTreeMap;
        use tooltool_proto::{Algorithm, FileName, UploadFile};

        let dir = tempfile::tempdir().unwrap();
        let db = migrated_db(dir.path(), 100).await;
        assert_eq!(db.file(&digest('c')).await.unwrap(), None, "a miss is cached too");

        let files = BTreeMap::from([(
            FileName::parse("c.bin").unwrap(),
            UploadFile { size: 3, digest: digest('c'), algorithm: Algorithm::Sha512, visibility: Visibility::Internal },
        )]);
        db.create_batch("me", "m", &files, "local", 0, 10).await.unwrap();
        let f = db.file(&digest('c')).await.unwrap().expect("create_batch cleared the cached miss");
        assert_eq!((f.visibility, f.instances.len()), (Visibility::Internal, 0));

        sqlx::query("UPDATE files SET visibility = 'public'").execute(&db.write).await.unwrap();
        assert_eq!(db.file(&digest('c')).await.unwrap().unwrap().visibility, Visibility::Internal, "served cached");

        db.set_visibility(f.id, Visibility::Internal).await.unwrap();
        db.mark_verified(f.id, "local", 1).await.unwrap();
        assert_eq!(db.file(&digest('c')).await.unwrap().unwrap().instances, ["local"]);
        db.set_visibility(f.id, Visibility::Public).await.unwrap();
        assert_eq!(db.file(&digest('c')).await.unwrap().unwrap().visibility, Visibility::Public);
        db.remove_instances(f.id).await.unwrap();
        assert!(db.file(&digest('c')).await.unwrap().unwrap().instances.is_empty());
    }

    /// A write cancelled half way still clears the cache (the guard runs on drop).
    #[tokio::test]
    async fn a_cancelled_write_still_clears_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated_db(dir.path(), 100).await;
        assert_eq!(db.file(&digest('d')).await.unwrap(), None);
        sqlx::query(&format!(
            "INSERT INTO files (digest, size, visibility, created) VALUES ('{}', 1, 'public', 0)",
            digest('d')
        ))
        .execute(&db.write)
        .await
        .unwrap();
        assert_eq!(db.file(&digest('d')).await.unwrap(), None, "served cached");
        // Polled once, then dropped: the write may or may not have happened, the cache is gone.
        {
            let write = std::pin::pin!(db.set_visibility(1, Visibility::Public));
            let _ = futures_util::poll!(write);
        }
        assert!(db.file(&digest('d')).await.unwrap().is_some());
    }

    /// A full cache drops its least recently used answer, and keeps the ones in use.
    #[tokio::test]
    async fn a_full_cache_evicts_the_least_recently_used_answer() {
        let dir = tempfile::tempdir().unwrap();
        let db = migrated_db(dir.path(), 2).await;
        for c in ['a', 'b', 'c'] {
            let sql = format!(
                "INSERT INTO files (digest, size, visibility, created) VALUES ('{}', 1, 'internal', 0)",
                digest(c)
            );
            sqlx::query(&sql).execute(&db.write).await.unwrap();
        }
        let visibility = |c| {
            let db = db.clone();
            async move { db.file(&digest(c)).await.unwrap().unwrap().visibility }
        };
        visibility('a').await;
        visibility('b').await;
        visibility('a').await; // b is now the least recently used
        sqlx::query("UPDATE files SET visibility = 'public'").execute(&db.write).await.unwrap();
        assert_eq!(visibility('c').await, Visibility::Public, "read from the database, evicting b");
        assert_eq!(visibility('a').await, Visibility::Internal, "a stayed cached");
        assert_eq!(visibility('b').await, Visibility::Public, "b was evicted, so read again");
    }
}
