//! Zip entries through the guard.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Extractor, UnpackError};

impl Extractor {
    pub(super) fn zip(&mut self, file: fs::File) -> Result<(), UnpackError> {
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
}
