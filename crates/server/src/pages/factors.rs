//! Second factors: the sign-in step after the password, step-up for a live session,
//! and the account's security page (authenticator app, recovery codes).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::recovery_codes::RecoveryCodes;
use gatehouse_authn::second_factor::{Factors, SecondFactor};
use gatehouse_authn::totp::Enrolment;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::pages::context::{PageContext, Submitted, csrf_protected};
use crate::pages::navigation::{return_to, second_factor_url, sign_in_url, with_return};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ReturnQuery {
    return_to: String,
}

/// The security page's query: where to go afterwards and, after a redirect, which
/// notice to show (only known ones, so a link cannot put its own words there).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SecurityQuery {
    return_to: String,
    notice: String,
}

/// The notices the security page shows after an action elsewhere redirected to it.
const SECURITY_NOTICES: &[&str] = &[
    "security.totp.removed",
    "passkeys.removed",
    "federation.linked",
    "federation.unlinked",
];

/// Post/redirect/get: the security page with `notice`, so a reload repeats nothing.
pub(super) fn back_to_security(ctx: &PageContext, notice: &str) -> HttpResponse {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    ctx.redirect(&format!("{}?{query}", ctx.path("/account/security")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SecondFactorForm {
    csrf_token: String,
    /// `totp` or `recovery_code`.
    method: String,
    code: String,
    return_to: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf_token: String,
    return_to: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConfirmForm {
    csrf_token: String,
    enrolment: String,
    code: String,
    return_to: String,
}

/// Who is asking: a sign-in waiting for its second factor, or a signed-in user
/// stepping up.
enum Asker {
    Pending(String),
    Session,
}

async fn asker(ctx: &PageContext) -> Result<Option<(Asker, Factors)>, AuthnError> {
    let tenant = ctx.tenant.tenant.id;
    if let Some(token) = ctx.pending_sign_in() {
        match ctx.state.authn.pending_sign_in(tenant, token.clone()).await {
            Ok((_, factors)) => return Ok(Some((Asker::Pending(token), factors))),
            Err(AuthnError::InvalidLink) => {}
            Err(other) => return Err(other),
        }
    }
    match &ctx.session {
        Some(session) => {
            let factors = ctx.state.authn.factors(tenant, session.user_id).await?;
            Ok(Some((Asker::Session, factors)))
        }
        None => Ok(None),
    }
}

fn second_factor_view(
    ctx: &PageContext,
    status: StatusCode,
    factors: &Factors,
    step_up: bool,
    method: &str,
    error: Option<&str>,
    return_to: Option<&str>,
) -> HttpResponse {
    ctx.render(
        status,
        "second_factor.html",
        &json!({
            "totp": factors.totp,
            "recovery_codes": factors.recovery_codes > 0,
            "passkeys": factors.passkeys,
            "step_up": step_up,
            "method": method,
            "error": error,
            "return_to": return_to,
        }),
    )
}

pub async fn second_factor_page(ctx: PageContext, query: web::Query<ReturnQuery>) -> HttpResponse {
    let return_to = return_to(&ctx, &query.return_to).await;
    match asker(&ctx).await {
        Ok(Some((asker, factors))) if factors.any() || factors.recovery_codes > 0 => {
            second_factor_view(
                &ctx,
                StatusCode::OK,
                &factors,
                matches!(asker, Asker::Session),
                "totp",
                None,
                return_to.as_deref(),
            )
        }
        // Signed in without any second factor: one has to be added first.
        Ok(Some(_)) => ctx.redirect(&with_return(
            &ctx,
            "/account/security",
            return_to.as_deref(),
        )),
        Ok(None) => ctx.redirect(&sign_in_url(&ctx, return_to.as_deref())),
        Err(error) => ctx.internal_error(&error),
    }
}

pub async fn second_factor(Submitted { ctx, form }: Submitted<SecondFactorForm>) -> HttpResponse {
    let return_to = return_to(&ctx, &form.return_to).await;
    let (asker, factors) = match asker(&ctx).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            // The pending sign-in expired (or never was): start again.
            let mut response = ctx.redirect(&sign_in_url(&ctx, return_to.as_deref()));
            ctx.set_pending_sign_in(&mut response, None);
            return response;
        }
        Err(error) => return ctx.internal_error(&error),
    };
    let code = Zeroizing::new(form.code);
    let (factor, method) = match form.method.as_str() {
        "recovery_code" => (SecondFactor::RecoveryCode(code), "recovery_code"),
        _ => (SecondFactor::Totp(code), "totp"),
    };
    let tenant = ctx.tenant.tenant.id;
    let step_up = matches!(asker, Asker::Session);
    let result = match (asker, ctx.session.clone()) {
        (Asker::Pending(token), _) => {
            ctx.state
                .authn
                .complete_sign_in(
                    tenant,
                    token,
                    factor,
                    ctx.session_secret.clone(),
                    ctx.client(),
                )
                .await
        }
        (Asker::Session, Some(session)) => {
            ctx.state
                .authn
                .step_up(tenant, session, factor, ctx.client())
                .await
        }
        (Asker::Session, None) => return ctx.redirect(&sign_in_url(&ctx, return_to.as_deref())),
    };
    let refused = |status, key| {
        second_factor_view(
            &ctx,
            status,
            &factors,
            step_up,
            method,
            Some(key),
            return_to.as_deref(),
        )
    };
    match result {
        Ok(signed_in) => {
            let mut response = ctx.redirect(return_to.as_deref().unwrap_or(&ctx.path("/account")));
            ctx.set_session_cookie(&mut response, &signed_in.secret);
            ctx.set_pending_sign_in(&mut response, None);
            response
        }
        Err(AuthnError::InvalidCode | AuthnError::NotEnrolled) => {
            refused(StatusCode::UNAUTHORIZED, "second_factor.error.invalid")
        }
        Err(AuthnError::Throttled { .. }) => refused(
            StatusCode::TOO_MANY_REQUESTS,
            "second_factor.error.throttled",
        ),
        Err(
            AuthnError::InvalidLink | AuthnError::SessionEnded | AuthnError::InvalidCredentials,
        ) => {
            let mut response = ctx.redirect(&sign_in_url(&ctx, return_to.as_deref()));
            ctx.set_pending_sign_in(&mut response, None);
            response
        }
        Err(error) => ctx.internal_error(&error),
    }
}

// ---- the security page ----

pub(super) async fn security_view(
    ctx: &PageContext,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    return_to: Option<&str>,
) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&sign_in_url(ctx, Some(&ctx.path("/account/security"))));
    };
    let factors = match ctx.factors_of(session.user_id).await {
        Ok(factors) => factors,
        Err(error) => return ctx.internal_error(&error),
    };
    let passkey_list = match passkey_listing(ctx, session.user_id).await {
        Ok(list) => list,
        Err(error) => return ctx.internal_error(&error),
    };
    let authn = &ctx.state.authn;
    let tenant = ctx.tenant.tenant.id;
    let (identities, connections) = match tokio::try_join!(
        authn.linked_identities(tenant, session.user_id),
        authn.sign_in_buttons(tenant),
    ) {
        Ok(both) => both,
        Err(error) => return ctx.internal_error(&error),
    };
    // Connections the user may still link: enabled ones without an identity.
    let linkable: Vec<_> = connections
        .into_iter()
        .filter(|c| !identities.iter().any(|i| i.connection == c.slug))
        .collect();
    ctx.render(
        status,
        "security.html",
        &json!({
            "totp": factors.totp,
            "passkeys": factors.passkeys,
            "passkey_list": passkey_list,
            "identities": identities,
            "linkable": linkable,
            "recovery_codes": factors.recovery_codes,
            "mfa_required": ctx.policy.mfa_required && !factors.any(),
            "notice": notice,
            "error": error,
            "return_to": return_to,
        }),
    )
}

pub async fn security_page(ctx: PageContext, query: web::Query<SecurityQuery>) -> HttpResponse {
    let return_to = return_to(&ctx, &query.return_to).await;
    let notice = SECURITY_NOTICES
        .iter()
        .copied()
        .find(|n| *n == query.notice);
    security_view(&ctx, StatusCode::OK, notice, None, return_to.as_deref()).await
}

/// Sends the user to pass their second factor, then back to the security page.
pub(super) fn step_up_first(ctx: &PageContext) -> HttpResponse {
    ctx.redirect(&second_factor_url(
        ctx,
        Some(&ctx.path("/account/security")),
    ))
}

fn enrolment_view(
    ctx: &PageContext,
    status: StatusCode,
    enrolment: &Enrolment,
    error: Option<&str>,
    return_to: Option<&str>,
) -> HttpResponse {
    // Groups of four, as apps that take the key by hand show it.
    let grouped: Vec<String> = enrolment
        .secret_base32
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect();
    ctx.render(
        status,
        "totp_enrol.html",
        &json!({
            "enrolment": enrolment.credential.to_string(),
            "qr_code": enrolment.qr_code.as_str(),
            "secret": grouped.join(" "),
            "error": error,
            "return_to": return_to,
        }),
    )
}

pub async fn begin_totp(Submitted { ctx, form }: Submitted<CsrfForm>) -> HttpResponse {
    let return_to = return_to(&ctx, &form.return_to).await;
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    // Adding a factor to an account that has one is as sensitive as removing one.
    match ctx.factors_of(session.user_id).await {
        Ok(factors) if ctx.state.authn.needs_step_up(&session, &factors) => {
            return step_up_first(&ctx);
        }
        Ok(_) => {}
        Err(error) => return ctx.internal_error(&error),
    }
    match ctx
        .state
        .authn
        .begin_totp_enrolment(ctx.tenant.tenant.as_ref().clone(), session)
        .await
    {
        Ok(enrolment) => {
            enrolment_view(&ctx, StatusCode::OK, &enrolment, None, return_to.as_deref())
        }
        Err(AuthnError::AlreadyEnrolled) => {
            security_view(
                &ctx,
                StatusCode::CONFLICT,
                None,
                Some("security.totp.already"),
                return_to.as_deref(),
            )
            .await
        }
        Err(error) => ctx.internal_error(&error),
    }
}

fn recovery_codes_view(
    ctx: &PageContext,
    codes: &RecoveryCodes,
    return_to: Option<&str>,
) -> HttpResponse {
    let codes: Vec<&str> = codes.codes().collect();
    ctx.render(
        StatusCode::OK,
        "recovery_codes.html",
        &json!({
            "codes": codes,
            "continue_to": return_to.map(str::to_owned).unwrap_or_else(|| ctx.path("/account/security")),
        }),
    )
}

pub async fn confirm_totp(Submitted { ctx, form }: Submitted<ConfirmForm>) -> HttpResponse {
    let return_to = return_to(&ctx, &form.return_to).await;
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let Ok(enrolment) = form.enrolment.parse() else {
        return security_view(
            &ctx,
            StatusCode::BAD_REQUEST,
            None,
            Some("security.totp.expired"),
            return_to.as_deref(),
        )
        .await;
    };
    let tenant = ctx.tenant.tenant.id;
    let result = ctx
        .state
        .authn
        .confirm_totp_enrolment(
            tenant,
            session.clone(),
            enrolment,
            Zeroizing::new(form.code),
            ctx.client(),
        )
        .await;
    match result {
        Ok(confirmed) => {
            let mut response = match &confirmed.recovery_codes {
                Some(codes) => recovery_codes_view(&ctx, codes, return_to.as_deref()),
                None => ctx.redirect(&return_to.unwrap_or_else(|| ctx.path("/account/security"))),
            };
            ctx.set_session_cookie(&mut response, &confirmed.signed_in.secret);
            response
        }
        Err(AuthnError::InvalidCode) => {
            match ctx
                .state
                .authn
                .reopen_totp_enrolment(ctx.tenant.tenant.as_ref().clone(), session, enrolment)
                .await
            {
                Ok(enrolment) => enrolment_view(
                    &ctx,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &enrolment,
                    Some("second_factor.error.invalid"),
                    return_to.as_deref(),
                ),
                Err(AuthnError::NotEnrolled) => {
                    security_view(
                        &ctx,
                        StatusCode::GONE,
                        None,
                        Some("security.totp.expired"),
                        return_to.as_deref(),
                    )
                    .await
                }
                Err(error) => ctx.internal_error(&error),
            }
        }
        Err(AuthnError::NotEnrolled) => {
            security_view(
                &ctx,
                StatusCode::GONE,
                None,
                Some("security.totp.expired"),
                return_to.as_deref(),
            )
            .await
        }
        Err(AuthnError::AlreadyEnrolled) => {
            security_view(
                &ctx,
                StatusCode::CONFLICT,
                None,
                Some("security.totp.already"),
                return_to.as_deref(),
            )
            .await
        }
        Err(AuthnError::Throttled { .. }) => {
            security_view(
                &ctx,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some("second_factor.error.throttled"),
                return_to.as_deref(),
            )
            .await
        }
        Err(error) => ctx.internal_error(&error),
    }
}

pub async fn remove_totp(Submitted { ctx, .. }: Submitted<CsrfForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    match ctx
        .state
        .authn
        .remove_totp(ctx.tenant.tenant.id, session, ctx.client())
        .await
    {
        Ok(_) => back_to_security(&ctx, "security.totp.removed"),
        Err(AuthnError::StepUpRequired) => step_up_first(&ctx),
        Err(error) => ctx.internal_error(&error),
    }
}

pub async fn regenerate_recovery_codes(Submitted { ctx, .. }: Submitted<CsrfForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    match ctx
        .state
        .authn
        .regenerate_recovery_codes(ctx.tenant.tenant.id, session, ctx.client())
        .await
    {
        Ok(codes) => recovery_codes_view(&ctx, &codes, None),
        Err(AuthnError::StepUpRequired) => step_up_first(&ctx),
        Err(AuthnError::NotEnrolled) => {
            security_view(
                &ctx,
                StatusCode::CONFLICT,
                None,
                Some("security.codes.no_factor"),
                None,
            )
            .await
        }
        Err(error) => ctx.internal_error(&error),
    }
}

csrf_protected!(ConfirmForm, CsrfForm, SecondFactorForm);

/// The user's passkeys as the security page lists them.
async fn passkey_listing(
    ctx: &PageContext,
    user: gatehouse_core::ids::UserId,
) -> Result<Vec<serde_json::Value>, AuthnError> {
    let format = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    Ok(ctx
        .state
        .authn
        .passkeys(ctx.tenant.tenant.id, user)
        .await?
        .into_iter()
        .map(|passkey| {
            json!({
                "id": passkey.id.to_string(),
                "name": passkey.name,
                "created_at": format(passkey.created_at),
                "last_used_at": passkey.last_used_at.map(format),
                "synced": passkey.backup_eligible,
            })
        })
        .collect())
}
