//! An operator's client at one of the operator APIs (the admin API, SCIM): a
//! client-credentials token of the tenant's issuer for that API's audience,
//! carrying the scope of a role its client is still registered with; then the PDP
//! decides, by the shipped operator policies, whether those roles may take the
//! action (the decision logged with its reason code).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::{AdminAction, AdminError, AdminRole, Operator};

use crate::api::problem::{admin_failure, problem};
use crate::http::RequestId;
use crate::http::answer;
use crate::http::bearer::{Refusal, has_scope, require_any};
use crate::http::tenant::ResolvedTenant;
use crate::state::AppState;

/// The operator action of the route `req` matched, from an API's table of
/// `(method, path under api_path, action)`; `None` for a route left out of it.
pub(crate) fn route_action(
    req: &HttpRequest,
    api_path: &str,
    table: &[(&str, &str, &'static str)],
) -> Option<&'static str> {
    let pattern = req.match_pattern()?;
    let under = &pattern[pattern.find(api_path)? + api_path.len()..];
    table
        .iter()
        .find(|(method, path, _)| {
            *path == under && req.method().as_str().eq_ignore_ascii_case(method)
        })
        .map(|(_, _, action)| *action)
}

/// An authenticated, authorized operator call.
pub(crate) struct OperatorCall {
    pub state: web::Data<AppState>,
    pub tenant: ResolvedTenant,
    pub operator: Operator,
    /// The roles the caller holds here.
    pub roles: Vec<AdminRole>,
    /// The roles the API takes.
    pub api_roles: &'static [AdminRole],
    pub platform_tenant: bool,
}

impl OperatorCall {
    /// A further decision for the same caller, without authenticating again:
    /// another action the request takes, or the same once its target user is known
    /// (`target_administrator`: whether that user administers Gatehouse).
    pub(crate) async fn authorize_also(
        &self,
        req: &HttpRequest,
        action: &str,
        target_administrator: Option<bool>,
    ) -> Result<(), AdminError> {
        let asked = AdminAction {
            name: action,
            tenant: &self.tenant.tenant,
            platform_tenant: self.platform_tenant,
            roles: self.api_roles,
            target_administrator,
        };
        self.state
            .admin
            .authorize(&self.operator, &self.roles, asked, RequestId::of(req))
            .await
    }
}

/// Why a call was refused: a bearer-level answer ready to send, or the admin
/// layer's refusal (the PDP's, or an unreachable store) for the API to word.
pub(crate) enum Refused {
    Answer(HttpResponse),
    Admin(AdminError),
}

impl Refused {
    /// The admin API's wording of the refusal (RFC 9457 problems).
    pub(crate) fn into_problem(self) -> HttpResponse {
        match self {
            Refused::Answer(answer) => answer,
            Refused::Admin(error) => admin_failure(&error),
        }
    }
}

/// Authenticates the caller of the API under `path` (its audience is the issuer
/// plus `path`) holding one of `roles`, and has the PDP decide `action`.
pub(crate) async fn authorize(
    req: &HttpRequest,
    path: &str,
    roles: &'static [AdminRole],
    action: &str,
) -> Result<OperatorCall, Refused> {
    let state = answer::app_state(req, || HttpResponse::InternalServerError().finish())
        .map_err(|_| Refused::Answer(HttpResponse::InternalServerError().finish()))?;
    let scopes: Vec<&str> = roles.iter().map(|role| role.scope()).collect();
    let (tenant, claims) = require_any(&state, req, &scopes)
        .await
        .map_err(Refused::Answer)?;
    let audience = format!("{}{path}", tenant.issuer());
    if !claims.aud.contains(&audience) {
        return Err(Refused::Answer(Refusal::InvalidToken.answer()));
    }
    // A user's token would let a client act with operator power on the word of any
    // user who consented; administrators at a console come with their session.
    if claims.sub != claims.client_id {
        return Err(Refused::Answer(problem(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "this API takes client-credentials tokens only",
        )));
    }
    // A token outlives its client's registration: a client deleted, or no longer
    // given the role's scope or this audience, acts no more, whatever its tokens
    // say.
    let registered = match state
        .admin
        .client(&tenant.tenant.slug, &claims.client_id)
        .await
    {
        Ok(client) => Some(client),
        Err(AdminError::NotFound(_)) => None,
        Err(e) => return Err(Refused::Admin(e)),
    };
    let platform_tenant = tenant.tenant.slug == state.config.bootstrap.tenant;
    let held: Vec<AdminRole> = registered
        .filter(|client| client.data.audiences.contains(&audience))
        .map(|client| {
            roles
                .iter()
                .copied()
                .filter(|role| {
                    let scope = role.scope();
                    has_scope(&claims, scope) && client.data.scopes.iter().any(|s| s == scope)
                })
                // Tenants are operated from the platform's own tenant only.
                .filter(|role| platform_tenant || *role != AdminRole::PlatformAdministrator)
                .collect()
        })
        .unwrap_or_default();
    if held.is_empty() {
        return Err(Refused::Answer(Refusal::InvalidToken.answer()));
    }
    let operator = if held.contains(&AdminRole::PlatformAdministrator) {
        Operator::platform_client(&claims.client_id)
    } else {
        Operator::api_client(&claims.client_id)
    };
    let asked = AdminAction {
        name: action,
        tenant: &tenant.tenant,
        platform_tenant,
        roles,
        target_administrator: None,
    };
    state
        .admin
        .authorize(&operator, &held, asked, RequestId::of(req))
        .await
        .map_err(Refused::Admin)?;
    Ok(OperatorCall {
        state,
        tenant,
        operator,
        roles: held,
        api_roles: roles,
        platform_tenant,
    })
}
