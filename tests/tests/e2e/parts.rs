//! Uploads in parts (issue 23), on both backends, with 5 MiB parts (S3's and s3s-fs's
//! smallest but the last), a 1 MiB threshold and two part URLs per answer. A proxy stands
//! where storage is (the embedded store's public URL, or the S3 endpoint, forwarding the Host
//! the requests were signed for), so that the part uploads storage received are counted and
//! faulted.

use std::path::Path;
use std::time::Duration;

use tooltool_api::settings::BlobSettings;
use tooltool_e2e::proto::{self, Visibility};
use tooltool_e2e::proxy::{Action, Proxy};
use tooltool_e2e::tooltool::RetryPolicy;
use tooltool_e2e::tooltool::progress::Silent;
use tooltool_e2e::tooltool::upload::{UploadOptions, UploadReport, Uploaded, upload};
use tooltool_e2e::{
    Backend, TestApp, backend_tests, digest_of, download_to, expect_status, manifest_entry, upload_request,
};

backend_tests!(
    a_file_of_several_parts_uploads_verifies_and_downloads_byte_exact,
    a_killed_upload_resumes_sending_only_the_missing_parts,
    a_part_altered_in_storage_is_refused_nothing_is_visible_and_the_upload_is_cleaned_up,
    expired_part_urls_are_asked_for_again_and_the_upload_finishes,
    two_clients_uploading_the_same_digest_at_once_give_one_verified_file,
    the_sweeper_aborts_an_upload_in_parts_left_past_the_grace,
    an_old_client_declaring_a_file_over_the_single_put_limit_gets_file_too_large_and_nothing_is_recorded,
    a_batch_of_small_files_and_a_large_one_works_with_either_client,
    a_part_answered_503_with_retry_after_is_sent_again_when_storage_asked,
);

const PART: usize = 5 << 20;
/// Three parts: two whole, one short.
const LARGE: usize = 2 * PART + 123_457;

fn blob(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(31).wrapping_add(seed) % 251) as u8).collect()
}

/// A server with small parts, and the proxy in front of its storage.
async fn spawn(backend: Backend, tweak: impl FnOnce(&mut tooltool_api::Settings)) -> (TestApp, Proxy) {
    let port = tooltool_e2e::services::free_port();
    let proxy = match backend {
        Backend::Embedded => Proxy::start(&format!("http://127.0.0.1:{port}")).await,
        Backend::PostgresS3 => {
            let endpoint = std::env::var("TOOLTOOL_TEST_S3_ENDPOINT").expect("TOOLTOOL_TEST_S3_ENDPOINT is set");
            Proxy::start_keeping_host(&endpoint).await
        }
    };
    let front = proxy.url.trim_end_matches('/').to_owned();
    let app = TestApp::spawn_with(backend, |s| {
        s.parts.threshold = 1 << 20;
        s.parts.part_size = PART as u64;
        s.parts.url_batch = 2;
        match &mut s.blobs {
            BlobSettings::S3(regions) => regions[0].endpoint = Some(front),
            _ => {
                s.port = port;
                s.public_url = Some(front);
            }
        }
        tweak(s);
    })
    .await;
    (app, proxy)
}

/// The part uploads the proxy saw, with their statuses, from the `from`th request on.
fn part_puts(proxy: &Proxy, from: usize) -> Vec<u16> {
    proxy.log()[from..]
        .iter()
        .filter(|s| s.method == "PUT" && (s.path.starts_with("/_blobs/parts/") || is_s3_part(s)))
        .map(|s| s.status)
        .collect()
}

/// An S3 UploadPart: a `PUT` with a part number (the server's own copies carry a copy source).
fn is_s3_part(s: &tooltool_e2e::proxy::Seen) -> bool {
    s.query.split('&').any(|q| q.starts_with("partNumber=")) && s.header("x-amz-copy-source").is_none()
}

async fn upload_dir(app: &TestApp, dir: &Path, names: &[&str], jobs: usize, retry: RetryPolicy) -> UploadReport {
    let entries: Vec<_> = names.iter().map(|n| manifest_entry(n, &std::fs::read(dir.join(n)).unwrap())).collect();
    let opts =
        UploadOptions { default_visibility: Some(Visibility::Public), jobs, retry, ..UploadOptions::new(dir, "parts") };
    upload(&app.admin(), &entries, &opts, &Silent).await.expect("upload")
}

async fn downloads_exactly(app: &TestApp, data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    download_to(&app.admin(), &digest_of(data), Some(data.len() as u64), &dest).await.expect("download");
    assert!(std::fs::read(&dest).unwrap() == data, "the download differs from the upload");
}

/// The open multipart uploads of the test's bucket on s3s-fs (which has no
/// ListMultipartUploads), from the files it keeps them in: `.bucket-<b64>.object-<b64>.upload-<id>.metadata.json`.
fn s3_uploads(bucket: &str) -> Vec<String> {
    use base64::Engine;
    let dir = std::env::var("TOOLTOOL_TEST_S3_DIR").expect("TOOLTOOL_TEST_S3_DIR is set");
    let prefix = format!(".bucket-{}.object-", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bucket));
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .filter_map(|n| Some(n.split_once(".upload-")?.1.strip_suffix(".metadata.json")?.to_owned()))
        .collect()
}

/// The parts s3s-fs holds of the upload `id`.
fn s3_parts(id: &str) -> usize {
    let dir = std::env::var("TOOLTOOL_TEST_S3_DIR").expect("TOOLTOOL_TEST_S3_DIR is set");
    let prefix = format!(".upload_id-{id}.part-");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

/// What is left of uploads in storage: staged objects and open uploads in parts.
async fn leftovers(app: &TestApp) -> (usize, usize) {
    match &app.s3 {
        Some(env) => (env.keys("staging/").await.len(), s3_uploads(&env.bucket).len()),
        None => {
            let count = |d: &str| std::fs::read_dir(app.data_dir.path().join("blobs").join(d)).unwrap().count();
            (count("staging"), count("parts"))
        }
    }
}

fn parts_request(name: &str, data: &[u8], parts: bool) -> proto::UploadRequest {
    let mut req = upload_request("parts", &[(name, data, Visibility::Public)]);
    req.files.values_mut().for_each(|f| f.parts = parts);
    req
}

async fn a_file_of_several_parts_uploads_verifies_and_downloads_byte_exact(backend: Backend) {
    let (app, proxy) = spawn(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let data = blob(1, LARGE);
    std::fs::write(dir.path().join("sdk.tar.xz"), &data).unwrap();
    let report = upload_dir(&app, dir.path(), &["sdk.tar.xz"], 4, RetryPolicy::default()).await;
    assert_eq!(report.files["sdk.tar.xz"].as_ref().unwrap(), &Uploaded::Sent);
    assert_eq!(part_puts(&proxy, 0), vec![200, 200, 200], "three parts, each sent once");
    let info = app.admin().get_file(digest_of(&data).as_str()).await.unwrap();
    assert_eq!((info.size, info.has_instances), (LARGE as u64, true));
    downloads_exactly(&app, &data).await;
    assert_eq!(leftovers(&app).await, (0, 0), "nothing of the upload is left in staging");
}

async fn a_killed_upload_resumes_sending_only_the_missing_parts(backend: Backend) {
    let (app, proxy) = spawn(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let data = blob(2, LARGE);
    std::fs::write(dir.path().join("sdk.tar.xz"), &data).unwrap();
    // The first run dies on its second part: storage fails it, and it has one try only.
    proxy.parts([Action::Pass, Action::Status(503, vec![])]);
    let once = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let report = upload_dir(&app, dir.path(), &["sdk.tar.xz"], 1, once).await;
    assert!(report.files["sdk.tar.xz"].is_err(), "the first run failed");
    let digest = digest_of(&data);
    let plan = app.admin().upload_parts(digest.as_str()).await.expect("the upload is still open");
    assert_eq!(plan.count, 3);
    let stored = plan.count - plan.missing;
    assert!(stored >= 1, "the first part reached storage");
    let mark = proxy.log().len();
    let report = upload_dir(&app, dir.path(), &["sdk.tar.xz"], 1, RetryPolicy::default()).await;
    assert_eq!(report.files["sdk.tar.xz"].as_ref().unwrap(), &Uploaded::Sent);
    let resent = part_puts(&proxy, mark);
    assert_eq!(resent.len() as u32, plan.missing, "only the missing parts were sent again: {resent:?}");
    assert!(resent.iter().all(|&s| s == 200));
    downloads_exactly(&app, &data).await;
}

async fn a_part_altered_in_storage_is_refused_nothing_is_visible_and_the_upload_is_cleaned_up(backend: Backend) {
    let (app, _proxy) = spawn(backend, |_| {}).await;
    let client = app.admin();
    let data = blob(3, LARGE);
    let digest = digest_of(&data);
    let batch = client.upload_batch(&parts_request("sdk.tar.xz", &data, true)).await.unwrap();
    let file = &batch.files["sdk.tar.xz"];
    assert!(file.put_url.is_none(), "parts instead of one PUT");
    let mut plan = file.parts.clone().expect("parts");
    assert_eq!((plan.part_size, plan.count, plan.missing, plan.urls.len()), (PART as u64, 3, 3, 2));
    let mut altered = data.clone();
    altered[PART + 17] ^= 0xff;
    while plan.missing > 0 {
        for p in &plan.urls {
            let range = p.offset as usize..(p.offset + p.size) as usize;
            client.put_bytes(&p.url, bytes::Bytes::copy_from_slice(&altered[range])).await.unwrap();
        }
        plan = client.upload_parts(digest.as_str()).await.unwrap();
    }
    assert_eq!(leftovers(&app).await.1, 1, "one open upload in parts");
    let problem = expect_status(client.complete(digest.as_str()).await, 400);
    assert_eq!(problem.code.as_deref(), Some("upload-mismatch"));
    expect_status(app.anonymous().download_redirect(digest.as_str(), None).await, 404);
    assert!(!client.get_file(digest.as_str()).await.unwrap().has_instances);
    assert_eq!(leftovers(&app).await, (0, 0), "the staged upload and its parts are gone");
}

async fn expired_part_urls_are_asked_for_again_and_the_upload_finishes(backend: Backend) {
    let (app, proxy) = spawn(backend, |s| s.upload_url_ttl = Duration::from_secs(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = blob(4, LARGE);
    std::fs::write(dir.path().join("sdk.tar.xz"), &data).unwrap();
    // The first part reaches storage after its URL expired.
    proxy.parts([Action::Delay(Duration::from_secs(5))]);
    let report = upload_dir(&app, dir.path(), &["sdk.tar.xz"], 2, RetryPolicy::default()).await;
    assert_eq!(report.files["sdk.tar.xz"].as_ref().unwrap(), &Uploaded::Sent);
    let puts = part_puts(&proxy, 0);
    assert!(puts.contains(&403), "the expired URL was refused: {puts:?}");
    assert_eq!(puts.iter().filter(|&&s| s == 200).count(), 3, "then every part went up once: {puts:?}");
    downloads_exactly(&app, &data).await;
}

async fn two_clients_uploading_the_same_digest_at_once_give_one_verified_file(backend: Backend) {
    let (app, _proxy) = spawn(backend, |_| {}).await;
    let data = blob(5, LARGE);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a, &b] {
        std::fs::write(d.path().join("sdk.tar.xz"), &data).unwrap();
    }
    let (ra, rb) = tokio::join!(
        upload_dir(&app, a.path(), &["sdk.tar.xz"], 2, RetryPolicy::default()),
        upload_dir(&app, b.path(), &["sdk.tar.xz"], 2, RetryPolicy::default()),
    );
    for r in [&ra, &rb] {
        assert!(r.ok(), "{:?}", r.files);
    }
    let info = app.admin().get_file(digest_of(&data).as_str()).await.unwrap();
    assert_eq!(info.instances.len(), 1, "one verified copy");
    downloads_exactly(&app, &data).await;
    assert_eq!(leftovers(&app).await, (0, 0), "the other upload was discarded");
}

async fn the_sweeper_aborts_an_upload_in_parts_left_past_the_grace(backend: Backend) {
    let (app, _proxy) = spawn(backend, |s| {
        s.upload_url_ttl = Duration::from_secs(3);
        s.staging_grace = Duration::ZERO;
    })
    .await;
    let client = app.admin();
    let data = blob(6, LARGE);
    let batch = client.upload_batch(&parts_request("sdk.tar.xz", &data, true)).await.unwrap();
    let part = &batch.files["sdk.tar.xz"].parts.as_ref().unwrap().urls[0];
    client.put_bytes(&part.url, bytes::Bytes::copy_from_slice(&data[..part.size as usize])).await.unwrap();
    assert_eq!(leftovers(&app).await.1, 1);
    let upload_id = app.s3.as_ref().map(|env| s3_uploads(&env.bucket).remove(0));
    if let Some(id) = &upload_id {
        assert_eq!(s3_parts(id), 1, "s3s-fs holds the part sent");
    }
    assert_eq!(tooltool_api::uploads::sweep::sweep_once(&app.state).await.unwrap(), 0, "not expired yet");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(tooltool_api::uploads::sweep::sweep_once(&app.state).await.unwrap(), 1);
    assert_eq!(leftovers(&app).await, (0, 0), "no open upload in parts is left");
    if let Some(id) = upload_id {
        assert_eq!(s3_parts(&id), 0, "its parts are gone from s3s-fs");
    }
    expect_status(client.upload_parts(digest_of(&data).as_str()).await, 404);
}

async fn an_old_client_declaring_a_file_over_the_single_put_limit_gets_file_too_large_and_nothing_is_recorded(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |s| s.parts.max_single_put = 1000).await;
    let (small, large) = (blob(7, 10), blob(8, 1001));
    // What tooltool.py sends: no "parts" member.
    let body = serde_json::json!({"message": "old client", "files": {
        "small.txt": {"size": 10, "digest": digest_of(&small).as_str(), "algorithm": "sha512", "visibility": "public"},
        "big.bin": {"size": 1001, "digest": digest_of(&large).as_str(), "algorithm": "sha512", "visibility": "public"},
    }});
    let resp = app
        .http()
        .post(app.at("/upload"))
        .bearer_auth(app.token("old@example.com", &["upload/public"]))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let problem: proto::Problem = resp.json().await.unwrap();
    assert_eq!(problem.code.as_deref(), Some("file-too-large"));
    assert!(problem.detail.starts_with("big.bin: 1001 bytes"), "{}", problem.detail);
    assert!(problem.detail.contains("`tooltool upload`"), "names the client that can: {}", problem.detail);
    assert!(app.admin().search_batches("old client").await.unwrap().is_empty(), "no batch recorded");
    for data in [&small, &large] {
        expect_status(app.admin().get_file(digest_of(data).as_str()).await, 404);
    }
    // The project's client says it can send parts: the same file is accepted.
    let batch = app.admin().upload_batch(&parts_request("big.bin", &large, true)).await.unwrap();
    assert!(batch.files["big.bin"].put_url.is_none() && batch.files["big.bin"].parts.is_some());
}

async fn a_batch_of_small_files_and_a_large_one_works_with_either_client(backend: Backend) {
    let (app, proxy) = spawn(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (large, small_a, small_b) = (blob(9, LARGE), blob(10, 1000), blob(11, 70_000));
    for (n, d) in [("large.bin", &large), ("a.txt", &small_a), ("b.txt", &small_b)] {
        std::fs::write(dir.path().join(n), d).unwrap();
    }
    let report = upload_dir(&app, dir.path(), &["large.bin", "a.txt", "b.txt"], 3, RetryPolicy::default()).await;
    assert!(report.ok(), "{:?}", report.files);
    let puts = part_puts(&proxy, 0);
    assert_eq!(puts, vec![200, 200, 200], "the large file in parts");
    for d in [&large, &small_a, &small_b] {
        downloads_exactly(&app, d).await;
    }

    // An old client (no "parts") gets one put_url per file, the large one included.
    let (large, small) = (blob(12, LARGE), blob(13, 500));
    let mut req =
        upload_request("old", &[("large.bin", &large, Visibility::Public), ("s.txt", &small, Visibility::Public)]);
    req.files.values_mut().for_each(|f| f.parts = false);
    let client = app.admin();
    let batch = client.upload_batch(&req).await.unwrap();
    for (name, data) in [("large.bin", &large), ("s.txt", &small)] {
        let f = &batch.files[name];
        assert!(f.parts.is_none(), "{name}: no parts for a client that did not ask");
        client.put_bytes(f.put_url.as_ref().unwrap(), bytes::Bytes::copy_from_slice(data)).await.unwrap();
        client.complete_until_verified(digest_of(data).as_str(), Duration::from_secs(30)).await.unwrap();
        downloads_exactly(&app, data).await;
    }
}

async fn a_part_answered_503_with_retry_after_is_sent_again_when_storage_asked(backend: Backend) {
    let (app, proxy) = spawn(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let data = blob(14, LARGE);
    std::fs::write(dir.path().join("sdk.tar.xz"), &data).unwrap();
    proxy.parts([Action::Status(503, vec![("Retry-After".into(), "0".into())])]);
    // The policy's own backoff is an hour: only the Retry-After of 0 s lets the retry happen
    // within the guard below.
    let retry = RetryPolicy { base_delay: Duration::from_secs(3600), ..RetryPolicy::default() };
    let upload = upload_dir(&app, dir.path(), &["sdk.tar.xz"], 1, retry);
    let report = tokio::time::timeout(Duration::from_secs(120), upload).await.expect("Retry-After was honoured");
    assert_eq!(report.files["sdk.tar.xz"].as_ref().unwrap(), &Uploaded::Sent);
    assert_eq!(part_puts(&proxy, 0), vec![503, 200, 200, 200], "the refused part was sent again, once");
    downloads_exactly(&app, &data).await;
}
