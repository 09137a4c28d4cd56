//! `fetch [FILES]`: brings every record (or the named ones) into the manifest's directory
//! ([`tooltool::fetch`]), with `-c` cache, `-j` parallel transfers, `--verify-cache`,
//! `--tuf-root` signed metadata.

use std::path::Path;

use tooltool::Servers;
use tooltool::fetch::{self, FetchOptions, Source};
use tooltool::tuf::PinnedRoot;
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
    opts.tuf_roots = args.tuf_root.iter().map(|r| pinned_root(r, cwd)).collect();
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

/// `--tuf-root [REPO=]FILE`: `public` unless it names `public=` or `internal=`.
fn pinned_root(arg: &str, cwd: &Path) -> PinnedRoot {
    let (repo, file) = match arg.split_once('=') {
        Some((repo, file)) if tooltool::tuf::REPOS.contains(&repo) => (repo, file),
        _ => ("public", arg),
    };
    PinnedRoot { repo: repo.to_owned(), path: cwd.join(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuf_root_is_public_unless_it_names_its_repository() {
        let cwd = Path::new("/w");
        let root = |repo: &str, path: &str| PinnedRoot { repo: repo.into(), path: path.into() };
        assert_eq!(pinned_root("1.root.json", cwd), root("public", "/w/1.root.json"));
        assert_eq!(pinned_root("internal=r/i.json", cwd), root("internal", "/w/r/i.json"));
        assert_eq!(pinned_root("public=/abs.json", cwd), root("public", "/abs.json"));
        assert_eq!(pinned_root("a=b.json", cwd), root("public", "/w/a=b.json"));
    }
}
