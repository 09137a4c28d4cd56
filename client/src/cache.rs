//! The cache folder (`-c`): blobs named by their digest, shared by every checkout and by
//! concurrent runs, verified once when they are inserted (as Git LFS, Cargo's registry cache
//! and Bazel's disk cache do) instead of on every hit.
//!
//! Layout: `<digest>` is the blob (the layout `tooltool.py` uses too), `.<digest>.part` a
//! download in progress (locked), `.<digest>.verified` the record written when the blob was
//! verified: its size, modification and change times, inode and device ([`FileStamp`]). A hit
//! whose record still matches the blob, and is older than the record (see
//! [`FileStamp::older_than`]), is copied out without hashing, with `copy_file_range` (a reflink
//! where the file system can). Any other hit (no record, a record that no longer matches, a
//! racy one, or `--verify-cache`) is hashed as it is copied, as any unknown file would be: a
//! valid one is recorded again, an invalid one removed and downloaded again. So a changed
//! entry is never taken for a valid one.
//!
//! Hits are touched (modification time set to now) so that [`purge`] removes the least
//! recently used first; at most once an hour per blob, since a touch changes the blob's
//! times and so needs a new record.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tooltool_sha512::Sha512Counter;

use crate::error::Error;
use crate::files::{FileStamp, blocking, hashes_to, temp_beside, write_record_file};
use crate::transfer::Blob;

/// A hit is touched again only when its modification time is older than this.
const TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// A cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// Hash every hit, whatever its record says.
    verify: bool,
}

/// How a cache entry was found valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Its record vouched for it: copied without hashing.
    Recorded,
    /// It was hashed while copied (no record, a stale or racy one, or `--verify-cache`).
    Hashed,
}

impl Cache {
    /// The cache in `dir`, created if missing. With `verify`, every hit is hashed.
    pub fn open(dir: &Path, verify: bool) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self { dir: dir.to_owned(), verify })
    }

    /// The path of the blob with this digest.
    pub fn entry(&self, blob: &Blob) -> PathBuf {
        self.dir.join(blob.digest.as_str())
    }

    /// Where a download of this digest goes before it is renamed to [`Cache::entry`].
    pub fn part(&self, blob: &Blob) -> PathBuf {
        self.dir.join(format!(".{}.part", blob.digest))
    }

    fn record_path(&self, blob: &Blob) -> PathBuf {
        self.dir.join(format!(".{}.verified", blob.digest))
    }

    /// Whether the entry is valid: its record vouches for it, or hashing it gives the digest
    /// (then it is recorded again).
    pub async fn valid(&self, blob: &Blob) -> Result<bool, Error> {
        let (entry, record) = (self.entry(blob), self.record_path(blob));
        let (size, digest, verify) = (blob.size, blob.digest.clone(), self.verify);
        blocking(&self.entry(blob), move || {
            if !verify && vouched(&entry, &record, size) {
                return Ok(true);
            }
            let valid = hashes_to(&entry, size, &digest)?;
            if valid {
                write_record(&entry, &record)?;
            }
            Ok(valid)
        })
        .await
    }

    /// Records a blob just verified (downloaded into [`Cache::entry`] and hashed on the way).
    pub async fn record(&self, blob: &Blob) -> Result<(), Error> {
        let (entry, record) = (self.entry(blob), self.record_path(blob));
        blocking(&self.entry(blob), move || write_record(&entry, &record)).await
    }

    /// Copies a valid cached blob to `dest` (a temporary file, then a rename). `None` when
    /// there is no valid cached copy; an invalid one is removed. `just_verified`: this run has
    /// just downloaded and hashed the entry, so it is copied without hashing whatever the
    /// record's timing says.
    pub async fn copy_out(&self, blob: &Blob, dest: &Path, just_verified: bool) -> Result<Option<Hit>, Error> {
        let (entry, record, dest_owned) = (self.entry(blob), self.record_path(blob), dest.to_owned());
        let (size, digest, verify) = (blob.size, blob.digest.clone(), self.verify);
        blocking(dest, move || {
            let mut src = match crate::files::no_follow(std::fs::OpenOptions::new().read(true)).open(&entry) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let meta = src.metadata()?;
            if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
                remove_entry(&entry, &record);
                return Ok(None);
            }
            let mut tmp = temp_beside(&dest_owned, ".tmp")?;
            let hit = if just_verified || (!verify && vouched(&entry, &record, size)) {
                // std's copy uses copy_file_range between two files on Linux.
                std::io::copy(&mut src, tmp.as_file_mut())?;
                Hit::Recorded
            } else {
                let mut counter = Sha512Counter::new();
                counter.update_from(&mut src, Some(tmp.as_file_mut() as &mut dyn std::io::Write))?;
                if counter.finish().0 != digest {
                    tracing::warn!(cached = %entry.display(), "invalid cached file removed");
                    remove_entry(&entry, &record);
                    return Ok(None);
                }
                write_record(&entry, &record)?;
                Hit::Hashed
            };
            tmp.persist(&dest_owned).map_err(|e| e.error)?;
            let stale = meta.modified().map_or(true, |m| m + TOUCH_EVERY < SystemTime::now());
            if stale && src.set_modified(SystemTime::now()).is_ok() {
                write_record(&entry, &record)?;
            }
            Ok(Some(hit))
        })
        .await
    }
}

/// Whether `record` vouches for the file at `entry` (of `size`, when known).
fn vouched(entry: &Path, record: &Path, size: Option<u64>) -> bool {
    let (Ok(meta), Ok(text), Ok(rec_meta)) =
        (std::fs::metadata(entry), std::fs::read_to_string(record), std::fs::metadata(record))
    else {
        return false;
    };
    let Ok(recorded) = serde_json::from_str::<FileStamp>(&text) else { return false };
    meta.is_file()
        && size.is_none_or(|s| s == meta.len())
        && FileStamp::of(&meta) == Some(recorded)
        && recorded.older_than(FileStamp::mtime_of(&rec_meta))
}

/// Writes the record of `entry` as it is now (a temporary file renamed into place, so that a
/// concurrent reader sees the old record or the new one), in a later clock tick than the
/// entry's last change, so that it can vouch for it.
fn write_record(entry: &Path, record: &Path) -> std::io::Result<()> {
    let Some(stamp) = FileStamp::of(&std::fs::metadata(entry)?) else { return Ok(()) };
    let text = serde_json::to_string(&stamp).expect("a stamp serializes");
    write_record_file(record, text.as_bytes(), stamp.last_change())
}

fn remove_entry(entry: &Path, record: &Path) {
    let _ = std::fs::remove_file(record);
    let _ = std::fs::remove_file(entry);
}

/// Removes files from the cache folder: all of them when `gigs` is 0, else the least
/// recently used until `gigs` GB are free on its file system. Files being downloaded (locked
/// `.part` files) are kept; sub-directories are not touched. A blob's record goes with it.
/// Returns how many blobs were removed.
pub fn purge(folder: &Path, gigs: f64) -> Result<usize, Error> {
    let full = gigs <= 0.0;
    let wanted = (gigs * (1u64 << 30) as f64) as u64;
    let free = |p: &Path| fs4::available_space(p).map_err(|e| Error::io(p, e));
    if !folder.exists() {
        return Ok(0);
    }
    if !full && free(folder)? >= wanted {
        return Ok(0);
    }
    let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        let meta = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), entry.path()));
    }
    files.sort();
    let mut removed = 0;
    for (_, path) in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".part") {
            // A download in progress holds the lock: leave it alone.
            match std::fs::File::open(&path).map(|f| f.try_lock()) {
                Ok(Ok(())) => {}
                _ => continue,
            }
        } else if name.ends_with(".verified") && !full {
            // Goes with its blob (below); one whose blob is gone is harmless.
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) if !name.starts_with('.') => {
                removed += 1;
                let _ = std::fs::remove_file(folder.join(format!(".{name}.verified")));
            }
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        if !full && free(folder)? >= wanted {
            break;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tooltool_sha512::Sha512Counter;

    use super::*;

    fn blob(data: &[u8]) -> Blob {
        let mut c = Sha512Counter::new();
        c.update(data);
        Blob { name: "b".into(), digest: c.finish().0, size: Some(data.len() as u64), sha256: None }
    }

    /// A cache holding `data` as a verified, recorded entry whose record vouches for it.
    async fn recorded(dir: &Path, data: &[u8]) -> (Cache, Blob) {
        let cache = Cache::open(&dir.join("cache"), false).unwrap();
        let b = blob(data);
        std::fs::write(cache.entry(&b), data).unwrap();
        // Past the clock tick of the entry's last change, so that the record can vouch.
        tokio::time::sleep(Duration::from_millis(30)).await;
        cache.record(&b).await.unwrap();
        (cache, b)
    }

    #[tokio::test]
    async fn a_recorded_entry_is_copied_unhashed_and_a_changed_one_is_hashed_then_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, b) = recorded(dir.path(), b"cached bytes").await;
        let dest = dir.path().join("out");
        assert_eq!(cache.copy_out(&b, &dest, false).await.unwrap(), Some(Hit::Recorded));
        assert_eq!(std::fs::read(&dest).unwrap(), b"cached bytes");

        // Same size, other bytes, modification time put back: only the change time differs.
        let entry = cache.entry(&b);
        let mtime = std::fs::metadata(&entry).unwrap().modified().unwrap();
        std::fs::write(&entry, b"cached BYTES").unwrap();
        std::fs::File::options().write(true).open(&entry).unwrap().set_modified(mtime).unwrap();
        std::fs::remove_file(&dest).unwrap();
        assert_eq!(cache.copy_out(&b, &dest, false).await.unwrap(), None);
        assert!(!dest.exists() && !entry.exists() && !cache.record_path(&b).exists());
    }

    #[tokio::test]
    async fn an_entry_without_a_record_or_under_verify_is_hashed_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, b) = recorded(dir.path(), b"some bytes").await;
        std::fs::remove_file(cache.record_path(&b)).unwrap();
        let dest = dir.path().join("out");
        assert_eq!(cache.copy_out(&b, &dest, false).await.unwrap(), Some(Hit::Hashed));
        assert!(cache.record_path(&b).exists(), "recorded again");
        let verifying = Cache::open(&dir.path().join("cache"), true).unwrap();
        assert_eq!(verifying.copy_out(&b, &dest, false).await.unwrap(), Some(Hit::Hashed));
        assert_eq!(std::fs::read(&dest).unwrap(), b"some bytes");
        // A truncated entry is not valid, whatever else.
        std::fs::write(cache.entry(&b), b"some").unwrap();
        assert!(!cache.valid(&b).await.unwrap());
    }

    #[tokio::test]
    async fn purge_removes_a_blob_with_its_record_and_keeps_a_locked_part() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, b) = recorded(dir.path(), b"purge me").await;
        let part = cache.dir.join(".other.part");
        let locked = std::fs::File::create(&part).unwrap();
        locked.lock().unwrap();
        assert_eq!(purge(&cache.dir, 0.0).unwrap(), 1);
        let left: Vec<_> = std::fs::read_dir(&cache.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [".other.part"]);
        assert!(!cache.entry(&b).exists());
    }
}
