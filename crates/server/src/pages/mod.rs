//! End-user pages: sign-up, email verification, sign-in (with second factors),
//! sign-out, account and its security settings. Handlers
//! stay thin: check CSRF, call the authn service, render or redirect.

mod account;
mod apps;
mod authorize;
pub mod context;
mod device;
mod entry;
mod errors;
mod factors;
mod federation;
mod logout;
mod navigation;
mod passkeys;
mod recovery;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use crate::http::input::Refusal;
use crate::pages::context::PageContext;

/// The same page for input a handler found nested in a field (a request carried in
/// a form), logged like the edge's refusals.
pub fn refused_input_page(ctx: &PageContext, refusal: &Refusal) -> HttpResponse {
    tracing::info!(path = ctx.request.path(), reason = %refusal, "request refused: unsafe input");
    ctx.error_page(
        StatusCode::BAD_REQUEST,
        "error.input.title",
        "error.input.message",
    )
}

/// The readable 400 page for a request `http::input` refused before routing; plain
/// text when not even a page's context can be had (an unknown tenant).
pub async fn refused_input(request: &HttpRequest) -> HttpResponse {
    match PageContext::from_request(request, &mut Payload::None).await {
        Ok(ctx) => ctx.error_page(
            StatusCode::BAD_REQUEST,
            "error.input.title",
            "error.input.message",
        ),
        Err(_) => HttpResponse::BadRequest()
            .content_type(ContentType::plaintext())
            .body("The request contains characters that are not allowed."),
    }
}

/// Paths of the protocol and JSON endpoints (after any `/t/{tenant}` prefix): their
/// clients are programs, and an unknown URL there keeps its empty 404.
const PROTOCOL_PREFIXES: &[&str] = &[
    "/oauth2/",
    "/.well-known/",
    "/jwks",
    "/userinfo",
    "/access/",
    "/consents/",
    "/api/",
    "/scim/",
    "/static/",
    "/theme.css",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Whether an unknown URL was a person's browser opening a page: a GET or HEAD that
/// accepts HTML, outside the protocol endpoints.
fn wants_page(request: &HttpRequest) -> bool {
    let path = request.path();
    let path = match path.strip_prefix("/t/") {
        Some(rest) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => path,
    };
    let accepts_html = request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    matches!(
        *request.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    ) && accepts_html
        && !PROTOCOL_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Every URL no route answers: the themed 404 page for a browser, else an empty 404.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    if wants_page(&request)
        && let Ok(ctx) = PageContext::from_request(&request, &mut Payload::None).await
    {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "error.not_found.title",
            "error.not_found.message",
        );
    }
    HttpResponse::NotFound().finish()
}

/// Shared assets, outside any tenant prefix.
pub fn root_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", web::get().to(entry::static_asset));
}

/// Pages relative to a tenant (mounted at the root and under `/t/{tenant}`).
pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(entry::home))
        .route("/theme.css", web::get().to(entry::theme_css))
        .route("/signin", web::get().to(entry::sign_in_page))
        .route("/signin", web::post().to(entry::sign_in))
        .route(
            "/signin/second-factor",
            web::get().to(factors::second_factor_page),
        )
        .route(
            "/signin/second-factor",
            web::post().to(factors::second_factor),
        )
        .route(
            "/signin/passkey/begin",
            web::post().to(passkeys::begin_sign_in),
        )
        .route(
            "/signin/passkey/finish",
            web::post().to(passkeys::finish_sign_in),
        )
        .route(
            "/signin/second-factor/passkey/begin",
            web::post().to(passkeys::begin_second_factor),
        )
        .route(
            "/signin/second-factor/passkey/finish",
            web::post().to(passkeys::finish_second_factor),
        )
        .route(
            "/federation/{connection}/start",
            web::post().to(federation::start),
        )
        .route(
            "/federation/{connection}/callback",
            web::get().to(federation::callback),
        )
        .route(
            "/federation/{connection}/jwks",
            web::get().to(federation::client_jwks),
        )
        .route(
            "/federation/{connection}/saml/metadata",
            web::get().to(federation::saml_metadata),
        )
        .service(
            // Real identity providers' responses outgrow the pages' 16 KiB forms.
            web::resource("/federation/{connection}/saml/acs")
                .app_data(
                    web::FormConfig::default()
                        .limit(gatehouse_authn::federation::saml::MAX_ENCODED_RESPONSE + 1024),
                )
                .route(web::post().to(federation::saml_acs)),
        )
        .route(
            "/federation/{connection}/saml/slo",
            web::get().to(federation::saml_slo),
        )
        .route(
            "/federation/{connection}/saml/finish",
            web::get().to(federation::saml_finish),
        )
        .route(
            "/federation/{connection}/saml/finish",
            web::post().to(federation::saml_confirm),
        )
        .route("/federation/link", web::get().to(federation::link_page))
        .route("/federation/link", web::post().to(federation::link_confirm))
        .route(
            "/federation/{connection}/logged-out",
            web::get().to(federation::logged_out),
        )
        .route(
            "/account/federation/unlink",
            web::post().to(federation::unlink),
        )
        .route("/recover/request", web::get().to(recovery::request_page))
        .route("/recover/request", web::post().to(recovery::request))
        .route("/recover", web::get().to(recovery::reset_page))
        .route("/recover", web::post().to(recovery::reset))
        .route(
            "/recover/passkey/begin",
            web::post().to(passkeys::begin_reset),
        )
        .route(
            "/recover/factors/start",
            web::post().to(recovery::start_factor_recovery),
        )
        .route("/recover/factors", web::get().to(recovery::factors_page))
        .route(
            "/recover/factors",
            web::post().to(recovery::complete_factor_recovery),
        )
        .route("/recover/cancel", web::get().to(recovery::cancel_page))
        .route("/recover/cancel", web::post().to(recovery::cancel))
        .route("/signup", web::get().to(entry::sign_up_page))
        .route("/signup", web::post().to(entry::sign_up))
        .route("/verify", web::get().to(entry::verify))
        .route("/verify/resend", web::post().to(entry::resend))
        .route("/signout", web::post().to(entry::sign_out))
        .route("/authorize", web::get().to(authorize::authorize))
        .route("/authorize", web::post().to(authorize::authorize_post))
        .route("/authorize/consent", web::post().to(authorize::consent))
        .route("/oauth2/logout", web::get().to(logout::end_session_get))
        .route("/oauth2/logout", web::post().to(logout::end_session_post))
        .route("/oauth2/logout/confirm", web::post().to(logout::confirm))
        .route("/setup", web::get().to(entry::setup_page))
        .route("/setup", web::post().to(entry::setup))
        .route("/account", web::get().to(account::page))
        .route("/account/security", web::get().to(factors::security_page))
        .route("/account/apps", web::get().to(apps::page))
        .route("/account/apps/withdraw", web::post().to(apps::withdraw))
        .route("/account/apps/revoke", web::post().to(apps::revoke))
        .route("/account/apps/receipt", web::get().to(apps::receipt))
        .route("/account/totp", web::post().to(factors::begin_totp))
        .route(
            "/account/totp/confirm",
            web::post().to(factors::confirm_totp),
        )
        .route("/account/totp/remove", web::post().to(factors::remove_totp))
        .route(
            "/account/recovery-codes",
            web::post().to(factors::regenerate_recovery_codes),
        )
        .route(
            "/account/passkeys/begin",
            web::post().to(passkeys::begin_registration),
        )
        .route(
            "/account/passkeys/finish",
            web::post().to(passkeys::finish_registration),
        )
        .route(
            "/account/passkeys/{id}/remove",
            web::post().to(passkeys::remove),
        )
        .route("/account/profile", web::post().to(account::profile))
        .route("/account/password", web::post().to(account::password))
        .route("/account/email", web::post().to(account::email))
        .route(
            "/account/sessions/end-others",
            web::post().to(account::end_others),
        )
        .route(
            "/account/sessions/{id}/end",
            web::post().to(account::end_one),
        );
}
