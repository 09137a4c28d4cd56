//! The transfer engine: the one way the client downloads a blob into a file and uploads a file
//! to a `put_url`. `fetch` and `upload` run through here, and so do the tests of both.
//!
//! A download goes into a `.part` file, locked so that concurrent runs fetching the same
//! digest wait for each other, hashed as the bytes arrive, checked against the size and
//! digest, and renamed into place. A `.part` file left by an interrupted run is resumed with
//! `Range`. The `--url` list is tried in order: a URL that cannot serve the file (404, 403,
//! retries exhausted, server down) hands over to the next. A signed URL the storage refuses
//! (401/403, e.g. expired) is asked for again. Storage that fails (connection refused or
//! reset, 5xx) before the body starts sends the client back to the server for a copy in another
//! region (the file's `instances`), each region once, before the usual retries. Files are not
//! fsynced: nothing trusts a file it did not check (see the cache and the destination index).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use tokio::io::AsyncSeekExt;
use tooltool_proto::Digest;
use tooltool_sha512::Sha512Counter;

use crate::api::{ApiClient, verify_timeout};
use crate::error::{Error, redact_url};
use crate::files::{blocking, same_file};
use crate::progress::{Progress, ProgressExt, Transfer};
use crate::retry::{Attempt, RetryPolicy, classify, is_transient};

/// The tooltool servers of a run, in `--url` order, each with its health: once one refused
/// every connection for [`RetryPolicy::connect_attempts`] tries, it is down for the run.
#[derive(Debug)]
pub struct Servers {
    list: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    client: ApiClient,
    /// Why it is down (the connection error), once it is.
    down: OnceLock<String>,
}

impl Servers {
    /// The servers, tried in this order.
    pub fn new(clients: impl IntoIterator<Item = ApiClient>) -> Self {
        Self { list: clients.into_iter().map(|client| Server { client, down: OnceLock::new() }).collect() }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The client of server `i`.
    pub(crate) fn client(&self, i: usize) -> &ApiClient {
        &self.list[i].client
    }

    /// The error of a server that is down, if it is.
    pub(crate) fn down(&self, i: usize) -> Option<Error> {
        let why = self.list[i].down.get()?;
        Some(Error::Unreachable { url: redact_url(self.list[i].client.base_url()), cause: why.clone() })
    }

    /// Marks server `i` down because of `error`; returns the [`Error::Unreachable`] to report.
    pub(crate) fn mark_down(&self, i: usize, error: &Error) -> Error {
        let _ = self.list[i].down.set(error.root_cause());
        self.down(i).expect("just marked down")
    }
}

/// What to download: the name shown in messages, the digest, the size when known.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Shown in messages and progress bars.
    pub name: String,
    /// The sha512 the bytes must have.
    pub digest: Digest,
    /// The size the bytes must have, when known.
    pub size: Option<u64>,
    /// The sha256 the bytes must have, when a signed target gives it ([`crate::tuf`]): the
    /// complete part is read once more for it before the rename.
    pub sha256: Option<String>,
}

/// Says whether the destination became valid meanwhile (another process finished the same
/// download while this one waited for the `.part` lock).
pub type DoneCheck<'a> = &'a (dyn Fn() -> BoxFuture<'a, Result<bool, Error>> + Send + Sync);

/// Where and how downloads go: the servers in order, the retry policy, the region asked for,
/// and who hears about progress.
#[derive(Clone, Copy)]
pub struct Downloads<'a> {
    /// The tooltool servers, tried in order.
    pub servers: &'a Servers,
    /// How failures are retried.
    pub retry: &'a RetryPolicy,
    /// `?region=`.
    pub region: Option<&'a str>,
    /// Receives messages and byte counts.
    pub progress: &'a dyn Progress,
}

/// Downloads `blob` into `part` (resuming what it holds), then renames it to `dest`. Returns
/// the bytes transferred by this call (0 when another process finished it meanwhile, as
/// `done` tells).
pub async fn download(
    via: Downloads<'_>,
    blob: &Blob,
    part_path: &Path,
    dest: &Path,
    done: DoneCheck<'_>,
) -> Result<u64, Error> {
    let Downloads { servers, retry, region, progress } = via;
    let name = blob.name.as_str();
    let Some(std_file) = lock_part(part_path, done).await? else {
        progress.detail(&format!("{name}: fetched meanwhile by another process"));
        return Ok(0);
    };
    // Hash what an earlier run left.
    let (std_file, counter) = blocking(part_path, move || {
        let mut f = std_file;
        f.seek(SeekFrom::Start(0))?;
        let mut counter = Sha512Counter::new();
        counter.update_from(&mut f, None)?;
        Ok((f, counter))
    })
    .await?;
    let mut part = Part { path: part_path.to_owned(), file: tokio::fs::File::from_std(std_file), counter };
    part.file.seek(SeekFrom::End(0)).await.map_err(|e| Error::io(part_path, e))?;
    if !part.counter.is_empty() {
        progress.detail(&format!("{name}: resuming after {} bytes", part.counter.len()));
    }
    if blob.size.is_some_and(|s| part.counter.len() > s) {
        part.truncate().await?;
    }

    let result = download_into(servers, blob, &mut part, dest, retry, region, progress).await;
    if result.is_err() && part.counter.is_empty() {
        // Nothing worth resuming: leave no empty file behind.
        let _ = tokio::fs::remove_file(&part.path).await;
    }
    result
}

/// Opens and locks `part`; `None` when the destination became valid meanwhile.
async fn lock_part(part: &Path, done: DoneCheck<'_>) -> Result<Option<std::fs::File>, Error> {
    loop {
        let owned = part.to_owned();
        let file = blocking(part, move || {
            // Not following a link: the part file is this run's own, or an interrupted run's
            // regular file to resume, never something a link points at.
            let f = crate::files::no_follow(
                std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false),
            )
            .open(&owned)?;
            f.lock()?;
            Ok(f)
        })
        .await?;
        if done().await? {
            return Ok(None);
        }
        // The file locked may have been renamed away while waiting: start again then.
        if same_file(&file, part) {
            return Ok(Some(file));
        }
    }
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

/// The retry loop of [`download`], over the servers in order.
async fn download_into(
    servers: &Servers,
    blob: &Blob,
    part: &mut Part,
    dest: &Path,
    retry: &RetryPolicy,
    region: Option<&str>,
    progress: &dyn Progress,
) -> Result<u64, Error> {
    let name = blob.name.as_str();
    let bar = progress.transfer(name, blob.size);
    let mut transferred = 0u64;
    let mut last: Option<Error> = None;
    let mut mismatches = 0;
    'urls: for i in 0..servers.len() {
        let client = servers.client(i);
        let (mut attempt, mut refreshes, mut refused) = (0u32, 0u32, 0u32);
        let mut regions = Regions::new(region);
        loop {
            if let Some(e) = servers.down(i) {
                last = Some(e);
                continue 'urls;
            }
            // A complete part (an earlier run stopped just before the rename) needs no request.
            let complete = blob.size.is_some_and(|s| s == part.counter.len());
            let result = if complete {
                Ok(())
            } else {
                bar.set(part.counter.len());
                transfer(client, blob, part, regions.current(), bar.as_ref(), &mut transferred).await
            };
            let failure = match result {
                Ok(()) => match finish(blob, part, dest).await {
                    Ok(()) => return Ok(transferred),
                    Err(e @ Error::Mismatch { .. }) => {
                        mismatches += 1;
                        part.truncate().await?;
                        if mismatches > 1 {
                            last = Some(e);
                            continue 'urls;
                        }
                        progress.warn(&format!("{e}; downloading again from the start"));
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                Err(a) => a,
            };
            if let Attempt::StorageDown(e, _) = &failure
                && let Some(other) = regions.next(client, &blob.digest).await
            {
                progress.warn(&format!("{name}: {e}; trying its copy in region {other}"));
                continue;
            }
            match failure {
                Attempt::Fatal(e) => return Err(e),
                Attempt::NextUrl(e) => {
                    if servers.len() > 1 {
                        progress.warn(&format!("{name}: {e}; trying the next --url"));
                    }
                    last = Some(e);
                    continue 'urls;
                }
                Attempt::Refresh(e) => {
                    refreshes += 1;
                    if refreshes > retry.refreshes {
                        last = Some(e);
                        continue 'urls;
                    }
                    progress.detail(&format!("{name}: {e}; asking for a new URL"));
                }
                Attempt::Unreachable(e) => {
                    refused += 1;
                    if refused >= retry.connect_attempts {
                        last = Some(servers.mark_down(i, &e));
                        continue 'urls;
                    }
                    let delay = retry.delay(refused, None);
                    progress.detail(&format!("{name}: {e}; trying again in {:.1} s", delay.as_secs_f64()));
                    tokio::time::sleep(delay).await;
                }
                // Storage down with no other region left to try: retried like any other.
                Attempt::Retry(e, retry_after) | Attempt::StorageDown(e, retry_after) => {
                    attempt += 1;
                    if attempt >= retry.attempts {
                        last = Some(e);
                        continue 'urls;
                    }
                    let delay = retry.delay(attempt, retry_after);
                    progress.warn(&format!("{name}: {e}; retrying in {:.1} s", delay.as_secs_f64()));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Protocol(format!("{name}: no --url to fetch from"))))
}

/// The region a download asks for: the one asked by the user at first; once its storage
/// failed, each other region holding a copy in turn (the file's `instances`, read from the
/// server once), then the one asked at first again.
struct Regions<'a> {
    asked: Option<&'a str>,
    /// The regions holding a copy, not tried yet; `None` until read.
    left: Option<std::collections::VecDeque<String>>,
    current: Option<String>,
}

impl<'a> Regions<'a> {
    fn new(asked: Option<&'a str>) -> Self {
        Self { asked, left: None, current: None }
    }

    fn current(&self) -> Option<&str> {
        self.current.as_deref().or(self.asked)
    }

    /// Moves to the next region to try after a storage failure, if any is left. Without a
    /// region asked for, the server's default (unknown here) may come again once.
    async fn next(&mut self, client: &ApiClient, digest: &Digest) -> Option<&str> {
        if self.left.is_none() {
            let instances = client.get_file(digest.as_str()).await.map(|f| f.instances).unwrap_or_default();
            let failed = self.current().map(str::to_owned);
            // One copy only: there is no other region, and the usual retries follow.
            let others = instances.len() > 1;
            self.left = Some(instances.into_iter().filter(|r| others && Some(r) != failed.as_ref()).collect());
        }
        self.current = self.left.as_mut().and_then(|l| l.pop_front());
        self.current.as_deref()
    }
}

/// One request: locate the blob, GET it from `part`'s length on, append to `part`.
async fn transfer(
    client: &ApiClient,
    blob: &Blob,
    part: &mut Part,
    region: Option<&str>,
    bar: &dyn Transfer,
    transferred: &mut u64,
) -> Result<(), Attempt> {
    let redirect = client.locate(blob.digest.as_str(), region).await.map_err(|f| classify(f, true))?;
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
                _ => classify(f, false),
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
    if let (Some(expected), Some(announced)) = (blob.size, resp.content_length())
        && part.counter.len() + announced != expected
    {
        return Err(Attempt::NextUrl(Error::Mismatch {
            what: format!(
                "{}: GET {shown} announces {} bytes in all, the manifest says {expected}",
                blob.name,
                part.counter.len() + announced
            ),
        }));
    }

    // The bytes are written and hashed on a blocking thread of their own, as they arrive: the
    // async threads only move them, and concurrent downloads hash on every core.
    let writer = Writer::start(part).await.map_err(Attempt::Fatal)?;
    let mut received = part.counter.len();
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
        if blob.size.is_some_and(|s| received + chunk.len() as u64 > s) {
            failure = Some(Attempt::NextUrl(Error::Mismatch {
                what: format!(
                    "{}: GET {shown} sent more than the {} bytes of the manifest",
                    blob.name,
                    blob.size.unwrap_or(0)
                ),
            }));
            break;
        }
        let n = chunk.len() as u64;
        if writer.chunks.send(chunk).await.is_err() {
            break; // The writer failed: its error comes below.
        }
        received += n;
        *transferred += n;
        bar.advance(n);
    }
    // Keep what arrived, so that the next attempt (or run) resumes after it.
    writer.finish(part).await.map_err(Attempt::Fatal)?;
    match failure {
        Some(Attempt::NextUrl(e)) => {
            part.truncate().await.map_err(Attempt::Fatal)?;
            Err(Attempt::NextUrl(e))
        }
        Some(a) => Err(a),
        None => Ok(()),
    }
}

/// Writes and hashes the chunks of one response into the part, on a blocking thread.
struct Writer {
    chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    done: tokio::task::JoinHandle<(Sha512Counter, std::io::Result<()>)>,
}

impl Writer {
    /// Chunks in flight between the network and the writer: enough to keep both busy, and at
    /// most a few MiB (hyper reads at most ~400 KiB at a time).
    const QUEUE: usize = 16;

    /// Takes over the part's hash and appends to its file (a handle on the same open file).
    async fn start(part: &mut Part) -> Result<Self, Error> {
        let file = part.file.try_clone().await.map_err(|e| Error::io(&part.path, e))?.into_std().await;
        let mut counter = std::mem::take(&mut part.counter);
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(Self::QUEUE);
        let done = tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = out.write_all(&chunk) {
                    return (counter, Err(e));
                }
                counter.update(&chunk);
            }
            let flushed = out.flush();
            (counter, flushed)
        });
        Ok(Self { chunks, done })
    }

    /// Waits until everything sent is on disk, and gives the part its hash back.
    async fn finish(self, part: &mut Part) -> Result<(), Error> {
        drop(self.chunks);
        let (counter, result) = self
            .done
            .await
            .map_err(|e| Error::io(&part.path, std::io::Error::other(format!("writer task failed: {e}"))))?;
        part.counter = counter;
        result.map_err(|e| Error::io(&part.path, e))
    }
}

/// Checks the complete part and renames it to `dest`.
async fn finish(blob: &Blob, part: &mut Part, dest: &Path) -> Result<(), Error> {
    let (digest, len) = part.counter.clone().finish();
    if let Some(expected) = blob.size
        && len != expected
    {
        return Err(Error::Mismatch {
            what: format!("{}: received {len} bytes, the manifest says {expected}", blob.name),
        });
    }
    if digest != blob.digest {
        return Err(Error::Mismatch {
            what: format!("{}: the received bytes have sha512 {digest}, the manifest says {}", blob.name, blob.digest),
        });
    }
    if let Some(expected) = &blob.sha256 {
        let owned = part.path.clone();
        let got = blocking(&part.path, move || tooltool_sha512::hash_reader_both(&mut std::fs::File::open(&owned)?))
            .await?
            .sha256;
        if &got != expected {
            return Err(Error::Mismatch {
                what: format!("{}: the received bytes have sha256 {got}, the signed target says {expected}", blob.name),
            });
        }
    }
    tokio::fs::rename(&part.path, dest).await.map_err(|e| Error::io(dest, e))?;
    Ok(())
}

/// `PUT`s the file at `path` to `put_url` (retrying transient failures, honouring
/// `Retry-After`), then waits until the server has verified it.
pub async fn upload(
    client: &ApiClient,
    put_url: &str,
    path: &Path,
    blob: &Blob,
    retry: &RetryPolicy,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let bar: Arc<dyn Transfer> = progress.transfer(&blob.name, blob.size);
    let mut attempt = 0;
    loop {
        bar.set(0);
        match client.put_file_reporting(put_url, path, Some(bar.clone())).await {
            Ok(()) => break,
            Err(f) => {
                attempt += 1;
                if !is_transient(&f.error) || attempt >= retry.attempts {
                    return Err(f.error);
                }
                let delay = retry.delay(attempt, f.retry_after);
                progress.warn(&format!("{}: {}; retrying in {:.1} s", blob.name, f.error, delay.as_secs_f64()));
                tokio::time::sleep(delay).await;
            }
        }
    }
    drop(bar);
    let size = blob.size.unwrap_or(0);
    client.complete_until_verified(blob.digest.as_str(), verify_timeout(size)).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
