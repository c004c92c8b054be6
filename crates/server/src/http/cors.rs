//! Cross-origin access for browser apps (the Fetch standard's CORS protocol) on the
//! protocol endpoints a single-page app calls itself.
//!
//! - Discovery and the JWKS are public documents: any origin may read them
//!   (`Access-Control-Allow-Origin: *`, no credentials).
//! - The token, UserInfo and revocation endpoints answer only the web origins a
//!   client registered (`gatehouse clients create --cors-origin`): the origin of a
//!   request that names its client (the form's client, UserInfo's token) must be
//!   that client's; a preflight names no client, so its origin must be registered by
//!   some client of the tenant. Anything else gets no CORS headers, so the browser
//!   keeps the answer from the page.
//!
//! Cookies are never allowed cross-origin (no `Access-Control-Allow-Credentials`):
//! these endpoints authenticate by client credentials and bearer tokens only.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};

use crate::http::tenant::tenant_of;
use crate::state::AppState;

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The client a protocol request named, recorded by the handler so the CORS answer
/// can be the client's own.
#[derive(Debug, Clone)]
pub struct CorsClient(pub String);

fn origin_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        // An opaque origin (sandboxed frames, file: pages) can be registered by no one.
        .filter(|origin| !origin.is_empty() && *origin != "null")
        .map(str::to_owned)
}

/// Public documents (discovery, JWKS): readable from any origin.
pub async fn public(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if origin_of(req.headers()).is_none() {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    if req.method() == Method::OPTIONS {
        let mut response = HttpResponse::NoContent();
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
        return Ok(req.into_response(response.finish()));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(response)
}

/// The token, UserInfo and revocation endpoints: only registered origins.
pub async fn for_clients(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(origin) = origin_of(req.headers()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if req.method() == Method::OPTIONS {
        let methods = if req.path().ends_with("/userinfo") {
            "GET, POST"
        } else {
            "POST"
        };
        let allowed = allowed_for(req.request(), None, &origin).await;
        let response = if allowed {
            let mut response = HttpResponse::NoContent();
            response
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::VARY, "Origin"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Authorization, Content-Type",
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
            response.finish()
        } else {
            // No CORS headers: the browser refuses the real request.
            HttpResponse::build(StatusCode::FORBIDDEN)
                .insert_header((header::VARY, "Origin"))
                .finish()
        };
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    let client = response.request().extensions().get::<CorsClient>().cloned();
    let request = response.request().clone();
    let allowed = allowed_for(&request, client.as_ref().map(|c| c.0.as_str()), &origin).await;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed && let Ok(value) = HeaderValue::from_str(&origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        // A script may read why it was refused (RFC 6750 §3).
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate"),
        );
    }
    Ok(response)
}

/// Whether `origin` is registered (see the module comment); from memory when the
/// issuer has the answer, else on the blocking pool. A failure refuses.
async fn allowed_for(req: &actix_web::HttpRequest, client: Option<&str>, origin: &str) -> bool {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return false;
    };
    let Ok(tenant) = tenant_of(&state.tenants, req).await else {
        return false;
    };
    let tenant = tenant.tenant.id;
    match state.issuer.allows_origin(tenant, client, origin, false) {
        Ok(Some(answer)) => return answer,
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "CORS origin check failed");
            return false;
        }
    }
    let issuer = state.issuer.clone();
    let (client, origin) = (client.map(str::to_owned), origin.to_owned());
    match web::block(move || issuer.allows_origin(tenant, client.as_deref(), &origin, true)).await {
        Ok(Ok(Some(answer))) => answer,
        Ok(Err(error)) => {
            tracing::warn!(%error, "CORS origin check failed");
            false
        }
        _ => false,
    }
}
