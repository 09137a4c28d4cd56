//! Verifying stored copies: the one engine that reads a copy back and the one place that
//! records what it found.
//!
//! A check is [`BlobStore::check_copy`]: a HEAD for the size, or every byte streamed through
//! the project's one sha512 loop (the reader replication and upload verification use), never
//! held in memory. [`record`] turns the finding into the database's truth in a [`FileWrite`]:
//! an intact copy is (or stays) an instance, with `file.verified` when new; a missing or
//! corrupt one stops being one, with `file.copy_lost`, so downloads stop using it at once.
//! `import-legacy` checks each imported instance with it before downloads may use it,
//! `verify-instances` re-hashes existing copies with it, and a scrubber shares it.
//! `backfill-sha256` reads one copy of each file that has no sha256 yet through the same
//! check ([`BlobStore::hash_copy`], both digests in one pass) and records the sha256 of an
//! intact one.

use crate::blobs::{BlobStore, BlobStores, StoreError, copy_check};
pub use crate::blobs::{CheckDepth, CopyCheck};
use crate::db::{Db, DbError, FileWrite, StoredFile};
use crate::time::Pace;
use tooltool_proto::Digest;

/// Checks the copy of `file` in `store`, reading at most as fast as `pace` lets.
pub async fn check(
    store: &dyn BlobStore,
    file: &StoredFile,
    depth: CheckDepth,
    pace: &Pace,
) -> Result<CopyCheck, StoreError> {
    store.check_copy(&file.digest, file.size, depth, pace).await
}

/// Records what checking the copy of `file` in `region` found: an intact copy becomes (or
/// stays) an instance, with `file.verified` when new; a missing or corrupt one is no instance
/// any more ([`lose`]).
pub async fn record(
    w: &mut FileWrite,
    file: &StoredFile,
    region: &str,
    found: &CopyCheck,
    actor: &str,
    now: i64,
) -> Result<(), DbError> {
    match found {
        CopyCheck::Intact => w.add_instance(file, region, actor, now).await,
        lost => lose(w, file, region, &Loss::of(lost), None, actor, now).await.map(|_| ()),
    }
}

/// Why a recorded copy is no good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// `missing` or `corrupt`: the reason of `file.copy_lost` and of the metrics.
    pub reason: &'static str,
    /// What was found, for the audit trail and the operator.
    pub detail: String,
}

impl Loss {
    /// The loss a check found (`None` for an intact copy).
    pub fn found(check: &CopyCheck) -> Option<Self> {
        (*check != CopyCheck::Intact).then(|| Self::of(check))
    }

    fn of(check: &CopyCheck) -> Self {
        match check {
            CopyCheck::Corrupt(why) => Self { reason: "corrupt", detail: why.clone() },
            _ => Self { reason: "missing", detail: "no object under its key".into() },
        }
    }
}

/// The one place a lost copy leaves routing: the instance goes, with its `file.copy_lost`
/// event, its note in `lost_copies` (until it is repaired) and an audit line, all in `w`.
/// Returns whether there was such an instance.
pub async fn lose(
    w: &mut FileWrite,
    file: &StoredFile,
    region: &str,
    loss: &Loss,
    quarantined: Option<&str>,
    actor: &str,
    now: i64,
) -> Result<bool, DbError> {
    if !w.remove_copy(file, region, loss.reason, quarantined, actor, now).await? {
        return Ok(false);
    }
    let details = serde_json::json!({
        "region": region, "reason": loss.reason, "detail": loss.detail, "quarantined": quarantined,
    });
    w.audit(actor, "file.copy_lost", file.digest.as_str(), details, now).await?;
    Ok(true)
}

/// What [`examine`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// Every byte hashed to the digest.
    Intact,
    /// No good: out of routing, its bytes (if any) set aside under `quarantined`.
    Lost(Loss, Option<String>),
}

/// Reads back every byte of the recorded copy of `file` in `store`. A missing or corrupt one
/// leaves routing at once ([`lose`]), its bytes first moved aside under `quarantine/` (never
/// deleted). A store that cannot be read is the inner error: nothing is changed then.
pub async fn examine(
    db: &Db,
    store: &dyn BlobStore,
    file: &StoredFile,
    pace: &Pace,
    actor: &str,
) -> Result<Result<Examined, StoreError>, DbError> {
    let found = match check(store, file, CheckDepth::Full, pace).await {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    let Some(loss) = Loss::found(&found) else { return Ok(Ok(Examined::Intact)) };
    set_aside(db, store, file, loss, actor).await
}

/// Takes a bad copy out of routing ([`lose`]), its bytes first moved aside under `quarantine/`
/// when it is corrupt (never deleted). A store that cannot be read is the inner error.
async fn set_aside(
    db: &Db,
    store: &dyn BlobStore,
    file: &StoredFile,
    loss: Loss,
    actor: &str,
) -> Result<Result<Examined, StoreError>, DbError> {
    // Set aside before it leaves routing: a download in between finds no object, never the
    // wrong bytes; and nothing can publish good bytes under the key while it is an instance.
    let quarantined = match loss.reason {
        "corrupt" => match store.quarantine(&file.digest).await {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        },
        _ => None,
    };
    let mut w = db.write_files().await?;
    lose(&mut w, file, store.region(), &loss, quarantined.as_deref(), actor, crate::time::now()).await?;
    w.commit().await?;
    Ok(Ok(Examined::Lost(loss, quarantined)))
}

/// What a pass of `verify-instances` or `scrub` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Copies read back.
    pub checked: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Copies found missing or corrupt, and no longer instances: `(digest, region, why)`.
    pub lost: Vec<(Digest, String, String)>,
    /// Copies that could not be read (store errors), left as they were: `(digest, region, error)`.
    pub failed: Vec<(Digest, String, String)>,
}

impl VerifyReport {
    /// Whether the pass found anything to report (a lost copy, or one it could not read).
    pub fn found_anything(&self) -> bool {
        !self.lost.is_empty() || !self.failed.is_empty()
    }

    /// An error listing every copy lost or that could not be read, when there is any (the
    /// commands that read copies exit non-zero with it).
    pub fn ensure_clean(&self) -> anyhow::Result<()> {
        if !self.found_anything() {
            return Ok(());
        }
        let mut summary = format!(
            "{} of {} copies lost (no longer served from their region), {} could not be read:",
            self.lost.len(),
            self.checked,
            self.failed.len()
        );
        for (d, r, why) in &self.lost {
            summary.push_str(&format!("\n  {d} in {r}: {why}"));
        }
        for (d, r, e) in &self.failed {
            summary.push_str(&format!("\n  {d} in {r}: could not be read: {e}"));
        }
        anyhow::bail!(summary)
    }
}

/// Files read per page.
const PAGE: i64 = 500;

/// What `backfill-sha256` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Files whose sha256 is now recorded.
    pub filled: u64,
    /// The copies read, as `verify-instances` reports them.
    pub read: VerifyReport,
}

/// Records the sha256 of every file with a copy and none yet: reads one copy of each (the
/// next only when that one is missing, corrupt or unreadable; a bad one is recorded as
/// [`crate::scrub::verify_instances`] would), paced to `rate` bytes per second. A second run reads nothing
/// that the first filled in.
pub async fn backfill_sha256(
    db: &Db,
    blobs: &BlobStores,
    pace: &Pace,
    actor: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<BackfillReport> {
    let mut filled = 0;
    let mut report = VerifyReport::default();
    let mut after = 0;
    loop {
        let files = db.files_without_sha256(after, PAGE).await?;
        let Some(last) = files.last() else { break };
        after = last.id;
        for file in &files {
            for r in &file.instances {
                let Some(store) = blobs.get(r) else { continue };
                let hashed = match store.hash_copy(&file.digest, file.size, pace).await {
                    Ok(hashed) => hashed,
                    Err(e) => {
                        report.failed.push((file.digest.clone(), r.clone(), e.to_string()));
                        continue;
                    }
                };
                let read = hashed.as_ref().map_or(0, |h| h.len);
                report.checked += 1;
                report.bytes += read;
                let found = match &hashed {
                    Some(h) => copy_check(&file.digest, file.size, Some(&h.sha512), h.len),
                    None => CopyCheck::Missing,
                };
                progress(read);
                match (Loss::found(&found), hashed) {
                    (None, Some(h)) => {
                        let mut w = db.write_files().await?;
                        w.set_sha256(file, &h.sha256).await?;
                        w.commit().await?;
                        filled += 1;
                        break;
                    }
                    // A bad copy is set aside and leaves routing as the scrubber's does.
                    (loss, _) => {
                        let loss = loss.unwrap_or_else(|| Loss::of(&CopyCheck::Missing));
                        match set_aside(db, store.as_ref(), file, loss, actor).await? {
                            Ok(Examined::Lost(loss, _)) => {
                                report.lost.push((file.digest.clone(), r.clone(), loss.detail))
                            }
                            Ok(Examined::Intact) => {}
                            Err(e) => report.failed.push((file.digest.clone(), r.clone(), e.to_string())),
                        }
                    }
                }
            }
        }
    }
    if filled > 0 {
        // A sha256 recorded makes a file a TUF target, and records no event for the signer.
        db.tuf_rescan().await?;
    }
    Ok(BackfillReport { filled, read: report })
}
