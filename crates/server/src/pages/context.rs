//! What every end-user page handler starts from: the tenant, the language, the CSRF
//! token, the CSP nonce and the signed-in session, gathered by one extractor.

use actix_web::cookie::Cookie;
use actix_web::dev::Payload;
use actix_web::error::BlockingError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use gatehouse_authn::second_factor::Factors;
use gatehouse_authn::settings::TenantPolicy;
use gatehouse_authn::{AuthnError, ClientInfo};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::sessions::Session;
use gatehouse_token_issuer::service::Issuer;
use serde::Serialize;

use crate::http::answer::{Extracting, answered, app_state, from_request_with};
use crate::http::client_addr::client_ip;
use crate::http::cookies::CookiePolicy;
use crate::http::csrf::{self, CsrfToken};
use crate::http::security::CspNonce;
use crate::http::tenant::{ResolvedTenant, TenantMiss, tenant_of};
use crate::state::AppState;
use crate::ui::{Locale, PageCommon, ThemeSettings};

pub const LANG_COOKIE: &str = "gatehouse_lang";

pub struct PageContext {
    pub state: web::Data<AppState>,
    pub request: HttpRequest,
    pub tenant: ResolvedTenant,
    pub policy: TenantPolicy,
    pub theme: ThemeSettings,
    pub locale: Locale,
    pub set_locale_cookie: bool,
    pub csrf: CsrfToken,
    pub nonce: String,
    pub cookies: CookiePolicy,
    pub session: Option<Session>,
    pub session_secret: Option<String>,
    pub signed_in_as: Option<String>,
    /// False for a GET that used something up (a single-use link): opening it again
    /// would not show this page, so it offers no language switcher either.
    pub reopenable: bool,
}

impl std::fmt::Debug for PageContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageContext")
            .field("tenant", &self.tenant.tenant.slug)
            .finish_non_exhaustive()
    }
}

fn plain_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::plaintext())
        .body(message.to_owned())
}

from_request_with!(PageContext, PageContext::extract);

impl PageContext {
    async fn extract(req: HttpRequest) -> Result<PageContext, actix_web::Error> {
        let fail = |status, message: &str| answered(plain_error(status, message));
        let state = app_state(&req, || {
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application state missing",
            )
        })?;
        let resolved = tenant_of(&state.tenants, &req)
            .await
            .map_err(|miss| match miss {
                TenantMiss::Unknown => fail(StatusCode::NOT_FOUND, "unknown tenant"),
                TenantMiss::Unavailable => {
                    fail(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
                }
            })?;

        let settings = resolved.tenant.typed_settings();
        let theme = state.ui.tenant_theme(&resolved.tenant.slug, &settings);
        let policy = TenantPolicy::from_settings(&settings);
        let query_lang =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("lang").cloned());
        let cookie_lang = req.cookie(LANG_COOKIE).map(|c| c.value().to_owned());
        let accept = req
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let locale = state.ui.negotiate_locale(
            query_lang.as_deref(),
            cookie_lang.as_deref(),
            accept.as_deref(),
        );
        let set_locale_cookie = query_lang.is_some() && cookie_lang.as_deref() != Some(locale.code);

        let cookies = state.cookie_policy.clone();
        let csrf = csrf::token_for(&req, &cookies);
        let nonce = req
            .extensions()
            .get::<CspNonce>()
            .map(|n| n.0.clone())
            .unwrap_or_default();

        let session_secret = req
            .cookie(&cookies.session_name(&resolved.tenant.slug))
            .map(|c| c.value().to_owned());
        let session = match &session_secret {
            Some(secret) => state
                .authn
                .session(resolved.tenant.id, secret.clone())
                .await
                .map_err(|error| {
                    tracing::error!(%error, "session lookup failed");
                    fail(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
                })?,
            None => None,
        };
        let signed_in_as = match &session {
            Some(session) => state
                .authn
                .user(resolved.tenant.id, session.user_id)
                .await
                .ok()
                .map(|user| {
                    user.data
                        .display_name
                        .clone()
                        .or_else(|| user.primary_email().map(|e| e.value.clone()))
                        .unwrap_or(user.data.user_name)
                }),
            None => None,
        };
        Ok(PageContext {
            state,
            request: req,
            tenant: resolved,
            policy,
            theme,
            locale,
            set_locale_cookie,
            csrf,
            nonce,
            cookies,
            session,
            session_secret,
            signed_in_as,
            reopenable: true,
        })
    }
}

impl PageContext {
    /// Who is asking: the client's address as `http::client_addr` decides it (the
    /// peer, or whom a trusted proxy names), the user agent and the page's language
    /// (mail the action causes is written in it).
    pub fn client(&self) -> ClientInfo {
        let peer = self.request.peer_addr().map(|a| a.ip());
        let ip = client_ip(peer, self.request.headers(), &self.state.config.server);
        ClientInfo {
            ip: ip.map(|ip| ip.to_string()),
            user_agent: self
                .request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(256).collect()),
            locale: Some(self.locale.code.to_owned()),
        }
    }

    pub fn path(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.tenant.base_path)
    }

    /// Absolute base for links in mail: the configured public URL (or the tenant's
    /// own configured host) — never the request's Host header, which an attacker sets.
    pub fn link_base(&self) -> gatehouse_authn::registration::LinkBase {
        gatehouse_authn::registration::LinkBase(format!(
            "{}{}",
            self.tenant.origin, self.tenant.base_path
        ))
    }

    pub fn csrf_ok(&self, submitted: &str) -> bool {
        let scheme = if self
            .state
            .config
            .server
            .public_url()
            .starts_with("https://")
        {
            "https"
        } else {
            "http"
        };
        csrf::verify(&self.request, &self.cookies, scheme, Some(submitted))
    }

    fn common(&self) -> PageCommon {
        PageCommon {
            tenant_name: self
                .theme
                .display_name
                .clone()
                .unwrap_or_else(|| self.tenant.tenant.display_name.clone()),
            base_path: self.tenant.base_path.clone(),
            locale: self.locale.clone(),
            current_path: self.request.path().to_owned(),
            reopen_query: self.reopen_query(),
            csrf_token: self.csrf.value.clone(),
            csp_nonce: self.nonce.clone(),
            theme: self.theme.clone(),
            signed_in_as: self.signed_in_as.clone(),
        }
    }

    /// The query to open this page again with (without `lang`), or `None` when the
    /// page answers a form post and a link could not bring it back.
    fn reopen_query(&self) -> Option<String> {
        // "//host/…" would make the link leave this site (an unknown URL's 404 page
        // shows whatever path was asked for).
        let path = self.request.path();
        if !self.reopenable
            || path.starts_with("//")
            || path.contains('\\')
            || !matches!(
                *self.request.method(),
                actix_web::http::Method::GET | actix_web::http::Method::HEAD
            )
        {
            return None;
        }
        // The query as sent, only `lang` left out: re-encoding it could change what
        // a signed or compared parameter (an authorization request) says.
        let kept: Vec<&str> = self
            .request
            .query_string()
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                !pair.is_empty() && name != "lang"
            })
            .collect();
        Some(kept.join("&"))
    }

    fn finish(&self, mut response: actix_web::HttpResponseBuilder, body: String) -> HttpResponse {
        response
            .content_type(ContentType::html())
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(cookie) = &self.csrf.set_cookie {
            response.cookie(cookie.clone());
        }
        if self.set_locale_cookie {
            let mut cookie = Cookie::new(LANG_COOKIE, self.locale.code);
            cookie.set_path("/");
            cookie.set_same_site(actix_web::cookie::SameSite::Lax);
            cookie.set_secure(self.cookies.secure());
            response.cookie(cookie);
        }
        response.body(body)
    }

    pub fn render<S: Serialize>(
        &self,
        status: StatusCode,
        template: &str,
        page: &S,
    ) -> HttpResponse {
        match self.state.ui.render(template, &self.common(), page) {
            Ok(body) => self.finish(HttpResponse::build(status), body),
            Err(error) => {
                tracing::error!(%error, template, "page rendering failed");
                plain_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }

    /// The second factors `user` of this tenant has.
    pub async fn factors_of(&self, user: UserId) -> Result<Factors, AuthnError> {
        self.state.authn.factors(self.tenant.tenant.id, user).await
    }

    /// Runs a token-issuer call for this tenant on the blocking pool (it holds a
    /// connection); `Err` when the pool could not run it.
    pub async fn with_issuer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Issuer, TenantId) -> T + Send + 'static,
    ) -> Result<T, BlockingError> {
        let issuer = self.state.issuer.clone();
        let tenant = self.tenant.tenant.id;
        web::block(move || work(&issuer, tenant)).await
    }

    /// The store or a worker is out of reach for now: the user may try again.
    pub fn unavailable(&self) -> HttpResponse {
        self.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "error.unavailable.title",
            "error.unavailable.message",
        )
    }

    /// An authorization request that cannot safely go back to its client.
    pub fn oauth_error(&self) -> HttpResponse {
        self.error_page(
            StatusCode::BAD_REQUEST,
            "oauth.error.title",
            "oauth.error.message",
        )
    }

    /// An error page of its own, with the request id so support can find the log line.
    pub fn error_page(&self, status: StatusCode, title: &str, message: &str) -> HttpResponse {
        let request_id = self
            .request
            .extensions()
            .get::<crate::http::RequestId>()
            .map(|id| id.0.clone());
        self.render(
            status,
            "error.html",
            &serde_json::json!({
                "status": status.as_u16(),
                "title": title,
                "message": message,
                "request_id": request_id,
            }),
        )
    }

    /// 500 with the readable internal-error page; the error goes to the log, never
    /// to the page.
    pub fn internal_error(&self, error: &dyn std::fmt::Display) -> HttpResponse {
        tracing::error!(%error, path = self.request.path(), "page action failed");
        self.error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error.internal.title",
            "error.internal.message",
        )
    }

    /// 403 for a missing or wrong CSRF token, with a readable explanation.
    pub fn csrf_rejected(&self) -> HttpResponse {
        self.error_page(
            StatusCode::FORBIDDEN,
            "error.csrf.title",
            "error.csrf.message",
        )
    }

    pub fn redirect(&self, to: &str) -> HttpResponse {
        // Targets are built from checked parts; one that still cannot be a header
        // value is refused here, logged, rather than becoming a silent 500.
        let Ok(location) = header::HeaderValue::from_str(to) else {
            tracing::error!(target_url = ?to, "redirect target is not a valid Location header");
            return self.error_page(
                StatusCode::BAD_REQUEST,
                "error.bad_request.title",
                "error.bad_request.message",
            );
        };
        let mut response = HttpResponse::SeeOther();
        response.insert_header((header::LOCATION, location));
        if let Some(cookie) = &self.csrf.set_cookie {
            response.cookie(cookie.clone());
        }
        response.finish()
    }

    /// Adds the cookie of a new or rotated session.
    pub fn set_session_cookie(&self, response: &mut HttpResponse, secret: &str) {
        let cookie = self.cookies.build(
            self.cookies.session_name(&self.tenant.tenant.slug),
            secret.to_owned(),
        );
        if let Err(error) = response.add_cookie(&cookie) {
            tracing::error!(%error, "cannot set the session cookie");
        }
    }

    /// The sealed token of a sign-in waiting for its second factor, if any.
    pub fn pending_sign_in(&self) -> Option<String> {
        self.request
            .cookie(&self.cookies.pending_sign_in_name(&self.tenant.tenant.slug))
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn set_pending_sign_in(&self, response: &mut HttpResponse, token: Option<&str>) {
        let name = self.cookies.pending_sign_in_name(&self.tenant.tenant.slug);
        let cookie = match token {
            Some(token) => self.cookies.build(name, token.to_owned()),
            None => self.cookies.removal(name),
        };
        if let Err(error) = response.add_cookie(&cookie) {
            tracing::error!(%error, "cannot set the sign-in cookie");
        }
    }

    /// The catalogue key for a password-policy violation.
    pub fn policy_message(code: gatehouse_authn::PolicyCode) -> String {
        format!("error.{}", code.as_str())
    }
}

/// A form that carries the page's CSRF token (`csrf_token`).
pub trait CsrfProtected {
    fn csrf_token(&self) -> &str;
}

/// Implements [`CsrfProtected`] for form structs with a `csrf_token` field.
macro_rules! csrf_protected {
    ($($form:ty),+ $(,)?) => {$(
        impl $crate::pages::context::CsrfProtected for $form {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        }
    )+};
}
pub(crate) use csrf_protected;

/// A form with nothing but the CSRF token (sign-out, ending sessions).
#[derive(Debug, serde::Deserialize, Default)]
#[serde(default)]
pub struct CsrfOnly {
    csrf_token: String,
}

csrf_protected!(CsrfOnly);

/// A posted form whose CSRF token has been checked, with the page context: the one
/// place every state-changing page checks it. A missing or wrong token never reaches
/// the handler; it gets the readable 403 page.
pub struct Submitted<T> {
    pub ctx: PageContext,
    pub form: T,
}

impl<T> std::fmt::Debug for Submitted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitted")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<T> FromRequest for Submitted<T>
where
    T: serde::de::DeserializeOwned + CsrfProtected + 'static,
{
    type Error = actix_web::Error;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let context = PageContext::from_request(req, payload);
        let form = web::Form::<T>::from_request(req, payload);
        Box::pin(async move {
            let ctx = context.await?;
            let form = form.await?.into_inner();
            if !ctx.csrf_ok(form.csrf_token()) {
                let refused = ctx.csrf_rejected();
                return Err(answered(refused));
            }
            Ok(Submitted { ctx, form })
        })
    }
}
