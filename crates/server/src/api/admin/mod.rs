//! The admin REST API, `/admin/v1` under each tenant's issuer: an adapter over
//! `gatehouse-admin`, as the CLI is. It serves the tenant's own administrators:
//! the tenant, its users (list, show, create, update, disable, enable, reset,
//! sessions, export, delete), roles and groups and who has them, clients
//! (register, secret rotation, delete) and the audit log (query, NDJSON export).
//! An action that takes something away says why in the `Gatehouse-Reason`
//! header, which the audit record keeps.
//!
//! Callers are API clients with a client-credentials access token (a user's token
//! is refused) of this tenant's issuer, carrying the scope `admin` and the audience
//! `{issuer}/admin/v1` (so a token minted for another API cannot be replayed here).
//! A token of another tenant's issuer is refused like any invalid token: tenants
//! are administered through their own issuer. Every write is audited with the
//! calling client as the actor (`client:<client_id>`). Failures are RFC 9457
//! problem details naming the field at fault; request bodies with unknown members
//! are refused.
//!
//! The contract is an OpenAPI 3.1 document generated from these handlers and
//! types ([`openapi`]), served at `/admin/v1/openapi.json`.
//!
//! Not yet (issue 15): platform administrators across tenants, the roles
//! (helpdesk, auditor) decided by the PDP, the other resources.

mod audit;
mod clients;
mod connections;
mod directory;
mod governance;
mod openapi;
mod platform;
mod scopes;
mod themes;
mod users;
mod views;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::{Admin, AdminResult, AdminRole, Operator, Reason};
use gatehouse_core::ids::UserId;
use gatehouse_identity_store::StoreError;
use serde::Serialize;

use crate::api::problem::{admin_failure, invalid_field, problem};
use crate::http::answer::{answered, from_request_with};
use crate::http::bearer::json_answer;
use crate::http::tenant::ResolvedTenant;
use crate::state::AppState;

/// Where the API lives under an issuer; also the audience its tokens must name.
pub const PATH: &str = "/admin/v1";

/// Every route of the API with the operator action it takes (the operator
/// policies' schema, `consent/policies/operators.cedarschema`): one table, so no
/// route is served without a decision by the PDP.
macro_rules! admin_routes {
    ($($method:ident $path:literal => $handler:path, $action:literal;)*) => {
        /// Mounted at the root and under `/t/{tenant}`.
        pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
            cfg.service(
                web::scope(PATH)
                    .route("/openapi.json", web::get().to(openapi::document))
                    $(.route($path, web::$method().to($handler)))*
            );
        }

        /// `(method, path under PATH, action)` of every route that takes a token.
        const ROUTE_ACTIONS: &[(&str, &str, &str)] = &[$((stringify!($method), $path, $action)),*];
    };
}

admin_routes! {
    get "/tenant" => audit::show_tenant, "tenant.read";
    get "/users" => users::list_users, "users.read";
    post "/users" => users::create_user, "users.create";
    get "/users/{id}" => users::show_user, "users.read";
    delete "/users/{id}" => users::delete_user, "users.delete";
    patch "/users/{id}" => users::update_user, "users.update";
    post "/users/{id}/disable" => users::disable_user, "users.disable";
    post "/users/{id}/enable" => users::enable_user, "users.enable";
    post "/users/{id}/reset" => users::reset_user, "users.reset";
    get "/users/{id}/export" => users::export_user, "users.export";
    get "/users/{id}/consents" => users::list_consents, "users.consents.read";
    delete "/users/{id}/consents/{client_id}" => users::withdraw_app, "users.consents.withdraw";
    delete "/users/{id}/consents/{client_id}/{purpose}" => users::withdraw_purpose, "users.consents.withdraw";
    get "/users/{id}/audit" => users::user_audit, "users.audit.read";
    get "/users/{id}/identities" => connections::list_identities, "users.identities.read";
    delete "/users/{id}/identities/{identity}" => connections::remove_identity, "users.identities.write";
    get "/users/{id}/sessions" => users::list_sessions, "users.sessions.read";
    delete "/users/{id}/sessions" => users::end_sessions, "users.sessions.end";
    put "/users/{id}/roles/{role}" => directory::assign_role, "users.roles.write";
    delete "/users/{id}/roles/{role}" => directory::remove_role, "users.roles.write";
    put "/users/{id}/groups/{group}" => directory::add_to_group, "users.groups.write";
    delete "/users/{id}/groups/{group}" => directory::remove_from_group, "users.groups.write";
    get "/clients" => clients::list_clients, "clients.read";
    post "/clients" => clients::create_client, "clients.write";
    get "/clients/{client_id}" => clients::show_client, "clients.read";
    delete "/clients/{client_id}" => clients::delete_client, "clients.write";
    patch "/clients/{client_id}" => clients::update_client, "clients.write";
    post "/clients/{client_id}/secret" => clients::rotate_secret, "clients.write";
    get "/roles" => directory::list_roles, "roles.read";
    post "/roles" => directory::create_role, "roles.write";
    get "/groups" => directory::list_groups, "groups.read";
    post "/groups" => directory::create_group, "groups.write";
    get "/audit" => audit::audit_events, "audit.read";
    get "/theme" => themes::show_theme, "theme.read";
    put "/theme" => themes::save_theme, "theme.write";
    delete "/theme" => themes::remove_theme, "theme.write";
    get "/tenants" => platform::list_tenants, "tenants.read";
    post "/tenants" => platform::create_tenant, "tenants.write";
    get "/tenants/{slug}" => platform::show_tenant, "tenants.read";
    patch "/tenants/{slug}" => platform::update_tenant, "tenants.write";
    delete "/tenants/{slug}" => platform::delete_tenant, "tenants.delete";
    post "/tenants/{slug}/disable" => platform::disable_tenant, "tenants.write";
    post "/tenants/{slug}/enable" => platform::enable_tenant, "tenants.write";
    get "/keys" => governance::list_keys, "keys.read";
    post "/keys/rotate" => governance::rotate_keys, "keys.rotate";
    get "/policies" => governance::list_policy_versions, "policies.read";
    put "/policies" => governance::save_policies, "policies.write";
    post "/policies/test" => governance::test_policies, "policies.test";
    get "/decisions" => governance::list_decisions, "decisions.read";
    get "/scopes" => scopes::list_scopes, "scopes.read";
    put "/scopes/{scope}" => scopes::set_scope, "scopes.write";
    delete "/scopes/{scope}" => scopes::remove_scope, "scopes.write";
    get "/user-extension" => scopes::show_user_extension, "scopes.read";
    put "/user-extension" => scopes::save_user_extension, "scopes.write";
    delete "/user-extension" => scopes::remove_user_extension, "scopes.write";
    get "/connections" => connections::list_connections, "connections.read";
    post "/connections" => connections::create_connection, "connections.write";
    get "/connections/{slug}" => connections::show_connection, "connections.read";
    patch "/connections/{slug}" => connections::update_connection, "connections.write";
    delete "/connections/{slug}" => connections::delete_connection, "connections.write";
    post "/connections/{slug}/mapping/test" => connections::test_mapping, "connections.read";
    get "/purposes" => governance::list_purposes, "purposes.read";
    post "/purposes" => governance::define_purpose, "purposes.write";
    patch "/purposes/{slug}" => governance::update_purpose, "purposes.write";
}

fn route_action(req: &HttpRequest) -> Option<&'static str> {
    crate::api::operator::route_action(req, PATH, ROUTE_ACTIONS)
}

/// An authenticated admin API call: the tenant, who acts, and the admin layer to
/// act through.
struct Caller {
    state: web::Data<AppState>,
    tenant: ResolvedTenant,
    operator: Operator,
}

impl Caller {
    fn admin(&self) -> &Admin {
        &self.state.admin
    }

    fn slug(&self) -> &str {
        &self.tenant.tenant.slug
    }

    /// After a tenant change this node answered for: its own caches drop the tenant
    /// now, so the caller's next request sees the change (other nodes drop it when
    /// the `TenantChanged` event reaches them).
    fn tenant_changed(&self, tenant: gatehouse_core::ids::TenantId) {
        self.state.tenants.invalidate();
        self.state.pdp.invalidate(Some(tenant));
    }

    /// As [`Caller::tenant_changed`], for a change to a tenant other than the
    /// caller's own (the platform's tenant routes).
    fn tenant_changed_everywhere(&self) {
        self.state.tenants.invalidate();
        self.state.pdp.invalidate(None);
    }
}

from_request_with!(Caller, Caller::extract);

impl Caller {
    async fn extract(req: HttpRequest) -> Result<Caller, actix_web::Error> {
        let Some(action) = route_action(&req) else {
            // A route left out of the table: refused rather than served undecided.
            tracing::error!(path = req.path(), "admin route without an operator action");
            return Err(answered(problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route is not open to any role",
            )));
        };
        Caller::authenticate(req, action).await
    }

    /// The admin API's caller: see [`crate::api::operator::authorize`].
    async fn authenticate(req: HttpRequest, action: &str) -> Result<Caller, actix_web::Error> {
        let call = crate::api::operator::authorize(&req, PATH, &AdminRole::ADMIN_API, action)
            .await
            .map_err(|refused| answered(refused.into_problem()))?;
        spare_administrators(&req, &call).await?;
        Ok(Caller {
            operator: call.operator,
            state: call.state,
            tenant: call.tenant,
        })
    }
}

/// A change to a user (every route that names one and is not a read): when that
/// user administers Gatehouse, the PDP decides again with the target known, so the
/// shipped policies spare administrators from roles below tenant administrator
/// (`support-spares-administrators`). An id that names no user goes on to the
/// handler's 404.
async fn spare_administrators(
    req: &HttpRequest,
    call: &crate::api::operator::OperatorCall,
) -> Result<(), actix_web::Error> {
    if req.method() == actix_web::http::Method::GET {
        return Ok(());
    }
    let Some(user) = req.match_info().get("id").and_then(|id| id.parse().ok()) else {
        return Ok(());
    };
    let action = route_action(req).unwrap_or_default();
    let refused = |e: gatehouse_admin::AdminError| answered(admin_failure(&e));
    let administrator = call
        .state
        .admin
        .is_administrator(&call.tenant.tenant.slug, user)
        .await
        .map_err(refused)?;
    if administrator {
        call.authorize_also(req, action, Some(true))
            .await
            .map_err(refused)?;
    }
    Ok(())
}

/// A JSON body of `T`, read after the caller was authenticated (the handler parses
/// it, so an unauthenticated request is never told what was wrong with its body).
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, actix_web::Error> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // The path names the member at fault (an unknown one included); a missing
        // member is named by serde's message, in backticks, at its parent's path.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let member = match missing {
            Some(named) if path == "." => named.to_owned(),
            Some(named) => format!("{path}.{named}"),
            None if path != "." => path,
            None => "body".to_owned(),
        };
        answered(invalid_field(
            &member,
            &format!("malformed body: {message}"),
        ))
    })
}

/// `Some(value)` for a body member that is present, even as `null` (which clears
/// it): merge-patch bodies tell "absent" from "null".
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// The query string as `T`, read after the caller was authenticated.
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, actix_web::Error> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| answered(invalid_field("query", &e.to_string())))
}

/// The answer to an admin action: `ok` makes it from the result; a failure is
/// mapped once, by [`admin_failure`].
fn respond<T>(result: AdminResult<T>, ok: impl FnOnce(T) -> HttpResponse) -> HttpResponse {
    match result {
        Ok(value) => ok(value),
        Err(e) => admin_failure(&e),
    }
}

/// 200 with the result as its view `V`, or the failure's problem.
fn ok_as<V: Serialize, T: Into<V>>(result: AdminResult<T>) -> HttpResponse {
    respond(result, |value| ok(value.into()))
}

/// 200 with `view` as JSON.
fn ok(view: impl Serialize) -> HttpResponse {
    json(StatusCode::OK, view)
}

/// 201 with `view` as JSON.
fn created(view: impl Serialize) -> HttpResponse {
    json(StatusCode::CREATED, view)
}

fn json(status: StatusCode, view: impl Serialize) -> HttpResponse {
    match serde_json::to_value(view) {
        Ok(value) => json_answer(status, value),
        Err(e) => {
            tracing::error!(error = %e, "admin API answer not serialisable");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the request failed",
            )
        }
    }
}

/// 204: the thing is gone.
fn no_content() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `answer` with the header set, when `value` is a valid header value.
fn with_header(mut answer: HttpResponse, name: header::HeaderName, value: &str) -> HttpResponse {
    if let Ok(value) = header::HeaderValue::from_str(value) {
        answer.headers_mut().insert(name, value);
    }
    answer
}

/// 200 with `view` and its version as a strong entity tag (RFC 9110 §8.8.3).
fn tagged(view: impl Serialize, version: i64) -> HttpResponse {
    with_header(ok(view), header::ETAG, &format!("\"{version}\""))
}

/// 412: the thing changed since the caller read it.
fn stale(what: &str) -> HttpResponse {
    problem(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        &format!("the {what} changed since it was read; read it again"),
    )
}

/// The answer to a change made at the version the caller read: `answer` makes it
/// from the changed thing; 412 when it changed since; a failure's problem.
fn changed_at_version<T>(
    result: AdminResult<T>,
    what: &str,
    answer: impl FnOnce(T) -> HttpResponse,
) -> HttpResponse {
    match result {
        Err(e) if matches!(e.store_error(), Some(StoreError::StaleVersion { .. })) => stale(what),
        other => respond(other, answer),
    }
}

/// The version a change was made to: `If-Match` with the `ETag` of a GET. Without
/// it 428; a tag that names no version of the `what` is 412 (RFC 9110 §13.1.1).
fn if_match(req: &HttpRequest, what: &str) -> Result<i64, actix_web::Error> {
    let Some(tag) = req.headers().get(header::IF_MATCH) else {
        return Err(answered(problem(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            &format!("send If-Match with the ETag of the {what} you read"),
        )));
    };
    tag.to_str()
        .ok()
        .and_then(|tag| {
            tag.trim()
                .strip_prefix('"')?
                .strip_suffix('"')?
                .parse::<i64>()
                .ok()
        })
        .ok_or_else(|| answered(stale(what)))
}

/// The header an action that takes something away carries its reason in.
const REASON_HEADER: &str = "Gatehouse-Reason";

/// The reason header, for the contract.
#[derive(utoipa::IntoParams)]
#[into_params(names("Gatehouse-Reason"), parameter_in = Header)]
#[allow(dead_code)]
struct ReasonHeader(
    /// Why (the audit record keeps it); required, not blank.
    String,
);

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

/// A path segment by name (actix decodes it).
fn segment(req: &HttpRequest, name: &str) -> String {
    req.match_info().get(name).unwrap_or_default().to_owned()
}
