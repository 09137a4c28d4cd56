//! Signed metadata (TUF): what `fetch` checks a file against before it writes it, when a root
//! is pinned (`--tuf-root`, or one already in the cache folder). The server's two repositories,
//! `public` and `internal` (docs/tuf.md), list every verified file as a target named by its
//! sha512, with its length, sha256 and sha512.
//!
//! As the TUF specification's client workflow (1.0, §5), per repository and once per run: the
//! trusted root walks `N+1.root.json` until 404, each new root signed by the threshold of the
//! old and of its own; then `timestamp.json`, and only when it names a version not cached, the
//! snapshot and `targets.json`. A lookup then reads the one bin the name hashes to
//! (`path_hash_prefixes`), from the cache when the snapshot names the version cached. Every role
//! is checked: its type, the threshold of valid Ed25519 signatures (aws-lc-rs) over its
//! canonical JSON ([`tooltool_proto::canonical`], the encoder the server signs with), its
//! version (never below what was trusted: a rollback is refused), its length and sha256 where
//! the role above gives them, and its expiry. So a warm run costs one timestamp request,
//! however many files it fetches.
//!
//! The latest trusted version of each role is kept in `<cache folder>/tuf/<repo>/<role>.json`
//! (memory only without a cache folder); a cached file that no longer verifies (the root
//! changed its keys) is ignored, as if absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use serde_json::Value;
use tokio::sync::Mutex;
use tooltool_proto::Digest;

use crate::api::ApiClient;
use crate::error::Error;
use crate::files::blocking;

/// The repositories, in the order a digest is looked up: `public`, then `internal` for a
/// caller with credentials.
pub const REPOS: [&str; 2] = ["public", "internal"];

/// Largest root or timestamp accepted (neither is named with a length by another role).
const ROOT_LIMIT: u64 = 512 << 10;
const TIMESTAMP_LIMIT: u64 = 64 << 10;
/// Largest snapshot, `targets.json` or bin accepted when the role above gives no length.
const META_LIMIT: u64 = 32 << 20;

/// A pinned root: the repository it is the root of, and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedRoot {
    /// `public` or `internal`.
    pub repo: String,
    /// The root file (any version of the repository's chain, usually `1.root.json`).
    pub path: PathBuf,
}

/// A file as its signed target lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The repository that lists it.
    pub repo: &'static str,
    /// Its length in bytes.
    pub length: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// Its sha512, lowercase hex.
    pub sha512: String,
}

/// The repositories of one server that a fetch verifies against.
#[derive(Debug)]
pub struct Verifier {
    client: ApiClient,
    repos: Vec<Repo>,
}

#[derive(Debug)]
struct Repo {
    name: &'static str,
    /// Where its trusted metadata is kept.
    dir: Option<PathBuf>,
    /// The root to start from: the pinned one, else the cached one.
    start: Vec<u8>,
    /// Refreshed once per run (or the reason it failed), then bins added as they are read.
    state: Mutex<Option<Result<Trusted, String>>>,
}

/// One verified role: its `signed` part.
#[derive(Debug, Clone)]
struct Role {
    signed: Value,
    version: u64,
}

#[derive(Debug)]
struct Trusted {
    snapshot: Role,
    targets: Role,
    bins: HashMap<String, Role>,
}

impl Verifier {
    /// The verifier of `client`'s server: a repository for each of `pinned`, and each other
    /// one whose root is already in `cache`. `None` when no repository has a root.
    pub fn new(client: ApiClient, pinned: &[PinnedRoot], cache: Option<&Path>) -> Result<Option<Self>, Error> {
        let mut repos = Vec::new();
        for name in REPOS {
            let dir = cache.map(|c| c.join("tuf").join(name));
            let start = match pinned.iter().find(|p| p.repo == name) {
                Some(p) => Some(std::fs::read(&p.path).map_err(|e| Error::io(&p.path, e))?),
                None => dir.as_ref().and_then(|d| std::fs::read(d.join("root.json")).ok()),
            };
            if let Some(start) = start {
                repos.push(Repo { name, dir, start, state: Mutex::new(None) });
            }
        }
        if let Some(p) = pinned.iter().find(|p| !REPOS.contains(&p.repo.as_str())) {
            return Err(Error::Protocol(format!("--tuf-root: no repository {:?} (public or internal)", p.repo)));
        }
        Ok((!repos.is_empty()).then_some(Self { client, repos }))
    }

    /// The signed target of `digest`: from `public`, else (with credentials) from `internal`.
    /// A digest neither lists is an [`Error::Untrusted`] saying so.
    pub async fn target(&self, digest: &Digest) -> Result<Target, Error> {
        let mut looked = Vec::new();
        for repo in &self.repos {
            if repo.name == "internal" && !self.client.is_authenticated() {
                continue;
            }
            looked.push(repo.name);
            if let Some(t) = repo.lookup(&self.client, digest.as_str()).await? {
                return Ok(t);
            }
        }
        let unpinned = match self.repos.iter().any(|r| r.name == "internal") {
            false if self.client.is_authenticated() => "; no root is pinned for internal (--tuf-root internal=FILE)",
            _ => "",
        };
        Err(Error::Untrusted(format!(
            "sha512 {digest} is not a current target of the signed repository {}: the server does not vouch for it \
             (never signed, withdrawn, or the wrong digest){unpinned}",
            looked.join(" nor ")
        )))
    }
}

impl Repo {
    async fn lookup(&self, client: &ApiClient, name: &str) -> Result<Option<Target>, Error> {
        let mut state = self.state.lock().await;
        if state.is_none() {
            *state = Some(self.refresh(client).await.map_err(|e| e.to_string()));
        }
        let trusted = match state.as_mut().expect("just refreshed") {
            Ok(t) => t,
            Err(e) => return Err(Error::Untrusted(format!("{}: {e}", self.name))),
        };
        let found = self.find(client, trusted, name).await?;
        let Some(entry) = found else { return Ok(None) };
        let fail = || Error::Untrusted(format!("{}: the target {name} has no length, sha256 and sha512", self.name));
        let hash = |h: &str| entry["hashes"][h].as_str().map(str::to_owned);
        let (Some(length), Some(sha256), Some(sha512)) = (entry["length"].as_u64(), hash("sha256"), hash("sha512"))
        else {
            return Err(fail());
        };
        if sha512 != name {
            return Err(Error::Untrusted(format!("{}: the target {name} is listed with sha512 {sha512}", self.name)));
        }
        Ok(Some(Target { repo: self.name, length, sha256, sha512 }))
    }

    /// The root walk, the timestamp, the snapshot and `targets.json`.
    async fn refresh(&self, client: &ApiClient) -> Result<Trusted, Error> {
        let mut root = verify_self_signed(&self.start)?;
        let mut root_bytes = self.start.clone();
        loop {
            let next = format!("{}.root.json", root.version + 1);
            let Some(bytes) = client.tuf_metadata(self.name, &next, ROOT_LIMIT).await? else { break };
            let envelope = parse(&bytes, &next)?;
            let (ids, threshold) = role_keys(&root.signed, "root")?;
            check_signatures(&envelope, &root.signed["keys"], &ids, threshold, &next)?;
            let new = verify_self_signed(&bytes)?;
            if new.version != root.version + 1 {
                return Err(untrusted(format!("{next} holds root version {}", new.version)));
            }
            (root, root_bytes) = (new, bytes);
        }
        unexpired(&root.signed, "the trusted root")?;
        self.save("root.json", root_bytes).await?;

        let keys = &root.signed["keys"];
        let (ids, threshold) = role_keys(&root.signed, "timestamp")?;
        let verify = |bytes: &[u8], what: &str| -> Result<Role, Error> {
            let envelope = parse(bytes, what)?;
            check_signatures(&envelope, keys, &ids, threshold, what)?;
            role(&envelope, "timestamp", what)
        };
        let old = self.cached("timestamp.json").await.and_then(|b| verify(&b, "timestamp.json").ok());
        let bytes = client
            .tuf_metadata(self.name, "timestamp.json", TIMESTAMP_LIMIT)
            .await?
            .ok_or_else(|| untrusted("the repository is not signed (timestamp.json: 404)".into()))?;
        let timestamp = verify(&bytes, "timestamp.json")?;
        let snapshot_meta = meta(&timestamp.signed, "snapshot.json")?;
        if let Some(old) = &old {
            no_rollback("timestamp", old.version, timestamp.version)?;
            if let Ok(was) = meta(&old.signed, "snapshot.json") {
                no_rollback("snapshot (as the timestamp names it)", was.version, snapshot_meta.version)?;
            }
        }
        unexpired(&timestamp.signed, "timestamp.json")?;
        self.save("timestamp.json", bytes).await?;

        let (ids, threshold) = role_keys(&root.signed, "snapshot")?;
        let old = self.cached("snapshot.json").await.and_then(|b| {
            let envelope = parse(&b, "snapshot.json").ok()?;
            check_signatures(&envelope, keys, &ids, threshold, "snapshot.json").ok()?;
            role(&envelope, "snapshot", "snapshot.json").ok()
        });
        let snapshot = match old.as_ref().filter(|o| o.version == snapshot_meta.version) {
            Some(same) => same.clone(),
            None => {
                let file = format!("{}.snapshot.json", snapshot_meta.version);
                let bytes = self.download(client, &file, &snapshot_meta).await?;
                let envelope = parse(&bytes, &file)?;
                check_signatures(&envelope, keys, &ids, threshold, &file)?;
                let new = role(&envelope, "snapshot", &file)?;
                if new.version != snapshot_meta.version {
                    return Err(untrusted(format!("{file} holds version {}", new.version)));
                }
                if let Some(old) = &old {
                    for (name, was) in old.signed["meta"].as_object().into_iter().flatten() {
                        let now =
                            meta(&new.signed, name).map_err(|_| untrusted(format!("{file} no longer lists {name}")))?;
                        no_rollback(name, was["version"].as_u64().unwrap_or(0), now.version)?;
                    }
                }
                self.save("snapshot.json", bytes).await?;
                new
            }
        };
        unexpired(&snapshot.signed, "the snapshot")?;

        let (ids, threshold) = role_keys(&root.signed, "targets")?;
        let targets = self.role_at(client, &snapshot, "targets", keys, &ids, threshold).await?;
        Ok(Trusted { snapshot, targets, bins: HashMap::new() })
    }

    /// The target entry of `name`: in `targets.json`, else in the delegated bins whose
    /// `path_hash_prefixes` it hashes to, each read (lazily) at the version the snapshot names.
    async fn find(&self, client: &ApiClient, trusted: &mut Trusted, name: &str) -> Result<Option<Value>, Error> {
        if let Some(t) = trusted.targets.signed["targets"].get(name) {
            return Ok(Some(t.clone()));
        }
        let hashed = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes()).as_ref());
        let delegations = trusted.targets.signed["delegations"].clone();
        for delegated in delegations["roles"].as_array().into_iter().flatten() {
            let prefixes = delegated["path_hash_prefixes"].as_array().into_iter().flatten();
            if !prefixes.filter_map(Value::as_str).any(|p| hashed.starts_with(p)) {
                continue;
            }
            let role_name = delegated["name"].as_str().ok_or_else(|| untrusted("a delegation has no name".into()))?;
            if !trusted.bins.contains_key(role_name) {
                let ids = key_ids(delegated);
                let threshold = delegated["threshold"].as_u64().filter(|t| *t >= 1).unwrap_or(u64::MAX);
                let keys = &delegations["keys"];
                let bin = self.role_at(client, &trusted.snapshot, role_name, keys, &ids, threshold).await?;
                trusted.bins.insert(role_name.to_owned(), bin);
            }
            if let Some(t) = trusted.bins[role_name].signed["targets"].get(name) {
                return Ok(Some(t.clone()));
            }
            if delegated["terminating"] == true {
                break;
            }
        }
        Ok(None)
    }

    /// The targets role `name` (`targets` or a bin) at the version `snapshot` names: cached
    /// when it is that version and verifies, else downloaded and verified.
    async fn role_at(
        &self,
        client: &ApiClient,
        snapshot: &Role,
        name: &str,
        keys: &Value,
        ids: &[String],
        threshold: u64,
    ) -> Result<Role, Error> {
        let plain = format!("{name}.json");
        let wanted = meta(&snapshot.signed, &plain)?;
        let verify = |bytes: &[u8], what: &str| -> Result<Role, Error> {
            let envelope = parse(bytes, what)?;
            check_signatures(&envelope, keys, ids, threshold, what)?;
            let r = role(&envelope, "targets", what)?;
            if r.version != wanted.version {
                return Err(untrusted(format!(
                    "{what} holds version {}, the snapshot names {}",
                    r.version, wanted.version
                )));
            }
            Ok(r)
        };
        let cached = self.cached(&plain).await.and_then(|b| verify(&b, &plain).ok());
        let r = match cached {
            Some(r) => r,
            None => {
                let file = format!("{}.{plain}", wanted.version);
                let bytes = self.download(client, &file, &wanted).await?;
                let r = verify(&bytes, &file)?;
                self.save(&plain, bytes).await?;
                r
            }
        };
        unexpired(&r.signed, &plain)?;
        Ok(r)
    }

    /// `file`, checked against the length and sha256 `meta` gives (when it gives them).
    async fn download(&self, client: &ApiClient, file: &str, meta: &Meta) -> Result<Vec<u8>, Error> {
        let limit = meta.length.unwrap_or(META_LIMIT);
        let bytes = client
            .tuf_metadata(self.name, file, limit)
            .await?
            .ok_or_else(|| untrusted(format!("{file}: 404, though the repository names it")))?;
        if meta.length.is_some_and(|l| l != bytes.len() as u64) {
            return Err(untrusted(format!("{file}: {} bytes, {} expected", bytes.len(), meta.length.unwrap_or(0))));
        }
        if let Some(expected) = &meta.sha256 {
            let got = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref());
            if &got != expected {
                return Err(untrusted(format!("{file}: sha256 {got}, {expected} expected")));
            }
        }
        Ok(bytes)
    }

    async fn cached(&self, file: &str) -> Option<Vec<u8>> {
        let path = self.dir.as_ref()?.join(file);
        tokio::fs::read(path).await.ok()
    }

    /// Keeps `bytes` as the trusted `file` (a temporary file renamed into place).
    async fn save(&self, file: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(file);
        let (dir, owned) = (dir.clone(), path.clone());
        blocking(&path, move || {
            std::fs::create_dir_all(&dir)?;
            let mut tmp = crate::files::temp_beside(&owned, ".tmp")?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(&owned).map_err(|e| e.error)?;
            Ok(())
        })
        .await
    }
}

/// What a snapshot or timestamp says of a file.
#[derive(Debug)]
struct Meta {
    version: u64,
    length: Option<u64>,
    sha256: Option<String>,
}

fn meta(signed: &Value, file: &str) -> Result<Meta, Error> {
    let m = &signed["meta"][file];
    let version = m["version"].as_u64().ok_or_else(|| untrusted(format!("the {} lists no {file}", signed["_type"])))?;
    Ok(Meta { version, length: m["length"].as_u64(), sha256: m["hashes"]["sha256"].as_str().map(str::to_owned) })
}

fn untrusted(what: String) -> Error {
    Error::Untrusted(what)
}

fn parse(bytes: &[u8], what: &str) -> Result<Value, Error> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| untrusted(format!("{what} is not JSON: {e}")))?;
    if !v["signed"].is_object() || !v["signatures"].is_array() {
        return Err(untrusted(format!("{what} has no signed part and signatures")));
    }
    Ok(v)
}

/// The `signed` part of `envelope` as a role of `kind`, with its version.
fn role(envelope: &Value, kind: &str, what: &str) -> Result<Role, Error> {
    let signed = envelope["signed"].clone();
    if signed["_type"] != kind {
        return Err(untrusted(format!("{what} is a {}, not a {kind}", signed["_type"])));
    }
    let version = signed["version"].as_u64().ok_or_else(|| untrusted(format!("{what} has no version")))?;
    Ok(Role { signed, version })
}

/// A root signed by the threshold of its own root keys.
fn verify_self_signed(bytes: &[u8]) -> Result<Role, Error> {
    let envelope = parse(bytes, "the root")?;
    let r = role(&envelope, "root", "the root")?;
    let (ids, threshold) = role_keys(&r.signed, "root")?;
    check_signatures(&envelope, &r.signed["keys"], &ids, threshold, &format!("root version {}", r.version))?;
    Ok(r)
}

fn key_ids(role: &Value) -> Vec<String> {
    role["keyids"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_owned)).collect()
}

/// The key ids of `role` in `root` and its threshold (at least 1).
fn role_keys(root: &Value, role: &str) -> Result<(Vec<String>, u64), Error> {
    let r = &root["roles"][role];
    let threshold = r["threshold"].as_u64().filter(|t| *t >= 1).ok_or_else(|| {
        untrusted(format!("root version {}: the {role} role has no threshold of 1 or more", root["version"]))
    })?;
    Ok((key_ids(r), threshold))
}

/// Fails unless `threshold` distinct keys of `ids` (public keys in `keys`) signed the canonical
/// JSON of `envelope.signed` with Ed25519.
fn check_signatures(envelope: &Value, keys: &Value, ids: &[String], threshold: u64, what: &str) -> Result<(), Error> {
    let message = tooltool_proto::canonical::to_vec(&envelope["signed"])
        .map_err(|e| untrusted(format!("{what} has no canonical form: {e}")))?;
    let mut valid: Vec<&str> = Vec::new();
    for sig in envelope["signatures"].as_array().into_iter().flatten() {
        let (Some(keyid), Some(value)) = (sig["keyid"].as_str(), sig["sig"].as_str()) else { continue };
        if valid.contains(&keyid) || !ids.iter().any(|i| i == keyid) {
            continue;
        }
        let key = &keys[keyid];
        let public = key["keyval"]["public"].as_str().and_then(|p| hex::decode(p).ok());
        let (Some(public), Ok(sig)) = (public, hex::decode(value)) else { continue };
        if key["keytype"] == "ed25519"
            && key["scheme"] == "ed25519"
            && UnparsedPublicKey::new(&ED25519, public).verify(&message, &sig).is_ok()
        {
            valid.push(keyid);
        }
    }
    if (valid.len() as u64) < threshold {
        return Err(untrusted(format!("{what}: {} valid signature(s), {threshold} required", valid.len())));
    }
    Ok(())
}

fn no_rollback(what: &str, trusted: u64, new: u64) -> Result<(), Error> {
    if new < trusted {
        return Err(untrusted(format!("{what} version {new} is older than the trusted {trusted}: a rollback")));
    }
    Ok(())
}

fn unexpired(signed: &Value, what: &str) -> Result<(), Error> {
    let text = signed["expires"].as_str().unwrap_or_default();
    let at =
        humantime::parse_rfc3339(text).map_err(|_| untrusted(format!("{what}: expires is not a time: {text:?}")))?;
    if at <= SystemTime::now() {
        return Err(untrusted(format!("{what} expired at {text}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    /// A key: its id, its public key object, and its pair.
    fn key(id: &str) -> (String, Value, Ed25519KeyPair) {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let public = json!({"keytype": "ed25519", "scheme": "ed25519",
                            "keyval": {"public": hex::encode(pair.public_key().as_ref())}});
        (id.to_owned(), public, pair)
    }

    fn sign(signed: &Value, by: &[(&str, &Ed25519KeyPair)]) -> Value {
        let bytes = tooltool_proto::canonical::to_vec(signed).unwrap();
        let sigs: Vec<Value> =
            by.iter().map(|(id, k)| json!({"keyid": id, "sig": hex::encode(k.sign(&bytes).as_ref())})).collect();
        json!({"signed": signed, "signatures": sigs})
    }

    #[test]
    fn a_threshold_of_distinct_named_keys_must_sign_the_canonical_signed_part() {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let keys = json!({"a": a.1, "b": b.1, "c": c.1});
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let signed = json!({"_type": "timestamp", "version": 3, "z": [1, {"y": "x"}]});
        let check = |env: &Value, threshold| check_signatures(env, &keys, &ids, threshold, "t");
        let both = sign(&signed, &[("a", &a.2), ("b", &b.2)]);
        check(&both, 2).unwrap();
        let twice = sign(&signed, &[("a", &a.2), ("a", &a.2)]);
        assert!(check(&twice, 2).unwrap_err().to_string().contains("1 valid signature(s), 2 required"));
        let unnamed = sign(&signed, &[("a", &a.2), ("c", &c.2)]);
        assert!(check(&unnamed, 2).is_err(), "c is not a key of the role");
        let wrong = sign(&signed, &[("a", &a.2), ("b", &c.2)]);
        assert!(check(&wrong, 2).is_err(), "b's id with c's signature");
        let mut changed = both.clone();
        changed["signed"]["version"] = json!(4);
        assert!(check(&changed, 1).unwrap_err().to_string().contains("0 valid signature(s)"));
    }

    #[test]
    fn a_lower_version_is_a_rollback_and_a_past_expiry_is_refused() {
        no_rollback("timestamp", 5, 5).unwrap();
        no_rollback("timestamp", 5, 6).unwrap();
        assert!(no_rollback("timestamp", 5, 4).unwrap_err().to_string().contains("a rollback"));
        unexpired(&json!({"expires": "2999-01-01T00:00:00Z"}), "r").unwrap();
        assert!(
            unexpired(&json!({"expires": "2001-01-01T00:00:00Z"}), "r").unwrap_err().to_string().contains("expired")
        );
        assert!(unexpired(&json!({}), "r").is_err(), "no expiry is no trust");
    }

    #[test]
    fn a_root_must_be_signed_by_its_own_threshold() {
        let (a, b) = (key("a"), key("b"));
        let root = json!({"_type": "root", "version": 1, "keys": {"a": a.1, "b": b.1},
                          "roles": {"root": {"keyids": ["a", "b"], "threshold": 2}}});
        let full = serde_json::to_vec(&sign(&root, &[("a", &a.2), ("b", &b.2)])).unwrap();
        assert_eq!(verify_self_signed(&full).unwrap().version, 1);
        let short = serde_json::to_vec(&sign(&root, &[("a", &a.2)])).unwrap();
        assert!(verify_self_signed(&short).is_err());
    }
}
