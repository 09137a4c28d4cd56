//! PEM: the one reader of the private keys operators hand the server (the CDN's RSA or ECDSA
//! key, TUF's Ed25519 keys).

use anyhow::{Context, bail};
use base64::Engine as _;

/// The label and DER bytes of the first PEM block of `pem`.
pub fn block(pem: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let mut lines = pem.lines().map(str::trim);
    let label = lines
        .find_map(|l| l.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")))
        .context("no PEM block (-----BEGIN …-----)")?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines {
        if line == end {
            let der = base64::engine::general_purpose::STANDARD.decode(&body).context("the PEM body is not base64")?;
            return Ok((label, der));
        }
        if line.contains(':') {
            bail!("an encrypted PEM key (with headers) is not supported: store it unencrypted");
        }
        body.push_str(line);
    }
    bail!("the PEM block {label:?} has no END line")
}
