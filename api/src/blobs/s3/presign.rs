//! SigV4 query-string presigning of object URLs, with the signing key derived once per day.
//!
//! A presigned S3 URL is one HMAC over a short string once the signing key is known, and the
//! key (four chained HMACs of the secret, the date, the region and the service) changes only
//! with the date or the credentials. Building a presigned SDK operation cost about 150 µs of
//! CPU per redirect; `aws_sigv4::http_request::sign` still derived the key and parsed the URL
//! on every call. Here the canonical request is written directly (S3's rules: unsigned
//! payload, only `host` signed, no path normalisation), and the key is cached. A unit test
//! checks the result against `aws_sigv4`'s own presigning, and the PostgreSQL + S3 suite runs
//! against s3s-fs, which checks every signature and expiry.
//!
//! The endpoint stays the SDK's: the object URL prefix is taken once from a URL the SDK
//! presigned, so partitions, path style and endpoint overrides resolve exactly as the SDK
//! resolves them.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use sha2::{Digest as _, Sha256};

use crate::blobs::StoreError;

/// Credentials this close to their expiry are resolved again.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

/// Presigns URLs of objects in one bucket.
#[derive(Debug)]
pub(super) struct Presigner {
    /// Everything before the object key, e.g. `http://127.0.0.1:9000/bucket/`.
    prefix: String,
    /// The `host` header value: the prefix's host, and its port when not the default.
    host: String,
    /// The prefix's path, e.g. `/bucket/` (or `/` with virtual-host addressing).
    path: String,
    region: String,
    provider: Option<SharedCredentialsProvider>,
    /// Resolved credentials and the signing key of one day, until either changes.
    signing: Mutex<Option<Arc<Signing>>>,
}

/// What every URL of one day and one set of credentials shares.
#[derive(Debug)]
struct Signing {
    credentials: Credentials,
    /// `YYYYMMDD` the key is for.
    date: String,
    key: Vec<u8>,
    /// `<date>/<region>/s3/aws4_request`
    scope: String,
    /// The query up to the timestamp: algorithm, encoded credential, `&X-Amz-Date=`.
    query_head: String,
}

/// `YYYYMMDDTHHMMSSZ` of `t`.
fn amz_date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

/// RFC 3986 unreserved characters stay, everything else is `%XX` (SigV4's URI encoding).
pub(super) fn uri_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl Presigner {
    /// A presigner for objects under `prefix` (an absolute URL ending in `/`).
    pub(super) fn new(
        prefix: String,
        region: String,
        provider: Option<SharedCredentialsProvider>,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(&prefix)?;
        let mut host = url.host_str().ok_or_else(|| anyhow::anyhow!("no host in {prefix}"))?.to_owned();
        if let Some(port) = url.port() {
            host = format!("{host}:{port}");
        }
        let path = url.path().to_owned();
        anyhow::ensure!(path.ends_with('/') && url.query().is_none(), "unexpected object URL prefix {prefix}");
        Ok(Self { prefix, host, path, region, provider, signing: Mutex::new(None) })
    }

    /// The region the URLs are signed for.
    pub(super) fn region(&self) -> &str {
        &self.region
    }

    /// Credentials and the signing key for `now`, derived again only when the day or the
    /// credentials change.
    async fn signing(&self, now: SystemTime, date: &str) -> Result<Arc<Signing>, StoreError> {
        let fresh = |c: &Credentials| c.expiry().is_none_or(|e| e > SystemTime::now() + CREDENTIALS_MARGIN);
        let cached = self.signing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let credentials = match cached {
            Some(s) if fresh(&s.credentials) && s.date == date => return Ok(s),
            Some(s) if fresh(&s.credentials) => s.credentials.clone(),
            _ => {
                let provider = self
                    .provider
                    .as_ref()
                    .ok_or_else(|| StoreError::msg("presign", "no AWS credentials configured"))?;
                provider.provide_credentials().await.map_err(|e| StoreError::msg("AWS credentials", e))?
            }
        };
        let key = generate_signing_key(credentials.secret_access_key(), now, &self.region, "s3").as_ref().to_vec();
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let mut query_head = String::from("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
        uri_encode(&format!("{}/{scope}", credentials.access_key_id()), &mut query_head);
        query_head.push_str("&X-Amz-Date=");
        let signing = Arc::new(Signing { credentials, date: date.to_owned(), key, scope, query_head });
        *self.signing.lock().unwrap_or_else(|e| e.into_inner()) = Some(signing.clone());
        Ok(signing)
    }

    /// A URL for `method` on `key` (URL-safe characters only), valid for `ttl`.
    pub(super) async fn presign(&self, method: &str, key: &str, ttl: Duration) -> Result<String, StoreError> {
        self.presign_at(method, key, "", ttl, SystemTime::now()).await
    }

    /// [`Presigner::presign`] of a URL whose query also carries `extra` (`a=1&b=2`, names in
    /// sorted order, all starting with a lowercase letter so that they sort after the
    /// `X-Amz-*` ones, values already URI-encoded), such as an UploadPart's
    /// `partNumber=…&uploadId=…`.
    pub(super) async fn presign_query(
        &self,
        method: &str,
        key: &str,
        extra: &str,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        debug_assert!(extra.split('&').all(|p| p.starts_with(|c: char| c.is_ascii_lowercase())));
        self.presign_at(method, key, extra, ttl, SystemTime::now()).await
    }

    async fn presign_at(
        &self,
        method: &str,
        key: &str,
        extra: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, StoreError> {
        let timestamp = amz_date(now);
        let date = &timestamp[..8];
        let signing = self.signing(now, date).await?;
        // The URL is written once; the query in it is in canonical (sorted) order, which is
        // also the order it is sent in, so the canonical request hashes that part of it.
        let mut url = String::with_capacity(self.prefix.len() + key.len() + 640);
        for part in [self.prefix.as_str(), key, "?"] {
            url.push_str(part);
        }
        let query_start = url.len();
        for part in
            [signing.query_head.as_str(), &timestamp, "&X-Amz-Expires=", itoa::Buffer::new().format(ttl.as_secs())]
        {
            url.push_str(part);
        }
        if let Some(token) = signing.credentials.session_token() {
            url.push_str("&X-Amz-Security-Token=");
            uri_encode(token, &mut url);
        }
        url.push_str("&X-Amz-SignedHeaders=host");
        if !extra.is_empty() {
            url.push('&');
            url.push_str(extra);
        }
        let mut canonical = Sha256::new();
        let query = &url[query_start..];
        for part in [method, "\n", &self.path, key, "\n", query, "\nhost:", &self.host, "\n\nhost\nUNSIGNED-PAYLOAD"] {
            canonical.update(part.as_bytes());
        }
        let mut string_to_sign = String::with_capacity(256);
        for part in ["AWS4-HMAC-SHA256\n", &timestamp, "\n", &signing.scope, "\n"] {
            string_to_sign.push_str(part);
        }
        tooltool_proto::push_hex(&mut string_to_sign, &canonical.finalize());
        url.push_str("&X-Amz-Signature=");
        url.push_str(&calculate_signature(&signing.key, string_to_sign.as_bytes()));
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{
        PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        UriPathNormalizationMode, sign,
    };

    /// What aws-sigv4's generic signer makes of the same request.
    fn reference(prefix: &str, c: &Credentials, method: &str, key: &str, ttl: Duration, now: SystemTime) -> String {
        let identity = c.clone().into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.session_token_mode = SessionTokenMode::Include;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-central-1")
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let object = format!("{prefix}{key}");
        let request =
            SignableRequest::new(method, object.as_str(), std::iter::empty(), SignableBody::UnsignedPayload).unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut url = url::Url::parse(&object).unwrap();
        url.query_pairs_mut().extend_pairs(instructions.params().iter().map(|(k, v)| (*k, v.as_ref())));
        url.into()
    }

    fn sorted_query(url: &str) -> (String, Vec<(String, String)>) {
        let url = url::Url::parse(url).unwrap();
        let mut pairs: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        pairs.sort();
        (format!("{}://{}{}", url.scheme(), url.authority(), url.path()), pairs)
    }

    #[tokio::test]
    async fn urls_match_aws_sigv4_and_the_key_is_derived_once_a_day() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_341_600);
        for (prefix, token) in [
            ("http://127.0.0.1:9000/bucket/", None),
            ("https://bucket.s3.eu-central-1.amazonaws.com/", Some("FwoG+token/with=odd chars")),
        ] {
            let creds = Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token.map(str::to_owned),
                None,
                "test",
            );
            let provider = SharedCredentialsProvider::new(creds.clone());
            let p = Presigner::new(prefix.into(), "eu-central-1".into(), Some(provider)).unwrap();
            for (method, key) in [("GET", "sha512/abc123"), ("PUT", "staging/0f1e2d")] {
                let ours = p.presign_at(method, key, "", Duration::from_secs(60), now).await.unwrap();
                let theirs = reference(prefix, &creds, method, key, Duration::from_secs(60), now);
                assert_eq!(sorted_query(&ours), sorted_query(&theirs), "{method} {prefix}{key}");
            }
            // An UploadPart URL: its own query names are signed too.
            let extra = "partNumber=3&uploadId=a.b-c_d";
            let ours = p.presign_at("PUT", "staging/0f1e2d", extra, Duration::from_secs(60), now).await.unwrap();
            let theirs =
                reference(prefix, &creds, "PUT", &format!("staging/0f1e2d?{extra}"), Duration::from_secs(60), now);
            assert_eq!(sorted_query(&ours), sorted_query(&theirs), "UploadPart {prefix}");
            let first = p.signing.lock().unwrap().clone().unwrap();
            p.presign_at("GET", "sha512/x", "", Duration::from_secs(5), now + Duration::from_secs(3600)).await.unwrap();
            assert_eq!(p.signing.lock().unwrap().as_ref().unwrap().key, first.key, "same day, same key");
            let tomorrow = now + Duration::from_secs(86_400);
            let ours = p.presign_at("GET", "sha512/abc123", "", Duration::from_secs(60), tomorrow).await.unwrap();
            assert_ne!(p.signing.lock().unwrap().as_ref().unwrap().key, first.key, "a new day, a new key");
            let theirs = reference(prefix, &creds, "GET", "sha512/abc123", Duration::from_secs(60), tomorrow);
            assert_eq!(sorted_query(&ours), sorted_query(&theirs));
        }
    }
}
