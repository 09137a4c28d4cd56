//! Unpacking of `"unpack": true` records: tar (plain, gzip, bzip2, xz, zstd) and zip.
//!
//! As the original client does, the directory named after the archive without its extension
//! (`gcc.tar.xz` → `gcc`) is removed first, then the archive is extracted into the destination
//! directory. Extraction goes into a temporary directory inside the destination first; only a
//! fully extracted, accepted archive is moved into place.
//!
//! Hostile archives are refused: absolute paths, `..` components, symbolic links or hard links
//! that point outside the extracted tree, device and FIFO entries, writes through a symbolic
//! link, more than [`UnpackLimits::max_entries`] entries or more than
//! [`UnpackLimits::max_bytes`] uncompressed bytes, setuid and setgid entries. Sticky bits are
//! dropped.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Limits applied while extracting.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Largest total of uncompressed file bytes.
    pub max_bytes: u64,
    /// Largest number of entries.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self { max_bytes: 64 << 30, max_entries: 1_000_000 }
    }
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is refused as hostile or beyond the limits.
    #[error("{archive}: refused: {why}")]
    Refused {
        /// The archive.
        archive: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The archive is corrupt or a file could not be written.
    #[error("{archive}: {what}: {source}")]
    Io {
        /// The archive.
        archive: PathBuf,
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The file name has no known archive extension.
    #[error("{0}: not a known archive type (expected .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .tar.zst or .zip)")]
    UnknownFormat(PathBuf),
}

/// The archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Uncompressed tar.
    Tar,
    /// gzip-compressed tar.
    TarGz,
    /// bzip2-compressed tar.
    TarBz2,
    /// xz-compressed tar.
    TarXz,
    /// zstd-compressed tar.
    TarZst,
    /// zip.
    Zip,
}

/// The format of `name` and the name without its archive extension (the directory the
/// original client removes before unpacking).
pub fn format_of(name: &str) -> Option<(Format, &str)> {
    const SUFFIXES: &[(&str, Format)] = &[
        (".tar.gz", Format::TarGz),
        (".tgz", Format::TarGz),
        (".tar.bz2", Format::TarBz2),
        (".tbz2", Format::TarBz2),
        (".tar.xz", Format::TarXz),
        (".txz", Format::TarXz),
        (".tar.zst", Format::TarZst),
        (".tzst", Format::TarZst),
        (".tar", Format::Tar),
        (".zip", Format::Zip),
    ];
    SUFFIXES.iter().find_map(|(suffix, format)| {
        let base = name.strip_suffix(suffix)?;
        (!base.is_empty()).then_some((*format, base))
    })
}

/// Unpacks `archive` into `dest_dir` (see the module documentation). Returns the top-level
/// names that were put in place.
pub fn unpack(archive: &Path, dest_dir: &Path, limits: UnpackLimits) -> Result<Vec<OsString>, UnpackError> {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (format, base) = format_of(&name).ok_or_else(|| UnpackError::UnknownFormat(archive.to_owned()))?;
    let io_err = |what: String| {
        let archive = archive.to_owned();
        move |source| UnpackError::Io { archive, what, source }
    };

    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{base}.unpack-"))
        .tempdir_in(dest_dir)
        .map_err(io_err(format!("creating a temporary directory in {}", dest_dir.display())))?;
    let mut x = Extractor { archive: archive.to_owned(), root: tmp.path().to_owned(), limits, bytes: 0, entries: 0 };
    let file = fs::File::open(archive).map_err(io_err("opening".into()))?;
    let reader = io::BufReader::with_capacity(1 << 20, file);
    match format {
        Format::Tar => x.tar(reader)?,
        Format::TarGz => x.tar(flate2::read::MultiGzDecoder::new(reader))?,
        Format::TarBz2 => x.tar(bzip2::read::MultiBzDecoder::new(reader))?,
        Format::TarXz => x.tar(liblzma::read::XzDecoder::new_multi_decoder(reader))?,
        Format::TarZst => {
            x.tar(zstd::stream::read::Decoder::with_buffer(reader).map_err(io_err("reading zstd".into()))?)?
        }
        Format::Zip => x.zip(fs::File::open(archive).map_err(io_err("opening".into()))?)?,
    }
    x.check_symlinks()?;

    // Remove the previous unpacked directory, as the original does, then move into place.
    let previous = dest_dir.join(base);
    remove_any(&previous).map_err(io_err(format!("removing {}", previous.display())))?;
    let mut placed = Vec::new();
    let top: Vec<_> = fs::read_dir(tmp.path())
        .map_err(io_err("listing the extracted files".into()))?
        .collect::<Result<_, _>>()
        .map_err(io_err("listing the extracted files".into()))?;
    for entry in top {
        let target = dest_dir.join(entry.file_name());
        if target == archive {
            return Err(UnpackError::Refused {
                archive: archive.to_owned(),
                why: "it contains a file with the archive's own name".into(),
            });
        }
        remove_any(&target).map_err(io_err(format!("removing {}", target.display())))?;
        fs::rename(entry.path(), &target).map_err(io_err(format!("moving into {}", target.display())))?;
        placed.push(entry.file_name());
    }
    Ok(placed)
}

/// Removes a file, symbolic link or directory tree; a missing path is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

struct Extractor {
    archive: PathBuf,
    root: PathBuf,
    limits: UnpackLimits,
    bytes: u64,
    entries: u64,
}

/// Permission bits kept: entries with setuid or setgid are refused; the sticky bit is dropped.
const MODE_MASK: u32 = 0o777;

impl Extractor {
    fn refuse(&self, why: impl Into<String>) -> UnpackError {
        UnpackError::Refused { archive: self.archive.clone(), why: why.into() }
    }

    fn io(&self, what: impl Into<String>) -> impl FnOnce(io::Error) -> UnpackError {
        let archive = self.archive.clone();
        let what = what.into();
        move |source| UnpackError::Io { archive, what, source }
    }

    fn count_entry(&mut self) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(format!(
                "more than {} entries (a decompression bomb?); raise --max-unpack-entries if it is genuine",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Checks an entry name: relative, no `..`, no root or prefix. Returns it without `.`
    /// components, or `None` for the archive root itself.
    fn safe_path(&self, raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(self.refuse(format!("the entry {} contains \"..\"", raw.display())));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(format!("the entry {} is an absolute path", raw.display())));
                }
            }
        }
        Ok((!out.as_os_str().is_empty()).then_some(out))
    }

    /// Makes sure no ancestor of `rel` is a symbolic link (so that nothing is written through
    /// one), creates the missing ancestor directories, and removes whatever non-directory
    /// already sits at `rel`. Returns the absolute path.
    fn prepare(&self, rel: &Path) -> Result<PathBuf, UnpackError> {
        let mut cur = self.root.clone();
        let comps: Vec<_> = rel.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(
                        self.refuse(format!("the entry {} would be written through a symbolic link", rel.display()))
                    );
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(
                        self.refuse(format!("the entry {} is below a file that is not a directory", rel.display()))
                    );
                }
                Err(_) => fs::create_dir(&cur).map_err(self.io(format!("creating {}", cur.display())))?,
            }
        }
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => fs::remove_file(&full).map_err(self.io(format!("replacing {}", full.display())))?,
            Err(_) => {}
        }
        Ok(full)
    }

    /// Copies a file's content, counting against the byte limit.
    fn write_file(&mut self, rel: &Path, mode: Option<u32>, content: &mut dyn Read) -> Result<(), UnpackError> {
        let full = self.prepare(rel)?;
        if full.is_dir() {
            return Err(self.refuse(format!("the file {} replaces a directory", rel.display())));
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(self.io(format!("creating {}", full.display())))?;
        let remaining = self.limits.max_bytes - self.bytes;
        let mut limited = content.take(remaining + 1);
        let n = io::copy(&mut limited, &mut out).map_err(self.io(format!("extracting {}", rel.display())))?;
        self.bytes += n;
        if self.bytes > self.limits.max_bytes {
            return Err(self.refuse(format!(
                "it unpacks to more than {} bytes (a decompression bomb?); raise --max-unpack-size if it is genuine",
                self.limits.max_bytes
            )));
        }
        out.flush().map_err(self.io(format!("writing {}", full.display())))?;
        set_mode(&full, mode.unwrap_or(0o644) & MODE_MASK).map_err(self.io(format!("chmod {}", full.display())))?;
        Ok(())
    }

    fn make_dir(&self, rel: &Path, mode: Option<u32>) -> Result<(), UnpackError> {
        let full = self.prepare(rel)?;
        if !full.is_dir() {
            fs::create_dir(&full).map_err(self.io(format!("creating {}", full.display())))?;
        }
        // Keep the owner's rwx while extracting, so that entries can be written below.
        set_mode(&full, (mode.unwrap_or(0o755) & MODE_MASK) | 0o700)
            .map_err(self.io(format!("chmod {}", full.display())))?;
        Ok(())
    }

    fn make_symlink(&self, rel: &Path, target: &Path) -> Result<(), UnpackError> {
        if target.is_absolute() || target.as_os_str().is_empty() {
            return Err(self.refuse(format!(
                "the symbolic link {} points to the absolute path {}",
                rel.display(),
                target.display()
            )));
        }
        // Lexical check now; the physical one (through other links) once all is extracted.
        let mut depth: usize = rel.components().count() - 1;
        for c in target.components() {
            match c {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir if depth > 0 => depth -= 1,
                _ => {
                    return Err(self.refuse(format!(
                        "the symbolic link {} points outside the archive ({})",
                        rel.display(),
                        target.display()
                    )));
                }
            }
        }
        let full = self.prepare(rel)?;
        if full.is_dir() {
            return Err(self.refuse(format!("the symbolic link {} replaces a directory", rel.display())));
        }
        symlink(target, &full).map_err(self.io(format!("creating the link {}", full.display())))
    }

    fn make_hardlink(&self, rel: &Path, target: &Path) -> Result<(), UnpackError> {
        let Some(target_rel) = self.safe_path(target).map_err(|_| {
            self.refuse(format!("the hard link {} points outside the archive ({})", rel.display(), target.display()))
        })?
        else {
            return Err(self.refuse(format!("the hard link {} points to the archive root", rel.display())));
        };
        // The target must be a regular file already extracted, reached without symbolic links.
        let mut cur = self.root.clone();
        for c in target_rel.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(format!(
                        "the hard link {} goes through a symbolic link ({})",
                        rel.display(),
                        target.display()
                    )));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(self.refuse(format!(
                        "the hard link {} points to {}, which is not in the archive",
                        rel.display(),
                        target.display()
                    )));
                }
            }
        }
        if !cur.is_file() {
            return Err(self.refuse(format!("the hard link {} does not point to a file", rel.display())));
        }
        let full = self.prepare(rel)?;
        fs::hard_link(&cur, &full).map_err(self.io(format!("creating the link {}", full.display())))
    }

    fn tar(&mut self, reader: impl Read) -> Result<(), UnpackError> {
        use tar::EntryType;
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(self.io("reading the tar archive"))?;
        for entry in entries {
            let mut entry = entry.map_err(self.io("reading the tar archive"))?;
            self.count_entry()?;
            let raw = entry.path().map_err(self.io("reading an entry name"))?.into_owned();
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
            ) {
                continue;
            }
            let Some(rel) = self.safe_path(&raw)? else {
                if kind.is_dir() {
                    continue;
                }
                return Err(self.refuse(format!("the entry {:?} has no name", raw)));
            };
            let mode = entry.header().mode().ok();
            if let Some(m) = mode
                && m & 0o6000 != 0
            {
                return Err(self.refuse(format!("the entry {} is setuid or setgid", rel.display())));
            }
            match kind {
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    self.write_file(&rel, mode, &mut entry)?
                }
                EntryType::Directory => self.make_dir(&rel, mode)?,
                EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(self.io("reading a link target"))?
                        .ok_or_else(|| self.refuse(format!("the symbolic link {} has no target", rel.display())))?;
                    self.make_symlink(&rel, &target)?
                }
                EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(self.io("reading a link target"))?
                        .ok_or_else(|| self.refuse(format!("the hard link {} has no target", rel.display())))?;
                    self.make_hardlink(&rel, &target)?
                }
                EntryType::Char | EntryType::Block => {
                    return Err(self.refuse(format!("the entry {} is a device file", rel.display())));
                }
                EntryType::Fifo => return Err(self.refuse(format!("the entry {} is a FIFO", rel.display()))),
                other => {
                    return Err(self.refuse(format!("the entry {} has the unsupported type {other:?}", rel.display())));
                }
            }
        }
        Ok(())
    }

    fn zip(&mut self, file: fs::File) -> Result<(), UnpackError> {
        let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| UnpackError::Io {
            archive: self.archive.clone(),
            what: "reading the zip archive".into(),
            source: io::Error::other(e),
        })?;
        if archive.len() as u64 > self.limits.max_entries {
            return Err(self.refuse(format!(
                "more than {} entries (a decompression bomb?); raise --max-unpack-entries if it is genuine",
                self.limits.max_entries
            )));
        }
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(|e| UnpackError::Io {
                archive: self.archive.clone(),
                what: format!("reading entry {i} of the zip archive"),
                source: io::Error::other(e),
            })?;
            self.count_entry()?;
            let raw = entry.name().map_err(|e| UnpackError::Io {
                archive: self.archive.clone(),
                what: format!("reading the name of entry {i}"),
                source: io::Error::other(e),
            })?;
            let raw = PathBuf::from(raw.replace('\\', "/"));
            let Some(rel) = self.safe_path(&raw)? else {
                if entry.is_dir() {
                    continue;
                }
                return Err(self.refuse(format!("the entry {:?} has no name", raw)));
            };
            let mode = entry.unix_mode();
            let file_type = mode.map(|m| m & 0o170000).unwrap_or(0);
            if let Some(m) = mode
                && m & 0o6000 != 0
            {
                return Err(self.refuse(format!("the entry {} is setuid or setgid", rel.display())));
            }
            match file_type {
                0o020000 | 0o060000 => {
                    return Err(self.refuse(format!("the entry {} is a device file", rel.display())));
                }
                0o010000 => return Err(self.refuse(format!("the entry {} is a FIFO", rel.display()))),
                0o140000 => return Err(self.refuse(format!("the entry {} is a socket", rel.display()))),
                0o120000 => {
                    let mut target = Vec::new();
                    (&mut entry).take(4096).read_to_end(&mut target).map_err(self.io("reading a link target"))?;
                    let target = String::from_utf8(target).map_err(|_| {
                        self.refuse(format!("the symbolic link {} has a non-UTF-8 target", rel.display()))
                    })?;
                    self.make_symlink(&rel, Path::new(&target))?;
                }
                _ if entry.is_dir() => self.make_dir(&rel, mode)?,
                _ => self.write_file(&rel, mode, &mut entry)?,
            }
        }
        Ok(())
    }

    /// Checks, once everything is extracted, that every symbolic link resolves inside the
    /// tree, following the links it goes through.
    fn check_symlinks(&self) -> Result<(), UnpackError> {
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            let listing = fs::read_dir(self.root.join(&dir)).map_err(self.io("listing the extracted files"))?;
            for entry in listing {
                let entry = entry.map_err(self.io("listing the extracted files"))?;
                let rel = dir.join(entry.file_name());
                let ft = entry.file_type().map_err(self.io("listing the extracted files"))?;
                if ft.is_dir() {
                    stack.push(rel);
                } else if ft.is_symlink() && !self.resolves_inside(&rel) {
                    return Err(self.refuse(format!(
                        "the symbolic link {} resolves outside the archive or to nothing",
                        rel.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Resolves `rel` the way the kernel would, confined to the root: false when the
    /// resolution climbs above the root, meets an absolute target, loops, or ends at nothing
    /// (a dangling link: a later write to its path would go through it, wherever it points).
    fn resolves_inside(&self, rel: &Path) -> bool {
        let mut stack: Vec<OsString> = Vec::new();
        let mut todo: VecDeque<OsString> = rel.iter().map(|c| c.to_owned()).collect();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == "." {
                continue;
            }
            if c == ".." {
                if stack.pop().is_none() {
                    return false;
                }
                continue;
            }
            stack.push(c);
            let here: PathBuf = stack.iter().collect();
            let full = self.root.join(&here);
            if fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
                hops += 1;
                if hops > 40 {
                    return false;
                }
                let Ok(target) = fs::read_link(&full) else { return false };
                if target.has_root() {
                    return false;
                }
                stack.pop();
                for (i, t) in target.iter().enumerate() {
                    todo.insert(i, t.to_owned());
                }
            }
        }
        let resolved: PathBuf = stack.iter().collect();
        fs::symlink_metadata(self.root.join(resolved)).is_ok()
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{}: symbolic links are not supported here", link.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_bases() {
        assert_eq!(format_of("gcc.tar.xz"), Some((Format::TarXz, "gcc")));
        assert_eq!(format_of("a.tgz"), Some((Format::TarGz, "a")));
        assert_eq!(format_of("a.b.tar"), Some((Format::Tar, "a.b")));
        assert_eq!(format_of("x.zip"), Some((Format::Zip, "x")));
        assert_eq!(format_of("x.tar.zst"), Some((Format::TarZst, "x")));
        assert_eq!(format_of("x.tar.bz2"), Some((Format::TarBz2, "x")));
        assert_eq!(format_of("x.txt"), None);
        assert_eq!(format_of(".tar"), None);
    }

    /// A tar of one entry with a raw name (and link target), so that hostile names get in.
    fn tar_of(name: &str, link: Option<&str>) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                g.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(if link.is_some() { tar::EntryType::Symlink } else { tar::EntryType::Regular });
        h.set_mode(0o644);
        let data: &[u8] = if link.is_some() { b"" } else { b"x" };
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        /// Archive entry names, the parser that faces what the network sent: whatever the name
        /// and link target, an entry is unpacked inside the destination or the archive is
        /// refused (or reported corrupt), never a panic, and nothing appears outside.
        #[test]
        fn any_entry_name_lands_inside_the_destination_or_is_refused(
            name in "[a./\\\\]{1,12}|[a-c./]{1,40}",
            link in proptest::option::of("[a./]{0,12}|/[a-z]{1,5}"),
        ) {
            let parent = tempfile::tempdir().unwrap();
            let dest = parent.path().join("d");
            fs::create_dir(&dest).unwrap();
            let archive = parent.path().join("x.tar");
            fs::write(&archive, tar_of(&name, link.as_deref())).unwrap();
            match unpack(&archive, &dest, UnpackLimits::default()) {
                Ok(_) | Err(UnpackError::Refused { .. } | UnpackError::Io { .. }) => {}
                Err(other) => proptest::prop_assert!(false, "{name:?}: {other}"),
            }
            let mut outside: Vec<_> = fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            outside.sort();
            proptest::prop_assert_eq!(outside, ["d", "x.tar"], "{:?} -> {:?}", name, link);
        }
    }
}
