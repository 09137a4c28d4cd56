//! Test harness: spawn the real server on port 0 against a fresh backend, and drive it through
//! the project's own client library and command line.
//!
//! Two backends, same suite ([`backend_tests!`]): the embedded default (SQLite + local blobs in
//! a temporary directory) and PostgreSQL + S3. The latter needs the services that
//! `scripts/test.sh` starts and announces through `TOOLTOOL_TEST_POSTGRES_URL`,
//! `TOOLTOOL_TEST_S3_ENDPOINT`, `TOOLTOOL_TEST_S3_ACCESS_KEY` and
//! `TOOLTOOL_TEST_S3_SECRET_KEY`; without them those tests fail loudly, they never skip.
//!
//! - [`app`]: the server under test ([`TestApp`], [`Backend`], [`backend_tests!`]).
//! - [`fixtures`]: test data, assertions, the command line in-process ([`tooltool_cli`]).
//! - [`proxy`]: a fault-injecting proxy for the client tests.
//! - [`services`]: backends a failure test owns and breaks (PostgreSQL, s3s-fs, a small disk, a
//!   TCP proxy that stops answering).
//! - [`regions`]: servers with two S3 regions, and regions a test stops and restarts.
//! - [`broker`]: the test RabbitMQ node: a tap on what the relay publishes, stop and start.

pub mod app;
pub mod broker;
pub mod fixtures;
pub mod proxy;
pub mod regions;
pub mod services;

pub use app::*;
pub use fixtures::*;

pub use tooltool;
pub use tooltool_api;
pub use tooltool_cli as cli;
pub use tooltool_proto as proto;
