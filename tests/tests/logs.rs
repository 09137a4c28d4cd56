//! Credentials never reach the logs: every line the process writes (server and client, at debug
//! level) is captured while tokens, Hawk headers and signed URLs are used, then searched.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tooltool_api::auth::hawk::{RequestParts, client_header};
use tooltool_api::time::now;
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, backend_tests, download_to, upload_request};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt().with_env_filter("debug").with_ansi(false).with_writer(move || writer.clone()).init();
        logs
    })
}

backend_tests!(credentials_and_signed_urls_never_appear_in_logs);

/// The query values of a URL: signatures, credentials, expiry.
fn query_secrets(url: &str) -> Vec<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query.split('&').filter_map(|kv| kv.split_once('=')).map(|(_, v)| v.to_owned()).filter(|v| v.len() >= 32).collect()
}

async fn credentials_and_signed_urls_never_appear_in_logs(backend: Backend) {
    let logs = capture();
    let app = TestApp::spawn(backend).await;
    let scopes = vec!["*".to_string()];
    let creds =
        app.admin_ops().await.create_client("logged", &scopes, Duration::from_secs(600), "", "t").await.unwrap();
    let client = app.client_with_token(&creds.access_token);
    let data = b"log me not";
    let batch = client.upload_batch(&upload_request("m", &[("f", data, Visibility::Internal)])).await.unwrap();
    let put_url = batch.files["f"].put_url.clone().unwrap();
    client.put_bytes(&put_url, bytes::Bytes::from_static(data)).await.unwrap();
    let digest = batch.files["f"].digest.clone();
    client.complete_until_verified(digest.as_str(), Duration::from_secs(30)).await.unwrap();
    let location = client.download_redirect(digest.as_str(), None).await.unwrap().location;
    let dir = tempfile::tempdir().unwrap();
    download_to(&client, &digest, None, &dir.path().join("f")).await.unwrap();
    // A refused token and a Hawk request are logged too; their secrets must not be.
    let _ = app.client_with_token("refused.token.value-0123456789").download_redirect(digest.as_str(), None).await;
    let port = app.url.rsplit(':').next().unwrap().parse().unwrap();
    let path = format!("/sha512/{digest}");
    let parts = RequestParts { method: "GET", resource: &path, host: "127.0.0.1", port };
    let hawk = client_header("logged", &creds.access_token, &parts, now(), "n0nce1", None);
    let res = app.http().get(app.at(&path)).header("Authorization", &hawk).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let mac = hawk.split("mac=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("request"), "the capture works: {} bytes", text.len());
    let token_signature = creds.access_token.rsplit('.').next().unwrap().to_owned();
    let mut secrets = vec![creds.access_token.clone(), token_signature, "refused.token.value-0123456789".into(), mac];
    secrets.extend(query_secrets(&put_url));
    secrets.extend(query_secrets(&location));
    assert!(secrets.len() >= 5, "{secrets:?}");
    for secret in secrets {
        assert!(!text.contains(&secret), "a secret appears in the logs: {}…", &secret[..8.min(secret.len())]);
    }
}
