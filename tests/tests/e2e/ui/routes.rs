//! The admin page's routes over plain HTTP, and the API addition it needed
//! (`GET /file/sha512/<digest>/batches`).

use tooltool_e2e::proto::{FileBatch, Visibility, Wrapped};
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, upload_request};

const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_routes_serve_the_page_and_its_files_under_a_strict_policy() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let http = app.http();
    for path in ["/ui/", "/ui/?q=gcc", "/ui/file/abc", "/ui/batch/1", "/ui/audit", "/ui/no/such/page"] {
        let res = http.get(app.at(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8", "{path}");
        assert_eq!(res.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        assert_eq!(res.headers()["cache-control"], "no-cache");
        let body = res.text().await.unwrap();
        assert!(body.contains(r#"<script type="module" src="/ui/assets/app.js"></script>"#), "{path}");
        assert!(
            body.contains(r#"<meta name="tooltool-scope-prefix" content="project:releng:services/tooltool/api">"#),
            "the server writes its scope prefix into the page"
        );
    }
    let res = http.get(app.at("/ui")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/ui/");

    let mut total = 0;
    for (name, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("session.js", "text/javascript; charset=utf-8"),
        ("dom.js", "text/javascript; charset=utf-8"),
        ("views.js", "text/javascript; charset=utf-8"),
        ("actions.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let res = http.get(app.at(&format!("/ui/assets/{name}"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "{name}");
        assert_eq!(res.headers()["content-type"], ty, "{name}");
        assert_eq!(res.headers()["content-security-policy"], CSP, "{name}");
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        total += res.bytes().await.unwrap().len();
        let again = http.get(app.at(&format!("/ui/assets/{name}"))).header("If-None-Match", &etag).send().await;
        assert_eq!(again.unwrap().status(), 304, "{name} revalidates");
    }
    assert!(total < 64 * 1024, "the page stays small: {total} bytes");

    let res = http.get(app.at("/ui/assets/nope.js")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = http.post(app.at("/ui/")).send().await.unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_opening_the_bare_address_is_sent_to_the_admin_page_and_an_api_caller_gets_404() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let http = app.http();
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let res = http.request(method.clone(), app.at("/")).header("Accept", browser).send().await.unwrap();
        assert_eq!(res.status(), 302, "{method}");
        assert_eq!(res.headers()["location"], "/ui/", "{method}");
        assert_eq!(res.headers()["vary"], "Accept", "{method}");
    }
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut req = http.get(app.at("/"));
        if let Some(accept) = accept {
            req = req.header("Accept", accept);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404, "{accept:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json", "{accept:?}");
    }
    let res = http.post(app.at("/")).header("Accept", browser).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

backend_tests!(file_batches_lists_each_batch_and_name_newest_first);

async fn file_batches_lists_each_batch_and_name_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data: &[u8] = b"shared bytes";
    let d = app.upload("first.bin", data, Visibility::Public).await;
    let admin = app.admin();
    let req =
        upload_request("again", &[("second.bin", data, Visibility::Public), ("alias.bin", data, Visibility::Public)]);
    let second = admin.upload_batch(&req).await.unwrap();
    let res = app.http().get(app.at(&format!("/file/sha512/{d}/batches"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Wrapped<Vec<FileBatch>> = res.json().await.unwrap();
    let got: Vec<(i64, &str, &str, &str)> =
        body.result.iter().map(|b| (b.id, b.filename.as_str(), b.author.as_str(), b.message.as_str())).collect();
    let first_id = second.id - 1;
    assert_eq!(
        got,
        [
            (second.id, "alias.bin", "admin@example.com", "again"),
            (second.id, "second.bin", "admin@example.com", "again"),
            (first_id, "first.bin", "admin@example.com", "test upload"),
        ]
    );
    assert!(body.result.iter().all(|b| b.uploaded.ends_with('Z')));

    let status = |path: String| {
        let http = app.http();
        let url = app.at(&path);
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/file/sha512/nope/batches".into()).await, 400);
    assert_eq!(status(format!("/file/sha512/{}/batches", digest_of(b"never uploaded"))).await, 404);
    let forged =
        app.http().get(app.at(&format!("/file/sha512/{d}/batches"))).bearer_auth("forged.token.here").send().await;
    assert_eq!(forged.unwrap().status(), 401, "present but invalid credentials are refused here too");
}
