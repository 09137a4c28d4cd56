//! The copies between regions and their health: the replicator, the region probe, and the
//! scrubber that reads stored copies back.

use anyhow::bail;

use super::uploads::MIN_PART_SIZE;
use super::{Env, Settings};

/// Reads the replication, probe and scrub variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    env.set_bool("TOOLTOOL_REPLICATION", &mut s.replication)?;
    env.set_duration("TOOLTOOL_REPLICATION_INTERVAL", &mut s.replication_interval)?;
    env.set_duration("TOOLTOOL_REPLICATION_LEASE", &mut s.replication_lease)?;
    if let Some(v) = env.parse("TOOLTOOL_REPLICATION_PART_SIZE")? {
        s.replication_part_size = v;
        if s.replication_part_size < MIN_PART_SIZE {
            bail!("TOOLTOOL_REPLICATION_PART_SIZE must be at least {MIN_PART_SIZE} bytes (S3's smallest part)");
        }
    }
    env.set_duration("TOOLTOOL_REGION_PROBE", &mut s.region_probe)?;
    if let Some(v) = env.get("TOOLTOOL_SCRUB_INTERVAL") {
        s.scrub_interval = match v.as_str() {
            "off" => None,
            _ => match super::parse_duration("TOOLTOOL_SCRUB_INTERVAL", &v)? {
                d if d.is_zero() => bail!("TOOLTOOL_SCRUB_INTERVAL must be longer than 0 (or off)"),
                d => Some(d),
            },
        };
    }
    if let Some(v) = env.get("TOOLTOOL_SCRUB_RATE") {
        s.scrub_rate = super::parse_var("TOOLTOOL_SCRUB_RATE", &v)?;
        if !(s.scrub_rate.is_finite() && s.scrub_rate > 0.0) {
            bail!("TOOLTOOL_SCRUB_RATE must be a positive number of megabytes per second, not {v:?}");
        }
    }
    Ok(())
}
