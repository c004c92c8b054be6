//! "Apps and consents" on the account pages: the apps a user let in, what each may
//! use and why, a withdraw button per purpose, "revoke app", and the consent
//! receipt as a JSON download. The rules (what a withdrawal revokes) live in
//! `gatehouse-consent`; these handlers check CSRF, call it and render.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use gatehouse_consent::{Channel, ConsentError, Consents};
use gatehouse_core::ids::{TenantId, UserId};
use serde::Deserialize;
use serde_json::json;

use crate::pages::context::{PageContext, Submitted, csrf_protected};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct WithdrawForm {
    csrf_token: String,
    client_id: String,
    purpose: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RevokeForm {
    csrf_token: String,
    client_id: String,
}

const TIME: &str = "%Y-%m-%d %H:%M UTC";

/// Runs a consent-service call for the signed-in user on the blocking pool (it
/// holds a connection); `None` when nobody is signed in.
async fn for_user<T: Send + 'static>(
    ctx: &PageContext,
    work: impl FnOnce(&Consents, TenantId, UserId) -> Result<T, ConsentError> + Send + 'static,
) -> Option<Result<T, ConsentError>> {
    let user = ctx.session.as_ref()?.user_id;
    let tenant = ctx.tenant.tenant.id;
    let consents = ctx.state.consents.clone();
    let done = web::block(move || work(&consents, tenant, user)).await;
    Some(done.unwrap_or_else(|e| Err(ConsentError::Internal(e.to_string()))))
}

async fn view(ctx: &PageContext, status: StatusCode, notice: Option<&str>) -> HttpResponse {
    let apps = match for_user(ctx, |c, tenant, user| c.apps(tenant, user)).await {
        None => return ctx.redirect(&ctx.path("/signin")),
        Some(Ok(apps)) => apps,
        Some(Err(error)) => return ctx.internal_error(&error),
    };
    let apps: Vec<_> = apps
        .into_iter()
        .map(|app| {
            let purposes: Vec<_> = app
                .purposes
                .into_iter()
                .map(|p| {
                    json!({
                        "slug": p.slug,
                        "name": p.name,
                        "description": p.description,
                        "version": p.version,
                        "scopes": p.scopes,
                        "legal_basis_key": format!("apps.basis.{}", p.legal_basis),
                        "granted_at": p.granted_at.format(TIME).to_string(),
                        "expires_at": p.expires_at.map(|t| t.format(TIME).to_string()),
                        "outdated": p.outdated,
                    })
                })
                .collect();
            json!({
                "client_id": app.client_id,
                "name": app.name,
                "scopes": app.scopes,
                "has_access": app.has_access,
                "purposes": purposes,
            })
        })
        .collect();
    ctx.render(
        status,
        "apps.html",
        &json!({ "apps": apps, "notice": notice }),
    )
}

pub async fn page(ctx: PageContext) -> HttpResponse {
    view(&ctx, StatusCode::OK, None).await
}

pub async fn withdraw(Submitted { ctx, form }: Submitted<WithdrawForm>) -> HttpResponse {
    let WithdrawForm {
        client_id, purpose, ..
    } = form;
    let done = for_user(&ctx, move |c, tenant, user| {
        c.withdraw(tenant, user, &client_id, &purpose, Channel::AccountPage)
    })
    .await;
    match done {
        None => ctx.redirect(&ctx.path("/signin")),
        Some(Ok(_)) => view(&ctx, StatusCode::OK, Some("apps.withdrawn")).await,
        // A forged or stale form naming no purpose of this tenant.
        Some(Err(ConsentError::NotFound(_))) => view(&ctx, StatusCode::NOT_FOUND, None).await,
        Some(Err(error)) => ctx.internal_error(&error),
    }
}

pub async fn revoke(Submitted { ctx, form }: Submitted<RevokeForm>) -> HttpResponse {
    let done = for_user(&ctx, move |c, tenant, user| {
        c.revoke_app(tenant, user, &form.client_id, Channel::AccountPage)
    })
    .await;
    match done {
        None => ctx.redirect(&ctx.path("/signin")),
        Some(Ok(_)) => view(&ctx, StatusCode::OK, Some("apps.revoked")).await,
        Some(Err(error)) => ctx.internal_error(&error),
    }
}

/// The consent receipt, as a JSON file to keep.
pub async fn receipt(ctx: PageContext) -> HttpResponse {
    let receipt = match for_user(&ctx, |c, tenant, user| c.receipt(tenant, user)).await {
        None => return ctx.redirect(&ctx.path("/signin")),
        Some(Ok(receipt)) => receipt,
        Some(Err(error)) => return ctx.internal_error(&error),
    };
    let body = match serde_json::to_string_pretty(&receipt) {
        Ok(body) => body,
        Err(error) => return ctx.internal_error(&error),
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename("consent-receipt.json".into())],
        })
        // Personal data: never kept by a shared cache.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

csrf_protected!(RevokeForm, WithdrawForm);
