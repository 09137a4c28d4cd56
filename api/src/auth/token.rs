//! Bearer tokens: HS256 JWTs signed with a key derived from the server's secret.
//!
//! The algorithm is pinned (no `none`, no RS/HS confusion), and `exp`, `iss`, `aud`, `sub` are
//! required. The key id (`kid`) names the key so that keys can rotate.

use crate::time::unix_now;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims of a tooltool token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The caller id (client id).
    pub sub: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Not valid before (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry (unix seconds).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Unique token id.
    pub jti: String,
    /// The credential generation of a registered client (bumped by rotation); tokens of a
    /// revoked client, or of an older generation, are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#gen: Option<i64>,
}

/// Why a presented token was refused (logged at debug level; the caller only sees 401).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The `kid` names no key this server knows.
    #[error("unknown key id")]
    UnknownKey,
    /// Signature, algorithm, expiry, issuer, audience or shape is wrong.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// One HS256 key and its id.
#[derive(Clone)]
struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let mut kid = String::new();
        tooltool_proto::push_hex(&mut kid, &sha2::Sha256::digest(bytes)[..8]);
        Self { kid, encoding: EncodingKey::from_secret(bytes), decoding: DecodingKey::from_secret(bytes) }
    }
}

/// Signs and verifies tokens. The first key signs; every key verifies, so keys rotate without
/// downtime: add the new key first, keep the old ones until their tokens have expired.
#[derive(Clone)]
pub struct Tokens {
    keys: Vec<Key>,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Tokens verified before and their claims. The keys never change while the process runs,
    /// so a token that verified once verifies again, until it expires: a hit skips the HMAC
    /// and the JSON decoding but still checks `exp` and `nbf`. Only successes are kept.
    verified: Arc<Mutex<HashMap<String, Claims>>>,
}

/// Most verified tokens kept (the map is emptied when full).
const VERIFIED_TOKENS: usize = 4096;

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("Tokens").field("kids", &kids).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Builds the signer/verifier from one key.
    pub fn new(key: &[u8], issuer: &str, audience: &str) -> Self {
        Self::with_keys(&[key.to_vec()], issuer, audience)
    }

    /// Builds the signer/verifier from several keys, the first of which signs.
    pub fn with_keys(keys: &[Vec<u8>], issuer: &str, audience: &str) -> Self {
        assert!(!keys.is_empty(), "at least one key");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            keys: keys.iter().map(|k| Key::new(k)).collect(),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            verified: Arc::default(),
        }
    }

    /// The id of the signing key.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The configured audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Claims for `subject` valid from now for `ttl`.
    pub fn claims(&self, subject: &str, scopes: &[String], ttl: Duration) -> Claims {
        let now = unix_now();
        Claims {
            sub: subject.to_owned(),
            scopes: scopes.to_vec(),
            iat: now,
            nbf: None,
            exp: now + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            r#gen: None,
        }
    }

    /// Mints a token for `subject` with `scopes`, valid for `ttl`.
    pub fn issue(&self, subject: &str, scopes: &[String], ttl: Duration) -> String {
        self.sign(&self.claims(subject, scopes, ttl))
    }

    /// Signs claims with the current key. Signing is deterministic: the same claims and key
    /// give the same token, which is how a client's access token is re-derived, never stored.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_with(&self.keys[0].kid, claims).expect("the signing key exists")
    }

    /// Signs claims with the key `kid`, if it is configured.
    pub fn sign_with(&self, kid: &str, claims: &Claims) -> Option<String> {
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        Some(jsonwebtoken::encode(&header, claims, &key.encoding).expect("HS256 signing cannot fail"))
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (now, leeway) = (unix_now(), self.validation.leeway);
        // The same rules as jsonwebtoken's: expired once now - leeway > exp, not yet valid
        // while nbf > now + leeway.
        let timely = |c: &Claims| now <= c.exp.saturating_add(leeway) && c.nbf.is_none_or(|n| n <= now + leeway);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claims) = verified.get(token).filter(|c| timely(c)) {
            return Ok(claims.clone());
        }
        drop(verified);
        let claims = self.verify_signed(token)?;
        verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = header.kid.as_deref().and_then(|kid| self.keys.iter().find(|k| k.kid == kid));
        let key = key.ok_or(TokenError::UnknownKey)?;
        Ok(jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn tokens() -> Tokens {
        Tokens::new(b"0123456789abcdef0123456789abcdef", "tooltool", "tooltool")
    }

    fn claims(t: &Tokens) -> Claims {
        let token = t.issue("alice", &["s".into()], Duration::from_secs(60));
        t.verify(&token).unwrap()
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let t = tokens();
        let c = claims(&t);
        assert_eq!(c.sub, "alice");
        assert_eq!(c.scopes, vec!["s".to_string()]);
        assert_eq!(c.exp - c.iat, 60);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = tokens();
        let mut c = claims(&t);
        c.exp = unix_now() - 120;
        assert!(t.verify(&t.sign(&c)).is_err());
    }

    #[test]
    fn not_yet_valid_tokens_are_refused() {
        let t = tokens();
        let mut c = claims(&t);
        c.nbf = Some(unix_now() + 3600);
        assert!(t.verify(&t.sign(&c)).is_err());
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let t = tokens();
        let mut c = claims(&t);
        c.aud = "someone-else".into();
        assert!(t.verify(&t.sign(&c)).is_err());
        let mut c = claims(&t);
        c.iss = "someone-else".into();
        assert!(t.verify(&t.sign(&c)).is_err());
    }

    #[test]
    fn tokens_from_another_key_are_refused() {
        let other = Tokens::new(b"another-key-another-key-another-key", "tooltool", "tooltool");
        let token = other.issue("mallory", &["*".into()], Duration::from_secs(60));
        assert!(matches!(tokens().verify(&token), Err(TokenError::UnknownKey)));
    }

    #[test]
    fn rotated_keys_keep_verifying_until_removed() {
        let old = Tokens::new(b"old-key-old-key-old-key-old-key!", "tooltool", "tooltool");
        let token = old.issue("alice", &[], Duration::from_secs(60));
        let both = Tokens::with_keys(
            &[b"new-key-new-key-new-key-new-key!".to_vec(), b"old-key-old-key-old-key-old-key!".to_vec()],
            "tooltool",
            "tooltool",
        );
        assert_eq!(both.verify(&token).unwrap().sub, "alice");
        assert_ne!(both.signing_kid(), old.signing_kid());
        let fresh = both.issue("bob", &[], Duration::from_secs(60));
        assert!(old.verify(&fresh).is_err(), "the new key signs");
        let new_only = Tokens::new(b"new-key-new-key-new-key-new-key!", "tooltool", "tooltool");
        assert!(matches!(new_only.verify(&token), Err(TokenError::UnknownKey)));
        assert_eq!(new_only.verify(&fresh).unwrap().sub, "bob");
    }

    #[test]
    fn hs_rs_confusion_is_refused() {
        let t = tokens();
        let c = claims(&t);
        for alg in ["RS256", "ES256", "HS512", "PS256"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#, t.signing_kid());
            let token = format!("{}.{}.AAAA", B64.encode(header), B64.encode(serde_json::to_vec(&c).unwrap()));
            assert!(t.verify(&token).is_err(), "{alg}");
        }
    }

    #[test]
    fn signing_is_deterministic() {
        let t = tokens();
        let c = claims(&t);
        assert_eq!(t.sign(&c), t.sign(&c));
    }

    #[test]
    fn alg_none_is_refused() {
        let t = tokens();
        let c = claims(&t);
        let header = format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, t.signing_kid());
        let token = format!("{}.{}.", B64.encode(header), B64.encode(serde_json::to_vec(&c).unwrap()));
        assert!(t.verify(&token).is_err());
    }

    #[test]
    fn a_forged_signature_is_refused() {
        let t = tokens();
        let token = t.issue("alice", &["s".into()], Duration::from_secs(60));
        let (head, _sig) = token.rsplit_once('.').unwrap();
        let mut c = claims(&t);
        c.scopes = vec!["*".into()];
        let (h, _, s) = {
            let mut parts = token.split('.');
            (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
        };
        let forged = format!("{h}.{}.{s}", B64.encode(serde_json::to_vec(&c).unwrap()));
        assert!(t.verify(&forged).is_err());
        assert!(t.verify(&format!("{head}.AAAA")).is_err());
    }

    /// A token verified (and remembered) while valid is refused once it expires.
    #[test]
    fn a_remembered_token_is_still_refused_after_it_expires() {
        let t = tokens();
        let mut c = t.claims("alice", &["s".into()], Duration::from_secs(60));
        // Valid for about one more second, counting the 30 s leeway.
        c.exp = unix_now() - 29;
        let token = t.sign(&c);
        assert_eq!(t.verify(&token).unwrap().sub, "alice");
        assert_eq!(t.verify(&token).unwrap().sub, "alice", "the remembered answer");
        std::thread::sleep(Duration::from_millis(2100));
        assert!(matches!(t.verify(&token), Err(TokenError::Invalid(_))));
    }
}
