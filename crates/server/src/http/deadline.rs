//! The request deadline: a request not answered within `server.request_timeout_ms`
//! gets 503 and `Retry-After`, so a database that stops answering (a partition, a
//! black-holed proxy) never holds clients longer than that. The handler's future is
//! dropped; work it already handed to a blocking thread may still finish, as with
//! any timeout, which is why every write is one transaction.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

/// The outermost middleware: the request is not kept aside (a second handle on it
/// would stop routing from working), so a timeout answers through an error whose
/// response is ready-made, security headers included.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(deadline) = req
        .app_data::<web::Data<AppState>>()
        .map(|state| Duration::from_millis(state.config.server.request_timeout_ms))
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let path = req.path().to_owned();
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    match tokio::time::timeout(deadline, next.call(req)).await {
        Ok(answered) => answered.map(ServiceResponse::map_into_boxed_body),
        Err(_) => {
            tracing::error!(
                path,
                deadline_ms = deadline.as_millis() as u64,
                "request not answered in time; answered 503"
            );
            Err(InternalError::from_response("request deadline", unavailable(wants_html)).into())
        }
    }
}

/// A browser gets a readable page; an API or protocol client the OAuth error shape
/// (RFC 6749 §4.1.2.1 names `temporarily_unavailable`).
fn unavailable(html: bool) -> HttpResponse {
    let mut response = HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE);
    response
        .insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ));
    if html {
        response.content_type(ContentType::html()).body(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
             <title>Temporarily unavailable</title>\
             <h1>Temporarily unavailable</h1>\
             <p>We could not finish your request in time. Nothing you need to do has \
             been lost: please try again in a few seconds.</p></html>",
        )
    } else {
        response.json(json!({
            "error": "temporarily_unavailable",
            "error_description": "the server could not answer in time; retry shortly",
        }))
    }
}
