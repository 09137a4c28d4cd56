//! The real `tooltool-api` process, as an operator runs it: JSON log lines on stderr with the
//! request id, and a graceful stop on SIGTERM that lets an in-flight verification finish and
//! publish, so that a restarted server serves the blob; SIGKILL during a verification and
//! during a replication copy between two regions (PostgreSQL and the two s3s-fs servers that
//! `scripts/test.sh` starts) loses and half-records nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha512};
use tooltool_e2e::{fresh_postgres_database as fresh_database, required_env as required};

/// A running server process and every line it wrote to stderr.
struct Process {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tooltool-api"));
    for var in ["DATABASE_URL", "SENTRY_DSN", "TOOLTOOL_PUBLIC_URL", "TOOLTOOL_SECRET_KEY", "TOOLTOOL_S3_BUCKET"] {
        cmd.env_remove(var);
    }
    cmd.env("TOOLTOOL_DATA_DIR", data_dir).env("HOST", "127.0.0.1").env("PORT", "0");
    cmd.env("LOG_FORMAT", "json").env("RUST_LOG", "info");
    cmd
}

impl Process {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(command(data_dir))
    }

    fn start_with(mut cmd: Command) -> Self {
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let line = rx.recv_timeout(deadline - Instant::now()).expect("the server logs that it listens");
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("every stderr line is JSON ({e}): {line}"));
            if v["fields"]["message"] == "tooltool-api listening" {
                break v["fields"]["port"].as_u64().unwrap() as u16;
            }
        };
        Self { child, port, lines }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM");
    }

    /// Waits for the process to exit; its exit status.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stderr line, parsed (each must be one JSON object).
    fn json_lines(&self) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(data_dir: &Path) -> String {
    // A deployment's folder exists before its admin commands run: only `serve` creates it.
    std::fs::create_dir_all(data_dir).unwrap();
    let out = command(data_dir).args(["token", "issue", "--subject", "ops", "--scope", "*"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Run from a folder without the server's data directory, an admin command would once have made
/// an empty store of its own (and printed a token the server rejects). Every command but
/// `serve` refuses, names the folder it looked in, exits 1 and creates nothing.
#[test]
fn admin_commands_without_a_data_directory_refuse_name_it_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("elsewhere").join("tooltool-data");
    for args in [
        &["token", "issue", "--subject", "ops", "--scope", "*"][..],
        &["clients", "list"],
        &["clients", "create", "--id", "ci", "--scope", "download/internal"],
        &["clients", "revoke", "ci"],
        &["audit"],
        &["events", "tail"],
        &["migrate"],
        &["replicate"],
    ] {
        let out = command(&data_dir).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no tooltool data directory at {}", data_dir.display())),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(!dir.path().join("elsewhere").exists(), "{args:?} created a folder");
    }
}

/// A scope that grants none of the server's permissions (a typo) is refused by `clients
/// create`, which names it, unless `--allow-unknown-scope` says it is meant.
#[test]
fn clients_create_refuses_a_scope_that_grants_nothing_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let create = |extra: &[&str]| {
        let mut cmd = command(&data_dir);
        cmd.args(["clients", "create", "--id", "ci", "--scope", "download/public", "--scope", "download/interal"]);
        cmd.args(extra).output().unwrap()
    };
    let out = create(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "project:releng:services/tooltool/api/download/interal grant(s) none of the server's permissions"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-unknown-scope"), "{stderr}");
    let list = command(&data_dir).args(["clients", "list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 1, "only the header: nothing was created");

    let out = create(&["--allow-unknown-scope"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let creds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(creds["clientId"], "ci");
}

/// Behind a router or load balancer the server must listen on every interface: the default
/// `HOST` (127.0.0.1) would be unreachable there.
#[test]
fn the_procfile_serves_on_every_interface_and_migrates_at_release() {
    let procfile = include_str!("../../Procfile");
    let lines: Vec<&str> = procfile.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines, ["release: tooltool-api migrate", "web: HOST=0.0.0.0 tooltool-api serve"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::start(dir.path());
    let http = reqwest::Client::new();
    let res = http.get(server.url("/__lbheartbeat__")).header("X-Request-Id", "ops-check-7").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "ops-check-7");
    server.sigterm();
    assert!(server.wait(Duration::from_secs(30)).success());

    let lines = server.json_lines();
    let request_line =
        lines.iter().find(|v| v.to_string().contains("ops-check-7")).expect("a log line carries the request id");
    assert!(request_line["level"].is_string() && request_line["timestamp"].is_string(), "{request_line}");
    assert!(request_line.to_string().contains("/__lbheartbeat__"), "{request_line}");
}

/// A blob of `mib` MiB (384: hashing it takes hundreds of ms): its path, size, digest.
fn big_blob(dir: &Path, mib: u32) -> (std::path::PathBuf, u64, String) {
    let blob = dir.join("blob.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&blob).unwrap());
    let mut hasher = Sha512::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut size = 0u64;
    for i in 0..mib {
        chunk.iter_mut().enumerate().for_each(|(j, b)| *b = (i as usize * 31 + j) as u8);
        hasher.update(&chunk);
        f.write_all(&chunk).unwrap();
        size += chunk.len() as u64;
    }
    f.flush().unwrap();
    (blob, size, hex::encode(hasher.finalize()))
}

/// Declares the blob and streams it to its upload URL, without completing.
async fn stage(http: &reqwest::Client, server: &Process, token: &str, blob: &Path, size: u64, digest: &str) {
    let body = serde_json::json!({"message": "staged", "files": {"big.bin": {
        "size": size, "digest": digest, "algorithm": "sha512", "visibility": "public"}}});
    let res = http.post(server.url("/upload")).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let batch: serde_json::Value = res.json().await.unwrap();
    let put_url = batch["result"]["files"]["big.bin"]["put_url"].as_str().unwrap().to_owned();
    let file = tokio::fs::File::open(blob).await.unwrap();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let res = http
        .put(&put_url)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// A download of `digest` redirects to exactly its bytes.
async fn serves_exactly(http: &reqwest::Client, server: &Process, digest: &str) {
    serves_exactly_from(http, server, digest, "").await;
}

/// The same, the download asked with `query` (`?region=b`); the Location it was sent to.
async fn serves_exactly_from(http: &reqwest::Client, server: &Process, digest: &str, query: &str) -> String {
    let res = http.get(server.url(&format!("/sha512/{digest}{query}"))).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let mut res = http.get(&location).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut hasher = Sha512::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        hasher.update(&chunk);
    }
    assert_eq!(hex::encode(hasher.finalize()), digest, "{location} serves exactly the uploaded bytes");
    location
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A server on a fresh data directory with a large upload staged and not completed.
struct Staged {
    dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    token: String,
    digest: String,
    server: Process,
    http: reqwest::Client,
}

async fn staged_big_upload() -> Staged {
    staged_upload(384).await
}

/// A `mib` MiB blob staged on an embedded server, not completed.
async fn staged_upload(mib: u32) -> Staged {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let token = token(&data_dir);
    let (blob, size, digest) = big_blob(dir.path(), mib);
    let server = Process::start(&data_dir);
    let http = no_redirects();
    stage(&http, &server, &token, &blob, size, &digest).await;
    Staged { dir, data_dir, token, digest, server, http }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_verification_finish_and_publish() {
    let Staged { dir: _dir, data_dir, token, digest, mut server, http } = staged_big_upload().await;

    // Start the verification, and stop the server while it runs.
    let complete = {
        let (http, url, token) =
            (http.clone(), server.url(&format!("/upload/complete/sha512/{digest}")), token.clone());
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.unwrap().status() })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.sigterm();
    assert_eq!(complete.await.unwrap(), 200, "the in-flight request finished its verification");
    assert!(server.wait(Duration::from_secs(60)).success(), "exit status 0 after a graceful stop");

    let lines: Vec<String> = server.json_lines().iter().map(|v| v.to_string()).collect();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle}"));
    assert!(at("SIGTERM") < at("upload verified"), "the verification was still running when the signal came");
    assert!(at("upload verified") < at("\"stopped\""));
    drop(server);

    // Published whole: a new process serves exactly those bytes.
    let server = Process::start(&data_dir);
    serves_exactly(&http, &server, &digest).await;
}

/// SIGKILL while an upload is verified: nothing is published or recorded, and after a restart
/// `complete` verifies and publishes exactly the uploaded bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_verification_publishes_nothing_and_complete_succeeds_after_a_restart() {
    let Staged { dir: _dir, data_dir, token: _, digest, mut server, http } = staged_big_upload().await;
    let complete = server.url(&format!("/upload/complete/sha512/{digest}"));
    let pending = tokio::spawn({
        let (http, complete) = (http.clone(), complete.clone());
        async move { http.get(complete).send().await }
    });
    // Killed once the verification has taken the staged file, while it hashes.
    let verifying = data_dir.join("blobs").join("verifying");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&verifying).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "the verification never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(Command::new("kill").args(["-KILL", &server.child.id().to_string()]).status().unwrap().success());
    assert!(!server.wait(Duration::from_secs(10)).success());
    assert!(pending.await.unwrap().is_err(), "the connection died with the process");
    assert!(!data_dir.join("blobs").join("sha512").join(&digest).exists(), "nothing was published");
    drop(server);

    let server = Process::start(&data_dir);
    let res = http.get(server.url(&format!("/sha512/{digest}"))).send().await.unwrap();
    assert_eq!(res.status(), 404, "no instance was recorded");
    let mut status = 0;
    for _ in 0..30 {
        let res = http.get(server.url(&format!("/upload/complete/sha512/{digest}"))).send().await.unwrap();
        status = res.status().as_u16();
        if status != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(status, 200, "complete verifies the upload again");
    serves_exactly(&http, &server, &digest).await;
}

/// A stand-in Sentry: answers 200 to every request and keeps what was sent.
fn fake_sentry() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut head = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.extend_from_slice(line.as_bytes());
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut all = sink.lock().unwrap();
                    all.extend_from_slice(&head);
                    all.extend_from_slice(&body);
                    drop(all);
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
                }
            });
        }
    });
    (port, received)
}

/// An internal error reaches Sentry with the request's route and id, and without the
/// caller's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_reach_sentry_with_route_and_request_id_but_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let token = token(&data_dir);
    let (sentry_port, received) = fake_sentry();
    let mut cmd = command(&data_dir);
    cmd.env("SENTRY_DSN", format!("http://publickey@127.0.0.1:{sentry_port}/42"));
    let mut server = Process::start_with(cmd);

    let http = reqwest::Client::new();
    let data = b"staged where staging is broken";
    let digest = hex::encode(Sha512::digest(data));
    let body = serde_json::json!({"message": "sentry", "files": {"s.bin": {
        "size": data.len(), "digest": digest, "algorithm": "sha512", "visibility": "public"}}});
    let res = http.post(server.url("/upload")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let batch: serde_json::Value = res.json().await.unwrap();
    let put_url = batch["result"]["files"]["s.bin"]["put_url"].as_str().unwrap().to_owned();
    // The blob store breaks: its staging directory becomes a plain file.
    let staging = data_dir.join("blobs").join("staging");
    std::fs::remove_dir_all(&staging).unwrap();
    std::fs::write(&staging, b"not a directory").unwrap();
    let res = http
        .put(&put_url)
        .bearer_auth(&token)
        .header("X-Request-Id", "sentry-req-1")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);

    server.sigterm(); // the Sentry guard flushes on the way out
    assert!(server.wait(Duration::from_secs(30)).success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
        if text.contains("sentry-req-1") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("POST /api/42/envelope/"), "an envelope was sent: {text}");
    assert!(text.contains("sentry-req-1"), "the event carries the request id: {text}");
    assert!(text.contains("/_blobs/staging/{key}"), "the event carries the route: {text}");
    assert!(!text.contains(&token), "the caller's token never reaches Sentry");
    let signature = put_url.split("signature=").nth(1).unwrap().split('&').next().unwrap();
    assert!(!text.contains(signature), "nor does the signed URL's signature");
}

/// The access log as operators run it by default: text lines to a file (not a terminal). No
/// colour escapes, and the duration a fixed-precision number of milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_have_no_escapes_and_plain_durations() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut cmd = command(&dir.path().join("data"));
    cmd.env_remove("LOG_FORMAT");
    let mut child = cmd.stderr(std::fs::File::create(&log_path).unwrap()).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if let Some(line) = text.lines().find(|l| l.contains("tooltool-api listening")) {
            let port = line.split("port=").nth(1).and_then(|r| r.split_whitespace().next()).expect("port=N");
            break port.parse::<u16>().unwrap();
        }
        assert!(Instant::now() < deadline, "the server did not log that it listens: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let res = http.get(format!("http://127.0.0.1:{port}/__lbheartbeat__")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\u{1b}'), "no escape codes in a log written to a file:\n{text}");
    let requests: Vec<&str> = text.lines().filter(|l| l.contains("/__lbheartbeat__")).collect();
    assert_eq!(requests.len(), 20, "one line per request:\n{text}");
    for line in requests {
        let ms = line.split(" ms=").nth(1).and_then(|r| r.split_whitespace().next()).expect("ms=");
        let value: f64 = ms.parse().unwrap_or_else(|_| panic!("ms is a number: {line}"));
        assert!(value >= 0.0);
        let decimals = ms.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "milliseconds to the microsecond at most: {line}");
    }
}

/// A direct client of the test S3 server at `endpoint`.
fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    tooltool_e2e::s3_client(
        endpoint,
        &required("TOOLTOOL_TEST_S3_ACCESS_KEY"),
        &required("TOOLTOOL_TEST_S3_SECRET_KEY"),
    )
}

/// The regions `digest` has a recorded copy in, as the database says.
async fn instances(db: &mut sqlx::PgConnection, digest: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT i.region FROM file_instances i JOIN files f ON f.id = i.file_id WHERE f.digest = $1 ORDER BY i.region",
    )
    .bind(digest)
    .fetch_all(db)
    .await
    .unwrap()
}

/// SIGKILL while a copy between two regions is sent in parts: nothing is recorded in the target
/// region and nothing published there; a new replica aborts the dead one's multipart upload once
/// its lease ran out, makes the copy again, proves it, records it, and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_replication_copy_records_nothing_and_a_new_replica_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database().await;
    let (endpoint_a, endpoint_b) = (required("TOOLTOOL_TEST_S3_ENDPOINT"), required("TOOLTOOL_TEST_S3_ENDPOINT_B"));
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let (bucket_a, bucket_b) = (format!("kill-a-{suffix}"), format!("kill-b-{suffix}"));
    let (s3_a, s3_b) = (s3_client(&endpoint_a), s3_client(&endpoint_b));
    s3_a.create_bucket().bucket(&bucket_a).send().await.expect("create bucket a");
    s3_b.create_bucket().bucket(&bucket_b).send().await.expect("create bucket b");
    let regions = format!("a={bucket_a}@{endpoint_a},b={bucket_b}@{endpoint_b}");
    let deployment = |data_dir: &Path| {
        let mut cmd = command(data_dir);
        cmd.env("DATABASE_URL", &database).env("TOOLTOOL_SECRET_KEY", "process-test-secret-process-test-secret");
        cmd.env("TOOLTOOL_S3_REGIONS", &regions).env("TOOLTOOL_S3_FORCE_PATH_STYLE", "true");
        cmd.env("TOOLTOOL_S3_ACCESS_KEY_ID", required("TOOLTOOL_TEST_S3_ACCESS_KEY"));
        cmd.env("TOOLTOOL_S3_SECRET_ACCESS_KEY", required("TOOLTOOL_TEST_S3_SECRET_KEY"));
        cmd.env("TOOLTOOL_REPLICATION_PART_SIZE", "5242880").env("TOOLTOOL_REPLICATION_SINGLE_PUT", "5242880");
        cmd.env("TOOLTOOL_REPLICATION_LEASE", "2s");
        cmd.env("TOOLTOOL_REPLICATION_INTERVAL", "200ms").env("TOOLTOOL_REGION_PROBE", "200ms");
        cmd
    };
    let data_dir = dir.path().join("data");
    let migrated = deployment(&data_dir).arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let out = deployment(&data_dir).args(["token", "issue", "--subject", "ops", "--scope", "*"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (blob, size, digest) = big_blob(dir.path(), 64);

    let mut server = Process::start_with(deployment(&data_dir));
    let http = no_redirects();
    stage(&http, &server, &token, &blob, size, &digest).await;
    let res = http.get(server.url(&format!("/upload/complete/sha512/{digest}"))).send().await.unwrap();
    assert_eq!(res.status(), 200, "verified in region a");

    // Killed once the copy to b has started its multipart upload.
    let mut db = {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&database).await.unwrap()
    };
    let leftover_query = "SELECT r.upload_key, r.upload_id FROM replications r JOIN files f ON f.id = r.file_id \
                          WHERE f.digest = $1 AND r.region = 'b' AND r.upload_id IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(30);
    let (key, upload_id): (String, String) = loop {
        if let Some(row) = sqlx::query_as(leftover_query).bind(&digest).fetch_optional(&mut db).await.unwrap() {
            break row;
        }
        assert!(Instant::now() < deadline, "the copy to b never started a multipart upload");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let sent_parts = || async {
        let parts = s3_b.list_parts().bucket(&bucket_b).key(&key).upload_id(&upload_id).send().await;
        parts.expect("list the parts of the copy").parts().len()
    };
    while sent_parts().await == 0 {
        assert!(Instant::now() < deadline, "the copy to b never sent a part");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(Command::new("kill").args(["-KILL", &server.child.id().to_string()]).status().unwrap().success());
    assert!(!server.wait(Duration::from_secs(10)).success());
    drop(server);

    assert_eq!(instances(&mut db, &digest).await, ["a"], "no copy recorded in b");
    let published = s3_b.head_object().bucket(&bucket_b).key(format!("sha512/{digest}")).send().await;
    assert!(published.is_err(), "nothing published in b");
    assert!(sent_parts().await > 0, "the dead replica's parts are there");

    // A new replica takes the copy over once the dead one's lease ran out.
    let server = Process::start_with(deployment(&data_dir));
    let deadline = Instant::now() + Duration::from_secs(60);
    while instances(&mut db, &digest).await != ["a", "b"] {
        assert!(Instant::now() < deadline, "the copy to b was not made again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines: Vec<String> = server.json_lines().iter().map(|v| v.to_string()).collect();
    assert!(
        lines.iter().any(|l| l.contains("aborted the multipart copy a dead replica left") && l.contains(&key)),
        "the new replica aborted the leftover upload"
    );
    assert_eq!(sent_parts().await, 0, "no part of the dead upload is left");
    let location = serves_exactly_from(&http, &server, &digest, "?region=b").await;
    assert!(location.starts_with(&format!("{endpoint_b}/{bucket_b}/sha512/{digest}?")), "{location}");
}

/// `tooltool-api scrub`, the binary, run beside an embedded server: exit 0 on a clean store;
/// exit 1, naming the copy, once a blob's bytes were flipped on disk; and the server then stops
/// serving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrub_command_exits_zero_on_a_clean_store_and_one_when_a_copy_rotted() {
    let Staged { dir: _dir, data_dir, token: _, digest, server, http } = staged_upload(16).await;
    let res = http.get(server.url(&format!("/upload/complete/sha512/{digest}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    serves_exactly(&http, &server, &digest).await;

    let out = command(&data_dir).args(["scrub", "--rate", "1000"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a clean store: {stdout}\n{stderr}");
    assert!(stdout.contains("copies checked: 1"), "{stdout}");

    let blob = data_dir.join("blobs").join("sha512").join(&digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[12345] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let out = command(&data_dir).args(["scrub", "--digest", &digest]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{digest} in local: corrupt")), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = http.get(server.url(&format!("/sha512/{digest}"))).send().await.unwrap();
        if res.status() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still {} after the scrub", res.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = command(&data_dir).args(["scrub"]).output().unwrap();
    assert!(out.status.success(), "the lost copy is no longer recorded: {}", String::from_utf8_lossy(&out.stderr));
}
