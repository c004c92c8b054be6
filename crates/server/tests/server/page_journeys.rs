//! The end-user pages' journeys that cross pages: the language switcher in the middle
//! of an application's sign-in, the consent page's words, unknown URLs, errors at
//! their field after a redirect, first-start set-up once done, the resend link,
//! readable sessions and the recovery codes' copy and download.

use gatehouse_identity_store::Backend;

use crate::code_flow::{
    PASSWORD, REDIRECT, authorize_query, client_and_signed_in_user, param, register, signed_in,
};
use crate::mfa::enrol_totp;
use crate::web_kit::*;

/// The `href` of the switcher's link to `code`, unescaped as a browser reads it.
fn language_link(page: &Page, code: &str) -> String {
    let marker = format!("\" lang=\"{code}\" hreflang=\"{code}\"");
    let end = page.body.find(&marker).expect("a language link");
    let start = page.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
    page.body[start..end].replace("&amp;", "&")
}

#[test]
fn switching_language_during_an_applications_sign_in_keeps_the_way_back() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    app.create_verified_user("uma@example.com", PASSWORD);
    let mut browser = app.browser();
    let authorize = authorize_query("");
    let to_sign_in = browser.get(&authorize);
    assert_eq!(to_sign_in.status, 303, "{}", to_sign_in.body);
    let sign_in_url = to_sign_in.location().unwrap();
    let return_to = param(&sign_in_url, "return_to").expect("a way back");
    assert!(return_to.starts_with("/authorize?"), "{return_to}");
    let page = browser.get(&sign_in_url);

    let german = language_link(&page, "de");
    assert!(german.starts_with("/signin?return_to="), "{german}");
    assert!(german.ends_with("&lang=de"), "{german}");
    let page = browser.get(&german);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html lang=\"de\">"));
    assert_eq!(
        browser.cookies.get("gatehouse_lang").map(String::as_str),
        Some("de")
    );
    // The way back survived the switch, as the form's hidden field.
    assert!(
        page.body.contains(&format!(
            "name=\"return_to\" value=\"{}\"",
            return_to.replace('&', "&amp;")
        )),
        "{}",
        page.body
    );

    let signed = browser.post_form(
        "/signin",
        &page,
        &[
            ("email", "uma@example.com"),
            ("password", PASSWORD),
            ("return_to", &return_to),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location().as_deref(), Some(return_to.as_str()));
    // Back at the authorization endpoint the application gets its code.
    let code = browser.get(&return_to);
    assert!(
        code.location().unwrap().starts_with(REDIRECT),
        "{:?}",
        code.location()
    );
}

#[test]
fn the_consent_page_describes_scopes_in_german_and_its_switcher_keeps_the_request() {
    let (_app, mut browser) = client_and_signed_in_user(false);
    let authorize = authorize_query("");
    let consent = browser.get(&authorize);
    consent.assert_shows(200, "<li>Your email address</li>");

    let german = language_link(&consent, "de");
    assert_eq!(german, format!("{authorize}&lang=de"));
    let consent = browser.get(&german);
    assert_eq!(consent.status, 200, "{}", consent.body);
    for described in [
        "<li>Ihre Anmeldung mit diesem Konto (eine Kennung für Sie)</li>",
        "<li>Ihren Namen und Ihre Profilangaben</li>",
        "<li>Ihre E-Mail-Adresse</li>",
    ] {
        assert!(
            consent.body.contains(described),
            "{described}: {}",
            consent.body
        );
    }
    assert!(!consent.body.contains("openid, profile"));
    assert!(
        consent
            .body
            .contains("value=\"deny\" class=\"gh-button gh-button--secondary\">Ablehnen</button>")
    );
}

#[test]
fn unknown_pages_get_the_themed_404_and_protocol_urls_stay_plain() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let html = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    // A URL that takes only a form post is unknown to a GET: the same page, not a blank one.
    for path in [
        "/no-such-page",
        "/account/nothing-here",
        "/t/default/nope",
        "/account/totp",
    ] {
        let page = browser.get_with(path, &html);
        assert_eq!(page.status, 404, "{path}");
        assert!(
            page.body.contains("Page not found"),
            "{path}: {}",
            page.body
        );
        let request_id = page
            .headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("a request id header");
        assert!(
            page.body.contains(&format!("Request id: {request_id}")),
            "{path}: {}",
            page.body
        );
    }
    // The page names the path asked for in no link that could leave this site.
    let odd = browser.get_with("//evil.example/x", &html);
    assert_eq!(odd.status, 404);
    assert!(odd.body.contains("Page not found"), "{}", odd.body);
    assert!(!odd.body.contains("href=\"//evil.example"), "{}", odd.body);

    // Programs asking protocol or JSON endpoints keep the empty 404.
    for (path, accept) in [
        ("/oauth2/nothing", "text/html"),
        ("/.well-known/nothing", "text/html"),
        ("/no-such-page", "application/json"),
    ] {
        let page = browser.get_with(path, &[("Accept", accept)]);
        assert_eq!(page.status, 404, "{path}");
        assert!(page.body.is_empty(), "{path}: {}", page.body);
    }
}

#[test]
fn the_answer_to_a_form_post_offers_no_language_link_that_would_lose_it() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = signed_in(&app);
    let _ = enrol_totp(&app, &mut browser);
    let security = browser.get("/account/security");
    assert!(
        security.body.contains("class=\"gh-lang\""),
        "a page that can be opened again has it"
    );
    let codes = browser.post_form("/account/recovery-codes", &security, &[]);
    assert_eq!(codes.status, 200, "{}", codes.body);
    assert!(!codes.body.contains("class=\"gh-lang\""), "{}", codes.body);
    assert!(!codes.body.contains("?lang="));
    // Copy and download come from a static script (the CSP allows no inline one).
    assert!(
        codes
            .body
            .contains("data-recovery-codes-copy hidden>Copy codes</button>")
    );
    assert!(
        codes
            .body
            .contains("data-recovery-codes-download hidden>Download as a text file</button>")
    );
    let script = browser.script_of(&codes, "/static/themes/default/recovery-codes.js");
    assert!(script.body.contains("navigator.clipboard.writeText"));
}

#[test]
fn account_errors_are_shown_at_their_field_after_a_redirect() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("taken@example.com", PASSWORD);
    let mut browser = signed_in(&app);
    let taken = browser.change_email("taken@example.com", PASSWORD);
    assert_eq!(taken.status, 303, "{}", taken.body);
    let page = browser.get(taken.location().unwrap().split('#').next().unwrap());
    let field = page.body.find("id=\"email-new\"").unwrap();
    let error = page
        .body
        .find("id=\"email-new-error\"")
        .expect("the error at its field");
    let next = page.body.find("id=\"email-current-password\"").unwrap();
    assert!(field < error && error < next, "{}", page.body);
    assert!(!page.body.contains("id=\"account-error\""));

    // A link cannot put words of its own on the page: unknown keys are dropped.
    let forged = browser.get("/account?error=Call%20us%20now&field=email-new&notice=Hello");
    assert_eq!(forged.status, 200);
    assert!(!forged.body.contains(">Call us now") && !forged.body.contains(">Hello"));
    assert!(!forged.body.contains("gh-alert"), "{}", forged.body);
    assert!(!forged.body.contains("email-new-error"));
}

#[test]
fn sessions_are_named_by_browser_and_system() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("ua@example.com", PASSWORD);
    let mut browser = app.browser();
    let firefox = [(
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    )];
    let page = browser.get_with("/signin", &firefox);
    let token = page.csrf();
    let signed = browser.post_raw(
        "/signin",
        &[
            ("csrf_token", &token),
            ("email", "ua@example.com"),
            ("password", PASSWORD),
        ],
        &firefox,
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    let account = browser.get("/account");
    assert!(
        account.body.contains(">Firefox on Windows</dd>"),
        "{}",
        account.body
    );
}

#[test]
fn set_up_marks_only_the_field_at_fault_and_is_gone_once_done() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let form = browser.get("/setup");
    let bad_email = browser.post_setup(&form, &app.setup_secret, "not-an-address", PASSWORD);
    assert_eq!(bad_email.status, 422, "{}", bad_email.body);
    assert!(bad_email.body.contains("id=\"email-error\""));
    assert!(
        !bad_email
            .body
            .contains("aria-describedby=\"setup_secret-error\""),
        "{}",
        bad_email.body
    );
    let wrong = browser.post_setup(&form, "ghsetup_wrong", "ops@example.com", PASSWORD);
    assert_eq!(wrong.status, 403);
    assert!(
        wrong
            .body
            .contains("aria-invalid=\"true\" aria-describedby=\"setup_secret-error\"")
    );
    let done = browser.post_setup(&form, &app.setup_secret, "ops@example.com", PASSWORD);
    assert_eq!(done.status, 200, "{}", done.body);
    let after = browser.get("/setup");
    assert_eq!(after.status, 200);
    assert!(
        !after.body.contains("name=\"setup_secret\""),
        "{}",
        after.body
    );
    assert!(after.body.contains("href=\"/signin\""));
}

#[test]
fn an_unconfirmed_address_gets_a_resend_button_on_the_sign_in_page() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let done = browser.sign_up("/signup", "new@example.com", PASSWORD);
    assert_eq!(done.status, 200);
    let _ = app.mails(1);
    let refused = browser.sign_in("new@example.com", PASSWORD);
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("action=\"/verify/resend\""),
        "{}",
        refused.body
    );
    let resent = browser.post_form("/verify/resend", &refused, &[("email", "new@example.com")]);
    assert_eq!(resent.status, 200);
    app.settle();
    let mails = app.mails(2);
    assert_eq!(mails.len(), 2, "the link went out again");

    // The link works once: its page offers no language link that would open it again.
    let link = mails[1]
        .find_link(&format!("{}/verify?token=", app.base))
        .unwrap();
    let verified = browser.get_absolute(&link);
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(
        !verified.body.contains("class=\"gh-lang\""),
        "{}",
        verified.body
    );
}

#[test]
fn a_theme_with_a_typo_and_a_broken_override_still_serves_its_pages() {
    let app = WebApp::start(Backend::Sqlite);
    let overrides = tempfile::tempdir().unwrap();
    // An unclosed block: this template cannot compile.
    std::fs::write(
        overrides.path().join("sign_in.html"),
        "{% extends \"layout.html\" %}{% block content %}<p>BROKEN",
    )
    .unwrap();
    app.create_tenant(
        "acme",
        "Acme",
        serde_json::json!({
            "theme": {
                "template_dir": overrides.path(),
                "primary_colour": "#123456",
                "primary_color": "#7a1f5c",
                "display_name": "Acme Sign-in",
            }
        }),
    );
    let mut browser = app.browser();
    // The typo costs only its own field: the colour next to it still applies.
    let css = browser.get("/t/acme/theme.css");
    assert!(css.body.contains("--gh-primary: #7a1f5c;"), "{}", css.body);
    // The broken override gives way to the built-in page, themed with the rest.
    for _ in 0..2 {
        let page = browser.get("/t/acme/signin");
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<label for=\"email\">Email</label>"));
        assert!(page.body.contains("Acme Sign-in"));
        assert!(!page.body.contains("BROKEN"));
    }
}
