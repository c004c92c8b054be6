//! The authorization code flow over HTTP: sign-in, consent, code + PKCE, ID token,
//! UserInfo, refresh rotation and the hostile cases (replayed code, reused refresh
//! token, wrong verifier, plain PKCE, unregistered redirect URI).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::clients::ClientData;
use gatehouse_token_issuer::client_auth::secret_hash;
use reqwest::blocking::Client as Http;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::web_kit::{Browser, ReceivedRequest, WebApp, basic};

pub const SECRET: &str = "app-secret-app-secret-app-secret-app-secre";
pub const PASSWORD: &str = "violet-harbor-quilt-97-lantern";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// The test's confidential client, `webapp`, before registration.
pub fn client_data(first_party: bool) -> ClientData {
    ClientData {
        secret_hash: Some(secret_hash(SECRET)),
        redirect_uris: vec![REDIRECT.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec![
            "openid".into(),
            "profile".into(),
            "email".into(),
            "offline_access".into(),
        ],
        audiences: vec!["https://api.example".into()],
        default_audience: Some("https://api.example".into()),
        first_party,
        ..ClientData::new("webapp", "Web App")
    }
}

pub fn register_client(app: &WebApp, data: ClientData) {
    app.create_client("default", data);
}

pub fn register(app: &WebApp, first_party: bool) {
    register_client(app, client_data(first_party));
}

pub fn authorize_query(extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id=webapp&redirect_uri={}&scope=openid%20profile%20email&state=xyz&nonce=n-0S6&code_challenge={}&code_challenge_method=S256{extra}",
        urlencode(REDIRECT),
        challenge()
    )
}

pub fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub fn params(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub fn param(location: &str, name: &str) -> Option<String> {
    params(location)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub fn signed_in(app: &WebApp) -> Browser {
    app.create_verified_user("uma@example.com", PASSWORD);
    signed_in_again(app)
}

/// A new browser signed in as the user [`signed_in`] made.
pub fn signed_in_again(app: &WebApp) -> Browser {
    app.signed_in_browser("uma@example.com", PASSWORD)
}

/// Registers `webapp`, signs uma in and runs the whole code flow: the signed-in
/// browser and the token response.
/// An app on SQLite with the web app client registered and a browser signed in.
pub fn client_and_signed_in_user(first_party: bool) -> (WebApp, Browser) {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, first_party);
    let browser = signed_in(&app);
    (app, browser)
}

pub fn signed_in_with_tokens(app: &WebApp, first_party: bool) -> (Browser, Value) {
    register(app, first_party);
    let mut browser = signed_in(app);
    let code = get_code(&mut browser, "");
    let (status, tokens) = exchange(app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    (browser, tokens)
}

/// Checks an OAuth answer is the RFC 6749 error `code` with `status`.
#[track_caller]
pub fn assert_oauth_error(answered: u16, body: &Value, status: u16, code: &str) {
    assert_eq!(
        (answered, body["error"].as_str()),
        (status, Some(code)),
        "{body}"
    );
}

/// Runs the browser part up to the code (approving consent when asked).
pub fn get_code(browser: &mut Browser, extra: &str) -> String {
    let page = browser.get(&authorize_query(extra));
    let location = if page.status == 200 {
        assert!(
            page.body.contains("Web App"),
            "consent page does not name the client: {}",
            page.body
        );
        let request = authorize_query(extra).split_once('?').unwrap().1.to_owned();
        browser.approve_consent(&page, &request)
    } else {
        assert_eq!(page.status, 303, "{}", page.body);
        page.location().unwrap()
    };
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(param(&location, "state").as_deref(), Some("xyz"));
    param(&location, "code").expect("code in the redirect")
}

/// A token request of `webapp`, authenticated with its secret.
pub fn token(app: &WebApp, body: &str) -> (u16, Value) {
    let answer = app.post_urlencoded("/oauth2/token", Some(&basic("webapp", SECRET)), body);
    (answer.status, answer.json)
}

/// A refresh of `webapp`'s `refresh_token`.
pub fn refresh(app: &WebApp, refresh_token: &str) -> (u16, Value) {
    token(
        app,
        &format!("grant_type=refresh_token&refresh_token={refresh_token}"),
    )
}

pub fn exchange(app: &WebApp, code: &str, verifier: &str) -> (u16, Value) {
    token(
        app,
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
            urlencode(REDIRECT)
        ),
    )
}

pub fn introspect_active(app: &WebApp, token: &str) -> bool {
    let answer = app.post_urlencoded(
        "/oauth2/introspect",
        Some(&basic("webapp", SECRET)),
        &format!("token={token}"),
    );
    answer.json["active"] == true
}

/// Verifies a token of this server against its JWKS (signature, `iss`, `aud`; not
/// expiry) and returns its header and claims.
pub fn verified_claims(app: &WebApp, token: &str, audience: &str) -> (jsonwebtoken::Header, Value) {
    let jwks: jsonwebtoken::jwk::JwkSet = app.get_json("/jwks");
    let header = jsonwebtoken::decode_header(token).unwrap();
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.base.as_str()]);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    (header, claims)
}

/// The verified header and claims of the logout token that a back-channel logout
/// request to `webapp` carried.
pub fn logout_token_claims(
    app: &WebApp,
    request: &ReceivedRequest,
) -> (jsonwebtoken::Header, Value) {
    verified_claims(app, &request.logout_token(), "webapp")
}

pub fn id_token_claims(app: &WebApp, id_token: &str) -> Value {
    verified_claims(app, id_token, "webapp").1
}

fn full_code_flow(backend: Backend) {
    let app = WebApp::start(backend);
    let (mut browser, tokens) = signed_in_with_tokens(&app, false);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "n-0S6");
    assert_eq!(claims["azp"], "webapp");
    assert_eq!(claims["email"], "uma@example.com");
    assert!(claims["auth_time"].is_i64() && claims["sid"].is_string());
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    let expected_at_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(access.as_bytes())[..16]);
    assert_eq!(claims["at_hash"], expected_at_hash);

    // A second consent is not asked for: the first was remembered.
    let again = browser.get(&authorize_query(""));
    assert_eq!(again.status, 303, "consent asked again");

    let userinfo: Value = Http::new()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(&access)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(userinfo["sub"], claims["sub"]);
    assert_eq!(userinfo["email"], "uma@example.com");

    // Refresh rotates; the old refresh token is then a reuse that revokes everything.
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, rotated) = token(
        &app,
        &format!("grant_type=refresh_token&refresh_token={first_refresh}&scope=openid%20email"),
    );
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
    assert_eq!(rotated["scope"], "openid email");
    let (status, widened) = token(
        &app,
        &format!(
            "grant_type=refresh_token&refresh_token={}&scope=openid%20phone",
            rotated["refresh_token"].as_str().unwrap()
        ),
    );
    assert_oauth_error(status, &widened, 400, "invalid_scope");
    let new_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert!(introspect_active(&app, &new_access));
    let (status, reuse) = refresh(&app, &first_refresh);
    assert_oauth_error(status, &reuse, 400, "invalid_grant");
    assert!(
        !introspect_active(&app, &new_access),
        "tokens of a grant survived refresh-token reuse"
    );
    assert!(!introspect_active(&app, &access));
    let (status, _) = refresh(&app, rotated["refresh_token"].as_str().unwrap());
    assert_eq!(
        status, 400,
        "the rotated token still worked after the family was revoked"
    );
}

gatehouse_identity_store::on_both_backends!(full_code_flow);

#[test]
fn a_replayed_code_revokes_what_it_issued() {
    let (app, mut browser) = client_and_signed_in_user(true);
    let code = get_code(&mut browser, "");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert!(introspect_active(&app, &access));
    let (status, replay) = exchange(&app, &code, VERIFIER);
    assert_oauth_error(status, &replay, 400, "invalid_grant");
    assert!(
        !introspect_active(&app, &access),
        "tokens from a replayed code stayed active"
    );
}

#[test]
fn pkce_and_redirect_uri_are_enforced() {
    let (app, mut browser) = client_and_signed_in_user(true);

    let code = get_code(&mut browser, "");
    let (status, wrong) = exchange(
        &app,
        &code,
        "wrong-verifier-wrong-verifier-wrong-verifier-0",
    );
    assert_oauth_error(status, &wrong, 400, "invalid_grant");
    let code = get_code(&mut browser, "");
    let (status, _) = token(
        &app,
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
            urlencode("http://127.0.0.1:9/other")
        ),
    );
    assert_eq!(
        status, 400,
        "redirect_uri mismatch accepted at the token endpoint"
    );

    // No verifier for a code bound to a challenge.
    let code = get_code(&mut browser, "");
    let (status, missing) = token(
        &app,
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}",
            urlencode(REDIRECT)
        ),
    );
    assert_oauth_error(status, &missing, 400, "invalid_grant");
    // Codes live 60 seconds.
    let code = get_code(&mut browser, "");
    app.advance(chrono::Duration::seconds(61));
    let (status, expired) = exchange(&app, &code, VERIFIER);
    assert_eq!(
        (status, expired["error"].as_str()),
        (400, Some("invalid_grant")),
        "an expired code was accepted"
    );

    // plain is refused, back at the client (its redirect URI is valid).
    let plain = browser.get(
        &authorize_query("").replace("code_challenge_method=S256", "code_challenge_method=plain"),
    );
    assert_eq!(plain.status, 303);
    assert_eq!(
        param(&plain.location().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
    let missing = browser.get(&authorize_query("").replace(
        &format!("&code_challenge={}&code_challenge_method=S256", challenge()),
        "",
    ));
    assert_eq!(
        param(&missing.location().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(
        param(&missing.location().unwrap(), "iss").as_deref(),
        Some(app.base.as_str())
    );

    // An unregistered redirect URI is never redirected to.
    let evil = browser.get(
        &authorize_query("").replace(&urlencode(REDIRECT), &urlencode("https://evil.example/cb")),
    );
    assert_eq!(evil.status, 400);
    assert!(evil.location().is_none());
    let unknown = browser.get(&authorize_query("").replace("client_id=webapp", "client_id=nobody"));
    assert_eq!(unknown.status, 400);
    assert!(unknown.location().is_none());
}

#[test]
fn prompt_none_without_a_session_answers_login_required() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    let mut anonymous = app.browser();
    let answer = anonymous.get(&authorize_query("&prompt=none"));
    assert_eq!(answer.status, 303);
    assert_eq!(
        param(&answer.location().unwrap(), "error").as_deref(),
        Some("login_required")
    );
    // Without prompt=none the user is sent to sign in, and comes back afterwards.
    let to_sign_in = anonymous.get(&authorize_query(""));
    let location = to_sign_in.location().unwrap();
    assert!(location.starts_with("/signin?return_to="), "{location}");
}

#[test]
fn form_post_responses_may_post_only_to_the_client() {
    let (_app, mut browser) = client_and_signed_in_user(true);
    let page = browser.get(&authorize_query("&response_mode=form_post"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("action=\"http://127.0.0.1:9/callback\"")
            && page.body.contains("name=\"code\"")
    );
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
    // Other pages keep form-action to themselves.
    let plain = browser.get("/account");
    assert!(
        plain
            .header("content-security-policy")
            .contains("form-action 'self';")
    );
}
