//! Who the callers are and what they may see: the master secret and its predecessors, JWT
//! claims and scopes, anonymous downloads, the registered clients' reload, a Taskcluster
//! deployment for Hawk clients not registered here, forwarded headers under a Hawk MAC, and who
//! sees internal files' metadata.

use anyhow::bail;

use super::{Env, Secret, Settings};

/// Who sees internal files' metadata on the search, batch and file routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalMetadata {
    /// Everyone, as in the original service (the default).
    Open,
    /// Only callers holding `download/internal`, as `/events` and the TUF `internal`
    /// repository: to anyone else an internal file is unknown (404) and absent from searches,
    /// and so is a batch that names one.
    Restricted,
}

/// Reads the authentication variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    s.secret_key = env.get("TOOLTOOL_SECRET_KEY").map(Secret::new);
    if let Some(k) = &s.secret_key
        && k.expose().len() < 32
    {
        bail!("TOOLTOOL_SECRET_KEY must be at least 32 characters long");
    }
    if let Some(v) = env.get("TOOLTOOL_OLD_SECRET_KEYS") {
        s.old_secret_keys = v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::new).collect();
    }
    env.set_duration("TOOLTOOL_AUTH_REFRESH", &mut s.auth_refresh)?;
    env.set("TOOLTOOL_JWT_ISSUER", &mut s.jwt_issuer);
    env.set("TOOLTOOL_JWT_AUDIENCE", &mut s.jwt_audience);
    if let Some(v) = env.get("TOOLTOOL_SCOPE_PREFIX") {
        s.scope_prefix = v.trim_end_matches('/').to_owned();
    }
    env.set_bool("TOOLTOOL_ANONYMOUS_PUBLIC_DOWNLOAD", &mut s.anonymous_public_download)?;
    s.taskcluster_root_url = env
        .get("TOOLTOOL_TASKCLUSTER_ROOT_URL")
        .map(|v| match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(v.trim_end_matches('/').to_owned()),
            _ => bail!("TOOLTOOL_TASKCLUSTER_ROOT_URL is not an http(s) URL: {v:?}"),
        })
        .transpose()?;
    env.set_duration("TOOLTOOL_TASKCLUSTER_TIMEOUT", &mut s.taskcluster_timeout)?;
    env.set_bool("TOOLTOOL_TRUST_FORWARDED", &mut s.trust_forwarded)?;
    if let Some(v) = env.get("TOOLTOOL_INTERNAL_METADATA") {
        s.internal_metadata = match v.as_str() {
            "open" => InternalMetadata::Open,
            "restricted" => InternalMetadata::Restricted,
            _ => bail!("TOOLTOOL_INTERNAL_METADATA must be open or restricted, not {v:?}"),
        };
    }
    Ok(())
}
