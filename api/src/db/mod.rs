//! The metadata store: files, their verified instances per region, upload batches and pending
//! uploads, on SQLite (embedded default) or PostgreSQL (production).
//!
//! One SQL dialect story: runtime queries through sqlx's `Any` driver, written in the subset
//! both databases share (`$N` placeholders, `RETURNING`, `ON CONFLICT`, `LIKE … ESCAPE`). The
//! only per-backend SQL is the schema, under `migrations/sqlite` and `migrations/postgres`.
//! Database errors are translated here: a constraint conflict becomes [`DbError::Conflict`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
mod clients;
mod fast_read;
mod history;

pub use clients::{AuditFilter, ClientRecord};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use tooltool_proto::{Algorithm, Batch, BatchFile, Digest, FileInfo, FileName, UploadFile, Visibility};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// Most rows a search returns.
pub const SEARCH_LIMIT: i64 = 500;

/// A metadata-store failure, by meaning.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The request contradicts what is recorded (answered as 400).
    #[error("{0}")]
    Conflict(String),
    /// Anything else (answered as an opaque 500).
    #[error(transparent)]
    Other(#[from] sqlx::Error),
    /// A failure of the SQLite fast read path (answered as an opaque 500).
    #[error(transparent)]
    FastRead(#[from] rusqlite::Error),
}

type Result<T, E = DbError> = std::result::Result<T, E>;

/// A file record with its verified instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Row id.
    pub id: i64,
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Visibility.
    pub visibility: Visibility,
    /// Regions holding a verified copy, sorted.
    pub instances: Vec<String>,
}

impl StoredFile {
    /// The wire form.
    pub fn info(&self) -> FileInfo {
        FileInfo {
            size: self.size,
            digest: self.digest.clone(),
            algorithm: Algorithm::Sha512,
            visibility: self.visibility,
            has_instances: !self.instances.is_empty(),
            instances: self.instances.clone(),
        }
    }
}

/// An upload URL handed out whose bytes are not verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Row id.
    pub id: i64,
    /// The file it is for.
    pub file_id: i64,
    /// The region whose store holds the staged object.
    pub region: String,
    /// The staged object's key (below the store's staging prefix).
    pub staging_key: String,
    /// When the upload URL expires (unix seconds).
    pub expires: i64,
}

/// A batch just recorded, and the staging keys of the files that still need bytes.
#[derive(Debug)]
pub struct CreatedBatch {
    /// The batch, without upload URLs.
    pub batch: Batch,
    /// Digest → staging key, for each file with no verified copy.
    pub uploads: HashMap<Digest, String>,
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
    backend: Backend,
    /// SQLite only: the download path's lookup without sqlx.
    fast: Option<std::sync::Arc<fast_read::FastReader>>,
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let opts = || AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
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
        let fast = match backend {
            Backend::Sqlite => fast_read::FastReader::for_url(url).map(std::sync::Arc::new),
            Backend::Postgres => None,
        };
        Ok(Self { read, write, backend, fast })
    }

    /// Connections of each pool: `(name, idle, in use)`.
    pub fn pool_usage(&self) -> Vec<(&'static str, u32, u32)> {
        let usage = |p: &AnyPool| (p.num_idle() as u32, p.size().saturating_sub(p.num_idle() as u32));
        match self.backend {
            Backend::Sqlite => {
                let (ri, ru) = usage(&self.read);
                let (wi, wu) = usage(&self.write);
                vec![("read", ri, ru), ("write", wi, wu)]
            }
            Backend::Postgres => {
                let (i, u) = usage(&self.read);
                vec![("main", i, u)]
            }
        }
    }

    /// Caches up to `entries` download lookups (SQLite only; 0 turns it off).
    pub fn with_lookup_cache(mut self, entries: usize) -> Self {
        if let Some(fast) = self.fast.take() {
            let fast = std::sync::Arc::try_unwrap(fast).expect("set up before the Db is shared");
            self.fast = Some(std::sync::Arc::new(fast.with_cache(entries)));
        }
        self
    }

    /// To hold across a write to files or instances: see [`fast_read`].
    fn changing_files(&self) -> fast_read::WriteGuard {
        fast_read::WriteGuard(self.fast.clone())
    }

    /// The database kind.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let _changing = self.changing_files();
        self.migrator().run(&self.write).await.context("migrations failed")
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

    /// A trivial query, for the heartbeat.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// The file with this digest and its instances.
    pub async fn file(&self, digest: &Digest) -> Result<Option<StoredFile>> {
        match &self.fast {
            Some(fast) => fast.file(digest),
            None => self.file_through_pool(digest).await,
        }
    }

    async fn file_through_pool(&self, digest: &Digest) -> Result<Option<StoredFile>> {
        let rows = sqlx::query(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f \
             LEFT JOIN file_instances i ON i.file_id = f.id WHERE f.digest = $1 ORDER BY i.region",
        )
        .bind(digest.as_str())
        .fetch_all(&self.read)
        .await?;
        Ok(files_from_rows(&rows)?.into_iter().next())
    }

    /// Records an upload batch: creates unknown files, checks known ones against the
    /// declaration, and opens a pending upload for each file without a verified copy. Nothing
    /// is recorded if any file conflicts.
    pub async fn create_batch(
        &self,
        author: &str,
        message: &str,
        files: &BTreeMap<FileName, UploadFile>,
        region: &str,
        now: i64,
        upload_expires: i64,
    ) -> Result<CreatedBatch> {
        let _changing = self.changing_files();
        let mut tx = self.write.begin().await?;
        let mut ids: HashMap<Digest, (i64, bool)> = HashMap::new();
        let mut uploads = HashMap::new();
        for (name, f) in files {
            if ids.contains_key(&f.digest) {
                continue;
            }
            let size = i64::try_from(f.size).map_err(|_| DbError::Conflict(format!("{name}: size is too large")))?;
            sqlx::query(
                "INSERT INTO files (digest, size, visibility, created) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(f.digest.as_str())
            .bind(size)
            .bind(f.visibility.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT f.id, f.size, f.visibility, \
                 (SELECT COUNT(*) FROM file_instances i WHERE i.file_id = f.id) AS instances \
                 FROM files f WHERE f.digest = $1",
            )
            .bind(f.digest.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let (id, stored_size, stored_vis, instances): (i64, i64, String, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            if stored_size != size {
                return Err(DbError::Conflict(format!(
                    "{name}: declared size {size} differs from the size {stored_size} of the stored file with this digest"
                )));
            }
            if stored_vis != f.visibility.as_str() {
                return Err(DbError::Conflict(format!(
                    "{name}: declared visibility {} differs from the stored file's visibility {stored_vis}",
                    f.visibility
                )));
            }
            ids.insert(f.digest.clone(), (id, instances > 0));
            if instances == 0 {
                // A random key, unrelated to the digest: short enough for any store's object names.
                let key = uuid::Uuid::new_v4().simple().to_string();
                sqlx::query(
                    "INSERT INTO pending_uploads (file_id, region, staging_key, expires) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(region)
                .bind(&key)
                .bind(upload_expires)
                .execute(&mut *tx)
                .await?;
                uploads.insert(f.digest.clone(), key);
            }
        }
        let batch_id: i64 =
            sqlx::query("INSERT INTO batches (author, message, uploaded) VALUES ($1, $2, $3) RETURNING id")
                .bind(author)
                .bind(message)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        for (name, f) in files {
            sqlx::query("INSERT INTO batch_files (batch_id, file_id, filename) VALUES ($1, $2, $3)")
                .bind(batch_id)
                .bind(ids[&f.digest].0)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let batch = Batch {
            id: batch_id,
            author: author.to_owned(),
            message: message.to_owned(),
            uploaded: rfc3339(now),
            files: files
                .iter()
                .map(|(name, f)| {
                    let bf = BatchFile {
                        size: f.size,
                        digest: f.digest.clone(),
                        algorithm: Algorithm::Sha512,
                        visibility: f.visibility,
                        put_url: None,
                    };
                    (name.to_string(), bf)
                })
                .collect(),
        };
        Ok(CreatedBatch { batch, uploads })
    }

    /// One batch by id.
    pub async fn batch(&self, id: i64) -> Result<Option<Batch>> {
        let rows = sqlx::query(&format!("{BATCH_SELECT} WHERE b.id = $1 ORDER BY bf.filename"))
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        Ok(batches_from_rows(&rows)?.into_iter().next())
    }

    /// Batches whose author or message contains `q` (case-insensitive), newest first.
    pub async fn search_batches(&self, q: &str) -> Result<Vec<Batch>> {
        let rows = sqlx::query(&format!(
            "{BATCH_SELECT} WHERE b.id IN (SELECT id FROM batches \
             WHERE LOWER(author) LIKE $1 ESCAPE '\\' OR LOWER(message) LIKE $1 ESCAPE '\\' \
             ORDER BY id DESC LIMIT {SEARCH_LIMIT}) ORDER BY b.id DESC, bf.filename"
        ))
        .bind(contains_pattern(q))
        .fetch_all(&self.read)
        .await?;
        batches_from_rows(&rows)
    }

    /// Files whose name in any batch contains `q` (case-insensitive) or whose digest starts
    /// with it.
    pub async fn search_files(&self, q: &str) -> Result<Vec<StoredFile>> {
        let rows = sqlx::query(&format!(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f \
             LEFT JOIN file_instances i ON i.file_id = f.id \
             WHERE f.id IN (SELECT f2.id FROM files f2 WHERE f2.digest LIKE $2 ESCAPE '\\' \
                 OR f2.id IN (SELECT bf.file_id FROM batch_files bf WHERE LOWER(bf.filename) LIKE $1 ESCAPE '\\') \
                 ORDER BY f2.id LIMIT {SEARCH_LIMIT}) \
             ORDER BY f.id, i.region"
        ))
        .bind(contains_pattern(q))
        .bind(format!("{}%", escape_like(&q.to_lowercase())))
        .fetch_all(&self.read)
        .await?;
        files_from_rows(&rows)
    }

    /// Changes a file's visibility.
    pub async fn set_visibility(&self, file_id: i64, v: Visibility) -> Result<()> {
        let _changing = self.changing_files();
        sqlx::query("UPDATE files SET visibility = $1 WHERE id = $2")
            .bind(v.as_str())
            .bind(file_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Forgets every instance of a file; returns the regions that had one.
    pub async fn remove_instances(&self, file_id: i64) -> Result<Vec<String>> {
        let _changing = self.changing_files();
        let rows = sqlx::query("DELETE FROM file_instances WHERE file_id = $1 RETURNING region")
            .bind(file_id)
            .fetch_all(&self.write)
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(Into::into)).collect()
    }

    /// The pending uploads of a file, oldest first.
    pub async fn pending_uploads(&self, file_id: i64) -> Result<Vec<Pending>> {
        let rows = sqlx::query(&format!("{PENDING_SELECT} WHERE file_id = $1 ORDER BY id"))
            .bind(file_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(pending_from_row).collect()
    }

    /// Records a verified instance and closes every pending upload of the file; returns the
    /// closed ones so their staged objects can be removed.
    pub async fn mark_verified(&self, file_id: i64, region: &str, now: i64) -> Result<Vec<Pending>> {
        let _changing = self.changing_files();
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO file_instances (file_id, region, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(file_id)
            .bind(region)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "DELETE FROM pending_uploads WHERE file_id = $1 RETURNING id, file_id, region, staging_key, expires",
        )
        .bind(file_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(pending_from_row).collect()
    }

    /// Pending uploads whose URL expired before `before`.
    pub async fn expired_pending(&self, before: i64) -> Result<Vec<Pending>> {
        let rows = sqlx::query(&format!("{PENDING_SELECT} WHERE expires < $1 ORDER BY id LIMIT 1000"))
            .bind(before)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(pending_from_row).collect()
    }

    /// Forgets one pending upload.
    pub async fn delete_pending(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM pending_uploads WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(())
    }
}

const BATCH_SELECT: &str = "SELECT b.id, b.author, b.message, b.uploaded, bf.filename, f.digest, f.size, f.visibility \
     FROM batches b JOIN batch_files bf ON bf.batch_id = b.id JOIN files f ON f.id = bf.file_id";

const PENDING_SELECT: &str = "SELECT id, file_id, region, staging_key, expires FROM pending_uploads";

/// `%q%` for a case-insensitive LIKE, with the wildcards of `q` escaped.
fn contains_pattern(q: &str) -> String {
    format!("%{}%", escape_like(&q.to_lowercase()))
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-22T10:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn corrupt(what: &str) -> DbError {
    DbError::Other(sqlx::Error::Decode(format!("corrupt {what} in the database").into()))
}

fn parse_file_cols(row: &AnyRow) -> Result<(i64, Digest, u64, Visibility)> {
    let id: i64 = row.try_get(0)?;
    let digest = Digest::parse(&row.try_get::<String, _>(1)?).map_err(|_| corrupt("digest"))?;
    let size = u64::try_from(row.try_get::<i64, _>(2)?).map_err(|_| corrupt("size"))?;
    let visibility = row.try_get::<String, _>(3)?.parse().map_err(|_| corrupt("visibility"))?;
    Ok((id, digest, size, visibility))
}

/// Groups `(id, digest, size, visibility, region?)` rows, ordered by file, into files.
fn files_from_rows(rows: &[AnyRow]) -> Result<Vec<StoredFile>> {
    let mut out: Vec<StoredFile> = Vec::new();
    for row in rows {
        let (id, digest, size, visibility) = parse_file_cols(row)?;
        let region: Option<String> = row.try_get(4)?;
        if out.last().is_none_or(|f| f.id != id) {
            out.push(StoredFile { id, digest, size, visibility, instances: Vec::new() });
        }
        if let Some(r) = region {
            out.last_mut().expect("pushed above").instances.push(r);
        }
    }
    Ok(out)
}

/// Groups [`BATCH_SELECT`] rows, ordered by batch, into batches.
fn batches_from_rows(rows: &[AnyRow]) -> Result<Vec<Batch>> {
    let mut out: Vec<Batch> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        if out.last().is_none_or(|b| b.id != id) {
            out.push(Batch {
                id,
                author: row.try_get(1)?,
                message: row.try_get(2)?,
                uploaded: rfc3339(row.try_get(3)?),
                files: BTreeMap::new(),
            });
        }
        let filename: String = row.try_get(4)?;
        let digest = Digest::parse(&row.try_get::<String, _>(5)?).map_err(|_| corrupt("digest"))?;
        let size = u64::try_from(row.try_get::<i64, _>(6)?).map_err(|_| corrupt("size"))?;
        let visibility = row.try_get::<String, _>(7)?.parse().map_err(|_| corrupt("visibility"))?;
        let file = BatchFile { size, digest, algorithm: Algorithm::Sha512, visibility, put_url: None };
        out.last_mut().expect("pushed above").files.insert(filename, file);
    }
    Ok(out)
}

fn pending_from_row(row: &AnyRow) -> Result<Pending> {
    Ok(Pending {
        id: row.try_get(0)?,
        file_id: row.try_get(1)?,
        region: row.try_get(2)?,
        staging_key: row.try_get(3)?,
        expires: row.try_get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("GCC_13%"), "%gcc\\_13\\%%");
        assert_eq!(escape_like("a\\b"), "a\\\\b");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_341_600), "2026-11-22T10:00:00Z");
    }
}
