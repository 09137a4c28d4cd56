//! `tooltool-api import-legacy`: taking over a running original deployment (LEGACY.md).
//!
//! Everything is read in one snapshot of the original's database ([`source`]), in pages, and
//! written through the same [`crate::db::FileWrite`] as every other write (lookup cache, change
//! notifications, events outbox), one transaction per page, followed by one audit entry.
//!
//! - **Plan first.** A first pass compares every batch and file with what is recorded here:
//!   a batch id that exists here with another author, message or time is a collision, and the
//!   run is refused before anything is written; a digest recorded here with another size or
//!   visibility is a conflict, reported and left alone (its names are not imported either).
//!   `--dry-run` stops after the plan.
//! - **Files, then batches.** Each file page records the files, their instances (mapped by
//!   `--region old=new`) and their pending uploads (kept unverified, with a new staging key);
//!   each batch page records the batches with their own ids and their names.
//! - **Instances in place.** The buckets keep their `sha512/<digest>` keys; nothing is copied.
//!   An instance is recorded only once its copy was checked with [`crate::copies`] (a HEAD for
//!   its size, with `--verify` every byte hashed), unless `--trust-instances`.
//! - **Idempotent and resumable.** Every write skips what is already recorded, so a second run
//!   changes nothing and a run killed between pages finishes where it stopped.
//! - **Ids.** Batch ids are kept, and the id sequence continues after the largest.

mod source;

use crate::time::Pace;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;

use self::source::{FileFacts, LegacyBatch, LegacyFile, Source};
use crate::blobs::BlobStores;
use crate::copies::{self, CheckDepth, CopyCheck};
use crate::db::{Db, ImportedBatch, StoredFile};
use tooltool_proto::Digest;

/// Rows read from the original per page.
pub const PAGE: i64 = 500;
/// Copies checked at once.
const CHECKS_AT_ONCE: usize = 16;

/// What `import-legacy` was asked.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The original's PostgreSQL URL.
    pub from: String,
    /// `(original region, region here)`; an unlisted region keeps its name.
    pub regions: Vec<(String, String)>,
    /// Plan and report only.
    pub dry_run: bool,
    /// Record imported instances without checking their copies.
    pub trust_instances: bool,
    /// Check each copy by hashing every byte rather than by its size.
    pub verify: bool,
    /// Rows per page (0: [`PAGE`]).
    pub page: i64,
}

impl ImportOptions {
    fn region(&self, original: &str) -> String {
        self.regions.iter().find(|(o, _)| o == original).map(|(_, n)| n.clone()).unwrap_or_else(|| original.to_owned())
    }
}

/// What the run reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A stage starts with this many rows to go.
    Stage(&'static str, u64),
    /// This many more rows are done.
    Advance(u64),
}

/// Recorded anew, and found already recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Written by this run (with `--dry-run`: would be).
    pub new: u64,
    /// Already recorded here.
    pub present: u64,
}

/// What a run did, or with `--dry-run` would do.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Files.
    pub files: Counts,
    /// Batches.
    pub batches: Counts,
    /// Names of batches (with `--dry-run`: those of new batches).
    pub batch_files: u64,
    /// Instances.
    pub instances: Counts,
    /// Pending uploads.
    pub pending: Counts,
    /// Digests recorded here with another size or visibility, or rows that are not valid, left
    /// alone: one line each.
    pub conflicts: Vec<String>,
    /// Batch ids recorded here for other batches.
    pub collisions: Vec<i64>,
    /// Instances not recorded because their copy failed its check: `(digest, region, why)`.
    pub untrusted: Vec<(Digest, String, String)>,
    /// How long it took.
    pub elapsed: Duration,
}

impl ImportReport {
    /// Whether the run found nothing to write.
    pub fn nothing_new(&self) -> bool {
        self.files.new + self.batches.new + self.instances.new + self.pending.new == 0
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would import" } else { "imported" };
        writeln!(f, "{:<16} {:>10} {:>16}", "table", verb, "already here")?;
        for (name, c) in [
            ("batches", self.batches),
            ("batch_files", Counts { new: self.batch_files, present: 0 }),
            ("files", self.files),
            ("file_instances", self.instances),
            ("pending_uploads", self.pending),
        ] {
            writeln!(f, "{name:<16} {:>10} {:>16}", c.new, c.present)?;
        }
        writeln!(f, "conflicts: {} (left alone)", self.conflicts.len())?;
        for c in &self.conflicts {
            writeln!(f, "  {c}")?;
        }
        if !self.collisions.is_empty() {
            writeln!(f, "batch ids recorded here for other batches: {}", ids_list(&self.collisions))?;
        }
        if !self.untrusted.is_empty() {
            writeln!(f, "instances not recorded, their copy failed its check: {}", self.untrusted.len())?;
            for (d, r, why) in &self.untrusted {
                writeln!(f, "  {d} in {r}: {why}")?;
            }
        }
        if self.nothing_new() {
            writeln!(f, "nothing to import: everything was already here")?;
        }
        write!(f, "time taken: {:.1}s", self.elapsed.as_secs_f64())
    }
}

fn ids_list(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(20).map(i64::to_string).collect();
    let more = if ids.len() > 20 { format!(" and {} more", ids.len() - 20) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Imports the original at `opts.from` into `db`, checking copies in `blobs`; `actor` is
/// recorded in the events and the audit trail.
pub async fn import_legacy(
    db: &Db,
    blobs: &BlobStores,
    opts: &ImportOptions,
    actor: &str,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let page = if opts.page > 0 { opts.page } else { PAGE };
    let mut src = Source::open(&opts.from).await?;
    for region in src.regions().await? {
        let here = opts.region(&region);
        if blobs.get(&here).is_none() {
            bail!(
                "the original's region {region} maps to {here}, which is not configured here (configured: {}); \
                 map it with --region {region}=<region>",
                blobs.region_names().join(", ")
            );
        }
    }
    let mut report = ImportReport { dry_run: opts.dry_run, ..Default::default() };
    let conflicting = plan(&mut src, db, opts, page, &mut report, progress).await?;
    if !report.collisions.is_empty() {
        if opts.dry_run {
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        bail!(
            "refused, nothing written: {} batch id(s) of the original are recorded here for other batches ({}). \
             Import into a database that has not accepted uploads of its own, before it does.",
            report.collisions.len(),
            ids_list(&report.collisions)
        );
    }
    if opts.dry_run {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let written =
        ImportReport { dry_run: false, conflicts: std::mem::take(&mut report.conflicts), ..Default::default() };
    report = written;
    import_files(&mut src, db, blobs, opts, page, &conflicting, actor, &mut report, progress).await?;
    import_batches(&mut src, db, page, &conflicting, &mut report, progress).await?;
    db.continue_batch_ids().await?;
    src.close().await?;
    report.elapsed = started.elapsed();
    let details = serde_json::json!({
        "batches": report.batches.new, "files": report.files.new, "instances": report.instances.new,
        "pending_uploads": report.pending.new, "conflicts": report.conflicts.len(),
        "untrusted_instances": report.untrusted.len(), "trust_instances": opts.trust_instances, "verify": opts.verify,
    });
    db.audit(actor, "legacy.imported", "import-legacy", details, crate::time::now()).await?;
    Ok(report)
}

/// The first pass: counts what is new, lists conflicts and collisions; returns the digests
/// that conflict (or whose rows are invalid), which the writing passes leave alone.
async fn plan(
    src: &mut Source,
    db: &Db,
    opts: &ImportOptions,
    page: i64,
    report: &mut ImportReport,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<HashSet<String>> {
    let mut conflicting = HashSet::new();
    progress(Progress::Stage("checking files", src.count("files").await?));
    let mut after = 0;
    loop {
        let files = src.files(after, page).await?;
        let Some(last) = files.last() else { break };
        after = last.id;
        let parsed: Vec<(&LegacyFile, Result<FileFacts, String>)> = files.iter().map(|f| (f, f.parsed())).collect();
        let digests: Vec<Digest> = parsed.iter().filter_map(|(_, p)| p.as_ref().ok().map(|p| p.0.clone())).collect();
        let here = db.files_among(&digests).await?;
        for (f, p) in &parsed {
            let (digest, size, visibility) = match p {
                Ok(p) => p,
                Err(why) => {
                    report.conflicts.push(format!("file row {}: {why}", f.id));
                    conflicting.insert(f.sha512.clone());
                    continue;
                }
            };
            match here.get(digest) {
                None => {
                    report.files.new += 1;
                    report.instances.new += f.regions.len() as u64;
                    report.pending.new += u64::from(f.pending.is_some() && f.regions.is_empty());
                }
                Some(h) if h.size != *size || h.visibility != *visibility => {
                    report.conflicts.push(format!(
                        "{digest}: the original has {size} bytes, {visibility}; here it is {} bytes, {}",
                        h.size, h.visibility
                    ));
                    conflicting.insert(f.sha512.clone());
                }
                Some(h) => {
                    report.files.present += 1;
                    for r in &f.regions {
                        if h.instances.contains(&opts.region(r)) {
                            report.instances.present += 1;
                        } else {
                            report.instances.new += 1;
                        }
                    }
                }
            }
        }
        progress(Progress::Advance(files.len() as u64));
    }
    progress(Progress::Stage("checking batches", src.count("batches").await?));
    let mut after = 0;
    loop {
        let batches = src.batches(after, page).await?;
        let Some(last) = batches.last() else { break };
        after = last.id;
        let ids: Vec<i64> = batches.iter().map(|b| b.id).collect();
        let here = db.batches_among(&ids).await?;
        for b in &batches {
            match here.get(&b.id) {
                None => {
                    report.batches.new += 1;
                    report.batch_files += b.files.iter().filter(|f| !conflicting.contains(&f.1)).count() as u64;
                }
                Some(h) if h.author == b.author && h.message == b.message && h.uploaded == b.uploaded => {
                    report.batches.present += 1;
                }
                Some(_) => report.collisions.push(b.id),
            }
        }
        progress(Progress::Advance(batches.len() as u64));
    }
    Ok(conflicting)
}

/// Writes the files, their checked instances and their pending uploads, a page per
/// transaction.
#[allow(clippy::too_many_arguments)]
async fn import_files(
    src: &mut Source,
    db: &Db,
    blobs: &BlobStores,
    opts: &ImportOptions,
    page: i64,
    conflicting: &HashSet<String>,
    actor: &str,
    report: &mut ImportReport,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<()> {
    let depth = if opts.verify { CheckDepth::Full } else { CheckDepth::Size };
    progress(Progress::Stage("importing files", src.count("files").await?));
    let mut after = 0;
    loop {
        let files = src.files(after, page).await?;
        let Some(last) = files.last() else { break };
        after = last.id;
        let rows: Vec<(&LegacyFile, Digest, u64, tooltool_proto::Visibility)> = files
            .iter()
            .filter(|f| !conflicting.contains(&f.sha512))
            .filter_map(|f| f.parsed().ok().map(|(d, s, v)| (f, d, s, v)))
            .collect();
        let digests: Vec<Digest> = rows.iter().map(|r| r.1.clone()).collect();
        let here = db.files_among(&digests).await?;
        // Files recorded with every instance already (a second run, the re-import of the
        // tail) need no write. One with a pending upload and no instance is looked at again.
        let (done, rows): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(f, digest, ..)| {
            here.get(digest).is_some_and(|h| {
                f.regions.iter().all(|r| h.instances.contains(&opts.region(r)))
                    && (f.pending.is_none() || !h.instances.is_empty())
            })
        });
        for (f, ..) in &done {
            report.files.present += 1;
            report.instances.present += f.regions.len() as u64;
        }
        // Check the copies not yet recorded here, before the write transaction opens.
        let mut to_check = Vec::new();
        for (f, digest, size, visibility) in &rows {
            for r in &f.regions {
                let region = opts.region(r);
                if here.get(digest).is_some_and(|h| h.instances.contains(&region)) {
                    report.instances.present += 1;
                    continue;
                }
                let file = StoredFile {
                    id: 0,
                    digest: digest.clone(),
                    size: *size,
                    visibility: *visibility,
                    instances: vec![],
                };
                to_check.push((file, region));
            }
        }
        let found: Vec<(StoredFile, String, Result<CopyCheck, String>)> =
            futures_util::stream::iter(to_check.into_iter().map(|(file, region)| async move {
                let found = if opts.trust_instances {
                    Ok(CopyCheck::Intact)
                } else {
                    let store = blobs.get(&region).expect("regions checked at start");
                    copies::check(store.as_ref(), &file, depth, &Pace::new(None)).await.map_err(|e| e.to_string())
                };
                (file, region, found)
            }))
            .buffer_unordered(CHECKS_AT_ONCE)
            .collect()
            .await;
        let now = crate::time::now();
        let mut w = db.write_files().await?;
        let mut stored = std::collections::HashMap::new();
        for (f, digest, size, visibility) in &rows {
            let s = w.import_file(digest, *size, *visibility, now).await?;
            if s.size != *size || s.visibility != *visibility {
                // Recorded meanwhile with other properties: a conflict found late, left alone.
                report
                    .conflicts
                    .push(format!("{digest}: recorded here meanwhile with {} bytes, {}", s.size, s.visibility));
                continue;
            }
            if here.contains_key(digest) {
                report.files.present += 1;
            } else {
                report.files.new += 1;
            }
            stored.insert(digest.clone(), (s, *f));
        }
        for (file, region, found) in found {
            let Some((s, _)) = stored.get_mut(&file.digest) else { continue };
            match found {
                Ok(CopyCheck::Intact) => {
                    copies::record(&mut w, s, &region, &CopyCheck::Intact, actor, now).await?;
                    s.instances.push(region);
                    report.instances.new += 1;
                }
                Ok(bad) => {
                    let why = match &bad {
                        CopyCheck::Corrupt(why) => why.clone(),
                        _ => "no object under its key".to_owned(),
                    };
                    copies::record(&mut w, s, &region, &bad, actor, now).await?;
                    report.untrusted.push((file.digest.clone(), region, why));
                }
                Err(e) => report.untrusted.push((file.digest.clone(), region, format!("could not be checked: {e}"))),
            }
        }
        for (s, f) in stored.values() {
            let Some((region, expires)) = &f.pending else { continue };
            if !s.instances.is_empty() {
                continue;
            }
            if w.import_pending(s, &opts.region(region), *expires).await? {
                report.pending.new += 1;
            } else {
                report.pending.present += 1;
            }
        }
        w.commit().await.context("recording a page of files")?;
        progress(Progress::Advance(files.len() as u64));
    }
    Ok(())
}

/// Writes the batches with their ids and names, a page per transaction.
async fn import_batches(
    src: &mut Source,
    db: &Db,
    page: i64,
    conflicting: &HashSet<String>,
    report: &mut ImportReport,
    progress: &(dyn Fn(Progress) + Sync),
) -> anyhow::Result<()> {
    progress(Progress::Stage("importing batches", src.count("batches").await?));
    let mut after = 0;
    loop {
        let batches: Vec<LegacyBatch> = src.batches(after, page).await?;
        let Some(last) = batches.last() else { break };
        after = last.id;
        let ids: Vec<i64> = batches.iter().map(|b| b.id).collect();
        let here = db.batches_among(&ids).await?;
        report.batches.present += here.len() as u64;
        let mut w = db.write_files().await?;
        let imported: Vec<ImportedBatch> = batches
            .iter()
            .filter(|b| !here.contains_key(&b.id))
            .map(|b| ImportedBatch {
                id: b.id,
                author: b.author.clone(),
                message: b.message.clone(),
                uploaded: b.uploaded,
                files: b
                    .files
                    .iter()
                    .filter(|f| !conflicting.contains(&f.1))
                    .filter_map(|(name, sha, size, vis)| {
                        Some((name.clone(), Digest::parse(sha).ok()?, u64::try_from(*size).ok()?, vis.parse().ok()?))
                    })
                    .collect(),
            })
            .collect();
        let mut digests: Vec<&Digest> = imported.iter().flat_map(|b| b.files.iter().map(|f| &f.1)).collect();
        digests.sort();
        digests.dedup();
        let ids = w.file_ids(&digests).await?;
        for b in &imported {
            if w.import_batch(b, &ids).await? {
                report.batches.new += 1;
                report.batch_files += b.files.iter().filter(|f| ids.contains_key(&f.1)).count() as u64;
            } else {
                report.batches.present += 1;
            }
        }
        w.commit().await.context("recording a page of batches")?;
        progress(Progress::Advance(batches.len() as u64));
    }
    Ok(())
}
