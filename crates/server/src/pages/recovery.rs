//! Account recovery pages: "forgot password", the reset link (with the second
//! factor when the account has one), lost factors with a cooling-off, and its
//! cancellation. The rules live in `gatehouse_authn::recovery`; these pages only
//! ask and answer. Every link's GET only shows a form: mail scanners that fetch
//! links must not spend or cancel anything.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::passkeys::PublicKeyCredential;
use gatehouse_authn::recovery::{FactorRecoveryStatus, PasskeyProof, ResetProof, ResetTicket};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::pages::context::{PageContext, Submitted, csrf_protected};
use crate::pages::passkeys::relying_party;

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
    /// `totp`, `recovery_code`, `passkey` or empty.
    method: String,
    code: String,
    /// With `passkey`: the ceremony begun at `/recover/passkey/begin` and the
    /// browser's assertion (JSON), filled in by `passkeys.js`.
    passkey_challenge: String,
    passkey_credential: String,
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
    // Only the proofs the account has are offered.
    let (totp, recovery_codes, passkey) = match ticket {
        Some(ResetTicket::NeedsSecondFactor {
            totp,
            recovery_codes,
            passkey,
            ..
        }) => (*totp, *recovery_codes, *passkey),
        _ => (false, false, false),
    };
    let methods: Vec<&str> = [
        (passkey, "passkey"),
        (totp, "totp"),
        (recovery_codes, "recovery_code"),
    ]
    .into_iter()
    .filter_map(|(owned, name)| owned.then_some(name))
    .collect();
    // Without script a passkey cannot be used: a code, when there is one, is chosen
    // first, and `passkeys.js` prefers the passkey where the browser has them.
    let default_method = methods
        .iter()
        .find(|method| **method != "passkey")
        .or(methods.first())
        .copied()
        .unwrap_or_default();
    ctx.render(
        status,
        "recover.html",
        &json!({
            "mode": mode,
            "token": token,
            "needs_factor": matches!(ticket, Some(ResetTicket::NeedsSecondFactor { .. })),
            "methods": methods,
            "default_method": default_method,
            "totp": totp,
            "recovery_codes": recovery_codes,
            "passkey": passkey,
            "error": error,
            "password_suggestions": suggestions,
            "min_length": ctx.state.authn.password_policy().min_length(),
        }),
    )
}

/// A factor recovery still in its cooling-off: when it unlocks, in the reader's
/// language, and no form (it could not be sent before then).
fn recovery_waiting(
    ctx: &PageContext,
    status: StatusCode,
    ready_at: chrono::DateTime<chrono::Utc>,
) -> HttpResponse {
    ctx.render(
        status,
        "recover.html",
        &json!({
            "mode": "waiting",
            "ready_at": ctx.state.ui.format_time(&ctx.locale, ready_at),
        }),
    )
}

/// The reset's proof from the submitted form. A passkey assertion is bound to this
/// browser's CSRF cookie, as its ceremony was when it began.
fn reset_proof(ctx: &PageContext, form: &mut ResetForm) -> Result<ResetProof, &'static str> {
    let code = Zeroizing::new(std::mem::take(&mut form.code));
    Ok(match form.method.as_str() {
        "totp" => ResetProof::Totp(code),
        "recovery_code" => ResetProof::RecoveryCode(code),
        "passkey" if form.passkey_credential.is_empty() => ResetProof::None,
        "passkey" => {
            let response: PublicKeyCredential = serde_json::from_str(&form.passkey_credential)
                .map_err(|_| "passkeys.error.failed")?;
            let rp = relying_party(ctx).map_err(|error| {
                tracing::error!(%error, "no relying party for a passkey reset");
                "passkeys.error.failed"
            })?;
            ResetProof::Passkey(Box::new(PasskeyProof {
                challenge_id: form.passkey_challenge.clone(),
                binding: ctx.csrf.value.clone(),
                response,
                rp,
            }))
        }
        _ => ResetProof::None,
    })
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

pub async fn reset(Submitted { ctx, mut form }: Submitted<ResetForm>) -> HttpResponse {
    let tenant = ctx.tenant.tenant.id;
    let result = match reset_proof(&ctx, &mut form) {
        Ok(proof) => {
            ctx.state
                .authn
                .complete_password_reset(
                    tenant,
                    form.token.clone(),
                    proof,
                    Zeroizing::new(std::mem::take(&mut form.new_password)),
                    ctx.client(),
                )
                .await
        }
        Err(unreadable) => Err(AuthnError::PasskeyRejected(unreadable.into())),
    };
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
        Err(AuthnError::PasskeyRejected(_) | AuthnError::InvalidCredentials) => {
            again(StatusCode::UNAUTHORIZED, "passkeys.error.rejected", &[]).await
        }
        Err(AuthnError::ChallengeInvalid) => {
            again(StatusCode::BAD_REQUEST, "passkeys.error.expired", &[]).await
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
    match ctx
        .state
        .authn
        .open_factor_recovery(ctx.tenant.tenant.id, token.clone(), ctx.client())
        .await
    {
        Ok(FactorRecoveryStatus::Ready { .. }) => {
            recover_view(&ctx, StatusCode::OK, "factors", &token, None, None, &[])
        }
        Ok(FactorRecoveryStatus::Waiting { ready_at }) => {
            recovery_waiting(&ctx, StatusCode::OK, ready_at)
        }
        Ok(FactorRecoveryStatus::Cancelled) => message(
            &ctx,
            StatusCode::GONE,
            "recover.cancelled.title",
            "recover.cancelled.message",
        ),
        Err(error) => refused(&ctx, &error),
    }
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
        Err(AuthnError::RecoveryNotReady { ready_at }) => {
            recovery_waiting(&ctx, StatusCode::CONFLICT, ready_at)
        }
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
