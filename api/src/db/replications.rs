//! Table `replications`: copies of verified blobs between regions, claimed by one replica at a
//! time through a lease, so that each copy is made once however many replicas run; a lease
//! that runs out (a killed replica, or the retry time of a failed copy) may be claimed again.

use sqlx::Row;

use super::files::many_files_from_rows;
use super::{Backend, Db, FileWrite, Result, StoredFile};
use tooltool_proto::{Digest, EventType};

/// A copy that failed and waits for its retry, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCopy {
    /// The file.
    pub digest: Digest,
    /// The region it was to be copied to.
    pub region: String,
    /// How many attempts failed.
    pub attempts: i64,
    /// Why the last one failed.
    pub error: String,
}

/// A claimed copy: the attempts already made, and the multipart upload an earlier claimant
/// left unfinished (it died while copying), to be aborted before copying again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Failed attempts so far.
    pub attempts: i64,
    /// `(key, upload id)` of the unfinished multipart upload in the target bucket.
    pub leftover: Option<(String, String)>,
}

/// How far behind replication is: copies missing, and the oldest of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// (file, region) pairs with no copy yet.
    pub missing: i64,
    /// When the oldest file lacking a copy was first verified (unix seconds).
    pub oldest: Option<i64>,
}

impl Db {
    /// Files with a verified copy somewhere but none in `region`, and no live claim on that
    /// copy, oldest first, with their instances.
    pub async fn missing_copies(&self, region: &str, now: i64, limit: i64) -> Result<Vec<StoredFile>> {
        let rows = sqlx::query(
            "SELECT f.id, f.digest, f.size, f.visibility, i.region FROM files f \
             JOIN file_instances i ON i.file_id = f.id \
             WHERE f.id IN (SELECT a.file_id FROM file_instances a WHERE NOT EXISTS \
                 (SELECT 1 FROM file_instances b WHERE b.file_id = a.file_id AND b.region = $1) \
               AND NOT EXISTS (SELECT 1 FROM replications r WHERE r.file_id = a.file_id AND r.region = $1 \
                 AND r.lease_until > $2) \
               GROUP BY a.file_id ORDER BY a.file_id LIMIT $3) \
             ORDER BY f.id, i.region",
        )
        .bind(region)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        many_files_from_rows(&rows)
    }

    /// Claims the copy of `file_id` to `region` for `me` until `lease_until`, unless another
    /// claim on it is still live.
    pub async fn claim_copy(
        &self,
        file_id: i64,
        region: &str,
        me: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<Claim>> {
        let row = sqlx::query(
            "INSERT INTO replications (file_id, region, claimed_by, lease_until, attempts, created) \
             VALUES ($1, $2, $3, $4, 0, $5) \
             ON CONFLICT (file_id, region) DO UPDATE SET claimed_by = excluded.claimed_by, \
                 lease_until = excluded.lease_until WHERE replications.lease_until <= $5 \
             RETURNING attempts, upload_key, upload_id",
        )
        .bind(file_id)
        .bind(region)
        .bind(me)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key: Option<String> = row.try_get("upload_key")?;
        let id: Option<String> = row.try_get("upload_id")?;
        Ok(Some(Claim { attempts: row.try_get("attempts")?, leftover: key.zip(id) }))
    }

    /// Notes the multipart upload `me`'s copy is being assembled in (`None`: no longer any).
    pub async fn note_copy_upload(
        &self,
        file_id: i64,
        region: &str,
        me: &str,
        upload: Option<(&str, &str)>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE replications SET upload_key = $4, upload_id = $5 \
             WHERE file_id = $1 AND region = $2 AND claimed_by = $3",
        )
        .bind(file_id)
        .bind(region)
        .bind(me)
        .bind(upload.map(|u| u.0))
        .bind(upload.map(|u| u.1))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Extends `me`'s claim; false if it is no longer `me`'s (deleted, or taken after it ran
    /// out).
    pub async fn renew_copy(&self, file_id: i64, region: &str, me: &str, lease_until: i64) -> Result<bool> {
        let sql = "UPDATE replications SET lease_until = $4 WHERE file_id = $1 AND region = $2 AND claimed_by = $3";
        self.renew_lease(sql, file_id, region, me, lease_until).await
    }

    /// Runs `sql`, which moves the lease of one claimed row on: `$1` the file, `$2` the region,
    /// `$3` who claims it, `$4` the new end of the lease. Whether the claim was still theirs.
    /// (A copy's claim, here, and a scrub's, in scrub.rs.)
    pub(super) async fn renew_lease(
        &self,
        sql: &'static str,
        file_id: i64,
        region: &str,
        me: &str,
        lease_until: i64,
    ) -> Result<bool> {
        let done = sqlx::query(sql).bind(file_id).bind(region).bind(me).bind(lease_until).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up `me`'s claim.
    pub async fn release_copy(&self, file_id: i64, region: &str, me: &str) -> Result<()> {
        sqlx::query("DELETE FROM replications WHERE file_id = $1 AND region = $2 AND claimed_by = $3")
            .bind(file_id)
            .bind(region)
            .bind(me)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records a failed attempt of `me`'s claim: why, and when it may be tried again. (Its noted
    /// upload stays noted: the copy aborted it, unless S3 failed, and aborting twice is harmless.)
    pub async fn fail_copy(&self, file_id: i64, region: &str, me: &str, error: &str, retry_at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE replications SET attempts = attempts + 1, last_error = $4, lease_until = $5 \
             WHERE file_id = $1 AND region = $2 AND claimed_by = $3",
        )
        .bind(file_id)
        .bind(region)
        .bind(me)
        .bind(error)
        .bind(retry_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Copies that failed and wait for a retry, most attempts first.
    pub async fn failed_copies(&self, limit: i64) -> Result<Vec<FailedCopy>> {
        let rows = sqlx::query(
            "SELECT f.digest, r.region, r.attempts, r.last_error FROM replications r \
             JOIN files f ON f.id = r.file_id WHERE r.last_error IS NOT NULL \
             ORDER BY r.attempts DESC, f.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailedCopy {
                    digest: Digest::parse(&r.try_get::<String, _>("digest")?).map_err(|_| super::corrupt("digest"))?,
                    region: r.try_get("region")?,
                    attempts: r.try_get("attempts")?,
                    error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    /// The files verified somewhere that lack a copy in `region`.
    pub async fn backlog(&self, region: &str) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS missing, MIN(t.first) AS oldest FROM \
             (SELECT i.file_id, MIN(i.created) AS first FROM file_instances i GROUP BY i.file_id \
              HAVING SUM(CASE WHEN i.region = $1 THEN 1 ELSE 0 END) = 0) t",
        )
        .bind(region)
        .fetch_one(&self.read)
        .await?;
        Ok(Backlog { missing: row.try_get("missing")?, oldest: row.try_get("oldest")? })
    }
}

impl FileWrite {
    /// Ends `me`'s claim on the copy of `file_id` to `region` and records the copy as an
    /// instance, if the claim is still `me`'s and the file still has its instance in `source`
    /// (a deletion meanwhile removes both). On PostgreSQL the source instance is locked, so a
    /// concurrent deletion either comes first (nothing recorded) or sees the new instance.
    /// Returns whether the copy was recorded.
    pub async fn record_copy(
        &mut self,
        file: &StoredFile,
        source: &str,
        region: &str,
        me: &str,
        now: i64,
    ) -> Result<bool> {
        let claimed = sqlx::query(
            "DELETE FROM replications WHERE file_id = $1 AND region = $2 AND claimed_by = $3 RETURNING file_id",
        )
        .bind(file.id)
        .bind(region)
        .bind(me)
        .fetch_optional(&mut *self.tx())
        .await?;
        let lock = if self.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
        let source_kept =
            sqlx::query(&format!("SELECT file_id FROM file_instances WHERE file_id = $1 AND region = $2{lock}"))
                .bind(file.id)
                .bind(source)
                .fetch_optional(&mut *self.tx())
                .await?;
        if claimed.is_none() || source_kept.is_none() {
            return Ok(false);
        }
        // The replica is the actor of its copies, as `replicator:<replica>`.
        self.insert_instance(file, region, EventType::FileReplicated, &format!("replicator:{me}"), now).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_copy_is_claimed_once_until_its_lease_runs_out_and_recorded_only_by_its_claimant() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::test_db(dir.path(), 0).await;
        let digest = Digest::parse(&"c".repeat(128)).unwrap();
        let mut w = db.write_files().await.unwrap();
        let (file_id, ..) = w.declare(&digest, 3, tooltool_proto::Visibility::Public, 1).await.unwrap();
        let declared = StoredFile {
            id: file_id,
            digest: digest.clone(),
            size: 3,
            visibility: tooltool_proto::Visibility::Public,
            instances: Vec::new(),
        };
        w.add_instance(&declared, "a", "t", 1).await.unwrap();
        w.commit().await.unwrap();

        let missing = db.missing_copies("b", 100, 10).await.unwrap();
        assert_eq!(
            missing.iter().map(|f| (f.id, f.instances.clone())).collect::<Vec<_>>(),
            [(file_id, vec!["a".into()])]
        );
        assert!(db.missing_copies("a", 100, 10).await.unwrap().is_empty());
        assert_eq!(db.backlog("b").await.unwrap(), Backlog { missing: 1, oldest: Some(1) });

        let fresh = Claim { attempts: 0, leftover: None };
        assert_eq!(db.claim_copy(file_id, "b", "one", 100, 160).await.unwrap(), Some(fresh));
        assert_eq!(db.claim_copy(file_id, "b", "two", 120, 180).await.unwrap(), None, "the lease is live");
        assert!(db.missing_copies("b", 120, 10).await.unwrap().is_empty(), "claimed copies are not offered");
        db.note_copy_upload(file_id, "b", "one", Some(("staging/replica-1", "u1"))).await.unwrap();
        db.fail_copy(file_id, "b", "one", "region b refused", 130).await.unwrap();
        let failed = db.failed_copies(10).await.unwrap();
        assert_eq!((failed[0].attempts, failed[0].error.as_str()), (1, "region b refused"));
        let retry = Claim { attempts: 1, leftover: Some(("staging/replica-1".into(), "u1".into())) };
        assert_eq!(db.claim_copy(file_id, "b", "two", 130, 190).await.unwrap(), Some(retry), "the retry time came");
        // Two dies while its multipart upload is open: the next claimant learns of it.
        db.note_copy_upload(file_id, "b", "two", Some(("staging/replica-2", "u2"))).await.unwrap();
        db.note_copy_upload(file_id, "b", "one", Some(("staging/replica-x", "ux"))).await.unwrap();
        let taken = db.claim_copy(file_id, "b", "one", 190, 250).await.unwrap().unwrap();
        assert_eq!(taken.leftover, Some(("staging/replica-2".into(), "u2".into())), "only the claimant notes");
        db.note_copy_upload(file_id, "b", "one", None).await.unwrap();
        db.renew_copy(file_id, "b", "one", 130).await.unwrap(); // one dies too, after aborting
        assert_eq!(db.claim_copy(file_id, "b", "two", 130, 190).await.unwrap().unwrap().leftover, None);
        assert!(!db.renew_copy(file_id, "b", "one", 200).await.unwrap(), "one lost it");

        let file = db.file_uncached(&digest).await.unwrap().unwrap();
        let mut w = db.write_files().await.unwrap();
        assert!(!w.record_copy(&file, "a", "b", "one", 140).await.unwrap(), "not one's claim");
        assert!(w.record_copy(&file, "a", "b", "two", 140).await.unwrap());
        w.commit().await.unwrap();
        assert_eq!(db.file_uncached(&digest).await.unwrap().unwrap().instances, ["a", "b"]);
        assert_eq!(db.backlog("b").await.unwrap(), Backlog { missing: 0, oldest: None });
        assert!(db.failed_copies(10).await.unwrap().is_empty());

        db.claim_copy(file_id, "c", "one", 150, 210).await.unwrap().unwrap();
        db.remove_instances(&digest, "t").await.unwrap();
        let mut w = db.write_files().await.unwrap();
        assert!(!w.record_copy(&file, "a", "c", "one", 160).await.unwrap(), "deleted meanwhile");
        w.commit().await.unwrap();
        assert!(db.file_uncached(&digest).await.unwrap().unwrap().instances.is_empty());
    }
}
