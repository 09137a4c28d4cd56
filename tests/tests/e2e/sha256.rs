//! sha256 beside sha512 (issue 22's first step): upload verification records the sha256 of the
//! bytes it hashed, and `backfill-sha256` fills it in for files verified before, reading one
//! copy of each, once. The expected values come from coreutils' `sha256sum`, not from the
//! project's own hasher.

use std::io::Write;
use std::process::{Command, Stdio};

use tooltool_api::copies;
use tooltool_api::time::Pace;
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of};

backend_tests!(
    a_verified_upload_records_the_sha256_of_its_bytes,
    backfill_records_each_missing_sha256_once_and_a_corrupt_copy_is_no_longer_served,
);

/// The sha256 of `data` as coreutils computes it.
fn sha256sum(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) runs");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// Bytes that do not repeat within a hash block.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

async fn a_verified_upload_records_the_sha256_of_its_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // One small blob (both digests inline) and one past the size at which sha256 moves to a
    // thread of its own.
    for data in [b"tiny".to_vec(), pattern(3 * 1024 * 1024 + 12_345, 1)] {
        let d = app.upload("f.bin", &data, Visibility::Public).await;
        assert_eq!(app.state.db.sha256_of(&d).await.unwrap(), Some(sha256sum(&data)), "{} bytes", data.len());
    }
    assert_eq!(app.state.db.sha256_of(&digest_of(b"never uploaded")).await.unwrap(), None);
}

async fn backfill_records_each_missing_sha256_once_and_a_corrupt_copy_is_no_longer_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b, c) = (pattern(2 * 1024 * 1024, 2), b"second file".to_vec(), b"third file, altered".to_vec());
    let da = app.upload("a.bin", &a, Visibility::Public).await;
    let db_ = app.upload("b.bin", &b, Visibility::Internal).await;
    let dc = app.upload("c.bin", &c, Visibility::Public).await;
    // As a database from before sha256 was hashed; and c's copy altered in storage meanwhile.
    app.sql("UPDATE files SET sha256 = NULL").await;
    let mut altered = c.clone();
    altered[0] ^= 1;
    app.overwrite_blob(&dc, altered).await;

    // The server's own handles, so that its lookup cache hears of the lost copy at once (a
    // separate process on SQLite is heard of only after TOOLTOOL_LOOKUP_MAX_AGE).
    let (db, blobs) = (&app.state.db, &app.state.blobs);
    let pace = Pace::new(None);
    let report = copies::backfill_sha256(db, blobs, &pace, "admin-cli:test", &|_| {}).await.unwrap();
    assert_eq!(report.filled, 2, "{report:?}");
    let read = &report.read;
    assert_eq!((read.checked, read.bytes), (3, (a.len() + b.len() + c.len()) as u64), "each copy read once");
    assert_eq!(read.lost.len(), 1, "{report:?}");
    assert_eq!((&read.lost[0].0, read.lost[0].2.contains("sha512")), (&dc, true), "{report:?}");
    assert!(read.failed.is_empty(), "{report:?}");
    assert_eq!(db.sha256_of(&da).await.unwrap(), Some(sha256sum(&a)));
    assert_eq!(db.sha256_of(&db_).await.unwrap(), Some(sha256sum(&b)));
    assert_eq!(db.sha256_of(&dc).await.unwrap(), None, "no sha256 is recorded for bytes that are not the file's");
    tooltool_e2e::expect_status(app.admin().download_redirect(dc.as_str(), None).await, 404);

    let again = copies::backfill_sha256(db, blobs, &pace, "admin-cli:test", &|_| {}).await.unwrap();
    assert_eq!(again, copies::BackfillReport::default(), "a second run reads nothing");
}
