//! Signed metadata (TUF, issue 22): the primitives every role is written with. The canonical
//! JSON the signatures cover ([`canonical`]), and the Ed25519 keys that make them ([`keys`]),
//! in the forms python-tuf 7 (securesystemslib) and tough 0.24 read.
//!
//! The repositories themselves (roles in the database, the signer task, the routes) build on
//! these; see `../shared/research/TUF.md` for what the clients expect.

pub mod canonical;
pub mod keys;
