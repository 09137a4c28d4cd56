//! Upload verification: take each staged upload of a file, let its store hash and publish it,
//! and record the verified instance only after the blob is in place.
//!
//! Verification runs in a task of its own, so a caller that hangs up does not abort it half
//! way; the request waits for it up to `verify_wait`, then answers 409 while it goes on. One
//! verification per digest runs at a time in a process; across replicas the stores' own
//! atomic steps (rename, ETag-pinned copy) keep concurrent ones safe.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{UploadError, Uploads, parts};
use crate::blobs::Verification;
use crate::db::{NewEvent, StoredFile};
use tooltool_proto::{Digest, EventType};

/// What `upload/complete` found.
#[derive(Debug)]
pub enum Outcome {
    /// Published; the file as it now is.
    Verified(StoredFile),
    /// The staged bytes did not match; why.
    Rejected(String),
    /// Nothing staged yet, or a verification still running.
    NotReady,
}

/// The digests being verified in this process.
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<Digest>>>, Arc<tokio::sync::Notify>);

/// Removes its digest from [`InFlight`] when dropped.
struct Claim {
    set: InFlight,
    digest: Digest,
}

impl InFlight {
    fn claim(&self, digest: &Digest) -> Option<Claim> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(digest.clone()).then(|| Claim { set: self.clone(), digest: digest.clone() })
    }

    fn is_idle(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Waits until no verification runs (at shutdown), at most `limit`; whether it got there.
    pub async fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.1.notified();
                if self.is_idle() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.set.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.digest);
        self.set.1.notify_waiters();
    }
}

/// Verifies the staged uploads of `file`, waiting up to the configured time.
pub async fn complete(uploads: &Uploads, file: &StoredFile, actor: &str) -> Result<Outcome, UploadError> {
    let Some(claim) = uploads.verifications.claim(&file.digest) else {
        return Ok(Outcome::NotReady);
    };
    let (task_uploads, task_file, actor) = (uploads.clone(), file.clone(), actor.to_owned());
    // On the main runtime, not the HTTP worker's: workers stop at shutdown, and a verification
    // must finish (the server waits for it) rather than die half way.
    let task = uploads.runtime.spawn(async move {
        let _claim = claim;
        verify_pending(&task_uploads, &task_file, &actor).await
    });
    match tokio::time::timeout(uploads.verify_wait, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Err(UploadError::Internal(format!("verification task failed: {e}"))),
        Err(_) => Ok(Outcome::NotReady),
    }
}

async fn verify_pending(u: &Uploads, file: &StoredFile, actor: &str) -> Result<Outcome, UploadError> {
    let mut rejected = None;
    for pending in u.db.pending_uploads(file.id).await? {
        let Some(store) = u.blobs.get(&pending.region) else { continue };
        if let Some(mp) = &pending.multipart
            && parts::finish(u, store, &pending, mp, file.size).await? == parts::Finished::Incomplete
        {
            continue;
        }
        match store.verify_and_publish(&pending.staging_key, &file.digest, file.size).await? {
            Verification::Published { sha256 } => {
                let now = crate::time::now();
                let (closed, repaired) = u.db.mark_verified(file, store.region(), &sha256, actor, now).await?;
                u.metrics.scrub_copies_repaired.inc_by(repaired);
                for other in closed.iter().filter(|p| p.staging_key != pending.staging_key) {
                    if let Some(s) = u.blobs.get(&other.region)
                        && let Err(e) = parts::discard(s.as_ref(), other).await
                    {
                        tracing::warn!(error = %e, "could not remove a superseded staged upload");
                    }
                }
                tracing::info!(digest = %file.digest, region = store.region(), bytes = file.size, "upload verified");
                u.replicate.notify_one();
                u.metrics.verified_bytes.inc_by(file.size);
                u.metrics.verifications.with_label_values(&["verified"]).inc();
                let details = serde_json::json!({"region": store.region(), "size": file.size});
                u.db.audit_or_log(actor, "upload.verified", file.digest.as_str(), details).await;
                let verified = u.db.file(&file.digest).await?;
                return verified
                    .map(|f| Outcome::Verified(Arc::unwrap_or_clone(f)))
                    .ok_or_else(|| UploadError::Internal("verified file vanished".into()));
            }
            Verification::Mismatch(why) => {
                tracing::warn!(digest = %file.digest, reason = %why, "upload rejected");
                u.metrics.verifications.with_label_values(&["rejected"]).inc();
                // A rejection changes no table (the staged bytes are gone, the pending upload
                // stays for a retry), so its event has a transaction of its own, recorded here
                // where the rejection is decided, after the store discarded the bytes.
                let mut event =
                    NewEvent::file(EventType::FileRejected, &file.digest, file.size, file.visibility, actor);
                event.data.region = Some(store.region().to_owned());
                event.data.reason = Some(why.clone());
                u.db.record_event(event, crate::time::now()).await?;
                u.db.audit_or_log(actor, "upload.rejected", file.digest.as_str(), serde_json::json!({"reason": why}))
                    .await;
                rejected = Some(why);
            }
            Verification::NotStaged | Verification::Changed => {}
        }
    }
    Ok(rejected.map_or(Outcome::NotReady, Outcome::Rejected))
}
