//! The scrubber: every stored copy read back and hashed again, once per pass, so that bytes
//! that rotted, were rewritten or deleted underneath the store stop being served.
//!
//! Each `serve` replica runs one (unless `TOOLTOOL_SCRUB_INTERVAL=off`): a copy last proven
//! more than the interval ago is due. `tooltool-api scrub` (and `verify-instances`) runs one
//! pass over the copies proven before it started. Replicas share the work through the
//! database as replication does: a copy is claimed with a lease (`file_instances.
//! scrub_claimed_by`, `scrub_lease_until`) renewed while it is read, so each is read once per
//! pass however many replicas scrub, and one whose replica died is claimed again when its
//! lease runs out. Each copy goes through [`copies::examine`], the one engine that reads,
//! hashes and records: an intact copy's proof is renewed; a missing or corrupt one leaves
//! routing at once, its bytes set aside under `quarantine/`, and the replicator copies the
//! file again from a region whose copy is still verified.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::blobs::BlobStores;
use crate::copies::{self, Examined, VerifyReport};
use crate::db::{Db, ScrubFilter};
use crate::time::{Pace, now_ms, while_renewing};

/// Copies looked at per query.
const BATCH: i64 = 64;
/// The actor of the background scrubber's audit entries and events.
pub const ACTOR: &str = "scrubber";
/// How long a command's claim on one copy lasts without being renewed.
const COMMAND_LEASE: Duration = Duration::from_secs(60);
/// Longest wait between two looks for due copies.
const IDLE: Duration = Duration::from_secs(60);

/// Reads back stored copies, one claimed copy at a time.
#[derive(Debug, Clone)]
pub struct Scrubber {
    db: Db,
    blobs: BlobStores,
    /// This process's name in claims.
    me: Arc<str>,
    lease: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Scrubber {
    /// A scrubber over these stores, whose claims last `lease` unless renewed, counting what it
    /// reads in `metrics`.
    pub fn new(db: Db, blobs: BlobStores, lease: Duration, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let me = format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self { db, blobs, me: me.into(), lease, metrics }
    }

    /// Scrubs every copy due `interval` after its last proof, paced to `rate` bytes per
    /// second, for as long as the server runs.
    pub async fn run(self, interval: Duration, rate: Option<f64>) {
        loop {
            let due = now_ms() - i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            let pace = Pace::new(rate);
            match self.pass(&ScrubFilter::default(), Some(due), &pace, ACTOR, &|_| {}).await {
                Ok(r) if r.checked > 0 || r.found_anything() => tracing::info!(
                    checked = r.checked,
                    bytes = r.bytes,
                    lost = r.lost.len(),
                    failed = r.failed.len(),
                    "scrub pass"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "scrub pass failed"),
            }
            tokio::time::sleep(IDLE.min(interval)).await;
        }
    }

    /// One pass: every copy matching `filter` last proven before `due` (unix milliseconds;
    /// `None`: when the pass starts) that no other replica is reading, each read once.
    pub async fn pass(
        &self,
        filter: &ScrubFilter,
        due: Option<i64>,
        pace: &Pace,
        actor: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> anyhow::Result<VerifyReport> {
        if let Some(r) = &filter.region
            && self.blobs.get(r).is_none()
        {
            anyhow::bail!(
                "--region {r}: no such region is configured (configured: {})",
                self.blobs.region_names().join(", ")
            );
        }
        let due = due.unwrap_or_else(now_ms);
        let mut report = VerifyReport::default();
        // A copy that could not be read keeps its old proof; it is not tried again this pass.
        let mut tried = HashSet::new();
        loop {
            let mut due_copies = self.db.copies_to_scrub(filter, due, now_ms(), BATCH).await?;
            due_copies.retain(|f| tried.insert((f.id, f.instances.clone())));
            if due_copies.is_empty() {
                break;
            }
            for file in &due_copies {
                let region = file.instances[0].as_str();
                // Copies in regions this replica does not serve are left to those that do.
                let Some(store) = self.blobs.get(region) else { continue };
                let lease_until = || now_ms() + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2);
                if !self.db.claim_scrub(file.id, region, &self.me, due, now_ms(), lease_until()).await? {
                    continue; // another replica reads it, or proved it meanwhile
                }
                let renew = || async move {
                    if let Err(e) = self.db.renew_scrub(file.id, region, &self.me, lease_until()).await {
                        tracing::warn!(error = %e, "could not renew the claim on a scrub");
                    }
                };
                let examined =
                    while_renewing(self.lease, renew, copies::examine(&self.db, store.as_ref(), file, pace, actor))
                        .await?;
                let m = &self.metrics;
                match examined {
                    Ok(found) => {
                        report.checked += 1;
                        m.scrub_copies.with_label_values(&[region]).inc();
                        let read = match &found {
                            Examined::Lost(loss, _) if loss.reason == "missing" => 0,
                            _ => file.size,
                        };
                        report.bytes += read;
                        m.scrub_bytes.with_label_values(&[region]).inc_by(read);
                        match found {
                            Examined::Intact => self.db.end_scrub(file.id, region, &self.me, Some(now_ms())).await?,
                            Examined::Lost(loss, quarantined) => {
                                // The instance, and the claim with it, are gone.
                                tracing::error!(digest = %file.digest, region, reason = loss.reason,
                                    detail = %loss.detail, quarantined = quarantined.as_deref(),
                                    "a stored copy is lost: no longer served from this region");
                                m.scrub_copies_lost.with_label_values(&[loss.reason]).inc();
                                let why = format!("{}: {}", loss.reason, loss.detail);
                                report.lost.push((file.digest.clone(), region.to_owned(), why));
                            }
                        }
                        progress(read);
                    }
                    Err(e) => {
                        tracing::warn!(digest = %file.digest, region, error = %e, "a stored copy could not be read");
                        self.db.end_scrub(file.id, region, &self.me, None).await?;
                        report.failed.push((file.digest.clone(), region.to_owned(), e.to_string()));
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Re-hashes every recorded copy (in `region` only, when given), paced to `rate` bytes per
/// second, and records each finding; `progress` is told the bytes of each copy read. One pass
/// of the scrubber over every copy proven before it started.
pub async fn verify_instances(
    db: &Db,
    blobs: &BlobStores,
    region: Option<&str>,
    pace: &Pace,
    actor: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<VerifyReport> {
    let filter = ScrubFilter { region: region.map(str::to_owned), digest: None };
    let metrics = Arc::new(crate::metrics::Metrics::new()); // a command's own: nothing serves it
    Scrubber::new(db.clone(), blobs.clone(), COMMAND_LEASE, metrics).pass(&filter, None, pace, actor, progress).await
}

/// Sets the age of the oldest proof in `m` (at each scrape of `/metrics`).
pub async fn update_metrics(db: &Db, m: &crate::metrics::Metrics) -> anyhow::Result<()> {
    let oldest = db.oldest_proof().await?;
    let age = oldest.map_or(0, |o| (now_ms() - o).max(0) / 1000);
    m.scrub_oldest_unproven.set(age);
    Ok(())
}
