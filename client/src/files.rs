//! Small file helpers shared by the workflows: blocking work off the async threads, temporary
//! files beside their destination, and whether an open file is still the one at a path.

use std::path::Path;

use crate::error::Error;

/// Runs blocking file work on the blocking pool; an I/O error names `path`.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(format!("task failed: {e}"))))?
        .map_err(|e| Error::io(path, e))
}

/// `opts` made to refuse a symbolic link as the file's last path component (`O_NOFOLLOW`:
/// the open fails with `ELOOP`), so that a link planted where a part file or a cache entry
/// goes (by an archive unpacked earlier, or another user of a shared cache) is never written
/// or read through.
pub(crate) fn no_follow(opts: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(opts, libc::O_NOFOLLOW);
    opts
}

/// A temporary file in `dest`'s directory, named `.<name>.XXXXXX<suffix>`, with the permissions
/// of any new file (0666 less the umask; tempfile's default is 0600). Dropping it removes it.
pub(crate) fn temp_beside(dest: &Path, suffix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

/// Writes `contents` to `path` (a temporary file renamed into place) so that the file's
/// modification time, on the file system's clock, is later than `after`: a record written in
/// the same clock tick as the last change of a file it describes could not vouch for it
/// ([`FileStamp::older_than`]), so the write is repeated a few milliseconds later until the
/// clock has moved on (at most ~100 ms).
pub(crate) fn write_record_file(path: &Path, contents: &[u8], after: (i64, i64)) -> std::io::Result<()> {
    use std::io::Write;
    for _ in 0..50 {
        let mut tmp = temp_beside(path, ".tmp")?;
        tmp.write_all(contents)?;
        let written = FileStamp::mtime_of(&tmp.as_file().metadata()?);
        tmp.persist(path).map_err(|e| e.error)?;
        if written > after {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(())
}

/// Whether `path` is a regular file of `size` (when given) whose sha512 is `digest`, hashing
/// it; a missing file is not. Blocking.
pub(crate) fn hashes_to(path: &Path, size: Option<u64>, digest: &tooltool_proto::Digest) -> std::io::Result<bool> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
        return Ok(false);
    }
    Ok(&tooltool_sha512::hash_reader(&mut file)?.0 == digest)
}

/// Whether the open `file` is the file now at `path` (it was not renamed away or replaced).
#[cfg(unix)]
pub(crate) fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
pub(crate) fn same_file(_file: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

/// What a verified file looked like when it was verified: if any of it changed, so may have
/// its bytes. The change time cannot be set by a program, so even a rewrite that restores the
/// size and modification time shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata; `None` where the platform does not give them all.
    #[cfg(unix)]
    pub(crate) fn of(meta: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        Some(Self {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        })
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_meta: &std::fs::Metadata) -> Option<Self> {
        None
    }

    /// The modification time of a file (a record), on the same clock as the stamps.
    #[cfg(unix)]
    pub(crate) fn mtime_of(meta: &std::fs::Metadata) -> (i64, i64) {
        use std::os::unix::fs::MetadataExt;
        (meta.mtime(), meta.mtime_nsec())
    }

    #[cfg(not(unix))]
    pub(crate) fn mtime_of(_meta: &std::fs::Metadata) -> (i64, i64) {
        (i64::MIN, 0)
    }

    /// Whether a record written at `recorded` (the record file's own modification time) can
    /// vouch for a file that still has this stamp. Not when the file changed in the same clock
    /// tick as the record or later ("racy" in git's words): a change made after the record
    /// within that tick would leave the times as recorded.
    pub(crate) fn older_than(&self, recorded: (i64, i64)) -> bool {
        self.last_change() < recorded
    }

    /// The later of the modification and change times.
    pub(crate) fn last_change(&self) -> (i64, i64) {
        self.mtime.max(self.ctime)
    }
}
