//! Reading the answers of the server and of storage: the [`Failure`] of a request (its error
//! and the `Retry-After` it carried), the one `Retry-After` parser, JSON bodies, and unexpected
//! answers turned into [`Error::Api`] with whatever echoes a signed request scrubbed away.

use std::time::Duration;

use reqwest::{Method, Response};
use serde::de::DeserializeOwned;
use tooltool_proto::Problem;
use url::Url;

use crate::error::{Error, redact_url};

/// How much of an error body is kept.
pub(super) const MAX_ERROR_BODY: usize = 4096;

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

/// The `Retry-After` delay of an answer (`X-Retry-After` when it has none, as the tooltool
/// server sends on 409): whole seconds, or an HTTP date (RFC 9110), which gives the time left
/// until then (zero once past).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    ["retry-after", "x-retry-after"].iter().find_map(|h| parse_retry_after(headers.get(*h)?.to_str().ok()?))
}

pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Reads a JSON body; a body of another shape is an [`Error::Protocol`].
pub(super) async fn read_json<T: DeserializeOwned>(method: &Method, url: &Url, resp: Response) -> Result<T, Error> {
    let bytes = resp.bytes().await.map_err(|e| Error::http(url.as_str(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Protocol(format!("{method} {}: the answer is not the expected JSON: {e}", redact_url(url.as_str())))
    })
}

/// Reads (and discards) what is left of a small body, so that the connection can be reused.
pub(super) async fn drain(mut resp: Response) {
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
pub(super) async fn api_error(method: &Method, url: &Url, mut resp: Response, storage: bool) -> Error {
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
pub(super) fn scrub_storage_body(body: &str, url: &Url) -> String {
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
