//! The admin page at `/ui/`: its routes over plain HTTP, then the page itself in a real browser.
//!
//! The browser is the distribution's Chromium, driven through the distribution's chromedriver
//! (`apt-get install -y --no-install-recommends chromium chromium-driver`; `scripts/test.sh`
//! installs them). Each test starts its own chromedriver on a free port with a fresh profile
//! and stops it afterwards. A missing browser or driver fails the test; it never skips.
//! Screenshots of every page at 360 px and at desktop width land in
//! `<target dir>/ui-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tooltool_e2e::proto::{FileBatch, Visibility, Wrapped};
use tooltool_e2e::{Backend, FORBIDDEN, TestApp, backend_tests, digest_of, expect_status, upload_request};

// --- The routes, over plain HTTP -------------------------------------------------------------

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

// --- The API addition: the batches that carried a file ---------------------------------------

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

// --- The page in a real browser --------------------------------------------------------------

/// Widths of the screenshots: a small phone and a desktop.
const WIDTHS: [(u32, u32); 2] = [(360, 900), (1280, 900)];

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(15);

/// Only one browser at a time: the machine is small, and Chromium is not.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chromium_binary() -> PathBuf {
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "Chromium not found: install it with `apt-get install -y --no-install-recommends chromium \
                 chromium-driver` (scripts/test.sh does so when run as root)"
            )
        })
}

/// A headless Chromium under its own chromedriver, pointed at one test server.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    driver_url: String,
    session: String,
    base: String,
    requests: std::sync::Mutex<Vec<String>>,
    closed: bool,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    async fn start(app: &TestApp) -> Self {
        let turn = ONE_BROWSER.lock().await;
        let binary = chromium_binary();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): install it with `apt-get install -y --no-install-recommends \
                     chromium chromium-driver` (scripts/test.sh does so when run as root)"
                )
            });
        let driver_url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{driver_url}/status")).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not answer on {driver_url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-dev-shm-usage", "--lang=en-US", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            ClientBuilder::new(connector).capabilities(caps).connect(&driver_url).await.expect("a browser session");
        let session = client.session_id().await.unwrap().expect("a session id");
        Self {
            client,
            driver,
            driver_url,
            session,
            base: app.url.clone(),
            requests: Default::default(),
            closed: false,
            _profile: profile,
            _turn: turn,
        }
    }

    /// Opens a path of the test server and waits until the page has drawn its view.
    async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.settled().await;
    }

    /// Waits until the view is drawn (no render in flight).
    async fn settled(&self) {
        let started = Instant::now();
        loop {
            let busy = self
                .client
                .execute("const m = document.getElementById('main'); return !m || m.hasAttribute('aria-busy') || !m.querySelector('h1');", vec![])
                .await
                .unwrap();
            if busy == Value::Bool(false) {
                return;
            }
            assert!(started.elapsed() < WAIT, "the page never finished drawing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn find(&self, css: &str) -> Element {
        self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    async fn exists(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until the element's text is exactly `expected`.
    async fn wait_text(&self, css: &str, expected: &str) {
        let started = Instant::now();
        loop {
            let els = self.client.find_all(Locator::Css(css)).await.unwrap();
            let got = match els.first() {
                Some(e) => e.text().await.unwrap_or_default(),
                None => String::new(),
            };
            if got == expected {
                return;
            }
            assert!(started.elapsed() < WAIT, "{css}: expected {expected:?}, shows {got:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The texts of every element matching `css`.
    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// A Chrome DevTools command through chromedriver.
    async fn cdp(&self, cmd: &str, params: Value) {
        let res = reqwest::Client::new()
            .post(format!("{}/session/{}/goog/cdp/execute", self.driver_url, self.session))
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{cmd}: {}", res.text().await.unwrap());
    }

    /// Full-page screenshots of the current page at each width, as `<name>-<width>.png`.
    async fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        for (width, height) in WIDTHS {
            let metrics =
                |height: u64| json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600});
            self.cdp("Emulation.setDeviceMetricsOverride", metrics(height.into())).await;
            let inner = self.js("return window.innerWidth").await;
            assert_eq!(inner, json!(width), "the viewport is {width} px wide");
            // The whole page, not only what fits the screen: as tall as its content.
            let content = self.js("return document.documentElement.scrollHeight").await.as_u64().unwrap();
            self.cdp("Emulation.setDeviceMetricsOverride", metrics(content.max(height.into()))).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
        }
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({})).await;
    }

    /// Entries of one of chromedriver's logs (`browser`, `performance`) since the last read.
    async fn log(&self, kind: &str) -> Vec<Value> {
        let res = reqwest::Client::new()
            .post(format!("{}/session/{}/se/log", self.driver_url, self.session))
            .json(&json!({"type": kind}))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        body["value"].as_array().cloned().unwrap_or_else(|| panic!("the {kind} log: {body}"))
    }

    /// Every request a document of the server made so far (its navigations included), as
    /// `METHOD URL`, from the DevTools network events; the browser's own pages (chrome://) are
    /// not the page's. Reading the log empties it, so what was read is kept.
    async fn requests(&self) -> Vec<String> {
        let mut seen = self.requests.lock().unwrap().clone();
        for entry in self.log("performance").await {
            let msg: Value = serde_json::from_str(entry["message"].as_str().unwrap()).unwrap();
            let params = &msg["message"]["params"];
            if msg["message"]["method"] == "Network.requestWillBeSent"
                && params["documentURL"].as_str().unwrap_or_default().starts_with(&self.base)
            {
                let req = &params["request"];
                seen.push(format!("{} {}", req["method"].as_str().unwrap(), req["url"].as_str().unwrap()));
            }
        }
        self.requests.lock().unwrap().clone_from(&seen);
        seen
    }

    /// Checks the console and the network, then closes the browser. `expected_failures`: the
    /// request paths the test made fail on purpose (Chromium logs "Failed to load resource" for
    /// them); any other console error, or any request to a host other than the test server,
    /// fails the test.
    async fn finish(mut self, expected_failures: &[&str]) {
        let errors: Vec<String> = self
            .log("browser")
            .await
            .iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .filter(|m| {
                let url = m.split(' ').next().unwrap_or_default();
                let path = url.strip_prefix(&self.base).unwrap_or_default().split('?').next().unwrap_or_default();
                !(m.contains("Failed to load resource: the server responded with a status of")
                    && expected_failures.contains(&path))
            })
            .collect();
        assert!(errors.is_empty(), "console errors: {errors:#?}");

        let urls = self.requests().await;
        assert!(urls.iter().any(|u| u == &format!("GET {}/ui/assets/app.js", self.base)), "the log was read: {urls:?}");
        // `data:` URLs carry their bytes and go nowhere (Chromium's own date-picker icon is one).
        let elsewhere: Vec<&String> = urls
            .iter()
            .filter(|u| {
                let url = u.split_once(' ').map_or(u.as_str(), |(_, url)| url);
                !url.starts_with(&format!("{}/", self.base)) && !url.starts_with("data:")
            })
            .collect();
        assert!(elsewhere.is_empty(), "requests to something other than the server: {elsewhere:?}");
        self.client.clone().close().await.expect("the browser closes");
        self.closed = true;
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    /// A test that failed midway still ends its browser: ask chromedriver to end the session
    /// (which quits Chromium) before chromedriver itself is killed.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        use std::io::{Read, Write};
        let addr = self.driver_url.trim_start_matches("http://");
        if let Ok(mut conn) = std::net::TcpStream::connect(addr) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!("DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", self.session);
            if conn.write_all(req.as_bytes()).is_ok() {
                let _ = conn.read_to_end(&mut Vec::new());
            }
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().expect("the target dir").to_path_buf());
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Signs in through the dialog with whatever the user would paste.
async fn sign_in(b: &Browser, pasted: &str) {
    b.click("#sign-in").await;
    b.type_into("#signin-secret", pasted).await;
    b.click("#signin-submit").await;
}

/// Every control of the current page (dialogs included) has a label a screen reader can read.
async fn assert_every_control_is_labelled(b: &Browser) {
    let unlabelled = b
        .js("return [...document.querySelectorAll('input, select, textarea, button')]\
             .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())\
             .map((e) => e.id || e.name || e.tagName)")
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

/// What the page keeps in the browser: sessionStorage, localStorage, cookies.
async fn storage(b: &Browser) -> (Value, Value, Value) {
    let v = b
        .js("return [JSON.parse(sessionStorage.getItem('tooltool.session')), localStorage.length, document.cookie]")
        .await;
    (v[0].clone(), v[1].clone(), v[2].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_search_and_follow_every_deep_link() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let gcc = app.upload("gcc-13.tar.xz", &[7u8; 3 * 1024 * 1024 / 2], Visibility::Public).await;
    let clang = app.upload("clang-18.tar.zst", b"clang bytes", Visibility::Internal).await;
    // 25 more files in one batch, so that the file results need two pages.
    let many: Vec<(String, Vec<u8>)> =
        (0..25).map(|i| (format!("lib{i:02}.so"), format!("lib {i}").into_bytes())).collect();
    let files: Vec<(&str, &[u8], Visibility)> =
        many.iter().map(|(n, d)| (n.as_str(), d.as_slice(), Visibility::Public)).collect();
    let batch = app.admin().upload_batch(&upload_request("nightly libraries", &files)).await.unwrap();

    let b = Browser::start(&app).await;
    b.open("/ui/").await;
    assert_eq!(b.text("h1").await, "Latest uploads");
    assert_eq!(b.text("#who-text").await, "Not signed in: public metadata only.");
    b.screenshots("search-latest").await;

    // By name, through the search form: files, then batches.
    b.type_into("#q", "gcc").await;
    b.click("form[role=search] button").await;
    b.wait_text("h1", "Results for “gcc”").await;
    assert_every_control_is_labelled(&b).await;
    assert!(b.client.current_url().await.unwrap().as_str().ends_with("/ui/?q=gcc"));
    assert_eq!(b.text("#files-h").await, "Files (1)");
    let row = b.texts("section[aria-labelledby=files-h] tbody td").await;
    assert_eq!(row, ["gcc-13.tar.xz", format!("{}…", &gcc.as_str()[..16]).as_str(), "1.5 MiB", "public"]);
    let size = b.find("section[aria-labelledby=files-h] .bytes").await;
    assert_eq!(size.attr("title").await.unwrap().as_deref(), Some("1,572,864 bytes"));
    assert_eq!(b.text("#batches-h").await, "Batches (0)");
    assert_eq!(b.text("section[aria-labelledby=batches-h] .empty").await, "No batch matches “gcc”.");
    b.screenshots("search-name").await;

    // By digest prefix (a deep link), which finds the internal file's metadata too.
    b.open(&format!("/ui/?q={}", &clang.as_str()[..10])).await;
    assert_eq!(b.text("#files-h").await, "Files (1)");
    assert_eq!(b.text("section[aria-labelledby=files-h] tbody td").await, "clang-18.tar.zst");

    // Batches by message, newest first; files paged 20 at a time.
    b.open("/ui/?q=nightly").await;
    assert_eq!(b.text("#batches-h").await, "Batches (1)");
    assert_eq!(
        b.texts("section[aria-labelledby=batches-h] tbody td").await[..3],
        [format!("#{}", batch.id), "admin@example.com".into(), "nightly libraries".into()]
    );
    b.open("/ui/?q=lib").await;
    assert_eq!(b.text("#files-h").await, "Files (25)");
    assert_eq!(b.texts("section[aria-labelledby=files-h] tbody tr").await.len(), 20);
    assert_eq!(b.text("nav[aria-label='Files pages'] span").await, "Page 1 of 2");
    assert_eq!(b.text("section[aria-labelledby=files-h] tbody td").await, "lib24.so", "newest first");
    b.click("nav[aria-label='Files pages'] a[rel=next]").await;
    b.wait_text("nav[aria-label='Files pages'] span", "Page 2 of 2").await;
    assert!(b.client.current_url().await.unwrap().as_str().ends_with("/ui/?q=lib&fp=2"));
    assert_eq!(b.texts("section[aria-labelledby=files-h] tbody tr").await.len(), 5);
    b.screenshots("search-paged").await;
    b.open("/ui/?q=no-such-thing").await;
    assert_eq!(b.text("section[aria-labelledby=files-h] .empty").await, "No file matches “no-such-thing”.");
    b.screenshots("search-empty").await;

    // The file page.
    b.open(&format!("/ui/file/{gcc}")).await;
    assert_eq!(b.text("h1").await, "gcc-13.tar.xz");
    assert_eq!(b.text("#digest").await, gcc.as_str());
    assert_eq!(b.text("#copy-digest").await, "Copy digest");
    assert_eq!(b.texts("#regions li").await, ["local"]);
    let dl = b.find("#download").await;
    assert_eq!(dl.attr("href").await.unwrap(), Some(format!("/sha512/{gcc}")));
    assert_eq!(dl.text().await.unwrap(), "Download gcc-13.tar.xz");
    let carried = b.texts("section[aria-labelledby=carried-h] tbody td").await;
    assert_eq!(carried[..3], [format!("#{}", batch.id - 2), "gcc-13.tar.xz".into(), "admin@example.com".into()]);
    let uploaded = b.find("section[aria-labelledby=carried-h] time").await;
    let utc = uploaded.attr("title").await.unwrap().unwrap();
    assert!(utc.ends_with(" UTC") && utc.len() == 23, "UTC on hover: {utc}");
    assert!(!b.exists("#manage-h").await, "no actions for anonymous visitors");
    b.screenshots("file").await;
    // An internal file: its metadata, but no download for anonymous visitors.
    b.open(&format!("/ui/file/{clang}")).await;
    assert!(!b.exists("#download").await);
    assert!(b.text("main").await.contains("Internal file: sign in with the download/internal scope to download it."));

    // From the file page to its batch, by keyboard-free link following.
    b.open(&format!("/ui/file/{gcc}")).await;
    b.click("section[aria-labelledby=carried-h] tbody a").await;
    b.wait_text("h1", &format!("Batch #{}", batch.id - 2)).await;
    b.open(&format!("/ui/batch/{}", batch.id)).await;
    assert_eq!(b.text("h1").await, format!("Batch #{}", batch.id));
    assert!(b.text(".facts").await.contains("nightly libraries"));
    assert_eq!(b.text("#bfiles-h").await, "Files (25)");
    b.screenshots("batch").await;

    // The audit trail needs manage; clear error states for what does not exist.
    b.open("/ui/audit").await;
    assert_eq!(b.text(".error").await, "The audit trail needs the manage scope: sign in first.");
    b.screenshots("audit-anonymous").await;
    let unknown = digest_of(b"never uploaded");
    b.open(&format!("/ui/file/{unknown}")).await;
    assert_eq!(b.text("h1").await, "Unknown file");
    assert_eq!(b.text(".error p").await, "No file has this digest.");
    b.screenshots("file-unknown").await;
    b.open("/ui/file/not-a-digest").await;
    assert_eq!(b.text(".error").await, "Invalid sha512 digest: a digest is 128 lowercase hexadecimal characters.");
    b.open("/ui/batch/999999").await;
    assert_eq!(b.text(".error").await, "No upload batch has this id.");
    b.open("/ui/nowhere").await;
    assert_eq!(b.text("h1").await, "Page not found");

    // Keyboard: the first Tab reaches the skip link, which is then visible.
    b.open("/ui/").await;
    let tab = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '\u{E004}' })
        .then(KeyAction::Up { value: '\u{E004}' });
    b.client.perform_actions(tab).await.unwrap();
    assert_eq!(b.js("return document.activeElement.textContent").await, "Skip to content");
    let outline = b.js("return getComputedStyle(document.activeElement).outlineStyle").await;
    assert_eq!(outline, "solid", "focus is visible");

    b.finish(&[&format!("/file/sha512/{unknown}"), &format!("/file/sha512/{unknown}/batches"), "/upload/999999"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_bare_token_or_a_credentials_file_then_signing_out() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let b = Browser::start(&app).await;

    // A bare token.
    let token = app.token("alice@example.com", &["download/*"]);
    b.open("/ui/").await;
    sign_in(&b, &token).await;
    b.wait_text("#who-id", "alice@example.com").await;
    assert_eq!(b.texts("#who-scopes li").await, ["download/*"]);
    let (session, local, cookies) = storage(&b).await;
    let derived = session["token"].as_str().expect("a derived token in sessionStorage").to_owned();
    assert_ne!(derived, token, "the pasted token is traded, not kept");
    assert_eq!((local, cookies), (json!(0), json!("")), "nothing in localStorage or cookies");
    let perms: Value =
        app.http().get(app.at("/__permissions__")).bearer_auth(&derived).send().await.unwrap().json().await.unwrap();
    assert_eq!(perms, json!({"client_id": "alice@example.com", "scopes": [TestApp::scope("download/*")]}));
    b.screenshots("signed-in").await;
    b.click("#sign-out").await;
    b.wait_text("#who-text", "Not signed in: public metadata only.").await;
    assert_eq!(storage(&b).await.0, Value::Null, "signing out forgets the token");

    // A credentials file, pasted as JSON.
    let creds = app
        .admin_ops()
        .await
        .create_client(
            "ci-linux",
            &["download/internal".into(), "upload/internal".into()],
            Duration::from_secs(3600),
            "ci",
            "admin-cli:test",
        )
        .await
        .unwrap();
    let file = serde_json::to_string(&creds).unwrap();
    assert!(file.starts_with(r#"{"clientId":"ci-linux","accessToken":"#));
    sign_in(&b, &file).await;
    b.wait_text("#who-id", "ci-linux").await;
    assert_eq!(b.texts("#who-scopes li").await, ["download/internal", "upload/internal"]);
    let session = storage(&b).await.0;
    assert_ne!(session["token"].as_str().unwrap(), creds.access_token);
    // It survives a reload of the tab...
    b.open("/ui/audit").await;
    assert_eq!(b.text("#who-id").await, "ci-linux");
    // ...and without manage the audit trail shows the API's refusal.
    assert_eq!(b.text(".error p").await, format!("Could not load the audit trail: 403 Forbidden: {FORBIDDEN}"));
    b.click("#sign-out").await;
    b.wait_text("#who-text", "Not signed in: public metadata only.").await;
    assert_eq!(storage(&b).await.0, Value::Null);
    b.finish(&["/audit"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_is_refused_with_a_clear_message() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let b = Browser::start(&app).await;
    b.open("/ui/").await;
    let refused = "Sign-in refused: The credentials presented are not valid. Check that you pasted the whole \
                   token or file, and that it was not revoked.";
    sign_in(&b, "forged.token.here").await;
    b.wait_text("#signin-error", refused).await;
    b.screenshots("sign-in-refused").await;
    // A forged credentials file: a real token of another server's key.
    let other = TestApp::spawn(Backend::Embedded).await;
    let foreign = other.token("mallory", &["*"]);
    b.type_into("#signin-secret", &format!(r#"{{"clientId": "mallory", "accessToken": "{foreign}"}}"#)).await;
    b.click("#signin-submit").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.wait_text("#signin-error", refused).await;
    b.type_into("#signin-secret", r#"{"clientId": "x"}"#).await;
    b.click("#signin-submit").await;
    b.wait_text("#signin-error", "The credentials file has no \"accessToken\".").await;
    b.click("#signin-cancel").await;
    assert_eq!(b.text("#who-text").await, "Not signed in: public metadata only.");
    assert_eq!(storage(&b).await.0, Value::Null);
    b.finish(&["/__permissions__"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_changes_visibility_and_deletes_copies_and_the_api_agrees() {
    let app = TestApp::spawn_with(Backend::Embedded, |s| s.auth_refresh = Duration::from_millis(100)).await;
    let d = app.upload("tool.tar.gz", b"tool bytes", Visibility::Internal).await;
    let admin = app.admin_ops().await;
    let scopes = ["manage".to_owned(), "download/*".to_owned()];
    let creds = admin.create_client("boss@example.com", &scopes, Duration::from_secs(3600), "", "admin-cli:test").await;
    let b = Browser::start(&app).await;
    b.open(&format!("/ui/file/{d}")).await;
    sign_in(&b, &serde_json::to_string(&creds.unwrap()).unwrap()).await;
    b.wait_text("#manage-h", "Manage").await;
    assert_eq!(b.text(".badge").await, "internal");
    assert_every_control_is_labelled(&b).await;
    // An internal file: the link asks for the signed URL with the session's token, then goes
    // there (the embedded store's own URL, on the same server).
    let link = b.find("#download").await;
    assert_eq!(link.text().await.unwrap(), "Download tool.tar.gz");
    link.click().await.unwrap();
    let blob = format!("GET {}/_blobs/sha512/{d}?", app.url);
    let started = Instant::now();
    while !b.requests().await.iter().any(|r| r.starts_with(&blob)) {
        assert!(started.elapsed() < WAIT, "no download: {:?}", b.requests().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.requests().await.contains(&format!("HEAD {}/sha512/{d}", app.url)));
    assert!(!b.exists("main .error").await, "{}", b.text("main .error").await);
    b.screenshots("file-manage").await;

    // Visibility: the confirmation names the file; cancelling changes nothing.
    b.click("#visibility-form button[type=submit]").await;
    b.wait_text("dialog[open] h2", "Make “tool.tar.gz” public?").await;
    b.screenshots("confirm-visibility").await;
    b.click("dialog[open] button.secondary").await;
    assert_eq!(app.admin().get_file(d.as_str()).await.unwrap().visibility, Visibility::Internal);
    b.click("#visibility-form button[type=submit]").await;
    b.click("dialog[open] button[type=submit]").await;
    b.wait_text("#status", "“tool.tar.gz” is now public.").await;
    b.wait_text(".badge", "public").await;
    assert_eq!(app.anonymous().get_file(d.as_str()).await.unwrap().visibility, Visibility::Public);
    app.anonymous().download_redirect(d.as_str(), None).await.expect("public now: anyone downloads");

    // Delete: the button waits for the file's name or the digest's first 8 characters.
    b.click("#delete-copies").await;
    b.find("dialog[open] #delete-confirm").await;
    b.screenshots("confirm-delete").await;
    let confirm = b.find("dialog[open] button[type=submit]").await;
    assert!(!confirm.is_enabled().await.unwrap());
    b.type_into("#delete-confirm", "tool").await;
    assert!(!confirm.is_enabled().await.unwrap());
    b.type_into("#delete-confirm", &d.as_str()[..8]).await;
    assert!(confirm.is_enabled().await.unwrap());
    confirm.click().await.unwrap();
    b.wait_text("#status", "Every stored copy of “tool.tar.gz” was deleted.").await;
    b.wait_text(
        "#regions",
        "None: every stored copy was deleted. Downloads answer 404 until the file is uploaded again.",
    )
    .await;
    assert!(!app.anonymous().get_file(d.as_str()).await.unwrap().has_instances);
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 404);
    b.screenshots("file-deleted").await;

    // Both landed in the audit trail, under the signed-in user's name.
    let page: Value = app
        .http()
        .get(app.at(&format!("/audit?target={d}")))
        .bearer_auth(app.token("auditor", &["manage"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = page["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got[..2],
        [("file.instances_deleted", "boss@example.com"), ("file.visibility_changed", "boss@example.com")]
    );

    // The page shows them too, filtered by action.
    b.open("/ui/audit").await;
    b.find("#f-action").await.select_by_value("file.visibility_changed").await.unwrap();
    b.click("form.filters button[type=submit]").await;
    b.wait_text("table.stack tbody td:nth-child(3)", "file.visibility_changed").await;
    assert!(b.client.current_url().await.unwrap().as_str().ends_with("/ui/audit?action=file.visibility_changed"));
    assert_eq!(b.texts("table.stack tbody tr").await.len(), 1);
    assert_eq!(b.text("table.stack tbody td:nth-child(2)").await, "boss@example.com");
    assert_every_control_is_labelled(&b).await;
    b.screenshots("audit").await;

    // A refused action shows the API's problem, and the page forgets the dead session: here the
    // client was revoked while signed in.
    b.open(&format!("/ui/file/{d}")).await;
    admin.revoke_client("boss@example.com", "admin-cli:test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.click("#visibility-form button[type=submit]").await;
    b.click("dialog[open] button[type=submit]").await;
    b.wait_text(
        "#manage-outcome .error p",
        "The change was refused: 401 Unauthorized: The credentials presented are not valid",
    )
    .await;
    b.wait_text("#who-text", "Not signed in: public metadata only.").await;
    b.wait_text("#status", "Your session ended (expired or revoked): sign in again.").await;
    b.screenshots("action-refused").await;
    assert_eq!(app.anonymous().get_file(d.as_str()).await.unwrap().visibility, Visibility::Public);
    b.finish(&[&format!("/file/sha512/{d}")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_pages_back_in_time() {
    let app = TestApp::spawn(Backend::Embedded).await;
    for i in 0..25 {
        app.upload(&format!("f{i}.bin"), format!("bytes {i}").as_bytes(), Visibility::Public).await;
    }
    let b = Browser::start(&app).await;
    b.open("/ui/audit").await;
    sign_in(&b, &app.token("boss", &["manage"])).await;
    b.wait_text("#who-id", "boss").await;
    b.wait_text("table.stack tbody td:nth-child(3)", "upload.verified").await;
    assert_eq!(b.texts("table.stack tbody tr").await.len(), 20);
    b.click("nav[aria-label='Audit trail pages'] a[rel=next]").await;
    b.wait_text("nav[aria-label='Audit trail pages'] a", "Newest entries").await;
    assert!(b.client.current_url().await.unwrap().as_str().contains("/ui/audit?before="));
    assert_eq!(b.texts("table.stack tbody tr").await.len(), 20);
    b.open("/ui/audit?actor=nobody").await;
    assert_eq!(b.text(".empty").await, "No audit entry matches these filters.");
    b.finish(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_manage_no_action_is_offered_and_the_api_refuses_them_anyway() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let d = app.upload("kept.bin", b"kept", Visibility::Public).await;
    let b = Browser::start(&app).await;
    b.open(&format!("/ui/file/{d}")).await;
    sign_in(&b, &app.token("reader@example.com", &["download/*", "upload/*"])).await;
    b.wait_text("#who-id", "reader@example.com").await;
    b.settled().await;
    assert_eq!(b.text("h1").await, "kept.bin");
    assert!(!b.exists("#manage-h").await && !b.exists("#delete-copies").await && !b.exists("#visibility-form").await);
    b.screenshots("file-reader").await;
    // The page's own token, used directly against the API: refused.
    let derived = storage(&b).await.0["token"].as_str().unwrap().to_owned();
    for ops in [json!([{"op": "set_visibility", "visibility": "internal"}]), json!([{"op": "delete_instances"}])] {
        let res = app
            .http()
            .patch(app.at(&format!("/file/sha512/{d}")))
            .bearer_auth(&derived)
            .json(&ops)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["detail"], FORBIDDEN);
    }
    let info = app.anonymous().get_file(d.as_str()).await.unwrap();
    assert_eq!((info.visibility, info.has_instances), (Visibility::Public, true));
    b.finish(&[]).await;
}
