//! The download lookup cache on PostgreSQL, across replicas: a change made on one replica
//! reaches the others through the database's change notification, a write that bypasses the
//! notification is served from the cache until the maximum age (so the cache is really used),
//! and a replica whose listener is lost reads the database until it listens again, then
//! forgets everything it had cached.
//!
//! Waits are bounded polls, never timing assertions. The maximum age is an hour wherever only
//! the notification may make a change visible.

use std::future::Future;
use std::time::Duration;

use tooltool_e2e::proto::{PatchOp, Visibility};
use tooltool_e2e::{Backend, TestApp};

const NO_MAX_AGE: Duration = Duration::from_secs(3600);

async fn pg_replicas(max_age: Duration) -> (TestApp, TestApp) {
    let a = TestApp::spawn_with(Backend::PostgresS3, |s| s.lookup_max_age = max_age).await;
    let b = a.spawn_replica().await;
    for app in [&a, &b] {
        until(|| async { app.state.db.lookup_cache_active() }, "the replica's change listener connects").await;
    }
    (a, b)
}

/// Polls `check` every 10 ms until it holds; panics after 10 s.
async fn until<F: Future<Output = bool>>(mut check: impl FnMut() -> F, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The status of an anonymous download on `app`.
async fn status(app: &TestApp, digest: &str) -> u16 {
    app.http().get(app.at(&format!("/sha512/{digest}"))).send().await.unwrap().status().as_u16()
}

async fn raw_sql(app: &TestApp, sql: &str) {
    let pool = sqlx::PgPool::connect(&app.settings.database_url).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_replica_reach_the_other_through_the_notification() {
    let (a, b) = pg_replicas(NO_MAX_AGE).await;
    let d = a.upload("flip.bin", b"flipped between replicas", Visibility::Internal).await;
    let d = d.as_str();
    assert_eq!(status(&b, d).await, 403, "B caches the internal file");
    let admin = a.admin();
    for (visibility, expected) in [(Visibility::Public, 302), (Visibility::Internal, 403)] {
        admin.patch_file(d, &[PatchOp::SetVisibility { visibility }]).await.unwrap();
        assert_eq!(status(&a, d).await, expected, "the replica that made the change serves it at once");
        until(|| async { status(&b, d).await == expected }, &format!("B answers {expected}")).await;
    }
    admin.patch_file(d, &[PatchOp::SetVisibility { visibility: Visibility::Public }]).await.unwrap();
    until(|| async { status(&b, d).await == 302 }, "B serves the public file").await;

    // Delete and upload again go through the same path.
    admin.patch_file(d, &[PatchOp::DeleteInstances]).await.unwrap();
    assert_eq!(status(&a, d).await, 404);
    until(|| async { status(&b, d).await == 404 }, "B forgets the deleted copies").await;
    a.upload("flip.bin", b"flipped between replicas", Visibility::Public).await;
    until(|| async { status(&b, d).await == 302 }, "B serves the uploaded-again file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_bypasses_the_notification_is_served_from_the_cache_until_the_max_age() {
    let (a, b) = pg_replicas(Duration::from_secs(5)).await;
    let d = a.upload("stale.bin", b"cached on postgres", Visibility::Internal).await;
    let pool = sqlx::PgPool::connect(&a.settings.database_url).await.unwrap();
    assert_eq!(status(&b, d.as_str()).await, 403);
    sqlx::query("UPDATE files SET visibility = 'public' WHERE digest = $1")
        .bind(d.as_str())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(status(&b, d.as_str()).await, 403, "no notification: B answers from its cache");
    until(|| async { status(&b, d.as_str()).await == 302 }, "the cached answer ages out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_listener_is_lost_reads_the_database_and_forgets_its_cache_on_return() {
    let (a, b) = pg_replicas(NO_MAX_AGE).await;
    let d = a.upload("lost.bin", b"listener killed", Visibility::Internal).await;
    let d = d.as_str();
    assert_eq!(status(&b, d).await, 403, "B caches the internal file");

    let name = b.state.db.listener_name().expect("a PostgreSQL replica has a listener").to_owned();
    let killed = sqlx::query_scalar::<_, bool>(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&sqlx::PgPool::connect(&a.settings.database_url).await.unwrap())
    .await
    .unwrap();
    assert_eq!(killed, [true], "exactly B's listener is terminated");
    until(|| async { !b.state.db.lookup_cache_active() }, "B notices its listener is gone").await;

    // A change no notification will ever announce: B must not serve its cached 403.
    raw_sql(&a, &format!("UPDATE files SET visibility = 'public' WHERE digest = '{d}'")).await;
    assert_eq!(status(&b, d).await, 302, "B reads the database (or has listened again and forgotten its cache)");
    until(|| async { b.state.db.lookup_cache_active() }, "B listens again").await;
    assert_eq!(status(&b, d).await, 302, "nothing cached before the loss is served after it");

    // Listening again, B caches again: a change announced by nobody is now served stale.
    raw_sql(&a, &format!("UPDATE files SET visibility = 'internal' WHERE digest = '{d}'")).await;
    assert_eq!(status(&b, d).await, 302, "served from the cache rebuilt after the listener returned");
}
