//! The test RabbitMQ node that `scripts/test.sh` starts (`TOOLTOOL_TEST_AMQP_URL`): a tap that
//! reads what the relay publishes, and stopping and starting the broker. Without the node these
//! tests fail loudly, they never skip.

use std::time::Duration;

use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::RwLock;

use crate::app::required_env;
use crate::proto::Event;

/// Tests that need the broker up hold it shared; a test that stops it holds it alone.
pub static BROKER: RwLock<()> = RwLock::const_new(());

/// The broker's URL.
pub fn url() -> String {
    required_env("TOOLTOOL_TEST_AMQP_URL")
}

async fn rabbitmqctl(command: &str) {
    let status = tokio::process::Command::new(required_env("TOOLTOOL_TEST_RABBITMQCTL"))
        .env("HOME", required_env("TOOLTOOL_TEST_RABBITMQ_HOME"))
        .args(["-q", "-n", &required_env("RABBITMQ_NODENAME"), command])
        .status()
        .await
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {command} failed: {status}");
}

/// Stops the broker application (connections drop, the port closes; durable state stays).
pub async fn stop() {
    rabbitmqctl("stop_app").await;
}

/// Starts it again.
pub async fn start() {
    rabbitmqctl("start_app").await;
}

/// One message as a consumer receives it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The routing key.
    pub routing_key: String,
    /// `message_id`.
    pub message_id: Option<String>,
    /// `content_type`.
    pub content_type: Option<String>,
    /// `delivery_mode` (2: persistent).
    pub delivery_mode: Option<u8>,
    /// The body, parsed.
    pub event: Event,
}

/// A durable queue bound with `#` to an exchange of its own, declared like the relay does.
pub struct Tap {
    exchange: String,
    queue: String,
}

async fn channel() -> Result<(Connection, lapin::Channel), lapin::Error> {
    let conn = Connection::connect(&url(), ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    Ok((conn, channel))
}

impl Tap {
    /// A fresh exchange and queue.
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tap = Self { exchange: format!("tt-{}", &id[..12]), queue: format!("tap-{}", &id[..12]) };
        let setup = async {
            let (conn, ch) = channel().await?;
            let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
            ch.exchange_declare(tap.exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
                .await?;
            let q = QueueDeclareOptions { durable: true, ..Default::default() };
            ch.queue_declare(tap.queue.as_str().into(), q, FieldTable::default()).await?;
            ch.queue_bind(
                tap.queue.as_str().into(),
                tap.exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            conn.close(200, "ok".into()).await
        };
        tokio::time::timeout(Duration::from_secs(20), setup)
            .await
            .expect("setting up the tap timed out")
            .expect("declare the tap's exchange and queue");
        tap
    }

    /// The exchange to give the relay.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Reads messages until `n` arrived (panicking after `limit`), reconnecting as needed.
    pub async fn take(&self, n: usize, limit: Duration) -> Vec<Message> {
        self.take_until(limit, |got| got.len() >= n).await
    }

    /// Reads messages until `done` holds of all read so far (panicking after `limit`),
    /// reconnecting as needed.
    pub async fn take_until(&self, limit: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        while !done(&got) {
            assert!(tokio::time::Instant::now() < deadline, "the expected messages did not arrive: {got:#?}");
            let read = async {
                let (conn, ch) = channel().await?;
                while !done(&got) && tokio::time::Instant::now() < deadline {
                    match ch.basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true }).await? {
                        Some(m) => got.push(message(m.delivery)),
                        None => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                conn.close(200, "ok".into()).await
            };
            if tokio::time::timeout(limit, read).await.map_or(true, |r| r.is_err()) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        got
    }

    /// Whatever else arrives within `wait`.
    pub async fn rest(&self, wait: Duration) -> Vec<Message> {
        tokio::time::sleep(wait).await;
        let (conn, ch) = channel().await.expect("connect to the broker");
        let mut got = Vec::new();
        while let Some(m) =
            ch.basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("basic.get")
        {
            got.push(message(m.delivery));
        }
        let _ = conn.close(200, "ok".into()).await;
        got
    }
}

fn message(d: lapin::message::Delivery) -> Message {
    Message {
        routing_key: d.routing_key.as_str().to_owned(),
        message_id: d.properties.message_id().as_ref().map(|s| s.as_str().to_owned()),
        content_type: d.properties.content_type().as_ref().map(|s| s.as_str().to_owned()),
        delivery_mode: *d.properties.delivery_mode(),
        event: serde_json::from_slice(&d.data).expect("a CloudEvents JSON body"),
    }
}
