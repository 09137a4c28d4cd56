//! Taskcluster's Hawk `ext`: temporary credentials (`certificate`) and `authorizedScopes`,
//! checked exactly as Taskcluster's own auth service checks them, so that the requests a CI task
//! sends through the Taskcluster proxy are accepted here with the same scopes as there.
//!
//! - `ext` is base64 (standard or URL-safe, padded or not) of a JSON object.
//! - A `certificate` is signed with HMAC-SHA256 keyed by the issuer's accessToken; the
//!   temporary accessToken, which keys the request's MAC, is derived from its seed with the
//!   same key. Its scopes replace the issuer's, and each must be held by the issuer.
//! - `authorizedScopes` then narrows the scopes to that list, each of which must be held.
//!
//! Pure: no state, no I/O. [`super::caller`] feeds it the issuer it looked up.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::covers;

/// Longest a certificate may last, milliseconds (31 days, as in Taskcluster).
pub const MAX_CERTIFICATE_MS: i64 = 31 * 24 * 60 * 60 * 1000;

/// Why an `ext` was refused (logged at debug level; the caller is told only 401).
pub type Refusal = &'static str;

/// A parsed `ext`.
#[derive(Debug, Default)]
pub struct Ext {
    certificate: Option<Value>,
    authorized_scopes: Option<Value>,
}

impl Ext {
    /// Parses the `ext` attribute of a Hawk header.
    pub fn parse(ext: &str) -> Result<Self, Refusal> {
        // Taskcluster decodes with Node's lenient base64, which takes both alphabets.
        let unified: String = ext
            .trim()
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let bytes = STANDARD_NO_PAD.decode(unified.as_bytes()).map_err(|_| "ext is not base64")?;
        let mut object = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) => o,
            _ => return Err("ext is not a JSON object"),
        };
        Ok(Self { certificate: object.remove("certificate"), authorized_scopes: object.remove("authorizedScopes") })
    }

    /// Whether the `ext` carries temporary credentials.
    pub fn has_certificate(&self) -> bool {
        self.certificate.is_some()
    }

    /// The client whose credentials sign this request: the certificate's `issuer` for named
    /// temporary credentials, otherwise the Hawk id itself.
    pub fn issuer<'a>(&'a self, credential_name: &'a str) -> Result<&'a str, Refusal> {
        // An empty issuer is no issuer, as in Taskcluster (`if (cert.issuer)`).
        let Some(issuer) = self.certificate.as_ref().and_then(|c| c.get("issuer")).filter(|i| *i != "") else {
            return Ok(credential_name);
        };
        let issuer = issuer.as_str().ok_or("ext.certificate.issuer must be a string")?;
        if issuer == credential_name {
            return Err("ext.certificate.issuer must differ from the supplied clientId");
        }
        Ok(issuer)
    }
}

/// The client that issued the credentials, as this server holds it.
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    /// Its clientId.
    pub id: &'a str,
    /// Its accessToken: the certificate's signing key.
    pub access_token: &'a str,
    /// Its scopes.
    pub scopes: &'a [String],
    /// When its credentials expire, unix seconds.
    pub expires: i64,
}

/// What a request signed under an `ext` may do.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    /// The key of the request's MAC: the temporary accessToken, or the issuer's own.
    pub key: String,
    /// The caller's scopes.
    pub scopes: Vec<String>,
    /// When the credentials expire, unix seconds.
    pub expires: i64,
}

/// Applies `ext` to the issuer's credentials for a request from `credential_name`, at
/// `now_ms`, allowing `skew_ms` of clock difference at the certificate's start and expiry.
pub fn limit(
    credential_name: &str,
    issuer: Issuer<'_>,
    ext: &Ext,
    now_ms: i64,
    skew_ms: i64,
) -> Result<Limited, Refusal> {
    let mut res =
        Limited { key: issuer.access_token.to_owned(), scopes: issuer.scopes.to_vec(), expires: issuer.expires };
    if let Some(cert) = &ext.certificate {
        let cert = Certificate::read(cert)?;
        if cert.start > now_ms + skew_ms {
            return Err("ext.certificate.start > now");
        }
        if cert.expiry < now_ms - skew_ms {
            return Err("ext.certificate.expiry < now");
        }
        if cert.expiry.checked_sub(cert.start).is_none_or(|d| d > MAX_CERTIFICATE_MS) {
            return Err("ext.certificate cannot last longer than 31 days");
        }
        if issuer.id != credential_name {
            let create = format!("auth:create-client:{credential_name}");
            if !held(issuer.scopes, &create) {
                return Err("ext.certificate issuer lacks auth:create-client for the supplied clientId");
            }
        } else if cert.object.contains_key("clientId") {
            return Err("ext.certificate.clientId must only be used with ext.certificate.issuer");
        }
        if !cert.scopes.iter().all(|s| held(issuer.scopes, s)) {
            return Err("ext.certificate issuer does not hold every certificate scope");
        }
        let named = cert.object.get("issuer").is_some_and(|i| i != "").then_some((credential_name, issuer.id));
        let given = cert.object.get("signature").and_then(Value::as_str).and_then(|s| STANDARD.decode(s).ok());
        let mut expected = Hmac::<Sha256>::new_from_slice(issuer.access_token.as_bytes()).expect("any key length");
        expected.update(cert.signed_text(named).as_bytes());
        // Compared in constant time.
        if given.is_none_or(|given| expected.verify_slice(&given).is_err()) {
            return Err("ext.certificate.signature is not valid");
        }
        res.key = URL_SAFE_NO_PAD.encode(hmac(issuer.access_token, cert.seed.as_bytes()));
        res.expires = res.expires.min(cert.expiry.div_euclid(1000));
        res.scopes = cert.scopes;
    }
    if let Some(authorized) = &ext.authorized_scopes {
        let authorized = scopes(authorized).ok_or("ext.authorizedScopes must be an array of valid scopes")?;
        if !authorized.iter().all(|s| held(&res.scopes, s)) {
            return Err("the credentials do not satisfy authorizedScopes");
        }
        res.scopes = authorized;
    }
    Ok(res)
}

/// Whether `scopes` satisfy `wanted` (Taskcluster's wildcard rule: a grant ending in `*` holds
/// everything under its stem).
fn held(scopes: &[String], wanted: &str) -> bool {
    scopes.iter().any(|g| covers(g, wanted))
}

fn hmac(key: &str, data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A scope as Taskcluster takes it: printable ASCII.
fn valid_scope(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// A JSON array of valid scopes.
fn scopes(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|s| s.as_str().filter(|s| valid_scope(s)).map(str::to_owned)).collect()
}

/// The fields of a `certificate`, checked as Taskcluster checks them.
struct Certificate<'a> {
    object: &'a Map<String, Value>,
    seed: &'a str,
    start: i64,
    expiry: i64,
    scopes: Vec<String>,
}

impl<'a> Certificate<'a> {
    fn read(v: &'a Value) -> Result<Self, Refusal> {
        let object = v.as_object().ok_or("ext.certificate must be a JSON object")?;
        if object.get("version").and_then(Value::as_i64) != Some(1) {
            return Err("ext.certificate.version must be 1");
        }
        let seed = object.get("seed").and_then(Value::as_str).ok_or("ext.certificate.seed must be a string")?;
        if seed.len() != 44 {
            return Err("ext.certificate.seed must be 44 characters");
        }
        let start = object.get("start").and_then(Value::as_i64).ok_or("ext.certificate.start must be a number")?;
        let expiry = object.get("expiry").and_then(Value::as_i64).ok_or("ext.certificate.expiry must be a number")?;
        let scopes =
            object.get("scopes").and_then(scopes).ok_or("ext.certificate.scopes must be an array of valid scopes")?;
        Ok(Self { object, seed, start, expiry, scopes })
    }

    /// The text the signature covers; `named` is (credential name, issuer) for named
    /// temporary credentials.
    fn signed_text(&self, named: Option<(&str, &str)>) -> String {
        let mut lines = vec!["version:1".to_owned()];
        if let Some((name, issuer)) = named {
            lines.push(format!("clientId:{name}"));
            lines.push(format!("issuer:{issuer}"));
        }
        lines.push(format!("seed:{}", self.seed));
        lines.push(format!("start:{}", self.start));
        lines.push(format!("expiry:{}", self.expiry));
        lines.push("scopes:".to_owned());
        lines.extend(self.scopes.iter().cloned());
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporary credentials as Taskcluster's Python client (113.2.0) made them:
    /// `createTemporaryCredentials("issuer", "issuer-token", 2026-01-01T00:00Z, 01:00Z,
    /// ["a:b", "c:*"])`, and the same with `name="task-1"` and scopes `["a:b"]`.
    const CERT: &str = r#"{"version":1,"scopes":["a:b","c:*"],"start":1767225600000,"expiry":1767229200000,"seed":"RLLVG1TrQGyUa0aP288-0AcvJekf56S8WqBC-BnctBdA","signature":"xeg+QyptzNQt4uPMATqBlBEYf1BGnIkXHxPPE5XLGTQ="}"#;
    const CERT_TOKEN: &str = "Ic8fwCMYqzqLWW9ZaihAnjb7vs6KO2Kw3jc73dwy7Ro";
    const NAMED: &str = r#"{"version":1,"scopes":["a:b"],"start":1767225600000,"expiry":1767229200000,"seed":"S59hlO30TwSZ5Seu_PN85AfE2AHBsJSjC64v90KOCZ0A","issuer":"issuer","signature":"L/dl2YVLw5T4AL8+VjHwqBo9nQy+zGGKZtFxN2qC1z8="}"#;
    const NAMED_TOKEN: &str = "tgRWlEwje48ROu3QycEUrVspyqOLAblRsvOCTBBOLZ0";
    const DURING: i64 = 1_767_227_000_000;

    fn cert_ext(cert: &str) -> Ext {
        ext_of(&format!(r#"{{"certificate":{cert}}}"#))
    }

    #[test]
    fn taskclusters_own_certificate_verifies_and_derives_its_temporary_key() {
        let held = vec!["*".to_owned()];
        let res = limit("issuer", issuer(&held), &cert_ext(CERT), DURING, 0).unwrap();
        assert_eq!(
            res,
            Limited { key: CERT_TOKEN.into(), scopes: vec!["a:b".into(), "c:*".into()], expires: 1_767_229_200 }
        );
        let held = vec!["a:*".to_owned(), "auth:create-client:task-*".to_owned()];
        let ext = cert_ext(NAMED);
        assert_eq!(ext.issuer("task-1"), Ok("issuer"));
        let res = limit("task-1", issuer(&held), &ext, DURING, 0).unwrap();
        assert_eq!((res.key.as_str(), res.scopes.as_slice()), (NAMED_TOKEN, &["a:b".to_owned()][..]));
    }

    #[test]
    fn certificates_are_refused_outside_their_rules() {
        let all = vec!["*".to_owned()];
        let refusal = |name: &str, scopes: &[String], cert: &str, now: i64| {
            limit(name, issuer(scopes), &cert_ext(cert), now, 60_000).err()
        };
        let end = 1_767_229_200_000;
        assert_eq!(refusal("issuer", &all, CERT, end + 61_000), Some("ext.certificate.expiry < now"));
        assert_eq!(refusal("issuer", &all, CERT, end + 59_000), None, "expired within the skew");
        assert_eq!(refusal("issuer", &all, CERT, 1_767_225_600_000 - 61_000), Some("ext.certificate.start > now"));
        let tampered = CERT.replace("c:*", "c:d");
        assert_eq!(refusal("issuer", &all, &tampered, DURING), Some("ext.certificate.signature is not valid"));
        let lacking = refusal("issuer", &["a:b".to_owned()], CERT, DURING);
        assert_eq!(lacking, Some("ext.certificate issuer does not hold every certificate scope"));
        let uncreated = refusal("task-1", &["a:*".to_owned()], NAMED, DURING);
        assert_eq!(uncreated, Some("ext.certificate issuer lacks auth:create-client for the supplied clientId"));
        let long = CERT.replace("1767229200000", &(1_767_225_600_000 + MAX_CERTIFICATE_MS + 1).to_string());
        let wrapping =
            CERT.replace("1767225600000", &i64::MIN.to_string()).replace("1767229200000", &i64::MAX.to_string());
        let wraps = refusal("issuer", &all, &wrapping, DURING);
        assert_eq!(wraps, Some("ext.certificate cannot last longer than 31 days"), "no overflow");
        assert_eq!(refusal("issuer", &all, &long, DURING), Some("ext.certificate cannot last longer than 31 days"));
        let wrong_key = Issuer { access_token: "other-token", ..issuer(&all) };
        let signed_by_other = limit("issuer", wrong_key, &cert_ext(CERT), DURING, 0).err();
        assert_eq!(signed_by_other, Some("ext.certificate.signature is not valid"));
    }

    fn ext_of(json: &str) -> Ext {
        Ext::parse(&URL_SAFE_NO_PAD.encode(json)).unwrap()
    }

    fn issuer(scopes: &[String]) -> Issuer<'_> {
        Issuer { id: "issuer", access_token: "issuer-token", scopes, expires: 1_900_000_000 }
    }

    #[test]
    fn ext_is_read_in_either_base64_alphabet_with_or_without_padding() {
        let json = r#"{"authorizedScopes":["x?>"]}"#;
        for text in [STANDARD.encode(json), STANDARD_NO_PAD.encode(json), URL_SAFE_NO_PAD.encode(json)] {
            assert!(Ext::parse(&text).unwrap().authorized_scopes.is_some(), "{text}");
        }
        assert!(Ext::parse("not base64!").is_err());
        assert!(Ext::parse(&STANDARD.encode("[1]")).is_err(), "not an object");
    }

    #[test]
    fn authorized_scopes_narrow_and_must_be_held() {
        let held = vec!["p/*".to_owned()];
        let ext = ext_of(r#"{"authorizedScopes":["p/download/public"]}"#);
        let res = limit("issuer", issuer(&held), &ext, 0, 0).unwrap();
        assert_eq!(res.scopes, ["p/download/public"]);
        assert_eq!(res.key, "issuer-token");
        let beyond = ext_of(r#"{"authorizedScopes":["q/manage"]}"#);
        assert!(limit("issuer", issuer(&held), &beyond, 0, 0).is_err());
        let not_a_list = ext_of(r#"{"authorizedScopes":"p/manage"}"#);
        assert!(limit("issuer", issuer(&held), &not_a_list, 0, 0).is_err());
    }

    #[test]
    fn a_named_issuer_must_differ_from_the_name() {
        let ext = ext_of(r#"{"certificate":{"issuer":"me"}}"#);
        assert_eq!(ext.issuer("task"), Ok("me"));
        assert!(ext.issuer("me").is_err());
        assert_eq!(Ext::default().issuer("me"), Ok("me"));
    }

    #[test]
    fn malformed_certificates_are_refused_before_the_signature() {
        let held = vec!["*".to_owned()];
        for cert in [
            r#"[]"#,
            r#"{"version":2,"seed":"x","start":0,"expiry":1,"scopes":[]}"#,
            r#"{"version":1,"seed":"short","start":0,"expiry":1,"scopes":[]}"#,
            r#"{"version":1,"seed":"0123456789012345678901234567890123456789abcd","start":"0","expiry":1,"scopes":[]}"#,
            r#"{"version":1,"seed":"0123456789012345678901234567890123456789abcd","start":0,"expiry":1,"scopes":["\n"]}"#,
        ] {
            let ext = ext_of(&format!(r#"{{"certificate":{cert}}}"#));
            assert!(limit("issuer", issuer(&held), &ext, 0, 0).is_err(), "{cert}");
        }
    }
}
