//! `GET`/`PATCH /file/sha512/<digest>` and the search routes.

use serde_json::json;
use tooltool_e2e::proto::{PatchOp, Visibility};
use tooltool_e2e::{Backend, FORBIDDEN, TestApp, backend_tests, digest_of, expect_status, upload_request};

backend_tests!(
    get_file_statuses_and_body,
    patch_needs_credentials_then_manage,
    patch_refuses_bad_operations,
    patch_unknown_file_is_404,
    visibility_change_applies_to_the_next_download,
    delete_instances_makes_downloads_404_until_uploaded_again,
    upload_search_matches_author_and_message,
    get_batch_by_id,
    file_search_matches_names_and_digest_prefixes,
);

async fn get_file_statuses_and_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("f.txt", b"file body", Visibility::Public).await;
    let res = app.http().get(app.at(&format!("/file/sha512/{d}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut v: serde_json::Value = res.json().await.unwrap();
    let region = v["instances"][0].as_str().unwrap().to_owned();
    // The one member added to the original's (when the copy was last proven, issue 24).
    let proven = v.as_object_mut().unwrap().remove("proven").expect("proven");
    let at = proven[&region].as_str().expect("an RFC 3339 time");
    assert!(at.starts_with("20") && at.ends_with('Z') && at.len() == "2026-12-04T02:30:00.123Z".len(), "{proven}");
    assert_eq!(proven.as_object().unwrap().len(), 1, "{proven}");
    assert_eq!(
        v,
        json!({"size": 9, "digest": d.as_str(), "algorithm": "sha512", "visibility": "public",
               "has_instances": true, "instances": [region]})
    );
    expect_status(app.anonymous().get_file("nope").await, 400);
    expect_status(app.anonymous().get_file(digest_of(b"unknown").as_str()).await, 404);
}

async fn patch_needs_credentials_then_manage(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("f", b"managed", Visibility::Internal).await;
    let ops = [PatchOp::SetVisibility { visibility: Visibility::Public }];
    expect_status(app.anonymous().patch_file(d.as_str(), &ops).await, 401);
    let p = expect_status(app.client_as("u", &["download/*", "upload/*"]).patch_file(d.as_str(), &ops).await, 403);
    assert_eq!(p.detail, FORBIDDEN);
    expect_status(app.client_with_token("forged.token.here").patch_file(d.as_str(), &ops).await, 401);
    expect_status(app.client_as("u", &["manage"]).patch_file("bad", &ops).await, 400);
    let info = app.client_as("u", &["manage"]).patch_file(d.as_str(), &ops).await.unwrap();
    assert_eq!(info.visibility, Visibility::Public);
}

async fn patch_refuses_bad_operations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("f", b"ops", Visibility::Internal).await;
    let token = app.token("m", &["manage"]);
    for body in [
        json!([]),
        json!([{"op": "explode"}]),
        json!([{"op": "set_visibility", "visibility": "secret"}]),
        json!({"op": "delete_instances"}),
    ] {
        let res = app
            .http()
            .patch(app.at(&format!("/file/sha512/{d}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(app.admin().get_file(d.as_str()).await.unwrap().visibility, Visibility::Internal);
}

async fn patch_unknown_file_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    expect_status(app.admin().patch_file(digest_of(b"ghost").as_str(), &[PatchOp::DeleteInstances]).await, 404);
}

async fn visibility_change_applies_to_the_next_download(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("f", b"flip", Visibility::Internal).await;
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 403);
    app.admin().patch_file(d.as_str(), &[PatchOp::SetVisibility { visibility: Visibility::Public }]).await.unwrap();
    assert_eq!(app.anonymous().download_redirect(d.as_str(), None).await.unwrap().status, 302);
    app.admin().patch_file(d.as_str(), &[PatchOp::SetVisibility { visibility: Visibility::Internal }]).await.unwrap();
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 403);
}

async fn delete_instances_makes_downloads_404_until_uploaded_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = b"delete me";
    let d = app.upload("f", data, Visibility::Public).await;
    let info = app.admin().patch_file(d.as_str(), &[PatchOp::DeleteInstances]).await.unwrap();
    assert!(!info.has_instances);
    assert!(info.instances.is_empty());
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 404);
    if let Some(s3) = &app.s3 {
        assert!(s3.keys("sha512/").await.is_empty());
    } else {
        assert!(!app.data_dir.path().join("blobs/sha512").join(d.as_str()).exists());
    }
    let batch = app.admin().upload_batch(&upload_request("again", &[("f", data, Visibility::Public)])).await.unwrap();
    assert!(batch.files["f"].put_url.is_some(), "a deleted file needs its bytes again");
    app.upload("f", data, Visibility::Public).await;
    assert_eq!(app.anonymous().download_redirect(d.as_str(), None).await.unwrap().status, 302);
}

async fn upload_search_matches_author_and_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.client_as("alice@example.com", &["upload/*"]);
    let bob = app.client_as("bob@example.com", &["upload/*"]);
    alice.upload_batch(&upload_request("GCC 13 for linux64", &[("gcc", b"gcc", Visibility::Public)])).await.unwrap();
    bob.upload_batch(&upload_request("clang 17 (100%_done)", &[("clang", b"clang", Visibility::Internal)]))
        .await
        .unwrap();
    let by_author = app.anonymous().search_batches("alice").await.unwrap();
    assert_eq!(by_author.len(), 1);
    assert_eq!(by_author[0].author, "alice@example.com");
    assert_eq!(by_author[0].files["gcc"].put_url, None);
    assert_eq!(app.anonymous().search_batches("gcc 13").await.unwrap().len(), 1, "case-insensitive");
    assert_eq!(app.anonymous().search_batches("%").await.unwrap().len(), 1, "LIKE wildcards are literal");
    assert_eq!(app.anonymous().search_batches("100%_").await.unwrap()[0].author, "bob@example.com");
    assert_eq!(app.anonymous().search_batches("example.com").await.unwrap().len(), 2);
    assert!(app.anonymous().search_batches("nobody").await.unwrap().is_empty());
    let res = app.http().get(app.at("/upload?q=alice")).send().await.unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["result"].is_array());
}

async fn get_batch_by_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let batch = app.admin().upload_batch(&upload_request("one", &[("a", b"a", Visibility::Public)])).await.unwrap();
    let got = app.anonymous().get_batch(batch.id).await.unwrap();
    assert_eq!((got.id, got.message.as_str(), got.author.as_str()), (batch.id, "one", "admin@example.com"));
    assert_eq!(got.uploaded, batch.uploaded);
    expect_status(app.anonymous().get_batch(batch.id + 1000).await, 404);
    let res = app.http().get(app.at("/upload/not-a-number")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

async fn file_search_matches_names_and_digest_prefixes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("rustc-1.95.tar.xz", b"rustc", Visibility::Public).await;
    app.upload("cargo.tar.xz", b"cargo", Visibility::Internal).await;
    let by_name = app.anonymous().search_files("RUSTC").await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].digest, d);
    assert!(by_name[0].has_instances);
    let by_digest = app.anonymous().search_files(&d.as_str()[..12]).await.unwrap();
    assert_eq!(by_digest.len(), 1);
    assert_eq!(by_digest[0].digest, d);
    assert_eq!(app.anonymous().search_files(".tar.xz").await.unwrap().len(), 2);
    assert!(app.anonymous().search_files("zzz").await.unwrap().is_empty());
}
