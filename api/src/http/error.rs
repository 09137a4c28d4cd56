//! The one API error type. Every error answer is the problem+json body of PROTOCOL.md; storage
//! and database failures collapse to an opaque 500 whose cause is logged (and so reported to
//! Sentry) once, never sent to the caller.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use tooltool_proto::{InvalidValue, Problem};

/// The detail of every 403, as the protocol fixes it.
pub const FORBIDDEN_DETAIL: &str = "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server.";

/// Declares the error vocabulary once: each stable code with its status. The table of
/// docs/errors.md lists the same codes (a test checks it).
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $status:ident, $code:literal; )*) => {
        /// The stable, machine-readable `code` of every error answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order declared.
            pub const ALL: &[ErrorCode] = &[$( ErrorCode::$variant ),*];

            /// The HTTP status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self { $( ErrorCode::$variant => StatusCode::$status, )* }
            }

            /// The kebab-case code sent as `code`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }
        }
    };
}

error_codes! {
    /// A digest that is not 128 lowercase hex characters.
    InvalidDigest = BAD_REQUEST, "invalid-digest";
    /// A visibility other than `public` or `internal`.
    InvalidVisibility = BAD_REQUEST, "invalid-visibility";
    /// An algorithm other than `sha512`.
    InvalidAlgorithm = BAD_REQUEST, "invalid-algorithm";
    /// A file name that is not plain: `/`, `\`, `:`, a control or bidirectional formatting
    /// character, `.`, `..`, or a Windows device name.
    InvalidFilename = BAD_REQUEST, "invalid-filename";
    /// A batch message with a control character (other than tab and line feed) or a
    /// bidirectional formatting character.
    InvalidMessage = BAD_REQUEST, "invalid-message";
    /// A size out of range.
    InvalidSize = BAD_REQUEST, "invalid-size";
    /// A malformed JSON body, or one that repeats a member name.
    InvalidJson = BAD_REQUEST, "invalid-json";
    /// A body that could not be read.
    InvalidBody = BAD_REQUEST, "invalid-body";
    /// A malformed query string.
    InvalidQuery = BAD_REQUEST, "invalid-query";
    /// A malformed path parameter.
    InvalidPath = BAD_REQUEST, "invalid-path";
    /// A region that is not configured.
    UnknownRegion = BAD_REQUEST, "unknown-region";
    /// An upload batch that gives an `author`.
    AuthorNotAllowed = BAD_REQUEST, "author-not-allowed";
    /// An upload batch with an empty message.
    EmptyMessage = BAD_REQUEST, "empty-message";
    /// An upload batch that names no file.
    NoFiles = BAD_REQUEST, "no-files";
    /// One digest declared twice in a batch with different sizes or visibilities.
    InconsistentBatch = BAD_REQUEST, "inconsistent-batch";
    /// A declaration that contradicts what is stored.
    Conflict = BAD_REQUEST, "conflict";
    /// Staged bytes that do not match their declaration (they were discarded).
    UploadMismatch = BAD_REQUEST, "upload-mismatch";
    /// A file too large for one `PUT`, declared by a client that cannot send parts.
    FileTooLarge = BAD_REQUEST, "file-too-large";
    /// An upload body cut short.
    UploadInterrupted = BAD_REQUEST, "upload-interrupted";
    /// A PATCH with no operation.
    NoOperations = BAD_REQUEST, "no-operations";
    /// A token request for no scope.
    NoScopes = BAD_REQUEST, "no-scopes";
    /// A token lifetime out of range.
    InvalidLifetime = BAD_REQUEST, "invalid-lifetime";
    /// Credentials missing where needed, or present and invalid.
    Unauthorized = UNAUTHORIZED, "unauthorized";
    /// A valid caller without the scope.
    Forbidden = FORBIDDEN, "forbidden";
    /// A signed URL that is forged or expired.
    InvalidSignature = FORBIDDEN, "invalid-signature";
    /// Nothing at this URL.
    NotFound = NOT_FOUND, "not-found";
    /// A method the route does not take.
    MethodNotAllowed = METHOD_NOT_ALLOWED, "method-not-allowed";
    /// Not uploaded or not verified yet: ask again after `X-Retry-After` seconds.
    NotReady = CONFLICT, "not-ready";
    /// A declaration removal for a file that has verified copies.
    HasInstances = CONFLICT, "has-instances";
    /// A PUT to an upload URL whose upload is already verified or has expired.
    UploadClosed = CONFLICT, "upload-closed";
    /// A body over the limit.
    BodyTooLarge = PAYLOAD_TOO_LARGE, "body-too-large";
    /// A JSON route sent another Content-Type.
    UnsupportedMediaType = UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type";
    /// Anything the server could not do; the cause is logged, never sent.
    InternalError = INTERNAL_SERVER_ERROR, "internal-error";
    /// The database does not answer (down, restarting, or too slow); retry after `Retry-After`.
    DatabaseUnavailable = SERVICE_UNAVAILABLE, "database-unavailable";
    /// The blob store does not answer; nothing was lost, retry after `Retry-After`.
    StorageUnavailable = SERVICE_UNAVAILABLE, "storage-unavailable";
    /// The Taskcluster deployment that checks this Hawk client does not answer; retry after
    /// `Retry-After`.
    IdentityUnavailable = SERVICE_UNAVAILABLE, "identity-unavailable";
    /// The request did not finish within `TOOLTOOL_REQUEST_TIMEOUT`.
    TimedOut = SERVICE_UNAVAILABLE, "timed-out";
    /// Every search slot is taken, or the search ran past `TOOLTOOL_SEARCH_TIMEOUT`; retry after
    /// `Retry-After`. Only searches are refused so.
    SearchBusy = SERVICE_UNAVAILABLE, "search-busy";
    /// The embedded store's disk is full; nothing partial was kept.
    InsufficientStorage = INSUFFICIENT_STORAGE, "insufficient-storage";
}

/// An error answer: a stable code (which fixes the status) and a caller-safe detail.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    retry_after: Option<u64>,
    /// The backend whose failure this answers, counted in `backend_errors_total` when the
    /// error is answered (by the request log, [`ApiError::count_failure`]), once.
    failed: Option<Backend>,
}

/// A backend whose failures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Database,
    BlobStore,
}

impl Backend {
    /// The `backend` label of `backend_errors_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::BlobStore => "blob_store",
        }
    }
}

impl ApiError {
    /// An error of this code with a detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), retry_after: None, failed: None }
    }

    /// Counts the backend failure this error answers, if any, in `m`'s `backend_errors_total`:
    /// done once per answer, by the request log, not where the error is made.
    pub fn count_failure(&self, m: &crate::metrics::Metrics) {
        if let Some(backend) = self.failed {
            m.backend_errors.with_label_values(&[backend.label()]).inc();
        }
    }

    /// This error, as the answer to a failure of `backend`.
    fn failed(self, backend: Backend) -> Self {
        Self { failed: Some(backend), ..self }
    }

    /// 401: credentials were presented but are not valid, or are needed.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    /// 403 with the protocol's fixed detail.
    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, FORBIDDEN_DETAIL)
    }

    /// 404 with a detail.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// 409 with `X-Retry-After`.
    pub fn retry_later(detail: impl Into<String>, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..Self::new(ErrorCode::NotReady, detail) }
    }

    /// 503 with `Retry-After`: a backend is away; the cause is logged, never sent.
    pub fn unavailable(code: ErrorCode, detail: &str, cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, code = code.as_str(), "backend unavailable");
        Self { retry_after: Some(1), ..Self::new(code, detail) }
    }

    /// 500: logs the cause here, once, and tells the caller nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::InternalError, "The server could not complete the request")
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let status = self.code.status();
        let reason = status.canonical_reason().unwrap_or("Error");
        Problem::new(status.as_u16(), reason, &self.detail, self.code.as_str())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code.status().as_u16(), self.code.as_str(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.code.status());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        if let Some(secs) = self.retry_after {
            res.insert_header(("X-Retry-After", secs.to_string()));
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.code == ErrorCode::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        res.body(serde_json::to_vec(&self.problem()).expect("problem serializes"))
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        let code = match e {
            InvalidValue::Digest => ErrorCode::InvalidDigest,
            InvalidValue::Visibility => ErrorCode::InvalidVisibility,
            InvalidValue::Algorithm => ErrorCode::InvalidAlgorithm,
            InvalidValue::FileName(_) => ErrorCode::InvalidFilename,
            InvalidValue::Text(_) => ErrorCode::InvalidMessage,
        };
        Self::new(code, e.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Conflict(detail) => Self::new(ErrorCode::Conflict, detail),
            crate::db::DbError::Unavailable(e) => {
                Self::unavailable(ErrorCode::DatabaseUnavailable, "The database is unavailable; try again shortly", e)
                    .failed(Backend::Database)
            }
            crate::db::DbError::Busy(why) => {
                // Debug, not warn: anonymous callers can cause it at will.
                tracing::debug!(why, "search refused");
                Self {
                    retry_after: Some(1),
                    ..Self::new(ErrorCode::SearchBusy, "Too many searches are running; try again shortly")
                }
            }
            e @ (crate::db::DbError::Other(_) | crate::db::DbError::FastRead(_)) => {
                Self::internal(format_args!("database: {e}")).failed(Backend::Database)
            }
        }
    }
}

impl From<crate::blobs::StoreError> for ApiError {
    fn from(e: crate::blobs::StoreError) -> Self {
        let answer = if e.is_unavailable() {
            Self::unavailable(
                ErrorCode::StorageUnavailable,
                "The blob store is unavailable; nothing was lost, try again shortly",
                format_args!("{e:#}"),
            )
        } else {
            Self::internal(format_args!("blob store: {e:#}"))
        };
        answer.failed(Backend::BlobStore)
    }
}

impl From<crate::uploads::UploadError> for ApiError {
    fn from(e: crate::uploads::UploadError) -> Self {
        match e {
            crate::uploads::UploadError::Db(e) => e.into(),
            crate::uploads::UploadError::Store(e) => e.into(),
            crate::uploads::UploadError::Internal(cause) => Self::internal(cause),
        }
    }
}

/// Parses a JSON body, answering the protocol's 400 for anything malformed and for an object
/// that repeats a member name.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    tooltool_proto::json::from_slice_strict(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("Invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn error_response_is_problem_json_with_retry_header() {
        let res = ApiError::retry_later("not yet", 3).error_response();
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert_eq!(res.headers().get("X-Retry-After").unwrap(), "3");
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), "application/problem+json");
        let body = res.into_body().try_into_bytes().unwrap();
        let p: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(p.title, "409 Conflict: not yet");
        assert_eq!(p.code.as_deref(), Some("not-ready"));
    }

    #[test]
    fn the_errors_doc_lists_every_code_with_its_status() {
        let doc = include_str!("../../../docs/errors.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(doc.contains(&row), "docs/errors.md lacks {row}");
        }
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn a_backend_failure_is_counted_once_by_its_backend_and_a_conflict_not_at_all() {
        let m = crate::metrics::Metrics::new();
        let counted = |backend| m.backend_errors.with_label_values(&[backend]).get();
        let store = ApiError::from(crate::blobs::StoreError::unavailable("put", "connection refused"));
        let db = ApiError::from(crate::db::DbError::Other(sqlx::Error::RowNotFound));
        assert_eq!(store.error_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(db.error_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!((counted("blob_store"), counted("database")), (0, 0), "rendering does not count");
        store.count_failure(&m);
        db.count_failure(&m);
        assert_eq!((counted("blob_store"), counted("database")), (1, 1));
        ApiError::from(crate::db::DbError::Conflict("taken".into())).count_failure(&m);
        assert_eq!(counted("database"), 1, "a conflict is the caller's, not a failure");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let p = ApiError::internal("relation \"files\" does not exist").problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("files"));
    }
}
