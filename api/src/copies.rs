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

use std::time::{Duration, Instant};

use crate::blobs::{BlobStore, BlobStores, StoreError, copy_check};
pub use crate::blobs::{CheckDepth, CopyCheck};
use crate::db::{Db, DbError, FileWrite, StoredFile};
use tooltool_proto::Digest;

/// Files read from the database per page.
const PAGE: i64 = 500;

/// Checks the copy of `file` in `store`.
pub async fn check(store: &dyn BlobStore, file: &StoredFile, depth: CheckDepth) -> Result<CopyCheck, StoreError> {
    store.check_copy(&file.digest, file.size, depth).await
}

/// Records what checking the copy of `file` in `region` found: an intact copy becomes (or
/// stays) an instance, with `file.verified` when new; a missing or corrupt one is no instance
/// any more, with `file.copy_lost` when it was one.
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
        CopyCheck::Missing => w.remove_copy(file, region, "missing", actor).await.map(|_| ()),
        CopyCheck::Corrupt(why) => w.remove_copy(file, region, why, actor).await.map(|_| ()),
    }
}

/// Paces reads to at most `bytes_per_second` on average over a run.
#[derive(Debug)]
pub struct Pace {
    start: Instant,
    bytes: u64,
    bytes_per_second: Option<f64>,
}

impl Pace {
    /// No faster than `bytes_per_second` (unlimited when `None`).
    pub fn new(bytes_per_second: Option<f64>) -> Self {
        Self { start: Instant::now(), bytes: 0, bytes_per_second }
    }

    /// Counts `bytes` read, then waits until the average is back under the rate.
    pub async fn read(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(rate) = self.bytes_per_second.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate);
            if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// What `verify-instances` found.
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

/// Re-hashes every recorded copy (in `region` only, when given), paced to `rate` bytes per
/// second, and records each finding; `progress` is told the bytes of each copy read.
pub async fn verify_instances(
    db: &Db,
    blobs: &BlobStores,
    region: Option<&str>,
    pace: &mut Pace,
    actor: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<VerifyReport> {
    if let Some(r) = region
        && blobs.get(r).is_none()
    {
        anyhow::bail!("--region {r}: no such region is configured (configured: {})", blobs.region_names().join(", "));
    }
    let mut report = VerifyReport::default();
    let mut after = 0;
    loop {
        let files = db.files_with_copies(region, after, PAGE).await?;
        let Some(last) = files.last() else { break };
        after = last.id;
        for file in &files {
            for r in &file.instances {
                let Some(store) = blobs.get(r) else { continue };
                let found = match check(store.as_ref(), file, CheckDepth::Full).await {
                    Ok(found) => found,
                    Err(e) => {
                        report.failed.push((file.digest.clone(), r.clone(), e.to_string()));
                        continue;
                    }
                };
                report.checked += 1;
                report.bytes += file.size;
                if let CopyCheck::Corrupt(why) = &found {
                    report.lost.push((file.digest.clone(), r.clone(), why.clone()));
                } else if found == CopyCheck::Missing {
                    report.lost.push((file.digest.clone(), r.clone(), "missing".into()));
                }
                if found != CopyCheck::Intact {
                    let mut w = db.write_files().await?;
                    record(&mut w, file, r, &found, actor, crate::time::now()).await?;
                    w.commit().await?;
                }
                progress(file.size);
                pace.read(file.size).await;
            }
        }
    }
    Ok(report)
}

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
/// [`verify_instances`] would), paced to `rate` bytes per second. A second run reads nothing
/// that the first filled in.
pub async fn backfill_sha256(
    db: &Db,
    blobs: &BlobStores,
    pace: &mut Pace,
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
                let hashed = match store.hash_copy(&file.digest, file.size).await {
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
                let mut w = db.write_files().await?;
                match (&found, hashed) {
                    (CopyCheck::Intact, Some(h)) => w.set_sha256(file, &h.sha256).await?,
                    (CopyCheck::Corrupt(why), _) => report.lost.push((file.digest.clone(), r.clone(), why.clone())),
                    _ => report.lost.push((file.digest.clone(), r.clone(), "missing".into())),
                }
                if found != CopyCheck::Intact {
                    record(&mut w, file, r, &found, actor, crate::time::now()).await?;
                }
                w.commit().await?;
                progress(read);
                pace.read(read).await;
                if found == CopyCheck::Intact {
                    filled += 1;
                    break;
                }
            }
        }
    }
    Ok(BackfillReport { filled, read: report })
}
