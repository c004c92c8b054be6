//! Account recovery pages: "forgot password", the reset link (with the second
//! factor when the account has one), lost factors with a cooling-off, and its
//! cancellation. The rules live in `gatehouse_authn::recovery`; these pages only
//! ask and answer. Every link's GET only shows a form: mail scanners that fetch
//! links must not spend or cancel anything.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::recovery::{ResetProof, ResetTicket};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::pages::context::{PageContext, Submitted, csrf_protected};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenQuery {
    token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RequestForm {
    csrf_token: String,
    email: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ResetForm {
    csrf_token: String,
    token: String,
    /// `totp`, `recovery_code` or empty.
    method: String,
    code: String,
    new_password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    csrf_token: String,
    token: String,
    new_password: String,
}

fn message(ctx: &PageContext, status: StatusCode, title: &str, text: &str) -> HttpResponse {
    ctx.render(
        status,
        "message.html",
        &json!({ "title": title, "message": text, "link_href": ctx.path("/signin"), "link_label": "verify.done.link" }),
    )
}

fn invalid_link(ctx: &PageContext) -> HttpResponse {
    message(
        ctx,
        StatusCode::BAD_REQUEST,
        "verify.invalid.title",
        "verify.invalid.message",
    )
}

/// The answers every recovery step shares: a link that is unknown, used or expired;
/// too many attempts; anything else is an internal error.
fn refused(ctx: &PageContext, error: &AuthnError) -> HttpResponse {
    match error {
        AuthnError::InvalidLink => invalid_link(ctx),
        other => ctx.authn_failure(other),
    }
}

#[allow(clippy::too_many_arguments)]
fn recover_view(
    ctx: &PageContext,
    status: StatusCode,
    mode: &str,
    token: &str,
    ticket: Option<&ResetTicket>,
    error: Option<&str>,
    suggestions: &[String],
) -> HttpResponse {
    let (totp, recovery_codes) = match ticket {
        Some(ResetTicket::NeedsSecondFactor {
            totp,
            recovery_codes,
            ..
        }) => (*totp, *recovery_codes),
        _ => (false, false),
    };
    ctx.render(
        status,
        "recover.html",
        &json!({
            "mode": mode,
            "token": token,
            "needs_factor": matches!(ticket, Some(ResetTicket::NeedsSecondFactor { .. })),
            "totp": totp,
            "recovery_codes": recovery_codes,
            "error": error,
            "password_suggestions": suggestions,
            "min_length": ctx.state.authn.password_policy().min_length(),
        }),
    )
}

pub async fn request_page(ctx: PageContext) -> HttpResponse {
    recover_view(&ctx, StatusCode::OK, "request", "", None, None, &[])
}

pub async fn request(Submitted { ctx, form }: Submitted<RequestForm>) -> HttpResponse {
    match ctx
        .state
        .authn
        .request_password_reset(
            ctx.tenant.tenant.id,
            form.email,
            ctx.link_base(),
            ctx.client(),
        )
        .await
    {
        // The same answer whether or not the address has an account.
        Ok(()) => message(
            &ctx,
            StatusCode::OK,
            "recover.sent.title",
            "recover.sent.message",
        ),
        Err(AuthnError::InvalidEmail) => recover_view(
            &ctx,
            StatusCode::UNPROCESSABLE_ENTITY,
            "request",
            "",
            None,
            Some("signup.error.email"),
            &[],
        ),
        Err(error) => refused(&ctx, &error),
    }
}

pub async fn reset_page(ctx: PageContext, query: web::Query<TokenQuery>) -> HttpResponse {
    let token = query.into_inner().token;
    match ctx
        .state
        .authn
        .open_password_reset(ctx.tenant.tenant.id, token.clone(), ctx.client())
        .await
    {
        Ok(ticket) => recover_view(
            &ctx,
            StatusCode::OK,
            "reset",
            &token,
            Some(&ticket),
            None,
            &[],
        ),
        Err(error) => refused(&ctx, &error),
    }
}

pub async fn reset(Submitted { ctx, form }: Submitted<ResetForm>) -> HttpResponse {
    let tenant = ctx.tenant.tenant.id;
    let code = Zeroizing::new(form.code);
    let proof = match form.method.as_str() {
        "totp" => ResetProof::Totp(code),
        "recovery_code" => ResetProof::RecoveryCode(code),
        _ => ResetProof::None,
    };
    let result = ctx
        .state
        .authn
        .complete_password_reset(
            tenant,
            form.token.clone(),
            proof,
            Zeroizing::new(form.new_password),
            ctx.client(),
        )
        .await;
    // A refused attempt shows the form again, for the same link.
    let again = |status, error: &str, suggestions: &[String]| {
        let ctx = &ctx;
        let token = form.token.clone();
        let error = error.to_owned();
        let suggestions = suggestions.to_vec();
        async move {
            match ctx
                .state
                .authn
                .open_password_reset(tenant, token.clone(), ctx.client())
                .await
            {
                Ok(ticket) => recover_view(
                    ctx,
                    status,
                    "reset",
                    &token,
                    Some(&ticket),
                    Some(&error),
                    &suggestions,
                ),
                Err(_) => invalid_link(ctx),
            }
        }
    };
    match result {
        Ok(()) => message(
            &ctx,
            StatusCode::OK,
            "recover.done.title",
            "recover.done.message",
        ),
        Err(AuthnError::SecondFactorRequired) => {
            again(
                StatusCode::UNAUTHORIZED,
                "recover.error.factor_required",
                &[],
            )
            .await
        }
        Err(AuthnError::InvalidCode | AuthnError::NotEnrolled) => {
            again(StatusCode::UNAUTHORIZED, "second_factor.error.invalid", &[]).await
        }
        Err(AuthnError::PasswordPolicy(violation)) => {
            let key = PageContext::policy_message(violation.code);
            again(
                StatusCode::UNPROCESSABLE_ENTITY,
                &key,
                &violation.suggestions,
            )
            .await
        }
        Err(error) => refused(&ctx, &error),
    }
}

/// "I have none of my second factors": starts the recovery with a cooling-off.
pub async fn start_factor_recovery(Submitted { ctx, form }: Submitted<TokenForm>) -> HttpResponse {
    match ctx
        .state
        .authn
        .request_factor_recovery(
            ctx.tenant.tenant.id,
            form.token,
            ctx.link_base(),
            ctx.client(),
        )
        .await
    {
        Ok(_) => message(
            &ctx,
            StatusCode::OK,
            "recover.factors_started.title",
            "recover.factors_started.message",
        ),
        Err(error) => refused(&ctx, &error),
    }
}

pub async fn factors_page(ctx: PageContext, query: web::Query<TokenQuery>) -> HttpResponse {
    let token = query.into_inner().token;
    recover_view(&ctx, StatusCode::OK, "factors", &token, None, None, &[])
}

pub async fn complete_factor_recovery(
    Submitted { ctx, form }: Submitted<TokenForm>,
) -> HttpResponse {
    match ctx
        .state
        .authn
        .complete_factor_recovery(
            ctx.tenant.tenant.id,
            form.token.clone(),
            Zeroizing::new(form.new_password),
            ctx.client(),
        )
        .await
    {
        Ok(()) => message(
            &ctx,
            StatusCode::OK,
            "recover.done.title",
            "recover.factors_done.message",
        ),
        Err(AuthnError::RecoveryNotReady { .. }) => message(
            &ctx,
            StatusCode::CONFLICT,
            "recover.not_ready.title",
            "recover.not_ready.message",
        ),
        Err(AuthnError::RecoveryCancelled) => message(
            &ctx,
            StatusCode::GONE,
            "recover.cancelled.title",
            "recover.cancelled.message",
        ),
        Err(AuthnError::PasswordPolicy(violation)) => {
            let key = PageContext::policy_message(violation.code);
            recover_view(
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                "factors",
                &form.token,
                None,
                Some(&key),
                &violation.suggestions,
            )
        }
        Err(error) => refused(&ctx, &error),
    }
}

pub async fn cancel_page(ctx: PageContext, query: web::Query<TokenQuery>) -> HttpResponse {
    let token = query.into_inner().token;
    recover_view(&ctx, StatusCode::OK, "cancel", &token, None, None, &[])
}

pub async fn cancel(Submitted { ctx, form }: Submitted<TokenForm>) -> HttpResponse {
    match ctx
        .state
        .authn
        .cancel_factor_recovery(ctx.tenant.tenant.id, form.token, ctx.client())
        .await
    {
        Ok(()) => message(
            &ctx,
            StatusCode::OK,
            "recover.cancelled.title",
            "recover.cancel_done.message",
        ),
        Err(AuthnError::InvalidLink | AuthnError::RecoveryCancelled) => invalid_link(&ctx),
        Err(error) => refused(&ctx, &error),
    }
}

csrf_protected!(RequestForm, ResetForm, TokenForm);
