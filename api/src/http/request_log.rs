//! The request log: an id, a Sentry hub, the request metrics and the access line around every
//! request.

use std::sync::Arc;
use std::time::Instant;

use actix_web::Error;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use sentry::SentryFutureExt;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::telemetry::{self, access::AccessLine};

/// The header carrying the request id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id: the caller's `X-Request-Id` when it is short and plain, else a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        // 128 random bits from the thread's generator: a uuid v4 cost a getrandom system call
        // on every request.
        .unwrap_or_else(|| {
            let mut id = String::with_capacity(32);
            tooltool_proto::push_hex(&mut id, &rand::random::<u128>().to_be_bytes());
            id
        })
}

/// Per request, around `inner` (the rest of the service): an id (echoed in `X-Request-Id`) on
/// every log line of the request, a Sentry hub tagged with route and id, the request metrics, and
/// one summary line: method, path (no query), status, duration.
pub async fn log_request<B, F, Fut>(req: ServiceRequest, inner: F) -> Result<ServiceResponse<B>, Error>
where
    F: FnOnce(ServiceRequest) -> Fut,
    Fut: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    let start = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let route = route_of(&req);
    // The server's own registry (an `Arc` taken from the state, no allocation).
    let metrics = req.app_data::<actix_web::web::Data<AppState>>().expect("the server's state").metrics.clone();
    let hub = telemetry::sentry_enabled().then(|| {
        let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
        hub.configure_scope(|scope| {
            scope.set_tag("request_id", &id);
            scope.set_tag("route", &route);
        });
        hub
    });
    // The id lives in the task-local while the request runs, and is taken back afterwards.
    let mut call = std::pin::pin!(telemetry::in_request(id, inner(req)));
    let res = match hub {
        Some(hub) => call.as_mut().bind_hub(hub).await,
        // Without SENTRY_DSN there is no client, and nothing to tag.
        None => call.as_mut().await,
    };
    let id = call.as_mut().take_value().unwrap_or_default();
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let elapsed = start.elapsed();
    let m = &*metrics;
    let answered = match &res {
        Ok(r) => r.response().error(),
        Err(e) => Some(e),
    };
    if let Some(e) = answered.and_then(|e| e.as_error::<ApiError>()) {
        e.count_failure(m);
    }
    m.requests.with_label_values(&[&route, method.as_str(), status.as_str()]).inc();
    m.latency.with_label_values(&[&route]).observe(elapsed.as_secs_f64());
    let line = AccessLine { request_id: &id, method: method.as_str(), path: &path, status: status.as_u16(), elapsed };
    telemetry::write_access(&line);
    res.map(|mut r| {
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert(HeaderName::from_static(REQUEST_ID), v);
        }
        r
    })
}

/// The route pattern of a request, for metrics and Sentry: looked up in
/// [`crate::http::routes::ROUTE_TABLE`] segment by segment (the router's own lookup matches regular
/// expressions and allocates, on every call), else asked of the router (the admin page's routes).
fn route_of(req: &ServiceRequest) -> std::borrow::Cow<'static, str> {
    let path = req.path();
    let matches = |pattern: &str| {
        let mut want = pattern.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    };
    match crate::http::routes::ROUTE_TABLE.iter().find(|(pattern, _)| matches(pattern)) {
        Some((pattern, _)) => (*pattern).into(),
        None => req.match_pattern().unwrap_or_else(|| "unmatched".to_owned()).into(),
    }
}
