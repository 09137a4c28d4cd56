//! Tables `files` and `file_instances`: what is known about each digest, and which regions
//! hold a verified copy.
//!
//! Every write to these tables goes through a [`FileWrite`]: a transaction that, however it
//! ends (commit, error, or a cancelled request), drops the cached download lookups of the
//! digests it touched, and on PostgreSQL notifies every other replica at commit. There is no
//! other way to write them, so no writer can forget the cache.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::events::{NewEvent, Outbox};
use super::lookup::{self, Invalidation};
use super::{Backend, Db, Result, corrupt};
use tooltool_proto::{Digest, EventType, Visibility};

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

/// The columns [`files_from_rows`] reads, for one digest.
pub(super) const FILE_QUERY: &str = "SELECT f.id, f.size, f.visibility, i.region FROM files f \
     LEFT JOIN file_instances i ON i.file_id = f.id WHERE f.digest = $1 ORDER BY i.region";

/// A transaction that may write files and instances. Commit it with [`FileWrite::commit`];
/// dropped without, it rolls back. Either way the cached lookups of every digest it touched are
/// dropped when it ends. The events of its changes ([`FileWrite::record`]) are inserted in the
/// same transaction at commit, so they exist exactly when the changes do.
pub struct FileWrite {
    tx: Transaction<'static, Any>,
    backend: Backend,
    outbox: std::sync::Arc<Outbox>,
    events: Vec<NewEvent>,
    /// Lost copies this transaction repaired ([`FileWrite::repaired`]).
    repaired: u64,
    /// Declared after `tx`: fields drop in order, so the cache is cleared only after the
    /// transaction has committed or rolled back.
    touched: Invalidation,
}

impl Db {
    /// Starts a write to files and instances.
    pub async fn write_files(&self) -> Result<FileWrite> {
        let tx = self.write.begin().await?;
        Ok(FileWrite {
            tx,
            backend: self.backend,
            outbox: self.outbox.clone(),
            events: Vec::new(),
            repaired: 0,
            touched: self.lookup.invalidation(),
        })
    }

    /// The file with this digest and its instances: the download path's lookup (cached).
    pub async fn file(&self, digest: &Digest) -> Result<Option<std::sync::Arc<StoredFile>>> {
        self.lookup.file(digest).await
    }

    /// The same, always read through the pool (no cache).
    pub async fn file_uncached(&self, digest: &Digest) -> Result<Option<StoredFile>> {
        let rows = sqlx::query(FILE_QUERY).bind(digest.as_str()).fetch_all(&self.read).await?;
        files_from_rows(digest, &rows)
    }

    /// Declarations made before `before` that never had a verified copy and have no pending
    /// upload left: what the sweeper removes.
    pub async fn expired_declarations(&self, before: i64) -> Result<Vec<Digest>> {
        let rows = sqlx::query(
            "SELECT f.digest FROM files f WHERE f.verified IS NULL AND f.created < $1 \
             AND NOT EXISTS (SELECT 1 FROM file_instances i WHERE i.file_id = f.id) \
             AND NOT EXISTS (SELECT 1 FROM pending_uploads p WHERE p.file_id = f.id) ORDER BY f.id LIMIT 1000",
        )
        .bind(before)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Digest::parse(&r.try_get::<String, _>("digest")?).map_err(|_| corrupt("digest"))).collect()
    }

    /// Removes the declaration of a file that has no verified copy: its pending uploads when
    /// `with_pending`, then the file row with its names in batches, unless a copy or (without
    /// `with_pending`) a pending upload exists by then. Returns the pending uploads removed
    /// (their staged objects are the caller's to delete), or `None` if nothing was removed.
    pub async fn remove_declaration(&self, digest: &Digest, with_pending: bool) -> Result<Option<Vec<super::Pending>>> {
        let mut w = self.write_files().await?;
        w.touched.add(digest);
        let mut pending = Vec::new();
        if with_pending {
            let rows = sqlx::query(&format!(
                "DELETE FROM pending_uploads WHERE file_id = (SELECT id FROM files WHERE digest = $1) \
                 AND NOT EXISTS (SELECT 1 FROM file_instances i WHERE i.file_id = pending_uploads.file_id) \
                 RETURNING {}",
                super::pending::PENDING_COLUMNS
            ))
            .bind(digest.as_str())
            .fetch_all(&mut *w.tx)
            .await?;
            pending = rows.iter().map(super::pending::pending_from_row).collect::<Result<_>>()?;
        }
        let removed = sqlx::query(
            "DELETE FROM files WHERE digest = $1 \
             AND NOT EXISTS (SELECT 1 FROM file_instances i WHERE i.file_id = files.id) \
             AND NOT EXISTS (SELECT 1 FROM pending_uploads p WHERE p.file_id = files.id)",
        )
        .bind(digest.as_str())
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if removed == 0 {
            return Ok(None);
        }
        w.commit().await?;
        Ok(Some(pending))
    }

    /// Up to `limit` files holding a copy (in `region` when given), with row ids above `after`,
    /// by id; each with its instances (only `region`'s when given). For paging through every
    /// stored copy.
    pub async fn files_with_copies(&self, region: Option<&str>, after: i64, limit: i64) -> Result<Vec<StoredFile>> {
        let rows = sqlx::query(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f \
             JOIN file_instances i ON i.file_id = f.id \
             WHERE f.id IN (SELECT DISTINCT i2.file_id FROM file_instances i2 \
                 WHERE i2.file_id > $1 AND ($2 = '' OR i2.region = $2) ORDER BY i2.file_id LIMIT $3) \
             AND ($2 = '' OR i.region = $2) ORDER BY f.id, i.region",
        )
        .bind(after)
        .bind(region.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        many_files_from_rows(&rows)
    }

    /// Up to `limit` files with a copy and no sha256 yet, with row ids above `after`, by id;
    /// each with its instances. What `backfill-sha256` pages through.
    pub async fn files_without_sha256(&self, after: i64, limit: i64) -> Result<Vec<StoredFile>> {
        let rows = sqlx::query(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f \
             JOIN file_instances i ON i.file_id = f.id \
             WHERE f.id IN (SELECT f2.id FROM files f2 WHERE f2.sha256 IS NULL AND f2.id > $1 \
                 AND EXISTS (SELECT 1 FROM file_instances i2 WHERE i2.file_id = f2.id) ORDER BY f2.id LIMIT $2) \
             ORDER BY f.id, i.region",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        many_files_from_rows(&rows)
    }

    /// The recorded sha256 of a file (`None` until it is verified or backfilled).
    pub async fn sha256_of(&self, digest: &Digest) -> Result<Option<String>> {
        let row = sqlx::query("SELECT sha256 FROM files WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>("sha256")).transpose()?.flatten())
    }

    /// Changes a file's visibility; `actor` is recorded in its `file.visibility_changed` event
    /// (none when the visibility was already `v`).
    pub async fn set_visibility(&self, digest: &Digest, v: Visibility, actor: &str) -> Result<()> {
        let mut w = self.write_files().await?;
        w.set_visibility(digest, v, actor).await?;
        w.commit().await
    }

    /// Forgets every instance of a file; returns the regions that had one. `actor` is recorded
    /// in its `file.instances_deleted` event (none when there was no instance).
    pub async fn remove_instances(&self, digest: &Digest, actor: &str) -> Result<Vec<String>> {
        let mut w = self.write_files().await?;
        let regions = w.remove_instances(digest, actor).await?;
        w.commit().await?;
        Ok(regions)
    }
}

impl FileWrite {
    /// The transaction, for writes to other tables that must commit with these.
    pub(super) fn tx(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// The database kind, for the little SQL that differs.
    pub(super) fn backend(&self) -> Backend {
        self.backend
    }

    /// Records `digest` if unknown; returns its row `(id, size, visibility, instances)` as
    /// stored, which may predate this declaration.
    pub(super) async fn declare(
        &mut self,
        digest: &Digest,
        size: i64,
        visibility: Visibility,
        now: i64,
    ) -> Result<(i64, i64, String, i64)> {
        self.touched.add(digest);
        sqlx::query(
            "INSERT INTO files (digest, size, visibility, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(size)
        .bind(visibility.as_str())
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        let row = sqlx::query(
            "SELECT f.id, f.size, f.visibility, \
             (SELECT COUNT(*) FROM file_instances i WHERE i.file_id = f.id) AS instances \
             FROM files f WHERE f.digest = $1",
        )
        .bind(digest.as_str())
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((row.try_get("id")?, row.try_get("size")?, row.try_get("visibility")?, row.try_get("instances")?))
    }

    /// Records an event of this transaction's changes: it is inserted at commit, in the same
    /// transaction, and never if the transaction rolls back.
    pub fn record(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// The size and visibility of a file as this transaction sees it.
    async fn size_and_visibility(&mut self, digest: &Digest) -> Result<Option<(u64, Visibility)>> {
        let row = sqlx::query("SELECT size, visibility FROM files WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let size = u64::try_from(row.try_get::<i64, _>("size")?).map_err(|_| corrupt("size"))?;
        let visibility = row.try_get::<String, _>("visibility")?.parse().map_err(|_| corrupt("visibility"))?;
        Ok(Some((size, visibility)))
    }

    /// Changes a file's visibility, recording `file.visibility_changed` if it changed.
    pub async fn set_visibility(&mut self, digest: &Digest, v: Visibility, actor: &str) -> Result<()> {
        self.touched.add(digest);
        let Some((size, old)) = self.size_and_visibility(digest).await? else { return Ok(()) };
        sqlx::query("UPDATE files SET visibility = $1 WHERE digest = $2")
            .bind(v.as_str())
            .bind(digest.as_str())
            .execute(&mut *self.tx)
            .await?;
        if old != v {
            let mut event = NewEvent::file(EventType::FileVisibilityChanged, digest, size, v, actor);
            // Seen only by those who could see the file before or after: the stricter of the two.
            if old == Visibility::Internal {
                event.audience = tooltool_proto::Audience::Internal;
            }
            event.data.old_visibility = Some(old);
            event.data.new_visibility = Some(v);
            self.record(event);
        }
        Ok(())
    }

    /// Forgets every instance of a file, and every copy of it between regions that is being
    /// made or waits for a retry; returns the regions that had an instance, recording
    /// `file.instances_deleted` if there were any.
    pub async fn remove_instances(&mut self, digest: &Digest, actor: &str) -> Result<Vec<String>> {
        self.touched.add(digest);
        sqlx::query("DELETE FROM replications WHERE file_id = (SELECT id FROM files WHERE digest = $1)")
            .bind(digest.as_str())
            .execute(&mut *self.tx)
            .await?;
        let rows = sqlx::query(
            "DELETE FROM file_instances WHERE file_id = (SELECT id FROM files WHERE digest = $1) RETURNING region",
        )
        .bind(digest.as_str())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut regions = rows.iter().map(|r| r.try_get("region")).collect::<Result<Vec<String>, _>>()?;
        regions.sort();
        if !regions.is_empty()
            && let Some((size, visibility)) = self.size_and_visibility(digest).await?
        {
            let mut event = NewEvent::file(EventType::FileInstancesDeleted, digest, size, visibility, actor);
            event.data.regions = Some(regions.clone());
            self.record(event);
        }
        Ok(regions)
    }

    /// Forgets the copy of `file` in `region`, found `missing` or `corrupt` (`reason`; its bytes
    /// set aside under `quarantined`), recording `file.copy_lost` and noting the loss in
    /// `lost_copies` if there was one; returns whether there was.
    pub async fn remove_copy(
        &mut self,
        file: &StoredFile,
        region: &str,
        reason: &str,
        quarantined: Option<&str>,
        actor: &str,
        now: i64,
    ) -> Result<bool> {
        self.touched.add(&file.digest);
        sqlx::query("DELETE FROM replications WHERE file_id = $1 AND region = $2")
            .bind(file.id)
            .bind(region)
            .execute(&mut *self.tx)
            .await?;
        let res = sqlx::query("DELETE FROM file_instances WHERE file_id = $1 AND region = $2")
            .bind(file.id)
            .bind(region)
            .execute(&mut *self.tx)
            .await?;
        let removed = res.rows_affected() == 1;
        if removed {
            let mut event = NewEvent::file(EventType::FileCopyLost, &file.digest, file.size, file.visibility, actor);
            event.data.region = Some(region.to_owned());
            event.data.reason = Some(reason.to_owned());
            self.record(event);
            self.note_lost(file.id, region, reason, quarantined, now).await?;
        }
        Ok(removed)
    }

    /// Records a verified copy of a file in `region`, and its `file.verified` event unless
    /// the copy was already recorded (by a concurrent verification on another replica).
    pub async fn add_instance(&mut self, file: &StoredFile, region: &str, actor: &str, now: i64) -> Result<()> {
        self.insert_instance(file, region, EventType::FileVerified, actor, now).await
    }

    /// Records the sha256 of a file's bytes, hashed beside its sha512 (a value already there
    /// stays: the same bytes have one sha256).
    pub async fn set_sha256(&mut self, file: &StoredFile, sha256: &str) -> Result<()> {
        sqlx::query("UPDATE files SET sha256 = $1 WHERE id = $2 AND sha256 IS NULL")
            .bind(sha256)
            .bind(file.id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Records a copy of a file in `region`, and the event `kind` about it (`file.verified`,
    /// `file.replicated`) unless that copy was already recorded.
    pub(super) async fn insert_instance(
        &mut self,
        file: &StoredFile,
        region: &str,
        kind: EventType,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        self.touched.add(&file.digest);
        let res = sqlx::query(
            "INSERT INTO file_instances (file_id, region, created, proven) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(file.id)
        .bind(region)
        .bind(now)
        .bind(crate::time::now_ms())
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE files SET verified = $1 WHERE id = $2 AND verified IS NULL")
            .bind(now)
            .bind(file.id)
            .execute(&mut *self.tx)
            .await?;
        if res.rows_affected() == 1 && self.note_repaired(file.id, region, now).await? {
            self.repaired += 1;
        }
        if res.rows_affected() == 1
            && let Some((size, visibility)) = self.size_and_visibility(&file.digest).await?
        {
            let mut event = NewEvent::file(kind, &file.digest, size, visibility, actor);
            event.data.region = Some(region.to_owned());
            self.record(event);
        }
        Ok(())
    }

    /// The lost copies this transaction records again: repaired once it commits. The caller
    /// counts them (`scrub_copies_repaired_total`); the store does not count.
    pub fn repaired(&self) -> u64 {
        self.repaired
    }

    /// Commits, with the recorded events. On PostgreSQL each touched digest is first sent as a
    /// notification inside the transaction, so other replicas hear of the change exactly when
    /// it commits.
    pub async fn commit(mut self) -> Result<()> {
        let now = crate::time::now();
        self.outbox.insert(&mut self.tx, self.backend, &self.events, now).await?;
        if self.backend == Backend::Postgres {
            for digest in self.touched.digests() {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(lookup::CHANNEL)
                    .bind(digest.as_str())
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        self.tx.commit().await?;
        if !self.events.is_empty() {
            self.outbox.committed();
        }
        Ok(())
    }
}

/// Reads `(id, digest, size, visibility, region?)` rows of several files, ordered by file id.
pub(super) fn many_files_from_rows(rows: &[AnyRow]) -> Result<Vec<StoredFile>> {
    let mut out: Vec<StoredFile> = Vec::new();
    for row in rows {
        let digest = Digest::parse(&row.try_get::<String, _>("digest")?).map_err(|_| corrupt("digest"))?;
        let id: i64 = row.try_get("id")?;
        if out.last().is_none_or(|f| f.id != id) {
            out.extend(files_from_rows(&digest, std::slice::from_ref(row))?);
        } else if let Some(region) = row.try_get::<Option<String>, _>("region")? {
            out.last_mut().expect("pushed above").instances.push(region);
        }
    }
    Ok(out)
}

/// Reads `(id, size, visibility, region?)` rows of one file, ordered by region.
pub(super) fn files_from_rows(digest: &Digest, rows: &[AnyRow]) -> Result<Option<StoredFile>> {
    let Some(first) = rows.first() else { return Ok(None) };
    let size: i64 = first.try_get("size")?;
    let visibility: String = first.try_get("visibility")?;
    let mut instances = Vec::new();
    for row in rows {
        if let Some(region) = row.try_get::<Option<String>, _>("region")? {
            instances.push(region);
        }
    }
    Ok(Some(StoredFile {
        id: first.try_get("id")?,
        digest: digest.clone(),
        size: u64::try_from(size).map_err(|_| corrupt("size"))?,
        visibility: visibility.parse().map_err(|_| corrupt("visibility"))?,
        instances,
    }))
}
