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

mod guard;
mod tar;
mod zip;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use guard::Extractor;

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
    let mut x = Extractor::new(archive.to_owned(), tmp.path().to_owned(), limits);
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
        let mut h = ::tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                g.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(if link.is_some() { ::tar::EntryType::Symlink } else { ::tar::EntryType::Regular });
        h.set_mode(0o644);
        let data: &[u8] = if link.is_some() { b"" } else { b"x" };
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut b = ::tar::Builder::new(Vec::new());
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
