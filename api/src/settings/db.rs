//! The metadata database, and the download lookups each replica keeps in memory.

use anyhow::bail;

use super::{Env, Settings};

/// Reads the database's variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    if let Some(v) = env.get("DATABASE_URL") {
        if !(v.starts_with("sqlite:") || v.starts_with("postgres://") || v.starts_with("postgresql://")) {
            bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
        }
        s.database_url = v;
    }
    env.set_parsed("TOOLTOOL_LOOKUP_CACHE", &mut s.lookup_cache)?;
    env.set_duration("TOOLTOOL_LOOKUP_MAX_AGE", &mut s.lookup_max_age)?;
    Ok(())
}
