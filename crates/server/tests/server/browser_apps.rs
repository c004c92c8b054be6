//! What integrators' apps meet beyond the code flow itself: CORS for browser apps
//! (preflights and answers only for registered origins; public documents for all),
//! refresh tokens introspected by their own client, client_credentials keeping to
//! the client's API scopes, and PKCE made optional for a confidential legacy client.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::clients::ClientData;
use gatehouse_token_issuer::client_auth::secret_hash;
use reqwest::Method;
use reqwest::blocking::{Client as Http, Response};
use serde_json::Value;

use crate::code_flow::{
    REDIRECT, SECRET, VERIFIER, client_data, exchange, get_code, param, register_client, signed_in,
    token, urlencode,
};
use crate::web_kit::WebApp;

const SPA: &str = "http://localhost:5173";
const OTHER_APP: &str = "https://other.example";
const STRANGER: &str = "https://evil.example";

/// `webapp` (from `code_flow`) serving its pages from [`SPA`], and a second client
/// whose app lives at [`OTHER_APP`].
fn two_browser_apps(app: &WebApp) {
    register_client(
        app,
        ClientData {
            allowed_origins: vec![SPA.into()],
            ..client_data(false)
        },
    );
    register_client(
        app,
        ClientData {
            secret_hash: Some(secret_hash(SECRET)),
            grant_types: vec!["client_credentials".into()],
            allowed_origins: vec![OTHER_APP.into()],
            ..ClientData::new("other", "Other App")
        },
    );
}

fn preflight(app: &WebApp, path: &str, origin: &str) -> Response {
    Http::new()
        .request(Method::OPTIONS, format!("{}{path}", app.base))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .unwrap()
}

fn allowed_origin(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

/// A token request by `webapp` sent from `origin` (a refresh token that does not
/// exist: the answer is an RFC error, which a browser app must be able to read).
fn token_from(app: &WebApp, origin: &str) -> Response {
    Http::new()
        .post(format!("{}/oauth2/token", app.base))
        .header("Origin", origin)
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("webapp:{SECRET}"))),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&refresh_token=not-a-token")
        .send()
        .unwrap()
}

fn cors_answers_only_registered_origins(backend: Backend) {
    let app = WebApp::start(backend);
    two_browser_apps(&app);

    // Preflights name no client: any client's registered origin passes.
    for (path, methods) in [
        ("/oauth2/token", "POST"),
        ("/oauth2/revoke", "POST"),
        ("/userinfo", "GET, POST"),
    ] {
        for origin in [SPA, OTHER_APP] {
            let answer = preflight(&app, path, origin);
            assert_eq!(answer.status(), 204, "{path} from {origin}");
            assert_eq!(allowed_origin(&answer), Some(origin));
            let headers = answer.headers();
            assert_eq!(headers["access-control-allow-methods"], methods);
            assert!(
                headers["access-control-allow-headers"]
                    .to_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .contains("content-type")
            );
            assert!(headers.get("access-control-allow-credentials").is_none());
        }
        let refused = preflight(&app, path, STRANGER);
        assert_eq!(refused.status(), 403, "{path}");
        assert_eq!(allowed_origin(&refused), None);
    }

    // The real request names its client: only that client's origins may read.
    let mine = token_from(&app, SPA);
    assert_eq!(mine.status(), 400);
    assert_eq!(allowed_origin(&mine), Some(SPA));
    assert_eq!(
        mine.headers()["access-control-expose-headers"],
        "WWW-Authenticate"
    );
    assert!(
        mine.headers()
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Origin"))
    );
    let body: Value = mine.json().unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(allowed_origin(&token_from(&app, OTHER_APP)), None);
    assert_eq!(allowed_origin(&token_from(&app, STRANGER)), None);

    // Without Origin (servers, native apps) nothing changes.
    let (status, _) = token(&app, "grant_type=refresh_token&refresh_token=x");
    assert_eq!(status, 400);

    // Public documents: any origin, no credentials.
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        let answer = Http::new()
            .get(format!("{}{path}", app.base))
            .header("Origin", STRANGER)
            .send()
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(allowed_origin(&answer), Some("*"), "{path}");
    }

    // UserInfo knows its client from the token.
    let mut browser = signed_in(&app);
    let code = get_code(&mut browser, "");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    let access = tokens["access_token"].as_str().unwrap();
    let userinfo = |origin: &str| {
        Http::new()
            .get(format!("{}/userinfo", app.base))
            .header("Origin", origin)
            .bearer_auth(access)
            .send()
            .unwrap()
    };
    let from_spa = userinfo(SPA);
    assert_eq!(from_spa.status(), 200);
    assert_eq!(allowed_origin(&from_spa), Some(SPA));
    let from_other = userinfo(OTHER_APP);
    assert_eq!(allowed_origin(&from_other), None);

    // Revocation, as a public SPA would call it after sign-out.
    let revoked = Http::new()
        .post(format!("{}/oauth2/revoke", app.base))
        .header("Origin", SPA)
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("webapp:{SECRET}"))),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={access}"))
        .send()
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(allowed_origin(&revoked), Some(SPA));
}

gatehouse_identity_store::on_both_backends!(cors_answers_only_registered_origins);

fn introspect(app: &WebApp, client: &str, token: &str) -> Value {
    Http::new()
        .post(format!("{}/oauth2/introspect", app.base))
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("{client}:{SECRET}"))),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={}", urlencode(token)))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn refresh_tokens_introspect_for_their_own_client(backend: Backend) {
    let app = WebApp::start(backend);
    two_browser_apps(&app);
    let mut browser = signed_in(&app);
    let code = get_code(&mut browser, "");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let access_sub = introspect(&app, "webapp", tokens["access_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();

    let mine = introspect(&app, "webapp", &refresh);
    assert_eq!(mine["active"], true, "{mine}");
    assert_eq!(mine["client_id"], "webapp");
    assert_eq!(mine["sub"], access_sub.as_str());
    assert_eq!(mine["scope"], "openid profile email");
    assert_eq!(mine["iss"], app.base.as_str());
    let (iat, exp) = (mine["iat"].as_i64().unwrap(), mine["exp"].as_i64().unwrap());
    assert!(exp > iat, "{mine}");

    // Another client learns nothing about it.
    assert_eq!(
        introspect(&app, "other", &refresh),
        serde_json::json!({"active": false})
    );

    // Spent by rotation: no longer active; its successor is.
    let (status, rotated) = token(
        &app,
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(introspect(&app, "webapp", &refresh)["active"], false);
    let next = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&app, "webapp", next)["active"], true);

    // Revoked: inactive.
    let revoked = Http::new()
        .post(format!("{}/oauth2/revoke", app.base))
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("webapp:{SECRET}"))),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={}", urlencode(next)))
        .send()
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect(&app, "webapp", next)["active"], false);
    assert_eq!(introspect(&app, "webapp", "garbage")["active"], false);
}

gatehouse_identity_store::on_both_backends!(refresh_tokens_introspect_for_their_own_client);

#[test]
fn client_credentials_keep_to_the_clients_api_scopes() {
    let app = WebApp::start(Backend::Sqlite);
    register_client(
        &app,
        ClientData {
            secret_hash: Some(secret_hash(SECRET)),
            grant_types: vec!["client_credentials".into()],
            scopes: vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "orders:read".into(),
                "orders:write".into(),
            ],
            audiences: vec!["https://api.example".into()],
            default_audience: Some("https://api.example".into()),
            ..ClientData::new("worker", "Worker")
        },
    );
    let call = |body: &str| {
        let response = Http::new()
            .post(format!("{}/oauth2/token", app.base))
            .header(
                "Authorization",
                format!("Basic {}", STANDARD.encode(format!("worker:{SECRET}"))),
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().unwrap(),
        )
    };
    let (status, granted) = call("grant_type=client_credentials");
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["scope"], "orders:read orders:write");
    for user_scope in ["profile", "email", "openid"] {
        let (status, refused) = call(&format!("grant_type=client_credentials&scope={user_scope}"));
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_scope")),
            "{user_scope}"
        );
    }
}

#[test]
fn a_confidential_legacy_client_may_go_without_pkce() {
    let app = WebApp::start(Backend::Sqlite);
    register_client(
        &app,
        ClientData {
            require_pkce: false,
            ..client_data(false)
        },
    );
    let mut browser = signed_in(&app);
    let query = format!(
        "/authorize?response_type=code&client_id=webapp&redirect_uri={}&scope=openid&state=s1&nonce=n1",
        urlencode(REDIRECT)
    );
    let page = browser.get(&query);
    let request = query.split_once('?').unwrap().1.to_owned();
    let location = browser.approve_consent(&page, &request);
    let code = param(&location, "code").expect("a code without PKCE");
    let (status, tokens) = token(
        &app,
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}",
            urlencode(REDIRECT)
        ),
    );
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string());
}
