//! Uploads in parts (PROTOCOL.md "Large files: uploads in parts"): which files get parts, the
//! plan of parts handed out (URLs of at most `TOOLTOOL_PART_URL_BATCH` missing parts at a
//! time, from the store's own listing), resuming an open upload, finishing it into the staged
//! object before the usual verification, and discarding it.
//!
//! A file declared again while an upload in parts of it is open in the region resumes that
//! upload (its expiry moves on) rather than starting over, so a client that was killed, or
//! another machine, sends only the parts storage does not have.

use std::sync::Arc;
use std::time::Duration;

use super::{UploadError, Uploads};
use crate::blobs::{BlobStore, ReceivedPart, StoreError};
use crate::db::{Multipart, Pending, StoredFile};
use crate::settings::PartSettings;
use tooltool_proto::{PartUrl, PartsPlan, UploadFile};

/// S3 allows at most this many parts in an upload.
const MAX_PARTS: u64 = 10_000;

/// Whether a declared file goes up in parts: its client can send parts, and it is at or above
/// the threshold (or too large for one `PUT`).
pub fn wanted(s: &PartSettings, f: &UploadFile) -> bool {
    f.parts && f.size > 0 && (f.size >= s.threshold || f.size > s.max_single_put)
}

/// The part size for a file of `size` bytes: the configured one, larger when the file would
/// otherwise need more than 10,000 parts.
pub fn part_size(s: &PartSettings, size: u64) -> u64 {
    s.part_size.max(size.div_ceil(MAX_PARTS))
}

/// How many parts of `part_size` a file of `size` bytes has.
fn count(size: u64, part_size: u64) -> u32 {
    size.div_ceil(part_size.max(1)) as u32
}

/// The size of part `n` (from 1).
fn size_of_part(size: u64, part_size: u64, n: u32) -> u64 {
    let start = (n as u64 - 1) * part_size;
    part_size.min(size - start)
}

/// The numbers of the parts not (correctly) received: absent, or of another size.
fn missing(size: u64, part_size: u64, received: &[ReceivedPart]) -> Vec<u32> {
    (1..=count(size, part_size))
        .filter(|&n| !received.iter().any(|p| p.number == n && p.size == size_of_part(size, part_size, n)))
        .collect()
}

/// Opens the upload in parts of `file` on `store`, or resumes the one already open there;
/// `fresh_key` is the pending upload just opened for this declaration (forgotten when another
/// is resumed). Returns the plan.
pub async fn open(
    u: &Uploads,
    store: &Arc<dyn BlobStore>,
    file: &StoredFile,
    fresh_key: &str,
) -> Result<PartsPlan, UploadError> {
    let ttl = u.url_ttl;
    let expires = crate::time::now() + ttl.as_secs() as i64;
    if let Some((pending, mp, received)) = furthest(u, store, file, Some(fresh_key)).await? {
        u.db.delete_pending_key(fresh_key).await?;
        u.db.extend_pending(&pending.staging_key, expires).await?;
        tracing::info!(digest = %file.digest, parts = received.len(), "resuming an upload in parts");
        return Ok(plan(u, store, &pending, &mp, file.size, &received, ttl).await?);
    }
    let upload_id = store.start_parts(fresh_key).await?;
    let mp = Multipart { upload_id, part_size: part_size(&u.parts, file.size) };
    u.db.set_multipart(fresh_key, &mp).await?;
    let pending = Pending {
        id: 0,
        file_id: file.id,
        region: store.region().to_owned(),
        staging_key: fresh_key.to_owned(),
        expires,
        multipart: Some(mp.clone()),
    };
    Ok(plan(u, store, &pending, &mp, file.size, &[], ttl).await?)
}

/// The plan of the open upload in parts of `file` on `store` (for the re-issue route):
/// `None` when none is open.
pub async fn reissue(
    u: &Uploads,
    store: &Arc<dyn BlobStore>,
    file: &StoredFile,
) -> Result<Option<PartsPlan>, UploadError> {
    let ttl = u.url_ttl;
    let Some((pending, mp, received)) = furthest(u, store, file, None).await? else { return Ok(None) };
    let expires = crate::time::now() + ttl.as_secs() as i64;
    u.db.extend_pending(&pending.staging_key, expires).await?;
    Ok(Some(plan(u, store, &pending, &mp, file.size, &received, ttl).await?))
}

/// The open upload in parts of `file` on `store` (but `except`) that storage holds the most
/// parts of, the newest among equals: two clients that raced into two uploads of one digest
/// both go on with the one further along.
async fn furthest(
    u: &Uploads,
    store: &Arc<dyn BlobStore>,
    file: &StoredFile,
    except: Option<&str>,
) -> Result<Option<(Pending, Multipart, Vec<ReceivedPart>)>, UploadError> {
    let mut best: Option<(Pending, Multipart, Vec<ReceivedPart>)> = None;
    for pending in u.db.pending_uploads(file.id).await?.into_iter().rev() {
        let Some(mp) = pending.multipart.clone() else { continue };
        if pending.region != store.region() || except == Some(pending.staging_key.as_str()) {
            continue;
        }
        let Some(received) = store.list_parts(&pending.staging_key, &mp.upload_id).await? else { continue };
        if best.as_ref().is_none_or(|(_, _, b)| received.len() > b.len()) {
            best = Some((pending, mp, received));
        }
    }
    Ok(best)
}

async fn plan(
    u: &Uploads,
    store: &Arc<dyn BlobStore>,
    pending: &Pending,
    mp: &Multipart,
    size: u64,
    received: &[ReceivedPart],
    ttl: Duration,
) -> Result<PartsPlan, StoreError> {
    let missing = missing(size, mp.part_size, received);
    let mut urls = Vec::new();
    for &n in missing.iter().take(u.parts.url_batch as usize) {
        let part = size_of_part(size, mp.part_size, n);
        let url = store.part_url(&pending.staging_key, &mp.upload_id, n, part, ttl).await?;
        let url = crate::blobs::with_explicit_port(&url);
        urls.push(PartUrl { number: n, offset: (n as u64 - 1) * mp.part_size, size: part, url });
    }
    Ok(PartsPlan { part_size: mp.part_size, count: count(size, mp.part_size), missing: missing.len() as u32, urls })
}

/// What finishing an upload in parts found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// The parts are joined into the staged object (or were, by someone else): verify it.
    Staged,
    /// Some parts are still missing.
    Incomplete,
}

/// Joins the parts of `pending`'s upload into its staged object, from the store's own listing
/// (sorted, with the store's own tags), once every part is there with its size.
pub async fn finish(
    u: &Uploads,
    store: &Arc<dyn BlobStore>,
    pending: &Pending,
    mp: &Multipart,
    size: u64,
) -> Result<Finished, UploadError> {
    let Some(received) = store.list_parts(&pending.staging_key, &mp.upload_id).await? else {
        // Completed (by another replica or an earlier try) or aborted: the staged object, if
        // any, is what gets verified.
        u.db.clear_multipart(&pending.staging_key).await?;
        return Ok(Finished::Staged);
    };
    if !missing(size, mp.part_size, &received).is_empty() {
        return Ok(Finished::Incomplete);
    }
    let n = count(size, mp.part_size);
    let parts: Vec<ReceivedPart> = received.into_iter().filter(|p| p.number <= n).collect();
    store.complete_parts(&pending.staging_key, &mp.upload_id, &parts).await?;
    u.db.clear_multipart(&pending.staging_key).await?;
    Ok(Finished::Staged)
}

/// Removes what a pending upload left in `store`: its open upload in parts, and its staged
/// object.
pub async fn discard(store: &dyn BlobStore, pending: &Pending) -> Result<(), StoreError> {
    if let Some(mp) = &pending.multipart {
        store.abort_parts(&pending.staging_key, &mp.upload_id).await?;
    }
    store.delete_staged(&pending.staging_key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, size: u64) -> ReceivedPart {
        ReceivedPart { number, size, etag: String::new() }
    }

    #[test]
    fn parts_are_counted_sized_and_missing_ones_found() {
        assert_eq!(count(11, 5), 3);
        assert_eq!(count(10, 5), 2);
        assert_eq!((size_of_part(11, 5, 1), size_of_part(11, 5, 3)), (5, 1));
        assert_eq!(missing(11, 5, &[]), vec![1, 2, 3]);
        assert_eq!(missing(11, 5, &[part(2, 5)]), vec![1, 3]);
        assert_eq!(missing(11, 5, &[part(1, 5), part(2, 4), part(3, 1)]), vec![2], "a part of the wrong size");
        assert_eq!(missing(11, 5, &[part(3, 1), part(1, 5), part(2, 5), part(4, 5)]), Vec::<u32>::new());
    }

    #[test]
    fn only_opted_in_files_at_the_threshold_or_past_one_put_get_parts() {
        let s = PartSettings { threshold: 100, part_size: 10, max_single_put: 1000, url_batch: 1 };
        let f = |size, parts| UploadFile {
            size,
            digest: tooltool_proto::Digest::parse(&"a".repeat(128)).unwrap(),
            algorithm: tooltool_proto::Algorithm::Sha512,
            visibility: tooltool_proto::Visibility::Public,
            parts,
        };
        assert!(wanted(&s, &f(100, true)));
        assert!(!wanted(&s, &f(99, true)));
        assert!(!wanted(&s, &f(5000, false)));
        assert!(wanted(&PartSettings { threshold: 5000, ..s }, &f(1001, true)), "too large for one PUT");
        assert_eq!(part_size(&s, 50), 10);
        assert_eq!(part_size(&s, 200_001), 21, "at most 10,000 parts");
    }

    proptest::proptest! {
        // 512 cases: a plan has up to 10,000 parts, and finding the missing ones is quadratic in them.
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Issue 25's property tests, for part numbers now that parts exist: for any file up to
        /// S3's 5 TiB and any allowed part size, the plan has at most 10,000 parts that cover
        /// the file exactly, every part but the last of the part size; with every part received
        /// none is missing, and with one taken away (or of another size) exactly that one is.
        #[test]
        fn a_plan_of_parts_covers_the_file_exactly(
            size in 1u64..=5 << 40,
            configured in (5u64 << 20)..=(5 << 30),
            gone in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let s = PartSettings { threshold: 0, part_size: configured, max_single_put: 0, url_batch: 1 };
            let ps = part_size(&s, size);
            let n = count(size, ps);
            proptest::prop_assert!(n >= 1 && u64::from(n) <= MAX_PARTS);
            proptest::prop_assert!(ps >= configured);
            let sizes: Vec<u64> = (1..=n).map(|k| size_of_part(size, ps, k)).collect();
            proptest::prop_assert_eq!(sizes.iter().sum::<u64>(), size);
            proptest::prop_assert!(sizes[..sizes.len() - 1].iter().all(|&p| p == ps));
            proptest::prop_assert!((1..=ps).contains(sizes.last().unwrap()));
            let mut all: Vec<ReceivedPart> = sizes.iter().zip(1..).map(|(&sz, k)| part(k, sz)).collect();
            proptest::prop_assert!(missing(size, ps, &all).is_empty());
            let k = gone.index(all.len());
            let number = all[k].number;
            all[k].size += 1;
            proptest::prop_assert_eq!(missing(size, ps, &all), vec![number]);
            all.remove(k);
            proptest::prop_assert_eq!(missing(size, ps, &all), vec![number]);
        }
    }
}
