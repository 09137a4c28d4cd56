//! Tar entries (plain or through a decompressor) through the guard.

use std::io::Read;

use super::{Extractor, UnpackError};

impl Extractor {
    pub(super) fn tar(&mut self, reader: impl Read) -> Result<(), UnpackError> {
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
}
