//! Signing in with a partner's identity provider: the start (a CSRF-protected
//! form from the sign-in page's buttons, home-realm discovery and the account
//! page's "link"), the provider's answer (the callback), and unlinking an identity
//! on the account page. The authn service does the protocol; these handlers read
//! the request, call it and map the outcome.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use gatehouse_authn::AuthnError;
use gatehouse_authn::federation::{
    Answer, Begin, Finished, Purpose, SingleLogout, UNSOLICITED_HANDLE, UpstreamStep,
};
use serde::Deserialize;
use serde_json::json;

use crate::pages::context::{PageContext, Submitted, csrf_protected};
use crate::pages::navigation::{safe_return_to, sign_in_url};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StartForm {
    csrf_token: String,
    return_to: String,
    /// `link`: a signed-in user adding the connection to their account.
    purpose: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CallbackQuery {
    state: String,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// What an identity provider posts to the assertion consumer service.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FinishQuery {
    h: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConfirmForm {
    csrf_token: String,
    h: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UnlinkForm {
    csrf_token: String,
    identity: String,
}

csrf_protected!(StartForm, UnlinkForm, ConfirmForm);

fn connection_slug(ctx: &PageContext) -> String {
    ctx.request
        .match_info()
        .get("connection")
        .unwrap_or_default()
        .to_owned()
}

/// The page that sends the browser on to the partner. A page and a script, not a
/// redirect: the form that started this allows only this site as a form target
/// (CSP `form-action` also covers the redirects after a submission), and the
/// partner is another site.
pub(super) fn continue_upstream(ctx: &PageContext, url: &str) -> HttpResponse {
    ctx.render(
        StatusCode::OK,
        "federation_redirect.html",
        &json!({ "url": url }),
    )
}

/// A bare 303: the SAML endpoints answer cross-site requests, which carry none
/// of the browser's cookies, so they set none either (a fresh CSRF cookie would
/// replace the one the sign-in is bound to).
fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

/// The next step of a federated sign-in: a page that navigates on, or (SAML
/// HTTP-POST binding) one that posts the request to the partner — its origin then
/// allowed as this page's form target.
pub(super) fn go_upstream(ctx: &PageContext, step: &UpstreamStep) -> HttpResponse {
    match step {
        UpstreamStep::Redirect(url) => continue_upstream(ctx, url),
        UpstreamStep::Post { action, fields } => {
            super::navigation::permit_redirect_to(ctx, action);
            let fields: Vec<_> = fields
                .iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect();
            ctx.render(
                StatusCode::OK,
                "form_post.html",
                &json!({ "action": action, "fields": fields }),
            )
        }
    }
}

/// Starts a federated sign-in (or, with a session, links) and sends the browser
/// to the partner.
pub(super) async fn begin(
    ctx: &PageContext,
    slug: String,
    purpose: Purpose,
    return_to: Option<String>,
    login_hint: Option<String>,
) -> HttpResponse {
    let begin = Begin {
        purpose,
        binding: ctx.csrf.value.clone(),
        base: ctx.link_base().0,
        return_to,
        login_hint,
        client: ctx.client(),
    };
    match ctx
        .state
        .authn
        .begin_federation(ctx.tenant.tenant.id, slug, begin)
        .await
    {
        Ok(step) => go_upstream(ctx, &step),
        Err(error) => federation_failure(ctx, &error),
    }
}

pub async fn start(Submitted { ctx, form }: Submitted<StartForm>) -> HttpResponse {
    let slug = connection_slug(&ctx);
    let purpose = if form.purpose == "link" {
        let Some(session) = &ctx.session else {
            return ctx.redirect(&sign_in_url(&ctx, Some(&ctx.path("/account/security"))));
        };
        // A new way into the account is as sensitive as a new second factor.
        match ctx.factors_of(session.user_id).await {
            Ok(factors) if ctx.state.authn.needs_step_up(session, &factors) => {
                return super::factors::step_up_first(&ctx);
            }
            Ok(_) => {}
            Err(error) => return ctx.internal_error(&error),
        }
        Purpose::Link {
            user: session.user_id,
        }
    } else {
        Purpose::SignIn
    };
    let return_to = match purpose {
        Purpose::Link { .. } => Some(ctx.path("/account/security")),
        Purpose::SignIn | Purpose::StepUp { .. } => safe_return_to(&ctx, &form.return_to),
    };
    begin(&ctx, slug, purpose, return_to, None).await
}

pub async fn callback(mut ctx: PageContext, query: web::Query<CallbackQuery>) -> HttpResponse {
    // The answer works once: the same URL again is refused.
    ctx.reopenable = false;
    let query = query.into_inner();
    let answer = Answer {
        state: query.state,
        code: query.code,
        error: query.error,
        error_description: query.error_description,
        iss: query.iss,
    };
    let result = ctx
        .state
        .authn
        .finish_federation(
            ctx.tenant.tenant.id,
            connection_slug(&ctx),
            answer,
            ctx.csrf.value.clone(),
            ctx.session_secret.clone(),
            ctx.client(),
        )
        .await;
    finished(&ctx, result).await
}

/// The page or redirect that ends a federated sign-in, whichever protocol it took.
async fn finished(ctx: &PageContext, result: Result<Finished, AuthnError>) -> HttpResponse {
    match result {
        Ok(Finished::SignedIn {
            signed_in,
            return_to,
        }) => {
            let target = return_to
                .and_then(|back| safe_return_to(ctx, &back))
                .unwrap_or_else(|| ctx.path("/account"));
            let mut response = ctx.redirect(&target);
            ctx.set_session_cookie(&mut response, &signed_in.secret);
            ctx.set_pending_sign_in(&mut response, None);
            response
        }
        Ok(Finished::Linked { .. }) => ctx.redirect(&format!(
            "{}?notice=federation.linked",
            ctx.path("/account/security")
        )),
        Ok(Finished::AccountExists { connection }) => ctx.render(
            StatusCode::CONFLICT,
            "message.html",
            &json!({
                "title": "federation.account_exists.title",
                "message": "federation.account_exists.message",
                "partner": connection,
                "link_href": ctx.path("/signin"),
                "link_label": "federation.account_exists.link",
            }),
        ),
        Ok(Finished::LinkMailSent { connection, mail }) => {
            ctx.state
                .authn
                .send_link_mail(ctx.tenant.tenant.id, mail, &ctx.link_base());
            ctx.render(
                StatusCode::OK,
                "message.html",
                &json!({
                    "title": "federation.link_mail.title",
                    "message": "federation.link_mail.message",
                    "partner": connection,
                }),
            )
        }
        Ok(Finished::NoAccount { .. }) => ctx.error_page(
            StatusCode::FORBIDDEN,
            "federation.no_account.title",
            "federation.no_account.message",
        ),
        Err(error) => federation_failure(ctx, &error),
    }
}

/// The public key an OIDC connection authenticates to its partner with
/// (`private_key_jwt`), as a JWK Set the partner can fetch (`jwks_uri`).
pub async fn client_jwks(ctx: PageContext) -> HttpResponse {
    match ctx
        .state
        .authn
        .connection_jwks(ctx.tenant.tenant.id, connection_slug(&ctx))
        .await
    {
        Ok(jwks) => HttpResponse::Ok()
            .content_type("application/jwk-set+json")
            .insert_header(("Cache-Control", "public, max-age=300"))
            .json(jwks),
        Err(error) => federation_failure(&ctx, &error),
    }
}

/// The connection's SAML service-provider metadata (signed), for the partner's
/// identity provider.
pub async fn saml_metadata(ctx: PageContext) -> HttpResponse {
    match ctx
        .state
        .authn
        .saml_metadata(
            ctx.tenant.tenant.id,
            connection_slug(&ctx),
            ctx.link_base().0,
        )
        .await
    {
        Ok(xml) => HttpResponse::Ok()
            .content_type("application/samlmetadata+xml")
            .insert_header(("Cache-Control", "public, max-age=3600"))
            .body(xml),
        Err(error) => federation_failure(&ctx, &error),
    }
}

/// The assertion consumer service (HTTP-POST binding). The partner's page posts
/// here cross-site, so the browser's SameSite cookies are not sent: no session,
/// no CSRF token. The response is checked and its result kept for the browser
/// that began the sign-in, which [`saml_finish`] (a GET, with the cookies) ends.
pub async fn saml_acs(mut ctx: PageContext, form: web::Form<AcsForm>) -> HttpResponse {
    // Without the browser's cookies this request would otherwise be given a fresh
    // CSRF cookie, replacing the one the sign-in is bound to.
    ctx.csrf.set_cookie = None;
    ctx.reopenable = false;
    let form = form.into_inner();
    let slug = connection_slug(&ctx);
    match ctx
        .state
        .authn
        .saml_acs(
            ctx.tenant.tenant.id,
            slug.clone(),
            ctx.link_base().0,
            form.saml_response,
            form.relay_state,
            ctx.client(),
        )
        .await
    {
        Ok(handle) => see_other(&format!(
            "{}?h={handle}",
            ctx.path(&format!("/federation/{slug}/saml/finish"))
        )),
        Err(error) => federation_failure(&ctx, &error),
    }
}

/// The end of a SAML sign-in, in the browser that began it. An IdP-initiated one
/// was begun by no browser: the person is asked first.
pub async fn saml_finish(mut ctx: PageContext, query: web::Query<FinishQuery>) -> HttpResponse {
    ctx.reopenable = false;
    let handle = query.into_inner().h;
    if handle.starts_with(UNSOLICITED_HANDLE) {
        return match ctx
            .state
            .authn
            .unsolicited_preview(ctx.tenant.tenant.id, connection_slug(&ctx), handle.clone())
            .await
        {
            Ok(preview) => ctx.render(
                StatusCode::OK,
                "federation_confirm.html",
                &json!({
                    "partner": preview.partner,
                    "account": preview.account,
                    "handle": handle,
                    "action": ctx.path(&format!("/federation/{}/saml/finish", connection_slug(&ctx))),
                }),
            ),
            Err(error) => federation_failure(&ctx, &error),
        };
    }
    let result = ctx
        .state
        .authn
        .finish_saml(
            ctx.tenant.tenant.id,
            connection_slug(&ctx),
            handle,
            ctx.csrf.value.clone(),
            ctx.session_secret.clone(),
            ctx.client(),
        )
        .await;
    finished(&ctx, result).await
}

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// A mailed link to link a partner's sign-in: shows what it links and asks, so
/// that mail scanners opening the link change nothing.
pub async fn link_page(mut ctx: PageContext, query: web::Query<LinkQuery>) -> HttpResponse {
    ctx.reopenable = false;
    let token = query.into_inner().token;
    match ctx
        .state
        .authn
        .link_offer(ctx.tenant.tenant.id, token.clone(), ctx.csrf.value.clone())
        .await
    {
        Ok(offer) => ctx.render(
            StatusCode::OK,
            "federation_confirm.html",
            &json!({
                "title_key": "federation.link_confirm.title",
                "message_key": "federation.link_confirm.message",
                "continue_key": "federation.link_confirm.continue",
                "partner": offer.partner,
                "account": offer.account,
                "handle": token,
                "action": ctx.path("/federation/link"),
            }),
        ),
        Err(error) => link_failure(&ctx, &error),
    }
}

/// The owner of the mailed address confirmed: the partner's identity is linked.
pub async fn link_confirm(Submitted { ctx, form }: Submitted<ConfirmForm>) -> HttpResponse {
    match ctx
        .state
        .authn
        .confirm_link(
            ctx.tenant.tenant.id,
            form.h,
            ctx.csrf.value.clone(),
            ctx.client(),
        )
        .await
    {
        Ok(partner) => ctx.render(
            StatusCode::OK,
            "message.html",
            &json!({
                "title": "federation.link_done.title",
                "message": "federation.link_done.message",
                "partner": partner,
                "link_href": ctx.path("/signin"),
                "link_label": "federation.link_done.link",
            }),
        ),
        Err(error) => link_failure(&ctx, &error),
    }
}

fn link_failure(ctx: &PageContext, error: &AuthnError) -> HttpResponse {
    match error {
        AuthnError::InvalidLink => ctx.error_page(
            StatusCode::BAD_REQUEST,
            "federation.link_invalid.title",
            "federation.link_invalid.message",
        ),
        other => federation_failure(ctx, other),
    }
}

/// The person confirmed an IdP-initiated sign-in on this site's page.
pub async fn saml_confirm(Submitted { ctx, form }: Submitted<ConfirmForm>) -> HttpResponse {
    let result = ctx
        .state
        .authn
        .finish_unsolicited(
            ctx.tenant.tenant.id,
            connection_slug(&ctx),
            form.h,
            ctx.session_secret.clone(),
            ctx.client(),
        )
        .await;
    finished(&ctx, result).await
}

/// Single logout with a SAML identity provider (HTTP-Redirect): its answer to a
/// sign-out begun here, or its own request to sign its user out here.
pub async fn saml_slo(mut ctx: PageContext) -> HttpResponse {
    ctx.reopenable = false;
    let query = ctx.request.query_string().to_owned();
    match ctx
        .state
        .authn
        .saml_single_logout(
            ctx.tenant.tenant.id,
            connection_slug(&ctx),
            ctx.link_base().0,
            query,
            ctx.csrf.value.clone(),
            ctx.client(),
        )
        .await
    {
        Ok(SingleLogout::SignedOut) => ctx.redirect(&ctx.path("/signin")),
        Ok(SingleLogout::Answer(url)) => see_other(&url),
        Err(error) => federation_failure(&ctx, &error),
    }
}

/// Where a partner sends the browser back after signing out there.
pub async fn logged_out(ctx: PageContext) -> HttpResponse {
    ctx.redirect(&ctx.path("/signin"))
}

pub async fn unlink(Submitted { ctx, form }: Submitted<UnlinkForm>) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&sign_in_url(&ctx, Some(&ctx.path("/account/security"))));
    };
    let Ok(identity) = form.identity.parse() else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "error.not_found.title",
            "error.not_found.message",
        );
    };
    match ctx
        .state
        .authn
        .unlink_identity(session, identity, ctx.client())
        .await
    {
        Ok(()) => ctx.redirect(&format!(
            "{}?notice=federation.unlinked",
            ctx.path("/account/security")
        )),
        Err(AuthnError::StepUpRequired) => super::factors::step_up_first(&ctx),
        Err(AuthnError::LastSignInMethod) => {
            super::factors::security_view(
                &ctx,
                StatusCode::CONFLICT,
                None,
                Some("federation.error.last_method"),
                None,
            )
            .await
        }
        Err(AuthnError::Store(gatehouse_identity_store::StoreError::NotFound { .. })) => ctx
            .error_page(
                StatusCode::NOT_FOUND,
                "error.not_found.title",
                "error.not_found.message",
            ),
        Err(error) => ctx.authn_failure(&error),
    }
}

/// A refused federated sign-in: a page saying so, with the refusal's code as a
/// reference for support (the detail stays in the log and the audit record).
fn federation_failure(ctx: &PageContext, error: &AuthnError) -> HttpResponse {
    let AuthnError::Federation(refusal) = error else {
        return ctx.authn_failure(error);
    };
    tracing::info!(code = refusal.code, detail = %refusal.detail, "federated sign-in refused");
    let status = match refusal.code {
        "connection_unknown" => StatusCode::NOT_FOUND,
        "acs_throttled" => StatusCode::TOO_MANY_REQUESTS,
        "oidc_discovery" | "oidc_token" | "oidc_userinfo" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    };
    ctx.render(
        status,
        "message.html",
        &json!({
            "title": "federation.refused.title",
            "message": "federation.refused.message",
            "reference": refusal.code,
            "link_href": ctx.path("/signin"),
            "link_label": "federation.refused.link",
        }),
    )
}
