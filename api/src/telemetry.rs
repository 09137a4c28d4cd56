//! Logs and error reporting: tracing to stderr (JSON lines with `LOG_FORMAT=json`), Sentry
//! when `SENTRY_DSN` is set. Request lines carry the path without its query string, because
//! the query of a signed URL is a credential.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tracing_appender::non_blocking::{ErrorCounter, WorkerGuard};

use actix_web::http::header::{HeaderName, HeaderValue};
use sentry::SentryFutureExt;
use tracing::Instrument;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::Secret;

/// Log lines that may wait for the writer thread before new ones are dropped (and counted).
const LOG_BUFFER_LINES: usize = 64 * 1024;

/// The writer thread's count of dropped lines, for `log_lines_dropped_total`.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines dropped so far because the log writer could not keep up.
pub fn log_lines_dropped() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Keeps the log writer thread alive; dropping it flushes what is buffered.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Installs the global subscriber: text lines, or JSON lines with `LOG_FORMAT=json`, on
/// stderr. Requests never wait on the terminal or the disk: lines go through a bounded queue to
/// a writer thread, which writes them in batches, and when the queue is full a line is dropped
/// and counted rather than stall the request. Colours only when stderr is a terminal. The
/// Sentry layers are installed only when Sentry is (`with_sentry`): their per-event work is
/// not free even without a client.
pub fn init_tracing(with_sentry: bool) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,aws=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("tooltool-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let _ = DROPPED.set(writer.error_counter());
    let sentry = with_sentry.then(|| {
        // Error events go to Sentry as events, lower levels as breadcrumbs.
        sentry::integrations::tracing::ErrorLayer::new()
            .with_filter(LevelFilter::ERROR)
            .and_then(sentry::integrations::tracing::BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
    });
    let registry = tracing_subscriber::registry().with(filter).with(sentry);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt.with_ansi(std::io::stderr().is_terminal())).init();
    }
    LogGuard(guard)
}

/// Longest wait to connect to Sentry.
const SENTRY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a report to Sentry may take.
const SENTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts Sentry; the guard flushes on drop. Request headers are never sent.
pub fn init_sentry(dsn: &Secret) -> anyhow::Result<sentry::ClientInitGuard> {
    let dsn: sentry::types::Dsn =
        dsn.expose().parse().map_err(|e| anyhow::anyhow!("SENTRY_DSN is not a valid DSN: {e}"))?;
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = sentry::release_name!();
    options.send_default_pii = false;
    // Reports go out on the transport's own thread, never on a request; still, a Sentry that
    // does not answer must not hold them forever.
    options.transport = Some(Arc::new(|opts: &sentry::ClientOptions| -> Arc<dyn sentry::Transport> {
        let client = reqwest::Client::builder()
            .connect_timeout(SENTRY_CONNECT_TIMEOUT)
            .timeout(SENTRY_TIMEOUT)
            .build()
            .expect("a TLS client with timeouts builds");
        let general = sentry::TransportOptions::try_from_client_options(opts).expect("Sentry starts with a DSN");
        Arc::new(sentry::transports::ReqwestHttpTransportOptions::from(general).with_client(client).build())
    }));
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

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id: the caller's `X-Request-Id` when it is short and plain, else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        // 128 random bits from the thread's generator: a uuid v4 cost a getrandom system call
        // on every request.
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

/// Per request: an id (echoed in `X-Request-Id`) on every log line of the request, a Sentry hub
/// tagged with route and id, the request metrics, and one summary line: method, path (no
/// query), status, duration.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    let call = next.call(req).instrument(span.clone());
    let res = if sentry::Hub::main().client().is_some() {
        let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
        hub.configure_scope(|scope| {
            scope.set_tag("request_id", &id);
            scope.set_tag("route", &route);
        });
        call.bind_hub(hub).await
    } else {
        // Without SENTRY_DSN there is no client, and nothing to tag.
        call.await
    };
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let elapsed = start.elapsed().as_secs_f64();
    // Milliseconds to the microsecond: `ms=0.012`, not `ms=0.011569000000000001`.
    let ms = (elapsed * 1e6).round() / 1e3;
    let m = &crate::metrics::METRICS;
    m.requests.with_label_values(&[route.as_str(), method.as_str(), &status.to_string()]).inc();
    m.latency.with_label_values(&[route.as_str()]).observe(elapsed);
    span.in_scope(|| tracing::info!(%method, path, status, ms, "request"));
    res.map(|mut r| {
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert(HeaderName::from_static(REQUEST_ID), v);
        }
        r
    })
}
