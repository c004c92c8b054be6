//! OpenID AuthZEN Authorization API 1.0 over HTTPS: the Access Evaluation (§6) and
//! Access Evaluations (§7) endpoints and the PDP metadata (§9). Callers are policy
//! enforcement points holding a client-credentials access token with the scope
//! `authzen:evaluate`. An evaluation whose tenant, token and subject are all in
//! memory (the usual case for a busy PEP) is decided on the HTTP worker without
//! touching the store; otherwise all its blocking work — tenant, token (signature,
//! expiry, revocation), scope, parsing, the `Pdp` — goes to the blocking pool in one
//! trip. Both paths make the same checks in the same order.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_consent::ConsentError;
use gatehouse_consent::pdp::{EvaluationRequest, EvaluationsRequest, Pdp};
use gatehouse_core::ids::TenantId;
use serde_json::{Value, json};

use crate::api::problem::{consent_failure as failure, problem as error};
use crate::http::RequestId;
use crate::http::bearer::{Refusal, has_scope};
use crate::oauth::resolve;
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
        .route(EVALUATION, web::post().to(evaluation::<EvaluationRequest>))
        .route(
            EVALUATIONS,
            web::post().to(evaluation::<EvaluationsRequest>),
        );
}

async fn metadata(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match resolve(&state, &req).await {
        Ok(tenant) => {
            let pdp = tenant.issuer();
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

fn decided(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// How an evaluation request ended (decided on the blocking pool, an
/// `HttpResponse` cannot be built there: it is not `Send`).
enum Outcome {
    NoTenant,
    TenantFailed,
    NoToken,
    InvalidToken,
    TokenCheckFailed,
    InsufficientScope,
    Evaluated(Result<Value, ConsentError>),
}

/// The whole request from memory: the tenant directory, the issuer's bearer cache
/// and the PDP's caches. `None` as soon as one of them would need the store.
fn from_memory(
    state: &AppState,
    slug: Option<&str>,
    host: &str,
    bearer: Option<&str>,
    evaluate: impl FnOnce(&Pdp, TenantId, &str) -> Option<Result<Value, ConsentError>>,
) -> Option<Outcome> {
    let Some(tenant) = state.tenants.resolve_cached(slug, host)? else {
        return Some(Outcome::NoTenant);
    };
    let Some(bearer) = bearer else {
        return Some(Outcome::NoToken);
    };
    let id = tenant.tenant.id;
    let claims = state.issuer.cached_bearer(id, &tenant.issuer(), bearer)?;
    if !has_scope(&claims, SCOPE) {
        return Some(Outcome::InsufficientScope);
    }
    evaluate(&state.pdp, id, &claims.client_id).map(Outcome::Evaluated)
}

/// `crate::http::bearer::require` followed by the evaluation: from memory when it can
/// be (`cached`), else in one `web::block` (`evaluate`) instead of three (tenant,
/// token, PDP): each hand-over to the blocking pool and back costs ≈ 10–13 µs of
/// CPU and two context switches (docs/benchmarks.md). The checks, their order and
/// the answers are `require`'s (both answer through `bearer::Refusal`): 404 for an unknown tenant, 401
/// without a live token of this tenant's issuer, 403 without the scope (RFC 6750
/// §3); only then is the body parsed and evaluated.
async fn authorized_evaluation(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    cached: impl FnOnce(&Pdp, TenantId, &str) -> Option<Result<Value, ConsentError>>,
    evaluate: impl FnOnce(&Pdp, TenantId, &str) -> Result<Value, ConsentError> + Send + 'static,
) -> HttpResponse {
    let slug = req.match_info().get("tenant");
    let host = req.connection_info().host().to_owned();
    let bearer = crate::http::bearer::presented(req);
    if let Some(outcome) = from_memory(state, slug, &host, bearer, cached) {
        state.metrics.pdp_answered(true);
        return respond(outcome);
    }
    state.metrics.pdp_answered(false);
    let slug = slug.map(str::to_owned);
    let bearer = bearer.map(str::to_owned);
    let directory = state.tenants.clone();
    let issuer = state.issuer.clone();
    let pdp = state.pdp.clone();
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
        let claims = match issuer.verify_bearer(id, &tenant.issuer(), &bearer) {
            Ok(Some(claims)) => claims,
            Ok(None) => return Outcome::InvalidToken,
            Err(_) => return Outcome::TokenCheckFailed,
        };
        if !has_scope(&claims, SCOPE) {
            return Outcome::InsufficientScope;
        }
        Outcome::Evaluated(evaluate(&pdp, id, &claims.client_id))
    };
    match web::block(work).await {
        Ok(outcome) => respond(outcome),
        Err(_) => respond(Outcome::TenantFailed),
    }
}

fn respond(outcome: Outcome) -> HttpResponse {
    match outcome {
        Outcome::Evaluated(Ok(body)) => decided(body),
        Outcome::Evaluated(Err(e)) => failure(&e),
        Outcome::NoTenant => HttpResponse::NotFound().finish(),
        Outcome::NoToken => Refusal::NoToken.answer(),
        Outcome::InvalidToken => Refusal::InvalidToken.answer(),
        Outcome::InsufficientScope => Refusal::InsufficientScope(SCOPE).answer(),
        Outcome::TokenCheckFailed => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be checked",
        ),
        Outcome::TenantFailed => failure(&ConsentError::Internal("blocking pool".into())),
    }
}

/// What differs between the two evaluation endpoints: how the body is read and
/// which of the PDP's entry points decides it.
trait Evaluable: Sized {
    fn parse(body: &[u8]) -> Result<Self, ConsentError>;
    /// The decision from memory, `None` when it needs the store.
    fn cached(
        &self,
        pdp: &Pdp,
        tenant: TenantId,
        caller: &str,
        request_id: Option<&str>,
    ) -> Option<Result<Value, ConsentError>>;
    fn evaluate(
        &self,
        pdp: &Pdp,
        tenant: TenantId,
        caller: &str,
        request_id: Option<&str>,
    ) -> Result<Value, ConsentError>;
}

/// The two requests differ only in the PDP entry points that decide them.
macro_rules! evaluable {
    ($request:ty, $cached:ident, $evaluate:ident) => {
        impl Evaluable for $request {
            fn parse(body: &[u8]) -> Result<Self, ConsentError> {
                <$request>::from_json(body)
            }

            fn cached(
                &self,
                pdp: &Pdp,
                tenant: TenantId,
                caller: &str,
                request_id: Option<&str>,
            ) -> Option<Result<Value, ConsentError>> {
                pdp.$cached(tenant, caller, self, request_id)
                    .map(|decided| decided.map(|answer| answer.to_authzen()))
            }

            fn evaluate(
                &self,
                pdp: &Pdp,
                tenant: TenantId,
                caller: &str,
                request_id: Option<&str>,
            ) -> Result<Value, ConsentError> {
                Ok(pdp
                    .$evaluate(tenant, caller, self, request_id)?
                    .to_authzen())
            }
        }
    };
}

evaluable!(EvaluationRequest, evaluate_cached, evaluate);
evaluable!(EvaluationsRequest, evaluate_batch_cached, evaluate_batch);

/// The Access Evaluation (`EvaluationRequest`) and Access Evaluations
/// (`EvaluationsRequest`) endpoints. The body is parsed only after the token checks
/// passed, on whichever path decides.
async fn evaluation<E: Evaluable>(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let request_id = RequestId::of(&req);
    let (id, bytes) = (request_id.clone(), body.clone());
    authorized_evaluation(
        &state,
        &req,
        |pdp, tenant, caller| match E::parse(&bytes) {
            Ok(request) => request.cached(pdp, tenant, caller, id.as_deref()),
            Err(error) => Some(Err(error)),
        },
        move |pdp, tenant, caller| {
            E::parse(&body)?.evaluate(pdp, tenant, caller, request_id.as_deref())
        },
    )
    .await
}
