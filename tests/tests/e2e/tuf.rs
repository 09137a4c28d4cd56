//! The TUF primitives (`tooltool_api::tuf`: canonical JSON, Ed25519 PKCS#8 keys, signatures)
//! checked by a TUF client no one here wrote: python-tuf 7.0.1's ngclient, from the venv
//! `scripts/test.sh` makes (a missing venv fails), refreshes a small repository written with
//! the server's role builders (root, timestamp, snapshot, targets delegating to 256 hashed bins;
//! consistent snapshots; targets named by their sha512 with length, sha256 and sha512), fetching
//! only the one bin on a target's path, downloads the target and verifies it, and refuses a
//! tampered target or signature. No server is involved yet, so there is no backend to vary.

use std::path::Path;

use serde_json::{Value, json};
use tooltool_api::tuf::canonical;
use tooltool_api::tuf::keys::{SigningKey, envelope};
use tooltool_api::tuf::roles;

/// Runs `tuf_client.py` on the repository in `dir` for `target`.
async fn ngclient(dir: &Path, target: &str) -> Value {
    let client = tempfile::tempdir().unwrap();
    let spec = json!({"dir": dir, "client": client.path(), "target": target});
    tooltool_e2e::run_py_script("tuf_client.py", &spec).await
}

/// Writes a repository holding `files` as its targets, in 256 hashed bins, with the server's
/// role builders, signed by `key`; returns each target's name (the sha512) and sha256.
fn write_repository(dir: &Path, key: &SigningKey, files: &[&[u8]]) -> Vec<(String, String)> {
    let expires = 4_070_908_800; // 2099-01-01
    std::fs::create_dir_all(dir.join("metadata")).unwrap();
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    let mut bins: Vec<Vec<roles::Target>> = vec![Vec::new(); roles::BINS];
    let mut names = Vec::new();
    for data in files {
        let h = tooltool_sha512::hash_reader_both(&mut &data[..]).unwrap();
        let name = h.sha512.as_str().to_owned();
        // The first hash in the sorted `hashes` is the sha256: ngclient asks for <sha256>.<name>.
        std::fs::write(dir.join("targets").join(format!("{}.{name}", h.sha256)), data).unwrap();
        let target = roles::Target { sha512: name.clone(), length: h.len, sha256: h.sha256.clone() };
        bins[roles::bin_of(&name) as usize].push(target);
        names.push((name, h.sha256));
    }
    let online = [key.public()];
    let write = |file: &str, bytes: &[u8]| std::fs::write(dir.join("metadata").join(file), bytes).unwrap();
    let mut meta = Vec::new();
    let targets = roles::file(roles::targets(1, expires, &online), &[key]).unwrap();
    write("1.targets.json", &targets);
    meta.push(("targets.json".to_owned(), roles::MetaFile::of(&targets, 1)));
    for (b, listed) in bins.iter().enumerate() {
        let name = roles::bin_name(b as u8);
        let bytes = roles::file(roles::bin(1, expires, listed), &[key]).unwrap();
        write(&format!("1.{name}.json"), &bytes);
        meta.push((format!("{name}.json"), roles::MetaFile::of(&bytes, 1)));
    }
    let snapshot = roles::file(roles::snapshot(1, expires, &meta), &[key]).unwrap();
    write("1.snapshot.json", &snapshot);
    let timestamp = roles::timestamp(1, expires, &roles::MetaFile::of(&snapshot, 1));
    write("timestamp.json", &roles::file(timestamp, &[key]).unwrap());
    let root = roles::root(1, expires, &[key.public()], 1, &online);
    write("1.root.json", &roles::file(root, &[key]).unwrap());
    names
}

/// A repository of `n` files (`file number <i>`) signed by a new key: its folder, the files,
/// and their names and sha256s.
fn numbered_repository(n: u32) -> (tempfile::TempDir, Vec<Vec<u8>>, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate();
    let files: Vec<Vec<u8>> = (0..n).map(|i| format!("file number {i}").into_bytes()).collect();
    let names = write_repository(dir.path(), &key, &files.iter().map(Vec::as_slice).collect::<Vec<_>>());
    (dir, files, names)
}

#[tokio::test]
async fn ngclient_verifies_a_repository_signed_with_our_keys_and_canonical_json() {
    let (dir, _, names) = numbered_repository(40);
    let (name, sha256) = &names[17];
    let got = ngclient(dir.path(), name).await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["sha256"], sha256.as_str());
    // Lazily: the one bin on the target's path, not all 256.
    let bin = format!("metadata/1.{}.json", roles::bin_name(roles::bin_of(name)));
    let fetched: Vec<&str> = got["fetched"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let expected =
        ["metadata/2.root.json", "metadata/timestamp.json", "metadata/1.snapshot.json", "metadata/1.targets.json"];
    assert_eq!(fetched[..4], expected, "{got}");
    assert_eq!(fetched[4..], [bin.as_str(), &format!("targets/{sha256}.{name}")], "{got}");
    // python-tuf's canonical bytes of the root are the ones signed here.
    let root: Value = serde_json::from_slice(&std::fs::read(dir.path().join("metadata/1.root.json")).unwrap()).unwrap();
    let ours = tooltool_sha512::hash_reader_both(&mut &canonical::to_vec(&root["signed"]).unwrap()[..]).unwrap();
    assert_eq!(got["canonical_root"], ours.sha256.as_str());
    let missing = ngclient(dir.path(), &"0".repeat(128)).await;
    assert_eq!((&missing["ok"], &missing["error"]), (&json!(false), &json!("NotFound")), "{missing}");
}

/// tough 0.24 loads the same repository (all 256 bins, as it does at load) from the folder and
/// reads a target, checking its length and sha256 (it needs the sha256: it ignores sha512).
#[tokio::test]
async fn tough_loads_the_same_repository_and_reads_a_target() {
    use tough::IntoVec as _;
    let (dir, files, names) = numbered_repository(10);
    let root = std::fs::read(dir.path().join("metadata/1.root.json")).unwrap();
    let url = |sub: &str| url::Url::from_directory_path(dir.path().join(sub)).unwrap();
    let repo = tough::RepositoryLoader::new(&root, url("metadata"), url("targets")).load().await.expect("tough loads");
    let name = tough::TargetName::new(names[3].0.clone()).unwrap();
    let stream = repo.read_target(&name).await.unwrap().expect("the target is listed");
    assert_eq!(stream.into_vec().await.unwrap(), files[3]);
    assert!(repo.read_target(&tough::TargetName::new("0".repeat(128)).unwrap()).await.unwrap().is_none());

    std::fs::write(dir.path().join("targets").join(format!("{}.{}", names[4].1, names[4].0)), b"file number X")
        .unwrap();
    let altered = repo.read_target(&tough::TargetName::new(names[4].0.clone()).unwrap()).await.unwrap().unwrap();
    assert!(altered.into_vec().await.is_err(), "tough refuses bytes whose sha256 differs");
}

#[tokio::test]
async fn ngclient_refuses_an_altered_target_and_metadata_signed_by_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate();
    let names = write_repository(dir.path(), &key, &[b"original bytes"]);
    let (name, sha256) = names[0].clone();
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
