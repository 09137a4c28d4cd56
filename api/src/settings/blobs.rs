//! Where blobs live and the URLs signed for them: the embedded store or S3 (one bucket, or one
//! per region), a CDN in front of downloads, the lifetimes of signed URLs and the embedded
//! store's free-space reserve.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::{Env, Secret, Settings};

/// Where blobs live.
#[derive(Debug, Clone)]
pub enum BlobSettings {
    /// Files under `<data dir>/blobs`, served and received by the server itself.
    Local {
        /// The region name recorded for instances in this store.
        region: String,
    },
    /// S3 (or S3-compatible) buckets, one per region, reached with aws-sdk-s3 and presigned
    /// URLs. The first is the default upload region (`TOOLTOOL_S3_REGIONS`, or the single
    /// `TOOLTOOL_S3_BUCKET`).
    S3(Vec<S3Settings>),
}

/// The S3 bucket of one region.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Bucket name (`TOOLTOOL_S3_BUCKET`).
    pub bucket: String,
    /// AWS region, also the instance region name (`TOOLTOOL_S3_REGION`).
    pub region: String,
    /// Endpoint override for S3-compatible stores (`TOOLTOOL_S3_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`TOOLTOOL_S3_FORCE_PATH_STYLE`).
    pub force_path_style: bool,
    /// Static access key; without it the AWS default credential chain is used.
    pub access_key_id: Option<String>,
    /// Static secret key, paired with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// How long a GET, HEAD, PUT, DELETE or list waits for S3's answer, its retries included
    /// (`TOOLTOOL_S3_TIMEOUT`). Server-side copies and streamed bodies keep a longer wait.
    pub timeout: Duration,
}

/// The default of [`S3Settings::timeout`]: under `TOOLTOOL_VERIFY_WAIT`'s default, so that
/// `upload/complete` against an S3 that does not answer is 503 `storage-unavailable`, not 409.
pub const DEFAULT_S3_TIMEOUT: Duration = Duration::from_secs(15);

/// Downloads through a CDN (CloudFront signed URLs), all three variables or none.
#[derive(Debug, Clone)]
pub struct CdnSettings {
    /// The distribution's URL or host (`TOOLTOOL_CDN_URL`).
    pub url: String,
    /// The CloudFront key pair (or public key) id (`TOOLTOOL_CDN_KEY_ID`).
    pub key_id: String,
    /// The PEM file of the private key (`TOOLTOOL_CDN_PRIVATE_KEY`).
    pub private_key: PathBuf,
}

/// Reads the blob stores' variables into `s`.
pub(super) fn read(env: &Env<'_>, s: &mut Settings) -> anyhow::Result<()> {
    env.set_duration("TOOLTOOL_DOWNLOAD_URL_TTL", &mut s.download_url_ttl)?;
    env.set_duration("TOOLTOOL_UPLOAD_URL_TTL", &mut s.upload_url_ttl)?;
    env.set_parsed("TOOLTOOL_FREE_SPACE_RESERVE", &mut s.free_space_reserve)?;
    s.cdn = match (env.get("TOOLTOOL_CDN_URL"), env.get("TOOLTOOL_CDN_KEY_ID"), env.get("TOOLTOOL_CDN_PRIVATE_KEY")) {
        (None, None, None) => None,
        (Some(url), Some(key_id), Some(key)) => Some(CdnSettings { url, key_id, private_key: key.into() }),
        _ => bail!(
            "TOOLTOOL_CDN_URL, TOOLTOOL_CDN_KEY_ID and TOOLTOOL_CDN_PRIVATE_KEY go together: set all three or none"
        ),
    };
    let shared = S3Settings {
        bucket: String::new(),
        region: env.get("TOOLTOOL_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        endpoint: env.get("TOOLTOOL_S3_ENDPOINT"),
        force_path_style: env.bool("TOOLTOOL_S3_FORCE_PATH_STYLE")?.unwrap_or(false),
        access_key_id: env.get("TOOLTOOL_S3_ACCESS_KEY_ID"),
        secret_access_key: env.get("TOOLTOOL_S3_SECRET_ACCESS_KEY").map(Secret::new),
        timeout: match env.duration("TOOLTOOL_S3_TIMEOUT")? {
            Some(d) if d.is_zero() => bail!("TOOLTOOL_S3_TIMEOUT must be longer than 0"),
            Some(d) => d,
            None => DEFAULT_S3_TIMEOUT,
        },
    };
    match (env.get("TOOLTOOL_S3_REGIONS"), env.get("TOOLTOOL_S3_BUCKET")) {
        (Some(_), Some(_)) => bail!("TOOLTOOL_S3_REGIONS and TOOLTOOL_S3_BUCKET are exclusive: set one"),
        (Some(list), None) => s.blobs = BlobSettings::S3(parse_regions(&list, &shared)?),
        (None, Some(bucket)) => s.blobs = BlobSettings::S3(vec![S3Settings { bucket, ..shared }]),
        (None, None) => {
            if let Some(region) = env.get("TOOLTOOL_REGION") {
                s.blobs = BlobSettings::Local { region };
            }
        }
    }
    Ok(())
}

/// Parses `TOOLTOOL_S3_REGIONS`: comma-separated `REGION=BUCKET` or `REGION=BUCKET@ENDPOINT`,
/// the first being the default upload region. Credentials and addressing come from `shared`;
/// a region without its own endpoint uses `TOOLTOOL_S3_ENDPOINT` (or AWS).
fn parse_regions(list: &str, shared: &S3Settings) -> anyhow::Result<Vec<S3Settings>> {
    const VAR: &str = "TOOLTOOL_S3_REGIONS";
    let mut out: Vec<S3Settings> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let Some((region, rest)) = item.split_once('=') else {
            bail!("{VAR}: {item:?} is not REGION=BUCKET or REGION=BUCKET@ENDPOINT");
        };
        let (region, rest) = (region.trim(), rest.trim());
        let (bucket, endpoint) = match rest.split_once('@') {
            Some((b, e)) => (b.trim(), Some(e.trim())),
            None => (rest, None),
        };
        let valid_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name(region) {
            bail!("{VAR}: {region:?} is not a region name (letters, digits, '-', '_', '.')");
        }
        if !valid_name(bucket) {
            bail!("{VAR}: region {region} has no valid bucket name ({bucket:?})");
        }
        if let Some(e) = endpoint
            && url::Url::parse(e).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
        {
            bail!("{VAR}: the endpoint of region {region} is not an http(s) URL: {e:?}");
        }
        if out.iter().any(|r| r.region == region) {
            bail!("{VAR}: region {region} is listed twice");
        }
        out.push(S3Settings {
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()).or_else(|| shared.endpoint.clone()),
            ..shared.clone()
        });
    }
    Ok(out)
}
