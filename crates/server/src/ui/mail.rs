//! Mail, rendered like the pages: one text template per mail (`mail_<name>.txt`),
//! its words and subject from the same message catalogues, in the language of the
//! request that caused it, and the tenant's template overrides first. An override
//! that fails to render is logged and the built-in template used, so a broken
//! theme never stops a reset link or a security notice.

use gatehouse_authn::{AuthnError, Mail, MailKind, MailRenderer, OutgoingMail};
use gatehouse_identity_store::tenants::Tenant;
use minijinja::value::Serde;
use serde_json::{Map, Value, json};

use super::{Locale, ThemeSettings, Ui, UiError, templates};

/// How times appear in mail: unambiguous in every language, and in UTC since the
/// reader's time zone is unknown.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M UTC";

/// A mail's subject and text body, before it is addressed.
#[derive(Debug)]
pub struct RenderedMail {
    pub subject: String,
    pub text_body: String,
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

        let render = |env: &minijinja::Environment<'static>| {
            env.get_template(&template)
                .and_then(|compiled| compiled.render(&context))
        };
        let text_body = match render(&self.environment(&theme)) {
            Ok(body) => body,
            Err(error) if theme.template_dir.is_some() => {
                let problem = format!("mail: {template}: {error}");
                if self.first_time(&problem) {
                    tracing::warn!(%error, template, "a mail template override failed; using the built-in template (logged once until it changes)");
                }
                render(&self.inner.builtin)?
            }
            Err(error) => return Err(error.into()),
        };
        Ok(RenderedMail {
            subject: self.translate(locale, &format!("mail.{}.subject", kind.name())),
            text_body,
        })
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
        Ok(OutgoingMail {
            to: mail.to.clone(),
            subject: rendered.subject,
            text_body: rendered.text_body,
            html_body: None,
        })
    }
}
