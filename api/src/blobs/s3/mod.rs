//! The S3 store: presigned GET/PUT URLs, and verification that publishes exactly the bytes it
//! hashed by pinning the server-side copy to the staged object's ETag
//! (`x-amz-copy-source-if-match`): if a second PUT replaced the staged object while it was being
//! hashed, the copy fails with 412 and nothing is published.

mod multipart;
mod presign;
mod quarantine;
mod replicate;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};

use self::presign::Presigner;
pub use self::replicate::{CopyMode, CopySizes, Replicated};
use super::{BlobStore, ContentHasher, Hashes, ReceivedPart, Sha512Counter, StoreError, Verification, mismatch};
use crate::settings::S3Settings;
use crate::time::Pace;
use tooltool_proto::Digest;

/// How server-side copies are made: in one CopyObject up to `single`, else in parts of `part`.
#[derive(Debug, Clone, Copy)]
struct CopyLimits {
    single: u64,
    part: u64,
}

/// S3's: a single CopyObject copies at most 5 GiB; larger copies go in parts of 512 MiB.
const COPY_LIMITS: CopyLimits = CopyLimits { single: 5 * 1024 * 1024 * 1024, part: 512 * 1024 * 1024 };
/// The `Cache-Control` of every published blob: its bytes never change under its key, so a CDN
/// (or any cache) may keep it for a year.
pub const PUBLISHED_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// Longest wait for a connection to S3.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the head of the answer to a server-side copy (one of a 5 GiB part answers
/// only when done), or to a request carrying a streamed body. Every other call waits the
/// configured `TOOLTOOL_S3_TIMEOUT` ([`S3Settings::timeout`]).
const LONG_WAIT: Duration = Duration::from_secs(120);
/// Longest pause while a body streams.
const STREAM_STALL: Duration = Duration::from_secs(60);
/// The least a hashed read hands on at a time (but its last chunk).
const CHUNK: usize = 256 * 1024;

/// Blobs in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// The configured endpoint (`None`: AWS). Two buckets on one endpoint copy server-side.
    endpoint: Option<String>,
    presigner: Arc<Presigner>,
    /// [`COPY_LIMITS`] (smaller in a test, to run the part-by-part path).
    copy_limits: CopyLimits,
}

/// The per-call configuration of a server-side copy, or of a request whose body is streamed:
/// [`LONG_WAIT`] for its answer, and no bound on the whole operation.
fn long_wait() -> aws_sdk_s3::config::Builder {
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .read_timeout(LONG_WAIT)
        .disable_operation_timeout()
        .build();
    aws_sdk_s3::config::Builder::new().timeout_config(timeouts)
}

fn status_of<E, R: HttpStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(|r| r.status_u16())
}

/// The status of a raw HTTP response, whatever its type.
trait HttpStatus {
    fn status_u16(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An SDK failure: unavailable when S3 could not be reached, timed out, or answered 5xx.
fn sdk_err<E: std::error::Error + 'static, R: HttpStatus + std::fmt::Debug + 'static>(
    what: &str,
    e: SdkError<E, R>,
) -> StoreError {
    let unreachable =
        matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_))
            || status_of(&e).is_some_and(|s| s >= 500);
    if unreachable {
        StoreError::unavailable(what, DisplayErrorContext(e))
    } else {
        StoreError::msg(what, DisplayErrorContext(e))
    }
}

impl S3Store {
    /// Builds the client from settings (static keys if given, else the AWS default chain).
    pub async fn new(s: &S3Settings) -> anyhow::Result<Self> {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new(s.region.clone()));
        if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
            loader =
                loader.credentials_provider(Credentials::new(id, secret.expose(), None, None, "tooltool-settings"));
        }
        let sdk = loader.load().await;
        // GET, HEAD, PUT, DELETE and list: headers within the bound, retries included, so that a
        // black-holed endpoint fails a request in time (`long_wait` lifts it for copies).
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(s.timeout)
            .operation_timeout(s.timeout)
            .build();
        // Presigned PUTs must not carry an SDK-computed checksum of an empty body.
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .timeout_config(timeouts)
            .force_path_style(s.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = &s.endpoint {
            conf = conf.endpoint_url(ep);
        }
        let client = Client::from_conf(conf.build());
        // The SDK resolves the endpoint once here; every later URL starts the same way.
        const PROBE: &str = "tooltool-endpoint-probe";
        let probe = client
            .get_object()
            .bucket(&s.bucket)
            .key(PROBE)
            .presigned(Self::presign_config(Duration::from_secs(60))?)
            .await
            .map_err(|e| anyhow::anyhow!("cannot presign an S3 URL: {}", DisplayErrorContext(e)))?;
        let uri = probe.uri();
        let prefix = uri.split('?').next().and_then(|u| u.strip_suffix(PROBE)).map(str::to_owned);
        let prefix = prefix.ok_or_else(|| anyhow::anyhow!("unexpected presigned S3 URL shape"))?;
        let presigner = Presigner::new(prefix, s.region.clone(), sdk.credentials_provider())?;
        Ok(Self {
            client,
            bucket: s.bucket.clone(),
            endpoint: s.endpoint.clone(),
            presigner: Arc::new(presigner),
            copy_limits: COPY_LIMITS,
        })
    }

    fn presign_config(ttl: Duration) -> Result<PresigningConfig, StoreError> {
        PresigningConfig::expires_in(ttl).map_err(|e| StoreError::msg("presigning config", e))
    }

    /// Server-side copy of `src` in `src_bucket` (on this store's endpoint) to `dest` here,
    /// only while `src` still has `etag`. `Ok(false)` when it changed.
    async fn copy_if_match(
        &self,
        src_bucket: &str,
        src: &str,
        dest: &str,
        etag: &str,
        size: u64,
    ) -> Result<bool, StoreError> {
        let limits = self.copy_limits;
        let source = format!("{src_bucket}/{src}");
        if size <= limits.single {
            let res = self
                .client
                .copy_object()
                .bucket(&self.bucket)
                .key(dest)
                .copy_source(&source)
                .copy_source_if_match(etag)
                .metadata_directive(MetadataDirective::Replace)
                .cache_control(PUBLISHED_CACHE_CONTROL)
                .customize()
                .config_override(long_wait())
                .send()
                .await;
            return match res {
                Ok(_) => Ok(true),
                Err(e) if status_of(&e) == Some(412) => Ok(false),
                Err(e) => Err(sdk_err("copy staged object", e)),
            };
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(dest)
            .cache_control(PUBLISHED_CACHE_CONTROL)
            .send()
            .await
            .map_err(|e| sdk_err("start multipart copy", e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        let part_size = limits.part.max(size.div_ceil(10_000));
        let mut parts = Vec::new();
        let mut outcome = Ok(true);
        for (i, start) in (0..size).step_by(part_size as usize).enumerate() {
            let end = (start + part_size).min(size) - 1;
            let res = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(dest)
                .upload_id(&upload_id)
                .part_number(i as i32 + 1)
                .copy_source(&source)
                .copy_source_range(format!("bytes={start}-{end}"))
                .copy_source_if_match(etag)
                .customize()
                .config_override(long_wait())
                .send()
                .await;
            match res {
                Ok(out) => parts.push(
                    CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .set_e_tag(out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned))
                        .build(),
                ),
                Err(e) if status_of(&e) == Some(412) => {
                    outcome = Ok(false);
                    break;
                }
                Err(e) => {
                    outcome = Err(sdk_err("copy part", e));
                    break;
                }
            }
        }
        if !matches!(outcome, Ok(true)) {
            let _ =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(dest).upload_id(&upload_id).send().await;
            return outcome;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(dest)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .customize()
            .config_override(long_wait())
            .send()
            .await
            .map_err(|e| sdk_err("complete multipart copy", e))?;
        Ok(true)
    }

    /// The object `key`, or `None` if there is none.
    async fn get(&self, key: &str, what: &str) -> Result<Option<GetObjectOutput>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) || status_of(&e) == Some(404) => {
                Ok(None)
            }
            Err(e) => Err(sdk_err(what, e)),
        }
    }

    async fn delete_key(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_err("delete object", e))
    }
}

#[async_trait]
impl BlobStore for S3Store {
    fn region(&self) -> &str {
        self.presigner.region()
    }

    async fn download_url(&self, digest: &Digest, ttl: Duration) -> Result<String, StoreError> {
        self.presigner.presign("GET", &format!("sha512/{digest}"), ttl).await
    }

    async fn upload_url(&self, staging_key: &str, _size: u64, ttl: Duration) -> Result<String, StoreError> {
        self.presigner.presign("PUT", &format!("staging/{staging_key}"), ttl).await
    }

    async fn verify_and_publish(
        &self,
        staging_key: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Verification, StoreError> {
        let key = format!("staging/{staging_key}");
        let Some(obj) = self.get(&key, "read staged object").await? else { return Ok(Verification::NotStaged) };
        let etag = obj.e_tag().map(str::to_owned).ok_or_else(|| StoreError::msg("read staged object", "no ETag"))?;
        let got = hash_body(obj.body, size, "stream staged object").await?;
        if let Some(why) = mismatch(digest, size, &got.sha512, got.len) {
            self.delete_key(&key).await?;
            return Ok(Verification::Mismatch(why));
        }
        if !self.copy_if_match(&self.bucket, &key, &format!("sha512/{digest}"), &etag, size).await? {
            return Ok(Verification::Changed);
        }
        if let Err(e) = self.delete_key(&key).await {
            tracing::warn!(error = %e, "could not remove a verified staged object; the sweeper will retry");
        }
        Ok(Verification::Published { sha256: got.sha256 })
    }

    async fn copy_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(format!("sha512/{digest}")).send().await {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(-1).max(0) as u64)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk_err("head a stored copy", e)),
        }
    }

    async fn hash_copy(&self, digest: &Digest, size: u64, pace: &Pace) -> Result<Option<Hashes>, StoreError> {
        let Some(obj) = self.get(&format!("sha512/{digest}"), "read a stored copy").await? else { return Ok(None) };
        let mut reader = HashedBody::new(obj.body, size, "stream a stored copy");
        while let Some(chunk) = reader.next().await? {
            pace.read(chunk.len() as u64).await;
        }
        Ok(Some(reader.finish()))
    }

    async fn delete_staged(&self, staging_key: &str) -> Result<(), StoreError> {
        self.delete_key(&format!("staging/{staging_key}")).await
    }

    async fn start_parts(&self, staging_key: &str) -> Result<String, StoreError> {
        self.start_multipart(staging_key).await
    }

    async fn part_url(&self, key: &str, upload_id: &str, n: u32, _: u64, ttl: Duration) -> Result<String, StoreError> {
        self.presign_part(key, upload_id, n, ttl).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<ReceivedPart>>, StoreError> {
        self.list_multipart(key, upload_id).await
    }

    async fn complete_parts(&self, key: &str, upload_id: &str, parts: &[ReceivedPart]) -> Result<bool, StoreError> {
        self.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_parts(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.abort_multipart(key, upload_id).await
    }

    async fn staged_before(&self, age: Duration) -> Result<Vec<String>, StoreError> {
        let cutoff = std::time::SystemTime::now() - age;
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("staging/")
            .max_keys(1000)
            .send()
            .await
            .map_err(|e| sdk_err("list staging", e))?;
        let old = |o: &&aws_sdk_s3::types::Object| {
            o.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()).is_some_and(|t| t < cutoff)
        };
        Ok(page
            .contents()
            .iter()
            .filter(old)
            .filter_map(|o| o.key()?.strip_prefix("staging/").map(str::to_owned))
            .collect())
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        self.delete_key(&format!("sha512/{digest}")).await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        self.move_aside(digest).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map(|_| ()).map_err(|e| sdk_err("head bucket", e))
    }

    fn s3(&self) -> Option<&S3Store> {
        Some(self)
    }
}

/// A body hashed as it streams: the one reader through which this store reads stored or
/// staged bytes (upload verification, checking and scrubbing a copy, replication), in constant
/// memory. Through both digests ([`ContentHasher`], [`HashedBody::new`]), or through sha512
/// alone ([`HashedBody::proving`]) where the bytes only need proving to be the digest's.
pub(super) struct HashedBody<H = ContentHasher> {
    body: ByteStream,
    hasher: H,
    size: u64,
    what: &'static str,
}

/// What a [`HashedBody`] hashes with.
pub(super) trait BodyHasher {
    /// Hashes a chunk.
    fn feed(&mut self, chunk: &bytes::Bytes);
    /// The bytes hashed so far.
    fn fed(&self) -> u64;
}

impl BodyHasher for ContentHasher {
    fn feed(&mut self, chunk: &bytes::Bytes) {
        self.update(chunk.clone());
    }
    fn fed(&self) -> u64 {
        self.len()
    }
}

impl BodyHasher for Sha512Counter {
    fn feed(&mut self, chunk: &bytes::Bytes) {
        self.update(chunk);
    }
    fn fed(&self) -> u64 {
        self.len()
    }
}

impl HashedBody {
    /// Reads `body`, expected to be `size` bytes, through both digests; `what` names it in
    /// errors.
    pub(super) fn new(body: ByteStream, size: u64, what: &'static str) -> Self {
        Self { body, hasher: ContentHasher::new(), size, what }
    }

    /// Both digests and the length of what was read.
    pub(super) fn finish(self) -> Hashes {
        self.hasher.finish()
    }
}

impl HashedBody<Sha512Counter> {
    /// Reads `body` through sha512 alone: what proves a copy's bytes to be the digest's (the
    /// same bytes have the sha256 already on the file's row), at half the hashing.
    pub(super) fn proving(body: ByteStream, size: u64, what: &'static str) -> Self {
        Self { body, hasher: Sha512Counter::new(), size, what }
    }

    /// The sha512 and the length of what was read.
    pub(super) fn finish(self) -> (Digest, u64) {
        self.hasher.finish()
    }
}

impl<H: BodyHasher> HashedBody<H> {
    /// The next chunk of at least [`CHUNK`] bytes (but the last), once hashed; `None` at the
    /// end, and once the body is past `size` bytes (a mismatch already: the rest is not read).
    /// Stores answer in chunks of a few KiB (s3s-fs: 4 KiB); gathered, each costs the hasher's
    /// second thread and a streamed PUT one hand-over per [`CHUNK`] instead of per packet.
    pub(super) async fn next(&mut self) -> Result<Option<bytes::Bytes>, StoreError> {
        if self.past_size() {
            return Ok(None);
        }
        let mut gathered = bytes::BytesMut::new();
        let chunk = loop {
            match next_chunk(&mut self.body, self.what).await? {
                Some(c) if gathered.is_empty() && c.len() >= CHUNK => break Some(c),
                Some(c) => {
                    if gathered.is_empty() {
                        gathered.reserve(CHUNK + c.len());
                    }
                    gathered.extend_from_slice(&c);
                    if gathered.len() >= CHUNK {
                        break Some(gathered.freeze());
                    }
                }
                None if gathered.is_empty() => break None,
                None => break Some(gathered.freeze()),
            }
        };
        if let Some(chunk) = &chunk {
            self.hasher.feed(chunk);
        }
        Ok(chunk.filter(|_| !self.past_size()))
    }

    /// Whether more than `size` bytes came.
    pub(super) fn past_size(&self) -> bool {
        self.hasher.fed() > self.size
    }
}

/// Streams a body through both digests to its end (or past `size` bytes, a mismatch already).
async fn hash_body(body: ByteStream, size: u64, what: &'static str) -> Result<Hashes, StoreError> {
    let mut reader = HashedBody::new(body, size, what);
    while reader.next().await?.is_some() {}
    Ok(reader.finish())
}

/// The next chunk of a streaming body, failing if it stalls longer than [`STREAM_STALL`].
async fn next_chunk(body: &mut ByteStream, what: &str) -> Result<Option<bytes::Bytes>, StoreError> {
    match tokio::time::timeout(STREAM_STALL, body.try_next()).await {
        Ok(chunk) => chunk.map_err(|e| StoreError::unavailable(what, e)),
        Err(_) => Err(StoreError::unavailable(what, "the body stalled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn required(var: &str) -> String {
        std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests through scripts/test.sh"))
    }

    /// The part-by-part server-side copy (UploadPartCopy with ranges, pinned to the ETag) that
    /// blobs above 5 GiB take, run with small limits against the test S3 server: the copy is
    /// byte for byte, and a source that changed is not copied. (s3s-fs ignores the ETag
    /// condition on parts, so the changed source is caught by the pinned CopyObject path here.)
    #[tokio::test]
    async fn a_copy_in_parts_is_byte_for_byte() {
        let bucket = format!("copy-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let settings = S3Settings {
            bucket: bucket.clone(),
            region: "us-east-1".into(),
            endpoint: Some(required("TOOLTOOL_TEST_S3_ENDPOINT")),
            force_path_style: true,
            access_key_id: Some(required("TOOLTOOL_TEST_S3_ACCESS_KEY")),
            secret_access_key: Some(Secret::new(required("TOOLTOOL_TEST_S3_SECRET_KEY"))),
            timeout: Duration::from_secs(30),
        };
        let mut store = S3Store::new(&settings).await.unwrap();
        store.client.create_bucket().bucket(&bucket).send().await.unwrap();
        // Parts of S3's smallest size (5 MiB, which s3s-fs enforces too), the last one shorter.
        let data: Vec<u8> = (0..(12 * 1024 * 1024 + 12_345)).map(|i: u32| (i.wrapping_mul(31) >> 3) as u8).collect();
        let put = store.client.put_object().bucket(&bucket).key("staging/src").body(data.clone().into());
        let etag = put.send().await.unwrap().e_tag().unwrap().to_owned();
        store.copy_limits = CopyLimits { single: 1024 * 1024, part: 5 * 1024 * 1024 };

        let copied = store.copy_if_match(&bucket, "staging/src", "copied", &etag, data.len() as u64).await;
        assert!(copied.unwrap(), "copied in three parts");
        let got = store.get("copied", "read").await.unwrap().unwrap().body.collect().await.unwrap().into_bytes();
        assert!(got == data[..], "the copy is byte for byte ({} bytes of {})", got.len(), data.len());

        store.copy_limits = COPY_LIMITS;
        let stale = store.copy_if_match(&bucket, "staging/src", "stale", "\"0123\"", data.len() as u64).await;
        assert!(!stale.unwrap(), "a changed source is not copied");
        assert!(store.get("stale", "read").await.unwrap().is_none());
    }
}
