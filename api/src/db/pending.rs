//! Table `pending_uploads`: upload URLs handed out whose bytes are not verified yet.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, Result, StoredFile};

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
    /// When sent in parts: the store's multipart upload and the size of its parts.
    pub multipart: Option<Multipart>,
}

/// The multipart upload of a pending upload sent in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    /// The store's id of the upload.
    pub upload_id: String,
    /// The size of every part but the last.
    pub part_size: u64,
}

pub(super) const PENDING_COLUMNS: &str = "id, file_id, region, staging_key, expires, upload_id, part_size";

impl Db {
    /// Opens a pending upload of a file in `region`; returns its new staging key.
    pub(super) async fn open_pending(
        tx: &mut sqlx::AnyConnection,
        file_id: i64,
        region: &str,
        expires: i64,
    ) -> Result<String> {
        // A random key, unrelated to the digest: short enough for any store's object names.
        let key = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query("INSERT INTO pending_uploads (file_id, region, staging_key, expires) VALUES ($1, $2, $3, $4)")
            .bind(file_id)
            .bind(region)
            .bind(&key)
            .bind(expires)
            .execute(tx)
            .await?;
        Ok(key)
    }

    /// The pending uploads of a file, oldest first.
    pub async fn pending_uploads(&self, file_id: i64) -> Result<Vec<Pending>> {
        let rows =
            sqlx::query(&format!("SELECT {PENDING_COLUMNS} FROM pending_uploads WHERE file_id = $1 ORDER BY id"))
                .bind(file_id)
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(pending_from_row).collect()
    }

    /// Records a verified instance of a file in `region` and closes every pending upload of
    /// the file, in one transaction; returns the closed ones so their staged objects can be
    /// removed, and the lost copies it recorded again ([`crate::db::FileWrite::repaired`]).
    /// `actor` is recorded in the `file.verified` event.
    pub async fn mark_verified(
        &self,
        file: &StoredFile,
        region: &str,
        sha256: &str,
        actor: &str,
        now: i64,
    ) -> Result<(Vec<Pending>, u64)> {
        let file_id = file.id;
        let mut w = self.write_files().await?;
        w.add_instance(file, region, actor, now).await?;
        w.set_sha256(file, sha256).await?;
        let rows = sqlx::query(&format!("DELETE FROM pending_uploads WHERE file_id = $1 RETURNING {PENDING_COLUMNS}"))
            .bind(file_id)
            .fetch_all(&mut *w.tx())
            .await?;
        let repaired = w.repaired();
        w.commit().await?;
        Ok((rows.iter().map(pending_from_row).collect::<Result<_>>()?, repaired))
    }

    /// Pending uploads whose URL expired before `before`.
    pub async fn expired_pending(&self, before: i64) -> Result<Vec<Pending>> {
        let rows = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS} FROM pending_uploads WHERE expires < $1 ORDER BY id LIMIT 1000"
        ))
        .bind(before)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(pending_from_row).collect()
    }

    /// Whether a pending upload owns the staging key `key` (a PUT to its URL is wanted).
    pub async fn pending_key_exists(&self, key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM pending_uploads WHERE staging_key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }

    /// Records that the pending upload `key` goes up in parts, as the store's multipart upload
    /// `multipart`.
    pub async fn set_multipart(&self, key: &str, multipart: &Multipart) -> Result<()> {
        sqlx::query("UPDATE pending_uploads SET upload_id = $1, part_size = $2 WHERE staging_key = $3")
            .bind(&multipart.upload_id)
            .bind(multipart.part_size as i64)
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The pending upload `key` no longer has a multipart upload (it was completed into its
    /// staged object).
    pub async fn clear_multipart(&self, key: &str) -> Result<()> {
        sqlx::query("UPDATE pending_uploads SET upload_id = NULL, part_size = NULL WHERE staging_key = $1")
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Moves the expiry of the pending upload `key` to `expires` (a resumed upload got new
    /// URLs), never earlier.
    pub async fn extend_pending(&self, key: &str, expires: i64) -> Result<()> {
        sqlx::query("UPDATE pending_uploads SET expires = $1 WHERE staging_key = $2 AND expires < $1")
            .bind(expires)
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Forgets the pending upload `key` (one opened for a file that resumes another).
    pub async fn delete_pending_key(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM pending_uploads WHERE staging_key = $1").bind(key).execute(&self.write).await?;
        Ok(())
    }

    /// Forgets one pending upload.
    pub async fn delete_pending(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM pending_uploads WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(())
    }
}

pub(super) fn pending_from_row(row: &AnyRow) -> Result<Pending> {
    Ok(Pending {
        id: row.try_get("id")?,
        file_id: row.try_get("file_id")?,
        region: row.try_get("region")?,
        staging_key: row.try_get("staging_key")?,
        expires: row.try_get("expires")?,
        multipart: match row.try_get::<Option<String>, _>("upload_id")? {
            Some(upload_id) => {
                let part_size: Option<i64> = row.try_get("part_size")?;
                Some(Multipart { upload_id, part_size: part_size.unwrap_or(0).max(0) as u64 })
            }
            None => None,
        },
    })
}
