//! Regions: uploads to a chosen region, verified replication between regions (across
//! endpoints, and between buckets of one endpoint), downloads that route around a stopped
//! region, deletion in every region, and `tooltool-api replicate`. PostgreSQL plus two s3s-fs
//! servers; a test that stops a region starts that region's server itself.

use std::sync::Arc;
use std::time::Duration;

use tooltool_api::db::AuditFilter;
use tooltool_api::metrics::Metrics;
use tooltool_api::replicate_once;
use tooltool_e2e::proto::{Digest, Manifest, PatchOp, Visibility};
use tooltool_e2e::regions::{
    S3Server, TestRegion, eventually, shared_endpoint, spawn_regions, spawn_replica_with, unique_region,
};
use tooltool_e2e::{Backend, TestApp, expect_status, tooltool_cli, tooltool_cli_output};

/// Longest a copy may take to appear (passes run every 300 ms in these tests).
const COPY_WAIT: Duration = Duration::from_secs(30);
/// Longest a region's failure or return may take to be noticed (probes run every 200 ms).
const PROBE_WAIT: Duration = Duration::from_secs(10);

async fn instances(app: &TestApp, d: &Digest) -> Vec<String> {
    app.anonymous().get_file(d.as_str()).await.expect("file info").instances
}

async fn location(app: &TestApp, d: &Digest, region: Option<&str>) -> String {
    app.anonymous().download_redirect(d.as_str(), region).await.expect("a redirect").location
}

async fn fetch(url: &str) -> Vec<u8> {
    let res = reqwest::get(url).await.expect("storage answers");
    assert_eq!(res.status(), 200, "storage GET");
    res.bytes().await.expect("body").to_vec()
}

/// `replication_copies_total{from,to,outcome}` in the registry `m` (a server's, or a pass's).
fn copies(m: &Metrics, from: &str, to: &str, outcome: &str) -> u64 {
    m.replication_copies.with_label_values(&[from, to, outcome]).get()
}

/// One `tooltool-api replicate` pass, with the registry it counted in.
async fn replicate(app: &TestApp) -> (anyhow::Result<()>, Arc<Metrics>) {
    let m = Arc::new(Metrics::new());
    (replicate_once(&app.settings, m.clone()).await, m)
}

async fn audits(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    let filter = AuditFilter { action: Some(action.into()), ..Default::default() };
    app.state.db.audit_entries(&filter, 1000).await.expect("audit").into_iter().map(|e| e.details).collect()
}

/// The URL prefix of a region's objects.
fn objects_of(region: &TestRegion) -> String {
    format!("{}/{}/sha512/", region.s3.endpoint, region.s3.bucket)
}

/// Waits until `d` has a copy in both regions; on failure, says why the copies failed.
async fn wait_for_both(app: &TestApp, d: &Digest, a: &str, b: &str) {
    let want = [a.to_owned(), b.to_owned()];
    let deadline = std::time::Instant::now() + COPY_WAIT;
    while instances(app, d).await != want {
        if std::time::Instant::now() > deadline {
            let failed = app.state.db.failed_copies(10).await.unwrap();
            panic!("no copy in both regions within {COPY_WAIT:?}; failed copies: {failed:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_region_is_copied_to_the_other_endpoint_and_served_from_there() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |_| {}).await;
    let data = b"bytes that travel between regions\n".repeat(1000);
    let d = app.upload("r.bin", &data, Visibility::Public).await;
    wait_for_both(&app, &d, &a, &b).await;

    // The copy is announced once, by the transaction that recorded it.
    let token = app.token("admin@example.com", &["*"]);
    let res = app.http().get(app.at("/events?limit=1000")).bearer_auth(&token).send().await.unwrap();
    let feed: serde_json::Value = res.json().await.unwrap();
    let announced: Vec<&serde_json::Value> =
        feed["events"].as_array().unwrap().iter().filter(|e| e["type"] == "org.tooltool.file.replicated").collect();
    assert_eq!(announced.len(), 1, "{feed}");
    let e = announced[0];
    assert_eq!(e["subject"], format!("sha512/{d}"));
    let ev = &e["data"];
    let expected = serde_json::json!([d.as_str(), data.len(), "public", b]);
    assert_eq!(serde_json::json!([ev["digest"], ev["size"], ev["visibility"], ev["region"]]), expected, "{e}");
    assert!(ev["actor"].as_str().unwrap().starts_with("replicator:"), "{e}");

    let in_b = location(&app, &d, Some(&b)).await;
    assert!(in_b.starts_with(&format!("{}{d}?", objects_of(&regions[1]))), "{in_b}");
    assert_eq!(fetch(&in_b).await, data);
    let in_a = location(&app, &d, Some(&a)).await;
    assert!(in_a.starts_with(&objects_of(&regions[0])), "{in_a}");
    assert!(location(&app, &d, None).await.starts_with(&objects_of(&regions[0])), "default: first configured");
    let m = &app.state.metrics;
    assert_eq!((copies(m, &a, &b, "copied"), copies(m, &a, &b, "mismatch")), (1, 0));
    let replicated = audits(&app, "file.replicated").await;
    let put = serde_json::json!({"from": a, "to": b, "size": data.len(), "mode": "put", "parts": 1});
    assert_eq!(replicated, [put]);

    // Uploaded to b with ?region=: its put_url is b's, and the copy goes to a.
    let other = b"uploaded to the second region".to_vec();
    let od = tooltool_e2e::digest_of(&other);
    let body = tooltool_e2e::upload_request("to b", &[("o.bin", &other, Visibility::Public)]);
    let res = app
        .http()
        .post(app.at(&format!("/upload?region={b}")))
        .bearer_auth(app.token("u", &["*"]))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let batch: serde_json::Value = res.json().await.unwrap();
    let put_url = batch["result"]["files"]["o.bin"]["put_url"].as_str().unwrap().to_owned();
    assert!(put_url.starts_with(&format!("{}/{}/staging/", regions[1].s3.endpoint, regions[1].s3.bucket)), "{put_url}");
    app.admin().put_bytes(&put_url, other.clone().into()).await.unwrap();
    app.admin().complete_until_verified(od.as_str(), Duration::from_secs(30)).await.unwrap();
    wait_for_both(&app, &od, &a, &b).await;
    assert_eq!(fetch(&location(&app, &od, Some(&a)).await).await, other);
    assert_eq!((copies(m, &b, &a, "copied"), copies(m, &a, &b, "copied")), (1, 1));
    replicate(&app).await.0.expect("nothing left to copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_between_buckets_of_one_endpoint_are_made_by_the_store() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('A'))], |_| {}).await;
    let data = b"copied server-side, pinned to the hashed ETag\n".repeat(500);
    let d = app.upload("s.bin", &data, Visibility::Public).await;
    wait_for_both(&app, &d, &a, &b).await;
    let in_b = location(&app, &d, Some(&b)).await;
    assert!(in_b.starts_with(&objects_of(&regions[1])), "{in_b}");
    assert_eq!(fetch(&in_b).await, data);
    let replicated = audits(&app, "file.replicated").await;
    let copy = serde_json::json!({"from": a, "to": b, "size": data.len(), "mode": "server-side", "parts": 0});
    assert_eq!(replicated, [copy]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_asking_for_a_stopped_region_go_to_a_healthy_one() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let mut server_a = S3Server::start().await;
    let (app, regions) = spawn_regions(&[(&a, &server_a.endpoint()), (&b, &shared_endpoint('B'))], |_| {}).await;
    let data = b"still served while its first region is down".to_vec();
    let d = app.upload("f.bin", &data, Visibility::Public).await;
    wait_for_both(&app, &d, &a, &b).await;
    assert!(location(&app, &d, Some(&a)).await.starts_with(&objects_of(&regions[0])));

    server_a.stop();
    eventually("downloads asking for a are sent to b", PROBE_WAIT, || async {
        location(&app, &d, Some(&a)).await.starts_with(&objects_of(&regions[1]))
    })
    .await;
    assert_eq!(fetch(&location(&app, &d, Some(&a)).await).await, data);
    assert!(location(&app, &d, None).await.starts_with(&objects_of(&regions[1])));
    assert_eq!(app.state.metrics.region_up.with_label_values(&[&a]).get(), 0);
    let res = app.http().get(app.at("/__heartbeat__")).send().await.unwrap();
    assert_eq!(res.status(), 200, "one region answers");
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["status"], "warning");
    assert_ne!(v["checks"][format!("region:{a}")], "ok");
    assert_eq!(v["checks"][format!("region:{b}")], "ok");
    assert_eq!(v["checks"]["blob_store"], "degraded");
    // The command line asking for the stopped region gets its bytes from the other one.
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest { entries: vec![tooltool_e2e::manifest_entry("f.bin", &data)] };
    manifest.save(&dir.path().join("manifest.tt")).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "-r", &a, "fetch"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);

    server_a.resume().await;
    eventually("downloads asking for a are sent to a again", PROBE_WAIT, || async {
        location(&app, &d, Some(&a)).await.starts_with(&objects_of(&regions[0]))
    })
    .await;
    assert_eq!(app.state.metrics.region_up.with_label_values(&[&a]).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_asks_for_another_region_when_the_storage_it_was_sent_to_fails() {
    // The server probes once an hour here, so it still believes in the stopped region and
    // keeps sending clients there: the client must find the other copy by itself.
    let (a, b) = (unique_region("a"), unique_region("b"));
    let mut server_a = S3Server::start().await;
    let (app, regions) = spawn_regions(&[(&a, &server_a.endpoint()), (&b, &shared_endpoint('B'))], |s| {
        s.region_probe = Duration::from_secs(3600);
    })
    .await;
    let data = b"fetched from the second region when the first one is gone".to_vec();
    let d = app.upload("f.bin", &data, Visibility::Public).await;
    wait_for_both(&app, &d, &a, &b).await;
    server_a.stop();
    assert!(location(&app, &d, Some(&a)).await.starts_with(&objects_of(&regions[0])), "still sent to a");

    let manifest = Manifest { entries: vec![tooltool_e2e::manifest_entry("f.bin", &data)] };
    for asked in [Some(a.as_str()), None] {
        let dir = tempfile::tempdir().unwrap();
        manifest.save(&dir.path().join("manifest.tt")).unwrap();
        let mut args = vec!["--url", app.url.as_str()];
        args.extend(asked.map(|r| ["-r", r]).into_iter().flatten());
        args.push("fetch");
        let (code, out) = tooltool_cli_output(dir.path(), &args).await;
        assert_eq!(code, 0, "asked for {asked:?}:\n{out}");
        assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
        assert!(out.contains(&format!("trying its copy in region {b}")), "asked for {asked:?}:\n{out}");
        assert!(!out.contains("retrying in"), "no backoff while another region holds a copy:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_to_a_stopped_region_is_made_when_it_returns() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let mut server_b = S3Server::start().await;
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &server_b.endpoint())], |_| {}).await;
    server_b.stop();
    eventually("b is seen down", PROBE_WAIT, || async { !app.state.blobs.is_up(&b) }).await;
    let data = b"waits for its second region".to_vec();
    let d = app.upload("w.bin", &data, Visibility::Public).await;

    let err = replicate(&app).await.0.expect_err("b cannot get its copy").to_string();
    assert!(err.contains("1 copies missing") && err.contains(&format!("{b}: 1 files lack a copy")), "{err}");
    assert_eq!(instances(&app, &d).await, [a.as_str()]);

    server_b.resume().await;
    wait_for_both(&app, &d, &a, &b).await;
    let in_b = location(&app, &d, Some(&b)).await;
    assert!(in_b.starts_with(&objects_of(&regions[1])), "{in_b}");
    assert_eq!(fetch(&in_b).await, data);
    replicate(&app).await.0.expect("every copy made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_altered_behind_the_servers_back_are_never_copied() {
    for second_endpoint in ['B', 'A'] {
        let (a, b) = (unique_region("a"), unique_region("b"));
        let (app, regions) =
            spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint(second_endpoint))], |s| {
                s.replication = false
            })
            .await;
        let data = b"the verified bytes".repeat(64);
        let d = app.upload("v.bin", &data, Visibility::Public).await;
        let mut altered = data.clone();
        altered[100] ^= 1;
        let s3 = &regions[0].s3;
        let put = s3.client().put_object().bucket(&s3.bucket).key(format!("sha512/{d}")).body(altered.into());
        put.send().await.expect("alter a's blob");

        let (res, m) = replicate(&app).await;
        let err = res.expect_err("the copy is refused").to_string();
        assert!(err.contains("source does not match"), "{err}");
        assert_eq!(instances(&app, &d).await, [a.as_str()], "endpoint {second_endpoint}");
        assert!(regions[1].s3.keys("sha512/").await.is_empty(), "nothing left in b (endpoint {second_endpoint})");
        assert_eq!((copies(&m, &a, &b, "mismatch"), copies(&m, &a, &b, "copied")), (1, 0));
        let rejected = audits(&app, "file.replication_rejected").await;
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0]["to"], b.as_str());
        let failed = app.state.db.failed_copies(10).await.unwrap();
        assert_eq!((failed.len(), failed[0].region.as_str()), (1, b.as_str()));
        assert!(failed[0].error.contains("does not match"), "{}", failed[0].error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_replicating_at_once_make_each_copy_once() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let (app, _regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |s| {
        s.replication = false;
    })
    .await;
    let mut digests = Vec::new();
    for i in 0..8 {
        let data = format!("file {i} for two replicas\n").repeat(200 + i);
        digests.push(app.upload(&format!("f{i}"), data.as_bytes(), Visibility::Public).await);
    }
    let busy = |s: &mut tooltool_api::Settings| {
        s.replication = true;
        s.replication_interval = Duration::from_millis(100);
    };
    let one = spawn_replica_with(&app, busy).await;
    let two = spawn_replica_with(&app, busy).await;
    for d in &digests {
        wait_for_both(&app, d, &a, &b).await;
    }
    // The two replicas' registries together (the first server does not replicate here).
    let all = |outcome| [&app, &one, &two].iter().map(|r| copies(&r.state.metrics, &a, &b, outcome)).sum::<u64>();
    assert_eq!(copies(&app.state.metrics, &a, &b, "copied"), 0);
    assert_eq!(all("copied"), 8);
    assert_eq!(all("abandoned") + all("failed"), 0, "no copy made twice or lost");
    assert_eq!(audits(&app, "file.replicated").await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_claimed_by_a_replica_that_died_is_made_once_its_lease_runs_out() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let (app, _regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |s| {
        s.replication = false;
    })
    .await;
    let d = app.upload("k.bin", b"claimed by a replica killed mid-copy", Visibility::Public).await;
    let file = app.state.db.file_uncached(&d).await.unwrap().unwrap();
    let now = tooltool_api::time::now();
    let claimed = app.state.db.claim_copy(file.id, &b, "killed-replica", now, now + 2).await.unwrap();
    assert_eq!(claimed.map(|c| c.attempts), Some(0));
    // While the dead replica's lease runs, nobody else may take the copy.
    let (res, m) = replicate(&app).await;
    let err = res.expect_err("the copy is claimed").to_string();
    assert!(err.contains(&format!("{b}: 1 files lack a copy")), "{err}");
    assert_eq!(copies(&m, &a, &b, "copied"), 0);

    let live = spawn_replica_with(&app, |s| s.replication = true).await;
    wait_for_both(&app, &d, &a, &b).await;
    assert_eq!(copies(&live.state.metrics, &a, &b, "copied"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_instances_removes_the_copies_in_every_region() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |_| {}).await;
    let d = app.upload("d.bin", b"to be deleted everywhere", Visibility::Public).await;
    wait_for_both(&app, &d, &a, &b).await;
    let file = app.admin().patch_file(d.as_str(), &[PatchOp::DeleteInstances]).await.unwrap();
    assert!(file.instances.is_empty());
    for region in &regions {
        assert!(region.s3.keys("sha512/").await.is_empty(), "{} still holds the blob", region.name);
    }
    expect_status(app.anonymous().download_redirect(d.as_str(), Some(&b)).await, 404);
    replicate(&app).await.0.expect("a deleted file needs no copy");
    assert!(instances(&app, &d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_cross_endpoints_in_parts_and_only_if_they_hash_right() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    const PART: u64 = 5 * 1024 * 1024;
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |s| {
        s.replication = false;
        s.replication_part_size = PART;
        s.replication_single_put = 2 * PART;
    })
    .await;
    let data: Vec<u8> = (0..(2 * PART + PART / 2)).map(|i| (i % 251) as u8).collect();
    let d = app.upload("big.bin", &data, Visibility::Public).await;
    let bad: Vec<u8> = (0..(3 * PART)).map(|i| (i % 241) as u8).collect();
    let bad_d = app.upload("bad.bin", &bad, Visibility::Public).await;
    let mut altered = bad.clone();
    altered[(3 * PART - 10) as usize] ^= 1;
    let s3a = &regions[0].s3;
    let put = s3a.client().put_object().bucket(&s3a.bucket).key(format!("sha512/{bad_d}")).body(altered.into());
    put.send().await.expect("alter a's blob");

    let (res, m) = replicate(&app).await;
    let err = res.expect_err("the altered blob is refused").to_string();
    assert!(err.contains("source does not match") && err.contains(bad_d.as_str()), "{err}");
    assert_eq!(instances(&app, &d).await, [a.clone(), b.clone()], "{err}");
    assert_eq!(instances(&app, &bad_d).await, [a.as_str()]);
    assert_eq!(fetch(&location(&app, &d, Some(&b)).await).await, data);
    let replicated = audits(&app, "file.replicated").await;
    let parts = serde_json::json!({"from": a, "to": b, "size": data.len(), "mode": "multipart", "parts": 3});
    assert_eq!(replicated, [parts]);
    assert_eq!(regions[1].s3.keys("").await, [format!("sha512/{d}")], "no staged parts, no bad copy");
    assert_eq!((copies(&m, &a, &b, "copied"), copies(&m, &a, &b, "mismatch")), (1, 1));
}

/// Up to the largest single PUT, a copy across endpoints is one PUT straight to the final key,
/// streamed while hashed, its last chunk held back until the whole is proven: a source altered
/// early, one altered in its very last byte, and one cut short are each refused, and the target
/// bucket holds nothing of them (no partial object, no staging leftover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_copy_publishes_only_bytes_that_hashed_right() {
    let (a, b) = (unique_region("a"), unique_region("b"));
    let (app, regions) = spawn_regions(&[(&a, &shared_endpoint('A')), (&b, &shared_endpoint('B'))], |s| {
        s.replication = false;
    })
    .await;
    const SIZE: usize = 6 * 1024 * 1024 + 17;
    let blob = |seed: u8| -> Vec<u8> { (0..SIZE).map(|i| (i % 249) as u8 ^ seed).collect() };
    let good = blob(0);
    let d = app.upload("good.bin", &good, Visibility::Public).await;
    let s3a = &regions[0].s3;
    let mut bad = Vec::new();
    for (seed, alter) in [(1u8, "early"), (2, "last byte"), (3, "cut short")] {
        let data = blob(seed);
        let bd = app.upload(&format!("{seed}.bin"), &data, Visibility::Public).await;
        let mut altered = data.clone();
        match alter {
            "early" => altered[100] ^= 1,
            "last byte" => altered[SIZE - 1] ^= 1,
            _ => altered.truncate(SIZE - 1000),
        }
        let put = s3a.client().put_object().bucket(&s3a.bucket).key(format!("sha512/{bd}")).body(altered.into());
        put.send().await.expect("alter a's blob");
        bad.push(bd);
    }

    let (res, m) = replicate(&app).await;
    let err = res.expect_err("the altered blobs are refused").to_string();
    for bd in &bad {
        assert!(err.contains(bd.as_str()), "{err}");
        assert_eq!(instances(&app, bd).await, [a.as_str()]);
    }
    assert_eq!(instances(&app, &d).await, [a.clone(), b.clone()], "{err}");
    assert_eq!(fetch(&location(&app, &d, Some(&b)).await).await, good);
    let put = serde_json::json!({"from": a, "to": b, "size": SIZE, "mode": "put", "parts": 1});
    assert_eq!(audits(&app, "file.replicated").await, [put]);
    assert_eq!(regions[1].s3.keys("").await, [format!("sha512/{d}")], "nothing of the refused copies");
    assert_eq!((copies(&m, &a, &b, "copied"), copies(&m, &a, &b, "mismatch")), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_keeps_its_one_local_region() {
    let app = TestApp::spawn(Backend::Embedded).await;
    assert_eq!(app.state.blobs.region_names(), ["local"]);
    let d = app.upload("l.bin", b"local only", Visibility::Public).await;
    assert_eq!(instances(&app, &d).await, ["local"]);
    let v: serde_json::Value = app.http().get(app.at("/__heartbeat__")).send().await.unwrap().json().await.unwrap();
    assert_eq!((v["status"].as_str(), v["checks"]["region:local"].as_str()), (Some("ok"), Some("ok")));
    replicate(&app).await.0.expect("one region: nothing to copy");
}
