//! The two storage operations of [`ApiClient`]: a `GET` of a redirect's `Location` and a `PUT`
//! to a `put_url` (a whole file, a range of it, or bytes). They go through the storage client,
//! which never carries a credential, and their error bodies are scrubbed of the signed request.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::ApiClient;
use super::response::{Failure, api_error, drain, retry_after};
use crate::error::{Error, redact_url};
use crate::progress::Transfer;

/// Read buffer of `put_file`.
const READ_BUFFER: usize = 256 * 1024;

impl ApiClient {
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
