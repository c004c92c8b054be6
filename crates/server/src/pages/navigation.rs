//! Where the pages send the browser next: the sign-in and second-factor pages with
//! a way back, and back only to places that are safe — an authorization request of
//! this tenant (whose client's origin the CSP then allows as a form target) or one
//! of the account pages. The sign-in, second-factor, passkey and authorization
//! pages all use it; it uses none of them.

use actix_web::HttpMessage;
use gatehouse_token_issuer::code_flow::AuthorizationRequest;

use crate::http::input;
use crate::http::security::FormTarget;
use crate::pages::context::PageContext;

/// The second-factor page, coming back to `return_to` (a local path) afterwards.
pub fn second_factor_url(ctx: &PageContext, return_to: Option<&str>) -> String {
    with_return(ctx, "/signin/second-factor", return_to)
}

/// Where these pages may send the browser afterwards: an authorization request of
/// this tenant, or one of the account pages. Never anywhere else.
pub(super) async fn return_to(ctx: &PageContext, requested: &str) -> Option<String> {
    if let Some(authorize) = safe_return_to(ctx, requested) {
        // The form here ends in a redirect to the client: CSP must allow that.
        permit_return_to_client(ctx, &authorize).await;
        return Some(authorize);
    }
    [ctx.path("/account"), ctx.path("/account/security")]
        .into_iter()
        .find(|page| page == requested)
}

pub(super) fn with_return(ctx: &PageContext, page: &str, return_to: Option<&str>) -> String {
    match return_to {
        Some(back) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", back)
                .finish();
            format!("{}?{query}", ctx.path(page))
        }
        None => ctx.path(page),
    }
}

pub(super) fn sign_in_url(ctx: &PageContext, return_to: Option<&str>) -> String {
    with_return(ctx, "/signin", return_to)
}

/// Lets this page's forms end in a redirect to the client: CSP `form-action` also
/// governs where a form submission is redirected (CSP 3 §6.4.1), so a sign-in or
/// consent form that leads back to the client needs the client's origin in it.
pub(super) fn permit_redirect_to(ctx: &PageContext, redirect_uri: &str) {
    if let Some(target) = FormTarget::origin_of(redirect_uri) {
        ctx.request.extensions_mut().insert(target);
    }
}

/// [`permit_redirect_to`] for a sign-in page that returns to an authorization
/// request: only once that request has been validated, so the origin is registered.
pub async fn permit_return_to_client(ctx: &PageContext, return_to: &str) {
    let Some((_, query)) = return_to.split_once('?') else {
        return;
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let request =
        AuthorizationRequest::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let validated =
        ctx.with_issuer(move |issuer, tenant| issuer.validate_authorization(tenant, &request));
    if let Ok(Ok(valid)) = validated.await {
        permit_redirect_to(ctx, &valid.redirect_uri);
    }
}

/// Where sign-in may send the browser afterwards: only back into this tenant's
/// authorization endpoint, never elsewhere (no open redirect), and only as a URL
/// that is a valid `Location` as it stands (visible ASCII) and whose request decodes
/// to clean text: a target that fails here would fail after the session exists.
pub fn safe_return_to(ctx: &PageContext, return_to: &str) -> Option<String> {
    let prefix = format!("{}?", ctx.path("/authorize"));
    let safe = return_to.strip_prefix(&prefix).is_some_and(|query| {
        return_to
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\')
            && input::check_query(query).is_ok()
    });
    if !safe && !return_to.is_empty() {
        tracing::info!(return_to = ?return_to, "return_to refused: not a clean authorization request of this tenant");
    }
    safe.then(|| return_to.to_owned())
}
