//! TUF checked by clients no one here wrote: python-tuf 7.0.1's ngclient, from the venv
//! `scripts/test.sh` makes (a missing venv fails), and tough 0.24.
//!
//! - The primitives (`tooltool_api::tuf`: canonical JSON, Ed25519 PKCS#8 keys, signatures):
//!   ngclient refreshes a small repository written into a folder with the server's role
//!   builders (root, timestamp, snapshot, targets delegating to 256 hashed bins; consistent
//!   snapshots; targets named by their sha512 with length, sha256 and sha512), fetching only the
//!   one bin on a target's path, downloads the target and verifies it, and refuses a tampered
//!   target or signature; tough loads the same folder. No server, no backend to vary.
//! - The repositories a running server signs and serves, on both backends: on the embedded
//!   default the server signs its own root at first start (zero configuration); on PostgreSQL
//!   nothing is signed until the test bootstraps both repositories, as an operator does, with a
//!   root made by the ceremony. ngclient pins root version 1 as served, and polls (no timing is
//!   asserted) while the signer follows uploads, visibility changes, deletions and root
//!   rotations.
//! - The project's own client (`tooltool fetch --tuf-root`), in [`client`].

mod client;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tooltool_api::tuf::canonical;
use tooltool_api::tuf::ceremony;
use tooltool_api::tuf::keys::{SigningKey, envelope};
use tooltool_api::tuf::repo::{self, REPOS};
use tooltool_api::tuf::roles;
use tooltool_api::tuf::root::Root;
use tooltool_e2e::proto::{PatchOp, Visibility};
use tooltool_e2e::{Backend, TestApp, backend_tests};

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

backend_tests!(
    metadata_is_served_by_version_with_cache_headers_and_unknown_names_are_404,
    ngclient_downloads_a_public_file_through_the_302_and_verifies_it,
    an_internal_file_is_only_in_internal_which_refuses_callers_without_a_token,
    ngclient_rejects_a_blob_altered_in_storage,
    a_file_made_internal_moves_to_internal_and_a_deleted_one_leaves_both,
    ngclient_follows_root_rotation_one_two_three_with_an_online_key_change,
    a_file_without_sha256_is_no_target_until_backfilled,
    roles_are_signed_again_past_half_their_lifetime_old_versions_go_and_the_heartbeat_warns,
    tough_loads_the_served_repository_and_reads_a_target_through_the_302,
);

/// How long a change may take to be signed before a test gives up (it polls, no timing is
/// asserted).
const SIGNED_WITHIN: Duration = Duration::from_secs(30);

/// A server whose repositories are signed, and the root key that signed their first root.
struct SignedApp {
    app: TestApp,
    root_key: SigningKey,
    /// The online key files the server holds, the first named by root version 1.
    online: Vec<PathBuf>,
    keys: tempfile::TempDir,
}

/// Spawns a server holding `online` new online keys (`TOOLTOOL_TUF_ONLINE_KEYS`) and waits
/// until both repositories are signed.
async fn signed_app(backend: Backend, online: usize) -> SignedApp {
    let signed = bootstrapped_app(backend, online, true).await;
    signed.wait_signed().await;
    signed
}

/// A server whose repositories are bootstrapped with `online` new online keys, the first named
/// by the root; held by the server unless not `held`.
async fn bootstrapped_app(backend: Backend, online: usize, held: bool) -> SignedApp {
    let keys = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..online).map(|i| keys.path().join(format!("online{i}.pem"))).collect();
    for p in &paths {
        ceremony::keygen(p).unwrap();
    }
    let configured = if held { paths.clone() } else { Vec::new() };
    let app = TestApp::spawn_with(backend, move |s| s.tuf_online_keys = configured).await;
    let root_key = match backend {
        // Zero configuration: the server made its root key under the data directory.
        Backend::Embedded => repo::read_key(&app.data_dir.path().join("tuf/root.pem")).unwrap(),
        Backend::PostgresS3 => {
            let path = keys.path().join("root.pem");
            let key = ceremony::keygen(&path).unwrap();
            let now = tooltool_api::time::now();
            let online = ceremony::read_public(&paths[0]).unwrap();
            let mut root = ceremony::init(&[key.public()], 1, &[online], now + repo::ROOT_LIFETIME).unwrap();
            ceremony::sign(&mut root, &key).unwrap();
            let body = serde_json::to_vec(&root).unwrap();
            for r in REPOS {
                repo::bootstrap(&app.state.db, r, &body, now).await.unwrap();
            }
            key
        }
    };
    SignedApp { app, root_key, online: paths, keys }
}

impl SignedApp {
    /// Waits until both repositories are signed.
    async fn wait_signed(&self) {
        for r in ["public", "internal"] {
            let deadline = tokio::time::Instant::now() + SIGNED_WITHIN;
            while self.get(&format!("/tuf/{r}/metadata/timestamp.json"), true).await.status() != 200 {
                assert!(tokio::time::Instant::now() < deadline, "{r} was never signed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    fn admin_token(&self) -> String {
        self.app.token("admin@example.com", &["*"])
    }

    /// GET `path`, as the admin or anonymously, following no redirect.
    async fn get(&self, path: &str, admin: bool) -> reqwest::Response {
        let mut req = self.app.http().get(self.app.at(path));
        if admin {
            req = req.bearer_auth(self.admin_token());
        }
        req.send().await.unwrap()
    }

    /// Root version 1 of `repo`, written to a file the client pins.
    async fn pinned_root(&self, repo: &str) -> tempfile::NamedTempFile {
        let res = self.get(&format!("/tuf/{repo}/metadata/1.root.json"), true).await;
        assert_eq!(res.status(), 200);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), res.bytes().await.unwrap()).unwrap();
        file
    }

    /// ngclient, with a fresh cache pinning `root`, looks `target` up in `repo` and downloads
    /// it; with `token` through the custom fetcher that sends it.
    async fn ngclient(&self, repo: &str, root: &Path, target: &str, token: Option<&str>) -> Value {
        let client = tempfile::tempdir().unwrap();
        let spec = json!({"url": self.app.at(&format!("/tuf/{repo}/")), "root": root, "client": client.path(),
                          "target": target, "token": token});
        tooltool_e2e::run_py_script("tuf_client.py", &spec).await
    }

    /// [`Self::ngclient`] again until `done` holds of its answer (the signer follows changes
    /// within seconds); the last answer.
    async fn ngclient_until(
        &self,
        repo: &str,
        root: &Path,
        target: &str,
        token: Option<&str>,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + SIGNED_WITHIN;
        loop {
            let got = self.ngclient(repo, root, target, token).await;
            if done(&got) {
                return got;
            }
            assert!(tokio::time::Instant::now() < deadline, "{repo} never came to the expected state: {got}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn ok(got: &Value) -> bool {
    got["ok"] == true
}

fn not_found(got: &Value) -> bool {
    got["error"] == "NotFound"
}

fn sha256_of(data: &[u8]) -> String {
    tooltool_sha512::hash_reader_both(&mut &data[..]).unwrap().sha256
}

async fn metadata_is_served_by_version_with_cache_headers_and_unknown_names_are_404(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"served metadata";
    let d = s.app.upload("m.bin", data, Visibility::Public).await;
    let root = s.pinned_root("public").await;
    s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;

    let header = |r: &reqwest::Response, h: &str| r.headers()[h].to_str().unwrap().to_owned();
    let ts = s.get("/tuf/public/metadata/timestamp.json", false).await;
    assert_eq!((ts.status().as_u16(), header(&ts, "cache-control")), (200, "no-cache".to_owned()));
    assert_eq!(header(&ts, "content-type"), "application/json");
    let ts: Value = ts.json().await.unwrap();
    let snapshot = ts["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
    let snap = s.get(&format!("/tuf/public/metadata/{snapshot}.snapshot.json"), false).await;
    assert_eq!((snap.status().as_u16(), header(&snap, "cache-control")), (200, "max-age=31536000, immutable".into()));
    let root1 = s.get("/tuf/public/metadata/1.root.json", false).await;
    assert_eq!(header(&root1, "cache-control"), "max-age=31536000, immutable");
    let internal = s.get("/tuf/internal/metadata/1.root.json", true).await;
    assert_eq!(header(&internal, "cache-control"), "private, max-age=31536000, immutable");
    for path in [
        "/tuf/public/metadata/2.root.json",
        "/tuf/public/metadata/999.snapshot.json",
        "/tuf/public/metadata/1.timestamp.json",
        "/tuf/public/metadata/root.json",
        "/tuf/public/metadata/01.root.json",
        "/tuf/public/metadata/1.bins-1000.json",
        "/tuf/elsewhere/metadata/timestamp.json",
    ] {
        assert_eq!(s.get(path, true).await.status(), 404, "{path}");
    }

    // Targets: the 302 of /sha512/<digest>, by the name or with the sha256 or sha512 prefix.
    let direct = s.get(&format!("/sha512/{d}"), false).await;
    assert_eq!(direct.status(), 302);
    for name in [d.to_string(), format!("{}.{d}", sha256_of(data)), format!("{d}.{d}")] {
        let res = s.get(&format!("/tuf/public/targets/{name}"), false).await;
        assert_eq!(res.status(), 302, "{name}");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let location = res.headers()["location"].to_str().unwrap();
        assert!(location.contains(d.as_str()), "{location}");
    }
    let wrong = format!("/tuf/public/targets/{}.{d}", sha256_of(b"other bytes"));
    assert_eq!(s.get(&wrong, false).await.status(), 404);
    assert_eq!(s.get("/tuf/public/targets/not-a-digest", false).await.status(), 400);
}

async fn ngclient_downloads_a_public_file_through_the_302_and_verifies_it(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"a public file, signed and served".to_vec();
    let d = s.app.upload("p.bin", &data, Visibility::Public).await;
    let root = s.pinned_root("public").await;
    // python-tuf's own default fetcher, anonymous: it follows the 302 to storage.
    let got = s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;
    assert_eq!(got["sha256"], sha256_of(&data), "{got}");
    // The same through the watched fetcher: the one bin on the path, then the target by the
    // sha256-prefixed name (answered by the 302, above).
    let token = s.admin_token();
    let got = s.ngclient("public", root.path(), d.as_str(), Some(&token)).await;
    assert_eq!(got["ok"], true, "{got}");
    let fetched: Vec<&str> = got["fetched"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let bin = roles::bin_name(roles::bin_of(d.as_str()));
    assert_eq!(fetched[..2], ["metadata/2.root.json", "metadata/timestamp.json"], "{got}");
    assert!(fetched[2].ends_with(".snapshot.json") && fetched[3].ends_with(".targets.json"), "{got}");
    assert!(fetched[4].ends_with(&format!(".{bin}.json")), "{got}");
    assert_eq!(fetched[5..], [format!("targets/{}.{d}", sha256_of(&data))], "{got}");
}

async fn an_internal_file_is_only_in_internal_which_refuses_callers_without_a_token(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let secret = b"an internal file".to_vec();
    let di = s.app.upload("i.bin", &secret, Visibility::Internal).await;
    let dp = s.app.upload("p.bin", b"a public file beside it", Visibility::Public).await;
    let token = s.admin_token();
    let internal_root = s.pinned_root("internal").await;
    let got = s.ngclient_until("internal", internal_root.path(), di.as_str(), Some(&token), ok).await;
    assert_eq!(got["sha256"], sha256_of(&secret), "{got}");
    // Public is signed past both uploads once it lists the later one; it never names the
    // internal file.
    let public_root = s.pinned_root("public").await;
    s.ngclient_until("public", public_root.path(), dp.as_str(), None, ok).await;
    let got = s.ngclient("public", public_root.path(), di.as_str(), None).await;
    assert!(not_found(&got), "{got}");
    let got = s.ngclient("internal", internal_root.path(), dp.as_str(), Some(&token)).await;
    assert!(not_found(&got), "the public file is not in internal: {got}");

    // Without a token, python-tuf's own fetcher is refused the internal metadata.
    let got = s.ngclient("internal", internal_root.path(), di.as_str(), None).await;
    assert_eq!(got["error"], "DownloadHTTPError", "{got}");
    assert!(got["message"].as_str().unwrap().contains("403"), "{got}");
    for path in ["/tuf/internal/metadata/timestamp.json", "/tuf/internal/metadata/1.root.json"] {
        assert_eq!(s.get(path, false).await.status(), 403, "{path}");
    }
    let reader = s.app.token("reader", &["download/public"]);
    let res = s.app.http().get(s.app.at("/tuf/internal/metadata/timestamp.json")).bearer_auth(reader).send().await;
    assert_eq!(res.unwrap().status(), 403);
    assert_eq!(s.get(&format!("/tuf/internal/targets/{di}"), false).await.status(), 403);
}

async fn ngclient_rejects_a_blob_altered_in_storage(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"bytes that will be altered in storage".to_vec();
    let d = s.app.upload("a.bin", &data, Visibility::Public).await;
    let root = s.pinned_root("public").await;
    s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;
    let mut altered = data.clone();
    altered[3] ^= 0x20;
    s.app.overwrite_blob(&d, altered).await;
    let got = s.ngclient("public", root.path(), d.as_str(), None).await;
    assert_eq!(got["error"], "LengthOrHashMismatchError", "{got}");
}

async fn a_file_made_internal_moves_to_internal_and_a_deleted_one_leaves_both(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"public at first".to_vec();
    let d = s.app.upload("v.bin", &data, Visibility::Public).await;
    let token = s.admin_token();
    let (public, internal) = (s.pinned_root("public").await, s.pinned_root("internal").await);
    s.ngclient_until("public", public.path(), d.as_str(), None, ok).await;
    assert!(not_found(&s.ngclient("internal", internal.path(), d.as_str(), Some(&token)).await));

    // The public bin version that lists it, as the current snapshot names it.
    let bin = roles::bin_name(roles::bin_of(d.as_str()));
    let ts: Value = s.get("/tuf/public/metadata/timestamp.json", false).await.json().await.unwrap();
    let snapshot = ts["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap();
    let snap: Value =
        s.get(&format!("/tuf/public/metadata/{snapshot}.snapshot.json"), false).await.json().await.unwrap();
    let listing =
        format!("/tuf/public/metadata/{}.{bin}.json", snap["signed"]["meta"][format!("{bin}.json")]["version"]);
    let old = s.get(&listing, false).await;
    assert_eq!(old.status(), 200);
    assert!(old.text().await.unwrap().contains(d.as_str()));

    s.app.admin().patch_file(d.as_str(), &[PatchOp::SetVisibility { visibility: Visibility::Internal }]).await.unwrap();
    s.ngclient_until("public", public.path(), d.as_str(), None, not_found).await;
    assert_eq!(s.get(&listing, false).await.status(), 404, "no older public bin names the internal file");
    let got = s.ngclient_until("internal", internal.path(), d.as_str(), Some(&token), ok).await;
    assert_eq!(got["sha256"], sha256_of(&data), "{got}");

    s.app.admin().patch_file(d.as_str(), &[PatchOp::DeleteInstances]).await.unwrap();
    s.ngclient_until("internal", internal.path(), d.as_str(), Some(&token), not_found).await;
    assert!(not_found(&s.ngclient("public", public.path(), d.as_str(), None).await));
}

async fn ngclient_follows_root_rotation_one_two_three_with_an_online_key_change(backend: Backend) {
    // The server holds the next online key before any root names it (the rotation order of
    // docs/tuf.md).
    let s = signed_app(backend, 2).await;
    let data = b"a file across root rotations".to_vec();
    let d = s.app.upload("r.bin", &data, Visibility::Public).await;
    let v1_file = s.pinned_root("public").await;
    s.ngclient_until("public", v1_file.path(), d.as_str(), None, ok).await;
    let v1 = Root::parse(&std::fs::read(v1_file.path()).unwrap()).unwrap();
    let expires = tooltool_api::time::now() + 86_400;

    // 2: the online key changes; the root key signs.
    let next_online = ceremony::read_public(&s.online[1]).unwrap();
    let change = ceremony::Rotation { online: Some(vec![next_online.clone()]), expires, ..Default::default() };
    let mut v2 = ceremony::rotate(&v1, change).unwrap();
    ceremony::sign(&mut v2, &s.root_key).unwrap();
    let v2_bytes = serde_json::to_vec(&v2).unwrap();
    for r in REPOS {
        repo::publish_root(&s.app.state.db, r, &v2_bytes, tooltool_api::time::now()).await.unwrap();
    }
    let on_v2 = |g: &Value| ok(g) && g["root_version"] == 2;
    s.ngclient_until("public", v1_file.path(), d.as_str(), None, on_v2).await;

    // 3: the root key changes; the new one signs for itself, the old one for root 2.
    let new_root = ceremony::keygen(&s.keys.path().join("root2.pem")).unwrap();
    let v2 = Root::parse(&v2_bytes).unwrap();
    let change = ceremony::Rotation {
        add_root_keys: vec![new_root.public()],
        remove_root_keys: vec![s.root_key.keyid().to_owned()],
        expires,
        ..Default::default()
    };
    let mut v3 = ceremony::rotate(&v2, change).unwrap();
    ceremony::sign(&mut v3, &new_root).unwrap();
    let unsigned_by_old = serde_json::to_vec(&v3).unwrap();
    assert!(repo::publish_root(&s.app.state.db, Visibility::Public, &unsigned_by_old, 0).await.is_err());
    ceremony::sign(&mut v3, &s.root_key).unwrap();
    let v3 = Root::parse(&serde_json::to_vec(&v3).unwrap()).unwrap();
    assert_eq!((v3.role_keys("timestamp"), v3.role_keys("root")), (vec![next_online], vec![new_root.public()]));
    repo::publish_root(&s.app.state.db, Visibility::Public, &serde_json::to_vec(&v3.envelope).unwrap(), 0)
        .await
        .unwrap();

    let token = s.admin_token();
    let on_v3 = |g: &Value| ok(g) && g["root_version"] == 3;
    let got = s.ngclient_until("public", v1_file.path(), d.as_str(), Some(&token), on_v3).await;
    assert_eq!(got["sha256"], sha256_of(&data), "{got}");
    let fetched: Vec<&str> = got["fetched"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(
        fetched[..4],
        ["metadata/2.root.json", "metadata/3.root.json", "metadata/4.root.json", "metadata/timestamp.json"],
        "{got}"
    );
}

async fn a_file_without_sha256_is_no_target_until_backfilled(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"verified before sha256 was hashed".to_vec();
    let d = s.app.upload("b.bin", &data, Visibility::Public).await;
    let root = s.pinned_root("public").await;
    s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;
    // As a database from before sha256 was hashed, whose repository was built then: the
    // signer's full scan finds no sha256, and tough could not read such a target.
    s.app.sql("UPDATE files SET sha256 = NULL").await;
    s.app.sql("UPDATE tuf_state SET last_seq = NULL").await;
    s.ngclient_until("public", root.path(), d.as_str(), None, not_found).await;

    let pace = tooltool_api::time::Pace::new(None);
    let report = tooltool_api::copies::backfill_sha256(&s.app.state.db, &s.app.state.blobs, &pace, "test", &|_| {})
        .await
        .unwrap();
    assert_eq!(report.filled, 1);
    let got = s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;
    assert_eq!(got["sha256"], sha256_of(&data), "{got}");
}

/// Two signers on one PostgreSQL database, as on two replicas: one signs, the other stands by;
/// when the signer dies (its task ends, closing the lock's connection) the other takes over and
/// signs what changed since. The server itself holds no online key, so it only serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_signers_signs_and_a_killed_one_is_taken_over() {
    use std::sync::atomic::Ordering;
    use tooltool_api::tuf::signer::Signer;
    let s = bootstrapped_app(Backend::PostgresS3, 1, false).await;
    let signer = || {
        let keys = repo::OnlineKeys(vec![repo::read_key(&s.online[0]).unwrap()]);
        Signer::new(s.app.state.db.clone(), std::sync::Arc::new(keys))
    };
    let (first, second) = (signer(), signer());
    let (first_leads, second_leads) = (first.leading(), second.leading());
    let leader = tokio::spawn(first.run());
    s.wait_signed().await;
    assert!(first_leads.load(Ordering::SeqCst));
    let standby = tokio::spawn(second.run());
    let data = b"signed by the first signer".to_vec();
    let d = s.app.upload("one.bin", &data, Visibility::Public).await;
    let root = s.pinned_root("public").await;
    s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;
    assert!(!second_leads.load(Ordering::SeqCst), "the second stands by");

    leader.abort();
    let deadline = tokio::time::Instant::now() + SIGNED_WITHIN;
    while !second_leads.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "the second signer never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = s.app.upload("two.bin", b"signed by the second signer", Visibility::Public).await;
    s.ngclient_until("public", root.path(), later.as_str(), None, ok).await;
    assert!(ok(&s.ngclient("public", root.path(), d.as_str(), None).await), "the first file stays");
    standby.abort();
}

async fn roles_are_signed_again_past_half_their_lifetime_old_versions_go_and_the_heartbeat_warns(backend: Backend) {
    use tooltool_api::tuf::signer::Signer;
    let s = signed_app(backend, 1).await;
    let heartbeat = async || -> Value { s.get("/__heartbeat__", false).await.json().await.unwrap() };
    let hb = heartbeat().await;
    assert_eq!((&hb["checks"]["tuf:public"], &hb["checks"]["tuf:internal"]), (&json!("ok"), &json!("ok")), "{hb}");
    let metrics = s.get("/metrics", false).await.text().await.unwrap();
    for series in
        ["tooltool_tuf_role_version{repo=\"public\",role=\"root\"} 1", "tooltool_tuf_events_lag{repo=\"internal\"} 0"]
    {
        assert!(metrics.lines().any(|l| l == series), "{series} missing:\n{metrics}");
    }
    let expires = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tooltool_tuf_role_expires_seconds{repo=\"public\",role=\"timestamp\"} "));
    let left: i64 = expires.expect("the timestamp's expiry is served").parse().unwrap();
    assert!((86_000..=86_400).contains(&left), "{left}");

    let version = async |role: &str| -> u64 {
        let ts: Value = s.get("/tuf/public/metadata/timestamp.json", false).await.json().await.unwrap();
        match role {
            "timestamp" => ts["signed"]["version"].as_u64().unwrap(),
            _ => ts["signed"]["meta"]["snapshot.json"]["version"].as_u64().unwrap(),
        }
    };
    let (timestamp, snapshot) = (version("timestamp").await, version("snapshot").await);
    // A pass 13 hours on (past half the timestamp's day) signs a new timestamp only; 4 days on
    // (past half the snapshot's week), a new snapshot too.
    let keys = repo::OnlineKeys(vec![repo::read_key(&s.online[0]).unwrap()]);
    let signer = Signer::new(s.app.state.db.clone(), std::sync::Arc::new(keys));
    let now = tooltool_api::time::now();
    signer.pass(now + 13 * 3600).await.unwrap();
    assert_eq!((version("timestamp").await, version("snapshot").await), (timestamp + 1, snapshot));
    signer.pass(now + 13 * 3600).await.unwrap();
    assert_eq!(version("timestamp").await, timestamp + 1, "nothing is due again");
    signer.pass(now + 4 * 86_400).await.unwrap();
    assert_eq!((version("timestamp").await, version("snapshot").await), (timestamp + 2, snapshot + 1));
    // A day after a newer version was signed, an older one is no longer served; roots stay.
    let old_snapshot = format!("/tuf/public/metadata/{snapshot}.snapshot.json");
    signer.pass(now + 4 * 86_400 + 12 * 3600).await.unwrap();
    assert_eq!(s.get(&old_snapshot, false).await.status(), 200, "kept for a day after it was superseded");
    signer.pass(now + 5 * 86_400 + 60).await.unwrap();
    assert_eq!(s.get(&old_snapshot, false).await.status(), 404);
    assert_eq!(s.get(&format!("/tuf/public/metadata/{}.snapshot.json", snapshot + 1), false).await.status(), 200);
    assert_eq!(s.get("/tuf/public/metadata/1.root.json", false).await.status(), 200);

    // A timestamp an hour from expiry (the signer stalled for most of a day) is a warning.
    s.app
        .sql(&format!(
            "UPDATE tuf_metadata SET expires = {} WHERE repo = 'internal' AND role = 'timestamp'",
            now + 3600
        ))
        .await;
    let hb = heartbeat().await;
    assert_eq!(
        (&hb["status"], &hb["checks"]["tuf:internal"]),
        (&json!("warning"), &json!("expiring: timestamp")),
        "{hb}"
    );
    assert_eq!(hb["checks"]["tuf:public"], "ok", "{hb}");
}

/// Metadata nobody signed again: the signer stopped long enough for the timestamp to expire.
/// ngclient refuses it (`ExpiredMetadataError`) rather than trusting a frozen repository. The
/// server holds no key (no signer of its own); the test's signer signs once as of two days ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngclient_rejects_an_expired_timestamp_when_the_signer_stopped() {
    use tooltool_api::tuf::signer::Signer;
    let s = bootstrapped_app(Backend::PostgresS3, 1, false).await;
    let keys = repo::OnlineKeys(vec![repo::read_key(&s.online[0]).unwrap()]);
    let signer = Signer::new(s.app.state.db.clone(), std::sync::Arc::new(keys));
    let d = s.app.upload("e.bin", b"signed once, long ago", Visibility::Public).await;
    let now = tooltool_api::time::now();
    signer.pass(now - 2 * 86_400).await.unwrap();
    let root = s.pinned_root("public").await;
    let got = s.ngclient("public", root.path(), d.as_str(), None).await;
    assert_eq!(got["error"], "ExpiredMetadataError", "{got}");
    assert!(got["message"].as_str().unwrap().contains("timestamp"), "{got}");
    // The signer back: the next pass signs again what expired, and the file verifies.
    signer.pass(now).await.unwrap();
    assert_eq!(s.ngclient("public", root.path(), d.as_str(), None).await["ok"], true);
}

/// tough 0.24's loader over HTTP (reqwest, following redirects as tough's own `http` feature
/// does; built here because that feature is not enabled): 404 is "not found", which ends its
/// walk of root versions.
#[derive(Debug, Clone)]
struct HttpTransport(reqwest::Client);

impl tough::Transport for HttpTransport {
    fn fetch<'s, 'f>(
        &'s self,
        url: url::Url,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tough::TransportStream, tough::TransportError>> + Send + 'f>,
    >
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            use tough::{TransportError, TransportErrorKind};
            let other = |e: reqwest::Error| TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), e);
            let res = self.0.get(url.clone()).send().await.map_err(other)?;
            if res.status() == 404 {
                return Err(TransportError::new(TransportErrorKind::FileNotFound, url.as_str()));
            }
            let bytes = res.error_for_status().map_err(other)?.bytes().await.map_err(other)?;
            let stream: tough::TransportStream = Box::pin(futures_util::stream::iter([Ok(bytes)]));
            Ok(stream)
        })
    }
}

async fn tough_loads_the_served_repository_and_reads_a_target_through_the_302(backend: Backend) {
    use tough::IntoVec as _;
    let s = signed_app(backend, 1).await;
    let data = b"read by tough".to_vec();
    let d = s.app.upload("t.bin", &data, Visibility::Public).await;
    let root = s.pinned_root("public").await;
    s.ngclient_until("public", root.path(), d.as_str(), None, ok).await;
    let root = std::fs::read(root.path()).unwrap();
    let url = |sub: &str| url::Url::parse(&s.app.at(&format!("/tuf/public/{sub}/"))).unwrap();
    let repo = tough::RepositoryLoader::new(&root, url("metadata"), url("targets"))
        .transport(HttpTransport(reqwest::Client::new()))
        .load()
        .await
        .expect("tough loads every bin of the served repository");
    let name = tough::TargetName::new(d.to_string()).unwrap();
    let stream = repo.read_target(&name).await.unwrap().expect("the file is a target");
    assert_eq!(stream.into_vec().await.unwrap(), data);
    assert!(repo.read_target(&tough::TargetName::new("0".repeat(128)).unwrap()).await.unwrap().is_none());

    let mut altered = data.clone();
    altered[0] ^= 1;
    s.app.overwrite_blob(&d, altered).await;
    let stream = repo.read_target(&name).await.unwrap().unwrap();
    assert!(stream.into_vec().await.is_err(), "tough refuses bytes whose sha256 differs");
}
