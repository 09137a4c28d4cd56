//! `upload`: every record of the manifest is checked against its local file, declared in one
//! batch request (always saying the client can send parts), `PUT` by the transfer engine,
//! several at once (at most `jobs`), streamed from disk in constant memory, when the server
//! does not have it yet, or sent in parts when the server answers with parts ([`crate::parts`],
//! at most `jobs` parts at once across the run), and completed (waiting out `409` +
//! `X-Retry-After`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, stream};
use std::sync::Arc;

use tooltool_proto::{Algorithm, FileName, ManifestEntry, PartsPlan, UploadFile, UploadRequest, Visibility};

use crate::api::ApiClient;
use crate::error::Error;
use crate::hashing::hash_file;
use crate::progress::{Progress, ProgressExt};
use crate::retry::RetryPolicy;
use crate::transfer::{self, Blob};

/// What happened to one file of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uploaded {
    /// The server already had it: nothing was sent.
    AlreadyStored,
    /// Sent and verified by the server.
    Sent,
}

/// The result of an upload: per file name, what happened or why it failed.
#[derive(Debug)]
pub struct UploadReport {
    /// The batch id the server recorded.
    pub batch_id: i64,
    /// Per file name.
    pub files: BTreeMap<String, Result<Uploaded, Error>>,
}

impl UploadReport {
    /// Whether every file is stored now.
    pub fn ok(&self) -> bool {
        self.files.values().all(Result::is_ok)
    }
}

/// Options of an upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Where the manifest's files are (the manifest's directory, usually the working directory).
    pub dir: PathBuf,
    /// Why these files are uploaded: the batch's message.
    pub message: String,
    /// The visibility of records without one.
    pub default_visibility: Option<Visibility>,
    /// How many files (and, across the run, parts) are sent at once.
    pub jobs: usize,
    /// Retries.
    pub retry: RetryPolicy,
}

impl UploadOptions {
    /// Defaults for uploading the files in `dir` with this batch message.
    pub fn new(dir: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            message: message.into(),
            default_visibility: None,
            jobs: 4,
            retry: RetryPolicy::default(),
        }
    }
}

/// Uploads the files of `entries`, found in `opts.dir`. `opts.default_visibility` applies to
/// records without one. Fails before sending anything when a file is missing or differs from
/// its record, or a record has no visibility.
pub async fn upload(
    client: &ApiClient,
    entries: &[ManifestEntry],
    opts: &UploadOptions,
    progress: &dyn Progress,
) -> Result<UploadReport, Error> {
    let UploadOptions { dir, message, default_visibility, jobs, retry } = opts;
    let (dir, default_visibility, jobs) = (dir.as_path(), *default_visibility, *jobs);
    let mut declared = BTreeMap::new();
    let mut paths = BTreeMap::new();
    let checks = stream::iter(entries.iter().map(|e| async move {
        let path = dir.join(e.filename.as_str());
        let (digest, size) = hash_file(&path).await?;
        Ok::<_, Error>((e, path, digest, size))
    }))
    .buffered(jobs.max(1))
    .collect::<Vec<_>>()
    .await;
    for check in checks {
        let (e, path, digest, size) = check?;
        if digest != e.digest || e.size.is_some_and(|s| s != size) {
            return Err(Error::Mismatch {
                what: format!(
                    "{}: the file ({size} bytes, sha512 {}…) differs from its manifest record ({} bytes, sha512 {}…); \
                     remove the record and `tooltool add` the file again",
                    path.display(),
                    &digest.as_str()[..16],
                    e.size.map_or("unknown".to_owned(), |s| s.to_string()),
                    &e.digest.as_str()[..16]
                ),
            });
        }
        let visibility = e.visibility.or(default_visibility).ok_or_else(|| {
            Error::Protocol(format!(
                "{}: the record has no visibility; pass --visibility public|internal, or add it to the manifest",
                e.filename
            ))
        })?;
        let file = UploadFile { size, digest, algorithm: Algorithm::Sha512, visibility, parts: true };
        declared.insert(e.filename.clone(), file);
        paths.insert(e.filename.to_string(), (path, size));
    }
    if declared.is_empty() {
        return Err(Error::Protocol("the manifest has no record to upload".into()));
    }
    let request = UploadRequest { message: message.clone(), files: declared.clone(), author: None };
    let batch = client.upload_batch(&request).await?;
    progress.detail(&format!("batch {} recorded", batch.id));

    let mut files: BTreeMap<String, Result<Uploaded, Error>> = BTreeMap::new();
    let mut to_send: Vec<(String, Send, PathBuf, Blob)> = Vec::new();
    let mut seen = HashSet::new();
    let mut twins: Vec<(String, String)> = Vec::new();
    for (name, declared_file) in &declared {
        let name = name.to_string();
        let Some(answered) = batch.files.get(&name) else {
            files.insert(name.clone(), Err(Error::Protocol(format!("{name}: missing from the server's batch answer"))));
            continue;
        };
        let how = match (&answered.put_url, &answered.parts) {
            (Some(url), _) => Send::Put(url.clone()),
            (None, Some(plan)) => Send::Parts(plan.clone()),
            (None, None) => {
                progress.info(&format!("{name}: already stored on the server"));
                files.insert(name, Ok(Uploaded::AlreadyStored));
                continue;
            }
        };
        let digest = declared_file.digest.to_string();
        if seen.insert(digest.clone()) {
            let (path, size) = paths[&name].clone();
            let blob =
                Blob { name: name.clone(), digest: declared_file.digest.clone(), size: Some(size), sha256: None };
            to_send.push((name, how, path, blob));
        } else {
            twins.push((name, digest));
        }
    }

    let part_slots = &Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let sent: Vec<(String, String, Result<Uploaded, Error>)> =
        stream::iter(to_send.into_iter().map(|(name, how, path, blob)| async move {
            progress.info(&format!("{name}: uploading {} bytes", blob.size.unwrap_or(0)));
            let result = match how {
                Send::Put(url) => transfer::upload(client, &url, &path, &blob, retry, progress).await,
                Send::Parts(plan) => {
                    crate::parts::upload(client, plan, &path, &blob, part_slots, retry, progress).await
                }
            }
            .map(|()| Uploaded::Sent);
            let digest = blob.digest.to_string();
            match &result {
                Ok(_) => progress.info(&format!("{name}: uploaded and verified")),
                Err(e) => progress.error(&format!("{name}: {e}")),
            }
            (name, digest, result)
        }))
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    for (name, digest, result) in sent {
        for (twin, _) in twins.iter().filter(|(_, d)| *d == digest) {
            let r = match &result {
                Ok(u) => Ok(u.clone()),
                Err(e) => Err(Error::Protocol(format!("{twin}: same content as {name}, which failed: {e}"))),
            };
            files.insert(twin.clone(), r);
        }
        files.insert(name, result);
    }
    Ok(UploadReport { batch_id: batch.id, files })
}

/// How one file goes up.
enum Send {
    /// One `PUT` to this URL.
    Put(String),
    /// In parts.
    Parts(PartsPlan),
}

/// A file name from a path's last component, checked as the manifest requires.
pub fn file_name_of(path: &Path) -> Result<FileName, Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Protocol(format!("{}: not a file name tooltool can record", path.display())))?;
    FileName::parse(name).map_err(|e| Error::Protocol(format!("{}: {e}", path.display())))
}
