//! What operators watch of the repositories: each role's newest version and expiry, and how
//! many events the signer has not applied yet. Read from the database at each scrape of
//! `/metrics` and each `/__heartbeat__`, so every replica answers the same.

use super::repo::{self, REPOS};
use crate::db::{Db, DbError, TufRole};

/// How long before its expiry a role makes the heartbeat warn: the root (signed offline) a
/// month before; an online role once a quarter of its lifetime is left, a quarter after it
/// should have been signed again (at half), so a stalled signer is noticed long before clients
/// refuse the metadata.
pub fn warning_margin(role: &str) -> i64 {
    match role {
        "root" => 30 * 86_400,
        "targets" => repo::TARGETS_LIFETIME / 4,
        "snapshot" => repo::SNAPSHOT_LIFETIME / 4,
        "timestamp" => repo::TIMESTAMP_LIFETIME / 4,
        _ => repo::BINS_LIFETIME / 4,
    }
}

/// One bootstrapped repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStatus {
    /// `public` or `internal`.
    pub repo: &'static str,
    /// `root`, `targets`, `snapshot`, `timestamp`, and `bins` for the bin that expires first:
    /// its newest version and expiry.
    pub roles: Vec<TufRole>,
    /// Events recorded after the last one the signer applied (before its first full scan:
    /// every event).
    pub lag: i64,
}

impl RepoStatus {
    /// The roles that expire within their [`warning_margin`] of `now` (or have expired).
    pub fn expiring(&self, now: i64) -> Vec<&str> {
        self.roles.iter().filter(|r| r.expires - now < warning_margin(&r.role)).map(|r| r.role.as_str()).collect()
    }
}

/// Every bootstrapped repository's status.
pub async fn read(db: &Db) -> Result<Vec<RepoStatus>, DbError> {
    let states = db.tuf_states().await?;
    let last = db.last_event_seq().await?;
    let mut out = Vec::new();
    for repo in REPOS {
        let Some((_, state)) = states.iter().find(|(r, _)| r == repo.as_str()) else { continue };
        let all = db.tuf_roles(repo.as_str()).await?;
        let mut roles: Vec<TufRole> = all.iter().filter(|r| !r.role.starts_with("bins-")).cloned().collect();
        if let Some(first) = all.iter().filter(|r| r.role.starts_with("bins-")).min_by_key(|r| r.expires) {
            roles.push(TufRole { role: "bins".into(), ..first.clone() });
        }
        out.push(RepoStatus { repo: repo.as_str(), roles, lag: last - state.last_seq.unwrap_or(0) });
    }
    Ok(out)
}

/// Sets the TUF gauges of `m` (served at `/metrics`) from [`read`].
pub async fn update_metrics(db: &Db, m: &crate::metrics::Metrics) -> Result<(), DbError> {
    let now = crate::time::now();
    for status in read(db).await? {
        m.tuf_events_lag.with_label_values(&[status.repo]).set(status.lag);
        for r in &status.roles {
            m.tuf_role_version.with_label_values(&[status.repo, &r.role]).set(r.version);
            m.tuf_role_expires.with_label_values(&[status.repo, &r.role]).set(r.expires - now);
        }
    }
    Ok(())
}
