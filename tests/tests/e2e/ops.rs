//! Operations routes, the problem shape of unknown routes, and the token rules.

use std::time::Duration;

use tooltool_api::auth::Claims;
use tooltool_api::time::unix_now;
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, backend_tests, expect_status};

backend_tests!(
    lbheartbeat_is_200,
    heartbeat_is_200_when_backends_answer,
    heartbeat_is_503_naming_the_failing_blob_store,
    version_names_source_version_commit_build,
    unknown_routes_and_methods_are_problem_json,
    expired_wrong_audience_and_foreign_tokens_are_401,
    a_token_in_the_query_string_is_ignored,
    metrics_count_requests_by_route_redirects_and_verified_bytes,
    request_ids_are_echoed_or_generated,
    openapi_document_is_served,
);

async fn lbheartbeat_is_200(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.http().get(app.at("/__lbheartbeat__")).send().await.unwrap().status(), 200);
}

async fn heartbeat_is_200_when_backends_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.http().get(app.at("/__heartbeat__")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["database"], "ok");
    assert_eq!(v["checks"]["blob_store"], "ok");
}

async fn version_names_source_version_commit_build(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let v = app.anonymous().version().await.unwrap();
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));
    assert!(!v.source.is_empty() && !v.commit.is_empty() && !v.build.is_empty());
}

async fn unknown_routes_and_methods_are_problem_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.http().get(app.at("/no/such/route")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app.http().delete(app.at("/upload")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

async fn expired_wrong_audience_and_foreign_tokens_are_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("p", b"public", Visibility::Public).await;
    let now = unix_now();
    let base = Claims {
        sub: "u".into(),
        scopes: vec![TestApp::scope("*")],
        iat: now,
        nbf: None,
        exp: now + 600,
        iss: "tooltool".into(),
        aud: "tooltool".into(),
        jti: "j".into(),
        r#gen: None,
    };
    let tokens = &app.state.tokens;
    let forged = [
        Claims { exp: now - 3600, ..base.clone() },
        Claims { nbf: Some(now + 3600), ..base.clone() },
        Claims { aud: "elsewhere".into(), ..base.clone() },
        Claims { iss: "elsewhere".into(), ..base.clone() },
    ];
    for claims in forged {
        let token = tokens.sign(&claims);
        expect_status(app.client_with_token(&token).download_redirect(d.as_str(), None).await, 401);
    }
    let foreign = tooltool_api::auth::Tokens::new(b"some other deployment's key......", "tooltool", "tooltool");
    let token = foreign.issue("u", &[TestApp::scope("*")], Duration::from_secs(60));
    expect_status(app.client_with_token(&token).download_redirect(d.as_str(), None).await, 401);
    assert_eq!(
        app.client_with_token(&tokens.sign(&base)).download_redirect(d.as_str(), None).await.unwrap().status,
        302
    );
}

async fn a_token_in_the_query_string_is_ignored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("i", b"internal", Visibility::Internal).await;
    let token = app.token("u", &["download/internal"]);
    for param in ["access_token", "token", "bewit"] {
        let res = app.http().get(app.at(&format!("/sha512/{d}?{param}={token}"))).send().await.unwrap();
        assert_eq!(res.status(), 403, "{param}");
    }
}

async fn heartbeat_is_503_naming_the_failing_blob_store(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    match &app.s3 {
        Some(s3) => {
            s3.client().delete_bucket().bucket(&s3.bucket).send().await.unwrap();
        }
        None => std::fs::remove_dir_all(app.data_dir.path().join("blobs")).unwrap(),
    }
    let res = app.http().get(app.at("/__heartbeat__")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["checks"]["database"], "ok");
    assert_eq!(v["checks"]["blob_store"], "error");
    assert_eq!(app.http().get(app.at("/__lbheartbeat__")).send().await.unwrap().status(), 200);
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_count_requests_by_route_redirects_and_verified_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = vec![7u8; 12_345];
    let d = app.upload("m.bin", &data, Visibility::Public).await;
    app.anonymous().download_redirect(d.as_str(), None).await.unwrap();
    let _ = app.anonymous().download_redirect("bad", None).await;
    let res = app.http().get(app.at("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let after = res.text().await.unwrap();
    // The server's own registry: exact values, served as they are counted.
    let served = |name: &str, value: f64| assert_eq!(metric(&after, name), value, "{name}:\n{after}");
    served("tooltool_redirects_total", 1.0);
    served("tooltool_verified_bytes_total", data.len() as f64);
    served("tooltool_verifications_total{outcome=\"verified\"}", 1.0);
    served("tooltool_http_requests_total{method=\"GET\",route=\"/sha512/{digest}\",status=\"302\"}", 1.0);
    served("tooltool_http_requests_total{method=\"GET\",route=\"/sha512/{digest}\",status=\"400\"}", 1.0);
    let m = &app.state.metrics;
    assert_eq!((m.redirects.get(), m.verified_bytes.get()), (1, data.len() as u64));
    assert!(after.contains("tooltool_http_request_duration_seconds_bucket{route=\"/sha512/{digest}\""));
    assert!(after.contains("tooltool_db_pool_connections{"));
    assert!(!after.contains(d.as_str()), "route labels are patterns, not paths");
}

async fn request_ids_are_echoed_or_generated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.http().get(app.at("/__lbheartbeat__")).header("X-Request-Id", "build-42_a").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "build-42_a");
    let res = app.http().get(app.at("/sha512/bad")).send().await.unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    let res =
        app.http().get(app.at("/__lbheartbeat__")).header("X-Request-Id", "no spaces <allowed>").send().await.unwrap();
    assert_ne!(res.headers()["x-request-id"], "no spaces <allowed>");
}

async fn openapi_document_is_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.http().get(app.at("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["paths"]["/sha512/{digest}"]["get"]["responses"]["302"].is_object());
}
