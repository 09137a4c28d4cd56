//! `GET`/`HEAD /sha512/<digest>`: every status, the scope rules, and the signed URL behind the
//! 302.

use std::time::Duration;

use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, FORBIDDEN, TestApp, backend_tests, digest_of, download_to, expect_status, upload_request};

backend_tests!(
    malformed_digests_are_400_before_any_lookup,
    unknown_digest_is_404,
    declared_but_never_uploaded_file_is_404,
    public_file_redirects_anonymous_callers_to_the_same_bytes,
    head_redirects_like_get,
    internal_file_is_forbidden_without_scope,
    internal_file_redirects_with_download_internal_scope,
    internal_scope_does_not_grant_public_when_anonymous_download_is_off,
    invalid_token_is_401_even_for_public_files,
    download_urls_expire,
    unknown_region_falls_back_to_a_region_with_a_copy,
    five_gib_declared_size_is_accepted_and_returned,
);

async fn malformed_digests_are_400_before_any_lookup(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let upper = "A".repeat(128);
    let short = "a".repeat(127);
    for bad in ["invalid", upper.as_str(), short.as_str()] {
        let p = expect_status(app.anonymous().download_redirect(bad, None).await, 400);
        assert_eq!(p.detail, "Invalid sha512 digest");
        assert_eq!(p.title, "400 Bad Request: Invalid sha512 digest");
        assert_eq!(p.code.as_deref(), Some("invalid-digest"));
    }
    // Checked before authentication too: a bad token does not turn it into a 401.
    let p = expect_status(app.client_with_token("garbage").download_redirect("invalid", None).await, 400);
    assert_eq!(p.detail, "Invalid sha512 digest");
}

async fn unknown_digest_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = digest_of(b"never uploaded");
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 404);
}

async fn declared_but_never_uploaded_file_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = b"declared only";
    app.admin().upload_batch(&upload_request("m", &[("f", data, Visibility::Public)])).await.unwrap();
    expect_status(app.admin().download_redirect(digest_of(data).as_str(), None).await, 404);
}

async fn public_file_redirects_anonymous_callers_to_the_same_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let d = app.upload("pub.bin", &data, Visibility::Public).await;
    let r = app.anonymous().download_redirect(d.as_str(), None).await.unwrap();
    assert_eq!(r.status, 302);
    assert!(r.location.starts_with("http://127.0.0.1:"), "{}", r.location);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pub.bin");
    let n = download_to(&app.anonymous(), &d, Some(data.len() as u64), &dest).await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

async fn head_redirects_like_get(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("h", b"head me", Visibility::Public).await;
    let r = app.anonymous().head_redirect(d.as_str(), None).await.unwrap();
    assert_eq!(r.status, 302);
    // A HEAD answer has no body, so only the status can be checked.
    let err = app.anonymous().head_redirect(digest_of(b"nope").as_str(), None).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

async fn internal_file_is_forbidden_without_scope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("secret", b"internal bytes", Visibility::Internal).await;
    let p = expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 403);
    assert_eq!(p.detail, FORBIDDEN);
    for scopes in [&["download/public"][..], &["upload/internal", "upload/public"], &["manage"]] {
        let p = expect_status(app.client_as("u", scopes).download_redirect(d.as_str(), None).await, 403);
        assert_eq!(p.detail, FORBIDDEN, "{scopes:?}");
    }
}

async fn internal_file_redirects_with_download_internal_scope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = b"internal bytes for insiders";
    let d = app.upload("secret", data, Visibility::Internal).await;
    for scopes in [&["download/internal"][..], &["download/*"], &["*"]] {
        let client = app.client_as("insider", scopes);
        assert_eq!(client.download_redirect(d.as_str(), None).await.unwrap().status, 302, "{scopes:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("secret");
    download_to(&app.client_as("insider", &["download/internal"]), &d, None, &dest).await.unwrap();
    assert_eq!(std::fs::read(dest).unwrap(), data);
}

async fn internal_scope_does_not_grant_public_when_anonymous_download_is_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.anonymous_public_download = false).await;
    let d = app.upload("p", b"public but closed", Visibility::Public).await;
    let p = expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 403);
    assert_eq!(p.detail, FORBIDDEN);
    expect_status(app.client_as("u", &["download/internal"]).download_redirect(d.as_str(), None).await, 403);
    assert_eq!(app.client_as("u", &["download/public"]).download_redirect(d.as_str(), None).await.unwrap().status, 302);
}

async fn invalid_token_is_401_even_for_public_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("p", b"public", Visibility::Public).await;
    let p = expect_status(app.client_with_token("not-a-jwt").download_redirect(d.as_str(), None).await, 401);
    assert_eq!(p.code.as_deref(), Some("unauthorized"));
    let res = app
        .http()
        .get(app.at(&format!("/sha512/{d}")))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

async fn download_urls_expire(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.download_url_ttl = Duration::from_secs(1)).await;
    let d = app.upload("p", b"short-lived", Visibility::Public).await;
    let r = app.anonymous().download_redirect(d.as_str(), None).await.unwrap();
    let fresh = reqwest::get(&r.location).await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.bytes().await.unwrap().as_ref(), b"short-lived");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stale = reqwest::get(&r.location).await.unwrap();
    assert_eq!(stale.status(), 403, "an expired download URL must be refused");
}

async fn unknown_region_falls_back_to_a_region_with_a_copy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("p", b"regional", Visibility::Public).await;
    let r = app.anonymous().download_redirect(d.as_str(), Some("mars-north-1")).await.unwrap();
    assert_eq!(r.status, 302);
    let info = app.anonymous().get_file(d.as_str()).await.unwrap();
    let here = &info.instances[0];
    assert_eq!(app.anonymous().download_redirect(d.as_str(), Some(here)).await.unwrap().status, 302);
}

async fn five_gib_declared_size_is_accepted_and_returned(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut req = upload_request("big", &[("big.tar", b"x", Visibility::Public)]);
    let size = 5u64 * 1024 * 1024 * 1024;
    req.files.values_mut().for_each(|f| f.size = size);
    let batch = app.admin().upload_batch(&req).await.unwrap();
    assert_eq!(batch.files["big.tar"].size, size);
    assert!(batch.files["big.tar"].put_url.is_some());
    let info = app.admin().get_file(digest_of(b"x").as_str()).await.unwrap();
    assert_eq!(info.size, size);
    assert!(!info.has_instances);
}
