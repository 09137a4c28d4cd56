//! Every end-to-end behaviour test in one binary: one link instead of a dozen keeps a clean
//! build's disk use and time down. `logs.rs` stays apart because it installs a process-wide
//! log subscriber.

mod client_faults;
mod client_fetch;
mod client_manifest;
mod client_unpack;
mod client_upload;
mod credentials;
mod download;
mod events;
mod events_relay;
mod faults;
mod files;
mod hardening;
mod hostile;
mod movein;
mod ops;
mod parts;
mod propagation;
mod regions;
mod replicas;
mod scrub;
mod sha256;
mod staging;
mod taskcluster;
mod tuf;
mod ui;
mod upload;
