//! The [`Caller`] extractor. No `Authorization` header is anonymous; a header that is present
//! but invalid is a 401, never silently anonymous. Two schemes:
//!
//! - `Bearer <jwt>`: signature, algorithm, expiry, issuer, audience and key id checked; a token
//!   of a registered client must match its current, unrevoked credential generation.
//! - `Hawk …`: the original client's and Taskcluster's signed requests; see [`crate::auth::hawk`].
//!   Its `ext` may carry temporary credentials and `authorizedScopes` ([`crate::auth::taskcluster`]);
//!   a clientId not registered here is asked of the Taskcluster deployment when one is
//!   configured ([`crate::auth::deployment`]). A payload hash, when present, is checked against the
//!   body when the handler reads it ([`Caller::check_payload`]).

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::{Either, LocalBoxFuture, Ready, ready};

use crate::auth::deployment::{HawkQuestion, Verdict};
use crate::auth::taskcluster::{self, Ext, Issuer};
use crate::auth::{Scope, hawk};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::state::AppState;
use crate::time::now;

/// A Hawk payload hash still to be checked against the body.
#[derive(Debug, Clone)]
struct PayloadCheck {
    hash: String,
    content_type: String,
}

/// The authenticated caller (or the anonymous one) of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    id: Option<String>,
    /// The registered client that issued temporary credentials, when it is not `id` itself or
    /// the credentials carry a certificate.
    issuer: Option<String>,
    /// Shared, so that the anonymous caller of every request is made without allocating.
    scopes: Arc<[String]>,
    prefix: Arc<str>,
    expires: Option<u64>,
    generation: Option<i64>,
    payload: Option<PayloadCheck>,
}

fn invalid(why: &str) -> ApiError {
    tracing::debug!(reason = why, "refused credentials");
    ApiError::unauthorized("The credentials presented are not valid")
}

impl Caller {
    /// The caller id, `None` when anonymous.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The caller id, or `anonymous`.
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or("anonymous")
    }

    /// The client that issued the caller's temporary credentials.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// Who did it, as audit lines and event actors name it: the credential and, for temporary
    /// credentials, their issuer (`task-1 (issuer ci)`).
    pub fn actor(&self) -> std::borrow::Cow<'_, str> {
        match &self.issuer {
            Some(issuer) => format!("{} (issuer {issuer})", self.name()).into(),
            None => self.name().into(),
        }
    }

    /// The scopes the caller holds.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// When the caller's credentials expire (unix seconds).
    pub fn expires(&self) -> Option<u64> {
        self.expires
    }

    /// The credential generation of a registered client.
    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// The scope prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the caller holds `scope` (wildcards included).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|g| scope.granted_by(g, &self.prefix))
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

    /// 403 unless the caller holds every one of `scopes`, with a detail that names each one it
    /// lacks, in full (the download route keeps the original's exact 403 detail instead).
    pub fn require_naming(&self, scopes: impl IntoIterator<Item = Scope>) -> Result<(), ApiError> {
        let missing: Vec<String> = scopes.into_iter().filter(|s| !self.has(*s)).map(|s| s.full(&self.prefix)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        tracing::debug!(caller = ?self.id, scopes = ?missing, "missing scopes");
        Err(ApiError::new(
            crate::http::error::ErrorCode::Forbidden,
            format!("{} This request needs {}.", crate::http::error::FORBIDDEN_DETAIL, missing.join(" and ")),
        ))
    }

    /// 401 for anonymous callers.
    pub fn require_authenticated(&self) -> Result<(), ApiError> {
        if self.id.is_some() { Ok(()) } else { Err(ApiError::unauthorized("This request needs credentials")) }
    }

    /// 401 if a Hawk payload hash was given and does not match `body`.
    pub fn check_payload(&self, body: &[u8]) -> Result<(), ApiError> {
        match &self.payload {
            Some(p) if hawk::payload_hash(&p.content_type, body) != p.hash => {
                Err(invalid("Hawk payload hash mismatch"))
            }
            _ => Ok(()),
        }
    }

    /// The shared state (a 500 if the application was assembled without it).
    fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
        req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal("application state is not configured"))
    }

    /// The caller of a request without an `Authorization` header.
    fn anonymous(req: &HttpRequest) -> Result<Self, ApiError> {
        let state = Self::state(req)?;
        Ok(Self {
            id: None,
            issuer: None,
            scopes: state.anonymous_scopes.clone(),
            prefix: state.scope_prefix.clone(),
            expires: None,
            generation: None,
            payload: None,
        })
    }

    /// The caller of a request with an `Authorization` header.
    async fn authenticate(req: HttpRequest) -> Result<Self, ApiError> {
        let state = Self::state(&req)?.clone();
        let prefix = state.scope_prefix.clone();
        let Some(header) = req.headers().get(AUTHORIZATION) else { return Self::anonymous(&req) };
        if req.headers().get_all(AUTHORIZATION).nth(1).is_some() {
            // A proxy that reads another one of them would see another identity.
            return Err(invalid("several Authorization headers"));
        }
        let header = header.to_str().map_err(|_| invalid("non-ASCII authorization header"))?;
        let (kind, rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut caller = if kind.eq_ignore_ascii_case("bearer") {
            Self::bearer(&state, rest.trim()).await?
        } else if kind.eq_ignore_ascii_case("hawk") {
            Self::hawk(&state, &req, header, rest).await?
        } else {
            return Err(invalid("unsupported authorization scheme"));
        };
        caller.prefix = prefix;
        Ok(caller)
    }

    async fn bearer(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state.tokens.verify(token).map_err(|e| invalid(&e.to_string()))?;
        if let Some(generation) = claims.r#gen {
            let client = state.clients.lookup(&state.db, &state.tokens, &claims.sub).await?;
            let current = client.is_some_and(|c| c.record.revoked.is_none() && c.record.generation == generation);
            if !current {
                return Err(invalid("revoked or rotated client credentials"));
            }
        }
        Ok(Self {
            id: Some(claims.sub),
            issuer: None,
            scopes: claims.scopes.into(),
            prefix: state.scope_prefix.clone(),
            expires: Some(claims.exp),
            generation: claims.r#gen,
            payload: None,
        })
    }

    async fn hawk(state: &AppState, req: &HttpRequest, header: &str, attrs: &str) -> Result<Self, ApiError> {
        let h = hawk::parse(attrs).map_err(invalid)?;
        let ext = h.ext.as_deref().map(Ext::parse).transpose().map_err(invalid)?.unwrap_or_default();
        let (host, port) = mac_host(req, state.settings.trust_forwarded);
        let resource = req.uri().path_and_query().map_or(req.path(), |pq| pq.as_str());
        let parts = hawk::RequestParts { method: req.method().as_str(), resource, host: &host, port };
        let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let issuer_id = ext.issuer(&h.id).map_err(invalid)?;
        let now = now();
        // The window of every Hawk request here, whoever checks the MAC: a Taskcluster
        // deployment allows 15 minutes and keeps no nonces, while ours are kept for this window.
        if (now - h.ts).abs() > hawk::SKEW {
            return Err(invalid("Hawk timestamp outside the window"));
        }
        let caller = match state.clients.lookup(&state.db, &state.tokens, issuer_id).await? {
            Some(client) => {
                let key = client.access_token.as_ref().ok_or_else(|| invalid("Hawk key signed by a removed key"))?;
                if !client.usable(now) {
                    return Err(invalid("revoked or expired client"));
                }
                let issuer = Issuer {
                    id: issuer_id,
                    access_token: key.expose(),
                    scopes: &client.record.scopes,
                    expires: client.record.expires,
                };
                let limited =
                    taskcluster::limit(&h.id, issuer, &ext, now * 1000, hawk::SKEW * 1000).map_err(invalid)?;
                if !hawk::verify(limited.key.as_bytes(), &h, &parts) {
                    return Err(invalid("Hawk MAC mismatch or timestamp outside the window"));
                }
                let temporary = issuer_id != h.id || ext.has_certificate();
                Self {
                    id: Some(h.id.clone()),
                    issuer: temporary.then(|| issuer_id.to_owned()),
                    scopes: limited.scopes.into(),
                    prefix: state.scope_prefix.clone(),
                    expires: Some(limited.expires.max(0) as u64),
                    generation: Some(client.record.generation),
                    payload: h.hash.clone().map(|hash| PayloadCheck { hash, content_type: content_type.to_owned() }),
                }
            }
            None => {
                let Some(deployment) = &state.deployment else { return Err(invalid("unknown Hawk id")) };
                let question = HawkQuestion {
                    method: req.method().as_str().to_lowercase(),
                    resource,
                    host: &host,
                    port,
                    authorization: header,
                };
                match deployment.authenticate(&question).await {
                    Ok(Verdict::Success { client_id, .. })
                        if state.clients.lookup(&state.db, &state.tokens, &client_id).await?.is_some() =>
                    {
                        // A name registered here is ours: the deployment's client must not pass
                        // for it in authors, audit lines and events.
                        return Err(invalid("the deployment answered for a client registered here"));
                    }
                    Ok(Verdict::Success { hash: Some(answered), .. })
                        if h.hash.as_ref().is_some_and(|h| *h != answered) =>
                    {
                        return Err(invalid("the deployment answered another payload hash"));
                    }
                    Ok(Verdict::Success { client_id, scopes, hash }) => Self {
                        id: Some(client_id),
                        issuer: None,
                        scopes: scopes.into(),
                        prefix: state.scope_prefix.clone(),
                        expires: None,
                        generation: None,
                        // The header's own hash, whose MAC the deployment checked.
                        payload: h
                            .hash
                            .clone()
                            .or(hash)
                            .map(|hash| PayloadCheck { hash, content_type: content_type.to_owned() }),
                    },
                    Ok(Verdict::Failed(message)) => {
                        tracing::debug!(reason = %message, "the Taskcluster deployment refused the credentials");
                        return Err(invalid("refused by the Taskcluster deployment"));
                    }
                    Err(e) => {
                        return Err(ApiError::unavailable(
                            ErrorCode::IdentityUnavailable,
                            "The identity provider does not answer; try again shortly",
                            e,
                        ));
                    }
                }
            }
        };
        // Shared by every replica, so a replay to another one is refused too. Only requests
        // valid in every other way get here.
        if !state.db.claim_hawk_nonce(&h.id, &h.nonce, h.ts, now).await? {
            return Err(invalid("replayed Hawk nonce"));
        }
        Ok(caller)
    }
}

/// The host and port a Hawk MAC covers: the `Host` header's (or the HTTP/2 authority's), the
/// port defaulting by the connection's scheme. Only with `TOOLTOOL_TRUST_FORWARDED`, behind a
/// TLS-terminating load balancer, does `X-Forwarded-Port`, else the default port of the forwarded
/// scheme (`Forwarded` proto, `X-Forwarded-Proto`, as actix's `ConnectionInfo` reads them), give
/// the port. The host is never taken from `X-Forwarded-Host` or `Forwarded`: a header captured
/// for another host must not pass here.
fn mac_host(req: &HttpRequest, trust_forwarded: bool) -> (String, u16) {
    let own_scheme = if req.app_config().secure() { "https" } else { "http" };
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_else(|| req.app_config().host());
    let (host, port) = split_host(host, own_scheme);
    if !trust_forwarded {
        return (host, port);
    }
    let forwarded_port = req.headers().get("x-forwarded-port").and_then(|v| v.to_str().ok()?.trim().parse().ok());
    let forwarded_scheme = match req.connection_info().scheme() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let has_forwarded_scheme = req.headers().contains_key("x-forwarded-proto")
        || req.headers().contains_key(actix_web::http::header::FORWARDED);
    let port = forwarded_port.or(forwarded_scheme.filter(|_| has_forwarded_scheme)).unwrap_or(port);
    (host, port)
}

/// Splits a `Host` value into host and port, the port defaulting by scheme.
fn split_host(host: &str, scheme: &str) -> (String, u16) {
    let default = if scheme == "https" { 443 } else { 80 };
    let (name, port) = match host.rfind(']') {
        Some(i) => (host[..i].trim_start_matches('['), host[i + 1..].strip_prefix(':')),
        None => match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        },
    };
    (name.to_lowercase(), port.and_then(|p| p.parse().ok()).unwrap_or(default))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    /// Anonymous callers (every public download) are made at once, without a boxed future.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if req.headers().contains_key(AUTHORIZATION) {
            Either::Right(Box::pin(Self::authenticate(req.clone())))
        } else {
            Either::Left(ready(Self::anonymous(req)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn hosts_split_with_default_ports() {
        assert_eq!(split_host("Example.com", "https"), ("example.com".into(), 443));
        assert_eq!(split_host("example.com:8080", "https"), ("example.com".into(), 8080));
        assert_eq!(split_host("127.0.0.1", "http"), ("127.0.0.1".into(), 80));
        assert_eq!(split_host("[::1]:9000", "http"), ("::1".into(), 9000));
        assert_eq!(split_host("[::1]", "https"), ("::1".into(), 443));
    }
}
