//! `delete --digest D`: removes every stored copy of a file (its record stays).

use std::path::Path;

use tooltool_proto::PatchOp;

use crate::ui::Reporter;
use crate::{Args, Outcome, SUCCESS, digest_arg, server};

/// Needs the `manage` scope on the server.
pub async fn run(args: &Args, cwd: &Path, reporter: &Reporter) -> Outcome {
    let digest = digest_arg(args)?;
    let info = server(args, cwd)?.patch_file(digest.as_str(), &[PatchOp::DeleteInstances]).await?;
    reporter.info(&format!("{}: every stored copy deleted", info.digest));
    Ok(SUCCESS)
}
