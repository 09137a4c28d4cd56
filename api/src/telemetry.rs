//! Logs and error reporting: tracing to stderr (JSON lines with `LOG_FORMAT=json`), Sentry
//! when `SENTRY_DSN` is set, and the access line of each request ([`access`]). Access lines
//! carry the path without its query string, because the query of a signed URL is a credential.
//! The request middleware that writes them is the HTTP layer's (`http::request_log`).

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

pub mod access;
mod writer;

use writer::{LogWriter, WriterGuard};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::Secret;

/// Bytes of log lines that may wait for the writer thread before new ones are dropped (and
/// counted): about 40 000 access lines, several seconds of a stalled disk at full load.
const LOG_BUFFER_BYTES: usize = 8 << 20;

/// How often the writer thread writes what was appended, while lines keep coming.
const LOG_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The access log's way to the writer, once [`init_tracing`] made one; its writer counts the
/// dropped lines for `log_lines_dropped_total`.
static ACCESS: OnceLock<access::AccessLog> = OnceLock::new();

/// Lines dropped so far because the log writer could not keep up.
pub fn log_lines_dropped() -> u64 {
    ACCESS.get().map_or(0, |log| log.writer.dropped())
}

/// Keeps the log writer thread alive; dropping it flushes what is buffered.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] WriterGuard);

/// Installs the global subscriber: text lines, or JSON lines with `LOG_FORMAT=json`, on
/// stderr. Requests never wait on the terminal or the disk: lines go into a bounded buffer that
/// a writer thread writes out in batches ([`writer`]), and when the buffer is full a line is
/// dropped and counted rather than stall the request. Colours only when stderr is a terminal. The
/// Sentry layers are installed only when Sentry is (`with_sentry`): their per-event work is
/// not free even without a client.
pub fn init_tracing(with_sentry: bool) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,aws=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let (writer, guard) = LogWriter::start(std::io::stderr(), LOG_BUFFER_BYTES, LOG_FLUSH_INTERVAL);
    let _ = ACCESS.set(access::AccessLog { writer: writer.clone(), json });
    let sentry = with_sentry.then(|| {
        // Error events go to Sentry as events, lower levels as breadcrumbs.
        sentry::integrations::tracing::ErrorLayer::new()
            .with_filter(LevelFilter::ERROR)
            .and_then(sentry::integrations::tracing::BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
    });
    let registry = tracing_subscriber::registry().with(filter).with(sentry);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        let lines = WithRequestId { inner: tracing_subscriber::fmt::format().json(), json: true };
        registry.with(fmt.json().event_format(lines)).init();
    } else {
        let ansi = std::io::stderr().is_terminal();
        let lines = WithRequestId { inner: tracing_subscriber::fmt::format().with_ansi(ansi), json: false };
        registry.with(fmt.with_ansi(ansi).event_format(lines)).init();
    }
    LogGuard(guard)
}

tokio::task_local! {
    /// The id of the request being served, for every line logged while it is.
    static CURRENT_REQUEST: String;
}

/// Runs `request` with `id` as the id of the request being served: every line logged while it
/// runs carries it. The future gives the id back (`take_value`) once done.
pub fn in_request<F: Future>(id: String, request: F) -> tokio::task::futures::TaskLocalFuture<String, F> {
    CURRENT_REQUEST.scope(id, request)
}

/// Adds the id of the request being served to every line logged while it is: a `request_id`
/// field at the end of a text line, a top-level `request_id` member first in a JSON line. (A
/// tracing span would carry it too, but creating one per request, with its fields formatted,
/// cost 13 % of the redirect's throughput; this costs nothing on a request that logs only its
/// access line.) Such a line is formatted into a buffer first, without colours.
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithRequestId<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        let with_id = CURRENT_REQUEST.try_with(|id| {
            self.inner.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
            add_request_id(&mut line, id, self.json);
            Ok(())
        });
        match with_id {
            Ok(formatted) => formatted.and_then(|()| writer.write_str(&line)),
            Err(_) => self.inner.format_event(ctx, writer, event),
        }
    }
}

/// Puts `id` (plain characters only, as the request middleware makes it) into a formatted line.
fn add_request_id(line: &mut String, id: &str, json: bool) {
    if json && line.starts_with('{') {
        line.insert_str(1, &format!("\"request_id\":\"{id}\","));
    } else {
        let end = line.trim_end_matches('\n').len();
        line.insert_str(end, &format!(" request_id={id}"));
    }
}

/// Longest wait to connect to Sentry.
const SENTRY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a report to Sentry may take.
const SENTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether [`init_sentry`] started Sentry: without it there is no client to tag requests for.
static SENTRY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether Sentry runs (a client to tag requests for).
pub fn sentry_enabled() -> bool {
    SENTRY.load(std::sync::atomic::Ordering::Relaxed)
}

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
    let guard = sentry::init(options);
    SENTRY.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(guard)
}

/// Writes the access line of one request: through the log writer when [`init_tracing`] made
/// one, else (a test's own subscriber) through tracing.
pub fn write_access(line: &access::AccessLine<'_>) {
    match ACCESS.get() {
        Some(log) => log.write(line),
        None => tracing::info!(target: access::ACCESS_TARGET, method = line.method, path = line.path,
            status = line.status, ms = %line.ms(), request_id = %line.request_id, "request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a subscriber with [`WithRequestId`] writes for a warning logged inside and outside a
    /// request.
    fn logged(json: bool) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let out = sink.clone();
        let fmt = tracing_subscriber::fmt::layer().with_writer(move || out.clone()).with_ansi(false);
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
            let lines = WithRequestId { inner: tracing_subscriber::fmt::format().json(), json: true };
            Box::new(tracing_subscriber::registry().with(fmt.json().event_format(lines)))
        } else {
            let lines = WithRequestId { inner: tracing_subscriber::fmt::format().with_ansi(false), json: false };
            Box::new(tracing_subscriber::registry().with(fmt.event_format(lines)))
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(CURRENT_REQUEST.scope("req-7".into(), async {
                tracing::warn!(digest = "d1", "inside");
            }));
            tracing::warn!("outside");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn every_text_line_of_a_request_carries_its_id() {
        let lines = logged(false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with(r#": inside digest="d1" request_id=req-7"#), "{}", lines[0]);
        assert!(lines[1].ends_with(": outside"), "{}", lines[1]);
    }

    #[test]
    fn every_json_line_of_a_request_carries_its_id() {
        let lines = logged(true);
        let v: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v.len(), 2, "{lines:?}");
        assert_eq!(
            (&v[0]["request_id"], &v[0]["fields"]["message"]),
            (&serde_json::json!("req-7"), &serde_json::json!("inside"))
        );
        assert_eq!(v[0]["fields"]["digest"], "d1");
        assert!(v[1].get("request_id").is_none(), "{}", lines[1]);
    }
}
