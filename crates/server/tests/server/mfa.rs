//! Second factors through the pages: enrolling an authenticator app, signing in with
//! it (or a recovery code), step-up for an authorization request's acr_values and
//! for sensitive account actions, and a tenant that requires MFA.

use gatehouse_core::Clock;
use gatehouse_identity_store::Backend;

use crate::code_flow::{
    PASSWORD, VERIFIER, authorize_query, client_and_signed_in_user, exchange, id_token_claims,
    param, register, signed_in, urlencode,
};
use crate::web_kit::{Browser, Page, WebApp};

const AAL1: &str = "urn:gatehouse:aal1";
const AAL2: &str = "urn:gatehouse:aal2";

/// What an authenticator app shows now (the app's clock) for a key as the page shows it.
pub fn totp_now(app: &WebApp, key: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(key.replace(' ', "")).unwrap();
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(0)
        .with_secret(secret)
        .build()
        .unwrap();
    totp.generate(u64::try_from(app.clock.now().timestamp()).unwrap())
        .to_string()
}

pub fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let from = body
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {body}"))
        + start.len();
    let len = body[from..].find(end).unwrap();
    &body[from..from + len]
}

fn hidden(page: &Page, name: &str) -> String {
    between(&page.body, &format!("name=\"{name}\" value=\""), "\"").to_owned()
}

/// Adds an authenticator app on the security page; returns its key and the
/// recovery codes shown once.
pub fn enrol_totp(app: &WebApp, browser: &mut Browser) -> (String, Vec<String>) {
    let security = browser.get("/account/security");
    assert_eq!(security.status, 200, "{}", security.body);
    assert!(security.body.contains("Set up authenticator app"));
    let enrolment = browser.post_form("/account/totp", &security, &[]);
    assert_eq!(enrolment.status, 200, "{}", enrolment.body);
    assert!(
        enrolment.body.contains("src=\"data:image/png;base64,"),
        "a QR code"
    );
    let key = between(&enrolment.body, "id=\"totp-secret\">", "</code>").to_owned();
    let id = hidden(&enrolment, "enrolment");

    // A wrong code: the same enrolment shown again, with its QR code.
    let wrong = browser.post_form(
        "/account/totp/confirm",
        &enrolment,
        &[("enrolment", &id), ("code", "12345x")],
    );
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(wrong.body.contains(&key) && wrong.body.contains("That code is not valid"));

    let code = totp_now(app, &key);
    let confirmed = browser.post_form(
        "/account/totp/confirm",
        &wrong,
        &[("enrolment", &id), ("code", &code)],
    );
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert!(confirmed.body.contains("Save your recovery codes"));
    assert_eq!(confirmed.headers["cache-control"], "no-store");
    let codes: Vec<String> = confirmed
        .body
        .split("<li><code>")
        .skip(1)
        .map(|rest| rest.split("</code>").next().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10, "{}", confirmed.body);
    // The next code of the app, so a later use is not a replay of this one.
    app.advance(chrono::Duration::seconds(30));
    (key, codes)
}

/// Email and password on the sign-in page; the answer.
fn password_step(browser: &mut Browser, return_to: Option<&str>) -> Page {
    let page = browser.get("/signin");
    let mut fields = vec![("email", "uma@example.com"), ("password", PASSWORD)];
    if let Some(back) = return_to {
        fields.push(("return_to", back));
    }
    browser.post_form("/signin", &page, &fields)
}

fn submit_code(browser: &mut Browser, at: &str, method: &str, code: &str) -> Page {
    let page = browser.get(at);
    assert_eq!(page.status, 200, "{}", page.body);
    let return_to = param(at, "return_to").unwrap_or_default();
    browser.post_form(
        "/signin/second-factor",
        &page,
        &[
            ("method", method),
            ("code", code),
            ("return_to", &return_to),
        ],
    )
}

#[test]
fn with_an_authenticator_app_a_password_alone_does_not_sign_in() {
    let (app, mut browser) = client_and_signed_in_user(true);
    let (key, codes) = enrol_totp(&app, &mut browser);
    let signout = browser.get("/account");
    assert_eq!(browser.post_form("/signout", &signout, &[]).status, 303);

    // The password is right, but no session comes of it yet.
    let mut fresh = app.browser();
    let answer = password_step(&mut fresh, None);
    assert_eq!(answer.status, 303);
    let to_factor = answer.location().unwrap();
    assert!(
        to_factor.starts_with("/signin/second-factor"),
        "{to_factor}"
    );
    assert!(fresh.session_cookie().is_none_or(|(_, v)| v.is_empty()));
    assert_eq!(fresh.get("/account").location().as_deref(), Some("/signin"));

    let wrong = submit_code(&mut fresh, &to_factor, "totp", "000000");
    if wrong.status != 303 {
        // (000000 could be the current code, one time in a million.)
        assert_eq!(wrong.status, 401, "{}", wrong.body);
        assert!(wrong.body.contains("That code is not valid"));
        let right = submit_code(&mut fresh, &to_factor, "totp", &totp_now(&app, &key));
        assert_eq!(right.status, 303, "{}", right.body);
        assert_eq!(right.location().as_deref(), Some("/account"));
    }
    assert_eq!(fresh.get("/account").status, 200);

    // Tokens from this session say AAL2 and name both factors.
    let page = fresh.get(&authorize_query(""));
    let code = param(&page.location().unwrap(), "code").expect("a code");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], AAL2);
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));

    // A recovery code instead of the app: once.
    for (attempt, expected) in [(1, 303), (2, 401)] {
        let mut other = app.browser();
        let answer = password_step(&mut other, None);
        let at = answer.location().unwrap();
        let result = submit_code(&mut other, &at, "recovery_code", &codes[0]);
        assert_eq!(
            result.status, expected,
            "attempt {attempt}: {}",
            result.body
        );
    }
}

#[test]
fn unmet_acr_values_ask_only_for_the_missing_factor() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    // Signed in with the password before the app was added: an AAL1 session.
    let mut older = signed_in(&app);
    let mut enroller = app.browser();
    let answer = password_step(&mut enroller, None);
    assert_eq!(answer.status, 303);
    let (key, _) = enrol_totp(&app, &mut enroller);

    // Without acr_values the AAL1 session is enough.
    let plain = older.get(&authorize_query(""));
    assert!(param(&plain.location().unwrap(), "code").is_some());

    // prompt=none cannot ask for the factor.
    let acr = format!("&acr_values={}", urlencode(AAL2));
    let silent = older.get(&authorize_query(&format!("{acr}&prompt=none")));
    assert_eq!(
        param(&silent.location().unwrap(), "error").as_deref(),
        Some("login_required")
    );

    // acr_values=AAL2: the second-factor page (no password), then back to the client.
    let asked = older.get(&authorize_query(&acr));
    assert_eq!(asked.status, 303);
    let to_factor = asked.location().unwrap();
    assert!(
        to_factor.starts_with("/signin/second-factor?return_to=%2Fauthorize%3F"),
        "{to_factor}"
    );
    let page = older.get(&to_factor);
    assert!(
        page.body
            .contains("needs a recent check of your second factor"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("name=\"password\""));
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
    let stepped = submit_code(&mut older, &to_factor, "totp", &totp_now(&app, &key));
    assert_eq!(stepped.status, 303, "{}", stepped.body);
    let back = older.get(&stepped.location().unwrap());
    let code = param(&back.location().unwrap(), "code").expect("a code after the step-up");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], AAL2);
    // The access token too (its signature is checked by the token tests).
    let payload = tokens["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let access: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(access["acr"], AAL2);
    assert_eq!(access["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
}

#[test]
fn acr_values_are_voluntary_for_a_user_without_a_second_factor() {
    let (app, mut browser) = client_and_signed_in_user(true);
    let answer = browser.get(&authorize_query(&format!(
        "&acr_values={}",
        urlencode(AAL2)
    )));
    let code = param(&answer.location().unwrap(), "code").expect("a code at the level achieved");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], AAL1);
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
}

#[test]
fn sensitive_account_actions_need_a_recent_second_factor() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = signed_in(&app);
    let (key, _) = enrol_totp(&app, &mut browser);

    app.advance(chrono::Duration::minutes(11));
    let change = browser.change_password(PASSWORD, "a-brand-new-passphrase-77");
    assert_eq!(change.status, 303, "{}", change.body);
    let to_factor = change.location().unwrap();
    assert_eq!(to_factor, "/signin/second-factor?return_to=%2Faccount");

    let security = browser.get("/account/security");
    let remove = browser.post_form("/account/totp/remove", &security, &[]);
    assert_eq!(
        remove.location().as_deref(),
        Some("/signin/second-factor?return_to=%2Faccount%2Fsecurity")
    );
    let codes = browser.post_form("/account/recovery-codes", &security, &[]);
    assert_eq!(codes.status, 303, "new codes need the step-up too");

    let stepped = submit_code(&mut browser, &to_factor, "totp", &totp_now(&app, &key));
    assert_eq!(
        stepped.location().as_deref(),
        Some("/account"),
        "{}",
        stepped.body
    );
    let change = browser.change_password(PASSWORD, "a-brand-new-passphrase-77");
    assert_eq!(change.status, 303, "{}", change.body);
    let changed = browser.get(&change.location().unwrap());
    assert!(changed.body.contains("Your password has been changed"));

    let removed = browser.fill_in("/account/security", "/account/totp/remove", &[]);
    assert_eq!(removed.status, 303, "{}", removed.body);
    let removed = browser.follow_to(&removed, "/account/security?notice=security.totp.removed");
    assert!(
        removed
            .body
            .contains("The authenticator app has been removed")
    );
    assert!(
        removed
            .body
            .contains("Recovery codes come with your first second factor")
    );
}

#[test]
fn a_tenant_that_requires_mfa_sends_users_without_one_to_add_it() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant(
        "strict",
        "Strict",
        serde_json::json!({
            "mfa": { "required": true },
            "registration": { "require_verified_email": false },
        }),
    );

    let mut browser = app.browser();
    let created = browser.sign_up("/t/strict/signup", "sam@example.com", PASSWORD);
    assert_eq!(created.status, 200, "{}", created.body);
    let page = browser.get("/t/strict/signin");
    let signed = browser.post_form(
        "/t/strict/signin",
        &page,
        &[("email", "sam@example.com"), ("password", PASSWORD)],
    );
    assert_eq!(
        signed.location().as_deref(),
        Some("/t/strict/account"),
        "{}",
        signed.body
    );

    // The account page waits until a second factor is there.
    let account = browser.get("/t/strict/account");
    let to_factor = account.location().unwrap();
    assert_eq!(
        to_factor,
        "/t/strict/signin/second-factor?return_to=%2Ft%2Fstrict%2Faccount"
    );
    let factor = browser.get(&to_factor);
    let security = browser.follow_to(
        &factor,
        "/t/strict/account/security?return_to=%2Ft%2Fstrict%2Faccount",
    );
    assert!(
        security
            .body
            .contains("Your organisation requires a second factor"),
        "{}",
        security.body
    );
}
