//! Two server replicas on one PostgreSQL database: a revocation made by the admin reaches the
//! other replica within the refresh interval, without a database round trip per request.

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
