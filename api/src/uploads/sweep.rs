//! The sweeper: staged uploads never completed (with their open uploads in parts) are
//! removed once their URL expired more than
//! the grace period ago; then declarations that never got a verified copy and have no pending
//! upload left (so a wrong declaration cannot pin a digest's size and visibility forever), with
//! an audit line each; staged objects no pending upload owns (a PUT after verification), once
//! older than the grace period; events older than `TOOLTOOL_EVENTS_RETENTION` are removed (only
//! published ones when a broker is configured, so an unreachable broker never loses any).

use std::time::Duration;

use super::Uploads;
use crate::time::unix_now;

/// Removes expired staged uploads once; returns how many pending uploads were closed.
pub async fn sweep_once(u: &Uploads) -> anyhow::Result<usize> {
    let cutoff = unix_now() as i64 - u.staging_grace.as_secs() as i64;
    let expired = u.db.expired_pending(cutoff).await?;
    for p in &expired {
        if let Some(store) = u.blobs.get(&p.region) {
            super::parts::discard(store.as_ref(), p).await?;
        }
        u.db.delete_pending(p.id).await?;
    }
    for digest in u.db.expired_declarations(cutoff).await? {
        if u.db.remove_declaration(&digest, false).await?.is_some() {
            tracing::info!(digest = %digest, "removed a declaration that never got a verified copy");
            let details =
                serde_json::json!({"reason": "no verified copy and no pending upload after the staging grace"});
            u.db.audit_or_log("sweeper", "file.declaration_expired", digest.as_str(), details).await;
        }
    }
    for store in u.blobs.all() {
        let mut orphans = 0;
        for key in store.staged_before(u.staging_grace).await? {
            if !u.db.pending_key_exists(&key).await? {
                store.delete_staged(&key).await?;
                orphans += 1;
            }
        }
        if orphans > 0 {
            tracing::info!(count = orphans, region = store.region(), "removed staged objects no pending upload owns");
        }
    }
    if let Some(local) = &u.local {
        local.sweep_incoming(u.staging_grace);
    }
    // A nonce can only be replayed while its timestamp is within the skew window.
    u.db.forget_hawk_nonces(unix_now() as i64 - 2 * crate::auth::hawk::SKEW).await?;
    let events_cutoff = unix_now() as i64 - u.events_retention.as_secs() as i64;
    let forgotten = u.db.forget_events(events_cutoff, u.events_relayed).await?;
    if forgotten > 0 {
        tracing::info!(count = forgotten, "removed events past their retention");
    }
    if !expired.is_empty() {
        tracing::info!(count = expired.len(), "removed expired staged uploads");
    }
    Ok(expired.len())
}

/// Sweeps every `interval` for as long as the server runs.
pub async fn run(uploads: Uploads, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&uploads).await {
            tracing::error!(error = %e, "staging sweep failed");
        }
    }
}
