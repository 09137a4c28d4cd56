//! The embedded store: blobs as files under one directory, served and received by the server
//! itself through URLs it signs ([`UrlSigner`]).
//!
//! Layout under the root: `sha512/<digest>` (verified), `incoming/` (PUTs in flight),
//! `staging/<key>` (complete PUTs), `verifying/` (objects taken out of the PUT path while they
//! are hashed), `parts/<key>/<n>` (the parts of an upload in parts, see [`parts`]). A staged file is renamed into `verifying/` before hashing, so a second PUT can
//! only create a new staged file, never change the bytes being verified.

mod parts;
mod signer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

pub use self::signer::UrlSigner;
use super::{BlobStore, Hashes, ReceivedPart, StoreError, Verification, mismatch};
use crate::time::{Pace, unix_now};
use tooltool_proto::Digest;

/// Why a PUT to the embedded store was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// More bytes than the URL was signed for.
    #[error("the body is larger than the declared size of {0} bytes")]
    TooLarge(u64),
    /// The client's stream failed.
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    /// The disk is full: nothing of the upload was kept.
    #[error("no space left for the upload")]
    NoSpace,
    /// Writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A write error, as [`ReceiveError::NoSpace`] when the disk (or its quota) is full.
fn write_error(what: &str, e: std::io::Error) -> ReceiveError {
    if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
        ReceiveError::NoSpace
    } else {
        StoreError::msg(what, e).into()
    }
}

/// Blobs under a local directory.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    region: String,
    signer: UrlSigner,
    base_url: String,
    /// Bytes left free on the disk: a PUT that would go below is refused before writing.
    reserve: u64,
}

impl LocalStore {
    /// Opens (creating) the store at `root`. `base_url` is the server's public URL.
    pub fn new(root: impl Into<PathBuf>, region: &str, signer: UrlSigner, base_url: &str) -> std::io::Result<Self> {
        let root = root.into();
        crate::private::create_dir(&root)?;
        for dir in ["sha512", "incoming", "staging", "verifying", "parts"] {
            crate::private::create_dir(&root.join(dir))?;
        }
        let store = Self {
            root,
            region: region.to_owned(),
            signer,
            base_url: base_url.trim_end_matches('/').to_owned(),
            reserve: 0,
        };
        store.put_back_interrupted_verifications();
        Ok(store)
    }

    /// A process killed while it verified an upload leaves the file in `verifying/`, where no
    /// `complete` would find it. The store belongs to one process, so at start every such file
    /// goes back to `staging/` (unless a newer upload of that key was staged), to be verified
    /// again by the next `complete`.
    fn put_back_interrupted_verifications(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("verifying")) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((key, _)) = name.rsplit_once('.') else { continue };
            if !Self::valid_staging_key(key) {
                continue;
            }
            let staged = self.staged_path(key);
            let result = if staged.exists() {
                std::fs::remove_file(entry.path())
            } else {
                std::fs::rename(entry.path(), &staged)
            };
            match result {
                Ok(()) => tracing::warn!(staging_key = key, "put back an upload whose verification was interrupted"),
                Err(e) => {
                    tracing::error!(error = %e, staging_key = key, "could not put back an interrupted verification")
                }
            }
        }
    }

    /// Keeps `bytes` free on the store's disk: a PUT whose signed size would leave less is
    /// refused with [`ReceiveError::NoSpace`] before anything is written.
    pub fn with_free_space_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// The URL signer (shared with the blob routes).
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Where a verified blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha512").join(digest.as_str())
    }

    fn staged_path(&self, key: &str) -> PathBuf {
        self.root.join("staging").join(key)
    }

    /// Whether `key` has the shape this store hands out (lowercase hex), so that it can
    /// never name a path outside `staging/`.
    pub fn valid_staging_key(key: &str) -> bool {
        (1..=200).contains(&key.len())
            && !key.starts_with('.')
            && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'.'))
    }

    /// Writes a PUT body to `staging/<key>`: streamed into `incoming/`, refused past `limit`
    /// bytes, synced, then renamed into place whole. Refused before writing when `limit` bytes
    /// would leave less than the free-space reserve on the disk.
    pub async fn receive<S, E>(&self, key: &str, limit: u64, body: S) -> Result<u64, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.receive_to(key, &self.staged_path(key), limit, body).await
    }

    /// [`LocalStore::receive`] into `dest`.
    async fn receive_to<S, E>(&self, key: &str, dest: &Path, limit: u64, mut body: S) -> Result<u64, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self.root.join("incoming").join(format!("{key}.{}", uuid::Uuid::new_v4().simple()));
        let result = async {
            let free = fs4::available_space(&self.root).map_err(|e| StoreError::msg("read the free disk space", e))?;
            if free < limit.saturating_add(self.reserve) {
                tracing::warn!(free, limit, reserve = self.reserve, "an upload would go below the free-space reserve");
                return Err(ReceiveError::NoSpace);
            }
            let mut file =
                crate::private::file_options().open(&tmp).await.map_err(|e| write_error("create incoming file", e))?;
            let mut written = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ReceiveError::Interrupted(e.to_string()))?;
                written += chunk.len() as u64;
                if written > limit {
                    return Err(ReceiveError::TooLarge(limit));
                }
                file.write_all(&chunk).await.map_err(|e| write_error("write incoming file", e))?;
            }
            file.flush().await.map_err(|e| write_error("write incoming file", e))?;
            file.sync_all().await.map_err(|e| write_error("sync incoming file", e))?;
            Ok(written)
        }
        .await;
        match result {
            Ok(n) => {
                if let Err(e) = tokio::fs::rename(&tmp, dest).await {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(StoreError::msg("stage upload", e).into());
                }
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                if matches!(e, ReceiveError::NoSpace) {
                    // Read (and drop) the rest of the body, at most the signed size, so that
                    // the client gets the 507 instead of a connection reset mid-send.
                    let mut read = 0u64;
                    while let Some(Ok(chunk)) = body.next().await {
                        read += chunk.len() as u64;
                        if read > limit {
                            break;
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// `<base>/_blobs/<dir>/<name>?expires=…[&size=…]&signature=…`, built in one string (this
    /// is on every download).
    fn signed_url(&self, method: &str, [dir, name]: [&str; 2], ttl: Duration, size: Option<u64>) -> String {
        let expires = unix_now() + ttl.as_secs();
        let mut url = String::with_capacity(self.base_url.len() + name.len() + 160);
        url.push_str(&self.base_url);
        let path_start = url.len();
        for part in ["/_blobs/", dir, "/", name] {
            url.push_str(part);
        }
        let signature = self.signer.signature(method, &url[path_start..], expires, size);
        for part in ["?expires=", itoa::Buffer::new().format(expires)] {
            url.push_str(part);
        }
        if let Some(size) = size {
            url.push_str("&size=");
            url.push_str(itoa::Buffer::new().format(size));
        }
        url.push_str("&signature=");
        tooltool_proto::push_hex(&mut url, &signature);
        url
    }

    /// Removes leftovers in `incoming/` older than `age` (interrupted PUTs).
    pub fn sweep_incoming(&self, age: Duration) {
        let Ok(entries) = std::fs::read_dir(self.root.join("incoming")) else { return };
        for entry in entries.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default() > age);
            if old.unwrap_or(false) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Moves a file taken for verification back to staging when dropped armed (a verification
/// cancelled half way), unless a newer upload was staged meanwhile.
struct Restore {
    from: PathBuf,
    to: PathBuf,
    armed: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.armed && self.from.exists() {
            let result =
                if self.to.exists() { std::fs::remove_file(&self.from) } else { std::fs::rename(&self.from, &self.to) };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not put back a staged upload after an interrupted verification");
            }
        }
    }
}

/// Both digests and the size of a file, through the server's one hasher.
fn hash_file(path: &Path) -> std::io::Result<Hashes> {
    tooltool_sha512::hash_reader_both(&mut std::fs::File::open(path)?)
}

async fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::msg("remove file", e)),
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    fn region(&self) -> &str {
        &self.region
    }

    async fn download_url(&self, digest: &Digest, ttl: Duration) -> Result<String, StoreError> {
        Ok(self.signed_url("GET", ["sha512", digest.as_str()], ttl, None))
    }

    async fn upload_url(&self, staging_key: &str, size: u64, ttl: Duration) -> Result<String, StoreError> {
        Ok(self.signed_url("PUT", ["staging", staging_key], ttl, Some(size)))
    }

    async fn verify_and_publish(
        &self,
        staging_key: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<Verification, StoreError> {
        let work = self.root.join("verifying").join(format!("{staging_key}.{}", uuid::Uuid::new_v4().simple()));
        // Armed before the rename: if this future is dropped at any point before it decides,
        // the file goes back to staging, so the upload can be completed again instead of being
        // stranded in verifying/.
        let mut restore = Restore { from: work.clone(), to: self.staged_path(staging_key), armed: true };
        // A plain rename, not tokio's: tokio::fs runs it on a blocking thread, and a future
        // dropped while that thread renames would find nothing to put back and strand the file.
        match std::fs::rename(self.staged_path(staging_key), &work) {
            Ok(()) => {}
            Err(e) => {
                restore.armed = false;
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(Verification::NotStaged);
                }
                return Err(StoreError::msg("take staged file", e));
            }
        }
        let hashed = work.clone();
        let got = tokio::task::spawn_blocking(move || hash_file(&hashed))
            .await
            .map_err(|e| StoreError::msg("hash task", e))?
            .map_err(|e| StoreError::msg("hash staged file", e))?;
        restore.armed = false;
        if let Some(why) = mismatch(digest, size, &got.sha512, got.len) {
            remove_if_present(&work).await?;
            return Ok(Verification::Mismatch(why));
        }
        let dest = self.blob_path(digest);
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            // Already published by a concurrent verification of identical bytes: keep it.
            remove_if_present(&work).await?;
        } else {
            tokio::fs::rename(&work, &dest).await.map_err(|e| StoreError::msg("publish blob", e))?;
        }
        Ok(Verification::Published { sha256: got.sha256 })
    }

    async fn copy_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::msg("stat a stored copy", e)),
        }
    }

    async fn hash_copy(&self, digest: &Digest, _size: u64, pace: &Pace) -> Result<Option<Hashes>, StoreError> {
        let path = self.blob_path(digest);
        let pace = pace.clone();
        let hash = move || tooltool_sha512::hash_reader_both(&mut pace.reader(std::fs::File::open(path)?));
        match tokio::task::spawn_blocking(hash).await.map_err(|e| StoreError::msg("hash task", e))? {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::msg("hash a stored copy", e)),
        }
    }

    async fn delete_staged(&self, staging_key: &str) -> Result<(), StoreError> {
        if !Self::valid_staging_key(staging_key) {
            return Ok(());
        }
        remove_if_present(&self.staged_path(staging_key)).await
    }

    async fn start_parts(&self, staging_key: &str) -> Result<String, StoreError> {
        self.start_local_parts(staging_key)
    }

    async fn part_url(&self, key: &str, _: &str, n: u32, size: u64, ttl: Duration) -> Result<String, StoreError> {
        Ok(self.local_part_url(key, n, size, ttl))
    }

    async fn list_parts(&self, key: &str, _: &str) -> Result<Option<Vec<ReceivedPart>>, StoreError> {
        self.local_parts(key)
    }

    async fn complete_parts(&self, key: &str, _: &str, parts: &[ReceivedPart]) -> Result<bool, StoreError> {
        self.complete_local_parts(key, parts).await
    }

    async fn abort_parts(&self, key: &str, _: &str) -> Result<(), StoreError> {
        self.abort_local_parts(key).await
    }

    async fn staged_before(&self, age: Duration) -> Result<Vec<String>, StoreError> {
        let entries = std::fs::read_dir(self.root.join("staging")).map_err(|e| StoreError::msg("list staging", e))?;
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default() > age);
            let name = entry.file_name().to_string_lossy().into_owned();
            if old.unwrap_or(false) && Self::valid_staging_key(&name) && keys.len() < 1000 {
                keys.push(name);
            }
        }
        Ok(keys)
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        remove_if_present(&self.blob_path(digest)).await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        let key = super::quarantine_key(digest);
        let dest = self.root.join(&key);
        let dir = dest.parent().expect("a key has a folder");
        crate::private::create_dir(dir).map_err(|e| StoreError::msg("create the quarantine folder", e))?;
        match tokio::fs::rename(self.blob_path(digest), &dest).await {
            Ok(()) => Ok(Some(key)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::msg("move a stored copy aside", e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let probe = self.root.join("incoming").join(format!(".heartbeat.{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&probe, b"ok").await.map_err(|e| StoreError::msg("write probe", e))?;
        remove_if_present(&probe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::Sha512Counter;

    fn store(dir: &Path) -> LocalStore {
        LocalStore::new(dir, "local", UrlSigner::new(b"k"), "http://127.0.0.1:1").unwrap()
    }

    fn digest_of(data: &[u8]) -> Digest {
        let mut c = Sha512Counter::default();
        c.update(data);
        c.finish().0
    }

    async fn put(s: &LocalStore, key: &str, data: &'static [u8]) -> Result<u64, ReceiveError> {
        let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(data))]);
        s.receive(key, data.len() as u64, stream).await
    }

    #[tokio::test]
    async fn verified_bytes_are_published_and_staging_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let d = digest_of(b"hello");
        let key = format!("{d}.01");
        put(&s, &key, b"hello").await.unwrap();
        // sha256("hello"), hashed in the same pass as the sha512.
        let sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_owned();
        assert_eq!(
            s.verify_and_publish(&key, &d, 5).await.unwrap(),
            Verification::Published { sha256: sha256.clone() }
        );
        assert_eq!(std::fs::read(s.blob_path(&d)).unwrap(), b"hello");
        let read_back = s.hash_copy(&d, 5, &Pace::new(None)).await.unwrap().unwrap();
        assert_eq!((read_back.sha512, read_back.sha256, read_back.len), (d.clone(), sha256, 5));
        assert_eq!(s.hash_copy(&digest_of(b"absent"), 6, &Pace::new(None)).await.unwrap(), None);
        assert_eq!(s.verify_and_publish(&key, &d, 5).await.unwrap(), Verification::NotStaged);
    }

    #[tokio::test]
    async fn mismatched_bytes_are_deleted_and_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let d = digest_of(b"hello");
        let key = format!("{d}.02");
        put(&s, &key, b"jello").await.unwrap();
        let v = s.verify_and_publish(&key, &d, 5).await.unwrap();
        assert!(matches!(v, Verification::Mismatch(ref m) if m.contains("digest")), "{v:?}");
        assert!(!s.blob_path(&d).exists());
        assert!(!s.staged_path(&key).exists());
    }

    #[tokio::test]
    async fn a_body_over_the_signed_size_is_refused_and_not_staged() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"toolong"))]);
        let err = s.receive("ab.01", 3, stream).await.unwrap_err();
        assert!(matches!(err, ReceiveError::TooLarge(3)));
        assert!(!s.staged_path("ab.01").exists());
        assert_eq!(std::fs::read_dir(dir.path().join("incoming")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_verification_dropped_half_way_puts_the_upload_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let key = "0123abcd";
        let big = vec![1u8; 64 << 20];
        std::fs::write(s.staged_path(key), &big).unwrap();
        let d = digest_of(&big);
        let fut = s.verify_and_publish(key, &d, big.len() as u64);
        // Cancel it while it hashes.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(5), fut).await.is_err());
        assert!(s.staged_path(key).exists(), "the staged upload is back");
        assert_eq!(std::fs::read_dir(dir.path().join("verifying")).unwrap().count(), 0);
        assert!(matches!(
            s.verify_and_publish(key, &d, big.len() as u64).await.unwrap(),
            Verification::Published { .. }
        ));
    }

    /// A process killed mid-verification leaves the file in verifying/; the next start puts it
    /// back, and it verifies.
    #[tokio::test]
    async fn a_verification_killed_with_the_process_is_put_back_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = "0123abcd";
        let d = digest_of(b"killed");
        {
            let s = store(dir.path());
            std::fs::write(dir.path().join("verifying").join(format!("{key}.5f3a")), b"killed").unwrap();
            assert_eq!(s.verify_and_publish(key, &d, 6).await.unwrap(), Verification::NotStaged);
        }
        let s = store(dir.path());
        assert!(s.staged_path(key).exists());
        assert_eq!(std::fs::read_dir(dir.path().join("verifying")).unwrap().count(), 0);
        assert!(matches!(s.verify_and_publish(key, &d, 6).await.unwrap(), Verification::Published { .. }));
    }

    #[test]
    fn staging_keys_cannot_name_other_paths() {
        assert!(LocalStore::valid_staging_key("abc.0f"));
        for bad in ["", "..", "../x", "a/b", ".abc", "ABC", "a b"] {
            assert!(!LocalStore::valid_staging_key(bad), "{bad:?}");
        }
    }
}
