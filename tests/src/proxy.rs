//! A fault-injecting HTTP/1.1 proxy for client tests, in front of a tooltool server. It
//! rewrites the `Location` of download redirects so that the storage request goes through it
//! too (under `/__storage`, forwarded to the real storage with its original `Host`), records
//! every request, and applies scripted [`Action`]s. One request per connection.

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
    /// The query, without `?` (empty when none).
    pub query: String,
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
    parts: VecDeque<Action>,
    keep_host: bool,
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
        Self::start_with(upstream, false).await
    }

    /// A proxy in front of an S3 server that forwards the `Host` it was sent (requests signed
    /// for the proxy's address stay valid), to count and fault the requests storage gets.
    pub async fn start_keeping_host(upstream: &str) -> Self {
        Self::start_with(upstream, true).await
    }

    async fn start_with(upstream: &str, keep_host: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let api = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let state = Arc::new(Mutex::new(State { keep_host, ..State::default() }));
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

    /// Queues actions for the next part uploads (a `PUT` carrying `partNumber=`, or to the
    /// embedded store's `/_blobs/parts/`), whatever other requests come between.
    pub fn parts(&self, actions: impl IntoIterator<Item = Action>) {
        self.state.lock().unwrap().parts.extend(actions);
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
    let len: usize = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
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
        let part = method == "PUT" && (target.contains("partNumber=") || target.starts_with("/_blobs/parts/"));
        match kind {
            Kind::Api if part => s.parts.pop_front(),
            Kind::Api => s.api.pop_front(),
            Kind::Storage => s.storage.pop_front(),
        }
        .unwrap_or(Action::Pass)
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let mut seen = Seen {
        kind,
        method: method.clone(),
        path,
        query,
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
    let host = match headers.iter().find(|(n, _)| n == "host") {
        Some((_, h)) if state.lock().unwrap().keep_host => h.clone(),
        _ => upstream.clone(),
    };
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in &headers {
        if n != "host" && n != "connection" {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    up.write_all(req.as_bytes()).await?;
    // A server may answer (a refusal) and close before it read the body: keep its answer.
    let sent = up.write_all(&body).await;
    let mut raw = Vec::new();
    let read = up.read_to_end(&mut raw).await;
    if raw.is_empty() {
        sent?;
        read?;
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let (resp_head, resp_body) = raw.split_at(split);
    let resp_head = String::from_utf8_lossy(resp_head).into_owned();
    let mut lines = resp_head.split("\r\n").filter(|l| !l.is_empty());
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if state.lock().unwrap().keep_host {
        // In front of S3: the answer goes back as it came (chunked ones included).
        seen.status = status;
        seen.body_sent = resp_body.len();
        state.lock().unwrap().log.push(seen);
        conn.write_all(&raw).await?;
        conn.flush().await?;
        return conn.shutdown().await;
    }
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
