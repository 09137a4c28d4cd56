//! The [`Caller`] extractor: no `Authorization` header is anonymous; a header that is present
//! but invalid is a 401, never silently anonymous.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::Scope;
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller (or the anonymous one) of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    id: Option<String>,
    scopes: Vec<String>,
    prefix: Arc<str>,
}

impl Caller {
    /// The caller id, `None` when anonymous.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The scopes the caller holds.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether the caller holds `scope` (wildcards included).
    pub fn has(&self, scope: Scope) -> bool {
        let required = scope.full(&self.prefix);
        self.scopes.iter().any(|g| super::grants(g, &required))
    }

    /// 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            tracing::debug!(caller = ?self.id, scope = scope.suffix(), "missing scope");
            Err(ApiError::forbidden())
        }
    }

    /// 401 for anonymous callers.
    pub fn require_authenticated(&self) -> Result<(), ApiError> {
        if self.id.is_some() { Ok(()) } else { Err(ApiError::unauthorized("This request needs credentials")) }
    }

    fn authenticate(req: &HttpRequest) -> Result<Self, ApiError> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| ApiError::internal("application state is not configured"))?;
        let prefix = state.scope_prefix.clone();
        let Some(header) = req.headers().get(AUTHORIZATION) else {
            return Ok(Self { id: None, scopes: state.anonymous_scopes.clone(), prefix });
        };
        let invalid = |why: &str| {
            tracing::debug!(reason = why, "refused credentials");
            ApiError::unauthorized("The credentials presented are not valid")
        };
        let header = header.to_str().map_err(|_| invalid("non-ASCII authorization header"))?;
        let (kind, rest) = header.split_once(' ').unwrap_or((header, ""));
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(invalid("unsupported authorization scheme"));
        }
        let claims = state.tokens.verify(rest.trim()).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self { id: Some(claims.sub), scopes: claims.scopes, prefix })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::authenticate(req))
    }
}
