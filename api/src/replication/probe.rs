//! The region probe: every replica asks every region's store whether it answers (S3:
//! HeadBucket), with a short timeout, every `TOOLTOOL_REGION_PROBE`. Downloads and the
//! replicator route around a region whose last probe failed.

use std::time::Duration;

use futures_util::future::join_all;

use crate::blobs::BlobStores;
use crate::metrics::Metrics;

/// Longest a probe waits for a region's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes every region once and records what it found (in `blobs`, and `metrics`' gauges).
pub async fn probe_once(blobs: &BlobStores, metrics: &Metrics) {
    let checks = blobs.all().map(|store| async move {
        let up = match tokio::time::timeout(PROBE_TIMEOUT, store.check()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(region = store.region(), error = %e, "region probe failed");
                false
            }
            Err(_) => false,
        };
        (store.region().to_owned(), up)
    });
    for (region, up) in join_all(checks).await {
        if blobs.is_up(&region) != up {
            if up {
                tracing::info!(region, "region answers again");
            } else {
                tracing::warn!(region, "region does not answer; downloads and copies go around it");
            }
        }
        blobs.set_up(&region, up);
        metrics.region_up.with_label_values(&[&region]).set(up.into());
    }
}

/// Probes every `interval` for as long as the server runs.
pub async fn run(blobs: BlobStores, interval: Duration, metrics: std::sync::Arc<Metrics>) {
    loop {
        probe_once(&blobs, &metrics).await;
        tokio::time::sleep(interval).await;
    }
}
