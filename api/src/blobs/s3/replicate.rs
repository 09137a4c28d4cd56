//! Copying a verified blob from another region's bucket into this one, proving the bytes on the
//! way: nothing is ever published here that did not hash to the digest.
//!
//! - Same endpoint: the source is streamed through sha512 (no upload), then copied server-side
//!   pinned to the ETag of exactly the bytes that were hashed (the existing `copy_if_match`,
//!   multipart above 5 GiB), and the copy's size is checked.
//! - Different endpoints, up to the largest single PUT (`TOOLTOOL_REPLICATION_SINGLE_PUT`,
//!   5 GiB, S3's limit): the source is streamed through the store's one hashed reader (`HashedBody`)
//!   straight into one PUT of the final key, with its last chunk held back until the whole
//!   hashed right. A store creates an object only once it has all `Content-Length` bytes, so
//!   a mismatch or a failed read ends the body early and nothing appears; the bytes are read
//!   and written once, as by `curl GET | curl PUT`, in the memory of a few chunks.
//! - Different endpoints, larger: a multipart upload, one part uploading while the next is
//!   read, completed only if the whole hashed right (otherwise it is aborted, and nothing
//!   appears). That upload lands under `staging/` and is then published with the same
//!   ETag-pinned server-side copy as an upload: a multipart upload's bookkeeping names carry
//!   its key, and S3-compatible stores that keep it in file names (s3s-fs, the test server)
//!   cannot hold `sha512/<128 hex>` there; a short staging key works everywhere, and the copy
//!   is within one bucket. Only these blobs pay that second read and write.
//! - A multipart upload is announced (its key and upload id) before its first part is sent, so
//!   that a replica taking the copy over after this one was killed can abort it
//!   ([`S3Store::abort_leftover`]) rather than leave its parts behind.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{HashedBody, S3Store, long_wait, sdk_err, status_of};
use crate::blobs::{StoreError, mismatch};
use tooltool_proto::Digest;

/// Told the key and upload id of a multipart upload before its first part is sent.
pub type UploadStarted<'a> = &'a (dyn Fn(String, String) -> futures_util::future::BoxFuture<'a, ()> + Send + Sync);

/// S3 allows at most this many parts in a multipart upload.
const MAX_PARTS: u64 = 10_000;
/// Chunks read ahead of a streamed PUT (each as the source's body yields them, some KiB).
const CHUNKS_AHEAD: usize = 8;

/// How a copy across endpoints is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySizes {
    /// The largest blob sent as one streamed PUT (`TOOLTOOL_REPLICATION_SINGLE_PUT`).
    pub max_single_put: u64,
    /// The part size of larger ones (`TOOLTOOL_REPLICATION_PART_SIZE`).
    pub part_size: u64,
}

/// What copying a blob from another region found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replicated {
    /// The bytes hashed to the digest and are now published here.
    Copied(CopyMode),
    /// The source holds no such object.
    SourceMissing,
    /// The source object changed between hashing and the server-side copy; nothing copied.
    SourceChanged,
    /// The source bytes are not the digest's; nothing was published here.
    Mismatch(String),
}

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// A server-side copy between buckets of one endpoint.
    ServerSide,
    /// Streamed across endpoints in one PUT, straight to the final key.
    Put,
    /// Streamed across endpoints as a multipart upload of this many parts.
    Multipart(u32),
}

impl CopyMode {
    /// The mode's name in logs and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Self::ServerSide => "server-side",
            Self::Put => "put",
            Self::Multipart(_) => "multipart",
        }
    }

    /// The parts sent (1 for a PUT, 0 for a server-side copy).
    pub fn parts(self) -> u32 {
        match self {
            Self::ServerSide => 0,
            Self::Put => 1,
            Self::Multipart(n) => n,
        }
    }
}

impl S3Store {
    /// Whether `other` is reached through the same endpoint (a server-side copy can go from it).
    pub fn same_endpoint(&self, other: &S3Store) -> bool {
        self.endpoint == other.endpoint
    }

    /// Copies the verified blob `digest` of `size` bytes from `source` into this bucket,
    /// proving its bytes on the way (see the module documentation).
    pub async fn replicate_from(
        &self,
        source: &S3Store,
        digest: &Digest,
        size: u64,
        sizes: CopySizes,
        started: UploadStarted<'_>,
    ) -> Result<Replicated, StoreError> {
        let key = format!("sha512/{digest}");
        let Some(obj) = source.get(&key, "read the source blob").await? else { return Ok(Replicated::SourceMissing) };
        if self.same_endpoint(source) {
            let etag =
                obj.e_tag().map(str::to_owned).ok_or_else(|| StoreError::msg("read the source blob", "no ETag"))?;
            let mut reader = HashedBody::proving(obj.body, size, "stream the source blob");
            while reader.next().await?.is_some() {}
            let (sha512, len) = reader.finish();
            if let Some(why) = mismatch(digest, size, &sha512, len) {
                return Ok(Replicated::Mismatch(why));
            }
            if !self.copy_if_match(&source.bucket, &key, &key, &etag, size).await? {
                return Ok(Replicated::SourceChanged);
            }
            let head = self.client.head_object().bucket(&self.bucket).key(&key).send().await;
            let copied = head.map_err(|e| sdk_err("check the copy", e))?.content_length();
            if copied != Some(size as i64) {
                self.delete_key(&key).await?;
                return Err(StoreError::msg("check the copy", format_args!("{copied:?} bytes instead of {size}")));
            }
            return Ok(Replicated::Copied(CopyMode::ServerSide));
        }
        if size <= sizes.max_single_put {
            self.put_streamed(obj.body, &key, digest, size).await
        } else {
            let part_size = sizes.part_size.max(size.div_ceil(MAX_PARTS)).max(crate::settings::MIN_PART_SIZE);
            self.put_parts(obj.body, &key, digest, size, part_size, started).await
        }
    }

    /// Aborts the multipart upload a killed replica left (and removes its object, had it been
    /// completed but not yet removed). An upload already gone is fine.
    pub async fn abort_leftover(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let res = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await;
        match res {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(sdk_err("abort a leftover multipart copy", e)),
        }
        self.delete_key(key).await
    }

    /// Streams the blob into one PUT of `key` while hashing it, the last chunk held back until
    /// the whole hashed right (see the module documentation).
    async fn put_streamed(
        &self,
        body: ByteStream,
        key: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Replicated, StoreError> {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .cache_control(super::PUBLISHED_CACHE_CONTROL)
            .content_length(size as i64)
            .body(ByteStream::from_body_1_x(ChunkBody { rx, size }))
            .customize()
            .config_override(long_wait())
            .send();
        let (put, proof) = tokio::join!(put, pump(body, size, digest, tx));
        let (proof, stored) = match (proof, put) {
            (Ok(Proof::Proven), put) => {
                return put.map(|_| Replicated::Copied(CopyMode::Put)).map_err(|e| sdk_err("put the copy", e));
            }
            (Ok(Proof::Stopped), Err(e)) => return Err(sdk_err("put the copy", e)),
            (proof, put) => (proof, put.is_ok()),
        };
        // A store creates nothing without every byte, so a PUT that succeeded here is not
        // expected; but bytes that were not proven must not stay under the digest's key.
        if stored {
            self.delete_key(key).await?;
        }
        match proof {
            Ok(Proof::Mismatch(why)) => Ok(Replicated::Mismatch(why)),
            Ok(_) => Err(StoreError::msg("put the copy", "the store answered before the whole body")),
            Err(e) => Err(e),
        }
    }

    /// Streams a large blob as a multipart upload under `staging/`, completed only if the whole
    /// hashed right, then published under `dest` by a server-side copy pinned to its ETag.
    async fn put_parts(
        &self,
        body: ByteStream,
        dest: &str,
        digest: &Digest,
        size: u64,
        part_size: u64,
        started: UploadStarted<'_>,
    ) -> Result<Replicated, StoreError> {
        let staged = format!("staging/replica-{}", uuid::Uuid::new_v4().simple());
        let key = staged.as_str();
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_err("start a multipart copy", e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();
        started(key.to_owned(), upload_id.clone()).await;
        let mut parts = Vec::new();
        let mut reader = HashedBody::proving(body, size, "stream the source blob");
        let mut buf = BytesMut::with_capacity(part_size as usize);
        let mut in_flight: Option<JoinHandle<Result<CompletedPart, StoreError>>> = None;
        let streamed: Result<(), StoreError> = async {
            loop {
                let chunk = reader.next().await?;
                if reader.past_size() {
                    return Ok(());
                }
                let end = chunk.is_none();
                if let Some(chunk) = chunk {
                    let mut chunk = chunk;
                    while !chunk.is_empty() {
                        let take = chunk.len().min(part_size as usize - buf.len());
                        buf.extend_from_slice(&chunk.split_to(take));
                        if buf.len() == part_size as usize {
                            let part = buf.split().freeze();
                            if let Some(prev) = in_flight.take() {
                                parts.push(join_part(prev).await?);
                            }
                            in_flight = Some(self.spawn_part(key, &upload_id, parts.len() as i32 + 1, part));
                        }
                    }
                }
                if end {
                    if let Some(prev) = in_flight.take() {
                        parts.push(join_part(prev).await?);
                    }
                    if !buf.is_empty() {
                        let part = buf.split().freeze();
                        parts.push(join_part(self.spawn_part(key, &upload_id, parts.len() as i32 + 1, part)).await?);
                    }
                    return Ok(());
                }
            }
        }
        .await;
        if let Some(prev) = in_flight.take() {
            prev.abort();
        }
        let parts_sent = parts.len() as u32;
        let (sha512, len) = reader.finish();
        let verdict = match streamed {
            Ok(()) => mismatch(digest, size, &sha512, len).map(Replicated::Mismatch),
            Err(e) => {
                self.abort_upload(key, &upload_id).await;
                return Err(e);
            }
        };
        if let Some(rejected) = verdict {
            self.abort_upload(key, &upload_id).await;
            return Ok(rejected);
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .customize()
            .config_override(long_wait())
            .send()
            .await;
        let etag = match completed {
            Ok(out) => out.e_tag().map(str::to_owned),
            Err(e) => {
                self.abort_upload(key, &upload_id).await;
                return Err(sdk_err("complete a multipart copy", e));
            }
        };
        let published = match etag {
            Some(etag) => self.copy_if_match(&self.bucket, key, dest, &etag, size).await,
            None => Err(StoreError::msg("complete a multipart copy", "no ETag")),
        };
        if let Err(e) = self.delete_key(key).await {
            tracing::warn!(error = %e, key, "could not remove a staged copy");
        }
        match published? {
            true => Ok(Replicated::Copied(CopyMode::Multipart(parts_sent))),
            false => Err(StoreError::msg("publish a multipart copy", "the staged copy changed")),
        }
    }

    /// Uploads one part in a task of its own, so that the next part is read meanwhile.
    fn spawn_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        part: Bytes,
    ) -> JoinHandle<Result<CompletedPart, StoreError>> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(part.len() as i64)
            .body(ByteStream::from(part))
            .customize()
            .config_override(long_wait());
        tokio::spawn(async move {
            let out = request.send().await.map_err(|e| sdk_err("upload a part", e))?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_owned)).build())
        })
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) {
        let res = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await;
        if let Err(e) = res {
            tracing::warn!(error = %sdk_err("abort a multipart copy", e), "a multipart copy was left to expire");
        }
    }
}

/// How the bytes of a streamed PUT turned out.
enum Proof {
    /// They hashed to the digest, and every one was let through.
    Proven,
    /// They did not (why); the body ended with an error instead of its last chunk.
    Mismatch(String),
    /// The PUT stopped taking the body before its end.
    Stopped,
}

/// Reads `body` through both digests into `tx`, one chunk behind: the last one is let
/// through only once the whole is proven to be `digest`. A mismatch or a failed read ends
/// the body with an error instead, so that the PUT reading it fails.
async fn pump(
    body: ByteStream,
    size: u64,
    digest: &Digest,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<Proof, StoreError> {
    let mut reader = HashedBody::proving(body, size, "stream the source blob");
    let mut held = None;
    let read = async {
        while let Some(chunk) = reader.next().await? {
            if let Some(ready) = held.replace(chunk)
                && tx.send(Ok(ready)).await.is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
    .await;
    let why = match read {
        Ok(false) => return Ok(Proof::Stopped),
        Ok(true) => {
            let (sha512, len) = reader.finish();
            mismatch(digest, size, &sha512, len)
        }
        Err(e) => {
            let _ = tx.send(Err(std::io::Error::other("the source could not be read"))).await;
            return Err(e);
        }
    };
    if let Some(why) = why {
        let _ = tx.send(Err(std::io::Error::other("the source did not hash to its digest"))).await;
        return Ok(Proof::Mismatch(why));
    }
    if let Some(last) = held
        && tx.send(Ok(last)).await.is_err()
    {
        return Ok(Proof::Stopped);
    }
    Ok(Proof::Proven)
}

/// The body of a streamed PUT: the chunks [`pump`] lets through, of `size` bytes in all.
struct ChunkBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    size: u64,
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

async fn join_part(task: JoinHandle<Result<CompletedPart, StoreError>>) -> Result<CompletedPart, StoreError> {
    task.await.map_err(|e| StoreError::msg("upload a part", e))?
}
