//! Request and response bodies of the routes in PROTOCOL.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Algorithm, Digest, FileName, Visibility};

/// `{"result": ...}`, the wrapper of `POST /upload` and the search answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrapped<T> {
    /// The wrapped value.
    pub result: T,
}

/// The answer of `GET /upload?q=` and `GET /file?q=`.
pub type ResultList<T> = Wrapped<Vec<T>>;

/// Body of `POST /upload`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRequest {
    /// Why these files are uploaded; must not be empty.
    pub message: String,
    /// The files, by name.
    pub files: BTreeMap<FileName, UploadFile>,
    /// Refused when present: the author is the authenticated caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<serde_json::Value>,
}

/// One file of an upload batch, as declared by the uploader.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadFile {
    /// Size in bytes.
    pub size: u64,
    /// The sha512 digest of the content.
    pub digest: Digest,
    /// Always `sha512`.
    pub algorithm: Algorithm,
    /// Who may download it.
    pub visibility: Visibility,
    /// The uploader can send the file in parts ([`PartsPlan`]); the project's client always
    /// says so, `tooltool.py` never does. Absent means `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parts: bool,
}

/// An upload batch, as the server records and returns it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The batch id.
    pub id: i64,
    /// Who uploaded it (the authenticated caller).
    pub author: String,
    /// The uploader's message.
    pub message: String,
    /// When, as RFC 3339 UTC (`2026-11-22T10:00:00Z`).
    pub uploaded: String,
    /// The files, by the name they had in this batch.
    pub files: BTreeMap<String, BatchFile>,
}

/// One file of a recorded batch.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFile {
    /// Size in bytes.
    pub size: u64,
    /// The sha512 digest.
    pub digest: Digest,
    /// Always `sha512`.
    pub algorithm: Algorithm,
    /// Who may download it.
    pub visibility: Visibility,
    /// Where to `PUT` the bytes; absent when the server already has a verified copy or
    /// hands out [`BatchFile::parts`] instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put_url: Option<String>,
    /// For a file declared with `parts: true` at or above the server's multipart threshold:
    /// the parts to send instead of one `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartsPlan>,
}

/// How a file goes up in parts: every part but the last is `part_size` bytes; part `n`
/// (from 1) holds the bytes from `(n - 1) * part_size`. `urls` holds the URLs of at most a
/// bounded batch of the parts storage does not have yet, lowest numbers first; when `missing`
/// is larger than `urls.len()`, `POST /upload/parts/sha512/<digest>` gives the next ones once
/// these are sent (and, at any time, fresh URLs for the parts still missing).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsPlan {
    /// The size of every part but the last.
    pub part_size: u64,
    /// How many parts the file has.
    pub count: u32,
    /// How many of them storage does not have yet.
    pub missing: u32,
    /// URLs for the first of the missing parts.
    pub urls: Vec<PartUrl>,
}

/// Where to `PUT` one part.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartUrl {
    /// The part number, from 1.
    pub number: u32,
    /// Its first byte in the file.
    pub offset: u64,
    /// Its size in bytes.
    pub size: u64,
    /// A short-lived URL that accepts a `PUT` of exactly these bytes (`Content-Type:
    /// application/octet-stream`) and answers 200.
    pub url: String,
}

/// A stored file: the answer of `GET /file/sha512/<digest>`, `PATCH` and upload completion.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// The sha512 digest.
    pub digest: Digest,
    /// Always `sha512`.
    pub algorithm: Algorithm,
    /// Who may download it.
    pub visibility: Visibility,
    /// Whether any verified stored copy exists.
    pub has_instances: bool,
    /// The regions that hold a verified copy.
    pub instances: Vec<String>,
    /// When each region's copy last had its bytes proven (hashed to the digest: at its
    /// upload or copy, then by each scrub), RFC 3339 UTC, by region. Absent from older servers.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub proven: std::collections::BTreeMap<String, String>,
    /// The regions whose copy was found missing or corrupt (the reason, `missing` or
    /// `corrupt`) and not repaired yet. With no instance left, the file answers 404 until it
    /// is uploaded again. Absent when none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lost: std::collections::BTreeMap<String, String>,
}

/// One operation of `PATCH /file/sha512/<digest>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PatchOp {
    /// Change who may download the file.
    SetVisibility {
        /// The new visibility.
        visibility: Visibility,
    },
    /// Remove every stored copy; the file record stays.
    DeleteInstances,
}

/// `GET /__version__`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Where the source lives.
    pub source: String,
    /// The crate version.
    pub version: String,
    /// The git commit it was built from, or `unknown`.
    pub commit: String,
    /// Build identifier (the target triple and profile).
    pub build: String,
}

/// Who the caller is and what it may do (`GET /__permissions__`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// The caller's id, or `anonymous`.
    pub client_id: String,
    /// The scopes the caller holds.
    pub scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_ops_use_the_op_tag() {
        let ops: Vec<PatchOp> =
            serde_json::from_str(r#"[{"op":"set_visibility","visibility":"public"},{"op":"delete_instances"}]"#)
                .unwrap();
        assert_eq!(ops, vec![PatchOp::SetVisibility { visibility: Visibility::Public }, PatchOp::DeleteInstances]);
        assert!(serde_json::from_str::<Vec<PatchOp>>(r#"[{"op":"explode"}]"#).is_err());
    }

    #[test]
    fn upload_request_refuses_a_bad_digest_and_a_negative_size() {
        let good = format!(
            r#"{{"message":"m","files":{{"a":{{"size":5368709120,"digest":"{}","algorithm":"sha512","visibility":"public"}}}}}}"#,
            "a".repeat(128)
        );
        let req: UploadRequest = serde_json::from_str(&good).unwrap();
        assert_eq!(req.files.values().next().unwrap().size, 5 * 1024 * 1024 * 1024);
        assert!(serde_json::from_str::<UploadRequest>(&good.replace("5368709120", "-1")).is_err());
        assert!(serde_json::from_str::<UploadRequest>(&good.replace(&"a".repeat(128), "abc")).is_err());
    }

    #[test]
    fn batch_file_omits_put_url_when_absent() {
        let f = BatchFile {
            size: 1,
            digest: Digest::parse(&"b".repeat(128)).unwrap(),
            algorithm: Algorithm::Sha512,
            visibility: Visibility::Public,
            put_url: None,
            parts: None,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert!(v.get("put_url").is_none());
    }
}

/// Body of `POST /token`: a derived token with a subset of the caller's scopes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The scopes wanted; each must be covered by the caller's own.
    pub scopes: Vec<String>,
    /// Lifetime in seconds; must end before the caller's own credentials do.
    pub expires_in: u64,
}

/// Answer of `POST /token`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub token: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it expires, RFC 3339 UTC.
    pub expires: String,
}

/// One audit-trail entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing id (the paging cursor).
    pub id: i64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who did it (a client id, `anonymous`, or `admin-cli:<user>`).
    pub actor: String,
    /// What: `client.created`, `batch.uploaded`, `upload.verified`, …
    pub action: String,
    /// On what: a client id, `batch:<id>`, a digest.
    pub target: String,
    /// Details of the action.
    pub details: serde_json::Value,
}

/// Answer of `GET /audit`: newest first; `next_before` pages further back.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The entries.
    pub result: Vec<AuditEntry>,
    /// Pass as `before=` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// One batch that carried a file, with the name the file had in it: an entry of
/// `GET /file/sha512/<digest>/batches`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBatch {
    /// The batch id.
    pub id: i64,
    /// Who uploaded the batch.
    pub author: String,
    /// The uploader's message.
    pub message: String,
    /// When, as RFC 3339 UTC.
    pub uploaded: String,
    /// The file's name in this batch.
    pub filename: String,
}
