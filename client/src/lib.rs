//! The tooltool client library: talks to a tooltool server as `shared/PROTOCOL.md` describes,
//! and runs the client's workflows (fetch, upload) for the `tooltool` command and for anyone
//! else. It has no terminal UI: workflows report through [`progress::Progress`].
//!
//! [`ApiClient`] wraps every route of the protocol. It sends `Authorization: Bearer <token>`
//! to the tooltool server only, never to the storage URLs the server hands out (download
//! redirects and upload `put_url`s), and does not follow redirects on its own. Blobs move
//! through one engine, [`transfer`], which streams them to and from disk in constant memory
//! while hashing them, with one retry policy ([`retry`]).
//!
//! Modules import only downwards: `error` ← `api::response` ← `api` ← {`retry`, `tuf`} ←
//! `transfer` ← {`fetch`, `upload`, `parts`, `cache`, `unpack`} ← the `tooltool` command line
//! (`client/cli`). `fetch` checks files against signed metadata through [`tuf`].
//!
//! Errors ([`Error`]) always name the URL or file involved; URLs are shown without their query
//! string, so neither tokens nor presigned signatures end up in messages or logs.

// `Error::Api` carries the server's `Problem` inline, as the public API fixes it; errors are
// rare and never on a hot path, so the larger `Result` is the better trade than a boxed field.
#![allow(clippy::result_large_err)]

pub use tooltool_proto as proto;

pub mod api;
pub mod cache;
pub mod credentials;
pub mod error;
pub mod fetch;
mod files;
pub mod hashing;
pub mod index;
pub mod parts;
pub mod progress;
pub mod retry;
pub mod transfer;
pub mod tuf;
pub mod unpack;
pub mod upload;

#[cfg(test)]
mod test_server;

pub use api::{ApiClient, Completion, Failure, Redirect};
pub use credentials::Credentials;
pub use error::Error;
pub use retry::RetryPolicy;
pub use transfer::Servers;
