//! OAuth 2.0 protocol endpoints: authorization-server metadata (RFC 8414), JWKS, the
//! token endpoint (client_credentials today), introspection (RFC 7662) and revocation
//! (RFC 7009). Handlers parse, call `Issuer` on the blocking pool, and map the result;
//! every error is an RFC 6749 §5.2 JSON body.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_token_issuer::client_auth::{PresentedClient, presented_assertion, presented_client};
use gatehouse_token_issuer::oauth_error::{ErrorCode, OAuthError};
use gatehouse_token_issuer::service::server_metadata;

use actix_web::HttpMessage;
use actix_web::middleware::from_fn;

use crate::http::answer::{self, Extracting, answered, from_request_with, with_body};
use crate::http::cors::{self, CorsClient};
use crate::http::tenant::{ResolvedTenant, TenantMiss, tenant_of};
use crate::state::AppState;

/// Routes outside any tenant prefix: RFC 8414 places a path issuer's metadata at
/// `/.well-known/oauth-authorization-server{path}`.
pub fn root_routes(cfg: &mut web::ServiceConfig) {
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/t/{tenant}",
    ] {
        cfg.service(
            web::resource(path)
                .wrap(from_fn(cors::public))
                .get(metadata),
        );
    }
}

/// Routes relative to a tenant's issuer (mounted at the root and under `/t/{tenant}`).
/// What a browser app calls itself answers CORS (`http::cors`).
pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/jwks").wrap(from_fn(cors::public)).get(jwks))
        .service(
            web::resource("/.well-known/openid-configuration")
                .wrap(from_fn(cors::public))
                .get(metadata),
        )
        .service(
            web::resource("/userinfo")
                .wrap(from_fn(cors::for_clients))
                .get(userinfo)
                .post(userinfo),
        )
        .service(
            web::resource("/oauth2/token")
                .wrap(from_fn(cors::for_clients))
                .post(token),
        )
        .service(
            web::resource("/oauth2/revoke")
                .wrap(from_fn(cors::for_clients))
                .post(revoke),
        )
        .route("/oauth2/introspect", web::post().to(introspect))
        .route("/oauth2/par", web::post().to(pushed_authorization_request));
}

fn error_response(error: &OAuthError) -> HttpResponse {
    let mut response =
        HttpResponse::build(StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST));
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    if let Some(challenge) = &error.www_authenticate {
        response.insert_header((header::WWW_AUTHENTICATE, challenge.clone()));
    }
    let mut answer = response.json(error);
    answer
        .extensions_mut()
        .insert(Refused(error.error.as_str()));
    answer
}

/// The OAuth error code an answer carries, kept beside its body for metrics.
#[derive(Debug, Clone, Copy)]
struct Refused(&'static str);

fn json_no_store(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

pub(crate) async fn resolve(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<ResolvedTenant, HttpResponse> {
    tenant_of(&state.tenants, req)
        .await
        .map_err(|miss| match miss {
            TenantMiss::Unknown => HttpResponse::NotFound().finish(),
            TenantMiss::Unavailable => error_response(&OAuthError::server_error()),
        })
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, actix_web::Error> {
    answer::app_state(req, || error_response(&OAuthError::server_error()))
}

/// The tenant a protocol endpoint serves (404 for none).
struct OAuthTenant(ResolvedTenant);

from_request_with!(OAuthTenant, OAuthTenant::extract);

impl OAuthTenant {
    async fn extract(req: HttpRequest) -> Result<OAuthTenant, actix_web::Error> {
        let state = app_state(&req)?;
        resolve(&state, &req)
            .await
            .map(OAuthTenant)
            .map_err(answered)
    }
}

/// What every client-authenticated endpoint starts from: the tenant, the form and
/// the credentials the client presented (RFC 6749 §2.3); a request without them is
/// answered with the RFC error before the handler.
struct ClientCall {
    tenant: ResolvedTenant,
    form: Form,
    presented: PresentedClient,
}

impl actix_web::FromRequest for ClientCall {
    type Error = actix_web::Error;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        with_body(req, payload, ClientCall::extract)
    }
}

impl ClientCall {
    async fn extract(req: HttpRequest, body: web::Bytes) -> Result<ClientCall, actix_web::Error> {
        let state = app_state(&req)?;
        let (tenant, form, presented) = client_request(&state, &req, &body)
            .await
            .map_err(answered)?;
        Ok(ClientCall {
            tenant,
            form,
            presented,
        })
    }
}

/// Introspection's and revocation's start: a [`ClientCall`] with a `token`.
struct TokenCall {
    tenant: ResolvedTenant,
    presented: PresentedClient,
    token: String,
}

impl actix_web::FromRequest for TokenCall {
    type Error = actix_web::Error;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        with_body(req, payload, TokenCall::extract)
    }
}

impl TokenCall {
    async fn extract(req: HttpRequest, body: web::Bytes) -> Result<TokenCall, actix_web::Error> {
        let ClientCall {
            tenant,
            form,
            presented,
        } = ClientCall::extract(req, body).await?;
        let token = form
            .get("token")
            .ok_or_else(|| {
                answered(error_response(&OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "token is required",
                )))
            })?
            .to_owned();
        Ok(TokenCall {
            tenant,
            presented,
            token,
        })
    }
}

/// A form body as name → values. RFC 6749 §3.2: parameters must not repeat, except
/// `resource` (RFC 8707), which may.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(req: &HttpRequest, body: &[u8]) -> Result<Form, OAuthError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        for (index, (name, _)) in pairs.iter().enumerate() {
            if name != "resource" && pairs[..index].iter().any(|(other, _)| other == name) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("parameter `{name}` is repeated"),
                ));
            }
        }
        Ok(Form(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// `tenant` decides a client assertion's audience: its issuer identifier and
    /// nothing else (see `client_auth::verify_assertion`), never the Host header.
    fn client(
        &self,
        req: &HttpRequest,
        tenant: &ResolvedTenant,
    ) -> Result<PresentedClient, OAuthError> {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let assertion_type = self.get("client_assertion_type");
        let assertion = self.get("client_assertion");
        if assertion_type.is_none() && assertion.is_none() {
            return presented_client(
                authorization,
                self.get("client_id"),
                self.get("client_secret"),
            );
        }
        presented_assertion(
            authorization.is_some() || self.get("client_secret").is_some(),
            self.get("client_id"),
            assertion_type,
            assertion,
            vec![tenant.issuer()],
        )
    }
}

async fn metadata(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match resolve(&state, &req).await {
        Ok(tenant) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .json(server_metadata(
                &tenant.issuer(),
                &crate::ui::Locale::ALL
                    .iter()
                    .map(|locale| locale.code)
                    .collect::<Vec<_>>(),
            )),
        Err(response) => response,
    }
}

async fn jwks(state: web::Data<AppState>, OAuthTenant(tenant): OAuthTenant) -> HttpResponse {
    let issuer = state.issuer.clone();
    let id = tenant.tenant.id;
    match web::block(move || issuer.jwks(id)).await {
        Ok(Ok(bytes)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/jwk-set+json"))
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .body(bytes.to_vec()),
        other => {
            if let Ok(Err(error)) = other {
                tracing::error!(%error, "JWKS unavailable");
            }
            error_response(&OAuthError::server_error())
        }
    }
}

/// Runs an issuer call on the blocking pool and answers its result as JSON.
async fn run<T: serde::Serialize + Send + 'static>(
    work: impl FnOnce() -> Result<T, OAuthError> + Send + 'static,
) -> HttpResponse {
    run_then(work, json_no_store).await
}

/// Runs an issuer call on the blocking pool and answers its result with `respond`;
/// its error, or the pool's, gets the RFC error answer.
async fn run_then<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OAuthError> + Send + 'static,
    respond: impl FnOnce(T) -> HttpResponse,
) -> HttpResponse {
    match web::block(work).await {
        Ok(Ok(done)) => respond(done),
        Ok(Err(error)) => error_response(&error),
        Err(_) => error_response(&OAuthError::server_error()),
    }
}

/// What every client-authenticated endpoint starts from: the tenant, the form and
/// the credentials the client presented.
async fn client_request(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(ResolvedTenant, Form, PresentedClient), HttpResponse> {
    let tenant = resolve(state, req).await?;
    let form = Form::parse(req, body).map_err(|error| error_response(&error))?;
    let presented = form
        .client(req, &tenant)
        .map_err(|error| error_response(&error))?;
    req.extensions_mut()
        .insert(CorsClient(presented.client_id().to_owned()));
    Ok((tenant, form, presented))
}

async fn token(
    state: web::Data<AppState>,
    ClientCall {
        tenant,
        form,
        presented,
    }: ClientCall,
) -> actix_web::Result<HttpResponse> {
    let issuer = state.issuer.clone();
    let url = tenant.issuer();
    let tenant = tenant.tenant.id;
    let grant = match form.get("grant_type") {
        Some("client_credentials") => "client_credentials",
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        Some(_) => "unsupported",
        None => "none",
    };
    let metrics = std::sync::Arc::clone(&state.metrics);
    let required = |name: &str| {
        form.get(name).map(str::to_owned).ok_or_else(|| {
            metrics.token_answered(tenant, grant, Some(ErrorCode::InvalidRequest.as_str()));
            answered(error_response(&OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("{name} is required"),
            )))
        })
    };
    let scope = form.get("scope").map(str::to_owned);
    let answer = match form.get("grant_type") {
        Some("client_credentials") => {
            let resources = form.all("resource");
            run(move || {
                issuer.client_credentials(tenant, &url, &presented, scope.as_deref(), &resources)
            })
            .await
        }
        Some("authorization_code") => {
            let code = required("code")?;
            let redirect_uri = form.get("redirect_uri").map(str::to_owned);
            let verifier = form.get("code_verifier").map(str::to_owned);
            run(move || {
                issuer.exchange_code(
                    tenant,
                    &url,
                    &presented,
                    &code,
                    redirect_uri.as_deref(),
                    verifier.as_deref(),
                )
            })
            .await
        }
        Some("refresh_token") => {
            let refresh_token = required("refresh_token")?;
            run(move || issuer.refresh(tenant, &url, &presented, &refresh_token, scope.as_deref()))
                .await
        }
        Some(_) => error_response(&OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "this grant type is not supported",
        )),
        None => error_response(&OAuthError::new(
            ErrorCode::InvalidRequest,
            "grant_type is required",
        )),
    };
    let refused = answer.extensions().get::<Refused>().map(|r| r.0);
    metrics.token_answered(tenant, grant, refused);
    Ok(answer)
}

async fn introspect(state: web::Data<AppState>, call: TokenCall) -> HttpResponse {
    let issuer = state.issuer.clone();
    let url = call.tenant.issuer();
    run(move || issuer.introspect(call.tenant.tenant.id, &url, &call.presented, &call.token)).await
}

async fn revoke(state: web::Data<AppState>, call: TokenCall) -> HttpResponse {
    let issuer = state.issuer.clone();
    let url = call.tenant.issuer();
    let revoked = move || issuer.revoke(call.tenant.tenant.id, &url, &call.presented, &call.token);
    // RFC 7009 §2.2: 200 with an empty body.
    run_then(revoked, |()| {
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()
    })
    .await
}

/// UserInfo (OIDC Core §5.3), GET or POST, with the token in the Authorization header
/// (RFC 6750 §2.1).
async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
    OAuthTenant(tenant): OAuthTenant,
) -> HttpResponse {
    // RFC 6750 §3.1: no credentials, no error code.
    let Some(bearer) = crate::http::bearer::presented(&req).map(str::to_owned) else {
        return crate::http::bearer::Refusal::NoToken.answer();
    };
    let issuer = state.issuer.clone();
    let url = tenant.issuer();
    run_then(
        move || issuer.userinfo(tenant.tenant.id, &url, &bearer),
        |info| {
            req.extensions_mut().insert(CorsClient(info.client_id));
            json_no_store(info.claims)
        },
    )
    .await
}

/// Client authentication parameters: checked, never stored with a pushed request.
const CLIENT_AUTH_PARAMETERS: [&str; 3] =
    ["client_secret", "client_assertion", "client_assertion_type"];

/// Pushed authorization requests (RFC 9126 §2): 201 with a `request_uri`.
async fn pushed_authorization_request(
    state: web::Data<AppState>,
    ClientCall {
        tenant,
        form,
        presented,
    }: ClientCall,
) -> HttpResponse {
    let parameters: Vec<(String, String)> = form
        .0
        .into_iter()
        .filter(|(name, _)| !CLIENT_AUTH_PARAMETERS.contains(&name.as_str()))
        .collect();
    let issuer = state.issuer.clone();
    let pushed =
        move || issuer.push_authorization_request(tenant.tenant.id, &presented, parameters);
    run_then(pushed, |body| {
        HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body)
    })
    .await
}
