//! The authorization code flow (RFC 6749 §4.1, OIDC Core §3.1) with PKCE (RFC 7636,
//! S256 only), refresh-token rotation with reuse detection, and UserInfo.
//!
//! Validation order at the authorization endpoint matters for safety: until the
//! client and the exact redirect URI are known to be good, errors are shown on a page
//! and never redirected (no open redirector); after that, errors go back to the client.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::clients::Client;
use gatehouse_identity_store::grants::{
    self, Authentication, CodeRedemption, NewCode, NewGrant, RefreshUse,
};
use gatehouse_identity_store::purposes::{self, LegalBasis};
use gatehouse_identity_store::{
    AnyConnection, StoreError, consent_records, consents, db, groups, pushed_requests,
    revoked_tokens, roles, sessions, tenants, users,
};
use rand::RngCore;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::acr;
use crate::claims::{claims_for, scope_claims};
use crate::client_auth::PresentedClient;
use crate::consent_basis::{consent_basis, depends_on_consent, sort_scopes, still_in_force};
use crate::jwt::{
    AccessTokenClaims, Audience, IdTokenClaims, at_hash, sign, verify_access_token_with_leeway,
};
use crate::keys::Algorithm;
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::service::{Issuer, TokenResponse};

const CODE_LIFETIME: Duration = Duration::seconds(60);
const ID_TOKEN_LIFETIME: Duration = Duration::minutes(5);

/// The parameters of an authorization request, as received.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub response_mode: Option<String>,
    pub resources: Vec<String>,
    pub acr_values: Option<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// RFC 9126: a reference to parameters pushed earlier.
    pub request_uri: Option<String>,
    /// A request object (RFC 9101), which Gatehouse does not accept.
    pub request: Option<String>,
}

/// The authorization request parameters Gatehouse reads; a pushed request keeps
/// only these (anything else would be stored for nothing).
pub const PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "response_mode",
    "acr_values",
    "login_hint",
    "ui_locales",
    "request_uri",
    "request",
    "resource",
];

impl AuthorizationRequest {
    /// Reads the parameters of a query string or form body; unknown names are
    /// ignored (RFC 6749 §3.1) and `resource` may repeat (RFC 8707).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut request = AuthorizationRequest::default();
        for (name, value) in pairs {
            let value = Some(value.to_owned());
            match name {
                "response_type" => request.response_type = value,
                "client_id" => request.client_id = value,
                "redirect_uri" => request.redirect_uri = value,
                "scope" => request.scope = value,
                "state" => request.state = value,
                "nonce" => request.nonce = value,
                "code_challenge" => request.code_challenge = value,
                "code_challenge_method" => request.code_challenge_method = value,
                "prompt" => request.prompt = value,
                "max_age" => request.max_age = value,
                "response_mode" => request.response_mode = value,
                "acr_values" => request.acr_values = value,
                "login_hint" => request.login_hint = value,
                "ui_locales" => request.ui_locales = value,
                "request_uri" => request.request_uri = value,
                "request" => request.request = value,
                "resource" => request.resources.extend(value),
                _ => {}
            }
        }
        request
    }
}

/// A request whose client and redirect URI are known to be good.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub client: Arc<Client>,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub form_post: bool,
    pub resources: Vec<String>,
    /// Requested authentication context classes, in order of preference.
    pub acr_values: Vec<String>,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
    /// The hash of the pushed request this came from; consumed when a code is issued.
    pub pushed_request: Option<String>,
}

impl ValidRequest {
    /// The weakest assurance level the request asks for through `acr_values`, if it
    /// names any level Gatehouse knows.
    pub fn required_aal(&self) -> Option<u8> {
        self.acr_values.iter().filter_map(|v| acr::aal_of(v)).min()
    }
}

/// Where an authorization error goes.
#[derive(Debug, Clone)]
pub enum AuthorizeError {
    /// Client or redirect URI unusable: show a page, never redirect.
    Page(&'static str),
    /// Back to the client's redirect URI with an RFC 6749 §4.1.2.1 error.
    Redirect {
        request: Box<ValidRequest>,
        error: ErrorCode,
        description: String,
    },
}

fn redirect_error(
    request: &ValidRequest,
    error: ErrorCode,
    description: impl Into<String>,
) -> AuthorizeError {
    AuthorizeError::Redirect {
        request: Box::new(request.clone()),
        error,
        description: description.into(),
    }
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether a sign-in session has ended, expired, or is gone with its user.
fn session_over(
    conn: &mut db::AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    session: gatehouse_core::ids::SessionId,
) -> Result<bool, StoreError> {
    match sessions::get(conn, tenant, session) {
        Ok(session) => Ok(session.ended_at.is_some()
            || now >= session.idle_expires_at
            || now >= session.absolute_expires_at),
        Err(StoreError::NotFound { .. }) => Ok(true),
        Err(error) => Err(error),
    }
}

/// PKCE S256: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid_verifier = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    valid_verifier && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// The redirect URI: one the client registered, compared as an exact string (no
/// prefix, no normalisation); it may be left out only when the client has just one.
fn registered_redirect_uri(
    client: &Client,
    request: &AuthorizationRequest,
) -> Result<String, AuthorizeError> {
    match request.redirect_uri.as_deref() {
        Some(uri)
            if client
                .data
                .redirect_uris
                .iter()
                .any(|registered| registered == uri) =>
        {
            Ok(uri.to_owned())
        }
        Some(_) => Err(AuthorizeError::Page(
            "the redirect_uri is not registered for this client",
        )),
        None if client.data.redirect_uris.len() == 1 => Ok(client.data.redirect_uris[0].clone()),
        None => Err(AuthorizeError::Page("redirect_uri is required")),
    }
}

/// Space-separated values of an optional parameter, empty ones dropped.
fn space_separated(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ValidRequest {
    /// The request as received, for a client and redirect URI already checked; the
    /// fields that need checking stay empty until their check has passed.
    fn unchecked(
        client: Arc<Client>,
        redirect_uri: String,
        request: &AuthorizationRequest,
        pushed_request: Option<String>,
    ) -> Self {
        ValidRequest {
            client,
            redirect_uri,
            scopes: Vec::new(),
            state: request.state.clone(),
            nonce: request.nonce.clone(),
            code_challenge: None,
            prompt: space_separated(request.prompt.as_deref()),
            max_age: None,
            form_post: false,
            resources: request.resources.clone(),
            acr_values: space_separated(request.acr_values.as_deref()),
            login_hint: request.login_hint.clone(),
            ui_locales: request.ui_locales.clone(),
            pushed_request,
        }
    }
}

/// `response_mode`: `query` (the default) or `form_post`, nothing else.
fn uses_form_post(
    valid: &ValidRequest,
    request: &AuthorizationRequest,
) -> Result<bool, AuthorizeError> {
    match request.response_mode.as_deref() {
        None | Some("query") => Ok(false),
        Some("form_post") => Ok(true),
        Some(_) => Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "unsupported response_mode",
        )),
    }
}

/// A client registered with `require_par` sends its parameters by PAR only.
fn check_par_requirement(valid: &ValidRequest) -> Result<(), AuthorizeError> {
    if valid.client.data.require_par && valid.pushed_request.is_none() {
        return Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "this client must use pushed authorization requests",
        ));
    }
    Ok(())
}

/// Request objects (RFC 9101) are not accepted.
fn check_no_request_object(
    valid: &ValidRequest,
    request: &AuthorizationRequest,
) -> Result<(), AuthorizeError> {
    if request.request.is_some() {
        return Err(redirect_error(
            valid,
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    Ok(())
}

/// `response_type` is present and is `code`.
fn check_response_type(
    valid: &ValidRequest,
    request: &AuthorizationRequest,
) -> Result<(), AuthorizeError> {
    match request.response_type.as_deref() {
        Some("code") => Ok(()),
        Some(_) => Err(redirect_error(
            valid,
            ErrorCode::UnsupportedResponseType,
            "only response_type=code is supported",
        )),
        None => Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "response_type is required",
        )),
    }
}

/// The client is registered for the `authorization_code` grant.
fn check_code_flow_allowed(valid: &ValidRequest) -> Result<(), AuthorizeError> {
    if !valid
        .client
        .data
        .grant_types
        .iter()
        .any(|g| g == "authorization_code")
    {
        return Err(redirect_error(
            valid,
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        ));
    }
    Ok(())
}

/// The PKCE challenge: S256 only, the length of a base64url SHA-256, and required
/// of public clients and of clients registered with `require_pkce`.
fn checked_code_challenge(
    valid: &ValidRequest,
    request: &AuthorizationRequest,
) -> Result<Option<String>, AuthorizeError> {
    let client = &valid.client.data;
    let public = client.client_type == "public";
    match (
        request.code_challenge.as_deref(),
        request.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), Some("S256")) if challenge.len() == 43 => Ok(Some(challenge.to_owned())),
        (Some(_), Some("S256")) => Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "code_challenge must be a base64url SHA-256",
        )),
        (Some(_), Some(_) | None) => Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256",
        )),
        (None, _) if public || client.require_pkce => Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "PKCE (S256) is required",
        )),
        (None, _) => Ok(None),
    }
}

/// The requested scopes, each one the client may ask for.
fn allowed_scopes(
    valid: &ValidRequest,
    request: &AuthorizationRequest,
) -> Result<Vec<String>, AuthorizeError> {
    let scopes = space_separated(request.scope.as_deref());
    if let Some(bad) = scopes
        .iter()
        .find(|s| !valid.client.data.scopes.contains(s))
    {
        return Err(redirect_error(
            valid,
            ErrorCode::InvalidScope,
            format!("scope `{bad}` is not allowed for this client"),
        ));
    }
    Ok(scopes)
}

/// Every requested resource (RFC 8707) is an audience registered for the client.
fn check_resources(valid: &ValidRequest) -> Result<(), AuthorizeError> {
    if let Some(bad) = valid
        .resources
        .iter()
        .find(|r| !valid.client.data.audiences.contains(r))
    {
        return Err(redirect_error(
            valid,
            ErrorCode::InvalidTarget,
            format!("resource `{bad}` is not allowed for this client"),
        ));
    }
    Ok(())
}

/// `max_age`, if sent, is a non-negative number of seconds.
fn checked_max_age(
    valid: &ValidRequest,
    request: &AuthorizationRequest,
) -> Result<Option<i64>, AuthorizeError> {
    let Some(max_age) = request.max_age.as_deref() else {
        return Ok(None);
    };
    let seconds = max_age.parse::<i64>().ok().filter(|s| *s >= 0);
    seconds.map(Some).ok_or_else(|| {
        redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "max_age must be a non-negative number of seconds",
        )
    })
}

/// `prompt=none` stands alone.
fn check_prompt(valid: &ValidRequest) -> Result<(), AuthorizeError> {
    if valid.prompt.iter().any(|p| p == "none") && valid.prompt.len() > 1 {
        return Err(redirect_error(
            valid,
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined",
        ));
    }
    Ok(())
}

/// UserInfo's answer and the client the access token was issued to.
#[derive(Debug)]
pub struct UserInfo {
    pub client_id: String,
    pub claims: Value,
}

impl Issuer {
    /// Checks an authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636).
    /// A request carrying a `request_uri` (RFC 9126) is replaced by the parameters
    /// pushed for it; other parameters in the query are ignored, as §4 requires.
    pub fn validate_authorization(
        &self,
        tenant: TenantId,
        request: &AuthorizationRequest,
    ) -> Result<ValidRequest, AuthorizeError> {
        let Some(request_uri) = request.request_uri.as_deref() else {
            return self.check_authorization(tenant, request, None);
        };
        let client_id = request
            .client_id
            .as_deref()
            .ok_or(AuthorizeError::Page("client_id is missing"))?;
        let (pushed, hash) = self
            .pushed_request(tenant, request_uri)
            .map_err(|_| AuthorizeError::Page("temporarily unavailable"))?
            .ok_or(AuthorizeError::Page(
                "the request_uri is unknown, used or expired",
            ))?;
        if !bool::from(pushed.client_id.as_bytes().ct_eq(client_id.as_bytes())) {
            return Err(AuthorizeError::Page(
                "the request_uri was pushed by another client",
            ));
        }
        let mut expanded = AuthorizationRequest::from_pairs(
            pushed
                .parameters
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        expanded.client_id = Some(pushed.client_id);
        self.check_authorization(tenant, &expanded, Some(hash))
    }

    /// The checks of [`Issuer::validate_authorization`], in the order that keeps it
    /// safe: the client and its redirect URI first (errors on a page), then the
    /// rest of the request (errors back to the client).
    pub(crate) fn check_authorization(
        &self,
        tenant: TenantId,
        request: &AuthorizationRequest,
        pushed_request: Option<String>,
    ) -> Result<ValidRequest, AuthorizeError> {
        let client = self.requesting_client(tenant, request)?;
        let redirect_uri = registered_redirect_uri(&client, request)?;
        let mut valid = ValidRequest::unchecked(client, redirect_uri, request, pushed_request);
        valid.form_post = uses_form_post(&valid, request)?;
        check_par_requirement(&valid)?;
        check_no_request_object(&valid, request)?;
        check_response_type(&valid, request)?;
        check_code_flow_allowed(&valid)?;
        valid.code_challenge = checked_code_challenge(&valid, request)?;
        let scopes = allowed_scopes(&valid, request)?;
        check_resources(&valid)?;
        valid.scopes = scopes;
        valid.max_age = checked_max_age(&valid, request)?;
        check_prompt(&valid)?;
        Ok(valid)
    }

    /// The client named by `client_id`, which must exist.
    fn requesting_client(
        &self,
        tenant: TenantId,
        request: &AuthorizationRequest,
    ) -> Result<Arc<Client>, AuthorizeError> {
        let client_id = request
            .client_id
            .as_deref()
            .ok_or(AuthorizeError::Page("client_id is missing"))?;
        self.client_for(tenant, client_id)
            .map_err(|_| AuthorizeError::Page("temporarily unavailable"))?
            .ok_or(AuthorizeError::Page("unknown client"))
    }

    /// Whether the user still has to approve the requested scopes.
    pub fn needs_consent(
        &self,
        tenant: TenantId,
        user: gatehouse_core::ids::UserId,
        request: &ValidRequest,
    ) -> Result<bool, StoreError> {
        if request.prompt.iter().any(|p| p == "consent") {
            return Ok(true);
        }
        let mut conn = self.pool().get()?;
        // Consent to a purpose is the user's to give, first-party client or not, and
        // a new version of its text is asked for again.
        let asked: Vec<_> = purposes::list(&mut conn, tenant)?
            .into_iter()
            .filter(|p| p.legal_basis == LegalBasis::Consent)
            .filter(|p| p.scopes.iter().any(|s| request.scopes.contains(s)))
            .collect();
        if !asked.is_empty() {
            let client_id = &request.client.data.client_id;
            let now = self.clock_now();
            let in_force = consent_records::current_for(&mut conn, now, tenant, user, client_id)?;
            let accepted_latest = |slug: &str, version: i32| {
                in_force
                    .iter()
                    .any(|c| c.purpose == slug && c.version == version)
            };
            if asked.iter().any(|p| !accepted_latest(&p.slug, p.version)) {
                return Ok(true);
            }
        }
        if request.client.data.first_party {
            return Ok(false);
        }
        let granted = consents::scopes(&mut conn, tenant, user, &request.client.data.client_id)?;
        Ok(request.scopes.iter().any(|s| !granted.contains(s)))
    }

    pub fn record_consent(
        &self,
        tenant: TenantId,
        user: gatehouse_core::ids::UserId,
        request: &ValidRequest,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool().get()?;
        consents::grant(
            &mut conn,
            self.clock_now(),
            tenant,
            user,
            &request.client.data.client_id,
            &request.scopes,
        )
    }

    /// Issues a single-use code (only its hash is stored) for an authenticated user.
    pub fn issue_code(
        &self,
        tenant: TenantId,
        request: &ValidRequest,
        authentication: Authentication,
    ) -> Result<String, StoreError> {
        let code = random_token();
        let now = self.clock_now();
        let mut conn = self.pool().get()?;
        db::transaction(&mut conn, |conn| {
            // A pushed request yields one code (RFC 9126 §4: one-time use).
            if let Some(hash) = &request.pushed_request
                && !pushed_requests::consume(conn, now, tenant, hash)?
            {
                return Err(StoreError::Invalid {
                    entity: "pushed authorization request",
                    message: "already used or expired".into(),
                });
            }
            grants::insert_code(
                conn,
                now,
                tenant,
                NewCode {
                    code_hash: digest(&code),
                    client_id: request.client.data.client_id.clone(),
                    authentication,
                    redirect_uri: request.redirect_uri.clone(),
                    scope: request.scopes.join(" "),
                    resources: request.resources.clone(),
                    nonce: request.nonce.clone(),
                    code_challenge: request.code_challenge.clone(),
                    code_challenge_method: request
                        .code_challenge
                        .as_ref()
                        .map(|_| "S256".to_owned()),
                    lifetime: CODE_LIFETIME,
                },
            )
        })?;
        Ok(code)
    }

    fn user_tokens(
        &self,
        tenant: TenantId,
        issuer: &str,
        client: &Client,
        grant: &grants::Grant,
        nonce: Option<String>,
        with_refresh: bool,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock_now();
        let data = &client.data;
        let auth_user = grant.user_id.ok_or_else(OAuthError::server_error)?;
        let lifetime = Duration::seconds(data.access_token_ttl_secs.max(1));
        let scopes: Vec<&str> = grant.scope.split(' ').filter(|s| !s.is_empty()).collect();
        let audience = if grant.resources.is_empty() {
            data.default_audience
                .clone()
                .map(Audience::One)
                .unwrap_or_else(|| Audience::One(data.client_id.clone()))
        } else if grant.resources.len() == 1 {
            Audience::One(grant.resources[0].clone())
        } else {
            Audience::Many(grant.resources.clone())
        };
        let mut access = AccessTokenClaims::new(
            issuer,
            auth_user.to_string(),
            audience,
            data.client_id.clone(),
            now,
            lifetime,
        );
        // The grant id prefixes the jti, so introspection can see the grant was revoked.
        access.jti = grant_jti(&grant.id, &access.jti);
        access.scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        access.auth_time = grant.auth_time.map(|t| t.timestamp());
        access.acr = grant.acr.clone();
        access.amr = Some(grant.amr.clone());
        let ring = self.key_ring(tenant).map_err(crate::service::internal)?;
        let alg = Algorithm::default();
        let access_token = sign(&ring, alg, &access).map_err(crate::service::internal)?;

        let id_token = if scopes.contains(&"openid") {
            let mut conn = self.pool().get().map_err(crate::service::internal)?;
            let user =
                users::get(&mut conn, tenant, auth_user).map_err(crate::service::internal)?;
            let tenant_row = tenants::get(&mut conn, tenant).map_err(crate::service::internal)?;
            let (role_names, group_names) = role_and_group_names(&mut conn, tenant, auth_user)?;
            let table = scope_claims(&tenant_row.typed_settings());
            let mut id = IdTokenClaims::new(
                issuer,
                auth_user.to_string(),
                Audience::One(data.client_id.clone()),
                now,
                ID_TOKEN_LIFETIME,
            );
            id.nonce = nonce;
            id.auth_time = grant.auth_time.map(|t| t.timestamp());
            id.acr = grant.acr.clone();
            id.amr = Some(grant.amr.clone());
            id.azp = Some(data.client_id.clone());
            id.sid = grant.session_id.map(|s| s.to_string());
            // The client's registered alg (ES256 unless chosen); at_hash uses its hash.
            let id_alg =
                crate::client_auth::id_token_alg(data).map_err(crate::service::internal)?;
            let id_ring = self
                .signing_ring(tenant, id_alg)
                .map_err(crate::service::internal)?;
            id.at_hash = Some(at_hash(id_alg, &access_token));
            let mut extra = claims_for(&table, &scopes, &user, &role_names, &group_names);
            extra.remove("sub");
            id.extra = extra;
            Some(sign(&id_ring, id_alg, &id).map_err(crate::service::internal)?)
        } else {
            None
        };

        let refresh_token = if with_refresh && data.grant_types.iter().any(|g| g == "refresh_token")
        {
            let token = random_token();
            let mut conn = self.pool().get().map_err(crate::service::internal)?;
            grants::insert_refresh_token(
                &mut conn,
                now,
                tenant,
                &grant.id,
                &digest(&token),
                Duration::seconds(data.refresh_idle_ttl_secs.max(60)),
            )
            .map_err(crate::service::internal)?;
            Some(token)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime.num_seconds(),
            scope: Some(grant.scope.clone()),
            id_token,
            refresh_token,
        })
    }

    /// The authorization_code grant. A second redemption of a code revokes everything
    /// issued from its first (RFC 6749 §4.1.2).
    pub fn exchange_code(
        &self,
        tenant: TenantId,
        issuer: &str,
        presented: &PresentedClient,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.authenticate_client(tenant, presented)?;
        let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidGrant, why);
        let now = self.clock_now();
        let code_hash = digest(code);
        let mut conn = self.pool().get().map_err(crate::service::internal)?;
        let redeemed = match grants::redeem_code(&mut conn, now, tenant, &code_hash)
            .map_err(crate::service::internal)?
        {
            CodeRedemption::Fresh(redeemed) => redeemed,
            CodeRedemption::Replayed { grant_id } => {
                if let Some(grant_id) = grant_id {
                    grants::revoke(&mut conn, now, tenant, &grant_id, "code_replayed")
                        .map_err(crate::service::internal)?;
                }
                return Err(invalid("the authorization code was already used"));
            }
            CodeRedemption::Invalid => {
                return Err(invalid("unknown or expired authorization code"));
            }
        };
        if redeemed.client_id != client.data.client_id {
            return Err(invalid("the code was issued to another client"));
        }
        if redirect_uri != Some(redeemed.redirect_uri.as_str()) {
            return Err(invalid(
                "redirect_uri does not match the authorization request",
            ));
        }
        match (&redeemed.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => {}
            (Some(_), _) => return Err(invalid("PKCE verification failed")),
            (None, Some(_)) => return Err(invalid("no code_challenge was sent for this code")),
            (None, None) => {}
        }
        // A code is the pending authorization of a session: once that session is
        // over (signed out, expired), the code yields nothing.
        if session_over(&mut conn, now, tenant, redeemed.authentication.session_id)
            .map_err(crate::service::internal)?
        {
            return Err(invalid("the session this code was issued in has ended"));
        }
        let grant = db::transaction(&mut conn, |conn| {
            // Consent is read again here, not trusted from when the code was made: a
            // withdrawal in between withholds its scopes from the tokens.
            let requested: Vec<String> = redeemed
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let basis = consent_basis(
                conn,
                now,
                tenant,
                redeemed.authentication.user_id,
                &client.data.client_id,
                &requested,
            )?;
            let grant = grants::create(
                conn,
                now,
                tenant,
                NewGrant {
                    client_id: client.data.client_id.clone(),
                    issuer: Some(issuer.to_owned()),
                    authentication: Some(redeemed.authentication.clone()),
                    scope: basis.scopes.join(" "),
                    resources: redeemed.resources.clone(),
                    purposes: basis.purposes,
                    lifetime: Duration::seconds(
                        client
                            .data
                            .refresh_token_ttl_secs
                            .max(client.data.access_token_ttl_secs),
                    ),
                },
            )?;
            grants::link_code(conn, tenant, &code_hash, &grant.id)?;
            Ok(grant)
        })
        .map_err(crate::service::internal)?;
        drop(conn);
        self.user_tokens(
            tenant,
            issuer,
            &client,
            &grant,
            redeemed.nonce.clone(),
            true,
        )
    }

    /// The refresh_token grant with rotation: every use returns a new refresh token;
    /// presenting an already-rotated one revokes the whole grant.
    pub fn refresh(
        &self,
        tenant: TenantId,
        issuer: &str,
        presented: &PresentedClient,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.authenticate_client(tenant, presented)?;
        let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidGrant, why);
        let now = self.clock_now();
        let mut conn = self.pool().get().map_err(crate::service::internal)?;
        let grant_id =
            match grants::use_refresh_token(&mut conn, now, tenant, &digest(refresh_token))
                .map_err(crate::service::internal)?
            {
                RefreshUse::Fresh { grant_id } => grant_id,
                RefreshUse::Reused { grant_id } => {
                    grants::revoke(&mut conn, now, tenant, &grant_id, "refresh_token_reused")
                        .map_err(crate::service::internal)?;
                    return Err(invalid(
                        "the refresh token was already used; the grant is revoked",
                    ));
                }
                RefreshUse::Invalid => return Err(invalid("unknown or expired refresh token")),
            };
        let mut grant = grants::get(&mut conn, tenant, &grant_id)
            .map_err(crate::service::internal)?
            .ok_or_else(|| invalid("unknown grant"))?;
        if grant.client_id != client.data.client_id {
            return Err(invalid("the refresh token was issued to another client"));
        }
        if !grant.is_active(now) {
            return Err(invalid("the grant was revoked or has expired"));
        }
        // Without offline_access a grant lives only as long as the session it was
        // made in (Back-Channel Logout §2.7); checked here too, so a logout holds at
        // once even before its revocation job has run.
        if let Some(session) = grant.session_id
            && !grant.scope.split(' ').any(|s| s == "offline_access")
            && session_over(&mut conn, now, tenant, session).map_err(crate::service::internal)?
        {
            return Err(invalid("the session of this grant has ended"));
        }
        if let Some(requested) = scope.map(str::trim).filter(|s| !s.is_empty()) {
            let granted: Vec<&str> = grant.scope.split(' ').collect();
            if let Some(bad) = requested.split(' ').find(|s| !granted.contains(s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope `{bad}` exceeds the original grant"),
                ));
            }
            // Narrowing applies to the tokens of this response only.
            grant.scope = requested.to_owned();
        }
        // A consent the grant was issued under that is no longer in force (withdrawal
        // revokes the grant; expiry does not) ends the grant's usefulness, and a
        // purpose defined since withholds the scopes it covers until consented.
        if let Some(user) = grant.user_id {
            let scopes: Vec<String> = grant
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let client_id = grant.client_id.clone();
            let defined = purposes::list(&mut conn, tenant).map_err(crate::service::internal)?;
            if !defined.is_empty() {
                let in_force =
                    consent_records::current_for(&mut conn, now, tenant, user, &client_id)
                        .map_err(crate::service::internal)?;
                if !still_in_force(&grant.purposes, &in_force) {
                    return Err(invalid(
                        "consent this grant was issued under is no longer in force",
                    ));
                }
                grant.scope = sort_scopes(&defined, &in_force, &scopes).scopes.join(" ");
            }
        }
        drop(conn);
        self.user_tokens(tenant, issuer, &client, &grant, None, true)
    }

    /// UserInfo (OIDC Core §5.3): claims for the scopes of a valid access token.
    pub fn userinfo(
        &self,
        tenant: TenantId,
        issuer: &str,
        bearer: &str,
    ) -> Result<UserInfo, OAuthError> {
        let ring = self.key_ring(tenant).map_err(crate::service::internal)?;
        let now = self.clock_now();
        let claims = verify_access_token_with_leeway(&ring, bearer, issuer, now, Duration::zero())
            .map_err(|_| OAuthError::invalid_token("the access token is invalid or expired"))?;
        if !self
            .token_is_live(tenant, &claims.jti, now)
            .map_err(crate::service::internal)?
        {
            return Err(OAuthError::invalid_token("the access token was revoked"));
        }
        let scopes: Vec<&str> = claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .collect();
        if !scopes.contains(&"openid") {
            return Err(OAuthError {
                error: ErrorCode::InsufficientScope,
                error_description: Some("the token was not issued for openid".into()),
                status: 403,
                www_authenticate: Some(
                    "Bearer error=\"insufficient_scope\", scope=\"openid\"".into(),
                ),
            });
        }
        let user_id = claims
            .sub
            .parse()
            .map_err(|_| OAuthError::invalid_token("the token has no user"))?;
        let mut conn = self.pool().get().map_err(crate::service::internal)?;
        let user = users::get(&mut conn, tenant, user_id)
            .map_err(|_| OAuthError::invalid_token("unknown user"))?;
        let tenant_row = tenants::get(&mut conn, tenant).map_err(crate::service::internal)?;
        let (role_names, group_names) = role_and_group_names(&mut conn, tenant, user_id)?;
        let mut out = Map::new();
        out.insert("sub".into(), Value::String(claims.sub.clone()));
        out.extend(claims_for(
            &scope_claims(&tenant_row.typed_settings()),
            &scopes,
            &user,
            &role_names,
            &group_names,
        ));
        Ok(UserInfo {
            client_id: claims.client_id,
            claims: Value::Object(out),
        })
    }

    /// The grant of a user token if it is still active and every consent it was
    /// issued under is in force (an expired consent ends it like a withdrawal), with
    /// the user's consents to its client when the grant depends on any.
    pub(crate) fn live_grant(
        &self,
        conn: &mut gatehouse_identity_store::AnyConnection,
        tenant: TenantId,
        grant_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LiveGrant>, StoreError> {
        let Some(grant) = grants::get(conn, tenant, grant_id)?.filter(|g| g.is_active(now)) else {
            return Ok(None);
        };
        let mut consents = Vec::new();
        if let Some(user) = grant.user_id
            && depends_on_consent(&grant.purposes)
        {
            consents = consent_records::current_for(conn, now, tenant, user, &grant.client_id)?;
            if !still_in_force(&grant.purposes, &consents) {
                return Ok(None);
            }
        }
        Ok(Some(LiveGrant { grant, consents }))
    }

    /// Whether a token is live: not revoked by jti and, for a user token, its grant
    /// live ([`Self::live_grant`]). `Some(None)` is a live token without a grant
    /// (client_credentials).
    pub(crate) fn token_state(
        &self,
        tenant: TenantId,
        jti: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<LiveGrant>>, StoreError> {
        let mut conn = self.pool().get()?;
        if revoked_tokens::is_revoked(&mut conn, tenant, jti)? {
            return Ok(None);
        }
        match grant_of(jti) {
            Some(grant_id) => Ok(self.live_grant(&mut conn, tenant, grant_id, now)?.map(Some)),
            None => Ok(Some(None)),
        }
    }

    /// Not revoked by jti, and (for user tokens) its grant still live.
    pub(crate) fn token_is_live(
        &self,
        tenant: TenantId,
        jti: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.token_state(tenant, jti, now)?.is_some())
    }

    /// The purposes a grant was issued under, for introspection: the version each was
    /// issued under, the latest, and for consent the acceptance in force.
    pub(crate) fn purposes_status(
        &self,
        tenant: TenantId,
        live: &LiveGrant,
    ) -> Result<Vec<Value>, StoreError> {
        if live.grant.purposes.is_empty() {
            return Ok(Vec::new());
        }
        let latest = purposes::list(&mut *self.pool().get()?, tenant)?;
        Ok(live
            .grant
            .purposes
            .iter()
            .map(|p| {
                let mut entry = Map::new();
                entry.insert("purpose".into(), json!(p.purpose));
                entry.insert("version".into(), json!(p.version));
                entry.insert("legal_basis".into(), json!(p.legal_basis.as_str()));
                if let Some(current) = latest.iter().find(|l| l.slug == p.purpose) {
                    entry.insert("latest_version".into(), json!(current.version));
                }
                if let Some(consent) = live.consents.iter().find(|c| c.purpose == p.purpose) {
                    entry.insert("consent".into(), json!("in_force"));
                    entry.insert("accepted_version".into(), json!(consent.version));
                    entry.insert("granted_at".into(), json!(consent.granted_at.timestamp()));
                    if let Some(expires) = consent.expires_at {
                        entry.insert("consent_expires_at".into(), json!(expires.timestamp()));
                    }
                }
                Value::Object(entry)
            })
            .collect())
    }
}

/// A grant found live, and the consents it rests on (empty unless it depends on one).
pub(crate) struct LiveGrant {
    pub grant: grants::Grant,
    pub consents: Vec<consent_records::CurrentConsent>,
}

/// The `jti` of an access token issued under a grant: the grant id, a dot, and the
/// token's own random id, so that liveness can be checked against the grant.
/// The names of the user's roles and groups, for the `roles` and `groups` claims of
/// the ID token and the userinfo answer.
fn role_and_group_names(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<(Vec<String>, Vec<String>), OAuthError> {
    let roles = roles::roles_of_user(conn, tenant, user)
        .map_err(crate::service::internal)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    let groups = groups::groups_of_user(conn, tenant, user)
        .map_err(crate::service::internal)?
        .into_iter()
        .map(|g| g.display_name)
        .collect();
    Ok((roles, groups))
}

fn grant_jti(grant_id: &str, token_id: &str) -> String {
    format!("{grant_id}.{token_id}")
}

/// The grant a token was issued under, from its `jti` ([`grant_jti`]); `None` for a
/// token without one (client credentials).
pub(crate) fn grant_of(jti: &str) -> Option<&str> {
    jti.split_once('.').map(|(grant_id, _)| grant_id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(super::pkce_matches(verifier, challenge));
        assert!(!super::pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
        assert!(
            !super::pkce_matches("short", challenge),
            "a verifier under 43 characters was accepted"
        );
    }
}
