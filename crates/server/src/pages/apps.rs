//! "Apps and consents" on the account pages: the apps a user let in, what each may
//! use and why, a withdraw button per purpose, "revoke app", and the consent
//! receipt as a JSON download. The rules (what a withdrawal revokes) live in
//! `gatehouse-consent`; these handlers check CSRF, call it and render.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use gatehouse_consent::{Channel, ConsentError, Consents};
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

/// Runs a consent-service call on the blocking pool (it holds a connection).
async fn blocking<T: Send + 'static>(
    ctx: &PageContext,
    work: impl FnOnce(&Consents) -> Result<T, ConsentError> + Send + 'static,
) -> Result<T, ConsentError> {
    let consents = ctx.state.consents.clone();
    web::block(move || work(&consents))
        .await
        .map_err(|e| ConsentError::Internal(e.to_string()))?
}

async fn view(ctx: &PageContext, status: StatusCode, notice: Option<&str>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let tenant = ctx.tenant.tenant.id;
    let apps = match blocking(ctx, move |c| c.apps(tenant, session.user_id)).await {
        Ok(apps) => apps,
        Err(error) => return ctx.internal_error(&error),
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
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let tenant = ctx.tenant.tenant.id;
    let done = blocking(&ctx, move |c| {
        c.withdraw(
            tenant,
            session.user_id,
            &form.client_id,
            &form.purpose,
            Channel::AccountPage,
        )
    })
    .await;
    match done {
        Ok(_) => view(&ctx, StatusCode::OK, Some("apps.withdrawn")).await,
        // A forged or stale form naming no purpose of this tenant.
        Err(ConsentError::NotFound(_)) => view(&ctx, StatusCode::NOT_FOUND, None).await,
        Err(error) => ctx.internal_error(&error),
    }
}

pub async fn revoke(Submitted { ctx, form }: Submitted<RevokeForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let tenant = ctx.tenant.tenant.id;
    let done = blocking(&ctx, move |c| {
        c.revoke_app(
            tenant,
            session.user_id,
            &form.client_id,
            Channel::AccountPage,
        )
    })
    .await;
    match done {
        Ok(_) => view(&ctx, StatusCode::OK, Some("apps.revoked")).await,
        Err(error) => ctx.internal_error(&error),
    }
}

/// The consent receipt, as a JSON file to keep.
pub async fn receipt(ctx: PageContext) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let tenant = ctx.tenant.tenant.id;
    let receipt = match blocking(&ctx, move |c| c.receipt(tenant, session.user_id)).await {
        Ok(receipt) => receipt,
        Err(error) => return ctx.internal_error(&error),
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
