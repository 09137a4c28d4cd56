//! `fetch [FILES]`: brings every record (or the named ones) into the manifest's directory
//! ([`tooltool::fetch`]), with `-c` cache, `-j` parallel transfers, `--verify-cache`.

use std::path::Path;

use tooltool::Servers;
use tooltool::fetch::{self, FetchOptions, Source};
use tooltool::unpack::UnpackLimits;
use tooltool_proto::ManifestEntry;

use crate::ui::Reporter;
use crate::{Args, FAILURE, Outcome, SUCCESS, clients, load, select};

/// Exit 0 only if every record is in place.
pub async fn run(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Outcome {
    let manifest = load(manifest_path)?;
    let entries: Vec<ManifestEntry> = select(&manifest, &args.files, manifest_path)?.into_iter().cloned().collect();
    let servers = Servers::new(clients(args, cwd)?);
    let mut opts = FetchOptions::new(cwd);
    opts.cache = args.cache_folder.as_ref().map(|c| cwd.join(c));
    opts.verify_cache = args.verify_cache;
    opts.jobs = args.jobs.into();
    opts.region = args.region.clone();
    opts.unpack = UnpackLimits { max_bytes: args.max_unpack_size, max_entries: args.max_unpack_entries };
    let outcomes = fetch::fetch(&servers, &entries, &opts, reporter).await;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let unreachable = outcomes
        .iter()
        .filter(|o| matches!(&o.result, Err(e) if matches!(e.error, tooltool::Error::Unreachable { .. })))
        .count();
    let downloaded = outcomes.iter().filter(|o| matches!(o.result, Ok(Source::Downloaded(_)))).count();
    if failed > 0 {
        // A server that is down was already reported, once, with the files it cost.
        if failed > unreachable {
            reporter.error(&format!("{failed} of {} files could not be fetched", outcomes.len()));
        }
        Ok(FAILURE)
    } else {
        reporter.detail(&format!("{} files in place, {downloaded} downloaded", outcomes.len()));
        Ok(SUCCESS)
    }
}
