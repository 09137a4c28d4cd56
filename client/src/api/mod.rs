//! [`ApiClient`]: one method per route of `shared/PROTOCOL.md`, plus the two storage
//! operations (a `GET` of a redirect's `Location`, a `PUT` to a `put_url`: [`storage`]); how
//! answers are read is [`response`]. Whole-file downloads and uploads are the transfer engine's
//! (`crate::transfer`), which sits above this module and calls it.
//!
//! Two HTTP clients are kept: one for the tooltool server, which carries
//! `Authorization: Bearer <token>` on every request and never follows redirects, and one for
//! storage URLs, which never carries any credential. Both use a 30 s connect timeout and a
//! 300 s read timeout, and no total timeout, since blobs can be many GB.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use tooltool_proto::{Batch, FileInfo, PartsPlan, PatchOp, ResultList, UploadRequest, VersionInfo, Wrapped};
use url::Url;

use crate::credentials::Credentials;
use crate::error::{Error, redact_url};

pub mod response;
mod storage;

pub use response::Failure;
use response::{api_error, drain, read_json, retry_after};

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a single read may stall.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
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

    /// Whether requests carry credentials.
    pub fn is_authenticated(&self) -> bool {
        self.auth.is_some()
    }

    /// `GET /tuf/<repo>/metadata/<file>`: its bytes, refused past `limit`; `None` on 404 (a
    /// root version that does not exist yet ends a rotation walk).
    pub async fn tuf_metadata(&self, repo: &str, file: &str, limit: u64) -> Result<Option<Vec<u8>>, Error> {
        let url = self.route(&["tuf", repo, "metadata", file]);
        let mut resp = self.send(&Method::GET, &url, self.request(Method::GET, &url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            drain(resp).await;
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(api_error(&Method::GET, &url, resp, false).await);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| Error::http(url.as_str(), e))? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Error::Untrusted(format!(
                    "GET {}: longer than the {limit} bytes allowed",
                    redact_url(url.as_str())
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
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

/// How long the server may take to verify `size` bytes.
pub(crate) fn verify_timeout(size: u64) -> Duration {
    Duration::from_secs(120 + size / (16 << 20))
}

#[cfg(test)]
mod tests;
