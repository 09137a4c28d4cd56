//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Owned, not global: [`Metrics::new`] makes a registry, and the application makes one (in
//! `Application::build`) and hands it, as an `Arc`, to whatever counts; a one-shot command makes
//! its own. So a test reads exact values off its own server's registry. Route labels are the
//! route patterns (`/sha512/{digest}`), never raw paths, so their number stays fixed.
//!
//! The registry only: it imports nothing of the server. A gauge whose value a lower layer owns
//! (the log writer's dropped lines, the lookup cache, the pools) is read at scrape time by the
//! `/metrics` route's `gather`, which sits above them all.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// Every family's full name, help and type, for the ones that have no sample yet.
    families: Vec<(String, String, &'static str)>,
    /// Requests by route pattern, method and status.
    pub requests: IntCounterVec,
    /// Request latency by route pattern.
    pub latency: HistogramVec,
    /// 302 redirects issued to stored copies.
    pub redirects: IntCounter,
    /// Bytes hashed by upload verification.
    pub verified_bytes: IntCounter,
    /// Verifications by outcome (`verified`, `rejected`).
    pub verifications: IntCounterVec,
    /// Failures of the metadata store (`database`) and blob store (`blob_store`).
    pub backend_errors: IntCounterVec,
    /// Database pool connections by pool and state (`idle`, `in_use`).
    pub pool: IntGaugeVec,
    /// Log lines dropped because the log writer could not keep up.
    pub log_lines_dropped: IntCounter,
    /// Download lookups answered from the in-memory cache, and read from the database.
    pub lookups: IntCounterVec,
    /// 1 while the lookup cache is in use (on PostgreSQL: while its invalidation listener is
    /// connected), 0 while every lookup reads the database.
    pub lookup_cache_active: prometheus::IntGauge,
    /// Events the broker has not confirmed yet (set when a broker is configured).
    pub events_pending: prometheus::IntGauge,
    /// Age in seconds of the oldest event the broker has not confirmed (0 when none).
    pub events_oldest_pending_age: prometheus::IntGauge,
    /// Events this process's relay had confirmed by the broker.
    pub events_published: IntCounter,
    /// 1 while a region's last probe answered, 0 otherwise.
    pub region_up: IntGaugeVec,
    /// Copies between regions not made yet: (file, region) pairs lacking a verified copy.
    pub replication_pending: prometheus::IntGauge,
    /// Age in seconds of the oldest file still lacking a copy in some region.
    pub replication_oldest_pending: prometheus::IntGauge,
    /// Copies between regions by source, target and outcome (`copied`, `mismatch`,
    /// `source_missing`, `source_changed`, `failed`, `abandoned`).
    pub replication_copies: IntCounterVec,
    /// Calls to the Taskcluster deployment's `authenticate-hawk` by outcome (`success`,
    /// `failed`, `unavailable`).
    pub identity_calls: IntCounterVec,
    /// Latency of those calls.
    pub identity_latency: prometheus::Histogram,
    /// Stored copies the scrubber read back, by region.
    pub scrub_copies: IntCounterVec,
    /// Bytes the scrubber read back, by region.
    pub scrub_bytes: IntCounterVec,
    /// Copies the scrubber found lost and took out of routing, by reason (`missing`, `corrupt`).
    pub scrub_copies_lost: IntCounterVec,
    /// Lost copies recorded again from a verified copy (by replication or a new upload).
    pub scrub_copies_repaired: IntCounter,
    /// Age in seconds of the oldest proof of any stored copy (0 without copies).
    pub scrub_oldest_unproven: prometheus::IntGauge,
    /// The newest version of each TUF role, by repository and role.
    pub tuf_role_version: IntGaugeVec,
    /// Seconds until each TUF role expires (negative once expired), by repository and role.
    pub tuf_role_expires: IntGaugeVec,
    /// Events the TUF signer has not applied yet, by repository.
    pub tuf_events_lag: IntGaugeVec,
}

impl Metrics {
    /// A registry with every metric of the service, the labels known in advance at zero.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("tooltool".into()), None).expect("valid prefix");
        // The registry adds the prefix when it gathers; a collector's own names lack it.
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let redirects = IntCounter::new("redirects_total", "Download redirects issued").expect("valid metric");
        let verified_bytes =
            IntCounter::new("verified_bytes_total", "Bytes hashed by upload verification").expect("valid metric");
        let verifications =
            IntCounterVec::new(Opts::new("verifications_total", "Upload verifications by outcome"), &["outcome"])
                .expect("valid metric");
        let backend_errors =
            IntCounterVec::new(Opts::new("backend_errors_total", "Metadata and blob store failures"), &["backend"])
                .expect("valid metric");
        let pool = IntGaugeVec::new(Opts::new("db_pool_connections", "Database pool connections"), &["pool", "state"])
            .expect("valid metric");
        let log_lines_dropped =
            IntCounter::new("log_lines_dropped_total", "Log lines dropped because the writer could not keep up")
                .expect("valid metric");
        let lookups =
            IntCounterVec::new(Opts::new("lookups_total", "Download lookups by source (cache, database)"), &["source"])
                .expect("valid metric");
        let lookup_cache_active =
            prometheus::IntGauge::new("lookup_cache_active", "1 while download lookups may be answered from memory")
                .expect("valid metric");
        let events_pending = prometheus::IntGauge::new("events_pending", "Events the broker has not confirmed yet")
            .expect("valid metric");
        let events_oldest_pending_age = prometheus::IntGauge::new(
            "events_oldest_pending_age_seconds",
            "Age of the oldest event the broker has not confirmed (0 when none)",
        )
        .expect("valid metric");
        let events_published =
            IntCounter::new("events_published_total", "Events confirmed by the broker").expect("valid metric");
        let region_up =
            IntGaugeVec::new(Opts::new("region_up", "1 while the region's last probe answered"), &["region"])
                .expect("valid metric");
        let replication_pending =
            prometheus::IntGauge::new("replication_pending", "Copies between regions not made yet")
                .expect("valid metric");
        let replication_oldest_pending = prometheus::IntGauge::new(
            "replication_oldest_pending_seconds",
            "Age of the oldest file still lacking a copy in some region",
        )
        .expect("valid metric");
        let replication_copies = IntCounterVec::new(
            Opts::new("replication_copies_total", "Copies between regions by source, target and outcome"),
            &["from", "to", "outcome"],
        )
        .expect("valid metric");
        let identity_calls = IntCounterVec::new(
            Opts::new("identity_calls_total", "Calls to the Taskcluster deployment's authenticate-hawk by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let identity_latency = prometheus::Histogram::with_opts(
            HistogramOpts::new("identity_call_duration_seconds", "Latency of calls to the Taskcluster deployment")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        let scrub_copies =
            IntCounterVec::new(Opts::new("scrub_copies_total", "Stored copies the scrubber read back"), &["region"])
                .expect("valid metric");
        let scrub_bytes =
            IntCounterVec::new(Opts::new("scrub_bytes_total", "Bytes the scrubber read back"), &["region"])
                .expect("valid metric");
        let scrub_copies_lost = IntCounterVec::new(
            Opts::new("scrub_copies_lost_total", "Copies found missing or corrupt and taken out of routing, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let scrub_copies_repaired =
            IntCounter::new("scrub_copies_repaired_total", "Lost copies recorded again from a verified copy")
                .expect("valid metric");
        let scrub_oldest_unproven = prometheus::IntGauge::new(
            "scrub_oldest_unproven_seconds",
            "Age of the oldest proof of any stored copy (0 without copies)",
        )
        .expect("valid metric");
        let tuf_role_version =
            IntGaugeVec::new(Opts::new("tuf_role_version", "Newest version of each TUF role"), &["repo", "role"])
                .expect("valid metric");
        let tuf_role_expires = IntGaugeVec::new(
            Opts::new("tuf_role_expires_seconds", "Seconds until each TUF role expires (bins: the first to expire)"),
            &["repo", "role"],
        )
        .expect("valid metric");
        let tuf_events_lag =
            IntGaugeVec::new(Opts::new("tuf_events_lag", "Events the TUF signer has not applied yet"), &["repo"])
                .expect("valid metric");
        let collectors: [(Box<dyn prometheus::core::Collector>, &str); 27] = [
            (Box::new(requests.clone()), "counter"),
            (Box::new(latency.clone()), "histogram"),
            (Box::new(redirects.clone()), "counter"),
            (Box::new(verified_bytes.clone()), "counter"),
            (Box::new(verifications.clone()), "counter"),
            (Box::new(backend_errors.clone()), "counter"),
            (Box::new(pool.clone()), "gauge"),
            (Box::new(log_lines_dropped.clone()), "counter"),
            (Box::new(lookups.clone()), "counter"),
            (Box::new(lookup_cache_active.clone()), "gauge"),
            (Box::new(events_pending.clone()), "gauge"),
            (Box::new(events_oldest_pending_age.clone()), "gauge"),
            (Box::new(events_published.clone()), "counter"),
            (Box::new(region_up.clone()), "gauge"),
            (Box::new(replication_pending.clone()), "gauge"),
            (Box::new(replication_oldest_pending.clone()), "gauge"),
            (Box::new(replication_copies.clone()), "counter"),
            (Box::new(identity_calls.clone()), "counter"),
            (Box::new(identity_latency.clone()), "histogram"),
            (Box::new(scrub_copies.clone()), "counter"),
            (Box::new(scrub_bytes.clone()), "counter"),
            (Box::new(scrub_copies_lost.clone()), "counter"),
            (Box::new(scrub_copies_repaired.clone()), "counter"),
            (Box::new(scrub_oldest_unproven.clone()), "gauge"),
            (Box::new(tuf_role_version.clone()), "gauge"),
            (Box::new(tuf_role_expires.clone()), "gauge"),
            (Box::new(tuf_events_lag.clone()), "gauge"),
        ];
        let mut families = Vec::new();
        for (m, kind) in collectors {
            families.extend(m.desc().iter().map(|d| (format!("tooltool_{}", d.fq_name), d.help.clone(), kind)));
            registry.register(m).expect("metric registered once");
        }
        // The labels known in advance start at zero, so that a counter that never rose is served
        // as 0 rather than missing.
        for backend in ["database", "blob_store"] {
            backend_errors.with_label_values(&[backend]);
        }
        for outcome in ["verified", "rejected"] {
            verifications.with_label_values(&[outcome]);
        }
        for source in ["cache", "database"] {
            lookups.with_label_values(&[source]);
        }
        for outcome in ["success", "failed", "unavailable"] {
            identity_calls.with_label_values(&[outcome]);
        }
        for reason in ["missing", "corrupt"] {
            scrub_copies_lost.with_label_values(&[reason]);
        }
        Self {
            registry,
            families,
            requests,
            latency,
            redirects,
            verified_bytes,
            verifications,
            backend_errors,
            pool,
            log_lines_dropped,
            lookups,
            lookup_cache_active,
            events_pending,
            events_oldest_pending_age,
            events_published,
            region_up,
            replication_pending,
            replication_oldest_pending,
            replication_copies,
            identity_calls,
            identity_latency,
            scrub_copies,
            scrub_bytes,
            scrub_copies_lost,
            scrub_copies_repaired,
            scrub_oldest_unproven,
            tuf_role_version,
            tuf_role_expires,
            tuf_events_lag,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The families served only when a broker is configured.
const BROKER_FAMILIES: [&str; 3] =
    ["tooltool_events_pending", "tooltool_events_oldest_pending_age_seconds", "tooltool_events_published_total"];

impl Metrics {
    /// The Prometheus text exposition of every metric; the events relay's only `with_broker`.
    /// A family with no sample yet (labels not known until first use, such as
    /// `replication_copies_total{from,to,outcome}`) is served by its `# HELP` and `# TYPE` lines,
    /// so that every documented series is there from the start.
    pub fn render(&self, with_broker: bool) -> String {
        let served = |name: &str| with_broker || !BROKER_FAMILIES.contains(&name);
        let gathered: Vec<_> = self.registry.gather().into_iter().filter(|f| served(f.name())).collect();
        let mut out = Vec::new();
        TextEncoder::new().encode(&gathered, &mut out).expect("text encoding cannot fail");
        let mut text = String::from_utf8(out).expect("the text format is UTF-8");
        for (name, help, kind) in &self.families {
            if served(name) && !gathered.iter().any(|f| f.name() == name) {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The metric names the `/metrics` bullet of docs/operations.md lists (without the prefix).
    fn documented() -> BTreeSet<String> {
        let doc = include_str!("../../docs/operations.md");
        let start = doc.find("- `GET /metrics`").expect("docs/operations.md documents /metrics");
        let bullet = &doc[start..];
        let bullet = &bullet[..bullet[1..].find("\n- ").map_or(bullet.len(), |i| i + 1)];
        bullet
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|name| name.split('{').next().unwrap_or(name))
            .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_') && name.contains('_'))
            .filter(|name| *name != "tooltool_")
            .map(str::to_owned)
            .collect()
    }

    fn served(with_broker: bool) -> BTreeSet<String> {
        super::Metrics::new()
            .render(with_broker)
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE tooltool_"))
            .map(|l| l.split(' ').next().unwrap_or(l).to_owned())
            .collect()
    }

    #[test]
    fn metrics_serve_every_documented_series_from_the_start_and_broker_series_only_with_a_broker() {
        let documented = documented();
        let broker: BTreeSet<String> =
            super::BROKER_FAMILIES.iter().map(|f| f.trim_start_matches("tooltool_").to_owned()).collect();
        assert!(broker.is_subset(&documented), "{documented:?}");
        assert_eq!(served(true), documented);
        assert_eq!(served(false), documented.difference(&broker).cloned().collect::<BTreeSet<_>>());
    }

    #[test]
    fn counters_with_known_labels_start_at_zero() {
        let text = super::Metrics::new().render(false);
        for series in [
            "tooltool_backend_errors_total{backend=\"database\"}",
            "tooltool_backend_errors_total{backend=\"blob_store\"}",
            "tooltool_verifications_total{outcome=\"rejected\"}",
        ] {
            assert!(text.lines().any(|l| l.starts_with(&format!("{series} "))), "{series} missing:\n{text}");
        }
    }
}
