//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0). A relying
//! party sends the browser here; the user is signed out — at once when the RP proves
//! it holds this session's ID token (`id_token_hint` with matching `sub` and `sid`),
//! otherwise after confirming, so a cross-site link cannot sign anyone out — and is
//! sent to the registered `post_logout_redirect_uri` with `state`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpResponse, web};
use gatehouse_token_issuer::logout::{EndSessionRequest, ValidEndSession};
use serde::Deserialize;
use serde_json::json;

use crate::http::answer::{Answer, answered};
use crate::http::security::FormTarget;
use crate::pages::context::{PageContext, Submitted, csrf_protected};

fn issuer(ctx: &PageContext) -> String {
    format!("{}{}", ctx.tenant.origin, ctx.tenant.base_path)
}

fn parse(text: &str) -> EndSessionRequest {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    EndSessionRequest::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

async fn validate(
    ctx: &PageContext,
    request: EndSessionRequest,
) -> Result<ValidEndSession, HttpResponse> {
    let url = issuer(ctx);
    let validated = ctx
        .with_issuer(move |service, tenant| service.validate_end_session(tenant, &url, &request));
    match validated.await {
        Ok(Ok(valid)) => Ok(valid),
        Ok(Err(reason)) => {
            tracing::info!(reason, "logout request refused without redirect");
            Err(ctx.error_page(
                StatusCode::BAD_REQUEST,
                "logout.error.title",
                "logout.error.message",
            ))
        }
        Err(_) => Err(ctx.unavailable()),
    }
}

/// Where the browser goes once the session is over (or was never there).
fn finish(ctx: &PageContext, valid: &ValidEndSession, signed_out: bool) -> HttpResponse {
    let mut response = match &valid.redirect {
        Some(uri) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, uri.clone()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        None => ctx.render(
            StatusCode::OK,
            "message.html",
            &json!({ "title": "logout.done.title", "message": "logout.done.message" }),
        ),
    };
    if signed_out {
        let _ = response.add_removal_cookie(
            &ctx.cookies
                .removal(ctx.cookies.session_name(&ctx.tenant.tenant.slug)),
        );
    }
    response
}

async fn sign_out_and_finish(ctx: &PageContext, valid: &ValidEndSession) -> HttpResponse {
    let Some(session) = ctx.session.clone() else {
        return finish(ctx, valid, false);
    };
    if let Err(error) = ctx
        .state
        .authn
        .sign_out(ctx.tenant.tenant.id, session, ctx.client())
        .await
    {
        tracing::error!(%error, "sign-out failed");
        return ctx.unavailable();
    }
    finish(ctx, valid, true)
}

async fn end_session(ctx: PageContext, raw: String) -> Answer {
    let valid = validate(&ctx, parse(&raw)).await.map_err(answered)?;
    let Some(session) = ctx.session.clone() else {
        return Ok(finish(&ctx, &valid, false));
    };
    if valid.hint_matches(session.user_id, session.id) {
        return Ok(sign_out_and_finish(&ctx, &valid).await);
    }
    // The confirmation form ends in a redirect to the RP: CSP form-action must allow it.
    if let Some(target) = valid.redirect.as_deref().and_then(FormTarget::origin_of) {
        ctx.request.extensions_mut().insert(target);
    }
    let client_name = valid.client.as_ref().map(|c| c.data.name.clone());
    Ok(ctx.render(
        StatusCode::OK,
        "logout.html",
        &json!({ "client_name": client_name, "request": raw }),
    ))
}

/// GET: parameters in the query.
pub async fn end_session_get(ctx: PageContext) -> Answer {
    let raw = ctx.request.query_string().to_owned();
    end_session(ctx, raw).await
}

/// POST: the same parameters as a form (§2: the OP supports both). A form posted
/// from the RP's site arrives without the SameSite=Lax session cookie, so the
/// request is turned into a GET first, which carries it.
pub async fn end_session_post(ctx: PageContext, body: web::Bytes) -> HttpResponse {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(&body))
        .finish();
    ctx.redirect(&format!("{}?{query}", ctx.path("/oauth2/logout")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConfirmForm {
    csrf_token: String,
    request: String,
    decision: String,
}

/// The user's answer on the confirmation page.
pub async fn confirm(Submitted { ctx, form }: Submitted<ConfirmForm>) -> Answer {
    // The request rides in a field: its own encoding is checked like a query's.
    if let Err(refusal) = crate::http::input::check_query(&form.request) {
        return Ok(crate::pages::refused_input_page(&ctx, &refusal));
    }
    let valid = validate(&ctx, parse(&form.request))
        .await
        .map_err(answered)?;
    if form.decision != "sign_out" {
        return Ok(ctx.render(
            StatusCode::OK,
            "message.html",
            &json!({ "title": "logout.kept.title", "message": "logout.kept.message" }),
        ));
    }
    Ok(sign_out_and_finish(&ctx, &valid).await)
}

csrf_protected!(ConfirmForm);
