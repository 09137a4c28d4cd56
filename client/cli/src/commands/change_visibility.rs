//! `change-visibility --digest D --visibility V`: sets the visibility of a stored file.

use std::path::Path;

use tooltool_proto::PatchOp;

use crate::ui::Reporter;
use crate::{Args, Fail, Outcome, SUCCESS, digest_arg, server, visibility_arg};

/// Needs the `manage` scope on the server.
pub async fn run(args: &Args, cwd: &Path, reporter: &Reporter) -> Outcome {
    let digest = digest_arg(args)?;
    let visibility = visibility_arg(args)?
        .ok_or_else(|| Fail::Usage("change-visibility needs --visibility public|internal".into()))?;
    let info = server(args, cwd)?.patch_file(digest.as_str(), &[PatchOp::SetVisibility { visibility }]).await?;
    reporter.info(&format!("{}: visibility is now {}", info.digest, info.visibility));
    Ok(SUCCESS)
}
