//! Configuration, read once from the environment at start.
//!
//! Every variable is listed with its default in docs/configuration.md (a test checks the table
//! against the variables read here, both ways). Each concern reads its own variables, in its own
//! file: `http`, `auth`, `db`, `blobs`, `uploads`, `events`, `replication`. Each read goes through
//! `Env`, so a malformed value is an error that names the variable; secrets are wrapped in
//! [`Secret`] so `Debug` never prints them. The settings stay one flat [`Settings`], which every
//! part of the server reads.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use tooltool_proto::DEFAULT_SCOPE_PREFIX;

mod auth;
mod blobs;
mod db;
mod events;
mod http;
mod replication;
mod tuf;
mod uploads;

pub use auth::InternalMetadata;
pub use blobs::{BlobSettings, CdnSettings, DEFAULT_S3_TIMEOUT, S3Settings};
pub use uploads::{MIN_PART_SIZE, PartSettings};

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
    /// The largest copy between endpoints sent as one streamed PUT
    /// (`TOOLTOOL_REPLICATION_SINGLE_PUT`, 5 GiB: S3's limit); larger ones go in parts.
    pub replication_single_put: u64,
    /// Part size of copies between endpoints larger than that (`TOOLTOOL_REPLICATION_PART_SIZE`).
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
            replication_single_put: 5 << 30,
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
        let env = Env { get: &get };
        let data_dir = PathBuf::from(env.get("TOOLTOOL_DATA_DIR").unwrap_or_else(|| "tooltool-data".into()));
        let mut s = Self::embedded(data_dir);
        for read in
            [http::read, auth::read, db::read, blobs::read, uploads::read, events::read, replication::read, tuf::read]
        {
            read(&env, &mut s)?;
        }
        Ok(s)
    }

    /// Whether the metadata store is SQLite (a single-process deployment).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
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

/// The environment as the settings read it: every typed read names its variable in its error.
struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String> {
        (self.get)(name)
    }

    /// `name` parsed as a `T` (a number, usually), if set.
    fn parse<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        self.get(name).map(|v| parse_var(name, &v)).transpose()
    }

    /// `name` as a duration ([`parse_duration`]), if set.
    fn duration(&self, name: &str) -> anyhow::Result<Option<Duration>> {
        self.get(name).map(|v| parse_duration(name, &v)).transpose()
    }

    /// `name` as a switch (`true`/`false`, `on`/`off`, …), if set.
    fn bool(&self, name: &str) -> anyhow::Result<Option<bool>> {
        self.get(name).map(|v| parse_bool(name, &v)).transpose()
    }

    /// Sets `field` to the value of `name`, if set.
    fn set(&self, name: &str, field: &mut String) {
        if let Some(v) = self.get(name) {
            *field = v;
        }
    }

    /// Sets `field` to `name` parsed ([`Env::parse`]), if set.
    fn set_parsed<T: std::str::FromStr>(&self, name: &str, field: &mut T) -> anyhow::Result<()>
    where
        T::Err: fmt::Display,
    {
        if let Some(v) = self.parse(name)? {
            *field = v;
        }
        Ok(())
    }

    /// Sets `field` to `name` as a duration ([`Env::duration`]), if set.
    fn set_duration(&self, name: &str, field: &mut Duration) -> anyhow::Result<()> {
        if let Some(v) = self.duration(name)? {
            *field = v;
        }
        Ok(())
    }

    /// Sets `field` to `name` as a switch ([`Env::bool`]), if set.
    fn set_bool(&self, name: &str, field: &mut bool) -> anyhow::Result<()> {
        if let Some(v) = self.bool(name)? {
            *field = v;
        }
        Ok(())
    }
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
        assert_eq!((s.replication_single_put, s.replication_part_size), (5 << 30, 64 << 20));
        let s = from(&[
            ("TOOLTOOL_REPLICATION", "off"),
            ("TOOLTOOL_REGION_PROBE", "250ms"),
            ("TOOLTOOL_REPLICATION_PART_SIZE", "5242880"),
            ("TOOLTOOL_REPLICATION_SINGLE_PUT", "1000"),
        ])
        .unwrap();
        assert!(!s.replication);
        assert_eq!(s.replication_single_put, 1000);
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
    fn the_configuration_doc_lists_every_variable_read_and_no_other() {
        // Read by the logger (`telemetry::init`) before the settings: `RUST_LOG` through
        // `EnvFilter`'s default, `LOG_FORMAT` directly.
        const LOGGING: [&str; 2] = ["RUST_LOG", "LOG_FORMAT"];
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        Settings::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_owned());
            None
        })
        .unwrap();
        let mut read = asked.into_inner();
        read.extend(LOGGING.map(String::from));

        // The first column of the table: one or more `NAME`s.
        let doc = include_str!("../../../docs/configuration.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split(" |").next())
            .flat_map(|cell| cell.split('`').filter(|n| !n.is_empty() && !n.starts_with(',')).map(String::from))
            .collect();
        assert!(documented.len() > 40, "the table was not found: {documented:?}");
        let undocumented: Vec<_> = read.difference(&documented).collect();
        assert!(undocumented.is_empty(), "docs/configuration.md lacks {undocumented:?}");
        let unread: Vec<_> = documented.difference(&read).collect();
        assert!(unread.is_empty(), "docs/configuration.md lists {unread:?}, which nothing reads");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let s = from(&[("TOOLTOOL_SECRET_KEY", "0123456789abcdef0123456789abcdef-hidden")]).unwrap();
        assert!(!format!("{s:?}").contains("hidden"));
    }
}
