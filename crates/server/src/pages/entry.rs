//! Getting in: sign-up, verification, sign-in, sign-out.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::registration::Registration;
use gatehouse_authn::sign_in::SignInOutcome;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::pages::context::{CsrfOnly, PageContext, Submitted, csrf_protected};
use crate::pages::errors::{FormError, Shown, shown};
use crate::pages::navigation;
use crate::pages::navigation::{permit_return_to_client, safe_return_to};
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    csrf_token: String,
    email: String,
    password: String,
    return_to: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUpForm {
    csrf_token: String,
    email: String,
    given_name: Option<String>,
    family_name: Option<String>,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ResendForm {
    csrf_token: String,
    email: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct VerifyQuery {
    token: String,
}

pub async fn home(ctx: PageContext) -> HttpResponse {
    let target = if ctx.session.is_some() {
        "/account"
    } else {
        "/signin"
    };
    ctx.redirect(&ctx.path(target))
}

pub async fn static_asset(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    match state.ui.asset(&path) {
        Some(asset) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .body(asset.bytes),
        None => HttpResponse::NotFound().finish(),
    }
}

pub async fn theme_css(ctx: PageContext) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(ctx.state.ui.theme_css(&ctx.theme))
}

async fn sign_in_view(
    ctx: &PageContext,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
    return_to: Option<&str>,
) -> HttpResponse {
    let options = match ctx.state.authn.sign_in_options(ctx.tenant.tenant.id).await {
        Ok(options) => options,
        Err(error) => return ctx.authn_failure(&error),
    };
    ctx.render(
        status,
        "sign_in.html",
        &json!({
            "email": email,
            "error": error,
            "notice": notice,
            "return_to": return_to,
            "registration_enabled": ctx.policy.registration_enabled,
            "connections": options.buttons,
            "home_realm": options.home_realm,
        }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInQuery {
    return_to: String,
    /// From an authorization request's `login_hint`: prefills the email field.
    login_hint: String,
}

pub async fn sign_in_page(ctx: PageContext, query: web::Query<SignInQuery>) -> HttpResponse {
    let return_to = safe_return_to(&ctx, &query.return_to);
    // An authorization request may demand a fresh sign-in even with a session.
    if ctx.session.is_some() && return_to.is_none() {
        return ctx.redirect(&ctx.path("/account"));
    }
    if let Some(return_to) = &return_to {
        permit_return_to_client(&ctx, return_to).await;
    }
    let hint = if return_to.is_some() {
        query.login_hint.as_str()
    } else {
        ""
    };
    sign_in_view(&ctx, StatusCode::OK, hint, None, None, return_to.as_deref()).await
}

pub async fn sign_in(Submitted { ctx, form }: Submitted<SignInForm>) -> HttpResponse {
    let return_to = safe_return_to(&ctx, &form.return_to);
    if let Some(return_to) = &return_to {
        permit_return_to_client(&ctx, return_to).await;
    }
    // Home-realm discovery: an address at a partner's domain signs in with the
    // partner, whatever its password field holds. The route depends on the domain
    // alone, never on whether an account exists.
    match ctx
        .state
        .authn
        .connection_for_email(ctx.tenant.tenant.id, form.email.clone())
        .await
    {
        Ok(Some(slug)) => {
            return crate::pages::federation::begin(
                &ctx,
                slug,
                gatehouse_authn::federation::Purpose::SignIn,
                return_to,
                Some(form.email.trim().to_owned()),
            )
            .await;
        }
        Ok(None) => {}
        Err(error) => return ctx.authn_failure(&error),
    }
    if form.password.is_empty() {
        return sign_in_view(
            &ctx,
            StatusCode::UNAUTHORIZED,
            &form.email,
            Some("signin.error.invalid"),
            None,
            return_to.as_deref(),
        )
        .await;
    }
    let password = Zeroizing::new(form.password);
    let result = ctx
        .state
        .authn
        .sign_in_with_password(
            ctx.tenant.tenant.id,
            &ctx.policy,
            form.email.clone(),
            password,
            ctx.session_secret.clone(),
            ctx.client(),
        )
        .await;
    match result {
        Ok(SignInOutcome::SignedIn(signed_in)) => {
            let mut response = ctx.redirect(return_to.as_deref().unwrap_or(&ctx.path("/account")));
            ctx.set_session_cookie(&mut response, &signed_in.secret);
            ctx.set_pending_sign_in(&mut response, None);
            response
        }
        // The password was right; the second factor comes next, on its own page.
        Ok(SignInOutcome::SecondFactor(pending)) => {
            let mut response =
                ctx.redirect(&navigation::second_factor_url(&ctx, return_to.as_deref()));
            ctx.set_pending_sign_in(&mut response, Some(&pending.token));
            response
        }
        Err(error) => match shown(&error) {
            Shown::OnForm(refused) => {
                sign_in_view(
                    &ctx,
                    refused.status,
                    &form.email,
                    Some(&refused.message),
                    None,
                    return_to.as_deref(),
                )
                .await
            }
            _ => ctx.authn_failure(&error),
        },
    }
}

fn sign_up_view(
    ctx: &PageContext,
    status: StatusCode,
    form: Option<&SignUpForm>,
    errors: &[&str],
    suggestions: &[String],
) -> HttpResponse {
    ctx.render(
        status,
        "sign_up.html",
        &json!({
            "email": form.map(|f| f.email.as_str()).unwrap_or(""),
            "given_name": form.and_then(|f| f.given_name.as_deref()).unwrap_or(""),
            "family_name": form.and_then(|f| f.family_name.as_deref()).unwrap_or(""),
            "errors": errors,
            "password_suggestions": suggestions,
            "min_length": ctx.state.authn.password_policy().min_length(),
        }),
    )
}

pub async fn sign_up_page(ctx: PageContext) -> HttpResponse {
    if !ctx.policy.registration_enabled {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "signup.closed.title",
            "signup.closed.message",
        );
    }
    sign_up_view(&ctx, StatusCode::OK, None, &[], &[])
}

pub async fn sign_up(Submitted { ctx, form }: Submitted<SignUpForm>) -> HttpResponse {
    let registration = Registration {
        email: form.email.clone(),
        given_name: form.given_name.clone(),
        family_name: form.family_name.clone(),
        password: form.password.clone(),
    };
    match ctx
        .state
        .authn
        .register(
            ctx.tenant.tenant.id,
            &ctx.policy,
            registration,
            ctx.link_base(),
            ctx.client(),
        )
        .await
    {
        Ok(()) => ctx.render(
            StatusCode::OK,
            "check_email.html",
            &json!({ "email": form.email.trim(), "notice": null }),
        ),
        Err(error) => match shown(&error) {
            Shown::OnForm(refused) => sign_up_view(
                &ctx,
                refused.status,
                Some(&form),
                &[refused.message.as_str()],
                &refused.suggestions,
            ),
            _ => ctx.authn_failure(&error),
        },
    }
}

pub async fn verify(mut ctx: PageContext, query: web::Query<VerifyQuery>) -> HttpResponse {
    // The link works once: the same URL in another language would say it is invalid.
    ctx.reopenable = false;
    match ctx.state.authn.verify_email(ctx.tenant.tenant.id, query.into_inner().token, ctx.client()).await {
        Ok(()) => ctx.render(
            StatusCode::OK,
            "message.html",
            &json!({ "title": "verify.done.title", "message": "verify.done.message", "link_href": ctx.path("/signin"), "link_label": "verify.done.link" }),
        ),
        Err(AuthnError::InvalidLink) => ctx.render(
            StatusCode::BAD_REQUEST,
            "message.html",
            &json!({ "title": "verify.invalid.title", "message": "verify.invalid.message", "link_href": ctx.path("/signin"), "link_label": "verify.done.link" }),
        ),
        Err(AuthnError::EmailTaken) => ctx.error_page(StatusCode::CONFLICT, "verify.taken.title", "verify.taken.message"),
        Err(error) => ctx.authn_failure(&error),
    }
}

pub async fn resend(Submitted { ctx, form }: Submitted<ResendForm>) -> HttpResponse {
    if let Err(error) = ctx
        .state
        .authn
        .resend_verification(
            ctx.tenant.tenant.id,
            form.email.clone(),
            ctx.link_base(),
            ctx.client(),
        )
        .await
    {
        tracing::error!(%error, "resending verification failed");
    }
    // The same answer whether or not anything was sent.
    ctx.render(
        StatusCode::OK,
        "check_email.html",
        &json!({ "email": form.email.trim(), "notice": "check_email.resent" }),
    )
}

pub async fn sign_out(Submitted { ctx, .. }: Submitted<CsrfOnly>) -> HttpResponse {
    let mut upstream = None;
    if let Some(session) = ctx.session.clone() {
        // A partner's session ends too, where a partner opened this one.
        match ctx
            .state
            .authn
            .upstream_logout_url(&session, ctx.link_base().0, ctx.csrf.value.clone())
            .await
        {
            Ok(url) => upstream = url,
            Err(error) => tracing::warn!(%error, "signing out at the partner is skipped"),
        }
        if let Err(error) = ctx
            .state
            .authn
            .sign_out(ctx.tenant.tenant.id, session, ctx.client())
            .await
        {
            tracing::error!(%error, "sign-out failed");
        }
    }
    let mut response = match &upstream {
        Some(url) => super::federation::continue_upstream(&ctx, url),
        None => ctx.redirect(&ctx.path("/signin")),
    };
    let _ = response.add_removal_cookie(
        &ctx.cookies
            .removal(ctx.cookies.session_name(&ctx.tenant.tenant.slug)),
    );
    response
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SetupForm {
    csrf_token: String,
    setup_secret: String,
    email: String,
    password: String,
}

fn setup_view(
    ctx: &PageContext,
    status: StatusCode,
    email: &str,
    error: Option<(&str, &str)>,
    suggestions: &[String],
) -> HttpResponse {
    ctx.render(
        status,
        "setup.html",
        &json!({
            "email": email,
            "error": error.map(|(_, message)| message),
            "error_field": error.map(|(field, _)| field),
            "password_suggestions": suggestions,
            "min_length": ctx.state.authn.password_policy().min_length(),
        }),
    )
}

/// The page once set-up is done: nothing to fill in any more, sign in instead.
fn setup_done(ctx: &PageContext, status: StatusCode) -> HttpResponse {
    ctx.render(
        status,
        "message.html",
        &json!({ "title": "setup.done.title", "message": "setup.done.message", "link_href": ctx.path("/signin"), "link_label": "verify.done.link" }),
    )
}

async fn setup_pending(ctx: &PageContext) -> Result<bool, AuthnError> {
    ctx.state
        .authn
        .setup_pending(
            ctx.tenant.tenant.id,
            ctx.state.config.bootstrap.admin_user_name.clone(),
        )
        .await
}

pub async fn setup_page(ctx: PageContext) -> HttpResponse {
    match setup_pending(&ctx).await {
        Ok(true) => setup_view(&ctx, StatusCode::OK, "", None, &[]),
        Ok(false) => setup_done(&ctx, StatusCode::OK),
        Err(error) => ctx.authn_failure(&error),
    }
}

/// Completes first-start set-up with the one-time secret printed at bootstrap.
pub async fn setup(Submitted { ctx, form }: Submitted<SetupForm>) -> HttpResponse {
    match setup_pending(&ctx).await {
        Ok(true) => {}
        Ok(false) => return setup_done(&ctx, StatusCode::CONFLICT),
        Err(error) => return ctx.authn_failure(&error),
    }
    let result = ctx
        .state
        .authn
        .complete_setup(
            ctx.tenant.tenant.id,
            ctx.state.config.bootstrap.admin_user_name.clone(),
            Zeroizing::new(form.setup_secret),
            form.email.clone(),
            Zeroizing::new(form.password),
            ctx.client(),
        )
        .await;
    match result {
        Ok(()) => setup_done(&ctx, StatusCode::OK),
        Err(error) => match shown(&error) {
            // Throttling is a page of its own, not a field's fault.
            Shown::OnForm(refused) if refused.status != StatusCode::TOO_MANY_REQUESTS => {
                // Each failure at the field it is about: only a wrong secret marks the secret.
                let (field, refused) = match error {
                    AuthnError::InvalidCredentials => (
                        "setup_secret",
                        FormError {
                            status: StatusCode::FORBIDDEN,
                            ..refused.worded("setup.error.invalid")
                        },
                    ),
                    AuthnError::PasswordPolicy(_) => ("password", refused),
                    _ => ("email", refused),
                };
                setup_view(
                    &ctx,
                    refused.status,
                    &form.email,
                    Some((field, &refused.message)),
                    &refused.suggestions,
                )
            }
            _ => ctx.authn_failure(&error),
        },
    }
}

csrf_protected!(ResendForm, SetupForm, SignInForm, SignUpForm);
