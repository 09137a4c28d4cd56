//! The scrubber's columns of `file_instances` (`proven`, unix milliseconds, and a claim with a
//! lease) and table
//! `lost_copies`: when each copy was last proven, which replica is reading it now, and which
//! copies were found missing or corrupt until a verified one is recorded again.
//!
//! A proof changes no routing (the download lookup reads neither column), so it is written
//! here directly; a lost copy leaves routing only through [`FileWrite::remove_copy`].

use sqlx::Row;

use super::files::many_files_from_rows;
use super::{Db, FileWrite, Result, StoredFile};
use tooltool_proto::Digest;

/// What to scrub: every copy, or those of one region, or of one file.
#[derive(Debug, Clone, Default)]
pub struct ScrubFilter {
    /// Only the copies in this region.
    pub region: Option<String>,
    /// Only the copies of this file.
    pub digest: Option<Digest>,
}

impl Db {
    /// Up to `limit` copies last proven before `due` (unix milliseconds; oldest proof first) that no replica is
    /// scrubbing at `now`, each as the file with that one region in `instances`.
    pub async fn copies_to_scrub(
        &self,
        filter: &ScrubFilter,
        due: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<StoredFile>> {
        let rows = sqlx::query(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM file_instances i \
             JOIN files f ON f.id = i.file_id \
             WHERE COALESCE(i.proven, i.created * 1000) < $1 \
               AND (i.scrub_lease_until IS NULL OR i.scrub_lease_until <= $2) \
               AND ($3 = '' OR i.region = $3) AND ($4 = '' OR f.digest = $4) \
             ORDER BY COALESCE(i.proven, i.created * 1000), f.id, i.region LIMIT $5",
        )
        .bind(due)
        .bind(now)
        .bind(filter.region.as_deref().unwrap_or(""))
        .bind(filter.digest.as_ref().map_or("", |d| d.as_str()))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        // One row per copy: never merge two copies of a file into one entry.
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.extend(many_files_from_rows(std::slice::from_ref(row))?);
        }
        Ok(out)
    }

    /// Claims the scrub of the copy of `file_id` in `region` for `me` until `lease_until`, if
    /// it is still due (proven before `due`) and no other claim on it is live at `now`.
    pub async fn claim_scrub(
        &self,
        file_id: i64,
        region: &str,
        me: &str,
        due: i64,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE file_instances SET scrub_claimed_by = $3, scrub_lease_until = $6 \
             WHERE file_id = $1 AND region = $2 AND COALESCE(proven, created * 1000) < $4 \
               AND (scrub_lease_until IS NULL OR scrub_lease_until <= $5)",
        )
        .bind(file_id)
        .bind(region)
        .bind(me)
        .bind(due)
        .bind(now)
        .bind(lease_until)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends `me`'s scrub claim; false if it is no longer `me`'s.
    pub async fn renew_scrub(&self, file_id: i64, region: &str, me: &str, lease_until: i64) -> Result<bool> {
        let sql = "UPDATE file_instances SET scrub_lease_until = $4 \
                   WHERE file_id = $1 AND region = $2 AND scrub_claimed_by = $3";
        self.renew_lease(sql, file_id, region, me, lease_until).await
    }

    /// Ends `me`'s scrub claim: with `proven`, the copy's bytes were proven at that time.
    pub async fn end_scrub(&self, file_id: i64, region: &str, me: &str, proven: Option<i64>) -> Result<()> {
        sqlx::query(
            "UPDATE file_instances SET proven = COALESCE($4, proven), scrub_claimed_by = NULL, \
             scrub_lease_until = NULL WHERE file_id = $1 AND region = $2 AND scrub_claimed_by = $3",
        )
        .bind(file_id)
        .bind(region)
        .bind(me)
        .bind(proven)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// When each instance of `file_id` was last proven (unix milliseconds), by region.
    pub async fn proofs(&self, file_id: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT region, COALESCE(proven, created * 1000) AS proven FROM file_instances WHERE file_id = $1 ORDER BY region",
        )
        .bind(file_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("region")?, r.try_get("proven")?))).collect()
    }

    /// The copies of `file_id` lost and not repaired: `(region, reason)`, by region.
    pub async fn lost_copies_of(&self, file_id: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT region, reason FROM lost_copies WHERE file_id = $1 AND repaired IS NULL ORDER BY region",
        )
        .bind(file_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("region")?, r.try_get("reason")?))).collect()
    }

    /// The oldest proof of any copy (unix milliseconds), `None` without copies.
    pub async fn oldest_proof(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(COALESCE(proven, created * 1000)) AS oldest FROM file_instances")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("oldest")?)
    }

    /// How many files lost every copy.
    pub async fn lost_file_count(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT l.file_id) AS n FROM lost_copies l WHERE l.repaired IS NULL \
             AND NOT EXISTS (SELECT 1 FROM file_instances i WHERE i.file_id = l.file_id)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(row.try_get("n")?)
    }
}

impl FileWrite {
    /// Notes that the copy of `file_id` in `region` was lost (`missing` or `corrupt`), and
    /// where its bytes were set aside, until a verified copy there is recorded again.
    pub(super) async fn note_lost(
        &mut self,
        file_id: i64,
        region: &str,
        reason: &str,
        quarantined: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO lost_copies (file_id, region, reason, lost, quarantined) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (file_id, region) DO UPDATE SET reason = excluded.reason, lost = excluded.lost, \
                 quarantined = excluded.quarantined, repaired = NULL",
        )
        .bind(file_id)
        .bind(region)
        .bind(reason)
        .bind(now)
        .bind(quarantined)
        .execute(&mut *self.tx())
        .await?;
        Ok(())
    }

    /// Marks a lost copy of `file_id` in `region` repaired at `now`; whether one was lost.
    pub(super) async fn note_repaired(&mut self, file_id: i64, region: &str, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE lost_copies SET repaired = $3 WHERE file_id = $1 AND region = $2 AND repaired IS NULL")
                .bind(file_id)
                .bind(region)
                .bind(now)
                .execute(&mut *self.tx())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
