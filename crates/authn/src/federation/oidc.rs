//! Upstream OpenID Connect with the `openidconnect` crate: discovery (cached per
//! node, refreshed), the authorization request with PKCE, state and nonce, the code
//! exchange, ID-token verification, UserInfo. Every HTTP call goes through the
//! shared outbound client (no redirects, timeouts, size limits, private networks
//! only where configured).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::ConnectionId;
use gatehouse_identity_store::federation_connections::Connection;
use gatehouse_outbound::{Outbound, OutboundError};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreGrantType, CoreIdToken, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthenticationContextClass,
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndSessionUrl,
    IssuerUrl, LoginHint, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadata, RedirectUrl, Scope,
    SignatureVerificationError, SubjectIdentifier, TokenResponse,
};
use serde::{Deserialize, Serialize};

use super::mapping::Claims;
use super::{OidcSecrets, OidcSettings, Refusal, Verified};
use crate::AuthnError;
use crate::service::Inner;

/// What a provider advertises beyond the core members.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct ExtraMetadata {
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub(crate) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// UserInfo claims beyond the standard ones (groups, custom claims).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct OtherClaims(serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

/// How long a provider's discovery document and keys are used before they are
/// read again.
const FRESH_FOR_MINUTES: i64 = 60;
/// An ID token signed by a key the cached set lacks refetches the keys (the
/// provider rotated them), at most this often per connection.
const KEY_REFETCH_SECONDS: i64 = 60;

/// Signature algorithms accepted for ID tokens, whatever a provider advertises:
/// asymmetric only — never `none`, never HMAC keyed with the client secret.
const ACCEPTED_ALGS: [CoreJwsSigningAlgorithm; 6] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EdDsa,
];

struct Cached {
    issuer: String,
    fetched_at: DateTime<Utc>,
    metadata: Arc<Metadata>,
}

/// The node's view of upstream providers: the outbound client and each
/// connection's discovery document and keys.
pub(crate) struct Upstream {
    outbound: Outbound,
    cache: Mutex<HashMap<ConnectionId, Cached>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// The answer's parts the exchange needs.
pub(crate) struct Exchange {
    pub(crate) code: String,
    pub(crate) pkce_verifier: String,
    pub(crate) nonce: String,
    pub(crate) redirect_uri: String,
    pub(crate) iss: Option<String>,
}

async fn call(
    outbound: Outbound,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, OutboundError> {
    let (parts, body) = request.into_parts();
    let response = outbound
        .request(parts.method, &parts.uri.to_string())?
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = outbound.read_limited(response).await?;
    let mut answer = openidconnect::HttpResponse::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

/// An error and its causes on one line (for the audit record and the log).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Upstream {
    pub(crate) fn new(outbound: Outbound) -> Upstream {
        Upstream {
            outbound,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(
        &self,
        connection: ConnectionId,
        issuer: &str,
    ) -> Option<(DateTime<Utc>, Arc<Metadata>)> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .get(&connection)
            .filter(|entry| entry.issuer == issuer)
            .map(|entry| (entry.fetched_at, Arc::clone(&entry.metadata)))
    }

    /// Reads the provider's discovery document and keys; refuses a document whose
    /// `issuer` is not the configured one.
    async fn discover(
        &self,
        inner: &Inner,
        connection: ConnectionId,
        issuer: &str,
    ) -> Result<Arc<Metadata>, AuthnError> {
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| Refusal::error("oidc_discovery", format!("issuer: {e}")))?;
        let outbound = self.outbound.clone();
        let http = move |request| call(outbound.clone(), request);
        let metadata = Metadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| Refusal::error("oidc_discovery", chain(&e)))?;
        let metadata = Arc::new(metadata);
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.insert(
            connection,
            Cached {
                issuer: issuer.to_owned(),
                fetched_at: inner.now(),
                metadata: Arc::clone(&metadata),
            },
        );
        Ok(metadata)
    }

    /// The provider's metadata and keys: the node's copy while fresh, else read
    /// again.
    pub(crate) async fn provider(
        &self,
        inner: &Inner,
        connection: &Connection,
        settings: &OidcSettings,
    ) -> Result<Arc<Metadata>, AuthnError> {
        match self.cached(connection.id, &settings.issuer) {
            Some((fetched_at, metadata))
                if inner.now() - fetched_at < Duration::minutes(FRESH_FOR_MINUTES) =>
            {
                Ok(metadata)
            }
            _ => self.discover(inner, connection.id, &settings.issuer).await,
        }
    }

    /// Exchanges the code and verifies what comes back.
    pub(crate) async fn verify(
        &self,
        inner: &Inner,
        connection: &Connection,
        settings: &OidcSettings,
        secrets: &OidcSecrets,
        exchange: Exchange,
    ) -> Result<Verified, AuthnError> {
        let mut metadata = self.provider(inner, connection, settings).await?;
        // RFC 9207: a provider that names itself in the answer must name itself.
        let iss_required = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported;
        match exchange.iss.as_deref() {
            Some(iss) if iss != settings.issuer => {
                return Err(Refusal::error(
                    "oidc_issuer",
                    format!("the answer's iss `{iss}` is not the provider's"),
                ));
            }
            None if iss_required => {
                return Err(Refusal::error(
                    "oidc_issuer",
                    "the provider sends iss with its answers, and this one has none",
                ));
            }
            _ => {}
        }
        let client = client(&metadata, settings, Some(secrets), &exchange.redirect_uri)?;
        let outbound = self.outbound.clone();
        let http = move |request| call(outbound.clone(), request);
        let mut request = client
            .exchange_code(AuthorizationCode::new(exchange.code))
            .map_err(|e| Refusal::error("oidc_token", e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(exchange.pkce_verifier));
        if settings.client_auth == super::ClientAuth::PrivateKeyJwt {
            let key = secrets.private_key.as_deref().ok_or_else(|| {
                Refusal::error(
                    "connection_invalid",
                    "private_key_jwt, but no key is stored",
                )
            })?;
            let audience = metadata
                .token_endpoint()
                .ok_or_else(|| Refusal::error("oidc_discovery", "no token endpoint"))?
                .to_string();
            let assertion = super::client_key::assertion(
                key,
                &settings.client_id,
                &audience,
                inner.now().timestamp(),
            )?;
            request = request
                .add_extra_param("client_assertion_type", super::client_key::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let token = request
            .request_async(&http)
            .await
            .map_err(|e| Refusal::error("oidc_token", chain(&e)))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| Refusal::error("oidc_id_token", "the token response has no ID token"))?
            .clone();
        let nonce = Nonce::new(exchange.nonce);
        let (subject, acr) = match check_id_token(inner, &metadata, &client, &id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.may_refetch(inner, connection.id) => {
                // The provider may have rotated its keys since they were read.
                metadata = self
                    .discover(inner, connection.id, &settings.issuer)
                    .await?;
                let client =
                    self::client(&metadata, settings, Some(secrets), &exchange.redirect_uri)?;
                check_id_token(inner, &metadata, &client, &id_token, &nonce)
            }
            other => other,
        }
        .map_err(|e| Refusal::error("oidc_id_token", chain(&e)))?;
        let payload = payload(&id_token)?;
        if let Some(azp) = payload.get("azp").and_then(|v| v.as_str())
            && azp != settings.client_id
        {
            return Err(Refusal::error(
                "oidc_id_token",
                format!("azp `{azp}` is not this client"),
            ));
        }
        let mut claims = Claims::from_json(&payload);
        if settings.userinfo && metadata.userinfo_endpoint().is_some() {
            let info = client
                .user_info(
                    token.access_token().clone(),
                    Some(SubjectIdentifier::new(subject.clone())),
                )
                .map_err(|e| Refusal::error("oidc_userinfo", e.to_string()))?
                .request_async::<OtherClaims, _, CoreGenderClaim>(&http)
                .await
                .map_err(|e| Refusal::error("oidc_userinfo", chain(&e)))?;
            let info =
                serde_json::to_value(&info).map_err(|e| AuthnError::Internal(e.to_string()))?;
            if let Some(object) = info.as_object() {
                claims.fill_from(Claims::from_json(object));
            }
        }
        let aal = acr
            .as_deref()
            .and_then(|acr| settings.acr_levels.get(acr).copied())
            .unwrap_or(1);
        Ok(Verified {
            subject,
            upstream_session: id_token.to_string(),
            upstream_key: None,
            claims,
            aal,
        })
    }

    fn may_refetch(&self, inner: &Inner, connection: ConnectionId) -> bool {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(&connection).is_none_or(|entry| {
            inner.now() - entry.fetched_at >= Duration::seconds(KEY_REFETCH_SECONDS)
        })
    }
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The client as the provider knows it; `secrets` only where it authenticates
/// (the token endpoint), not for the authorization request.
fn client(
    metadata: &Metadata,
    settings: &OidcSettings,
    secrets: Option<&OidcSecrets>,
    redirect_uri: &str,
) -> Result<Client, AuthnError> {
    let redirect = RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|e| AuthnError::Internal(format!("redirect URI: {e}")))?;
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(settings.client_id.clone()),
        secrets
            .and_then(|s| s.client_secret.clone())
            .map(ClientSecret::new),
    )
    .set_redirect_uri(redirect)
    .set_auth_type(match settings.client_auth {
        super::ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
        // No secret: the client_id goes in the body beside the assertion.
        super::ClientAuth::ClientSecretPost | super::ClientAuth::PrivateKeyJwt => {
            AuthType::RequestBody
        }
    }))
}

/// Verifies the ID token: signature by a key of the provider's set with an
/// algorithm it advertises and Gatehouse accepts, issuer, audience, expiry (by
/// Gatehouse's clock) and nonce. The subject and `acr`.
fn check_id_token(
    inner: &Inner,
    metadata: &Metadata,
    client: &Client,
    id_token: &CoreIdToken,
    nonce: &Nonce,
) -> Result<(String, Option<String>), ClaimsVerificationError> {
    let advertised = metadata.id_token_signing_alg_values_supported();
    let allowed: Vec<CoreJwsSigningAlgorithm> = ACCEPTED_ALGS
        .iter()
        .filter(|alg| advertised.contains(alg))
        .cloned()
        .collect();
    let now = inner.now();
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(allowed)
        .set_time_fn(move || now);
    let claims = id_token.claims(&verifier, nonce)?;
    Ok((
        claims.subject().as_str().to_owned(),
        claims.auth_context_ref().map(|acr| acr.as_str().to_owned()),
    ))
}

/// The (verified) ID token's claims as sent, the provider's own claims included.
fn payload(
    id_token: &CoreIdToken,
) -> Result<serde_json::Map<String, serde_json::Value>, AuthnError> {
    let compact = id_token.to_string();
    let part = compact
        .split('.')
        .nth(1)
        .ok_or_else(|| Refusal::error("oidc_id_token", "not a compact JWS"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::error("oidc_id_token", "the payload is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| Refusal::error("oidc_id_token", "the payload is not a JSON object"))
}

/// The authorization request's URL, and the PKCE verifier to keep.
pub(crate) fn authorization_url(
    metadata: &Metadata,
    settings: &OidcSettings,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    login_hint: Option<&str>,
    step_up: Option<&[String]>,
) -> Result<(String, String), AuthnError> {
    let client = client(metadata, settings, None, redirect_uri)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = state.to_owned();
    let nonce = nonce.to_owned();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .set_pkce_challenge(challenge);
    for scope in settings.scopes.iter().filter(|scope| *scope != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    if let Some(hint) = login_hint.filter(|hint| !hint.is_empty()) {
        request = request.set_login_hint(LoginHint::new(hint.to_owned()));
    }
    // A step-up asks for a fresh, stronger sign-in (OIDC Core §3.1.2.1).
    if let Some(values) = step_up {
        for value in values {
            request =
                request.add_auth_context_value(AuthenticationContextClass::new(value.clone()));
        }
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, _, _) = request.url();
    Ok((url.to_string(), verifier.secret().clone()))
}

/// The provider's end-session URL for signing out with `id_token` as the hint,
/// coming back to `back`; `None` when the provider offers none.
pub(crate) fn logout_url(
    metadata: &Metadata,
    settings: &OidcSettings,
    id_token: &str,
    back: &str,
) -> Result<Option<String>, AuthnError> {
    let Some(endpoint) = metadata
        .additional_metadata()
        .end_session_endpoint
        .as_deref()
    else {
        return Ok(None);
    };
    let endpoint = EndSessionUrl::new(endpoint.to_owned())
        .map_err(|e| Refusal::error("oidc_discovery", format!("end_session_endpoint: {e}")))?;
    let hint = CoreIdToken::from_str(id_token)
        .map_err(|e| AuthnError::Internal(format!("the stored ID token: {e}")))?;
    let back = PostLogoutRedirectUrl::new(back.to_owned())
        .map_err(|e| AuthnError::Internal(format!("post-logout redirect URI: {e}")))?;
    Ok(Some(
        LogoutRequest::from(endpoint)
            .set_id_token_hint(&hint)
            .set_client_id(ClientId::new(settings.client_id.clone()))
            .set_post_logout_redirect_uri(back)
            .http_get_url()
            .to_string(),
    ))
}
