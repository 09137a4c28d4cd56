//! Uploads: the largest file a batch may declare, how long staged bytes wait and how long
//! `upload/complete` waits for their verification, and uploads in parts.

use anyhow::bail;

use super::{Env, Settings};

/// S3's smallest part of a multipart upload (but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Uploads in parts (PROTOCOL.md "Large files: uploads in parts").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSettings {
    /// Files at or above this size, declared by a client that can send parts, go up in parts
    /// (`TOOLTOOL_MULTIPART_THRESHOLD`).
    pub threshold: u64,
    /// The size of every part but the last (`TOOLTOOL_PART_SIZE`, at least [`MIN_PART_SIZE`];
    /// raised for a file that would otherwise need more than S3's 10,000 parts).
    pub part_size: u64,
    /// The largest file a client that cannot send parts may declare
    /// (`TOOLTOOL_MAX_SINGLE_PUT`); larger is 400 `file-too-large`.
    pub max_single_put: u64,
    /// Part URLs handed out per answer (`TOOLTOOL_PART_URL_BATCH`).
    pub url_batch: u32,
}

impl Default for PartSettings {
    fn default() -> Self {
        Self { threshold: 64 << 20, part_size: 64 << 20, max_single_put: 5 << 30, url_batch: 100 }
    }
}

/// Reads the uploads' variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    env.set_duration("TOOLTOOL_STAGING_GRACE", &mut s.staging_grace)?;
    env.set_duration("TOOLTOOL_VERIFY_WAIT", &mut s.verify_wait)?;
    env.set_parsed("TOOLTOOL_MAX_FILE_SIZE", &mut s.max_file_size)?;
    env.set_parsed("TOOLTOOL_MULTIPART_THRESHOLD", &mut s.parts.threshold)?;
    if let Some(v) = env.parse("TOOLTOOL_PART_SIZE")? {
        s.parts.part_size = v;
        if s.parts.part_size < MIN_PART_SIZE {
            bail!("TOOLTOOL_PART_SIZE must be at least {MIN_PART_SIZE} bytes (S3's smallest part)");
        }
    }
    env.set_parsed("TOOLTOOL_MAX_SINGLE_PUT", &mut s.parts.max_single_put)?;
    if let Some(v) = env.parse("TOOLTOOL_PART_URL_BATCH")? {
        s.parts.url_batch = v;
        if s.parts.url_batch == 0 {
            bail!("TOOLTOOL_PART_URL_BATCH must be at least 1");
        }
    }
    Ok(())
}
