//! `purge -c FOLDER [-s GB]`: empties the cache folder, or removes its least recently used files
//! until `-s` GB are free on its file system, as `tooltool.py` does ([`tooltool::cache::purge`]).

use std::path::Path;

use crate::ui::Reporter;
use crate::{Args, Fail, Outcome, SUCCESS};

/// Exits 0 on success (the original exits 1 even then).
pub fn run(args: &Args, cwd: &Path, reporter: &Reporter) -> Outcome {
    let folder = args.cache_folder.as_ref().ok_or_else(|| Fail::Usage("purge needs -c/--cache-folder".into()))?;
    let gigs = args.size.unwrap_or(0.0);
    if !(gigs >= 0.0 && gigs.is_finite()) {
        return Err(Fail::Usage("-s/--size must be a number of GB, 0 or more".into()));
    }
    let removed = tooltool::cache::purge(&cwd.join(folder), gigs)?;
    reporter.info(&format!("purged {removed} files from {}", folder.display()));
    Ok(SUCCESS)
}
