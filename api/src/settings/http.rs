//! The HTTP server: where it listens, the URL it signs for itself, its workers, the limits of
//! one request (body size, time) and of searches, and error reporting to Sentry.

use anyhow::{Context, bail};

use super::{Env, Secret, Settings};

/// Reads the HTTP server's variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    env.set("HOST", &mut s.host);
    env.set_parsed("PORT", &mut s.port)?;
    s.public_url = env
        .get("TOOLTOOL_PUBLIC_URL")
        .map(|v| {
            url::Url::parse(&v)
                .with_context(|| format!("TOOLTOOL_PUBLIC_URL is not a URL: {v:?}"))
                .map(|_| v.trim_end_matches('/').to_owned())
        })
        .transpose()?;
    s.sentry_dsn = env.get("SENTRY_DSN").map(Secret::new);
    env.set_parsed("TOOLTOOL_MAX_BODY_BYTES", &mut s.max_body_bytes)?;
    env.set_parsed("TOOLTOOL_WORKERS", &mut s.workers)?;
    env.set_duration("TOOLTOOL_REQUEST_TIMEOUT", &mut s.request_timeout)?;
    if let Some(v) = env.parse("TOOLTOOL_SEARCH_CONCURRENCY")? {
        s.search_concurrency = v;
        if s.search_concurrency == 0 {
            bail!("TOOLTOOL_SEARCH_CONCURRENCY must be at least 1");
        }
    }
    env.set_duration("TOOLTOOL_SEARCH_TIMEOUT", &mut s.search_timeout)?;
    Ok(())
}
