//! The signed metadata (TUF): the online keys that sign the repositories.

use std::path::PathBuf;

use super::{Env, Settings};

/// Reads the TUF variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    if let Some(v) = env.get("TOOLTOOL_TUF_ONLINE_KEYS") {
        s.tuf_online_keys = v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    }
    Ok(())
}
