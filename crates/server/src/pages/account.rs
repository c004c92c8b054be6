//! The account page: profile, password, email address, sessions.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use gatehouse_authn::AuthnError;
use gatehouse_authn::account::ProfileUpdate;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::pages::context::{CsrfOnly, PageContext, Submitted, csrf_protected};
use crate::pages::errors::{FormError, Shown, shown};
use crate::pages::navigation;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ProfileForm {
    csrf_token: String,
    given_name: Option<String>,
    family_name: Option<String>,
    display_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    csrf_token: String,
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EmailForm {
    csrf_token: String,
    new_email: String,
    current_password: String,
}

async fn view(
    ctx: &PageContext,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    suggestions: &[String],
) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let tenant = ctx.tenant.tenant.id;
    let (user, sessions) = match tokio::try_join!(
        ctx.state.authn.user(tenant, session.user_id),
        ctx.state.authn.active_sessions(tenant, session.user_id)
    ) {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(%error, "account page failed");
            return ctx.error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error.internal.title",
                "error.internal.message",
            );
        }
    };
    let email = user.primary_email();
    let sessions: Vec<_> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id.to_string(),
                "created_at": s.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                "last_seen_at": s.last_seen_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "current": s.id == session.id,
            })
        })
        .collect();
    ctx.render(
        status,
        "account.html",
        &json!({
            "profile": {
                "given_name": user.data.name.given_name,
                "family_name": user.data.name.family_name,
                "display_name": user.data.display_name,
                "email": email.map(|e| e.value.clone()),
                "email_verified": email.is_some_and(|e| e.verified),
            },
            "notice": notice,
            "error": error,
            "password_suggestions": suggestions,
            "sessions": sessions,
        }),
    )
}

/// The account page again, with the message for a failed action.
async fn failure(ctx: &PageContext, error: AuthnError) -> HttpResponse {
    if let AuthnError::StepUpRequired = error {
        // Pass the second factor, then back here to submit again.
        return ctx.redirect(&navigation::second_factor_url(
            ctx,
            Some(&ctx.path("/account")),
        ));
    }
    match shown(&error) {
        // The account page asks for the current password: say that it is wrong.
        Shown::OnForm(refused) if matches!(error, AuthnError::InvalidCredentials) => {
            let refused = FormError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                ..refused.worded("account.error.current_password")
            };
            view(ctx, refused.status, None, Some(&refused.message), &[]).await
        }
        Shown::OnForm(refused) => {
            view(
                ctx,
                refused.status,
                None,
                Some(&refused.message),
                &refused.suggestions,
            )
            .await
        }
        _ => ctx.authn_failure(&error),
    }
}

pub async fn page(ctx: PageContext) -> HttpResponse {
    if let Some(session) = &ctx.session
        && ctx.policy.mfa_required
        && session.aal < 2
    {
        // The tenant wants a second factor from everyone: pass it, or add one.
        return ctx.redirect(&navigation::second_factor_url(
            &ctx,
            Some(&ctx.path("/account")),
        ));
    }
    view(&ctx, StatusCode::OK, None, None, &[]).await
}

pub async fn profile(Submitted { ctx, form }: Submitted<ProfileForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let update = ProfileUpdate {
        given_name: form.given_name,
        family_name: form.family_name,
        display_name: form.display_name,
    };
    match ctx
        .state
        .authn
        .update_profile(ctx.tenant.tenant.id, session, update, ctx.client())
        .await
    {
        Ok(()) => {
            view(
                &ctx,
                StatusCode::OK,
                Some("account.profile.saved"),
                None,
                &[],
            )
            .await
        }
        Err(error) => ctx.internal_error(&error),
    }
}

pub async fn password(Submitted { ctx, form }: Submitted<PasswordForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let result = ctx
        .state
        .authn
        .change_password(
            ctx.tenant.tenant.id,
            session,
            Zeroizing::new(form.current_password),
            Zeroizing::new(form.new_password),
            ctx.client(),
        )
        .await;
    match result {
        Ok(_) => {
            view(
                &ctx,
                StatusCode::OK,
                Some("account.password.changed"),
                None,
                &[],
            )
            .await
        }
        Err(error) => failure(&ctx, error).await,
    }
}

pub async fn email(Submitted { ctx, form }: Submitted<EmailForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let result = ctx
        .state
        .authn
        .request_email_change(
            ctx.tenant.tenant.id,
            session,
            form.new_email,
            Zeroizing::new(form.current_password),
            ctx.link_base(),
            ctx.client(),
        )
        .await;
    match result {
        Ok(_) => view(&ctx, StatusCode::OK, Some("account.email.sent"), None, &[]).await,
        Err(error) => failure(&ctx, error).await,
    }
}

pub async fn end_one(Submitted { ctx, .. }: Submitted<CsrfOnly>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let Some(Ok(target)) = ctx.request.match_info().get("id").map(str::parse) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "error.not_found.title",
            "error.not_found.message",
        );
    };
    match ctx
        .state
        .authn
        .end_session(ctx.tenant.tenant.id, session, target, ctx.client())
        .await
    {
        Ok(_) => ctx.redirect(&ctx.path("/account")),
        Err(error) => ctx.internal_error(&error),
    }
}

pub async fn end_others(Submitted { ctx, .. }: Submitted<CsrfOnly>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    match ctx
        .state
        .authn
        .end_other_sessions(ctx.tenant.tenant.id, session, ctx.client())
        .await
    {
        Ok(_) => {
            view(
                &ctx,
                StatusCode::OK,
                Some("account.sessions.ended"),
                None,
                &[],
            )
            .await
        }
        Err(error) => ctx.internal_error(&error),
    }
}

csrf_protected!(EmailForm, PasswordForm, ProfileForm);
