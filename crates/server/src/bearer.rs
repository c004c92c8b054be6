//! Bearer access tokens (RFC 6750) on Gatehouse's own APIs: the token is one this
//! tenant issued, live (not expired, its grant not revoked), and carries a scope.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_core::ids::TenantId;
use gatehouse_token_issuer::jwt::AccessTokenClaims;
use serde_json::json;

use crate::oauth::{issuer_of, resolve};
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

fn unauthorized(challenge: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, challenge.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The tenant and the token's claims, or the 401 / 403 answer (RFC 6750 §3).
pub async fn require(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    scope: &str,
) -> Result<(TenantId, Arc<AccessTokenClaims>), HttpResponse> {
    let tenant = resolve(state, req).await?;
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let Some(bearer) = bearer else {
        return Err(unauthorized("Bearer"));
    };
    let issuer = state.issuer.clone();
    let url = issuer_of(&tenant);
    let id = tenant.tenant.id;
    let claims = match web::block(move || issuer.verify_bearer(id, &url, &bearer)).await {
        Ok(Ok(Some(claims))) => claims,
        Ok(Ok(None)) => {
            return Err(unauthorized(
                "Bearer error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"",
            ));
        }
        _ => {
            return Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be checked",
            ));
        }
    };
    if !claims
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == scope)
    {
        return Err(HttpResponse::Forbidden()
            .insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": "insufficient_scope", "error_description": format!("the token lacks the scope {scope}") })));
    }
    Ok((id, claims))
}
