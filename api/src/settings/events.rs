//! Events: the RabbitMQ broker and exchange the relay publishes to, and how long events are
//! kept.

use anyhow::bail;

use super::{Env, Secret, Settings};

/// Reads the events' variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    if let Some(v) = env.get("TOOLTOOL_AMQP_URL") {
        if !v.starts_with("amqp://") {
            bail!("TOOLTOOL_AMQP_URL must start with amqp:// (this build has no TLS to the broker)");
        }
        s.amqp_url = Some(Secret::new(v));
    }
    env.set("TOOLTOOL_AMQP_EXCHANGE", &mut s.amqp_exchange);
    env.set_duration("TOOLTOOL_EVENTS_RETENTION", &mut s.events_retention)?;
    Ok(())
}
