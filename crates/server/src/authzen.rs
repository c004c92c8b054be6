//! OpenID AuthZEN Authorization API 1.0 over HTTPS: the Access Evaluation (§6) and
//! Access Evaluations (§7) endpoints and the PDP metadata (§9). Callers are policy
//! enforcement points holding a client-credentials access token with the scope
//! `authzen:evaluate`. The evaluation handlers do all their blocking work — tenant,
//! token (signature, expiry, revocation), scope, parsing, the `Pdp` — in one trip to
//! the blocking pool, and map the result.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use gatehouse_consent::ConsentError;
use gatehouse_consent::pdp::{EvaluationRequest, EvaluationsRequest, Pdp};
use gatehouse_core::ids::TenantId;
use serde_json::{Value, json};

use crate::bearer::json_error as error;
use crate::http::RequestId;
use crate::oauth::{issuer_of, resolve};
use crate::state::AppState;

/// The scope a PEP's access token must carry.
pub const SCOPE: &str = "authzen:evaluate";
const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const METADATA: &str = "/.well-known/authzen-configuration";

/// Metadata for a path-routed tenant, inserted after the host as RFC 8615 (and
/// AuthZEN §9.2) place it: `/.well-known/authzen-configuration/t/{tenant}`.
pub fn root_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/authzen-configuration/t/{tenant}",
        web::get().to(metadata),
    );
}

/// Mounted at the root and under `/t/{tenant}`.
pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(METADATA, web::get().to(metadata))
        .route(EVALUATION, web::post().to(evaluation))
        .route(EVALUATIONS, web::post().to(evaluations));
}

fn failure(error: &ConsentError) -> HttpResponse {
    match error {
        ConsentError::Invalid(message) => self::error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_request",
            message,
        ),
        other => {
            tracing::error!(error = %other, "policy evaluation failed");
            self::error(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the evaluation failed",
            )
        }
    }
}

async fn metadata(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match resolve(&state, &req).await {
        Ok(tenant) => {
            let pdp = issuer_of(&tenant);
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
                .json(json!({
                    "policy_decision_point": pdp,
                    "access_evaluation_endpoint": format!("{pdp}{EVALUATION}"),
                    "access_evaluations_endpoint": format!("{pdp}{EVALUATIONS}"),
                }))
        }
        Err(response) => response,
    }
}

fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|id| id.0.clone())
}

fn decided(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

fn unauthorized(challenge: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, challenge.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// How an evaluation request ended, from the blocking pool (where an `HttpResponse`
/// cannot be built: it is not `Send`).
enum Outcome {
    NoTenant,
    TenantFailed,
    NoToken,
    InvalidToken,
    TokenCheckFailed,
    InsufficientScope,
    Evaluated(Result<Value, ConsentError>),
}

/// `crate::bearer::require` followed by `evaluate`, in one `web::block` instead of
/// three (tenant, token, PDP): each hand-over to the blocking pool and back costs
/// ≈ 10–13 µs of CPU and two context switches (docs/benchmarks.md), against ≈ 50 µs
/// for a decision. The checks, their order and the answers are `require`'s — keep
/// them in step: 404 for an unknown tenant, 401 without a live token of this
/// tenant's issuer, 403 without the scope (RFC 6750 §3); only then is the body
/// parsed and evaluated.
async fn authorized_evaluation(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    evaluate: impl FnOnce(&Pdp, TenantId, &str) -> Result<Value, ConsentError> + Send + 'static,
) -> HttpResponse {
    let slug = req.match_info().get("tenant").map(str::to_owned);
    let host = req.connection_info().host().to_owned();
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
    let directory = state.tenants.clone();
    let issuer = state.issuer.clone();
    let pdp = state.pdp.clone();
    // The subject cache is fed by the event bus (idempotent; see `Pdp::watch`).
    pdp.watch(&state.events);
    let work = move || {
        let tenant = match directory.resolve(slug.as_deref(), &host) {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return Outcome::NoTenant,
            Err(_) => return Outcome::TenantFailed,
        };
        let Some(bearer) = bearer else {
            return Outcome::NoToken;
        };
        let id = tenant.tenant.id;
        let claims = match issuer.verify_bearer(id, &issuer_of(&tenant), &bearer) {
            Ok(Some(claims)) => claims,
            Ok(None) => return Outcome::InvalidToken,
            Err(_) => return Outcome::TokenCheckFailed,
        };
        if !claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .any(|s| s == SCOPE)
        {
            return Outcome::InsufficientScope;
        }
        Outcome::Evaluated(evaluate(&pdp, id, &claims.client_id))
    };
    match web::block(work).await {
        Ok(Outcome::Evaluated(Ok(body))) => decided(body),
        Ok(Outcome::Evaluated(Err(e))) => failure(&e),
        Ok(Outcome::NoTenant) => HttpResponse::NotFound().finish(),
        Ok(Outcome::NoToken) => unauthorized("Bearer"),
        Ok(Outcome::InvalidToken) => unauthorized(
            "Bearer error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"",
        ),
        Ok(Outcome::InsufficientScope) => HttpResponse::Forbidden()
            .insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer error=\"insufficient_scope\", scope=\"{SCOPE}\""),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": "insufficient_scope", "error_description": format!("the token lacks the scope {SCOPE}") })),
        Ok(Outcome::TokenCheckFailed) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be checked",
        ),
        Ok(Outcome::TenantFailed) | Err(_) => failure(&ConsentError::Internal("blocking pool".into())),
    }
}

async fn evaluation(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let request_id = request_id(&req);
    authorized_evaluation(&state, &req, move |pdp, tenant, caller| {
        let request = EvaluationRequest::from_json(&body)?;
        Ok(pdp
            .evaluate(tenant, caller, &request, request_id.as_deref())?
            .to_authzen())
    })
    .await
}

async fn evaluations(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let request_id = request_id(&req);
    authorized_evaluation(&state, &req, move |pdp, tenant, caller| {
        let batch = EvaluationsRequest::from_json(&body)?;
        Ok(pdp
            .evaluate_batch(tenant, caller, &batch, request_id.as_deref())?
            .to_authzen())
    })
    .await
}
