//! The project's own client (`tooltool fetch --tuf-root`) against the repositories a running
//! server signs: it fetches verified files from `public`, and `internal` with a token; it
//! fetches metadata lazily (one bin per looked-up name) and a warm run asks for the timestamp
//! once (requests counted at a proxy in front of the server); it refuses a file whose bin was
//! altered in the database (the bin no longer has the sha256 the signed snapshot gives it), a
//! timestamp older than the one it cached (a rollback), and a withdrawn file even when its blob is still in the cache.
//! ngclient (python-tuf) says when the signer has caught up, so nothing here waits on timing.

use std::collections::BTreeSet;
use std::path::Path;

use tooltool_e2e::proto::{Digest, Manifest, PatchOp, Visibility};
use tooltool_e2e::proxy::{Kind, Proxy};
use tooltool_e2e::{Backend, backend_tests, tooltool_cli_output};

use super::{SignedApp, not_found, ok, roles, sha256_of, signed_app};

backend_tests!(
    the_client_verifies_public_and_internal_files_lazily_and_a_warm_fetch_asks_one_timestamp,
    the_client_refuses_a_file_whose_bin_was_altered_in_the_database,
    the_client_refuses_a_withdrawn_file_though_the_cache_still_holds_it,
    the_client_refuses_a_timestamp_older_than_the_one_it_cached,
);

/// Writes `files` (name, bytes) as the manifest of `dir`.
fn write_manifest(dir: &Path, files: &[(String, Vec<u8>)]) {
    let entries = files.iter().map(|(n, d)| tooltool_e2e::manifest_entry(n, d)).collect();
    Manifest { entries }.save(&dir.join("manifest.tt")).unwrap();
}

/// The TUF metadata files the server was asked for since request `from`: `repo/file`.
fn metadata_requests(proxy: &Proxy, from: usize) -> Vec<String> {
    proxy.log()[from..]
        .iter()
        .filter(|s| s.kind == Kind::Api)
        .filter_map(|s| s.path.strip_prefix("/tuf/").map(|p| p.replacen("/metadata/", "/", 1)))
        .collect()
}

impl SignedApp {
    /// Uploads `data` as the public `name` and waits until public lists it: its digest, and
    /// public's root version 1 pinned in a file.
    async fn listed_public(&self, name: &str, data: &[u8]) -> (Digest, tempfile::NamedTempFile) {
        let d = self.app.upload(name, data, Visibility::Public).await;
        let root = self.pinned_root("public").await;
        self.wait_listed("public", root.path(), d.as_str()).await;
        (d, root)
    }

    /// Waits until `repo` lists `digest` (ngclient finds it).
    async fn wait_listed(&self, repo: &str, root: &Path, digest: &str) {
        let token = self.admin_token();
        self.ngclient_until(repo, root, digest, Some(&token), ok).await;
    }
}

async fn the_client_verifies_public_and_internal_files_lazily_and_a_warm_fetch_asks_one_timestamp(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let mut files: Vec<(String, Vec<u8>)> =
        (0..30).map(|i| (format!("w{i}.bin"), format!("warm {i}").into())).collect();
    let mut digests = Vec::new();
    for (name, data) in &files {
        digests.push(s.app.upload(name, data, Visibility::Public).await);
    }
    let secret = b"an internal file, verified in internal".to_vec();
    let di = s.app.upload("secret.bin", &secret, Visibility::Internal).await;
    files.push(("secret.bin".into(), secret.clone()));
    let (public, internal) = (s.pinned_root("public").await, s.pinned_root("internal").await);
    s.wait_listed("public", public.path(), digests.last().unwrap().as_str()).await;
    s.wait_listed("internal", internal.path(), di.as_str()).await;

    let proxy = Proxy::start(&s.app.url).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &files);
    std::fs::write(dir.path().join("token"), s.admin_token()).unwrap();
    let (pin_public, pin_internal) =
        (public.path().to_str().unwrap().to_owned(), format!("internal={}", internal.path().display()));
    let args = ["--url", &proxy.url, "--authentication-file", "token", "-c", "cache", "-v"];
    let pins = ["--tuf-root", &pin_public, "--tuf-root", &pin_internal];
    let cold: Vec<&str> = args.iter().chain(&pins).copied().chain(["fetch"]).collect();
    let (code, out) = tooltool_cli_output(dir.path(), &cold).await;
    assert_eq!(code, 0, "{out}");
    for (name, data) in &files {
        assert_eq!(&std::fs::read(dir.path().join(name)).unwrap(), data, "{name}");
    }
    assert!(out.contains("secret.bin: a signed target of internal"), "{out}");
    assert!(out.contains("w0.bin: a signed target of public"), "{out}");

    // Cold: each repository's root walk, one timestamp, snapshot and targets, then only the
    // bins the names hash to (every name is looked up in public first).
    let asked = metadata_requests(&proxy, 0);
    let bins = |repo: &str| -> BTreeSet<String> {
        asked.iter().filter(|f| f.starts_with(&format!("{repo}/")) && f.contains(".bins-")).cloned().collect()
    };
    let bin_of = |d: &str| roles::bin_name(roles::bin_of(d));
    let mut expected: BTreeSet<String> = digests.iter().map(|d| bin_of(d.as_str())).collect();
    expected.insert(bin_of(di.as_str()));
    let public_bins: BTreeSet<String> = bins("public").iter().map(|f| bin_name_in(f)).collect();
    assert_eq!(public_bins, expected, "{asked:?}");
    assert_eq!(bins("public").len(), expected.len(), "each bin once: {asked:?}");
    assert_eq!(bins("internal").iter().map(|f| bin_name_in(f)).collect::<Vec<_>>(), [bin_of(di.as_str())]);
    for repo in ["public", "internal"] {
        let count = |suffix: &str| asked.iter().filter(|f| f.starts_with(repo) && f.ends_with(suffix)).count();
        assert_eq!((count("/timestamp.json"), count(".snapshot.json"), count(".targets.json")), (1, 1, 1), "{asked:?}");
    }

    // Warm, from the cache, with the roots the cache kept (no --tuf-root): per repository the
    // root walk's one 404 and one timestamp, nothing else.
    for (name, _) in &files {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let seen = proxy.log().len();
    let warm: Vec<&str> = args.iter().copied().chain(["fetch"]).collect();
    let (code, out) = tooltool_cli_output(dir.path(), &warm).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(": a signed target of ").count(), files.len(), "every file was verified: {out}");
    assert_eq!(out.matches(": copied from the cache").count(), files.len(), "{out}");
    let asked = metadata_requests(&proxy, seen);
    let expected = ["internal/2.root.json", "internal/timestamp.json", "public/2.root.json", "public/timestamp.json"];
    assert_eq!(asked.iter().map(String::as_str).collect::<BTreeSet<_>>(), expected.into(), "{asked:?}");
    assert_eq!(asked.len(), 4, "{asked:?}");
}

/// `bins-xx` of `repo/N.bins-xx.json`.
fn bin_name_in(file: &str) -> String {
    let start = file.find("bins-").unwrap();
    file[start..start + 7].to_owned()
}

async fn the_client_refuses_a_file_whose_bin_was_altered_in_the_database(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"listed in a bin that will be altered".to_vec();
    let (d, root) = s.listed_public("t.bin", &data).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &[("t.bin".into(), data.clone())]);
    let pin = root.path().to_str().unwrap();
    let args = ["--url", s.app.url.as_str(), "--tuf-root", pin, "fetch"];

    // The bin now lists another sha256 for the file, under the signature of the true bin: it no
    // longer has the sha256 the snapshot gives it.
    let (real, other) = (sha256_of(&data), sha256_of(b"something else"));
    s.app
        .sql(&format!("UPDATE tuf_metadata SET body = replace(body, '{real}', '{other}') WHERE repo = 'public'"))
        .await;
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_ne!(code, 0, "{out}");
    let bin = roles::bin_name(roles::bin_of(d.as_str()));
    assert!(out.contains(&format!(".{bin}.json: sha256 ")), "{out}");
    assert!(!dir.path().join("t.bin").exists(), "nothing is written");

    // The same bin as signed: the file is fetched.
    s.app
        .sql(&format!("UPDATE tuf_metadata SET body = replace(body, '{other}', '{real}') WHERE repo = 'public'"))
        .await;
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(dir.path().join("t.bin")).unwrap(), data);
}

async fn the_client_refuses_a_withdrawn_file_though_the_cache_still_holds_it(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let data = b"a file to be withdrawn".to_vec();
    let (d, root) = s.listed_public("gone.bin", &data).await;
    let (first, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_manifest(first.path(), &[("gone.bin".into(), data.clone())]);
    let cache_arg = cache.path().to_str().unwrap();
    let pin = root.path().to_str().unwrap();
    let (code, out) =
        tooltool_cli_output(first.path(), &["--url", &s.app.url, "-c", cache_arg, "--tuf-root", pin, "fetch"]).await;
    assert_eq!(code, 0, "{out}");

    s.app.admin().patch_file(d.as_str(), &[PatchOp::DeleteInstances]).await.unwrap();
    s.ngclient_until("public", root.path(), d.as_str(), None, not_found).await;
    // The blob is still in the cache, which would serve it without a root.
    assert_eq!(std::fs::read(cache.path().join(d.as_str())).unwrap(), data);
    let again = tempfile::tempdir().unwrap();
    write_manifest(again.path(), &[("gone.bin".into(), data.clone())]);
    let (code, out) = tooltool_cli_output(again.path(), &["--url", &s.app.url, "-c", cache_arg, "fetch"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&format!("sha512 {d} is not a current target of the signed repository public")), "{out}");
    assert!(!again.path().join("gone.bin").exists(), "nothing is written");
}

async fn the_client_refuses_a_timestamp_older_than_the_one_it_cached(backend: Backend) {
    let s = signed_app(backend, 1).await;
    let (a, b) = (b"first, signed".to_vec(), b"second, signed later".to_vec());
    let (_, root) = s.listed_public("a.bin", &a).await;
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_manifest(dir.path(), &[("a.bin".into(), a.clone())]);
    let cache_arg = cache.path().to_str().unwrap();
    let pin = root.path().to_str().unwrap();
    let args = ["--url", s.app.url.as_str(), "-c", cache_arg, "--tuf-root", pin, "fetch"];
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}");
    let version =
        |bytes: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["signed"]["version"].clone();
    let cached = || version(std::fs::read(cache.path().join("tuf/public/timestamp.json")).unwrap());
    let first = cached();

    // A newer timestamp, which the next fetch caches.
    let db = s.app.upload("b.bin", &b, Visibility::Public).await;
    s.wait_listed("public", root.path(), db.as_str()).await;
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}");
    let newer = cached();
    assert!(newer.as_u64() > first.as_u64(), "{first} then {newer}");

    // The server now serves an older timestamp (its newest ones removed behind its back).
    s.app
        .sql(&format!("DELETE FROM tuf_metadata WHERE repo = 'public' AND role = 'timestamp' AND version > {first}"))
        .await;
    let served = version(s.get("/tuf/public/metadata/timestamp.json", false).await.bytes().await.unwrap().to_vec());
    assert_eq!(served, first);
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&format!("timestamp version {first} is older than the trusted {newer}: a rollback")), "{out}");
    assert_eq!(cached(), newer, "the cache keeps the newer timestamp");
}
