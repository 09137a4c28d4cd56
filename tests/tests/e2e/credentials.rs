//! Client credentials: the lifecycle (create, revoke, rotate), both credential forms (Bearer
//! and the original client's Hawk), derived tokens, `__permissions__`, and the audit trail.

use std::time::Duration;

use serde_json::json;
use tooltool::Credentials;
use tooltool_api::auth::hawk::{RequestParts, client_header};
use tooltool_api::time::now;
use tooltool_e2e::proto::{AuditPage, PatchOp, Permissions, TokenResponse, Visibility};
use tooltool_e2e::{Backend, FORBIDDEN, TestApp, backend_tests, digest_of, expect_status, upload_request};

backend_tests!(
    created_credentials_file_is_private_and_list_shows_no_secret,
    credentials_file_works_in_both_forms_with_the_client,
    revoked_credentials_are_refused,
    rotated_away_secret_is_refused_and_the_new_one_works,
    derived_tokens_narrow_scope_and_lifetime,
    scope_escalation_through_token_is_forbidden,
    revoking_a_client_kills_its_derived_tokens,
    permissions_names_the_caller_and_its_scopes,
    hawk_signed_requests_of_the_original_client_are_accepted,
    hawk_with_wrong_key_is_401,
    hawk_with_stale_timestamp_is_401,
    hawk_replayed_nonce_is_401,
    hawk_tampered_body_hash_is_401,
    hawk_tampered_path_is_401,
    hawk_for_revoked_or_unknown_client_is_401,
    audit_trail_records_who_did_what,
    audit_needs_manage_and_pages,
    audit_log_is_append_only,
    tokens_of_a_rotated_server_key_verify_until_the_key_is_removed,
);

const HAWK_NONCE_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

fn nonce() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    (0..6).map(|i| HAWK_NONCE_CHARS.as_bytes()[((n >> (i * 8)) % 36) as usize] as char).collect()
}

async fn client(app: &TestApp, id: &str, scopes: &[&str]) -> tooltool_api::admin::CredentialsFile {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    app.admin_ops()
        .await
        .create_client(id, &scopes, Duration::from_secs(3600), "test client", "admin-cli:test")
        .await
        .unwrap()
}

/// GET `path` signed with Hawk as the original client does.
async fn hawk_get(app: &TestApp, id: &str, key: &str, path: &str, ts: i64, nonce: &str) -> reqwest::Response {
    let port = app.url.rsplit(':').next().unwrap().parse().unwrap();
    let parts = RequestParts { method: "GET", resource: path, host: "127.0.0.1", port };
    let header = client_header(id, key, &parts, ts, nonce, None);
    app.http().get(app.at(path)).header("Authorization", header).send().await.unwrap()
}

/// POST `/upload` with `sent` as the body, signed with Hawk over `signed` (with its payload hash).
async fn hawk_post_upload(app: &TestApp, id: &str, key: &str, signed: &[u8], sent: Vec<u8>) -> reqwest::Response {
    let port = app.url.rsplit(':').next().unwrap().parse().unwrap();
    let parts = RequestParts { method: "POST", resource: "/upload", host: "127.0.0.1", port };
    let header = client_header(id, key, &parts, now(), &nonce(), Some(("application/json", signed)));
    app.http()
        .post(app.at("/upload"))
        .header("Authorization", header)
        .header("Content-Type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap()
}

async fn created_credentials_file_is_private_and_list_shows_no_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "ci-pool-1", &["download/*"]).await;
    let path = app.data_dir.path().join("creds.json");
    creds.write(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["clientId"], "ci-pool-1");
    assert_eq!(v["accessToken"], creds.access_token.as_str());
    let listed = app.admin_ops().await.list_clients().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scopes, vec![TestApp::scope("download/*")]);
    assert!(!format!("{listed:?}").contains(&creds.access_token));
    assert!(!format!("{creds:?}").contains(&creds.access_token));
    let err =
        app.admin_ops().await.create_client("ci-pool-1", &["manage".into()], Duration::from_secs(60), "", "t").await;
    assert!(err.unwrap_err().to_string().contains("already exists"));
}

async fn credentials_file_works_in_both_forms_with_the_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "releng", &["upload/*", "download/*"]).await;
    let json_file = serde_json::to_string(&creds).unwrap();
    for text in [json_file.as_str(), creds.access_token.as_str()] {
        let c = tooltool::ApiClient::new(&app.url, Some(Credentials::parse(text).unwrap())).unwrap();
        let batch = c
            .upload_batch(&upload_request("with creds", &[("f", text.as_bytes(), Visibility::Internal)]))
            .await
            .unwrap();
        assert_eq!(batch.author, "releng");
    }
}

async fn revoked_credentials_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.auth_refresh = Duration::from_millis(100)).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let creds = client(&app, "leaky", &["download/internal"]).await;
    let c = app.client_with_token(&creds.access_token);
    assert_eq!(c.download_redirect(d.as_str(), None).await.unwrap().status, 302);
    app.admin_ops().await.revoke_client("leaky", "admin-cli:test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_status(c.download_redirect(d.as_str(), None).await, 401);
    assert!(app.admin_ops().await.revoke_client("leaky", "t").await.is_err(), "already revoked");
}

async fn rotated_away_secret_is_refused_and_the_new_one_works(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.auth_refresh = Duration::from_millis(100)).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let old = client(&app, "rotating", &["download/internal"]).await;
    let new = app.admin_ops().await.rotate_client("rotating", "admin-cli:test").await.unwrap();
    assert_ne!(old.access_token, new.access_token);
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_status(app.client_with_token(&old.access_token).download_redirect(d.as_str(), None).await, 401);
    assert_eq!(app.client_with_token(&new.access_token).download_redirect(d.as_str(), None).await.unwrap().status, 302);
    let r = hawk_get(&app, "rotating", &old.access_token, &format!("/sha512/{d}"), now(), &nonce()).await;
    assert_eq!(r.status(), 401, "the old secret is no Hawk key either");
}

async fn derive(app: &TestApp, token: &str, body: serde_json::Value) -> reqwest::Response {
    app.http().post(app.at("/token")).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn derived_tokens_narrow_scope_and_lifetime(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let creds = client(&app, "farm", &["download/*", "upload/public"]).await;
    let res = derive(&app, &creds.access_token, json!({"scopes": ["download/internal"], "expires_in": 300})).await;
    assert_eq!(res.status(), 200);
    let t: TokenResponse = res.json().await.unwrap();
    assert_eq!(t.scopes, vec![TestApp::scope("download/internal")]);
    let derived = app.client_with_token(&t.token);
    assert_eq!(derived.download_redirect(d.as_str(), None).await.unwrap().status, 302);
    expect_status(derived.upload_batch(&upload_request("m", &[("p", b"p", Visibility::Public)])).await, 403);
    let too_long =
        derive(&app, &creds.access_token, json!({"scopes": ["download/internal"], "expires_in": 7200})).await;
    assert_eq!(too_long.status(), 400);
    let zero = derive(&app, &creds.access_token, json!({"scopes": ["download/internal"], "expires_in": 0})).await;
    assert_eq!(zero.status(), 400);
    let anon = app
        .http()
        .post(app.at("/token"))
        .json(&json!({"scopes": ["download/public"], "expires_in": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}

async fn scope_escalation_through_token_is_forbidden(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "narrow", &["download/*"]).await;
    for wider in [json!(["manage"]), json!(["*"]), json!(["download/*", "upload/public"]), json!(["d*"])] {
        let res = derive(&app, &creds.access_token, json!({"scopes": wider, "expires_in": 60})).await;
        assert_eq!(res.status(), 403, "{wider}");
        let p: tooltool_e2e::proto::Problem = res.json().await.unwrap();
        assert_eq!(p.detail, FORBIDDEN);
    }
    // A derived token cannot derive anything wider or longer either.
    let res = derive(&app, &creds.access_token, json!({"scopes": ["download/public"], "expires_in": 60})).await;
    let child: TokenResponse = res.json().await.unwrap();
    assert_eq!(
        derive(&app, &child.token, json!({"scopes": ["download/internal"], "expires_in": 10})).await.status(),
        403
    );
    assert_eq!(
        derive(&app, &child.token, json!({"scopes": ["download/public"], "expires_in": 120})).await.status(),
        400
    );
}

async fn revoking_a_client_kills_its_derived_tokens(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.auth_refresh = Duration::from_millis(100)).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let creds = client(&app, "parent", &["download/*"]).await;
    let t: TokenResponse =
        derive(&app, &creds.access_token, json!({"scopes": ["download/internal"], "expires_in": 300}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(app.client_with_token(&t.token).download_redirect(d.as_str(), None).await.unwrap().status, 302);
    app.admin_ops().await.revoke_client("parent", "t").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_status(app.client_with_token(&t.token).download_redirect(d.as_str(), None).await, 401);
}

async fn permissions_names_the_caller_and_its_scopes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p: Permissions = app.http().get(app.at("/__permissions__")).send().await.unwrap().json().await.unwrap();
    assert_eq!(p, Permissions { client_id: "anonymous".into(), scopes: vec![TestApp::scope("download/public")] });
    let creds = client(&app, "who", &["manage"]).await;
    let p: Permissions = app
        .http()
        .get(app.at("/__permissions__"))
        .bearer_auth(&creds.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p, Permissions { client_id: "who".into(), scopes: vec![TestApp::scope("manage")] });
    let res = app.http().get(app.at("/__permissions__")).bearer_auth("nonsense").send().await.unwrap();
    assert_eq!(res.status(), 401);
}

async fn hawk_signed_requests_of_the_original_client_are_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let creds = client(&app, "hawk-user", &["download/internal", "upload/*"]).await;
    let path = format!("/sha512/{d}?region=us-east-1");
    let res = hawk_get(&app, "hawk-user", &creds.access_token, &path, now(), &nonce()).await;
    assert_eq!(res.status(), 302);
    // POST /upload with a payload hash, exactly as tooltool.py builds it.
    let body = serde_json::to_vec(&upload_request("hawk upload", &[("h.bin", b"hawk", Visibility::Public)])).unwrap();
    let res = hawk_post_upload(&app, "hawk-user", &creds.access_token, &body.clone(), body).await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["result"]["author"], "hawk-user");
}

async fn hawk_with_wrong_key_is_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    client(&app, "hk", &["download/*"]).await;
    let res = hawk_get(&app, "hk", "not-the-access-token", "/__permissions__", now(), &nonce()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

async fn hawk_with_stale_timestamp_is_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "hk", &["download/*"]).await;
    for ts in [now() - 600, now() + 600] {
        assert_eq!(hawk_get(&app, "hk", &creds.access_token, "/__permissions__", ts, &nonce()).await.status(), 401);
    }
    assert_eq!(hawk_get(&app, "hk", &creds.access_token, "/__permissions__", now() - 30, &nonce()).await.status(), 200);
}

async fn hawk_replayed_nonce_is_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "hk", &["download/*"]).await;
    let (ts, n) = (now(), nonce());
    assert_eq!(hawk_get(&app, "hk", &creds.access_token, "/__permissions__", ts, &n).await.status(), 200);
    assert_eq!(hawk_get(&app, "hk", &creds.access_token, "/__permissions__", ts, &n).await.status(), 401);
}

async fn hawk_tampered_body_hash_is_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "hk", &["upload/*"]).await;
    let signed = serde_json::to_vec(&upload_request("honest", &[("a", b"a", Visibility::Public)])).unwrap();
    let sent = serde_json::to_vec(&upload_request("tampered", &[("a", b"a", Visibility::Public)])).unwrap();
    let res = hawk_post_upload(&app, "hk", &creds.access_token, &signed, sent).await;
    assert_eq!(res.status(), 401);
    assert!(app.admin().search_batches("").await.unwrap().is_empty(), "nothing recorded");
}

async fn hawk_tampered_path_is_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "hk", &["download/*"]).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let port = app.url.rsplit(':').next().unwrap().parse().unwrap();
    let signed = format!("/sha512/{}", digest_of(b"something else"));
    let parts = RequestParts { method: "GET", resource: &signed, host: "127.0.0.1", port };
    let header = client_header("hk", &creds.access_token, &parts, now(), &nonce(), None);
    let res = app.http().get(app.at(&format!("/sha512/{d}"))).header("Authorization", header).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

async fn hawk_for_revoked_or_unknown_client_is_401(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.auth_refresh = Duration::from_millis(100)).await;
    let creds = client(&app, "hk", &["download/*"]).await;
    assert_eq!(hawk_get(&app, "nobody", &creds.access_token, "/__permissions__", now(), &nonce()).await.status(), 401);
    app.admin_ops().await.revoke_client("hk", "t").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(hawk_get(&app, "hk", &creds.access_token, "/__permissions__", now(), &nonce()).await.status(), 401);
}

/// One page of the audit trail at `path` (an `/audit?…` URL), read with `token`.
async fn audit_page(app: &TestApp, token: &str, path: &str) -> AuditPage {
    app.http().get(app.at(path)).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

async fn audit_trail_records_who_did_what(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let creds = client(&app, "uploader", &["upload/*", "manage"]).await;
    let c = app.client_with_token(&creds.access_token);
    let batch = c
        .upload_batch(&upload_request(
            "audited",
            &[("good", b"good", Visibility::Internal), ("bad", b"bad", Visibility::Public)],
        ))
        .await
        .unwrap();
    c.put_bytes(batch.files["good"].put_url.as_ref().unwrap(), bytes::Bytes::from_static(b"good")).await.unwrap();
    c.complete_until_verified(digest_of(b"good").as_str(), Duration::from_secs(30)).await.unwrap();
    c.put_bytes(batch.files["bad"].put_url.as_ref().unwrap(), bytes::Bytes::from_static(b"bud")).await.unwrap();
    expect_status(c.complete(digest_of(b"bad").as_str()).await, 400);
    let good = digest_of(b"good");
    c.patch_file(good.as_str(), &[PatchOp::SetVisibility { visibility: Visibility::Public }, PatchOp::DeleteInstances])
        .await
        .unwrap();
    app.admin_ops().await.revoke_client("uploader", "admin-cli:test").await.unwrap();

    let page = audit_page(&app, &app.token("auditor", &["manage"]), "/audit?limit=100").await;
    let actions: Vec<(&str, &str, &str)> =
        page.result.iter().rev().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(
        actions,
        vec![
            ("admin-cli:test", "client.created", "uploader"),
            ("uploader", "batch.uploaded", format!("batch:{}", batch.id).as_str()),
            ("uploader", "upload.verified", good.as_str()),
            ("uploader", "upload.rejected", digest_of(b"bad").as_str()),
            ("uploader", "file.visibility_changed", good.as_str()),
            ("uploader", "file.instances_deleted", good.as_str()),
            ("admin-cli:test", "client.revoked", "uploader"),
        ]
    );
    let uploaded = &page.result.iter().find(|e| e.action == "batch.uploaded").unwrap().details;
    assert_eq!(uploaded["message"], "audited");
    assert_eq!(uploaded["files"]["good"], good.as_str());
    assert!(page.result.iter().all(|e| e.at.ends_with('Z')));
    let cli = app
        .admin_ops()
        .await
        .audit(&tooltool_api::db::AuditFilter { action: Some("client.revoked".into()), ..Default::default() }, 10)
        .await
        .unwrap();
    assert_eq!(cli.len(), 1);
}

async fn audit_needs_manage_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..5 {
        client(&app, &format!("c{i}"), &["download/public"]).await;
    }
    assert_eq!(app.http().get(app.at("/audit")).send().await.unwrap().status(), 401);
    let res =
        app.http().get(app.at("/audit")).bearer_auth(app.token("u", &["download/*", "upload/*"])).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let token = app.token("auditor", &["manage"]);
    let page = audit_page(&app, &token, "/audit?limit=2&action=client.created").await;
    assert_eq!(page.result.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["c4", "c3"]);
    let before = page.next_before.unwrap();
    let page2 = audit_page(&app, &token, &format!("/audit?limit=2&action=client.created&before={before}")).await;
    assert_eq!(page2.result.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["c2", "c1"]);
    let page3 = audit_page(&app, &token, &format!("/audit?limit=2&before={}", page2.next_before.unwrap())).await;
    assert_eq!(page3.result.len(), 1);
    assert_eq!(page3.next_before, None);
    let none = audit_page(&app, &token, "/audit?actor=nobody").await;
    assert!(none.result.is_empty());
}

async fn audit_log_is_append_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    client(&app, "c", &["download/public"]).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.settings.database_url).await.unwrap();
    assert!(sqlx::query("UPDATE audit_log SET actor = 'mallory'").execute(&pool).await.is_err());
    assert!(sqlx::query("DELETE FROM audit_log").execute(&pool).await.is_err());
    let entries = app.admin_ops().await.audit(&Default::default(), 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "admin-cli:test");
}

async fn tokens_of_a_rotated_server_key_verify_until_the_key_is_removed(backend: Backend) {
    let old_key = "old-master-secret-0123456789abcdef0123";
    let new_key = "new-master-secret-0123456789abcdef0123";
    let app = TestApp::spawn_with(backend, |s| s.secret_key = Some(tooltool_api::settings::Secret::new(old_key))).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let creds = client(&app, "long-lived", &["download/internal"]).await;
    let rotated = TestApp::spawn_with(backend, |s| {
        s.database_url = app.settings.database_url.clone();
        s.blobs = app.settings.blobs.clone();
        s.data_dir = app.data_dir.path().to_owned();
        s.secret_key = Some(tooltool_api::settings::Secret::new(new_key));
        s.old_secret_keys = vec![tooltool_api::settings::Secret::new(old_key)];
    })
    .await;
    let c = rotated.client_with_token(&creds.access_token);
    assert_eq!(c.download_redirect(d.as_str(), None).await.unwrap().status, 302, "old key still verifies");
    let r = hawk_get(&rotated, "long-lived", &creds.access_token, &format!("/sha512/{d}"), now(), &nonce()).await;
    assert_eq!(r.status(), 302, "the Hawk key is re-derived with the key that signed it");
    let removed = TestApp::spawn_with(backend, |s| {
        s.database_url = app.settings.database_url.clone();
        s.blobs = app.settings.blobs.clone();
        s.data_dir = app.data_dir.path().to_owned();
        s.secret_key = Some(tooltool_api::settings::Secret::new(new_key));
    })
    .await;
    let p =
        expect_status(removed.client_with_token(&creds.access_token).download_redirect(d.as_str(), None).await, 401);
    assert_eq!(p.code.as_deref(), Some("unauthorized"));
}
