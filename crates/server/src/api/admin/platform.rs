//! The platform's part of the admin API: the tenants themselves (list, create,
//! show, change at the version read, disable, enable, delete). Only the platform's own tenant (the one bootstrapped at first
//! start) serves it, to API clients of that tenant whose token carries the scope
//! `platform`; under any other tenant the routes do not exist (404), so a tenant's
//! administrators learn nothing of the others.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use gatehouse_admin::{TenantChange, TenantView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::views::{Changed, Items};
use super::{
    Caller, PATH, body, changed_at_version, created, if_match, no_content, ok, reason, respond,
    segment, tagged, with_header,
};
use crate::api::problem::problem;
use crate::http::answer::{answered, from_request_with};

/// A platform administrator: an API client of the platform's own tenant with the
/// scope `platform`.
pub(super) struct PlatformCaller(Caller);

from_request_with!(PlatformCaller, PlatformCaller::extract);

impl PlatformCaller {
    async fn extract(req: HttpRequest) -> Result<PlatformCaller, actix_web::Error> {
        // Under any other tenant the routes do not exist: 404 before any token is
        // looked at, so nothing tells a tenant's administrators they are here.
        let state =
            crate::http::answer::app_state(&req, || HttpResponse::InternalServerError().finish())?;
        let tenant = crate::oauth::resolve(&state, &req)
            .await
            .map_err(answered)?;
        if tenant.tenant.slug != state.config.bootstrap.tenant {
            return Err(answered(problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource",
            )));
        }
        Ok(PlatformCaller(Caller::extract(req).await?))
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct TenantDetail {
    pub id: String,
    pub slug: String,
    pub display_name: String,
    /// Its issuer identifier (`null` before the server first started).
    pub issuer: Option<String>,
    /// Settings by section (`registration`, `mfa`, `hosts`, `mail`, `scopes`,
    /// `theme`); an absent section has its defaults.
    pub settings: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// Set while the tenant is disabled (nothing of it is served).
    pub disabled_at: Option<DateTime<Utc>>,
}

impl From<&TenantView> for TenantDetail {
    fn from(view: &TenantView) -> Self {
        let t = &view.tenant;
        TenantDetail {
            id: t.id.to_string(),
            slug: t.slug.clone(),
            display_name: t.display_name.clone(),
            issuer: view.issuer.clone(),
            settings: t.settings.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            version: t.version,
            disabled_at: t.disabled_at,
        }
    }
}

impl From<TenantView> for TenantDetail {
    fn from(view: TenantView) -> Self {
        TenantDetail::from(&view)
    }
}

/// Every tenant, by slug.
#[utoipa::path(get, path = "/tenants", tag = "platform",
    security(("admin_token" = ["platform"])),
    responses((status = 200, description = "The tenants", body = Items<TenantDetail>)))]
pub(super) async fn list_tenants(PlatformCaller(caller): PlatformCaller) -> HttpResponse {
    super::ok_as::<Items<TenantDetail>, _>(caller.admin().tenants().await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    /// Lower-case letters, digits and `-`; the path `/t/{slug}`.
    slug: String,
    display_name: String,
    /// Settings sections, each checked before anything is written.
    #[serde(default)]
    settings: Map<String, Value>,
}

/// Creates a tenant, served at `/t/{slug}` (and at its own host names, if its
/// settings name any).
#[utoipa::path(post, path = "/tenants", tag = "platform", request_body = NewTenant,
    security(("admin_token" = ["platform"])),
    responses((status = 201, description = "Created", body = TenantDetail,
        headers(("Location" = String))),
        (status = 409, description = "The slug is taken", body = super::views::Problem,
            content_type = "application/problem+json")))]
pub(super) async fn create_tenant(
    PlatformCaller(caller): PlatformCaller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewTenant = body(&bytes)?;
    checked_theme(&caller, &new.settings)?;
    let made = caller
        .admin()
        .create_tenant(&caller.operator, &new.slug, &new.display_name, new.settings)
        .await;
    Ok(respond(made, |view| {
        caller.tenant_changed(view.tenant.id);
        let location = format!(
            "{}{PATH}/tenants/{}",
            caller.tenant.issuer(),
            view.tenant.slug
        );
        with_header(
            created(TenantDetail::from(&view)),
            header::LOCATION,
            &location,
        )
    }))
}

/// One tenant, tagged with its version (`ETag`).
#[utoipa::path(get, path = "/tenants/{slug}", tag = "platform",
    params(("slug" = String, Path)), security(("admin_token" = ["platform"])),
    responses((status = 200, description = "The tenant", body = TenantDetail,
        headers(("ETag" = String)))))]
pub(super) async fn show_tenant(
    PlatformCaller(caller): PlatformCaller,
    req: HttpRequest,
) -> HttpResponse {
    let slug = segment(&req, "slug");
    respond(caller.admin().tenant_view(&slug).await, |view| {
        tagged_tenant(&view)
    })
}

fn tagged_tenant(view: &TenantView) -> HttpResponse {
    tagged(TenantDetail::from(view), view.tenant.version)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantPatch {
    #[serde(default)]
    display_name: Option<String>,
    /// Sections to replace; `null` removes a section (its defaults apply again).
    #[serde(default)]
    settings: Map<String, Value>,
}

/// Changes a tenant's name or settings sections at the version read (`If-Match`
/// with the `ETag` of a GET): without it 428, for a version no longer current 412.
/// Every node reads the change.
#[utoipa::path(patch, path = "/tenants/{slug}", tag = "platform",
    params(("slug" = String, Path), ("If-Match" = String, Header, description = "The ETag read")),
    security(("admin_token" = ["platform"])),
    request_body(content(
        (TenantPatch = "application/merge-patch+json"), (TenantPatch = "application/json"))),
    responses((status = 200, description = "Changed", body = TenantDetail,
        headers(("ETag" = String))),
        (status = 412, description = "The tenant changed since it was read",
            body = super::views::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn update_tenant(
    PlatformCaller(caller): PlatformCaller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let slug = segment(&req, "slug");
    let version = if_match(&req, "tenant")?;
    let patch: TenantPatch = body(&bytes)?;
    checked_theme(&caller, &patch.settings)?;
    let change = TenantChange {
        display_name: patch.display_name,
        settings: patch.settings,
        expected_version: Some(version),
    };
    let done = caller
        .admin()
        .update_tenant(&caller.operator, &slug, change)
        .await;
    Ok(changed_at_version(done, "tenant", |view| {
        caller.tenant_changed(view.tenant.id);
        tagged_tenant(&view)
    }))
}

/// Deletes a disabled tenant with all of its data — users and everything theirs,
/// clients, grants, keys, policies, purposes, decision log and audit trail — in one
/// transaction; the platform tenant's audit log records it with the reason. A
/// tenant still served is refused (409: disable it first); the platform's own
/// tenant is never deleted.
#[utoipa::path(delete, path = "/tenants/{slug}", tag = "platform",
    params(("slug" = String, Path), super::ReasonHeader), security(("admin_token" = ["platform"])),
    responses((status = 204, description = "Deleted"),
        (status = 409, description = "The tenant is still served: disable it first",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn delete_tenant(
    PlatformCaller(caller): PlatformCaller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (slug, why) = (segment(&req, "slug"), reason(&req)?);
    let done = caller
        .admin()
        .delete_tenant(&caller.operator, &slug, &why)
        .await;
    Ok(respond(done, |_| {
        caller.tenant_changed_everywhere();
        no_content()
    }))
}

/// Disables a tenant: nothing of it is served on any node — its paths, host names
/// and token endpoints answer as for an unknown tenant — while its data stays.
/// The platform's own tenant is never disabled.
#[utoipa::path(post, path = "/tenants/{slug}/disable", tag = "platform",
    params(("slug" = String, Path), super::ReasonHeader), security(("admin_token" = ["platform"])),
    responses((status = 200, description = "Disabled, or it already was", body = Changed)))]
pub(super) async fn disable_tenant(
    PlatformCaller(caller): PlatformCaller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    set_disabled(caller, &req, true).await
}

/// Enables a disabled tenant: it is served again as before.
#[utoipa::path(post, path = "/tenants/{slug}/enable", tag = "platform",
    params(("slug" = String, Path), super::ReasonHeader), security(("admin_token" = ["platform"])),
    responses((status = 200, description = "Enabled, or it already was", body = Changed)))]
pub(super) async fn enable_tenant(
    PlatformCaller(caller): PlatformCaller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    set_disabled(caller, &req, false).await
}

async fn set_disabled(
    caller: Caller,
    req: &HttpRequest,
    disabled: bool,
) -> actix_web::Result<HttpResponse> {
    let (slug, why) = (segment(req, "slug"), reason(req)?);
    let done = caller
        .admin()
        .set_tenant_disabled(&caller.operator, &slug, disabled, &why)
        .await;
    Ok(respond(done, |changed| {
        caller.tenant_changed_everywhere();
        ok(Changed { changed })
    }))
}

/// A theme among tenant settings is checked as the tenant's own theme route checks
/// it (`null` removes it).
fn checked_theme(caller: &Caller, settings: &Map<String, Value>) -> Result<(), actix_web::Error> {
    match settings.get(crate::ui::THEME_SETTINGS_KEY) {
        Some(theme) if !theme.is_null() => super::themes::checked_from_api(caller, theme),
        _ => Ok(()),
    }
}
