//! Downloads through a CDN: CloudFront signed URLs with a canned policy (PROTOCOL.md, "Downloads
//! through a CDN").
//!
//! The URL is `<base>/sha512/<digest>?Expires=…&Signature=…&Key-Pair-Id=…&Hash-Algorithm=SHA256`.
//! The signature covers the canned policy
//! `{"Statement":[{"Resource":"<url without query>","Condition":{"DateLessThan":{"AWS:EpochTime":<Expires>}}}]}`
//! with SHA-256: RSA PKCS#1 v1.5 with an RSA key (the original's keys work unchanged), ECDSA
//! P-256 (DER) with an EC key, both by aws-lc-rs, in CloudFront's URL-safe base64. SHA-1, the
//! original's choice, is not offered: aws-lc-rs's safe API has none, and CloudFront accepts
//! SHA-256 when the URL says so.
//!
//! The key is parsed once, when the signer is built at start; each URL is one signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;

use super::StoreError;
use tooltool_proto::Digest;

/// The private key a [`CdnSigner`] signs with.
enum CdnKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// Signs CloudFront URLs of verified blobs. Built once at start.
pub struct CdnSigner {
    /// `https://<distribution>` without a trailing `/`.
    base: String,
    key_id: String,
    key: CdnKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for CdnSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.key {
            CdnKey::Rsa(_) => "rsa",
            CdnKey::Ecdsa(_) => "ecdsa-p256",
        };
        f.debug_struct("CdnSigner").field("base", &self.base).field("key_id", &self.key_id).field("key", &kind).finish()
    }
}

impl CdnSigner {
    /// A signer for the distribution at `url` (`https://d1234.cloudfront.net`, or a bare host as
    /// the original's `CLOUDFRONT_URL` is, which means https), key pair `key_id`, and the private
    /// key in `pem`: PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY` (RSA or P-256) or SEC1
    /// `EC PRIVATE KEY` (P-256).
    pub fn new(url: &str, key_id: &str, pem: &str) -> anyhow::Result<Self> {
        let url = url.trim().trim_end_matches('/');
        let base = if url.contains("://") { url.to_owned() } else { format!("https://{url}") };
        url::Url::parse(&base).with_context(|| format!("TOOLTOOL_CDN_URL is not a URL: {url:?}"))?;
        if key_id.is_empty() {
            bail!("TOOLTOOL_CDN_KEY_ID is empty");
        }
        let (label, der) = crate::pem::block(pem).context("TOOLTOOL_CDN_PRIVATE_KEY")?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => CdnKey::Rsa(RsaKeyPair::from_der(&der).map_err(|e| reject("a PKCS#1 RSA key", e))?),
            "EC PRIVATE KEY" => CdnKey::Ecdsa(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                    .map_err(|e| reject("a SEC1 P-256 key", e))?,
            ),
            "PRIVATE KEY" => match RsaKeyPair::from_pkcs8(&der) {
                Ok(k) => CdnKey::Rsa(k),
                Err(_) => CdnKey::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                        .map_err(|e| reject("a PKCS#8 RSA or P-256 key", e))?,
                ),
            },
            other => {
                bail!("TOOLTOOL_CDN_PRIVATE_KEY: a PEM {other:?} block is not a private key this server signs with")
            }
        };
        Ok(Self { base, key_id: key_id.to_owned(), key, rng: SystemRandom::new() })
    }

    /// A signed URL of the blob `digest`, valid for `ttl` from now.
    pub fn download_url(&self, digest: &Digest, ttl: Duration) -> Result<String, StoreError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.url_expiring(digest, (now + ttl).as_secs())
    }

    /// The signed URL of `digest` expiring at `expires` (unix seconds).
    pub fn url_expiring(&self, digest: &Digest, expires: u64) -> Result<String, StoreError> {
        let resource = format!("{}/sha512/{digest}", self.base);
        let signature = self.sign(canned_policy(&resource, expires).as_bytes())?;
        Ok(format!(
            "{resource}?Expires={expires}&Signature={}&Key-Pair-Id={}&Hash-Algorithm=SHA256",
            cloudfront_base64(&signature),
            self.key_id
        ))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.key {
            CdnKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|e| StoreError::msg("CDN signature", e))?;
                Ok(sig)
            }
            CdnKey::Ecdsa(k) => {
                Ok(k.sign(&self.rng, message).map_err(|e| StoreError::msg("CDN signature", e))?.as_ref().to_vec())
            }
        }
    }
}

fn reject(what: &str, e: aws_lc_rs::error::KeyRejected) -> anyhow::Error {
    anyhow::anyhow!("TOOLTOOL_CDN_PRIVATE_KEY is not {what} aws-lc-rs accepts: {e}")
}

/// CloudFront's canned policy for `resource` until `expires`, without whitespace.
pub fn canned_policy(resource: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// Base64 with CloudFront's substitutions: `+` → `-`, `=` → `_`, `/` → `~`.
pub fn cloudfront_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_policy_is_cloudfronts_exact_text() {
        assert_eq!(
            canned_policy("https://d.example/sha512/ab", 1700000000),
            r#"{"Statement":[{"Resource":"https://d.example/sha512/ab","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000}}}]}"#
        );
    }

    #[test]
    fn cloudfront_base64_replaces_plus_equals_and_slash() {
        // 0xfb 0xff → "+/8=" in standard base64.
        assert_eq!(cloudfront_base64(&[0xfb, 0xff]), "-~8_");
    }

    #[test]
    fn a_pem_that_is_not_a_private_key_is_refused_naming_the_variable() {
        let err = CdnSigner::new("d.example", "K1", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("TOOLTOOL_CDN_PRIVATE_KEY"), "{err:#}");
        let err = CdnSigner::new("d.example", "K1", "no pem here").unwrap_err();
        assert!(format!("{err:#}").contains("TOOLTOOL_CDN_PRIVATE_KEY"), "{err:#}");
    }

    /// Signs with keys made by `openssl genpkey` in every PEM form, and checks each signature
    /// with `openssl dgst -sha256 -verify` against the public key.
    #[test]
    fn signatures_verify_with_openssl_for_rsa_and_ecdsa_keys_in_every_pem_form() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa8.pem"]);
        openssl(&["rsa", "-in", "rsa8.pem", "-traditional", "-out", "rsa1.pem"]);
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec8.pem"]);
        openssl(&["ec", "-in", "ec8.pem", "-out", "ec1.pem"]);
        openssl(&["pkey", "-in", "rsa8.pem", "-pubout", "-out", "rsa.pub"]);
        openssl(&["pkey", "-in", "ec8.pem", "-pubout", "-out", "ec.pub"]);
        let digest = Digest::parse(&"c".repeat(128)).unwrap();
        for (key, public, label) in [
            ("rsa8.pem", "rsa.pub", "PRIVATE KEY"),
            ("rsa1.pem", "rsa.pub", "RSA PRIVATE KEY"),
            ("ec8.pem", "ec.pub", "PRIVATE KEY"),
            ("ec1.pem", "ec.pub", "EC PRIVATE KEY"),
        ] {
            let pem = std::fs::read_to_string(dir.path().join(key)).unwrap();
            assert!(pem.contains(&format!("BEGIN {label}-----")), "{key} is {label}");
            let signer = CdnSigner::new("https://d.example/", "KEYPAIR", &pem).unwrap();
            let url = signer.url_expiring(&digest, 1_900_000_000).unwrap();
            let (resource, query) = url.split_once('?').unwrap();
            assert_eq!(resource, format!("https://d.example/sha512/{digest}"));
            let params: Vec<(&str, &str)> = query.split('&').map(|p| p.split_once('=').unwrap()).collect();
            let names: Vec<&str> = params.iter().map(|p| p.0).collect();
            assert_eq!(names, ["Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm"]);
            assert_eq!(params[0].1, "1900000000");
            assert_eq!(params[2].1, "KEYPAIR");
            assert_eq!(params[3].1, "SHA256");
            let standard: String = params[1]
                .1
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '=',
                    '~' => '/',
                    c => c,
                })
                .collect();
            let sig = base64::engine::general_purpose::STANDARD.decode(standard).unwrap();
            std::fs::write(dir.path().join("sig.bin"), &sig).unwrap();
            std::fs::write(dir.path().join("policy.txt"), canned_policy(resource, 1_900_000_000)).unwrap();
            let ok = openssl(&["dgst", "-sha256", "-verify", public, "-signature", "sig.bin", "policy.txt"]);
            assert_eq!(String::from_utf8_lossy(&ok).trim(), "Verified OK", "{key}");
            std::fs::write(dir.path().join("policy.txt"), canned_policy(resource, 1_900_000_001)).unwrap();
            let bad = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-verify", public, "-signature", "sig.bin", "policy.txt"])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(!bad.status.success(), "{key}: another expiry does not verify");
        }
    }
}
