//! What happens to an upload after `POST /upload` handed out its URLs: verification of the
//! staged bytes ([`verify`], behind `upload/complete`), uploads in parts ([`parts`]) and the
//! sweeper that removes staged uploads never completed ([`sweep`]).
//!
//! They work through [`Uploads`], which holds what they use and nothing else, and fail with
//! [`UploadError`]; the HTTP layer turns that into its answer.

pub mod parts;
pub mod sweep;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::blobs::{BlobStores, LocalStore, StoreError};
use crate::db::{Db, DbError};
use crate::settings::{PartSettings, Settings};
use verify::InFlight;

/// What verification, uploads in parts and the sweeper work with.
#[derive(Debug, Clone)]
pub struct Uploads {
    db: Db,
    blobs: BlobStores,
    /// The embedded store, when it is the one (the sweeper clears its incoming files).
    local: Option<Arc<LocalStore>>,
    /// Lifetime of upload URLs (`TOOLTOOL_UPLOAD_URL_TTL`).
    url_ttl: Duration,
    /// `TOOLTOOL_STAGING_GRACE`.
    staging_grace: Duration,
    /// `TOOLTOOL_VERIFY_WAIT`.
    verify_wait: Duration,
    parts: PartSettings,
    /// `TOOLTOOL_EVENTS_RETENTION`.
    events_retention: Duration,
    /// Whether a relay publishes the events (then only published ones are forgotten).
    events_relayed: bool,
    /// Verifications running in this process.
    pub verifications: InFlight,
    /// The replicator's wake-up, notified by each verification so its copies start at once.
    replicate: Arc<Notify>,
    /// The main runtime, where verifications run (they must outlive the request).
    runtime: tokio::runtime::Handle,
    /// Where verifications are counted.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Uploads {
    /// Uploads over these stores, with `settings`' limits; each verification notifies
    /// `replicate` and is counted in `metrics`. Runs its verifications on the current runtime.
    pub fn new(
        settings: &Settings,
        db: Db,
        blobs: BlobStores,
        local: Option<Arc<LocalStore>>,
        replicate: Arc<Notify>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            db,
            blobs,
            local,
            url_ttl: settings.upload_url_ttl,
            staging_grace: settings.staging_grace,
            verify_wait: settings.verify_wait,
            parts: settings.parts,
            events_retention: settings.events_retention,
            events_relayed: settings.amqp_url.is_some(),
            verifications: InFlight::default(),
            replicate,
            runtime: tokio::runtime::Handle::current(),
            metrics,
        }
    }
}

/// Why an upload step failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The metadata store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else the server could not do (a bug, or a task that died).
    #[error("{0}")]
    Internal(String),
}
