//! Hawk request authentication, as the original `tooltool.py` sends it when its credentials
//! file is JSON: `id` is the clientId, the key is the accessToken, HMAC-SHA256 over
//!
//! ```text
//! hawk.1.header\n{ts}\n{nonce}\n{METHOD}\n{path?query}\n{host}\n{port}\n{hash}\n{ext}\n
//! ```
//!
//! and, when the request has a body, `hash` = base64(SHA256("hawk.1.payload\n{content type}\n
//! {body}\n")). Timestamps must be within [`SKEW`] of the server's clock and a nonce may be used
//! once within that window.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// Largest accepted difference between the client's timestamp and the server's clock.
pub const SKEW: i64 = 60;

/// The attributes of a `Hawk …` authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HawkHeader {
    /// The client id.
    pub id: String,
    /// Unix seconds.
    pub ts: i64,
    /// Client-chosen nonce.
    pub nonce: String,
    /// base64 MAC.
    pub mac: String,
    /// base64 payload hash, when the client sent one.
    pub hash: Option<String>,
    /// Application data.
    pub ext: Option<String>,
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

/// Parses the part after `Hawk `.
pub fn parse(attrs: &str) -> Result<HawkHeader, &'static str> {
    let mut map: HashMap<&str, &str> = HashMap::new();
    let mut rest = attrs.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').ok_or("malformed attribute")?;
        let key = key.trim();
        let after = after.trim_start().strip_prefix('"').ok_or("attribute value not quoted")?;
        let (value, after) = after.split_once('"').ok_or("unterminated attribute value")?;
        if value.contains('\\') || map.insert(key, value).is_some() {
            return Err("bad or repeated attribute");
        }
        rest = after.trim_start().strip_prefix(',').unwrap_or(after).trim_start();
    }
    let get = |k: &str| map.get(k).map(|v| v.to_string());
    Ok(HawkHeader {
        id: get("id").ok_or("missing id")?,
        ts: get("ts").ok_or("missing ts")?.parse().map_err(|_| "bad ts")?,
        nonce: get("nonce").ok_or("missing nonce")?,
        mac: get("mac").ok_or("missing mac")?,
        hash: get("hash"),
        ext: get("ext"),
    })
}

/// The normalized string the MAC covers.
pub fn normalized(h: &HawkHeader, r: &RequestParts<'_>) -> String {
    format!(
        "hawk.1.header\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        h.ts,
        h.nonce,
        r.method.to_uppercase(),
        r.resource,
        r.host.to_lowercase(),
        r.port,
        h.hash.as_deref().unwrap_or(""),
        h.ext.as_deref().unwrap_or("")
    )
}

fn mac_of(key: &[u8], text: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    mac
}

/// The base64 MAC of a request.
pub fn compute_mac(key: &[u8], h: &HawkHeader, r: &RequestParts<'_>) -> String {
    B64.encode(mac_of(key, &normalized(h, r)).finalize().into_bytes())
}

/// Whether the header's MAC is right for `key` (constant time).
pub fn mac_matches(key: &[u8], h: &HawkHeader, r: &RequestParts<'_>) -> bool {
    let Ok(given) = B64.decode(&h.mac) else { return false };
    mac_of(key, &normalized(h, r)).verify_slice(&given).is_ok()
}

/// The base64 payload hash of a body.
pub fn payload_hash(content_type: &str, body: &[u8]) -> String {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_lowercase();
    let mut h = Sha256::new();
    h.update(b"hawk.1.payload\n");
    h.update(ct.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.update(b"\n");
    B64.encode(h.finalize())
}

/// Builds a complete `Authorization` header value, as a Hawk client does (used by tests and
/// tools that speak Hawk).
pub fn client_header(
    id: &str,
    key: &str,
    r: &RequestParts<'_>,
    ts: i64,
    nonce: &str,
    payload: Option<(&str, &[u8])>,
) -> String {
    let h = HawkHeader {
        id: id.to_owned(),
        ts,
        nonce: nonce.to_owned(),
        mac: String::new(),
        hash: payload.map(|(ct, body)| payload_hash(ct, body)),
        ext: None,
    };
    let mac = compute_mac(key.as_bytes(), &h, r);
    match &h.hash {
        Some(hash) => format!(r#"Hawk mac="{mac}", hash="{hash}", id="{id}", ts="{ts}", nonce="{nonce}""#),
        None => format!(r#"Hawk mac="{mac}", id="{id}", ts="{ts}", nonce="{nonce}""#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: RequestParts<'static> =
        RequestParts { method: "GET", resource: "/sha512/abc?region=us-east-1", host: "example.com", port: 443 };

    #[test]
    fn normalized_string_matches_the_original_client() {
        let h = parse(r#"mac="x", id="c", ts="1353832234", nonce="j4h3g2""#).unwrap();
        assert_eq!(
            normalized(&h, &PARTS),
            "hawk.1.header\n1353832234\nj4h3g2\nGET\n/sha512/abc?region=us-east-1\nexample.com\n443\n\n\n"
        );
    }

    #[test]
    fn a_signed_header_verifies_and_tampering_does_not() {
        let value = client_header("c", "secret", &PARTS, 1000, "abcdef", None);
        let h = parse(value.strip_prefix("Hawk ").unwrap()).unwrap();
        assert!(mac_matches(b"secret", &h, &PARTS));
        assert!(!mac_matches(b"wrong", &h, &PARTS));
        let other = RequestParts { resource: "/sha512/abd?region=us-east-1", ..PARTS };
        assert!(!mac_matches(b"secret", &h, &other));
        let other = RequestParts { port: 80, ..PARTS };
        assert!(!mac_matches(b"secret", &h, &other));
        let stale = HawkHeader { ts: 1001, ..h };
        assert!(!mac_matches(b"secret", &stale, &PARTS));
    }

    #[test]
    fn payload_hash_ignores_content_type_parameters() {
        assert_eq!(payload_hash("application/json; charset=utf-8", b"{}"), payload_hash("application/json", b"{}"));
        assert_ne!(payload_hash("application/json", b"{}"), payload_hash("application/json", b"{ }"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(parse(r#"mac="x", ts="1", nonce="n""#).is_err(), "no id");
        assert!(parse(r#"id="c", mac="x", ts="soon", nonce="n""#).is_err());
        assert!(parse(r#"id="c", id="d", mac="x", ts="1", nonce="n""#).is_err());
        assert!(parse(r#"id=c, mac="x", ts="1", nonce="n""#).is_err());
    }
}
