//! Mail, rendered like the pages: one text template per mail (`mail_<name>.txt`),
//! its words and subject from the same message catalogues, in the language of the
//! request that caused it, and the tenant's template overrides first. An override
//! that fails to render is logged and the built-in template used, so a broken
//! theme never stops a reset link or a security notice.
//!
//! Every mail is `multipart/alternative`: that text, and an HTML part made from it
//! by one themed layout (`mail.html`, overridable like the rest): its paragraphs,
//! its links as real links (a link on a line of its own as a button), everything
//! escaped by the template engine. One text per mail keeps both parts saying the
//! same, in every language and every override. The sender is the tenant: its
//! `mail.sender_name` (else its display name) and its `mail.from` address, where
//! set (else the configured `mail.from`'s).

use gatehouse_authn::{AuthnError, Mail, MailKind, MailRenderer, OutgoingMail, Sender};
use gatehouse_identity_store::tenants::Tenant;
use minijinja::value::Serde;
use serde_json::{Map, Value, json};

use serde::Serialize;

use super::theme::{best_text_on, parse_color};
use super::{Locale, ThemeSettings, Ui, UiError, templates};

/// The layout of every mail's HTML part.
pub(crate) const HTML_LAYOUT: &str = "mail.html";

/// How times appear in mail: unambiguous in every language, and in UTC since the
/// reader's time zone is unknown.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M UTC";

/// A mail's subject and bodies, before it is addressed.
#[derive(Debug)]
pub struct RenderedMail {
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

/// A paragraph of the text body, for the HTML layout.
#[derive(Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Block {
    /// A link alone in its paragraph: what the mail is for.
    Button {
        href: String,
    },
    Paragraph {
        lines: Vec<Vec<Segment>>,
    },
}

/// Text, or a link (`href` and its text are the same address).
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct Segment {
    pub(crate) text: String,
    pub(crate) href: Option<String>,
}

fn is_link(word: &str) -> bool {
    word.starts_with("https://") || word.starts_with("http://")
}

/// A line cut into text and links; a link runs to the next whitespace, without a
/// sentence's closing punctuation.
fn segments(line: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut text = String::new();
    let mut rest = line;
    while let Some(start) = [rest.find("https://"), rest.find("http://")]
        .into_iter()
        .flatten()
        .min()
    {
        let end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |n| start + n);
        let link = rest[start..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        let end = start + link.len();
        text.push_str(&rest[..start]);
        if !text.is_empty() {
            out.push(Segment {
                text: std::mem::take(&mut text),
                href: None,
            });
        }
        out.push(Segment {
            text: link.to_owned(),
            href: Some(link.to_owned()),
        });
        rest = &rest[end..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Segment { text, href: None });
    }
    out
}

/// The text body's paragraphs (blank-line separated) as blocks.
pub(crate) fn blocks(text: &str) -> Vec<Block> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .map(str::trim)
        .filter(|paragraph| !paragraph.is_empty())
        .map(|paragraph| {
            if is_link(paragraph) && !paragraph.contains(char::is_whitespace) {
                Block::Button {
                    href: paragraph.to_owned(),
                }
            } else {
                Block::Paragraph {
                    lines: paragraph.lines().map(segments).collect(),
                }
            }
        })
        .collect()
}

impl Ui {
    /// Renders `kind` in `locale` for a tenant named `tenant_name` with `theme`.
    pub fn render_mail(
        &self,
        tenant_name: &str,
        theme: &ThemeSettings,
        locale: &Locale,
        kind: &MailKind,
    ) -> Result<RenderedMail, UiError> {
        let theme = theme.sanitized();
        let template = format!("mail_{}.txt", kind.name());
        let mut context = parameters(kind);
        context.insert(templates::LANG_VARIABLE.into(), locale.code.into());
        context.insert("tenant_name".into(), tenant_name.into());
        let brand_name = theme.display_name.as_deref().unwrap_or(tenant_name);
        context.insert("brand_name".into(), brand_name.into());
        let context = minijinja::Value::from(Serde(Value::Object(context)));

        let text_body = self.render_with_fallback(&theme, &template, &context)?;
        let subject = self.translate(locale, &format!("mail.{}.subject", kind.name()));
        let on_primary = parse_color(&theme.primary_color)
            .map(best_text_on)
            .unwrap_or("#ffffff");
        let layout = minijinja::Value::from(Serde(json!({
            (templates::LANG_VARIABLE): locale.code,
            "brand_name": brand_name,
            "subject": subject,
            "blocks": blocks(&text_body),
            "primary_color": theme.primary_color,
            "on_primary": on_primary,
            "background_color": theme.background_color,
            "text_color": theme.text_color,
        })));
        let html_body = self.render_with_fallback(&theme, HTML_LAYOUT, &layout)?;
        Ok(RenderedMail {
            subject,
            text_body,
            html_body,
        })
    }

    /// The theme's template, or the built-in one when an override fails.
    fn render_with_fallback(
        &self,
        theme: &ThemeSettings,
        template: &str,
        context: &minijinja::Value,
    ) -> Result<String, UiError> {
        let render = |env: &minijinja::Environment<'static>| {
            env.get_template(template)
                .and_then(|compiled| compiled.render(context))
        };
        match render(&self.environment(theme)) {
            Ok(body) => Ok(body),
            Err(error) if theme.template_dir.is_some() => {
                let problem = format!("mail: {template}: {error}");
                if self.first_time(&problem) {
                    tracing::warn!(%error, template, "a mail template override failed; using the built-in template (logged once until it changes)");
                }
                Ok(render(&self.inner.builtin)?)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Each mail's parameters as template variables.
fn parameters(kind: &MailKind) -> Map<String, Value> {
    let value = match kind {
        MailKind::VerifyEmail { link } | MailKind::VerifyNewEmail { link } => {
            json!({ "link": link })
        }
        MailKind::AlreadyRegistered { sign_in_link } => json!({ "sign_in_link": sign_in_link }),
        MailKind::LookAlikeAddress => json!({}),
        MailKind::EmailChangeRequested {
            new_email,
            sign_in_link,
        } => json!({ "new_email": new_email, "sign_in_link": sign_in_link }),
        MailKind::PasswordReset {
            link,
            valid_minutes,
        }
        | MailKind::AdminReset {
            link,
            valid_minutes,
        } => json!({ "link": link, "minutes": valid_minutes }),
        MailKind::Invitation { link, valid_days } => json!({ "link": link, "days": valid_days }),
        MailKind::FactorRecovery {
            cancel_link,
            complete_link,
            ready_at,
            expires_at,
        } => json!({
            "cancel_link": cancel_link,
            "complete_link": complete_link,
            "ready_at": ready_at.format(TIME_FORMAT).to_string(),
            "expires_at": expires_at.format(TIME_FORMAT).to_string(),
        }),
        MailKind::SignInChanged { change } => json!({ "change": change.name() }),
        MailKind::ConfirmLink {
            partner,
            link,
            valid_minutes,
        } => json!({ "partner": partner, "link": link, "minutes": valid_minutes }),
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl MailRenderer for Ui {
    fn render(&self, tenant: &Tenant, mail: &Mail) -> Result<OutgoingMail, AuthnError> {
        let theme = self.tenant_theme(&tenant.slug, &tenant.typed_settings());
        // The request's language; without a request, the fallback language.
        let locale = mail
            .locale
            .as_deref()
            .and_then(Locale::from_tag)
            .unwrap_or_default();
        let rendered = self
            .render_mail(&tenant.display_name, &theme, &locale, &mail.kind)
            .map_err(|error| {
                AuthnError::Mail(format!("rendering the {:?} mail: {error}", mail.kind))
            })?;
        let settings = tenant.typed_settings().mail;
        let brand = theme.sanitized().display_name;
        Ok(OutgoingMail {
            to: mail.to.clone(),
            subject: rendered.subject,
            text_body: rendered.text_body,
            html_body: Some(rendered.html_body),
            sender: Sender {
                name: Some(
                    settings
                        .sender_name
                        .or(brand)
                        .unwrap_or_else(|| tenant.display_name.clone()),
                ),
                address: settings.from,
            },
        })
    }
}
