//! Dockerflow operations routes: `__lbheartbeat__`, `__heartbeat__`, `__version__`.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde_json::json;

use crate::http::state::AppState;
use crate::relay::RelayState;
use tooltool_proto::VersionInfo;

/// How long each heartbeat check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// 200 as long as the process serves.
#[utoipa::path(method(get, head), path = "/__lbheartbeat__", tag = "operations", responses((status = 200, description = "The process serves")))]
pub async fn lbheartbeat() -> HttpResponse {
    HttpResponse::Ok().json(json!({}))
}

/// 200 when the database and every region's blob store answer in time; 200 with status
/// `warning` when some regions do not (downloads and copies go around them); 503 when the
/// database or every region fails. Each region's check is named `region:<name>`. With a broker
/// configured, `checks.broker` says what the events relay does (`ok`, `standby`: another
/// replica relays, `starting`, `unavailable`); a broker that is not `ok` or `standby` makes the
/// status `warning`, still 200. Files whose every copy the scrubber found lost are counted in
/// `checks.lost_files` (only when there are some), also a `warning`. Each bootstrapped TUF
/// repository has `checks.tuf:<repo>`: `ok`, or `expiring: <roles>` (a `warning`) for roles
/// within their warning margin of expiry (`tuf::status::warning_margin`).
#[utoipa::path(method(get, head), path = "/__heartbeat__", tag = "operations", responses((status = 200, description = "Database and blob stores answer (status warning: some regions, or the broker, do not, or files lost every copy)"), (status = 503, description = "A check failed; the body names it")))]
pub async fn heartbeat(state: web::Data<AppState>) -> HttpResponse {
    let db = tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await;
    let database = match db {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::error!(error = %e, "heartbeat: database check failed");
            "error"
        }
        Err(_) => "timeout",
    };
    let regions = join_all(state.blobs.all().map(|store| async move {
        let result = match tokio::time::timeout(CHECK_TIMEOUT, store.check()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::error!(region = store.region(), error = %e, "heartbeat: blob store check failed");
                "error"
            }
            Err(_) => "timeout",
        };
        (store.region(), result)
    }))
    .await;
    let failing = regions.iter().filter(|(_, r)| *r != "ok").count();
    let blob_store = match failing {
        0 => "ok",
        n if n == regions.len() => regions[0].1,
        _ => "degraded",
    };
    let healthy = database == "ok" && failing < regions.len();
    let mut checks = serde_json::Map::new();
    checks.insert("database".into(), database.into());
    checks.insert("blob_store".into(), blob_store.into());
    for (region, result) in &regions {
        checks.insert(format!("region:{region}"), (*result).into());
    }
    // The broker is a warning, never a failure: nothing but the relay needs it, and the outbox
    // keeps every event until it returns.
    let relay = state.relay.get();
    if relay != RelayState::Disabled {
        checks.insert("broker".into(), relay.as_str().into());
    }
    // Files whose every copy was lost answer 404 until uploaded again: a warning, the service
    // itself is fine.
    let lost = match tokio::time::timeout(CHECK_TIMEOUT, state.db.lost_file_count()).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "heartbeat: cannot count the lost files");
            0
        }
        Err(_) => 0,
    };
    if lost > 0 {
        checks.insert("lost_files".into(), lost.into());
    }
    // A TUF role close to expiry (the signer is stalled, or the root needs its ceremony) is a
    // warning: clients still verify until it expires.
    let mut expiring = 0;
    match tokio::time::timeout(CHECK_TIMEOUT, crate::tuf::status::read(&state.db)).await {
        Ok(Ok(repos)) => {
            let now = crate::time::now();
            for status in repos {
                let roles = status.expiring(now);
                expiring += roles.len();
                let check = if roles.is_empty() { "ok".to_owned() } else { format!("expiring: {}", roles.join(", ")) };
                checks.insert(format!("tuf:{}", status.repo), check.into());
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "heartbeat: cannot read the TUF repositories"),
        Err(_) => tracing::error!("heartbeat: reading the TUF repositories timed out"),
    }
    let warning =
        failing > 0 || lost > 0 || expiring > 0 || matches!(relay, RelayState::Unavailable | RelayState::Starting);
    let status = match (healthy, warning) {
        (false, _) => "error",
        (true, true) => "warning",
        (true, false) => "ok",
    };
    let body = json!({ "status": status, "checks": checks });
    if healthy { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(gather(&state).await)
}

/// Every metric, with the gauges whose values lower layers own read now, at scrape time: the
/// log writer's dropped lines, the lookup cache, the pools, the events backlog, the replication
/// backlog and the oldest proof. The one place they are read; none of those layers pushes them.
async fn gather(state: &AppState) -> String {
    let m = &*state.metrics;
    let dropped = crate::telemetry::log_lines_dropped();
    m.log_lines_dropped.inc_by(dropped.saturating_sub(m.log_lines_dropped.get()));
    m.lookup_cache_active.set(i64::from(state.db.lookup_cache_active()));
    for (pool, idle, in_use) in state.db.pool_usage() {
        m.pool.with_label_values(&[pool, "idle"]).set(idle.into());
        m.pool.with_label_values(&[pool, "in_use"]).set(in_use.into());
    }
    if state.settings.amqp_url.is_some() {
        match tokio::time::timeout(CHECK_TIMEOUT, state.db.outbox_backlog()).await {
            Ok(Ok((pending, oldest))) => {
                m.events_pending.set(pending);
                m.events_oldest_pending_age.set(oldest.map_or(0, |t| (crate::time::now() - t).max(0)));
            }
            Ok(Err(e)) => tracing::error!(error = %e, "metrics: cannot count pending events"),
            Err(_) => tracing::error!("metrics: counting pending events timed out"),
        }
    }
    let backlog = crate::replication::update_backlog_metrics(&state.db, &state.blobs, m);
    match tokio::time::timeout(CHECK_TIMEOUT, backlog).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "metrics: could not read the replication backlog"),
        Err(_) => tracing::error!("metrics: reading the replication backlog timed out"),
    }
    match tokio::time::timeout(CHECK_TIMEOUT, crate::scrub::update_metrics(&state.db, m)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "metrics: could not read the oldest proof"),
        Err(_) => tracing::error!("metrics: reading the oldest proof timed out"),
    }
    match tokio::time::timeout(CHECK_TIMEOUT, crate::tuf::status::update_metrics(&state.db, m)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "metrics: could not read the TUF repositories"),
        Err(_) => tracing::error!("metrics: reading the TUF repositories timed out"),
    }
    m.render(state.settings.amqp_url.is_some())
}

/// What is running.
#[utoipa::path(get, path = "/__version__", tag = "operations", responses((status = 200, description = "Source, version, commit, build", body = tooltool_proto::VersionInfo)))]
pub async fn version() -> HttpResponse {
    HttpResponse::Ok().json(version_info())
}

/// The version document.
pub fn version_info() -> VersionInfo {
    VersionInfo {
        source: env!("CARGO_PKG_REPOSITORY").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: option_env!("TOOLTOOL_GIT_COMMIT").unwrap_or("unknown").to_owned(),
        build: format!(
            "{}-{}-{}",
            std::env::consts::ARCH,
            std::env::consts::OS,
            if cfg!(debug_assertions) { "debug" } else { "release" }
        ),
    }
}

/// The OpenAPI document of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::http::openapi::document())
}
