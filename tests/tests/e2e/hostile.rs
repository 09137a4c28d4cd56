//! Hostile input the protocol names: invalid credentials on the open routes (401, never
//! anonymous), repeated JSON member names at any depth (400), JSON bodies under another
//! Content-Type (415), an unconfigured upload region (400). Nothing of a refused batch is
//! recorded.

use serde_json::json;
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of};

backend_tests!(
    invalid_credentials_are_401_on_the_open_routes,
    repeated_member_names_are_400_and_record_nothing,
    json_routes_refuse_other_content_types_with_415,
    an_unconfigured_upload_region_is_400,
);

/// A token with `alg: none`: header `{"alg":"none","typ":"JWT"}`, a plausible payload, no signature.
const ALG_NONE: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJldmUiLCJzY29wZXMiOlsiKiJdfQ.";

async fn problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

async fn invalid_credentials_are_401_on_the_open_routes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("open.txt", b"open to all", Visibility::Public).await;
    let batch_id = app.anonymous().search_batches("test upload").await.unwrap()[0].id;
    let routes = [
        format!("/file/sha512/{d}"),
        "/file?q=open".to_owned(),
        "/upload?q=test".to_owned(),
        format!("/upload/{batch_id}"),
        format!("/sha512/{d}"),
    ];
    for path in &routes {
        let anonymous = app.http().get(app.at(path)).send().await.unwrap();
        assert!(matches!(anonymous.status().as_u16(), 200 | 302), "{path}: anonymous is {}", anonymous.status());
        for header in [format!("Bearer {ALG_NONE}"), "Bearer not-a-token".to_owned(), "Basic dXNlcjpwdw==".to_owned()] {
            let res = app.http().get(app.at(path)).header("Authorization", &header).send().await.unwrap();
            let body = problem(res, 401).await;
            assert_eq!(body["detail"], "The credentials presented are not valid", "{path} with {header}");
        }
    }
    // A malformed digest is still 400 before the credentials are looked at.
    let res = app.http().get(app.at("/file/sha512/nope")).bearer_auth(ALG_NONE).send().await.unwrap();
    assert_eq!(problem(res, 400).await["detail"], "Invalid sha512 digest");
}

async fn repeated_member_names_are_400_and_record_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let file = |data: &[u8]| json!({"size": data.len(), "digest": digest_of(data).as_str(), "algorithm": "sha512", "visibility": "public"});
    let (a, b) = (file(b"first a"), file(b"second a"));
    let bodies = [
        // Two files of one name: serde's map would keep the second silently.
        format!(r#"{{"message": "m", "files": {{"a": {a}, "a": {b}}}}}"#),
        // A repeated member inside one file's declaration.
        format!(
            r#"{{"message": "m", "files": {{"a": {{"size": 7, "size": 7, "digest": "{}", "algorithm": "sha512", "visibility": "public"}}}}}}"#,
            digest_of(b"first a")
        ),
        // A repeated top-level member.
        format!(r#"{{"message": "m", "message": "n", "files": {{"a": {a}}}}}"#),
    ];
    for body in bodies {
        let res = app
            .http()
            .post(app.at("/upload"))
            .bearer_auth(app.token("u", &["upload/*"]))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let p = problem(res, 400).await;
        assert_eq!(p["code"], "invalid-json", "{body}");
        assert!(p["detail"].as_str().unwrap().contains("given twice"), "{p}");
    }
    assert!(app.anonymous().search_batches("").await.unwrap().is_empty(), "nothing of a refused batch is recorded");
    for data in [b"first a".as_slice(), b"second a"] {
        let res = app.http().get(app.at(&format!("/file/sha512/{}", digest_of(data)))).send().await.unwrap();
        assert_eq!(res.status(), 404);
    }

    // PATCH bodies go through the same reader.
    let d = app.upload("p", b"patched", Visibility::Internal).await;
    let res = app
        .http()
        .patch(app.at(&format!("/file/sha512/{d}")))
        .bearer_auth(app.token("m", &["manage"]))
        .header("Content-Type", "application/json")
        .body(r#"[{"op": "set_visibility", "visibility": "public", "visibility": "internal"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 400).await["code"], "invalid-json");
    assert_eq!(app.anonymous().get_file(d.as_str()).await.unwrap().visibility, Visibility::Internal);
}

async fn json_routes_refuse_other_content_types_with_415(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("ct", b"content types", Visibility::Internal).await;
    let token = app.token("admin", &["*"]);
    let batch = json!({"message": "m", "files": {"x": {"size": 1, "digest": digest_of(b"x").as_str(),
                        "algorithm": "sha512", "visibility": "public"}}})
    .to_string();
    let patch = json!([{"op": "set_visibility", "visibility": "public"}]).to_string();
    let derive = json!({"scopes": ["download/public"], "expires_in": 60}).to_string();
    let requests = [
        (reqwest::Method::POST, "/upload".to_owned(), batch),
        (reqwest::Method::PATCH, format!("/file/sha512/{d}"), patch),
        (reqwest::Method::POST, "/token".to_owned(), derive),
    ];
    for (method, path, body) in &requests {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=z"),
            None,
        ] {
            let mut req = app.http().request(method.clone(), app.at(path)).bearer_auth(&token).body(body.clone());
            if let Some(ct) = content_type {
                req = req.header("Content-Type", ct);
            }
            let p = problem(req.send().await.unwrap(), 415).await;
            assert_eq!(p["code"], "unsupported-media-type", "{method} {path} as {content_type:?}");
            assert_eq!(p["title"], "415 Unsupported Media Type: The request body must be sent as application/json");
        }
        for content_type in ["application/json; charset=utf-8", "application/merge-patch+json"] {
            let res = app
                .http()
                .request(method.clone(), app.at(path))
                .bearer_auth(&token)
                .header("Content-Type", content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{method} {path} as {content_type}");
        }
    }
    let recorded = app.anonymous().search_batches("").await.unwrap();
    assert_eq!(recorded.iter().filter(|b| b.message == "m").count(), 2, "only the two JSON batches were recorded");
}

async fn an_unconfigured_upload_region_is_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"message": "m", "files": {"r": {"size": 1, "digest": digest_of(b"r").as_str(),
                       "algorithm": "sha512", "visibility": "public"}}});
    let res = app
        .http()
        .post(app.at("/upload?region=mars-north-1"))
        .bearer_auth(app.token("u", &["upload/*"]))
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = problem(res, 400).await;
    assert_eq!(p["code"], "unknown-region");
    assert!(app.anonymous().search_batches("").await.unwrap().is_empty());
    let region = app.state.blobs.for_upload(None).unwrap().region().to_owned();
    let res = app
        .http()
        .post(app.at(&format!("/upload?region={region}")))
        .bearer_auth(app.token("u", &["upload/*"]))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
