//! `POST /upload` and `upload/complete`: validation, scopes, staged verification, tampering and
//! racing re-PUTs.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tooltool::Completion;
use tooltool_e2e::proto::{UploadRequest, Visibility};
use tooltool_e2e::{Backend, FORBIDDEN, TestApp, backend_tests, digest_of, download_to, expect_status, upload_request};

backend_tests!(
    upload_round_trip_returns_the_batch_and_downloads_identical_bytes,
    put_urls_are_absolute_with_an_explicit_port,
    stored_files_come_back_without_put_url,
    same_digest_under_two_filenames_in_one_batch,
    invalid_batches_are_400_and_record_nothing,
    size_or_visibility_differing_from_the_stored_file_is_400,
    upload_needs_the_scope_of_every_visibility,
    malformed_and_oversized_bodies_are_problem_json,
    complete_statuses_for_malformed_unknown_and_unstaged,
    tampered_upload_is_rejected_and_never_downloadable,
    short_upload_is_rejected_with_a_size_detail,
    racing_reput_after_verification_cannot_change_the_blob,
    complete_is_idempotent_after_verification,
    upload_urls_expire,
);

async fn upload_round_trip_returns_the_batch_and_downloads_identical_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.client_as("releng@example.com", &["upload/public", "upload/internal"]);
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 256) as u8).collect();
    let req = upload_request("gcc 13 for linux64", &[("gcc.tar.xz", &data, Visibility::Internal)]);
    let batch = client.upload_batch(&req).await.unwrap();
    assert_eq!(batch.author, "releng@example.com");
    assert_eq!(batch.message, "gcc 13 for linux64");
    assert!(batch.uploaded.ends_with('Z') && batch.uploaded.len() == 20, "{}", batch.uploaded);
    let f = &batch.files["gcc.tar.xz"];
    assert_eq!((f.size, &f.digest, f.visibility), (data.len() as u64, &digest_of(&data), Visibility::Internal));
    client.put_bytes(f.put_url.as_ref().unwrap(), Bytes::from(data.clone())).await.unwrap();
    let info = client.complete_until_verified(f.digest.as_str(), Duration::from_secs(30)).await.unwrap();
    assert!(info.has_instances);
    assert_eq!(info.instances.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("gcc.tar.xz");
    download_to(&app.client_as("ci", &["download/internal"]), &f.digest, Some(f.size), &dest).await.unwrap();
    assert_eq!(std::fs::read(dest).unwrap(), data);
    assert_eq!(app.anonymous().get_batch(batch.id).await.unwrap().files["gcc.tar.xz"].put_url, None);
}

async fn put_urls_are_absolute_with_an_explicit_port(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let batch = app.admin().upload_batch(&upload_request("m", &[("a", b"port", Visibility::Public)])).await.unwrap();
    let url = batch.files["a"].put_url.clone().unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    assert!(authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()), "{url}");
    assert_eq!(parsed.host_str(), Some("127.0.0.1"));
}

async fn stored_files_come_back_without_put_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.upload("first", b"already here", Visibility::Public).await;
    let req = upload_request(
        "again",
        &[("again", b"already here", Visibility::Public), ("new", b"brand new", Visibility::Public)],
    );
    let batch = app.admin().upload_batch(&req).await.unwrap();
    assert_eq!(batch.files["again"].put_url, None);
    assert!(batch.files["new"].put_url.is_some());
}

async fn same_digest_under_two_filenames_in_one_batch(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.admin();
    let req =
        upload_request("twins", &[("one.bin", b"twin", Visibility::Public), ("two.bin", b"twin", Visibility::Public)]);
    let batch = client.upload_batch(&req).await.unwrap();
    assert_eq!(batch.files.len(), 2);
    let url = batch.files["one.bin"].put_url.clone().unwrap();
    assert_eq!(batch.files["two.bin"].put_url.as_deref(), Some(url.as_str()));
    client.put_bytes(&url, Bytes::from_static(b"twin")).await.unwrap();
    client.complete_until_verified(digest_of(b"twin").as_str(), Duration::from_secs(30)).await.unwrap();
    let stored = client.get_batch(batch.id).await.unwrap();
    assert_eq!(stored.files.keys().collect::<Vec<_>>(), ["one.bin", "two.bin"]);
}

async fn invalid_batches_are_400_and_record_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = digest_of(b"v").to_string();
    let file = |size: serde_json::Value, digest: &str, alg: &str, vis: &str| json!({"size": size, "digest": digest, "algorithm": alg, "visibility": vis});
    let cases = [
        ("empty message", json!({"message": "", "files": {"f": file(json!(1), &d, "sha512", "public")}})),
        ("blank message", json!({"message": "  ", "files": {"f": file(json!(1), &d, "sha512", "public")}})),
        ("no files", json!({"message": "m", "files": {}})),
        (
            "author given",
            json!({"message": "m", "author": "x", "files": {"f": file(json!(1), &d, "sha512", "public")}}),
        ),
        ("md5", json!({"message": "m", "files": {"f": file(json!(1), &d, "md5", "public")}})),
        ("bad digest", json!({"message": "m", "files": {"f": file(json!(1), "abc", "sha512", "public")}})),
        ("bad visibility", json!({"message": "m", "files": {"f": file(json!(1), &d, "sha512", "secret")}})),
        ("negative size", json!({"message": "m", "files": {"f": file(json!(-1), &d, "sha512", "public")}})),
        ("path as name", json!({"message": "m", "files": {"../f": file(json!(1), &d, "sha512", "public")}})),
        (
            "inconsistent twins",
            json!({"message": "m", "files": {"a": file(json!(1), &d, "sha512", "public"), "b": file(json!(2), &d, "sha512", "public")}}),
        ),
    ];
    let token = app.token("admin", &["*"]);
    for (what, body) in cases {
        let res = app.http().post(app.at("/upload")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{what}");
        assert_eq!(res.headers()["content-type"], "application/problem+json", "{what}");
        let p: tooltool_e2e::proto::Problem = res.json().await.unwrap();
        assert_eq!(p.status, 400, "{what}");
    }
    assert!(app.admin().search_batches("").await.unwrap().is_empty(), "nothing may be recorded");
    expect_status(app.admin().get_file(&d).await, 404);
}

async fn size_or_visibility_differing_from_the_stored_file_is_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.upload("orig", b"stored", Visibility::Public).await;
    let mut wrong_size =
        upload_request("m", &[("ok", b"fine", Visibility::Public), ("x", b"stored", Visibility::Public)]);
    wrong_size.files.values_mut().filter(|f| f.digest == digest_of(b"stored")).for_each(|f| f.size = 999);
    let p = expect_status(app.admin().upload_batch(&wrong_size).await, 400);
    assert!(p.detail.contains("size"), "{}", p.detail);
    let wrong_vis = upload_request("m", &[("x", b"stored", Visibility::Internal)]);
    let p = expect_status(app.admin().upload_batch(&wrong_vis).await, 400);
    assert!(p.detail.contains("visibility"), "{}", p.detail);
    // Nothing of the refused batches was recorded, not even the good file.
    expect_status(app.admin().get_file(digest_of(b"fine").as_str()).await, 404);
    assert_eq!(app.admin().search_batches("").await.unwrap().len(), 1);
}

async fn upload_needs_the_scope_of_every_visibility(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mixed = upload_request("m", &[("p", b"p", Visibility::Public), ("i", b"i", Visibility::Internal)]);
    let prefix = "project:releng:services/tooltool/api";
    let p = expect_status(app.anonymous().upload_batch(&mixed).await, 403);
    assert_eq!(
        p.detail,
        format!("{FORBIDDEN} This request needs {prefix}/upload/public and {prefix}/upload/internal.")
    );
    // The detail names exactly the scope that is missing.
    let p = expect_status(app.client_as("u", &["upload/public"]).upload_batch(&mixed).await, 403);
    assert_eq!(p.detail, format!("{FORBIDDEN} This request needs {prefix}/upload/internal."));
    expect_status(app.client_as("u", &["upload/internal"]).upload_batch(&mixed).await, 403);
    expect_status(app.client_as("u", &["download/*", "manage"]).upload_batch(&mixed).await, 403);
    app.client_as("u", &["upload/*"]).upload_batch(&mixed).await.unwrap();
    let internal_only = upload_request("m", &[("i2", b"i2", Visibility::Internal)]);
    app.client_as("u", &["upload/internal"]).upload_batch(&internal_only).await.unwrap();
}

async fn malformed_and_oversized_bodies_are_problem_json(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.max_body_bytes = 4096).await;
    let token = app.token("admin", &["*"]);
    let post = |body: Vec<u8>| {
        app.http()
            .post(app.at("/upload"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = post(b"{not json".to_vec()).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: tooltool_e2e::proto::Problem = res.json().await.unwrap();
    assert_eq!(p.code.as_deref(), Some("invalid-json"));
    let res = post(vec![b' '; 10_000]).await.unwrap();
    assert_eq!(res.status(), 413);
    let p: tooltool_e2e::proto::Problem = res.json().await.unwrap();
    assert_eq!(p.title, format!("413 Payload Too Large: {}", p.detail));
    for bad_query in ["/upload?q=a&q=b", "/file?q=a&q=b", "/sha512/00?region=a&region=b"] {
        let res = app.http().get(app.at(bad_query)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad_query}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: tooltool_e2e::proto::Problem = res.json().await.unwrap();
        assert_eq!(p.code.as_deref(), Some("invalid-query"), "{bad_query}");
    }
}

async fn complete_statuses_for_malformed_unknown_and_unstaged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.admin();
    let p = expect_status(client.complete("sha512-nope").await, 400);
    assert_eq!(p.detail, "Invalid sha512 digest");
    expect_status(client.complete(digest_of(b"undeclared").as_str()).await, 404);
    client.upload_batch(&upload_request("m", &[("f", b"not sent yet", Visibility::Public)])).await.unwrap();
    match client.complete(digest_of(b"not sent yet").as_str()).await.unwrap() {
        Completion::Pending { retry_after } => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("expected 409, got {other:?}"),
    }
    let res = app
        .http()
        .post(app.at(&format!("/upload/complete/sha512/{}", digest_of(b"not sent yet"))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let secs: u64 = res.headers()["x-retry-after"].to_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
}

async fn tampered_upload_is_rejected_and_never_downloadable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.admin();
    let good = b"the real toolchain";
    let batch = client.upload_batch(&upload_request("m", &[("tc", good, Visibility::Public)])).await.unwrap();
    let url = batch.files["tc"].put_url.clone().unwrap();
    client.put_bytes(&url, Bytes::from_static(b"the evil toolchain")).await.unwrap();
    let d = digest_of(good);
    let p = expect_status(client.complete(d.as_str()).await, 400);
    assert!(p.detail.contains("digest"), "{}", p.detail);
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 404);
    assert!(!client.get_file(d.as_str()).await.unwrap().has_instances);
    if let Some(s3) = &app.s3 {
        assert!(s3.keys("sha512/").await.is_empty());
        assert!(s3.keys("staging/").await.is_empty(), "the tampered object is deleted");
    } else {
        assert!(!app.data_dir.path().join("blobs/sha512").join(d.as_str()).exists());
        assert_eq!(std::fs::read_dir(app.data_dir.path().join("blobs/staging")).unwrap().count(), 0);
    }
    // The honest bytes can still be sent to the same URL and complete.
    client.put_bytes(&url, Bytes::from_static(good)).await.unwrap();
    client.complete_until_verified(d.as_str(), Duration::from_secs(30)).await.unwrap();
    assert_eq!(app.anonymous().download_redirect(d.as_str(), None).await.unwrap().status, 302);
}

async fn short_upload_is_rejected_with_a_size_detail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.admin();
    let good = b"twelve bytes";
    let batch = client.upload_batch(&upload_request("m", &[("s", good, Visibility::Public)])).await.unwrap();
    client.put_bytes(batch.files["s"].put_url.as_ref().unwrap(), Bytes::from_static(b"twelve")).await.unwrap();
    let p = expect_status(client.complete(digest_of(good).as_str()).await, 400);
    assert!(p.detail.contains("size"), "{}", p.detail);
    assert_eq!(p.code.as_deref(), Some("upload-mismatch"));
}

async fn racing_reput_after_verification_cannot_change_the_blob(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = app.admin();
    let good = b"verified content";
    let batch = client.upload_batch(&upload_request("m", &[("v", good, Visibility::Public)])).await.unwrap();
    let url = batch.files["v"].put_url.clone().unwrap();
    client.put_bytes(&url, Bytes::from_static(good)).await.unwrap();
    let d = digest_of(good);
    client.complete_until_verified(d.as_str(), Duration::from_secs(30)).await.unwrap();
    // PUT other bytes to the URL, then complete again. Its upload is verified, so the embedded
    // store refuses the PUT (409 upload-closed, issue 25); S3 takes a presigned PUT until the
    // URL expires. Either way the blob cannot change.
    let reput = client.put_bytes(&url, Bytes::from_static(b"swapped content!")).await;
    match backend {
        Backend::Embedded => assert_eq!(reput.unwrap_err().status(), Some(409)),
        Backend::PostgresS3 => reput.unwrap(),
    }
    let info = client.complete_until_verified(d.as_str(), Duration::from_secs(30)).await.unwrap();
    assert!(info.has_instances);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("v");
    download_to(&app.anonymous(), &d, Some(good.len() as u64), &dest).await.unwrap();
    assert_eq!(std::fs::read(dest).unwrap(), good);
}

async fn complete_is_idempotent_after_verification(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("i", b"idempotent", Visibility::Internal).await;
    for _ in 0..3 {
        match app.anonymous().complete(d.as_str()).await.unwrap() {
            Completion::Verified(info) => {
                assert_eq!(info.digest, d);
                assert_eq!(info.visibility, Visibility::Internal);
                assert!(info.has_instances);
            }
            other => panic!("expected 200, got {other:?}"),
        }
    }
}

async fn upload_urls_expire(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.upload_url_ttl = Duration::from_secs(1)).await;
    let client = app.admin();
    let req: UploadRequest = upload_request("m", &[("late", b"too late", Visibility::Public)]);
    let batch = client.upload_batch(&req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = client
        .put_bytes(batch.files["late"].put_url.as_ref().unwrap(), Bytes::from_static(b"too late"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(matches!(client.complete(digest_of(b"too late").as_str()).await.unwrap(), Completion::Pending { .. }));
}
