//! OpenID AuthZEN Authorization API 1.0 over HTTPS: the Access Evaluation (§6) and
//! Access Evaluations (§7) endpoints and the PDP metadata (§9). Callers are policy
//! enforcement points holding a client-credentials access token with the scope
//! `authzen:evaluate`. Handlers parse, call the `Pdp` on the blocking pool (it reads
//! the store), and map the result.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use gatehouse_consent::ConsentError;
use gatehouse_consent::pdp::{EvaluationRequest, EvaluationsRequest};
use serde_json::json;

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

/// The tenant and the calling client's id, or the 401/403 answer (RFC 6750 §3).
async fn authorize(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<(gatehouse_core::ids::TenantId, String), HttpResponse> {
    let (tenant, claims) = crate::bearer::require(state, req, SCOPE).await?;
    Ok((tenant, claims.client_id))
}

fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|id| id.0.clone())
}

fn decided(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

async fn evaluation(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, caller) = match authorize(&state, &req).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let request = match EvaluationRequest::from_json(&body) {
        Ok(request) => request,
        Err(e) => return failure(&e),
    };
    let pdp = state.pdp.clone();
    let request_id = request_id(&req);
    match web::block(move || pdp.evaluate(tenant, &caller, &request, request_id.as_deref())).await {
        Ok(Ok(decision)) => decided(decision.to_authzen()),
        Ok(Err(e)) => failure(&e),
        Err(_) => failure(&ConsentError::Internal("blocking pool".into())),
    }
}

async fn evaluations(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, caller) = match authorize(&state, &req).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let batch = match EvaluationsRequest::from_json(&body) {
        Ok(batch) => batch,
        Err(e) => return failure(&e),
    };
    let pdp = state.pdp.clone();
    let request_id = request_id(&req);
    match web::block(move || pdp.evaluate_batch(tenant, &caller, &batch, request_id.as_deref()))
        .await
    {
        Ok(Ok(outcome)) => decided(outcome.to_authzen()),
        Ok(Err(e)) => failure(&e),
        Err(_) => failure(&ConsentError::Internal("blocking pool".into())),
    }
}
