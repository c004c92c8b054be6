//! The consent API for applications, acting for the signed-in user with the user's
//! access token (scope `consent`): what the user has agreed to with this
//! application, recording a consent given in the application's own UI, withdrawing
//! one, and the receipt. An application sees and changes only its own consents.
//!
//! - `GET  /consents/v1/me` → `{"client_id", "in_force": [...]}`
//! - `POST /consents/v1/me/grants` `{"purpose", "version", "expires_at"?}` → 201
//! - `POST /consents/v1/me/withdrawals` `{"purpose"}` → 200 (revokes the grants that
//!   held the purpose's scopes — possibly the one behind the calling token)
//! - `GET  /consents/v1/me/receipt` → the user's receipt, this application's part

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use gatehouse_consent::{Channel, ConsentError};
use gatehouse_core::ids::{TenantId, UserId};
use serde::Deserialize;
use serde_json::json;

use crate::api::problem::{consent_failure as failure, problem as error};
use crate::http::answer::{answered, app_state, from_request_with};
use crate::http::bearer::json_answer as answer;
use crate::state::AppState;

/// The scope an application's token needs for this API.
pub const SCOPE: &str = "consent";

pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/consents/v1/me", web::get().to(in_force))
        .route("/consents/v1/me/grants", web::post().to(grant))
        .route("/consents/v1/me/withdrawals", web::post().to(withdraw))
        .route("/consents/v1/me/receipt", web::get().to(receipt));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    purpose: String,
    version: i32,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    purpose: String,
}

/// The caller of the consent API: the tenant, the user the token is for and the
/// calling application, from a live user's token with the `consent` scope. As an
/// extractor, a request without one is answered (401/403) before any handler runs.
struct Caller {
    tenant: TenantId,
    user: UserId,
    client: String,
}

from_request_with!(Caller, Caller::extract);

impl Caller {
    async fn extract(req: HttpRequest) -> Result<Caller, actix_web::Error> {
        let state = app_state(&req, || HttpResponse::InternalServerError().finish())?;
        let (tenant, user, client) = caller(&state, &req).await.map_err(answered)?;
        Ok(Caller {
            tenant,
            user,
            client,
        })
    }
}

/// The tenant, the user the token is for and the calling application.
async fn caller(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<(TenantId, UserId, String), HttpResponse> {
    let (tenant, claims) = crate::http::bearer::require(state, req, SCOPE).await?;
    // A client-credentials token names the client, not a user.
    let user = claims
        .sub
        .parse::<UserId>()
        .ok()
        .filter(|_| claims.sub != claims.client_id)
        .ok_or_else(|| {
            error(
                StatusCode::FORBIDDEN,
                "invalid_token",
                "a user's access token is required",
            )
        })?;
    Ok((tenant.tenant.id, user, claims.client_id.clone()))
}

/// Runs consent-service work on the blocking pool; `done` makes the answer, and a
/// service error is mapped once, by [`failure`].
async fn run<T: Send + 'static>(
    state: &web::Data<AppState>,
    work: impl FnOnce(&gatehouse_consent::Consents) -> Result<T, ConsentError> + Send + 'static,
    done: impl FnOnce(T) -> HttpResponse,
) -> HttpResponse {
    let consents = state.consents.clone();
    match web::block(move || work(&consents)).await {
        Ok(Ok(value)) => done(value),
        Ok(Err(e)) => failure(&e),
        Err(_) => failure(&ConsentError::Internal("blocking pool".into())),
    }
}

/// The request body as JSON, parsed in the handler: after the token was checked
/// (an extractor would race the token check and could answer 400 before 401).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, actix_web::Error> {
    serde_json::from_slice(body).map_err(|e| {
        answered(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("malformed body: {e}"),
        ))
    })
}

async fn in_force(
    state: web::Data<AppState>,
    Caller {
        tenant,
        user,
        client,
    }: Caller,
) -> HttpResponse {
    run(
        &state,
        move |consents| consents.current(tenant, user),
        |all| {
            let mine: Vec<_> = all.into_iter().filter(|c| c.client_id == client).collect();
            answer(
                StatusCode::OK,
                json!({ "client_id": client, "in_force": mine }),
            )
        },
    )
    .await
}

async fn grant(
    state: web::Data<AppState>,
    Caller {
        tenant,
        user,
        client,
    }: Caller,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let body: GrantBody = parse(&body)?;
    Ok(run(
        &state,
        move |consents| {
            consents.grant(
                tenant,
                user,
                &client,
                &body.purpose,
                body.version,
                Channel::Api,
                body.expires_at,
            )
        },
        |event| answer(StatusCode::CREATED, json!(event)),
    )
    .await)
}

async fn withdraw(
    state: web::Data<AppState>,
    Caller {
        tenant,
        user,
        client,
    }: Caller,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let body: WithdrawBody = parse(&body)?;
    Ok(run(
        &state,
        move |consents| consents.withdraw(tenant, user, &client, &body.purpose, Channel::Api),
        |done| {
            answer(
                StatusCode::OK,
                json!({
                    "purpose": done.purpose,
                    "withdrawn": done.event.is_some(),
                    "grants_revoked": done.grants_revoked.len(),
                }),
            )
        },
    )
    .await)
}

async fn receipt(
    state: web::Data<AppState>,
    Caller {
        tenant,
        user,
        client,
    }: Caller,
) -> HttpResponse {
    run(
        &state,
        move |consents| consents.receipt(tenant, user),
        |mut receipt| {
            // Another application's consents are none of this one's business.
            receipt.in_force.retain(|c| c.client_id == client);
            receipt.history.retain(|e| e.client_id == client);
            answer(StatusCode::OK, json!(receipt))
        },
    )
    .await
}
