//! tooltool-api: a content-addressed artifact store that speaks the tooltool protocol.
//!
//! [`Application::build`] (in `startup.rs`) assembles the server from [`Settings`]: it binds its
//! listener (port 0 in tests), connects the metadata store and the blob store, and exposes the
//! bound port and a [`Application::run_until_stopped`] future.

pub mod admin;
pub mod auth;
pub mod blobs;
pub mod copies;
pub mod db;
pub mod health;
pub mod http;
pub mod import;
pub mod metrics;
pub mod pem;
pub mod private;
pub mod relay;
pub mod replication;
pub mod scrub;
pub mod settings;
mod startup;
pub mod telemetry;
pub mod time;
pub mod tuf;
pub mod uploads;

pub use settings::Settings;
pub use startup::{
    Application, SHUTDOWN_VERIFY_WAIT, build_stores, derive_key, load_secrets, open_db, open_stores, replicate_once,
    scrub_once, service_url, tokens,
};
