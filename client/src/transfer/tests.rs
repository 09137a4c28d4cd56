//! The transfer engine's unit tests, against the hand-made server of [`crate::test_server`]:
//! what a download sends where, what a mismatch leaves behind, and how a `PUT` is retried.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tooltool_proto::Digest;

use super::{Blob, Downloads, Servers, download, upload};
use crate::ApiClient;
use crate::error::Error;
use crate::progress::Silent;
use crate::retry::RetryPolicy;
use crate::test_server::{SIG, TOKEN, blob_server, client, digest_of, dir_entries, file_info, reply, serve};

/// Downloads `digest` from `client` into `dest` through [`download`], as `fetch` does without a
/// cache: into `.<name>.part` beside `dest`, with the default retry policy.
async fn download_to(client: &ApiClient, digest: &Digest, size: Option<u64>, dest: &Path) -> Result<u64, Error> {
    let name = dest.file_name().expect("a file path").to_string_lossy().into_owned();
    let part = dest.with_file_name(format!(".{name}.part"));
    let blob = Blob { name, digest: digest.clone(), size, sha256: None };
    download_blob(client, &blob, &part, dest).await
}

/// Downloads `blob` into `part`, then `dest`, through [`download`].
async fn download_blob(client: &ApiClient, blob: &Blob, part: &Path, dest: &Path) -> Result<u64, Error> {
    let servers = Servers::new([client.clone()]);
    let via = Downloads { servers: &servers, retry: &RetryPolicy::default(), region: None, progress: &Silent };
    let never = || -> BoxFuture<'_, Result<bool, Error>> { Box::pin(async { Ok(false) }) };
    download(via, blob, part, dest, &never).await
}

/// With a sha256 to match (a signed target's), bytes of the right size and sha512 but another
/// sha256 are not renamed into place.
#[tokio::test]
async fn a_download_must_have_the_sha256_asked_for_too() {
    let data: &'static [u8] = b"bytes with a signed sha256";
    let (base, _) = blob_server(data).await;
    let c = client(&base);
    let dir = tempfile::tempdir().unwrap();
    let (dest, part) = (dir.path().join("s"), dir.path().join(".s.part"));
    let sha256 = tooltool_sha512::hash_reader_both(&mut &data[..]).unwrap().sha256;
    let mut blob = Blob { name: "s".into(), digest: digest_of(data), size: Some(data.len() as u64), sha256: None };
    blob.sha256 = Some("0".repeat(64));
    let err = download_blob(&c, &blob, &part, &dest).await.unwrap_err();
    assert!(err.to_string().contains(&format!("sha256 {sha256}, the signed target says {}", "0".repeat(64))), "{err}");
    assert!(!dest.exists());
    blob.sha256 = Some(sha256);
    assert_eq!(download_blob(&c, &blob, &part, &dest).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[tokio::test]
async fn download_sends_the_token_to_the_server_only() {
    let data: &'static [u8] = b"hello tooltool";
    let digest = digest_of(data);
    let (base, log) = blob_server(data).await;
    let c = client(&base);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("hello.txt");

    let r = c.download_redirect(digest.as_str(), Some("eu")).await.unwrap();
    assert_eq!(r.status, 302);
    assert!(r.location.starts_with(&format!("{base}storage/")), "{}", r.location);
    let r = c.head_redirect(digest.as_str(), None).await.unwrap();
    assert_eq!(r.status, 302);

    let n = download_to(&c, &digest, Some(data.len() as u64), &dest).await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(dir_entries(dir.path()), vec!["hello.txt".to_owned()]);

    let log = log.lock().unwrap().clone();
    let methods: Vec<_> = log.iter().map(|s| (s.method.as_str(), s.path())).collect();
    let redirect_path = format!("/sha512/{digest}");
    let storage_path = format!("/storage/{digest}");
    assert_eq!(
        methods,
        vec![
            ("GET", redirect_path.as_str()),
            ("HEAD", redirect_path.as_str()),
            ("GET", redirect_path.as_str()),
            ("GET", storage_path.as_str()),
        ]
    );
    assert_eq!(log[0].target, format!("/sha512/{digest}?region=eu"));
    for s in &log[..3] {
        assert_eq!(s.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
    }
    assert_eq!(log[3].header("authorization"), None);
}

#[tokio::test]
async fn download_mismatch_leaves_no_file() {
    let data: &'static [u8] = b"not what you asked for";
    let (base, _) = blob_server(data).await;
    let c = client(&base);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x");
    let wanted = digest_of(b"something else");

    let err = download_to(&c, &wanted, None, &dest).await.unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("sha512"), "{err}");
    assert!(!err.to_string().contains(SIG), "{err}");

    let right = digest_of(data);
    for size in [3, 1000] {
        let err = download_to(&c, &right, Some(size), &dest).await.unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
        assert!(!err.to_string().contains(SIG), "{err}");
    }
    assert!(dir_entries(dir.path()).is_empty(), "{:?}", dir_entries(dir.path()));

    // A file already in place is replaced only by verified bytes.
    std::fs::write(&dest, b"old").unwrap();
    assert!(download_to(&c, &wanted, None, &dest).await.is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    download_to(&c, &right, None, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[tokio::test]
async fn the_upload_engine_retries_a_put_after_the_retry_after_it_was_given() {
    let data = b"upload me".to_vec();
    let d = digest_of(&data);
    let info = serde_json::to_vec(&file_info(&d, data.len() as u64)).unwrap();
    let puts = Arc::new(Mutex::new(Vec::<std::time::Instant>::new()));
    let puts2 = puts.clone();
    let (base, log) = serve(move |_, req| match req.method.as_str() {
        "PUT" => {
            let mut p = puts2.lock().unwrap();
            p.push(std::time::Instant::now());
            match p.len() {
                1 => reply(503, &[("Retry-After", "1")], "slow down"),
                _ => reply(200, &[], ""),
            }
        }
        _ => reply(200, &[], info.clone()),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, &data).unwrap();
    // Backoff alone would wait 10 ms: the server's Retry-After must win.
    let retry = RetryPolicy { base_delay: Duration::from_millis(10), ..RetryPolicy::default() };
    let blob = Blob { name: "f".into(), digest: d.clone(), size: Some(data.len() as u64), sha256: None };
    upload(&client(&base), &format!("{base}put?sig={SIG}"), &path, &blob, &retry, &Silent).await.unwrap();
    let p = puts.lock().unwrap().clone();
    assert_eq!(p.len(), 2);
    assert!(p[1] - p[0] >= Duration::from_secs(1), "Retry-After not honoured: {:?}", p[1] - p[0]);
    let log = log.lock().unwrap().clone();
    let calls: Vec<_> = log.iter().map(|s| (s.method.as_str(), s.path())).collect();
    let complete = format!("/upload/complete/sha512/{d}");
    assert_eq!(calls, [("PUT", "/put"), ("PUT", "/put"), ("GET", complete.as_str())]);
    assert_eq!(log[1].body, data);
}
