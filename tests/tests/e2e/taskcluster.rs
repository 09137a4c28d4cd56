//! Taskcluster identity, checked with Taskcluster's own code on the other side: temporary
//! credentials and `ext` made by the official Python client (`createTemporaryCredentials`,
//! `makeHawkExt`) and signed by mohawk (`tests/py/tc_hawk.py`); a Taskcluster deployment stood
//! in for by a small server that checks Hawk with mohawk (`tests/py/tc_auth_standin.py`); the
//! MAC's host and port behind a load balancer; and the project's client speaking Hawk.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tooltool_e2e::proto::{PatchOp, Visibility};
use tooltool_e2e::proxy::{Action, Proxy};
use tooltool_e2e::services::until;
use tooltool_e2e::{Backend, TestApp, backend_tests, tooltool_cli, upload_request};

backend_tests!(
    temporary_credentials_with_the_scope_download_an_internal_file,
    a_certificate_without_the_scope_is_forbidden_the_internal_file,
    an_expired_certificate_is_refused,
    a_certificate_longer_than_31_days_is_refused,
    a_tampered_certificate_signature_is_refused,
    a_certificate_with_scopes_the_issuer_lacks_is_refused,
    named_temporary_credentials_need_auth_create_client,
    authorized_scopes_narrow_what_the_credentials_may_do,
    authorized_scopes_beyond_the_credentials_are_refused,
    revoking_the_issuer_kills_its_temporary_credentials_on_another_replica,
    a_hawk_payload_hash_is_checked_against_the_upload_body,
    malformed_hawk_timestamps_and_ext_are_answered_401,
    a_client_known_only_to_the_taskcluster_deployment_downloads_an_internal_file,
    a_client_the_deployment_refuses_is_401,
    a_deployment_that_does_not_answer_is_503_within_the_timeout,
    forwarded_host_and_port_count_only_when_trusted,
    the_projects_client_signs_with_hawk_and_never_sends_the_access_token,
);

const INTERNAL: &str = "download/internal";

/// Taskcluster's Python client and mohawk, from the venv `scripts/test.sh` makes.
use tooltool_e2e::{py_script as script, test_python as python};

/// What `tc_hawk.py` made: the header and the credentials it was signed with.
struct Signed {
    authorization: String,
    client_id: String,
    access_token: String,
    certificate: Option<String>,
}

/// Runs `tc_hawk.py` with `spec` (see the script for its members).
async fn sign(spec: Value) -> Signed {
    let v = tooltool_e2e::run_py_script("tc_hawk.py", &spec).await;
    Signed {
        authorization: v["authorization"].as_str().unwrap().to_owned(),
        client_id: v["clientId"].as_str().unwrap().to_owned(),
        access_token: v["accessToken"].as_str().unwrap().to_owned(),
        certificate: v["certificate"].as_str().map(str::to_owned),
    }
}

/// A registered client; its credentials file's accessToken.
async fn register(app: &TestApp, id: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let admin = app.admin_ops().await;
    admin.create_client(id, &scopes, Duration::from_secs(3600), "test", "admin-cli:test").await.unwrap().access_token
}

/// The spec of a request signed by `issuer` with temporary credentials over `scopes`.
fn temporary(issuer: &str, token: &str, method: &str, url: &str, scopes: &[String]) -> Value {
    json!({"clientId": issuer, "accessToken": token, "method": method, "url": url, "temporary": {"scopes": scopes}})
}

fn full(suffixes: &[&str]) -> Vec<String> {
    suffixes.iter().map(|s| TestApp::scope(s)).collect()
}

/// GET `url` with this `Authorization`, without following redirects.
async fn get(app: &TestApp, url: &str, authorization: &str) -> reqwest::Response {
    app.http().get(url).header("Authorization", authorization).send().await.unwrap()
}

async fn internal_file(app: &TestApp) -> String {
    let d = app.upload("tc.bin", b"an internal toolchain", Visibility::Internal).await;
    app.at(&format!("/sha512/{d}"))
}

async fn temporary_credentials_with_the_scope_download_an_internal_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "ci-issuer", &["download/*"]).await;
    let signed = sign(temporary("ci-issuer", &token, "GET", &url, &full(&[INTERNAL]))).await;
    assert_ne!(signed.access_token, token, "the MAC is keyed by the temporary accessToken");
    assert!(signed.certificate.is_some());
    let res = get(&app, &url, &signed.authorization).await;
    assert_eq!(res.status(), 302);
    let perms = app.at("/__permissions__");
    let signed = sign(temporary("ci-issuer", &token, "GET", &perms, &full(&[INTERNAL]))).await;
    let v: Value = get(&app, &perms, &signed.authorization).await.json().await.unwrap();
    assert_eq!(v, json!({"client_id": "ci-issuer", "scopes": full(&[INTERNAL])}), "the certificate's scopes");
}

async fn a_certificate_without_the_scope_is_forbidden_the_internal_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "ci-issuer", &["download/*"]).await;
    let signed = sign(temporary("ci-issuer", &token, "GET", &url, &full(&["download/public"]))).await;
    assert_eq!(get(&app, &url, &signed.authorization).await.status(), 403);
}

async fn an_expired_certificate_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "ci-issuer", &["download/*"]).await;
    let mut spec = temporary("ci-issuer", &token, "GET", &url, &full(&[INTERNAL]));
    spec["temporary"]["start"] = json!(-7200);
    spec["temporary"]["expiry"] = json!(-3600);
    let res = get(&app, &url, &sign(spec).await.authorization).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

async fn a_certificate_longer_than_31_days_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "ci-issuer", &["download/*"]).await;
    let mut spec = temporary("ci-issuer", &token, "GET", &url, &full(&[INTERNAL]));
    // The Python client itself refuses to make one; the script gets past its check only.
    spec["temporary"]["expiry"] = json!(32 * 24 * 3600);
    spec["temporary"]["beyond_31_days"] = json!(true);
    let signed = sign(spec).await;
    let cert: Value = serde_json::from_str(signed.certificate.as_deref().unwrap()).unwrap();
    let days = (cert["expiry"].as_i64().unwrap() - cert["start"].as_i64().unwrap()) / (24 * 3600 * 1000);
    assert_eq!(days, 32);
    assert_eq!(get(&app, &url, &signed.authorization).await.status(), 401);
    let mut spec = temporary("ci-issuer", &token, "GET", &url, &full(&[INTERNAL]));
    spec["temporary"]["expiry"] = json!(30 * 24 * 3600);
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 302, "30 days are allowed");
}

async fn a_tampered_certificate_signature_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "ci-issuer", &["download/*"]).await;
    let mut spec = temporary("ci-issuer", &token, "GET", &url, &full(&[INTERNAL]));
    spec["tamper"] = json!("signature");
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 401);
}

async fn a_certificate_with_scopes_the_issuer_lacks_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "ci-issuer", &["download/public"]).await;
    let signed = sign(temporary("ci-issuer", &token, "GET", &url, &full(&[INTERNAL]))).await;
    assert_eq!(get(&app, &url, &signed.authorization).await.status(), 401);
}

async fn named_temporary_credentials_need_auth_create_client(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let plain = register(&app, "plain-issuer", &["download/*"]).await;
    let mut spec = temporary("plain-issuer", &plain, "GET", &url, &full(&[INTERNAL]));
    spec["temporary"]["name"] = json!("task-1");
    let signed = sign(spec.clone()).await;
    assert_eq!(signed.client_id, "task-1");
    assert_eq!(get(&app, &url, &signed.authorization).await.status(), 401);

    let creator = register(&app, "creator", &["download/*", "auth:create-client:task-*"]).await;
    let mut itself = temporary("creator", &creator, "GET", &url, &full(&[INTERNAL]));
    itself["temporary"]["name"] = json!("creator");
    assert_eq!(get(&app, &url, &sign(itself).await.authorization).await.status(), 401, "an issuer naming itself");
    spec["clientId"] = json!("creator");
    spec["accessToken"] = json!(creator);
    let signed = sign(spec).await;
    assert_eq!(get(&app, &url, &signed.authorization).await.status(), 302);
    // The audit trail names the credential and its issuer.
    let digest = url.rsplit('/').next().unwrap().to_owned();
    let patch_url = app.at(&format!("/file/sha512/{digest}"));
    let body = serde_json::to_string(&[PatchOp::DeleteInstances]).unwrap();
    let creator = register(&app, "manager", &["manage", "auth:create-client:task-*"]).await;
    let mut spec = temporary("manager", &creator, "PATCH", &patch_url, &full(&["manage"]));
    spec["temporary"]["name"] = json!("task-2");
    spec["contentType"] = json!("application/json");
    spec["body"] = json!(body);
    let signed = sign(spec).await;
    let res = app
        .http()
        .patch(&patch_url)
        .header("Authorization", &signed.authorization)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let audit = app.admin_ops().await.audit(&Default::default(), 10).await.unwrap();
    let entry = audit.iter().find(|a| a.action == "file.instances_deleted").expect("an audit line");
    assert_eq!(entry.actor, "task-2 (issuer manager)");
}

async fn authorized_scopes_narrow_what_the_credentials_may_do(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = internal_file(&app).await;
    let token = register(&app, "wide", &["*"]).await;
    let narrowed = |method: &str, url: &str| {
        json!({"clientId": "wide", "accessToken": token, "method": method, "url": url,
               "authorizedScopes": full(&["download/public"])})
    };
    assert_eq!(get(&app, &url, &sign(narrowed("GET", &url)).await.authorization).await.status(), 403);
    // The review's hole: a narrowed request could still change a file's visibility.
    let digest = url.rsplit('/').next().unwrap().to_owned();
    let patch_url = app.at(&format!("/file/sha512/{digest}"));
    let body = serde_json::to_string(&[PatchOp::SetVisibility { visibility: Visibility::Public }]).unwrap();
    let mut spec = narrowed("PATCH", &patch_url);
    spec["contentType"] = json!("application/json");
    spec["body"] = json!(body);
    let res = app
        .http()
        .patch(&patch_url)
        .header("Authorization", sign(spec).await.authorization)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Narrowed to what it needs, the same client may.
    let mut spec = temporary("wide", &token, "GET", &url, &full(&["*"]));
    spec["authorizedScopes"] = json!(full(&[INTERNAL]));
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 302);
}

async fn authorized_scopes_beyond_the_credentials_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = register(&app, "narrow", &["download/public"]).await;
    let url = app.at("/__permissions__");
    let spec = json!({"clientId": "narrow", "accessToken": token, "method": "GET", "url": url,
                      "authorizedScopes": ["some:other:scope"]});
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 401);
    let mut spec = temporary("narrow", &token, "GET", &url, &full(&["download/public"]));
    spec["authorizedScopes"] = json!(full(&[INTERNAL]));
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 401, "beyond the certificate");
}

async fn revoking_the_issuer_kills_its_temporary_credentials_on_another_replica(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let replica = app.spawn_replica().await;
    let url = internal_file(&app).await;
    let on_replica = url.replace(&app.url, &replica.url);
    let token = register(&app, "ci-issuer", &["download/*"]).await;
    let spec = temporary("ci-issuer", &token, "GET", &on_replica, &full(&[INTERNAL]));
    assert_eq!(get(&replica, &on_replica, &sign(spec.clone()).await.authorization).await.status(), 302);
    app.admin_ops().await.revoke_client("ci-issuer", "admin-cli:test").await.unwrap();
    // Within the refresh bound (TOOLTOOL_AUTH_REFRESH), a certificate made before the
    // revocation stops working on the other replica too.
    let spec = &spec;
    let replica = &replica;
    let on_replica = on_replica.as_str();
    until(
        Duration::from_secs(10),
        || async move { get(replica, on_replica, &sign(spec.clone()).await.authorization).await.status() == 401 },
        "the replica refuses the revoked issuer's temporary credentials",
    )
    .await;
}

async fn a_hawk_payload_hash_is_checked_against_the_upload_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = register(&app, "uploader", &["upload/*"]).await;
    let url = app.at("/upload");
    let body = |name: &str| {
        serde_json::to_string(&upload_request("tc upload", &[(name, name.as_bytes(), Visibility::Public)])).unwrap()
    };
    let post = |auth: String, sent: String| {
        app.http().post(&url).header("Authorization", auth).header("Content-Type", "application/json").body(sent).send()
    };
    let mut spec = temporary("uploader", &token, "POST", &url, &full(&["upload/public"]));
    spec["contentType"] = json!("application/json");
    spec["body"] = json!(body("signed.bin"));
    let tampered = post(sign(spec.clone()).await.authorization, body("swapped.bin")).await.unwrap();
    assert_eq!(tampered.status(), 401);
    let res = post(sign(spec).await.authorization, body("signed.bin")).await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"]["author"], "uploader");
}

async fn malformed_hawk_timestamps_and_ext_are_answered_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = register(&app, "hk", &["download/*"]).await;
    let url = app.at("/__permissions__");
    let signed = sign(json!({"clientId": "hk", "accessToken": token, "method": "GET", "url": url})).await;
    assert_eq!(get(&app, &url, &signed.authorization).await.status(), 200, "the header as made");
    // u64::MAX passes a plain u64 parse and overflows the clock; the `, ,` form once slipped
    // past the guard.
    let huge_ts = regex_replace_ts(&signed.authorization, "18446744073709551615");
    let padded = huge_ts.replacen(", ts=", ", , ts=", 1);
    assert!(padded.contains(", , ts=\"18446744073709551615\""), "{padded}");
    for header in [
        huge_ts,
        padded,
        sign(json!({"clientId": "hk", "accessToken": token, "method": "GET", "url": url, "ext": "not*base64"}))
            .await
            .authorization,
        sign(json!({"clientId": "hk", "accessToken": token, "method": "GET", "url": url, "ext": "WzEsMl0="}))
            .await
            .authorization,
    ] {
        let res = get(&app, &url, &header).await;
        assert_eq!(res.status(), 401, "{header}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
    }
}

/// `header` with its `ts` attribute set to `ts`.
fn regex_replace_ts(header: &str, ts: &str) -> String {
    let start = header.find("ts=\"").unwrap() + 4;
    let end = start + header[start..].find('"').unwrap();
    format!("{}{ts}{}", &header[..start], &header[end..])
}

/// The stand-in deployment, killed on drop.
struct StandIn {
    child: tokio::process::Child,
    root: String,
}

impl StandIn {
    async fn start(clients: Value) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), clients.to_string()).unwrap();
        let mut child = tokio::process::Command::new(python())
            .arg(script("tc_auth_standin.py"))
            .arg(file.path())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tc_auth_standin.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).await.unwrap();
        let port: u16 = line.trim().parse().expect("the stand-in prints its port");
        Self { child, root: format!("http://127.0.0.1:{port}") }
    }

    async fn delay(&self, seconds: f64) {
        let res = reqwest::Client::new().post(format!("{}/control", self.root)).json(&json!({"delay": seconds}));
        assert_eq!(res.send().await.unwrap().status(), 200);
    }

    async fn calls(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/calls", self.root)).await.unwrap().json().await.unwrap();
        v["calls"].as_u64().unwrap()
    }
}

async fn with_deployment(backend: Backend, standin: &StandIn) -> TestApp {
    let root = standin.root.clone();
    TestApp::spawn_with(backend, move |s| {
        s.taskcluster_root_url = Some(root);
        s.taskcluster_timeout = Duration::from_secs(2);
    })
    .await
}

async fn a_client_known_only_to_the_taskcluster_deployment_downloads_an_internal_file(backend: Backend) {
    let standin = StandIn::start(
        json!({"task/abc": {"accessToken": "tc-secret", "scopes": full(&[INTERNAL, "upload/internal"])}}),
    )
    .await;
    let app = with_deployment(backend, &standin).await;
    let url = internal_file(&app).await;
    let spec = json!({"clientId": "task/abc", "accessToken": "tc-secret", "method": "GET", "url": url});
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 302);
    assert_eq!(standin.calls().await, 1);
    // Locally registered clients keep working beside it, without asking the deployment.
    let token = register(&app, "local", &[INTERNAL]).await;
    let spec = json!({"clientId": "local", "accessToken": token, "method": "GET", "url": url});
    assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 302);
    assert_eq!(standin.calls().await, 1);
    // The deployment's payload hash binds the body.
    let upload = app.at("/upload");
    let body = serde_json::to_string(&upload_request("m", &[("a", b"a", Visibility::Internal)])).unwrap();
    let spec = json!({"clientId": "task/abc", "accessToken": "tc-secret", "method": "POST", "url": upload,
                      "contentType": "application/json", "body": body});
    let post = |auth: String, sent: String| {
        app.http()
            .post(&upload)
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .body(sent)
            .send()
    };
    let res = post(sign(spec.clone()).await.authorization, body.replace("\"m\"", "\"n\"")).await.unwrap();
    assert_eq!(res.status(), 401);
    let res = post(sign(spec).await.authorization, body.clone()).await.unwrap();
    assert_eq!(res.status(), 200, "the body it signed");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"]["author"], "task/abc");
    // A header replayed (or sent) minutes later is refused here, though the deployment would
    // take 15 minutes of skew and keeps no nonces.
    let stale =
        json!({"clientId": "task/abc", "accessToken": "tc-secret", "method": "GET", "url": url, "ts_offset": -180});
    assert_eq!(get(&app, &url, &sign(stale).await.authorization).await.status(), 401);
}

async fn a_client_the_deployment_refuses_is_401(backend: Backend) {
    let standin = StandIn::start(json!({"task/abc": {"accessToken": "tc-secret", "scopes": []}})).await;
    let app = with_deployment(backend, &standin).await;
    let url = app.at("/__permissions__");
    for (id, key) in [("task/abc", "wrong-secret"), ("task/unknown", "tc-secret")] {
        let spec = json!({"clientId": id, "accessToken": key, "method": "GET", "url": url});
        assert_eq!(get(&app, &url, &sign(spec).await.authorization).await.status(), 401, "{id}");
    }
    assert_eq!(standin.calls().await, 2);
}

async fn a_deployment_that_does_not_answer_is_503_within_the_timeout(backend: Backend) {
    let mut standin = StandIn::start(json!({"task/abc": {"accessToken": "tc-secret", "scopes": []}})).await;
    let app = with_deployment(backend, &standin).await;
    let url = app.at("/__permissions__");
    let spec = json!({"clientId": "task/abc", "accessToken": "tc-secret", "method": "GET", "url": url});
    standin.delay(10.0).await;
    let started = std::time::Instant::now();
    let res = get(&app, &url, &sign(spec.clone()).await.authorization).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "identity-unavailable");
    assert!(started.elapsed() < Duration::from_secs(9), "answered within the bound, not after the deployment");
    standin.child.kill().await.unwrap();
    let res = get(&app, &url, &sign(spec).await.authorization).await;
    assert_eq!(res.status(), 503, "a stopped deployment");
}

async fn forwarded_host_and_port_count_only_when_trusted(backend: Backend) {
    for trusted in [false, true] {
        let app = TestApp::spawn_with(backend, |s| s.trust_forwarded = trusted).await;
        let url = internal_file(&app).await;
        let path = url.strip_prefix(&app.url).unwrap().to_owned();
        let token = register(&app, "ci-issuer", &["download/*"]).await;
        // As the Taskcluster proxy signs behind a TLS-terminating load balancer: the public
        // name, port 443.
        let public = format!("https://tooltool.example{path}");
        let signed = sign(temporary("ci-issuer", &token, "GET", &public, &full(&[INTERNAL]))).await;
        let res = app
            .http()
            .get(&url)
            .header("Host", "tooltool.example")
            .header("X-Forwarded-Proto", "https")
            .header("Authorization", &signed.authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), if trusted { 302 } else { 401 }, "trusted: {trusted}");
        // X-Forwarded-Port gives the port when trusted; a header captured for another host never
        // passes.
        let signed = sign(temporary(
            "ci-issuer",
            &token,
            "GET",
            &format!("https://tooltool.example:8443{path}"),
            &full(&[INTERNAL]),
        ))
        .await;
        let res = app
            .http()
            .get(&url)
            .header("Host", "tooltool.example")
            .header("X-Forwarded-Port", "8443")
            .header("Authorization", &signed.authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), if trusted { 302 } else { 401 }, "X-Forwarded-Port, trusted: {trusted}");
        for (name, value) in [("X-Forwarded-Host", "other.example"), ("Forwarded", "host=other.example;proto=https")] {
            let captured = format!("https://other.example{path}");
            let other = sign(temporary("ci-issuer", &token, "GET", &captured, &full(&[INTERNAL]))).await;
            let res = app
                .http()
                .get(&url)
                .header(name, value)
                .header("X-Forwarded-Proto", "https")
                .header("Authorization", &other.authorization)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401, "{name} never names the host under the MAC, trusted: {trusted}");
        }
    }
}

async fn the_projects_client_signs_with_hawk_and_never_sends_the_access_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let recorder = Proxy::start(&app.url).await;
    recorder.api([Action::Status(404, vec![]), Action::Status(404, vec![]), Action::Status(404, vec![])]);
    let dir = tempfile::tempdir().unwrap();
    let secret = "tc-access-token-that-must-stay-home";
    std::fs::write(dir.path().join("auth.json"), json!({"clientId": "ci", "accessToken": secret}).to_string()).unwrap();
    let data = b"wanted";
    let entry = tooltool_e2e::manifest_entry("wanted.bin", data);
    std::fs::write(dir.path().join("manifest.tt"), serde_json::to_string(&vec![entry]).unwrap()).unwrap();
    let url = format!("{}/", recorder.url);
    tooltool_cli(dir.path(), &["--url", &url, "--authentication-file", "auth.json", "fetch"]).await;
    let seen = recorder.log();
    assert!(!seen.is_empty(), "the client asked the server");
    for request in &seen {
        let auth = request.header("authorization").expect("every request to the server is signed");
        assert!(auth.starts_with("Hawk ") && auth.contains(r#"id="ci""#), "{auth}");
        for (name, value) in &request.headers {
            assert!(!value.contains(secret), "{name} carries the access token");
        }
        assert!(!request.path.contains(secret));
    }
    // And never over plain http:// to another machine.
    let code =
        tooltool_cli(dir.path(), &["--url", "http://tooltool.example/", "--authentication-file", "auth.json", "fetch"])
            .await;
    assert_eq!(code, 2);
}
