//! The admin API's contract: an OpenAPI 3.1 document generated from the handlers'
//! `#[utoipa::path]` annotations and the request and answer types, served per
//! tenant at `/admin/v1/openapi.json` (its server and token URL are that tenant's
//! issuer). The answers every operation can give — a problem for bad input, the
//! bearer challenges, an unreachable database, an unknown thing in the path — are
//! added here once rather than on each handler.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::{Admin, AdminRole};
use utoipa::OpenApi;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ClientCredentials, Flow, OAuth2, Scopes, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Content, Header, Object, Ref, RefOr, Response, ResponseBuilder, Type};

use super::views::{BearerError, Problem};
use super::{
    PATH, ROUTE_ACTIONS, audit, clients, connections, directory, governance, json, platform,
    scopes, themes, users,
};
use crate::http::answer::answered;
use crate::oauth::resolve;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse admin API",
        description = "Operate one tenant: its users, roles and groups, clients, signing keys, \
            policies and decision log, consent purposes, scopes and their claims, and audit log. \
            Callers authenticate with a client-credentials access token of the tenant's issuer \
            for the audience `{issuer}/admin/v1`, carrying the scope of a role its client is \
            registered with: `admin` (tenant administrator), `admin:helpdesk` (helpdesk), \
            `admin:audit` (auditor) or `platform` (platform administrator, the platform's own \
            tenant only). Gatehouse's policy decision point decides each call by the role's \
            policies and logs the decision; each operation lists the role scopes it is open to \
            and names its action in `x-gatehouse-action`."
    ),
    paths(
        audit::show_tenant,
        users::list_users,
        users::create_user,
        users::show_user,
        users::update_user,
        users::delete_user,
        users::disable_user,
        users::enable_user,
        users::reset_user,
        users::list_sessions,
        users::end_sessions,
        users::export_user,
        users::list_consents,
        users::withdraw_app,
        users::withdraw_purpose,
        users::user_audit,
        connections::list_identities,
        connections::remove_identity,
        connections::list_connections,
        connections::create_connection,
        connections::show_connection,
        connections::update_connection,
        connections::delete_connection,
        connections::test_mapping,
        directory::list_roles,
        directory::create_role,
        directory::assign_role,
        directory::remove_role,
        directory::list_groups,
        directory::create_group,
        directory::add_to_group,
        directory::remove_from_group,
        clients::list_clients,
        clients::create_client,
        clients::show_client,
        clients::delete_client,
        clients::rotate_secret,
        clients::update_client,
        audit::audit_events,
        platform::list_tenants,
        platform::create_tenant,
        platform::show_tenant,
        platform::update_tenant,
        platform::delete_tenant,
        platform::disable_tenant,
        platform::enable_tenant,
        themes::show_theme,
        themes::save_theme,
        themes::remove_theme,
        governance::list_keys,
        governance::rotate_keys,
        governance::list_policy_versions,
        governance::save_policies,
        governance::test_policies,
        governance::list_decisions,
        governance::list_purposes,
        governance::define_purpose,
        governance::update_purpose,
        scopes::list_scopes,
        scopes::set_scope,
        scopes::remove_scope,
        scopes::show_user_extension,
        scopes::save_user_extension,
        scopes::remove_user_extension,
    ),
    components(schemas(Problem, BearerError))
)]
struct AdminApi;

/// The name of the security scheme every operation requires.
const SCHEME: &str = "admin_token";

/// The document for the tenant whose issuer is `issuer`; `admin` says which roles
/// each operation is open to.
pub(crate) fn openapi(issuer: &str, admin: &Admin) -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![Server::new(format!("{issuer}{PATH}"))]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::OAuth2(OAuth2::new([Flow::ClientCredentials(
            ClientCredentials::new(
                format!("{issuer}/oauth2/token"),
                Scopes::from_iter(
                    AdminRole::ADMIN_API.map(|role| (role.scope(), role_summary(role))),
                ),
            ),
        )])),
    );
    for (name, response) in common_responses() {
        components
            .responses
            .insert(name.to_owned(), response.into());
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let names_a_thing = path.contains('{');
        let under = path.strip_prefix(PATH).unwrap_or(path);
        for (method, operation) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ] {
            let Some(operation) = operation else { continue };
            add_common_responses(operation, names_a_thing);
            let action = ROUTE_ACTIONS
                .iter()
                .find(|(m, p, _)| *m == method && *p == under)
                .map(|(_, _, action)| *action);
            if let Some(action) = action {
                state_access(operation, action, admin);
            }
        }
    }
    doc
}

/// The scopes in the token endpoint's flow, one per role.
fn role_summary(role: AdminRole) -> &'static str {
    match role {
        AdminRole::PlatformAdministrator => {
            "platform administrator: create and operate tenants (the platform's own tenant only)"
        }
        AdminRole::TenantAdministrator => "tenant administrator: everything about the tenant",
        AdminRole::Helpdesk => {
            "helpdesk: read users; reset their factors, end their sessions, disable and enable them"
        }
        AdminRole::Auditor => "auditor: read everything, change nothing",
        AdminRole::Provisioner => "provisioner: SCIM's users and groups",
    }
}

/// The operation's action and the role scopes open to it (any one suffices: each
/// is its own security requirement), as the operator policies decide them.
fn state_access(operation: &mut Operation, action: &str, admin: &Admin) {
    operation.security = Some(
        admin
            .roles_permitted(action, &AdminRole::ADMIN_API)
            .into_iter()
            .map(|role| SecurityRequirement::new(SCHEME, [role.scope()]))
            .collect(),
    );
    operation
        .extensions
        .get_or_insert_with(Extensions::default)
        .insert("x-gatehouse-action".to_owned(), action.into());
}

/// `GET /admin/v1/openapi.json`: the contract, public like discovery (it names no
/// data of the tenant).
pub(super) async fn document(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let tenant = resolve(&state, &req).await.map_err(answered)?;
    Ok(json(
        StatusCode::OK,
        openapi(&tenant.issuer(), &state.admin),
    ))
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::api::problem::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

/// The answers any operation may give, by component name.
fn common_responses() -> Vec<(&'static str, Response)> {
    let challenge = Header::new(Object::with_type(Type::String));
    let mut unauthorized = ResponseBuilder::new()
        .description("No valid access token (RFC 6750 §3: see WWW-Authenticate)")
        .build();
    unauthorized
        .headers
        .insert("WWW-Authenticate".into(), challenge.clone().into());
    let mut forbidden = ResponseBuilder::new()
        .description(
            "The token carries no admin role's scope, or is a user's token \
            (`WWW-Authenticate` with `insufficient_scope`); or the policy decision point \
            refused the role this action (problem `forbidden` with `action`, the `reason` \
            code as in the decision log, and `acr_values` where a stronger sign-in would do)",
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("BearerError"))),
        )
        .content(
            crate::api::problem::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build();
    forbidden
        .headers
        .insert("WWW-Authenticate".into(), challenge.into());
    vec![
        (
            "BadRequest",
            problem_response("Invalid input; `field` names the member, parameter or header"),
        ),
        ("Unauthorized", unauthorized),
        ("Forbidden", forbidden),
        (
            "NotFound",
            problem_response("Nothing of this tenant has that name"),
        ),
        (
            "Unavailable",
            problem_response("The database could not be reached in time; retry"),
        ),
    ]
}

fn add_common_responses(operation: &mut Operation, names_a_thing: bool) {
    let mut add = |status: &str, name: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    };
    add("400", "BadRequest");
    add("401", "Unauthorized");
    add("403", "Forbidden");
    if names_a_thing {
        add("404", "NotFound");
    }
    add("503", "Unavailable");
}
