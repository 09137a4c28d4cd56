//! The one API error type. Every error answer is the problem+json body of PROTOCOL.md; storage
//! and database failures collapse to an opaque 500 whose cause is logged (and so reported to
//! Sentry) once, never sent to the caller.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use tooltool_proto::{InvalidValue, Problem};

/// The detail of every 403, as the protocol fixes it.
pub const FORBIDDEN_DETAIL: &str = "You don't have the permission to access the requested resource. It is either read-protected or not readable by the server.";

/// An error answer: status, stable code, caller-safe detail.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// Any status with a code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), retry_after: None }
    }

    /// 400 with a detail.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 400 `Invalid sha512 digest`.
    pub fn invalid_digest() -> Self {
        Self::bad_request("invalid-digest", "Invalid sha512 digest")
    }

    /// 401: credentials were presented but are not valid.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403 with the protocol's fixed detail.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", FORBIDDEN_DETAIL)
    }

    /// 404 with a detail.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 409 with `X-Retry-After`.
    pub fn retry_later(detail: impl Into<String>, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..Self::new(StatusCode::CONFLICT, "not-ready", detail) }
    }

    /// 500: logs the cause here, once, and tells the caller nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "The server could not complete the request")
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        Problem::new(self.status.as_u16(), reason, &self.detail, self.code)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        if let Some(secs) = self.retry_after {
            res.insert_header(("X-Retry-After", secs.to_string()));
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        res.body(serde_json::to_vec(&self.problem()).expect("problem serializes"))
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        let code = match e {
            InvalidValue::Digest => "invalid-digest",
            InvalidValue::Visibility => "invalid-visibility",
            InvalidValue::Algorithm => "invalid-algorithm",
            InvalidValue::FileName(_) => "invalid-filename",
        };
        Self::bad_request(code, e.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Conflict(detail) => Self::bad_request("conflict", detail),
            e @ (crate::db::DbError::Other(_) | crate::db::DbError::FastRead(_)) => {
                crate::metrics::METRICS.backend_errors.with_label_values(&["database"]).inc();
                Self::internal(format_args!("database: {e}"))
            }
        }
    }
}

impl From<crate::blobs::StoreError> for ApiError {
    fn from(e: crate::blobs::StoreError) -> Self {
        crate::metrics::METRICS.backend_errors.with_label_values(&["blob_store"]).inc();
        Self::internal(format_args!("blob store: {e:#}"))
    }
}

/// Parses a JSON body, answering the protocol's 400 for anything malformed.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid-json", format!("Invalid JSON body: {e}")))
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
    fn internal_errors_hide_their_cause() {
        let p = ApiError::internal("relation \"files\" does not exist").problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("files"));
    }
}
