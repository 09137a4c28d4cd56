//! Faults on the production backends, against real processes: PostgreSQL crashed and
//! restarted under a running server, S3 killed and restarted, a database and an S3 that stop
//! answering, and the embedded store's disk full. Each test owns the backend it breaks
//! (`tooltool_e2e::services`); the shared services stay up for the other tests.

use std::time::Duration;

use bytes::Bytes;
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::services::{OwnPostgres, OwnS3, SmallDisk, TcpProxy, until};
use tooltool_e2e::tooltool_api::settings::{BlobSettings, S3Settings, Secret};
use tooltool_e2e::{Backend, TEST_SECRET, TestApp, digest_of, upload_request};

/// A 503 problem+json with this code and `Retry-After`.
async fn unavailable(res: reqwest::Response, codes: &[&str]) {
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    let code = body["code"].as_str().unwrap().to_owned();
    assert!(codes.contains(&code.as_str()), "code {code}, expected one of {codes:?}: {body}");
}

async fn heartbeat(app: &TestApp) -> (u16, serde_json::Value) {
    let res = app.http().get(app.at("/__heartbeat__")).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn status(app: &TestApp, path: &str) -> u16 {
    app.http().get(app.at(path)).send().await.unwrap().status().as_u16()
}

/// Declares `data` and PUTs it, without completing; returns its digest.
async fn staged(app: &TestApp, name: &str, data: &'static [u8]) -> String {
    let client = app.admin();
    let batch = client.upload_batch(&upload_request("staged", &[(name, data, Visibility::Public)])).await.unwrap();
    client.put_bytes(batch.files[name].put_url.as_ref().unwrap(), Bytes::from_static(data)).await.unwrap();
    digest_of(data).to_string()
}

/// The bytes a download of `digest` leads to.
async fn downloaded(app: &TestApp, digest: &str) -> Vec<u8> {
    let res = app.http().get(app.at(&format!("/sha512/{digest}"))).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    reqwest::get(location).await.unwrap().bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashing_under_a_server_is_503_at_once_and_service_resumes_without_a_restart() {
    let pg = OwnPostgres::start();
    let app = TestApp::spawn_with(Backend::Embedded, |s| {
        s.database_url = pg.url();
        s.secret_key = Some(Secret::new(TEST_SECRET));
    })
    .await;
    let before = app.upload("before.bin", b"uploaded before the crash", Visibility::Public).await;
    let interrupted = staged(&app, "interrupted.bin", b"completed across the crash").await;

    pg.crash();
    until(Duration::from_secs(15), || async { heartbeat(&app).await.0 == 503 }, "the heartbeat fails").await;
    assert_eq!(heartbeat(&app).await.1["checks"]["database"], "error");
    let token = app.token("u", &["*"]);
    let requests = [
        app.http().get(app.at(&format!("/sha512/{before}"))),
        app.http().get(app.at(&format!("/file/sha512/{before}"))),
        app.http().get(app.at("/upload?q=x")),
        app.http().get(app.at(&format!("/upload/complete/sha512/{interrupted}"))),
        app.http().post(app.at("/upload")).bearer_auth(&token).json(&serde_json::json!({"message": "m", "files": {}})),
    ];
    for req in requests {
        unavailable(req.send().await.unwrap(), &["database-unavailable"]).await;
    }
    assert_eq!(status(&app, "/__lbheartbeat__").await, 200, "the process still serves");

    pg.resume();
    let path = format!("/sha512/{before}");
    until(Duration::from_secs(30), || async { status(&app, &path).await == 302 }, "downloads resume").await;
    let info = app.admin().complete_until_verified(&interrupted, Duration::from_secs(30)).await.unwrap();
    assert!(info.has_instances);
    assert_eq!(downloaded(&app, &interrupted).await, b"completed across the crash");
    let after = app.upload("after.bin", b"uploaded after the crash", Visibility::Public).await;
    assert_eq!(downloaded(&app, after.as_str()).await, b"uploaded after the crash");
    assert_eq!(heartbeat(&app).await.0, 200);
}

/// The store of bucket `outage` of an [`OwnS3`] reached at `endpoint`.
fn own_s3(endpoint: String) -> BlobSettings {
    BlobSettings::S3(vec![S3Settings {
        bucket: "outage".into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        force_path_style: true,
        access_key_id: Some(OwnS3::ACCESS_KEY.into()),
        secret_access_key: Some(Secret::new(OwnS3::SECRET_KEY)),
        timeout: tooltool_e2e::tooltool_api::settings::DEFAULT_S3_TIMEOUT,
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_keeps_downloads_and_staged_bytes_and_complete_succeeds_when_it_returns() {
    let s3 = OwnS3::start("outage");
    let app = TestApp::spawn_with(Backend::PostgresS3, |s| s.blobs = own_s3(s3.endpoint())).await;
    let kept = app.upload("kept.bin", b"verified before the outage", Visibility::Public).await;
    let pending = staged(&app, "pending.bin", b"staged before the outage").await;

    s3.kill();
    assert_eq!(status(&app, &format!("/sha512/{kept}")).await, 302, "presigning needs no S3 round trip");
    let (code, body) = heartbeat(&app).await;
    assert_eq!((code, &body["checks"]["blob_store"]), (503, &serde_json::json!("error")), "{body}");
    let res = app.http().get(app.at(&format!("/upload/complete/sha512/{pending}"))).send().await.unwrap();
    unavailable(res, &["storage-unavailable"]).await;
    let info = app.anonymous().get_file(&pending).await.unwrap();
    assert!(!info.has_instances, "nothing is recorded while the bytes are not in place");

    s3.resume();
    let info = app.admin().complete_until_verified(&pending, Duration::from_secs(30)).await.unwrap();
    assert!(info.has_instances);
    assert_eq!(downloaded(&app, &pending).await, b"staged before the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_is_503_within_the_timeouts() {
    let shared = TestApp::spawn(Backend::PostgresS3).await;
    let url = url::Url::parse(&shared.settings.database_url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap();
    let proxy = TcpProxy::start(upstream).await;
    let mut through_proxy = url.clone();
    through_proxy.set_port(Some(proxy.port())).unwrap();
    let settings = shared.settings.clone();
    let app = TestApp::spawn_with(Backend::Embedded, |s| {
        s.database_url = through_proxy.to_string();
        s.secret_key = settings.secret_key.clone();
        s.request_timeout = Duration::from_secs(2);
    })
    .await;
    app.upload("hung.bin", b"the database will hang", Visibility::Public).await;
    // A search: download lookups may be answered from the cache, searches always read.
    let path = "/upload?q=hung".to_owned();
    assert_eq!(status(&app, &path).await, 200);

    proxy.hang();
    // Whichever answers first, the request timeout or the liveness ping, it is a 503.
    let res = app.http().get(app.at(&path)).send().await.unwrap();
    unavailable(res, &["timed-out", "database-unavailable"]).await;
    until(Duration::from_secs(15), || async { heartbeat(&app).await.0 == 503 }, "the heartbeat fails").await;
    let res = app.http().get(app.at(&path)).send().await.unwrap();
    unavailable(res, &["database-unavailable"]).await;

    proxy.heal();
    until(Duration::from_secs(30), || async { status(&app, &path).await == 200 }, "service resumes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_that_stops_answering_is_503_within_the_request_timeout() {
    let s3 = OwnS3::start("outage");
    let upstream = s3.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = TcpProxy::start(upstream).await;
    let app = TestApp::spawn_with(Backend::PostgresS3, |s| {
        s.blobs = own_s3(format!("http://127.0.0.1:{}", proxy.port()));
        s.request_timeout = Duration::from_secs(2);
    })
    .await;
    let pending = staged(&app, "pending.bin", b"verified after S3 answers again").await;

    proxy.hang();
    let res = app.http().get(app.at(&format!("/upload/complete/sha512/{pending}"))).send().await.unwrap();
    unavailable(res, &["timed-out"]).await;
    assert!(!app.anonymous().get_file(&pending).await.unwrap().has_instances);

    proxy.heal();
    let info = app.admin().complete_until_verified(&pending, Duration::from_secs(60)).await.unwrap();
    assert!(info.has_instances);
    assert_eq!(downloaded(&app, &pending).await, b"verified after S3 answers again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_keeps_nothing_partial_and_the_upload_succeeds_once_space_is_freed() {
    let disk = SmallDisk::mount(8 << 20);
    let app = TestApp::spawn_with(Backend::Embedded, |s| {
        s.data_dir = disk.path().to_owned();
        // This test fills the disk itself: no reserve in the way.
        s.free_space_reserve = 0;
    })
    .await;
    let kept = app.upload("kept.bin", b"stored before the disk filled", Visibility::Public).await;
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).unwrap();

    let big: &'static [u8] = Box::leak(vec![7u8; 3 << 20].into_boxed_slice());
    let client = app.admin();
    let batch = client.upload_batch(&upload_request("big", &[("big.bin", big, Visibility::Public)])).await.unwrap();
    let put_url = batch.files["big.bin"].put_url.clone().unwrap();
    let put = || app.http().put(&put_url).header("Content-Type", "application/octet-stream").body(big);
    let res = put().send().await.unwrap();
    assert_eq!(res.status(), 507);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["code"], "insufficient-storage");
    for dir in ["incoming", "staging", "verifying"] {
        let left = std::fs::read_dir(disk.path().join("blobs").join(dir)).unwrap().count();
        assert_eq!(left, 0, "nothing partial in {dir}/");
    }
    assert_eq!(downloaded(&app, kept.as_str()).await, b"stored before the disk filled", "downloads keep working");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(put().send().await.unwrap().status(), 200);
    let digest = digest_of(big);
    client.complete_until_verified(digest.as_str(), Duration::from_secs(30)).await.unwrap();
    assert_eq!(downloaded(&app, digest.as_str()).await, big);
}
