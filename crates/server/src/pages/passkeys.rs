//! Passkeys (WebAuthn) on the pages: adding one on the security page, passwordless
//! sign-in, and a passkey as the second factor after a password or for step-up.
//!
//! Each ceremony is two JSON calls from `passkeys.js`: `…/begin` answers the options
//! for `navigator.credentials.create()`/`get()` and a challenge id, `…/finish` takes
//! the browser's answer. Both are POSTs with the page's CSRF token in the
//! `X-CSRF-Token` header. The ceremony is bound to something only this browser
//! holds: the session cookie's secret once signed in, the pending sign-in token
//! after a password, and the CSRF cookie before any of those.
//!
//! Errors come back as JSON `{"error": code, "message": readable text}`, with a
//! `redirect` where the page should go instead (to pass a second factor first, or to
//! sign in again). Removing a passkey is an ordinary form.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::passkeys::{
    PublicKeyCredential, RegisterPublicKeyCredential, RelyingParty, Url,
};
use gatehouse_authn::second_factor::SecondFactor;
use gatehouse_core::ids::{CredentialId, UserId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::http::answer::{Answer, answered};
use crate::pages::context::{PageContext, Submitted, csrf_protected};
use crate::pages::factors::{security_view, step_up_first};
use crate::pages::navigation::{return_to, second_factor_url, sign_in_url};

/// The request header that carries the page's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Deserialize, Default)]
#[serde(default)]
struct BeginRequest {
    /// Passwordless sign-in through the browser's autofill rather than a dialog.
    conditional: bool,
}

#[derive(Deserialize)]
struct BeginReset {
    /// The reset link's token.
    token: String,
}

#[derive(Deserialize)]
struct FinishRegistration {
    challenge_id: String,
    #[serde(default)]
    name: String,
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize)]
struct FinishAuthentication {
    challenge_id: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    return_to: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RemoveForm {
    csrf_token: String,
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

fn json_error(ctx: &PageContext, status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_response(
        status,
        &json!({
            "error": code,
            "message": ctx.state.ui.translate(&ctx.locale, message),
        }),
    )
}

/// An error that sends the page elsewhere (`redirect`).
fn json_redirect_error(
    ctx: &PageContext,
    status: StatusCode,
    code: &str,
    message: &str,
    redirect: &str,
) -> HttpResponse {
    json_response(
        status,
        &json!({
            "error": code,
            "message": ctx.state.ui.translate(&ctx.locale, message),
            "redirect": redirect,
        }),
    )
}

fn csrf_ok(ctx: &PageContext) -> bool {
    let submitted = ctx
        .request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ctx.csrf_ok(submitted)
}

/// A ceremony's options for the browser, with the id that names it at finish.
fn challenge_response(challenge_id: &str, options: &impl serde::Serialize) -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({ "challenge_id": challenge_id, "options": options }),
    )
}

fn csrf_rejected(ctx: &PageContext) -> HttpResponse {
    json_error(ctx, StatusCode::FORBIDDEN, "csrf", "error.csrf.message")
}

/// The request body as `T`, or `None` when it is not that JSON.
fn parse<T: DeserializeOwned>(body: &web::Bytes) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn bad_request(ctx: &PageContext) -> HttpResponse {
    json_error(
        ctx,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "passkeys.error.failed",
    )
}

pub(crate) fn relying_party(ctx: &PageContext) -> Result<RelyingParty, AuthnError> {
    let origin = Url::parse(&ctx.tenant.origin)
        .map_err(|_| AuthnError::Internal(format!("{} is not a URL", ctx.tenant.origin)))?;
    RelyingParty::for_origin(&origin, &ctx.tenant.tenant.display_name)
}

/// The JSON answer for a refused or failed ceremony.
fn authn_error(ctx: &PageContext, error: AuthnError) -> HttpResponse {
    match error {
        AuthnError::ChallengeInvalid => json_error(
            ctx,
            StatusCode::BAD_REQUEST,
            "challenge_invalid",
            "passkeys.error.expired",
        ),
        AuthnError::PasskeyRejected(why) => {
            tracing::info!(%why, "passkey refused");
            json_error(
                ctx,
                StatusCode::BAD_REQUEST,
                "passkey_rejected",
                "passkeys.error.rejected",
            )
        }
        AuthnError::PasskeyAlreadyRegistered => json_error(
            ctx,
            StatusCode::CONFLICT,
            "already_registered",
            "passkeys.error.already_registered",
        ),
        AuthnError::NotEnrolled => json_error(
            ctx,
            StatusCode::BAD_REQUEST,
            "not_enrolled",
            "passkeys.error.none",
        ),
        AuthnError::Throttled { .. } => json_error(
            ctx,
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "passkeys.error.throttled",
        ),
        AuthnError::InvalidCredentials => json_error(
            ctx,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "passkeys.error.rejected",
        ),
        AuthnError::InvalidLink | AuthnError::SessionEnded => json_redirect_error(
            ctx,
            StatusCode::UNAUTHORIZED,
            "sign_in_again",
            "passkeys.error.sign_in_again",
            &sign_in_url(ctx, None),
        ),
        other => {
            tracing::error!(error = %other, "passkey ceremony failed");
            json_error(
                ctx,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "error.internal.message",
            )
        }
    }
}

// ---- adding a passkey (signed in) ----

/// The signed-in user and their session secret, if adding a passkey is allowed now:
/// an account that has a second factor must have passed it recently.
async fn may_add(ctx: &PageContext) -> Result<(UserId, String), HttpResponse> {
    let (Some(session), Some(secret)) = (ctx.session.clone(), ctx.session_secret.clone()) else {
        return Err(json_redirect_error(
            ctx,
            StatusCode::UNAUTHORIZED,
            "sign_in_again",
            "passkeys.error.sign_in_again",
            &sign_in_url(ctx, Some(&ctx.path("/account/security"))),
        ));
    };
    let factors = ctx
        .factors_of(session.user_id)
        .await
        .map_err(|error| authn_error(ctx, error))?;
    if ctx.state.authn.needs_step_up(&session, &factors) {
        return Err(json_redirect_error(
            ctx,
            StatusCode::FORBIDDEN,
            "step_up_required",
            "passkeys.error.step_up",
            &second_factor_url(ctx, Some(&ctx.path("/account/security"))),
        ));
    }
    Ok((session.user_id, secret))
}

pub async fn begin_registration(ctx: PageContext) -> Answer {
    if !csrf_ok(&ctx) {
        return Ok(csrf_rejected(&ctx));
    }
    let (user, binding) = may_add(&ctx).await.map_err(answered)?;
    let rp = relying_party(&ctx).map_err(|error| answered(authn_error(&ctx, error)))?;
    let challenge = ctx
        .state
        .authn
        .begin_passkey_registration(ctx.tenant.tenant.id, user, binding, rp)
        .await
        .map_err(|error| answered(authn_error(&ctx, error)))?;
    Ok(challenge_response(
        &challenge.challenge_id,
        &challenge.options,
    ))
}

pub async fn finish_registration(ctx: PageContext, body: web::Bytes) -> Answer {
    if !csrf_ok(&ctx) {
        return Ok(csrf_rejected(&ctx));
    }
    let Some(request) = parse::<FinishRegistration>(&body) else {
        return Ok(bad_request(&ctx));
    };
    let (user, binding) = may_add(&ctx).await.map_err(answered)?;
    let rp = relying_party(&ctx).map_err(|error| answered(authn_error(&ctx, error)))?;
    let tenant = ctx.tenant.tenant.id;
    let added = ctx
        .state
        .authn
        .finish_passkey_registration(
            tenant,
            user,
            binding,
            request.challenge_id,
            request.name,
            request.credential,
            rp,
            ctx.client(),
        )
        .await;
    let passkey = added.map_err(|error| answered(authn_error(&ctx, error)))?;
    // The first second factor of the account: its recovery codes, shown once by
    // the page (they are not kept in a readable form).
    let codes = match ctx.state.authn.first_recovery_codes(tenant, user).await {
        Ok(codes) => codes.map(|codes| codes.codes().map(str::to_owned).collect::<Vec<_>>()),
        Err(error) => return Ok(authn_error(&ctx, error)),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "passkey": { "id": passkey.id.to_string(), "name": passkey.name },
            "recovery_codes": codes,
            "redirect": ctx.path("/account/security"),
        }),
    ))
}

pub async fn remove(
    Submitted { ctx, .. }: Submitted<RemoveForm>,
    path: web::Path<(String,)>,
) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let tenant = ctx.tenant.tenant.id;
    let Ok(passkey) = path.into_inner().0.parse::<CredentialId>() else {
        return security_view(
            &ctx,
            StatusCode::NOT_FOUND,
            None,
            Some("passkeys.error.not_found"),
            None,
        )
        .await;
    };
    match ctx.state.authn.factors(tenant, session.user_id).await {
        Ok(factors) if ctx.state.authn.needs_step_up(&session, &factors) => {
            return step_up_first(&ctx);
        }
        Ok(_) => {}
        Err(error) => return ctx.internal_error(&error),
    }
    match ctx
        .state
        .authn
        .remove_passkey(tenant, session.user_id, passkey, ctx.client())
        .await
    {
        Ok(()) => super::factors::back_to_security(&ctx, "passkeys.removed"),
        Err(AuthnError::NotEnrolled) => {
            security_view(
                &ctx,
                StatusCode::NOT_FOUND,
                None,
                Some("passkeys.error.not_found"),
                None,
            )
            .await
        }
        Err(error) => ctx.internal_error(&error),
    }
}

// ---- passwordless sign-in ----

pub async fn begin_sign_in(ctx: PageContext, body: web::Bytes) -> HttpResponse {
    if !csrf_ok(&ctx) {
        return csrf_rejected(&ctx);
    }
    let request = if body.is_empty() {
        BeginRequest::default()
    } else {
        match parse::<BeginRequest>(&body) {
            Some(request) => request,
            None => return bad_request(&ctx),
        }
    };
    let rp = match relying_party(&ctx) {
        Ok(rp) => rp,
        Err(error) => return authn_error(&ctx, error),
    };
    let tenant = ctx.tenant.tenant.id;
    // Before any session: the CSRF cookie is what only this browser has.
    let binding = ctx.csrf.value.clone();
    let begun = if request.conditional {
        ctx.state
            .authn
            .begin_conditional_passkey_authentication(tenant, binding, rp)
            .await
    } else {
        ctx.state
            .authn
            .begin_passkey_authentication(tenant, binding, rp, None)
            .await
    };
    match begun {
        Ok(challenge) => challenge_response(&challenge.challenge_id, &challenge.options),
        Err(error) => authn_error(&ctx, error),
    }
}

/// The answer to a finished sign-in: the new session's cookie, the pending sign-in
/// cleared, and where to go.
fn signed_in_response(ctx: &PageContext, secret: &str, return_to: Option<String>) -> HttpResponse {
    let redirect = return_to.unwrap_or_else(|| ctx.path("/account"));
    let mut response = json_response(StatusCode::OK, &json!({ "redirect": redirect }));
    ctx.set_session_cookie(&mut response, secret);
    ctx.set_pending_sign_in(&mut response, None);
    response
}

pub async fn finish_sign_in(ctx: PageContext, body: web::Bytes) -> HttpResponse {
    if !csrf_ok(&ctx) {
        return csrf_rejected(&ctx);
    }
    let Some(request) = parse::<FinishAuthentication>(&body) else {
        return bad_request(&ctx);
    };
    let rp = match relying_party(&ctx) {
        Ok(rp) => rp,
        Err(error) => return authn_error(&ctx, error),
    };
    let tenant = ctx.tenant.tenant.id;
    let authenticated = ctx
        .state
        .authn
        .finish_passkey_authentication(
            tenant,
            ctx.csrf.value.clone(),
            request.challenge_id,
            request.credential,
            rp,
            ctx.client(),
        )
        .await;
    let authenticated = match authenticated {
        Ok(authenticated) => authenticated,
        Err(error) => return authn_error(&ctx, error),
    };
    let return_to = return_to(&ctx, &request.return_to).await;
    match ctx
        .state
        .authn
        .sign_in_with_passkey(
            tenant,
            authenticated,
            ctx.session_secret.clone(),
            ctx.client(),
        )
        .await
    {
        Ok(signed_in) => signed_in_response(&ctx, &signed_in.secret, return_to),
        Err(error) => authn_error(&ctx, error),
    }
}

// ---- a passkey as the proof of a password reset ----

/// Begins the passkey ceremony of a reset link's page. Bound, like a passwordless
/// sign-in, to the CSRF cookie; the assertion goes back with the reset form
/// (`pages/recovery.rs`), which authn checks against this ceremony and link.
pub async fn begin_reset(ctx: PageContext, body: web::Bytes) -> HttpResponse {
    if !csrf_ok(&ctx) {
        return csrf_rejected(&ctx);
    }
    let Some(request) = parse::<BeginReset>(&body) else {
        return bad_request(&ctx);
    };
    let rp = match relying_party(&ctx) {
        Ok(rp) => rp,
        Err(error) => return authn_error(&ctx, error),
    };
    match ctx
        .state
        .authn
        .begin_reset_passkey(
            ctx.tenant.tenant.id,
            request.token,
            ctx.csrf.value.clone(),
            rp,
            ctx.client(),
        )
        .await
    {
        Ok(challenge) => challenge_response(&challenge.challenge_id, &challenge.options),
        // The link is used, expired or unknown: ask for a new one.
        Err(AuthnError::InvalidLink) => json_redirect_error(
            &ctx,
            StatusCode::BAD_REQUEST,
            "invalid_link",
            "verify.invalid.message",
            &ctx.path("/recover/request"),
        ),
        Err(error) => authn_error(&ctx, error),
    }
}

// ---- a passkey as the second factor ----

/// Who passes the second factor: a sign-in waiting for it (its token), or the
/// signed-in user stepping up (their session secret). The binding is that secret.
enum Asker {
    Pending { token: String, user: UserId },
    Session { secret: String, user: UserId },
}

impl Asker {
    fn user(&self) -> UserId {
        match self {
            Asker::Pending { user, .. } | Asker::Session { user, .. } => *user,
        }
    }

    fn binding(&self) -> String {
        match self {
            Asker::Pending { token, .. } => token.clone(),
            Asker::Session { secret, .. } => secret.clone(),
        }
    }
}

async fn asker(ctx: &PageContext) -> Result<Asker, HttpResponse> {
    let tenant = ctx.tenant.tenant.id;
    if let Some(token) = ctx.pending_sign_in() {
        match ctx.state.authn.pending_sign_in(tenant, token.clone()).await {
            Ok((user, _)) => return Ok(Asker::Pending { token, user }),
            Err(AuthnError::InvalidLink) => {}
            Err(other) => return Err(authn_error(ctx, other)),
        }
    }
    match (&ctx.session, &ctx.session_secret) {
        (Some(session), Some(secret)) => Ok(Asker::Session {
            secret: secret.clone(),
            user: session.user_id,
        }),
        _ => Err(authn_error(ctx, AuthnError::InvalidLink)),
    }
}

pub async fn begin_second_factor(ctx: PageContext) -> Answer {
    if !csrf_ok(&ctx) {
        return Ok(csrf_rejected(&ctx));
    }
    let asker = asker(&ctx).await.map_err(answered)?;
    let rp = relying_party(&ctx).map_err(|error| answered(authn_error(&ctx, error)))?;
    let challenge = ctx
        .state
        .authn
        .begin_passkey_authentication(
            ctx.tenant.tenant.id,
            asker.binding(),
            rp,
            Some(asker.user()),
        )
        .await
        .map_err(|error| answered(authn_error(&ctx, error)))?;
    Ok(challenge_response(
        &challenge.challenge_id,
        &challenge.options,
    ))
}

pub async fn finish_second_factor(ctx: PageContext, body: web::Bytes) -> Answer {
    if !csrf_ok(&ctx) {
        return Ok(csrf_rejected(&ctx));
    }
    let Some(request) = parse::<FinishAuthentication>(&body) else {
        return Ok(bad_request(&ctx));
    };
    let asker = asker(&ctx).await.map_err(answered)?;
    let rp = relying_party(&ctx).map_err(|error| answered(authn_error(&ctx, error)))?;
    let tenant = ctx.tenant.tenant.id;
    let authenticated = ctx
        .state
        .authn
        .finish_passkey_authentication(
            tenant,
            asker.binding(),
            request.challenge_id,
            request.credential,
            rp,
            ctx.client(),
        )
        .await;
    let factor = match authenticated {
        Ok(authenticated) => SecondFactor::Passkey(authenticated),
        Err(error) => return Ok(authn_error(&ctx, error)),
    };
    let return_to = return_to(&ctx, &request.return_to).await;
    let result = match (asker, ctx.session.clone()) {
        (Asker::Pending { token, .. }, _) => {
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
        (Asker::Session { .. }, Some(session)) => {
            ctx.state
                .authn
                .step_up(tenant, session, factor, ctx.client())
                .await
        }
        (Asker::Session { .. }, None) => Err(AuthnError::SessionEnded),
    };
    Ok(match result {
        Ok(signed_in) => signed_in_response(&ctx, &signed_in.secret, return_to),
        Err(error) => authn_error(&ctx, error),
    })
}

csrf_protected!(RemoveForm);
