//! Ed25519 keys of TUF roles: read from and written as PKCS#8 v1 PEM (what
//! `openssl genpkey -algorithm ed25519` writes, and the one version pyca/cryptography, OpenSSL
//! 3.0 and tough all load), their public form in metadata, their key id, and signing.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use serde_json::{Value, json};

use super::canonical::{self, CanonicalError};

/// The PEM label of a PKCS#8 private key.
const PEM_LABEL: &str = "PRIVATE KEY";

/// Why a key could not be read, or a value signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM `PRIVATE KEY` block.
    #[error("not a PEM \"{PEM_LABEL}\" block")]
    NotPem,
    /// The block is not an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 PKCS#8 key: {0}")]
    NotEd25519(String),
    /// The value to sign has no canonical form.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// An Ed25519 key pair that signs TUF metadata.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    keyid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("keyid", &self.keyid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key, and its PKCS#8 v1 PEM (to be written to a file by the caller).
    pub fn generate() -> (Self, String) {
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).expect("the system RNG works");
        let pem = pem_encode(doc.as_ref());
        (Self::from_pem(&pem).expect("a key just generated loads"), pem)
    }

    /// Reads a PKCS#8 (v1 or v2) Ed25519 key in PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_decode(pem)?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| KeyError::NotEd25519(e.to_string()))?;
        let keyid = keyid(&public_json(pair.public_key().as_ref()));
        Ok(Self { pair, keyid })
    }

    /// The key id: sha256 of the canonical JSON of [`Self::public`], as tough requires.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The public key as a TUF key object (`keytype`, `scheme`, `keyval.public` in hex).
    pub fn public(&self) -> Value {
        public_json(self.pair.public_key().as_ref())
    }

    /// The signature object over the canonical bytes of `signed`: `{"keyid", "sig"}`.
    pub fn sign(&self, signed: &Value) -> Result<Value, KeyError> {
        let bytes = canonical::to_vec(signed)?;
        Ok(json!({"keyid": self.keyid, "sig": hex::encode(self.pair.sign(&bytes).as_ref())}))
    }
}

/// `{"signed": signed, "signatures": [...]}` signed by each of `keys`: a metadata file.
pub fn envelope(signed: Value, keys: &[&SigningKey]) -> Result<Value, KeyError> {
    let signatures = keys.iter().map(|k| k.sign(&signed)).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"signed": signed, "signatures": signatures}))
}

/// Whether `sig` (hex) is a valid signature of `signed` by the TUF key object `key`.
pub fn verify(key: &Value, signed: &Value, sig: &str) -> bool {
    let (Some(public), Ok(bytes), Ok(sig)) = (
        key["keyval"]["public"].as_str().and_then(|p| hex::decode(p).ok()),
        canonical::to_vec(signed),
        hex::decode(sig),
    ) else {
        return false;
    };
    key["keytype"] == "ed25519" && UnparsedPublicKey::new(&ED25519, public).verify(&bytes, &sig).is_ok()
}

fn public_json(public: &[u8]) -> Value {
    json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": hex::encode(public)}})
}

/// sha256 of the canonical JSON of a key object, in hex.
pub fn keyid(key: &Value) -> String {
    let bytes = canonical::to_vec(key).expect("a key object is ASCII with integers only");
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref())
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

fn pem_decode(pem: &str) -> Result<Vec<u8>, KeyError> {
    match crate::pem::block(pem) {
        Ok((label, der)) if label == PEM_LABEL => Ok(der),
        _ => Err(KeyError::NotPem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl(args: &[&str]) -> std::process::Output {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    #[test]
    fn signs_canonical_bytes_and_a_changed_value_does_not_verify() {
        let (key, pem) = SigningKey::generate();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n") && pem.ends_with("-----END PRIVATE KEY-----\n"));
        let signed = json!({"_type": "root", "version": 1, "b": "x"});
        let sig = key.sign(&signed).unwrap();
        assert_eq!(sig["keyid"], key.keyid());
        assert_eq!(key.keyid(), keyid(&key.public()));
        assert!(verify(&key.public(), &signed, sig["sig"].as_str().unwrap()));
        assert!(!verify(
            &key.public(),
            &json!({"_type": "root", "version": 2, "b": "x"}),
            sig["sig"].as_str().unwrap()
        ));
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.keyid(), key.keyid(), "the PEM holds the same key");
    }

    /// What the key files of an operator look like: `openssl genpkey` writes them, and the PEM
    /// written here is one OpenSSL reads back as a PKCS#8 v1 Ed25519 key (version 0).
    #[test]
    fn keys_round_trip_with_openssl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let path = path.to_str().unwrap();
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", path]);
        let theirs = SigningKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap();
        let public = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]).stdout;
        assert_eq!(hex::encode(&public[public.len() - 32..]), theirs.public()["keyval"]["public"]);

        let (ours, pem) = SigningKey::generate();
        std::fs::write(path, &pem).unwrap();
        let text = String::from_utf8(openssl(&["asn1parse", "-in", path]).stdout).unwrap();
        assert!(text.lines().nth(1).unwrap().contains("INTEGER           :00"), "PKCS#8 v1: {text}");
        let public = openssl(&["pkey", "-in", path, "-pubout", "-outform", "DER"]).stdout;
        assert_eq!(hex::encode(&public[public.len() - 32..]), ours.public()["keyval"]["public"]);
    }

    #[test]
    fn what_is_not_an_ed25519_pem_key_is_refused() {
        assert!(matches!(SigningKey::from_pem("hello"), Err(KeyError::NotPem)));
        let junk = pem_encode(b"not a key");
        assert!(matches!(SigningKey::from_pem(&junk), Err(KeyError::NotEd25519(_))));
    }
}
