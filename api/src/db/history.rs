//! The history of one file: the batches that carried it, and under which name.

use sqlx::Row;

use super::{Db, Result, SEARCH_LIMIT, rfc3339};
use tooltool_proto::FileBatch;

impl Db {
    /// The batches that carried the file with row id `file_id`, newest first, one entry per
    /// name it had (a batch may carry the same bytes under two names); at most
    /// [`SEARCH_LIMIT`] entries.
    pub async fn file_batches(&self, file_id: i64) -> Result<Vec<FileBatch>> {
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
                Ok(FileBatch {
                    id: r.try_get(0)?,
                    author: r.try_get(1)?,
                    message: r.try_get(2)?,
                    uploaded: rfc3339(r.try_get(3)?),
                    filename: r.try_get(4)?,
                })
            })
            .collect()
    }
}
