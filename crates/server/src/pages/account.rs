//! The account page: profile, password, email address, sessions.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::account::ProfileUpdate;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::pages::context::{CsrfOnly, PageContext, Submitted, csrf_protected};
use crate::pages::errors::{Shown, shown};
use crate::pages::{device, navigation};

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

/// The fields an account-page error can be shown at (their input ids).
const FIELDS: &[&str] = &[
    "email-new",
    "email-current-password",
    "password-current",
    "password-new",
];

/// The notices the account page shows after an action.
const NOTICES: &[&str] = &[
    "account.profile.saved",
    "account.password.changed",
    "account.email.sent",
    "account.sessions.ended",
];

/// What the account page shows after a redirect: only known keys and fields, so a
/// link cannot put words of its own on the page.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AccountQuery {
    notice: String,
    error: String,
    field: String,
}

/// A failure shown at one field of the account page.
struct FieldError<'a> {
    field: &'a str,
    message: &'a str,
    suggestions: &'a [String],
}

async fn view(
    ctx: &PageContext,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<FieldError<'_>>,
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
                "device": s.user_agent.as_deref().and_then(device::describe),
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
            "error": error.as_ref().map(|e| e.message),
            "error_field": error.as_ref().map(|e| e.field),
            "password_suggestions": error.as_ref().map_or(&[][..], |e| e.suggestions),
            "sessions": sessions,
        }),
    )
}

/// Post/redirect/get: the account page again, so a reload does not submit twice.
fn back_to_account(
    ctx: &PageContext,
    notice: Option<&str>,
    error: Option<(&str, &str)>,
) -> HttpResponse {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(notice) = notice {
        query.append_pair("notice", notice);
    }
    let mut fragment = String::new();
    if let Some((field, message)) = error {
        query
            .append_pair("error", message)
            .append_pair("field", field);
        // On a phone the browser scrolls to the field at fault.
        fragment = format!("#{field}");
    }
    ctx.redirect(&format!(
        "{}?{}{fragment}",
        ctx.path("/account"),
        query.finish()
    ))
}

/// The account page again, with the message at the field that failed:
/// `password_field` for a wrong current password, `other_field` for the rest.
async fn failure(
    ctx: &PageContext,
    error: AuthnError,
    password_field: &str,
    other_field: &str,
) -> HttpResponse {
    if let AuthnError::StepUpRequired = error {
        // Pass the second factor, then back here to submit again.
        return ctx.redirect(&navigation::second_factor_url(
            ctx,
            Some(&ctx.path("/account")),
        ));
    }
    match shown(&error) {
        // The account page asks for the current password: say that it is wrong.
        Shown::OnForm(_) if matches!(error, AuthnError::InvalidCredentials) => back_to_account(
            ctx,
            None,
            Some((password_field, "account.error.current_password")),
        ),
        // A refused new password comes with suggestions, which cannot travel in a
        // URL: shown here, at the field.
        Shown::OnForm(refused) if !refused.suggestions.is_empty() => {
            view(
                ctx,
                refused.status,
                None,
                Some(FieldError {
                    field: other_field,
                    message: &refused.message,
                    suggestions: &refused.suggestions,
                }),
            )
            .await
        }
        Shown::OnForm(refused) if refused.status != StatusCode::TOO_MANY_REQUESTS => {
            back_to_account(ctx, None, Some((other_field, &refused.message)))
        }
        _ => ctx.authn_failure(&error),
    }
}

pub async fn page(ctx: PageContext, query: web::Query<AccountQuery>) -> HttpResponse {
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
    let notice = NOTICES.iter().copied().find(|n| *n == query.notice);
    let error = FIELDS
        .iter()
        .copied()
        .find(|f| *f == query.field)
        .filter(|_| shown_message(&ctx, &query.error))
        .map(|field| FieldError {
            field,
            message: &query.error,
            suggestions: &[],
        });
    view(&ctx, StatusCode::OK, notice, error).await
}

/// Whether `key` is a message an account action can fail with.
fn shown_message(ctx: &PageContext, key: &str) -> bool {
    (key.starts_with("account.error.")
        || key.starts_with("error.")
        || key.starts_with("signup.error."))
        && ctx.state.ui.has_message(key)
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
        Ok(()) => back_to_account(&ctx, Some("account.profile.saved"), None),
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
        Ok(_) => back_to_account(&ctx, Some("account.password.changed"), None),
        Err(error) => failure(&ctx, error, "password-current", "password-new").await,
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
        Ok(_) => back_to_account(&ctx, Some("account.email.sent"), None),
        Err(error) => failure(&ctx, error, "email-current-password", "email-new").await,
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
        Ok(_) => back_to_account(&ctx, Some("account.sessions.ended"), None),
        Err(error) => ctx.internal_error(&error),
    }
}

csrf_protected!(EmailForm, PasswordForm, ProfileForm);
