//! Two server replicas on one PostgreSQL database: a revocation made by the admin reaches the
//! other replica within the refresh interval, without a database round trip per request; a Hawk
//! nonce used on one replica is refused on the other.

use std::time::{Duration, Instant};

use tooltool::{ApiClient, Credentials};
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, expect_status, upload_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_replica_reaches_the_other_on_the_same_postgres() {
    let a = TestApp::spawn_with(Backend::PostgresS3, |s| s.auth_refresh = Duration::from_millis(250)).await;
    let b = a.spawn_replica().await;
    assert!(!a.settings.is_sqlite());
    let scopes = vec!["upload/*".to_string(), "download/*".to_string()];
    let creds = a
        .admin_ops()
        .await
        .create_client("user@example.com", &scopes, Duration::from_secs(3600), "", "admin-cli:test")
        .await
        .unwrap();
    let path = a.data_dir.path().join("user.json");
    creds.write(&path).unwrap();
    let on = |app: &TestApp| ApiClient::new(&app.url, Some(Credentials::load(&path).unwrap())).unwrap();

    // The user uploads through replica A; replica B sees the file and the credentials.
    let data = b"uploaded before revocation";
    let batch = on(&a).upload_batch(&upload_request("m", &[("f", data, Visibility::Internal)])).await.unwrap();
    on(&a).put_bytes(batch.files["f"].put_url.as_ref().unwrap(), bytes::Bytes::from_static(data)).await.unwrap();
    let info = on(&b).complete_until_verified(batch.files["f"].digest.as_str(), Duration::from_secs(30)).await.unwrap();
    assert!(info.has_instances);
    assert_eq!(on(&b).download_redirect(info.digest.as_str(), None).await.unwrap().status, 302);

    a.admin_ops().await.revoke_client("user@example.com", "admin-cli:test").await.unwrap();
    let revoked_at = Instant::now();
    // Within a refresh interval (plus scheduling slack) replica B refuses the next request.
    tokio::time::sleep(Duration::from_millis(750)).await;
    expect_status(on(&b).download_redirect(info.digest.as_str(), None).await, 401);
    expect_status(on(&a).download_redirect(info.digest.as_str(), None).await, 401);
    expect_status(on(&b).upload_batch(&upload_request("m", &[("g", b"g", Visibility::Public)])).await, 401);
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
}

/// Behind a load balancer every replica sees the same Host: a Hawk request replayed to
/// another replica within the window is refused there too (nonces are shared in the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hawk_request_replayed_to_another_replica_is_refused() {
    use tooltool_api::auth::hawk::{RequestParts, client_header};
    use tooltool_api::time::now;

    let a = TestApp::spawn(Backend::PostgresS3).await;
    let b = a.spawn_replica().await;
    let scopes = vec!["download/*".to_string()];
    let creds =
        a.admin_ops().await.create_client("hawk@example.com", &scopes, Duration::from_secs(3600), "", "t").await;
    let key = creds.unwrap().access_token;
    let a_port: u16 = a.url.rsplit(':').next().unwrap().parse().unwrap();
    let signed = |nonce: &str| {
        let parts = RequestParts { method: "GET", resource: "/__permissions__", host: "127.0.0.1", port: a_port };
        client_header("hawk@example.com", &key, &parts, now(), nonce, None)
    };
    let send = |app: &TestApp, header: String| {
        let req = app.http().get(app.at("/__permissions__")).header("Host", format!("127.0.0.1:{a_port}"));
        async move { req.header("Authorization", header).send().await.unwrap().status().as_u16() }
    };
    // The load balancer's view: a request signed for the shared host is good on either replica.
    assert_eq!(send(&b, signed("fresh1")).await, 200);
    let header = signed("once99");
    assert_eq!(send(&a, header.clone()).await, 200);
    assert_eq!(send(&b, header.clone()).await, 401, "replayed on the other replica");
    assert_eq!(send(&a, header).await, 401, "replayed on the same replica");
}
