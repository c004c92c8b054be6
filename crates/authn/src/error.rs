use crate::password::PolicyViolation;

/// The one error type of `gatehouse-authn`.
///
/// Messages never contain a password, a password hash or a mail body: they end up in
/// logs. HTTP mapping happens in the crate that owns the route.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// A new password does not satisfy the password policy. The violation carries a
    /// code the UI translates and English suggestions it may show.
    #[error("password rejected: {0}")]
    PasswordPolicy(PolicyViolation),

    /// Hashing a password failed (bad parameters or no randomness for the salt).
    #[error("password hashing failed: {0}")]
    Hash(String),

    /// A mail could not be built, sent or written to the development mail directory.
    #[error("mail: {0}")]
    Mail(String),

    /// Configuration the feature depends on is unusable.
    #[error(transparent)]
    Core(#[from] gatehouse_core::Error),

    #[error(transparent)]
    Store(#[from] gatehouse_identity_store::StoreError),

    /// Unknown account or wrong password: deliberately one error.
    #[error("invalid credentials")]
    InvalidCredentials,

    /// Too many failures for this account or client; try again after `until`.
    #[error("too many attempts")]
    Throttled {
        until: Option<chrono::DateTime<chrono::Utc>>,
    },

    /// The password was right but the tenant requires a verified email first.
    #[error("email address not verified")]
    EmailNotVerified,

    #[error("registration is closed for this tenant")]
    RegistrationClosed,

    #[error("not a usable email address")]
    InvalidEmail,

    /// Another account already uses the address.
    #[error("email address already in use")]
    EmailTaken,

    /// A link that is unknown, expired or already used: one error for all three.
    #[error("invalid or expired link")]
    InvalidLink,

    /// Every password hashing thread is taken and the queue in front of them is full:
    /// the request was refused without being tried. Temporary; try again shortly.
    #[error("too busy to check passwords right now; try again shortly")]
    Busy,

    #[error("internal error: {0}")]
    Internal(String),

    /// A one-time code (TOTP or recovery code) that is wrong, outside the accepted
    /// time window or already used: deliberately one error.
    #[error("invalid code")]
    InvalidCode,

    /// The session an action was for has ended (signed out, expired) meanwhile.
    #[error("the session has ended")]
    SessionEnded,

    /// A federated sign-in refused; see [`crate::federation::Refusal`].
    #[error(transparent)]
    Federation(#[from] crate::federation::Refusal),

    /// Removing this would leave the account no way to sign in.
    #[error("the account's last way to sign in cannot be removed")]
    LastSignInMethod,

    /// A sensitive action on an account with a second factor, without having passed
    /// one recently: step up first.
    #[error("a recent second factor is required")]
    StepUpRequired,

    /// The user already has this second factor; it must be removed before another
    /// is enrolled.
    #[error("second factor already enrolled")]
    AlreadyEnrolled,

    /// No such second factor for this user: never enrolled, removed, or an enrolment
    /// that expired or was replaced. Start again.
    #[error("second factor not enrolled")]
    NotEnrolled,

    /// The account has a second factor, and this step needs it (a password reset
    /// link alone is not enough). The caller asks for one and tries again.
    #[error("a second factor is required")]
    SecondFactorRequired,

    /// A recovery of lost second factors that is still cooling off: it can complete
    /// from `ready_at`.
    #[error("account recovery is not ready yet")]
    RecoveryNotReady {
        ready_at: chrono::DateTime<chrono::Utc>,
    },

    /// The recovery was cancelled (by the owner, by a newer one, or because a second
    /// factor was used meanwhile).
    #[error("account recovery was cancelled")]
    RecoveryCancelled,

    /// A passkey ceremony failed: a signature, origin, relying party, user
    /// verification or signature-counter check, or a passkey that is not the
    /// user's. The message names the check for logs; it never holds key material
    /// or what the client sent.
    #[error("passkey rejected: {0}")]
    PasskeyRejected(String),

    /// A passkey challenge that is unknown, expired, already used, or was begun by
    /// another browser: deliberately one error. Begin the ceremony again.
    #[error("invalid or expired passkey challenge")]
    ChallengeInvalid,

    /// The authenticator's credential is already registered, to this account or
    /// another one of the tenant.
    #[error("passkey already registered")]
    PasskeyAlreadyRegistered,
}

impl From<PolicyViolation> for AuthnError {
    fn from(violation: PolicyViolation) -> Self {
        AuthnError::PasswordPolicy(violation)
    }
}
