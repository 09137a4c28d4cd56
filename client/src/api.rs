//! [`ApiClient`]: one method per route of `shared/PROTOCOL.md`, plus the two storage
//! operations (a `GET` of a redirect's `Location`, a `PUT` to a `put_url`). Whole-file
//! downloads and uploads go through the transfer engine ([`crate::transfer`]).
//!
//! Two HTTP clients are kept: one for the tooltool server, which carries
//! `Authorization: Bearer <token>` on every request and never follows redirects, and one for
//! storage URLs, which never carries any credential. Both use a 30 s connect timeout and a
//! 300 s read timeout, and no total timeout, since blobs can be many GB.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use tooltool_proto::{
    Batch, Digest, FileInfo, PartsPlan, PatchOp, Problem, ResultList, UploadRequest, VersionInfo, Wrapped,
};
use url::Url;

use crate::credentials::Credentials;
use crate::error::{Error, redact_url};
use crate::progress::{Silent, Transfer};
use crate::retry::{RetryPolicy, Servers, retry_after};
use crate::transfer::{self, Blob, Downloads};

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a single read may stall.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an error body is kept.
const MAX_ERROR_BODY: usize = 4096;
/// Read buffer of `put_file`.
const READ_BUFFER: usize = 256 * 1024;
/// The shortest pause between two completion checks, whatever the server asks.
const MIN_RETRY: Duration = Duration::from_millis(100);
/// The storage client follows at most this many redirects.
const STORAGE_REDIRECTS: usize = 5;

/// The answer of `GET`/`HEAD /sha512/<digest>`: where the blob can be fetched.
///
/// The [`Debug`](fmt::Debug) output hides the location's query string (a presigned
/// signature).
#[derive(Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The HTTP status (302).
    pub status: u16,
    /// The absolute, short-lived storage URL from the `Location` header.
    pub location: String,
}

impl fmt::Debug for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redirect").field("status", &self.status).field("location", &redact_url(&self.location)).finish()
    }
}

/// The answer of `GET /upload/complete/sha512/<digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The server verified the staged bytes; the file is downloadable.
    Verified(FileInfo),
    /// Nothing staged yet, or verification still running: ask again after `retry_after`.
    Pending {
        /// From the `X-Retry-After` header (whole seconds), 1 s when absent.
        retry_after: Duration,
    },
}

/// A client of one tooltool server.
///
/// Cheap to clone: the HTTP connection pools are shared.
#[derive(Clone)]
pub struct ApiClient {
    /// The service URL, always ending with `/`.
    base: Url,
    /// Talks to the tooltool server; redirects disabled.
    server: reqwest::Client,
    /// Talks to storage URLs; never carries credentials.
    storage: reqwest::Client,
    /// How requests to the server are authenticated.
    auth: Option<Auth>,
    /// Only for `Debug`.
    client_id: Option<String>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &redact_url(self.base.as_str()))
            .field("authenticated", &self.auth.is_some())
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// How requests to the server are authenticated.
#[derive(Clone)]
enum Auth {
    /// `Bearer <token>`, marked sensitive.
    Bearer(HeaderValue),
    /// Hawk (SHA-256), as `tooltool.py` and Taskcluster's clients sign: the key never leaves
    /// the machine. `ext` carries a Taskcluster certificate.
    Hawk { id: String, key: String, ext: Option<String> },
}

impl Auth {
    fn new(c: Credentials) -> Result<Self, Error> {
        let unsendable =
            || Error::Credentials("the access token contains characters that cannot be sent in an HTTP header".into());
        match c.client_id {
            Some(id) => {
                if HeaderValue::from_str(&id).is_err() || id.contains(['"', '\\']) {
                    return Err(Error::Credentials(
                        "the clientId contains characters that cannot be sent in a Hawk header".into(),
                    ));
                }
                // As Taskcluster's clients make it: base64 of {"certificate": {...}}.
                let ext = c.certificate.map(|cert| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(format!(r#"{{"certificate":{cert}}}"#))
                });
                hawk::Key::new(c.access_token.as_bytes(), hawk::DigestAlgorithm::Sha256).map_err(|_| unsendable())?;
                Ok(Self::Hawk { id, key: c.access_token, ext })
            }
            None => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", c.access_token)).map_err(|_| unsendable())?;
                value.set_sensitive(true);
                Ok(Self::Bearer(value))
            }
        }
    }

    /// The `Authorization` header of one request.
    fn header(&self, method: &Method, url: &Url) -> HeaderValue {
        match self {
            Self::Bearer(v) => v.clone(),
            Self::Hawk { id, key, ext } => {
                let credentials = hawk::Credentials {
                    id: id.clone(),
                    key: hawk::Key::new(key.as_bytes(), hawk::DigestAlgorithm::Sha256).expect("checked in Auth::new"),
                };
                let resource = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_owned(),
                };
                // An IPv6 literal is signed without its brackets, as the server and Hawk read it.
                let host = match url.host() {
                    Some(url::Host::Ipv6(ip)) => ip.to_string(),
                    _ => url.host_str().unwrap_or_default().to_owned(),
                };
                let port = url.port_or_known_default().unwrap_or(443);
                let mut request = hawk::RequestBuilder::new(method.as_str(), &host, port, &resource);
                if let Some(ext) = ext {
                    request = request.ext(ext.as_str());
                }
                let header = request.request().make_header(&credentials).expect("a Hawk header of plain values");
                let mut value = HeaderValue::from_str(&format!("Hawk {header}")).expect("Hawk headers are ASCII");
                value.set_sensitive(true);
                value
            }
        }
    }
}

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("tooltool/", env!("CARGO_PKG_VERSION")))
}

impl ApiClient {
    /// A client of the server at `base_url` (with or without a trailing slash; a path prefix
    /// such as `https://host/tooltool/` is kept). Anonymous when `credentials` is `None`.
    ///
    /// An unusable URL is an [`Error::Protocol`]; a token that cannot be sent in a header is an
    /// [`Error::Credentials`].
    pub fn new(base_url: &str, credentials: Option<Credentials>) -> Result<Self, Error> {
        let shown = redact_url(base_url.trim());
        let mut base =
            Url::parse(base_url.trim()).map_err(|e| Error::Protocol(format!("invalid tooltool URL {shown}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(Error::Protocol(format!(
                "invalid tooltool URL {shown}: expected http:// or https:// and a host"
            )));
        }
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }

        let (auth, client_id) = match credentials {
            Some(c) => {
                if base.scheme() == "http" && !is_loopback(&base) {
                    return Err(Error::Credentials(format!(
                        "credentials are never sent over plain http:// to {shown}: use https:// \
                         (plain http:// is only for a server on this machine)"
                    )));
                }
                let client_id = c.client_id.clone();
                (Some(Auth::new(c)?), client_id)
            }
            None => (None, None),
        };

        let server =
            builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| Error::http(base.as_str(), e))?;
        let storage = builder()
            .redirect(reqwest::redirect::Policy::limited(STORAGE_REDIRECTS))
            .build()
            .map_err(|e| Error::http(base.as_str(), e))?;
        Ok(Self { base, server, storage, auth, client_id })
    }

    /// The service URL, normalized to end with `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The URL of a route: the base URL plus these path segments, each percent-encoded.
    fn route(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("the base URL was checked to be a base").pop_if_empty().extend(segments);
        url
    }

    /// A request to the tooltool server, with the `Authorization` header when authenticated.
    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        let rb = self.server.request(method.clone(), url.clone());
        match &self.auth {
            Some(auth) => rb.header(AUTHORIZATION, auth.header(&method, url)),
            None => rb,
        }
    }

    /// Sends a request, mapping network failures to [`Error::Http`].
    async fn send(&self, method: &Method, url: &Url, rb: RequestBuilder) -> Result<Response, Error> {
        let shown = redact_url(url.as_str());
        tracing::debug!(%method, url = %shown, "sending request");
        let resp = rb.send().await.map_err(|e| Error::http(url.as_str(), e))?;
        tracing::debug!(%method, url = %shown, status = resp.status().as_u16(), "answer");
        Ok(resp)
    }

    /// Sends a request to the server and parses a 2xx JSON answer; anything else is an error.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        configure: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<T, Error> {
        let rb = configure(self.request(method.clone(), &url));
        let resp = self.send(&method, &url, rb).await?;
        if !resp.status().is_success() {
            return Err(api_error(&method, &url, resp, false).await);
        }
        read_json(&method, &url, resp).await
    }

    /// `GET /sha512/<digest>[?region=]` without following the redirect. 302 gives the
    /// [`Redirect`]; anything else is an [`Error::Api`] (a 302 without `Location` is an
    /// [`Error::Protocol`]).
    pub async fn download_redirect(&self, digest: &str, region: Option<&str>) -> Result<Redirect, Error> {
        self.redirect(Method::GET, digest, region).await
    }

    /// `HEAD /sha512/<digest>[?region=]`, otherwise as [`ApiClient::download_redirect`].
    pub async fn head_redirect(&self, digest: &str, region: Option<&str>) -> Result<Redirect, Error> {
        self.redirect(Method::HEAD, digest, region).await
    }

    async fn redirect(&self, method: Method, digest: &str, region: Option<&str>) -> Result<Redirect, Error> {
        self.redirect_or_retry_after(method, digest, region).await.map_err(|f| f.error)
    }

    /// `GET /sha512/<digest>[?region=]` like [`ApiClient::download_redirect`], but a failure
    /// also carries the `Retry-After` delay the server asked for (on 429 and 503 answers).
    pub async fn locate(&self, digest: &str, region: Option<&str>) -> Result<Redirect, Failure> {
        self.redirect_or_retry_after(Method::GET, digest, region).await
    }

    async fn redirect_or_retry_after(
        &self,
        method: Method,
        digest: &str,
        region: Option<&str>,
    ) -> Result<Redirect, Failure> {
        let mut url = self.route(&["sha512", digest]);
        if let Some(region) = region {
            url.query_pairs_mut().append_pair("region", region);
        }
        let resp = self.send(&method, &url, self.request(method.clone(), &url)).await?;
        if resp.status() != StatusCode::FOUND {
            let retry_after = retry_after(resp.headers());
            return Err(Failure { error: api_error(&method, &url, resp, false).await, retry_after });
        }
        let shown = redact_url(url.as_str());
        let location = resp
            .headers()
            .get(LOCATION)
            .ok_or_else(|| Error::Protocol(format!("{method} {shown}: answered 302 without a Location header")))
            .map_err(Failure::from)?
            .to_str()
            .map_err(|_| {
                Failure::from(Error::Protocol(format!("{method} {shown}: the Location header is not ASCII")))
            })?;
        let location = url.join(location).map_err(|e| {
            Failure::from(Error::Protocol(format!("{method} {shown}: the Location header is not a URL: {e}")))
        })?;
        if !matches!(location.scheme(), "http" | "https") {
            return Err(Error::Protocol(format!("{method} {shown}: the Location header is not an http(s) URL")).into());
        }
        drain(resp).await;
        Ok(Redirect { status: StatusCode::FOUND.as_u16(), location: location.into() })
    }

    /// Downloads a blob into `dest` with the transfer engine the command line uses
    /// ([`crate::transfer::download`]): resolves the redirect, GETs the `Location` with a
    /// request that carries no `Authorization` header, streams the body into `.<name>.part`
    /// beside `dest` while hashing it, retries and resumes as `fetch` does, checks `digest` and
    /// `size` (when given) and renames into place. Returns the number of bytes transferred. A
    /// mismatch is an [`Error::Mismatch`] and leaves no file behind.
    pub async fn download_to(&self, digest: &str, size: Option<u64>, dest: &Path) -> Result<u64, Error> {
        let digest = Digest::parse(digest).map_err(|e| Error::Protocol(format!("{digest:?}: {e}")))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::io(dest, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
        let part = dest.with_file_name(format!(".{name}.part"));
        let blob = Blob { name, digest, size };
        let servers = Servers::new([self.clone()]);
        let never = || -> futures_util::future::BoxFuture<'_, Result<bool, Error>> { Box::pin(async { Ok(false) }) };
        let via = Downloads { servers: &servers, retry: &RetryPolicy::default(), region: None, progress: &Silent };
        transfer::download(via, &blob, &part, dest, &never).await
    }

    /// GETs a storage URL (a redirect's `Location`) without any credential. With `offset > 0`
    /// it asks for the bytes from `offset` on (`Range: bytes=<offset>-`). Answers 200 and 206
    /// come back as the response, to be streamed by the caller; anything else is a
    /// [`Failure`] carrying the `Retry-After` delay when the storage sent one.
    pub async fn get_storage(&self, location: &str, offset: u64) -> Result<Response, Failure> {
        let url = storage_url(location)?;
        let mut rb = self.storage.get(url.clone());
        if offset > 0 {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        tracing::debug!(url = %redact_url(location), offset, "GET storage");
        let resp = rb.send().await.map_err(|e| Error::http(location, e))?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(resp),
            _ => {
                let retry_after = retry_after(resp.headers());
                Err(Failure { error: api_error(&Method::GET, &url, resp, true).await, retry_after })
            }
        }
    }

    /// `POST /upload` with `request` as JSON; returns the batch from the `result` member.
    pub async fn upload_batch(&self, request: &UploadRequest) -> Result<Batch, Error> {
        let url = self.route(&["upload"]);
        let wrapped: Wrapped<Batch> = self.call(Method::POST, url, |rb| rb.json(request)).await?;
        Ok(wrapped.result)
    }

    /// `POST /upload/parts/sha512/<digest>`: fresh URLs of the parts of an open upload in parts
    /// that storage does not have yet.
    pub async fn upload_parts(&self, digest: &str) -> Result<PartsPlan, Error> {
        let url = self.route(&["upload", "parts", "sha512", digest]);
        self.call(Method::POST, url, |rb| rb).await
    }

    /// `PUT`s bytes to a `put_url` (without `Authorization`), with
    /// `Content-Type: application/octet-stream`. Only 200 is success, anything else is an
    /// [`Error::Api`].
    pub async fn put_bytes(&self, put_url: &str, body: Bytes) -> Result<(), Error> {
        let url = storage_url(put_url)?;
        let rb = self.storage.put(url.clone()).header(CONTENT_TYPE, "application/octet-stream").body(body);
        self.put(url, rb).await.map_err(|f| f.error)
    }

    /// `PUT`s a file to a `put_url`, streamed from disk in constant memory, with
    /// `Content-Length` set from the file size; otherwise as [`ApiClient::put_bytes`].
    pub async fn put_file(&self, put_url: &str, path: &Path) -> Result<(), Error> {
        self.put_file_reporting(put_url, path, None).await.map_err(|f| f.error)
    }

    /// [`ApiClient::put_file`], counting the bytes sent on `bar`; a failure carries the
    /// `Retry-After` delay the storage asked for.
    pub async fn put_file_reporting(
        &self,
        put_url: &str,
        path: &Path,
        bar: Option<Arc<dyn Transfer>>,
    ) -> Result<(), Failure> {
        let len = tokio::fs::metadata(path).await.map_err(|e| Error::io(path, e))?.len();
        self.put_range_reporting(put_url, path, 0, len, bar).await
    }

    /// [`ApiClient::put_file_reporting`] of the `len` bytes of the file from `offset` (one part
    /// of an upload in parts), streamed from disk.
    pub async fn put_range_reporting(
        &self,
        put_url: &str,
        path: &Path,
        offset: u64,
        len: u64,
        bar: Option<Arc<dyn Transfer>>,
    ) -> Result<(), Failure> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let url = storage_url(put_url)?;
        let mut file = tokio::fs::File::open(path).await.map_err(|e| Error::io(path, e))?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| Error::io(path, e))?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_BUFFER).inspect(move |chunk| {
            if let (Some(bar), Ok(c)) = (&bar, chunk) {
                bar.advance(c.len() as u64);
            }
        });
        let rb = self
            .storage
            .put(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        self.put(url, rb).await
    }

    async fn put(&self, url: Url, rb: RequestBuilder) -> Result<(), Failure> {
        let method = Method::PUT;
        let shown = redact_url(url.as_str());
        tracing::debug!(url = %shown, "uploading");
        let resp = rb.send().await.map_err(|e| Error::http(url.as_str(), e))?;
        if resp.status() != StatusCode::OK {
            let retry_after = retry_after(resp.headers());
            return Err(Failure { error: api_error(&method, &url, resp, true).await, retry_after });
        }
        drain(resp).await;
        tracing::debug!(url = %shown, "uploaded");
        Ok(())
    }

    /// `GET /upload/complete/sha512/<digest>`: 200 gives [`Completion::Verified`], 409 gives
    /// [`Completion::Pending`] with the `Retry-After` / `X-Retry-After` delay (default 1 s);
    /// anything else is an [`Error::Api`].
    pub async fn complete(&self, digest: &str) -> Result<Completion, Error> {
        let method = Method::GET;
        let url = self.route(&["upload", "complete", "sha512", digest]);
        let resp = self.send(&method, &url, self.request(method.clone(), &url)).await?;
        match resp.status() {
            StatusCode::OK => Ok(Completion::Verified(read_json(&method, &url, resp).await?)),
            StatusCode::CONFLICT => {
                let retry_after = retry_after(resp.headers()).unwrap_or(Duration::from_secs(1));
                drain(resp).await;
                Ok(Completion::Pending { retry_after })
            }
            _ => Err(api_error(&method, &url, resp, false).await),
        }
    }

    /// Calls [`ApiClient::complete`] until the file is verified, sleeping the server's
    /// `retry_after` between tries; gives up with an [`Error::Protocol`] after `timeout`.
    pub async fn complete_until_verified(&self, digest: &str, timeout: Duration) -> Result<FileInfo, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.complete(digest).await? {
                Completion::Verified(info) => return Ok(info),
                Completion::Pending { retry_after } => {
                    let now = Instant::now();
                    if now >= deadline {
                        let url = self.route(&["upload", "complete", "sha512", digest]);
                        return Err(Error::Protocol(format!(
                            "GET {}: the upload of {digest} was still not verified after {:.1} s",
                            redact_url(url.as_str()),
                            timeout.as_secs_f64()
                        )));
                    }
                    tracing::debug!(digest, ?retry_after, "upload not verified yet");
                    tokio::time::sleep(retry_after.max(MIN_RETRY).min(deadline - now)).await;
                }
            }
        }
    }

    /// `GET /file/sha512/<digest>`.
    pub async fn get_file(&self, digest: &str) -> Result<FileInfo, Error> {
        let url = self.route(&["file", "sha512", digest]);
        self.call(Method::GET, url, |rb| rb).await
    }

    /// `PATCH /file/sha512/<digest>` with the operations, applied in order.
    pub async fn patch_file(&self, digest: &str, ops: &[PatchOp]) -> Result<FileInfo, Error> {
        let url = self.route(&["file", "sha512", digest]);
        self.call(Method::PATCH, url, |rb| rb.json(ops)).await
    }

    /// `GET /upload?q=<q>`: the batches whose author or message contains `q`.
    pub async fn search_batches(&self, q: &str) -> Result<Vec<Batch>, Error> {
        let mut url = self.route(&["upload"]);
        url.query_pairs_mut().append_pair("q", q);
        let list: ResultList<Batch> = self.call(Method::GET, url, |rb| rb).await?;
        Ok(list.result)
    }

    /// `GET /upload/<id>`.
    pub async fn get_batch(&self, id: i64) -> Result<Batch, Error> {
        let url = self.route(&["upload", &id.to_string()]);
        self.call(Method::GET, url, |rb| rb).await
    }

    /// `GET /file?q=<q>`: the files with a name containing `q` or a digest starting with it.
    pub async fn search_files(&self, q: &str) -> Result<Vec<FileInfo>, Error> {
        let mut url = self.route(&["file"]);
        url.query_pairs_mut().append_pair("q", q);
        let list: ResultList<FileInfo> = self.call(Method::GET, url, |rb| rb).await?;
        Ok(list.result)
    }

    /// `GET /__version__`.
    pub async fn version(&self) -> Result<VersionInfo, Error> {
        let url = self.route(&["__version__"]);
        self.call(Method::GET, url, |rb| rb).await
    }
}

/// A failed request, with the delay the server asked to wait before trying again.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// From a `Retry-After` header (seconds or an HTTP date), when the answer had one.
    pub retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self { error, retry_after: None }
    }
}

/// How long the server may take to verify `size` bytes.
pub(crate) fn verify_timeout(size: u64) -> Duration {
    Duration::from_secs(120 + size / (16 << 20))
}

/// Parses a URL handed out by the server for storage (`Location`, `put_url`).
fn storage_url(url: &str) -> Result<Url, Error> {
    let shown = redact_url(url);
    let parsed = Url::parse(url).map_err(|e| Error::Protocol(format!("invalid storage URL {shown}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Protocol(format!("invalid storage URL {shown}: not an http(s) URL")));
    }
    Ok(parsed)
}

/// Reads a JSON body; a body of another shape is an [`Error::Protocol`].
async fn read_json<T: DeserializeOwned>(method: &Method, url: &Url, resp: Response) -> Result<T, Error> {
    let bytes = resp.bytes().await.map_err(|e| Error::http(url.as_str(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Protocol(format!("{method} {}: the answer is not the expected JSON: {e}", redact_url(url.as_str())))
    })
}

/// Reads (and discards) what is left of a small body, so that the connection can be reused.
async fn drain(mut resp: Response) {
    let mut seen = 0;
    while seen < 64 * 1024 {
        match resp.chunk().await {
            Ok(Some(c)) => seen += c.len(),
            _ => break,
        }
    }
}

/// Turns an unexpected answer into an [`Error::Api`]: status, body (at most 4 KiB) and the
/// problem body when it parses. For storage answers, whatever echoes the signed request is
/// scrubbed from the body.
async fn api_error(method: &Method, url: &Url, mut resp: Response, storage: bool) -> Error {
    let status = resp.status().as_u16();
    let mut raw = Vec::new();
    while raw.len() <= MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => raw.extend_from_slice(&c),
            _ => break,
        }
    }
    let mut body = String::from_utf8_lossy(&raw).into_owned();
    if body.len() > MAX_ERROR_BODY {
        let mut cut = MAX_ERROR_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let problem = if storage {
        body = scrub_storage_body(&body, url);
        None
    } else {
        serde_json::from_str::<Problem>(&body).ok()
    };
    let err = Error::Api { method: method.to_string(), url: redact_url(url.as_str()), status, problem, body };
    tracing::debug!(error = %err, "request failed");
    err
}

/// Removes from a storage error body what may echo the presigned request: the elements in
/// which S3 repeats the signed request, and every longer query value of `url`.
fn scrub_storage_body(body: &str, url: &Url) -> String {
    const REDACTED: &str = "[redacted]";
    let mut s = body.to_owned();
    for tag in [
        "StringToSign",
        "StringToSignBytes",
        "CanonicalRequest",
        "CanonicalRequestBytes",
        "SignatureProvided",
        "AWSAccessKeyId",
    ] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let mut pos = 0;
        while let Some(i) = s[pos..].find(&open) {
            let from = pos + i + open.len();
            let end = s[from..].find(&close).map_or(s.len(), |j| from + j);
            s.replace_range(from..end, REDACTED);
            pos = from + REDACTED.len();
        }
    }
    let mut secrets: Vec<String> = url.query_pairs().map(|(_, v)| v.into_owned()).collect();
    if let Some(q) = url.query() {
        secrets.extend(q.split('&').filter_map(|kv| kv.split_once('=')).map(|(_, v)| v.to_owned()));
    }
    for secret in secrets.iter().filter(|v| v.len() >= 6) {
        s = s.replace(secret.as_str(), REDACTED);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tooltool_proto::{Algorithm, Visibility};
    use tooltool_sha512::Sha512Counter;

    use super::*;

    const TOKEN: &str = "tok-SECRET-123";
    const SIG: &str = "SIGNATURE-SECRET-456";

    /// One request as the fake server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
        fn path(&self) -> &str {
            self.target.split('?').next().unwrap()
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.into(),
        }
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection, answered by
    /// `handler(base_url, request)`. Returns the base URL (with a trailing slash) and the log.
    async fn serve<H>(handler: H) -> (String, Log)
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
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                        rep.status,
                        rep.body.len()
                    );
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

    fn digest_of(data: &[u8]) -> Digest {
        let mut c = Sha512Counter::new();
        c.update(data);
        c.finish().0
    }

    fn problem_json(status: u16, reason: &str, detail: &str) -> Vec<u8> {
        serde_json::to_vec(&Problem::new(status, reason, detail, "x")).unwrap()
    }

    fn file_info(digest: &Digest, size: u64) -> FileInfo {
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

    fn client(base: &str) -> ApiClient {
        ApiClient::new(base, Some(Credentials::bearer(TOKEN))).unwrap()
    }

    /// A server whose `/sha512/<d>` redirects to `/storage/<d>?sig=...`, which serves `data`.
    async fn blob_server(data: &'static [u8]) -> (String, Log) {
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

    fn dir_entries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn base_url_is_normalized() {
        for (given, expected) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
            ("https://h/tooltool", "https://h/tooltool/"),
            ("https://h/tooltool/?x=1#f", "https://h/tooltool/"),
        ] {
            let c = ApiClient::new(given, None).unwrap();
            assert_eq!(c.base_url(), expected);
        }
        let c = ApiClient::new("https://h/prefix", None).unwrap();
        let d = "a".repeat(128);
        assert_eq!(c.route(&["sha512", &d]).as_str(), format!("https://h/prefix/sha512/{d}"));
        assert_eq!(
            c.route(&["upload", "complete", "sha512", "a b/c"]).as_str(),
            "https://h/prefix/upload/complete/sha512/a%20b%2Fc"
        );
        for bad in ["", "not a url", "ftp://h/", "mailto:x@y"] {
            assert!(matches!(ApiClient::new(bad, None), Err(Error::Protocol(_))), "{bad}");
        }
    }

    #[test]
    fn debug_hides_token_and_signature() {
        let c = client("https://h:1/");
        let shown = format!("{c:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        let r = Redirect { status: 302, location: format!("https://s3/x?sig={SIG}") };
        let shown = format!("{r:?}");
        assert!(!shown.contains(SIG), "{shown}");
        assert!(shown.contains("https://s3/x"), "{shown}");
    }

    #[test]
    fn storage_bodies_are_scrubbed() {
        let url = Url::parse(&format!("https://b.s3.amazonaws.com/k?X-Amz-Signature={SIG}&a=b")).unwrap();
        let body = format!(
            "<Error><Code>SignatureDoesNotMatch</Code><SignatureProvided>{SIG}</SignatureProvided>\
             <StringToSign>AWS4 whatever</StringToSign><CanonicalRequest>PUT /k X-Amz-Signature={SIG}</CanonicalRequest>\
             <Other>{SIG}</Other></Error>"
        );
        let s = scrub_storage_body(&body, &url);
        assert!(!s.contains(SIG), "{s}");
        assert!(!s.contains("AWS4 whatever"), "{s}");
        assert!(s.contains("SignatureDoesNotMatch"), "{s}");
    }

    #[tokio::test]
    async fn download_sends_the_token_to_the_server_only() {
        let data: &'static [u8] = b"hello tooltool";
        let digest = digest_of(data);
        let (base, log) = blob_server(data).await;
        let c = client(&base);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("hello.txt");

        let r = c.download_redirect(digest.as_str(), Some("eu")).await.unwrap();
        assert_eq!(r.status, 302);
        assert!(r.location.starts_with(&format!("{base}storage/")), "{}", r.location);
        let r = c.head_redirect(digest.as_str(), None).await.unwrap();
        assert_eq!(r.status, 302);

        let n = c.download_to(digest.as_str(), Some(data.len() as u64), &dest).await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(dir_entries(dir.path()), vec!["hello.txt".to_owned()]);

        let log = log.lock().unwrap().clone();
        let methods: Vec<_> = log.iter().map(|s| (s.method.as_str(), s.path())).collect();
        let redirect_path = format!("/sha512/{digest}");
        let storage_path = format!("/storage/{digest}");
        assert_eq!(
            methods,
            vec![
                ("GET", redirect_path.as_str()),
                ("HEAD", redirect_path.as_str()),
                ("GET", redirect_path.as_str()),
                ("GET", storage_path.as_str()),
            ]
        );
        assert_eq!(log[0].target, format!("/sha512/{digest}?region=eu"));
        for s in &log[..3] {
            assert_eq!(s.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
        }
        assert_eq!(log[3].header("authorization"), None);
    }

    #[tokio::test]
    async fn download_mismatch_leaves_no_file() {
        let data: &'static [u8] = b"not what you asked for";
        let (base, _) = blob_server(data).await;
        let c = client(&base);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x");
        let wanted = digest_of(b"something else");

        let err = c.download_to(wanted.as_str(), None, &dest).await.unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("sha512"), "{err}");
        assert!(!err.to_string().contains(SIG), "{err}");

        let right = digest_of(data);
        for size in [3, 1000] {
            let err = c.download_to(right.as_str(), Some(size), &dest).await.unwrap_err();
            assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
            assert!(!err.to_string().contains(SIG), "{err}");
        }
        assert!(dir_entries(dir.path()).is_empty(), "{:?}", dir_entries(dir.path()));

        // A file already in place is replaced only by verified bytes.
        std::fs::write(&dest, b"old").unwrap();
        assert!(c.download_to(wanted.as_str(), None, &dest).await.is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        c.download_to(right.as_str(), None, &dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[tokio::test]
    async fn server_errors_become_api_errors() {
        let (base, _) = serve(|_, req| match req.path() {
            "/sha512/missing" => reply(
                404,
                &[("Content-Type", "application/problem+json")],
                problem_json(404, "Not Found", "no such file"),
            ),
            "/sha512/nolocation" => reply(302, &[], ""),
            "/file/sha512/plain" => reply(500, &[], "x".repeat(10_000)),
            "/__version__" => reply(200, &[], "{\"not\": \"a version\"}"),
            _ => reply(418, &[], ""),
        })
        .await;
        let c = client(&base);

        let err = c.download_redirect("missing", Some("r")).await.unwrap_err();
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.problem().unwrap().detail, "no such file");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("GET {base}sha512/missing: 404 Not Found")), "{msg}");
        assert!(!msg.contains("region"), "{msg}");

        let err = c.download_redirect("nolocation", None).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert!(err.to_string().contains("Location"), "{err}");

        let err = c.get_file("plain").await.unwrap_err();
        let Error::Api { status, problem, body, .. } = &err else { panic!("{err:?}") };
        assert_eq!((*status, problem.is_none(), body.len()), (500, true, MAX_ERROR_BODY));

        let err = c.version().await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    }

    #[tokio::test]
    async fn network_errors_do_not_show_the_query() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = client(&format!("http://{addr}/"));
        let err = c.put_bytes(&format!("http://{addr}/blob?sig={SIG}"), Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(err, Error::Http { .. }), "{err:?}");
        let (msg, dbg) = (err.to_string(), format!("{err:?}"));
        assert!(msg.contains(&format!("http://{addr}/blob")), "{msg}");
        assert!(!msg.contains(SIG) && !dbg.contains(SIG), "{msg} / {dbg}");
        let err = c.get_file("x").await.unwrap_err();
        assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn put_streams_the_file_without_credentials() {
        let (base, log) = serve(|_, req| match req.path() {
            "/ok" => reply(200, &[], ""),
            _ => reply(403, &[], format!("<Error><SignatureProvided>{SIG}</SignatureProvided></Error>")),
        })
        .await;
        let c = client(&base);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();

        c.put_file(&format!("{base}ok?sig={SIG}"), &path).await.unwrap();
        c.put_bytes(&format!("{base}ok"), Bytes::from_static(b"abc")).await.unwrap();
        let err = c.put_file(&format!("{base}denied?sig={SIG}"), &path).await.unwrap_err();
        assert_eq!(err.status(), Some(403));
        assert!(!err.to_string().contains(SIG) && !format!("{err:?}").contains(SIG), "{err:?}");
        let err = c.put_file(&format!("{base}ok"), &dir.path().join("missing")).await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");

        let log = log.lock().unwrap().clone();
        assert_eq!(log[0].method, "PUT");
        assert_eq!(log[0].body, data);
        assert_eq!(log[0].header("content-length"), Some("700000"));
        assert_eq!(log[0].header("transfer-encoding"), None);
        assert_eq!(log[0].header("content-type"), Some("application/octet-stream"));
        assert_eq!(log[1].body, b"abc");
        for s in &log {
            assert_eq!(s.header("authorization"), None);
        }
    }

    #[tokio::test]
    async fn put_requires_exactly_200() {
        let (base, _) = serve(|_, _| reply(201, &[], "")).await;
        let err = client(&base).put_bytes(&format!("{base}x"), Bytes::new()).await.unwrap_err();
        assert_eq!(err.status(), Some(201));
    }

    #[tokio::test]
    async fn the_upload_engine_retries_a_put_after_the_retry_after_it_was_given() {
        let data = b"upload me".to_vec();
        let d = digest_of(&data);
        let info = serde_json::to_vec(&file_info(&d, data.len() as u64)).unwrap();
        let puts = Arc::new(Mutex::new(Vec::<std::time::Instant>::new()));
        let puts2 = puts.clone();
        let (base, log) = serve(move |_, req| match req.method.as_str() {
            "PUT" => {
                let mut p = puts2.lock().unwrap();
                p.push(std::time::Instant::now());
                match p.len() {
                    1 => reply(503, &[("Retry-After", "1")], "slow down"),
                    _ => reply(200, &[], ""),
                }
            }
            _ => reply(200, &[], info.clone()),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        // Backoff alone would wait 10 ms: the server's Retry-After must win.
        let retry = RetryPolicy { base_delay: Duration::from_millis(10), ..RetryPolicy::default() };
        let blob = Blob { name: "f".into(), digest: d.clone(), size: Some(data.len() as u64) };
        transfer::upload(&client(&base), &format!("{base}put?sig={SIG}"), &path, &blob, &retry, &Silent).await.unwrap();
        let p = puts.lock().unwrap().clone();
        assert_eq!(p.len(), 2);
        assert!(p[1] - p[0] >= Duration::from_secs(1), "Retry-After not honoured: {:?}", p[1] - p[0]);
        let log = log.lock().unwrap().clone();
        let calls: Vec<_> = log.iter().map(|s| (s.method.as_str(), s.path())).collect();
        let complete = format!("/upload/complete/sha512/{d}");
        assert_eq!(calls, [("PUT", "/put"), ("PUT", "/put"), ("GET", complete.as_str())]);
        assert_eq!(log[1].body, data);
    }

    #[tokio::test]
    async fn complete_reports_pending_and_verified() {
        let d = digest_of(b"data");
        let info = file_info(&d, 4);
        let body = serde_json::to_vec(&info).unwrap();
        let calls = Arc::new(Mutex::new(0));
        let calls2 = calls.clone();
        let (base, log) = serve(move |_, req| {
            let mut n = calls2.lock().unwrap();
            *n += 1;
            match (req.path().rsplit('/').next().unwrap(), *n) {
                ("three", _) => reply(409, &[("X-Retry-After", "3")], ""),
                ("default", _) => reply(409, &[], ""),
                ("never", _) => reply(409, &[("X-Retry-After", "0")], ""),
                (_, 1 | 2) => reply(409, &[("X-Retry-After", "0")], ""),
                _ => reply(200, &[], body.clone()),
            }
        })
        .await;
        let c = client(&base);
        assert_eq!(c.complete_until_verified(d.as_str(), Duration::from_secs(10)).await.unwrap(), info);
        assert_eq!(*calls.lock().unwrap(), 3);
        assert_eq!(c.complete("three").await.unwrap(), Completion::Pending { retry_after: Duration::from_secs(3) });
        assert_eq!(c.complete("default").await.unwrap(), Completion::Pending { retry_after: Duration::from_secs(1) });
        let err = c.complete_until_verified("never", Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert!(
            log.lock().unwrap()[0].target == format!("/upload/complete/sha512/{d}"),
            "{:?}",
            log.lock().unwrap()[0]
        );
    }

    #[tokio::test]
    async fn search_and_patch_routes() {
        let d = digest_of(b"x");
        let info = file_info(&d, 1);
        let info_json = serde_json::to_vec(&info).unwrap();
        let list_json = serde_json::to_vec(&Wrapped { result: vec![info.clone()] }).unwrap();
        let (base, log) = serve(move |_, req| match (req.method.as_str(), req.path()) {
            ("GET", "/file") => reply(200, &[], list_json.clone()),
            ("GET", "/upload") => reply(200, &[], "{\"result\": []}"),
            ("PATCH", _) => reply(200, &[], info_json.clone()),
            ("GET", "/upload/42") => reply(404, &[], problem_json(404, "Not Found", "no batch")),
            ("GET", "/__version__") => reply(200, &[], r#"{"source":"s","version":"1","commit":"c","build":"b"}"#),
            _ => reply(400, &[], ""),
        })
        .await;
        let c = ApiClient::new(base.trim_end_matches('/'), None).unwrap();
        assert_eq!(c.search_files("gcc & co").await.unwrap(), vec![info.clone()]);
        assert!(c.search_batches("me").await.unwrap().is_empty());
        let ops = [PatchOp::SetVisibility { visibility: Visibility::Internal }, PatchOp::DeleteInstances];
        assert_eq!(c.patch_file(d.as_str(), &ops).await.unwrap(), info);
        assert_eq!(c.get_batch(42).await.unwrap_err().status(), Some(404));
        assert_eq!(c.version().await.unwrap().version, "1");

        let log = log.lock().unwrap().clone();
        assert_eq!(log[0].target, "/file?q=gcc+%26+co");
        assert_eq!(log[1].target, "/upload?q=me");
        assert_eq!(log[2].target, format!("/file/sha512/{d}"));
        let sent: Vec<PatchOp> = serde_json::from_slice(&log[2].body).unwrap();
        assert_eq!(sent, ops);
        assert!(log.iter().all(|s| s.header("authorization").is_none()));
    }
}
