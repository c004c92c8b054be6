//! Account recovery through the pages: the same answer for any address, a reset link
//! that also wants the second factor, and what a reset ends.

use chrono::Datelike;
use gatehouse_authn::testing::soft_authenticator::SoftAuthenticator;
use gatehouse_core::Clock;
use gatehouse_identity_store::Backend;
use serde_json::json;

use crate::code_flow::{PASSWORD, signed_in};
use crate::mfa::{enrol_totp, totp_now};
use crate::passkeys::{add_passkey, body, signed_in_with_a_passkey};
use crate::web_kit::{Browser, Page, WebApp};

const NEW_PASSWORD: &str = "quiet-harbour-lantern-58-violet";

fn ask_for_link(app: &WebApp, email: &str) -> Page {
    let mut browser = app.browser();
    let page = browser.get("/recover/request");
    assert_eq!(page.status, 200, "{}", page.body);
    browser.post_form("/recover/request", &page, &[("email", email)])
}

#[test]
fn a_reset_link_alone_is_not_enough_for_an_account_with_a_second_factor() {
    let app = WebApp::start(Backend::Sqlite);
    let mut owner = signed_in(&app);
    let (key, _) = enrol_totp(&app, &mut owner);
    let mails_before = app.smtp.messages().len();

    // Known and unknown addresses get the same page.
    let known = ask_for_link(&app, "uma@example.com");
    let unknown = ask_for_link(&app, "nobody@example.com");
    assert_eq!(known.status, 200);
    assert_eq!(unknown.status, 200);
    let strip = |body: &str| {
        body.replace(char::is_whitespace, "")
            .split("csrf")
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(known.body.contains("If the address belongs to an account"));
    // A new link voids an older one; the page says so (to every address alike).
    assert!(known.body.contains("the earlier link no longer works"));
    assert_eq!(strip(&known.body).len(), strip(&unknown.body).len());

    let mail = app.mails(mails_before + 1).pop().unwrap();
    assert_eq!(
        mail.header("to")
            .as_deref()
            .map(|t| t.contains("uma@example.com")),
        Some(true)
    );
    let (path, token) = app.recovery_link(&mail);

    let mut stranger = app.browser();
    let form = stranger.get(&path);
    form.assert_shows(200, "Your account has a second factor");

    // The link and a new password, but no code: refused, and the link still works.
    let refused = stranger.post_form(
        "/recover",
        &form,
        &[("token", &token), ("new_password", NEW_PASSWORD)],
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("Confirm the reset with your second factor")
    );

    let done = stranger.post_form(
        "/recover",
        &refused,
        &[
            ("token", &token),
            ("method", "totp"),
            ("code", &totp_now(&app, &key)),
            ("new_password", NEW_PASSWORD),
        ],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your new password is set"));

    // Every session ended; the link is spent; the new password (and the app) work.
    assert_eq!(owner.get("/account").location().as_deref(), Some("/signin"));
    let again = stranger.get(&path);
    assert_eq!(again.status, 400, "a used link: {}", again.body);
    let mut fresh = app.browser();
    let page = fresh.get("/signin");
    let old = fresh.post_form(
        "/signin",
        &page,
        &[("email", "uma@example.com"), ("password", PASSWORD)],
    );
    assert_eq!(old.status, 401);
    let new = fresh.post_form(
        "/signin",
        &page,
        &[("email", "uma@example.com"), ("password", NEW_PASSWORD)],
    );
    assert!(
        new.location().unwrap().starts_with("/signin/second-factor"),
        "the second factor is kept: {:?}",
        new.location()
    );
    // The user is told.
    let notices = app.mails(mails_before + 2);
    assert!(
        notices
            .last()
            .unwrap()
            .text_body()
            .to_lowercase()
            .contains("password")
    );
}

#[test]
fn lost_factors_wait_a_day_and_the_owner_can_cancel() {
    let app = WebApp::start(Backend::Sqlite);
    let mut owner = signed_in(&app);
    enrol_totp(&app, &mut owner);
    let before = app.smtp.messages().len();
    ask_for_link(&app, "uma@example.com");
    let mail = app.mails(before + 1).pop().unwrap();
    let (path, token) = app.recovery_link(&mail);

    let mut browser = app.browser();
    let form = browser.get(&path);
    let started = browser.post_form("/recover/factors/start", &form, &[("token", &token)]);
    assert_eq!(started.status, 200, "{}", started.body);
    assert!(started.body.contains("Recovery started"));
    let notice = app.mails(before + 2).pop().unwrap();
    let finish = notice
        .find_link(&format!("{}/recover/factors?token=", app.base))
        .expect("finish link");
    let cancel = notice
        .find_link(&format!("{}/recover/cancel?token=", app.base))
        .expect("cancel link");
    let finish_path = finish.strip_prefix(&app.base).unwrap().to_owned();
    let finish_token = finish_path.split("token=").nth(1).unwrap().to_owned();

    // Too early: the page says when, in the reader's language, and offers no form.
    let ready_at = app.clock.now() + chrono::Duration::hours(24);
    let page = browser.get(&finish_path);
    assert_eq!(page.status, 200);
    let english = format!(
        "{} {} {}, {} UTC",
        ready_at.day(),
        ready_at.format("%B"),
        ready_at.year(),
        ready_at.format("%H:%M")
    );
    assert!(page.body.contains(&english), "{english}: {}", page.body);
    assert!(!page.body.contains("new_password"), "{}", page.body);
    // (Posted from an older page, with a form: the answer is the same.)
    let page = browser.get("/recover/request");
    let early = browser.post_form(
        "/recover/factors",
        &page,
        &[("token", &finish_token), ("new_password", NEW_PASSWORD)],
    );
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(early.body.contains(&english), "{}", early.body);
    // In German for a German reader (the choice sticks, as a cookie).
    let german = browser.get(&format!("{finish_path}&lang=de"));
    let month = [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ][ready_at.month0() as usize];
    let german_time = format!(
        "Ab {}. {month} {}, {} UTC",
        ready_at.day(),
        ready_at.year(),
        ready_at.format("%H:%M")
    );
    assert!(
        german.body.contains(&german_time),
        "{german_time}: {}",
        german.body
    );

    // The owner cancels (a GET only shows the button: mail scanners cancel nothing).
    let cancel_path = cancel.strip_prefix(&app.base).unwrap().to_owned();
    let cancel_token = cancel_path.split("token=").nth(1).unwrap().to_owned();
    let confirm = owner.get(&cancel_path);
    assert_eq!(confirm.status, 200);
    let cancelled = owner.post_form("/recover/cancel", &confirm, &[("token", &cancel_token)]);
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);

    app.advance(chrono::Duration::hours(25));
    let late = browser.post_form(
        "/recover/factors",
        &page,
        &[("token", &finish_token), ("new_password", NEW_PASSWORD)],
    );
    assert_eq!(late.status, 410, "cancelled: {}", late.body);
}

/// The reset link from the newest mail: its path and token.
fn reset_link(app: &WebApp, email: &str) -> (String, String) {
    let before = app.smtp.messages().len();
    ask_for_link(app, email);
    let mail = app.mails(before + 1).pop().unwrap();
    app.recovery_link(&mail)
}

/// Begins the reset page's passkey ceremony: the challenge id and the options.
fn begin_passkey(browser: &mut Browser, page: &Page, token: &str) -> (String, serde_json::Value) {
    let begun = browser.post_json(
        "/recover/passkey/begin",
        Some(&page.csrf()),
        &json!({ "token": token }),
    );
    assert_eq!(begun.status, 200, "{}", begun.body);
    let begun = body(&begun);
    (
        begun["challenge_id"].as_str().unwrap().to_owned(),
        begun["options"].clone(),
    )
}

fn reset_with_passkey(
    browser: &mut Browser,
    page: &Page,
    token: &str,
    challenge: &str,
    assertion: &serde_json::Value,
) -> Page {
    browser.post_form(
        "/recover",
        page,
        &[
            ("token", token),
            ("method", "passkey"),
            ("passkey_challenge", challenge),
            ("passkey_credential", &assertion.to_string()),
            ("new_password", NEW_PASSWORD),
        ],
    )
}

#[test]
fn a_passkey_account_resets_its_password_with_the_passkey() {
    let (app, mut owner, mut phone) = signed_in_with_a_passkey();
    // Someone else with a passkey of their own.
    app.create_verified_user("vic@example.com", PASSWORD);
    let mut vic = app.browser();
    vic.sign_in("vic@example.com", PASSWORD);
    let mut vics_phone = SoftAuthenticator::new(&app.base);
    let vics = add_passkey(&mut vic, &mut vics_phone, "Vic's phone");
    assert!(vics["ok"].as_bool().unwrap());

    let (path, token) = reset_link(&app, "uma@example.com");
    let mut browser = app.browser();
    let form = browser.get(&path);
    assert_eq!(form.status, 200, "{}", form.body);
    // Only what the account has: the passkey (and the recovery codes that came
    // with it), no authenticator app, as radio buttons of their own.
    assert!(
        form.body.contains(r#"data-passkey="reset""#),
        "{}",
        form.body
    );
    assert!(form.body.contains(r#"value="passkey""#));
    assert!(form.body.contains(r#"value="recovery_code""#));
    assert!(!form.body.contains(r#"value="totp""#));
    assert!(
        !form.body.to_lowercase().contains("authenticator app"),
        "{}",
        form.body
    );
    assert!(form.body.contains(r#"class="gh-choices""#));
    assert!(form.body.contains("passkeys.js"));

    // Vic's passkey for Uma's link: refused, and the link still works.
    let (challenge, options) = begin_passkey(&mut browser, &form, &token);
    // (A tampered client: the options allow only Uma's passkeys.)
    let mut any = options.clone();
    any["publicKey"]["allowCredentials"] = json!([]);
    let vics_key = vics_phone.get(&any).unwrap();
    let refused = reset_with_passkey(&mut browser, &form, &token, &challenge, &vics_key);
    refused.assert_shows(401, "This passkey was not accepted");

    // Her own passkey: the password is reset.
    let (challenge, options) = begin_passkey(&mut browser, &form, &token);
    let assertion = phone.get(&options).unwrap();
    let done = reset_with_passkey(&mut browser, &form, &token, &challenge, &assertion);
    done.assert_shows(200, "Your new password is set");
    assert_eq!(owner.get("/account").location().as_deref(), Some("/signin"));

    // The same assertion again, with a new link: refused.
    let (path, token) = reset_link(&app, "uma@example.com");
    let form = browser.get(&path);
    let replayed = reset_with_passkey(&mut browser, &form, &token, &challenge, &assertion);
    replayed.assert_shows(400, "This passkey request has expired");
    assert_eq!(browser.get(&path).status, 200, "the link still works");

    // A ceremony needs a link that opens.
    let used = browser.post_json(
        "/recover/passkey/begin",
        Some(&form.csrf()),
        &json!({ "token": "not-a-token" }),
    );
    assert_eq!(used.status, 400, "{}", used.body);
    assert_eq!(body(&used)["redirect"], "/recover/request");
}
