//! The tenant's scopes and the claims each releases: the OpenID Connect defaults
//! and the tenant's own entries (a new scope, or a standard one's claims
//! replaced). A change is a tenant change: audited, and read again by every node.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::ScopeView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::{Changed, Items};
use super::{Caller, body, ok, ok_as, respond, segment};
use crate::api::problem::problem;

#[derive(Serialize, ToSchema)]
pub(super) struct ScopeDetail {
    pub scope: String,
    /// The claims it releases into ID tokens and UserInfo. A name that is no
    /// standard claim (nor `roles`, `groups`) reads the user's custom attribute of
    /// that name (`custom:` prefix optional).
    pub claims: Vec<String>,
    /// Defined by OpenID Connect.
    pub standard: bool,
    /// The tenant's own entry.
    pub customised: bool,
}

impl From<&ScopeView> for ScopeDetail {
    fn from(view: &ScopeView) -> Self {
        ScopeDetail {
            scope: view.scope.clone(),
            claims: view.claims.clone(),
            standard: view.standard,
            customised: view.customised,
        }
    }
}

impl From<ScopeView> for ScopeDetail {
    fn from(view: ScopeView) -> Self {
        ScopeDetail::from(&view)
    }
}

/// Every scope of the tenant with the claims it releases.
#[utoipa::path(get, path = "/scopes", tag = "scopes",
    responses((status = 200, description = "The scopes", body = Items<ScopeDetail>)))]
pub(super) async fn list_scopes(caller: Caller) -> HttpResponse {
    ok_as::<Items<ScopeDetail>, _>(caller.admin().scopes(caller.slug()).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeClaims {
    /// The claims the scope releases; the token's own claims (`iss`, `sub`, `aud`,
    /// `exp`, `acr`, `nonce`, …) are refused.
    claims: Vec<String>,
}

/// Makes the scope release these claims: a new scope, or a standard one's claims
/// replaced (`openid` stays as OpenID Connect defines it). Clients still need the
/// scope among their registered scopes to ask for it.
#[utoipa::path(put, path = "/scopes/{scope}", tag = "scopes", params(("scope" = String, Path)),
    request_body = ScopeClaims,
    responses((status = 200, description = "Saved", body = ScopeDetail)))]
pub(super) async fn set_scope(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let scope = segment(&req, "scope");
    let wanted: ScopeClaims = body(&bytes)?;
    let saved = caller
        .admin()
        .set_scope(&caller.operator, caller.slug(), &scope, wanted.claims)
        .await;
    Ok(respond(saved, |view| {
        caller.tenant_changed(caller.tenant.tenant.id);
        ok(ScopeDetail::from(&view))
    }))
}

/// Removes the tenant's own entry: a standard scope releases its default claims
/// again, any other scope is gone.
#[utoipa::path(delete, path = "/scopes/{scope}", tag = "scopes", params(("scope" = String, Path)),
    responses((status = 200, description = "Removed, or there was no entry", body = Changed)))]
pub(super) async fn remove_scope(caller: Caller, req: HttpRequest) -> HttpResponse {
    let scope = segment(&req, "scope");
    let removed = caller
        .admin()
        .remove_scope(&caller.operator, caller.slug(), &scope)
        .await;
    respond(removed, |changed| {
        caller.tenant_changed(caller.tenant.tenant.id);
        ok(Changed { changed })
    })
}

/// A tenant's own SCIM User extension (RFC 7643 §3.3).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserExtensionBody {
    /// The schema's URN (`urn:…`), not one of SCIM's own.
    id: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// 1 to 50 attributes, names unique whatever their case.
    attributes: Vec<ExtensionAttributeBody>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExtensionAttributeBody {
    /// A letter, then letters, digits, `-` or `_`.
    name: String,
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(string|boolean|integer|decimal|dateTime)$")]
    kind: String,
    #[serde(default)]
    multi_valued: bool,
    /// Must be sent whenever the extension is.
    #[serde(default)]
    required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

fn as_body(extension: &gatehouse_core::tenant_settings::UserExtension) -> UserExtensionBody {
    UserExtensionBody {
        id: extension.id.clone(),
        name: extension.name.clone(),
        description: extension.description.clone(),
        attributes: extension
            .attributes
            .iter()
            .map(|a| ExtensionAttributeBody {
                name: a.name.clone(),
                kind: a.kind.scim_name().to_owned(),
                multi_valued: a.multi_valued,
                required: a.required,
                description: a.description.clone(),
            })
            .collect(),
    }
}

fn none_defined() -> HttpResponse {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "the tenant defines no user extension",
    )
}

/// The tenant's own SCIM User extension; 404 when it defines none.
#[utoipa::path(get, path = "/user-extension", tag = "scopes",
    responses((status = 200, description = "The extension", body = UserExtensionBody),
        (status = 404, description = "The tenant defines none", body = super::views::Problem,
            content_type = "application/problem+json")))]
pub(super) async fn show_user_extension(caller: Caller) -> HttpResponse {
    respond(
        caller.admin().user_extension(caller.slug()).await,
        |found| found.map_or_else(none_defined, |extension| ok(as_body(&extension))),
    )
}

/// Defines the tenant's own SCIM User extension (RFC 7643 §3.3). SCIM serves it at
/// once (`/Schemas`, `/ResourceTypes/User`) and keeps what provisioning systems
/// send under it, checked against it, in the users' custom attributes. Checked
/// before it is saved (400 naming `settings`).
#[utoipa::path(put, path = "/user-extension", tag = "scopes", request_body = UserExtensionBody,
    responses((status = 200, description = "Saved", body = UserExtensionBody)))]
pub(super) async fn save_user_extension(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let wanted: UserExtensionBody = body(&bytes)?;
    let as_json = serde_json::to_value(&wanted).unwrap_or_default();
    let saved = caller
        .admin()
        .set_user_extension(&caller.operator, caller.slug(), as_json)
        .await;
    Ok(respond(saved, |extension| {
        caller.tenant_changed(caller.tenant.tenant.id);
        extension.map_or_else(none_defined, |extension| ok(as_body(&extension)))
    }))
}

/// Removes the tenant's own SCIM User extension; values users hold under it stay
/// in their custom attributes.
#[utoipa::path(delete, path = "/user-extension", tag = "scopes",
    responses((status = 204, description = "Removed")))]
pub(super) async fn remove_user_extension(caller: Caller) -> HttpResponse {
    let removed = caller
        .admin()
        .set_user_extension(&caller.operator, caller.slug(), serde_json::Value::Null)
        .await;
    respond(removed, |_| {
        caller.tenant_changed(caller.tenant.tenant.id);
        super::no_content()
    })
}
