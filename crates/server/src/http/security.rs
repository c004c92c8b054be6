//! Browser security headers. Every response gets a fresh CSP nonce (pages put it on
//! the only inline elements they may have), `frame-ancestors 'none'`, no referrer to
//! other sites, no MIME sniffing, and HSTS when the public URL is https.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::RngCore;

use crate::state::AppState;

/// An extra origin this response's forms may post to: the client's redirect URI for
/// an OAuth `form_post` response. Anything that could break out of the header
/// (spaces, `;`, `,`, quotes) is refused.
#[derive(Clone, Debug)]
pub struct FormTarget(pub String);

impl FormTarget {
    /// The origin (scheme://host[:port]) of an absolute URL.
    pub fn origin_of(url: &str) -> Option<FormTarget> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let origin = format!("{scheme}://{authority}");
        let safe = !authority.is_empty()
            && origin
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'\'' | b'"'));
        safe.then_some(FormTarget(origin))
    }
}

/// The nonce of the current response's Content-Security-Policy.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

fn nonce() -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    STANDARD_NO_PAD.encode(bytes)
}

pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let nonce = nonce();
    req.extensions_mut().insert(CspNonce(nonce.clone()));
    let https = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.config.server.public_url().starts_with("https://"));
    let mut response = next.call(req).await?;
    let form_target = response
        .request()
        .extensions()
        .get::<FormTarget>()
        .map(|target| format!(" {}", target.0))
        .unwrap_or_default();
    let headers = response.headers_mut();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' https: data:; font-src 'self'; connect-src 'self'; form-action 'self'{form_target}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with no-referrer Chromium sends `Origin: null`
    // on same-origin form posts. Links carrying single-use tokens still leak nothing
    // to other sites.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    Ok(response)
}
