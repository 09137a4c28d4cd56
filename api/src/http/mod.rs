//! The HTTP layer (L3): what turns requests into calls on the layers below and their results
//! into answers. [`state::AppState`] is what every handler shares; [`error::ApiError`] is the
//! one error answer, with a `From` impl for each lower layer's error; [`Caller`] authenticates a
//! request; the request middleware is [`around_request`]; [`routes`] lists every route.

pub mod caller;
pub mod error;
pub mod gate;
pub mod openapi;
pub mod panics;
pub mod request_log;
pub mod routes;
pub mod state;
pub mod wire;

pub use caller::Caller;

/// What every request goes through: the request id, access line and metrics
/// ([`request_log::log_request`]) around the panic catcher ([`panics::catch`]) around the
/// database and timeout gate ([`gate::guard`]). One middleware layer, not one each: every
/// `from_fn` layer boxes two futures per request.
pub async fn around_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    request_log::log_request(req, |req| panics::catch(gate::guard(req, next))).await
}
