//! The writes and lookups of `import-legacy` (see `crate::import`): files, batches with their
//! own ids, and pending uploads of the original deployment, through [`FileWrite`] like every
//! other write, so the lookup cache, the change notifications and the events outbox see them.

use std::collections::HashMap;

use sqlx::Row;

use super::batches::batch_event;
use super::{Backend, Db, FileWrite, Result, StoredFile, corrupt};
use tooltool_proto::{Digest, EventFile, Visibility};

/// A batch of the original deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedBatch {
    /// Its id, kept.
    pub id: i64,
    /// Its author.
    pub author: String,
    /// Its message.
    pub message: String,
    /// When (unix seconds, from the original's naive UTC timestamp).
    pub uploaded: i64,
    /// Its files by name: `(filename, digest, size, visibility)`.
    pub files: Vec<(String, Digest, u64, Visibility)>,
}

/// A batch as recorded here, for comparison with an imported one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHead {
    /// The author.
    pub author: String,
    /// The message.
    pub message: String,
    /// When (unix seconds).
    pub uploaded: i64,
}

/// `($1, $2, …, $n)` starting at `$first`.
fn placeholders(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

impl Db {
    /// The recorded files among `digests`, with their instances.
    pub async fn files_among(&self, digests: &[Digest]) -> Result<HashMap<Digest, StoredFile>> {
        if digests.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f \
             LEFT JOIN file_instances i ON i.file_id = f.id WHERE f.digest IN {} ORDER BY f.id, i.region",
            placeholders(1, digests.len())
        );
        let mut q = sqlx::query(&sql);
        for d in digests {
            q = q.bind(d.as_str());
        }
        let rows = q.fetch_all(&self.read).await?;
        Ok(super::files::many_files_from_rows(&rows)?.into_iter().map(|f| (f.digest.clone(), f)).collect())
    }

    /// The recorded batches among `ids`.
    pub async fn batches_among(&self, ids: &[i64]) -> Result<HashMap<i64, BatchHead>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql =
            format!("SELECT id, author, message, uploaded FROM batches WHERE id IN {}", placeholders(1, ids.len()));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let head = BatchHead {
                    author: r.try_get("author")?,
                    message: r.try_get("message")?,
                    uploaded: r.try_get("uploaded")?,
                };
                Ok((r.try_get("id")?, head))
            })
            .collect()
    }

    /// Makes new batch ids continue after the largest recorded one. SQLite's AUTOINCREMENT
    /// already does when a row is inserted with its id; PostgreSQL's identity sequence is moved.
    pub async fn continue_batch_ids(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('batches', 'id'), \
                 GREATEST((SELECT COALESCE(MAX(id), 0) FROM batches), 1), \
                 (SELECT COUNT(*) > 0 FROM batches))",
            )
            .execute(&self.write)
            .await?;
        }
        Ok(())
    }
}

impl FileWrite {
    /// Records an imported file unless its digest is known; returns the file as recorded, which
    /// may differ from the import (a conflict, left alone).
    pub async fn import_file(
        &mut self,
        digest: &Digest,
        size: u64,
        visibility: Visibility,
        now: i64,
    ) -> Result<StoredFile> {
        let size_i = i64::try_from(size).map_err(|_| corrupt("size"))?;
        let (id, stored_size, stored_vis, _) = self.declare(digest, size_i, visibility, now).await?;
        let rows = sqlx::query("SELECT region FROM file_instances WHERE file_id = $1 ORDER BY region")
            .bind(id)
            .fetch_all(&mut *self.tx())
            .await?;
        Ok(StoredFile {
            id,
            digest: digest.clone(),
            size: u64::try_from(stored_size).map_err(|_| corrupt("size"))?,
            visibility: stored_vis.parse().map_err(|_| corrupt("visibility"))?,
            instances: rows.iter().map(|r| r.try_get("region")).collect::<Result<_, _>>()?,
        })
    }

    /// Opens a pending upload of `file` in `region` until `expires`, unless one is open there.
    /// Returns whether one was opened.
    pub async fn import_pending(&mut self, file: &StoredFile, region: &str, expires: i64) -> Result<bool> {
        let open = sqlx::query("SELECT COUNT(*) AS n FROM pending_uploads WHERE file_id = $1 AND region = $2")
            .bind(file.id)
            .bind(region)
            .fetch_one(&mut *self.tx())
            .await?
            .try_get::<i64, _>("n")?;
        if open > 0 {
            return Ok(false);
        }
        Db::open_pending(self.tx(), file.id, region, expires).await?;
        Ok(true)
    }

    /// Records an imported batch with its id and its `batch.uploaded` event; `files` maps each
    /// of its digests to the file row it names. `false` when a batch with that id exists
    /// (nothing is written).
    pub async fn import_batch(&mut self, batch: &ImportedBatch, files: &HashMap<Digest, i64>) -> Result<bool> {
        let names: Vec<(&str, i64)> =
            batch.files.iter().filter_map(|(name, d, ..)| files.get(d).map(|id| (name.as_str(), *id))).collect();
        let inserted = self.insert_batch(Some(batch.id), &batch.author, &batch.message, batch.uploaded, &names).await?;
        if inserted.is_none() {
            return Ok(false);
        }
        let listed = batch
            .files
            .iter()
            .filter(|(_, d, ..)| files.contains_key(d))
            .map(|(name, d, size, v)| EventFile {
                filename: name.clone(),
                digest: d.clone(),
                size: *size,
                visibility: *v,
            })
            .collect();
        self.record(batch_event(batch.id, &batch.author, &batch.message, listed));
        Ok(true)
    }

    /// The row ids of the recorded files among `digests`.
    pub async fn file_ids(&mut self, digests: &[&Digest]) -> Result<HashMap<Digest, i64>> {
        let mut out = HashMap::new();
        // Bounded lists: both databases limit the parameters of one statement.
        for chunk in digests.chunks(1000) {
            let sql = format!("SELECT id, digest FROM files WHERE digest IN {}", placeholders(1, chunk.len()));
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q.bind(d.as_str());
            }
            for r in q.fetch_all(&mut *self.tx()).await? {
                let digest = Digest::parse(&r.try_get::<String, _>("digest")?).map_err(|_| corrupt("digest"))?;
                out.insert(digest, r.try_get("id")?);
            }
        }
        Ok(out)
    }
}
