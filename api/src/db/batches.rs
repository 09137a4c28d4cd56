//! Tables `batches` and `batch_files`: who uploaded what, when, under which names.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::NewEvent;
use super::{Backend, Db, DbError, FileWrite, Result, SEARCH_LIMIT, corrupt};
use tooltool_proto::{Audience, Digest, EventData, EventFile, EventType, FileName, UploadFile, Visibility};

/// An upload batch as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// The batch id.
    pub id: i64,
    /// The authenticated uploader.
    pub author: String,
    /// The uploader's message.
    pub message: String,
    /// When (unix seconds).
    pub uploaded: i64,
    /// The files by the name they had in this batch.
    pub files: BTreeMap<String, BatchFileRow>,
}

/// One file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFileRow {
    /// The digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// The file's visibility.
    pub visibility: Visibility,
}

/// A batch just recorded, and the staging keys of the files that still need bytes.
#[derive(Debug)]
pub struct CreatedBatch {
    /// The batch.
    pub batch: BatchRow,
    /// Digest → staging key, for each file with no verified copy.
    pub uploads: HashMap<Digest, String>,
}

/// A batch that carried a file, and the name the file had in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBatchRow {
    /// The batch id.
    pub id: i64,
    /// The authenticated uploader.
    pub author: String,
    /// The uploader's message.
    pub message: String,
    /// When (unix seconds).
    pub uploaded: i64,
    /// The file's name in this batch.
    pub filename: String,
}

pub(super) const BATCH_SELECT: &str = "SELECT b.id, b.author, b.message, b.uploaded, bf.filename, f.digest, f.size, f.visibility \
     FROM batches b JOIN batch_files bf ON bf.batch_id = b.id JOIN files f ON f.id = bf.file_id";

impl Db {
    /// Records an upload batch: creates unknown files, checks known ones against the
    /// declaration, and opens a pending upload in `region` for each file without a verified
    /// copy, with its `batch.uploaded` event. Nothing is recorded if any file conflicts.
    pub async fn create_batch(
        &self,
        author: &str,
        message: &str,
        files: &BTreeMap<FileName, UploadFile>,
        region: &str,
        now: i64,
        upload_expires: i64,
    ) -> Result<CreatedBatch> {
        let mut w = self.write_files().await?;
        let mut ids: HashMap<Digest, i64> = HashMap::new();
        let mut uploads = HashMap::new();
        for (name, f) in files {
            if ids.contains_key(&f.digest) {
                continue;
            }
            let size = i64::try_from(f.size).map_err(|_| DbError::Conflict(format!("{name}: size is too large")))?;
            let (id, stored_size, stored_vis, instances) = w.declare(&f.digest, size, f.visibility, now).await?;
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
            ids.insert(f.digest.clone(), id);
            if instances == 0 {
                let key = Self::open_pending(w.tx(), id, region, upload_expires).await?;
                uploads.insert(f.digest.clone(), key);
            }
        }
        let names: Vec<(&str, i64)> = files.iter().map(|(name, f)| (name.as_str(), ids[&f.digest])).collect();
        let batch_id = w.insert_batch(None, author, message, now, &names).await?.expect("a new id never collides");
        w.record(batch_event(batch_id, author, message, event_files(files)));
        w.commit().await?;
        let files = files
            .iter()
            .map(|(name, f)| {
                let row = BatchFileRow { digest: f.digest.clone(), size: f.size, visibility: f.visibility };
                (name.to_string(), row)
            })
            .collect();
        let batch =
            BatchRow { id: batch_id, author: author.to_owned(), message: message.to_owned(), uploaded: now, files };
        Ok(CreatedBatch { batch, uploads })
    }

    /// One batch by id.
    pub async fn batch(&self, id: i64) -> Result<Option<BatchRow>> {
        let rows = sqlx::query(&format!("{BATCH_SELECT} WHERE b.id = $1 ORDER BY bf.filename"))
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        Ok(batches_from_rows(&rows)?.into_iter().next())
    }
}

impl Db {
    /// The batches that carried the file with row id `file_id`, newest first, one entry per
    /// name it had (a batch may carry the same bytes under two names); at most
    /// [`SEARCH_LIMIT`] entries.
    pub async fn file_batches(&self, file_id: i64) -> Result<Vec<FileBatchRow>> {
        let rows = sqlx::query(&format!(
            "SELECT b.id, b.author, b.message, b.uploaded, bf.filename FROM batch_files bf \
             JOIN batches b ON b.id = bf.batch_id WHERE bf.file_id = $1 \
             ORDER BY b.id DESC, bf.filename LIMIT {SEARCH_LIMIT}"
        ))
        .bind(file_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FileBatchRow {
                    id: r.try_get("id")?,
                    author: r.try_get("author")?,
                    message: r.try_get("message")?,
                    uploaded: r.try_get("uploaded")?,
                    filename: r.try_get("filename")?,
                })
            })
            .collect()
    }
}

impl FileWrite {
    /// Inserts a batch and its names (`(filename, file row id)`), with the id `id` when given
    /// (an imported batch keeps its id) or a new one; `None` when a batch `id` already exists
    /// (nothing is then written).
    pub(super) async fn insert_batch(
        &mut self,
        id: Option<i64>,
        author: &str,
        message: &str,
        uploaded: i64,
        names: &[(&str, i64)],
    ) -> Result<Option<i64>> {
        let row = match id {
            None => sqlx::query("INSERT INTO batches (author, message, uploaded) VALUES ($1, $2, $3) RETURNING id"),
            Some(_) if self.backend() == Backend::Postgres => sqlx::query(
                "INSERT INTO batches (id, author, message, uploaded) OVERRIDING SYSTEM VALUE \
                 VALUES ($4, $1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING id",
            ),
            Some(_) => sqlx::query(
                "INSERT INTO batches (id, author, message, uploaded) VALUES ($4, $1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING RETURNING id",
            ),
        };
        let row = row.bind(author).bind(message).bind(uploaded);
        let row = match id {
            Some(id) => row.bind(id),
            None => row,
        };
        let Some(row) = row.fetch_optional(&mut *self.tx()).await? else { return Ok(None) };
        let batch_id: i64 = row.try_get("id")?;
        for &(name, file_id) in names {
            sqlx::query("INSERT INTO batch_files (batch_id, file_id, filename) VALUES ($1, $2, $3)")
                .bind(batch_id)
                .bind(file_id)
                .bind(name)
                .execute(&mut *self.tx())
                .await?;
        }
        Ok(Some(batch_id))
    }
}

/// The files of a batch as its event lists them.
fn event_files(files: &BTreeMap<FileName, UploadFile>) -> Vec<EventFile> {
    files
        .iter()
        .map(|(name, f)| EventFile {
            filename: name.to_string(),
            digest: f.digest.clone(),
            size: f.size,
            visibility: f.visibility,
        })
        .collect()
}

/// The `batch.uploaded` event of a batch: seen with `download/internal` if it names an
/// internal file, by whoever may download public files otherwise.
pub(super) fn batch_event(batch_id: i64, author: &str, message: &str, listed: Vec<EventFile>) -> NewEvent {
    let internal = listed.iter().any(|f| f.visibility == Visibility::Internal);
    let data = EventData {
        actor: author.to_owned(),
        batch_id: Some(batch_id),
        message: Some(message.to_owned()),
        files: Some(listed),
        ..Default::default()
    };
    NewEvent {
        kind: EventType::BatchUploaded,
        subject: format!("batch/{batch_id}"),
        audience: if internal { Audience::Internal } else { Audience::Public },
        data,
    }
}

/// Groups [`BATCH_SELECT`] rows, ordered by batch, into batches.
pub(super) fn batches_from_rows(rows: &[AnyRow]) -> Result<Vec<BatchRow>> {
    let mut out: Vec<BatchRow> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        if out.last().is_none_or(|b| b.id != id) {
            out.push(BatchRow {
                id,
                author: row.try_get("author")?,
                message: row.try_get("message")?,
                uploaded: row.try_get("uploaded")?,
                files: BTreeMap::new(),
            });
        }
        let file = BatchFileRow {
            digest: Digest::parse(&row.try_get::<String, _>("digest")?).map_err(|_| corrupt("digest"))?,
            size: u64::try_from(row.try_get::<i64, _>("size")?).map_err(|_| corrupt("size"))?,
            visibility: row.try_get::<String, _>("visibility")?.parse().map_err(|_| corrupt("visibility"))?,
        };
        out.last_mut().expect("pushed above").files.insert(row.try_get("filename")?, file);
    }
    Ok(out)
}
