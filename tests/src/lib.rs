//! Test harness: spawn the real server on port 0 against a fresh backend, and drive it through
//! the project's own client library.
//!
//! Two backends, same suite ([`backend_tests!`]): the embedded default (SQLite + local blobs in
//! a temporary directory) and PostgreSQL + S3. The latter needs the services that
//! `scripts/test.sh` starts and announces through `TOOLTOOL_TEST_POSTGRES_URL`,
//! `TOOLTOOL_TEST_S3_ENDPOINT`, `TOOLTOOL_TEST_S3_ACCESS_KEY` and
//! `TOOLTOOL_TEST_S3_SECRET_KEY`; without them those tests fail loudly, they never skip.

use std::time::Duration;

use actix_web::web;
use sqlx::Connection;

use tooltool::{ApiClient, Credentials};
use tooltool_api::settings::{BlobSettings, S3Settings, Secret};
use tooltool_api::state::AppState;
use tooltool_api::{Application, Settings};
use tooltool_proto::{DEFAULT_SCOPE_PREFIX, Digest};

pub use tooltool;
pub use tooltool_api;
pub use tooltool_cli as cli;
pub use tooltool_proto as proto;

/// Which backends the server under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite + local blob directory, URLs signed by the server.
    Embedded,
    /// PostgreSQL + S3 (s3s-fs), presigned URLs.
    PostgresS3,
}

/// Runs each named `async fn name(backend: Backend)` once per backend, as
/// `embedded::name` and `postgres_s3::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Embedded).await;
                }
            )*
        }
        mod postgres_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::PostgresS3).await;
                }
            )*
        }
    };
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the PostgreSQL + S3 tests need the services that scripts/test.sh starts; run ./scripts/test.sh")
    })
}

/// The S3 test server's coordinates.
#[derive(Debug, Clone)]
pub struct S3Env {
    /// Endpoint URL.
    pub endpoint: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// The bucket of this test.
    pub bucket: String,
}

impl S3Env {
    fn from_env() -> Self {
        Self {
            endpoint: required_env("TOOLTOOL_TEST_S3_ENDPOINT"),
            access_key: required_env("TOOLTOOL_TEST_S3_ACCESS_KEY"),
            secret_key: required_env("TOOLTOOL_TEST_S3_SECRET_KEY"),
            bucket: format!("tt-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        }
    }

    /// A direct S3 client (to inspect or tamper with the bucket).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new(&self.access_key, &self.secret_key, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The keys in the bucket under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out =
            self.client().list_objects_v2().bucket(&self.bucket).prefix(prefix).send().await.expect("list objects");
        out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// The backend.
    pub backend: Backend,
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's shared state.
    pub state: web::Data<AppState>,
    /// The data directory (embedded store, SQLite file), shared with replicas.
    pub data_dir: std::sync::Arc<tempfile::TempDir>,
    /// The settings the server was built with.
    pub settings: Settings,
    /// The S3 bucket, on the PostgreSQL + S3 backend.
    pub s3: Option<S3Env>,
}

/// Default secret of test servers on PostgreSQL (which requires one).
pub const TEST_SECRET: &str = "tooltool-test-secret-0123456789abcdef";

impl TestApp {
    /// Spawns a server with default settings on `backend`.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns a server, letting `tweak` change the settings first.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::embedded(data_dir.path());
        settings.port = 0;
        settings.workers = 1;
        let mut s3 = None;
        if backend == Backend::PostgresS3 {
            settings.database_url = fresh_postgres_database().await;
            settings.secret_key = Some(Secret::new(TEST_SECRET));
            let env = S3Env::from_env();
            env.client().create_bucket().bucket(&env.bucket).send().await.expect("create the test bucket");
            settings.blobs = BlobSettings::S3(S3Settings {
                bucket: env.bucket.clone(),
                region: "us-east-1".into(),
                endpoint: Some(env.endpoint.clone()),
                force_path_style: true,
                access_key_id: Some(env.access_key.clone()),
                secret_access_key: Some(Secret::new(&env.secret_key)),
            });
            s3 = Some(env);
        }
        tweak(&mut settings);
        if !settings.is_sqlite() {
            tooltool_api::open_db(&settings).await.expect("connect").migrate().await.expect("migrate");
        }
        Self::start(backend, settings, std::sync::Arc::new(data_dir), s3).await
    }

    async fn start(
        backend: Backend,
        settings: Settings,
        data_dir: std::sync::Arc<tempfile::TempDir>,
        s3: Option<S3Env>,
    ) -> Self {
        let app = Application::build(settings.clone()).await.expect("the server builds");
        let url = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        tokio::spawn(app.run_until_stopped());
        Self { backend, url, state, data_dir, settings, s3 }
    }

    /// A second server on the same database and blob store (another replica).
    pub async fn spawn_replica(&self) -> Self {
        Self::start(self.backend, self.settings.clone(), self.data_dir.clone(), self.s3.clone()).await
    }

    /// The admin operations of this deployment (what `tooltool-api clients …` runs).
    pub async fn admin_ops(&self) -> tooltool_api::admin::Admin {
        tooltool_api::admin::Admin::open(&self.settings).await.expect("admin opens")
    }

    /// A full scope name from its suffix (`download/internal`, `*`, …).
    pub fn scope(suffix: &str) -> String {
        format!("{DEFAULT_SCOPE_PREFIX}/{suffix}")
    }

    /// A valid bearer token for `subject` with scopes given by suffix.
    pub fn token(&self, subject: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| Self::scope(s)).collect();
        self.state.tokens.issue(subject, &scopes, Duration::from_secs(3600))
    }

    /// A client with no credentials.
    pub fn anonymous(&self) -> ApiClient {
        ApiClient::new(&self.url, None).expect("client")
    }

    /// A client holding a token for `subject` with these scope suffixes.
    pub fn client_as(&self, subject: &str, scopes: &[&str]) -> ApiClient {
        self.client_with_token(&self.token(subject, scopes))
    }

    /// A client presenting this token.
    pub fn client_with_token(&self, token: &str) -> ApiClient {
        ApiClient::new(&self.url, Some(Credentials::bearer(token))).expect("client")
    }

    /// A client that may do everything.
    pub fn admin(&self) -> ApiClient {
        self.client_as("admin@example.com", &["*"])
    }

    /// A raw HTTP client that does not follow redirects.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
    }

    /// `self.url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Uploads `data` under `name` as `admin` and waits for verification; returns its digest.
    pub async fn upload(&self, name: &str, data: &[u8], visibility: proto::Visibility) -> Digest {
        let client = self.admin();
        let digest = digest_of(data);
        let batch = client
            .upload_batch(&upload_request("test upload", &[(name, data, visibility)]))
            .await
            .expect("upload batch");
        if let Some(url) = &batch.files[name].put_url {
            client.put_bytes(url, bytes::Bytes::copy_from_slice(data)).await.expect("PUT");
        }
        client.complete_until_verified(digest.as_str(), Duration::from_secs(30)).await.expect("verified");
        digest
    }
}

/// The sha512 digest of `data`.
pub fn digest_of(data: &[u8]) -> Digest {
    let mut c = proto::Sha512Counter::new();
    c.update(data);
    c.finish().0
}

/// An upload request declaring `files` as (name, content, visibility).
pub fn upload_request(message: &str, files: &[(&str, &[u8], proto::Visibility)]) -> proto::UploadRequest {
    proto::UploadRequest {
        message: message.into(),
        author: None,
        files: files
            .iter()
            .map(|(name, data, visibility)| {
                let f = proto::UploadFile {
                    size: data.len() as u64,
                    digest: digest_of(data),
                    algorithm: proto::Algorithm::Sha512,
                    visibility: *visibility,
                };
                (proto::FileName::parse(name).expect("valid name"), f)
            })
            .collect(),
    }
}

/// Creates an empty database on the test PostgreSQL cluster and returns its URL.
async fn fresh_postgres_database() -> String {
    let admin = required_env("TOOLTOOL_TEST_POSTGRES_URL");
    let name = format!("tt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).expect("TOOLTOOL_TEST_POSTGRES_URL ends with /<database>");
    format!("{base}/{name}")
}

/// Asserts that `result` failed with an API error of `status`, and returns its problem body.
#[track_caller]
pub fn expect_status<T: std::fmt::Debug>(result: Result<T, tooltool::Error>, status: u16) -> proto::Problem {
    match result {
        Err(e) => {
            assert_eq!(e.status(), Some(status), "expected {status}, got error {e}");
            let p = e.problem().cloned().expect("a problem+json body");
            assert_eq!(p.status, status);
            assert_eq!(p.kind, "about:blank");
            assert_eq!(p.instance, "about:blank");
            assert!(p.title.starts_with(&format!("{status} ")), "title {:?}", p.title);
            assert!(p.title.ends_with(&format!(": {}", p.detail)), "title {:?}", p.title);
            p
        }
        Ok(v) => panic!("expected {status}, got success: {v:?}"),
    }
}

/// The exact 403 detail of the protocol.
pub const FORBIDDEN: &str = "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server.";

/// Runs the `tooltool` command line in-process in `dir` (the program name is added); returns
/// the exit status.
pub async fn tooltool_cli(dir: &std::path::Path, args: &[&str]) -> i32 {
    let mut all = vec!["tooltool"];
    all.extend_from_slice(args);
    cli::run_async(all, dir).await
}

/// [`tooltool_cli`], also returning what it printed (plain lines, as on a pipe).
pub async fn tooltool_cli_output(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["tooltool"];
    all.extend_from_slice(args);
    cli::run_captured(all, dir).await
}

/// A fault-injecting HTTP/1.1 proxy for client tests, in front of a tooltool server. It
/// rewrites the `Location` of download redirects so that the storage request goes through it
/// too (under `/__storage`, forwarded to the real storage with its original `Host`), records
/// every request, and applies scripted [`proxy::Action`]s. One request per connection.
pub mod proxy {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    /// What to do with the next request of a kind.
    #[derive(Debug, Clone)]
    pub enum Action {
        /// Forward it.
        Pass,
        /// Answer this status with these headers, without forwarding.
        Status(u16, Vec<(String, String)>),
        /// Forward, but send only this many body bytes, then close the connection.
        CutAfter(usize),
        /// Forward, send this many body bytes, then hang (never close).
        StallAfter(usize),
        /// Wait, then forward.
        Delay(Duration),
    }

    /// Which side a request went to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// The tooltool server.
        Api,
        /// The storage behind a redirect.
        Storage,
    }

    /// One request as the proxy saw it.
    #[derive(Debug, Clone)]
    pub struct Seen {
        /// API or storage.
        pub kind: Kind,
        /// The method.
        pub method: String,
        /// The path, without query.
        pub path: String,
        /// The request headers (lowercase names).
        pub headers: Vec<(String, String)>,
        /// The status answered to the client.
        pub status: u16,
        /// Body bytes sent to the client.
        pub body_sent: usize,
        /// When the request arrived.
        pub at: std::time::Instant,
    }

    impl Seen {
        /// A request header.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    #[derive(Default)]
    struct State {
        storage_upstream: Option<String>,
        api: VecDeque<Action>,
        storage: VecDeque<Action>,
        log: Vec<Seen>,
    }

    /// A running proxy.
    #[derive(Clone)]
    pub struct Proxy {
        /// Its base URL, `http://127.0.0.1:PORT/`.
        pub url: String,
        state: Arc<Mutex<State>>,
    }

    impl Proxy {
        /// Starts a proxy in front of the server at `upstream` (`http://127.0.0.1:PORT`).
        pub async fn start(upstream: &str) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}/", listener.local_addr().unwrap());
            let api = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
            let state = Arc::new(Mutex::new(State::default()));
            let proxy = Self { url: url.clone(), state: state.clone() };
            tokio::spawn(async move {
                loop {
                    let Ok((conn, _)) = listener.accept().await else { return };
                    let (state, api, url) = (state.clone(), api.clone(), url.clone());
                    tokio::spawn(async move {
                        let _ = handle(conn, &state, &api, &url).await;
                    });
                }
            });
            proxy
        }

        /// Queues actions for the next API requests.
        pub fn api(&self, actions: impl IntoIterator<Item = Action>) {
            self.state.lock().unwrap().api.extend(actions);
        }

        /// Queues actions for the next storage requests.
        pub fn storage(&self, actions: impl IntoIterator<Item = Action>) {
            self.state.lock().unwrap().storage.extend(actions);
        }

        /// Every request so far.
        pub fn log(&self) -> Vec<Seen> {
            self.state.lock().unwrap().log.clone()
        }

        /// The storage requests so far.
        pub fn storage_log(&self) -> Vec<Seen> {
            self.log().into_iter().filter(|s| s.kind == Kind::Storage).collect()
        }
    }

    async fn handle(conn: TcpStream, state: &Mutex<State>, api: &str, own_url: &str) -> std::io::Result<()> {
        let mut conn = BufReader::new(conn);
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if conn.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            if line == b"\r\n" {
                break;
            }
            head.push(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
        let mut parts = head[0].split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = head[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize =
            headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        conn.read_exact(&mut body).await?;

        let (kind, upstream, target) = match target.strip_prefix("/__storage") {
            Some(rest) => {
                (Kind::Storage, state.lock().unwrap().storage_upstream.clone().unwrap_or_default(), rest.to_owned())
            }
            None => (Kind::Api, api.to_owned(), target),
        };
        let action = {
            let mut s = state.lock().unwrap();
            match kind {
                Kind::Api => s.api.pop_front(),
                Kind::Storage => s.storage.pop_front(),
            }
            .unwrap_or(Action::Pass)
        };
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let mut seen = Seen {
            kind,
            method: method.clone(),
            path,
            headers: headers.clone(),
            status: 0,
            body_sent: 0,
            at: std::time::Instant::now(),
        };
        let mut conn = conn.into_inner();

        if let Action::Status(status, extra) = &action {
            let mut out = format!("HTTP/1.1 {status} Injected\r\nContent-Length: 8\r\nConnection: close\r\n");
            for (n, v) in extra {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\ninjected");
            seen.status = *status;
            state.lock().unwrap().log.push(seen);
            conn.write_all(out.as_bytes()).await?;
            return conn.shutdown().await;
        }
        if let Action::Delay(d) = &action {
            tokio::time::sleep(*d).await;
        }

        let mut up = TcpStream::connect(&upstream).await?;
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n");
        for (n, v) in &headers {
            if n != "host" && n != "connection" {
                req.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        req.push_str("\r\n");
        up.write_all(req.as_bytes()).await?;
        up.write_all(&body).await?;
        let mut raw = Vec::new();
        up.read_to_end(&mut raw).await?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
        let (resp_head, resp_body) = raw.split_at(split);
        let resp_head = String::from_utf8_lossy(resp_head).into_owned();
        let mut lines = resp_head.split("\r\n").filter(|l| !l.is_empty());
        let status_line = lines.next().unwrap_or_default().to_owned();
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut out = format!("{status_line}\r\n");
        for line in lines {
            let Some((n, v)) = line.split_once(':') else { continue };
            let lower = n.trim().to_ascii_lowercase();
            assert_ne!(lower, "transfer-encoding", "the test proxy does not handle chunked answers");
            if lower == "connection" {
                continue;
            }
            if lower == "location" && kind == Kind::Api {
                let loc = url::Url::parse(v.trim()).expect("absolute Location");
                let authority = format!("{}:{}", loc.host_str().unwrap(), loc.port_or_known_default().unwrap());
                state.lock().unwrap().storage_upstream = Some(authority);
                let query = loc.query().map(|q| format!("?{q}")).unwrap_or_default();
                out.push_str(&format!("Location: {own_url}__storage{}{query}\r\n", loc.path()));
                continue;
            }
            out.push_str(&format!("{line}\r\n"));
        }
        out.push_str("Connection: close\r\n\r\n");
        let send = match action {
            Action::CutAfter(n) | Action::StallAfter(n) => n.min(resp_body.len()),
            _ => resp_body.len(),
        };
        seen.status = status;
        seen.body_sent = send;
        state.lock().unwrap().log.push(seen);
        conn.write_all(out.as_bytes()).await?;
        conn.write_all(&resp_body[..send]).await?;
        conn.flush().await?;
        if let Action::StallAfter(_) = action {
            std::future::pending::<()>().await;
        }
        conn.shutdown().await
    }
}

/// A manifest record for `data` under `name` (size and digest of the content, no options).
pub fn manifest_entry(name: &str, data: &[u8]) -> proto::ManifestEntry {
    proto::ManifestEntry {
        filename: proto::FileName::parse(name).expect("valid name"),
        size: Some(data.len() as u64),
        algorithm: proto::Algorithm::Sha512,
        digest: digest_of(data),
        unpack: false,
        version: None,
        visibility: None,
    }
}
