//! `POST /token` (derive a narrower, shorter-lived token) and `GET /__permissions__`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::read_json;
use crate::auth::{covers, full_scope};
use crate::http::Caller;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use crate::time::now;
use tooltool_proto::{Permissions, TokenRequest, TokenResponse};

/// Mints a token whose scopes are covered by the caller's and which expires before the
/// caller's own credentials do. It inherits the caller's credential generation, so revoking or
/// rotating the parent client kills it too.
#[utoipa::path(post, path = "/token", tag = "credentials", request_body = tooltool_proto::TokenRequest, responses((status = 200, description = "The derived token", body = tooltool_proto::TokenResponse)), security(("bearer" = [])))]
#[tracing::instrument(name = "derive_token", skip_all)]
pub async fn derive(
    state: web::Data<AppState>,
    caller: Result<Caller, ApiError>,
    http: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    caller.require_authenticated()?;
    if caller.issuer().is_some_and(|issuer| Some(issuer) != caller.id()) {
        // A derived token names its registered client, whose revocation must kill it; named
        // temporary credentials have none of their own.
        tracing::debug!(caller = caller.id(), "tokens are not derived from named temporary credentials");
        return Err(ApiError::forbidden());
    }
    let req: TokenRequest = read_json(&http, body, state.settings.max_body_bytes, &caller).await?;
    if req.scopes.is_empty() {
        return Err(ApiError::new(ErrorCode::NoScopes, "At least one scope must be asked for"));
    }
    let scopes: Vec<String> = req.scopes.iter().map(|s| full_scope(caller.prefix(), s)).collect();
    if let Some(wider) = scopes.iter().find(|s| !caller.scopes().iter().any(|g| covers(g, s))) {
        tracing::debug!(caller = caller.id(), scope = %wider, "derived scope not covered");
        return Err(ApiError::forbidden());
    }
    let now = now() as u64;
    let remaining = caller.expires().unwrap_or(0).saturating_sub(now);
    if req.expires_in == 0 || req.expires_in >= remaining {
        return Err(ApiError::new(
            ErrorCode::InvalidLifetime,
            format!(
                "expires_in must be between 1 and {} seconds: shorter than your own credentials",
                remaining.saturating_sub(1)
            ),
        ));
    }
    let mut claims = state.tokens.claims(caller.name(), &scopes, std::time::Duration::from_secs(req.expires_in));
    claims.r#gen = caller.generation();
    let expires = crate::time::rfc3339(claims.exp as i64);
    Ok(HttpResponse::Ok().json(TokenResponse { token: state.tokens.sign(&claims), scopes, expires }))
}

/// Who the caller is and what it holds.
#[utoipa::path(get, path = "/__permissions__", tag = "credentials", responses((status = 200, description = "The caller and its scopes", body = tooltool_proto::Permissions)), security((), ("bearer" = [])))]
pub async fn permissions(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(Permissions { client_id: caller.name().to_owned(), scopes: caller.scopes().to_vec() })
}
