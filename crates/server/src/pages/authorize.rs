//! The authorization endpoint (RFC 6749 §4.1, OIDC Core §3.1.2): validate the request,
//! make sure the user is signed in recently enough, ask for consent where needed, and
//! send a single-use code back to the client (query or form_post, with `iss` per
//! RFC 9207).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpResponse, web};
use gatehouse_identity_store::grants::Authentication;
use gatehouse_token_issuer::code_flow::{AuthorizationRequest, AuthorizeError, ValidRequest};
use gatehouse_token_issuer::oauth_error::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::http::security::FormTarget;
use crate::pages::context::PageContext;

/// Internal marker added when we send the user to sign in because of `prompt=login`:
/// the session must be newer than this for the request to proceed.
const LOGIN_AFTER: &str = "gh_login_after";

fn parse_request(query: &str) -> (AuthorizationRequest, Option<i64>) {
    let mut request = AuthorizationRequest::default();
    let mut login_after = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "response_type" => request.response_type = Some(value),
            "client_id" => request.client_id = Some(value),
            "redirect_uri" => request.redirect_uri = Some(value),
            "scope" => request.scope = Some(value),
            "state" => request.state = Some(value),
            "nonce" => request.nonce = Some(value),
            "code_challenge" => request.code_challenge = Some(value),
            "code_challenge_method" => request.code_challenge_method = Some(value),
            "prompt" => request.prompt = Some(value),
            "max_age" => request.max_age = Some(value),
            "response_mode" => request.response_mode = Some(value),
            "resource" => request.resources.push(value),
            LOGIN_AFTER => login_after = value.parse().ok(),
            _ => {}
        }
    }
    (request, login_after)
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
            None => {
                return ctx.error_page(
                    StatusCode::BAD_REQUEST,
                    "oauth.error.title",
                    "oauth.error.message",
                );
            }
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
            ctx.error_page(
                StatusCode::BAD_REQUEST,
                "oauth.error.title",
                "oauth.error.message",
            )
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
    let issuer = ctx.state.issuer.clone();
    let tenant = ctx.tenant.tenant.id;
    match web::block(move || issuer.validate_authorization(tenant, &request)).await {
        Ok(Ok(valid)) => Ok(valid),
        Ok(Err(error)) => Err(handle_error(ctx, error)),
        Err(_) => Err(ctx.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "error.unavailable.title",
            "error.unavailable.message",
        )),
    }
}

/// Continues a validated request for a signed-in user: consent, then the code.
async fn proceed(ctx: &PageContext, valid: ValidRequest, query: &str) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let issuer = ctx.state.issuer.clone();
    let tenant = ctx.tenant.tenant.id;
    let check = valid.clone();
    let needs_consent =
        match web::block(move || issuer.needs_consent(tenant, session.user_id, &check)).await {
            Ok(Ok(needed)) => needed,
            _ => {
                return ctx.error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "error.unavailable.title",
                    "error.unavailable.message",
                );
            }
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
        return ctx.render(
            StatusCode::OK,
            "consent.html",
            &json!({ "client_name": valid.client.data.name, "scopes": valid.scopes, "request": query }),
        );
    }
    issue(ctx, valid).await
}

async fn issue(ctx: &PageContext, valid: ValidRequest) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let authentication = Authentication {
        user_id: session.user_id,
        session_id: session.id,
        auth_time: session.auth_time(),
        acr: Some(format!("urn:gatehouse:aal{}", session.aal)),
        amr: session
            .auth_methods
            .iter()
            .map(|m| m.method.clone())
            .collect(),
    };
    let issuer = ctx.state.issuer.clone();
    let tenant = ctx.tenant.tenant.id;
    let request = valid.clone();
    match web::block(move || issuer.issue_code(tenant, &request, authentication)).await {
        Ok(Ok(code)) => respond(ctx, &valid, vec![("code", code)]),
        _ => respond_error(
            ctx,
            &valid,
            ErrorCode::ServerError,
            "the code could not be issued",
        ),
    }
}

pub async fn authorize(ctx: PageContext) -> HttpResponse {
    let query = ctx.request.query_string().to_owned();
    let (request, login_after) = parse_request(&query);
    let valid = match validate(&ctx, request).await {
        Ok(valid) => valid,
        Err(response) => return response,
    };
    let now = ctx.state.clock.now();
    let prompt_login = valid.prompt.iter().any(|p| p == "login");
    let needs_login = match &ctx.session {
        None => true,
        Some(session) => {
            let auth_time = session.auth_time();
            let too_old = valid
                .max_age
                .is_some_and(|max| (now - auth_time).num_seconds() > max);
            let before_forced_login =
                login_after.is_some_and(|after| auth_time.timestamp() < after);
            too_old || before_forced_login || (prompt_login && login_after.is_none())
        }
    };
    if needs_login {
        if valid.prompt.iter().any(|p| p == "none") {
            return respond_error(
                &ctx,
                &valid,
                ErrorCode::LoginRequired,
                "the user is not signed in",
            );
        }
        // Come back here after signing in; a forced login must produce a new auth_time.
        let mut back: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .filter(|(name, _)| name != LOGIN_AFTER && !(prompt_login && name == "prompt"))
            .collect();
        if prompt_login {
            back.push((LOGIN_AFTER.into(), now.timestamp().to_string()));
        }
        let back = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(back)
            .finish();
        let return_to = format!("{}?{back}", ctx.path("/authorize"));
        let target: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", &return_to)
            .finish();
        return ctx.redirect(&format!("{}?{target}", ctx.path("/signin")));
    }
    proceed(&ctx, valid, &query).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentForm {
    csrf_token: String,
    request: String,
    decision: String,
}

pub async fn consent(ctx: PageContext, form: web::Form<ConsentForm>) -> HttpResponse {
    let form = form.into_inner();
    if !ctx.csrf_ok(&form.csrf_token) {
        return ctx.csrf_rejected();
    }
    let Some(session) = ctx.session.clone() else {
        return ctx.redirect(&ctx.path("/signin"));
    };
    let (request, _) = parse_request(&form.request);
    let valid = match validate(&ctx, request).await {
        Ok(valid) => valid,
        Err(response) => return response,
    };
    if form.decision != "allow" {
        return respond_error(
            &ctx,
            &valid,
            ErrorCode::AccessDenied,
            "the user denied the request",
        );
    }
    let issuer = ctx.state.issuer.clone();
    let tenant = ctx.tenant.tenant.id;
    let request = valid.clone();
    let recorded =
        web::block(move || issuer.record_consent(tenant, session.user_id, &request)).await;
    if !matches!(recorded, Ok(Ok(()))) {
        return ctx.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "error.unavailable.title",
            "error.unavailable.message",
        );
    }
    issue(&ctx, valid).await
}

/// Where sign-in may send the browser afterwards: only back into this tenant's
/// authorization endpoint, never elsewhere (no open redirect).
pub fn safe_return_to(ctx: &PageContext, return_to: &str) -> Option<String> {
    let prefix = format!("{}?", ctx.path("/authorize"));
    (return_to.starts_with(&prefix) && !return_to.contains(['\r', '\n', '\\']))
        .then(|| return_to.to_owned())
}
