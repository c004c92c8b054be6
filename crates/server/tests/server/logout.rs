//! Ending sessions towards relying parties: RP-Initiated Logout 1.0 (redirects only
//! to registered URIs, confirmation unless the RP proves the session) and
//! Back-Channel Logout 1.0 (a signed logout token POSTed to the RP).

use gatehouse_identity_store::Backend;
use serde_json::Value;

use crate::code_flow::{
    VERIFIER, assert_oauth_error, client_data, exchange, get_code, id_token_claims,
    logout_token_claims, refresh, register_client, signed_in, urlencode,
};
use crate::web_kit::{BackchannelReceiver, Browser, WebApp};

const AFTER_LOGOUT: &str = "http://127.0.0.1:9/signed-out";

fn start(backend: Backend, backchannel: Option<&str>) -> WebApp {
    let app = WebApp::start(backend);
    let mut data = client_data(true);
    data.post_logout_redirect_uris = vec![AFTER_LOGOUT.into()];
    data.backchannel_logout_uri = backchannel.map(str::to_owned);
    register_client(&app, data);
    app
}

/// Signs in through the code flow; returns the token response.
fn tokens(app: &WebApp, browser: &mut Browser, scope: &str) -> Value {
    let code = get_code(browser, &format!("&scope={}", urlencode(scope)));
    let (status, tokens) = exchange(app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    tokens
}

fn is_signed_in(browser: &mut Browser) -> bool {
    browser.get("/account").status == 200
}

fn logout_with_hint(backend: Backend) {
    let receiver = BackchannelReceiver::start();
    let app = start(backend, Some(&receiver.url));
    let mut browser = signed_in(&app);
    let online = tokens(&app, &mut browser, "openid email");
    let offline = tokens(&app, &mut browser, "openid offline_access");
    let id_token = online["id_token"].as_str().unwrap();
    let sid = id_token_claims(&app, id_token)["sid"].clone();

    let answer = browser.get(&format!(
        "/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
        urlencode(AFTER_LOGOUT)
    ));
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(
        answer.location().as_deref(),
        Some(format!("{AFTER_LOGOUT}?state=bye").as_str())
    );
    assert!(
        !is_signed_in(&mut browser),
        "the session survived the logout"
    );

    // §2.7 of Back-Channel Logout: refresh tokens without offline_access end with
    // the session; offline ones do not.
    let (status, body) = refresh(&app, online["refresh_token"].as_str().unwrap());
    assert_oauth_error(status, &body, 400, "invalid_grant");
    let (status, body) = refresh(&app, offline["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");

    // One logout token for the one session, delivered as a form.
    let received = receiver.next().expect("no back-channel logout arrived");
    assert!(
        received.request_line.starts_with("POST /backchannel "),
        "{}",
        received.request_line
    );
    let (header, claims) = logout_token_claims(&app, &received);
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(claims["sid"], sid);
    assert_eq!(claims["sub"], id_token_claims(&app, id_token)["sub"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(
        claims.get("nonce").is_none(),
        "a logout token must not carry a nonce"
    );
    assert!(claims["jti"].is_string() && claims["iat"].is_number() && claims["exp"].is_number());
}

gatehouse_identity_store::on_both_backends!(logout_with_hint);

#[test]
fn logout_without_proof_asks_the_user_first() {
    let app = start(Backend::Sqlite, None);
    let mut browser = signed_in(&app);
    let query = format!(
        "client_id=webapp&post_logout_redirect_uri={}&state=s1",
        urlencode(AFTER_LOGOUT)
    );
    let page = browser.get(&format!("/oauth2/logout?{query}"));
    page.assert_shows(200, "Web App");
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
    assert!(is_signed_in(&mut browser), "signed out before confirming");

    // Without the CSRF token nothing happens.
    let forged = browser.post_raw(
        "/oauth2/logout/confirm",
        &[("request", &query), ("decision", "sign_out")],
        &[],
    );
    assert_eq!(forged.status, 403);
    assert!(is_signed_in(&mut browser));

    let decide = |browser: &mut Browser, decision: &str| {
        browser.post_form(
            "/oauth2/logout/confirm",
            &page,
            &[("request", &query), ("decision", decision)],
        )
    };
    let stay = decide(&mut browser, "stay");
    assert_eq!(stay.status, 200);
    assert!(is_signed_in(&mut browser));

    let confirmed = decide(&mut browser, "sign_out");
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    assert_eq!(
        confirmed.location().as_deref(),
        Some(format!("{AFTER_LOGOUT}?state=s1").as_str())
    );
    assert!(!is_signed_in(&mut browser));

    // Signed out already: straight back to the RP.
    let again = browser.get(&format!("/oauth2/logout?{query}"));
    assert_eq!(again.status, 303);
}

#[test]
fn logout_never_redirects_to_an_unregistered_uri() {
    let app = start(Backend::Sqlite, None);
    let mut browser = signed_in(&app);
    let cases = [
        format!(
            "client_id=webapp&post_logout_redirect_uri={}",
            urlencode("https://evil.example/")
        ),
        // A registered URI still needs the client named.
        format!("post_logout_redirect_uri={}", urlencode(AFTER_LOGOUT)),
        format!(
            "client_id=nobody&post_logout_redirect_uri={}",
            urlencode(AFTER_LOGOUT)
        ),
    ];
    for query in cases {
        let answer = browser.get(&format!("/oauth2/logout?{query}"));
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.location().is_none(), "{query}");
        assert!(is_signed_in(&mut browser), "{query} signed the user out");
    }
    // A hint that does not verify proves nothing: the user is asked, and the
    // redirect it would name is not trusted.
    let forged = browser.get(&format!(
        "/oauth2/logout?id_token_hint=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.&post_logout_redirect_uri={}",
        urlencode(AFTER_LOGOUT)
    ));
    assert_eq!(forged.status, 200, "{}", forged.body);
    assert!(forged.body.contains("/oauth2/logout/confirm"));
    assert!(is_signed_in(&mut browser));
}

#[test]
fn a_logout_form_posted_from_the_relying_party_becomes_a_get() {
    let app = start(Backend::Sqlite, None);
    let mut browser = signed_in(&app);
    let posted = browser.post_raw(
        "/oauth2/logout",
        &[
            ("client_id", "webapp"),
            ("post_logout_redirect_uri", AFTER_LOGOUT),
            ("state", "p"),
        ],
        &[("Origin", "http://127.0.0.1:9")],
    );
    assert_eq!(posted.status, 303);
    let location = posted.location().unwrap();
    assert!(location.starts_with("/oauth2/logout?"), "{location}");
    let page = browser.get(&location);
    assert_eq!(page.status, 200, "the session was not seen: {}", page.body);
    assert!(is_signed_in(&mut browser));
}

#[test]
fn signing_in_again_keeps_what_the_old_session_signed_in_to() {
    let receiver = BackchannelReceiver::start();
    let app = start(Backend::Sqlite, Some(&receiver.url));
    let mut browser = signed_in(&app);
    let before = tokens(&app, &mut browser, "openid email");
    let sid = id_token_claims(&app, before["id_token"].as_str().unwrap())["sid"].clone();
    let old_cookie = browser.session_cookie().unwrap();

    // The same user signs in again on this browser (the session id rotates).
    let again = browser.fill_in(
        "/signin?return_to=%2Fauthorize%3Fclient_id%3Dwebapp",
        "/signin",
        &[
            ("email", "uma@example.com"),
            ("password", crate::code_flow::PASSWORD),
        ],
    );
    assert_eq!(again.status, 303, "{}", again.body);
    assert_ne!(
        browser.session_cookie().unwrap(),
        old_cookie,
        "the session secret did not rotate"
    );
    let (status, refreshed) = refresh(&app, before["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "rotation ended the grant: {refreshed}");

    // Signing out of the new session ends it too.
    let out = browser.fill_in("/account", "/signout", &[]);
    assert_eq!(out.status, 303);
    let (status, body) = refresh(&app, refreshed["refresh_token"].as_str().unwrap());
    assert_oauth_error(status, &body, 400, "invalid_grant");
    // The logout token names the sid the relying party was given before.
    let received = receiver.next().expect("no back-channel logout arrived");
    assert_eq!(logout_token_claims(&app, &received).1["sid"], sid);
}

/// A consent withdrawn ends the relying party's session built on it (a logout token
/// for the grant's sid), while the user stays signed in here.
#[test]
fn withdrawing_consent_logs_the_relying_party_out_of_the_session_built_on_it() {
    use gatehouse_consent::Channel;

    let receiver = BackchannelReceiver::start();
    let app = start(Backend::Sqlite, Some(&receiver.url));
    let mut browser = signed_in(&app);
    let (tenant, user) = (app.default_tenant(), app.user_id("uma@example.com"));
    let consents = &app.state.consents;
    consents
        .define_purpose(tenant, "admin", crate::consent::newsletter())
        .unwrap();
    consents
        .grant(tenant, user, "webapp", "newsletter", 1, Channel::Api, None)
        .unwrap();
    let with_email = tokens(&app, &mut browser, "openid email");
    let sid = id_token_claims(&app, with_email["id_token"].as_str().unwrap())["sid"].clone();

    consents
        .withdraw(tenant, user, "webapp", "newsletter", Channel::AccountPage)
        .unwrap();
    let received = receiver
        .next()
        .expect("no back-channel logout after the withdrawal");
    let (_, claims) = logout_token_claims(&app, &received);
    assert_eq!(claims["sid"], sid);
    assert!(
        is_signed_in(&mut browser),
        "a withdrawal for one app signed the user out of the identity provider"
    );
}
