//! `delete --digest D`: removes every stored copy of a file (its record stays).

use std::path::Path;

use tooltool_proto::PatchOp;

use crate::ui::Reporter;
use crate::{Args, Outcome, SUCCESS, digest_arg, server};

/// Needs the `manage` scope on the server.
pub async fn run(args: &Args, cwd: &Path, reporter: &Reporter) -> Outcome {
    let digest = digest_arg(args)?;
    let server = server(args, cwd)?;
    // The copies held before, to say what was deleted: "every stored copy deleted" of a file
    // that had none would claim work that was never done.
    let before = server.get_file(digest.as_str()).await?.instances;
    let info = server.patch_file(digest.as_str(), &[PatchOp::DeleteInstances]).await?;
    if before.is_empty() {
        reporter.info(&format!("{}: no stored copy to delete", info.digest));
    } else {
        reporter.info(&format!("{}: every stored copy deleted ({})", info.digest, before.join(", ")));
    }
    Ok(SUCCESS)
}
