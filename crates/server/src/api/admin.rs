//! The admin REST API, `/admin/v1` under each tenant's issuer: an adapter over
//! `gatehouse-admin`, as the CLI is. This first part serves the tenant's own
//! administrators: the tenant, its users (list, show, create, disable, enable,
//! reset, delete) and its audit log (query, NDJSON export). An action that takes
//! something away says why in the `Gatehouse-Reason` header, which the audit
//! record keeps.
//!
//! Callers are API clients with a client-credentials access token (a user's token
//! is refused) of this tenant's issuer, carrying the scope `admin` and the audience `{issuer}/admin/v1` (so a
//! token minted for another API cannot be replayed here). A token of another
//! tenant's issuer is refused like any invalid token: tenants are administered
//! through their own issuer. Every write is audited with the calling client as the
//! actor (`client:<client_id>`). Failures are RFC 9457 problem details naming the
//! field at fault; request bodies with unknown members are refused.
//!
//! Not yet (issue 15): platform administrators across tenants, the roles
//! (helpdesk, auditor) decided by the PDP, the other resources, ETags, OpenAPI.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use gatehouse_admin::{
    AdminError, AdminResult, AuditFilter, AuditQuery, AuthMethod, ClientKind, NewAccount,
    NewClient, Operator, Reason, UserChange, event_view,
};
use gatehouse_core::ids::UserId;
use gatehouse_identity_store::PageRequest;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::users::User;
use gatehouse_token_issuer::backchannel::Delivery;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::problem::{admin_failure, invalid_field, problem};
use crate::http::answer::{self, Extracting, answered};
use crate::http::bearer::{Refusal, json_answer};
use crate::http::tenant::ResolvedTenant;
use crate::state::AppState;

/// The scope an admin API token must carry.
pub const SCOPE: &str = "admin";
/// Where the API lives under an issuer; also the audience its tokens must name.
pub const PATH: &str = "/admin/v1";

/// Mounted at the root and under `/t/{tenant}`.
pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PATH)
            .route("/tenant", web::get().to(tenant))
            .route("/users", web::get().to(users))
            .route("/users", web::post().to(create_user))
            .route("/users/{id}", web::get().to(user))
            .route("/users/{id}", web::delete().to(delete_user))
            .route("/users/{id}", web::patch().to(update_user))
            .route("/users/{id}/disable", web::post().to(disable_user))
            .route("/users/{id}/enable", web::post().to(enable_user))
            .route("/users/{id}/reset", web::post().to(reset_user))
            .route("/users/{id}/export", web::get().to(export_user))
            .route("/users/{id}/sessions", web::get().to(user_sessions))
            .route("/users/{id}/sessions", web::delete().to(end_user_sessions))
            .route("/users/{id}/roles/{role}", web::put().to(assign_role))
            .route("/users/{id}/roles/{role}", web::delete().to(remove_role))
            .route("/users/{id}/groups/{group}", web::put().to(add_to_group))
            .route(
                "/users/{id}/groups/{group}",
                web::delete().to(remove_from_group),
            )
            .route("/clients", web::get().to(clients))
            .route("/clients", web::post().to(create_client))
            .route("/clients/{client_id}", web::get().to(client))
            .route("/clients/{client_id}", web::delete().to(delete_client))
            .route(
                "/clients/{client_id}/secret",
                web::post().to(rotate_client_secret),
            )
            .route("/roles", web::get().to(roles))
            .route("/roles", web::post().to(create_role))
            .route("/groups", web::get().to(groups))
            .route("/groups", web::post().to(create_group))
            .route("/audit", web::get().to(audit)),
    );
}

/// An authenticated admin API call: the tenant and who acts.
struct Caller {
    tenant: ResolvedTenant,
    operator: Operator,
}

impl actix_web::FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = answer::app_state(&req, || HttpResponse::InternalServerError().finish())?;
            let (tenant, claims) = crate::http::bearer::require(&state, &req, SCOPE)
                .await
                .map_err(answered)?;
            if !claims.aud.contains(&format!("{}{PATH}", tenant.issuer())) {
                return Err(answered(Refusal::InvalidToken.answer()));
            }
            // A user's token would let a client act with admin power on the word of
            // any user who consented; until administrators' roles are checked (the
            // console), only a client acting for itself may call.
            if claims.sub != claims.client_id {
                return Err(answered(problem(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    "the admin API takes client-credentials tokens only",
                )));
            }
            Ok(Caller {
                operator: Operator::api_client(&claims.client_id),
                tenant,
            })
        })
    }
}

/// A JSON body of `T`, read after the caller was authenticated (the handler parses
/// it, so an unauthenticated request is never told what was wrong with its body).
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, actix_web::Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let field = e.to_string();
        // serde names an unknown or missing member in backticks.
        let member = field.split('`').nth(1).unwrap_or("body").to_owned();
        answered(invalid_field(&member, &format!("malformed body: {e}")))
    })
}

fn user_json(user: &User) -> Value {
    json!({
        "id": user.id.to_string(),
        "user_name": user.data.user_name,
        "given_name": user.data.name.given_name,
        "family_name": user.data.name.family_name,
        "emails": user.data.emails.iter().map(|e| json!({
            "value": e.value,
            "primary": e.primary,
            "verified": e.verified,
        })).collect::<Vec<_>>(),
        "locale": user.data.locale,
        "timezone": user.data.timezone,
        "active": user.data.active,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "version": user.version,
    })
}

/// The answer to an admin action: `ok` makes it from the result; a failure is
/// mapped once, by [`admin_failure`].
fn respond<T>(result: AdminResult<T>, ok: impl FnOnce(T) -> HttpResponse) -> HttpResponse {
    match result {
        Ok(value) => ok(value),
        Err(e) => admin_failure(&e),
    }
}

/// The header an action that takes something away carries its reason in.
const REASON_HEADER: &str = "Gatehouse-Reason";

fn reason(req: &HttpRequest) -> Result<Reason, actix_web::Error> {
    let text = req
        .headers()
        .get(REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Reason::new(text).map_err(|_| {
        answered(invalid_field(
            REASON_HEADER,
            "this action needs a reason (the audit log records why)",
        ))
    })
}

/// The user the path names; an id that is not one is no user (404).
fn user_id(req: &HttpRequest) -> Result<UserId, actix_web::Error> {
    req.match_info()
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| answered(problem(StatusCode::NOT_FOUND, "not_found", "no such user")))
}

fn deliveries_json(deliveries: &[Delivery]) -> Value {
    json!(
        deliveries
            .iter()
            .map(|d| json!({ "client_id": d.client_id, "delivered": d.delivered }))
            .collect::<Vec<_>>()
    )
}

async fn tenant(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    respond(
        state.admin.tenant_view(&caller.tenant.tenant.slug).await,
        |view| {
            json_answer(
                StatusCode::OK,
                json!({
                    "id": view.tenant.id.to_string(),
                    "slug": view.tenant.slug,
                    "display_name": view.tenant.display_name,
                    "issuer": caller.tenant.issuer(),
                    "created_at": view.tenant.created_at,
                }),
            )
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default = "default_limit")]
    limit: u32,
    after: Option<String>,
}

fn default_limit() -> u32 {
    100
}

/// One page of the tenant's users, oldest first; `next_cursor` continues.
async fn users(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let query = web::Query::<PageQuery>::from_query(req.query_string())
        .map_err(|e| answered(invalid_field("query", &e.to_string())))?
        .into_inner();
    let page = PageRequest {
        after: query.after,
        limit: query.limit,
    };
    Ok(respond(
        state.admin.users(&caller.tenant.tenant.slug, page).await,
        |page| {
            json_answer(
                StatusCode::OK,
                json!({
                    "items": page.items.iter().map(user_json).collect::<Vec<_>>(),
                    "next_cursor": page.next_cursor,
                }),
            )
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    email: String,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    /// The caller vouches for the address; otherwise sign-in asks to verify it.
    #[serde(default)]
    verified: bool,
    /// Mail the user a link to choose their password (default); using it proves
    /// the address.
    #[serde(default = "yes")]
    invite: bool,
}

/// Creates an account without a password; by default the user is invited by mail
/// to choose one (`invitation_sent` says whether the mail went out).
async fn create_user(
    state: web::Data<AppState>,
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewUserBody = body(&bytes)?;
    let account = NewAccount {
        email: new.email,
        given_name: new.given_name,
        family_name: new.family_name,
        password: None,
        verified: new.verified,
        invite: None,
    };
    let created = state
        .admin
        .create_user(
            &caller.operator,
            &caller.tenant.tenant.slug,
            account,
            new.invite,
        )
        .await;
    Ok(match created {
        Ok((user, invitation_sent)) => {
            let mut body = user_json(&user);
            body["invitation_sent"] = json!(invitation_sent);
            let mut answer = json_answer(StatusCode::CREATED, body);
            if let Ok(location) = header::HeaderValue::from_str(&format!(
                "{}{PATH}/users/{}",
                caller.tenant.issuer(),
                user.id
            )) {
                answer.headers_mut().insert(header::LOCATION, location);
            }
            answer
        }
        Err(e) => admin_failure(&e),
    })
}

async fn user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    Ok(respond(
        state.admin.user(&caller.tenant.tenant.slug, id).await,
        |(_, user)| with_etag(json_answer(StatusCode::OK, user_json(&user)), &user),
    ))
}

/// The user's version as a strong entity tag (RFC 9110 §8.8.3).
fn with_etag(mut answer: HttpResponse, user: &User) -> HttpResponse {
    if let Ok(tag) = header::HeaderValue::from_str(&format!("\"{}\"", user.version)) {
        answer.headers_mut().insert(header::ETAG, tag);
    }
    answer
}

/// `Some(value)` for a member that is present, even as `null` (which clears it).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    #[serde(default, deserialize_with = "present")]
    given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    locale: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    timezone: Option<Option<String>>,
}

/// Changes profile fields (RFC 7396 merge-patch semantics for these members). The
/// request must say which version it read (`If-Match` with the `ETag` of a GET):
/// without it 428, for a version that is no longer current 412 — a concurrent
/// change is never overwritten.
async fn update_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let Some(if_match) = req.headers().get(header::IF_MATCH) else {
        return Ok(problem(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send If-Match with the ETag of the user you read",
        ));
    };
    let stale = || {
        problem(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the user changed since it was read; read it again",
        )
    };
    let Some(version) = if_match.to_str().ok().and_then(|tag| {
        tag.trim()
            .strip_prefix('"')?
            .strip_suffix('"')?
            .parse::<i64>()
            .ok()
    }) else {
        return Ok(stale());
    };
    let patch: UserPatch = body(&bytes)?;
    let change = UserChange {
        given_name: patch.given_name,
        family_name: patch.family_name,
        locale: patch.locale,
        timezone: patch.timezone,
    };
    let slug = &caller.tenant.tenant.slug;
    Ok(
        match state
            .admin
            .update_user(&caller.operator, slug, id, version, change)
            .await
        {
            Ok(user) => with_etag(json_answer(StatusCode::OK, user_json(&user)), &user),
            Err(AdminError::Store(StoreError::StaleVersion { .. })) => stale(),
            Err(e) => admin_failure(&e),
        },
    )
}

/// Deactivates the user: every session and grant ends at once, relying parties are
/// told (back-channel logout).
async fn disable_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .disable_user(&caller.operator, slug, id, &why)
            .await,
        |done| {
            json_answer(
                StatusCode::OK,
                json!({
                    "was_active": done.was_active,
                    "sessions_ended": done.sessions_ended,
                    "grants_revoked": done.grants_revoked,
                    "backchannel_logout": deliveries_json(&done.deliveries),
                }),
            )
        },
    ))
}

async fn enable_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .enable_user(&caller.operator, slug, id, &why)
            .await,
        |changed| json_answer(StatusCode::OK, json!({ "was_disabled": changed })),
    ))
}

/// The administrator-assisted recovery: the password and second factors go, every
/// session and grant ends, and the user is mailed a link to start again.
async fn reset_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .reset_user(&caller.operator, slug, id, &why)
            .await,
        |done| {
            json_answer(
                StatusCode::OK,
                json!({
                    "factors_removed": done.factors_removed,
                    "sessions_ended": done.sessions_ended,
                    "grants_revoked": done.grants_revoked,
                    "link_sent": done.link_sent,
                    "backchannel_logout": deliveries_json(&done.deliveries),
                }),
            )
        },
    ))
}

/// The user's live sessions.
async fn user_sessions(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state.admin.user_sessions(slug, id).await,
        |sessions| {
            json_answer(
                StatusCode::OK,
                json!({ "items": sessions.iter().map(|s| json!({
                "id": s.id.to_string(),
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "ip": s.ip,
                "user_agent": s.user_agent,
                "aal": s.aal,
                "authenticated_with": s.auth_methods,
            })).collect::<Vec<_>>() }),
            )
        },
    ))
}

/// Signs the user out everywhere (with a reason); relying parties are told.
async fn end_user_sessions(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .end_user_sessions(&caller.operator, slug, id, &why)
            .await,
        |(ended, deliveries)| {
            json_answer(
                StatusCode::OK,
                json!({
                    "sessions_ended": ended,
                    "backchannel_logout": deliveries_json(&deliveries),
                }),
            )
        },
    ))
}

/// Everything held about the user as one JSON document (a data-subject access or
/// portability request); the export is audited.
async fn export_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let slug = &caller.tenant.tenant.slug;
    Ok(
        match state.admin.export_user(&caller.operator, slug, id).await {
            Ok(document) => {
                let mut answer = json_answer(StatusCode::OK, document);
                if let Ok(value) = header::HeaderValue::from_str(&format!(
                    "attachment; filename=\"user-{id}.json\""
                )) {
                    answer
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, value);
                }
                answer
            }
            Err(e) => admin_failure(&e),
        },
    )
}

/// Deletes the user with what is theirs; the audit log keeps the deletion.
async fn delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .delete_user(&caller.operator, slug, id, &why)
            .await,
        |_| {
            HttpResponse::NoContent()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        },
    ))
}

fn client_json(client: &gatehouse_identity_store::clients::Client) -> Value {
    let d = &client.data;
    json!({
        "client_id": d.client_id,
        "name": d.name,
        "type": d.client_type,
        "auth_method": d.auth_method,
        "redirect_uris": d.redirect_uris,
        "post_logout_redirect_uris": d.post_logout_redirect_uris,
        "backchannel_logout_uri": d.backchannel_logout_uri,
        "cors_origins": d.allowed_origins,
        "grants": d.grant_types,
        "scopes": d.scopes,
        "audiences": d.audiences,
        "access_token_ttl_secs": d.access_token_ttl_secs,
        "id_token_alg": d.id_token_alg,
        "require_pkce": d.require_pkce,
        "require_par": d.require_par,
        "first_party": d.first_party,
        "created_at": client.created_at,
        "version": client.version,
    })
}

async fn clients(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    respond(
        state.admin.clients(&caller.tenant.tenant.slug).await,
        |clients| {
            json_answer(
                StatusCode::OK,
                json!({ "items": clients.iter().map(client_json).collect::<Vec<_>>() }),
            )
        },
    )
}

async fn client(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = segment(&req, "client_id");
    Ok(respond(
        state.admin.client(&caller.tenant.tenant.slug, &id).await,
        |client| json_answer(StatusCode::OK, client_json(&client)),
    ))
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum KindBody {
    Confidential,
    Public,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum AuthMethodBody {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

fn default_ttl() -> i64 {
    300
}

fn default_alg() -> String {
    "RS256".into()
}

fn yes() -> bool {
    true
}

/// A client registration, with the CLI's defaults (a confidential web app with the
/// code flow and refresh, `openid profile email`, OpenID Connect's RS256 ID tokens,
/// PKCE required, 300 s access tokens).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClientBody {
    name: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default = "default_kind")]
    kind: KindBody,
    #[serde(default)]
    auth_method: Option<AuthMethodBody>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default = "default_grants")]
    grants: Vec<String>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_ttl")]
    access_token_ttl_secs: i64,
    #[serde(default)]
    first_party: bool,
    #[serde(default)]
    require_par: bool,
    /// The client's public keys for private_key_jwt (a JWK Set).
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default = "default_alg")]
    id_token_alg: String,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default = "yes")]
    require_pkce: bool,
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

fn default_kind() -> KindBody {
    KindBody::Confidential
}

/// Registers a client; a generated secret is in this answer only (stored hashed).
async fn create_client(
    state: web::Data<AppState>,
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewClientBody = body(&bytes)?;
    let registration = NewClient {
        name: new.name,
        client_id: new.client_id,
        kind: match new.kind {
            KindBody::Confidential => ClientKind::Confidential,
            KindBody::Public => ClientKind::Public,
        },
        auth_method: new.auth_method.map(|method| match method {
            AuthMethodBody::ClientSecretBasic => AuthMethod::ClientSecretBasic,
            AuthMethodBody::ClientSecretPost => AuthMethod::ClientSecretPost,
            AuthMethodBody::PrivateKeyJwt => AuthMethod::PrivateKeyJwt,
            AuthMethodBody::None => AuthMethod::None,
        }),
        redirect_uris: new.redirect_uris,
        grants: new.grants,
        scopes: new.scopes,
        audiences: new.audiences,
        access_token_ttl_secs: new.access_token_ttl_secs,
        first_party: new.first_party,
        require_par: new.require_par,
        jwks: new.jwks.map(|set| set.to_string()),
        id_token_alg: new.id_token_alg,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        backchannel_logout_uri: new.backchannel_logout_uri,
        allowed_origins: new.cors_origins,
        require_pkce: new.require_pkce,
    };
    let slug = &caller.tenant.tenant.slug;
    Ok(
        match state
            .admin
            .create_client(&caller.operator, slug, registration)
            .await
        {
            Ok(created) => {
                let mut answer = client_json(&created.client);
                if let Some(secret) = &created.secret {
                    answer["client_secret"] = json!(secret.as_str());
                }
                json_answer(StatusCode::CREATED, answer)
            }
            Err(e) => admin_failure(&e),
        },
    )
}

/// A new secret for the client, in this answer only; the old one stops working.
async fn rotate_client_secret(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = segment(&req, "client_id");
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .rotate_client_secret(&caller.operator, slug, &id)
            .await,
        |secret| {
            json_answer(
                StatusCode::OK,
                json!({ "client_id": id, "client_secret": secret.as_str() }),
            )
        },
    ))
}

async fn delete_client(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = segment(&req, "client_id");
    Ok(respond(
        state
            .admin
            .delete_client(&caller.operator, &caller.tenant.tenant.slug, &id)
            .await,
        |()| {
            HttpResponse::NoContent()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        },
    ))
}

/// A path segment by name (actix decodes it).
fn segment(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_owned()
}

async fn roles(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    respond(
        state.admin.roles(&caller.tenant.tenant.slug).await,
        |roles| {
            json_answer(
                StatusCode::OK,
                json!({ "items": roles.iter().map(|r| json!({
                "id": r.id.to_string(),
                "name": r.name,
                "description": r.description,
            })).collect::<Vec<_>>() }),
            )
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoleBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

async fn create_role(
    state: web::Data<AppState>,
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewRoleBody = body(&bytes)?;
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .create_role(
                &caller.operator,
                slug,
                &new.name,
                new.description.as_deref(),
            )
            .await,
        |role| {
            json_answer(
                StatusCode::CREATED,
                json!({ "id": role.id.to_string(), "name": role.name, "description": role.description }),
            )
        },
    ))
}

/// Gives the user the role (idempotent: `changed` says whether it was new).
async fn assign_role(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, role) = (user_id(&req)?, segment(&req, "role"));
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .assign_role(&caller.operator, slug, id, &role)
            .await,
        |changed| json_answer(StatusCode::OK, json!({ "changed": changed })),
    ))
}

/// Takes the role away; grants whose tokens carried it are revoked and their
/// relying parties told.
async fn remove_role(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, role) = (user_id(&req)?, segment(&req, "role"));
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .remove_role(&caller.operator, slug, id, &role)
            .await,
        |done| {
            json_answer(
                StatusCode::OK,
                json!({
                    "changed": done.was_assigned,
                    "grants_revoked": done.grants_revoked,
                    "backchannel_logout": deliveries_json(&done.deliveries),
                }),
            )
        },
    ))
}

async fn groups(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    respond(
        state.admin.groups(&caller.tenant.tenant.slug).await,
        |groups| {
            json_answer(
                StatusCode::OK,
                json!({ "items": groups.iter().map(|g| json!({
                "id": g.id.to_string(),
                "display_name": g.display_name,
            })).collect::<Vec<_>>() }),
            )
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroupBody {
    display_name: String,
}

async fn create_group(
    state: web::Data<AppState>,
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewGroupBody = body(&bytes)?;
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .create_group(&caller.operator, slug, &new.display_name)
            .await,
        |group| {
            json_answer(
                StatusCode::CREATED,
                json!({ "id": group.id.to_string(), "display_name": group.display_name }),
            )
        },
    ))
}

async fn add_to_group(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, group) = (user_id(&req)?, segment(&req, "group"));
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .add_to_group(&caller.operator, slug, &group, id)
            .await,
        |changed| json_answer(StatusCode::OK, json!({ "changed": changed })),
    ))
}

async fn remove_from_group(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, group) = (user_id(&req)?, segment(&req, "group"));
    let slug = &caller.tenant.tenant.slug;
    Ok(respond(
        state
            .admin
            .remove_from_group(&caller.operator, slug, &group, id)
            .await,
        |changed| json_answer(StatusCode::OK, json!({ "changed": changed })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    #[serde(default = "default_limit")]
    limit: u32,
}

/// The tenant's audit events, oldest first, as JSON or — with
/// `Accept: application/x-ndjson` — one event a line, for export.
async fn audit(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let params = web::Query::<AuditParams>::from_query(req.query_string())
        .map_err(|e| answered(invalid_field("query", &e.to_string())))?
        .into_inner();
    let query = AuditQuery {
        filter: AuditFilter {
            actor: params.actor,
            action: params.action,
            target: params.target,
            since: params.since,
            until: params.until,
        },
        limit: params.limit as usize,
    };
    let events = match state
        .admin
        .audit_events(&caller.tenant.tenant.slug, query)
        .await
    {
        Ok(events) => events,
        Err(e) => return Ok(admin_failure(&e)),
    };
    let ndjson = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    if ndjson {
        let mut lines = String::new();
        for event in &events {
            lines.push_str(&event_view(event).to_string());
            lines.push('\n');
        }
        return Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/x-ndjson")
            .body(lines));
    }
    Ok(json_answer(
        StatusCode::OK,
        json!({ "items": events.iter().map(event_view).collect::<Vec<_>>() }),
    ))
}
