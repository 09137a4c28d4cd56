//! A headless Chromium under its own chromedriver, pointed at one test server, and the
//! helpers the page tests share.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tooltool_e2e::TestApp;

/// Widths of the screenshots: a small phone and a desktop.
const WIDTHS: [(u32, u32); 2] = [(360, 900), (1280, 900)];

/// How long a page may take to show what a test waits for.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

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
pub(crate) struct Browser {
    /// The WebDriver session, for what the helpers below do not cover.
    pub(crate) client: Client,
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
    pub(crate) async fn start(app: &TestApp) -> Self {
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
    pub(crate) async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.settled().await;
    }

    /// Waits until the view is drawn (no render in flight).
    pub(crate) async fn settled(&self) {
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

    pub(crate) async fn find(&self, css: &str) -> Element {
        self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    pub(crate) async fn exists(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until the element's text is exactly `expected`.
    pub(crate) async fn wait_text(&self, css: &str, expected: &str) {
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
    pub(crate) async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    pub(crate) async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    pub(crate) async fn js(&self, script: &str) -> Value {
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
    pub(crate) async fn screenshots(&self, name: &str) {
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
    pub(crate) async fn requests(&self) -> Vec<String> {
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
    pub(crate) async fn finish(mut self, expected_failures: &[&str]) {
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
pub(crate) async fn sign_in(b: &Browser, pasted: &str) {
    b.click("#sign-in").await;
    b.type_into("#signin-secret", pasted).await;
    b.click("#signin-submit").await;
}

/// Every control of the current page (dialogs included) has a label a screen reader can read.
pub(crate) async fn assert_every_control_is_labelled(b: &Browser) {
    let unlabelled = b
        .js("return [...document.querySelectorAll('input, select, textarea, button')]\
             .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())\
             .map((e) => e.id || e.name || e.tagName)")
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

/// What the page keeps in the browser: sessionStorage, localStorage, cookies.
pub(crate) async fn storage(b: &Browser) -> (Value, Value, Value) {
    let v = b
        .js("return [JSON.parse(sessionStorage.getItem('tooltool.session')), localStorage.length, document.cookie]")
        .await;
    (v[0].clone(), v[1].clone(), v[2].clone())
}
