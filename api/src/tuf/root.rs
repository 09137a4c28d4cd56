//! A repository's root, read and checked: the keys it names, its roles' thresholds, and whether
//! a root file carries enough valid signatures, of its own root keys and (for a rotation) of
//! the previous root's, as TUF clients check them (specification 1.0 §5.3).

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use super::keys::{self, SigningKey};

/// A root file, parsed.
#[derive(Debug, Clone)]
pub struct Root {
    /// The whole file: `{"signed": …, "signatures": […]}`.
    pub envelope: Value,
    /// Its version.
    pub version: u64,
    /// When it expires (unix seconds).
    pub expires: i64,
}

impl Root {
    /// Reads a root file (any JSON layout: signatures cover the canonical form of `signed`).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        let envelope: Value = serde_json::from_slice(bytes).context("a root file is JSON")?;
        let signed = &envelope["signed"];
        ensure!(signed["_type"] == "root", "not a root: _type is {}", signed["_type"]);
        ensure!(envelope["signatures"].is_array(), "a root file has a signatures list");
        let version = signed["version"].as_u64().filter(|v| *v >= 1).context("a root has a version of 1 or more")?;
        let expires = parse_expires(&signed["expires"])?;
        Ok(Self { envelope, version, expires })
    }

    /// The `signed` part.
    pub fn signed(&self) -> &Value {
        &self.envelope["signed"]
    }

    /// The key ids of `role` (`root`, `targets`, `snapshot`, `timestamp`) and its threshold.
    pub fn role(&self, role: &str) -> (Vec<String>, u64) {
        let r = &self.signed()["roles"][role];
        let ids = r["keyids"].as_array().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_owned)).collect();
        (ids, r["threshold"].as_u64().unwrap_or(u64::MAX))
    }

    /// The public key object of `keyid`.
    pub fn key(&self, keyid: &str) -> Option<&Value> {
        self.signed()["keys"].get(keyid)
    }

    /// The public key objects of `role`, in the order the root names them.
    pub fn role_keys(&self, role: &str) -> Vec<Value> {
        self.role(role).0.iter().filter_map(|id| self.key(id).cloned()).collect()
    }

    /// The key ids of this root's `root` role whose signatures over `envelope.signed` verify.
    fn valid_signers(&self, envelope: &Value) -> Vec<String> {
        let (ids, _) = self.role("root");
        let mut valid: Vec<String> = Vec::new();
        for sig in envelope["signatures"].as_array().into_iter().flatten() {
            let (Some(keyid), Some(value)) = (sig["keyid"].as_str(), sig["sig"].as_str()) else { continue };
            if ids.iter().any(|i| i == keyid)
                && !valid.iter().any(|v| v == keyid)
                && self.key(keyid).is_some_and(|k| keys::verify(k, &envelope["signed"], value))
            {
                valid.push(keyid.to_owned());
            }
        }
        valid
    }

    /// Fails unless `envelope` is signed by the threshold of this root's `root` role.
    pub fn check_signed(&self, envelope: &Value, whose: &str) -> anyhow::Result<()> {
        let (_, threshold) = self.role("root");
        let valid = self.valid_signers(envelope).len() as u64;
        if valid < threshold {
            let version = &envelope["signed"]["version"];
            bail!("root version {version} needs {threshold} valid signature(s) of {whose} root keys, it has {valid}");
        }
        Ok(())
    }

    /// Checks this root as the successor of `previous` (`None`: the first root): its version
    /// follows, and it carries the threshold of its own root keys and of the previous root's.
    pub fn check(&self, previous: Option<&Root>) -> anyhow::Result<()> {
        let expected = previous.map_or(1, |p| p.version + 1);
        ensure!(self.version == expected, "root version {} is not the expected {expected}", self.version);
        for role in ["root", "targets", "snapshot", "timestamp"] {
            let (ids, threshold) = self.role(role);
            ensure!(threshold >= 1 && threshold != u64::MAX, "the {role} role has no threshold of 1 or more");
            ensure!(ids.len() as u64 >= threshold, "the {role} role names fewer keys than its threshold");
            ensure!(ids.iter().all(|id| self.key(id).is_some()), "the {role} role names a key the root lacks");
        }
        ensure!(self.signed()["consistent_snapshot"] == true, "the root must set consistent_snapshot");
        self.check_signed(&self.envelope, "its own")?;
        if let Some(p) = previous {
            p.check_signed(&self.envelope, "the previous")?;
        }
        Ok(())
    }

    /// The first of `held` that signs every online role (targets, snapshot, timestamp) here.
    pub fn online_signer<'k>(&self, held: &'k [SigningKey]) -> Option<&'k SigningKey> {
        let roles = ["targets", "snapshot", "timestamp"].map(|r| self.role(r).0);
        held.iter().find(|k| roles.iter().all(|ids| ids.iter().any(|i| i == k.keyid())))
    }
}

/// A role's `expires` (`2026-12-04T10:00:00Z`) as unix seconds.
pub fn parse_expires(v: &Value) -> anyhow::Result<i64> {
    let text = v.as_str().context("expires is a string")?;
    let t = humantime::parse_rfc3339(text).with_context(|| format!("expires is not an RFC 3339 time: {text}"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::roles;

    fn root_file(version: u64, root_keys: &[&SigningKey], threshold: u64, signers: &[&SigningKey]) -> Root {
        let (online, _) = SigningKey::generate();
        let publics: Vec<Value> = root_keys.iter().map(|k| k.public()).collect();
        let signed = roles::root(version, 4_070_908_800, &publics, threshold, &[online.public()]);
        Root::parse(&roles::file(signed, signers).unwrap()).unwrap()
    }

    #[test]
    fn a_root_needs_its_own_threshold_and_a_rotation_the_previous_ones_too() {
        let (a, _) = SigningKey::generate();
        let (b, _) = SigningKey::generate();
        let (c, _) = SigningKey::generate();
        let v1 = root_file(1, &[&a, &b], 2, &[&a, &b]);
        v1.check(None).unwrap();
        let short = root_file(1, &[&a, &b], 2, &[&a, &a]);
        assert!(short.check(None).is_err(), "one key twice is one signature");
        // v2 hands the root to c alone: c signs for itself, a and b for v1's threshold.
        let v2 = root_file(2, &[&c], 1, &[&c, &a, &b]);
        v2.check(Some(&v1)).unwrap();
        let only_new = root_file(2, &[&c], 1, &[&c]);
        assert!(only_new.check(Some(&v1)).unwrap_err().to_string().contains("the previous"));
        assert!(v2.check(None).is_err(), "version 2 is not a first root");
        assert!(root_file(3, &[&c], 1, &[&c, &a, &b]).check(Some(&v1)).is_err(), "versions follow");
    }
}
