//! Authentication: how Gatehouse checks who someone is.
//!
//! Password hashing (Argon2id) and policy (NIST SP 800-63B), outgoing mail (SMTP,
//! or `.eml` files in development), and the services built on them: sign-up with
//! email verification, password sign-in with throttling, server-side sessions and
//! the account page's actions.
//!
//! Depends on `gatehouse-identity-store` and `gatehouse-core` only; never on another
//! feature crate or an HTTP framework type in its public API.

pub mod account;
pub mod error;
mod factor_attempts;
pub mod federation;
mod hashing;
pub mod lifecycle;
pub mod mail;
pub mod mail_render;
pub mod passkeys;
pub mod password;
pub mod provisioning;
pub mod recovery;
pub mod recovery_codes;
pub mod registration;
pub mod second_factor;
mod secrets;
mod service;
pub mod settings;
pub mod setup;
pub mod sign_in;
pub mod signup_mail;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod totp;

pub use error::AuthnError;
pub use mail::{Mailer, OutgoingMail, Sender};
pub use mail_render::{Mail, MailKind, MailRenderer, SignInChange};
pub use password::{
    HashMemory, PasswordHasher, PasswordPolicy, PolicyCode, PolicyViolation, Verification,
};
pub use service::{Authn, ClientInfo};
