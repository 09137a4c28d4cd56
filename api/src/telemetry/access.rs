//! The access log: one line per request, formatted by hand (see [`AccessLog`]).

use std::io::Write as _;

use super::writer::LogWriter;

/// The target of the access-log lines (so `RUST_LOG` filters them as it did).
pub const ACCESS_TARGET: &str = "tooltool_api::telemetry";

/// What the access log says of one request.
pub struct AccessLine<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path, without its query.
    pub path: &'a str,
    /// The status answered.
    pub status: u16,
    /// How long the answer took.
    pub elapsed: std::time::Duration,
}

impl AccessLine<'_> {
    /// Milliseconds to the microsecond: `0.012`, never `0.011569000000000001`.
    pub fn ms(&self) -> String {
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
pub(super) struct AccessLog {
    pub(super) writer: LogWriter,
    pub(super) json: bool,
}

impl AccessLog {
    pub(super) fn write(&self, line: &AccessLine<'_>) {
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
}
