//! Who the caller is ([`Caller`], an extractor) and what it may do ([`Scope`]).
//!
//! Authentication happens in the extractor; authorization is one line in each handler:
//! `caller.require(Scope::Manage)?`.

mod caller;
pub mod client_cache;
pub mod deployment;
pub mod hawk;
mod scopes;
pub mod taskcluster;
pub mod token;

pub use caller::Caller;
pub use scopes::{Scope, covers, full_scope};
pub use token::{Claims, TokenError, Tokens};
