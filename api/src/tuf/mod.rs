//! Signed metadata (TUF, issue 22): two repositories, `public` and `internal`, each listing the
//! verified files of its visibility as targets any standard TUF client (python-tuf's ngclient,
//! tough) verifies against a pinned root. `../shared/research/TUF.md` says what the clients
//! expect; docs/tuf.md how to run it.
//!
//! - Primitives: the canonical JSON the signatures cover ([`canonical`], in `tooltool-proto`,
//!   shared with the client), the Ed25519 keys that make them ([`keys`]), the roles of a
//!   repository with 256 hashed bins ([`roles`]), a root read and its thresholds checked
//!   ([`root`]).
//! - The repositories ([`repo`]): their roles' lifetimes, the online keys the server holds,
//!   bootstrap and root publication, and the embedded default's zero-configuration root.
//! - The signer ([`signer`]): one across replicas, it follows the events outbox and signs the
//!   bins that changed, a snapshot and a timestamp in one transaction (tables in
//!   `crate::db`'s `tuf` module; routes in `crate::routes`'s `tuf` module).
//! - What operators watch ([`status`]): versions, expiries, the signer's lag, for
//!   `/metrics` and `/__heartbeat__`.
//! - The offline root ceremony ([`ceremony`]): key generation, root init, sign, verify and
//!   rotate, on files, with no database and no network.

pub mod ceremony;
pub mod keys;
pub mod repo;
pub mod roles;
pub mod root;
pub mod signer;
pub mod status;

/// The canonical JSON the signatures cover: one encoder, in the wire crate, shared with the
/// client that verifies them.
pub use tooltool_proto::canonical;
