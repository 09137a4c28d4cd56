//! The destination index (`.tooltool-index` beside the fetched files): for each file fetch
//! placed or hashed, its digest and its [`FileStamp`] at that moment, as git's index keeps
//! for the working tree. A later fetch trusts a file without hashing it only when the index
//! has it with the manifest's digest, the file's stamp is unchanged, and the file is older
//! than the index ([`FileStamp::older_than`]; a file changed in the same clock tick as the
//! index was written is hashed again). Any file the index does not vouch for is hashed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tooltool_proto::Digest;

use crate::files::{FileStamp, write_record_file};

/// The index's file name in the destination directory.
pub const INDEX_NAME: &str = ".tooltool-index";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    digest: Digest,
    stamp: FileStamp,
}

/// The index of one destination directory, loaded at the start of a fetch and written at its
/// end.
#[derive(Debug)]
pub struct DestIndex {
    path: PathBuf,
    /// The records as loaded, and the index file's modification time then.
    loaded: BTreeMap<String, Record>,
    written_at: (i64, i64),
    /// What this run verified (`Some`) or found invalid or missing (`None`).
    changes: Mutex<BTreeMap<String, Option<Record>>>,
}

impl DestIndex {
    /// Loads the index of `dir`; a missing or unreadable index is an empty one.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(INDEX_NAME);
        let (loaded, written_at) = match (std::fs::read(&path), std::fs::metadata(&path)) {
            (Ok(bytes), Ok(meta)) => (serde_json::from_slice(&bytes).unwrap_or_default(), FileStamp::mtime_of(&meta)),
            _ => (BTreeMap::new(), (i64::MIN, 0)),
        };
        Self { path, loaded, written_at, changes: Mutex::default() }
    }

    /// Whether the index vouches that the file `name` at `path` has `digest`.
    pub fn vouches(&self, name: &str, path: &Path, digest: &Digest) -> bool {
        let Some(rec) = self.loaded.get(name) else { return false };
        let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
        meta.is_file()
            && &rec.digest == digest
            && FileStamp::of(&meta) == Some(rec.stamp)
            && rec.stamp.older_than(self.written_at)
    }

    /// Notes that the file `name` at `path` was verified (placed or hashed) to have `digest`.
    pub fn verified(&self, name: &str, path: &Path, digest: &Digest) {
        let stamp = std::fs::symlink_metadata(path).ok().and_then(|m| FileStamp::of(&m));
        let rec = stamp.map(|stamp| Record { digest: digest.clone(), stamp });
        self.changes.lock().expect("index lock").insert(name.to_owned(), rec);
    }

    /// Notes that the file `name` is not (or no longer) valid.
    pub fn forget(&self, name: &str) {
        self.changes.lock().expect("index lock").insert(name.to_owned(), None);
    }

    /// Writes the index if this run changed it (a temporary file renamed into place). Failing
    /// to write it only costs hashing next time, so the error is returned for a warning.
    pub fn save(self) -> std::io::Result<()> {
        let changes = self.changes.into_inner().expect("index lock");
        if changes.is_empty() {
            return Ok(());
        }
        let mut records = self.loaded;
        for (name, rec) in changes {
            match rec {
                Some(r) => records.insert(name, r),
                None => records.remove(&name),
            };
        }
        if records.is_empty() && !self.path.exists() {
            return Ok(());
        }
        // Later than the last change of every file it vouches for, or it could vouch for none.
        let latest = records.values().map(|r| r.stamp.last_change()).max().unwrap_or((i64::MIN, 0));
        write_record_file(&self.path, &serde_json::to_vec(&records).expect("records serialize"), latest)
    }
}
