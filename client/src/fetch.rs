//! `fetch`: brings the records of a manifest into a directory, in parallel, through the cache
//! and the transfer engine, then unpacks what asks for it.
//!
//! For each record:
//!
//! 1. A file already in the destination is kept if the destination index vouches for it
//!    ([`crate::index`]), or if hashing it gives the record's size and sha512.
//! 2. With a cache folder, a valid cached copy is copied into place ([`crate::cache`]).
//! 3. Otherwise the transfer engine downloads it ([`crate::transfer::download`]): into the
//!    cache, then copied out, or straight into the destination without a cache.
//!
//! With a pinned TUF root ([`FetchOptions::tuf_roots`], or one kept in the cache folder), every
//! record is first looked up in the signed targets of the first server ([`crate::tuf`]): a
//! digest that is not a current target is refused, and a download must have the target's
//! length, sha256 and sha512 before it is renamed into place.
//!
//! A tooltool server that refuses connections is given up after a few quick tries, for every
//! file at once; the failures then carry [`Error::Unreachable`].

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream};
use tooltool_proto::ManifestEntry;

use crate::cache::{Cache, Hit};
use crate::error::Error;
use crate::files::{blocking, hashes_to};
use crate::index::DestIndex;
use crate::progress::{Progress, ProgressExt};
use crate::retry::RetryPolicy;
use crate::transfer::{self, Blob, Downloads, Servers};
use crate::tuf::{PinnedRoot, Verifier};
use crate::unpack::{self, UnpackLimits};

/// Options of a fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Where the files go (the manifest's directory, usually the working directory).
    pub dest: PathBuf,
    /// The shared cache folder.
    pub cache: Option<PathBuf>,
    /// Hash every cache hit instead of trusting its record.
    pub verify_cache: bool,
    /// How many files are transferred at once.
    pub jobs: usize,
    /// The region asked for (`?region=`).
    pub region: Option<String>,
    /// Retries.
    pub retry: RetryPolicy,
    /// Limits of unpacking.
    pub unpack: UnpackLimits,
    /// TUF roots to verify against (`--tuf-root`); a root already in the cache folder is used
    /// without one.
    pub tuf_roots: Vec<PinnedRoot>,
}

impl FetchOptions {
    /// Defaults for fetching into `dest`.
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        Self {
            dest: dest.into(),
            cache: None,
            verify_cache: false,
            jobs: 4,
            region: None,
            retry: RetryPolicy::default(),
            unpack: UnpackLimits::default(),
            tuf_roots: Vec::new(),
        }
    }
}

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// It was already in place and valid.
    Present,
    /// Copied from the cache.
    Cache,
    /// Downloaded (this many bytes transferred by this run).
    Downloaded(u64),
}

/// The outcome of one record.
#[derive(Debug)]
pub struct Outcome {
    /// The record's file name.
    pub name: String,
    /// Where it came from, or why it failed.
    pub result: Result<Source, FetchError>,
}

/// Why a record could not be fetched: the file, what happened, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {error}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct FetchError {
    /// The record's file name.
    pub name: String,
    /// The last error.
    pub error: Error,
    /// What the user can do about it.
    pub hint: Option<String>,
}

/// Fetches `entries` from `servers` (tried in order). Every record is tried, whatever happens
/// to the others; the outcomes come back in manifest order. Each failure is reported, except
/// those of a server that is down: one message says so for all of them.
pub async fn fetch(
    servers: &Servers,
    entries: &[ManifestEntry],
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Vec<Outcome> {
    let cache = match opts.cache.as_deref().map(|c| Cache::open(c, opts.verify_cache)).transpose() {
        Ok(c) => c,
        Err(e) => return fail_all(entries, &e, "check the --cache-folder path and its permissions", progress),
    };
    let verifier = match servers.is_empty() {
        true => Ok(None),
        false => Verifier::new(servers.client(0).clone(), &opts.tuf_roots, opts.cache.as_deref()),
    };
    let verifier = match verifier {
        Ok(v) => v,
        Err(e) => return fail_all(entries, &e, "check the --tuf-root files", progress),
    };
    let index = DestIndex::load(&opts.dest);
    let (cache_ref, index_ref, verifier_ref) = (&cache, &index, &verifier);
    let mut outcomes: Vec<(usize, Outcome)> = stream::iter(entries.iter().enumerate().map(|(i, entry)| async move {
        let (cache, index) = (cache_ref, index_ref);
        let name = entry.filename.to_string();
        let result = fetch_one(servers, entry, opts, cache.as_ref(), verifier_ref.as_ref(), index, progress).await;
        let result = result.map_err(|error| FetchError { name: name.clone(), hint: hint(&error), error });
        match &result {
            Ok(Source::Present) => progress.info(&format!("{name}: already present and valid")),
            Ok(Source::Cache) => progress.info(&format!("{name}: copied from the cache")),
            Ok(Source::Downloaded(n)) => progress.info(&format!("{name}: downloaded ({n} bytes)")),
            Err(e @ FetchError { error: Error::Unreachable { .. }, .. }) => progress.detail(&e.to_string()),
            Err(e) => progress.error(&e.to_string()),
        }
        (i, Outcome { name, result })
    }))
    .buffer_unordered(opts.jobs.max(1))
    .collect()
    .await;
    outcomes.sort_by_key(|(i, _)| *i);
    if let Err(e) = index.save() {
        progress.warn(&format!("{}: the destination index could not be written: {e}", opts.dest.display()));
    }
    report_unreachable(&outcomes, progress);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// Every record failed with `error` (a setup that failed before any could start).
fn fail_all(entries: &[ManifestEntry], error: &Error, hint: &str, progress: &dyn Progress) -> Vec<Outcome> {
    progress.error(&format!("{error} ({hint})"));
    let failed =
        |name: String| FetchError { name, hint: Some(hint.to_owned()), error: Error::Protocol(error.to_string()) };
    entries
        .iter()
        .map(|en| Outcome { name: en.filename.to_string(), result: Err(failed(en.filename.to_string())) })
        .collect()
}

/// One message per server that was down, with the number of files it cost.
fn report_unreachable(outcomes: &[(usize, Outcome)], progress: &dyn Progress) {
    let mut down: Vec<(String, usize)> = Vec::new();
    for (_, o) in outcomes {
        if let Err(FetchError { error: e @ Error::Unreachable { .. }, .. }) = &o.result {
            let msg = e.to_string();
            match down.iter_mut().find(|(m, _)| *m == msg) {
                Some((_, n)) => *n += 1,
                None => down.push((msg, 1)),
            }
        }
    }
    for (msg, n) in down {
        let files = if n == 1 { "file" } else { "files" };
        progress.error(&format!("{msg}; {n} {files} not fetched (check --url, and that the server is up)"));
    }
}

/// What the user can do about `error`.
fn hint(error: &Error) -> Option<String> {
    let h = match error {
        Error::Api { status: 401, .. } => "check the --authentication-file: the token was refused",
        Error::Api { status: 403, .. } => {
            "the file is probably internal: pass an --authentication-file whose token has the download/internal scope"
        }
        Error::Api { status: 404, .. } => "no server in --url has this file: check the manifest's digest, or upload it",
        Error::Api { status, .. } if *status >= 500 => "the server is failing: try again later",
        Error::Http { .. } => "check the network and the --url; running fetch again resumes where it stopped",
        Error::Untrusted(_) => {
            "the signed metadata (TUF) does not vouch for this file: check the manifest's digest and the --tuf-root"
        }
        Error::Mismatch { .. } => "the stored bytes do not match the manifest: check the manifest's size and digest",
        Error::Io { .. } => "check that the directory is writable and that the disk has space",
        _ => return None,
    };
    Some(h.to_owned())
}

async fn fetch_one(
    servers: &Servers,
    entry: &ManifestEntry,
    opts: &FetchOptions,
    cache: Option<&Cache>,
    verifier: Option<&Verifier>,
    index: &DestIndex,
    progress: &dyn Progress,
) -> Result<Source, Error> {
    let name = entry.filename.as_str();
    let dest = opts.dest.join(name);
    let mut blob = Blob { name: name.to_owned(), digest: entry.digest.clone(), size: entry.size, sha256: None };
    if let Some(verifier) = verifier {
        let target = verifier.target(&entry.digest).await?;
        if entry.size.is_some_and(|s| s != target.length) {
            return Err(Error::Untrusted(format!(
                "{name}: the manifest says {} bytes, the signed target of {} {}",
                entry.size.unwrap_or(0),
                target.repo,
                target.length
            )));
        }
        progress.detail(&format!("{name}: a signed target of {}", target.repo));
        (blob.size, blob.sha256) = (Some(target.length), Some(target.sha256));
    }
    let via = Downloads { servers, retry: &opts.retry, region: opts.region.as_deref(), progress };
    let source = if index.vouches(name, &dest, &entry.digest) {
        progress.detail(&format!("{name}: present, vouched for by the destination index"));
        Source::Present
    } else if is_valid(&dest, entry).await? {
        progress.detail(&format!("{name}: present and valid"));
        index.verified(name, &dest, &entry.digest);
        Source::Present
    } else if let Some(cache) = cache {
        index.forget(name);
        let source = match cache.copy_out(&blob, &dest, false).await? {
            Some(hit) => {
                if hit == Hit::Hashed {
                    progress.detail(&format!("{name}: the cached copy was hashed, and recorded"));
                }
                Source::Cache
            }
            None => {
                let (part, entry_path) = (cache.part(&blob), cache.entry(&blob));
                let done = || -> BoxFuture<'_, Result<bool, Error>> { Box::pin(cache.valid(&blob)) };
                let n = transfer::download(via, &blob, &part, &entry_path, &done).await?;
                if n > 0 {
                    cache.record(&blob).await?;
                }
                if cache.copy_out(&blob, &dest, n > 0).await?.is_none() {
                    return Err(Error::Mismatch {
                        what: format!("{}: changed in the cache while being copied", entry_path.display()),
                    });
                }
                Source::Downloaded(n)
            }
        };
        index.verified(name, &dest, &entry.digest);
        source
    } else {
        index.forget(name);
        let part = opts.dest.join(format!(".{name}.part"));
        let done = || -> BoxFuture<'_, Result<bool, Error>> { Box::pin(is_valid(&dest, entry)) };
        let n = transfer::download(via, &blob, &part, &dest, &done).await?;
        index.verified(name, &dest, &entry.digest);
        Source::Downloaded(n)
    };
    if entry.unpack {
        progress.detail(&format!("{name}: unpacking"));
        let (archive, dir, limits) = (dest.clone(), opts.dest.clone(), opts.unpack);
        tokio::task::spawn_blocking(move || unpack::unpack(&archive, &dir, limits))
            .await
            .map_err(|e| Error::Protocol(format!("{name}: unpacking task failed: {e}")))?
            .map_err(|e| Error::Protocol(format!("unpacking {e}")))?;
        progress.info(&format!("{name}: unpacked"));
    }
    Ok(source)
}

/// Whether `path` is a regular file with the record's size and digest (hashing it).
pub async fn is_valid(path: &Path, entry: &ManifestEntry) -> Result<bool, Error> {
    let owned = path.to_owned();
    let (size, digest) = (entry.size, entry.digest.clone());
    blocking(path, move || hashes_to(&owned, size, &digest)).await
}
