//! An example consumer of tooltool's events: a signing step that waits for `file.verified` on
//! RabbitMQ and prints what it would do. It shows the intended pattern:
//!
//! 1. Its own **durable queue**, bound to the durable topic exchange with the routing keys it
//!    cares about (`file.verified.*`: every verified file, public or internal), so events
//!    published while it is down wait for it.
//! 2. **Manual acknowledgement** after the work is done, one message at a time (prefetch 1): a
//!    crash before the ack gets the message delivered again.
//! 3. **De-duplication by event `id`**: delivery is at least once (a relay that died between
//!    publishing and marking publishes again), so the work must be idempotent or skipped for an
//!    id already handled. This example remembers ids in memory; a real one would record them
//!    with the work's result.
//!
//! ```text
//! TOOLTOOL_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//! TOOLTOOL_URL=https://tooltool.example.com \
//!     cargo run -p tooltool-signing-consumer
//! ```
//!
//! Variables: `TOOLTOOL_AMQP_URL` (required), `TOOLTOOL_AMQP_EXCHANGE` (default `tooltool`),
//! `SIGNING_QUEUE` (default `tooltool-signing`), `TOOLTOOL_URL` (where to download the blob).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tooltool_proto::{Event, EventType};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("TOOLTOOL_AMQP_URL").context("set TOOLTOOL_AMQP_URL to the broker, amqp://…")?;
    let exchange = std::env::var("TOOLTOOL_AMQP_EXCHANGE").unwrap_or_else(|_| "tooltool".into());
    let queue = std::env::var("SIGNING_QUEUE").unwrap_or_else(|_| "tooltool-signing".into());
    let server = std::env::var("TOOLTOOL_URL").unwrap_or_else(|_| "https://tooltool.example.com".into());
    let mut handled = HashSet::new();
    // Reconnect whenever the broker goes away; the durable queue keeps what arrives meanwhile.
    loop {
        if let Err(e) = consume(&url, &exchange, &queue, &server, &mut handled).await {
            eprintln!("signing consumer: {e:#}; reconnecting in 2 s");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn consume(
    url: &str,
    exchange: &str,
    queue: &str,
    server: &str,
    handled: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let conn = tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, ConnectionProperties::default()))
        .await
        .context("connecting to the broker timed out")??;
    let channel = conn.create_channel().await?;
    // Declared exactly as the server declares it, so either may start first.
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    let q = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.into(), q, FieldTable::default()).await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "file.verified.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let mut deliveries = channel
        .basic_consume(queue.into(), "signing".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    eprintln!("signing consumer: waiting for file.verified on {exchange} (queue {queue})");
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        match serde_json::from_slice::<Event>(&delivery.data) {
            Ok(event) if event.kind == EventType::FileVerified => {
                if handled.insert(event.id.clone()) {
                    sign(&event, server);
                } else {
                    println!("already signed for event {}: skipped (a redelivery)", event.id);
                }
            }
            Ok(event) => println!("ignoring {} ({})", event.kind, event.id),
            Err(e) => eprintln!("signing consumer: not a tooltool event ({e}); dropped"),
        }
        delivery.ack(BasicAckOptions::default()).await?;
    }
    anyhow::bail!("the broker closed the consumer")
}

/// What a signing step would do with a verified file.
fn sign(event: &Event, server: &str) {
    let (Some(digest), Some(size)) = (&event.data.digest, event.data.size) else {
        eprintln!("file.verified {} without a digest or size: skipped", event.id);
        return;
    };
    let visibility = event.data.visibility.map_or("?", |v| v.as_str());
    let region = event.data.region.as_deref().unwrap_or("?");
    println!("event {} (seq {}, {}): {} verified in {region}", event.id, event.seq, event.time, event.subject);
    println!("  would download {server}/sha512/{digest} ({size} bytes, {visibility}) and check its sha512");
    println!("  would sign it and upload {digest}.sig with `tooltool upload`, visibility {visibility}");
}
