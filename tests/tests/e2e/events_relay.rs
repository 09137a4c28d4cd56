//! The RabbitMQ relay: every event reaches the broker once in normal operation, with the exact
//! envelope and routing; none is lost while the broker is down or when a relay dies between
//! publishing and marking; one relay at a time across replicas; the broker is a warning on the
//! heartbeat; retention. Needs the RabbitMQ node of `scripts/test.sh` (except where noted).

use std::collections::HashSet;
use std::time::Duration;

use tooltool_e2e::broker::{self, BROKER, Message, Tap};
use tooltool_e2e::proto::{Event, Visibility};
use tooltool_e2e::tooltool_api::relay::{Relay, RelayHealth, RelayState};
use tooltool_e2e::tooltool_api::settings::Secret;
use tooltool_e2e::{Backend, TestApp, backend_tests};

use crate::events::{all_events, one_change_of_each_kind};

backend_tests!(
    every_event_is_published_once_with_the_exact_envelope_and_routing_key,
    events_recorded_while_the_broker_is_down_arrive_in_order_once_it_returns,
    a_relay_killed_between_publish_and_mark_republishes_and_loses_nothing,
    an_unreachable_broker_is_a_heartbeat_warning_and_downloads_still_work,
    retention_removes_old_events_but_never_unpublished_ones,
);

/// How long a test waits for the relay (covers the longest retry backoff and a broker start).
const RELAY_WAIT: Duration = Duration::from_secs(45);

async fn spawn_relaying(backend: Backend, tap: &Tap) -> TestApp {
    let exchange = tap.exchange().to_owned();
    TestApp::spawn_with(backend, move |s| {
        s.amqp_url = Some(Secret::new(broker::url()));
        s.amqp_exchange = exchange;
    })
    .await
}

async fn metric(app: &TestApp, name: &str) -> Option<i64> {
    let text = app.http().get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(&format!("tooltool_{name} "))).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls `check` every 100 ms until it holds, panicking after `limit`.
async fn eventually<F: std::future::Future<Output = bool>>(limit: Duration, what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events of `messages`, first occurrence of each id only.
fn first_of_each(messages: &[Message]) -> Vec<Event> {
    let mut seen = HashSet::new();
    messages.iter().filter(|m| seen.insert(m.event.id.clone())).map(|m| m.event.clone()).collect()
}

fn has_all(events: &[Event]) -> impl Fn(&[Message]) -> bool + '_ {
    |got| {
        let ids: HashSet<&str> = got.iter().map(|m| m.event.id.as_str()).collect();
        events.iter().all(|e| ids.contains(e.id.as_str()))
    }
}

async fn every_event_is_published_once_with_the_exact_envelope_and_routing_key(backend: Backend) {
    let _up = BROKER.read().await;
    let tap = Tap::new().await;
    let app = spawn_relaying(backend, &tap).await;
    one_change_of_each_kind(&app).await;
    let feed = all_events(&app).await;
    assert_eq!(feed.len(), 9);
    let got = tap.take(feed.len(), RELAY_WAIT).await;
    let keys: Vec<&str> = got.iter().map(|m| m.routing_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "batch.uploaded.public",
            "file.verified.public",
            "file.visibility_changed.internal",
            "file.instances_deleted.internal",
            "batch.uploaded.public",
            "file.rejected.public",
            "client.created",
            "client.rotated",
            "client.revoked",
        ]
    );
    for (m, e) in got.iter().zip(&feed) {
        assert_eq!(&m.event, e, "the message is the feed's event");
        assert_eq!(m.message_id.as_deref(), Some(e.id.as_str()));
        assert_eq!(m.content_type.as_deref(), Some("application/cloudevents+json"));
        assert_eq!(m.delivery_mode, Some(2), "persistent");
    }
    eventually(RELAY_WAIT, "every event is marked published", || async {
        metric(&app, "events_pending").await == Some(0)
    })
    .await;
    assert!(tap.rest(Duration::from_secs(1)).await.is_empty(), "each event once");
    let beat: serde_json::Value = app.http().get(app.at("/__heartbeat__")).send().await.unwrap().json().await.unwrap();
    assert_eq!(beat["checks"]["broker"], "ok");
    assert_eq!(beat["status"], "ok");
}

async fn events_recorded_while_the_broker_is_down_arrive_in_order_once_it_returns(backend: Backend) {
    let _alone = BROKER.write().await;
    let tap = Tap::new().await;
    let app = spawn_relaying(backend, &tap).await;
    let first = app.upload("before", b"before the outage", Visibility::Public).await;
    let mut got = tap.take(2, RELAY_WAIT).await;
    eventually(RELAY_WAIT, "the first events are marked", || async { metric(&app, "events_pending").await == Some(0) })
        .await;

    broker::stop().await;
    let restart = RestartOnPanic;
    app.upload("during-1", b"during the outage 1", Visibility::Internal).await;
    app.upload("during-2", b"during the outage 2", Visibility::Public).await;
    app.admin_ops().await.create_client("c", &["manage".into()], Duration::from_secs(60), "", "t").await.unwrap();
    // Downloads never wait for the broker.
    assert_eq!(app.anonymous().download_redirect(first.as_str(), None).await.unwrap().status, 302);
    eventually(RELAY_WAIT, "the relay notices the broker is gone", || async {
        let beat: serde_json::Value =
            app.http().get(app.at("/__heartbeat__")).send().await.unwrap().json().await.unwrap();
        beat["checks"]["broker"] == "unavailable" && beat["status"] == "warning"
    })
    .await;
    assert_eq!(metric(&app, "events_pending").await, Some(5), "the outbox keeps every event");
    assert!(metric(&app, "events_oldest_pending_age_seconds").await.is_some());

    drop(restart);
    broker::start().await;
    let feed = all_events(&app).await;
    assert_eq!(feed.len(), 7);
    got.extend(tap.take_until(RELAY_WAIT, has_all(&feed[2..])).await);
    let delivered = first_of_each(&got);
    assert_eq!(delivered, feed, "every event, in order");
    eventually(RELAY_WAIT, "every event is marked published", || async {
        metric(&app, "events_pending").await == Some(0)
    })
    .await;
}

/// Starts the broker again if the test panics while it is stopped, so that the other broker
/// tests do not fail because of this one.
struct RestartOnPanic;

impl Drop for RestartOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::process::Command::new(std::env::var("TOOLTOOL_TEST_RABBITMQCTL").unwrap_or_default())
                .env("HOME", std::env::var("TOOLTOOL_TEST_RABBITMQ_HOME").unwrap_or_default())
                .args(["-q", "-n", &std::env::var("RABBITMQ_NODENAME").unwrap_or_default(), "start_app"])
                .status();
        }
    }
}

async fn a_relay_killed_between_publish_and_mark_republishes_and_loses_nothing(backend: Backend) {
    let _up = BROKER.read().await;
    let tap = Tap::new().await;
    // No relay of its own: the test runs them.
    let app = TestApp::spawn(backend).await;
    app.upload("a", b"first", Visibility::Public).await;
    app.upload("b", b"second", Visibility::Internal).await;
    let feed = all_events(&app).await;
    assert_eq!(feed.len(), 4);
    let relay =
        |db| Relay::new(db, Secret::new(broker::url()), tap.exchange(), RelayHealth::default(), Default::default());
    let crashed = tokio::time::timeout(RELAY_WAIT, relay(app.state.db.clone()).crash_after_publishing().run()).await;
    assert!(crashed.expect("the faulty relay stops").is_err());
    let published = tap.take(4, RELAY_WAIT).await;
    assert_eq!(first_of_each(&published), feed);
    assert_eq!(app.state.db.outbox_backlog().await.unwrap().0, 4, "published but never marked");

    let resumed = tokio::spawn(relay(app.state.db.clone()).run());
    let again = tap.take(4, RELAY_WAIT).await;
    let again: Vec<Event> = again.into_iter().map(|m| m.event).collect();
    assert_eq!(again, feed, "the same events, same ids, again: a duplicate, not a loss");
    eventually(RELAY_WAIT, "the resumed relay marks them", || async {
        app.state.db.outbox_backlog().await.unwrap().0 == 0
    })
    .await;
    assert!(tap.rest(Duration::from_secs(1)).await.is_empty());
    resumed.abort();
}

/// Two replicas on one database: one relays, the other stands by, and each event is published
/// once, wherever it was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_relay_one_at_a_time_and_publish_each_event_once() {
    let _up = BROKER.read().await;
    let tap = Tap::new().await;
    let a = spawn_relaying(Backend::PostgresS3, &tap).await;
    let b = a.spawn_replica().await;
    let states = || [a.state.relay.get(), b.state.relay.get()];
    eventually(RELAY_WAIT, "one replica relays and the other stands by", || async {
        let mut s = states();
        s.sort_by_key(|s| *s as u8);
        s == [RelayState::Standby, RelayState::Connected]
    })
    .await;
    a.upload("on-a", b"recorded on a", Visibility::Public).await;
    b.upload("on-b", b"recorded on b", Visibility::Internal).await;
    let feed = all_events(&a).await;
    assert_eq!(feed.len(), 4);
    let got = tap.take(4, RELAY_WAIT).await;
    assert_eq!(got.into_iter().map(|m| m.event).collect::<Vec<_>>(), feed);
    assert!(tap.rest(Duration::from_secs(2)).await.is_empty(), "no event twice");
    let mut s = states();
    s.sort_by_key(|s| *s as u8);
    assert_eq!(s, [RelayState::Standby, RelayState::Connected], "still one relay");
}

/// The relay dies (its task ends, closing the lock's connection): the replica standing by
/// takes over, and the events recorded after go out through it, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_relay_dies_a_standing_by_replica_takes_over() {
    let _up = BROKER.read().await;
    let tap = Tap::new().await;
    // No relay of its own: the test runs two, as two replicas would.
    let app = TestApp::spawn(Backend::PostgresS3).await;
    let relay = |health: &RelayHealth| {
        Relay::new(
            app.state.db.clone(),
            Secret::new(broker::url()),
            tap.exchange(),
            health.clone(),
            app.state.metrics.clone(),
        )
        .run()
    };
    let (first, second) = (RelayHealth::default(), RelayHealth::default());
    let leader = tokio::spawn(relay(&first));
    eventually(RELAY_WAIT, "the first relay leads", || async { first.get() == RelayState::Connected }).await;
    let standby = tokio::spawn(relay(&second));
    eventually(RELAY_WAIT, "the second stands by", || async { second.get() == RelayState::Standby }).await;
    app.upload("one", b"through the first relay", Visibility::Public).await;
    let mut got = tap.take(2, RELAY_WAIT).await;
    // Delivery is at least once: a relay killed between the broker's confirm and marking the
    // events published would rightly send them again. Killed after marking them, nothing repeats.
    let db = &app.state.db;
    eventually(RELAY_WAIT, "the first relay marked its events published", || async {
        db.unpublished_events(10).await.is_ok_and(|e| e.is_empty())
    })
    .await;

    leader.abort();
    eventually(RELAY_WAIT, "the second relay takes over", || async { second.get() == RelayState::Connected }).await;
    app.upload("two", b"through the second relay", Visibility::Public).await;
    got.extend(tap.take(2, RELAY_WAIT).await);
    let delivered: Vec<Event> = got.into_iter().map(|m| m.event).collect();
    assert_eq!(delivered, all_events(&app).await);
    assert!(tap.rest(Duration::from_secs(1)).await.is_empty(), "each event once");
    standby.abort();
}

/// Needs no broker: the URL points at a closed port.
async fn an_unreachable_broker_is_a_heartbeat_warning_and_downloads_still_work(backend: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app =
        TestApp::spawn_with(backend, |s| s.amqp_url = Some(Secret::new(format!("amqp://127.0.0.1:{closed}/%2f"))))
            .await;
    let d = app.upload("f", b"no broker needed", Visibility::Public).await;
    assert_eq!(app.anonymous().download_redirect(d.as_str(), None).await.unwrap().status, 302);
    eventually(Duration::from_secs(20), "the relay gives up a first time", || async {
        app.state.relay.get() == RelayState::Unavailable
    })
    .await;
    let res = app.http().get(app.at("/__heartbeat__")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let beat: serde_json::Value = res.json().await.unwrap();
    assert_eq!(beat["status"], "warning");
    assert_eq!(beat["checks"]["broker"], "unavailable");
    assert_eq!(beat["checks"]["database"], "ok");
    assert_eq!(metric(&app, "events_pending").await, Some(2));
}

/// Needs no broker.
async fn retention_removes_old_events_but_never_unpublished_ones(backend: Backend) {
    let feed_only = TestApp::spawn_with(backend, |s| s.events_retention = Duration::ZERO).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let relaying = TestApp::spawn_with(backend, |s| {
        s.events_retention = Duration::ZERO;
        s.amqp_url = Some(Secret::new(format!("amqp://127.0.0.1:{closed}/%2f")));
    })
    .await;
    for app in [&feed_only, &relaying] {
        app.upload("f", b"kept a while", Visibility::Public).await;
        assert_eq!(all_events(app).await.len(), 2);
    }
    // Events are stamped in whole seconds: let a second pass so they are older than "now".
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for app in [&feed_only, &relaying] {
        tooltool_e2e::tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap();
    }
    assert!(all_events(&feed_only).await.is_empty(), "without a broker the feed is their only reader");
    assert_eq!(all_events(&relaying).await.len(), 2, "never published: kept");
}
