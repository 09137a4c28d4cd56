//! The unit tests of [`ApiClient`] and of reading answers, against the hand-made server of
//! [`crate::test_server`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tooltool_proto::{PatchOp, Visibility, Wrapped};
use url::Url;

use super::response::{MAX_ERROR_BODY, parse_retry_after, retry_after, scrub_storage_body};
use super::{ApiClient, Completion, Redirect};
use crate::error::Error;
use crate::test_server::{SIG, TOKEN, client, digest_of, file_info, problem_json, reply, serve};

#[test]
fn base_url_is_normalized() {
    for (given, expected) in [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ("https://h/tooltool", "https://h/tooltool/"),
        ("https://h/tooltool/?x=1#f", "https://h/tooltool/"),
    ] {
        let c = ApiClient::new(given, None).unwrap();
        assert_eq!(c.base_url(), expected);
    }
    let c = ApiClient::new("https://h/prefix", None).unwrap();
    let d = "a".repeat(128);
    assert_eq!(c.route(&["sha512", &d]).as_str(), format!("https://h/prefix/sha512/{d}"));
    assert_eq!(
        c.route(&["upload", "complete", "sha512", "a b/c"]).as_str(),
        "https://h/prefix/upload/complete/sha512/a%20b%2Fc"
    );
    for bad in ["", "not a url", "ftp://h/", "mailto:x@y"] {
        assert!(matches!(ApiClient::new(bad, None), Err(Error::Protocol(_))), "{bad}");
    }
}

#[test]
fn debug_hides_token_and_signature() {
    let c = client("https://h:1/");
    let shown = format!("{c:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let r = Redirect { status: 302, location: format!("https://s3/x?sig={SIG}") };
    let shown = format!("{r:?}");
    assert!(!shown.contains(SIG), "{shown}");
    assert!(shown.contains("https://s3/x"), "{shown}");
}

#[test]
fn storage_bodies_are_scrubbed() {
    let url = Url::parse(&format!("https://b.s3.amazonaws.com/k?X-Amz-Signature={SIG}&a=b")).unwrap();
    let body = format!(
        "<Error><Code>SignatureDoesNotMatch</Code><SignatureProvided>{SIG}</SignatureProvided>\
         <StringToSign>AWS4 whatever</StringToSign><CanonicalRequest>PUT /k X-Amz-Signature={SIG}</CanonicalRequest>\
         <Other>{SIG}</Other></Error>"
    );
    let s = scrub_storage_body(&body, &url);
    assert!(!s.contains(SIG), "{s}");
    assert!(!s.contains("AWS4 whatever"), "{s}");
    assert!(s.contains("SignatureDoesNotMatch"), "{s}");
}

#[tokio::test]
async fn server_errors_become_api_errors() {
    let (base, _) = serve(|_, req| match req.path() {
        "/sha512/missing" => {
            reply(404, &[("Content-Type", "application/problem+json")], problem_json(404, "Not Found", "no such file"))
        }
        "/sha512/nolocation" => reply(302, &[], ""),
        "/file/sha512/plain" => reply(500, &[], "x".repeat(10_000)),
        "/__version__" => reply(200, &[], "{\"not\": \"a version\"}"),
        _ => reply(418, &[], ""),
    })
    .await;
    let c = client(&base);

    let err = c.download_redirect("missing", Some("r")).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.problem().unwrap().detail, "no such file");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("GET {base}sha512/missing: 404 Not Found")), "{msg}");
    assert!(!msg.contains("region"), "{msg}");

    let err = c.download_redirect("nolocation", None).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("Location"), "{err}");

    let err = c.get_file("plain").await.unwrap_err();
    let Error::Api { status, problem, body, .. } = &err else { panic!("{err:?}") };
    assert_eq!((*status, problem.is_none(), body.len()), (500, true, MAX_ERROR_BODY));

    let err = c.version().await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn network_errors_do_not_show_the_query() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(&format!("http://{addr}/"));
    let err = c.put_bytes(&format!("http://{addr}/blob?sig={SIG}"), Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    let (msg, dbg) = (err.to_string(), format!("{err:?}"));
    assert!(msg.contains(&format!("http://{addr}/blob")), "{msg}");
    assert!(!msg.contains(SIG) && !dbg.contains(SIG), "{msg} / {dbg}");
    let err = c.get_file("x").await.unwrap_err();
    assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
}

#[tokio::test]
async fn put_streams_the_file_without_credentials() {
    let (base, log) = serve(|_, req| match req.path() {
        "/ok" => reply(200, &[], ""),
        _ => reply(403, &[], format!("<Error><SignatureProvided>{SIG}</SignatureProvided></Error>")),
    })
    .await;
    let c = client(&base);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &data).unwrap();

    c.put_file(&format!("{base}ok?sig={SIG}"), &path).await.unwrap();
    c.put_bytes(&format!("{base}ok"), Bytes::from_static(b"abc")).await.unwrap();
    let err = c.put_file(&format!("{base}denied?sig={SIG}"), &path).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!err.to_string().contains(SIG) && !format!("{err:?}").contains(SIG), "{err:?}");
    let err = c.put_file(&format!("{base}ok"), &dir.path().join("missing")).await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");

    let log = log.lock().unwrap().clone();
    assert_eq!(log[0].method, "PUT");
    assert_eq!(log[0].body, data);
    assert_eq!(log[0].header("content-length"), Some("700000"));
    assert_eq!(log[0].header("transfer-encoding"), None);
    assert_eq!(log[0].header("content-type"), Some("application/octet-stream"));
    assert_eq!(log[1].body, b"abc");
    for s in &log {
        assert_eq!(s.header("authorization"), None);
    }
}

#[tokio::test]
async fn put_requires_exactly_200() {
    let (base, _) = serve(|_, _| reply(201, &[], "")).await;
    let err = client(&base).put_bytes(&format!("{base}x"), Bytes::new()).await.unwrap_err();
    assert_eq!(err.status(), Some(201));
}

#[tokio::test]
async fn complete_reports_pending_and_verified() {
    let d = digest_of(b"data");
    let info = file_info(&d, 4);
    let body = serde_json::to_vec(&info).unwrap();
    let calls = Arc::new(Mutex::new(0));
    let calls2 = calls.clone();
    let (base, log) = serve(move |_, req| {
        let mut n = calls2.lock().unwrap();
        *n += 1;
        match (req.path().rsplit('/').next().unwrap(), *n) {
            ("three", _) => reply(409, &[("X-Retry-After", "3")], ""),
            ("default", _) => reply(409, &[], ""),
            ("never", _) => reply(409, &[("X-Retry-After", "0")], ""),
            (_, 1 | 2) => reply(409, &[("X-Retry-After", "0")], ""),
            _ => reply(200, &[], body.clone()),
        }
    })
    .await;
    let c = client(&base);
    assert_eq!(c.complete_until_verified(d.as_str(), Duration::from_secs(10)).await.unwrap(), info);
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(c.complete("three").await.unwrap(), Completion::Pending { retry_after: Duration::from_secs(3) });
    assert_eq!(c.complete("default").await.unwrap(), Completion::Pending { retry_after: Duration::from_secs(1) });
    let err = c.complete_until_verified("never", Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(log.lock().unwrap()[0].target == format!("/upload/complete/sha512/{d}"), "{:?}", log.lock().unwrap()[0]);
}

#[tokio::test]
async fn search_and_patch_routes() {
    let d = digest_of(b"x");
    let info = file_info(&d, 1);
    let info_json = serde_json::to_vec(&info).unwrap();
    let list_json = serde_json::to_vec(&Wrapped { result: vec![info.clone()] }).unwrap();
    let (base, log) = serve(move |_, req| match (req.method.as_str(), req.path()) {
        ("GET", "/file") => reply(200, &[], list_json.clone()),
        ("GET", "/upload") => reply(200, &[], "{\"result\": []}"),
        ("PATCH", _) => reply(200, &[], info_json.clone()),
        ("GET", "/upload/42") => reply(404, &[], problem_json(404, "Not Found", "no batch")),
        ("GET", "/__version__") => reply(200, &[], r#"{"source":"s","version":"1","commit":"c","build":"b"}"#),
        _ => reply(400, &[], ""),
    })
    .await;
    let c = ApiClient::new(base.trim_end_matches('/'), None).unwrap();
    assert_eq!(c.search_files("gcc & co").await.unwrap(), vec![info.clone()]);
    assert!(c.search_batches("me").await.unwrap().is_empty());
    let ops = [PatchOp::SetVisibility { visibility: Visibility::Internal }, PatchOp::DeleteInstances];
    assert_eq!(c.patch_file(d.as_str(), &ops).await.unwrap(), info);
    assert_eq!(c.get_batch(42).await.unwrap_err().status(), Some(404));
    assert_eq!(c.version().await.unwrap().version, "1");

    let log = log.lock().unwrap().clone();
    assert_eq!(log[0].target, "/file?q=gcc+%26+co");
    assert_eq!(log[1].target, "/upload?q=me");
    assert_eq!(log[2].target, format!("/file/sha512/{d}"));
    let sent: Vec<PatchOp> = serde_json::from_slice(&log[2].body).unwrap();
    assert_eq!(sent, ops);
    assert!(log.iter().all(|s| s.header("authorization").is_none()));
}

#[test]
fn retry_after_takes_seconds_or_an_http_date() {
    assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
    let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let left = parse_retry_after(&soon).unwrap();
    assert!(left > Duration::from_secs(27) && left <= Duration::from_secs(30), "{left:?}");
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a past date: now");
    assert_eq!(parse_retry_after("soon"), None);
    assert_eq!(parse_retry_after("-5"), None);
}

#[test]
fn retry_after_prefers_the_standard_header() {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-retry-after", "7".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    h.insert("retry-after", "3".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
}
