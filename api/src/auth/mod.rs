//! Credentials and what they grant: bearer tokens ([`Tokens`]), Hawk, Taskcluster credentials
//! and deployments, the registered clients' cache, and scopes ([`Scope`]). No HTTP here: the
//! `Caller` extractor that authenticates a request with these is the HTTP layer's
//! (`http::caller`); authorization is one line in each handler: `caller.require(Scope::Manage)?`.

pub mod client_cache;
pub mod deployment;
pub mod hawk;
mod scopes;
pub mod taskcluster;
pub mod token;

pub use scopes::{Scope, covers, full_scope};
pub use token::{Claims, TokenError, Tokens};
