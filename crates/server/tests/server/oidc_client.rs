//! Interoperability: an OpenID client library we did not write (`openidconnect`, with
//! its `Core` types) acts as a relying party against Gatehouse, end to end: discovery,
//! code + PKCE through the real sign-in and consent pages, ID token validation,
//! UserInfo, refresh rotation, introspection, revocation, and client_credentials.
//!
//! Whatever the library refuses is a server bug: each step says which one failed and
//! shows what came back, so a failure reads as a report against the spec.

use std::error::Error;

use gatehouse_identity_store::Backend;
use gatehouse_identity_store::clients::ClientData;
use gatehouse_token_issuer::client_auth::secret_hash;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreSubjectIdentifierType,
    CoreTokenResponse, CoreTokenType, CoreUserInfoClaims,
};
use openidconnect::reqwest;
use openidconnect::url::Url;
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalProviderMetadata, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, DiscoveryError, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    ErrorResponse, HttpRequest, HttpResponse, IntrospectionUrl, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RequestTokenError,
    RevocationUrl, Scope, SyncHttpClient, TokenIntrospectionResponse, TokenResponse, UserInfoError,
};
use serde::{Deserialize, Serialize};

use crate::web_kit::{Browser, Page, WebApp};

/// Has characters that RFC 6749 §2.3.1 says the client must form-encode before
/// building the Basic credentials (`+`, `/`, `=`, `:`), as a generated secret may.
const SECRET: &str = "Zm9v+YmFy/YmF6=:cXV4-secret-secret-secret-0123";
const CLIENT_ID: &str = "webapp";
const EMAIL: &str = "rp-user@example.com";
const PASSWORD: &str = "violet-harbor-quilt-97-lantern";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const API: &str = "https://api.example";

/// The RFC 8414 members a relying party needs beyond OpenID Connect Discovery.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct AuthorizationServerFields {
    introspection_endpoint: Option<IntrospectionUrl>,
    revocation_endpoint: Option<RevocationUrl>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for AuthorizationServerFields {}

type Metadata = ProviderMetadata<
    AuthorizationServerFields,
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

/// A client built from discovery, with introspection and revocation set from RFC 8414.
type RelyingParty = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointSet,
    EndpointSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn register(app: &WebApp) {
    app.create_client(
        "default",
        ClientData {
            secret_hash: Some(secret_hash(SECRET)),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: vec![
                "authorization_code".into(),
                "refresh_token".into(),
                "client_credentials".into(),
            ],
            scopes: vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "offline_access".into(),
                "orders:read".into(),
            ],
            audiences: vec![API.into()],
            default_audience: Some(API.into()),
            ..ClientData::new(CLIENT_ID, "Web App")
        },
    );
}

/// The library's recommended HTTP client (no redirects followed, against SSRF),
/// behind a stand-in for a TLS-terminating proxy on loopback.
///
/// The in-process server speaks plain http, and the library accepts that everywhere
/// but at the revocation endpoint: RFC 7009 §2 says "Clients MUST verify that the URL
/// is an HTTPS URL", so `revoke_token` refuses an http URL outright (no opt-out).
/// Production mode already requires an https public URL, so this is the test rig, not
/// the server. The client is therefore given the `https://` form of the advertised
/// revocation endpoint, and this transport delivers `https://127.0.0.1:…` requests
/// over plain http, as a proxy in front of the server would.
struct LoopbackTls {
    inner: reqwest::blocking::Client,
}

impl LoopbackTls {
    fn new() -> Self {
        LoopbackTls {
            inner: reqwest::blocking::ClientBuilder::new()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }
}

impl SyncHttpClient for LoopbackTls {
    type Error = <reqwest::blocking::Client as SyncHttpClient>::Error;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, Self::Error> {
        let (mut parts, body) = request.into_parts();
        let uri = parts.uri.to_string();
        if let Some(rest) = uri.strip_prefix("https://127.0.0.1:") {
            parts.uri = format!("http://127.0.0.1:{rest}").parse().unwrap();
        }
        self.inner.call(HttpRequest::from_parts(parts, body))
    }
}

/// The https form of an advertised endpoint (see [`LoopbackTls`]).
fn behind_tls(url: &str) -> String {
    url.strip_prefix("http://127.0.0.1:")
        .map(|rest| format!("https://127.0.0.1:{rest}"))
        .unwrap_or_else(|| url.to_owned())
}

/// An error and all its sources, one line.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn body_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Why a token, introspection or revocation request failed, with what the server sent.
fn explain_request<RE, TE>(step: &str, error: &RequestTokenError<RE, TE>) -> String
where
    RE: Error + 'static,
    TE: ErrorResponse + 'static,
{
    match error {
        RequestTokenError::ServerResponse(response) => {
            format!("{step}: the server answered with an error: {response}")
        }
        RequestTokenError::Parse(parse, body) => format!(
            "{step}: the library could not parse the response (at `{}`: {}); body: {}",
            parse.path(),
            parse.inner(),
            body_text(body)
        ),
        RequestTokenError::Request(request) => format!("{step}: {}", chain(request)),
        RequestTokenError::Other(other) => format!("{step}: {other}"),
    }
}

fn explain_discovery<RE: Error + 'static>(error: &DiscoveryError<RE>) -> String {
    match error {
        DiscoveryError::Response(status, body, message) => {
            format!(
                "discovery: {message} (HTTP {status}); body: {}",
                body_text(body)
            )
        }
        DiscoveryError::Parse(parse) => format!(
            "discovery: the library could not parse the document at `{}`: {}",
            parse.path(),
            parse.inner()
        ),
        other => format!("discovery: {}", chain(other)),
    }
}

fn explain_userinfo<RE: Error + 'static>(error: &UserInfoError<RE>) -> String {
    match error {
        UserInfoError::Response(status, body, message) => {
            format!(
                "userinfo: {message} (HTTP {status}); body: {}",
                body_text(body)
            )
        }
        UserInfoError::Parse(parse) => format!(
            "userinfo: the library could not parse the claims at `{}`: {}",
            parse.path(),
            parse.inner()
        ),
        other => format!("userinfo: {}", chain(other)),
    }
}

/// Decodes the HTML character references a template engine puts in attribute values.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let end = tail.find(';').expect("character reference ends with `;`");
        let entity = &tail[..end];
        let decoded = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            numeric => {
                let code = match numeric
                    .strip_prefix("#x")
                    .or_else(|| numeric.strip_prefix("#X"))
                {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => numeric
                        .strip_prefix('#')
                        .expect("known character reference")
                        .parse(),
                }
                .expect("numeric character reference");
                char::from_u32(code).expect("valid character")
            }
        };
        out.push(decoded);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The value of a form's hidden field, as a browser would submit it.
fn hidden_field(page: &Page, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .body
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("the page has no `{name}` field: {}", page.body));
    html_unescape(page.body[start..].split('"').next().unwrap())
}

/// Follows a Location header the way a browser does (relative or absolute).
fn follow(browser: &mut Browser, app: &WebApp, location: &str) -> Page {
    if location.starts_with("http://") || location.starts_with("https://") {
        assert!(
            location.starts_with(&app.base),
            "sent off-site mid-flow: {location}"
        );
        browser.get_absolute(location)
    } else {
        browser.get(location)
    }
}

/// Discovery as a relying party does it: the library fetches
/// `{issuer}/.well-known/openid-configuration` and the JWKS, and checks the issuer.
fn discover(app: &WebApp, http: &LoopbackTls) -> (Metadata, RelyingParty) {
    let issuer = IssuerUrl::new(app.base.clone()).unwrap();
    let metadata = Metadata::discover(&issuer, http)
        .unwrap_or_else(|error| panic!("{}", explain_discovery(&error)));

    // OpenID Connect Discovery 1.0 §3 (REQUIRED members) and what this RP relies on.
    assert_eq!(metadata.issuer(), &issuer);
    assert_eq!(
        metadata.authorization_endpoint().as_str(),
        format!("{}/authorize", app.base)
    );
    assert_eq!(
        metadata.token_endpoint().map(|u| u.as_str().to_owned()),
        Some(format!("{}/oauth2/token", app.base))
    );
    assert_eq!(
        metadata.userinfo_endpoint().map(|u| u.as_str().to_owned()),
        Some(format!("{}/userinfo", app.base))
    );
    assert!(
        !metadata.jwks().keys().is_empty(),
        "the JWKS behind jwks_uri has no key the library can use"
    );
    assert!(
        metadata
            .response_types_supported()
            .iter()
            .any(|types| types.contains(&CoreResponseType::Code)),
        "response_types_supported lacks `code`"
    );
    assert!(
        metadata
            .subject_types_supported()
            .contains(&CoreSubjectIdentifierType::Public)
    );
    assert!(
        metadata
            .id_token_signing_alg_values_supported()
            .contains(&CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        "ES256 is not advertised for ID tokens"
    );
    assert!(
        metadata
            .scopes_supported()
            .is_some_and(|s| s.contains(&Scope::new("openid".into()))),
        "scopes_supported must list openid (Discovery §3)"
    );
    assert!(
        metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|m| m.contains(&CoreClientAuthMethod::ClientSecretBasic))
    );
    let extra = metadata.additional_metadata();
    assert_eq!(extra.code_challenge_methods_supported, vec!["S256"]);
    assert!(extra.authorization_response_iss_parameter_supported);
    let introspection = extra
        .introspection_endpoint
        .clone()
        .expect("introspection_endpoint in the metadata (RFC 8414 §2)");
    let revocation = extra
        .revocation_endpoint
        .clone()
        .expect("revocation_endpoint in the metadata (RFC 8414 §2)");
    assert_eq!(
        introspection.as_str(),
        format!("{}/oauth2/introspect", app.base)
    );
    assert_eq!(revocation.as_str(), format!("{}/oauth2/revoke", app.base));
    let revocation = RevocationUrl::new(behind_tls(revocation.as_str())).unwrap();

    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_introspection_url(introspection)
    .set_revocation_url(revocation);
    (metadata, client)
}

/// What came back to the redirect URI.
struct Callback {
    code: String,
    state: String,
    iss: Option<String>,
}

/// The browser part: the authorization request, sign-in, consent, the redirect back.
fn browse_to_callback(app: &WebApp, authorize_url: &Url) -> Callback {
    let mut browser = app.browser();
    let first = browser.get_absolute(authorize_url.as_str());
    assert_eq!(
        first.status, 303,
        "an anonymous authorization request should go to sign-in: {}",
        first.body
    );
    let to_sign_in = first.location().unwrap();
    let sign_in = follow(&mut browser, app, &to_sign_in);
    assert_eq!(sign_in.status, 200, "{}", sign_in.body);
    let return_to = hidden_field(&sign_in, "return_to");
    let signed_in = browser.post_form(
        "/signin",
        &sign_in,
        &[
            ("email", EMAIL),
            ("password", PASSWORD),
            ("return_to", return_to.as_str()),
        ],
    );
    assert_eq!(signed_in.status, 303, "sign-in failed: {}", signed_in.body);
    let back = signed_in.location().unwrap();
    assert!(
        back.contains("/authorize?"),
        "sign-in did not return to the authorization request: {back}"
    );
    // A third-party client without a remembered consent: the user is asked.
    let consent = follow(&mut browser, app, &back);
    consent.assert_shows(200, "Web App");
    let request = hidden_field(&consent, "request");
    let location = browser.approve_consent(&consent, &request);
    let url = Url::parse(&location)
        .unwrap_or_else(|e| panic!("redirect `{location}` is not an absolute URL: {e}"));
    let mut without_query = url.clone();
    without_query.set_query(None);
    assert_eq!(without_query.as_str(), REDIRECT, "redirected elsewhere");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("error"),
        None,
        "the authorization request failed: {location}"
    );
    Callback {
        code: param("code").expect("code in the authorization response"),
        state: param("state").expect("state returned (RFC 6749 §4.1.2)"),
        iss: param("iss"),
    }
}

fn assert_same_identity(
    original: &openidconnect::core::CoreIdTokenClaims,
    refreshed: &openidconnect::core::CoreIdTokenClaims,
) {
    // OIDC Core §12.2: iss, sub, aud, azp and auth_time as in the original ID token.
    assert_eq!(refreshed.issuer(), original.issuer());
    assert_eq!(refreshed.subject(), original.subject());
    assert_eq!(refreshed.audiences(), original.audiences());
    assert_eq!(refreshed.authorized_party(), original.authorized_party());
    assert_eq!(
        refreshed.auth_time(),
        original.auth_time(),
        "auth_time must stay the time of the original authentication"
    );
}

#[test]
fn openidconnect_library_completes_code_flow_userinfo_refresh_introspection_and_revocation() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app);
    app.create_verified_user(EMAIL, PASSWORD);
    let http = LoopbackTls::new();

    // 1. Discovery.
    let (metadata, client) = discover(&app, &http);

    // 2. Authorization request: code + PKCE S256, state, nonce.
    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(pkce_challenge)
        .url();
    let callback = browse_to_callback(&app, &authorize_url);
    assert_eq!(&callback.state, csrf_state.secret(), "state does not match");
    // RFC 9207 §2.4: advertised, so the client must check it.
    assert_eq!(
        callback.iss.as_deref(),
        Some(metadata.issuer().as_str()),
        "iss in the authorization response"
    );

    // 3. Token exchange with the verifier.
    let tokens: CoreTokenResponse = client
        .exchange_code(AuthorizationCode::new(callback.code))
        .unwrap()
        .set_pkce_verifier(pkce_verifier)
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("code exchange", &e)));
    assert_eq!(tokens.token_type(), &CoreTokenType::Bearer);
    assert_eq!(tokens.expires_in().map(|d| d.as_secs()), Some(300));
    let granted: Vec<&str> = tokens
        .scopes()
        .expect("scope in the token response")
        .iter()
        .map(|s| s.as_str())
        .collect();
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(granted.contains(&scope), "{scope} not granted: {granted:?}");
    }
    let first_access = tokens.access_token().clone();
    let first_refresh = tokens
        .refresh_token()
        .expect("offline_access yields a refresh token")
        .clone();

    // 4. ID token validation by the library: signature (ES256) against the JWKS,
    // iss, aud, exp, iat, nonce; then at_hash.
    let id_token = tokens
        .id_token()
        .expect("the code flow returns an ID token (OIDC Core §3.1.3.3)");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .unwrap_or_else(|e| panic!("ID token rejected: {}", chain(&e)))
        .clone();
    assert_eq!(
        id_token.signing_alg().unwrap(),
        &CoreJwsSigningAlgorithm::EcdsaP256Sha256
    );
    assert_eq!(claims.issuer(), metadata.issuer());
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec![CLIENT_ID]
    );
    assert_eq!(
        claims.authorized_party().map(|p| p.as_str()),
        Some(CLIENT_ID)
    );
    assert_eq!(
        claims.nonce().map(|n| n.secret().as_str()),
        Some(nonce.secret().as_str())
    );
    assert!(claims.auth_time().is_some(), "auth_time missing");
    assert_eq!(claims.email().map(|e| e.as_str()), Some(EMAIL));
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(
        claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("Test")
    );
    let expected_hash = claims.access_token_hash().expect("at_hash in the ID token");
    let actual_hash = AccessTokenHash::from_token(
        &first_access,
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual_hash, expected_hash, "at_hash does not match");

    // 5. UserInfo, pinned to the ID token's subject (token substitution check).
    let info: CoreUserInfoClaims = client
        .user_info(first_access.clone(), Some(claims.subject().clone()))
        .unwrap()
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_userinfo(&e)));
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.email().map(|e| e.as_str()), Some(EMAIL));
    assert_eq!(info.email_verified(), Some(true));
    assert_eq!(
        info.family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str()),
        Some("User")
    );

    // 6. Refresh: rotation gives a new refresh token.
    let refreshed: CoreTokenResponse = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("refresh", &e)));
    let second_access = refreshed.access_token().clone();
    let second_refresh = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert_ne!(second_access.secret(), first_access.secret());
    if let Some(again) = refreshed.id_token() {
        // OIDC Core §12.2: a nonce, if present, is the original one.
        let original_nonce = nonce.clone();
        let refreshed_claims = again
            .claims(&verifier, |found: Option<&Nonce>| match found {
                Some(n) if n.secret() != original_nonce.secret() => {
                    Err("nonce changed on refresh".to_owned())
                }
                _ => Ok(()),
            })
            .unwrap_or_else(|e| panic!("refreshed ID token rejected: {}", chain(&e)));
        assert_same_identity(&claims, refreshed_claims);
    }

    // 7. Introspection of the new access token.
    let introspect = |token: &AccessToken| {
        client
            .introspect(token)
            .request(&http)
            .unwrap_or_else(|e| panic!("{}", explain_request("introspection", &e)))
    };
    let active = introspect(&second_access);
    assert!(active.active(), "a fresh access token is inactive");
    assert_eq!(active.client_id().map(|c| c.as_str()), Some(CLIENT_ID));
    assert_eq!(active.sub(), Some(claims.subject().as_str()));
    assert_eq!(active.iss(), Some(metadata.issuer().as_str()));
    assert_eq!(active.token_type(), Some(&CoreTokenType::Bearer));
    assert!(active.exp().is_some());
    assert!(
        active
            .scopes()
            .is_some_and(|s| s.contains(&Scope::new("openid".into())))
    );

    // 8. Revocation of the access token (RFC 7009), seen at once by introspection.
    client
        .revoke_token(CoreRevocableToken::AccessToken(second_access.clone()))
        .unwrap()
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("revoking the access token", &e)));
    assert!(
        !introspect(&second_access).active(),
        "a revoked access token still introspects active"
    );

    // 9. Revocation of the refresh token: it no longer refreshes, and (RFC 7009 §2.1,
    // as Gatehouse implements it) the grant's other access tokens go too.
    client
        .revoke_token(CoreRevocableToken::RefreshToken(second_refresh.clone()))
        .unwrap()
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("revoking the refresh token", &e)));
    match client
        .exchange_refresh_token(&second_refresh)
        .unwrap()
        .request(&http)
    {
        Err(RequestTokenError::ServerResponse(response)) => {
            assert_eq!(response.error(), &CoreErrorResponseType::InvalidGrant)
        }
        Err(other) => panic!(
            "{}",
            explain_request("refresh with a revoked token", &other)
        ),
        Ok(_) => panic!("a revoked refresh token still refreshes"),
    }
    assert!(
        !introspect(&first_access).active(),
        "the grant's first access token survived revoking its refresh token"
    );
    let after_revocation: Result<CoreUserInfoClaims, _> =
        client.user_info(first_access, None).unwrap().request(&http);
    assert!(
        after_revocation.is_err(),
        "UserInfo answered for a revoked grant"
    );
}

#[test]
fn openidconnect_library_gets_a_client_credentials_token_that_introspects_active() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app);
    let http = LoopbackTls::new();
    let (metadata, client) = discover(&app, &http);

    let issued: CoreTokenResponse = client
        .exchange_client_credentials()
        .unwrap()
        .add_scope(Scope::new("orders:read".into()))
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("client_credentials", &e)));
    assert_eq!(issued.token_type(), &CoreTokenType::Bearer);
    assert_eq!(issued.expires_in().map(|d| d.as_secs()), Some(300));
    assert_eq!(
        issued
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        Some(vec!["orders:read"])
    );
    assert!(issued.id_token().is_none(), "an ID token without a user");
    // RFC 6749 §4.4.3: a refresh token SHOULD NOT be included.
    assert!(issued.refresh_token().is_none());

    let active = client
        .introspect(issued.access_token())
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("introspection", &e)));
    assert!(active.active(), "a client_credentials token is inactive");
    assert_eq!(active.client_id().map(|c| c.as_str()), Some(CLIENT_ID));
    assert_eq!(active.sub(), Some(CLIENT_ID));
    assert_eq!(active.iss(), Some(metadata.issuer().as_str()));
    assert_eq!(active.aud(), Some(&vec![API.to_owned()]));
    assert_eq!(
        active
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        Some(vec!["orders:read"])
    );

    client
        .revoke_token(CoreRevocableToken::AccessToken(
            issued.access_token().clone(),
        ))
        .unwrap()
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("revocation", &e)));
    let after = client
        .introspect(issued.access_token())
        .request(&http)
        .unwrap_or_else(|e| panic!("{}", explain_request("introspection", &e)));
    assert!(!after.active(), "a revoked token still introspects active");
}
