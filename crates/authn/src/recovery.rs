//! Account recovery: a forgotten password, lost second factors, and a reset by an
//! administrator. The rule throughout: a reset is never weaker than the sign-in it
//! replaces. A mailed link proves control of the mailbox, which is what a password
//! alone proves at sign-in; an account whose sign-in also needs a second factor
//! needs one here too, or else a waiting period its owner can interrupt.
//!
//! # Links
//!
//! Relative to the tenant's [`LinkBase`]; the pages behind them are the server's.
//!
//! | path | what it does | lifetime |
//! |---|---|---|
//! | `/recover?token=…` | a password reset: [`Authn::open_password_reset`], then [`Authn::complete_password_reset`] (or [`Authn::request_factor_recovery`]) | single-use, [`AuthnSettings::password_reset_link_lifetime`] (15 min) |
//! | `/recover/factors?token=…` | completes a recovery of lost second factors, once its cooling-off is over: [`Authn::complete_factor_recovery`] | single-use, from the end of the cooling-off (24 h) for [`AuthnSettings::factor_recovery_window`] (7 days) |
//! | `/recover/cancel?token=…` | cancels that recovery: [`Authn::cancel_factor_recovery`] | single-use, until the recovery completes or is void |
//!
//! Every token is 256 random bits; only its SHA-256 is stored (reset links as
//! `password_reset` one-time tokens, the other two in `account_recoveries`).
//!
//! # Forgotten password
//!
//! [`Authn::request_password_reset`] answers `Ok(())` whether or not the address
//! belongs to an (active) account, and the request path does the same work either
//! way: the rate-limit writes, nothing else. The look-up, voiding older links,
//! issuing the new one, the audit event and the mail happen after the answer, in
//! the background, so neither the database work nor the SMTP round trip shows in
//! the answer.
//!
//! Opening the link ([`Authn::open_password_reset`]) does not spend it: mail
//! scanners and browsers fetch links before anyone clicks. It says what the user must
//! prove next ([`ResetTicket`]). When the account has a second factor — a confirmed
//! authenticator app, unused recovery codes or a passkey — the link alone is not
//! enough: [`Authn::complete_password_reset`] wants a [`ResetProof`]. A wrong code
//! does not spend the link, and cannot be guessed at length either: codes are
//! checked like [`totp::verify`] and [`recovery_codes::consume`] check them, counting
//! the failures per user and locking the factor, whatever the way in. The proof is
//! checked before the new password is hashed, and a code is spent in the
//! transaction that writes the password and spends the link, so a refused
//! password or a failed hash costs neither.
//!
//! A passkey proves a reset through its own ceremony: [`Authn::begin_reset_passkey`]
//! begins it for the link's user (their passkeys only, user verification required
//! as at sign-in), bound to the link and the browser, and the assertion comes back
//! in [`ResetProof::Passkey`]. The challenge is single-use, so an assertion cannot
//! be replayed, and a ceremony of one link answers no other link, sign-in or
//! account. Rejections count like a passkey's at sign-in and are audited
//! (`passkey.authentication_failed`, `recovery.second_factor_failed`).
//!
//! # Lost second factors
//!
//! From an opened reset link of an account with factors, the owner who has none of
//! them at hand calls [`Authn::request_factor_recovery`]. It spends the link and
//! starts a recovery that can complete only after a cooling-off
//! ([`AuthnSettings::factor_recovery_cooling_off`], 24 h). The owner is mailed at
//! once, with the completion link and a cancel link: whoever took over the mailbox
//! alone has to wait a day, while the owner reads the notice and cancels. A second
//! factor used (or added) during the wait cancels the recovery too: its owner
//! evidently has one. A use cancels it at once, in the transaction that accepts the
//! TOTP code, spends the recovery code or verifies the passkey, with an audit event
//! (`factor_attempts::cancel_recoveries_on_factor_use`), so nothing depends on the factor still being
//! there later: a spent recovery code is deleted. A factor added since the start is
//! found when the recovery would complete. Completing removes every second factor
//! (authenticator app, recovery codes, passkeys) and sets the new password. No link
//! removes a second factor sooner.
//!
//! # Administrator
//!
//! [`Authn::admin_reset`] is the assisted way, after the administrator has checked
//! who is asking by other means. It removes every second factor *and* the password
//! (a password-only account with a possibly known password would be weaker than what
//! it had) and mails the user a reset link; the administrator never chooses or sees a
//! password. The audit event names the administrator and the reason.
//!
//! # After every reset
//!
//! In the transaction that changes the credentials: every session of the user ends,
//! every OAuth grant is revoked (offline ones included, and with each grant its
//! refresh tokens and the access tokens introspection would still accept),
//! outstanding reset links are void and open recoveries cancelled, and the audit
//! event is written. After the commit `SessionsEnded` (back-channel logout) and
//! `CredentialsChanged` are published and the user is mailed a notice, which never
//! contains the password.
//!
//! # Throttling
//!
//! Reset requests count per submitted address (whether or not it is an account's)
//! and per client IP, per hour ([`AuthnSettings::password_reset_requests_per_hour`],
//! [`AuthnSettings::password_reset_requests_per_ip_hour`]). An unknown, expired or
//! used link counts against the client's IP like a failed sign-in does (the same
//! threshold and lockout); a locked IP is refused before any link is looked at.
//! Codes are throttled by their factor, as said.
//!
//! [`AuthnSettings::password_reset_link_lifetime`]: crate::settings::AuthnSettings::password_reset_link_lifetime
//! [`AuthnSettings::factor_recovery_window`]: crate::settings::AuthnSettings::factor_recovery_window
//! [`AuthnSettings::factor_recovery_cooling_off`]: crate::settings::AuthnSettings::factor_recovery_cooling_off
//! [`AuthnSettings::password_reset_requests_per_hour`]: crate::settings::AuthnSettings::password_reset_requests_per_hour
//! [`AuthnSettings::password_reset_requests_per_ip_hour`]: crate::settings::AuthnSettings::password_reset_requests_per_ip_hour

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::{SessionId, TenantId, UserId};
use gatehouse_identity_store::account_recoveries::{self, NewRecovery, RecoveryState};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::users::{self, User};
use gatehouse_identity_store::{AnyConnection, db, fold_key, grants, rate_limits, sessions};
use serde_json::json;
use zeroize::Zeroizing;

use crate::factor_attempts::ensure_not_locked;
use crate::mail_render::{Mail, MailKind, SignInChange};
use crate::passkeys::{PublicKeyCredential, RelyingParty};
use crate::registration::{LinkBase, valid_email};
use crate::service::{Authn, ClientInfo, Inner, MailRequest};
use crate::{AuthnError, recovery_codes, secrets, totp};

/// The page that opens a password-reset link.
pub const RESET_PATH: &str = "/recover";
/// The page that completes a recovery of lost second factors.
pub const FACTOR_RECOVERY_PATH: &str = "/recover/factors";
/// The page that cancels such a recovery.
pub const CANCEL_PATH: &str = "/recover/cancel";

/// What an opened reset link needs before a new password can be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTicket {
    /// The account has a second factor: one of those marked `true` must be passed
    /// ([`ResetProof`]). Without any of them at hand, the way on is
    /// [`Authn::request_factor_recovery`]. `user` is whom a passkey ceremony is for.
    NeedsSecondFactor {
        user: UserId,
        totp: bool,
        recovery_codes: bool,
        passkey: bool,
    },
    /// The link is enough: no second factor on the account.
    ReadyForNewPassword,
}

/// The second factor passed with a password reset.
pub enum ResetProof {
    /// None; enough only for an account without a second factor.
    None,
    /// A code from the authenticator app.
    Totp(Zeroizing<String>),
    /// One of the user's recovery codes, spent by using it.
    RecoveryCode(Zeroizing<String>),
    /// A passkey assertion answering a ceremony begun with
    /// [`Authn::begin_reset_passkey`] for the same link, in the same browser.
    Passkey(Box<PasskeyProof>),
}

/// A passkey assertion for a password reset, as the browser sent it.
pub struct PasskeyProof {
    pub challenge_id: String,
    /// What the ceremony was bound to when it began (the browser's cookie).
    pub binding: String,
    pub response: PublicKeyCredential,
    pub rp: RelyingParty,
}

impl ResetProof {
    /// The audit log's name for it.
    fn name(&self) -> &'static str {
        match self {
            ResetProof::None => "none",
            ResetProof::Totp(_) => "totp",
            ResetProof::RecoveryCode(_) => "recovery_code",
            ResetProof::Passkey(_) => "passkey",
        }
    }
}

// The binding is a cookie's secret; the assertion is the client's to log.
impl fmt::Debug for PasskeyProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeyProof")
            .field("rp", &self.rp)
            .finish_non_exhaustive()
    }
}

// Codes and assertions stay out of logs.
impl fmt::Debug for ResetProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A recovery of lost second factors, started and announced to the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorRecoveryStarted {
    /// It can complete from then on…
    pub ready_at: DateTime<Utc>,
    /// …until then.
    pub expires_at: DateTime<Utc>,
}

/// Where a recovery of lost second factors stands ([`Authn::open_factor_recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorRecoveryStatus {
    /// In its cooling-off: it can complete from `ready_at`.
    Waiting { ready_at: DateTime<Utc> },
    /// It can complete until `expires_at`.
    Ready { expires_at: DateTime<Utc> },
    /// Cancelled; it never completes.
    Cancelled,
}

/// What an administrator's reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResetOutcome {
    /// Second-factor credentials removed (an authenticator app, each recovery code,
    /// each passkey).
    pub factors_removed: usize,
    /// The sessions the reset ended (for back-channel logout by whoever made it).
    pub sessions_ended: Vec<SessionId>,
    pub grants_revoked: usize,
    /// Whether the mail with the reset link went out. When it did not, the reset
    /// still happened; the user can ask for a link with "forgot password".
    pub link_sent: bool,
}

fn link(base: &LinkBase, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", base.0)
}

fn request_bucket(identifier: &str) -> String {
    format!("recovery:request:{}", fold_key(identifier))
}

fn request_ip_bucket(ip: &str) -> String {
    format!("recovery:request_ip:{ip}")
}

fn link_ip_bucket(ip: &str) -> String {
    format!("recovery:link_ip:{ip}")
}

/// The second factors of an account, as far as a reset is concerned: any of them
/// makes a reset link alone insufficient.
#[derive(Debug, Clone, Copy, Default)]
struct OwnedFactors {
    totp: bool,
    recovery_codes: usize,
    passkeys: usize,
}

impl OwnedFactors {
    fn any(&self) -> bool {
        self.totp || self.recovery_codes > 0 || self.passkeys > 0
    }

    fn ticket(&self, user: UserId) -> ResetTicket {
        if self.any() {
            ResetTicket::NeedsSecondFactor {
                user,
                totp: self.totp,
                recovery_codes: self.recovery_codes > 0,
                passkey: self.passkeys > 0,
            }
        } else {
            ResetTicket::ReadyForNewPassword
        }
    }
}

/// What ending everything of a user did.
pub(crate) struct SignedOut {
    pub(crate) sessions: Vec<SessionId>,
    pub(crate) grants: usize,
}

/// What the password policy compares a new password with.
fn password_inputs(user: &User) -> Vec<&str> {
    let mut inputs = vec![user.data.user_name.as_str()];
    inputs.extend(user.primary_email().map(|e| e.value.as_str()));
    inputs.extend(user.data.name.given_name.as_deref());
    inputs.extend(user.data.name.family_name.as_deref());
    inputs
}

/// Spends a reset link inside the caller's transaction; it must still be the
/// user's (a concurrent request may have spent or voided it since it was read).
fn spend_reset_link(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    token: &str,
    user: UserId,
) -> Result<one_time_tokens::ConsumedToken, AuthnError> {
    match one_time_tokens::consume(
        conn,
        now,
        tenant,
        Purpose::PasswordReset,
        &secrets::digest(token),
    )? {
        Some(spent) if spent.user_id == user => Ok(spent),
        _ => Err(AuthnError::InvalidLink),
    }
}

/// An invitation link that was used proves the mailbox: the primary address
/// counts as verified from then on (inside the reset's transaction).
fn verify_invited_address(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    spent: &one_time_tokens::ConsumedToken,
) -> Result<bool, AuthnError> {
    if spent.payload.get("invitation") != Some(&serde_json::Value::Bool(true)) {
        return Ok(false);
    }
    let user = users::get(conn, tenant, spent.user_id)?;
    if user.primary_email().is_none_or(|e| e.verified) {
        return Ok(false);
    }
    let mut data = user.data.clone();
    for email in data.emails.iter_mut().filter(|e| e.primary) {
        email.verified = true;
    }
    users::update(conn, now, tenant, user.id, user.version, data)?;
    Ok(true)
}

/// Removes every second factor of the user; how many credentials went.
fn remove_second_factors(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<usize, AuthnError> {
    let app = usize::from(totp::remove(conn, tenant, user)?);
    let codes = recovery_codes::remove_all(conn, tenant, user)?;
    let passkeys = credentials::delete_kind_for_user(conn, tenant, user, CredentialKind::Webauthn)?;
    Ok(app + codes + passkeys)
}

/// The notice after a reset, to the user's primary address if they have one, in
/// the language of the request that made it.
fn changed_notice(user: &User, change: SignInChange, client: &ClientInfo) -> Option<Mail> {
    user.primary_email().map(|email| Mail {
        to: email.value.clone(),
        locale: client.locale.clone(),
        kind: MailKind::SignInChanged { change },
    })
}

impl Inner {
    /// The account-dependent half of [`Authn::request_password_reset`]: the mail, if
    /// there is an active account to send it to.
    fn password_reset_mail(
        &self,
        conn: &mut AnyConnection,
        request: &MailRequest,
    ) -> Result<Option<Mail>, AuthnError> {
        let (tenant, identifier) = (request.tenant, request.address.as_str());
        let (links, client) = (&request.links, &request.client);
        let now = self.now();
        let lifetime = self.settings.password_reset_link_lifetime;
        let account = users::find_by_primary_email(conn, tenant, identifier)?
            .filter(|user| user.data.active)
            .and_then(|user| {
                let address = user.primary_email()?.value.clone();
                Some((user.id, address))
            });
        let target = account.as_ref().map(|(user, _)| *user);
        let token = db::transaction_with(conn, |conn| {
            let token = match target {
                Some(user) => {
                    // Older links of the account stop working.
                    one_time_tokens::revoke_for_user(
                        conn,
                        now,
                        tenant,
                        user,
                        Purpose::PasswordReset,
                    )?;
                    let (token, token_hash) = secrets::generate();
                    one_time_tokens::issue(
                        conn,
                        now,
                        tenant,
                        user,
                        Purpose::PasswordReset,
                        &token_hash,
                        lifetime,
                        &json!({}),
                    )?;
                    Some(token)
                }
                None => None,
            };
            self.audit(
                conn,
                tenant,
                "anonymous".into(),
                "recovery.requested",
                target.map(|user| format!("user:{user}")),
                Outcome::Success,
                client,
                json!({
                    "identifier": fold_key(identifier),
                    "account_found": target.is_some(),
                }),
            )?;
            Ok::<_, AuthnError>(token)
        })?;
        Ok(token.zip(account).map(|(token, (_, address))| Mail {
            to: address,
            locale: client.locale.clone(),
            kind: MailKind::PasswordReset {
                link: link(links, RESET_PATH, &token),
                valid_minutes: lifetime.num_minutes(),
            },
        }))
    }

    /// Counts a reset request per address and per IP; [`AuthnError::Throttled`] when
    /// either is over its hourly limit. A locked bucket refuses without counting.
    fn count_reset_request(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        identifier: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthnError> {
        let now = self.now();
        let hour = Duration::hours(1);
        let mut buckets = vec![(
            request_bucket(identifier),
            self.settings.password_reset_requests_per_hour,
        )];
        if let Some(ip) = &client.ip {
            buckets.push((
                request_ip_bucket(ip),
                self.settings.password_reset_requests_per_ip_hour,
            ));
        }
        for (bucket, _) in &buckets {
            ensure_not_locked(conn, now, tenant, bucket)?;
        }
        let (mut over, mut until) = (false, None);
        for (bucket, limit) in &buckets {
            let limit = *limit;
            let counter = rate_limits::record_failure(conn, now, tenant, bucket, hour, |n| {
                (n > limit).then_some(hour)
            })?;
            if counter.failures > limit {
                over = true;
                until = until.max(counter.locked_until);
            }
        }
        if over {
            Err(AuthnError::Throttled { until })
        } else {
            Ok(())
        }
    }

    /// [`AuthnError::Throttled`] while the client's IP is locked for links.
    fn ensure_links_allowed(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        client: &ClientInfo,
    ) -> Result<(), AuthnError> {
        let Some(ip) = &client.ip else {
            return Ok(());
        };
        ensure_not_locked(conn, self.now(), tenant, &link_ip_bucket(ip))
    }

    /// Counts a bad link against the client's IP and answers [`AuthnError::InvalidLink`].
    fn invalid_link<T>(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        client: &ClientInfo,
    ) -> Result<T, AuthnError> {
        if let Some(ip) = &client.ip {
            let settings = &self.settings;
            rate_limits::record_failure(
                conn,
                self.now(),
                tenant,
                &link_ip_bucket(ip),
                settings.failure_window,
                |n| settings.ip_lock_for(n),
            )?;
        }
        Err(AuthnError::InvalidLink)
    }

    /// The active user behind an outstanding reset link, without spending it.
    pub(crate) fn reset_link_user(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        token: &str,
        client: &ClientInfo,
    ) -> Result<User, AuthnError> {
        self.ensure_links_allowed(conn, tenant, client)?;
        let Some(found) = one_time_tokens::find(
            conn,
            self.now(),
            tenant,
            Purpose::PasswordReset,
            &secrets::digest(token),
        )?
        else {
            return self.invalid_link(conn, tenant, client);
        };
        let user = users::get(conn, tenant, found.user_id)?;
        if !user.data.active {
            return self.invalid_link(conn, tenant, client);
        }
        Ok(user)
    }

    fn owned_factors(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
    ) -> Result<OwnedFactors, AuthnError> {
        Ok(OwnedFactors {
            totp: totp::enrolled(conn, &self.cipher, tenant, user)?.is_some(),
            recovery_codes: recovery_codes::remaining(conn, tenant, user)?,
            passkeys: credentials::list_for_user(
                conn,
                tenant,
                user,
                Some(CredentialKind::Webauthn),
            )?
            .len(),
        })
    }

    /// Checks the proof of an account with second factors, before the new password
    /// is hashed. A code is only checked here, and spent by [`Inner::spend_reset_proof`]
    /// in the transaction that sets the password, so a refused password or a failed
    /// hash does not cost it; a passkey ceremony is finished here (its challenge is
    /// single-use, the passkey itself is not used up). Failures count as for the
    /// factor (committed at once, so call this outside a transaction) and are
    /// audited.
    #[allow(clippy::too_many_arguments)]
    fn check_reset_proof(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        token: &str,
        user: UserId,
        factors: &OwnedFactors,
        proof: &ResetProof,
        client: &ClientInfo,
    ) -> Result<&'static str, AuthnError> {
        let now = self.now();
        let checked = match proof {
            ResetProof::None => return Err(AuthnError::SecondFactorRequired),
            ResetProof::Totp(code) => totp::check(conn, self.offered(now, tenant, user, code)),
            ResetProof::RecoveryCode(code) => {
                recovery_codes::check(conn, self.offered(now, tenant, user, code))
            }
            ResetProof::Passkey(_) if factors.passkeys == 0 => Err(AuthnError::NotEnrolled),
            // Counted and audited as a passkey attempt (`passkey.authentication_failed`)
            // by the ceremony itself; audited here as a reset's failed proof too.
            ResetProof::Passkey(passkey) => self
                .finish_authentication(
                    conn,
                    tenant,
                    &passkey.binding,
                    &passkey.challenge_id,
                    &passkey.response,
                    &passkey.rp,
                    client,
                    Some(&secrets::digest(token)),
                )
                .and_then(|done| {
                    if done.user_id == user && done.user_verified {
                        Ok(())
                    } else {
                        Err(AuthnError::PasskeyRejected(
                            "the passkey did not verify this user".into(),
                        ))
                    }
                }),
        };
        match checked {
            Ok(()) => Ok(proof.name()),
            Err(error) => {
                let outcome = match error {
                    AuthnError::Throttled { .. } => Some("throttled"),
                    AuthnError::NotEnrolled => Some("not_enrolled"),
                    AuthnError::InvalidCode => Some("invalid_code"),
                    AuthnError::PasskeyRejected(_) | AuthnError::InvalidCredentials => {
                        Some("passkey_rejected")
                    }
                    AuthnError::ChallengeInvalid => Some("challenge_invalid"),
                    _ => None,
                };
                if let Some(outcome) = outcome {
                    self.audit(
                        conn,
                        tenant,
                        format!("user:{user}"),
                        "recovery.second_factor_failed",
                        Some(format!("user:{user}")),
                        Outcome::Failure,
                        client,
                        json!({ "factor": proof.name(), "outcome": outcome }),
                    )?;
                }
                Err(error)
            }
        }
    }

    /// Inside the transaction that sets the new password: spends the code that
    /// [`Inner::check_reset_proof`] accepted. A code used by someone else in the
    /// meantime is [`AuthnError::InvalidCode`] and the reset rolls back (a race,
    /// not a guess: not counted).
    fn spend_reset_proof(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
        tenant: TenantId,
        user: UserId,
        proof: &ResetProof,
    ) -> Result<(), AuthnError> {
        match proof {
            ResetProof::Totp(code) => totp::verify(conn, self.offered(now, tenant, user, code)),
            ResetProof::RecoveryCode(code) => {
                recovery_codes::consume(conn, self.offered(now, tenant, user, code)).map(drop)
            }
            ResetProof::None | ResetProof::Passkey(_) => Ok(()),
        }
    }

    /// Sets the password credential to `phc`, creating it if the account has none
    /// (after an administrator's reset), and signs the user out everywhere for
    /// `reason`: whoever held the old credentials is out.
    pub(crate) fn reset_password(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
        tenant: TenantId,
        user: UserId,
        phc: &str,
        reason: &str,
    ) -> Result<SignedOut, AuthnError> {
        let existing =
            credentials::list_for_user(conn, tenant, user, Some(CredentialKind::Password))?;
        match existing.split_first() {
            Some((current, extra)) => {
                credentials::replace_secret(conn, &self.cipher, current, phc.as_bytes())?;
                for stale in extra {
                    credentials::delete(conn, tenant, stale.id)?;
                }
            }
            None => {
                credentials::create(
                    conn,
                    &self.cipher,
                    now,
                    tenant,
                    user,
                    NewCredential {
                        kind: CredentialKind::Password,
                        label: None,
                        secret: phc.as_bytes(),
                    },
                )?;
            }
        }
        self.sign_out_everywhere(conn, now, tenant, user, reason)
    }

    /// Inside the credential change's transaction: ends every session, revokes every
    /// grant (offline ones too), voids outstanding reset links and cancels open
    /// factor recoveries of the user.
    fn sign_out_everywhere(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
        tenant: TenantId,
        user: UserId,
        reason: &str,
    ) -> Result<SignedOut, AuthnError> {
        let sessions = sessions::end_all_for_user(conn, now, tenant, user, None, reason)?;
        let grants = grants::revoke_for_user(conn, now, tenant, user, reason)?;
        one_time_tokens::revoke_for_user(conn, now, tenant, user, Purpose::PasswordReset)?;
        account_recoveries::cancel_open_for_user(conn, now, tenant, user, reason)?;
        Ok(SignedOut { sessions, grants })
    }

    /// After the commit: back-channel logout for the ended sessions, and every node
    /// hears that the credentials changed.
    fn announce_reset(&self, tenant: TenantId, user: UserId, sessions: Vec<SessionId>) {
        self.sessions_ended(tenant, user, sessions);
        self.credentials_changed(tenant, user);
    }

    /// Whether the user added (or passed) a second factor since `since`: then it
    /// is not lost, and a recovery started at `since` must not remove it. Uses
    /// cancel recoveries as they happen (`factor_attempts::cancel_recoveries_on_factor_use`); this
    /// catches factors enrolled during the wait, and is a second look at uses.
    fn factor_used_since(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<bool, AuthnError> {
        let after = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at > since);
        Ok(credentials::list_for_user(conn, tenant, user, None)?
            .iter()
            .any(|credential| match credential.kind {
                // `last_used_at` records confirmation and each accepted code.
                CredentialKind::Totp => after(credential.last_used_at),
                CredentialKind::Webauthn => {
                    after(Some(credential.created_at)) || after(credential.last_used_at)
                }
                // A new set needs a signed-in, stepped-up user.
                CredentialKind::RecoveryCode => after(Some(credential.created_at)),
                _ => false,
            }))
    }
}

impl Authn {
    /// "Forgot password": mails a reset link to the account whose primary address is
    /// `identifier_email`. `Ok(())` whether or not there is such an (active)
    /// account. [`AuthnError::Throttled`] when the address or the client IP asked
    /// too often (counted alike for unknown addresses); [`AuthnError::InvalidEmail`]
    /// for something that is no address at all.
    ///
    /// Enumeration rule (docs/architecture.md, invariants): the request path does
    /// only what every address gets — the counts. Looking the account up, revoking
    /// older links, issuing the new one, auditing and mailing happen after the
    /// answer, in the background.
    pub async fn request_password_reset(
        &self,
        tenant: TenantId,
        identifier_email: String,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let identifier = identifier_email.trim().to_owned();
        if !valid_email(&identifier) {
            return Err(AuthnError::InvalidEmail);
        }
        self.blocking({
            let (identifier, client) = (identifier.clone(), client.clone());
            move |inner, conn| {
                let Err(error) = inner.count_reset_request(conn, tenant, &identifier, &client)
                else {
                    return Ok(());
                };
                if matches!(error, AuthnError::Throttled { .. }) {
                    inner.audit(
                        conn,
                        tenant,
                        "anonymous".into(),
                        "recovery.requested",
                        None,
                        Outcome::Denied,
                        &client,
                        json!({ "identifier": fold_key(&identifier) }),
                    )?;
                }
                Err(error)
            }
        })
        .await?;
        let request = MailRequest::new(tenant, identifier, links, client);
        self.mail_in_background("password reset", request, Inner::password_reset_mail);
        Ok(())
    }

    /// Reads a reset link without spending it and says what the user must prove
    /// next. [`AuthnError::InvalidLink`] for an unknown, expired or used link (or an
    /// account deactivated since), [`AuthnError::Throttled`] while the client's IP is
    /// locked for bad links.
    pub async fn open_password_reset(
        &self,
        tenant: TenantId,
        token: String,
        client: ClientInfo,
    ) -> Result<ResetTicket, AuthnError> {
        self.blocking(move |inner, conn| {
            let user = inner.reset_link_user(conn, tenant, &token, &client)?;
            let factors = inner.owned_factors(conn, tenant, user.id)?;
            inner.audit_own_account(
                conn,
                tenant,
                user.id,
                "recovery.link_opened",
                &client,
                json!({ "second_factor_required": factors.any() }),
            )?;
            Ok(factors.ticket(user.id))
        })
        .await
    }

    /// Sets a new password with a reset link, and with `proof` when the account has
    /// a second factor; then ends every session and grant of the user and mails a
    /// notice. The link is spent only on success.
    ///
    /// Errors: [`AuthnError::InvalidLink`]; [`AuthnError::PasswordPolicy`] (checked
    /// first, so no code is spent on a password that is refused);
    /// [`AuthnError::SecondFactorRequired`] without a proof;
    /// [`AuthnError::InvalidCode`] for a wrong code; [`AuthnError::PasskeyRejected`]
    /// for an assertion that does not verify or comes from another account's passkey,
    /// [`AuthnError::ChallengeInvalid`] for one that answers no reset ceremony of this
    /// link and browser (or one already answered);
    /// [`AuthnError::NotEnrolled`] for a factor the account does not have;
    /// [`AuthnError::Throttled`] once the factor (or the client IP) is locked.
    ///
    /// The proof is checked before the password is hashed and a code spent only in
    /// the transaction that writes the password.
    pub async fn complete_password_reset(
        &self,
        tenant: TenantId,
        token: String,
        proof: ResetProof,
        new_password: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let (user, proven, proof) = self
            .blocking({
                let (token, client, new_password) =
                    (token.clone(), client.clone(), new_password.clone());
                move |inner, conn| {
                    let user = inner.reset_link_user(conn, tenant, &token, &client)?;
                    inner.policy.check(&new_password, &password_inputs(&user))?;
                    let factors = inner.owned_factors(conn, tenant, user.id)?;
                    let proven = if factors.any() {
                        Some(inner.check_reset_proof(
                            conn, tenant, &token, user.id, &factors, &proof, &client,
                        )?)
                    } else {
                        None
                    };
                    Ok((user, proven, proof))
                }
            })
            .await?;
        let phc = self.hash_between_steps(new_password).await?;
        let notice = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                let signed_out = db::transaction_with(conn, |conn| {
                    let spent = spend_reset_link(conn, now, tenant, &token, user.id)?;
                    let address_verified = verify_invited_address(conn, now, tenant, &spent)?;
                    if proven.is_some() {
                        inner.spend_reset_proof(conn, now, tenant, user.id, &proof)?;
                    }
                    let signed_out =
                        inner.reset_password(conn, now, tenant, user.id, &phc, "password_reset")?;
                    inner.audit_own_account(
                        conn,
                        tenant,
                        user.id,
                        "recovery.completed",
                        &client,
                        json!({
                            "second_factor": proven,
                            "sessions_ended": signed_out.sessions.len(),
                            "grants_revoked": signed_out.grants,
                            "address_verified": address_verified,
                        }),
                    )?;
                    Ok::<_, AuthnError>(signed_out)
                })?;
                inner.announce_reset(tenant, user.id, signed_out.sessions);
                Ok(changed_notice(&user, SignInChange::PasswordReset, &client))
            })
            .await?;
        self.send_notice(tenant, notice).await;
        Ok(())
    }

    /// The owner of an account with second factors lost all of them: from an opened
    /// reset link (which this spends), starts a recovery that can complete after the
    /// cooling-off, and mails the owner the completion and cancel links at once.
    /// A newer recovery replaces an open one (and waits the full period again).
    ///
    /// Errors: [`AuthnError::InvalidLink`]; [`AuthnError::NotEnrolled`] when the
    /// account has no second factor (the link alone resets the password);
    /// [`AuthnError::Mail`] when the notice could not be sent, in which case the
    /// recovery is cancelled again: none runs without its owner being told.
    pub async fn request_factor_recovery(
        &self,
        tenant: TenantId,
        token: String,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<FactorRecoveryStarted, AuthnError> {
        let (recovery, mail) = self
            .blocking(move |inner, conn| {
                let user = inner.reset_link_user(conn, tenant, &token, &client)?;
                if !inner.owned_factors(conn, tenant, user.id)?.any() {
                    return Err(AuthnError::NotEnrolled);
                }
                let Some(address) = user.primary_email().map(|e| e.value.clone()) else {
                    return Err(AuthnError::InvalidLink);
                };
                let (recovery_token, recovery_token_hash) = secrets::generate();
                let (cancel_token, cancel_token_hash) = secrets::generate();
                let now = inner.now();
                let recovery = db::transaction_with(conn, |conn| {
                    spend_reset_link(conn, now, tenant, &token, user.id)?;
                    one_time_tokens::revoke_for_user(
                        conn,
                        now,
                        tenant,
                        user.id,
                        Purpose::PasswordReset,
                    )?;
                    let recovery = account_recoveries::start(
                        conn,
                        now,
                        tenant,
                        NewRecovery {
                            user: user.id,
                            recovery_token_hash: &recovery_token_hash,
                            cancel_token_hash: &cancel_token_hash,
                            cooling_off: inner.settings.factor_recovery_cooling_off,
                            completion_window: inner.settings.factor_recovery_window,
                        },
                    )?;
                    inner.audit_own_account(
                        conn,
                        tenant,
                        user.id,
                        "recovery.factor_recovery_started",
                        &client,
                        json!({
                            "recovery": recovery.id,
                            "ready_at": recovery.ready_at.to_rfc3339(),
                        }),
                    )?;
                    Ok::<_, AuthnError>(recovery)
                })?;
                let mail = Mail {
                    to: address,
                    locale: client.locale.clone(),
                    kind: MailKind::FactorRecovery {
                        cancel_link: link(&links, CANCEL_PATH, &cancel_token),
                        complete_link: link(&links, FACTOR_RECOVERY_PATH, &recovery_token),
                        ready_at: recovery.ready_at,
                        expires_at: recovery.expires_at,
                    },
                };
                Ok((recovery, mail))
            })
            .await?;
        if let Err(error) = self.send_mail(tenant, mail).await {
            let id = recovery.id.clone();
            let user = recovery.user_id;
            self.blocking(move |inner, conn| {
                if account_recoveries::cancel(conn, inner.now(), tenant, &id, "notice_not_sent")? {
                    inner.audit(
                        conn,
                        tenant,
                        "system".into(),
                        "recovery.factor_recovery_cancelled",
                        Some(format!("user:{user}")),
                        Outcome::Failure,
                        &ClientInfo::default(),
                        json!({ "recovery": id, "reason": "notice_not_sent" }),
                    )?;
                }
                Ok(())
            })
            .await?;
            return Err(error);
        }
        Ok(FactorRecoveryStarted {
            ready_at: recovery.ready_at,
            expires_at: recovery.expires_at,
        })
    }

    /// The owner's "this was not me": cancels the factor recovery behind a cancel
    /// link, and voids any outstanding reset link of the account (someone else may
    /// hold one). [`AuthnError::InvalidLink`] for an unknown or used cancel link, or
    /// a recovery already completed or void.
    pub async fn cancel_factor_recovery(
        &self,
        tenant: TenantId,
        cancel_token: String,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        self.blocking(move |inner, conn| {
            inner.ensure_links_allowed(conn, tenant, &client)?;
            let now = inner.now();
            let cancelled = db::transaction_with(conn, |conn| {
                let Some(recovery) = account_recoveries::cancel_by_token(
                    conn,
                    now,
                    tenant,
                    &secrets::digest(&cancel_token),
                    "cancelled_by_owner",
                )?
                else {
                    return Ok(false);
                };
                let user = recovery.user_id;
                one_time_tokens::revoke_for_user(conn, now, tenant, user, Purpose::PasswordReset)?;
                inner.audit_own_account(
                    conn,
                    tenant,
                    user,
                    "recovery.factor_recovery_cancelled",
                    &client,
                    json!({ "recovery": recovery.id, "reason": "cancelled_by_owner" }),
                )?;
                Ok::<_, AuthnError>(true)
            })?;
            if cancelled {
                Ok(())
            } else {
                inner.invalid_link(conn, tenant, &client)
            }
        })
        .await
    }

    /// Reads a factor recovery's link without spending anything, for its page:
    /// whether it waits (and until when), can complete, or was cancelled.
    /// [`AuthnError::InvalidLink`] for an unknown, completed or expired link (counted
    /// like any bad link), [`AuthnError::Throttled`] while the client's IP is locked.
    pub async fn open_factor_recovery(
        &self,
        tenant: TenantId,
        recovery_token: String,
        client: ClientInfo,
    ) -> Result<FactorRecoveryStatus, AuthnError> {
        self.blocking(move |inner, conn| {
            inner.ensure_links_allowed(conn, tenant, &client)?;
            let Some(recovery) = account_recoveries::find_by_recovery_token(
                conn,
                tenant,
                &secrets::digest(&recovery_token),
            )?
            else {
                return inner.invalid_link(conn, tenant, &client);
            };
            match recovery.state(inner.now()) {
                RecoveryState::Waiting => Ok(FactorRecoveryStatus::Waiting {
                    ready_at: recovery.ready_at,
                }),
                RecoveryState::Ready => Ok(FactorRecoveryStatus::Ready {
                    expires_at: recovery.expires_at,
                }),
                RecoveryState::Cancelled => Ok(FactorRecoveryStatus::Cancelled),
                RecoveryState::Completed | RecoveryState::Expired => {
                    inner.invalid_link(conn, tenant, &client)
                }
            }
        })
        .await
    }

    /// Completes a factor recovery after its cooling-off: removes every second
    /// factor, sets `new_password`, ends every session and grant, and mails a notice.
    ///
    /// Errors: [`AuthnError::RecoveryNotReady`] during the cooling-off;
    /// [`AuthnError::RecoveryCancelled`] once cancelled (by the owner, by a newer
    /// recovery, by a reset passed with a factor, or here, because a second factor
    /// was used or added since the start); [`AuthnError::InvalidLink`] for an unknown,
    /// used or void link; [`AuthnError::PasswordPolicy`].
    pub async fn complete_factor_recovery(
        &self,
        tenant: TenantId,
        recovery_token: String,
        new_password: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let (recovery, user) = self
            .blocking({
                let (client, new_password) = (client.clone(), new_password.clone());
                move |inner, conn| {
                    inner.ensure_links_allowed(conn, tenant, &client)?;
                    let now = inner.now();
                    let Some(recovery) = account_recoveries::find_by_recovery_token(
                        conn,
                        tenant,
                        &secrets::digest(&recovery_token),
                    )?
                    else {
                        return inner.invalid_link(conn, tenant, &client);
                    };
                    match recovery.state(now) {
                        RecoveryState::Waiting => {
                            return Err(AuthnError::RecoveryNotReady {
                                ready_at: recovery.ready_at,
                            });
                        }
                        RecoveryState::Cancelled => return Err(AuthnError::RecoveryCancelled),
                        RecoveryState::Completed | RecoveryState::Expired => {
                            return inner.invalid_link(conn, tenant, &client);
                        }
                        RecoveryState::Ready => {}
                    }
                    let user = users::get(conn, tenant, recovery.user_id)?;
                    if !user.data.active {
                        return Err(AuthnError::InvalidLink);
                    }
                    if inner.factor_used_since(conn, tenant, user.id, recovery.created_at)? {
                        if account_recoveries::cancel(
                            conn,
                            now,
                            tenant,
                            &recovery.id,
                            "second_factor_used",
                        )? {
                            inner.audit(
                                conn,
                                tenant,
                                "system".into(),
                                "recovery.factor_recovery_cancelled",
                                Some(format!("user:{}", user.id)),
                                Outcome::Denied,
                                &client,
                                json!({ "recovery": recovery.id, "reason": "second_factor_used" }),
                            )?;
                        }
                        return Err(AuthnError::RecoveryCancelled);
                    }
                    inner.policy.check(&new_password, &password_inputs(&user))?;
                    Ok((recovery, user))
                }
            })
            .await?;
        // `complete` below re-checks the recovery's state.
        let phc = self.hash_between_steps(new_password).await?;
        let notice = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                let (removed, signed_out) = db::transaction_with(conn, |conn| {
                    if !account_recoveries::complete(conn, now, tenant, &recovery.id)? {
                        // Cancelled or completed by a concurrent request meanwhile.
                        let state = account_recoveries::get(conn, tenant, &recovery.id)?
                            .map(|r| r.state(now));
                        return Err(if state == Some(RecoveryState::Cancelled) {
                            AuthnError::RecoveryCancelled
                        } else {
                            AuthnError::InvalidLink
                        });
                    }
                    let removed = remove_second_factors(conn, tenant, user.id)?;
                    let signed_out = inner.reset_password(
                        conn,
                        now,
                        tenant,
                        user.id,
                        &phc,
                        "factor_recovery",
                    )?;
                    inner.audit_own_account(
                        conn,
                        tenant,
                        user.id,
                        "recovery.factor_recovery_completed",
                        &client,
                        json!({
                            "recovery": recovery.id,
                            "factors_removed": removed,
                            "sessions_ended": signed_out.sessions.len(),
                            "grants_revoked": signed_out.grants,
                        }),
                    )?;
                    Ok::<_, AuthnError>((removed, signed_out))
                })?;
                tracing::debug!(removed, "second factors removed by a recovery");
                inner.announce_reset(tenant, user.id, signed_out.sessions);
                Ok(changed_notice(
                    &user,
                    SignInChange::FactorsRecovered,
                    &client,
                ))
            })
            .await?;
        self.send_notice(tenant, notice).await;
        Ok(())
    }

    /// An administrator-assisted reset of `user`, for someone whose identity the
    /// administrator checked by other means: removes every second factor and the
    /// password, ends every session and grant, voids outstanding links and
    /// recoveries, and mails the user a reset link to choose a new password. Audited
    /// with `admin_actor` as the actor and `reason` in the details.
    /// [`AuthnError::InvalidEmail`] (and nothing changed) when the user has no
    /// address to send the link to.
    pub async fn admin_reset(
        &self,
        tenant: TenantId,
        admin_actor: String,
        user: UserId,
        reason: String,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<AdminResetOutcome, AuthnError> {
        let (outcome, mail) = self
            .blocking(move |inner, conn| {
                let user = users::get(conn, tenant, user)?;
                let Some(address) = user.primary_email().map(|e| e.value.clone()) else {
                    return Err(AuthnError::InvalidEmail);
                };
                let now = inner.now();
                let lifetime = inner.settings.password_reset_link_lifetime;
                let (token, token_hash) = secrets::generate();
                let outcome = db::transaction_with(conn, |conn| {
                    let signed_out =
                        inner.sign_out_everywhere(conn, now, tenant, user.id, "admin_reset")?;
                    let factors_removed = remove_second_factors(conn, tenant, user.id)?;
                    let passwords = credentials::delete_kind_for_user(
                        conn,
                        tenant,
                        user.id,
                        CredentialKind::Password,
                    )?;
                    one_time_tokens::issue(
                        conn,
                        now,
                        tenant,
                        user.id,
                        Purpose::PasswordReset,
                        &token_hash,
                        lifetime,
                        &json!({ "admin_reset": true }),
                    )?;
                    inner.audit(
                        conn,
                        tenant,
                        admin_actor.clone(),
                        "recovery.admin_reset",
                        Some(format!("user:{}", user.id)),
                        Outcome::Success,
                        &client,
                        json!({
                            "reason": reason,
                            "factors_removed": factors_removed,
                            "password_removed": passwords > 0,
                            "sessions_ended": signed_out.sessions.len(),
                            "grants_revoked": signed_out.grants,
                        }),
                    )?;
                    Ok::<_, AuthnError>((signed_out, factors_removed))
                })?;
                let (signed_out, factors_removed) = outcome;
                let outcome = AdminResetOutcome {
                    factors_removed,
                    sessions_ended: signed_out.sessions.clone(),
                    grants_revoked: signed_out.grants,
                    link_sent: false,
                };
                inner.announce_reset(tenant, user.id, signed_out.sessions);
                let mail = Mail {
                    to: address,
                    locale: client.locale.clone(),
                    kind: MailKind::AdminReset {
                        link: link(&links, RESET_PATH, &token),
                        valid_minutes: lifetime.num_minutes(),
                    },
                };
                Ok((outcome, mail))
            })
            .await?;
        let link_sent = match self.send_mail(tenant, mail).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "the reset link of an administrator's reset could not be sent");
                false
            }
        };
        Ok(AdminResetOutcome {
            link_sent,
            ..outcome
        })
    }

    /// Hashes a reset's new password on the hashing pool, between its two database
    /// steps: no pooled connection waits for Argon2.
    async fn hash_between_steps(
        &self,
        new_password: Zeroizing<String>,
    ) -> Result<Zeroizing<String>, AuthnError> {
        let phc = self
            .hashing(move |hasher, _| hasher.hash(&new_password))
            .await??;
        Ok(Zeroizing::new(phc))
    }

    /// Sends the after-reset notice. The reset has happened; a mail failure is
    /// logged, not turned into an error page for a change that was made.
    async fn send_notice(&self, tenant: TenantId, notice: Option<Mail>) {
        if let Some(mail) = notice
            && let Err(error) = self.send_mail(tenant, mail).await
        {
            tracing::error!(%error, "the notice of an account reset could not be sent");
        }
    }
}

/// What needs the service's hashing pool; the rest is in `tests/authn/recovery.rs`.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gatehouse_core::Clock;
    use gatehouse_identity_store::Backend;

    use super::*;
    use crate::testing::kit::{Kit, KitOptions, SeedUser, client_from, runtime, seed_user};

    const NEW: &str = "copper-meadow-ninety-owls-drift";

    fn a_failed_hash_spends_neither_the_code_nor_the_link(backend: Backend) {
        let kit = Kit::with(
            backend,
            KitOptions {
                hashing: Some((1, 1)),
                ..KitOptions::default()
            },
            |_| {},
        );
        let (tenant, now) = (kit.t(), kit.clock.now());
        let user = seed_user(
            &kit.pool,
            &kit.cipher,
            now,
            tenant,
            SeedUser::new("ann@example.com"),
        );
        let codes = recovery_codes::generate(&mut kit.conn(), &kit.cipher, now, tenant, user)
            .unwrap()
            .codes()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let token = kit.reset_link(user);
        let reset = || {
            kit.authn.complete_password_reset(
                tenant,
                token.clone(),
                ResetProof::RecoveryCode(Zeroizing::new(codes[0].clone())),
                Zeroizing::new(NEW.into()),
                client_from("203.0.113.5"),
            )
        };
        runtime().block_on(async {
            // The one worker busy and the one queue place taken: the hash is refused.
            let hashing = &kit.authn.inner.hashing;
            let (release, done) = hashing.occupy_one_worker();
            let queued = hashing.submit(|_| ()).ok().unwrap();
            let refused = reset().await;
            assert!(matches!(refused, Err(AuthnError::Busy)), "{refused:?}");
            assert_eq!(
                recovery_codes::remaining(&mut kit.conn(), tenant, user).unwrap(),
                recovery_codes::COUNT,
                "the code was checked, not spent"
            );
            drop(release);
            done.await.unwrap();
            queued.await.unwrap();

            // The same code and link work once the pool has room.
            reset().await.unwrap();
            assert_eq!(
                recovery_codes::remaining(&mut kit.conn(), tenant, user).unwrap(),
                recovery_codes::COUNT - 1
            );
        });
    }

    gatehouse_identity_store::on_both_backends!(a_failed_hash_spends_neither_the_code_nor_the_link);
}
