//! Configuration, read once from the environment at start.
//!
//! Every variable is listed with its default in docs/configuration.md. A malformed value is an error that
//! names the variable; secrets are wrapped in [`Secret`] so `Debug` never prints them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use tooltool_proto::DEFAULT_SCOPE_PREFIX;

/// A value that must never be printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

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

/// Who sees internal files' metadata on the search, batch and file routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalMetadata {
    /// Everyone, as in the original service (the default).
    Open,
    /// Only callers holding `download/internal`, as `/events` and the TUF `internal`
    /// repository: to anyone else an internal file is unknown (404) and absent from searches,
    /// and so is a batch that names one.
    Restricted,
}

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

/// S3's smallest part of a multipart upload (but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Uploads in parts (PROTOCOL.md "Large files: uploads in parts").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSettings {
    /// Files at or above this size, declared by a client that can send parts, go up in parts
    /// (`TOOLTOOL_MULTIPART_THRESHOLD`).
    pub threshold: u64,
    /// The size of every part but the last (`TOOLTOOL_PART_SIZE`, at least [`MIN_PART_SIZE`];
    /// raised for a file that would otherwise need more than S3's 10,000 parts).
    pub part_size: u64,
    /// The largest file a client that cannot send parts may declare
    /// (`TOOLTOOL_MAX_SINGLE_PUT`); larger is 400 `file-too-large`.
    pub max_single_put: u64,
    /// Part URLs handed out per answer (`TOOLTOOL_PART_URL_BATCH`).
    pub url_batch: u32,
}

impl Default for PartSettings {
    fn default() -> Self {
        Self { threshold: 64 << 20, part_size: 64 << 20, max_single_put: 5 << 30, url_batch: 100 }
    }
}

/// Everything the server reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address (`HOST`).
    pub host: String,
    /// Listen port (`PORT`); 0 picks a free one.
    pub port: u16,
    /// Embedded store and default SQLite file (`TOOLTOOL_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Metadata database (`DATABASE_URL`): `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Base of the URLs the server signs for itself (`TOOLTOOL_PUBLIC_URL`); derived from the
    /// bound address when unset.
    pub public_url: Option<String>,
    /// Sentry DSN (`SENTRY_DSN`).
    pub sentry_dsn: Option<Secret>,
    /// Master secret from which token and URL signing keys are derived
    /// (`TOOLTOOL_SECRET_KEY`); generated under the data directory when unset on SQLite.
    pub secret_key: Option<Secret>,
    /// Earlier master secrets whose tokens and URLs still verify (`TOOLTOOL_OLD_SECRET_KEYS`,
    /// comma-separated), for rotation without downtime.
    pub old_secret_keys: Vec<Secret>,
    /// How often the registered clients are reloaded, bounding how long a revocation takes to
    /// reach every replica (`TOOLTOOL_AUTH_REFRESH`).
    pub auth_refresh: Duration,
    /// JWT `iss` (`TOOLTOOL_JWT_ISSUER`).
    pub jwt_issuer: String,
    /// JWT `aud` (`TOOLTOOL_JWT_AUDIENCE`).
    pub jwt_audience: String,
    /// Scope prefix (`TOOLTOOL_SCOPE_PREFIX`).
    pub scope_prefix: String,
    /// Whether anonymous callers may download public files
    /// (`TOOLTOOL_ANONYMOUS_PUBLIC_DOWNLOAD`).
    pub anonymous_public_download: bool,
    /// Lifetime of download URLs (`TOOLTOOL_DOWNLOAD_URL_TTL`).
    pub download_url_ttl: Duration,
    /// Lifetime of upload URLs (`TOOLTOOL_UPLOAD_URL_TTL`).
    pub upload_url_ttl: Duration,
    /// How long after its URL expired a never-completed staged upload is removed
    /// (`TOOLTOOL_STAGING_GRACE`).
    pub staging_grace: Duration,
    /// How long `upload/complete` waits for a verification before answering 409
    /// (`TOOLTOOL_VERIFY_WAIT`).
    pub verify_wait: Duration,
    /// Largest accepted JSON request body in bytes (`TOOLTOOL_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// HTTP worker threads (`TOOLTOOL_WORKERS`); 0 means one per core.
    pub workers: usize,
    /// Download lookups kept in memory on SQLite (`TOOLTOOL_LOOKUP_CACHE`); 0 turns it off.
    pub lookup_cache: usize,
    /// Oldest cached lookup answered without reading the database again
    /// (`TOOLTOOL_LOOKUP_MAX_AGE`): bounds staleness even if a change notification is lost.
    pub lookup_max_age: Duration,
    /// Longest an API request may take before it is answered 503 (`TOOLTOOL_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Who sees internal files' names, sizes, digests and authors on the search, batch and file
    /// routes (`TOOLTOOL_INTERNAL_METADATA`).
    pub internal_metadata: InternalMetadata,
    /// Largest file an upload may declare, in bytes (`TOOLTOOL_MAX_FILE_SIZE`; default 5 TiB,
    /// S3's object limit); larger is 400 `invalid-size`.
    pub max_file_size: u64,
    /// Bytes the embedded store keeps free on its disk (`TOOLTOOL_FREE_SPACE_RESERVE`): a PUT
    /// that would leave less is 507 `insufficient-storage` before anything is written.
    pub free_space_reserve: u64,
    /// Searches running at once per process (`TOOLTOOL_SEARCH_CONCURRENCY`); more are 503
    /// `search-busy`.
    pub search_concurrency: usize,
    /// Longest a search may run before it is 503 `search-busy` (`TOOLTOOL_SEARCH_TIMEOUT`).
    pub search_timeout: Duration,
    /// Where blobs are stored.
    pub blobs: BlobSettings,
    /// The RabbitMQ broker the events relay publishes to (`TOOLTOOL_AMQP_URL`, `amqp://…`);
    /// no relay when unset.
    pub amqp_url: Option<Secret>,
    /// The durable topic exchange events are published to (`TOOLTOOL_AMQP_EXCHANGE`).
    pub amqp_exchange: String,
    /// How long events are kept (`TOOLTOOL_EVENTS_RETENTION`): published ones when a relay
    /// runs, all of them otherwise.
    pub events_retention: Duration,
    /// Whether this replica copies verified blobs to the regions lacking them
    /// (`TOOLTOOL_REPLICATION`, `on` or `off`).
    pub replication: bool,
    /// How often the replicator looks for missing copies when nothing wakes it
    /// (`TOOLTOOL_REPLICATION_INTERVAL`).
    pub replication_interval: Duration,
    /// How long a replica's claim on one copy lasts without being renewed
    /// (`TOOLTOOL_REPLICATION_LEASE`): a killed replica's copy is taken up again after it.
    pub replication_lease: Duration,
    /// Part size of copies streamed between endpoints (`TOOLTOOL_REPLICATION_PART_SIZE`);
    /// larger blobs are sent as a multipart upload, smaller in one PUT.
    pub replication_part_size: u64,
    /// How often every region is probed (`TOOLTOOL_REGION_PROBE`).
    pub region_probe: Duration,
    /// A Taskcluster deployment that checks Hawk clients not registered here
    /// (`TOOLTOOL_TASKCLUSTER_ROOT_URL`, without a trailing `/`).
    pub taskcluster_root_url: Option<String>,
    /// How long one call to that deployment may take (`TOOLTOOL_TASKCLUSTER_TIMEOUT`).
    pub taskcluster_timeout: Duration,
    /// Whether `X-Forwarded-*` and `Forwarded` headers are believed (`TOOLTOOL_TRUST_FORWARDED`):
    /// only behind a load balancer that sets them.
    pub trust_forwarded: bool,
    /// Downloads through a CDN, when configured.
    pub cdn: Option<CdnSettings>,
    /// How long a full pass of the scrubber takes at most: a stored copy is read back once
    /// this long after it was last proven (`TOOLTOOL_SCRUB_INTERVAL`; `None`: `off`, this
    /// replica does not scrub).
    pub scrub_interval: Option<Duration>,
    /// How fast the scrubber reads, in megabytes (10^6 bytes) per second on average
    /// (`TOOLTOOL_SCRUB_RATE`).
    pub scrub_rate: f64,
    /// Uploads in parts.
    pub parts: PartSettings,
    /// The online keys that sign the TUF repositories' targets, bins, snapshot and timestamp
    /// (`TOOLTOOL_TUF_ONLINE_KEYS`, comma-separated PKCS#8 v1 PEM files; several while they
    /// rotate). Unset on the embedded default: one generated under the data directory.
    pub tuf_online_keys: Vec<PathBuf>,
}

impl Settings {
    /// The embedded default: SQLite and local blobs under `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            database_url: sqlite_url(&data_dir),
            data_dir,
            public_url: None,
            sentry_dsn: None,
            secret_key: None,
            old_secret_keys: Vec::new(),
            auth_refresh: Duration::from_secs(2),
            jwt_issuer: "tooltool".into(),
            jwt_audience: "tooltool".into(),
            scope_prefix: DEFAULT_SCOPE_PREFIX.into(),
            anonymous_public_download: true,
            download_url_ttl: Duration::from_secs(60),
            upload_url_ttl: Duration::from_secs(3600),
            staging_grace: Duration::from_secs(24 * 3600),
            verify_wait: Duration::from_secs(20),
            max_body_bytes: 1024 * 1024,
            workers: 0,
            lookup_cache: 16_384,
            lookup_max_age: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            internal_metadata: InternalMetadata::Open,
            max_file_size: 5 << 40,
            free_space_reserve: 1 << 30,
            search_concurrency: 4,
            search_timeout: Duration::from_secs(5),
            blobs: BlobSettings::Local { region: "local".into() },
            amqp_url: None,
            amqp_exchange: "tooltool".into(),
            events_retention: Duration::from_secs(30 * 24 * 3600),
            replication: true,
            replication_interval: Duration::from_secs(30),
            replication_lease: Duration::from_secs(60),
            replication_part_size: 64 * 1024 * 1024,
            region_probe: Duration::from_secs(5),
            taskcluster_root_url: None,
            taskcluster_timeout: Duration::from_secs(5),
            trust_forwarded: false,
            cdn: None,
            scrub_interval: Some(Duration::from_secs(30 * 24 * 3600)),
            scrub_rate: 10.0,
            parts: PartSettings::default(),
            tuf_online_keys: Vec::new(),
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the settings through `get`, which returns a variable's value if set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let data_dir = PathBuf::from(get("TOOLTOOL_DATA_DIR").unwrap_or_else(|| "tooltool-data".into()));
        let mut s = Self::embedded(data_dir);
        if let Some(v) = get("HOST") {
            s.host = v;
        }
        if let Some(v) = get("PORT") {
            s.port = parse_var("PORT", &v)?;
        }
        if let Some(v) = get("DATABASE_URL") {
            if !(v.starts_with("sqlite:") || v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
            }
            s.database_url = v;
        }
        s.public_url = get("TOOLTOOL_PUBLIC_URL")
            .map(|v| {
                url::Url::parse(&v)
                    .with_context(|| format!("TOOLTOOL_PUBLIC_URL is not a URL: {v:?}"))
                    .map(|_| v.trim_end_matches('/').to_owned())
            })
            .transpose()?;
        s.sentry_dsn = get("SENTRY_DSN").map(Secret::new);
        s.secret_key = get("TOOLTOOL_SECRET_KEY").map(Secret::new);
        if let Some(k) = &s.secret_key
            && k.expose().len() < 32
        {
            bail!("TOOLTOOL_SECRET_KEY must be at least 32 characters long");
        }
        if let Some(v) = get("TOOLTOOL_OLD_SECRET_KEYS") {
            s.old_secret_keys = v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::new).collect();
        }
        if let Some(v) = get("TOOLTOOL_JWT_ISSUER") {
            s.jwt_issuer = v;
        }
        if let Some(v) = get("TOOLTOOL_JWT_AUDIENCE") {
            s.jwt_audience = v;
        }
        if let Some(v) = get("TOOLTOOL_SCOPE_PREFIX") {
            s.scope_prefix = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = get("TOOLTOOL_ANONYMOUS_PUBLIC_DOWNLOAD") {
            s.anonymous_public_download = parse_bool("TOOLTOOL_ANONYMOUS_PUBLIC_DOWNLOAD", &v)?;
        }
        for (name, field) in [
            ("TOOLTOOL_DOWNLOAD_URL_TTL", &mut s.download_url_ttl),
            ("TOOLTOOL_UPLOAD_URL_TTL", &mut s.upload_url_ttl),
            ("TOOLTOOL_STAGING_GRACE", &mut s.staging_grace),
            ("TOOLTOOL_VERIFY_WAIT", &mut s.verify_wait),
            ("TOOLTOOL_AUTH_REFRESH", &mut s.auth_refresh),
            ("TOOLTOOL_LOOKUP_MAX_AGE", &mut s.lookup_max_age),
            ("TOOLTOOL_REQUEST_TIMEOUT", &mut s.request_timeout),
            ("TOOLTOOL_EVENTS_RETENTION", &mut s.events_retention),
            ("TOOLTOOL_REPLICATION_INTERVAL", &mut s.replication_interval),
            ("TOOLTOOL_REPLICATION_LEASE", &mut s.replication_lease),
            ("TOOLTOOL_REGION_PROBE", &mut s.region_probe),
            ("TOOLTOOL_TASKCLUSTER_TIMEOUT", &mut s.taskcluster_timeout),
            ("TOOLTOOL_SEARCH_TIMEOUT", &mut s.search_timeout),
        ] {
            if let Some(v) = get(name) {
                *field = parse_duration(name, &v)?;
            }
        }
        s.taskcluster_root_url = get("TOOLTOOL_TASKCLUSTER_ROOT_URL")
            .map(|v| match url::Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(v.trim_end_matches('/').to_owned()),
                _ => bail!("TOOLTOOL_TASKCLUSTER_ROOT_URL is not an http(s) URL: {v:?}"),
            })
            .transpose()?;
        if let Some(v) = get("TOOLTOOL_TRUST_FORWARDED") {
            s.trust_forwarded = parse_bool("TOOLTOOL_TRUST_FORWARDED", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_MAX_BODY_BYTES") {
            s.max_body_bytes = parse_var("TOOLTOOL_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_WORKERS") {
            s.workers = parse_var("TOOLTOOL_WORKERS", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_INTERNAL_METADATA") {
            s.internal_metadata = match v.as_str() {
                "open" => InternalMetadata::Open,
                "restricted" => InternalMetadata::Restricted,
                _ => bail!("TOOLTOOL_INTERNAL_METADATA must be open or restricted, not {v:?}"),
            };
        }
        if let Some(v) = get("TOOLTOOL_MAX_FILE_SIZE") {
            s.max_file_size = parse_var("TOOLTOOL_MAX_FILE_SIZE", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_FREE_SPACE_RESERVE") {
            s.free_space_reserve = parse_var("TOOLTOOL_FREE_SPACE_RESERVE", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_SEARCH_CONCURRENCY") {
            s.search_concurrency = parse_var("TOOLTOOL_SEARCH_CONCURRENCY", &v)?;
            if s.search_concurrency == 0 {
                bail!("TOOLTOOL_SEARCH_CONCURRENCY must be at least 1");
            }
        }
        if let Some(v) = get("TOOLTOOL_LOOKUP_CACHE") {
            s.lookup_cache = parse_var("TOOLTOOL_LOOKUP_CACHE", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_AMQP_URL") {
            if !v.starts_with("amqp://") {
                bail!("TOOLTOOL_AMQP_URL must start with amqp:// (this build has no TLS to the broker)");
            }
            s.amqp_url = Some(Secret::new(v));
        }
        if let Some(v) = get("TOOLTOOL_AMQP_EXCHANGE") {
            s.amqp_exchange = v;
        }
        if let Some(v) = get("TOOLTOOL_REPLICATION") {
            s.replication = parse_bool("TOOLTOOL_REPLICATION", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_REPLICATION_PART_SIZE") {
            s.replication_part_size = parse_var("TOOLTOOL_REPLICATION_PART_SIZE", &v)?;
            if s.replication_part_size < MIN_PART_SIZE {
                bail!("TOOLTOOL_REPLICATION_PART_SIZE must be at least {MIN_PART_SIZE} bytes (S3's smallest part)");
            }
        }
        if let Some(v) = get("TOOLTOOL_SCRUB_INTERVAL") {
            s.scrub_interval = match v.as_str() {
                "off" => None,
                _ => match parse_duration("TOOLTOOL_SCRUB_INTERVAL", &v)? {
                    d if d.is_zero() => bail!("TOOLTOOL_SCRUB_INTERVAL must be longer than 0 (or off)"),
                    d => Some(d),
                },
            };
        }
        if let Some(v) = get("TOOLTOOL_SCRUB_RATE") {
            s.scrub_rate = parse_var("TOOLTOOL_SCRUB_RATE", &v)?;
            if !(s.scrub_rate.is_finite() && s.scrub_rate > 0.0) {
                bail!("TOOLTOOL_SCRUB_RATE must be a positive number of megabytes per second, not {v:?}");
            }
        }
        if let Some(v) = get("TOOLTOOL_TUF_ONLINE_KEYS") {
            s.tuf_online_keys = v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        }
        if let Some(v) = get("TOOLTOOL_MULTIPART_THRESHOLD") {
            s.parts.threshold = parse_var("TOOLTOOL_MULTIPART_THRESHOLD", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_PART_SIZE") {
            s.parts.part_size = parse_var("TOOLTOOL_PART_SIZE", &v)?;
            if s.parts.part_size < MIN_PART_SIZE {
                bail!("TOOLTOOL_PART_SIZE must be at least {MIN_PART_SIZE} bytes (S3's smallest part)");
            }
        }
        if let Some(v) = get("TOOLTOOL_MAX_SINGLE_PUT") {
            s.parts.max_single_put = parse_var("TOOLTOOL_MAX_SINGLE_PUT", &v)?;
        }
        if let Some(v) = get("TOOLTOOL_PART_URL_BATCH") {
            s.parts.url_batch = parse_var("TOOLTOOL_PART_URL_BATCH", &v)?;
            if s.parts.url_batch == 0 {
                bail!("TOOLTOOL_PART_URL_BATCH must be at least 1");
            }
        }
        s.cdn = match (get("TOOLTOOL_CDN_URL"), get("TOOLTOOL_CDN_KEY_ID"), get("TOOLTOOL_CDN_PRIVATE_KEY")) {
            (None, None, None) => None,
            (Some(url), Some(key_id), Some(key)) => Some(CdnSettings { url, key_id, private_key: key.into() }),
            _ => bail!(
                "TOOLTOOL_CDN_URL, TOOLTOOL_CDN_KEY_ID and TOOLTOOL_CDN_PRIVATE_KEY go together: set all three or none"
            ),
        };
        let shared = S3Settings {
            bucket: String::new(),
            region: get("TOOLTOOL_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            endpoint: get("TOOLTOOL_S3_ENDPOINT"),
            force_path_style: get("TOOLTOOL_S3_FORCE_PATH_STYLE")
                .map(|v| parse_bool("TOOLTOOL_S3_FORCE_PATH_STYLE", &v))
                .transpose()?
                .unwrap_or(false),
            access_key_id: get("TOOLTOOL_S3_ACCESS_KEY_ID"),
            secret_access_key: get("TOOLTOOL_S3_SECRET_ACCESS_KEY").map(Secret::new),
            timeout: match get("TOOLTOOL_S3_TIMEOUT") {
                Some(v) => match parse_duration("TOOLTOOL_S3_TIMEOUT", &v)? {
                    d if d.is_zero() => bail!("TOOLTOOL_S3_TIMEOUT must be longer than 0"),
                    d => d,
                },
                None => DEFAULT_S3_TIMEOUT,
            },
        };
        match (get("TOOLTOOL_S3_REGIONS"), get("TOOLTOOL_S3_BUCKET")) {
            (Some(_), Some(_)) => bail!("TOOLTOOL_S3_REGIONS and TOOLTOOL_S3_BUCKET are exclusive: set one"),
            (Some(list), None) => s.blobs = BlobSettings::S3(parse_regions(&list, &shared)?),
            (None, Some(bucket)) => s.blobs = BlobSettings::S3(vec![S3Settings { bucket, ..shared }]),
            (None, None) => {
                if let Some(region) = get("TOOLTOOL_REGION") {
                    s.blobs = BlobSettings::Local { region };
                }
            }
        }
        Ok(s)
    }

    /// Whether the metadata store is SQLite (a single-process deployment).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
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

/// The default SQLite URL for a data directory (created if missing).
pub fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("tooltool.db").display())
}

fn parse_var<T: std::str::FromStr>(name: &str, v: &str) -> anyhow::Result<T>
where
    T::Err: fmt::Display,
{
    v.parse().map_err(|e| anyhow::anyhow!("{name} has an invalid value {v:?}: {e}"))
}

fn parse_bool(name: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name} must be true or false, not {v:?}"),
    }
}

/// Parses `60`, `60s`, `15m`, `1h`, `1y`… (plain numbers are seconds).
pub fn parse_duration(name: &str, v: &str) -> anyhow::Result<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|e| anyhow::anyhow!("{name} has an invalid duration {v:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_configuration_gives_the_embedded_default() {
        let s = from(&[]).unwrap();
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.port, 8080);
        assert!(s.is_sqlite());
        assert_eq!(s.database_url, "sqlite://tooltool-data/tooltool.db?mode=rwc");
        assert!(matches!(s.blobs, BlobSettings::Local { .. }));
        assert_eq!(s.download_url_ttl, Duration::from_secs(60));
        assert!(s.anonymous_public_download);
    }

    #[test]
    fn malformed_variables_name_themselves() {
        let err = from(&[("PORT", "eighty")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = from(&[("TOOLTOOL_DOWNLOAD_URL_TTL", "soon")]).unwrap_err().to_string();
        assert!(err.contains("TOOLTOOL_DOWNLOAD_URL_TTL"), "{err}");
        let err = from(&[("DATABASE_URL", "mysql://x")]).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        let err = from(&[("TOOLTOOL_SECRET_KEY", "short")]).unwrap_err().to_string();
        assert!(err.contains("TOOLTOOL_SECRET_KEY"), "{err}");
    }

    #[test]
    fn s3_settings_come_from_the_environment() {
        let s = from(&[
            ("TOOLTOOL_S3_BUCKET", "b"),
            ("TOOLTOOL_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("TOOLTOOL_S3_FORCE_PATH_STYLE", "true"),
            ("TOOLTOOL_DOWNLOAD_URL_TTL", "2m"),
        ])
        .unwrap();
        let BlobSettings::S3(regions) = &s.blobs else { panic!("expected S3") };
        let [s3] = regions.as_slice() else { panic!("expected one region") };
        assert_eq!(s3.bucket, "b");
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.force_path_style);
        assert_eq!(s.download_url_ttl, Duration::from_secs(120));
        assert_eq!(s3.timeout, DEFAULT_S3_TIMEOUT);
    }

    #[test]
    fn scrub_settings_have_defaults_values_and_refuse_malformed_ones() {
        let s = from(&[]).unwrap();
        assert_eq!(s.scrub_interval, Some(Duration::from_secs(30 * 24 * 3600)));
        assert_eq!(s.scrub_rate, 10.0);
        let s = from(&[("TOOLTOOL_SCRUB_INTERVAL", "7days"), ("TOOLTOOL_SCRUB_RATE", "2.5")]).unwrap();
        assert_eq!((s.scrub_interval, s.scrub_rate), (Some(Duration::from_secs(7 * 24 * 3600)), 2.5));
        assert_eq!(from(&[("TOOLTOOL_SCRUB_INTERVAL", "off")]).unwrap().scrub_interval, None);
        for (var, bad) in [
            ("TOOLTOOL_SCRUB_INTERVAL", "weekly"),
            ("TOOLTOOL_SCRUB_INTERVAL", "0"),
            ("TOOLTOOL_SCRUB_RATE", "fast"),
            ("TOOLTOOL_SCRUB_RATE", "0"),
            ("TOOLTOOL_SCRUB_RATE", "-1"),
            ("TOOLTOOL_SCRUB_RATE", "inf"),
        ] {
            let err = from(&[(var, bad)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={bad}: {err}");
        }
    }

    #[test]
    fn the_s3_timeout_has_a_default_a_value_and_refuses_malformed_ones() {
        let timeout = |vars: &[(&str, &str)]| {
            let s = from(&[&[("TOOLTOOL_S3_REGIONS", "a=b,c=d")], vars].concat()).unwrap();
            let BlobSettings::S3(regions) = &s.blobs else { panic!("expected S3") };
            regions.iter().map(|r| r.timeout).collect::<Vec<_>>()
        };
        assert_eq!(timeout(&[]), [Duration::from_secs(15); 2]);
        assert!(DEFAULT_S3_TIMEOUT < Settings::embedded("x").verify_wait, "complete answers 503 before 409");
        assert_eq!(timeout(&[("TOOLTOOL_S3_TIMEOUT", "2s")]), [Duration::from_secs(2); 2], "every region");
        for bad in ["soon", "0"] {
            let err = from(&[("TOOLTOOL_S3_BUCKET", "b"), ("TOOLTOOL_S3_TIMEOUT", bad)]).unwrap_err().to_string();
            assert!(err.contains("TOOLTOOL_S3_TIMEOUT"), "{err}");
        }
    }

    #[test]
    fn events_settings_come_from_the_environment() {
        let s = from(&[]).unwrap();
        assert!(s.amqp_url.is_none());
        assert_eq!(s.amqp_exchange, "tooltool");
        assert_eq!(s.events_retention, Duration::from_secs(30 * 24 * 3600));
        let s = from(&[
            ("TOOLTOOL_AMQP_URL", "amqp://u:p@mq:5672/%2f"),
            ("TOOLTOOL_AMQP_EXCHANGE", "releng"),
            ("TOOLTOOL_EVENTS_RETENTION", "7d"),
        ])
        .unwrap();
        assert_eq!(s.amqp_url.as_ref().map(Secret::expose), Some("amqp://u:p@mq:5672/%2f"));
        assert!(!format!("{s:?}").contains("u:p@"), "the URL holds a password");
        assert_eq!(s.amqp_exchange, "releng");
        assert_eq!(s.events_retention, Duration::from_secs(7 * 24 * 3600));
        let err = from(&[("TOOLTOOL_AMQP_URL", "http://mq")]).unwrap_err().to_string();
        assert!(err.contains("TOOLTOOL_AMQP_URL"), "{err}");
    }

    #[test]
    fn s3_regions_are_listed_in_order_with_shared_credentials() {
        let s = from(&[
            ("TOOLTOOL_S3_REGIONS", "us-east-1=tt-use1, us-west-2=tt-usw2@http://10.0.0.5:9000/,eu=tt-eu"),
            ("TOOLTOOL_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("TOOLTOOL_S3_ACCESS_KEY_ID", "key"),
            ("TOOLTOOL_S3_SECRET_ACCESS_KEY", "secret"),
            ("TOOLTOOL_S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        let BlobSettings::S3(regions) = &s.blobs else { panic!("expected S3") };
        let got: Vec<(&str, &str, Option<&str>)> =
            regions.iter().map(|r| (r.region.as_str(), r.bucket.as_str(), r.endpoint.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("us-east-1", "tt-use1", Some("http://127.0.0.1:9000")),
                ("us-west-2", "tt-usw2", Some("http://10.0.0.5:9000")),
                ("eu", "tt-eu", Some("http://127.0.0.1:9000")),
            ]
        );
        assert!(regions.iter().all(|r| r.force_path_style && r.access_key_id.as_deref() == Some("key")));
        assert!(regions.iter().all(|r| r.secret_access_key.as_ref().unwrap().expose() == "secret"));
    }

    #[test]
    fn a_malformed_region_list_stops_start_up_naming_the_variable() {
        for bad in [
            "",
            "us-east-1",
            "=bucket",
            "us-east-1=",
            "a=b,a=c",
            "a=b@",
            "a=b@not a url",
            "a=b@ftp://host",
            "a=b,,c=d",
            "a b=c",
        ] {
            let err = match from(&[("TOOLTOOL_S3_REGIONS", bad)]) {
                Ok(s) => panic!("{bad:?} was accepted: {:?}", s.blobs),
                Err(e) => e.to_string(),
            };
            assert!(err.contains("TOOLTOOL_S3_REGIONS"), "{bad:?}: {err}");
        }
        let err = from(&[("TOOLTOOL_S3_REGIONS", "a=b"), ("TOOLTOOL_S3_BUCKET", "c")]).unwrap_err().to_string();
        assert!(err.contains("TOOLTOOL_S3_REGIONS") && err.contains("TOOLTOOL_S3_BUCKET"), "{err}");
    }

    #[test]
    fn hardening_settings_have_defaults_and_malformed_ones_name_themselves() {
        let s = from(&[]).unwrap();
        assert_eq!((s.search_concurrency, s.search_timeout), (4, Duration::from_secs(5)));
        assert_eq!((s.max_file_size, s.free_space_reserve), (5 << 40, 1 << 30));
        assert_eq!(s.internal_metadata, InternalMetadata::Open);
        let s = from(&[
            ("TOOLTOOL_SEARCH_CONCURRENCY", "2"),
            ("TOOLTOOL_SEARCH_TIMEOUT", "750ms"),
            ("TOOLTOOL_MAX_FILE_SIZE", "1000"),
            ("TOOLTOOL_FREE_SPACE_RESERVE", "0"),
            ("TOOLTOOL_INTERNAL_METADATA", "restricted"),
        ])
        .unwrap();
        assert_eq!((s.search_concurrency, s.search_timeout), (2, Duration::from_millis(750)));
        assert_eq!((s.max_file_size, s.free_space_reserve), (1000, 0));
        assert_eq!(s.internal_metadata, InternalMetadata::Restricted);
        for (name, bad) in [
            ("TOOLTOOL_SEARCH_CONCURRENCY", "0"),
            ("TOOLTOOL_SEARCH_TIMEOUT", "soon"),
            ("TOOLTOOL_MAX_FILE_SIZE", "-1"),
            ("TOOLTOOL_FREE_SPACE_RESERVE", "1G"),
            ("TOOLTOOL_INTERNAL_METADATA", "secret"),
        ] {
            let err = from(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn replication_and_probe_settings_have_defaults_and_switches() {
        let s = from(&[]).unwrap();
        assert!(s.replication);
        assert_eq!(s.region_probe, Duration::from_secs(5));
        let s = from(&[
            ("TOOLTOOL_REPLICATION", "off"),
            ("TOOLTOOL_REGION_PROBE", "250ms"),
            ("TOOLTOOL_REPLICATION_PART_SIZE", "5242880"),
        ])
        .unwrap();
        assert!(!s.replication);
        assert_eq!(s.region_probe, Duration::from_millis(250));
        assert_eq!(s.replication_part_size, 5 * 1024 * 1024);
        let err = from(&[("TOOLTOOL_REPLICATION", "sometimes")]).unwrap_err().to_string();
        assert!(err.contains("TOOLTOOL_REPLICATION"), "{err}");
        let err = from(&[("TOOLTOOL_REPLICATION_PART_SIZE", "1048576")]).unwrap_err().to_string();
        assert!(err.contains("TOOLTOOL_REPLICATION_PART_SIZE"), "{err}");
    }

    #[test]
    fn part_settings_have_defaults_values_and_refuse_malformed_ones() {
        let s = from(&[]).unwrap();
        assert_eq!(
            s.parts,
            PartSettings { threshold: 64 << 20, part_size: 64 << 20, max_single_put: 5 << 30, url_batch: 100 }
        );
        let s = from(&[
            ("TOOLTOOL_MULTIPART_THRESHOLD", "1"),
            ("TOOLTOOL_PART_SIZE", "5242880"),
            ("TOOLTOOL_MAX_SINGLE_PUT", "1000"),
            ("TOOLTOOL_PART_URL_BATCH", "2"),
        ])
        .unwrap();
        assert_eq!(s.parts, PartSettings { threshold: 1, part_size: 5 << 20, max_single_put: 1000, url_batch: 2 });
        for (name, bad) in [
            ("TOOLTOOL_MULTIPART_THRESHOLD", "64M"),
            ("TOOLTOOL_PART_SIZE", "5242879"),
            ("TOOLTOOL_MAX_SINGLE_PUT", "-1"),
            ("TOOLTOOL_PART_URL_BATCH", "0"),
        ] {
            let err = from(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={bad}: {err}");
        }
    }

    #[test]
    fn taskcluster_settings_are_off_by_default_and_checked() {
        let s = from(&[]).unwrap();
        assert_eq!((s.taskcluster_root_url.as_deref(), s.trust_forwarded), (None, false));
        assert_eq!(s.taskcluster_timeout, Duration::from_secs(5));
        let s = from(&[
            ("TOOLTOOL_TASKCLUSTER_ROOT_URL", "https://tc.example.com/"),
            ("TOOLTOOL_TASKCLUSTER_TIMEOUT", "2s"),
            ("TOOLTOOL_TRUST_FORWARDED", "true"),
        ])
        .unwrap();
        assert_eq!(s.taskcluster_root_url.as_deref(), Some("https://tc.example.com"));
        assert_eq!((s.taskcluster_timeout, s.trust_forwarded), (Duration::from_secs(2), true));
        for (name, bad) in [("TOOLTOOL_TASKCLUSTER_ROOT_URL", "tc.example.com"), ("TOOLTOOL_TRUST_FORWARDED", "maybe")]
        {
            let err = from(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let s = from(&[("TOOLTOOL_SECRET_KEY", "0123456789abcdef0123456789abcdef-hidden")]).unwrap();
        assert!(!format!("{s:?}").contains("hidden"));
    }
}
