//! Signed URLs of the embedded store: an HMAC-SHA256 over the method, path, expiry and (for
//! uploads) the declared size, checked in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks the embedded store's URLs. The first key signs; all keys verify, so URLs
/// handed out before a key rotation stay valid until they expire.
#[derive(Clone)]
pub struct UrlSigner {
    /// One HMAC per key, keyed once: signing a URL clones one instead of hashing the key again.
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(***)")
    }
}

impl UrlSigner {
    /// A signer with this key.
    pub fn new(key: &[u8]) -> Self {
        Self::with_keys(vec![key.to_vec()])
    }

    /// A signer with several keys, the first of which signs.
    pub fn with_keys(keys: Vec<Vec<u8>>) -> Self {
        assert!(!keys.is_empty(), "at least one key");
        let keys = keys.iter().map(|k| HmacSha256::new_from_slice(k).expect("HMAC takes any key length")).collect();
        Self { keys }
    }

    /// The MAC of `method\npath\nexpires\nsize` (size empty when `None`).
    fn mac(key: &HmacSha256, method: &str, path: &str, expires: u64, size: Option<u64>) -> HmacSha256 {
        let mut mac = key.clone();
        for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n"] {
            mac.update(part);
        }
        mac.update(itoa::Buffer::new().format(expires).as_bytes());
        mac.update(b"\n");
        if let Some(size) = size {
            mac.update(itoa::Buffer::new().format(size).as_bytes());
        }
        mac
    }

    /// The signature of a URL (its hex goes in the URL).
    pub fn signature(&self, method: &str, path: &str, expires: u64, size: Option<u64>) -> [u8; 32] {
        Self::mac(&self.keys[0], method, path, expires, size).finalize().into_bytes().into()
    }

    /// The hex signature of a URL.
    #[cfg(test)]
    fn sign(&self, method: &str, path: &str, expires: u64, size: Option<u64>) -> String {
        let mut out = String::with_capacity(64);
        tooltool_proto::push_hex(&mut out, &self.signature(method, path, expires, size));
        out
    }

    /// Whether `signature` is right for these values (constant time).
    pub fn verify(&self, method: &str, path: &str, expires: u64, size: Option<u64>, signature: &str) -> bool {
        let Ok(sig) = hex::decode(signature) else { return false };
        self.keys.iter().any(|k| Self::mac(k, method, path, expires, size).verify_slice(&sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let s = UrlSigner::new(b"k");
        let sig = s.sign("PUT", "/_blobs/staging/x", 100, Some(5));
        assert!(s.verify("PUT", "/_blobs/staging/x", 100, Some(5), &sig));
        assert!(!s.verify("GET", "/_blobs/staging/x", 100, Some(5), &sig));
        assert!(!s.verify("PUT", "/_blobs/staging/y", 100, Some(5), &sig));
        assert!(!s.verify("PUT", "/_blobs/staging/x", 101, Some(5), &sig));
        assert!(!s.verify("PUT", "/_blobs/staging/x", 100, Some(6), &sig));
        assert!(!s.verify("PUT", "/_blobs/staging/x", 100, Some(5), "zz"));
        assert!(!UrlSigner::new(b"other").verify("PUT", "/_blobs/staging/x", 100, Some(5), &sig));
    }
}
