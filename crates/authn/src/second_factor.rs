//! Second factors at sign-in and step-up on a live session.
//!
//! A right password for an account with a second factor opens no session: it yields
//! a [`PendingSignIn`], a token sealed with the master key that names the tenant,
//! the user and when the password was checked, valid for a few minutes. The browser
//! keeps it in a cookie; [`Authn::complete_sign_in`] turns it and a second factor
//! into a session at AAL2. A session below what an action needs is raised in place
//! by [`Authn::step_up`], asking only for the missing factor.
//!
//! The assurance level follows from the methods used (NIST SP 800-63B): something
//! the user has (`otp`, `hwk`, `swk`) together with something they know or are
//! (`pwd`, `pin`, or a verified `user`) is AAL2; anything less is AAL1.

use chrono::{DateTime, Utc};
use gatehouse_core::ids::{CredentialId, TenantId, UserId};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{Credential, CredentialKind};
use gatehouse_identity_store::sessions::{self, AuthMethod, Session};
use gatehouse_identity_store::tenants::Tenant;
use gatehouse_identity_store::{AnyConnection, credentials, users};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use crate::passkeys::PasskeyAuthenticated;
use crate::recovery_codes::{self, RecoveryCodes};
use crate::service::{Authn, ClientInfo, Inner};
use crate::totp::{self, Enrolment};
use crate::{AuthnError, secrets};

/// A new session and the secret for its cookie (shown to the browser only): what a
/// sign-in ends with, by password alone or after its second factor.
#[derive(Debug)]
pub struct SignedIn {
    pub session: Session,
    pub secret: Zeroizing<String>,
}

const PENDING_AAD: &[u8] = b"gatehouse/authn/pending-sign-in/v1";

/// What the user can pass as a second factor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Factors {
    /// A confirmed authenticator app.
    pub totp: bool,
    pub passkeys: usize,
    /// Unused recovery codes.
    pub recovery_codes: usize,
}

impl Factors {
    /// Reads them off a user's credentials.
    pub(crate) fn of(
        all: &[Credential],
        cipher: &gatehouse_core::secrets::Cipher,
    ) -> Result<Factors, AuthnError> {
        let mut factors = Factors::default();
        for credential in all {
            match credential.kind {
                CredentialKind::Totp => factors.totp |= totp::is_confirmed(credential, cipher)?,
                CredentialKind::Webauthn => factors.passkeys += 1,
                CredentialKind::RecoveryCode => factors.recovery_codes += 1,
                _ => {}
            }
        }
        Ok(factors)
    }

    /// Whether the account has a second factor, so a password alone is not enough.
    /// Recovery codes are a fallback for one, not a factor on their own.
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// The level a set of methods reaches; see the module documentation.
pub fn assurance_level(methods: &[AuthMethod]) -> i32 {
    let has = |names: &[&str]| methods.iter().any(|m| names.contains(&m.method.as_str()));
    let local = if has(&["otp", "hwk", "swk"]) && has(&["pwd", "pin", "user"]) {
        2
    } else {
        1
    };
    // A partner's sign-in counts at the level its answer maps to.
    let federated = methods.iter().filter_map(|m| m.aal).max().unwrap_or(1);
    local.max(federated)
}

/// A second factor as the user submits it.
pub enum SecondFactor {
    /// A code from the authenticator app.
    Totp(Zeroizing<String>),
    /// One of the user's recovery codes (spent by using it).
    RecoveryCode(Zeroizing<String>),
    /// A passkey ceremony that [`Authn::finish_passkey_authentication`] verified.
    Passkey(PasskeyAuthenticated),
}

/// A code the user offers for one of their guessable factors (a TOTP code or a
/// recovery code), with what checking it needs: [`totp::verify`],
/// [`recovery_codes::consume`] and their checks that spend nothing take it.
#[derive(Clone, Copy)]
pub struct OfferedCode<'a> {
    pub cipher: &'a gatehouse_core::secrets::Cipher,
    pub now: DateTime<Utc>,
    pub tenant: TenantId,
    pub user: UserId,
    pub code: &'a str,
}

impl std::fmt::Debug for OfferedCode<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the code itself, nor the key.
        f.debug_struct("OfferedCode")
            .field("now", &self.now)
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the code itself.
        f.write_str(self.name())
    }
}

impl SecondFactor {
    /// The audit log's name for it.
    fn name(&self) -> &'static str {
        match self {
            SecondFactor::Totp(_) => "totp",
            SecondFactor::RecoveryCode(_) => "recovery_code",
            SecondFactor::Passkey(_) => "passkey",
        }
    }
}

/// A password that was right, waiting for its second factor.
#[derive(Debug)]
pub struct PendingSignIn {
    /// Sealed; for a cookie. Opaque to the browser.
    pub token: Zeroizing<String>,
    pub factors: Factors,
}

#[derive(Serialize, Deserialize)]
struct PendingClaims {
    tenant: TenantId,
    user: UserId,
    /// When the password was checked (Unix seconds): the `pwd` method's time.
    pwd_at: i64,
    expires_at: i64,
}

/// A TOTP enrolment confirmed: the session it raised, and the recovery codes made
/// with the user's first factor (shown once).
#[derive(Debug)]
pub struct TotpConfirmed {
    pub signed_in: SignedIn,
    pub recovery_codes: Option<RecoveryCodes>,
}

/// RFC 8176: a synced passkey is a software-secured key, a device-bound one a
/// hardware-secured key.
fn passkey_method(passkey: &PasskeyAuthenticated) -> &'static str {
    if passkey.backup_eligible {
        "swk"
    } else {
        "hwk"
    }
}

impl Inner {
    /// `code` as the user offers it now, to be checked with the master key.
    pub(crate) fn offered<'a>(
        &'a self,
        now: DateTime<Utc>,
        tenant: TenantId,
        user: UserId,
        code: &'a str,
    ) -> OfferedCode<'a> {
        OfferedCode {
            cipher: &self.cipher,
            now,
            tenant,
            user,
            code,
        }
    }

    pub(crate) fn seal_pending(
        &self,
        tenant: TenantId,
        user: UserId,
        password: &AuthMethod,
    ) -> Result<Zeroizing<String>, AuthnError> {
        let claims = PendingClaims {
            tenant,
            user,
            pwd_at: password.at.timestamp(),
            expires_at: (password.at + self.settings.second_factor_wait).timestamp(),
        };
        let bytes = serde_json::to_vec(&claims)
            .map_err(|e| AuthnError::Internal(format!("sealing a pending sign-in: {e}")))?;
        Ok(Zeroizing::new(self.cipher.seal(&bytes, PENDING_AAD)))
    }

    /// The user and password time of a pending sign-in; [`AuthnError::InvalidLink`]
    /// when forged, for another tenant or expired.
    fn open_pending(
        &self,
        tenant: TenantId,
        token: &str,
    ) -> Result<(UserId, DateTime<Utc>), AuthnError> {
        let bytes = self
            .cipher
            .open(token, PENDING_AAD)
            .map_err(|_| AuthnError::InvalidLink)?;
        let claims: PendingClaims =
            serde_json::from_slice(&bytes).map_err(|_| AuthnError::InvalidLink)?;
        let now = self.now().timestamp();
        if claims.tenant != tenant || now >= claims.expires_at {
            return Err(AuthnError::InvalidLink);
        }
        let pwd_at = DateTime::from_timestamp(claims.pwd_at, 0).ok_or(AuthnError::InvalidLink)?;
        Ok((claims.user, pwd_at))
    }

    pub(crate) fn needs_step_up(&self, session: &Session, factors: &Factors) -> bool {
        let window = self.settings.step_up_window;
        let recent = session
            .second_factor_at()
            .is_some_and(|at| self.now() - at <= window);
        factors.any() && !(session.aal >= 2 && recent)
    }

    /// [`AuthnError::StepUpRequired`] unless the session may do a sensitive action now.
    pub(crate) fn ensure_stepped_up(
        &self,
        conn: &mut AnyConnection,
        session: &Session,
    ) -> Result<(), AuthnError> {
        let factors = self.factors(conn, session.tenant_id, session.user_id)?;
        if self.needs_step_up(session, &factors) {
            return Err(AuthnError::StepUpRequired);
        }
        Ok(())
    }

    pub(crate) fn factors(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Factors, AuthnError> {
        Factors::of(
            &credentials::list_for_user(conn, tenant, user, None)?,
            &self.cipher,
        )
    }

    /// Checks a second factor (each kind counts its own failures and locks itself)
    /// and audits a failure. Returns the `amr` method it stands for.
    fn check_factor(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
        factor: &SecondFactor,
        client: &ClientInfo,
    ) -> Result<AuthMethod, AuthnError> {
        let now = self.now();
        let checked = match factor {
            SecondFactor::Totp(code) => totp::verify(conn, self.offered(now, tenant, user, code)),
            SecondFactor::RecoveryCode(code) => {
                recovery_codes::consume(conn, self.offered(now, tenant, user, code)).map(|left| {
                    tracing::debug!(left, "recovery code used");
                })
            }
            // Verified already (signature, counter, user verification); it must be
            // this user's key.
            SecondFactor::Passkey(passkey) => {
                if passkey.user_id != user {
                    return Err(AuthnError::PasskeyRejected(
                        "the passkey is another user's".into(),
                    ));
                }
                return Ok(AuthMethod::new(passkey_method(passkey), now));
            }
        };
        match checked {
            // RFC 8176 has no value of its own for a look-up secret; it is a
            // one-time password in all but name.
            Ok(()) => Ok(AuthMethod::new("otp", now)),
            Err(error) => {
                if matches!(
                    error,
                    AuthnError::InvalidCode | AuthnError::Throttled { .. }
                ) {
                    self.audit(
                        conn,
                        tenant,
                        format!("user:{user}"),
                        "mfa.failed",
                        None,
                        Outcome::Failure,
                        client,
                        json!({ "factor": factor.name(), "locked": matches!(error, AuthnError::Throttled { .. }) }),
                    )?;
                }
                Err(error)
            }
        }
    }

    /// Raises a live session with a method just passed; a new cookie secret.
    fn raise(
        &self,
        conn: &mut AnyConnection,
        session: &Session,
        method: AuthMethod,
        action: &str,
        details: serde_json::Value,
        client: &ClientInfo,
    ) -> Result<SignedIn, AuthnError> {
        let mut methods = session.auth_methods.clone();
        methods.push(method);
        let aal = assurance_level(&methods).max(session.aal);
        let (secret, secret_hash) = secrets::generate();
        let raised = sessions::elevate(conn, self.now(), session, &methods, aal, secret_hash)?
            .ok_or(AuthnError::SessionEnded)?;
        self.audit(
            conn,
            session.tenant_id,
            format!("user:{}", session.user_id),
            action,
            Some(format!("session:{}", session.id)),
            Outcome::Success,
            client,
            json!({ "aal": aal, "details": details }),
        )?;
        Ok(SignedIn {
            session: raised,
            secret: Zeroizing::new(secret),
        })
    }
}

impl Authn {
    /// The second factors a user has.
    pub async fn factors(&self, tenant: TenantId, user: UserId) -> Result<Factors, AuthnError> {
        self.blocking(move |inner, conn| inner.factors(conn, tenant, user))
            .await
    }

    /// Whom a pending sign-in is for, and which factors they can use;
    /// [`AuthnError::InvalidLink`] when it is forged or has expired.
    pub async fn pending_sign_in(
        &self,
        tenant: TenantId,
        token: String,
    ) -> Result<(UserId, Factors), AuthnError> {
        self.blocking(move |inner, conn| {
            let (user, _) = inner.open_pending(tenant, &token)?;
            Ok((user, inner.factors(conn, tenant, user)?))
        })
        .await
    }

    /// Finishes a sign-in whose password was right with its second factor: a new
    /// session at AAL2 (methods `pwd` and the factor's). The previous session of
    /// the browser is treated as at any sign-in.
    pub async fn complete_sign_in(
        &self,
        tenant: TenantId,
        pending: String,
        factor: SecondFactor,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<SignedIn, AuthnError> {
        self.blocking(move |inner, conn| {
            let (user_id, pwd_at) = inner.open_pending(tenant, &pending)?;
            let user = users::get(conn, tenant, user_id)?;
            if !user.data.active {
                return Err(AuthnError::InvalidCredentials);
            }
            let second = inner.check_factor(conn, tenant, user_id, &factor, &client)?;
            let password = AuthMethod::new("pwd", pwd_at);
            gatehouse_identity_store::db::transaction_with(conn, |conn| {
                inner.open_session(
                    conn,
                    tenant,
                    user_id,
                    vec![password, second],
                    previous_secret,
                    &client,
                )
            })
        })
        .await
    }

    /// Passwordless sign-in: a discoverable passkey with user verification is two
    /// factors in one (the key, and the PIN or biometric that unlocked it): AAL2,
    /// `amr` = `hwk`/`swk` and `user`.
    pub async fn sign_in_with_passkey(
        &self,
        tenant: TenantId,
        passkey: PasskeyAuthenticated,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<SignedIn, AuthnError> {
        if !passkey.user_verified {
            return Err(AuthnError::PasskeyRejected(
                "the user was not verified".into(),
            ));
        }
        self.blocking(move |inner, conn| {
            let user = users::get(conn, tenant, passkey.user_id)?;
            if !user.data.active {
                return Err(AuthnError::InvalidCredentials);
            }
            let now = inner.now();
            let methods = vec![
                AuthMethod::new(passkey_method(&passkey), now),
                AuthMethod::new("user", now),
            ];
            gatehouse_identity_store::db::transaction_with(conn, |conn| {
                inner.open_session(
                    conn,
                    tenant,
                    passkey.user_id,
                    methods,
                    previous_secret,
                    &client,
                )
            })
        })
        .await
    }

    /// Step-up: the session's user passes a second factor now; the session is raised
    /// (to AAL2 after a password) and its cookie secret rotates.
    pub async fn step_up(
        &self,
        tenant: TenantId,
        session: Session,
        factor: SecondFactor,
        client: ClientInfo,
    ) -> Result<SignedIn, AuthnError> {
        self.blocking(move |inner, conn| {
            let method = inner.check_factor(conn, tenant, session.user_id, &factor, &client)?;
            inner.raise(
                conn,
                &session,
                method,
                "mfa.step_up",
                json!({ "factor": factor.name() }),
                &client,
            )
        })
        .await
    }

    /// Whether a sensitive account action must first ask for the second factor: the
    /// user has one, and the session has not passed one within the step-up window.
    pub fn needs_step_up(&self, session: &Session, factors: &Factors) -> bool {
        self.inner.needs_step_up(session, factors)
    }

    /// Starts adding an authenticator app; the page shows the QR code and key once.
    pub async fn begin_totp_enrolment(
        &self,
        tenant: Tenant,
        session: Session,
    ) -> Result<Enrolment, AuthnError> {
        self.blocking(move |inner, conn| {
            let user = users::get(conn, tenant.id, session.user_id)?;
            totp::begin_enrolment(conn, &inner.cipher, inner.now(), &tenant, &user)
        })
        .await
    }

    /// A pending enrolment's page again, after a mistyped code.
    pub async fn reopen_totp_enrolment(
        &self,
        tenant: Tenant,
        session: Session,
        enrolment: CredentialId,
    ) -> Result<Enrolment, AuthnError> {
        self.blocking(move |inner, conn| {
            let user = users::get(conn, tenant.id, session.user_id)?;
            totp::reopen_enrolment(conn, &inner.cipher, inner.now(), &tenant, &user, enrolment)
        })
        .await
    }

    /// Confirms an enrolment with a code from the app. The code is a second factor
    /// passed now, so the session is raised as by a step-up. The first factor of an
    /// account comes with a new set of recovery codes.
    pub async fn confirm_totp_enrolment(
        &self,
        tenant: TenantId,
        session: Session,
        enrolment: CredentialId,
        code: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<TotpConfirmed, AuthnError> {
        self.blocking(move |inner, conn| {
            let user = session.user_id;
            let before = inner.factors(conn, tenant, user)?;
            let now = inner.now();
            totp::confirm_enrolment(conn, &inner.cipher, now, tenant, user, enrolment, &code)?;
            let recovery_codes = if before.recovery_codes == 0 {
                Some(recovery_codes::generate(
                    conn,
                    &inner.cipher,
                    now,
                    tenant,
                    user,
                )?)
            } else {
                None
            };
            let method = AuthMethod::new("otp", now);
            let signed_in = inner.raise(
                conn,
                &session,
                method,
                "mfa.totp_enrolled",
                json!({ "recovery_codes_issued": recovery_codes.is_some() }),
                &client,
            )?;
            inner.credentials_changed(tenant, user);
            Ok(TotpConfirmed {
                signed_in,
                recovery_codes,
            })
        })
        .await
    }

    /// Removes the authenticator app ([`AuthnError::StepUpRequired`] without a recent
    /// second factor). Without any second factor left, the recovery codes go too.
    pub async fn remove_totp(
        &self,
        tenant: TenantId,
        session: Session,
        client: ClientInfo,
    ) -> Result<bool, AuthnError> {
        self.blocking(move |inner, conn| {
            inner.ensure_stepped_up(conn, &session)?;
            let user = session.user_id;
            let removed = gatehouse_identity_store::db::transaction_with(conn, |conn| {
                let removed = totp::remove(conn, tenant, user)?;
                if !inner.factors(conn, tenant, user)?.any() {
                    recovery_codes::remove_all(conn, tenant, user)?;
                }
                Ok::<_, AuthnError>(removed)
            })?;
            if removed {
                inner.audit_own_account(
                    conn,
                    tenant,
                    user,
                    "mfa.totp_removed",
                    &client,
                    json!({}),
                )?;
                inner.credentials_changed(tenant, user);
            }
            Ok(removed)
        })
        .await
    }

    /// Recovery codes for a user's first second factor (a passkey just registered):
    /// a set if they have a factor and no codes yet, else `None`. Shown once.
    pub async fn first_recovery_codes(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<RecoveryCodes>, AuthnError> {
        self.blocking(move |inner, conn| {
            let factors = inner.factors(conn, tenant, user)?;
            if !factors.any() || factors.recovery_codes > 0 {
                return Ok(None);
            }
            Ok(Some(recovery_codes::generate(
                conn,
                &inner.cipher,
                inner.now(),
                tenant,
                user,
            )?))
        })
        .await
    }

    /// A new set of recovery codes; the old set stops working. Only for an account
    /// with a second factor, after a recent one ([`AuthnError::StepUpRequired`]).
    pub async fn regenerate_recovery_codes(
        &self,
        tenant: TenantId,
        session: Session,
        client: ClientInfo,
    ) -> Result<RecoveryCodes, AuthnError> {
        self.blocking(move |inner, conn| {
            let user = session.user_id;
            if !inner.factors(conn, tenant, user)?.any() {
                return Err(AuthnError::NotEnrolled);
            }
            inner.ensure_stepped_up(conn, &session)?;
            let codes = recovery_codes::generate(conn, &inner.cipher, inner.now(), tenant, user)?;
            inner.audit_own_account(
                conn,
                tenant,
                user,
                "mfa.recovery_codes_regenerated",
                &client,
                json!({}),
            )?;
            Ok(codes)
        })
        .await
    }
}
