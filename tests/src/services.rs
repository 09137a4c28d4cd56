//! Backends a test owns and may stop, restart or cut off: a private PostgreSQL cluster, a
//! private s3s-fs server, a small full-able disk, and a TCP proxy that can stop answering.
//! The shared services of `scripts/test.sh` must stay up for every other test; these are for
//! the failure tests. They need the binaries `scripts/test.sh` announces
//! (`TOOLTOOL_TEST_PG_BIN`, `TOOLTOOL_TEST_S3S_BIN`) and fail loudly without them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Polls `check` every 20 ms until it holds; panics after `limit`.
pub async fn until<F: Future<Output = bool>>(limit: Duration, mut check: impl FnMut() -> F, what: &str) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn env_path(name: &str) -> PathBuf {
    let p = std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: the failure tests need scripts/test.sh; run ./scripts/test.sh"));
    PathBuf::from(p)
}

/// A free TCP port on the loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// A PostgreSQL cluster of one test, on a port of its own.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Runs a shell command as the `postgres` user when root (PostgreSQL refuses to run as root).
fn as_postgres(cmd: &str) -> bool {
    let status = if nix_is_root() {
        Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", cmd]).stdout(Stdio::null()).status()
    } else {
        Command::new("sh").args(["-c", cmd]).stdout(Stdio::null()).status()
    };
    status.is_ok_and(|s| s.success())
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl OwnPostgres {
    /// Creates and starts the cluster.
    pub fn start() -> Self {
        let bin = env_path("TOOLTOOL_TEST_PG_BIN");
        let dir = tempfile::Builder::new().prefix("tt-own-pg").tempdir_in("/tmp").unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        if nix_is_root() {
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success());
        }
        let initdb = format!("{}/initdb -D {} -U postgres --auth=trust", bin.display(), data.display());
        assert!(as_postgres(&initdb), "failed: {initdb}");
        let pg = Self { dir, bin, port: free_port() };
        pg.resume();
        pg
    }

    /// `postgres://…` of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it again on the same port, waiting until it accepts connections.
    pub fn resume(&self) {
        let data = self.dir.path().join("data");
        let start = format!(
            "{}/pg_ctl -D {} -l {}/server.log -w start -o '-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off'",
            self.bin.display(),
            data.display(),
            self.dir.path().display(),
            self.port,
            self.dir.path().display()
        );
        assert!(as_postgres(&start), "failed: {start}");
    }

    /// Stops it at once, as a crash would (`-m immediate`).
    pub fn crash(&self) {
        assert!(self.stop(), "pg_ctl stop failed");
    }

    fn stop(&self) -> bool {
        let data = self.dir.path().join("data");
        as_postgres(&format!("{}/pg_ctl -D {} -m immediate stop", self.bin.display(), data.display()))
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An s3s-fs server of one test.
pub struct OwnS3 {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl OwnS3 {
    /// Access key of the server.
    pub const ACCESS_KEY: &str = "own-s3";
    /// Secret key of the server.
    pub const SECRET_KEY: &str = "own-s3-secret";

    /// Starts a server holding one empty bucket, `bucket`.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap(); // s3s-fs: a bucket is a directory
        let s3 = Self { dir, port: free_port(), child: Mutex::new(None) };
        s3.resume();
        s3
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and data.
    pub fn resume(&self) {
        let child = Command::new(env_path("TOOLTOOL_TEST_S3S_BIN"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", Self::ACCESS_KEY, "--secret-key", Self::SECRET_KEY])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        *self.child.lock().unwrap() = Some(child);
        wait_for_port(self.port);
    }

    /// Kills it.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where its buckets live.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tmpfs of a fixed size, mounted for one test (needs root) and unmounted after it.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts `bytes` of tmpfs.
    pub fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs failed: the full-disk test needs root");
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A TCP proxy in front of one upstream that can stop answering, as a frozen server or a
/// partitioned network would: open connections stay open and move no byte, new ones are
/// accepted and never answered.
pub struct TcpProxy {
    port: u16,
    hung: tokio::sync::watch::Sender<bool>,
    /// Relays of the connections opened so far; healing aborts them (their peers see the
    /// connection closed, as after a partition heals with a reset).
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts relaying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hung, _) = tokio::sync::watch::channel(false);
        let relays: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (h, r) = (hung.clone(), relays.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut frozen = h.subscribe();
                let relay = tokio::spawn(async move {
                    let hung_already = *frozen.borrow();
                    if hung_already {
                        let _held = client;
                        return std::future::pending().await;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        let _ = client.shutdown().await;
                        return;
                    };
                    let froze = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        r = frozen.wait_for(|f| *f) => r.is_ok(),
                    };
                    if froze {
                        // Both sockets stay open; nothing moves any more.
                        let _held = (client, server);
                        std::future::pending::<()>().await;
                    }
                });
                r.lock().unwrap().push(relay);
            }
        });
        Self { port, hung, relays, accept }
    }

    /// The proxy's port on the loopback.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops answering.
    pub fn hang(&self) {
        self.hung.send_replace(true);
    }

    /// Relays again; the connections held while hung are closed.
    pub fn heal(&self) {
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
        self.hung.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}
