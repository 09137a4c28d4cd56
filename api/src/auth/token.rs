//! Bearer tokens: HS256 JWTs signed with a key derived from the server's secret.
//!
//! The algorithm is pinned (no `none`, no RS/HS confusion), and `exp`, `iss`, `aud`, `sub` are
//! required. The key id (`kid`) names the key so that keys can rotate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Signs and verifies tokens.
#[derive(Clone)]
pub struct Tokens {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Builds the signer/verifier from raw key bytes.
    pub fn new(key: &[u8], issuer: &str, audience: &str) -> Self {
        use sha2::Digest as _;
        let kid = hex::encode(&sha2::Sha256::digest(key)[..8]);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            kid,
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Mints a token for `subject` with `scopes`, valid for `ttl`.
    pub fn issue(&self, subject: &str, scopes: &[String], ttl: Duration) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: subject.to_owned(),
            scopes: scopes.to_vec(),
            iat: now,
            nbf: None,
            exp: now + ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the current key (tests use it to forge edge cases).
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
    fn alg_none_is_refused() {
        let t = tokens();
        let c = claims(&t);
        let header = format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, t.kid);
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
}
