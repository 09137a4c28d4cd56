//! The root ceremony, on files, with no database and no network (`tooltool-api tuf keygen`,
//! `tuf root init | sign | verify | rotate`): each key holder runs it on an offline machine,
//! and only the signed root file travels to the server (`tuf bootstrap`, `tuf root publish`).
//!
//! Key files are PKCS#8 v1 PEM (0600) with their public key beside them as TUF key JSON
//! (`<key>.pub`); wherever a public key is asked for, either file will do. Root files are
//! written as indented JSON for review: the signatures cover the canonical form of `signed`.

use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::keys::SigningKey;
use super::repo::read_key;
use super::roles;
use super::root::Root;

/// Writes a new key to `out` (0600; an existing file is refused) and its public key to
/// `<out>.pub`; returns the key.
pub fn keygen(out: &Path) -> anyhow::Result<SigningKey> {
    let (key, pem) = SigningKey::generate();
    ensure!(
        crate::private::write_new(out, pem.as_bytes()).with_context(|| format!("cannot write {}", out.display()))?,
        "{} exists already: a key is never overwritten",
        out.display()
    );
    let public = public_path(out);
    std::fs::write(&public, serde_json::to_vec_pretty(&key.public())?)
        .with_context(|| format!("cannot write {}", public.display()))?;
    Ok(key)
}

/// `<key>.pub`.
pub fn public_path(key: &Path) -> std::path::PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

/// The public key object in `path`: a private key PEM, or a public key as TUF JSON.
pub fn read_public(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim_start().starts_with("-----BEGIN") {
        return Ok(read_key(path)?.public());
    }
    let key: Value = serde_json::from_str(&text).with_context(|| format!("{} is not a key", path.display()))?;
    ensure!(
        key["keytype"] == "ed25519" && key["scheme"] == "ed25519" && key["keyval"]["public"].is_string(),
        "{} is not an Ed25519 public key",
        path.display()
    );
    Ok(json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": key["keyval"]["public"]}}))
}

/// An unsigned root file: version 1, `threshold` of `root_keys`, the `online` keys for the
/// other roles.
pub fn init(root_keys: &[Value], threshold: u64, online: &[Value], expires: i64) -> anyhow::Result<Value> {
    check_counts(root_keys, threshold, online)?;
    Ok(json!({"signed": roles::root(1, expires, root_keys, threshold, online), "signatures": []}))
}

fn check_counts(root_keys: &[Value], threshold: u64, online: &[Value]) -> anyhow::Result<()> {
    ensure!(threshold >= 1, "the threshold is at least 1");
    ensure!(root_keys.len() as u64 >= threshold, "the threshold is more than the {} root key(s)", root_keys.len());
    ensure!(!online.is_empty(), "a root names at least one online key");
    Ok(())
}

/// What a rotation changes; what it leaves unset stays as in the previous root.
#[derive(Debug, Default)]
pub struct Rotation {
    /// Root keys to add.
    pub add_root_keys: Vec<Value>,
    /// Key ids of root keys to remove.
    pub remove_root_keys: Vec<String>,
    /// The online keys, replacing the previous ones.
    pub online: Option<Vec<Value>>,
    /// The new root threshold.
    pub threshold: Option<u64>,
    /// The new expiry (unix seconds).
    pub expires: i64,
}

/// The unsigned successor of `previous`: version + 1, changed by `change`. Both the previous
/// root's threshold and its own must sign it.
pub fn rotate(previous: &Root, change: Rotation) -> anyhow::Result<Value> {
    let mut root_keys: Vec<Value> = previous
        .role_keys("root")
        .into_iter()
        .filter(|k| !change.remove_root_keys.contains(&super::keys::keyid(k)))
        .collect();
    for k in change.add_root_keys {
        if !root_keys.contains(&k) {
            root_keys.push(k);
        }
    }
    let threshold = change.threshold.unwrap_or(previous.role("root").1);
    let online = change.online.unwrap_or_else(|| previous.role_keys("timestamp"));
    check_counts(&root_keys, threshold, &online)?;
    let signed = roles::root(previous.version + 1, change.expires, &root_keys, threshold, &online);
    Ok(json!({"signed": signed, "signatures": []}))
}

/// Adds `key`'s signature to a root file (replacing an earlier one of the same key).
pub fn sign(envelope: &mut Value, key: &SigningKey) -> anyhow::Result<()> {
    let sig = key.sign(&envelope["signed"])?;
    let sigs = envelope["signatures"].as_array_mut().context("a root file has a signatures list")?;
    sigs.retain(|s| s["keyid"] != key.keyid());
    sigs.push(sig);
    Ok(())
}

/// Reads a root file.
pub fn read_root(path: &Path) -> anyhow::Result<Root> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Root::parse(&bytes).with_context(|| format!("{} is not a root file", path.display()))
}

/// Writes a root file, indented.
pub fn write_root(path: &Path, envelope: &Value) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(envelope)?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceremony_makes_a_root_its_holders_sign_and_a_rotation_both_thresholds_sign() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = ["a", "b", "c", "online"].iter().map(|n| dir.path().join(format!("{n}.pem"))).collect();
        let keys: Vec<SigningKey> = paths.iter().map(|p| keygen(p).unwrap()).collect();
        assert!(keygen(&paths[0]).is_err(), "a key is never overwritten");
        assert_eq!(read_public(&public_path(&paths[1])).unwrap(), keys[1].public());
        assert_eq!(read_public(&paths[1]).unwrap(), keys[1].public());

        let publics = [keys[0].public(), keys[1].public()];
        let mut v1 = init(&publics, 2, &[read_public(&paths[3]).unwrap()], 4_070_908_800).unwrap();
        let file = dir.path().join("1.root.json");
        sign(&mut v1, &keys[0]).unwrap();
        write_root(&file, &v1).unwrap();
        assert!(read_root(&file).unwrap().check(None).is_err(), "one of two signatures");
        sign(&mut v1, &keys[1]).unwrap();
        sign(&mut v1, &keys[1]).unwrap();
        assert_eq!(v1["signatures"].as_array().unwrap().len(), 2, "signing again replaces");
        write_root(&file, &v1).unwrap();
        let r1 = read_root(&file).unwrap();
        r1.check(None).unwrap();

        let change = Rotation {
            add_root_keys: vec![keys[2].public()],
            remove_root_keys: vec![keys[0].keyid().to_owned()],
            threshold: Some(1),
            expires: 4_070_908_800,
            ..Default::default()
        };
        let mut v2 = rotate(&r1, change).unwrap();
        sign(&mut v2, &keys[2]).unwrap();
        let r2 = Root::parse(&serde_json::to_vec(&v2).unwrap()).unwrap();
        assert_eq!(r2.version, 2);
        assert_eq!(r2.role_keys("timestamp"), vec![keys[3].public()], "the online key stays");
        assert!(r2.check(Some(&r1)).is_err(), "v1's threshold has not signed yet");
        sign(&mut v2, &keys[0]).unwrap();
        sign(&mut v2, &keys[1]).unwrap();
        Root::parse(&serde_json::to_vec(&v2).unwrap()).unwrap().check(Some(&r1)).unwrap();
        assert!(init(&publics, 3, &[keys[3].public()], 0).is_err(), "threshold above the keys");
    }
}
