//! Events: every change records its event in the same transaction (the outbox), the feed
//! `GET /events` shows each caller what it may see and long-polls, and `events tail` reads it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tooltool_e2e::proto::{Digest, Event, EventData, EventFile, EventPage, EventType, PatchOp, Visibility};
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, expect_status, upload_request};

backend_tests!(
    every_change_records_one_event_with_the_exact_envelope,
    the_feed_shows_each_caller_only_what_it_may_see,
    the_feed_pages_with_after_and_limit,
    a_long_poll_returns_as_soon_as_an_event_commits,
    a_long_poll_without_events_answers_empty_at_the_deadline,
    a_wait_over_30_seconds_is_refused,
    a_failed_transaction_leaves_no_event,
    invalid_credentials_on_the_feed_are_401,
    events_tail_reads_every_event_oldest_first,
);

/// `GET /events` with these query parameters, as the holder of `token` (anonymous if none).
async fn feed(app: &TestApp, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut req = app.http().get(app.at(&format!("/events?{query}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("GET /events")
}

/// The page of a successful `GET /events`.
async fn page(app: &TestApp, token: Option<&str>, query: &str) -> EventPage {
    let res = feed(app, token, query).await;
    assert_eq!(res.status(), 200, "GET /events?{query}");
    res.json().await.expect("an event page")
}

/// Every event, as a caller holding every scope sees them.
pub async fn all_events(app: &TestApp) -> Vec<Event> {
    page(app, Some(&app.token("admin@example.com", &["*"])), "limit=1000").await.events
}

fn types(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.kind).collect()
}

/// Asserts the envelope members the server chooses (id, time) are well formed and that every
/// other member is exactly `expected`'s.
#[track_caller]
pub fn assert_envelope(actual: &Event, expected_kind: EventType, subject: &str, data: EventData, source: &str) {
    let id = uuid::Uuid::parse_str(&actual.id).expect("the id is a UUID");
    assert_eq!(id.get_version_num(), 4, "a random UUID");
    assert!(
        actual.time.len() == 20 && actual.time.ends_with('Z') && actual.time.as_bytes()[10] == b'T',
        "RFC 3339 UTC time: {}",
        actual.time
    );
    let expected = Event {
        specversion: "1.0".into(),
        id: actual.id.clone(),
        source: source.into(),
        kind: expected_kind,
        time: actual.time.clone(),
        subject: subject.into(),
        datacontenttype: "application/json".into(),
        data,
        seq: actual.seq,
    };
    assert_eq!(actual, &expected);
}

fn file_data(actor: &str, digest: &Digest, size: u64, visibility: Visibility) -> EventData {
    EventData {
        actor: actor.into(),
        digest: Some(digest.clone()),
        size: Some(size),
        visibility: Some(visibility),
        ..Default::default()
    }
}

/// What the local store and S3 call the region of these tests.
pub fn region(app: &TestApp) -> &'static str {
    match app.backend {
        Backend::Embedded => "local",
        Backend::PostgresS3 => "us-east-1",
    }
}

/// Makes one change of every kind the server knows (all but `file.replicated`, which needs
/// regions); returns the digests of the public file and the rejected one.
pub async fn one_change_of_each_kind(app: &TestApp) -> (Digest, Digest) {
    let public = app.upload("pub.bin", b"public bytes", Visibility::Public).await;
    let admin = app.admin();
    admin.patch_file(public.as_str(), &[PatchOp::SetVisibility { visibility: Visibility::Internal }]).await.unwrap();
    admin.patch_file(public.as_str(), &[PatchOp::DeleteInstances]).await.unwrap();
    let good = b"twelve bytes";
    let batch = admin.upload_batch(&upload_request("bad", &[("bad.bin", good, Visibility::Public)])).await.unwrap();
    admin.put_bytes(batch.files["bad.bin"].put_url.as_ref().unwrap(), Bytes::from_static(b"twelve")).await.unwrap();
    expect_status(admin.complete(digest_of(good).as_str()).await, 400);
    let ops = app.admin_ops().await;
    ops.create_client("ci@example.com", &["download/*".into()], Duration::from_secs(3600), "ci", "admin-cli:t")
        .await
        .unwrap();
    ops.rotate_client("ci@example.com", "admin-cli:t").await.unwrap();
    ops.revoke_client("ci@example.com", "admin-cli:t").await.unwrap();
    (public, digest_of(good))
}

async fn every_change_records_one_event_with_the_exact_envelope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (public, rejected) = one_change_of_each_kind(&app).await;
    let events = all_events(&app).await;
    use EventType::*;
    assert_eq!(
        types(&events),
        [
            BatchUploaded,
            FileVerified,
            FileVisibilityChanged,
            FileInstancesDeleted,
            BatchUploaded,
            FileRejected,
            ClientCreated,
            ClientRotated,
            ClientRevoked
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "seq grows");
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "ids are unique");

    let src = app.url.as_str();
    let admin = "admin@example.com";
    let size = b"public bytes".len() as u64;
    let subject = format!("sha512/{public}");
    let files = |name: &str, d: &Digest, size: u64| {
        Some(vec![EventFile { filename: name.into(), digest: d.clone(), size, visibility: Visibility::Public }])
    };
    let batch_data = |id: i64, message: &str, files| EventData {
        actor: admin.into(),
        batch_id: Some(id),
        message: Some(message.into()),
        files,
        ..Default::default()
    };
    let first_batch = events[0].data.batch_id.expect("a batch id");
    assert_envelope(
        &events[0],
        BatchUploaded,
        &format!("batch/{first_batch}"),
        batch_data(first_batch, "test upload", files("pub.bin", &public, size)),
        src,
    );
    let verified =
        EventData { region: Some(region(&app).into()), ..file_data(admin, &public, size, Visibility::Public) };
    assert_envelope(&events[1], FileVerified, &subject, verified, src);
    let changed = EventData {
        old_visibility: Some(Visibility::Public),
        new_visibility: Some(Visibility::Internal),
        ..file_data(admin, &public, size, Visibility::Internal)
    };
    assert_envelope(&events[2], FileVisibilityChanged, &subject, changed, src);
    let deleted =
        EventData { regions: Some(vec![region(&app).into()]), ..file_data(admin, &public, size, Visibility::Internal) };
    assert_envelope(&events[3], FileInstancesDeleted, &subject, deleted, src);
    let second_batch = events[4].data.batch_id.expect("a batch id");
    assert!(second_batch > first_batch);
    assert_envelope(
        &events[4],
        BatchUploaded,
        &format!("batch/{second_batch}"),
        batch_data(second_batch, "bad", files("bad.bin", &rejected, 12)),
        src,
    );
    let reason = events[5].data.reason.clone().expect("a reason");
    assert!(reason.contains("size"), "{reason}");
    let rejection = EventData {
        region: Some(region(&app).into()),
        reason: Some(reason),
        ..file_data(admin, &rejected, 12, Visibility::Public)
    };
    assert_envelope(&events[5], FileRejected, &format!("sha512/{rejected}"), rejection, src);
    let client = |generation: Option<i64>, scopes: Option<Vec<String>>| EventData {
        actor: "admin-cli:t".into(),
        client_id: Some("ci@example.com".into()),
        generation,
        scopes,
        ..Default::default()
    };
    let subject = "client/ci@example.com";
    // Admin commands run outside the server: their source is the configured address.
    let admin_src = format!("http://127.0.0.1:{}", app.settings.port);
    assert_envelope(
        &events[6],
        ClientCreated,
        subject,
        client(Some(1), Some(vec![TestApp::scope("download/*")])),
        &admin_src,
    );
    assert_envelope(&events[7], ClientRotated, subject, client(Some(2), None), &admin_src);
    assert_envelope(&events[8], ClientRevoked, subject, client(None, None), &admin_src);

    // The wire form: exactly the CloudEvents members plus seq, data without absent members.
    let raw: serde_json::Value = feed(&app, Some(&app.token("a", &["*"])), "limit=1").await.json().await.expect("JSON");
    let first = &raw["events"][0];
    let mut keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["data", "datacontenttype", "id", "seq", "source", "specversion", "subject", "time", "type"]);
    assert_eq!(first["type"], "org.tooltool.batch.uploaded");
    assert_eq!(raw["next"], first["seq"]);
    let data_keys: Vec<&str> = first["data"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(data_keys.len(), 4, "actor, batch_id, message, files: {data_keys:?}");
}

async fn the_feed_shows_each_caller_only_what_it_may_see(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let public = app.upload("p.bin", b"public", Visibility::Public).await;
    let internal = app.upload("i.bin", b"internal", Visibility::Internal).await;
    app.admin_ops().await.create_client("c", &["manage".into()], Duration::from_secs(60), "", "t").await.unwrap();
    // A public file made internal: only those who may see internal files hear of it.
    app.admin()
        .patch_file(public.as_str(), &[PatchOp::SetVisibility { visibility: Visibility::Internal }])
        .await
        .unwrap();

    let subjects =
        |events: &[Event]| -> Vec<(EventType, String)> { events.iter().map(|e| (e.kind, e.subject.clone())).collect() };
    let p = format!("sha512/{public}");
    let i = format!("sha512/{internal}");
    let anonymous = page(&app, None, "").await.events;
    assert_eq!(subjects(&anonymous)[1..], [(EventType::FileVerified, p.clone())]);
    assert_eq!(anonymous[0].kind, EventType::BatchUploaded);
    assert_eq!(anonymous.len(), 2);

    let internal_reader = app.token("r", &["download/internal"]);
    let seen = page(&app, Some(&internal_reader), "").await.events;
    assert_eq!(
        subjects(&seen)[1..],
        [(EventType::FileVerified, i.clone()), (EventType::FileVisibilityChanged, p.clone())]
    );
    assert_eq!(seen[0].kind, EventType::BatchUploaded);
    assert_eq!(seen[0].data.files.as_ref().unwrap()[0].visibility, Visibility::Internal);

    let manager = app.token("m", &["manage"]);
    let seen = page(&app, Some(&manager), "").await.events;
    assert_eq!(subjects(&seen), [(EventType::ClientCreated, "client/c".to_owned())]);

    assert_eq!(all_events(&app).await.len(), 6);

    let uploader = app.token("u", &["upload/public"]);
    assert_eq!(feed(&app, Some(&uploader), "").await.status(), 403);
    // Without anonymous public downloads, an anonymous caller sees nothing either.
    let closed = TestApp::spawn_with(backend, |s| s.anonymous_public_download = false).await;
    assert_eq!(feed(&closed, None, "").await.status(), 403);
}

async fn the_feed_pages_with_after_and_limit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for n in 0..3 {
        app.upload(&format!("f{n}"), format!("file {n}").as_bytes(), Visibility::Public).await;
    }
    let all = all_events(&app).await;
    assert_eq!(all.len(), 6);
    let token = app.token("a", &["*"]);
    let first = page(&app, Some(&token), "limit=4").await;
    assert_eq!(first.events, all[..4]);
    assert_eq!(first.next, all[3].seq);
    let rest = page(&app, Some(&token), &format!("after={}&limit=4", first.next)).await;
    assert_eq!(rest.events, all[4..]);
    let none = page(&app, Some(&token), &format!("after={}", rest.next)).await;
    assert!(none.events.is_empty());
    assert_eq!(none.next, rest.next, "an empty page keeps the cursor");
}

async fn a_long_poll_returns_as_soon_as_an_event_commits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // On PostgreSQL the event commits on another replica: the poll must see it by reading the
    // table, not only through this process's wake-up.
    let writer = if backend == Backend::PostgresS3 { Some(app.spawn_replica().await) } else { None };
    let writer = writer.as_ref().unwrap_or(&app);
    let token = app.token("a", &["*"]);
    let started = Instant::now();
    let poll = tokio::spawn({
        let req = app.http().get(app.at("/events?wait=20")).bearer_auth(&token);
        async move { req.send().await.unwrap().json::<EventPage>().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "a long poll without events waits");
    writer.upload("late.bin", b"late", Visibility::Public).await;
    let got = poll.await.unwrap();
    assert_eq!(got.events[0].kind, EventType::BatchUploaded);
    assert!(started.elapsed() < Duration::from_secs(15), "answered before its deadline: {:?}", started.elapsed());
}

async fn a_long_poll_without_events_answers_empty_at_the_deadline(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.upload("x", b"x", Visibility::Internal).await;
    let started = Instant::now();
    // Anonymous callers do not see the internal events: they wait for the whole second.
    let got = page(&app, None, "wait=1").await;
    assert!(got.events.is_empty());
    assert_eq!(got.next, 0);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
}

async fn a_wait_over_30_seconds_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = feed(&app, None, "wait=31").await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid-query");
    assert_eq!(body["detail"], "wait must be between 0 and 30 seconds");
}

async fn a_failed_transaction_leaves_no_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.upload("known", b"known", Visibility::Public).await;
    let before = all_events(&app).await;
    // The second file contradicts the stored one: the whole batch is refused, rolled back.
    let req =
        upload_request("m", &[("new", b"new file", Visibility::Public), ("known", b"known", Visibility::Internal)]);
    let p = expect_status(app.admin().upload_batch(&req).await, 400);
    assert_eq!(p.code.as_deref(), Some("conflict"));
    assert_eq!(all_events(&app).await, before);
    expect_status(app.admin().get_file(digest_of(b"new file").as_str()).await, 404);
}

async fn invalid_credentials_on_the_feed_are_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(feed(&app, Some("not-a-token"), "").await.status(), 401);
}

async fn events_tail_reads_every_event_oldest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.upload("x", b"x", Visibility::Internal).await;
    app.admin_ops().await.create_client("c", &["manage".into()], Duration::from_secs(60), "", "t").await.unwrap();
    let ops = app.admin_ops().await;
    let all = ops.events(0, 1000).await.unwrap();
    assert_eq!(all, all_events(&app).await);
    assert_eq!(types(&all), [EventType::BatchUploaded, EventType::FileVerified, EventType::ClientCreated]);
    assert_eq!(ops.events(all[1].seq, 1000).await.unwrap(), all[2..]);
}
