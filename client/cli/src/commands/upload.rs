//! `upload --message M [--visibility V]`: uploads the manifest's files ([`tooltool::upload`]),
//! several at once (`-j`), with progress bars on a terminal.

use std::path::Path;

use tooltool::upload::{self, UploadOptions, Uploaded};

use crate::ui::Reporter;
use crate::{Args, FAILURE, Fail, Outcome, SUCCESS, load, server, visibility_arg};

/// Exit 0 when every file is stored on the server.
pub async fn run(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Outcome {
    let message = match args.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => return Err(Fail::Usage("upload needs --message (why these files are uploaded)".into())),
    };
    let manifest = load(manifest_path)?;
    let client = server(args, cwd)?;
    let opts = UploadOptions {
        default_visibility: visibility_arg(args)?,
        jobs: args.jobs.into(),
        ..UploadOptions::new(cwd, message)
    };
    let report = upload::upload(&client, &manifest.entries, &opts, reporter).await?;
    let already: Vec<&str> = report
        .files
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Uploaded::AlreadyStored)))
        .map(|(n, _)| n.as_str())
        .collect();
    let sent = report.files.values().filter(|r| matches!(r, Ok(Uploaded::Sent))).count();
    if !already.is_empty() {
        reporter.info(&format!("already stored, not sent: {}", already.join(", ")));
    }
    reporter.info(&format!("batch {}: {sent} sent, {} already stored", report.batch_id, already.len()));
    Ok(if report.ok() { SUCCESS } else { FAILURE })
}
