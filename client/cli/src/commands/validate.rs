//! `validate [FILES]`: checks that the files are present and match the manifest, hashing each
//! of them, several at once (`-j`); it never trusts the destination index: this is the
//! on-demand check.

use std::path::Path;

use futures_util::{StreamExt, stream};
use tooltool::fetch::is_valid;

use crate::ui::Reporter;
use crate::{Args, FAILURE, Outcome, SUCCESS, load, select};

/// Exit 0 when every named record (all by default) is present and valid.
pub async fn run(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Outcome {
    let manifest = load(manifest_path)?;
    let checks = stream::iter(select(&manifest, &args.files, manifest_path)?.into_iter().map(|e| async move {
        let path = cwd.join(e.filename.as_str());
        let state = if !path.is_file() { Ok(None) } else { is_valid(&path, e).await.map(Some) };
        (e, state)
    }))
    .buffered(usize::from(args.jobs).max(1))
    .collect::<Vec<_>>()
    .await;
    let mut ok = true;
    for (e, state) in checks {
        match state? {
            None => {
                reporter.error(&format!("{}: missing (run `tooltool fetch`)", e.filename));
                ok = false;
            }
            Some(false) => {
                reporter.error(&format!(
                    "{}: does not match the manifest's size and sha512 (run `tooltool fetch` to replace it)",
                    e.filename
                ));
                ok = false;
            }
            Some(true) => reporter.detail(&format!("{}: valid", e.filename)),
        }
    }
    Ok(if ok { SUCCESS } else { FAILURE })
}
