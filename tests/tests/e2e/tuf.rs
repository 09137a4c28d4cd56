//! The TUF primitives (`tooltool_api::tuf`: canonical JSON, Ed25519 PKCS#8 keys, signatures)
//! checked by a TUF client no one here wrote: python-tuf 7.0.1's ngclient, from the venv
//! `scripts/test.sh` makes (a missing venv fails), refreshes a small repository written with
//! them (root, timestamp, snapshot, targets; consistent snapshots; a target named by its sha512
//! with length, sha256 and sha512), downloads the target and verifies it, and refuses a
//! tampered target or signature. No server is involved yet, so there is no backend to vary.

use std::path::Path;

use serde_json::{Value, json};
use tooltool_api::tuf::canonical;
use tooltool_api::tuf::keys::{SigningKey, envelope};

const EXPIRES: &str = "2099-01-01T00:00:00Z";

/// Runs `tuf_client.py` on the repository in `dir` for `target`.
async fn ngclient(dir: &Path, target: &str) -> Value {
    let client = tempfile::tempdir().unwrap();
    let spec = json!({"dir": dir, "client": client.path(), "target": target});
    tooltool_e2e::run_py_script("tuf_client.py", &spec).await
}

/// `{"length", "hashes": {"sha256"}, "version"}` of a metadata file's bytes.
fn meta(bytes: &[u8], version: u64) -> Value {
    let h = tooltool_sha512::hash_reader_both(&mut &bytes[..]).unwrap();
    json!({"version": version, "length": bytes.len(), "hashes": {"sha256": h.sha256}})
}

/// Writes a repository holding `data` as its one target, signed by `key`; returns the target
/// name (the sha512) and its sha256.
fn write_repository(dir: &Path, key: &SigningKey, data: &[u8]) -> (String, String) {
    let role = |name: &str| json!({"_type": name, "spec_version": "1.0.31", "version": 1, "expires": EXPIRES});
    let h = tooltool_sha512::hash_reader_both(&mut &data[..]).unwrap();
    let name = h.sha512.as_str().to_owned();
    std::fs::create_dir_all(dir.join("metadata")).unwrap();
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    // The first hash in the sorted `hashes` is the sha256: ngclient asks for <sha256>.<name>.
    std::fs::write(dir.join("targets").join(format!("{}.{name}", h.sha256)), data).unwrap();

    let mut root = role("root");
    let one = json!({"keyids": [key.keyid()], "threshold": 1});
    root["keys"] = json!({key.keyid(): key.public()});
    root["roles"] = json!({"root": one, "targets": one, "snapshot": one, "timestamp": one});
    root["consistent_snapshot"] = json!(true);
    let mut targets = role("targets");
    targets["targets"] = json!({&name: {"length": data.len(), "hashes": {"sha256": h.sha256, "sha512": name}}});
    let targets = serde_json::to_vec(&envelope(targets, &[key]).unwrap()).unwrap();
    let mut snapshot = role("snapshot");
    snapshot["meta"] = json!({"targets.json": meta(&targets, 1)});
    let snapshot = serde_json::to_vec(&envelope(snapshot, &[key]).unwrap()).unwrap();
    let mut timestamp = role("timestamp");
    timestamp["meta"] = json!({"snapshot.json": meta(&snapshot, 1)});
    let timestamp = serde_json::to_vec(&envelope(timestamp, &[key]).unwrap()).unwrap();
    let root = serde_json::to_vec_pretty(&envelope(root, &[key]).unwrap()).unwrap();
    for (file, bytes) in [
        ("1.root.json", &root),
        ("1.targets.json", &targets),
        ("1.snapshot.json", &snapshot),
        ("timestamp.json", &timestamp),
    ] {
        std::fs::write(dir.join("metadata").join(file), bytes).unwrap();
    }
    (name, h.sha256)
}

#[tokio::test]
async fn ngclient_verifies_a_repository_signed_with_our_keys_and_canonical_json() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate();
    let data = b"a file the repository lists".to_vec();
    let (name, sha256) = write_repository(dir.path(), &key, &data);
    let got = ngclient(dir.path(), &name).await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["sha256"], sha256.as_str());
    // python-tuf's canonical bytes of the root are the ones signed here.
    let root: Value = serde_json::from_slice(&std::fs::read(dir.path().join("metadata/1.root.json")).unwrap()).unwrap();
    let ours = tooltool_sha512::hash_reader_both(&mut &canonical::to_vec(&root["signed"]).unwrap()[..]).unwrap();
    assert_eq!(got["canonical_root"], ours.sha256.as_str());
    let missing = ngclient(dir.path(), &"0".repeat(128)).await;
    assert_eq!((&missing["ok"], &missing["error"]), (&json!(false), &json!("NotFound")), "{missing}");
}

#[tokio::test]
async fn ngclient_refuses_an_altered_target_and_metadata_signed_by_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate();
    let (name, sha256) = write_repository(dir.path(), &key, b"original bytes");
    std::fs::write(dir.path().join("targets").join(format!("{sha256}.{name}")), b"altered bytes!").unwrap();
    let got = ngclient(dir.path(), &name).await;
    assert_eq!(got["error"], "LengthOrHashMismatchError", "{got}");

    // A timestamp signed by a key the root does not name.
    let (other, _) = SigningKey::generate();
    let path = dir.path().join("metadata/timestamp.json");
    let ts: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let forged = envelope(ts["signed"].clone(), &[&other]).unwrap();
    std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let got = ngclient(dir.path(), &name).await;
    assert_eq!(got["error"], "UnsignedMetadataError", "{got}");
}
