//! Blob stores: where verified blobs (`sha512/<digest>`) and staged uploads
//! (`staging/<key>`) live. Two backends behind one trait: the embedded local store and S3.
//!
//! The rule every backend keeps: bytes reach `sha512/<digest>` only through
//! [`BlobStore::verify_and_publish`], which publishes exactly the bytes it hashed.

mod local;
mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use tooltool_proto::Digest;

pub use local::{LocalStore, ReceiveError, UrlSigner};
pub use s3::S3Store;

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
    /// The bytes matched and are now published under `sha512/<digest>`.
    Published,
    /// No staged object yet (not uploaded, or another verification took it).
    NotStaged,
    /// The staged object changed while it was verified; nothing was published.
    Changed,
    /// The bytes did not match; the staged object was deleted.
    Mismatch(String),
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

    /// Removes a staged object (absent is fine).
    async fn delete_staged(&self, staging_key: &str) -> Result<(), StoreError>;

    /// Removes a verified blob (absent is fine).
    async fn delete_blob(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Whether the store answers (for the heartbeat).
    async fn check(&self) -> Result<(), StoreError>;
}

/// The stores of every configured region.
#[derive(Debug, Clone)]
pub struct BlobStores {
    by_region: BTreeMap<String, Arc<dyn BlobStore>>,
    default_region: String,
}

impl BlobStores {
    /// One store, which is also the default for uploads.
    pub fn single(store: Arc<dyn BlobStore>) -> Self {
        let default_region = store.region().to_owned();
        Self { by_region: BTreeMap::from([(default_region.clone(), store)]), default_region }
    }

    /// The store of `region`, if configured.
    pub fn get(&self, region: &str) -> Option<&Arc<dyn BlobStore>> {
        self.by_region.get(region)
    }

    /// Where uploads go: the asked region, `None` if it is not configured; without one, the
    /// default region.
    pub fn for_upload(&self, asked: Option<&str>) -> Option<&Arc<dyn BlobStore>> {
        self.get(asked.unwrap_or(&self.default_region))
    }

    /// Where a download is served from: the asked region if it holds a copy, else the first
    /// configured region that does.
    pub fn for_download(&self, instances: &[String], asked: Option<&str>) -> Option<&Arc<dyn BlobStore>> {
        asked
            .filter(|r| instances.iter().any(|i| i == r))
            .and_then(|r| self.get(r))
            .or_else(|| instances.iter().find_map(|r| self.get(r)))
    }

    /// Every store.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn BlobStore>> {
        self.by_region.values()
    }
}

pub use tooltool_proto::Sha512Counter;

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
}
