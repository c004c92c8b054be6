//! The authorization endpoint (RFC 6749 §4.1, OIDC Core §3.1.2): validate the request,
//! make sure the user is signed in recently enough, ask for consent where needed, and
//! send a single-use code back to the client (query or form_post, with `iss` per
//! RFC 9207).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpResponse, web};
use gatehouse_consent::ConsentError;
use gatehouse_identity_store::grants::Authentication;
use gatehouse_token_issuer::acr;
use gatehouse_token_issuer::code_flow::{AuthorizationRequest, AuthorizeError, ValidRequest};
use gatehouse_token_issuer::oauth_error::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::http::answer::{Answer, answered};
use crate::http::input;
use crate::http::security::FormTarget;
use crate::pages::context::{PageContext, Submitted, csrf_protected};
use crate::pages::navigation::{self, permit_redirect_to};
use crate::ui::Locale;

/// Internal marker added when the user is sent to sign in because the request
/// demands a new sign-in (`prompt=login`, unmet `acr_values`): the session must be
/// newer than the time it carries. It is sealed with the master key, so it cannot be
/// forged to skip the sign-in, and expires, so an old one cannot be replayed.
const LOGIN_AFTER: &str = "gh_login_after";
const LOGIN_AFTER_AAD: &[u8] = b"gatehouse/authorize/login-after/v1";
const LOGIN_AFTER_VALIDITY_SECS: i64 = 15 * 60;

fn parse_request(query: &str) -> (AuthorizationRequest, Option<String>) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let request =
        AuthorizationRequest::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let login_after = pairs
        .into_iter()
        .find(|(name, _)| name == LOGIN_AFTER)
        .map(|(_, value)| value);
    (request, login_after)
}

fn seal_login_after(ctx: &PageContext, at: i64) -> String {
    ctx.state.cipher.seal(&at.to_be_bytes(), LOGIN_AFTER_AAD)
}

/// The time a marker demands a sign-in after; `None` if forged or stale.
fn open_login_after(ctx: &PageContext, marker: &str) -> Option<i64> {
    let bytes = ctx.state.cipher.open(marker, LOGIN_AFTER_AAD).ok()?;
    let at = i64::from_be_bytes(bytes.as_slice().try_into().ok()?);
    let now = ctx.state.clock.now().timestamp();
    (at <= now && now - at <= LOGIN_AFTER_VALIDITY_SECS).then_some(at)
}

/// Whether the request needs the user to (re-)authenticate first, and whether that
/// sign-in is forced (must be newer than now) rather than merely missing.
fn login_needed(ctx: &PageContext, valid: &ValidRequest, login_after: Option<i64>) -> (bool, bool) {
    let now = ctx.state.clock.now();
    let forced = valid.prompt.iter().any(|p| p == "login");
    let needed = match &ctx.session {
        None => true,
        Some(session) => {
            let auth_time = session.auth_time();
            let too_old = valid
                .max_age
                .is_some_and(|max| (now - auth_time).num_seconds() > max);
            let before_forced_login =
                login_after.is_some_and(|after| auth_time.timestamp() < after);
            too_old || before_forced_login || (forced && login_after.is_none())
        }
    };
    (needed, forced)
}

fn issuer(ctx: &PageContext) -> String {
    format!("{}{}", ctx.tenant.origin, ctx.tenant.base_path)
}

/// Sends the response parameters to the client's redirect URI.
fn respond(
    ctx: &PageContext,
    request: &ValidRequest,
    mut params: Vec<(&'static str, String)>,
) -> HttpResponse {
    if let Some(state) = &request.state {
        params.push(("state", state.clone()));
    }
    params.push(("iss", issuer(ctx)));
    if request.form_post {
        // CSP's form-action must let this one form post to the client.
        match FormTarget::origin_of(&request.redirect_uri) {
            Some(target) => {
                ctx.request.extensions_mut().insert(target);
            }
            None => return ctx.oauth_error(),
        }
        let fields: Vec<_> = params
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        return ctx.render(
            StatusCode::OK,
            "form_post.html",
            &json!({ "action": request.redirect_uri, "fields": fields }),
        );
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let separator = if request.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    HttpResponse::SeeOther()
        .insert_header((
            header::LOCATION,
            format!("{}{separator}{query}", request.redirect_uri),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn respond_error(
    ctx: &PageContext,
    request: &ValidRequest,
    error: ErrorCode,
    description: &str,
) -> HttpResponse {
    respond(
        ctx,
        request,
        vec![
            ("error", error.as_str().to_owned()),
            ("error_description", description.to_owned()),
        ],
    )
}

fn handle_error(ctx: &PageContext, error: AuthorizeError) -> HttpResponse {
    match error {
        AuthorizeError::Page(reason) => {
            tracing::info!(reason, "authorization request refused without redirect");
            ctx.oauth_error()
        }
        AuthorizeError::Redirect {
            request,
            error,
            description,
        } => respond_error(ctx, &request, error, &description),
    }
}

async fn validate(
    ctx: &PageContext,
    request: AuthorizationRequest,
) -> Result<ValidRequest, HttpResponse> {
    let validated =
        ctx.with_issuer(move |issuer, tenant| issuer.validate_authorization(tenant, &request));
    match validated.await {
        Ok(Ok(valid)) => Ok(valid),
        Ok(Err(error)) => Err(handle_error(ctx, error)),
        Err(_) => Err(ctx.unavailable()),
    }
}

/// Continues a validated request for a signed-in user: consent, then the code.
async fn proceed(ctx: &PageContext, valid: ValidRequest, query: &str) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let (user, check) = (session.user_id, valid.clone());
    let asked = ctx.with_issuer(move |issuer, tenant| issuer.needs_consent(tenant, user, &check));
    let needs_consent = match asked.await {
        Ok(Ok(needed)) => needed,
        _ => return ctx.unavailable(),
    };
    if needs_consent {
        if valid.prompt.iter().any(|p| p == "none") {
            return respond_error(
                ctx,
                &valid,
                ErrorCode::ConsentRequired,
                "the user has not approved this client",
            );
        }
        permit_redirect_to(ctx, &valid.redirect_uri);
        // The purposes behind the scopes, so the approval is informed and recorded
        // per purpose and version (the form names the versions shown).
        let consents = ctx.state.consents.clone();
        let tenant = ctx.tenant.tenant.id;
        let scopes = valid.scopes.clone();
        let client_id = valid.client.data.client_id.clone();
        let asked =
            web::block(move || consents.purposes_to_approve(tenant, user, &client_id, &scopes));
        let purposes = match asked.await {
            Ok(Ok(purposes)) => purposes,
            _ => return ctx.unavailable(),
        };
        let shown: Vec<String> = purposes
            .iter()
            .map(|p| format!("{}:{}", p.purpose.slug, p.purpose.version))
            .collect();
        let purposes: Vec<_> = purposes
            .iter()
            .map(|p| {
                json!({
                    "name": p.purpose.name,
                    "description": p.purpose.description,
                    "change": p.change,
                })
            })
            .collect();
        return ctx.render(
            StatusCode::OK,
            "consent.html",
            &json!({
                "client_name": valid.client.data.name,
                "scopes": scope_descriptions(ctx, &valid.scopes),
                "request": query,
                "purposes": purposes,
                "purposes_shown": shown.join(" "),
            }),
        );
    }
    issue(ctx, valid).await
}

/// Each scope with the message key that says in words what it lets the client see
/// (`scope.<name>`, from the tenant's theme messages or the catalogue); a scope
/// without one is shown by name.
fn scope_descriptions(ctx: &PageContext, scopes: &[String]) -> Vec<serde_json::Value> {
    scopes
        .iter()
        .map(|scope| {
            let key = format!("scope.{scope}");
            let key = ctx
                .state
                .ui
                .has_tenant_message(&ctx.theme, &key)
                .then_some(key);
            json!({ "name": scope, "key": key })
        })
        .collect()
}

async fn issue(ctx: &PageContext, valid: ValidRequest) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let authentication = Authentication {
        user_id: session.user_id,
        session_id: session.id,
        auth_time: session.auth_time(),
        acr: Some(acr::for_level(u8::try_from(session.aal).unwrap_or(0)).to_owned()),
        amr: session.amr(),
    };
    let request = valid.clone();
    let issued =
        ctx.with_issuer(move |issuer, tenant| issuer.issue_code(tenant, &request, authentication));
    match issued.await {
        Ok(Ok(code)) => respond(ctx, &valid, vec![("code", code)]),
        _ => respond_error(
            ctx,
            &valid,
            ErrorCode::ServerError,
            "the code could not be issued",
        ),
    }
}

pub async fn authorize(ctx: PageContext) -> Answer {
    let query = ctx.request.query_string().to_owned();
    let (request, marker) = parse_request(&query);
    let valid = validate(&ctx, request).await.map_err(answered)?;
    let now = ctx.state.clock.now();
    let prompt_login = valid.prompt.iter().any(|p| p == "login");
    let login_after = marker.as_deref().and_then(|m| open_login_after(&ctx, m));
    let (needs_login, forced) = login_needed(&ctx, &valid, login_after);
    if needs_login {
        if valid.prompt.iter().any(|p| p == "none") {
            return Ok(respond_error(
                &ctx,
                &valid,
                ErrorCode::LoginRequired,
                "the user is not signed in",
            ));
        }
        // Come back here after signing in; a forced login must produce a new auth_time.
        let mut back: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .filter(|(name, _)| name != LOGIN_AFTER && !(prompt_login && name == "prompt"))
            .collect();
        if forced {
            back.push((LOGIN_AFTER.into(), seal_login_after(&ctx, now.timestamp())));
        }
        let back = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(back)
            .finish();
        let return_to = format!("{}?{back}", ctx.path("/authorize"));
        let mut target = form_urlencoded::Serializer::new(String::new());
        target.append_pair("return_to", &return_to);
        if let Some(hint) = &valid.login_hint {
            target.append_pair("login_hint", hint);
        }
        // OIDC Core §3.1.2.1: the first of ui_locales that a catalogue exists for.
        if let Some(locale) = valid
            .ui_locales
            .as_deref()
            .and_then(|tags| tags.split(' ').find_map(Locale::from_tag))
        {
            target.append_pair("lang", locale.code);
        }
        let target = target.finish();
        return Ok(ctx.redirect(&format!("{}?{target}", ctx.path("/signin"))));
    }
    if let Some(response) = step_up_needed(&ctx, &valid, &query).await {
        return Ok(response);
    }
    Ok(proceed(&ctx, valid, &query).await)
}

/// A signed-in session below the level the request or the tenant asks for: the
/// user passes only the missing factor and comes back here. `acr_values` are
/// voluntary (OIDC Core §3.1.2.1): a user without a second factor goes on at the
/// level they have, and the tokens say so — unless the tenant requires MFA (for
/// everyone, this client or one of the scopes), when they add one first.
async fn step_up_needed(
    ctx: &PageContext,
    valid: &ValidRequest,
    query: &str,
) -> Option<HttpResponse> {
    let session = ctx.session.as_ref()?;
    let requested = valid.required_aal().map(i32::from).unwrap_or(1);
    let mandatory = if ctx
        .policy
        .mfa_required_for(&valid.client.data.client_id, &valid.scopes)
    {
        2
    } else {
        1
    };
    if session.aal >= requested.max(mandatory) {
        return None;
    }
    // A session a partner opened steps up at that partner where it can vouch for
    // the level (the same person, signed in again more strongly).
    if !valid.prompt.iter().any(|p| p == "none") {
        let back = format!("{}?{query}", ctx.path("/authorize"));
        match ctx
            .state
            .authn
            .upstream_step_up(
                session,
                requested.max(mandatory),
                ctx.link_base().0,
                ctx.csrf.value.clone(),
                back,
                ctx.client(),
            )
            .await
        {
            Ok(Some(step)) => return Some(super::federation::go_upstream(ctx, &step)),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "stepping up at the partner failed"),
        }
    }
    let factors = match ctx.factors_of(session.user_id).await {
        Ok(factors) => factors,
        Err(error) => {
            tracing::error!(%error, "reading second factors failed");
            return Some(respond_error(
                ctx,
                valid,
                ErrorCode::ServerError,
                "the request could not be handled",
            ));
        }
    };
    if !factors.any() && session.aal >= mandatory {
        return None;
    }
    if valid.prompt.iter().any(|p| p == "none") {
        return Some(respond_error(
            ctx,
            valid,
            ErrorCode::LoginRequired,
            "a stronger authentication is needed",
        ));
    }
    let back = format!("{}?{query}", ctx.path("/authorize"));
    Some(ctx.redirect(&navigation::second_factor_url(ctx, Some(&back))))
}

/// OIDC Core §3.1.2.1: the authorization endpoint accepts POST as well. The form
/// becomes the query of a GET, so that sign-in can return to it like to any request.
pub async fn authorize_post(ctx: PageContext, body: web::Bytes) -> HttpResponse {
    let is_form = ctx
        .request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let Ok(query) = std::str::from_utf8(&body) else {
        return ctx.oauth_error();
    };
    if !is_form || query.contains(['\r', '\n']) {
        return ctx.oauth_error();
    }
    // Re-encoded, so the Location header carries only what the parser accepted.
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()))
        .finish();
    ctx.redirect(&format!("{}?{query}", ctx.path("/authorize")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentForm {
    csrf_token: String,
    request: String,
    decision: String,
    /// The purposes the page showed, `slug:version` separated by spaces.
    purposes: String,
}

pub async fn consent(Submitted { ctx, form }: Submitted<ConsentForm>) -> Answer {
    let Some(session) = ctx.session.clone() else {
        return Ok(ctx.redirect(&ctx.path("/signin")));
    };
    // The request rides in a field: its own encoding is checked like a query's.
    if let Err(refusal) = input::check_query(&form.request) {
        return Ok(crate::pages::refused_input_page(&ctx, &refusal));
    }
    let (request, marker) = parse_request(&form.request);
    let valid = validate(&ctx, request).await.map_err(answered)?;
    // The consent form must not issue a code the authorization endpoint would not
    // (max_age, prompt=login, acr_values): back there if the session no longer does.
    let login_after = marker.as_deref().and_then(|m| open_login_after(&ctx, m));
    if login_needed(&ctx, &valid, login_after).0 {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form_urlencoded::parse(form.request.as_bytes()))
            .finish();
        return Ok(ctx.redirect(&format!("{}?{query}", ctx.path("/authorize"))));
    }
    if form.decision != "allow" {
        return Ok(respond_error(
            &ctx,
            &valid,
            ErrorCode::AccessDenied,
            "the user denied the request",
        ));
    }
    let tenant = ctx.tenant.tenant.id;
    // Purposes first: if one changed since the page was shown, the scopes are not
    // remembered yet and the authorization endpoint shows the new text.
    let shown: Option<Vec<(String, i32)>> = form
        .purposes
        .split_whitespace()
        .map(|item| {
            let (slug, version) = item.rsplit_once(':')?;
            Some((slug.to_owned(), version.parse().ok()?))
        })
        .collect();
    let Some(shown) = shown else {
        return Ok(ctx.error_page(
            StatusCode::BAD_REQUEST,
            "error.bad_request.title",
            "error.bad_request.message",
        ));
    };
    if !shown.is_empty() {
        let consents = ctx.state.consents.clone();
        let (client_id, scopes) = (valid.client.data.client_id.clone(), valid.scopes.clone());
        let granted = web::block(move || {
            consents.grant_for_approval(tenant, session.user_id, &client_id, &scopes, &shown)
        })
        .await;
        match granted {
            Ok(Ok(_)) => {}
            Ok(Err(ConsentError::OutdatedVersion { .. })) => {
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form_urlencoded::parse(form.request.as_bytes()))
                    .finish();
                return Ok(ctx.redirect(&format!("{}?{query}", ctx.path("/authorize"))));
            }
            Ok(Err(ConsentError::Invalid(_) | ConsentError::NotFound(_))) => {
                return Ok(ctx.error_page(
                    StatusCode::BAD_REQUEST,
                    "error.bad_request.title",
                    "error.bad_request.message",
                ));
            }
            _ => return Ok(ctx.unavailable()),
        }
    }
    let (user, request) = (session.user_id, valid.clone());
    let recorded = ctx
        .with_issuer(move |issuer, tenant| issuer.record_consent(tenant, user, &request))
        .await;
    if !matches!(recorded, Ok(Ok(()))) {
        return Ok(ctx.unavailable());
    }
    Ok(issue(&ctx, valid).await)
}

csrf_protected!(ConsentForm);
