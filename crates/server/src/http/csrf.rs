//! CSRF protection for every state-changing form: a double-submit token. The browser
//! holds a random value in an HttpOnly cookie (`__Host-` prefixed on https, so no
//! sibling host can plant one); each form carries the same value in a hidden field;
//! a POST is accepted only when both are present and equal (compared in constant
//! time) and, when the browser sends an Origin header, it is our own origin.

use actix_web::HttpRequest;
use actix_web::cookie::Cookie;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::http::cookies::CookiePolicy;

/// The token for this request's forms, and the cookie to set if the browser had none.
#[derive(Debug)]
pub struct CsrfToken {
    pub value: String,
    pub set_cookie: Option<Cookie<'static>>,
}

pub fn token_for(req: &HttpRequest, policy: &CookiePolicy) -> CsrfToken {
    if let Some(existing) = req
        .cookie(&policy.csrf_name())
        .filter(|c| c.value().len() >= 32)
    {
        return CsrfToken {
            value: existing.value().to_owned(),
            set_cookie: None,
        };
    }
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let value = URL_SAFE_NO_PAD.encode(bytes);
    CsrfToken {
        set_cookie: Some(policy.build(policy.csrf_name(), value.clone())),
        value,
    }
}

/// Whether a state-changing request may proceed. `scheme` is the public URL's; the
/// origin must be this very host (host-routed tenants have their own).
pub fn verify(
    req: &HttpRequest,
    policy: &CookiePolicy,
    scheme: &str,
    submitted: Option<&str>,
) -> bool {
    // `null` (privacy modes, sandboxed frames) says nothing either way: the token decides.
    if let Some(origin) = req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null")
    {
        let own = format!("{scheme}://{}", req.connection_info().host());
        if origin.as_bytes() != own.as_bytes() {
            return false;
        }
    }
    let (Some(cookie), Some(submitted)) = (req.cookie(&policy.csrf_name()), submitted) else {
        return false;
    };
    let expected = cookie.value().as_bytes();
    expected.len() >= 32 && bool::from(expected.ct_eq(submitted.as_bytes()))
}
