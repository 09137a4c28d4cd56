//! Wire types of the tooltool protocol (`shared/PROTOCOL.md`), defined once and shared by the
//! server (`tooltool-api`) and the client (`tooltool`).
//!
//! Everything that crosses the wire as JSON is a plain serde type here. Values with rules
//! (digests, visibilities, file names) are validated newtypes, so code that holds one never has
//! to check it again.

mod body;
pub mod canonical;
pub mod events;
pub mod json;
mod manifest;
mod problem;
mod values;

pub use body::{
    AuditEntry, AuditPage, Batch, BatchFile, FileBatch, FileInfo, PartUrl, PartsPlan, PatchOp, Permissions, ResultList,
    TokenRequest, TokenResponse, UploadFile, UploadRequest, VersionInfo, Wrapped,
};
pub use events::{Audience, Event, EventData, EventFile, EventPage, EventType};
pub use manifest::{Manifest, ManifestEntry, ManifestError};
pub use problem::Problem;
pub use values::{Algorithm, Digest, FileName, InvalidValue, PlainText, Visibility, escaped, is_unsafe_char, push_hex};

/// The scope prefix used when a deployment does not configure its own.
pub const DEFAULT_SCOPE_PREFIX: &str = "project:releng:services/tooltool/api";
