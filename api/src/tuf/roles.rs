//! The `signed` parts of a repository's roles, as python-tuf 7 and tough 0.24 read them
//! (TUF specification 1.0; `../shared/research/TUF.md` §6):
//! - `root` names the root keys (offline) and the online keys that sign the other roles;
//! - `targets` holds no target, only the delegation of every name to one of [`BINS`] hashed
//!   bins, `bins-00` … `bins-ff`, by `path_hash_prefixes` (classic delegations: tough cannot
//!   read TAP 15 succinct ones), non-terminating, threshold 1;
//! - a bin lists its targets: name = the 128-hex sha512, `length`, `hashes` sha256 + sha512;
//! - `snapshot` gives the version, length and sha256 of `targets.json` and every bin;
//!   `timestamp` those of `snapshot.json` (so neither client falls back to its size limits).
//!
//! Expiry times are whole seconds in UTC (`2026-12-04T10:00:00Z`), the only form python-tuf
//! accepts. Every version is consistent-snapshot: files are served as `<N>.<role>.json`.

use serde_json::{Value, json};

use super::canonical;
use super::keys::{KeyError, SigningKey, envelope};

/// The number of hashed bins (fixed for a repository's life: snapshot entries never go away).
pub const BINS: usize = 256;

/// The specification version written in every role.
pub const SPEC_VERSION: &str = "1.0.31";

/// The bin a target name belongs to: the first byte of sha256(name), as `path_hash_prefixes`
/// match it.
pub fn bin_of(name: &str) -> u8 {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes()).as_ref()[0]
}

/// `bins-xx`: the role name of bin `bin`.
pub fn bin_name(bin: u8) -> String {
    format!("bins-{bin:02x}")
}

/// A file as a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The sha512 digest, 128 lowercase hex: the target's name.
    pub sha512: String,
    /// Its size in bytes.
    pub length: u64,
    /// Its sha256, 64 lowercase hex.
    pub sha256: String,
}

/// What snapshot and timestamp say of a metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFile {
    /// The role's version.
    pub version: u64,
    /// Its file's length in bytes.
    pub length: u64,
    /// Its file's sha256.
    pub sha256: String,
}

impl MetaFile {
    /// The entry of a file with these bytes, at `version`.
    pub fn of(bytes: &[u8], version: u64) -> Self {
        let sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
        Self { version, length: bytes.len() as u64, sha256 }
    }

    fn json(&self) -> Value {
        json!({"version": self.version, "length": self.length, "hashes": {"sha256": self.sha256}})
    }

    /// Reads an entry of a snapshot's or timestamp's `meta` as [`MetaFile::json`] writes it.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            version: v["version"].as_u64()?,
            length: v["length"].as_u64()?,
            sha256: v["hashes"]["sha256"].as_str()?.to_owned(),
        })
    }
}

fn role(kind: &str, version: u64, expires: i64) -> Value {
    json!({"_type": kind, "spec_version": SPEC_VERSION, "version": version, "expires": crate::time::rfc3339(expires)})
}

fn key_map(keys: &[Value]) -> (Value, Vec<String>) {
    let ids: Vec<String> = keys.iter().map(super::keys::keyid).collect();
    let map = ids.iter().cloned().zip(keys.iter().cloned()).collect::<serde_json::Map<_, _>>();
    (Value::Object(map), ids)
}

/// The root role: `root_keys` (public key objects) sign it, `threshold` of them; `online`
/// keys sign targets, the bins, snapshot and timestamp, any one of them.
pub fn root(version: u64, expires: i64, root_keys: &[Value], threshold: u64, online: &[Value]) -> Value {
    let (mut keys, root_ids) = key_map(root_keys);
    let (online_keys, online_ids) = key_map(online);
    if let (Value::Object(all), Value::Object(more)) = (&mut keys, online_keys) {
        all.extend(more);
    }
    let online_role = json!({"keyids": online_ids, "threshold": 1});
    let mut r = role("root", version, expires);
    r["keys"] = keys;
    r["consistent_snapshot"] = json!(true);
    r["roles"] = json!({
        "root": {"keyids": root_ids, "threshold": threshold},
        "targets": online_role, "snapshot": online_role, "timestamp": online_role,
    });
    r
}

/// The top-level targets role: the delegation of every name to its bin.
pub fn targets(version: u64, expires: i64, online: &[Value]) -> Value {
    let (keys, ids) = key_map(online);
    let roles: Vec<Value> = (0..BINS as u16)
        .map(|b| {
            let b = b as u8;
            json!({"name": bin_name(b), "keyids": ids, "threshold": 1, "terminating": false,
                   "path_hash_prefixes": [format!("{b:02x}")]})
        })
        .collect();
    let mut r = role("targets", version, expires);
    r["targets"] = json!({});
    r["delegations"] = json!({"keys": keys, "roles": roles});
    r
}

/// Bin `bin` listing `targets` (each must belong to it: [`bin_of`]).
pub fn bin(version: u64, expires: i64, targets: &[Target]) -> Value {
    let listed: serde_json::Map<String, Value> = targets
        .iter()
        .map(|t| (t.sha512.clone(), json!({"length": t.length, "hashes": {"sha256": t.sha256, "sha512": t.sha512}})))
        .collect();
    let mut r = role("targets", version, expires);
    r["targets"] = Value::Object(listed);
    r
}

/// The snapshot role: `files` are `(file name, entry)`, `targets.json` and every `bins-xx.json`.
pub fn snapshot(version: u64, expires: i64, files: &[(String, MetaFile)]) -> Value {
    let meta: serde_json::Map<String, Value> = files.iter().map(|(name, m)| (name.clone(), m.json())).collect();
    let mut r = role("snapshot", version, expires);
    r["meta"] = Value::Object(meta);
    r
}

/// The timestamp role, naming `snapshot.json`.
pub fn timestamp(version: u64, expires: i64, snapshot: &MetaFile) -> Value {
    let mut r = role("timestamp", version, expires);
    r["meta"] = json!({"snapshot.json": snapshot.json()});
    r
}

/// The bytes of a metadata file: `signed` with the signatures of `keys`, in canonical form
/// (deterministic, so the same role signed twice by the same key is the same file).
pub fn file(signed: Value, keys: &[&SigningKey]) -> Result<Vec<u8>, KeyError> {
    Ok(canonical::to_vec(&envelope(signed, keys)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bin is the first byte of sha256 of the name, as python-tuf's `path_hash_prefixes`
    /// check computes it (sha256 of "abc" starts ba78…).
    #[test]
    fn a_name_belongs_to_the_bin_of_its_sha256s_first_byte() {
        assert_eq!(bin_of("abc"), 0xba);
        assert_eq!(bin_name(0xba), "bins-ba");
        assert_eq!(bin_name(0), "bins-00");
    }

    #[test]
    fn targets_delegates_every_prefix_once_to_its_bin() {
        let (key, _) = SigningKey::generate();
        let t = targets(3, 0, &[key.public()]);
        let roles = t["delegations"]["roles"].as_array().unwrap();
        assert_eq!(roles.len(), BINS);
        for (i, r) in roles.iter().enumerate() {
            assert_eq!(r["name"], format!("bins-{i:02x}"));
            assert_eq!(r["path_hash_prefixes"], json!([format!("{i:02x}")]));
            assert_eq!((&r["terminating"], &r["threshold"]), (&json!(false), &json!(1)));
        }
        assert_eq!(t["delegations"]["keys"][key.keyid()], key.public());
        assert_eq!((&t["version"], &t["expires"]), (&json!(3), &json!("1970-01-01T00:00:00Z")));
    }
}
