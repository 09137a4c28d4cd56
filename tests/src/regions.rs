//! Several S3 regions for the region and replication tests.
//!
//! `scripts/test.sh` starts two s3s-fs servers (`TOOLTOOL_TEST_S3_ENDPOINT` and
//! `TOOLTOOL_TEST_S3_ENDPOINT_B`, same keys) and exports the s3s-fs binary as
//! `TOOLTOOL_TEST_S3S_BIN`, so a test that must stop and restart a region starts an
//! [`S3Server`] of its own. A region here is a bucket on one endpoint; names are unique per
//! test. (Each server counts in its own metrics registry, which tests read directly.)

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tooltool_api::Settings;
use tooltool_api::settings::{BlobSettings, S3Settings, Secret};

use crate::app::{fresh_postgres_database, required_env};
use crate::{Backend, S3Env, TEST_SECRET, TestApp};

/// An s3s-fs server of the test's own, which it may stop and start again on the same port and
/// directory (killed when dropped).
pub struct S3Server {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    /// Starts one on a free port, with the keys of the shared test servers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
        server.resume().await;
        server
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it (its buckets stay on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory, and waits until it answers.
    pub async fn resume(&mut self) {
        let child = Command::new(required_env("TOOLTOOL_TEST_S3S_BIN"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &required_env("TOOLTOOL_TEST_S3_ACCESS_KEY")])
            .args(["--secret-key", &required_env("TOOLTOOL_TEST_S3_SECRET_KEY")])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The endpoint of the shared test S3 server `which` (`A` or `B`).
pub fn shared_endpoint(which: char) -> String {
    match which {
        'A' => required_env("TOOLTOOL_TEST_S3_ENDPOINT"),
        _ => required_env("TOOLTOOL_TEST_S3_ENDPOINT_B"),
    }
}

/// One region of a test deployment: its name and its bucket.
#[derive(Debug, Clone)]
pub struct TestRegion {
    /// The region name (unique to the test).
    pub name: String,
    /// Its bucket and endpoint.
    pub s3: S3Env,
}

/// A name unique to this test, starting with `prefix`.
pub fn unique_region(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Spawns a server on PostgreSQL with one S3 region per `(name, endpoint)`, in that order (the
/// first is the default upload region), a fresh bucket each; probes every 200 ms and
/// replication passes every 300 ms unless `tweak` says otherwise.
pub async fn spawn_regions(regions: &[(&str, &str)], tweak: impl FnOnce(&mut Settings)) -> (TestApp, Vec<TestRegion>) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::embedded(data_dir.path());
    settings.port = 0;
    settings.workers = 1;
    settings.database_url = fresh_postgres_database().await;
    settings.secret_key = Some(Secret::new(TEST_SECRET));
    settings.region_probe = Duration::from_millis(200);
    settings.replication_interval = Duration::from_millis(300);
    let mut out = Vec::new();
    for (name, endpoint) in regions {
        let mut env = S3Env::from_env();
        env.endpoint = endpoint.to_string();
        env.client().create_bucket().bucket(&env.bucket).send().await.expect("create a region's bucket");
        out.push(TestRegion { name: name.to_string(), s3: env });
    }
    settings.blobs = BlobSettings::S3(
        out.iter()
            .map(|r| S3Settings {
                bucket: r.s3.bucket.clone(),
                region: r.name.clone(),
                endpoint: Some(r.s3.endpoint.clone()),
                force_path_style: true,
                access_key_id: Some(r.s3.access_key.clone()),
                secret_access_key: Some(Secret::new(&r.s3.secret_key)),
                timeout: tooltool_api::settings::DEFAULT_S3_TIMEOUT,
            })
            .collect(),
    );
    tweak(&mut settings);
    tooltool_api::open_db(&settings).await.expect("connect").migrate().await.expect("migrate");
    let first = out[0].s3.clone();
    let app = TestApp::start(Backend::PostgresS3, settings, Arc::new(data_dir), Some(first)).await;
    (app, out)
}

/// Another replica of `app`'s deployment, its settings changed by `tweak`.
pub async fn spawn_replica_with(app: &TestApp, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = app.settings.clone();
    tweak(&mut settings);
    TestApp::start(app.backend, settings, app.data_dir.clone(), app.s3.clone()).await
}

/// Polls `check` every 50 ms until it holds; fails naming `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
