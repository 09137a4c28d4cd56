//! Uploads in parts on the embedded store, as on S3: each part is `PUT` to its own signed URL
//! (`/_blobs/parts/<key>/<n>`) and lands whole in `parts/<key>/<n>` (streamed into
//! `incoming/` first, like any upload); completion joins the parts in order into
//! `staging/<key>` with a kernel file-to-file copy, never holding a part in memory, after
//! which the staged object is verified and published like a single `PUT`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use super::{LocalStore, ReceiveError};
use crate::blobs::{ReceivedPart, StoreError};

impl LocalStore {
    fn parts_dir(&self, key: &str) -> PathBuf {
        self.root.join("parts").join(key)
    }

    /// Whether the upload in parts of `key` is open (started, neither completed nor aborted).
    pub fn parts_open(&self, key: &str) -> bool {
        Self::valid_staging_key(key) && self.parts_dir(key).is_dir()
    }

    pub(super) fn start_local_parts(&self, key: &str) -> Result<String, StoreError> {
        if !Self::valid_staging_key(key) {
            return Err(StoreError::msg("start an upload in parts", "bad key"));
        }
        crate::private::create_dir(&self.parts_dir(key)).map_err(|e| StoreError::msg("start an upload in parts", e))?;
        Ok(format!("embedded-{key}"))
    }

    pub(super) fn local_part_url(&self, key: &str, number: u32, size: u64, ttl: Duration) -> String {
        self.signed_url("PUT", ["parts", &format!("{key}/{number}")], ttl, Some(size))
    }

    /// Writes the body of part `number` of `key`'s upload, at most `limit` bytes, in place
    /// only once whole (a part sent again replaces the earlier one).
    pub async fn receive_part<S, E>(&self, key: &str, number: u32, limit: u64, body: S) -> Result<u64, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dest = self.parts_dir(key).join(number.to_string());
        self.receive_to(key, &dest, limit, body).await
    }

    pub(super) fn local_parts(&self, key: &str) -> Result<Option<Vec<ReceivedPart>>, StoreError> {
        let entries = match std::fs::read_dir(self.parts_dir(key)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::msg("list the parts of an upload", e)),
        };
        let mut parts = Vec::new();
        for entry in entries.flatten() {
            let Some(number) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let size = entry.metadata().map_err(|e| StoreError::msg("list the parts of an upload", e))?.len();
            parts.push(ReceivedPart { number, size, etag: String::new() });
        }
        parts.sort_by_key(|p| p.number);
        Ok(Some(parts))
    }

    pub(super) async fn complete_local_parts(&self, key: &str, parts: &[ReceivedPart]) -> Result<bool, StoreError> {
        let dir = self.parts_dir(key);
        if !dir.is_dir() {
            return Ok(false);
        }
        let tmp = self.root.join("incoming").join(format!("{key}.{}", uuid::Uuid::new_v4().simple()));
        let staged = self.staged_path(key);
        let numbers: Vec<u32> = parts.iter().map(|p| p.number).collect();
        let joined = tokio::task::spawn_blocking(move || join(&dir, &numbers, &tmp, &staged))
            .await
            .map_err(|e| StoreError::msg("join task", e))?;
        joined.map_err(|e| StoreError::msg("join the parts of an upload", e))
    }

    pub(super) async fn abort_local_parts(&self, key: &str) -> Result<(), StoreError> {
        if !Self::valid_staging_key(key) {
            return Ok(());
        }
        match tokio::fs::remove_dir_all(self.parts_dir(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::msg("remove the parts of an upload", e)),
        }
    }
}

/// Takes `dir` out of the way of part PUTs (renamed: a part arriving now finds no upload and
/// is refused), appends its parts `numbers` to `tmp` (`std::io::copy`: `copy_file_range`
/// between files on Linux, a small buffer elsewhere), syncs it, moves it to `staged`, and
/// removes the parts. On failure the parts go back.
fn join(
    dir: &std::path::Path,
    numbers: &[u32],
    tmp: &std::path::Path,
    staged: &std::path::Path,
) -> std::io::Result<bool> {
    let taken = dir.with_extension(format!("joining-{}", uuid::Uuid::new_v4().simple()));
    match std::fs::rename(dir, &taken) {
        Ok(()) => {}
        // Completed or aborted meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut out = std::fs::File::create(tmp)?;
        for n in numbers {
            let mut part = std::fs::File::open(taken.join(n.to_string()))?;
            std::io::copy(&mut part, &mut out)?;
        }
        out.flush()?;
        out.sync_all()?;
        std::fs::rename(tmp, staged)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
        let _ = std::fs::rename(&taken, dir);
        return result.map(|()| false);
    }
    std::fs::remove_dir_all(&taken)?;
    Ok(true)
}
