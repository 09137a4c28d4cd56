//! The guard every entry passes: names kept inside the tree, links that resolve inside it, the
//! limits on entries and bytes, permission bits; and the writes it allows.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::{UnpackError, UnpackLimits};

pub(super) struct Extractor {
    pub(super) archive: PathBuf,
    pub(super) root: PathBuf,
    pub(super) limits: UnpackLimits,
    pub(super) bytes: u64,
    pub(super) entries: u64,
}

/// Permission bits kept: entries with setuid or setgid are refused; the sticky bit is dropped.
const MODE_MASK: u32 = 0o777;

impl Extractor {
    pub(super) fn new(archive: PathBuf, root: PathBuf, limits: UnpackLimits) -> Self {
        Self { archive, root, limits, bytes: 0, entries: 0 }
    }

    pub(super) fn refuse(&self, why: impl Into<String>) -> UnpackError {
        UnpackError::Refused { archive: self.archive.clone(), why: why.into() }
    }

    pub(super) fn io(&self, what: impl Into<String>) -> impl FnOnce(io::Error) -> UnpackError {
        let archive = self.archive.clone();
        let what = what.into();
        move |source| UnpackError::Io { archive, what, source }
    }

    pub(super) fn count_entry(&mut self) -> Result<(), UnpackError> {
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
    pub(super) fn safe_path(&self, raw: &Path) -> Result<Option<PathBuf>, UnpackError> {
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
    pub(super) fn write_file(
        &mut self,
        rel: &Path,
        mode: Option<u32>,
        content: &mut dyn Read,
    ) -> Result<(), UnpackError> {
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

    pub(super) fn make_dir(&self, rel: &Path, mode: Option<u32>) -> Result<(), UnpackError> {
        let full = self.prepare(rel)?;
        if !full.is_dir() {
            fs::create_dir(&full).map_err(self.io(format!("creating {}", full.display())))?;
        }
        // Keep the owner's rwx while extracting, so that entries can be written below.
        set_mode(&full, (mode.unwrap_or(0o755) & MODE_MASK) | 0o700)
            .map_err(self.io(format!("chmod {}", full.display())))?;
        Ok(())
    }

    pub(super) fn make_symlink(&self, rel: &Path, target: &Path) -> Result<(), UnpackError> {
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

    pub(super) fn make_hardlink(&self, rel: &Path, target: &Path) -> Result<(), UnpackError> {
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

    /// Checks, once everything is extracted, that every symbolic link resolves inside the
    /// tree, following the links it goes through.
    pub(super) fn check_symlinks(&self) -> Result<(), UnpackError> {
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
