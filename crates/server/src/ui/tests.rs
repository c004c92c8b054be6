use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::i18n::{Catalogues, placeholders};
use super::templates::{self, BUILTIN};
use super::theme::{contrast_ratio, parse_color};
use super::*;

const SCRIPT: &str = "<script>alert(1)</script>";

fn ui() -> Ui {
    Ui::embedded().unwrap()
}

/// A theme's template directory holding these `(file name, contents)` overrides.
pub(super) fn override_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    dir
}

fn common(locale: Locale) -> PageCommon {
    PageCommon {
        tenant_name: "Acme <Corp>".into(),
        base_path: "/t/acme".into(),
        locale,
        current_path: "/t/acme/signin".into(),
        reopen_query: Some(String::new()),
        csrf_token: "csrf-token-123".into(),
        csp_nonce: "nonce-abc".into(),
        theme: ThemeSettings::default(),
        signed_in_as: None,
    }
}

/// A sample context for every built-in page template (layout excluded).
fn samples() -> Vec<(&'static str, Value)> {
    vec![
        (
            "sign_in.html",
            json!({
                "email": SCRIPT,
                "error": "signin.error.invalid",
                "notice": "notice.signed_out",
                "registration_enabled": true,
            }),
        ),
        (
            "sign_up.html",
            json!({
                "email": SCRIPT,
                "given_name": "Ada",
                "family_name": null,
                "errors": ["signup.error.email", "error.password_too_short"],
                "password_suggestions": ["Add another word or two.", "Avoid <common> phrases."],
                "min_length": 12,
            }),
        ),
        (
            "check_email.html",
            json!({ "email": SCRIPT, "notice": "check_email.resent" }),
        ),
        (
            "message.html",
            json!({
                "title": "verify.done.title",
                "message": "verify.done.message",
                "link_href": "/t/acme/signin",
                "link_label": "verify.done.link",
                "email": SCRIPT,
            }),
        ),
        (
            "account.html",
            json!({
                "profile": {
                    "given_name": "Ada",
                    "family_name": "Lovelace",
                    "display_name": null,
                    "email": SCRIPT,
                    "email_verified": false,
                },
                "notice": "account.profile.saved",
                "error": "account.error.current_password",
                "error_field": "password-current",
                "password_suggestions": ["Add another word or two."],
                "min_length": 12,
                "sessions": [
                    {"id": "s-current", "created_at": "2026-11-01 10:00", "last_seen_at": "2026-11-25 09:00",
                     "ip": "192.0.2.1", "user_agent": "Firefox", "current": true,
                     "device": {"browser": "Firefox", "os": null}},
                    {"id": "s-other", "created_at": "2026-10-01 08:00", "last_seen_at": "2026-10-02 08:00",
                     "ip": null, "user_agent": SCRIPT, "current": false},
                ],
            }),
        ),
        (
            "consent.html",
            json!({
                "client_name": SCRIPT,
                "scopes": [{"name": "openid", "key": "scope.openid"}, {"name": SCRIPT, "key": null}],
                "request": "client_id=a&scope=openid",
                "purposes": [{"name": SCRIPT, "description": SCRIPT, "change": {
                    "accepted_version": 1, "name_before": SCRIPT, "description_before": SCRIPT,
                    "scopes_added": [SCRIPT], "scopes_removed": [SCRIPT]}}],
                "purposes_shown": SCRIPT,
            }),
        ),
        (
            "logout.html",
            json!({ "client_name": SCRIPT, "request": "client_id=a&state=x" }),
        ),
        (
            "form_post.html",
            json!({ "action": "https://app.example/cb", "fields": [{"name": "code", "value": SCRIPT}] }),
        ),
        (
            "federation_confirm.html",
            json!({ "partner": SCRIPT, "account": SCRIPT, "handle": SCRIPT, "action": "/federation/p/saml/finish" }),
        ),
        (
            "federation_redirect.html",
            json!({ "url": format!("https://partner.example/auth?state={SCRIPT}") }),
        ),
        (
            "setup.html",
            json!({
                "email": SCRIPT,
                "error": "setup.error.invalid",
                "password_suggestions": ["Add another word or two."],
                "min_length": 12,
            }),
        ),
        (
            "second_factor.html",
            json!({
                "totp": true,
                "recovery_codes": true,
                "passkeys": 1,
                "step_up": false,
                "method": "recovery_code",
                "error": "second_factor.error.invalid",
                "return_to": SCRIPT,
            }),
        ),
        (
            "security.html",
            json!({
                "totp": true,
                "passkeys": 2,
                "passkey_list": [
                    {"id": "p-1", "name": SCRIPT, "created_at": "2026-11-01 10:00 UTC",
                     "last_used_at": null, "synced": true},
                    {"id": "p-2", "name": "Laptop", "created_at": "2026-11-02 10:00 UTC",
                     "last_used_at": "2026-11-25 09:00 UTC", "synced": false},
                ],
                "recovery_codes": 7,
                "mfa_required": true,
                "notice": "security.totp.removed",
                "error": "security.totp.expired",
                "return_to": SCRIPT,
            }),
        ),
        (
            "apps.html",
            json!({
                "notice": "apps.withdrawn",
                "apps": [
                    {
                        "client_id": SCRIPT,
                        "name": SCRIPT,
                        "scopes": ["openid", SCRIPT],
                        "has_access": true,
                        "purposes": [
                            {"slug": SCRIPT, "name": SCRIPT, "description": SCRIPT,
                             "version": 2, "scopes": ["email"],
                             "legal_basis_key": "apps.basis.consent",
                             "granted_at": "2026-11-01 10:00 UTC",
                             "expires_at": "2027-11-01 10:00 UTC", "outdated": true},
                        ],
                    },
                    {"client_id": "blog", "name": "Blog", "scopes": [], "has_access": false,
                     "purposes": []},
                ],
            }),
        ),
        (
            "totp_enrol.html",
            json!({
                "enrolment": SCRIPT,
                "qr_code": "data:image/png;base64,iVBORw0KGgo=",
                "secret": "JBSW Y3DP EHPK 3PXP",
                "error": "second_factor.error.invalid",
                "return_to": null,
            }),
        ),
        (
            "recover.html",
            json!({
                "mode": "reset",
                "token": SCRIPT,
                "needs_factor": true,
                "methods": ["passkey", "totp", "recovery_code"],
                "default_method": "totp",
                "totp": true,
                "recovery_codes": true,
                "passkey": true,
                "error": "recover.error.factor_required",
                "password_suggestions": [SCRIPT],
                "min_length": 12,
            }),
        ),
        (
            "recovery_codes.html",
            json!({ "codes": ["abcd-efgh-ijkl", SCRIPT], "continue_to": "/account/security" }),
        ),
        (
            "error.html",
            json!({
                "status": 404,
                "title": "error.not_found.title",
                "message": "error.not_found.message",
                "email": SCRIPT,
            }),
        ),
    ]
}

/// `(type, id)` of every `<input>` in rendered HTML.
fn inputs(html: &str) -> Vec<(String, Option<String>)> {
    html.split("<input")
        .skip(1)
        .map(|rest| {
            let tag = rest.split('>').next().unwrap_or_default();
            let attribute = |name: &str| {
                let marker = format!(" {name}=\"");
                tag.find(&marker).map(|start| {
                    let value = &tag[start + marker.len()..];
                    value[..value.find('"').unwrap()].to_owned()
                })
            };
            (attribute("type").unwrap_or_default(), attribute("id"))
        })
        .collect()
}

#[test]
fn every_template_renders_in_every_locale_with_escaping() {
    let ui = ui();
    for locale in Locale::ALL {
        for (template, page) in samples() {
            let mut common = common(locale.clone());
            common.signed_in_as = Some("Ada <b>".into());
            let html = ui
                .render(template, &common, &page)
                .unwrap_or_else(|e| panic!("{template} in {}: {e}", locale.code));
            let context = format!("{template} in {}", locale.code);
            assert!(html.starts_with("<!doctype html>"), "{context}");
            assert!(
                html.contains(&format!("<html lang=\"{}\">", locale.code)),
                "{context}"
            );
            assert!(!html.contains(SCRIPT), "{context}: unescaped script");
            assert_eq!(
                html.matches("<script").count(),
                html.matches("<script nonce=\"").count(),
                "{context}: a script without the CSP nonce"
            );
            assert!(!html.contains("<b>"), "{context}: unescaped signed_in_as");
            assert!(!html.contains("<Corp>"), "{context}: unescaped tenant name");
            assert!(html.contains("Acme &lt;Corp&gt;"), "{context}");
            assert!(html.contains("href=\"/t/acme/theme.css\""), "{context}");
            assert!(
                html.contains("href=\"/static/themes/default/style.css\""),
                "{context}"
            );
            assert!(html.contains("<main id=\"main\""), "{context}");
            assert!(html.contains("href=\"#main\""), "{context}: skip link");
            assert!(html.contains("name=\"viewport\""), "{context}");
            assert!(
                html.contains("action=\"/t/acme/signout\""),
                "{context}: sign-out form"
            );
            // Every key was found: no dotted catalogue key leaks into the page.
            for key in [
                "error.",
                "notice.",
                "message.",
                "sign_in.",
                "signin.",
                "signup.",
                "verify.",
                "check_email.",
                "account.",
                "field.",
                "second_factor.",
                "security.",
                "totp_enrol.",
                "recovery_codes.",
                "recover.",
                "apps.",
            ] {
                assert!(!html.contains(key), "{context}: untranslated {key}…");
            }
            // The language switcher links to every locale.
            for other in Locale::ALL {
                let href = format!("href=\"/t/acme/signin?lang={}\"", other.code);
                assert!(html.contains(&href), "{context}: {href}");
            }
            // No JavaScript at all.
            assert!(
                !html.contains("onclick") && !html.contains("javascript:"),
                "{context}"
            );
            // Every POST form to Gatehouse carries the CSRF token; a form posting the
            // authorization response to the client (form_post) must not leak it.
            let forms = html.matches("method=\"post\" action=\"/").count();
            let tokens = html
                .matches("<input type=\"hidden\" name=\"csrf_token\" value=\"csrf-token-123\">")
                .count();
            assert_eq!(forms, tokens, "{context}: forms without csrf_token");
            if template == "form_post.html" {
                let start = html.find("<form id=\"form-post\"").unwrap();
                let form = &html[start..start + html[start..].find("</form>").unwrap()];
                assert!(
                    !form.contains("csrf_token"),
                    "{context}: CSRF token sent to the client"
                );
            }
            // Every visible input has a label.
            for (kind, id) in inputs(&html) {
                if kind == "hidden" {
                    continue;
                }
                let id = id.unwrap_or_else(|| panic!("{context}: input without id"));
                assert!(
                    html.contains(&format!("<label for=\"{id}\"")),
                    "{context}: no label for {id}"
                );
            }
            assert!(
                !html.contains("<button>") && !html.contains("<button class"),
                "{context}"
            );
        }
    }
}

#[test]
fn sign_in_has_the_exact_english_labels_and_fields() {
    let page = json!({ "email": "ada@example.com", "error": null, "notice": null, "registration_enabled": false });
    let html = ui()
        .render("sign_in.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains("<label for=\"email\">Email</label>"));
    assert!(html.contains("<label for=\"password\">Password</label>"));
    assert!(html.contains(">Sign in</button>"));
    assert!(html.contains("<button type=\"submit\""));
    assert!(html.contains("action=\"/t/acme/signin\""));
    assert!(html.contains("autocomplete=\"username webauthn\""));
    assert!(html.contains("autocomplete=\"current-password\""));
    assert!(html.contains("value=\"ada@example.com\""));
    assert!(
        !html.contains("/t/acme/signup"),
        "no registration link when disabled"
    );
    assert!(!html.contains("role=\"alert\""));
    assert!(
        !html.contains("action=\"/t/acme/signout\""),
        "signed out: no sign-out form"
    );

    let page =
        json!({ "email": "", "error": "signin.error.invalid", "registration_enabled": true });
    let html = ui()
        .render("sign_in.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains(
        "role=\"alert\" id=\"sign-in-error\">The email address or password is incorrect."
    ));
    assert!(html.contains("aria-describedby=\"sign-in-error\""));
    assert!(html.contains("href=\"/t/acme/signup\""));

    let html = ui()
        .render("sign_in.html", &common(Locale::DE), &page)
        .unwrap();
    assert!(html.contains("<label for=\"password\">Passwort</label>"));
    assert!(html.contains("E-Mail-Adresse oder Passwort ist falsch."));
}

#[test]
fn sign_up_shows_hint_suggestions_and_errors() {
    let (_, page) = samples()
        .into_iter()
        .find(|(name, _)| *name == "sign_up.html")
        .unwrap();
    let html = ui()
        .render("sign_up.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains("At least 12 characters"));
    assert!(html.contains("minlength=\"12\""));
    assert!(html.contains(">Create account</button>"));
    assert!(html.contains("<li lang=\"en\">Avoid &lt;common&gt; phrases.</li>"));
    assert!(html.contains("Enter a valid email address."));
    assert!(
        html.contains("aria-describedby=\"password-hint password-suggestions sign-up-errors\"")
    );
    assert!(html.contains("autocomplete=\"new-password\""));
    assert!(html.contains("value=\"Ada\""));
    assert!(
        !html.contains("value=\"none\""),
        "null prefill renders empty"
    );

    let html = ui()
        .render("sign_up.html", &common(Locale::DE), &page)
        .unwrap();
    assert!(html.contains("Mindestens 12 Zeichen"));
}

#[test]
fn account_page_has_every_form() {
    let (_, page) = samples()
        .into_iter()
        .find(|(name, _)| *name == "account.html")
        .unwrap();
    let mut common = common(Locale::EN);
    common.signed_in_as = Some("Ada".into());
    let html = ui().render("account.html", &common, &page).unwrap();
    for action in [
        "/t/acme/account/profile",
        "/t/acme/account/email",
        "/t/acme/account/password",
        "/t/acme/account/sessions/s-other/end",
        "/t/acme/account/sessions/end-others",
        "/t/acme/signout",
    ] {
        assert!(html.contains(&format!("action=\"{action}\"")), "{action}");
    }
    assert!(
        !html.contains("/sessions/s-current/end"),
        "the current session has no end button"
    );
    assert_eq!(html.matches(">Sign out this session</button>").count(), 1);
    assert!(html.contains(">Sign out all other sessions</button>"));
    assert!(html.contains(">Change password</button>"));
    assert!(html.contains(">Sign out</button>"));
    assert!(html.contains(">Current password</label>"));
    assert!(html.contains(">New password</label>"));
    assert!(html.contains("name=\"new_email\""));
    assert!(html.contains("name=\"new_password\""));
    assert!(html.contains("name=\"display_name\""));
    assert!(html.contains("value=\"Lovelace\""));
    // The error sits right under the field it is about and is linked to it.
    let field = html.find("id=\"password-current\"").unwrap();
    let error = html
        .find("role=\"alert\" id=\"password-current-error\">The current password is incorrect.")
        .expect("the error at the current password");
    let next_field = html.find("id=\"password-new\"").unwrap();
    assert!(
        field < error && error < next_field,
        "the error is not at its field"
    );
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"password-current-error\""));
    assert!(!html.contains("id=\"account-error\""));
    // Sessions are named by browser and system, the raw string only as a tooltip.
    assert!(
        html.contains(">Firefox on an unknown system</dd>"),
        "{html}"
    );
    assert!(html.contains("Not verified"));
    assert!(html.contains("This session"));
    assert!(html.contains("Signed in as Ada"));

    // Only the current session: no "all other sessions" button.
    let page = json!({
        "profile": {"given_name": null, "family_name": null, "display_name": null,
                    "email": "a@example.com", "email_verified": true},
        "sessions": [{"id": "s1", "created_at": "x", "last_seen_at": "y", "ip": "192.0.2.1",
                      "user_agent": "Safari", "current": true}],
        "error": "error.generic",
    });
    let html = ui().render("account.html", &common, &page).unwrap();
    assert!(!html.contains("end-others"));
    assert!(html.contains("role=\"alert\" id=\"account-error\""));
    assert!(html.contains(">Verified<"));
}

#[test]
fn message_and_error_pages() {
    let page = json!({ "title": "verify.invalid.title", "message": "verify.invalid.message" });
    let html = ui()
        .render("message.html", &common(Locale::DE), &page)
        .unwrap();
    assert!(html.contains("<title>Link ungültig · Acme &lt;Corp&gt;</title>"));
    assert!(
        !html.contains("gh-button--primary"),
        "no link without link_href"
    );

    let page = json!({ "status": 500, "title": "error.internal.title", "message": "error.internal.message" });
    let html = ui()
        .render("error.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains("Error 500"));
    assert!(html.contains("<h1 id=\"page-heading\">Something went wrong</h1>"));
}

#[test]
fn check_email_has_resend_form() {
    let page = json!({ "email": "ada@example.com", "notice": null });
    let html = ui()
        .render("check_email.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains("action=\"/t/acme/verify/resend\""));
    assert!(html.contains("<input type=\"hidden\" name=\"email\" value=\"ada@example.com\">"));
    assert!(html.contains("We sent a verification link to ada@example.com."));
}

#[test]
fn theme_display_name_and_logo_appear_in_the_header() {
    let mut common = common(Locale::EN);
    common.theme.display_name = Some("Acme Login".into());
    common.theme.logo_url = Some("https://cdn.example.com/logo.svg".into());
    let html = ui()
        .render(
            "message.html",
            &common,
            &json!({"title": "verify.done.title", "message": "verify.done.message"}),
        )
        .unwrap();
    assert!(html.contains(
        "<img class=\"gh-brand__logo\" src=\"https://cdn.example.com/logo.svg\" alt=\"Acme Login\">"
    ));
    assert!(html.contains("· Acme Login</title>"));

    // An unvalidated theme is sanitised before rendering, never trusted.
    common.theme.logo_url = Some("javascript:alert(1)".into());
    let html = ui()
        .render(
            "message.html",
            &common,
            &json!({"title": "verify.done.title", "message": "verify.done.message"}),
        )
        .unwrap();
    assert!(!html.contains("javascript:"));
}

#[test]
fn render_rejects_bad_names_and_contexts() {
    let ui = ui();
    let common = common(Locale::EN);
    assert!(matches!(
        ui.render("../Cargo.toml", &common, &json!({})),
        Err(UiError::UnknownTemplate(_))
    ));
    assert!(matches!(
        ui.render("nope.html", &common, &json!({})),
        Err(UiError::UnknownTemplate(_))
    ));
    assert!(matches!(
        ui.render("error.html", &common, &json!([1, 2])),
        Err(UiError::Context(_))
    ));
    // A missing required variable is an error, not an empty page.
    assert!(matches!(
        ui.render("error.html", &common, &json!({})),
        Err(UiError::Template(_))
    ));
}

/// The literal keys of `t("…")` / `t('…')` calls in a template source.
fn literal_keys(source: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = source;
    while let Some(position) = rest.find("t(") {
        let preceded_by_identifier = rest[..position]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let after = rest[position + 2..].trim_start();
        rest = &rest[position + 2..];
        if preceded_by_identifier {
            continue;
        }
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let literal = &after[1..];
        let end = literal.find(quote).expect("unterminated string in t()");
        keys.push(literal[..end].to_owned());
    }
    keys
}

#[test]
fn the_key_scanner_finds_keys() {
    assert_eq!(
        literal_keys(
            r#"{{ t("a.b") }} {{ t( 'c', x=1) }} {{ t(error) }} {{ list(x) }} {{ format("d") }}"#
        ),
        vec!["a.b", "c"]
    );
}

#[test]
fn every_template_key_exists_in_every_catalogue() {
    let catalogues = Catalogues::parse(CATALOGUES).unwrap();
    let mut used = 0;
    for (name, source) in BUILTIN {
        for key in literal_keys(source) {
            used += 1;
            for locale in Locale::ALL {
                assert!(
                    catalogues.lookup(locale, &key).is_some(),
                    "{name} uses {key:?}, missing from {}.toml",
                    locale.code
                );
            }
        }
    }
    assert!(used > 50, "the scanner found only {used} keys");
}

#[test]
fn catalogues_have_the_same_keys_and_placeholders() {
    let catalogues = Catalogues::parse(CATALOGUES).unwrap();
    let english: BTreeSet<&str> = catalogues.keys(&Locale::EN).into_iter().collect();
    for locale in Locale::ALL {
        let keys: BTreeSet<&str> = catalogues.keys(locale).into_iter().collect();
        assert_eq!(
            english.difference(&keys).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "missing from {}",
            locale.code
        );
        assert_eq!(
            keys.difference(&english).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "only in {}",
            locale.code
        );
        for key in &keys {
            let text = catalogues.lookup(locale, key).unwrap();
            let english_text = catalogues.lookup(&Locale::EN, key).unwrap();
            assert_eq!(
                placeholders(text),
                placeholders(english_text),
                "{}: {key}",
                locale.code
            );
            assert!(!text.trim().is_empty(), "{}: {key} is empty", locale.code);
        }
    }
    // Each language names itself differently.
    assert_eq!(
        catalogues.lookup(&Locale::DE, "language.name"),
        Some("Deutsch")
    );
}

#[test]
fn catalogue_errors_are_reported() {
    let bad = [(Locale::EN, "a = 1")];
    assert!(matches!(
        Catalogues::parse(&bad),
        Err(UiError::Catalogue { locale: "en", .. })
    ));
    let no_english = [(Locale::DE, "a = \"b\"")];
    assert!(Catalogues::parse(&no_english).is_err());
}

#[test]
fn translate_falls_back_to_english_then_to_the_key() {
    let catalogues = Catalogues::parse(&[
        (Locale::EN, "only.english = \"Hello\"\nboth = \"Both\""),
        (Locale::DE, "both = \"Beide\""),
    ])
    .unwrap();
    assert_eq!(catalogues.translate(&Locale::DE, "both"), "Beide");
    assert_eq!(catalogues.translate(&Locale::DE, "only.english"), "Hello");
    assert_eq!(
        catalogues.translate(&Locale::DE, "no.such.key"),
        "no.such.key"
    );
    assert_eq!(ui().translate(&Locale::DE, "sign_in.submit"), "Anmelden");
    assert_eq!(ui().translate(&Locale::EN, "sign_in.submit"), "Sign in");
}

#[test]
fn interpolation_replaces_known_placeholders_only() {
    let value = |name: &str| (name == "min").then(|| "12".to_owned());
    assert_eq!(
        i18n::interpolate("At least {min} characters", value),
        "At least 12 characters"
    );
    assert_eq!(i18n::interpolate("{other} {min}{", value), "{other} 12{");
    assert_eq!(i18n::interpolate("{ min } {}", value), "{ min } {}");
}

#[test]
fn locale_negotiation() {
    let ui = ui();
    let de = Locale::DE;
    let en = Locale::EN;
    // Query beats cookie beats header.
    assert_eq!(ui.negotiate_locale(Some("de"), Some("en"), Some("en")), de);
    assert_eq!(ui.negotiate_locale(Some("en"), Some("de"), Some("de")), en);
    assert_eq!(ui.negotiate_locale(None, Some("de"), Some("en")), de);
    assert_eq!(ui.negotiate_locale(None, Some("en"), Some("de")), en);
    // An unsupported value falls through to the next source.
    assert_eq!(ui.negotiate_locale(Some("fr"), Some("de"), None), de);
    assert_eq!(ui.negotiate_locale(Some("<x>"), None, Some("de")), de);
    // Accept-Language with q-values.
    assert_eq!(
        ui.negotiate_locale(None, None, Some("de-CH, de;q=0.9, en;q=0.8")),
        de
    );
    assert_eq!(
        ui.negotiate_locale(None, None, Some("en;q=0.5, de;q=0.8")),
        de
    );
    assert_eq!(
        ui.negotiate_locale(None, None, Some("fr-FR, fr;q=0.9, de;q=0.7, en;q=0.3")),
        de
    );
    assert_eq!(
        ui.negotiate_locale(None, None, Some("de;q=0, en;q=0.1")),
        en
    );
    assert_eq!(
        ui.negotiate_locale(None, None, Some("de;q=0.5, en;q=0.5")),
        de,
        "ties keep header order"
    );
    assert_eq!(
        ui.negotiate_locale(None, None, Some("de;q=2, en;q=0.1")),
        en,
        "invalid q ignored"
    );
    assert_eq!(ui.negotiate_locale(None, None, Some("DE-at")), de);
    // Unknown or absent → English.
    assert_eq!(
        ui.negotiate_locale(None, None, Some("fr, es;q=0.5, *;q=0.1")),
        en
    );
    assert_eq!(ui.negotiate_locale(None, None, Some("")), en);
    assert_eq!(ui.negotiate_locale(None, None, None), en);
    assert_eq!(
        ui.negotiate_locale(Some(""), Some("xx"), Some(",;;q=,")),
        en
    );
}

#[test]
fn override_directory_replaces_a_template_for_that_theme_only() {
    let dir = override_dir(&[(
        "sign_in.html",
        "{% extends \"layout.html\" %}{% block title %}Custom{% endblock %}\
         {% block content %}<p class=\"custom\">{{ t(\"sign_in.submit\") }} {{ email }}</p>{% endblock %}",
    )]);
    let ui = ui();
    let page = json!({ "email": SCRIPT, "registration_enabled": false });

    let mut tenant = common(Locale::DE);
    tenant.theme.template_dir = Some(dir.path().to_path_buf());
    let html = ui.render("sign_in.html", &tenant, &page).unwrap();
    assert!(
        html.contains("<p class=\"custom\">Anmelden &lt;script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("<html lang=\"de\">"),
        "the built-in layout is used"
    );
    // Templates the directory does not have stay built in.
    let other = ui
        .render(
            "message.html",
            &tenant,
            &json!({"title": "verify.done.title", "message": "verify.done.message"}),
        )
        .unwrap();
    assert!(other.contains("E-Mail-Adresse bestätigt"));

    let html = ui
        .render("sign_in.html", &common(Locale::DE), &page)
        .unwrap();
    assert!(!html.contains("class=\"custom\""));
    assert!(html.contains("<label for=\"email\">E-Mail</label>"));

    // An overridden layout applies to the built-in pages of that tenant.
    let layout_dir = override_dir(&[(
        "layout.html",
        "<!doctype html><html lang=\"{{ lang }}\"><body class=\"tenant-layout\">{% block content %}{% endblock %}</body></html>",
    )]);
    let mut tenant = common(Locale::EN);
    tenant.theme.template_dir = Some(layout_dir.path().to_path_buf());
    let html = ui.render("sign_in.html", &tenant, &page).unwrap();
    assert!(html.contains("class=\"tenant-layout\""));
    assert!(html.contains("<label for=\"email\">Email</label>"));

    // Overrides cannot reach outside their directory.
    std::fs::write(
        dir.path().join("message.html"),
        "{% include \"../secret.html\" %}",
    )
    .unwrap();
    // Overrides cannot reach outside their directory: the include fails, and the
    // page is the built-in one.
    let mut tenant = common(Locale::EN);
    tenant.theme.template_dir = Some(dir.path().to_path_buf());
    let html = ui
        .render(
            "message.html",
            &tenant,
            &json!({"title": "verify.done.title", "message": "verify.done.message"}),
        )
        .unwrap();
    assert!(html.contains("<h1 id=\"page-heading\">"), "{html}");
}

#[test]
fn a_broken_override_falls_back_to_the_built_in_template_and_is_reported_once() {
    // An unclosed block and, in another file, a misspelt variable.
    let dir = override_dir(&[
        (
            "sign_in.html",
            "{% extends \"layout.html\" %}{% block content %}",
        ),
        (
            "message.html",
            "{% extends \"layout.html\" %}{% block content %}{{ titel }}{% endblock %}",
        ),
    ]);
    let ui = ui();
    let mut tenant = common(Locale::EN);
    tenant.theme.template_dir = Some(dir.path().to_path_buf());
    let page = json!({ "email": "", "registration_enabled": false });
    let html = ui.render("sign_in.html", &tenant, &page).unwrap();
    assert!(
        html.contains("<label for=\"email\">Email</label>"),
        "{html}"
    );
    let html = ui
        .render(
            "message.html",
            &tenant,
            &json!({"title": "verify.done.title", "message": "verify.done.message"}),
        )
        .unwrap();
    assert!(html.contains("<h1"), "{html}");
    // The same problem is logged the first time only.
    assert!(ui.first_time("a problem"));
    assert!(!ui.first_time("a problem"));
    assert!(ui.first_time("another problem"));
}

#[test]
fn one_bad_theme_field_leaves_the_rest_of_the_theme() {
    let settings = gatehouse_core::tenant_settings::TenantSettings::read(
        json!({"theme": {
            "display_name": "Acme",
            "primary_colour": "#0a7",
            "text_color": "red",
            "background_color": "#111827",
        }})
        .as_object()
        .unwrap(),
    );
    let (theme, problems) = ThemeSettings::read_lenient(&settings);
    assert_eq!(theme.display_name.as_deref(), Some("Acme"));
    assert_eq!(theme.background_color, "#111827");
    assert_eq!(theme.text_color, DEFAULT_TEXT_COLOR);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("primary_colour")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("text_color")),
        "{problems:?}"
    );
    // The theme the pages get is the same, and each problem is logged once.
    let ui = ui();
    assert_eq!(ui.tenant_theme("acme", &settings), theme);
    for problem in &problems {
        assert!(
            !ui.first_time(&format!("theme:acme:{problem}")),
            "{problem} not remembered"
        );
    }
}

#[test]
fn theme_settings_from_tenant_settings() {
    let settings = |value: Value| {
        gatehouse_core::tenant_settings::TenantSettings::read(value.as_object().unwrap())
    };
    assert_eq!(
        ThemeSettings::from_tenant_settings(&settings(json!({}))).unwrap(),
        ThemeSettings::default()
    );
    assert_eq!(
        ThemeSettings::from_tenant_settings(&settings(json!({"theme": null}))).unwrap(),
        ThemeSettings::default()
    );
    let theme = ThemeSettings::from_tenant_settings(&settings(json!({
        "theme": {
            "display_name": "Acme",
            "logo_url": "/logo.svg",
            "primary_color": "#0a7",
            "custom_css": ".gh-card { border-width: 2px; }"
        }
    })))
    .unwrap();
    assert_eq!(theme.primary_color, "#0a7");
    assert_eq!(theme.background_color, DEFAULT_BACKGROUND_COLOR);
    assert_eq!(theme.logo_url.as_deref(), Some("/logo.svg"));

    for bad in [
        json!({"theme": {"primary_color": "red"}}),
        json!({"theme": {"primary_color": "#12345"}}),
        json!({"theme": {"text_color": "#fff;} body{display:none"}}),
        json!({"theme": {"background_color": "#ggg"}}),
        json!({"theme": {"background_color": ""}}),
        json!({"theme": {"logo_url": "javascript:alert(1)"}}),
        json!({"theme": {"logo_url": "http://example.com/logo.png"}}),
        json!({"theme": {"logo_url": "//evil.example/logo.png"}}),
        json!({"theme": {"logo_url": "https://"}}),
        json!({"theme": {"logo_url": "/logo.png\" onerror=\"x"}}),
        json!({"theme": {"template_dir": "relative/dir"}}),
        json!({"theme": {"template_dir": "/srv/../etc"}}),
        json!({"theme": {"display_name": ""}}),
        json!({"theme": {"primary_colour": "#fff"}}),
        json!({"theme": "blue"}),
    ] {
        assert!(
            matches!(
                ThemeSettings::from_tenant_settings(&settings(bad.clone())),
                Err(UiError::InvalidTheme(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn theme_css_contains_the_colours_and_custom_css() {
    let ui = ui();
    let theme = ThemeSettings {
        primary_color: "#FFCC00".into(),
        background_color: "#101820".into(),
        text_color: "#f5f5f5".into(),
        custom_css: Some(".gh-card { border-radius: 0; }".into()),
        ..ThemeSettings::default()
    };
    theme.validate().unwrap();
    let css = ui.theme_css(&theme);
    assert!(css.contains("--gh-primary: #ffcc00;"), "{css}");
    assert!(css.contains("--gh-bg: #101820;"));
    assert!(css.contains("--gh-text: #f5f5f5;"));
    assert!(
        css.contains("--gh-on-primary: #000000;"),
        "dark text on a light primary"
    );
    assert!(css.contains(".gh-card { border-radius: 0; }"));

    let css = ui.theme_css(&ThemeSettings::default());
    assert!(css.contains(&format!("--gh-primary: {DEFAULT_PRIMARY_COLOR};")));
    assert!(css.contains("--gh-on-primary: #ffffff;"));

    // Unvalidated input never reaches the stylesheet.
    let hostile = ThemeSettings {
        primary_color: "red; } body { display: none".into(),
        ..ThemeSettings::default()
    };
    let css = ui.theme_css(&hostile);
    assert!(!css.contains("display: none"));
    assert!(css.contains(&format!("--gh-primary: {DEFAULT_PRIMARY_COLOR};")));
}

#[test]
fn default_colours_meet_wcag_aa() {
    let white = [255, 255, 255];
    let primary = parse_color(DEFAULT_PRIMARY_COLOR).unwrap();
    let background = parse_color(DEFAULT_BACKGROUND_COLOR).unwrap();
    let text = parse_color(DEFAULT_TEXT_COLOR).unwrap();
    assert!(
        contrast_ratio(primary, white) >= 4.5,
        "button text on primary"
    );
    assert!(
        contrast_ratio(primary, background) >= 4.5,
        "links on the background"
    );
    assert!(
        contrast_ratio(text, background) >= 4.5,
        "text on the background"
    );
    // The fixed status colours in style.css, against white.
    for color in ["#b91c1c", "#15803d", "#a16207"] {
        assert!(
            contrast_ratio(parse_color(color).unwrap(), white) >= 4.5,
            "{color}"
        );
    }
    // Sanity of the formula: black on white is 21:1, a colour on itself 1:1.
    assert!((contrast_ratio([0, 0, 0], white) - 21.0).abs() < 1e-9);
    assert!((contrast_ratio(primary, primary) - 1.0).abs() < 1e-9);
    assert_eq!(parse_color("#fff"), Some(white));
    assert_eq!(parse_color("#1D4ED8"), Some([0x1d, 0x4e, 0xd8]));
}

#[test]
fn assets_are_served_and_traversal_refused() {
    let ui = ui();
    let css = ui.asset("themes/default/style.css").unwrap();
    assert!(css.content_type.starts_with("text/css"));
    assert!(
        std::str::from_utf8(css.bytes)
            .unwrap()
            .contains("--gh-primary")
    );
    assert_eq!(ui.asset("/themes/default/style.css"), Some(css));
    assert!(
        ui.asset("themes/default/favicon.svg")
            .unwrap()
            .content_type
            .starts_with("image/svg+xml")
    );
    for bad in [
        "../Cargo.toml",
        "themes/default/../../../Cargo.toml",
        "themes/default/./style.css",
        "themes/default/missing.css",
        "",
        "themes/default/",
    ] {
        assert_eq!(ui.asset(bad), None, "{bad}");
    }
    // The layout links only files that exist.
    for path in assets::paths() {
        assert!(ui.asset(path).is_some());
    }
    let layout = BUILTIN
        .iter()
        .find(|(name, _)| *name == "layout.html")
        .unwrap()
        .1;
    for linked in layout.split("href=\"/static/").skip(1) {
        let path = &linked[..linked.find('"').unwrap()];
        assert!(
            ui.asset(path).is_some(),
            "layout links missing asset {path}"
        );
    }
}

#[test]
fn ui_is_cheap_to_clone_and_debuggable() {
    let ui = ui();
    let clone = ui.clone();
    assert!(Arc::ptr_eq(&ui.inner, &clone.inner));
    assert!(format!("{ui:?}").contains("Ui"));
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Ui>();
}

#[test]
fn html_escaping_covers_the_five_special_characters() {
    let mut out = String::new();
    templates::escape_html(&mut out, "a&b<c>d\"e'f/g ü").unwrap();
    assert_eq!(out, "a&amp;b&lt;c&gt;d&quot;e&#39;f/g ü");
}

/// The first fenced block of `language` in docs/theming.md.
fn docs_block(language: &str) -> &'static str {
    let docs = include_str!("../../../../docs/theming.md");
    let fence = format!("```{language}\n");
    let start = docs.find(&fence).unwrap() + fence.len();
    let end = start + docs[start..].find("```").unwrap();
    &docs[start..end]
}

#[test]
fn the_theming_docs_examples_are_true() {
    let settings: Value = serde_json::from_str(docs_block("json")).unwrap();
    let theme = ThemeSettings::from_tenant_settings(
        &gatehouse_core::tenant_settings::TenantSettings::from_map(settings.as_object().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ui().theme_css(&theme), docs_block("css"));

    let dir = override_dir(&[("sign_in.html", docs_block("jinja"))]);
    let mut common = common(Locale::EN);
    common.theme.template_dir = Some(dir.path().to_path_buf());
    let page = json!({ "email": "a@example.com", "error": "signin.error.invalid",
                       "return_to": "/t/acme/authorize?client_id=app", "registration_enabled": true });
    let html = ui().render("sign_in.html", &common, &page).unwrap();
    // The example itself rendered, not the built-in fallback.
    assert!(html.contains("gh-card acme-sign-in"), "{html}");
    assert!(html.contains("<label for=\"password\">Password</label>"));
    assert!(html.contains("aria-describedby=\"sign-in-error\""));
    assert!(html.contains("value=\"csrf-token-123\""));
    // Following the example keeps the way back to the application and every link.
    assert!(html.contains(
        "<input type=\"hidden\" name=\"return_to\" value=\"/t/acme/authorize?client_id=app\">"
    ));
    assert!(
        html.contains(
            "data-passkey=\"sign-in\" data-return-to=\"/t/acme/authorize?client_id=app\""
        )
    );
    assert!(html.contains("/static/themes/default/passkeys.js"));
    assert!(html.contains("href=\"/t/acme/recover/request\""));
    assert!(html.contains("href=\"/t/acme/signup\""));
    let unverified = json!({ "email": "a@example.com", "error": "signin.error.unverified" });
    let html = ui().render("sign_in.html", &common, &unverified).unwrap();
    assert!(html.contains("action=\"/t/acme/verify/resend\""));
}

#[test]
fn passkey_controls_are_hidden_until_the_script_runs() {
    let ui = ui();
    let sample = |name: &str| {
        samples()
            .into_iter()
            .find(|(template, _)| *template == name)
            .unwrap()
            .1
    };
    let script = "<script nonce=\"nonce-abc\" src=\"/static/themes/default/passkeys.js\" defer";

    let html = ui
        .render("sign_in.html", &common(Locale::EN), &sample("sign_in.html"))
        .unwrap();
    assert!(html.contains("autocomplete=\"username webauthn\""));
    assert!(html.contains("data-passkey=\"sign-in\" data-return-to=\"\" hidden>"));
    assert!(html.contains(">Sign in with a passkey</button>"));
    assert!(html.contains(script));
    assert!(html.contains("data-csrf-token=\"csrf-token-123\""));
    assert!(html.contains("data-base-path=\"/t/acme\""));

    let mut page = sample("second_factor.html");
    let html = ui
        .render("second_factor.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains(">Use a passkey</button>") && html.contains(script));
    page["passkeys"] = json!(0);
    let html = ui
        .render("second_factor.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(!html.contains("Use a passkey") && !html.contains("passkeys.js"));

    let html = ui
        .render(
            "security.html",
            &common(Locale::DE),
            &sample("security.html"),
        )
        .unwrap();
    assert!(html.contains("action=\"/t/acme/account/passkeys/p-1/remove\""));
    assert!(html.contains("action=\"/t/acme/account/passkeys/p-2/remove\""));
    assert!(html.contains("<form class=\"gh-form\" data-passkey=\"register\" hidden>"));
    assert!(html.contains("<label for=\"passkey-name\">Name für den neuen Passkey</label>"));
    assert!(html.contains(">Nie</dd>") && html.contains(">Synchronisiert</span>"));
    assert!(html.contains(script));
}

#[test]
fn apps_page_has_a_withdraw_form_per_purpose_and_a_revoke_form_per_app() {
    let ui = ui();
    let (_, page) = samples()
        .into_iter()
        .find(|(name, _)| *name == "apps.html")
        .unwrap();
    let html = ui.render("apps.html", &common(Locale::EN), &page).unwrap();
    assert_eq!(
        html.matches("action=\"/t/acme/account/apps/withdraw\"")
            .count(),
        1
    );
    assert_eq!(
        html.matches("action=\"/t/acme/account/apps/revoke\"")
            .count(),
        2
    );
    assert!(html.contains("href=\"/t/acme/account/apps/receipt\""));
    assert!(html.contains("<input type=\"hidden\" name=\"client_id\" value=\"blog\">"));
    assert!(html.contains(">Your consent</dd>") && html.contains("Changed since you agreed"));
    let empty = ui
        .render("apps.html", &common(Locale::DE), &json!({ "apps": [] }))
        .unwrap();
    assert!(empty.contains("Keine App hat Zugriff auf Ihr Konto."));
}

#[test]
fn the_language_switcher_keeps_the_page_and_is_left_out_after_a_form_post() {
    let ui = ui();
    let page = json!({"email": "", "error": null, "notice": null, "registration_enabled": false,
                      "return_to": "/t/acme/authorize?client_id=app&scope=openid"});
    let mut common = common(Locale::EN);
    common.reopen_query = Some("return_to=%2Ft%2Facme%2Fauthorize%3Fclient_id%3Dapp".into());
    let html = ui.render("sign_in.html", &common, &page).unwrap();
    assert!(
        html.contains(
            "href=\"/t/acme/signin?return_to=%2Ft%2Facme%2Fauthorize%3Fclient_id%3Dapp&amp;lang=de\""
        ),
        "{html}"
    );
    assert!(html.contains("aria-current=\"true\">English</a>"));

    common.reopen_query = Some(String::new());
    let html = ui.render("sign_in.html", &common, &page).unwrap();
    assert!(html.contains("href=\"/t/acme/signin?lang=de\""), "{html}");

    // The answer to a form post (recovery codes, a TOTP secret) cannot be opened again.
    common.reopen_query = None;
    let html = ui.render("sign_in.html", &common, &page).unwrap();
    assert!(!html.contains("lang=de"), "{html}");
    assert!(!html.contains("class=\"gh-lang\""));
}

#[test]
fn consent_describes_scopes_in_the_page_language_and_keeps_the_buttons_apart() {
    let ui = ui();
    let page = json!({
        "client_name": "Shop",
        "scopes": [
            {"name": "openid", "key": "scope.openid"},
            {"name": "email", "key": "scope.email"},
            {"name": "offline_access", "key": "scope.offline_access"},
            {"name": "loyalty", "key": null},
        ],
        "request": "client_id=shop",
        "purposes": [],
        "purposes_shown": "",
    });
    let html = ui
        .render("consent.html", &common(Locale::DE), &page)
        .unwrap();
    assert!(html.contains("<li>Ihre E-Mail-Adresse</li>"), "{html}");
    assert!(html.contains("<li>Zugriff, auch wenn Sie die Anwendung gerade nicht nutzen"));
    assert!(!html.contains("offline_access"), "a raw scope name shows");
    // A tenant's own scope without a description is shown by name.
    assert!(html.contains("<code>loyalty</code>"));
    assert!(html.contains("class=\"gh-form gh-actions\""));
    assert!(
        html.contains("value=\"deny\" class=\"gh-button gh-button--secondary\">Ablehnen</button>")
    );
    let html = ui
        .render("consent.html", &common(Locale::EN), &page)
        .unwrap();
    assert!(html.contains("<li>Your email address</li>"));

    let logout = ui
        .render(
            "logout.html",
            &common(Locale::EN),
            &json!({"client_name": null, "request": "x"}),
        )
        .unwrap();
    assert!(logout.contains("value=\"stay\" class=\"gh-button gh-button--secondary\""));
}

#[test]
fn every_standard_scope_has_a_description() {
    let ui = ui();
    for scope in [
        "openid",
        "profile",
        "email",
        "phone",
        "address",
        "offline_access",
    ] {
        assert!(ui.has_message(&format!("scope.{scope}")), "{scope}");
    }
}

#[test]
fn the_error_page_names_the_request() {
    let html = ui()
        .render(
            "error.html",
            &common(Locale::EN),
            &json!({"status": 404, "title": "error.not_found.title",
                    "message": "error.not_found.message", "request_id": "req-123"}),
        )
        .unwrap();
    assert!(html.contains("Page not found"));
    assert!(
        html.contains("id=\"request-id\">Request id: req-123</p>"),
        "{html}"
    );
}

#[test]
fn a_tenant_words_its_own_scopes_and_rewords_built_in_ones_per_language() {
    let settings = gatehouse_core::tenant_settings::TenantSettings::read(
        json!({"theme": {"messages": {
            "en": {"scope.loyalty": "Your loyalty points <b>", "scope.email": "Where we write to you"},
            "de": {"scope.loyalty": "Ihre Treuepunkte"},
        }}})
        .as_object()
        .unwrap(),
    );
    let (theme, problems) = ThemeSettings::read_lenient(&settings);
    assert!(problems.is_empty(), "{problems:?}");
    let ui = ui();
    assert!(ui.has_tenant_message(&theme, "scope.loyalty"));
    assert!(!ui.has_tenant_message(&ThemeSettings::default(), "scope.loyalty"));
    let page = json!({
        "client_name": "Shop",
        "scopes": [{"name": "email", "key": "scope.email"}, {"name": "loyalty", "key": "scope.loyalty"}],
        "request": "client_id=shop", "purposes": [], "purposes_shown": "",
    });
    let render = |locale: Locale| {
        let mut common = common(locale);
        common.theme = theme.clone();
        ui.render("consent.html", &common, &page).unwrap()
    };
    let english = render(Locale::EN);
    assert!(
        english.contains("<li>Where we write to you</li>"),
        "{english}"
    );
    assert!(
        english.contains("<li>Your loyalty points &lt;b&gt;</li>"),
        "escaped"
    );
    let german = render(Locale::DE);
    assert!(german.contains("<li>Ihre Treuepunkte</li>"), "{german}");
    // Not reworded in German: the catalogue's German, not the tenant's English.
    assert!(german.contains("<li>Ihre E-Mail-Adresse</li>"), "{german}");

    // Unknown languages, odd keys and control characters are refused, field by field.
    for bad in [
        json!({"xx": {"scope.a": "A"}}),
        json!({"en": {"scope a": "A"}}),
        json!({"en": {"scope.a": "line\nbreak"}}),
    ] {
        let settings = gatehouse_core::tenant_settings::TenantSettings::read(
            json!({"theme": {"messages": bad, "display_name": "Acme"}})
                .as_object()
                .unwrap(),
        );
        let (theme, problems) = ThemeSettings::read_lenient(&settings);
        assert_eq!(problems.len(), 1, "{bad}");
        assert!(theme.messages.is_empty(), "{bad}");
        assert_eq!(theme.display_name.as_deref(), Some("Acme"));
    }
}

#[test]
fn set_up_marks_only_the_field_at_fault() {
    let ui = ui();
    let render = |page: Value| ui.render("setup.html", &common(Locale::EN), &page).unwrap();
    let html = render(
        json!({"email": "x", "error": "error.password_too_short", "error_field": "password",
                             "password_suggestions": ["Add another word or two."], "min_length": 12}),
    );
    assert!(
        html.contains("aria-describedby=\"password-hint password-error password-suggestions\""),
        "{html}"
    );
    assert!(!html.contains("setup_secret-error"));
    let field = html.find("id=\"password\"").unwrap();
    assert!(
        field < html.find("id=\"password-suggestions\"").unwrap(),
        "suggestions by the field"
    );
    let html = render(
        json!({"email": "x", "error": "signup.error.email", "error_field": "email",
                             "password_suggestions": [], "min_length": 12}),
    );
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"email-error\""));
    assert!(!html.contains("setup_secret-error") && !html.contains("password-error"));
}
