//! `tooltool fetch`: downloads the records of a manifest, in parallel, with a shared cache,
//! retries, resumption and unpacking.
//!
//! For each record:
//!
//! 1. A file already in the destination with the right size and sha512 is kept.
//! 2. With a cache folder, a valid `CACHE/<digest>` is copied into place (and touched).
//! 3. Otherwise the bytes are downloaded into a `.part` file (in the cache folder, or in the
//!    destination without one), locked so that concurrent fetches of the same digest wait for
//!    each other, hashed as they arrive, checked, and renamed into place. A `.part` file left
//!    by an interrupted run is resumed with `Range`.
//!
//! Downloads go through the `--url` list in order: a URL that cannot serve the file (404, 403,
//! retries exhausted) hands over to the next. Network errors, 5xx and 429 are retried with
//! exponential backoff (honouring `Retry-After`); a signed URL the storage refuses (401/403,
//! e.g. expired) is requested again from the server.
//!
//! Files are not fsynced before their rename. Nothing here ever trusts a file it did not hash
//! on this run: a destination file or cache entry left truncated by a crash fails step 1 or 2
//! on the next fetch and is fetched again. An fsync per file would instead force every byte
//! to the disk before the fetch returns, which was the largest part of its time.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, stream};
use reqwest::StatusCode;
use tooltool_proto::ManifestEntry;

use crate::api::{ApiClient, Failure};
use crate::error::{Error, redact_url};
use crate::hashing::Sha512Counter;
use crate::progress::Reporter;
use crate::unpack::{self, UnpackLimits};

/// How transfers are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries per URL for retryable failures (network errors, 5xx, 429).
    pub attempts: u32,
    /// The first backoff delay; doubled on each retry.
    pub base_delay: Duration,
    /// The longest backoff delay (a `Retry-After` is honoured up to [`Self::max_retry_after`]).
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// How many times a refused signed URL is requested again, per URL.
    pub refreshes: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            refreshes: 3,
        }
    }
}

/// Options of a fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Where the files go (the manifest's directory, usually the working directory).
    pub dest: PathBuf,
    /// The shared cache folder.
    pub cache: Option<PathBuf>,
    /// How many files are transferred at once.
    pub jobs: usize,
    /// The region asked for (`?region=`).
    pub region: Option<String>,
    /// Retries.
    pub retry: RetryPolicy,
    /// Limits of unpacking.
    pub unpack: UnpackLimits,
}

impl FetchOptions {
    /// Defaults for fetching into `dest`.
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        Self {
            dest: dest.into(),
            cache: None,
            jobs: 4,
            region: None,
            retry: RetryPolicy::default(),
            unpack: UnpackLimits::default(),
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

/// Fetches `entries` with the servers at `clients` (tried in order). Every record is tried,
/// whatever happens to the others; the outcomes come back in manifest order.
pub async fn fetch(
    clients: &[ApiClient],
    entries: &[ManifestEntry],
    opts: &FetchOptions,
    reporter: &Reporter,
) -> Vec<Outcome> {
    if let Some(cache) = &opts.cache
        && let Err(e) = std::fs::create_dir_all(cache)
    {
        let e = Error::io(cache, e);
        return entries
            .iter()
            .map(|en| Outcome {
                name: en.filename.to_string(),
                result: Err(FetchError {
                    name: en.filename.to_string(),
                    hint: Some("check the --cache-folder path and its permissions".into()),
                    error: Error::Protocol(e.to_string()),
                }),
            })
            .collect();
    }
    let clients = Arc::new(clients.to_vec());
    let mut outcomes: Vec<(usize, Outcome)> = stream::iter(entries.iter().enumerate().map(|(i, entry)| {
        let clients = clients.clone();
        async move {
            let name = entry.filename.to_string();
            let result = fetch_one(&clients, entry, opts, reporter).await.map_err(|error| FetchError {
                name: name.clone(),
                hint: hint(&error),
                error,
            });
            match &result {
                Ok(Source::Present) => reporter.info(&format!("{name}: already present and valid")),
                Ok(Source::Cache) => reporter.info(&format!("{name}: copied from the cache")),
                Ok(Source::Downloaded(n)) => reporter.info(&format!("{name}: downloaded ({n} bytes)")),
                Err(e) => reporter.error(&e.to_string()),
            }
            (i, Outcome { name, result })
        }
    }))
    .buffer_unordered(opts.jobs.max(1))
    .collect()
    .await;
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
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
        Error::Mismatch { .. } => "the stored bytes do not match the manifest: check the manifest's size and digest",
        Error::Io { .. } => "check that the directory is writable and that the disk has space",
        _ => return None,
    };
    Some(h.to_owned())
}

async fn fetch_one(
    clients: &[ApiClient],
    entry: &ManifestEntry,
    opts: &FetchOptions,
    reporter: &Reporter,
) -> Result<Source, Error> {
    let name = entry.filename.as_str();
    let dest = opts.dest.join(name);
    let source = if is_valid(&dest, entry).await? {
        reporter.detail(&format!("{name}: present and valid"));
        Source::Present
    } else if let Some(cache) = &opts.cache {
        let cached = cache.join(entry.digest.as_str());
        if copy_from_cache(&cached, &dest, entry).await? {
            Source::Cache
        } else {
            let part = cache.join(format!(".{}.part", entry.digest));
            let n = download(clients, entry, &part, &cached, opts, reporter).await?;
            if !copy_from_cache(&cached, &dest, entry).await? {
                return Err(Error::Mismatch {
                    what: format!("{}: changed in the cache while being copied", cached.display()),
                });
            }
            Source::Downloaded(n)
        }
    } else {
        let part = opts.dest.join(format!(".{name}.part"));
        Source::Downloaded(download(clients, entry, &part, &dest, opts, reporter).await?)
    };
    if entry.unpack {
        reporter.detail(&format!("{name}: unpacking"));
        let (archive, dir, limits) = (dest.clone(), opts.dest.clone(), opts.unpack);
        tokio::task::spawn_blocking(move || unpack::unpack(&archive, &dir, limits))
            .await
            .map_err(|e| Error::Protocol(format!("{name}: unpacking task failed: {e}")))?
            .map_err(|e| Error::Protocol(format!("unpacking {e}")))?;
        reporter.info(&format!("{name}: unpacked"));
    }
    Ok(source)
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(format!("task failed: {e}"))))?
        .map_err(|e| Error::io(path, e))
}

/// Whether `path` is a regular file with the record's size and digest.
pub async fn is_valid(path: &Path, entry: &ManifestEntry) -> Result<bool, Error> {
    let owned = path.to_owned();
    let (size, digest) = (entry.size, entry.digest.clone());
    blocking(path, move || {
        let mut file = match std::fs::File::open(&owned) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
            return Ok(false);
        }
        let (got, _) = hash_reader(&mut file, None)?;
        Ok(got == digest)
    })
    .await
}

/// Hashes what `r` yields, copying it to `out` when given.
fn hash_reader(r: &mut dyn Read, out: Option<&mut dyn Write>) -> std::io::Result<(tooltool_proto::Digest, u64)> {
    let mut counter = Sha512Counter::new();
    feed(r, &mut counter, out)?;
    Ok(counter.finish())
}

/// Adds what `r` yields to `counter`, copying it to `out` when given.
fn feed(r: &mut dyn Read, counter: &mut Sha512Counter, mut out: Option<&mut dyn Write>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        counter.update(&buf[..n]);
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n])?;
        }
    }
    Ok(())
}

/// Copies a cached blob into `dest` (temporary file, then rename), checking it on the way.
/// `false` when there is no valid cached copy (an invalid one is removed). The cached file's
/// modification time is set to now, so that `purge` removes the least recently used first.
async fn copy_from_cache(cached: &Path, dest: &Path, entry: &ManifestEntry) -> Result<bool, Error> {
    let (cached, dest_owned, size, digest) = (cached.to_owned(), dest.to_owned(), entry.size, entry.digest.clone());
    blocking(dest, move || {
        let mut src = match std::fs::File::open(&cached) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = src.metadata()?;
        if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
            let _ = std::fs::remove_file(&cached);
            return Ok(false);
        }
        let mut tmp = temp_beside(&dest_owned)?;
        let (got, _) = hash_reader(&mut src, Some(tmp.as_file_mut()))?;
        if got != digest {
            tracing::warn!(cached = %cached.display(), "invalid cached file removed");
            let _ = std::fs::remove_file(&cached);
            return Ok(false);
        }
        tmp.persist(&dest_owned).map_err(|e| e.error)?;
        let _ = src.set_modified(SystemTime::now());
        Ok(true)
    })
    .await
}

/// A temporary file in `dest`'s directory, named after it, with the usual permissions.
fn temp_beside(dest: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut b = tempfile::Builder::new();
    let prefix = format!(".{name}.");
    b.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

/// Opens and locks `part`; `None` when `dest` became valid meanwhile (another process
/// finished the same download).
async fn lock_part(part: &Path, dest: &Path, entry: &ManifestEntry) -> Result<Option<std::fs::File>, Error> {
    loop {
        let owned = part.to_owned();
        let file = blocking(part, move || {
            let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&owned)?;
            f.lock()?;
            Ok(f)
        })
        .await?;
        if is_valid(dest, entry).await? {
            return Ok(None);
        }
        // The file locked may have been renamed away while waiting: start again then.
        if same_file(&file, part) {
            return Ok(Some(file));
        }
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

/// The `.part` file being filled: its handle (locked), and the hash of what it holds.
struct Part {
    path: PathBuf,
    file: tokio::fs::File,
    counter: Sha512Counter,
}

impl Part {
    async fn truncate(&mut self) -> Result<(), Error> {
        self.file.set_len(0).await.map_err(|e| Error::io(&self.path, e))?;
        self.file.seek(SeekFrom::Start(0)).await.map_err(|e| Error::io(&self.path, e))?;
        self.counter = Sha512Counter::new();
        Ok(())
    }
}

use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// How an attempt failed.
enum Attempt {
    /// Worth trying again on the same URL, after the delay the server asked for if any.
    Retry(Error, Option<Duration>),
    /// The signed URL was refused: ask the server for a new one.
    Refresh(Error),
    /// This URL cannot serve the file: try the next.
    NextUrl(Error),
    /// A local failure: stop.
    Fatal(Error),
}

fn classify(f: Failure) -> Attempt {
    match &f.error {
        Error::Http { .. } => Attempt::Retry(f.error, f.retry_after),
        Error::Api { status, .. } if *status >= 500 || *status == 429 || *status == 408 => {
            Attempt::Retry(f.error, f.retry_after)
        }
        Error::Io { .. } => Attempt::Fatal(f.error),
        _ => Attempt::NextUrl(f.error),
    }
}

/// Downloads the record into `part` (resuming what it holds), then renames it to `dest`.
/// Returns the bytes transferred by this call.
async fn download(
    clients: &[ApiClient],
    entry: &ManifestEntry,
    part_path: &Path,
    dest: &Path,
    opts: &FetchOptions,
    reporter: &Reporter,
) -> Result<u64, Error> {
    let name = entry.filename.as_str();
    let Some(std_file) = lock_part(part_path, dest, entry).await? else {
        reporter.detail(&format!("{name}: fetched meanwhile by another process"));
        return Ok(0);
    };
    // Hash what an earlier run left.
    let (std_file, counter) = {
        blocking(part_path, move || {
            let mut f = std_file;
            f.seek(SeekFrom::Start(0))?;
            let mut counter = Sha512Counter::new();
            feed(&mut f, &mut counter, None)?;
            Ok((f, counter))
        })
        .await?
    };
    let mut part = Part { path: part_path.to_owned(), file: tokio::fs::File::from_std(std_file), counter };
    part.file.seek(SeekFrom::End(0)).await.map_err(|e| Error::io(part_path, e))?;
    if !part.counter.is_empty() {
        reporter.detail(&format!("{name}: resuming after {} bytes", part.counter.len()));
    }
    if entry.size.is_some_and(|s| part.counter.len() > s) {
        part.truncate().await?;
    }

    let result = download_into(clients, entry, &mut part, dest, opts, reporter).await;
    if result.is_err() && part.counter.is_empty() {
        // Nothing worth resuming: leave no empty file behind.
        let _ = tokio::fs::remove_file(&part.path).await;
    }
    result
}

/// The retry loop of [`download`], over the URLs in order.
async fn download_into(
    clients: &[ApiClient],
    entry: &ManifestEntry,
    part: &mut Part,
    dest: &Path,
    opts: &FetchOptions,
    reporter: &Reporter,
) -> Result<u64, Error> {
    let name = entry.filename.as_str();
    let bar = reporter.bar(name, entry.size);
    let mut transferred = 0u64;
    let mut last: Option<Error> = None;
    let mut mismatches = 0;
    'urls: for client in clients {
        let mut attempt = 0u32;
        let mut refreshes = 0u32;
        loop {
            // A complete part (an earlier run stopped just before the rename) needs no request.
            let complete = entry.size.is_some_and(|s| s == part.counter.len());
            let result = if complete {
                Ok(())
            } else {
                bar.set(part.counter.len());
                transfer(client, entry, part, opts, &bar, &mut transferred).await
            };
            let failure = match result {
                Ok(()) => match finish(entry, part, dest).await {
                    Ok(()) => return Ok(transferred),
                    Err(e @ Error::Mismatch { .. }) => {
                        mismatches += 1;
                        part.truncate().await?;
                        if mismatches > 1 {
                            last = Some(e);
                            continue 'urls;
                        }
                        reporter.warn(&format!("{e}; downloading again from the start"));
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                Err(a) => a,
            };
            match failure {
                Attempt::Fatal(e) => return Err(e),
                Attempt::NextUrl(e) => {
                    if clients.len() > 1 {
                        reporter.warn(&format!("{name}: {e}; trying the next --url"));
                    }
                    last = Some(e);
                    continue 'urls;
                }
                Attempt::Refresh(e) => {
                    refreshes += 1;
                    if refreshes > opts.retry.refreshes {
                        last = Some(e);
                        continue 'urls;
                    }
                    reporter.detail(&format!("{name}: {e}; asking for a new URL"));
                }
                Attempt::Retry(e, retry_after) => {
                    attempt += 1;
                    if attempt >= opts.retry.attempts {
                        last = Some(e);
                        continue 'urls;
                    }
                    let backoff =
                        opts.retry.base_delay.saturating_mul(1 << (attempt - 1).min(16)).min(opts.retry.max_delay);
                    let delay = retry_after.map_or(backoff, |d| d.min(opts.retry.max_retry_after));
                    reporter.warn(&format!("{name}: {e}; retrying in {:.1} s", delay.as_secs_f64()));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Protocol(format!("{name}: no --url to fetch from"))))
}

/// One request: locate the blob, GET it from `part`'s length on, append to `part`.
async fn transfer(
    client: &ApiClient,
    entry: &ManifestEntry,
    part: &mut Part,
    opts: &FetchOptions,
    bar: &crate::progress::Bar,
    transferred: &mut u64,
) -> Result<(), Attempt> {
    let redirect = client.locate(entry.digest.as_str(), opts.region.as_deref()).await.map_err(classify)?;
    let location = redirect.location;
    let offset = part.counter.len();
    let resp = match client.get_storage(&location, offset).await {
        Ok(r) => r,
        Err(f) => {
            return Err(match f.error.status() {
                Some(401 | 403) => Attempt::Refresh(f.error),
                Some(416) => {
                    // The part holds more than the blob: start again from nothing.
                    part.truncate().await.map_err(Attempt::Fatal)?;
                    Attempt::Retry(f.error, Some(Duration::ZERO))
                }
                _ => classify(f),
            });
        }
    };
    let shown = redact_url(&location);
    if resp.status() == StatusCode::PARTIAL_CONTENT {
        let start = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if start != Some(offset) {
            part.truncate().await.map_err(Attempt::Fatal)?;
            return Err(Attempt::Retry(
                Error::Protocol(format!("GET {shown}: the storage answered another range than asked")),
                Some(Duration::ZERO),
            ));
        }
    } else if offset > 0 {
        // The storage ignored the Range header: everything comes again.
        part.truncate().await.map_err(Attempt::Fatal)?;
    }
    if let (Some(expected), Some(announced)) = (entry.size, resp.content_length())
        && part.counter.len() + announced != expected
    {
        return Err(Attempt::NextUrl(Error::Mismatch {
            what: format!(
                "GET {shown} announces {} bytes in all, the manifest says {expected}",
                part.counter.len() + announced
            ),
        }));
    }

    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, &mut part.file);
    let mut body = resp.bytes_stream();
    let mut failure = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(Attempt::Retry(Error::http(&location, e), None));
                break;
            }
        };
        if entry.size.is_some_and(|s| part.counter.len() + chunk.len() as u64 > s) {
            failure = Some(Attempt::NextUrl(Error::Mismatch {
                what: format!("GET {shown} sent more than the {} bytes of the manifest", entry.size.unwrap_or(0)),
            }));
            break;
        }
        if let Err(e) = out.write_all(&chunk).await {
            return Err(Attempt::Fatal(Error::io(&part.path, e)));
        }
        part.counter.update(&chunk);
        *transferred += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    // Keep what arrived, so that the next attempt (or run) resumes after it.
    out.flush().await.map_err(|e| Attempt::Fatal(Error::io(&part.path, e)))?;
    drop(out);
    match failure {
        Some(Attempt::NextUrl(e)) => {
            part.truncate().await.map_err(Attempt::Fatal)?;
            Err(Attempt::NextUrl(e))
        }
        Some(a) => Err(a),
        None => Ok(()),
    }
}

/// Checks the complete part and renames it to `dest`.
async fn finish(entry: &ManifestEntry, part: &mut Part, dest: &Path) -> Result<(), Error> {
    let (digest, len) = part.counter.clone().finish();
    if let Some(expected) = entry.size
        && len != expected
    {
        return Err(Error::Mismatch {
            what: format!("{}: received {len} bytes, the manifest says {expected}", entry.filename),
        });
    }
    if digest != entry.digest {
        return Err(Error::Mismatch {
            what: format!(
                "{}: the received bytes have sha512 {digest}, the manifest says {}",
                entry.filename, entry.digest
            ),
        });
    }
    tokio::fs::rename(&part.path, dest).await.map_err(|e| Error::io(dest, e))?;
    Ok(())
}
