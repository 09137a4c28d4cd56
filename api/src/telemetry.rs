//! Logs and error reporting: tracing to stderr (JSON lines with `LOG_FORMAT=json`), Sentry
//! when `SENTRY_DSN` is set. Request lines carry the path without its query string, because
//! the query of a signed URL is a credential.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

mod writer;

use writer::{LogWriter, WriterGuard};

use actix_web::http::header::{HeaderName, HeaderValue};
use sentry::SentryFutureExt;

use actix_web::Error;
use actix_web::dev::{ServiceRequest, ServiceResponse};
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
static ACCESS: OnceLock<AccessLog> = OnceLock::new();

/// The target of the access-log lines (so `RUST_LOG` filters them as it did).
const ACCESS_TARGET: &str = "tooltool_api::telemetry";

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
    let _ = ACCESS.set(AccessLog { writer: writer.clone(), json });
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

/// Puts `id` (plain characters only, see [`request_id`]) into a formatted line.
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
        .unwrap_or_else(|| {
            let mut id = String::with_capacity(32);
            tooltool_proto::push_hex(&mut id, &rand::random::<u128>().to_be_bytes());
            id
        })
}

/// Per request, around `inner` (the rest of the service): an id (echoed in `X-Request-Id`) on
/// every log line of the request, a Sentry hub tagged with route and id, the request metrics, and
/// one summary line: method, path (no query), status, duration.
pub async fn log_request<B, F, Fut>(req: ServiceRequest, inner: F) -> Result<ServiceResponse<B>, Error>
where
    F: FnOnce(ServiceRequest) -> Fut,
    Fut: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = route_of(&req);
    let hub = SENTRY.load(std::sync::atomic::Ordering::Relaxed).then(|| {
        let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
        hub.configure_scope(|scope| {
            scope.set_tag("request_id", &id);
            scope.set_tag("route", &route);
        });
        hub
    });
    // The id lives in the task-local while the request runs, and is taken back afterwards.
    let mut call = std::pin::pin!(CURRENT_REQUEST.scope(id, inner(req)));
    let res = match hub {
        Some(hub) => call.as_mut().bind_hub(hub).await,
        // Without SENTRY_DSN there is no client, and nothing to tag.
        None => call.as_mut().await,
    };
    let id = call.as_mut().take_value().unwrap_or_default();
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let elapsed = start.elapsed();
    let m = &crate::metrics::METRICS;
    m.requests.with_label_values(&[&route, method.as_str(), status.as_str()]).inc();
    m.latency.with_label_values(&[&route]).observe(elapsed.as_secs_f64());
    let line = AccessLine { request_id: &id, method: method.as_str(), path: &path, status: status.as_u16(), elapsed };
    match ACCESS.get() {
        Some(log) => log.write(&line),
        // No writer of ours (a test's own subscriber): the line goes through tracing.
        None => tracing::info!(target: ACCESS_TARGET, method = line.method, path, status = line.status,
            ms = %line.ms(), request_id = %id, "request"),
    }
    res.map(|mut r| {
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert(HeaderName::from_static(REQUEST_ID), v);
        }
        r
    })
}

/// The route pattern of a request, for metrics and Sentry: looked up in
/// [`crate::routes::ROUTE_TABLE`] segment by segment (the router's own lookup matches regular
/// expressions and allocates, on every call), else asked of the router (the admin page's routes).
fn route_of(req: &ServiceRequest) -> std::borrow::Cow<'static, str> {
    let path = req.path();
    let matches = |pattern: &str| {
        let mut want = pattern.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    match crate::routes::ROUTE_TABLE.iter().find(|(pattern, _)| matches(pattern)) {
        Some((pattern, _)) => (*pattern).into(),
        None => req.match_pattern().unwrap_or_else(|| "unmatched".to_owned()).into(),
    }
}

/// What the access log says of one request.
struct AccessLine<'a> {
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    elapsed: std::time::Duration,
}

impl AccessLine<'_> {
    /// Milliseconds to the microsecond: `0.012`, never `0.011569000000000001`.
    fn ms(&self) -> String {
        let mut buf = Vec::with_capacity(16);
        self.push_ms(&mut buf);
        String::from_utf8(buf).expect("digits")
    }

    fn push_ms(&self, buf: &mut Vec<u8>) {
        let us = self.elapsed.as_micros();
        buf.extend_from_slice(itoa::Buffer::new().format(us / 1000).as_bytes());
        let frac = (us % 1000) as u16;
        buf.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

/// The access log: one line per request, formatted by hand into a reused buffer and handed to
/// the same non-blocking writer as every other line, in the same shape as the other lines (text,
/// or JSON with `LOG_FORMAT=json`). tracing's formatter costs several microseconds a line; the
/// access line is the one written on every request.
struct AccessLog {
    writer: LogWriter,
    json: bool,
}

impl AccessLog {
    fn write(&self, line: &AccessLine<'_>) {
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return;
        }
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
        }
        BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            if self.json {
                format_json(buf, line);
            } else {
                format_text(buf, line);
            }
            self.writer.append(buf);
        });
    }
}

/// `2026-11-29T16:55:01.123456Z` (as tracing's lines): the part up to the second is made once a
/// second per thread.
fn timestamp(buf: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != now.as_secs() {
            *second = now.as_secs();
            *text = crate::time::rfc3339(now.as_secs() as i64);
            text.pop(); // the `Z`
        }
        buf.extend_from_slice(text.as_bytes());
    });
    let mut micros = now.subsec_micros();
    let mut digits = *b".000000Z";
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf.extend_from_slice(&digits);
}

use std::io::Write as _;

/// `2026-11-29T16:55:01.123456Z  INFO tooltool_api::telemetry: request method=GET
/// path="/sha512/…" status=302 ms=0.123 request_id=…`, as the other text lines without colours
/// (the path quoted and escaped as Rust's `Debug` does, so a line is always one line).
fn format_text(buf: &mut Vec<u8>, line: &AccessLine<'_>) {
    timestamp(buf);
    for part in ["  INFO ", ACCESS_TARGET, ": request method=", line.method] {
        buf.extend_from_slice(part.as_bytes());
    }
    buf.extend_from_slice(b" path=");
    // Without an early exit, so that the check is vectorised: this runs on every request.
    let plain = !line.path.bytes().fold(false, |odd, b| odd | !(0x20..0x7f).contains(&b) | (b == b'"') | (b == b'\\'));
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(line.path.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{:?}", line.path);
    }
    buf.extend_from_slice(b" status=");
    buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    buf.extend_from_slice(b" ms=");
    line.push_ms(buf);
    buf.extend_from_slice(b" request_id=");
    buf.extend_from_slice(line.request_id.as_bytes());
    buf.push(b'\n');
}

/// The same line in the shape of the other JSON lines.
fn format_json(buf: &mut Vec<u8>, line: &AccessLine<'_>) {
    for part in ["{\"request_id\":\"", line.request_id, "\",\"timestamp\":\""] {
        buf.extend_from_slice(part.as_bytes());
    }
    timestamp(buf);
    for part in ["\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"method\":\"", line.method, "\",\"path\":"]
    {
        buf.extend_from_slice(part.as_bytes());
    }
    let _ = serde_json::to_writer(&mut *buf, line.path);
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    buf.extend_from_slice(b",\"ms\":");
    line.push_ms(buf);
    for part in ["},\"target\":\"", ACCESS_TARGET, "\"}\n"] {
        buf.extend_from_slice(part.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn line(path: &str) -> AccessLine<'_> {
        let elapsed = std::time::Duration::from_micros(12_345);
        AccessLine { request_id: "ab12", method: "GET", path, status: 302, elapsed }
    }

    #[test]
    fn text_access_lines_quote_the_path_and_end_with_the_request_id() {
        let mut buf = Vec::new();
        format_text(&mut buf, &line("/sha512/x\"\n"));
        let mut plain = Vec::new();
        format_text(&mut plain, &line("/sha512/abc"));
        let plain = String::from_utf8(plain).unwrap();
        assert!(plain.ends_with(" method=GET path=\"/sha512/abc\" status=302 ms=12.345 request_id=ab12\n"), "{plain}");
        let text = String::from_utf8(buf).unwrap();
        let (stamp, rest) = text.split_once("  ").unwrap();
        assert_eq!(stamp.len(), "2026-11-29T16:55:01.123456Z".len(), "{text}");
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
        assert_eq!(
            rest,
            "INFO tooltool_api::telemetry: request method=GET \
             path=\"/sha512/x\\\"\\n\" status=302 ms=12.345 request_id=ab12\n"
        );
    }

    #[test]
    fn json_access_lines_parse_and_carry_the_request_id() {
        let mut buf = Vec::new();
        format_json(&mut buf, &line("/sha512/\"odd\"\u{1}"));
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(humantime::parse_rfc3339(v["timestamp"].as_str().unwrap()).is_ok(), "{v}");
        let fields = serde_json::json!({"message": "request", "method": "GET", "path": "/sha512/\"odd\"\u{1}",
                                        "status": 302, "ms": 12.345});
        assert_eq!(v["fields"], fields);
        assert_eq!((&v["level"], &v["target"]), (&serde_json::json!("INFO"), &serde_json::json!(ACCESS_TARGET)));
        assert_eq!(v["request_id"], "ab12");
    }

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
