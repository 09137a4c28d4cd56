//! `validate [FILES]`: checks that the files are present and match the manifest, hashing each
//! of them (it never trusts the destination index: this is the on-demand check).

use std::path::Path;

use tooltool::fetch::is_valid;

use crate::ui::Reporter;
use crate::{Args, FAILURE, Outcome, SUCCESS, load, select};

/// Exit 0 when every named record (all by default) is present and valid.
pub async fn run(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Outcome {
    let manifest = load(manifest_path)?;
    let mut ok = true;
    for e in select(&manifest, &args.files, manifest_path)? {
        let path = cwd.join(e.filename.as_str());
        if !path.is_file() {
            reporter.error(&format!("{}: missing (run `tooltool fetch`)", e.filename));
            ok = false;
        } else if !is_valid(&path, e).await? {
            reporter.error(&format!(
                "{}: does not match the manifest's size and sha512 (run `tooltool fetch` to replace it)",
                e.filename
            ));
            ok = false;
        } else {
            reporter.detail(&format!("{}: valid", e.filename));
        }
    }
    Ok(if ok { SUCCESS } else { FAILURE })
}
