//! Pushed authorization requests (RFC 9126): the pushed parameters are what the
//! authorization endpoint uses, a request_uri yields one code, and a client can be
//! made to use nothing else.

use gatehouse_identity_store::Backend;
use serde_json::Value;

use crate::code_flow::{
    REDIRECT, SECRET, VERIFIER, assert_oauth_error, challenge, client_data, exchange, param,
    register, register_client, signed_in, urlencode,
};
use crate::web_kit::{Browser, WebApp, basic};

fn pushed_body(extra: &str) -> String {
    format!(
        "response_type=code&redirect_uri={}&scope=openid%20email&state=pushed-state&nonce=n1&code_challenge={}&code_challenge_method=S256{extra}",
        urlencode(REDIRECT),
        challenge()
    )
}

fn push(app: &WebApp, client: Option<(&str, &str)>, body: &str) -> (u16, Value) {
    let authorization = client.map(|(id, secret)| basic(id, secret));
    let answer = app.post_urlencoded("/oauth2/par", authorization.as_deref(), body);
    assert_eq!(answer.header("cache-control"), "no-store");
    (answer.status, answer.json)
}

fn authorize_pushed(browser: &mut Browser, request_uri: &str, extra: &str) -> crate::web_kit::Page {
    browser.get(&format!(
        "/authorize?client_id=webapp&request_uri={}{extra}",
        urlencode(request_uri)
    ))
}

fn pushed_par(backend: Backend) {
    let app = WebApp::start(backend);
    register(&app, true);
    let mut browser = signed_in(&app);

    let (status, pushed) = push(&app, Some(("webapp", SECRET)), &pushed_body(""));
    assert_eq!(status, 201, "{pushed}");
    let request_uri = pushed["request_uri"].as_str().unwrap().to_owned();
    assert!(
        request_uri.starts_with("urn:ietf:params:oauth:request_uri:"),
        "{request_uri}"
    );
    assert_eq!(pushed["expires_in"], 300);

    // §4: parameters outside the pushed request are ignored, not merged.
    let answer = authorize_pushed(
        &mut browser,
        &request_uri,
        "&state=from-the-query&scope=openid",
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(param(&location, "state").as_deref(), Some("pushed-state"));
    let code = param(&location, "code").unwrap();
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid email");

    // One code per pushed request.
    let replay = authorize_pushed(&mut browser, &request_uri, "");
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.location().is_none());

    // Expired.
    let (_, pushed) = push(&app, Some(("webapp", SECRET)), &pushed_body(""));
    app.advance(chrono::Duration::seconds(301));
    let late = authorize_pushed(&mut browser, pushed["request_uri"].as_str().unwrap(), "");
    assert_eq!(late.status, 400);
    assert!(late.location().is_none());
    // Housekeeping deletes expired pushed requests (both of them by now).
    assert_eq!(
        gatehouse_server::key_schedule::prune_expired(&app.state).unwrap(),
        2
    );
}

gatehouse_identity_store::on_both_backends!(pushed_par);

#[test]
fn pushing_checks_the_client_and_the_request() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    let (status, body) = push(&app, None, &format!("client_id=webapp&{}", pushed_body("")));
    assert_oauth_error(status, &body, 401, "invalid_client");
    let (status, body) = push(&app, Some(("webapp", "wrong-secret")), &pushed_body(""));
    assert_oauth_error(status, &body, 401, "invalid_client");

    // Requests from the right client that are wrong in themselves.
    let refused = [
        (
            "a redirect URI not registered",
            pushed_body("").replace(&urlencode(REDIRECT), &urlencode("https://evil.example/cb")),
            "invalid_request",
        ),
        (
            "plain PKCE",
            pushed_body("").replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            "a request_uri inside the pushed request",
            pushed_body("&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Ax"),
            "invalid_request",
        ),
        (
            "another client's id",
            pushed_body("&client_id=someone-else"),
            "invalid_request",
        ),
        (
            "a scope the client may not ask for",
            pushed_body("").replace("scope=openid%20email", "scope=openid%20admin"),
            "invalid_scope",
        ),
    ];
    for (what, body, error) in refused {
        let (status, answer) = push(&app, Some(("webapp", SECRET)), &body);
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(error)),
            "{what}: {answer}"
        );
    }

    // A request_uri works only with the client that pushed it.
    let mut other = client_data(true);
    other.client_id = "other".into();
    register_client(&app, other);
    let (_, pushed) = push(&app, Some(("webapp", SECRET)), &pushed_body(""));
    let mut browser = signed_in(&app);
    let stolen = browser.get(&format!(
        "/authorize?client_id=other&request_uri={}",
        urlencode(pushed["request_uri"].as_str().unwrap())
    ));
    assert_eq!(stolen.status, 400);
    assert!(stolen.location().is_none());
}

#[test]
fn a_client_that_requires_par_cannot_skip_it() {
    let app = WebApp::start(Backend::Sqlite);
    let mut data = client_data(false);
    data.require_par = true;
    register_client(&app, data);
    let mut browser = signed_in(&app);
    let direct = browser.get(&format!(
        "/authorize?response_type=code&client_id=webapp&redirect_uri={}&scope=openid&code_challenge={}&code_challenge_method=S256",
        urlencode(REDIRECT),
        challenge()
    ));
    assert_eq!(direct.status, 303, "{}", direct.body);
    let location = direct.location().unwrap();
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("invalid_request")
    );

    // Through PAR, with the consent page of a third-party client in between.
    let (status, pushed) = push(&app, Some(("webapp", SECRET)), &pushed_body(""));
    assert_eq!(status, 201, "{pushed}");
    let request_uri = pushed["request_uri"].as_str().unwrap();
    let consent = authorize_pushed(&mut browser, request_uri, "");
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Web App"));
    let csp = consent.header("content-security-policy");
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
    let request = format!("client_id=webapp&request_uri={}", urlencode(request_uri));
    let location = browser.approve_consent(&consent, &request);
    assert!(param(&location, "code").is_some(), "{location}");
}
