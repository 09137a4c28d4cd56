//! Reliable transfers: resumption after a cut connection, retries after 503/429 honouring
//! `Retry-After`, falling through the `--url` list, refreshing an expired signed URL, and a
//! fetch killed half way then run again. Faults come from the test proxy.

use std::path::Path;
use std::time::{Duration, Instant};

use tooltool_e2e::proto::{Manifest, Visibility};
use tooltool_e2e::proxy::{Action, Kind, Proxy};
use tooltool_e2e::tooltool::index::INDEX_NAME;
use tooltool_e2e::{Backend, TestApp, backend_tests, tooltool_cli, tooltool_cli_output};

backend_tests!(
    resumes_with_range_after_a_connection_cut_mid_body,
    retries_after_503_and_429_honouring_retry_after,
    falls_through_to_the_next_url,
    an_expired_signed_url_is_requested_again,
    a_fetch_killed_half_way_finishes_without_downloading_completed_files_again,
);

fn blob(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(17).wrapping_add(seed * 13) % 253) as u8).collect()
}

fn write_manifest(dir: &Path, files: &[(&str, &[u8])]) {
    let entries = files.iter().map(|(name, data)| tooltool_e2e::manifest_entry(name, data)).collect();
    Manifest { entries }.save(&dir.join("manifest.tt")).unwrap();
}

fn retry_after(secs: u64) -> Vec<(String, String)> {
    vec![("Retry-After".into(), secs.to_string())]
}

async fn resumes_with_range_after_a_connection_cut_mid_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = blob(1, 1_200_000);
    app.upload("big.bin", &data, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    proxy.storage([Action::CutAfter(400_000)]);
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &[("big.bin", &data)]);
    assert_eq!(tooltool_cli(dir.path(), &["--url", &proxy.url, "fetch"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), data);
    let storage = proxy.storage_log();
    assert_eq!(storage.len(), 2, "{storage:?}");
    assert_eq!(storage[0].body_sent, 400_000);
    assert_eq!(storage[1].header("range"), Some("bytes=400000-"));
    assert_eq!(storage[1].status, 206);
    assert_eq!(storage[1].body_sent, 800_000);
    assert!(!dir.path().join(".big.bin.part").exists());
}

async fn retries_after_503_and_429_honouring_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = blob(2, 50_000);
    app.upload("r.bin", &data, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    // The 503 asks for 3 s (backoff alone would wait 0.5 s), the 429 for an HTTP date 8 s from
    // now (whole seconds only, so at least 7 s after the start; backoff would wait 1 s).
    proxy.api([Action::Status(503, retry_after(3))]);
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(8));
    proxy.storage([Action::Status(429, vec![("Retry-After".into(), at)]), Action::Status(500, vec![])]);
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &[("r.bin", &data)]);
    let started = Instant::now();
    assert_eq!(tooltool_cli(dir.path(), &["--url", &proxy.url, "fetch"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("r.bin")).unwrap(), data);
    let log = proxy.log();
    let after_503 = log[1].at - log[0].at;
    assert!(after_503 >= Duration::from_secs(3), "Retry-After in seconds not honoured: {after_503:?}");
    let after_429 = log[3].at - started;
    assert!(after_429 >= Duration::from_secs(7), "Retry-After as a date not honoured: {after_429:?}");
    let statuses: Vec<(Kind, u16)> = log.iter().map(|s| (s.kind, s.status)).collect();
    assert_eq!(
        statuses,
        [
            (Kind::Api, 503),
            (Kind::Api, 302),
            (Kind::Storage, 429),
            (Kind::Api, 302),
            (Kind::Storage, 500),
            (Kind::Api, 200),
            (Kind::Api, 302),
            (Kind::Storage, 200)
        ]
    );
    // After the storage's 500 the client looked for a copy in another region; there is one copy
    // only, so it retried the same way, after its backoff.
    assert!(log[5].path.starts_with("/file/sha512/"), "{}", log[5].path);
    assert!(log[6].at - log[4].at >= Duration::from_millis(500), "backoff after the 500");
}

async fn falls_through_to_the_next_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let empty = TestApp::spawn(backend).await;
    let data = blob(3, 10_000);
    app.upload("x.bin", &data, Visibility::Public).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &[("x.bin", &data)]);
    // The first server does not have the file (404): the second one serves it.
    let args = ["--url", &empty.url, "--url", &app.url, "fetch"];
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(std::fs::read(dir.path().join("x.bin")).unwrap(), data);
    // Neither has it: failure, with nothing left behind.
    std::fs::remove_file(dir.path().join("x.bin")).unwrap();
    let args = ["--url", &empty.url, "--url", &empty.url, "fetch"];
    assert_eq!(tooltool_cli(dir.path(), &args).await, 1);
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != INDEX_NAME).collect();
    assert_eq!(names, ["manifest.tt"]);
}

async fn an_expired_signed_url_is_requested_again(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.download_url_ttl = Duration::from_secs(1)).await;
    let data = blob(4, 20_000);
    app.upload("e.bin", &data, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    // The first storage request arrives after the signed URL expired.
    proxy.storage([Action::Delay(Duration::from_millis(2500))]);
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &[("e.bin", &data)]);
    assert_eq!(tooltool_cli(dir.path(), &["--url", &proxy.url, "fetch"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("e.bin")).unwrap(), data);
    let statuses: Vec<(Kind, u16)> = proxy.log().iter().map(|s| (s.kind, s.status)).collect();
    assert_eq!(statuses, [(Kind::Api, 302), (Kind::Storage, 403), (Kind::Api, 302), (Kind::Storage, 200)]);
}

async fn a_fetch_killed_half_way_finishes_without_downloading_completed_files_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let small = blob(5, 100_000);
    let big = blob(6, 3_000_000);
    app.upload("small.bin", &small, Visibility::Public).await;
    app.upload("big.bin", &big, Visibility::Public).await;
    let proxy = Proxy::start(&app.url).await;
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &[("small.bin", &small), ("big.bin", &big)]);

    // One at a time: small.bin completes, then big.bin hangs after 2 MB; the run is killed.
    proxy.storage([Action::Pass, Action::StallAfter(2_000_000)]);
    let args = ["--url", proxy.url.as_str(), "-j", "1", "fetch"];
    let run = tooltool_cli(dir.path(), &args);
    let killed = tokio::time::timeout(Duration::from_secs(3), run).await;
    assert!(killed.is_err(), "the first run should hang");
    assert_eq!(std::fs::read(dir.path().join("small.bin")).unwrap(), small);
    assert!(!dir.path().join("big.bin").exists(), "no corrupt file may be left");
    let part = dir.path().join(".big.bin.part");
    // Once the killed run has let go of the part (its writer flushes what it received first).
    let kept = {
        let f = std::fs::File::open(&part).unwrap();
        f.lock().unwrap();
        f.metadata().unwrap().len()
    };
    assert!(kept > 0 && kept <= 2_000_000, "kept {kept}");

    // Run again: small.bin is not downloaded again, big.bin resumes where the part ends.
    assert_eq!(tooltool_cli(dir.path(), &args).await, 0);
    assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(dir.path().join("small.bin")).unwrap(), small);
    assert!(!part.exists());
    let storage = proxy.storage_log();
    assert_eq!(storage.len(), 3, "{storage:?}");
    assert_eq!(storage[2].header("range"), Some(format!("bytes={kept}-").as_str()));
    assert_eq!(storage[2].body_sent as u64, 3_000_000 - kept);
    assert_eq!(tooltool_cli(dir.path(), &["validate"]).await, 0);
}

#[tokio::test]
async fn a_server_that_refuses_connections_fails_the_fetch_with_one_message() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> = (0..6).map(|i| blob(30 + i, 100)).collect();
    let files: Vec<(String, &[u8])> = blobs.iter().enumerate().map(|(i, b)| (format!("f{i}"), &b[..])).collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    write_manifest(dir.path(), &files);
    let (code, out) = tooltool_cli_output(dir.path(), &["--url", &url, "fetch"]).await;
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one message, not one per file: {out}");
    let prefix = format!("error: cannot connect to the tooltool server at {url}: ");
    assert!(lines[0].starts_with(&prefix), "{out}");
    assert!(lines[0].contains("Connection refused"), "{out}");
    assert!(lines[0].ends_with("; 6 files not fetched (check --url, and that the server is up)"), "{out}");
}
