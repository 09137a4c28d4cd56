//! Uploads in parts: the parts of one file go up in parallel (at most `jobs` at once across
//! the run), each streamed from its range of the file, each retried by the one retry policy
//! ([`RetryPolicy`], honouring `Retry-After`). The server hands out part URLs in batches and
//! says which parts storage does not have yet, so after each batch, after URLs were refused
//! (expired), and on a new run after a crash, only the missing parts are sent.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, stream};
use tokio::sync::Semaphore;
use tooltool_proto::{PartUrl, PartsPlan};

use crate::api::{ApiClient, verify_timeout};
use crate::error::Error;
use crate::progress::{Progress, ProgressExt, Transfer};
use crate::retry::{RetryPolicy, is_transient};
use crate::transfer::Blob;

/// Why one part could not be sent.
enum PartFailed {
    /// Storage refused the URL (401/403: expired or not valid): ask for new ones.
    Refused(Error),
    /// The upload is closed (404/409): completed by another client, or gone.
    Closed(Error),
    /// Anything else, once the retries are spent.
    Failed(Error),
}

/// Sends the parts of `path` that `plan` and the server's later plans name, then waits until
/// the server has verified the file. `slots` bounds the parts in flight across the run.
pub async fn upload(
    client: &ApiClient,
    mut plan: PartsPlan,
    path: &Path,
    blob: &Blob,
    slots: &Arc<Semaphore>,
    retry: &RetryPolicy,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let size = blob.size.unwrap_or(0);
    let bar: Arc<dyn Transfer> = progress.transfer(&blob.name, Some(size));
    let stored = size.saturating_sub(missing_bytes(&plan, size));
    let confirmed = Arc::new(AtomicU64::new(stored));
    bar.set(stored);
    if plan.missing < plan.count {
        progress.info(&format!("{}: resuming, {} of {} parts to send", blob.name, plan.missing, plan.count));
    }
    let mut refreshes = 0;
    let mut closed = None;
    while plan.missing > 0 {
        let before = plan.missing;
        let mut refused = None;
        let results: Vec<Result<(), PartFailed>> = stream::iter(plan.urls.iter().map(|part| {
            let (bar, confirmed) = (bar.clone(), confirmed.clone());
            async move {
                let _slot = slots.acquire().await.expect("the semaphore is never closed");
                send_part(client, path, blob, part, retry, progress, &bar, &confirmed).await
            }
        }))
        .buffer_unordered(plan.urls.len().max(1))
        .collect()
        .await;
        for result in results {
            match result {
                Ok(()) => {}
                Err(PartFailed::Refused(e)) => refused = Some(e),
                Err(PartFailed::Closed(e)) => closed = Some(e),
                Err(PartFailed::Failed(e)) => return Err(e),
            }
        }
        if closed.is_some() {
            break;
        }
        plan = match client.upload_parts(blob.digest.as_str()).await {
            Ok(plan) => plan,
            // No upload open any more: another client completed it, or it was swept.
            Err(e) if e.status() == Some(404) => {
                closed = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        if let Some(e) = refused {
            refreshes += 1;
            if refreshes > retry.refreshes {
                return Err(e);
            }
            progress.warn(&format!("{}: storage refused part URLs ({e}); asking for new ones", blob.name));
        } else if plan.missing >= before {
            return Err(Error::Protocol(format!(
                "{}: the server still lists {} parts as missing after they were sent",
                blob.name, plan.missing
            )));
        }
    }
    bar.set(size);
    drop(bar);
    if let Some(e) = closed {
        // Someone else finished the upload (it may still be verifying): fine once the file
        // is verified; a digest the server cannot verify gives the part's error.
        return match client.complete_until_verified(blob.digest.as_str(), verify_timeout(size)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(e),
        };
    }
    client.complete_until_verified(blob.digest.as_str(), verify_timeout(size)).await?;
    Ok(())
}

/// The bytes of the parts storage does not have, from the plan's part size and count.
fn missing_bytes(plan: &PartsPlan, size: u64) -> u64 {
    let listed: u64 = plan.urls.iter().map(|p| p.size).sum();
    let unlisted = plan.missing.saturating_sub(plan.urls.len() as u32) as u64;
    (listed + unlisted * plan.part_size).min(size)
}

/// `PUT`s one part, retrying transient failures as the policy says.
#[allow(clippy::too_many_arguments)]
async fn send_part(
    client: &ApiClient,
    path: &Path,
    blob: &Blob,
    part: &PartUrl,
    retry: &RetryPolicy,
    progress: &dyn Progress,
    bar: &Arc<dyn Transfer>,
    confirmed: &AtomicU64,
) -> Result<(), PartFailed> {
    let mut attempt = 0;
    loop {
        match client.put_range_reporting(&part.url, path, part.offset, part.size, Some(bar.clone())).await {
            Ok(()) => {
                confirmed.fetch_add(part.size, Ordering::Relaxed);
                return Ok(());
            }
            Err(f) => {
                // The bytes of this try no longer count.
                bar.set(confirmed.load(Ordering::Relaxed));
                match f.error.status() {
                    Some(401 | 403) => return Err(PartFailed::Refused(f.error)),
                    Some(404 | 409) => return Err(PartFailed::Closed(f.error)),
                    _ => {}
                }
                attempt += 1;
                if !is_transient(&f.error) || attempt >= retry.attempts {
                    return Err(PartFailed::Failed(f.error));
                }
                let delay = retry.delay(attempt, f.retry_after);
                progress.warn(&format!(
                    "{}: part {}: {}; retrying in {:.1} s",
                    blob.name,
                    part.number,
                    f.error,
                    delay.as_secs_f64()
                ));
                tokio::time::sleep(delay).await;
            }
        }
    }
}
