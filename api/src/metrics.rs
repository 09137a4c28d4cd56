//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Process-wide: the counters live in one registry for the life of the process. Route labels are
//! the route patterns (`/sha512/{digest}`), never raw paths, so their number stays fixed.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
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
}

fn build() -> Metrics {
    let registry = Registry::new_custom(Some("tooltool".into()), None).expect("valid prefix");
    let requests = IntCounterVec::new(
        Opts::new("http_requests_total", "HTTP requests by route, method and status"),
        &["route", "method", "status"],
    )
    .expect("valid metric");
    let latency = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route")
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
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
    let events_pending =
        prometheus::IntGauge::new("events_pending", "Events the broker has not confirmed yet").expect("valid metric");
    let events_oldest_pending_age = prometheus::IntGauge::new(
        "events_oldest_pending_age_seconds",
        "Age of the oldest event the broker has not confirmed (0 when none)",
    )
    .expect("valid metric");
    let events_published =
        IntCounter::new("events_published_total", "Events confirmed by the broker").expect("valid metric");
    let region_up = IntGaugeVec::new(Opts::new("region_up", "1 while the region's last probe answered"), &["region"])
        .expect("valid metric");
    let replication_pending =
        prometheus::IntGauge::new("replication_pending", "Copies between regions not made yet").expect("valid metric");
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
    for m in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(latency.clone()),
        Box::new(redirects.clone()),
        Box::new(verified_bytes.clone()),
        Box::new(verifications.clone()),
        Box::new(backend_errors.clone()),
        Box::new(pool.clone()),
        Box::new(log_lines_dropped.clone()),
        Box::new(lookups.clone()),
        Box::new(lookup_cache_active.clone()),
        Box::new(events_pending.clone()),
        Box::new(events_oldest_pending_age.clone()),
        Box::new(events_published.clone()),
        Box::new(region_up.clone()),
        Box::new(replication_pending.clone()),
        Box::new(replication_oldest_pending.clone()),
        Box::new(replication_copies.clone()),
        Box::new(identity_calls.clone()),
        Box::new(identity_latency.clone()),
    ] {
        registry.register(m).expect("metric registered once");
    }
    Metrics {
        registry,
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
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(build);

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let dropped = crate::telemetry::log_lines_dropped();
        self.log_lines_dropped.inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
