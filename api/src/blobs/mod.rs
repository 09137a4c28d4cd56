//! Blob stores: where verified blobs (`sha512/<digest>`) and staged uploads
//! (`staging/<key>`) live. Two backends behind one trait: the embedded local store and S3.
//!
//! The rule every backend keeps: bytes reach `sha512/<digest>` only through
//! [`BlobStore::verify_and_publish`], which publishes exactly the bytes it hashed.

mod cdn;
mod local;
mod put_url;
mod s3;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::time::Pace;
use tooltool_proto::Digest;

pub use cdn::{CdnSigner, canned_policy, cloudfront_base64};
pub use local::{LocalStore, ReceiveError, UrlSigner};
pub use put_url::with_explicit_port;
pub use s3::{CopyMode, CopySizes, Replicated, S3Store};

/// A blob-store failure. The cause is logged; callers see a 503 when the store could not be
/// reached or did not answer ([`StoreError::unavailable`]: retrying later will do), an opaque
/// 500 otherwise.
#[derive(Debug)]
pub struct StoreError {
    cause: anyhow::Error,
    unavailable: bool,
}

impl StoreError {
    /// Wraps any error with context.
    pub fn msg(context: &str, e: impl std::fmt::Display) -> Self {
        Self { cause: anyhow::anyhow!("{context}: {e}"), unavailable: false }
    }

    /// The store could not be reached, timed out, or answered 5xx.
    pub fn unavailable(context: &str, e: impl std::fmt::Display) -> Self {
        Self { unavailable: true, ..Self::msg(context, e) }
    }

    /// Whether the store was unreachable rather than faulty.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.cause)
    }
}

impl std::error::Error for StoreError {}

/// What verifying one staged upload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The bytes matched and are now published under `sha512/<digest>`; their sha256 (hashed
    /// in the same pass).
    Published {
        /// 64 lowercase hex characters.
        sha256: String,
    },
    /// No staged object yet (not uploaded, or another verification took it).
    NotStaged,
    /// The staged object changed while it was verified; nothing was published.
    Changed,
    /// The bytes did not match; the staged object was deleted.
    Mismatch(String),
}

/// How thoroughly a stored copy is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDepth {
    /// Its size only (a HEAD).
    Size,
    /// Every byte, streamed through sha512.
    Full,
}

/// What checking a stored copy `sha512/<digest>` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyCheck {
    /// Present, with the size (and with [`CheckDepth::Full`] the digest) recorded.
    Intact,
    /// No object under the key.
    Missing,
    /// The object is not the digest's bytes: why.
    Corrupt(String),
}

/// One part storage holds of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPart {
    /// Its number, from 1.
    pub number: u32,
    /// Its size in bytes.
    pub size: u64,
    /// The store's tag of its bytes (S3's ETag; empty on the embedded store).
    pub etag: String,
}

/// A place blobs live, in one region.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// The region name recorded for instances here.
    fn region(&self) -> &str;

    /// A short-lived URL that downloads the verified blob.
    async fn download_url(&self, digest: &Digest, ttl: Duration) -> Result<String, StoreError>;

    /// A short-lived URL that accepts a `PUT` of the staged object `staging_key`.
    async fn upload_url(&self, staging_key: &str, size: u64, ttl: Duration) -> Result<String, StoreError>;

    /// Streams the staged object, checks its size and sha512, and only on success publishes
    /// exactly those bytes under `sha512/<digest>`. A mismatch deletes the staged object.
    async fn verify_and_publish(
        &self,
        staging_key: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Verification, StoreError>;

    /// The size of the stored copy `sha512/<digest>` (a stat or a HEAD), `None` when there is
    /// no such object.
    async fn copy_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// Checks the stored copy `sha512/<digest>` against its recorded `size` (and with
    /// [`CheckDepth::Full`] its digest, streaming every byte, no faster than `pace`; nothing
    /// is held in memory).
    async fn check_copy(
        &self,
        digest: &Digest,
        size: u64,
        depth: CheckDepth,
        pace: &Pace,
    ) -> Result<CopyCheck, StoreError> {
        let found = match depth {
            CheckDepth::Size => self.copy_size(digest).await?.map(|len| (None, len)),
            CheckDepth::Full => self.hash_copy(digest, size, pace).await?.map(|got| (Some(got.sha512), got.len)),
        };
        Ok(match found {
            Some((sha512, len)) => copy_check(digest, size, sha512.as_ref(), len),
            None => CopyCheck::Missing,
        })
    }

    /// Streams the stored copy `sha512/<digest>` through both digests ([`Hashes`]), reading at
    /// most one byte past `size`; `None` when there is no such object. What a
    /// [`CheckDepth::Full`] check compares, and what fills in a file's sha256.
    async fn hash_copy(&self, digest: &Digest, size: u64, pace: &Pace) -> Result<Option<Hashes>, StoreError>;

    /// Removes a staged object (absent is fine).
    async fn delete_staged(&self, staging_key: &str) -> Result<(), StoreError>;

    /// Starts a multipart upload whose completion becomes the staged object `staging_key`;
    /// returns the upload's id.
    async fn start_parts(&self, staging_key: &str) -> Result<String, StoreError>;

    /// A short-lived URL that accepts a `PUT` of part `number` (`size` bytes) of the upload.
    async fn part_url(
        &self,
        staging_key: &str,
        upload_id: &str,
        number: u32,
        size: u64,
        ttl: Duration,
    ) -> Result<String, StoreError>;

    /// The parts storage holds, sorted by number; `None` when the upload is gone (completed
    /// or aborted).
    async fn list_parts(&self, staging_key: &str, upload_id: &str) -> Result<Option<Vec<ReceivedPart>>, StoreError>;

    /// Joins `parts` (from [`BlobStore::list_parts`], in order) into the staged object
    /// `staging_key`, without holding a part in memory. `false` when the upload is gone.
    async fn complete_parts(
        &self,
        staging_key: &str,
        upload_id: &str,
        parts: &[ReceivedPart],
    ) -> Result<bool, StoreError>;

    /// Aborts the upload and removes its parts (an upload already gone is fine).
    async fn abort_parts(&self, staging_key: &str, upload_id: &str) -> Result<(), StoreError>;

    /// Keys of the staged objects last written more than `age` ago (at most 1000), for the
    /// sweeper to find those no pending upload owns.
    async fn staged_before(&self, age: Duration) -> Result<Vec<String>, StoreError>;

    /// Removes a verified blob (absent is fine).
    async fn delete_blob(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Moves the stored object `sha512/<digest>` aside to `quarantine/sha512/<digest>`, where
    /// no download URL points and nothing deletes it, for the operator to examine (a later
    /// loss of the same digest replaces it); returns that key, or `None` when there was no
    /// object.
    async fn quarantine(&self, digest: &Digest) -> Result<Option<String>, StoreError>;

    /// Whether the store answers (for the heartbeat and the region probe).
    async fn check(&self) -> Result<(), StoreError>;

    /// The store as an S3 bucket, which replication copies between.
    fn s3(&self) -> Option<&S3Store> {
        None
    }
}

/// One configured region: its store, and whether its last probe answered.
#[derive(Debug)]
struct Region {
    store: Arc<dyn BlobStore>,
    up: AtomicBool,
}

/// The stores of every configured region, in configured order (the first is the default
/// upload region), with the health each replica's probe last found.
#[derive(Debug, Clone)]
pub struct BlobStores {
    regions: Arc<[Region]>,
    /// With a CDN configured, downloads are signed URLs of the CDN instead of the store's.
    cdn: Option<Arc<CdnSigner>>,
}

impl BlobStores {
    /// One store, which is also the default for uploads.
    pub fn single(store: Arc<dyn BlobStore>) -> Self {
        Self::new(vec![store])
    }

    /// Several stores; the first is the default for uploads. Every region starts healthy.
    pub fn new(stores: Vec<Arc<dyn BlobStore>>) -> Self {
        assert!(!stores.is_empty(), "at least one region");
        let regions = stores.into_iter().map(|store| Region { store, up: AtomicBool::new(true) }).collect();
        Self { regions, cdn: None }
    }

    /// Downloads go through the CDN `cdn` signs for (after the same choice of a region holding
    /// a copy).
    pub fn with_cdn(mut self, cdn: Option<Arc<CdnSigner>>) -> Self {
        self.cdn = cdn;
        self
    }

    /// The short-lived URL a download of `digest` is redirected to, once `store` (from
    /// [`BlobStores::for_download`]) was chosen: the CDN's signed URL when one is configured,
    /// else the store's own.
    pub async fn download_url(
        &self,
        store: &Arc<dyn BlobStore>,
        digest: &Digest,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        match &self.cdn {
            Some(cdn) => cdn.download_url(digest, ttl),
            None => store.download_url(digest, ttl).await,
        }
    }

    /// The store of `region`, if configured.
    pub fn get(&self, region: &str) -> Option<&Arc<dyn BlobStore>> {
        self.regions.iter().find(|r| r.store.region() == region).map(|r| &r.store)
    }

    /// Where uploads go: the asked region, `None` if it is not configured; without one, the
    /// default region.
    pub fn for_upload(&self, asked: Option<&str>) -> Option<&Arc<dyn BlobStore>> {
        match asked {
            Some(r) => self.get(r),
            None => Some(&self.regions[0].store),
        }
    }

    /// Where a download is served from, among the regions holding a verified copy
    /// (`instances`): the asked region if it holds one and is healthy; else the first healthy
    /// one in configured order; only when none is healthy, the asked one, else the first.
    pub fn for_download(&self, instances: &[String], asked: Option<&str>) -> Option<&Arc<dyn BlobStore>> {
        let holding = || self.regions.iter().filter(|r| instances.iter().any(|i| i == r.store.region()));
        let is_asked = |r: &&Region| asked == Some(r.store.region());
        let healthy = |r: &&Region| r.up.load(Ordering::Relaxed);
        holding()
            .filter(healthy)
            .find(is_asked)
            .or_else(|| holding().find(healthy))
            .or_else(|| holding().find(is_asked))
            .or_else(|| holding().next())
            .map(|r| &r.store)
    }

    /// Every store, in configured order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn BlobStore>> {
        self.regions.iter().map(|r| &r.store)
    }

    /// The configured region names, in order.
    pub fn region_names(&self) -> Vec<String> {
        self.all().map(|s| s.region().to_owned()).collect()
    }

    /// Whether `region`'s last probe answered (unknown regions are not).
    pub fn is_up(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r.store.region() == region && r.up.load(Ordering::Relaxed))
    }

    /// Records what a probe of `region` found.
    pub fn set_up(&self, region: &str, up: bool) {
        if let Some(r) = self.regions.iter().find(|r| r.store.region() == region) {
            r.up.store(up, Ordering::Relaxed);
        }
    }
}

pub use tooltool_sha512::{ContentHasher, Hashes, Sha512Counter};

/// The key a stored copy of `digest` is moved aside to (see [`BlobStore::quarantine`]). No
/// timestamp in it: S3-compatible stores that keep keys in file names (s3s-fs encodes them in
/// its side files) have no room for a longer key; the audit trail says when.
pub fn quarantine_key(digest: &Digest) -> String {
    format!("quarantine/sha512/{digest}")
}

/// The outcome of a check whose bytes were hashed (`got`, `got_size`) or only sized.
pub(crate) fn copy_check(expected: &Digest, size: u64, got: Option<&Digest>, got_size: u64) -> CopyCheck {
    let why = match got {
        Some(got) => mismatch(expected, size, got, got_size),
        None if got_size != size => Some(format!("stored size {got_size} differs from the recorded {size} bytes")),
        None => None,
    };
    match why {
        Some(why) => CopyCheck::Corrupt(why.replace("Uploaded bytes do not", "Stored bytes do not")),
        None => CopyCheck::Intact,
    }
}

/// Compares what was hashed with what was declared; `None` when they match.
pub fn mismatch(expected: &Digest, size: u64, got: &Digest, got_size: u64) -> Option<String> {
    if got_size != size {
        Some(format!("Uploaded bytes do not match the declared size: declared {size} bytes, received {got_size}"))
    } else if got != expected {
        Some("Uploaded bytes do not match the declared sha512 digest".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_size_before_digest() {
        let a = Digest::parse(&"a".repeat(128)).unwrap();
        let b = Digest::parse(&"b".repeat(128)).unwrap();
        assert!(mismatch(&a, 3, &a, 4).unwrap().contains("size"));
        assert!(mismatch(&a, 3, &b, 3).unwrap().contains("digest"));
        assert_eq!(mismatch(&a, 3, &a, 3), None);
    }

    /// A store that only has a name.
    #[derive(Debug)]
    struct Named(&'static str);

    #[async_trait]
    impl BlobStore for Named {
        fn region(&self) -> &str {
            self.0
        }
        async fn download_url(&self, _: &Digest, _: Duration) -> Result<String, StoreError> {
            Ok(self.0.to_owned())
        }
        async fn upload_url(&self, _: &str, _: u64, _: Duration) -> Result<String, StoreError> {
            Ok(self.0.to_owned())
        }
        async fn verify_and_publish(&self, _: &str, _: &Digest, _: u64) -> Result<Verification, StoreError> {
            Ok(Verification::NotStaged)
        }
        async fn copy_size(&self, _: &Digest) -> Result<Option<u64>, StoreError> {
            Ok(None)
        }
        async fn check_copy(&self, _: &Digest, _: u64, _: CheckDepth, _: &Pace) -> Result<CopyCheck, StoreError> {
            Ok(CopyCheck::Intact)
        }
        async fn hash_copy(&self, _: &Digest, _: u64, _: &Pace) -> Result<Option<Hashes>, StoreError> {
            Ok(None)
        }
        async fn delete_staged(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        async fn start_parts(&self, _: &str) -> Result<String, StoreError> {
            Ok(String::new())
        }
        async fn part_url(&self, _: &str, _: &str, _: u32, _: u64, _: Duration) -> Result<String, StoreError> {
            Ok(self.0.to_owned())
        }
        async fn list_parts(&self, _: &str, _: &str) -> Result<Option<Vec<ReceivedPart>>, StoreError> {
            Ok(None)
        }
        async fn complete_parts(&self, _: &str, _: &str, _: &[ReceivedPart]) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn abort_parts(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        async fn staged_before(&self, _: Duration) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn delete_blob(&self, _: &Digest) -> Result<(), StoreError> {
            Ok(())
        }
        async fn quarantine(&self, _: &Digest) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        async fn check(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn downloads_prefer_the_asked_healthy_region_then_configured_order_then_any_copy() {
        let stores = BlobStores::new(vec![Arc::new(Named("a")), Arc::new(Named("b")), Arc::new(Named("c"))]);
        let pick = |instances: &[&str], asked: Option<&str>| {
            let instances: Vec<String> = instances.iter().map(|s| s.to_string()).collect();
            stores.for_download(&instances, asked).map(|s| s.region().to_owned())
        };
        assert_eq!(pick(&["a", "b", "c"], Some("b")).as_deref(), Some("b"));
        assert_eq!(pick(&["c", "b"], None).as_deref(), Some("b"), "configured order, not instance order");
        assert_eq!(pick(&["a"], Some("b")).as_deref(), Some("a"), "the asked region holds no copy");
        assert_eq!(pick(&["x"], None), None, "no configured region holds a copy");
        stores.set_up("b", false);
        assert_eq!(pick(&["a", "b", "c"], Some("b")).as_deref(), Some("a"), "b is down");
        assert_eq!(pick(&["b", "c"], Some("b")).as_deref(), Some("c"));
        stores.set_up("c", false);
        assert_eq!(pick(&["b", "c"], Some("c")).as_deref(), Some("c"), "none healthy: the asked one");
        assert_eq!(pick(&["b", "c"], None).as_deref(), Some("b"), "none healthy: the first");
        stores.set_up("b", true);
        assert_eq!(pick(&["b", "c"], Some("c")).as_deref(), Some("b"));
        assert_eq!(stores.for_upload(None).unwrap().region(), "a");
        assert!(stores.for_upload(Some("z")).is_none());
    }
}
