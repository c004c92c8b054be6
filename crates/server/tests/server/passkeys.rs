//! Passkeys through the pages' JSON endpoints, with the software authenticator in
//! the browser's place: adding one on the security page, passwordless sign-in, a
//! passkey as the second factor after a password, and the checks in front of them
//! (CSRF, step-up).
//!
//! WebAuthn refuses IP addresses as relying party ids, so these servers' public URL
//! is `http://localhost:PORT`.

use gatehouse_authn::testing::soft_authenticator::SoftAuthenticator;
use gatehouse_identity_store::Backend;
use serde_json::{Value, json};

use crate::code_flow::{VERIFIER, exchange, get_code, id_token_claims, register, signed_in};
use crate::web_kit::{Browser, Page, WebApp};

const AAL2: &str = "urn:gatehouse:aal2";

pub(crate) fn localhost_app() -> WebApp {
    let mut app = WebApp::start_with(Backend::Sqlite, |config| {
        config.server.public_url = config
            .server
            .public_url
            .as_ref()
            .map(|url| url.replace("127.0.0.1", "localhost"));
    });
    app.base = app.base.replace("127.0.0.1", "localhost");
    app
}

pub(crate) fn body(page: &Page) -> Value {
    serde_json::from_str(&page.body).unwrap_or_else(|_| panic!("not JSON: {}", page.body))
}

/// A [`localhost_app`] with a user signed in who added a passkey named "Phone":
/// the app, the browser and the authenticator that holds the passkey.
pub(crate) fn signed_in_with_a_passkey() -> (WebApp, Browser, SoftAuthenticator) {
    let app = localhost_app();
    let mut browser = signed_in(&app);
    let mut authenticator = SoftAuthenticator::new(&app.base);
    add_passkey(&mut browser, &mut authenticator, "Phone");
    (app, browser, authenticator)
}

/// Adds a passkey named `name` from the security page; the finish answer.
pub(crate) fn add_passkey(
    browser: &mut Browser,
    authenticator: &mut SoftAuthenticator,
    name: &str,
) -> Value {
    let security = browser.get("/account/security");
    assert_eq!(security.status, 200, "{}", security.body);
    let csrf = security.csrf();
    let begun = browser.post_json("/account/passkeys/begin", Some(&csrf), &json!({}));
    assert_eq!(begun.status, 200, "{}", begun.body);
    assert_eq!(begun.headers["cache-control"], "no-store");
    let begun = body(&begun);
    let options = &begun["options"];
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    let credential = authenticator.create(options).unwrap();
    let finished = browser.post_json(
        "/account/passkeys/finish",
        Some(&csrf),
        &json!({
            "challenge_id": begun["challenge_id"],
            "name": name,
            "credential": credential,
        }),
    );
    assert_eq!(finished.status, 200, "{}", finished.body);
    body(&finished)
}

/// A passwordless sign-in in `browser` (which has no session); the finish answer.
fn passwordless(browser: &mut Browser, authenticator: &mut SoftAuthenticator) -> Page {
    let page = browser.get("/signin");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign in with a passkey"));
    assert!(page.body.contains("autocomplete=\"username webauthn\""));
    let csrf = page.csrf();
    let begun = browser.post_json("/signin/passkey/begin", Some(&csrf), &json!({}));
    assert_eq!(begun.status, 200, "{}", begun.body);
    let begun = body(&begun);
    let assertion = authenticator.get(&begun["options"]).unwrap();
    browser.post_json(
        "/signin/passkey/finish",
        Some(&csrf),
        &json!({ "challenge_id": begun["challenge_id"], "credential": assertion }),
    )
}

#[test]
fn a_passkey_added_on_the_security_page_signs_in_without_a_password() {
    let app = localhost_app();
    register(&app, true);
    let mut browser = signed_in(&app);
    let mut authenticator = SoftAuthenticator::new(&app.base);

    let security = browser.get("/account/security");
    assert!(security.body.contains("You have no passkeys yet."));
    let script = browser.script_of(&security, "/static/themes/default/passkeys.js");
    assert!(script.header("content-type").starts_with("text/javascript"));

    // The first passkey is the first second factor: its recovery codes come with it.
    let added = add_passkey(&mut browser, &mut authenticator, "Work <laptop>");
    assert_eq!(added["passkey"]["name"], "Work <laptop>");
    assert_eq!(added["redirect"], "/account/security");
    assert_eq!(
        added["recovery_codes"].as_array().unwrap().len(),
        10,
        "{added}"
    );

    let security = browser.get("/account/security");
    assert!(
        security.body.contains("Work &lt;laptop&gt;"),
        "{}",
        security.body
    );
    assert!(security.body.contains("Remove passkey"));
    assert!(!security.body.contains("You have no passkeys yet."));

    // With a second factor now, adding another one asks for it first (this session
    // only passed the password).
    let csrf = security.csrf();
    let again = browser.post_json("/account/passkeys/begin", Some(&csrf), &json!({}));
    assert_eq!(again.status, 403, "{}", again.body);
    let again = body(&again);
    assert_eq!(again["error"], "step_up_required");
    assert_eq!(
        again["redirect"],
        "/signin/second-factor?return_to=%2Faccount%2Fsecurity"
    );

    let account = browser.get("/account");
    assert_eq!(browser.post_form("/signout", &account, &[]).status, 303);

    // Passwordless: the passkey names the account.
    let mut fresh = app.browser();
    let finished = passwordless(&mut fresh, &mut authenticator);
    assert_eq!(finished.status, 200, "{}", finished.body);
    assert_eq!(body(&finished)["redirect"], "/account");
    assert!(fresh.session_cookie().is_some());
    let account = fresh.get("/account");
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.body.contains("uma@example.com"));

    // The session is AAL2: the key and the user verification that unlocked it.
    let code = get_code(&mut fresh, "");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], AAL2, "{claims}");
    let amr = claims["amr"].as_array().unwrap();
    assert!(
        amr.contains(&json!("hwk")) && amr.contains(&json!("user")),
        "{claims}"
    );

    // The list shows when it was last used; a fresh passkey session may remove it.
    let security = fresh.get("/account/security");
    assert!(!security.body.contains(">Never<"), "{}", security.body);
    let action = security
        .body
        .split("action=\"")
        .map(|rest| rest.split('"').next().unwrap())
        .find(|action| action.starts_with("/account/passkeys/") && action.ends_with("/remove"))
        .unwrap()
        .to_owned();
    let removed = fresh.post_form(&action, &security, &[]);
    assert_eq!(removed.status, 303, "{}", removed.body);
    let removed = fresh.get(&removed.location().unwrap());
    assert!(removed.body.contains("The passkey has been removed."));
    assert!(removed.body.contains("You have no passkeys yet."));

    // Gone: the authenticator's credential no longer signs in.
    let mut other = app.browser();
    let refused = passwordless(&mut other, &mut authenticator);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(other.session_cookie().is_none());
}

#[test]
fn after_a_password_a_passkey_is_the_second_factor() {
    let (app, _owner, mut authenticator) = signed_in_with_a_passkey();

    let mut fresh = app.browser();
    let answer = fresh.sign_in("uma@example.com", crate::code_flow::PASSWORD);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let to_factor = answer.location().unwrap();
    assert!(
        to_factor.starts_with("/signin/second-factor"),
        "{to_factor}"
    );
    assert!(fresh.session_cookie().is_none());

    let factor_page = fresh.get(&to_factor);
    assert_eq!(factor_page.status, 200, "{}", factor_page.body);
    assert!(factor_page.body.contains("Use a passkey"));
    assert!(
        factor_page
            .body
            .contains("Use your passkey to finish signing in.")
    );
    let csrf = factor_page.csrf();
    let begun = fresh.post_json(
        "/signin/second-factor/passkey/begin",
        Some(&csrf),
        &json!({}),
    );
    assert_eq!(begun.status, 200, "{}", begun.body);
    let begun = body(&begun);
    // Limited to this user's passkeys.
    assert_eq!(
        begun["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let assertion = authenticator.get(&begun["options"]).unwrap();
    let finished = fresh.post_json(
        "/signin/second-factor/passkey/finish",
        Some(&csrf),
        &json!({ "challenge_id": begun["challenge_id"], "credential": assertion }),
    );
    assert_eq!(finished.status, 200, "{}", finished.body);
    assert_eq!(body(&finished)["redirect"], "/account");
    assert!(fresh.session_cookie().is_some());
    assert_eq!(fresh.get("/account").status, 200);

    // A challenge is used once.
    let replay = fresh.post_json(
        "/signin/second-factor/passkey/finish",
        Some(&csrf),
        &json!({ "challenge_id": begun["challenge_id"], "credential": assertion }),
    );
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert_eq!(body(&replay)["error"], "challenge_invalid");
}

#[test]
fn a_passkey_steps_up_the_session_for_adding_another() {
    let (app, mut browser, mut authenticator) = signed_in_with_a_passkey();

    // The session only passed the password: step up with the passkey first.
    let security = browser.get("/account/security");
    let csrf = security.csrf();
    let refused = browser.post_json("/account/passkeys/begin", Some(&csrf), &json!({}));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let redirect = body(&refused)["redirect"].as_str().unwrap().to_owned();
    let factor_page = browser.get(&redirect);
    assert_eq!(factor_page.status, 200, "{}", factor_page.body);
    assert!(factor_page.body.contains("Use your passkey."));
    let before = browser.session_cookie().unwrap();
    let begun = browser.post_json(
        "/signin/second-factor/passkey/begin",
        Some(&csrf),
        &json!({}),
    );
    assert_eq!(begun.status, 200, "{}", begun.body);
    let begun = body(&begun);
    let assertion = authenticator.get(&begun["options"]).unwrap();
    let finished = browser.post_json(
        "/signin/second-factor/passkey/finish",
        Some(&csrf),
        &json!({
            "challenge_id": begun["challenge_id"],
            "credential": assertion,
            "return_to": "/account/security",
        }),
    );
    assert_eq!(finished.status, 200, "{}", finished.body);
    assert_eq!(body(&finished)["redirect"], "/account/security");
    // The raised session has a new cookie secret.
    assert_ne!(browser.session_cookie().unwrap(), before);

    // Now a second passkey (another authenticator) may be added; no new codes.
    let mut other = SoftAuthenticator::new(&app.base);
    let added = add_passkey(&mut browser, &mut other, "Laptop");
    assert!(added["recovery_codes"].is_null(), "{added}");
    let security = browser.get("/account/security");
    assert!(security.body.contains("Phone") && security.body.contains("Laptop"));
}

#[test]
fn passkey_endpoints_refuse_requests_without_the_csrf_token() {
    let app = localhost_app();
    let mut browser = app.browser();
    let page = browser.get("/signin");
    assert_eq!(page.status, 200);

    for path in [
        "/signin/passkey/begin",
        "/signin/passkey/finish",
        "/signin/second-factor/passkey/begin",
        "/account/passkeys/begin",
        "/account/passkeys/finish",
    ] {
        let refused = browser.post_json(path, None, &json!({}));
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert_eq!(body(&refused)["error"], "csrf", "{path}");
        let wrong = browser.post_json(
            path,
            Some("not-the-token-not-the-token-not-the"),
            &json!({}),
        );
        assert_eq!(wrong.status, 403, "{path}: {}", wrong.body);
    }

    // With the token, a sign-in can begin; a finish with a made-up challenge cannot.
    let csrf = page.csrf();
    let begun = browser.post_json(
        "/signin/passkey/begin",
        Some(&csrf),
        &json!({ "conditional": true }),
    );
    assert_eq!(begun.status, 200, "{}", begun.body);
    assert_eq!(body(&begun)["options"]["mediation"], "conditional");
    let mut authenticator = SoftAuthenticator::new(&app.base);
    assert!(
        authenticator.get(&body(&begun)["options"]).is_err(),
        "no credential yet"
    );

    // Signed out, adding a passkey sends the page to sign in.
    let add = browser.post_json("/account/passkeys/begin", Some(&csrf), &json!({}));
    assert_eq!(add.status, 401, "{}", add.body);
    assert_eq!(body(&add)["error"], "sign_in_again");
}
