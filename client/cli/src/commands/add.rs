//! `add [--visibility V] [--unpack] FILES`: records files in the manifest as `tooltool.py`
//! does: the records of this `add` first, in argument order, then the records already there,
//! written byte for byte as it writes them ([`tooltool_proto::Manifest::to_json`]).
//!
//! Unlike the original, adding a file already recorded identically is a no-op that succeeds;
//! a different file under a recorded name is refused.

use std::path::Path;

use tooltool::hashing::hash_file;
use tooltool::unpack;
use tooltool::upload::file_name_of;
use tooltool_proto::{Algorithm, Manifest, ManifestEntry};

use crate::ui::Reporter;
use crate::{Args, FAILURE, Fail, Outcome, SUCCESS, load, visibility_arg};

/// Hashes each file and records it; exit 1 if any file could not be added.
pub async fn run(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Outcome {
    if args.files.is_empty() {
        return Err(Fail::Usage("add needs at least one file".into()));
    }
    let visibility = visibility_arg(args)?;
    let mut manifest = if manifest_path.exists() { load(manifest_path)? } else { Manifest::default() };
    let mut ok = true;
    let mut added: Vec<ManifestEntry> = Vec::new();
    for file in &args.files {
        let path = cwd.join(file);
        let name = file_name_of(&path)?;
        if args.unpack && unpack::format_of(name.as_str()).is_none() {
            reporter.error(&format!(
                "{name}: --unpack needs a .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .tar.zst or .zip file"
            ));
            ok = false;
            continue;
        }
        let (digest, size) = match hash_file(&path).await {
            Ok(h) => h,
            Err(e) => {
                reporter.error(&e.to_string());
                ok = false;
                continue;
            }
        };
        let record = ManifestEntry {
            filename: name.clone(),
            size: Some(size),
            algorithm: Algorithm::Sha512,
            digest,
            unpack: args.unpack,
            version: None,
            visibility,
        };
        let existing = added.iter().chain(&manifest.entries).find(|e| e.filename == name);
        match existing {
            Some(e) if e.digest == record.digest && e.size == record.size => {
                reporter.info(&format!("{name}: already in the manifest"));
            }
            Some(_) => {
                reporter.error(&format!(
                    "{name}: the manifest {} already has a different file under this name; \
                     remove that record first or rename the file",
                    manifest_path.display()
                ));
                ok = false;
            }
            None => {
                reporter.info(&format!("{name}: added ({size} bytes)"));
                added.push(record);
            }
        }
    }
    if !added.is_empty() || !manifest_path.exists() {
        manifest.put_first(added);
        manifest.save(manifest_path)?;
    }
    Ok(if ok { SUCCESS } else { FAILURE })
}
