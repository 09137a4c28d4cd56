//! The server under test: [`TestApp`] spawns the real server on port 0 against a fresh backend
//! ([`Backend`]), and hands out clients of the project's own library to talk to it.

use std::time::Duration;

use actix_web::web;
use sqlx::Connection;

use tooltool::{ApiClient, Credentials};
use tooltool_api::http::state::AppState;
use tooltool_api::settings::{BlobSettings, S3Settings, Secret};
use tooltool_api::{Application, Settings};
use tooltool_proto::{DEFAULT_SCOPE_PREFIX, Digest};

use crate::proto;
use crate::{digest_of, upload_request};

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

/// A variable `scripts/test.sh` sets; its absence fails the test, loudly.
pub fn required_env(name: &str) -> String {
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
    pub(crate) fn from_env() -> Self {
        Self {
            endpoint: required_env("TOOLTOOL_TEST_S3_ENDPOINT"),
            access_key: required_env("TOOLTOOL_TEST_S3_ACCESS_KEY"),
            secret_key: required_env("TOOLTOOL_TEST_S3_SECRET_KEY"),
            bucket: format!("tt-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        }
    }

    /// A direct S3 client (to inspect or tamper with the bucket).
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, &self.access_key, &self.secret_key)
    }

    /// The keys in the bucket under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out =
            self.client().list_objects_v2().bucket(&self.bucket).prefix(prefix).send().await.expect("list objects");
        out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }
}

/// A direct S3 client of `endpoint` (path-style, region us-east-1, as s3s-fs wants).
pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "test");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
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
            settings.blobs = BlobSettings::S3(vec![S3Settings {
                bucket: env.bucket.clone(),
                region: "us-east-1".into(),
                endpoint: Some(env.endpoint.clone()),
                force_path_style: true,
                access_key_id: Some(env.access_key.clone()),
                secret_access_key: Some(Secret::new(&env.secret_key)),
                timeout: tooltool_api::settings::DEFAULT_S3_TIMEOUT,
            }]);
            s3 = Some(env);
        }
        tweak(&mut settings);
        if !settings.is_sqlite() {
            tooltool_api::open_db(&settings).await.expect("connect").migrate().await.expect("migrate");
        }
        Self::start(backend, settings, std::sync::Arc::new(data_dir), s3).await
    }

    pub(crate) async fn start(
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

    /// Runs `statement` on the server's database, behind its back (a state an older version
    /// left, or a fault).
    pub async fn sql(&self, statement: &str) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.settings.database_url).await.expect("connect to the server's database");
        sqlx::query(statement).execute(&pool).await.expect(statement);
    }

    /// Replaces the stored copy of `digest` with `bytes`, behind the server's back (a blob
    /// altered in storage).
    pub async fn overwrite_blob(&self, digest: &Digest, bytes: Vec<u8>) {
        match &self.s3 {
            Some(s3) => {
                let key = format!("sha512/{digest}");
                s3.client().put_object().bucket(&s3.bucket).key(&key).body(bytes.into()).send().await.unwrap();
            }
            None => std::fs::write(self.data_dir.path().join("blobs/sha512").join(digest.as_str()), bytes).unwrap(),
        }
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

/// Creates an empty database on the test PostgreSQL cluster and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = required_env("TOOLTOOL_TEST_POSTGRES_URL");
    let name = format!("tt_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).expect("TOOLTOOL_TEST_POSTGRES_URL ends with /<database>");
    format!("{base}/{name}")
}
