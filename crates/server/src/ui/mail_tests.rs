//! Mail rendering: every mail in every language, theme overrides and their fallback,
//! and the `MailRenderer` face authn sees.

use chrono::{TimeZone, Utc};
use gatehouse_authn::{Mail, MailKind, MailRenderer, SignInChange};
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::tenants::Tenant;
use serde_json::json;

use super::i18n::Catalogues;
use super::mail::{Block, blocks};
use super::templates::BUILTIN;
use super::tests::override_dir;
use super::*;

const LINK: &str = "https://id.example.test/t/acme/recover?token=abc123";
const CANCEL: &str = "https://id.example.test/t/acme/recover/cancel?token=def456";

fn ui() -> Ui {
    Ui::embedded().unwrap()
}

/// One of each mail, with the values that must appear in it.
fn every_mail() -> Vec<(MailKind, Vec<&'static str>)> {
    let ready = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 0).unwrap();
    let expires = Utc.with_ymd_and_hms(2030, 1, 9, 3, 4, 0).unwrap();
    vec![
        (MailKind::VerifyEmail { link: LINK.into() }, vec![LINK]),
        (
            MailKind::AlreadyRegistered {
                sign_in_link: LINK.into(),
            },
            vec![LINK],
        ),
        (MailKind::LookAlikeAddress, vec![]),
        (MailKind::VerifyNewEmail { link: LINK.into() }, vec![LINK]),
        (
            MailKind::ConfirmLink {
                partner: "Partner SSO".into(),
                link: LINK.into(),
                valid_minutes: 30,
            },
            vec!["Partner SSO", LINK, "30"],
        ),
        (
            MailKind::EmailChangeRequested {
                new_email: "hana@new.example".into(),
                sign_in_link: LINK.into(),
            },
            vec!["hana@new.example", LINK],
        ),
        (
            MailKind::PasswordReset {
                link: LINK.into(),
                valid_minutes: 15,
            },
            vec![LINK, "15"],
        ),
        (
            MailKind::Invitation {
                link: LINK.into(),
                valid_days: 7,
            },
            vec![LINK, "7"],
        ),
        (
            MailKind::AdminReset {
                link: LINK.into(),
                valid_minutes: 15,
            },
            vec![LINK, "15"],
        ),
        (
            MailKind::FactorRecovery {
                cancel_link: CANCEL.into(),
                complete_link: LINK.into(),
                ready_at: ready,
                expires_at: expires,
            },
            vec![CANCEL, LINK, "2030-01-02 03:04 UTC", "2030-01-09 03:04 UTC"],
        ),
        (
            MailKind::SignInChanged {
                change: SignInChange::PasswordReset,
            },
            vec![],
        ),
        (
            MailKind::SignInChanged {
                change: SignInChange::FactorsRecovered,
            },
            vec![],
        ),
    ]
}

fn tenant(settings: serde_json::Value) -> Tenant {
    Tenant {
        id: TenantId::new(),
        slug: "acme".into(),
        display_name: "Acme".into(),
        settings: settings.as_object().cloned().unwrap_or_default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 1,
        disabled_at: None,
    }
}

/// The mail `kind` as Acme sends it with the built-in look.
fn render_plain(ui: &Ui, locale: &Locale, kind: &MailKind) -> Result<RenderedMail, UiError> {
    ui.render_mail("Acme", &ThemeSettings::default(), locale, kind)
}

fn mail(locale: Option<&str>, kind: MailKind) -> Mail {
    Mail {
        to: "ada@example.com".into(),
        locale: locale.map(str::to_owned),
        kind,
    }
}

/// One part of a rendered mail has no template syntax or message key left in it
/// (`leftovers`) and shows every value it was given.
fn assert_filled(context: &str, part: &str, leftovers: &[&str], values: &[&str]) {
    for leftover in leftovers {
        assert!(
            !part.contains(leftover),
            "{context}: {leftover:?} in\n{part}"
        );
    }
    for value in values {
        assert!(
            part.contains(value),
            "{context}: {value} missing from\n{part}"
        );
    }
}

#[test]
fn every_mail_renders_in_every_locale_with_every_placeholder_filled() {
    let ui = ui();
    let catalogues = Catalogues::parse(CATALOGUES).unwrap();
    for (kind, values) in every_mail() {
        let mut bodies = Vec::new();
        for locale in Locale::ALL {
            let context = format!("{kind:?} in {}", locale.code);
            let rendered =
                render_plain(&ui, locale, &kind).unwrap_or_else(|e| panic!("{context}: {e}"));
            let subject_key = format!("mail.{}.subject", kind.name());
            assert!(
                catalogues.lookup(locale, &subject_key).is_some(),
                "{context}: no {subject_key}"
            );
            assert!(!rendered.subject.contains("mail."), "{context}");
            assert!(!rendered.subject.chars().any(char::is_control), "{context}");
            let body = &rendered.text_body;
            assert_filled(&context, body, &["{{", "}}", "{%", "{", "mail."], &values);
            // Links stand on a line of their own (or at its end): mail clients and
            // tests read them up to the next whitespace.
            for link in values.iter().filter(|v| v.starts_with("https://")) {
                assert!(
                    body.lines().any(|line| line.trim_end().ends_with(link)),
                    "{context}: {link} runs into text in\n{body}"
                );
            }
            assert!(body.len() > 40, "{context}: {body}");
            // The HTML part says the same, with each link as a link.
            let html = &rendered.html_body;
            assert!(
                html.contains(&format!(r#"lang="{}""#, locale.code)),
                "{context}"
            );
            assert_filled(&context, html, &["{{", "}}", "{%", "mail."], &values);
            for link in values.iter().filter(|v| v.starts_with("https://")) {
                assert!(
                    html.contains(&format!(r#"href="{link}""#)),
                    "{context}: {link} is no link in\n{html}"
                );
            }
            bodies.push((rendered.subject, body.clone()));
        }
        assert_ne!(bodies[0], bodies[1], "{kind:?}: German equals English");
    }
}

#[test]
fn every_mail_has_a_builtin_template() {
    for (kind, _) in every_mail() {
        let name = format!("mail_{}.txt", kind.name());
        assert!(
            BUILTIN.iter().any(|(builtin, _)| *builtin == name),
            "{name} is not built in"
        );
    }
}

#[test]
fn english_mail_keeps_its_words() {
    let ui = ui();
    let reset = render_plain(
        &ui,
        &Locale::EN,
        &MailKind::PasswordReset {
            link: LINK.into(),
            valid_minutes: 15,
        },
    )
    .unwrap();
    assert_eq!(reset.subject, "Reset your password");
    assert_eq!(
        reset.text_body,
        format!(
            "Someone, perhaps you, asked to reset the password of your account.\n\n\
             Choose a new password here within 15 minutes:\n\n{LINK}\n\n\
             The link works once. If you did not ask for it, ignore this message: \
             your password stays as it is."
        )
    );
    let german = render_plain(
        &ui,
        &Locale::DE,
        &MailKind::SignInChanged {
            change: SignInChange::FactorsRecovered,
        },
    )
    .unwrap();
    assert_eq!(german.subject, "Die Anmeldung Ihres Kontos wurde geändert");
    assert!(german.text_body.contains("zweiten Faktoren"));
}

#[test]
fn a_theme_override_is_used_and_a_broken_one_falls_back() {
    let dir = override_dir(&[
        (
            "mail_verify_email.txt",
            "Hello from {{ brand_name }}! {{ t(\"mail.verify_email.open_link\") }}\n{{ link }}",
        ),
        (
            "mail_password_reset.txt",
            "{{ t(\"mail.password_reset.body\") }} {{ no_such_variable }}",
        ),
        ("mail_admin_reset.txt", "{% if %}"),
    ]);
    let ui = ui();
    let theme = ThemeSettings {
        display_name: Some("Acme Login".into()),
        template_dir: Some(dir.path().to_path_buf()),
        ..ThemeSettings::default()
    };

    let verify = MailKind::VerifyEmail { link: LINK.into() };
    let custom = ui
        .render_mail("Acme", &theme, &Locale::DE, &verify)
        .unwrap();
    assert_eq!(
        custom.text_body,
        format!(
            "Hello from Acme Login! Bestätigen Sie Ihre E-Mail-Adresse, indem Sie diesen Link öffnen:\n{LINK}"
        )
    );
    assert_eq!(custom.subject, "Bestätigen Sie Ihre E-Mail-Adresse");
    // Other tenants keep the built-in template.
    let builtin = render_plain(&ui, &Locale::DE, &verify).unwrap();
    assert!(builtin.text_body.starts_with("Willkommen!"));

    // An undefined variable and a syntax error: the built-in template instead.
    for kind in [
        MailKind::PasswordReset {
            link: LINK.into(),
            valid_minutes: 15,
        },
        MailKind::AdminReset {
            link: LINK.into(),
            valid_minutes: 15,
        },
    ] {
        let fallback = ui.render_mail("Acme", &theme, &Locale::EN, &kind).unwrap();
        let expected = render_plain(&ui, &Locale::EN, &kind).unwrap();
        assert_eq!(fallback.text_body, expected.text_body, "{kind:?}");
    }
}

#[test]
fn the_renderer_picks_the_mails_language_else_english() {
    let ui = ui();
    let acme = tenant(json!({}));
    let verify = || MailKind::VerifyEmail { link: LINK.into() };
    let german = MailRenderer::render(&ui, &acme, &mail(Some("de-CH"), verify())).unwrap();
    assert_eq!(german.to, "ada@example.com");
    assert_eq!(german.subject, "Bestätigen Sie Ihre E-Mail-Adresse");
    let html = german.html_body.as_deref().unwrap();
    assert!(html.contains(r#"<html lang="de">"#), "{html}");
    assert!(html.contains(&format!(r#"<a href="{LINK}""#)), "{html}");
    assert!(
        html.contains("Link öffnen") && html.contains("Willkommen!"),
        "{html}"
    );
    assert!(html.contains("Gesendet von Acme."), "{html}");
    assert_eq!(german.sender.name.as_deref(), Some("Acme"));
    assert_eq!(german.sender.address, None, "the configured address");
    for locale in [None, Some("fr"), Some("not a tag")] {
        let english = MailRenderer::render(&ui, &acme, &mail(locale, verify())).unwrap();
        assert_eq!(english.subject, "Confirm your email address", "{locale:?}");
        assert!(english.text_body.contains(LINK));
    }
    // Debug output of what authn hands over never shows a link.
    assert!(!format!("{:?}", mail(None, verify())).contains("token"));
}

#[test]
fn the_renderer_uses_the_tenants_theme_and_survives_a_bad_one() {
    let dir = override_dir(&[("mail_look_alike_address.txt", "Custom for {{ brand_name }}")]);
    let ui = ui();
    let themed = tenant(json!({ "theme": { "template_dir": dir.path() } }));
    let rendered =
        MailRenderer::render(&ui, &themed, &mail(None, MailKind::LookAlikeAddress)).unwrap();
    assert_eq!(rendered.text_body, "Custom for Acme");

    let broken = tenant(json!({ "theme": { "primary_color": "red" } }));
    let rendered =
        MailRenderer::render(&ui, &broken, &mail(None, MailKind::LookAlikeAddress)).unwrap();
    assert!(rendered.text_body.starts_with("Someone, perhaps you"));
}

#[test]
fn the_html_part_escapes_what_it_shows_and_links_what_is_a_link() {
    let ui = ui();
    let hostile = "<script>alert(1)</script>\"@evil.example";
    let rendered = ui
        .render_mail(
            "Acme & <Co>",
            &ThemeSettings::default(),
            &Locale::EN,
            &MailKind::EmailChangeRequested {
                new_email: hostile.into(),
                sign_in_link: LINK.into(),
            },
        )
        .unwrap();
    let html = &rendered.html_body;
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;@evil.example"),
        "{html}"
    );
    assert!(html.contains("Acme &amp; &lt;Co&gt;"), "{html}");
    // The link inside a sentence is a link, and the sentence's text stays.
    assert!(
        html.contains(&format!(r#"<a href="{LINK}" style="#)),
        "{html}"
    );
    assert!(
        rendered.text_body.contains(hostile),
        "the text part is text"
    );
}

#[test]
fn paragraphs_and_links_are_read_off_the_text() {
    let blocks = blocks(
        "Hello,\r\nthere.\n\nhttps://a.test/x?token=1\n\nSee https://b.test/y. Or not.\n\n\n",
    );
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        blocks[1],
        Block::Button {
            href: "https://a.test/x?token=1".into()
        }
    );
    let Block::Paragraph { lines } = &blocks[2] else {
        panic!("{blocks:?}")
    };
    let hrefs: Vec<_> = lines[0].iter().map(|s| s.href.as_deref()).collect();
    assert_eq!(hrefs, [None, Some("https://b.test/y"), None]);
    assert_eq!(lines[0][2].text, ". Or not.");
    let Block::Paragraph { lines } = &blocks[0] else {
        panic!("{blocks:?}")
    };
    assert_eq!(lines.len(), 2, "line breaks stay");
}

#[test]
fn mail_comes_from_the_tenant() {
    let ui = ui();
    let verify = || mail(None, MailKind::VerifyEmail { link: LINK.into() });
    let named = tenant(json!({
        "mail": { "from": "login@acme.example", "sender_name": "Acme Login" },
        "theme": { "display_name": "Acme Portal" },
    }));
    let rendered = MailRenderer::render(&ui, &named, &verify()).unwrap();
    assert_eq!(rendered.sender.name.as_deref(), Some("Acme Login"));
    assert_eq!(
        rendered.sender.address.as_deref(),
        Some("login@acme.example")
    );
    // Without a sender name, the theme's display name, else the tenant's.
    let themed = tenant(json!({ "theme": { "display_name": "Acme Portal" } }));
    let rendered = MailRenderer::render(&ui, &themed, &verify()).unwrap();
    assert_eq!(rendered.sender.name.as_deref(), Some("Acme Portal"));
    assert!(rendered.html_body.unwrap().contains("Acme Portal"));
}
