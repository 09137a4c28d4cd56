//! Logs and error reporting: tracing to stderr (JSON lines with `LOG_FORMAT=json`), Sentry
//! when `SENTRY_DSN` is set. Request lines carry the path without its query string, because
//! the query of a signed URL is a credential.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::Secret;

/// Installs the global subscriber.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,aws=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    // Error events go to Sentry as events, lower levels as breadcrumbs; both are no-ops
    // unless Sentry was initialised.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(sentry::integrations::tracing::ErrorLayer::new().with_filter(LevelFilter::ERROR))
        .with(sentry::integrations::tracing::BreadcrumbLayer::new().with_filter(LevelFilter::INFO));
    if json {
        registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).init();
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).init();
    }
}

/// Starts Sentry; the guard flushes on drop. Request headers are never sent.
pub fn init_sentry(dsn: &Secret) -> anyhow::Result<sentry::ClientInitGuard> {
    let dsn: sentry::types::Dsn =
        dsn.expose().parse().map_err(|e| anyhow::anyhow!("SENTRY_DSN is not a valid DSN: {e}"))?;
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = sentry::release_name!();
    options.send_default_pii = false;
    options.before_send = Some(std::sync::Arc::new(|mut event| {
        if let Some(req) = event.request.as_mut() {
            req.headers.retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
            req.query_string = None;
            req.cookies = None;
        }
        Some(event)
    }));
    Ok(sentry::init(options))
}

/// Logs one line per request: method, path (no query), status, duration.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await;
    let status = res.as_ref().map(|r| r.status().as_u16()).unwrap_or(500);
    tracing::info!(%method, path, status, ms = start.elapsed().as_secs_f64() * 1000.0, "request");
    res
}
