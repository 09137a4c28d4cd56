//! A panic in a request answers 500 problem+json, never a dropped connection. Actix does not
//! catch a handler's panic: the worker's task for that connection unwinds, the client gets no
//! answer, and no access line or metric records the request. [`catch`] runs the inner part of
//! the request middleware under `catch_unwind`, so the panic becomes the opaque 500 of
//! [`ApiError::internal`] (its message logged once, at ERROR), which the access line and the
//! metrics around it then record like any other answer.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::http::error::ApiError;

/// Runs `request`; a panic in it becomes a 500 `internal-error`.
pub async fn catch<T>(request: impl Future<Output = Result<T, actix_web::Error>>) -> Result<T, actix_web::Error> {
    // Unwind safety: a panicking request's own state is dropped with it; the shared state it
    // touches is behind locks and atomics, which stay consistent (a poisoned lock is handled
    // where it is taken).
    match AssertUnwindSafe(request).catch_unwind().await {
        Ok(res) => res,
        Err(payload) => Err(ApiError::internal(format_args!("a request panicked: {}", message(&*payload))).into()),
    }
}

/// The text of a panic payload (`panic!` with a literal or a format).
fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as atest;
    use actix_web::{App, HttpResponse, web};

    async fn panics() -> HttpResponse {
        let empty: Vec<u8> = Vec::new();
        // An out-of-bounds index: the kind of panic that reaches a handler unplanned.
        HttpResponse::Ok().body(vec![empty[empty.len()]])
    }

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_problem_json_and_the_next_request_is_served() {
        let app = atest::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(|req, next: actix_web::middleware::Next<_>| catch(next.call(req))))
                .route("/panic", web::get().to(panics))
                .route("/ok", web::get().to(|| async { HttpResponse::Ok().body("fine") })),
        )
        .await;
        // The middleware's error is what the server renders as the answer (as it does for
        // every `ApiError` a middleware returns).
        let Err(err) = atest::try_call_service(&app, atest::TestRequest::get().uri("/panic").to_request()).await else {
            panic!("the panic did not become an error answer");
        };
        let res = err.error_response();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers().get("content-type").unwrap(), "application/problem+json");
        let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["code"], "internal-error");
        assert_eq!(body["detail"], "The server could not complete the request", "the panic message is not sent");
        let res = atest::call_service(&app, atest::TestRequest::get().uri("/ok").to_request()).await;
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        assert_eq!(message(&"literal"), "literal");
        assert_eq!(message(&String::from("formatted 1")), "formatted 1");
        assert_eq!(message(&42u8), "(no message)");
    }
}
