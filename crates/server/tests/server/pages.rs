//! The end-user pages over real HTTP: sign-up with mail over SMTP, verification,
//! sign-in rules, sessions, CSRF, headers and themes.

use chrono::Duration;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::audit;

use crate::web_kit::*;

const PASSWORD: &str = "violet-harbor-quilt-97-lantern";

fn full_journey(backend: Backend) {
    let app = WebApp::start(backend);
    let mut browser = app.browser();

    let form = browser.get("/signup");
    assert_eq!(form.status, 200);
    let done = browser.post_form(
        "/signup",
        &form,
        &[
            ("email", "Alice@Example.com"),
            ("given_name", "Alice"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(done.status, 200, "{}", done.body);

    // Not verified yet: sign-in is refused (the password was right, so this reveals nothing new).
    let early = browser.sign_in("alice@example.com", PASSWORD);
    assert_eq!(early.status, 403, "{}", early.body);

    let mail = app.mails(1).remove(0);
    assert_eq!(mail.to, vec!["Alice@Example.com".to_owned()]);
    let link = mail
        .find_link(&format!("{}/verify?token=", app.base))
        .expect("verification link in the mail");
    let mut events = app.state.events.subscribe();
    assert_eq!(browser.get_absolute(&link).status, 200);
    // Policies see `email_verified`: the policy decision point's cache must hear it.
    let heard: Vec<_> = std::iter::from_fn(|| events.try_next())
        .map(|e| e.event.clone())
        .collect();
    assert!(
        heard
            .iter()
            .any(|e| matches!(e, gatehouse_core::events::DomainEvent::UserChanged { .. })),
        "{heard:?}"
    );
    assert_eq!(
        browser.get_absolute(&link).status,
        400,
        "a verification link worked twice"
    );

    let signed_in = browser.sign_in("alice@example.com", PASSWORD);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location().as_deref(), Some("/account"));
    let cookie = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("gatehouse-session"))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );

    let account = browser.get("/account");
    assert_eq!(account.status, 200);
    assert!(
        account.body.contains("Alice@Example.com"),
        "{}",
        account.body
    );

    let report = audit::verify(&mut app.db.conn(), &app.state.cipher).unwrap();
    assert!(report.is_intact());
    let actions = app.audit_actions(50);
    for expected in ["user.registered", "email.verified", "login.succeeded"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
}

gatehouse_identity_store::on_both_backends!(full_journey);

/// Strips what legitimately differs between two responses (per-response nonce,
/// the echoed identifier) so the rest can be compared byte for byte.
fn normalise(page: &Page, email: &str) -> String {
    let mut body = page.body.replace(email, "EMAIL");
    if let Some(nonce) = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .and_then(|csp| csp.split("'nonce-").nth(1))
        .and_then(|rest| rest.split('\'').next())
    {
        body = body.replace(nonce, "NONCE");
    }
    body
}

#[test]
fn unknown_account_and_wrong_password_look_the_same() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("bob@example.com", PASSWORD);
    let mut browser = app.browser();
    let wrong = browser.sign_in("bob@example.com", "not-the-password-at-all");
    let unknown = browser.sign_in("nobody@example.com", "not-the-password-at-all");
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(
        normalise(&wrong, "bob@example.com"),
        normalise(&unknown, "nobody@example.com")
    );
}

#[test]
fn repeated_failures_lock_the_account_until_the_lockout_expires() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("carol@example.com", PASSWORD);
    let threshold = app.state.authn.settings().account_lockout_threshold;
    let mut attacker = app.browser();
    let mut throttled = 0;
    for _ in 0..threshold + 2 {
        let page = attacker.sign_in("carol@example.com", "guess-guess-guess-guess");
        if page.status == 429 {
            throttled += 1;
        }
        // Backoff waits are short; move past them so the count reaches the lockout.
        app.advance(Duration::seconds(70));
    }
    assert!(throttled >= 1, "never throttled");
    // Locked now: even the right password is refused.
    let mut owner = app.browser();
    assert_eq!(owner.sign_in("carol@example.com", PASSWORD).status, 429);
    // The lockout lapses with time (no sleeping: the clock moves).
    app.advance(app.state.authn.settings().lockout + Duration::seconds(1));
    assert_eq!(owner.sign_in("carol@example.com", PASSWORD).status, 303);

    let actions = app.audit_actions(200);
    assert!(actions.iter().any(|a| a == "login.locked"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "login.failed"));
}

/// Every page that changes state on a form post: each checks the token through the
/// one `Submitted` extractor, so each must refuse a post without it, signed in or
/// not, with the readable 403 page.
const FORM_POSTS: [&str; 24] = [
    "/signin",
    "/signin/second-factor",
    "/recover/request",
    "/recover",
    "/recover/factors/start",
    "/recover/factors",
    "/recover/cancel",
    "/signup",
    "/verify/resend",
    "/signout",
    "/authorize/consent",
    "/oauth2/logout/confirm",
    "/setup",
    "/account/apps/withdraw",
    "/account/apps/revoke",
    "/account/totp",
    "/account/totp/confirm",
    "/account/totp/remove",
    "/account/recovery-codes",
    "/account/passkeys/0190a3a2-0000-7000-8000-000000000000/remove",
    "/account/profile",
    "/account/password",
    "/account/email",
    "/account/sessions/end-others",
];

#[test]
fn every_form_post_refuses_a_missing_csrf_token() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("csrf@example.com", PASSWORD);
    let mut signed_in = app.browser();
    let done = signed_in.sign_in("csrf@example.com", PASSWORD);
    assert_eq!(done.status, 303, "{}", done.body);
    for path in FORM_POSTS {
        for browser in [&mut app.browser(), &mut signed_in] {
            // The page's cookie is there; only the form field is missing.
            browser.get("/signin");
            let refused = browser.post_raw(path, &[("email", "csrf@example.com")], &[]);
            assert_eq!(refused.status, 403, "{path}: {}", refused.body);
            assert!(refused.body.contains("<html"), "{path}: not a page");
        }
    }
    // Still signed in: nothing above took effect.
    assert_eq!(signed_in.get("/account").status, 200);
}

#[test]
fn forms_without_a_valid_csrf_token_are_refused() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let page = browser.get("/signin");
    let fields = [
        ("email", "x@example.com"),
        ("password", "whatever-whatever"),
    ];
    assert_eq!(
        browser.post_raw("/signin", &fields, &[]).status,
        403,
        "missing token accepted"
    );
    let wrong = [
        ("csrf_token", "A".repeat(43)),
        ("email", "x@example.com".into()),
        ("password", "whatever-whatever".into()),
    ];
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        browser.post_raw("/signin", &wrong, &[]).status,
        403,
        "wrong token accepted"
    );
    let token = page.csrf();
    let cross_site = [
        ("csrf_token", token.as_str()),
        ("email", "x@example.com"),
        ("password", "whatever-whatever"),
    ];
    assert_eq!(
        browser
            .post_raw(
                "/signin",
                &cross_site,
                &[("Origin", "https://evil.example")]
            )
            .status,
        403,
        "foreign origin accepted"
    );
    let mut stranger = app.browser();
    assert_eq!(
        stranger.post_raw("/signin", &cross_site, &[]).status,
        403,
        "token without its cookie accepted"
    );
    assert_eq!(
        browser.post_raw("/signin", &cross_site, &[]).status,
        401,
        "a valid token was refused"
    );
    // Browsers in privacy modes send `Origin: null`; the token still decides.
    assert_eq!(
        browser
            .post_raw("/signin", &cross_site, &[("Origin", "null")])
            .status,
        401
    );
}

#[test]
fn signing_in_rotates_the_session_and_signing_out_ends_it() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("dave@example.com", PASSWORD);
    let mut browser = app.browser();
    assert_eq!(browser.sign_in("dave@example.com", PASSWORD).status, 303);
    let (name, first) = browser.session_cookie().unwrap();
    // Signing in again while signed in (say, from another tab).
    let again = browser.fill_in(
        "/account",
        "/signin",
        &[("email", "dave@example.com"), ("password", PASSWORD)],
    );
    assert_eq!(again.status, 303);
    let (_, second) = browser.session_cookie().unwrap();
    assert_ne!(first, second, "session id did not rotate at sign-in");

    let mut replay = app.browser();
    replay.cookies.insert(name.clone(), first);
    assert_eq!(
        replay.get("/account").status,
        303,
        "the pre-rotation session still works"
    );

    let account = browser.get("/account");
    assert_eq!(account.status, 200);
    let out = browser.post_form("/signout", &account, &[]);
    assert_eq!(out.status, 303);
    let mut after = app.browser();
    after.cookies.insert(name, second);
    assert_eq!(
        after.get("/account").status,
        303,
        "session survived sign-out"
    );
}

#[test]
fn sessions_expire_when_idle_and_at_their_absolute_limit() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("erin@example.com", PASSWORD);
    let settings = app.state.authn.settings().clone();

    let mut idle = app.browser();
    idle.sign_in("erin@example.com", PASSWORD);
    app.advance(settings.session_idle + Duration::seconds(1));
    assert_eq!(idle.get("/account").status, 303, "idle session still valid");

    let mut busy = app.browser();
    busy.sign_in("erin@example.com", PASSWORD);
    let step = settings.session_idle - Duration::minutes(5);
    let mut elapsed = Duration::zero();
    while elapsed + step < settings.session_absolute {
        app.advance(step);
        elapsed += step;
        assert_eq!(
            busy.get("/account").status,
            200,
            "active session expired early after {elapsed}"
        );
    }
    app.advance(settings.session_absolute - elapsed);
    assert_eq!(
        busy.get("/account").status,
        303,
        "session outlived its absolute limit"
    );
}

#[test]
fn changing_the_password_ends_the_other_sessions() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("frank@example.com", PASSWORD);
    let mut laptop = app.browser();
    let mut phone = app.browser();
    laptop.sign_in("frank@example.com", PASSWORD);
    phone.sign_in("frank@example.com", PASSWORD);
    let account = laptop.get("/account");
    let wrong = laptop.post_form(
        "/account/password",
        &account,
        &[
            ("current_password", "nope-nope-nope-nope"),
            ("new_password", "amber-ocean-tulip-42-compass"),
        ],
    );
    // Post/redirect/get, and the message at the field it is about.
    assert_eq!(wrong.status, 303, "{}", wrong.body);
    let back = wrong.location().unwrap();
    assert_eq!(
        back,
        "/account?error=account.error.current_password&field=password-current#password-current"
    );
    let shown = laptop.get(back.split('#').next().unwrap());
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.contains(
            "aria-invalid=\"true\" aria-describedby=\"password-current-error\">\n      <p class=\"gh-field-error\" role=\"alert\" id=\"password-current-error\">The current password is incorrect.</p>"
        ),
        "{}",
        shown.body
    );
    let changed = laptop.post_form(
        "/account/password",
        &account,
        &[
            ("current_password", PASSWORD),
            ("new_password", "amber-ocean-tulip-42-compass"),
        ],
    );
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert_eq!(
        changed.location().as_deref(),
        Some("/account?notice=account.password.changed")
    );
    assert!(
        laptop
            .get("/account?notice=account.password.changed")
            .body
            .contains("Your password has been changed")
    );
    assert_eq!(
        laptop.get("/account").status,
        200,
        "the current session must survive"
    );
    assert_eq!(
        phone.get("/account").status,
        303,
        "another session survived the password change"
    );
    let mut again = app.browser();
    assert_eq!(again.sign_in("frank@example.com", PASSWORD).status, 401);
    assert_eq!(
        again
            .sign_in("frank@example.com", "amber-ocean-tulip-42-compass")
            .status,
        303
    );
}

#[test]
fn weak_passwords_are_refused_with_a_helpful_message() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let weak = browser.sign_up("/signup", "gina@example.com", "password1234");
    assert_eq!(weak.status, 422);
    assert!(
        !weak.body.contains("password1234"),
        "the password was echoed back"
    );
    assert!(app.smtp.messages().is_empty(), "a weak sign-up sent mail");
}

#[test]
fn pages_carry_a_nonce_csp_and_frame_protection() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let page = browser.get("/signin");
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("'nonce-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "same-origin");
    assert!(
        page.headers.get("strict-transport-security").is_none(),
        "HSTS over plain http"
    );
    assert!(
        page.body.contains(">Email<")
            && page.body.contains(">Password<")
            && page.body.contains("Sign in"),
        "{}",
        page.body
    );
    let other = browser.get("/signin");
    assert_ne!(csp, other.header("content-security-policy"), "nonce reused");
}

#[test]
fn a_theme_override_changes_one_tenant_only() {
    let app = WebApp::start(Backend::Sqlite);
    let overrides = tempfile::tempdir().unwrap();
    std::fs::write(
        overrides.path().join("sign_in.html"),
        "{% extends \"layout.html\" %}{% block content %}<p>ACME-OVERRIDE</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"csrf_token\" value=\"{{ csrf_token }}\"></form>{% endblock %}",
    )
    .unwrap();
    app.create_tenant(
        "acme",
        "Acme",
        serde_json::json!({
            "theme": { "template_dir": overrides.path(), "primary_color": "#7a1f5c" }
        }),
    );
    app.create_tenant("globex", "Globex", serde_json::json!({}));

    let mut browser = app.browser();
    let acme = browser.get("/t/acme/signin");
    assert_eq!(acme.status, 200);
    assert!(acme.body.contains("ACME-OVERRIDE"));
    let globex = browser.get("/t/globex/signin");
    assert!(!globex.body.contains("ACME-OVERRIDE") && globex.body.contains("Sign in"));
    assert!(!browser.get("/signin").body.contains("ACME-OVERRIDE"));
    assert!(browser.get("/t/acme/theme.css").body.contains("#7a1f5c"));
    assert!(!browser.get("/t/globex/theme.css").body.contains("#7a1f5c"));
    assert_eq!(browser.get("/t/nope/signin").status, 404);
}

#[test]
fn registration_can_be_closed_per_tenant() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant(
        "closed",
        "Closed",
        serde_json::json!({ "registration": { "enabled": false } }),
    );
    let mut browser = app.browser();
    assert_eq!(browser.get("/t/closed/signup").status, 404);
    assert_eq!(browser.get("/signup").status, 200);
}

#[test]
fn a_german_sign_up_gets_a_german_mail_in_two_parts_from_the_tenant() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant(
        "bergwerk",
        "Bergwerk & Söhne",
        serde_json::json!({ "mail": { "from": "anmeldung@bergwerk.example" } }),
    );
    let mut browser = app.browser();
    let form = browser.get("/t/bergwerk/signup?lang=de");
    assert_eq!(form.status, 200, "{}", form.body);
    let answer = browser.post_form(
        "/t/bergwerk/signup",
        &form,
        &[("email", "greta@example.com"), ("password", PASSWORD)],
    );
    assert!(answer.status < 400, "{}", answer.body);
    let mail = app.mails(1).pop().unwrap();
    assert!(
        mail.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{}",
        mail.data
    );
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Bestätigen Sie Ihre E-Mail-Adresse")
    );
    let from = mail.header("From").unwrap();
    assert!(
        from.contains("Bergwerk & Söhne") && from.contains("<anmeldung@bergwerk.example>"),
        "{from}"
    );
    assert_eq!(mail.from, "anmeldung@bergwerk.example");
    assert!(
        mail.text_body().starts_with("Willkommen!"),
        "{}",
        mail.text_body()
    );
    let html = mail.html_body().expect("an HTML part");
    assert!(html.contains(r#"<html lang="de">"#), "{html}");
    assert!(html.contains("Bergwerk &amp; Söhne"), "{html}");
    assert!(
        html.contains("Bestätigen Sie Ihre E-Mail-Adresse, indem Sie"),
        "{html}"
    );
    let link = mail
        .find_link(&format!("{}/t/bergwerk/verify?token=", app.base))
        .expect("a verification link");
    assert!(html.contains(&format!(r#"<a href="{link}""#)), "{html}");
}

#[test]
fn pages_follow_the_browser_language() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let german = browser.get_with("/signin", &[("Accept-Language", "de-DE,de;q=0.9,en;q=0.5")]);
    assert!(german.body.contains("lang=\"de\""), "{}", german.body);
    assert!(!german.body.contains(">Sign in<"));
    let switched = browser.get("/signin?lang=en");
    assert!(switched.body.contains("lang=\"en\""));
    // The switch sticks through its cookie.
    let later = browser.get_with("/signin", &[("Accept-Language", "de")]);
    assert!(later.body.contains("lang=\"en\""));
}

#[test]
fn mail_is_written_in_the_language_of_the_request_that_caused_it() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    let done = browser.sign_up("/signup?lang=de", "jonas@example.com", PASSWORD);
    assert_eq!(done.status, 200, "{}", done.body);
    let mail = app.mails(1).remove(0);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Bestätigen Sie Ihre E-Mail-Adresse")
    );
    assert!(
        mail.text_body().starts_with("Willkommen!"),
        "{}",
        mail.text_body()
    );
    let link = mail
        .find_link(&format!("{}/verify?token=", app.base))
        .expect("verification link in the mail");
    assert_eq!(browser.get_absolute(&link).status, 200);
}

#[test]
fn the_setup_secret_makes_the_first_administrator_once() {
    let app = WebApp::start(Backend::Sqlite);
    assert!(app.setup_secret.starts_with("ghsetup_"));
    let mut browser = app.browser();
    let form = browser.get("/setup");
    assert_eq!(form.status, 200);
    let wrong = browser.post_setup(&form, "ghsetup_wrong", "ops@example.com", PASSWORD);
    assert_eq!(wrong.status, 403);
    let done = browser.post_setup(&form, &app.setup_secret, "ops@example.com", PASSWORD);
    assert_eq!(done.status, 200, "{}", done.body);
    let again = browser.post_setup(&form, &app.setup_secret, "evil@example.com", PASSWORD);
    // Set-up is done: no form any more, whatever is posted.
    assert_eq!(again.status, 409, "the setup secret worked twice");
    assert!(
        !again.body.contains("name=\"setup_secret\""),
        "{}",
        again.body
    );
    let mut admin = app.browser();
    assert_eq!(admin.sign_in("ops@example.com", PASSWORD).status, 303);
    assert_eq!(
        app.browser().sign_in("evil@example.com", PASSWORD).status,
        401
    );
}

/// Set-ups racing with the right secret: the secret is spent in the transaction that
/// writes the administrator, so exactly one of them takes effect.
fn concurrent_setups_make_one_administrator(backend: Backend) {
    let app = WebApp::start(backend);
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let mut browser = app.browser();
            let form = browser.get("/setup");
            (i, browser, form)
        })
        .collect();
    let secret = app.setup_secret.clone();
    let statuses: Vec<(usize, u16)> = std::thread::scope(|scope| {
        let running: Vec<_> = attempts
            .into_iter()
            .map(|(i, mut browser, form)| {
                let secret = secret.clone();
                scope.spawn(move || {
                    let email = format!("ops{i}@example.com");
                    let answer = browser.post_setup(&form, &secret, &email, PASSWORD);
                    (i, answer.status)
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let winners: Vec<usize> = statuses
        .iter()
        .filter(|(_, status)| *status == 200)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "{statuses:?}");
    for (i, _) in &statuses {
        let expected = if *i == winners[0] { 303 } else { 401 };
        let email = format!("ops{i}@example.com");
        assert_eq!(
            app.browser().sign_in(&email, PASSWORD).status,
            expected,
            "{email}"
        );
    }
}

gatehouse_identity_store::on_both_backends!(concurrent_setups_make_one_administrator);

#[test]
fn a_tenant_is_reachable_by_its_own_host_name() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant(
        "initech",
        "Initech",
        serde_json::json!({
            "hosts": ["login.initech.test"],
            "theme": { "display_name": "Initech Login" },
        }),
    );
    let mut browser = app.browser();
    let by_host = browser.get_with("/signin", &[("Host", "login.initech.test")]);
    assert!(by_host.body.contains("Initech Login"), "{}", by_host.body);
    // Links stay at the root on the tenant's own host.
    assert!(by_host.body.contains("action=\"/signin\""));
    let by_path = browser.get("/t/initech/signin");
    assert!(
        by_path.body.contains("Initech Login")
            && by_path.body.contains("action=\"/t/initech/signin\"")
    );
    // An unknown host falls back to the default tenant, never to another one.
    let other = browser.get_with("/signin", &[("Host", "evil.test")]);
    assert!(!other.body.contains("Initech Login"));
}

#[test]
fn changing_the_email_verifies_the_new_address_and_tells_the_old_one() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_verified_user("hana@example.com", PASSWORD);
    let mut browser = app.browser();
    browser.sign_in("hana@example.com", PASSWORD);
    let requested = browser.change_email("hana@new.example", PASSWORD);
    assert_eq!(requested.status, 303, "{}", requested.body);
    assert_eq!(
        requested.location().as_deref(),
        Some("/account?notice=account.email.sent")
    );

    let mails = app.mails(3);
    let to_new = mails
        .iter()
        .find(|m| m.to == ["hana@new.example"])
        .expect("mail to the new address");
    let to_old = mails
        .iter()
        .rev()
        .find(|m| m.to == ["hana@example.com"])
        .expect("notice to the old address");
    assert!(to_old.text_body().contains("hana@new.example"));
    assert!(
        to_old
            .find_link(&format!("{}/verify?token=", app.base))
            .is_none(),
        "the old address got the confirmation link"
    );

    // Until the link is opened, the old address still signs in.
    assert_eq!(
        app.browser().sign_in("hana@example.com", PASSWORD).status,
        303
    );
    let link = to_new
        .find_link(&format!("{}/verify?token=", app.base))
        .unwrap();
    assert_eq!(browser.get_absolute(&link).status, 200);
    assert_eq!(
        app.browser().sign_in("hana@new.example", PASSWORD).status,
        303
    );
    assert_eq!(
        app.browser().sign_in("hana@example.com", PASSWORD).status,
        401
    );
}

#[test]
fn verification_mail_can_be_resent_a_few_times_an_hour_and_no_more() {
    let app = WebApp::start(Backend::Sqlite);
    let mut browser = app.browser();
    browser.sign_up("/signup", "ivan@example.com", PASSWORD);
    app.mails(1);
    let limit = app.state.config.registration.resend_per_hour as usize;
    for _ in 0..limit + 2 {
        let page = browser.get("/signin");
        let answer = browser.post_form("/verify/resend", &page, &[("email", "ivan@example.com")]);
        assert_eq!(answer.status, 200);
        // A new link voids the older ones, and the page says so.
        assert!(
            answer.body.contains("The earlier link no longer works"),
            "{}",
            answer.body
        );
    }
    app.settle();
    assert_eq!(
        app.smtp.messages().len(),
        1 + limit,
        "resends were not limited"
    );
    // Unknown addresses get the same answer and no mail.
    let page = browser.get("/signin");
    assert_eq!(
        browser
            .post_form("/verify/resend", &page, &[("email", "nobody@example.com")])
            .status,
        200
    );
}
