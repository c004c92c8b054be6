//! A [`MailRenderer`] for tests without the server: one plain English line per mail
//! and its parameters each on a line of their own, so tests read links out of it as
//! they would from the real mail. The real words are the server's templates.

use gatehouse_identity_store::tenants::Tenant;

use crate::AuthnError;
use crate::mail::OutgoingMail;
use crate::mail_render::{Mail, MailKind, MailRenderer, SignInChange};

/// See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainMailRenderer;

impl PlainMailRenderer {
    /// Shared, as [`crate::Authn::new`] takes it.
    pub fn shared() -> std::sync::Arc<dyn MailRenderer> {
        std::sync::Arc::new(PlainMailRenderer)
    }
}

impl MailRenderer for PlainMailRenderer {
    fn render(&self, tenant: &Tenant, mail: &Mail) -> Result<OutgoingMail, AuthnError> {
        let (summary, parameters): (&str, Vec<String>) = match &mail.kind {
            MailKind::VerifyEmail { link } => ("Confirm your email address.", vec![link.clone()]),
            MailKind::AlreadyRegistered { sign_in_link } => (
                "Someone tried to sign up with your address.",
                vec![sign_in_link.clone()],
            ),
            MailKind::LookAlikeAddress => ("This address cannot be used to sign up.", vec![]),
            MailKind::VerifyNewEmail { link } => {
                ("Confirm your new email address.", vec![link.clone()])
            }
            MailKind::EmailChangeRequested {
                new_email,
                sign_in_link,
            } => (
                "Your email address is being changed.",
                vec![new_email.clone(), sign_in_link.clone()],
            ),
            MailKind::PasswordReset {
                link,
                valid_minutes,
            } => (
                "Reset your password.",
                vec![link.clone(), format!("{valid_minutes} minutes")],
            ),
            MailKind::Invitation { link, valid_days } => (
                "You are invited: choose your password.",
                vec![link.clone(), format!("{valid_days} days")],
            ),
            MailKind::AdminReset {
                link,
                valid_minutes,
            } => (
                "Your account was reset by an administrator.",
                vec![link.clone(), format!("{valid_minutes} minutes")],
            ),
            MailKind::FactorRecovery {
                cancel_link,
                complete_link,
                ready_at,
                expires_at,
            } => (
                "Your second factors will be removed.",
                vec![
                    cancel_link.clone(),
                    complete_link.clone(),
                    ready_at.to_rfc3339(),
                    expires_at.to_rfc3339(),
                ],
            ),
            MailKind::ConfirmLink {
                partner,
                link,
                valid_minutes,
            } => (
                "Link your partner sign-in to your account.",
                vec![
                    partner.clone(),
                    link.clone(),
                    format!("{valid_minutes} minutes"),
                ],
            ),
            MailKind::SignInChanged { change } => (
                match change {
                    SignInChange::PasswordReset => "The password of your account was reset.",
                    SignInChange::FactorsRecovered => {
                        "The second factors of your account were removed."
                    }
                },
                vec![],
            ),
        };
        let mut text_body = format!("{}: {summary}\n", tenant.display_name);
        for parameter in parameters {
            text_body.push_str(&format!("\n{parameter}\n"));
        }
        Ok(OutgoingMail {
            to: mail.to.clone(),
            subject: summary.trim_end_matches('.').to_owned(),
            text_body,
            html_body: None,
            sender: Default::default(),
        })
    }
}
