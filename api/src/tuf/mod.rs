//! Signed metadata (TUF, issue 22): the primitives every role is written with. The canonical
//! JSON the signatures cover ([`canonical`]), the Ed25519 keys that make them ([`keys`]), in
//! the forms python-tuf 7 (securesystemslib) and tough 0.24 read, and the roles of a
//! repository with 256 hashed bins ([`roles`]).
//!
//! Still to come on these: the roles in the database, the signer task that follows the events
//! outbox, and the `/tuf/<repo>/...` routes; see `../shared/research/TUF.md` for what the
//! clients expect.

pub mod canonical;
pub mod keys;
pub mod roles;
