//! Hawk request authentication, as the original `tooltool.py` sends it when its credentials
//! file is JSON: `id` is the clientId, the key is the accessToken, SHA-256 MACs.
//!
//! Parsing headers, checking MACs and timestamps, and hashing payloads are Taskcluster's `hawk`
//! crate (the implementation Taskcluster maintains for its own services); this module only
//! adapts it to the server: the window of [`SKEW`], a payload hash checked once the handler
//! has read the body, and the single-use nonce, which every replica shares through the
//! database (`Db::claim_hawk_nonce`), because the crate leaves nonces to its caller.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hawk::{Credentials, DigestAlgorithm, Key, PayloadHasher, RequestBuilder};

/// Largest accepted difference between the client's timestamp and the server's clock, seconds.
pub const SKEW: i64 = 60;

/// A parsed `Hawk …` authorization header with the fields the server needs.
#[derive(Debug)]
pub struct HawkHeader {
    /// The client id.
    pub id: String,
    /// Unix seconds.
    pub ts: i64,
    /// Client-chosen nonce.
    pub nonce: String,
    /// base64 payload hash, when the client sent one.
    pub hash: Option<String>,
    /// The application data, covered by the MAC: Taskcluster's `ext` (see
    /// [`super::taskcluster`]).
    pub ext: Option<String>,
    header: hawk::Header,
}

/// What a request looked like, as far as the MAC covers it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// Path and query, exactly as sent.
    pub resource: &'a str,
    /// Host the client connected to (lowercase).
    pub host: &'a str,
    /// Port the client connected to.
    pub port: u16,
}

impl RequestParts<'_> {
    fn request(&self) -> hawk::Request<'_> {
        RequestBuilder::new(self.method, self.host, self.port, self.resource).request()
    }
}

/// Largest `ts` taken, in seconds (the year 5138): the crate adds `ts` to the epoch unchecked,
/// which panics past `i64::MAX`, so longer values are refused before it parses them.
const MAX_TS: u64 = 99_999_999_999;

/// Parses the part after `Hawk `; id, ts, nonce and mac are required, and no attribute may be
/// given twice (the crate keeps the last one; a proxy reading the first would see another id).
pub fn parse(attrs: &str) -> Result<HawkHeader, &'static str> {
    let mut seen = std::collections::HashSet::new();
    for (name, value) in attributes(attrs) {
        if !seen.insert(name) {
            return Err("repeated Hawk attribute");
        }
        if name == "ts" && !value.parse::<u64>().is_ok_and(|ts| ts <= MAX_TS) {
            return Err("bad ts");
        }
    }
    let header = hawk::Header::from_str(attrs.trim()).map_err(|_| "malformed Hawk header")?;
    let id = header.id.clone().ok_or("missing id")?;
    let ts = header.ts.ok_or("missing ts")?;
    let ts = ts.duration_since(UNIX_EPOCH).map_err(|_| "bad ts")?.as_secs() as i64;
    let nonce = header.nonce.clone().ok_or("missing nonce")?;
    header.mac.as_ref().ok_or("missing mac")?;
    let hash = header.hash.as_ref().map(|h| B64.encode(h));
    let ext = header.ext.clone();
    Ok(HawkHeader { id, ts, nonce, hash, ext, header })
}

/// The `name="value"` attributes of a header. Values are quoted and cannot contain a quote, so
/// a name is what stands before each `="` outside quotes (stripped of commas and spaces, as the
/// crate strips it), and its value runs to the next quote.
fn attributes(attrs: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut outside = true;
    let mut start = 0;
    let mut name = "";
    for (i, c) in attrs.char_indices() {
        match c {
            '"' if outside => {
                // As the crate reads a name: any run of commas and spaces before it.
                name = attrs[start..i]
                    .trim_start_matches(|c: char| c == ',' || c.is_whitespace())
                    .trim_end()
                    .trim_end_matches('=')
                    .trim_end();
                outside = false;
                start = i + 1;
            }
            '"' => {
                found.push((name, &attrs[start..i]));
                outside = true;
                start = i + 1;
            }
            _ => {}
        }
    }
    found
}

/// Whether the header's MAC is right for `key` and this request, and its timestamp within
/// [`SKEW`] of the clock. The payload hash, when given, is covered by the MAC; whether it
/// matches the body is checked when the body is read ([`payload_hash`]).
pub fn verify(key: &[u8], h: &HawkHeader, parts: &RequestParts<'_>) -> bool {
    let Ok(key) = Key::new(key, DigestAlgorithm::Sha256) else { return false };
    parts.request().validate_header(&h.header, &key, Duration::from_secs(SKEW as u64))
}

/// The base64 payload hash of a body (content type without parameters, lowercased).
pub fn payload_hash(content_type: &str, body: &[u8]) -> String {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_lowercase();
    B64.encode(PayloadHasher::hash(ct, DigestAlgorithm::Sha256, body).expect("SHA-256 is supported"))
}

/// Builds a complete `Authorization` header value, as a Hawk client does (the tests use it to
/// speak Hawk as `tooltool.py` does).
pub fn client_header(
    id: &str,
    key: &str,
    r: &RequestParts<'_>,
    ts: i64,
    nonce: &str,
    payload: Option<(&str, &[u8])>,
) -> String {
    let credentials = Credentials {
        id: id.to_owned(),
        key: Key::new(key.as_bytes(), DigestAlgorithm::Sha256).expect("SHA-256 is supported"),
    };
    let hash = payload.map(|(ct, body)| {
        let ct = ct.split(';').next().unwrap_or("").trim().to_lowercase();
        PayloadHasher::hash(ct, DigestAlgorithm::Sha256, body).expect("SHA-256 is supported")
    });
    let request = RequestBuilder::new(r.method, r.host, r.port, r.resource).hash(hash.as_deref()).request();
    let ts = UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64);
    let header = request.make_header_full(&credentials, ts, nonce).expect("a header of plain values");
    format!("Hawk {header}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: RequestParts<'static> =
        RequestParts { method: "GET", resource: "/sha512/abc?region=us-east-1", host: "example.com", port: 443 };

    fn now() -> i64 {
        crate::time::now()
    }

    #[test]
    fn a_signed_header_verifies_and_tampering_does_not() {
        let value = client_header("c", "secret", &PARTS, now(), "abcdef", None);
        let h = parse(value.strip_prefix("Hawk ").unwrap()).unwrap();
        assert_eq!((h.id.as_str(), h.nonce.as_str(), h.hash.as_deref()), ("c", "abcdef", None));
        assert!(verify(b"secret", &h, &PARTS));
        assert!(!verify(b"wrong", &h, &PARTS));
        assert!(!verify(b"secret", &h, &RequestParts { resource: "/sha512/abd?region=us-east-1", ..PARTS }));
        assert!(!verify(b"secret", &h, &RequestParts { port: 80, ..PARTS }));
        assert!(!verify(b"secret", &h, &RequestParts { method: "POST", ..PARTS }));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        for ts in [now() - SKEW - 5, now() + SKEW + 5] {
            let value = client_header("c", "secret", &PARTS, ts, "abcdef", None);
            assert!(!verify(b"secret", &parse(value.strip_prefix("Hawk ").unwrap()).unwrap(), &PARTS));
        }
    }

    /// The MAC of the Hawk specification's own example (hueniverse/hawk README), which
    /// `tooltool.py`'s mohawk computes the same way.
    #[test]
    fn the_mac_is_the_one_of_the_specification() {
        let header = r#"id="dh37fgj492je", ts="1353832234", nonce="j4h3g2", ext="some-app-ext-data", mac="6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE=""#;
        let h = parse(header).unwrap();
        let key = Key::new(b"werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn", DigestAlgorithm::Sha256).unwrap();
        let request = RequestBuilder::new("GET", "example.com", 8000, "/resource/1?b=1&a=2").ext("some-app-ext-data");
        let ts_skew = Duration::from_secs(u32::MAX as u64 * 10);
        assert!(request.request().validate_header(&h.header, &key, ts_skew));
    }

    #[test]
    fn payload_hash_ignores_content_type_parameters() {
        assert_eq!(payload_hash("application/json; charset=utf-8", b"{}"), payload_hash("application/json", b"{}"));
        assert_ne!(payload_hash("application/json", b"{}"), payload_hash("application/json", b"{ }"));
        let signed = client_header("c", "k", &PARTS, now(), "n", Some(("application/json", b"{}")));
        let h = parse(signed.strip_prefix("Hawk ").unwrap()).unwrap();
        assert_eq!(h.hash.unwrap(), payload_hash("application/json", b"{}"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(parse(r#"mac="eA==", ts="1", nonce="n""#).is_err(), "no id");
        assert!(parse(r#"id="c", mac="eA==", ts="soon", nonce="n""#).is_err());
        assert!(parse(r#"id="c", id="d", mac="eA==", ts="1", nonce="n""#).is_err());
        assert!(parse(r#"id=c, mac="eA==", ts="1", nonce="n""#).is_err());
        assert!(parse(r#"id="c", ts="1", nonce="n""#).is_err(), "no mac");
    }

    #[test]
    fn timestamps_too_large_for_the_clock_are_refused_without_a_panic() {
        for ts in ["99999999999999999999", "18446744073709551615", "9223372036854775808", "-1", "1e9", ""] {
            for sep in [", ", ", , ", ",,", " ,"] {
                let header = format!(r#"id="c"{sep}ts="{ts}", nonce="n", mac="eA==""#);
                assert_eq!(parse(&header).err(), Some("bad ts"), "{header}");
            }
        }
        let header = r#"id="a", , id="b", ts="1", nonce="n", mac="eA==""#;
        assert_eq!(parse(header).err(), Some("repeated Hawk attribute"));
        let header = r#"id="c", ts="99999999999", nonce="n", ext="e", mac="eA==""#;
        assert_eq!(parse(header).unwrap().ext.as_deref(), Some("e"));
    }

    mod properties {
        //! The Hawk header parser and the `ext` reader face the network: thousands of hostile
        //! inputs, no panic, and only the protocol's answers.
        use proptest::prelude::*;

        use super::super::{MAX_TS, parse};
        use crate::auth::taskcluster::{Ext, Issuer, limit};

        /// Attribute values that reach the edges: huge and signed numbers, quotes, commas,
        /// base64 of anything, and any text.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof!["[0-9]{0,25}", "-?[0-9]{1,12}", "[A-Za-z0-9+/=_-]{0,40}", "[ ,=\"a-z]{0,10}", any::<String>(),]
        }

        fn header() -> impl Strategy<Value = String> {
            let name = prop_oneof![
                Just("id"),
                Just("ts"),
                Just("nonce"),
                Just("mac"),
                Just("hash"),
                Just("ext"),
                Just("app"),
                Just("x")
            ];
            prop_oneof![
                proptest::collection::vec(
                    (name, value(), prop_oneof![Just(", "), Just(","), Just(" , , "), Just(",,")]),
                    0..8
                )
                .prop_map(|attrs| { attrs.iter().map(|(n, v, sep)| format!("{sep}{n}=\"{v}\"")).collect::<String>() }),
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

            #[test]
            fn any_header_parses_or_is_refused_without_a_panic(h in header()) {
                if let Ok(parsed) = parse(&h) {
                    prop_assert!((0..=MAX_TS as i64).contains(&parsed.ts));
                }
            }

            #[test]
            fn any_ext_is_read_or_refused_and_never_widens_the_scopes(ext in value(), json in any::<String>()) {
                use base64::Engine as _;
                let scopes = vec!["p/download/public".to_owned()];
                let issuer = Issuer { id: "i", access_token: "k", scopes: &scopes, expires: 10 };
                let encoded = base64::engine::general_purpose::STANDARD.encode(&json);
                for text in [ext, encoded] {
                    if let Ok(parsed) = Ext::parse(&text) {
                        let _ = parsed.issuer("i");
                        if let Ok(res) = limit("i", issuer, &parsed, 0, 0) {
                            // Without a valid certificate, only a narrowing can pass.
                            prop_assert!(res.scopes.iter().all(|s| s == "p/download/public"));
                            prop_assert_eq!(res.key.as_str(), "k");
                        }
                    }
                }
            }
        }
    }
}
