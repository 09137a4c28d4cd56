//! Test data and assertions: digests, upload requests, manifest records, the exact 403
//! detail, problem+json checks, a download through the client's transfer engine, and the
//! command line run in-process.

use tooltool_proto::Digest;

use crate::{cli, proto};

/// The sha512 digest of `data`.
pub fn digest_of(data: &[u8]) -> Digest {
    let mut c = tooltool_sha512::Sha512Counter::new();
    c.update(data);
    c.finish().0
}

/// Downloads `digest` with `client` into `dest` through the transfer engine's entry point
/// ([`tooltool::transfer::download`]), as `fetch` does without a cache: into `.<name>.part`
/// beside `dest`, with the default retry policy. Returns the bytes transferred.
pub async fn download_to(
    client: &tooltool::ApiClient,
    digest: &Digest,
    size: Option<u64>,
    dest: &std::path::Path,
) -> Result<u64, tooltool::Error> {
    use tooltool::transfer::{Blob, Downloads, Servers, download};
    type Done<'a> = std::pin::Pin<Box<dyn Future<Output = Result<bool, tooltool::Error>> + Send + 'a>>;
    let name = dest.file_name().expect("a file path").to_string_lossy().into_owned();
    let part = dest.with_file_name(format!(".{name}.part"));
    let blob = Blob { name, digest: digest.clone(), size, sha256: None };
    let servers = Servers::new([client.clone()]);
    let retry = tooltool::RetryPolicy::default();
    let via = Downloads { servers: &servers, retry: &retry, region: None, progress: &tooltool::progress::Silent };
    let never = || -> Done<'_> { Box::pin(async { Ok(false) }) };
    download(via, &blob, &part, dest, &never).await
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
                    parts: false,
                };
                (proto::FileName::parse(name).expect("valid name"), f)
            })
            .collect(),
    }
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

/// The Python of the venv `scripts/test.sh` makes (taskcluster, mohawk, tuf): the other side's
/// own libraries. Unset, the test fails: it never skips.
pub fn test_python() -> String {
    std::env::var("TOOLTOOL_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TOOLTOOL_TEST_PYTHON is not set: this test needs the venv (taskcluster, mohawk, tuf) scripts/test.sh makes"
        )
    })
}

/// The path of `tests/py/<name>`.
pub fn py_script(name: &str) -> String {
    format!("{}/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/py/<name>` with `spec` as JSON on its standard input; its standard output as
/// JSON. A failing script fails the test with its standard error.
pub async fn run_py_script(name: &str, spec: &serde_json::Value) -> serde_json::Value {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(test_python())
        .arg(py_script(name))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    child.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name} printed no JSON: {e}"))
}
