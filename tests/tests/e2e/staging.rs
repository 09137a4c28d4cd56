//! The staging area: never-completed uploads are swept, and the whole upload path works with
//! nothing but curl.

use std::process::Command;
use std::time::Duration;

use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, upload_request};

backend_tests!(
    never_completed_uploads_are_swept_after_the_grace_period,
    a_blob_uploaded_with_curl_alone_downloads_back_identical,
);

async fn staged_count(app: &TestApp) -> usize {
    match &app.s3 {
        Some(s3) => s3.keys("staging/").await.len(),
        None => std::fs::read_dir(app.data_dir.path().join("blobs/staging")).unwrap().count(),
    }
}

async fn never_completed_uploads_are_swept_after_the_grace_period(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.upload_url_ttl = Duration::from_secs(1);
        s.staging_grace = Duration::ZERO;
    })
    .await;
    let client = app.admin();
    let data = b"abandoned upload";
    let batch = client.upload_batch(&upload_request("m", &[("a", data, Visibility::Public)])).await.unwrap();
    client.put_bytes(batch.files["a"].put_url.as_ref().unwrap(), bytes::Bytes::from_static(data)).await.unwrap();
    assert_eq!(staged_count(&app).await, 1);
    assert_eq!(tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap(), 0, "not expired yet");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap(), 1);
    assert_eq!(staged_count(&app).await, 0);
    // The declaration went with its last pending upload (issue 25: it must not pin the digest).
    tooltool_e2e::expect_status(client.complete(digest_of(data).as_str()).await, 404);
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), status.to_owned())
}

async fn a_blob_uploaded_with_curl_alone_downloads_back_identical(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.token("curl@example.com", &["upload/internal", "download/internal"]);
    let auth = format!("Authorization: Bearer {token}");
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let src = dir.path().join("blob.bin");
    std::fs::write(&src, &data).unwrap();
    let d = digest_of(&data);
    let body = serde_json::json!({"message": "curl only", "files": {"blob.bin": {
        "size": data.len(), "digest": d.as_str(), "algorithm": "sha512", "visibility": "internal"}}});
    let app_url = app.url.clone();
    let (auth2, src2, d2, out) = (auth.clone(), src.clone(), d.clone(), dir.path().join("out.bin"));
    let out2 = out.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        let (resp, post) = curl(&[
            "-H",
            &auth2,
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &format!("{app_url}/upload"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        let put_url = v["result"]["files"]["blob.bin"]["put_url"].as_str().unwrap().to_owned();
        let put_arg = format!("@{}", src2.display());
        let (_, put) =
            curl(&["-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", &put_arg, &put_url]);
        let (_, complete) = curl(&[&format!("{app_url}/upload/complete/sha512/{d2}")]);
        let (_, anon) = curl(&["-o", "/dev/null", &format!("{app_url}/sha512/{d2}")]);
        let (_, get) = curl(&["-L", "-H", &auth2, "-o", out2.to_str().unwrap(), &format!("{app_url}/sha512/{d2}")]);
        (post, put, complete, anon, get)
    })
    .await
    .unwrap();
    assert_eq!(statuses, ("200".into(), "200".into(), "200".into(), "403".into(), "200".into()));
    assert_eq!(std::fs::read(out).unwrap(), data);
}
