//! Stored bytes stay proven (issue 24): S3 calls bounded per operation, and the scrubber
//! that re-reads every stored copy, takes a bad one out of routing, keeps it aside, and lets
//! the replicator repair it from a verified copy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};
use tooltool_api::copies::VerifyReport;
use tooltool_api::db::{AuditFilter, ScrubFilter};
use tooltool_api::scrub_once;
use tooltool_e2e::proto::{Audience, Digest, EventType, Visibility};
use tooltool_e2e::regions::{eventually, shared_endpoint, spawn_regions, spawn_replica_with, unique_region};
use tooltool_e2e::services::{OwnS3, TcpProxy};
use tooltool_e2e::tooltool_api::settings::{BlobSettings, S3Settings, Secret};
use tooltool_e2e::{Backend, S3Env, TestApp, backend_tests, digest_of, expect_status, upload_request};

/// Longest a copy between regions may take to appear.
const COPY_WAIT: Duration = Duration::from_secs(30);

/// A black-holed S3 endpoint (accepts connections, never answers) makes `upload/complete`
/// answer 503 `storage-unavailable` once the per-operation bound passed, not 409 while a
/// verification waits for headers that never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_s3_makes_complete_answer_503_within_the_s3_timeout() {
    let s3 = OwnS3::start("hole");
    let proxy = TcpProxy::start(s3.endpoint().trim_start_matches("http://").parse().unwrap()).await;
    let app = TestApp::spawn_with(Backend::PostgresS3, |s| {
        s.blobs = BlobSettings::S3(vec![S3Settings {
            bucket: "hole".into(),
            region: "us-east-1".into(),
            endpoint: Some(format!("http://127.0.0.1:{}", proxy.port())),
            force_path_style: true,
            access_key_id: Some(OwnS3::ACCESS_KEY.into()),
            secret_access_key: Some(Secret::new(OwnS3::SECRET_KEY)),
            timeout: Duration::from_secs(1),
        }]);
        // The request would give up first otherwise (409 at the verify wait, 503 timed-out at
        // the request timeout): both are far above the bound.
        s.verify_wait = Duration::from_secs(25);
        s.request_timeout = Duration::from_secs(28);
    })
    .await;
    let data: &'static [u8] = b"staged before the endpoint went silent";
    let client = app.admin();
    let batch = client.upload_batch(&upload_request("hole", &[("hole.bin", data, Visibility::Public)])).await.unwrap();
    client.put_bytes(batch.files["hole.bin"].put_url.as_ref().unwrap(), Bytes::from_static(data)).await.unwrap();

    proxy.hang();
    let digest = digest_of(data);
    let res = app.http().get(app.at(&format!("/upload/complete/sha512/{digest}"))).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "storage-unavailable", "{body}");
    assert!(!app.anonymous().get_file(digest.as_str()).await.unwrap().has_instances);

    proxy.heal();
    let info = app.admin().complete_until_verified(digest.as_str(), Duration::from_secs(30)).await.unwrap();
    assert!(info.has_instances, "the staged bytes were kept and verify once S3 answers");
}

/// A pass of `tooltool-api scrub` (the command's own code, on its own connections), unlimited.
async fn scrub(app: &TestApp, filter: ScrubFilter) -> anyhow::Result<VerifyReport> {
    scrub_once(&app.settings, &filter, None, "admin-cli:test", &|_| {}).await
}

fn only_region(region: &str) -> ScrubFilter {
    ScrubFilter { region: Some(region.to_owned()), digest: None }
}

/// The `file.copy_lost` events recorded: `(region, reason)`.
async fn copy_lost_events(app: &TestApp) -> Vec<(String, String)> {
    let all = [Audience::Public, Audience::Internal, Audience::Manage];
    let events = app.state.db.events_after(0, &all, 1000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event.kind == EventType::FileCopyLost)
        .map(|e| (e.event.data.region.unwrap(), e.event.data.reason.unwrap()))
        .collect()
}

/// The details of the `file.copy_lost` audit entries, oldest first.
async fn copy_lost_audits(app: &TestApp) -> Vec<serde_json::Value> {
    let filter = AuditFilter { action: Some("file.copy_lost".into()), ..Default::default() };
    let mut rows = app.state.db.audit_entries(&filter, 100).await.unwrap();
    rows.reverse();
    rows.into_iter().map(|e| e.details).collect()
}

async fn instances(app: &TestApp, d: &Digest) -> Vec<String> {
    app.anonymous().get_file(d.as_str()).await.expect("file info").instances
}

async fn fetch(url: &str) -> Vec<u8> {
    let res = reqwest::get(url).await.expect("storage answers");
    assert_eq!(res.status(), 200, "storage GET");
    res.bytes().await.expect("body").to_vec()
}

async fn heartbeat(app: &TestApp) -> serde_json::Value {
    let res = app.http().get(app.at("/__heartbeat__")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// What happened to a stored copy behind the server's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Its bytes were rewritten (one bit flipped).
    Changed,
    /// It was deleted.
    Deleted,
}

impl Damage {
    fn reason(self) -> &'static str {
        match self {
            Self::Changed => "corrupt",
            Self::Deleted => "missing",
        }
    }
}

fn flipped(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out[3] ^= 0x10;
    out
}

/// Damages the S3 object of `d` in `s3`.
async fn damage_s3(s3: &S3Env, d: &Digest, data: &[u8], damage: Damage) {
    let key = format!("sha512/{d}");
    let client = s3.client();
    match damage {
        Damage::Changed => {
            client.put_object().bucket(&s3.bucket).key(&key).body(flipped(data).into()).send().await.unwrap();
        }
        Damage::Deleted => {
            client.delete_object().bucket(&s3.bucket).key(&key).send().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_changed_in_one_region_leaves_routing_is_set_aside_and_is_repaired_from_the_other() {
    lost_in_one_region_then_repaired(Damage::Changed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_deleted_in_one_region_leaves_routing_as_missing_and_is_repaired_from_the_other() {
    lost_in_one_region_then_repaired(Damage::Deleted).await;
}

/// Two regions on two s3s-fs servers: region A's object is damaged behind the server's back.
async fn lost_in_one_region_then_repaired(damage: Damage) {
    let (a, b) = (unique_region("scrub-a"), unique_region("scrub-b"));
    // Replication is woken by each upload; its own passes wait an hour, so that nothing repairs
    // the lost copy until the replica below does.
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |s| {
        s.replication_interval = Duration::from_secs(3600);
    })
    .await;
    let data: &[u8] = b"bytes proven at upload, then damaged in region A behind the server's back";
    let d = app.upload("damaged.bin", data, Visibility::Public).await;
    eventually("a copy in both regions", COPY_WAIT, || async { instances(&app, &d).await == [a.clone(), b.clone()] })
        .await;
    let before = app.anonymous().get_file(d.as_str()).await.unwrap().proven;
    assert_eq!(before.keys().collect::<Vec<_>>(), [&a, &b], "each instance says when it was proven");
    let clean = scrub(&app, ScrubFilter::default()).await.expect("a clean store scrubs clean");
    assert_eq!((clean.checked, clean.bytes), (2, 2 * data.len() as u64));
    let after = app.anonymous().get_file(d.as_str()).await.unwrap().proven;
    assert!(after[&a] > before[&a] && after[&b] > before[&b], "{before:?} then {after:?}");

    damage_s3(&regions[0].s3, &d, data, damage).await;
    let err = scrub(&app, only_region(&a)).await.expect_err("the pass found a lost copy").to_string();
    assert!(err.contains(&format!("{d} in {a}: {}", damage.reason())), "{err}");

    // Out of routing at once: the instance is gone when the pass returns; the server's lookup
    // cache hears of it at the commit's notification; downloads go to B.
    assert_eq!(app.state.db.file_uncached(&d).await.unwrap().unwrap().instances, [b.as_str()]);
    eventually("the server stops routing to A", Duration::from_secs(5), || async {
        instances(&app, &d).await == [b.clone()]
    })
    .await;
    let info = app.anonymous().get_file(d.as_str()).await.unwrap();
    assert_eq!(info.lost.get(&a).map(String::as_str), Some(damage.reason()));
    let location = app.anonymous().download_redirect(d.as_str(), Some(&a)).await.unwrap().location;
    assert!(location.starts_with(&format!("{}/{}/", regions[1].s3.endpoint, regions[1].s3.bucket)), "{location}");
    assert_eq!(fetch(&location).await, data);
    assert_eq!(copy_lost_events(&app).await, [(a.clone(), damage.reason().to_owned())]);
    let audits = copy_lost_audits(&app).await;
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!((audits[0]["region"].as_str(), audits[0]["reason"].as_str()), (Some(a.as_str()), Some(damage.reason())));
    let quarantined = regions[0].s3.keys("quarantine/").await;
    match damage {
        Damage::Changed => {
            assert_eq!(quarantined.len(), 1, "{quarantined:?}");
            assert_eq!(quarantined[0], format!("quarantine/sha512/{d}"));
            assert_eq!(audits[0]["quarantined"].as_str(), Some(quarantined[0].as_str()));
        }
        Damage::Deleted => {
            assert!(quarantined.is_empty(), "nothing to set aside: {quarantined:?}");
            assert!(audits[0]["quarantined"].is_null());
        }
    }

    // The replicator copies it again from B, whose copy is still verified.
    let replica = spawn_replica_with(&app, |s| s.replication_interval = Duration::from_millis(300)).await;
    eventually("A repaired from B", COPY_WAIT, || async { instances(&replica, &d).await == [a.clone(), b.clone()] })
        .await;
    let location = app.anonymous().download_redirect(d.as_str(), Some(&a)).await.unwrap().location;
    assert!(location.starts_with(&format!("{}/{}/", regions[0].s3.endpoint, regions[0].s3.bucket)), "{location}");
    assert_eq!(fetch(&location).await, data, "the repaired copy holds the right bytes");
    assert!(app.anonymous().get_file(d.as_str()).await.unwrap().lost.is_empty());
    // Counted once, by whichever server's replicator made the copy.
    let repaired = [&app, &replica].map(|r| r.state.metrics.scrub_copies_repaired.get());
    assert_eq!(repaired.iter().sum::<u64>(), 1, "{repaired:?}");
    assert_eq!(regions[0].s3.keys("quarantine/").await, quarantined, "the quarantined object is still there");
    scrub(&app, ScrubFilter::default()).await.expect("clean again after the repair");
}

backend_tests!(
    a_single_copy_flipped_on_disk_is_found_answers_404_and_a_new_upload_restores_it,
    scrub_exits_zero_on_a_clean_store_and_non_zero_when_it_finds_something,
    the_scrub_rate_bounds_the_bytes_read_over_time,
);

/// Flips a bit of the stored copy of `d`, on the embedded store's disk or in the S3 bucket.
async fn flip_stored_copy(app: &TestApp, d: &Digest, data: &[u8]) {
    match &app.s3 {
        Some(s3) => damage_s3(s3, d, data, Damage::Changed).await,
        None => {
            let path = app.settings.data_dir.join("blobs").join("sha512").join(d.as_str());
            assert_eq!(std::fs::read(&path).unwrap(), data, "the embedded store's blob");
            std::fs::write(&path, flipped(data)).unwrap();
        }
    }
}

/// The objects set aside under `quarantine/`, with their bytes.
async fn quarantined(app: &TestApp) -> Vec<Vec<u8>> {
    match &app.s3 {
        Some(s3) => {
            let mut out = Vec::new();
            for key in s3.keys("quarantine/").await {
                let obj = s3.client().get_object().bucket(&s3.bucket).key(&key).send().await.unwrap();
                out.push(obj.body.collect().await.unwrap().into_bytes().to_vec());
            }
            out
        }
        None => {
            let dir = app.settings.data_dir.join("blobs").join("quarantine").join("sha512");
            let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
            entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect()
        }
    }
}

async fn a_single_copy_flipped_on_disk_is_found_answers_404_and_a_new_upload_restores_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data: &[u8] = b"the only copy of these bytes rots on its disk";
    let d = app.upload("rotten.bin", data, Visibility::Public).await;
    let region = instances(&app, &d).await.remove(0);
    assert_eq!(heartbeat(&app).await["status"], "ok");
    flip_stored_copy(&app, &d, data).await;

    let err = scrub(&app, ScrubFilter { region: None, digest: Some(d.clone()) }).await.unwrap_err().to_string();
    assert!(err.contains(&format!("{d} in {region}: corrupt")), "{err}");
    // A `scrub` beside an embedded server: the server's lookup cache drops the copy within
    // TOOLTOOL_LOOKUP_MAX_AGE (on PostgreSQL, at the notification of the commit).
    eventually("the lost copy is no longer served", Duration::from_secs(10), || async {
        !app.anonymous().get_file(d.as_str()).await.unwrap().has_instances
    })
    .await;
    let info = app.anonymous().get_file(d.as_str()).await.unwrap();
    assert!(info.instances.is_empty() && info.proven.is_empty(), "{info:?}");
    assert_eq!(info.lost.get(&region).map(String::as_str), Some("corrupt"));
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 404);
    assert_eq!(copy_lost_events(&app).await, [(region.clone(), "corrupt".to_owned())]);
    assert_eq!(copy_lost_audits(&app).await.len(), 1);
    let hb = heartbeat(&app).await;
    assert_eq!((&hb["status"], &hb["checks"]["lost_files"]), (&json!("warning"), &json!(1)), "{hb}");
    assert_eq!(quarantined(&app).await, [flipped(data)], "the bad bytes are kept aside, not deleted");

    let again = app.upload("rotten.bin", data, Visibility::Public).await;
    assert_eq!(again, d);
    let info = app.anonymous().get_file(d.as_str()).await.unwrap();
    assert_eq!(info.instances, [region.as_str()]);
    assert!(info.lost.is_empty(), "{info:?}");
    let location = app.anonymous().download_redirect(d.as_str(), None).await.unwrap().location;
    assert_eq!(fetch(&location).await, data);
    let hb = heartbeat(&app).await;
    assert_eq!(hb["status"], "ok", "{hb}");
    assert!(hb["checks"].get("lost_files").is_none(), "{hb}");
    scrub(&app, ScrubFilter::default()).await.expect("clean after the new upload");
    assert_eq!(quarantined(&app).await.len(), 1, "still kept for the operator");
}

async fn scrub_exits_zero_on_a_clean_store_and_non_zero_when_it_finds_something(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let kept: &[u8] = b"a copy that stays intact";
    let lost: &[u8] = b"a copy that goes missing";
    let k = app.upload("kept.bin", kept, Visibility::Public).await;
    let l = app.upload("lost.bin", lost, Visibility::Internal).await;
    let report = scrub(&app, ScrubFilter::default()).await.expect("0 on a clean store");
    assert_eq!((report.checked, report.bytes), (2, (kept.len() + lost.len()) as u64));
    assert!(report.lost.is_empty() && report.failed.is_empty());

    match &app.s3 {
        Some(s3) => damage_s3(s3, &l, lost, Damage::Deleted).await,
        None => std::fs::remove_file(app.settings.data_dir.join("blobs").join("sha512").join(l.as_str())).unwrap(),
    }
    let err = scrub(&app, ScrubFilter::default()).await.expect_err("non-zero: a copy is missing").to_string();
    assert!(err.contains(&format!("{l} in ")) && err.contains(": missing"), "{err}");
    assert!(!err.contains(k.as_str()), "{err}");
    let report = scrub(&app, ScrubFilter::default()).await.expect("0 again: the lost copy is no longer recorded");
    assert_eq!(report.checked, 1);
    let err = scrub(&app, ScrubFilter { region: Some("nowhere".into()), digest: None }).await.unwrap_err();
    assert!(err.to_string().contains("--region nowhere"), "{err}");
}

async fn the_scrub_rate_bounds_the_bytes_read_over_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut total = 0;
    for i in 0..4u8 {
        let data = vec![i; 250_000];
        total += data.len() as u64;
        app.upload(&format!("paced-{i}.bin"), &data, Visibility::Public).await;
    }
    // 1 MB at 0.5 MB/s: at least 2 s however fast the machine (each read waits until the
    // average is back under the rate). Only this lower bound is asserted.
    let start = Instant::now();
    let report =
        scrub_once(&app.settings, &ScrubFilter::default(), Some(0.5), "admin-cli:test", &|_| {}).await.unwrap();
    let took = start.elapsed();
    assert_eq!((report.checked, report.bytes), (4, total));
    assert!(took >= Duration::from_secs_f64(total as f64 / 0.5e6 * 0.9), "{total} bytes in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_scrubbing_at_once_read_each_copy_once_per_pass() {
    let region = unique_region("scrub-twice");
    let (app, _regions) = spawn_regions(&[(&region, &shared_endpoint('A'))], |s| s.scrub_interval = None).await;
    let mut digests = Vec::new();
    for i in 0..12u8 {
        digests.push(app.upload(&format!("copy-{i}.bin"), &vec![i; 100_000], Visibility::Public).await);
    }
    // Every copy last proven long ago: due for both replicas' first pass.
    let mut conn = PgConnection::connect(&app.settings.database_url).await.unwrap();
    sqlx::query("UPDATE file_instances SET proven = 0").execute(&mut conn).await.unwrap();

    let scrubbing = |s: &mut tooltool_e2e::tooltool_api::Settings| {
        s.scrub_interval = Some(Duration::from_secs(3600));
        s.scrub_rate = 1.0; // 0.1 s per copy: both replicas are at it at once
    };
    let one = spawn_replica_with(&app, scrubbing).await;
    let two = spawn_replica_with(&app, scrubbing).await;
    // The two scrubbing replicas' registries together.
    let scrubbed = || [&one, &two].map(|r| r.state.metrics.scrub_copies.with_label_values(&[&region]).get());
    eventually("every copy proven", Duration::from_secs(30), || async {
        sqlx::query("SELECT COUNT(*) AS n FROM file_instances WHERE proven = 0")
            .fetch_one(&mut PgConnection::connect(&app.settings.database_url).await.unwrap())
            .await
            .unwrap()
            .get::<i64, _>("n")
            == 0
    })
    .await;
    // Let any second read of a copy happen, were one to come.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = scrubbed();
    assert_eq!(read.iter().sum::<u64>(), digests.len() as u64, "each copy read once by the two together: {read:?}");
    assert_eq!(app.state.metrics.scrub_copies.with_label_values(&[&region]).get(), 0, "the first does not scrub");
    for d in &digests {
        assert!(one.anonymous().get_file(d.as_str()).await.unwrap().proven.contains_key(&region));
    }
    drop(two);
}
