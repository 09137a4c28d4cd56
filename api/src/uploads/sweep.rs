//! The sweeper: staged uploads never completed are removed once their URL expired more than
//! the grace period ago; events older than `TOOLTOOL_EVENTS_RETENTION` are removed (only
//! published ones when a broker is configured, so an unreachable broker never loses any).

use std::time::Duration;

use crate::state::AppState;
use crate::time::unix_now;

/// Removes expired staged uploads once; returns how many pending uploads were closed.
pub async fn sweep_once(state: &AppState) -> anyhow::Result<usize> {
    let cutoff = unix_now() as i64 - state.settings.staging_grace.as_secs() as i64;
    let expired = state.db.expired_pending(cutoff).await?;
    for p in &expired {
        if let Some(store) = state.blobs.get(&p.region) {
            store.delete_staged(&p.staging_key).await?;
        }
        state.db.delete_pending(p.id).await?;
    }
    if let Some(local) = &state.local {
        local.sweep_incoming(state.settings.staging_grace);
    }
    // A nonce can only be replayed while its timestamp is within the skew window.
    state.db.forget_hawk_nonces(unix_now() as i64 - 2 * crate::auth::hawk::SKEW).await?;
    let events_cutoff = unix_now() as i64 - state.settings.events_retention.as_secs() as i64;
    let forgotten = state.db.forget_events(events_cutoff, state.settings.amqp_url.is_some()).await?;
    if forgotten > 0 {
        tracing::info!(count = forgotten, "removed events past their retention");
    }
    if !expired.is_empty() {
        tracing::info!(count = expired.len(), "removed expired staged uploads");
    }
    Ok(expired.len())
}

/// Sweeps every `interval` for as long as the server runs.
pub async fn run(state: actix_web::web::Data<AppState>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&state).await {
            tracing::error!(error = %e, "staging sweep failed");
        }
    }
}
