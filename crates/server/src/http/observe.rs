//! Per-request observation: a request id (taken from `X-Request-ID` when it is a
//! sane token, otherwise generated), a tracing span carrying it, an access log line
//! and the request metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use tracing::Instrument;

use crate::http::metrics::method_label;
use crate::state::AppState;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, for handlers that log or echo it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id this request was given (for the decision log and problem answers).
    pub fn of(req: &actix_web::HttpRequest) -> Option<String> {
        actix_web::HttpMessage::extensions(req)
            .get::<RequestId>()
            .map(|id| id.0.clone())
    }
}

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Probes, scrapes and static assets would drown the access log; they are logged
/// at debug.
fn is_quiet(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/theme.css" | "/favicon.ico"
    ) || path.starts_with("/static/")
        || path.ends_with("/theme.css")
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let method = method_label(req.method());
    let quiet = is_quiet(req.path());
    let span = tracing::info_span!("request", request_id = %request_id, method, path = %req.path());

    let result = next.call(req).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let _entered = span.enter();
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let route = response.request().match_pattern();
            let route = route.as_deref().unwrap_or("unmatched");
            if let Some(metrics) = &metrics {
                metrics.observe_request(method, route, status, seconds);
            }
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID.clone(), value);
            }
            // A tenth of a millisecond is all a reader of the log can use.
            let millis = (seconds * 10_000.0).round() / 10.0;
            if quiet {
                tracing::debug!(status, route, millis, "request");
            } else {
                tracing::info!(status, route, millis, "request");
            }
            Ok(response)
        }
        Err(error) => {
            if let Some(metrics) = &metrics {
                metrics.observe_request(method, "error", 500, seconds);
            }
            tracing::error!(%error, "request failed");
            Err(error)
        }
    }
}
