//! Account recovery through the pages: the same answer for any address, a reset link
//! that also wants the second factor, and what a reset ends.

use gatehouse_identity_store::Backend;

use crate::code_flow::{PASSWORD, signed_in};
use crate::mfa::{enrol_totp, totp_now};
use crate::web_kit::{Page, WebApp};

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
    assert_eq!(strip(&known.body).len(), strip(&unknown.body).len());

    let mail = app.mails(mails_before + 1).pop().unwrap();
    assert_eq!(
        mail.header("to")
            .as_deref()
            .map(|t| t.contains("uma@example.com")),
        Some(true)
    );
    let link = mail
        .find_link(&format!("{}/recover?token=", app.base))
        .expect("a reset link");
    let path = link.strip_prefix(&app.base).unwrap().to_owned();
    let token = path.split("token=").nth(1).unwrap().to_owned();

    let mut stranger = app.browser();
    let form = stranger.get(&path);
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body.contains("Your account has a second factor"),
        "{}",
        form.body
    );

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
            .contains("Enter a code from your second factor")
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
    let link = mail
        .find_link(&format!("{}/recover?token=", app.base))
        .unwrap();
    let path = link.strip_prefix(&app.base).unwrap().to_owned();
    let token = path.split("token=").nth(1).unwrap().to_owned();

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

    // Too early.
    let page = browser.get(&finish_path);
    assert_eq!(page.status, 200);
    let early = browser.post_form(
        "/recover/factors",
        &page,
        &[("token", &finish_token), ("new_password", NEW_PASSWORD)],
    );
    assert_eq!(early.status, 409, "{}", early.body);

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
