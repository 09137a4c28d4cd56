//! What every handler shares.

use std::sync::Arc;

use crate::auth::client_cache::ClientCache;
use crate::auth::deployment::Deployment;
use crate::auth::{Scope, Tokens};
use crate::blobs::{BlobStores, LocalStore};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::relay::RelayHealth;
use crate::replication::Replicator;
use crate::settings::Settings;
use crate::uploads::Uploads;

/// Shared application state.
#[derive(Debug)]
pub struct AppState {
    /// The settings the server started with.
    pub settings: Settings,
    /// Metadata.
    pub db: Db,
    /// Blob stores by region.
    pub blobs: BlobStores,
    /// The embedded store, when it is the one configured (its routes need it).
    pub local: Option<Arc<LocalStore>>,
    /// Token verification.
    pub tokens: Tokens,
    /// The scope prefix.
    pub scope_prefix: Arc<str>,
    /// What an anonymous caller holds.
    pub anonymous_scopes: Arc<[String]>,
    /// Verification, uploads in parts and the sweeper.
    pub uploads: Uploads,
    /// Registered clients, refreshed in the background.
    pub clients: Arc<ClientCache>,
    /// Whether the database answered its last ping.
    pub database_health: Arc<crate::health::DatabaseHealth>,
    /// What this process's events relay is doing (disabled without a broker).
    pub relay: RelayHealth,
    /// Copies verified blobs to the other regions (woken by each verification).
    pub replicator: Replicator,
    /// The Taskcluster deployment that checks Hawk clients not registered here
    /// (`TOOLTOOL_TASKCLUSTER_ROOT_URL`).
    pub deployment: Option<Deployment>,
    /// This server's metrics, served at `/metrics`; the services and jobs count into it too.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        settings: Settings,
        db: Db,
        blobs: BlobStores,
        local: Option<Arc<LocalStore>>,
        tokens: Tokens,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let prefix: Arc<str> = settings.scope_prefix.as_str().into();
        let replicator = Replicator::new(db.clone(), blobs.clone(), &settings, metrics.clone());
        let uploads =
            Uploads::new(&settings, db.clone(), blobs.clone(), local.clone(), replicator.wake.clone(), metrics.clone());
        let anonymous_scopes =
            if settings.anonymous_public_download { vec![Scope::DownloadPublic.full(&prefix)] } else { Vec::new() }
                .into();
        let deployment = settings
            .taskcluster_root_url
            .as_deref()
            .map(|root| Deployment::new(root, settings.taskcluster_timeout, metrics.clone()))
            .transpose()?;
        Ok(Self {
            settings,
            db,
            blobs,
            local,
            tokens,
            scope_prefix: prefix,
            anonymous_scopes,
            uploads,
            clients: Default::default(),
            database_health: Default::default(),
            relay: RelayHealth::default(),
            replicator,
            deployment,
            metrics,
        })
    }
}

impl AppState {
    /// Whether `caller` may see internal files' metadata (names, sizes, digests, authors) on
    /// the search, batch and file routes: always with `TOOLTOOL_INTERNAL_METADATA=open`, else
    /// only with `download/internal`.
    pub fn sees_internal(&self, caller: &crate::http::Caller) -> bool {
        self.settings.internal_metadata == crate::settings::InternalMetadata::Open
            || caller.has(crate::auth::Scope::DownloadInternal)
    }

    /// Appends to the audit trail. A failure is logged (and so reported to Sentry) rather than
    /// failing a request whose change has already happened.
    pub async fn audit(&self, actor: &str, action: &str, target: &str, details: serde_json::Value) {
        self.db.audit_or_log(actor, action, target, details).await
    }
}
