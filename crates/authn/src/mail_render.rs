//! What Gatehouse mails, as data. The service decides which mail goes to whom, with
//! which links and in which language ([`Mail`]); how it reads is presentation, so a
//! [`MailRenderer`] the service is given (the server's templates and message
//! catalogues) turns it into an [`OutgoingMail`]. This crate never holds the words.
//!
//! Links carry single-use tokens, so [`Mail`]'s `Debug`, like [`OutgoingMail`]'s,
//! leaves them out.

use std::fmt;

use chrono::{DateTime, Utc};
use gatehouse_identity_store::tenants::Tenant;

use crate::AuthnError;
use crate::mail::OutgoingMail;

/// One mail to compose: the recipient, the language and what it says.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient, as `address`.
    pub to: String,
    /// The language tag negotiated for the request that caused the mail (`"de"`);
    /// `None` when no request did (an operator's command). The renderer falls back.
    pub locale: Option<String>,
    pub kind: MailKind,
}

/// Which mail, with its parameters.
#[derive(Clone, PartialEq, Eq)]
pub enum MailKind {
    /// Sign-up and "send the link again": a link that verifies the address.
    VerifyEmail { link: String },
    /// A sign-up with an address that already has an account.
    AlreadyRegistered { sign_in_link: String },
    /// A sign-up with an address that looks like an existing account's.
    LookAlikeAddress,
    /// An email change, to the new address: the link that makes the change.
    VerifyNewEmail { link: String },
    /// An email change, to the old address: someone asked for it.
    EmailChangeRequested {
        new_email: String,
        sign_in_link: String,
    },
    /// "Forgot password": a reset link valid for `valid_minutes`.
    PasswordReset { link: String, valid_minutes: i64 },
    /// An account an operator made: a link to choose a password, valid for
    /// `valid_days` days.
    Invitation { link: String, valid_days: i64 },
    /// An administrator's reset: what was removed, and a reset link.
    AdminReset { link: String, valid_minutes: i64 },
    /// A recovery of lost second factors started: cancel it at once, or complete it
    /// between `ready_at` and `expires_at`.
    FactorRecovery {
        cancel_link: String,
        complete_link: String,
        ready_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// After a reset: what changed, and that every session was signed out.
    SignInChanged { change: SignInChange },
    /// Someone signed in at `partner` with this account's address: the link that
    /// links that identity to the account, valid for `valid_minutes`.
    ConfirmLink {
        partner: String,
        link: String,
        valid_minutes: i64,
    },
}

/// What a reset changed, for [`MailKind::SignInChanged`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInChange {
    /// The password was reset with a mailed link.
    PasswordReset,
    /// Every second factor was removed and a password set, after the cooling-off.
    FactorsRecovered,
}

impl SignInChange {
    /// A stable name for templates and message keys.
    pub fn name(self) -> &'static str {
        match self {
            SignInChange::PasswordReset => "password_reset",
            SignInChange::FactorsRecovered => "factors_recovered",
        }
    }
}

impl MailKind {
    /// A stable name, for template names and message keys (`verify_email`).
    pub fn name(&self) -> &'static str {
        match self {
            MailKind::VerifyEmail { .. } => "verify_email",
            MailKind::AlreadyRegistered { .. } => "already_registered",
            MailKind::LookAlikeAddress => "look_alike_address",
            MailKind::VerifyNewEmail { .. } => "verify_new_email",
            MailKind::EmailChangeRequested { .. } => "email_change_requested",
            MailKind::PasswordReset { .. } => "password_reset",
            MailKind::AdminReset { .. } => "admin_reset",
            MailKind::Invitation { .. } => "invitation",
            MailKind::FactorRecovery { .. } => "factor_recovery",
            MailKind::SignInChanged { .. } => "sign_in_changed",
            MailKind::ConfirmLink { .. } => "confirm_link",
        }
    }
}

// Links hold single-use tokens: Debug names the mail only.
impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("locale", &self.locale)
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Debug for MailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Turns a [`Mail`] for a tenant into subject and bodies. Called off the async
/// workers (it may read template files); an error means the mail is not sent.
pub trait MailRenderer: fmt::Debug + Send + Sync {
    fn render(&self, tenant: &Tenant, mail: &Mail) -> Result<OutgoingMail, AuthnError>;
}
