//! Bearer access tokens (RFC 6750) on Gatehouse's own APIs: the token is one this
//! tenant issued, live (not expired, its grant not revoked), and carries a scope.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_token_issuer::jwt::AccessTokenClaims;
use serde_json::json;

use crate::http::tenant::ResolvedTenant;
use crate::oauth::resolve;
use crate::state::AppState;

/// A JSON answer of an API endpoint; never cached (it may name the caller's data).
pub fn json_answer(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// `{"error", "error_description"}`, the shape OAuth and these APIs answer with.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_answer(
        status,
        json!({ "error": code, "error_description": message }),
    )
}

/// The access token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1;
/// the scheme is case-insensitive, RFC 9110 §11.1). The one reading of it for
/// UserInfo, the consent API and AuthZEN.
pub fn presented(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the token's `scope` names `scope`.
pub fn has_scope(claims: &AccessTokenClaims, scope: &str) -> bool {
    claims
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == scope)
}

/// Why a bearer token was not good enough, with its one answer (RFC 6750 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// No token: a bare challenge, no error code (§3.1).
    NoToken,
    /// Not a live token of this tenant's issuer.
    InvalidToken,
    /// Live, but without the scope the endpoint needs.
    InsufficientScope(&'a str),
}

impl Refusal<'_> {
    pub fn answer(self) -> HttpResponse {
        let challenge = |status: StatusCode, challenge: String| {
            let mut answer = HttpResponse::build(status);
            answer
                .insert_header((header::WWW_AUTHENTICATE, challenge))
                .insert_header((header::CACHE_CONTROL, "no-store"));
            answer
        };
        match self {
            Refusal::NoToken => challenge(StatusCode::UNAUTHORIZED, "Bearer".into()).finish(),
            Refusal::InvalidToken => challenge(
                StatusCode::UNAUTHORIZED,
                "Bearer error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"".into(),
            )
            .finish(),
            Refusal::InsufficientScope(scope) => challenge(
                StatusCode::FORBIDDEN,
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
            )
            .json(json!({
                "error": "insufficient_scope",
                "error_description": format!("the token lacks the scope {scope}"),
            })),
        }
    }
}

/// The tenant and the token's claims, or the 401 / 403 answer (RFC 6750 §3).
pub async fn require(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    scope: &str,
) -> Result<(ResolvedTenant, Arc<AccessTokenClaims>), HttpResponse> {
    require_any(state, req, &[scope]).await
}

/// As [`require`], for a token carrying at least one of `scopes` (the refusal
/// names the first).
pub async fn require_any(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    scopes: &[&str],
) -> Result<(ResolvedTenant, Arc<AccessTokenClaims>), HttpResponse> {
    let tenant = resolve(state, req).await?;
    let Some(bearer) = presented(req).map(str::to_owned) else {
        return Err(Refusal::NoToken.answer());
    };
    let issuer = state.issuer.clone();
    let url = tenant.issuer();
    let id = tenant.tenant.id;
    let claims = match web::block(move || issuer.verify_bearer(id, &url, &bearer)).await {
        Ok(Ok(Some(claims))) => claims,
        Ok(Ok(None)) => return Err(Refusal::InvalidToken.answer()),
        _ => {
            return Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be checked",
            ));
        }
    };
    if !scopes.iter().any(|scope| has_scope(&claims, scope)) {
        return Err(
            Refusal::InsufficientScope(scopes.first().copied().unwrap_or_default()).answer(),
        );
    }
    Ok((tenant, claims))
}
