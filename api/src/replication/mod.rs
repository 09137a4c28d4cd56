//! Replication between regions: every verified blob gets a copy in every configured region.
//!
//! Each `serve` replica runs a [`Replicator`] (unless `TOOLTOOL_REPLICATION=off`); `tooltool-api
//! replicate` runs one pass. Replicas share the work through the database: a copy is claimed
//! with a lease (`replications`) renewed while it runs, so each is made once, and one whose
//! replica died is claimed again when its lease runs out. The store proves the bytes
//! ([`S3Store::replicate_from`]); only then is the copy recorded as an instance, through
//! [`crate::db::FileWrite`], so downloads never go to a copy that was not verified. A copy
//! whose source does not hash to the digest is never published in the target nor recorded; it
//! is logged, counted in `replication_copies_total{outcome="mismatch"}`, written to the audit
//! trail, and kept in `replications.last_error` until it succeeds.

pub mod probe;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::blobs::{BlobStore, BlobStores, CopyMode, CopySizes, Replicated, S3Store};
use crate::db::{Backlog, Db, StoredFile};
use crate::settings::Settings;
use crate::time::now;

/// Copies made at once by one replica.
const CONCURRENCY: usize = 4;
/// Files looked at per query.
const BATCH: i64 = 64;
/// Longest wait before a failed copy is tried again.
const MAX_BACKOFF: i64 = 300;
/// The actor of the replicator's audit entries.
const ACTOR: &str = "replicator";

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Copies made and recorded.
    pub copied: usize,
    /// Copies that failed (and wait for a retry).
    pub failed: usize,
}

/// Copies verified blobs to the regions lacking them.
#[derive(Debug, Clone)]
pub struct Replicator {
    db: Db,
    blobs: BlobStores,
    /// This replica's name in claims.
    me: Arc<str>,
    lease: Duration,
    sizes: CopySizes,
    /// Notified when a blob was verified here, so its copies start at once.
    pub wake: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Replicator {
    /// A replicator over these stores, counting its copies in `metrics`.
    pub fn new(db: Db, blobs: BlobStores, settings: &Settings, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let me = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            db,
            blobs,
            me: me.into(),
            lease: settings.replication_lease,
            sizes: CopySizes {
                max_single_put: settings.replication_single_put,
                part_size: settings.replication_part_size,
            },
            wake: Arc::new(Notify::new()),
            metrics,
        }
    }

    /// Runs a pass every `interval`, or sooner when woken, for as long as the server runs.
    pub async fn run(self, interval: Duration) {
        loop {
            match self.pass().await {
                Ok(r) if r != PassReport::default() => {
                    tracing::info!(copied = r.copied, failed = r.failed, "replication pass")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "replication pass failed"),
            }
            let _ = tokio::time::timeout(interval, self.wake.notified()).await;
        }
    }

    /// Makes every copy that is missing, not claimed by another replica, and whose target
    /// region answers.
    pub async fn pass(&self) -> anyhow::Result<PassReport> {
        let mut report = PassReport::default();
        if self.blobs.all().count() < 2 {
            return Ok(report);
        }
        for target in self.blobs.region_names() {
            // Each round either claims a file (made, or failed and leased until its retry) or
            // finds it claimed by another replica. A copy that failed is not tried again in the
            // same pass, even if its retry time comes before the pass ends.
            let mut tried = HashSet::new();
            loop {
                if !self.blobs.is_up(&target) {
                    tracing::debug!(region = target, "region down: its copies wait");
                    break;
                }
                let mut files = self.db.missing_copies(&target, now(), BATCH).await?;
                files.retain(|f| tried.insert(f.id));
                if files.is_empty() {
                    break;
                }
                let outcomes: Vec<Option<bool>> = futures_util::stream::iter(files)
                    .map(|file| {
                        let target = target.clone();
                        async move { self.copy(&file, &target).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                for outcome in outcomes.into_iter().flatten() {
                    if outcome {
                        report.copied += 1;
                    } else {
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Claims and makes one copy. `None` if another replica holds it, else whether it was
    /// recorded.
    async fn copy(&self, file: &StoredFile, target: &str) -> Option<bool> {
        let lease_until = |t: i64| t + self.lease.as_secs().max(1) as i64;
        let t = now();
        let claim = match self.db.claim_copy(file.id, target, &self.me, t, lease_until(t)).await {
            Ok(Some(claim)) => claim,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(error = %e, "could not claim a copy");
                return None;
            }
        };
        // The list of missing copies may be older than another replica's copy that was
        // recorded, and its claim released, just before this claim: look again, now.
        let fresh = match self.db.file_uncached(&file.digest).await {
            Ok(Some(fresh)) if !fresh.instances.iter().any(|i| i == target) => fresh,
            Ok(_) => {
                self.release(file, target).await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read a claimed file");
                self.release(file, target).await;
                return None;
            }
        };
        let file = &fresh;
        // The source: a region holding the copy, healthy ones first, in configured order.
        let source = self
            .blobs
            .all()
            .filter(|s| s.region() != target && file.instances.iter().any(|i| i == s.region()))
            .min_by_key(|s| !self.blobs.is_up(s.region()))
            .map(|s| s.region().to_owned());
        let stores = source.as_deref().and_then(|s| Some((self.blobs.get(s)?.s3()?, self.blobs.get(target)?.s3()?)));
        let Some((src, dst)) = stores else {
            self.fail(file, "-", target, claim.attempts, "no S3 region holds a copy to copy from").await;
            return Some(false);
        };
        let from = source.as_deref().unwrap_or_default();
        let attempts = claim.attempts;
        if let Some((key, upload_id)) = &claim.leftover {
            // The replica that held this copy before died while assembling it.
            if let Err(e) = dst.abort_leftover(key, upload_id).await {
                self.fail(file, from, target, attempts, &e.to_string()).await;
                return Some(false);
            }
            tracing::info!(digest = %file.digest, region = target, key, "aborted the multipart copy a dead replica left");
            if let Err(e) = self.db.note_copy_upload(file.id, target, &self.me, None).await {
                tracing::warn!(error = %e, "could not forget an aborted multipart copy");
            }
        }
        // Noted before the first part is sent; forgotten once the copy ended either way (it
        // completed or aborted its upload itself).
        let noted = std::sync::atomic::AtomicBool::new(false);
        let started = |key: String, upload_id: String| -> futures_util::future::BoxFuture<'_, ()> {
            noted.store(true, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                let noted = self.db.note_copy_upload(file.id, target, &self.me, Some((&key, &upload_id))).await;
                if let Err(e) = noted {
                    tracing::warn!(error = %e, key, "could not note a multipart copy; if this replica dies, it stays");
                }
            })
        };
        let renew = || async move {
            match self.db.renew_copy(file.id, target, &self.me, lease_until(now())).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(digest = %file.digest, region = target, "lost the claim on a copy"),
                Err(e) => tracing::warn!(error = %e, "could not renew the claim on a copy"),
            }
        };
        let copy = dst.replicate_from(src, &file.digest, file.size, self.sizes, &started);
        let result = crate::time::while_renewing(self.lease, renew, copy).await;
        if noted.load(std::sync::atomic::Ordering::Relaxed)
            && let Err(e) = self.db.note_copy_upload(file.id, target, &self.me, None).await
        {
            tracing::warn!(error = %e, "could not forget a finished multipart copy");
        }
        match result {
            Ok(Replicated::Copied(mode)) => Some(self.record(file, from, target, dst, mode).await),
            Ok(Replicated::Mismatch(why)) => {
                tracing::error!(digest = %file.digest, from, to = target, reason = %why,
                    "the source copy does not match its digest: nothing copied");
                // Nothing to remove: a rejected copy is never published in the target (its PUT
                // is not sent, its multipart upload is aborted, its server-side copy not made).
                self.count(from, target, "mismatch");
                let details = serde_json::json!({"from": from, "to": target, "reason": why});
                self.audit("file.replication_rejected", file, details).await;
                self.fail(file, from, target, attempts, &format!("source does not match: {why}")).await;
                Some(false)
            }
            Ok(Replicated::SourceMissing) => {
                tracing::error!(digest = %file.digest, from, "a recorded instance has no blob");
                self.count(from, target, "source_missing");
                self.fail(file, from, target, attempts, &format!("no blob in {from}")).await;
                Some(false)
            }
            Ok(Replicated::SourceChanged) => {
                self.count(from, target, "source_changed");
                self.fail(file, from, target, attempts, "the source changed during the copy").await;
                Some(false)
            }
            Err(e) => {
                tracing::warn!(digest = %file.digest, from, to = target, error = %e, "copy failed; it will be retried");
                self.count(from, target, "failed");
                self.fail(file, from, target, attempts, &e.to_string()).await;
                Some(false)
            }
        }
    }

    /// Records a proven copy as an instance, unless the claim or the source went meanwhile.
    async fn record(&self, file: &StoredFile, from: &str, target: &str, dst: &S3Store, mode: CopyMode) -> bool {
        let recorded = async {
            let mut w = self.db.write_files().await?;
            let recorded = w.record_copy(file, from, target, &self.me, now()).await?;
            let repaired = w.repaired();
            w.commit().await?;
            self.metrics.scrub_copies_repaired.inc_by(repaired);
            Ok::<_, crate::db::DbError>(recorded)
        }
        .await;
        match recorded {
            Ok(true) => {
                let (how, parts) = (mode.name(), mode.parts());
                tracing::info!(digest = %file.digest, from, to = target, bytes = file.size, how, parts, "copy verified and recorded");
                self.count(from, target, "copied");
                let details =
                    serde_json::json!({"from": from, "to": target, "size": file.size, "mode": how, "parts": parts});
                self.audit("file.replicated", file, details).await;
                true
            }
            Ok(false) => {
                self.count(from, target, "abandoned");
                // Deleted meanwhile: the copy must not outlive the deletion. (Taken over by
                // another replica: it makes the same bytes and records them; leave them.)
                let deleted =
                    self.db.file_uncached(&file.digest).await.map(|f| f.is_none_or(|f| f.instances.is_empty()));
                if deleted.unwrap_or(false)
                    && let Err(e) = dst.delete_blob(&file.digest).await
                {
                    tracing::warn!(error = %e, "could not remove the copy of a deleted file");
                }
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record a copy");
                self.count(from, target, "failed");
                false
            }
        }
    }

    /// Gives up a claim without an attempt.
    async fn release(&self, file: &StoredFile, target: &str) {
        if let Err(e) = self.db.release_copy(file.id, target, &self.me).await {
            tracing::warn!(error = %e, "could not release a claim; it runs out with its lease");
        }
    }

    async fn fail(&self, file: &StoredFile, from: &str, target: &str, attempts: i64, why: &str) {
        let backoff = 1i64.checked_shl(attempts.clamp(0, 16) as u32).unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF);
        if let Err(e) = self.db.fail_copy(file.id, target, &self.me, why, now() + backoff).await {
            tracing::error!(error = %e, from, "could not record a failed copy");
        }
    }

    async fn audit(&self, action: &str, file: &StoredFile, details: serde_json::Value) {
        self.db.audit_or_log(ACTOR, action, file.digest.as_str(), details).await
    }

    fn count(&self, from: &str, to: &str, outcome: &str) {
        self.metrics.replication_copies.with_label_values(&[from, to, outcome]).inc();
    }

    /// The copies still missing in each region.
    pub async fn backlog(&self) -> anyhow::Result<Vec<(String, Backlog)>> {
        backlog(&self.db, &self.blobs).await
    }
}

/// The copies still missing in each configured region.
pub async fn backlog(db: &Db, blobs: &BlobStores) -> anyhow::Result<Vec<(String, Backlog)>> {
    let mut out = Vec::new();
    for region in blobs.region_names() {
        let b = db.backlog(&region).await?;
        out.push((region, b));
    }
    Ok(out)
}

/// Sets the backlog gauges of `m` (at each scrape of `/metrics`).
pub async fn update_backlog_metrics(db: &Db, blobs: &BlobStores, m: &crate::metrics::Metrics) -> anyhow::Result<()> {
    let regions = if blobs.all().count() > 1 { backlog(db, blobs).await? } else { Vec::new() };
    let missing = regions.iter().map(|(_, b)| b.missing).sum();
    let oldest = regions.iter().filter_map(|(_, b)| b.oldest).min();
    m.replication_pending.set(missing);
    m.replication_oldest_pending.set(oldest.map_or(0, |o| (now() - o).max(0)));
    Ok(())
}
