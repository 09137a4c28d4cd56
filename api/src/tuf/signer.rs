//! The signer: follows the events outbox and keeps both repositories' signed metadata current.
//!
//! - **One across replicas.** On PostgreSQL the replica holding a session advisory lock
//!   ([`Db::signer_lock`], as the events relay does) signs; the others stand by and take over
//!   when its connection closes. On SQLite the one process signs.
//! - **A pass** ([`Signer::pass`]) reads the events after the last one it applied (the first
//!   pass of a repository reads every file instead), looks again at each file they name, moves
//!   it into, out of or between the repositories' bins (`tuf_targets`), and signs the bins that
//!   changed, a new snapshot and a new timestamp, all in one transaction with its cursor: a
//!   crash leaves all of it or none.
//! - **Coalescing.** New events wake the loop; it waits [`COALESCE`] more before the pass, so
//!   that a burst of uploads costs one snapshot.
//! - **Internal names stay out of `public`.** When a file is made internal, the older versions
//!   of the public bin that listed it are removed in the same pass.
//! - **Old versions** other than the root's are removed a day after a newer one was signed
//!   ([`KEEP_SUPERSEDED`]): the table holds the current repository and a day of history.
//! - **Expiry.** Each pass also signs again whatever role has less than half of its lifetime
//!   left ([`super::repo`]), at most [`EXPIRING_BINS`] bins per pass, and everything when the
//!   root changed (a new root may name new online keys).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::repo::{self, OnlineKeys, REPOS};
use super::roles::{self, MetaFile, Target};
use super::root::Root;
use crate::db::{Db, TufCandidate, TufRole, TufState, TufWrite};
use tooltool_proto::{Digest, Visibility};

/// How long the signer waits after new events before signing, so that a burst coalesces.
pub const COALESCE: Duration = Duration::from_secs(1);
/// How often the signer looks for events committed by other replicas.
const POLL: Duration = Duration::from_millis(500);
/// How often the signer passes with no new event, to re-sign roles nearing expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);
/// How often a standing-by replica tries to become the signer.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// Most bins re-signed per pass only because they near expiry.
pub const EXPIRING_BINS: usize = 32;
/// How long a version stays served once a newer one is signed: clients that read the timestamp
/// just before the new one fetch the snapshot and bins it names a moment later.
pub const KEEP_SUPERSEDED: i64 = 86_400;
/// Rows read per query of a pass.
const PAGE: i64 = 1000;

/// What a pass signed in one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The repository.
    pub repo: Visibility,
    /// How many bins were signed.
    pub bins: usize,
    /// The new snapshot version, if one was signed.
    pub snapshot: Option<i64>,
    /// The new timestamp version.
    pub timestamp: i64,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// The repositories it signed.
    pub signed: Vec<Signed>,
    /// The repositories it could not sign, holding none of the online keys their root (this
    /// version) names.
    pub no_key: Vec<(String, i64)>,
}

/// What a pass did in one repository.
enum Outcome {
    /// Not bootstrapped, or nothing to sign.
    Nothing,
    /// No key held for this root version.
    NoKey(i64),
    /// Signed.
    Signed(Signed),
}

/// Signs the repositories with the online keys it holds.
#[derive(Debug, Clone)]
pub struct Signer {
    db: Db,
    keys: Arc<OnlineKeys>,
    leading: Arc<AtomicBool>,
}

impl Signer {
    /// A signer over `db` holding `keys`.
    pub fn new(db: Db, keys: Arc<OnlineKeys>) -> Self {
        Self { db, keys, leading: Arc::default() }
    }

    /// Whether this signer holds the signer's lock now (shared: read it after `run` started).
    pub fn leading(&self) -> Arc<AtomicBool> {
        self.leading.clone()
    }

    /// Signs, whenever it holds the signer's lock, until the process ends. A replica holding
    /// no online key never takes the lock: it only serves the metadata.
    pub async fn run(self) {
        if self.keys.0.is_empty() {
            tracing::info!("TUF signer: no online key (TOOLTOOL_TUF_ONLINE_KEYS): this replica does not sign");
            return;
        }
        loop {
            let mut lock = match self.db.signer_lock().await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tokio::time::sleep(LOCK_RETRY).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TUF signer: cannot take the signer lock");
                    tokio::time::sleep(LOCK_RETRY).await;
                    continue;
                }
            };
            tracing::info!("TUF signer: signing on this replica");
            self.leading.store(true, Ordering::SeqCst);
            let mut seen = 0;
            // Repositories the last pass could not sign (no key held for that root version):
            // waiting is no reason to pass again until their root changes.
            let mut stuck: Vec<(String, i64)> = Vec::new();
            let mut last_pass: Option<tokio::time::Instant> = None;
            loop {
                if let Err(e) = lock.check().await {
                    tracing::warn!(error = %e, "TUF signer: lost the signer lock");
                    self.leading.store(false, Ordering::SeqCst);
                    break;
                }
                let (fresh, heads) = match self.changes(seen).await {
                    Ok(changes) => changes,
                    Err(e) => {
                        tracing::warn!(error = %e, "TUF signer: cannot read the events");
                        (None, Vec::new())
                    }
                };
                if let Some(seq) = fresh {
                    seen = seq;
                    tokio::time::sleep(COALESCE).await;
                }
                let waiting = heads.into_iter().any(|(repo, root, waits)| waits && !stuck.contains(&(repo, root)));
                if fresh.is_some() || waiting || last_pass.is_none_or(|t| t.elapsed() >= EXPIRY_CHECK) {
                    last_pass = Some(tokio::time::Instant::now());
                    match self.pass(crate::time::now()).await {
                        Ok(report) => stuck = report.no_key,
                        Err(e) => tracing::error!(error = format!("{e:#}"), "TUF signer: a signing pass failed"),
                    }
                }
                self.db.events_committed(POLL).await;
            }
        }
    }

    /// The last event seq if it is past `seen`, and each repository's newest root and whether
    /// it waits for the signer ([`Db::tuf_heads`]).
    async fn changes(&self, seen: i64) -> anyhow::Result<(Option<i64>, Vec<(String, i64, bool)>)> {
        let last = self.db.last_event_seq().await?;
        Ok(((last > seen).then_some(last), self.db.tuf_heads().await?))
    }

    /// One pass over every bootstrapped repository, in one transaction.
    pub async fn pass(&self, now: i64) -> anyhow::Result<Pass> {
        let mut w = self.db.write_tuf().await?;
        let mut report = Pass::default();
        for repo in REPOS {
            match self.pass_repo(&mut w, repo, now).await.with_context(|| format!("repository {repo}"))? {
                Outcome::Signed(s) => report.signed.push(s),
                Outcome::NoKey(root) => report.no_key.push((repo.as_str().to_owned(), root)),
                Outcome::Nothing => {}
            }
        }
        w.commit().await?;
        for s in &report.signed {
            tracing::info!(repo = s.repo.as_str(), bins = s.bins, snapshot = ?s.snapshot, timestamp = s.timestamp, "TUF: signed");
        }
        Ok(report)
    }

    async fn pass_repo(&self, w: &mut TufWrite, repo: Visibility, now: i64) -> anyhow::Result<Outcome> {
        let name = repo.as_str();
        let Some(state) = w.state(name).await? else { return Ok(Outcome::Nothing) };
        let latest = w.roles(name).await?;
        let find = |role: &str| latest.iter().find(|r| r.role == role);
        let root_row = find("root").context("a bootstrapped repository has a root")?;
        let root_body = w.file(name, "root", root_row.version).await?.context("the newest root is readable")?;
        let root = Root::parse(root_body.as_bytes())?;
        let Some(key) = root.online_signer(&self.keys.0) else {
            tracing::error!(
                repo = name,
                root = root.version,
                "TUF: this server holds none of the online keys the root names; nothing is signed"
            );
            return Ok(Outcome::NoKey(root.version as i64));
        };

        let Changes { last_seq, mut dirty, hidden } = collect_changes(w, repo, state.last_seq).await?;
        let done = TufState { last_seq: Some(last_seq), signed_root: root.version as i64 };
        w.forget_superseded(name, now - KEEP_SUPERSEDED).await?;

        // What to sign: changed bins, and whatever is missing, nears expiry, or was signed
        // under an older root.
        let renew = state.signed_root != root.version as i64;
        let due = |role: &str, lifetime: i64| renew || find(role).is_none_or(|r| r.expires - now < lifetime / 2);
        let mut expiring = 0;
        for b in 0..=255u8 {
            let role = roles::bin_name(b);
            if dirty.contains(&b) {
                continue;
            }
            match find(&role) {
                None => {
                    dirty.insert(b);
                }
                Some(_) if renew => {
                    dirty.insert(b);
                }
                Some(r) if expiring < EXPIRING_BINS && r.expires - now < repo::BINS_LIFETIME / 2 => {
                    expiring += 1;
                    dirty.insert(b);
                }
                Some(_) => {}
            }
        }
        let sign_targets = due("targets", repo::TARGETS_LIFETIME);
        let sign_snapshot = !dirty.is_empty() || sign_targets || due("snapshot", repo::SNAPSHOT_LIFETIME);
        if !sign_snapshot && !due("timestamp", repo::TIMESTAMP_LIFETIME) {
            if state != done {
                w.set_state(name, done).await?;
            }
            return Ok(Outcome::Nothing);
        }

        let next = |role: &str| find(role).map_or(1, |r: &TufRole| r.version + 1);
        let snapshot_row = find("snapshot");
        let mut meta = match snapshot_row {
            Some(s) => {
                let body = w.file(name, "snapshot", s.version).await?.context("the newest snapshot is readable")?;
                snapshot_meta(&body)?
            }
            None => BTreeMap::new(),
        };
        let store = Store { name, key, now };
        if sign_targets {
            let (v, exp) = (next("targets"), now + repo::TARGETS_LIFETIME);
            let entry =
                store.put(w, "targets", v, roles::targets(v as u64, exp, &root.role_keys("targets")), exp).await?;
            meta.insert("targets.json".into(), entry);
        }
        for &b in &dirty {
            let role = roles::bin_name(b);
            let targets = w.bin_targets(name, b).await?;
            let (v, exp) = (next(&role), now + repo::BINS_LIFETIME);
            let entry = store.put(w, &role, v, roles::bin(v as u64, exp, &targets), exp).await?;
            meta.insert(format!("{role}.json"), entry);
            if hidden.contains(&b) {
                // Consistent snapshots keep old versions readable; these name a file anonymous
                // callers must no longer learn of. A client still on an older snapshot fails
                // one fetch and refreshes.
                w.forget_older(name, &role, v).await?;
            }
        }
        let snapshot = if sign_snapshot {
            let (v, exp) = (next("snapshot"), now + repo::SNAPSHOT_LIFETIME);
            let files: Vec<(String, MetaFile)> = meta.into_iter().collect();
            store.put(w, "snapshot", v, roles::snapshot(v as u64, exp, &files), exp).await?
        } else {
            let s = snapshot_row.context("a repository signed before has a snapshot")?;
            let body = w.file(name, "snapshot", s.version).await?.context("the newest snapshot is readable")?;
            MetaFile::of(body.as_bytes(), s.version as u64)
        };
        let (v, exp) = (next("timestamp"), now + repo::TIMESTAMP_LIFETIME);
        store.put(w, "timestamp", v, roles::timestamp(v as u64, exp, &snapshot), exp).await?;
        w.set_state(name, done).await?;
        Ok(Outcome::Signed(Signed {
            repo,
            bins: dirty.len(),
            snapshot: sign_snapshot.then_some(snapshot.version as i64),
            timestamp: v,
        }))
    }
}

/// What changed for `repo` since `cursor`: the events after it (none yet: every file), each
/// named file moved into or out of its bins.
struct Changes {
    /// The last event applied.
    last_seq: i64,
    /// The bins whose targets changed.
    dirty: BTreeSet<u8>,
    /// The public bins that stopped listing a file now internal.
    hidden: BTreeSet<u8>,
}

async fn collect_changes(w: &mut TufWrite, repo: Visibility, cursor: Option<i64>) -> anyhow::Result<Changes> {
    let (mut dirty, mut hidden) = (BTreeSet::new(), BTreeSet::new());
    let last_seq = match cursor {
        None => {
            let head = w.head_seq().await?;
            let mut after = 0;
            loop {
                let page = w.candidates_after(after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for c in &page {
                    apply(w, repo, &c.digest, Some(c), &mut dirty, &mut hidden).await?;
                }
            }
            head
        }
        Some(mut cursor) => {
            loop {
                let events = w.event_subjects(cursor, PAGE).await?;
                let Some(&(seq, _)) = events.last() else { break };
                cursor = seq;
                let mut digests: Vec<Digest> = events
                    .iter()
                    .filter_map(|(_, s)| s.strip_prefix("sha512/").and_then(|d| Digest::parse(d).ok()))
                    .collect();
                digests.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
                digests.dedup();
                let found = w.candidates(&digests).await?;
                for d in &digests {
                    apply(w, repo, d, found.iter().find(|c| &c.digest == d), &mut dirty, &mut hidden).await?;
                }
                if (events.len() as i64) < PAGE {
                    break;
                }
            }
            cursor
        }
    };
    Ok(Changes { last_seq, dirty, hidden })
}

/// Signs role files of one repository into the pass's transaction.
struct Store<'a> {
    name: &'a str,
    key: &'a super::keys::SigningKey,
    now: i64,
}

impl Store<'_> {
    /// Signs `signed`, records it as `role` at `version`; its snapshot or timestamp entry.
    async fn put(
        &self,
        w: &mut TufWrite,
        role: &str,
        version: i64,
        signed: Value,
        expires: i64,
    ) -> anyhow::Result<MetaFile> {
        let body = String::from_utf8(roles::file(signed, &[self.key])?).expect("canonical JSON here is ASCII");
        w.insert(self.name, role, version, &body, expires, self.now).await?;
        Ok(MetaFile::of(body.as_bytes(), version as u64))
    }
}

/// Lists `digest` in `repo`'s bins if its file belongs there (its visibility, a verified copy,
/// a sha256), or stops listing it; marks the bin dirty if that changed anything, and `hidden`
/// if a public bin stops listing a file now internal (its older versions name it).
async fn apply(
    w: &mut TufWrite,
    repo: Visibility,
    digest: &Digest,
    file: Option<&TufCandidate>,
    dirty: &mut BTreeSet<u8>,
    hidden: &mut BTreeSet<u8>,
) -> anyhow::Result<()> {
    let listed = file.and_then(|f| match &f.sha256 {
        Some(sha256) if f.visibility == repo && f.has_copy => {
            Some(Target { sha512: f.digest.as_str().to_owned(), length: f.size, sha256: sha256.clone() })
        }
        _ => None,
    });
    match listed {
        Some(t) => {
            let bin = roles::bin_of(&t.sha512);
            if w.put_target(repo.as_str(), bin, &t).await? {
                dirty.insert(bin);
            }
        }
        None => {
            if let Some(bin) = w.remove_target(repo.as_str(), digest.as_str()).await? {
                dirty.insert(bin);
                if repo == Visibility::Public && file.is_some_and(|f| f.visibility == Visibility::Internal) {
                    hidden.insert(bin);
                }
            }
        }
    }
    Ok(())
}

/// The `meta` of a snapshot file: what the next snapshot starts from.
fn snapshot_meta(body: &str) -> anyhow::Result<BTreeMap<String, MetaFile>> {
    let v: Value = serde_json::from_str(body).context("a stored snapshot is JSON")?;
    let meta = v["signed"]["meta"].as_object().context("a stored snapshot has meta")?;
    meta.iter()
        .map(|(k, m)| Ok((k.clone(), MetaFile::from_json(m).context("a stored snapshot's meta entry")?)))
        .collect()
}
