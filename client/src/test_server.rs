//! Test support of the client's unit tests: a hand-made HTTP/1.1 server on 127.0.0.1 that
//! answers with a closure and logs every request it saw, a server of one blob behind a
//! redirect, and the fixtures the tests share.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tooltool_proto::{Algorithm, Digest, FileInfo, Problem, Visibility};
use tooltool_sha512::Sha512Counter;

use crate::{ApiClient, Credentials};

pub(crate) const TOKEN: &str = "tok-SECRET-123";
pub(crate) const SIG: &str = "SIGNATURE-SECRET-456";

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
}

pub(crate) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub(crate) fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply { status, headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(), body: body.into() }
}

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection, answered by
/// `handler(base_url, request)`. Returns the base URL (with a trailing slash) and the log.
pub(crate) async fn serve<H>(handler: H) -> (String, Log)
where
    H: Fn(&str, &Seen) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let handler = Arc::new(handler);
    let (base2, log2) = (base.clone(), log.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (handler, base, log) = (handler.clone(), base2.clone(), log2.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).await.unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (n, v) = h.split_once(':').unwrap();
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                let len: usize =
                    headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; len];
                r.read_exact(&mut body).await.unwrap();
                let seen = Seen { method, target, headers, body };
                let rep = handler(&base, &seen);
                log.lock().unwrap().push(seen.clone());
                let mut out =
                    format!("HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n", rep.status, rep.body.len());
                for (n, v) in &rep.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                if seen.method != "HEAD" {
                    bytes.extend_from_slice(&rep.body);
                }
                let _ = w.write_all(&bytes).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (base, log)
}

pub(crate) fn digest_of(data: &[u8]) -> Digest {
    let mut c = Sha512Counter::new();
    c.update(data);
    c.finish().0
}

pub(crate) fn problem_json(status: u16, reason: &str, detail: &str) -> Vec<u8> {
    serde_json::to_vec(&Problem::new(status, reason, detail, "x")).unwrap()
}

pub(crate) fn file_info(digest: &Digest, size: u64) -> FileInfo {
    FileInfo {
        size,
        digest: digest.clone(),
        algorithm: Algorithm::Sha512,
        visibility: Visibility::Public,
        has_instances: true,
        instances: vec!["us-east-1".into()],
        proven: Default::default(),
        lost: Default::default(),
    }
}

pub(crate) fn client(base: &str) -> ApiClient {
    ApiClient::new(base, Some(Credentials::bearer(TOKEN))).unwrap()
}

/// A server whose `/sha512/<d>` redirects to `/storage/<d>?sig=...`, which serves `data`.
pub(crate) async fn blob_server(data: &'static [u8]) -> (String, Log) {
    serve(move |base, req| {
        if let Some(d) = req.path().strip_prefix("/sha512/") {
            let loc = format!("{base}storage/{d}?sig={SIG}&X-Amz-Credential=AKIAEXAMPLE");
            reply(302, &[("Location", &loc)], "")
        } else if req.path().starts_with("/storage/") {
            reply(200, &[], data)
        } else {
            reply(404, &[], "")
        }
    })
    .await
}

pub(crate) fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}
