//! `tooltool fetch` against the real server: downloads, skipping valid files, replacing
//! invalid ones, credentials, partial failure, the shared cache and concurrent fetches on it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use tooltool_e2e::proto::{Manifest, ManifestEntry, Visibility};
use tooltool_e2e::proxy::{Action, Kind, Proxy};
use tooltool_e2e::tooltool::index::INDEX_NAME;
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, tooltool_cli, tooltool_cli_output};

backend_tests!(
    fetch_downloads_every_record_then_skips_valid_files_and_replaces_invalid_ones,
    fetch_named_records_only,
    a_failing_file_does_not_stop_the_others,
    internal_files_need_credentials_in_either_file_form,
    cache_hits_reuse_the_cache_and_touch_it,
    concurrent_fetches_share_one_cache,
    a_cache_entry_changed_after_it_was_recorded_is_fetched_again,
    a_destination_file_edited_in_place_is_replaced_even_within_the_same_second,
);

fn blob(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8).collect()
}

fn entry(name: &str, data: &[u8]) -> ManifestEntry {
    tooltool_e2e::manifest_entry(name, data)
}

fn write_manifest(dir: &Path, entries: Vec<ManifestEntry>) {
    Manifest { entries }.save(&dir.join("manifest.tt")).unwrap();
}

/// Names in `dir` other than the manifest and `expected`.
fn stray_files(dir: &Path, expected: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.tt" && n != INDEX_NAME && !expected.contains(&n.as_str()))
        .collect()
}

async fn fetch_downloads_every_record_then_skips_valid_files_and_replaces_invalid_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b) = (blob(1, 1_500_000), blob(2, 70_000));
    app.upload("a.bin", &a, Visibility::Public).await;
    app.upload("b.bin", &b, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), vec![entry("a.bin", &a), entry("b.bin", &b)]);
    std::fs::write(dir.path().join("token"), app.token("ci", &["download/public"])).unwrap();

    let args = ["--url", &proxy.url, "--authentication-file", "token", "fetch"];
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join("b.bin")).unwrap(), b);
    assert_eq!(stray_files(dir.path(), &["a.bin", "b.bin", "token"]), Vec::<String>::new());
    let log = proxy.log();
    assert_eq!(log.iter().filter(|s| s.kind == Kind::Storage).count(), 2);
    for s in &log {
        match s.kind {
            Kind::Api => assert!(s.header("authorization").is_some_and(|v| v.starts_with("Bearer ")), "{s:?}"),
            Kind::Storage => assert_eq!(s.header("authorization"), None, "credentials sent to storage: {s:?}"),
        }
    }

    // Valid files are not downloaded again.
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(proxy.storage_log().len(), 2);

    // An invalid file is replaced; a missing one fetched again.
    std::fs::write(dir.path().join("a.bin"), b"corrupt").unwrap();
    std::fs::remove_file(dir.path().join("b.bin")).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join("b.bin")).unwrap(), b);
    assert_eq!(proxy.storage_log().len(), 4);
    assert_eq!(stray_files(dir.path(), &["a.bin", "b.bin", "token"]), Vec::<String>::new());
    assert_eq!(tooltool_cli(dir.path(), &["validate"]).await, 0);
}

async fn fetch_named_records_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b) = (blob(3, 1000), blob(4, 2000));
    app.upload("a", &a, Visibility::Public).await;
    app.upload("b", &b, Visibility::Public).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), vec![entry("a", &a), entry("b", &b)]);
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "fetch", "b"]).await, 0);
    assert!(!dir.path().join("a").exists());
    assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b);
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "fetch", "nope"]).await, 1);
    assert_eq!(tooltool_cli(dir.path(), &["validate", "b"]).await, 0);
    assert_eq!(tooltool_cli(dir.path(), &["validate"]).await, 1);
}

async fn a_failing_file_does_not_stop_the_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let good = blob(5, 300_000);
    app.upload("good", &good, Visibility::Public).await;
    let dir = tempfile::tempdir().unwrap();
    // "missing" was never uploaded; "wrong" is stored but the manifest's size is off.
    let wrong = blob(6, 1000);
    app.upload("wrong", &wrong, Visibility::Public).await;
    let mut wrong_entry = entry("wrong", &wrong);
    wrong_entry.size = Some(999);
    write_manifest(dir.path(), vec![entry("missing", b"never uploaded"), entry("good", &good), wrong_entry]);
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "-j", "1", "fetch"]).await, 1);
    assert_eq!(std::fs::read(dir.path().join("good")).unwrap(), good);
    assert!(!dir.path().join("missing").exists());
    assert!(!dir.path().join("wrong").exists());
    assert_eq!(stray_files(dir.path(), &["good"]), Vec::<String>::new());
}

async fn internal_files_need_credentials_in_either_file_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = blob(7, 5000);
    app.upload("secret.bin", &data, Visibility::Internal).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), vec![entry("secret.bin", &data)]);
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "fetch"]).await, 1);
    assert!(!dir.path().join("secret.bin").exists());

    // The JSON form signs with Hawk, so it names a registered client; the bare form is Bearer.
    let admin = app.admin_ops().await;
    let scopes = ["download/internal".to_owned()];
    let creds = admin.create_client("ci", &scopes, Duration::from_secs(3600), "ci", "admin-cli:test").await.unwrap();
    let token = creds.access_token;
    std::fs::write(dir.path().join("auth.json"), format!(r#"{{"clientId": "ci", "accessToken": "{token}"}}"#)).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "--authentication-file", "auth.json", "fetch"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("secret.bin")).unwrap(), data);

    std::fs::remove_file(dir.path().join("secret.bin")).unwrap();
    std::fs::write(dir.path().join("bare"), format!("{token}\n")).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "--authentication-file", "bare", "fetch"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("secret.bin")).unwrap(), data);
}

async fn cache_hits_reuse_the_cache_and_touch_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = blob(8, 400_000);
    let digest = digest_of(&data);
    app.upload("c.bin", &data, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap();
    let fetch = |dir: &Path| {
        let dir = dir.to_owned();
        let (url, cache_arg) = (proxy.url.clone(), cache_arg.to_owned());
        async move { tooltool_cli(&dir, &["--url", &url, "-c", &cache_arg, "fetch"]).await }
    };

    let one = tempfile::tempdir().unwrap();
    write_manifest(one.path(), vec![entry("c.bin", &data)]);
    assert_eq!(fetch(one.path()).await, 0);
    let cached = cache.path().join(digest.as_str());
    assert_eq!(std::fs::read(&cached).unwrap(), data);
    assert_eq!(std::fs::read(one.path().join("c.bin")).unwrap(), data);
    assert_eq!(proxy.storage_log().len(), 1);

    // A second checkout is served from the cache, which is touched.
    let old = SystemTime::now() - Duration::from_secs(86_400 * 30);
    std::fs::File::options().write(true).open(&cached).unwrap().set_modified(old).unwrap();
    let two = tempfile::tempdir().unwrap();
    write_manifest(two.path(), vec![entry("c.bin", &data)]);
    assert_eq!(fetch(two.path()).await, 0);
    assert_eq!(std::fs::read(two.path().join("c.bin")).unwrap(), data);
    assert_eq!(proxy.storage_log().len(), 1, "served from the cache");
    let touched = std::fs::metadata(&cached).unwrap().modified().unwrap();
    assert!(touched > old + Duration::from_secs(86_400), "the cached file was not touched");

    // A corrupt cache entry is replaced by a fresh download.
    std::fs::write(&cached, vec![0u8; data.len()]).unwrap();
    let three = tempfile::tempdir().unwrap();
    write_manifest(three.path(), vec![entry("c.bin", &data)]);
    assert_eq!(fetch(three.path()).await, 0);
    assert_eq!(std::fs::read(three.path().join("c.bin")).unwrap(), data);
    assert_eq!(std::fs::read(&cached).unwrap(), data);
    assert_eq!(proxy.storage_log().len(), 2);
    let names: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let blobs = names.iter().filter(|n| !n.to_string_lossy().starts_with('.')).count();
    assert_eq!(blobs, 1, "{names:?}");

    // purge empties it (and exits 0, unlike the original).
    assert_eq!(tooltool_cli(one.path(), &["-c", cache_arg, "purge"]).await, 0);
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    assert_eq!(tooltool_cli(one.path(), &["-c", cache_arg, "-s", "0.000001", "purge"]).await, 0);
}

async fn concurrent_fetches_share_one_cache(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| blob(20 + i, 1_000_000 + i as usize * 1000)).collect();
    let mut entries = Vec::new();
    for (i, b) in blobs.iter().enumerate() {
        let name = format!("f{i}.bin");
        app.upload(&name, b, Visibility::Public).await;
        entries.push(entry(&name, b));
    }
    let proxy = Proxy::start(&app.url).await;
    // Slow storage, so that the two fetches overlap.
    proxy.storage((0..3).map(|_| Action::Delay(Duration::from_millis(300))));
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap().to_owned();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for d in &dirs {
        write_manifest(d.path(), entries.clone());
    }
    let (url, cache_arg) = (proxy.url.as_str(), cache_arg.as_str());
    let args = ["--url", url, "-c", cache_arg, "fetch"];
    let (r1, r2) = tokio::join!(tooltool_cli(dirs[0].path(), &args), tooltool_cli(dirs[1].path(), &args));
    assert_eq!((r1, r2), (0, 0));
    for d in &dirs {
        for (i, b) in blobs.iter().enumerate() {
            assert_eq!(&std::fs::read(d.path().join(format!("f{i}.bin"))).unwrap(), b);
        }
    }
    // Each digest crossed the network once.
    let mut paths: Vec<String> = proxy.storage_log().into_iter().map(|s| s.path).collect();
    paths.sort();
    let before = paths.len();
    paths.dedup();
    assert_eq!((before, paths.len()), (3, 3), "{paths:?}");
    for b in &blobs {
        assert_eq!(&std::fs::read(cache.path().join(digest_of(b).as_str())).unwrap(), b);
    }
}

/// Overwrites `path` in place (same inode, same size) with other bytes, then puts its
/// modification time back: only the change time shows the edit.
fn rewrite_in_place_keeping_mtime(path: &Path) {
    let meta = std::fs::metadata(path).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::io::Write::write_all(&mut f, &vec![0u8; meta.len() as usize]).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), meta.len());
}

async fn a_cache_entry_changed_after_it_was_recorded_is_fetched_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = blob(9, 300_000);
    app.upload("k.bin", &data, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    let cache = tempfile::tempdir().unwrap();
    let cached = cache.path().join(digest_of(&data).as_str());
    let fetch = |verbose: bool| {
        let (url, cache_arg) = (proxy.url.clone(), cache.path().to_str().unwrap().to_owned());
        let data = data.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            write_manifest(dir.path(), vec![entry("k.bin", &data)]);
            let mut args = vec!["--url", url.as_str(), "-c", cache_arg.as_str(), "fetch"];
            if verbose {
                args.insert(0, "-v");
            }
            let (code, out) = tooltool_cli_output(dir.path(), &args).await;
            assert_eq!(code, 0, "{out}");
            assert_eq!(std::fs::read(dir.path().join("k.bin")).unwrap(), data, "a wrong byte reached the destination");
            out
        }
    };

    fetch(false).await;
    assert_eq!(proxy.storage_log().len(), 1);
    // Once the clock has moved past the record, a hit is copied on the record's word alone.
    tokio::time::sleep(Duration::from_millis(50)).await;
    fetch(true).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = fetch(true).await;
    assert!(out.contains("k.bin: copied from the cache"), "{out}");
    assert!(!out.contains("hashed"), "the record should have vouched: {out}");
    assert_eq!(proxy.storage_log().len(), 1);

    // Other bytes of the same size, modification time restored: the record no longer matches.
    rewrite_in_place_keeping_mtime(&cached);
    fetch(false).await;
    assert_eq!(proxy.storage_log().len(), 2, "the changed entry was fetched again");
    assert_eq!(std::fs::read(&cached).unwrap(), data);

    // Truncated: fetched again too.
    std::fs::OpenOptions::new().write(true).open(&cached).unwrap().set_len(1000).unwrap();
    fetch(false).await;
    assert_eq!(proxy.storage_log().len(), 3);
    assert_eq!(std::fs::read(&cached).unwrap(), data);

    // --verify-cache hashes a hit whatever its record says.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), vec![entry("k.bin", &data)]);
    let cache_arg = cache.path().to_str().unwrap();
    let args = ["-v", "--url", &proxy.url, "-c", cache_arg, "--verify-cache", "fetch"];
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("k.bin: the cached copy was hashed"), "{out}");
    assert_eq!(proxy.storage_log().len(), 3);
}

async fn a_destination_file_edited_in_place_is_replaced_even_within_the_same_second(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = blob(10, 200_000);
    app.upload("d.bin", &data, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), vec![entry("d.bin", &data)]);
    let file = dir.path().join("d.bin");
    let args = ["-v", "--url", proxy.url.as_str(), "fetch"];

    // Edited right after the fetch that wrote it and its index record (the racy case).
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    rewrite_in_place_keeping_mtime(&file);
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(std::fs::read(&file).unwrap(), data);
    assert_eq!(proxy.storage_log().len(), 2);

    // Once the clock has moved past the index, an unchanged file is trusted without hashing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (code, out) = tooltool_cli_output(dir.path(), &args).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("d.bin: present, vouched for by the destination index"), "{out}");

    // An edit long after the index: the record no longer matches, the file is hashed, replaced.
    rewrite_in_place_keeping_mtime(&file);
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(std::fs::read(&file).unwrap(), data);
    assert_eq!(proxy.storage_log().len(), 3);
    assert_eq!(tooltool_cli(dir.path(), &["validate"]).await, 0);
}
