//! The tooltool client library: talks to a tooltool server as `shared/PROTOCOL.md` describes.
//!
//! [`ApiClient`] wraps every route of the protocol. It sends `Authorization: Bearer <token>`
//! to the tooltool server only, never to the storage URLs the server hands out (download
//! redirects and upload `put_url`s), does not follow redirects on its own, and streams blobs
//! to and from disk in constant memory while hashing them.
//!
//! Errors ([`Error`]) always name the URL or file involved; URLs are shown without their query
//! string, so neither tokens nor presigned signatures end up in messages or logs.

// `Error::Api` carries the server's `Problem` inline, as the public API fixes it; errors are
// rare and never on a hot path, so the larger `Result` is the better trade than a boxed field.
#![allow(clippy::result_large_err)]

pub use tooltool_proto as proto;

pub mod api;
pub mod cli;
pub mod credentials;
pub mod error;
pub mod fetch;
pub mod hashing;
pub mod progress;
pub mod unpack;
pub mod upload;

pub use api::{ApiClient, Completion, Failure, Redirect};
pub use credentials::Credentials;
pub use error::Error;
