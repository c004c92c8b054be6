//! TOTP second factor (RFC 6238): enrolment, verification and removal.
//!
//! One authenticator app per user, stored as a `totp` credential. Its sealed data
//! holds the secret, whether the enrolment is confirmed and the last accepted time
//! step. An enrolment stays pending, useless for signing in, until a valid code
//! confirms it, and a pending one can be confirmed only for
//! [`ENROLMENT_LIFETIME_MINUTES`].
//!
//! Codes are SHA-1, six digits, 30-second steps, accepted one step either side of
//! the server's clock. A code is accepted only for a step later than the last one
//! accepted, and the credential row is locked while that is checked and moved on, so
//! neither a replay nor two concurrent submissions of one code pass twice.
//!
//! Failures are counted per user in `rate_limits` (bucket [`bucket`]); the factor
//! locks after a few, for longer with each further one. Call these functions outside
//! a transaction of your own: a failed attempt is counted in its own commit, which
//! an enclosing transaction would roll back with the failure.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::{CredentialId, TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::credentials::{self, Credential, CredentialKind, NewCredential};
use gatehouse_identity_store::tenants::Tenant;
use gatehouse_identity_store::users::User;
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::AuthnError;
use crate::factor_attempts::attempt;
use crate::second_factor::OfferedCode;

/// Digits per code. Six is what every authenticator app shows by default.
pub const DIGITS: u8 = 6;
/// Seconds per time step: RFC 6238's default, and the only period many apps support.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted either side of the server's clock, for phones that drift and
/// users who type slowly.
pub const TOLERANCE_STEPS: u64 = 1;
/// How long a pending enrolment can be confirmed. The secret was shown on a page;
/// an enrolment abandoned there should not become confirmable days later.
pub const ENROLMENT_LIFETIME_MINUTES: i64 = 30;

/// The rate-limit bucket for a user's TOTP attempts (enrolment and verification).
pub fn bucket(user: UserId) -> String {
    format!("totp:{user}")
}

/// What the enrolment page shows once: the QR code and, for typing in, the key as
/// text. None of it is stored in clear or can be shown again.
pub struct Enrolment {
    /// The pending credential; [`confirm_enrolment`] names it, so a code typed on an
    /// old page cannot confirm a newer secret.
    pub credential: CredentialId,
    /// The key in base32 (RFC 4648, no padding), for apps that cannot scan.
    pub secret_base32: Zeroizing<String>,
    /// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…`.
    pub uri: Zeroizing<String>,
    /// The URI as a QR code: a `data:image/png;base64,…` URI for an `<img src>`.
    pub qr_code: Zeroizing<String>,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolment")
            .field("credential", &self.credential)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A confirmed TOTP factor, as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpFactor {
    pub credential: CredentialId,
    pub enrolled_at: DateTime<Utc>,
    /// The last successful verification (confirmation included).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The credential's sealed data. Versioned by the credential kind: a new layout
/// would be a new kind.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Payload {
    /// Base32, as in the otpauth URI.
    secret: String,
    active: bool,
    /// The last time step (Unix seconds / [`STEP_SECONDS`]) a code was accepted for.
    last_step: Option<u64>,
}

impl Payload {
    fn open(credential: &Credential, cipher: &Cipher) -> Result<Payload, AuthnError> {
        let bytes = credential.secret(cipher)?;
        // The serde message could quote the data, so it stays out of the error.
        serde_json::from_slice(&bytes).map_err(|_| {
            AuthnError::Internal(format!("TOTP credential {} is unreadable", credential.id))
        })
    }

    fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, AuthnError> {
        serde_json::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|e| AuthnError::Internal(format!("encoding a TOTP credential: {e}")))
    }

    /// The step `code` is valid for within the tolerance and after the last accepted
    /// step; the earliest such step, so a later code of the window stays usable.
    fn accepts(&self, code: &str, now: DateTime<Utc>) -> Result<Option<u64>, AuthnError> {
        let Some(code) = normalise(code) else {
            return Ok(None);
        };
        let secret = Secret::try_from_base32(&self.secret)
            .map_err(|_| AuthnError::Internal("a stored TOTP secret is not base32".into()))?;
        matching_step(&generator(secret)?, &code, now, self.last_step)
    }
}

/// Apps show codes as `123 456`; some users type `123-456`.
fn normalise(code: &str) -> Option<Zeroizing<String>> {
    let code: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect(),
    );
    (code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// A code generator for exactly one step: the tolerance and the replay rule are
/// applied here, step by step, not by totp-rs's own window.
fn generator(secret: Secret) -> Result<Totp, AuthnError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECONDS)
        .with_skew(0)
        .with_secret(secret)
        .build()
        .map_err(|e| AuthnError::Internal(format!("TOTP parameters: {e}")))
}

fn unix_seconds(now: DateTime<Utc>) -> Result<u64, AuthnError> {
    u64::try_from(now.timestamp())
        .map_err(|_| AuthnError::Internal("the clock is before 1970".into()))
}

fn matching_step(
    totp: &Totp,
    code: &str,
    now: DateTime<Utc>,
    last_step: Option<u64>,
) -> Result<Option<u64>, AuthnError> {
    let current = unix_seconds(now)? / STEP_SECONDS;
    Ok(
        (current.saturating_sub(TOLERANCE_STEPS)..=current + TOLERANCE_STEPS)
            .filter(|step| last_step.is_none_or(|last| *step > last))
            .find(|step| totp.check(code, step * STEP_SECONDS).is_some()),
    )
}

/// otpauth labels use `:` between issuer and account, so neither may contain one.
fn label_part(value: &str, fallback: &str) -> String {
    let cleaned = value
        .replace(':', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned
    }
}

/// Starts an enrolment: a new 160-bit secret (RFC 4226's recommendation, what
/// `Secret::generate` makes) as a pending credential, replacing any
/// earlier pending one. Fails with [`AuthnError::AlreadyEnrolled`] while a confirmed
/// factor exists: replacing one is "remove" (a sensitive action) and then "add".
pub fn begin_enrolment(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: &Tenant,
    user: &User,
) -> Result<Enrolment, AuthnError> {
    let secret = Secret::generate();
    let (uri, qr_code) = presentation(secret.clone(), tenant, user)?;
    let payload = Payload {
        secret: secret.to_base32(),
        active: false,
        last_step: None,
    };
    let data = payload.to_bytes()?;

    let candidates =
        credentials::list_for_user(conn, tenant.id, user.id, Some(CredentialKind::Totp))?;
    let credential = db::transaction_with(conn, |conn| {
        for earlier in candidates {
            let earlier = match lock(conn, now, tenant.id, user.id, earlier.id) {
                Ok(earlier) => earlier,
                // Gone since it was listed: nothing left to replace.
                Err(AuthnError::NotEnrolled) => continue,
                Err(other) => return Err(other),
            };
            if Payload::open(&earlier, cipher)?.active {
                return Err(AuthnError::AlreadyEnrolled);
            }
            credentials::delete(conn, tenant.id, earlier.id)?;
        }
        Ok(credentials::create(
            conn,
            cipher,
            now,
            tenant.id,
            user.id,
            NewCredential {
                kind: CredentialKind::Totp,
                label: None,
                secret: &data,
            },
        )?)
    })?;
    Ok(Enrolment {
        credential: credential.id,
        secret_base32: Zeroizing::new(payload.secret.clone()),
        uri,
        qr_code,
        expires_at: credential.created_at + Duration::minutes(ENROLMENT_LIFETIME_MINUTES),
    })
}

/// The otpauth URI and its QR code (a `data:` URI) for a secret.
fn presentation(
    secret: Secret,
    tenant: &Tenant,
    user: &User,
) -> Result<(Zeroizing<String>, Zeroizing<String>), AuthnError> {
    let account = user
        .primary_email()
        .map(|email| email.value.as_str())
        .unwrap_or(&user.data.user_name);
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .with_issuer(Some(label_part(&tenant.display_name, &tenant.slug)))
        .with_account_name(label_part(account, &user.id.to_string()))
        .build()
        .map_err(|e| AuthnError::Internal(format!("TOTP parameters: {e}")))?;
    // totp-rs errors here would quote the URI, secret included: never pass them on.
    let uri = Zeroizing::new(
        totp.to_url()
            .map_err(|_| AuthnError::Internal("building the otpauth URI failed".into()))?,
    );
    let png = Zeroizing::new(
        totp.to_qr_base64()
            .map_err(|_| AuthnError::Internal("drawing the TOTP QR code failed".into()))?,
    );
    Ok((
        uri,
        Zeroizing::new(format!("data:image/png;base64,{}", png.as_str())),
    ))
}

/// A pending enrolment shown again (after a mistyped code), while it can still be
/// confirmed; [`AuthnError::NotEnrolled`] when it is confirmed, expired or gone.
pub fn reopen_enrolment(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: &Tenant,
    user: &User,
    enrolment: CredentialId,
) -> Result<Enrolment, AuthnError> {
    let credential = match credentials::get(conn, tenant.id, enrolment) {
        Ok(credential) => credential,
        Err(StoreError::NotFound { .. }) => return Err(AuthnError::NotEnrolled),
        Err(other) => return Err(other.into()),
    };
    let expires_at = credential.created_at + Duration::minutes(ENROLMENT_LIFETIME_MINUTES);
    if credential.user_id != user.id || credential.kind != CredentialKind::Totp || now >= expires_at
    {
        return Err(AuthnError::NotEnrolled);
    }
    let payload = Payload::open(&credential, cipher)?;
    if payload.active {
        return Err(AuthnError::NotEnrolled);
    }
    let secret = Secret::try_from_base32(&payload.secret)
        .map_err(|_| AuthnError::Internal("a stored TOTP secret is not base32".into()))?;
    let (uri, qr_code) = presentation(secret, tenant, user)?;
    Ok(Enrolment {
        credential: credential.id,
        secret_base32: Zeroizing::new(payload.secret.clone()),
        uri,
        qr_code,
        expires_at,
    })
}

/// Activates the pending enrolment `enrolment` with a code from the app. The code
/// counts as used: it cannot sign in afterwards. Other pending enrolments of the
/// user go.
pub fn confirm_enrolment(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    enrolment: CredentialId,
    code: &str,
) -> Result<TotpFactor, AuthnError> {
    attempt(conn, now, tenant, &bucket(user), |conn| {
        db::transaction_with(conn, |conn| {
            let credential = lock(conn, now, tenant, user, enrolment)?;
            let mut payload = Payload::open(&credential, cipher)?;
            if payload.active {
                return Err(AuthnError::AlreadyEnrolled);
            }
            if now >= credential.created_at + Duration::minutes(ENROLMENT_LIFETIME_MINUTES) {
                return Err(AuthnError::NotEnrolled);
            }
            let step = payload.accepts(code, now)?.ok_or(AuthnError::InvalidCode)?;
            payload.active = true;
            payload.last_step = Some(step);
            credentials::replace_secret(conn, cipher, &credential, &payload.to_bytes()?)?;
            for other in credentials::list_for_user(conn, tenant, user, Some(CredentialKind::Totp))?
            {
                if other.id != enrolment {
                    credentials::delete(conn, tenant, other.id)?;
                }
            }
            Ok(TotpFactor {
                credential: credential.id,
                enrolled_at: credential.created_at,
                last_used_at: Some(now),
            })
        })
    })
}

/// Checks a code against the user's confirmed factor and spends its time step; an
/// accepted code cancels the user's waiting recoveries of lost factors in the same
/// transaction ([`crate::recovery`]). Wrong, too old, too new and already used
/// codes are one error,
/// [`AuthnError::InvalidCode`] (or [`AuthnError::Throttled`] once that locks the
/// factor); [`AuthnError::NotEnrolled`] when there is no confirmed factor.
pub fn verify(conn: &mut AnyConnection, offered: OfferedCode<'_>) -> Result<(), AuthnError> {
    let OfferedCode {
        cipher,
        now,
        tenant,
        user,
        code,
    } = offered;
    attempt_on_factor(conn, offered, |conn, factor| {
        db::transaction_with(conn, |conn| {
            let credential = lock(conn, now, tenant, user, factor.id)?;
            let mut payload = Payload::open(&credential, cipher)?;
            if !payload.active {
                return Err(AuthnError::NotEnrolled);
            }
            let step = payload.accepts(code, now)?.ok_or(AuthnError::InvalidCode)?;
            payload.last_step = Some(step);
            credentials::replace_secret(conn, cipher, &credential, &payload.to_bytes()?)?;
            // The app is at hand: a recovery claiming it lost must not go on.
            crate::factor_attempts::cancel_recoveries_on_factor_use(
                conn, cipher, now, tenant, user, "totp",
            )?;
            Ok(())
        })
    })
}

/// Whether `code` would be accepted now, without spending its step: for a step
/// that must be spent together with something else later ([`verify`] in that
/// transaction). Wrong codes count and lock as in [`verify`].
pub(crate) fn check(conn: &mut AnyConnection, offered: OfferedCode<'_>) -> Result<(), AuthnError> {
    attempt_on_factor(conn, offered, |_, factor| {
        Payload::open(&factor, offered.cipher)?
            .accepts(offered.code, offered.now)?
            .map(drop)
            .ok_or(AuthnError::InvalidCode)
    })
}

/// One attempt of `offered` on the user's confirmed factor (counted and locked under
/// the user's bucket); [`AuthnError::NotEnrolled`] when there is none.
fn attempt_on_factor<T>(
    conn: &mut AnyConnection,
    offered: OfferedCode<'_>,
    check: impl FnOnce(&mut AnyConnection, Credential) -> Result<T, AuthnError>,
) -> Result<T, AuthnError> {
    let (tenant, user) = (offered.tenant, offered.user);
    attempt(conn, offered.now, tenant, &bucket(user), |conn| {
        let factor =
            confirmed(conn, offered.cipher, tenant, user)?.ok_or(AuthnError::NotEnrolled)?;
        check(conn, factor)
    })
}

/// The user's confirmed factor, if any (pending enrolments are not factors).
pub fn enrolled(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<TotpFactor>, AuthnError> {
    Ok(
        confirmed(conn, cipher, tenant, user)?.map(|credential| TotpFactor {
            credential: credential.id,
            enrolled_at: credential.created_at,
            last_used_at: credential.last_used_at,
        }),
    )
}

/// Removes the user's factor and any pending enrolment; true if there was anything.
/// Whether the user may do so (a recent second-factor authentication) is the
/// caller's decision.
pub fn remove(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<bool, AuthnError> {
    Ok(credentials::delete_kind_for_user(conn, tenant, user, CredentialKind::Totp)? > 0)
}

/// Whether a credential is a confirmed TOTP factor (not a pending enrolment).
pub(crate) fn is_confirmed(credential: &Credential, cipher: &Cipher) -> Result<bool, AuthnError> {
    Ok(credential.kind == CredentialKind::Totp && Payload::open(credential, cipher)?.active)
}

fn confirmed(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<Credential>, AuthnError> {
    for credential in credentials::list_for_user(conn, tenant, user, Some(CredentialKind::Totp))? {
        if Payload::open(&credential, cipher)?.active {
            return Ok(Some(credential));
        }
    }
    Ok(None)
}

/// Locks the credential's row, then reads it; inside a transaction. `mark_used` is
/// the lock: a write, so PostgreSQL holds the row until commit and SQLite takes its
/// write lock before it has read anything (a read first would make the later write
/// fail instead of wait). A concurrent attempt waits here and then reads the step
/// this one accepted. A failed attempt rolls back, so `last_used_at` only records
/// successes.
fn lock(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    id: CredentialId,
) -> Result<Credential, AuthnError> {
    match credentials::mark_used(conn, now, tenant, id) {
        Err(StoreError::NotFound { .. }) => return Err(AuthnError::NotEnrolled),
        other => other?,
    }
    let credential = credentials::get(conn, tenant, id)?;
    if credential.user_id != user || credential.kind != CredentialKind::Totp {
        return Err(AuthnError::NotEnrolled);
    }
    Ok(credential)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Barrier;

    use gatehouse_core::secrets::MasterKey;
    use gatehouse_identity_store::tenants::{self, TenantData};
    use gatehouse_identity_store::users::{self, Email, UserData};

    use gatehouse_identity_store::rate_limits;

    use super::*;
    use crate::testing::kit::wrong_totp_code as wrong_code;
    use crate::testing::stored_credential_data;

    /// 2026-01-01T00:00:10Z: ten seconds into a step, so "one step earlier" and
    /// "two steps earlier" are unambiguous.
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_610, 0).unwrap()
    }

    fn seconds(n: i64) -> Duration {
        Duration::seconds(n)
    }

    struct Fixture {
        cipher: Cipher,
        tenant: Tenant,
        user: User,
    }

    fn fixture(conn: &mut AnyConnection) -> Fixture {
        let tenant = tenants::create(
            conn,
            t0(),
            TenantData {
                slug: "acme".into(),
                display_name: "Acme: Staff".into(),
                settings: serde_json::Map::new(),
            },
        )
        .unwrap();
        let user = users::create(
            conn,
            t0(),
            tenant.id,
            UserData {
                emails: vec![Email {
                    value: "alice@example.com".into(),
                    kind: None,
                    primary: true,
                    verified: true,
                }],
                ..UserData::new("alice")
            },
        )
        .unwrap();
        Fixture {
            cipher: Cipher::new(vec![MasterKey::generate()]).unwrap(),
            tenant,
            user,
        }
    }

    /// What the user's app shows at `at`.
    fn code(secret_base32: &str, at: DateTime<Utc>) -> String {
        let secret = Secret::try_from_base32(secret_base32).unwrap();
        generator(secret)
            .unwrap()
            .generate(unix_seconds(at).unwrap())
            .to_string()
    }

    impl Fixture {
        fn verify(
            &self,
            conn: &mut AnyConnection,
            at: DateTime<Utc>,
            code: &str,
        ) -> Result<(), AuthnError> {
            let offered = OfferedCode {
                cipher: &self.cipher,
                now: at,
                tenant: self.tenant.id,
                user: self.user.id,
                code,
            };
            verify(conn, offered)
        }

        /// Enrols and confirms at `at`; returns the secret.
        fn enrol(&self, conn: &mut AnyConnection, at: DateTime<Utc>) -> Zeroizing<String> {
            let enrolment =
                begin_enrolment(conn, &self.cipher, at, &self.tenant, &self.user).unwrap();
            let code = code(&enrolment.secret_base32, at);
            confirm_enrolment(
                conn,
                &self.cipher,
                at,
                self.tenant.id,
                self.user.id,
                enrolment.credential,
                &code,
            )
            .unwrap();
            enrolment.secret_base32
        }
    }

    #[test]
    fn the_rfc_6238_sha1_vectors_match() {
        // RFC 6238 appendix B, cut from eight digits to six.
        let totp = generator(Secret::from(b"12345678901234567890".to_vec())).unwrap();
        for (time, code, step) in [
            (59, "287082", 1),
            (1_111_111_109, "081804", 37_037_036),
            (1_234_567_890, "005924", 41_152_263),
        ] {
            let at = DateTime::from_timestamp(time, 0).unwrap();
            assert_eq!(matching_step(&totp, code, at, None).unwrap(), Some(step));
            assert_eq!(
                matching_step(&totp, code, at, Some(step)).unwrap(),
                None,
                "replay"
            );
        }
    }

    #[test]
    fn typed_codes_are_normalised_or_refused() {
        assert_eq!(normalise(" 123 456 ").unwrap().as_str(), "123456");
        assert_eq!(normalise("123-456").unwrap().as_str(), "123456");
        for bad in ["", "12345", "1234567", "12345a", "+12345", "١٢٣٤٥٦"] {
            assert!(normalise(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn failures_lock_after_a_few_and_longer_each_time() {
        assert_eq!(
            crate::factor_attempts::lock_for(crate::factor_attempts::LOCKOUT_THRESHOLD - 1),
            None
        );
        assert_eq!(
            crate::factor_attempts::lock_for(crate::factor_attempts::LOCKOUT_THRESHOLD),
            Some(Duration::minutes(1))
        );
        assert_eq!(
            crate::factor_attempts::lock_for(crate::factor_attempts::LOCKOUT_THRESHOLD + 1),
            Some(Duration::minutes(2))
        );
        assert_eq!(
            crate::factor_attempts::lock_for(crate::factor_attempts::LOCKOUT_THRESHOLD + 3),
            Some(Duration::minutes(8))
        );
        assert_eq!(
            crate::factor_attempts::lock_for(1_000),
            Some(Duration::minutes(1024))
        );
    }

    gatehouse_identity_store::backend_tests! {
        fn an_enrolment_is_pending_until_a_valid_code_confirms_it(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let enrolment = begin_enrolment(&mut conn, &f.cipher, t0(), &f.tenant, &f.user).unwrap();
            let secret = enrolment.secret_base32.clone();
            assert_eq!(Secret::try_from_base32(&*secret).unwrap().as_bytes().len(), 20, "160 bits");
            assert_eq!(
                enrolment.uri.as_str(),
                format!("otpauth://totp/Acme%20Staff:alice%40example.com?secret={}&issuer=Acme%20Staff", *secret),
            );
            assert!(enrolment.qr_code.starts_with("data:image/png;base64,iVBORw0KGgo"), "a PNG");
            assert!(!format!("{enrolment:?}").contains(secret.as_str()), "Debug shows the secret");
            assert_eq!(enrolment.expires_at, t0() + Duration::minutes(30));

            // Pending: not a factor yet.
            assert_eq!(enrolled(&mut conn, &f.cipher, f.tenant.id, f.user.id).unwrap(), None);
            assert!(matches!(f.verify(&mut conn, t0(), &code(&secret, t0())), Err(AuthnError::NotEnrolled)));

            let confirm = |conn: &mut AnyConnection, id: CredentialId, code: &str| {
                confirm_enrolment(conn, &f.cipher, t0(), f.tenant.id, f.user.id, id, code)
            };
            assert!(matches!(confirm(&mut conn, enrolment.credential, &wrong_code(&secret, t0())), Err(AuthnError::InvalidCode)));
            assert!(matches!(confirm(&mut conn, CredentialId::new(), &code(&secret, t0())), Err(AuthnError::NotEnrolled)));
            assert_eq!(enrolled(&mut conn, &f.cipher, f.tenant.id, f.user.id).unwrap(), None);

            let factor = confirm(&mut conn, enrolment.credential, &code(&secret, t0())).unwrap();
            assert_eq!(factor.credential, enrolment.credential);
            assert_eq!(enrolled(&mut conn, &f.cipher, f.tenant.id, f.user.id).unwrap(), Some(factor));
            assert!(matches!(confirm(&mut conn, enrolment.credential, &code(&secret, t0())), Err(AuthnError::AlreadyEnrolled)));
            // The code that confirmed the enrolment is spent.
            assert!(matches!(f.verify(&mut conn, t0(), &code(&secret, t0())), Err(AuthnError::InvalidCode)));
            assert!(matches!(
                begin_enrolment(&mut conn, &f.cipher, t0(), &f.tenant, &f.user),
                Err(AuthnError::AlreadyEnrolled)
            ));

            assert!(remove(&mut conn, f.tenant.id, f.user.id).unwrap());
            assert_eq!(enrolled(&mut conn, &f.cipher, f.tenant.id, f.user.id).unwrap(), None);
            let later = t0() + seconds(60);
            assert!(matches!(f.verify(&mut conn, later, &code(&secret, later)), Err(AuthnError::NotEnrolled)));
            assert!(!remove(&mut conn, f.tenant.id, f.user.id).unwrap());
        }

        fn a_newer_enrolment_replaces_a_pending_one_and_pending_ones_expire(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let first = begin_enrolment(&mut conn, &f.cipher, t0(), &f.tenant, &f.user).unwrap();
            let second = begin_enrolment(&mut conn, &f.cipher, t0(), &f.tenant, &f.user).unwrap();
            assert_ne!(first.secret_base32, second.secret_base32);
            let confirm = |conn: &mut AnyConnection, at, enrolment: &Enrolment| {
                confirm_enrolment(conn, &f.cipher, at, f.tenant.id, f.user.id, enrolment.credential, &code(&enrolment.secret_base32, at))
            };
            assert!(matches!(confirm(&mut conn, t0(), &first), Err(AuthnError::NotEnrolled)), "the old page's secret");

            let expired = t0() + Duration::minutes(ENROLMENT_LIFETIME_MINUTES);
            assert!(matches!(confirm(&mut conn, expired, &second), Err(AuthnError::NotEnrolled)));

            let third = begin_enrolment(&mut conn, &f.cipher, expired, &f.tenant, &f.user).unwrap();
            confirm(&mut conn, expired, &third).unwrap();
            assert_eq!(
                credentials::list_for_user(&mut conn, f.tenant.id, f.user.id, Some(CredentialKind::Totp)).unwrap().len(),
                1,
                "only the confirmed factor is left"
            );
        }

        fn codes_pass_one_step_either_side_and_never_twice(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let secret = f.enrol(&mut conn, t0() - Duration::minutes(10));
            let at = |offset: i64| code(&secret, t0() + seconds(offset));
            let invalid = |result: Result<(), AuthnError>| matches!(result, Err(AuthnError::InvalidCode));

            assert!(invalid(f.verify(&mut conn, t0(), &at(-60))), "two steps old");
            assert!(invalid(f.verify(&mut conn, t0(), &at(60))), "two steps ahead");
            f.verify(&mut conn, t0(), &at(-30)).expect("the previous step");
            assert!(invalid(f.verify(&mut conn, t0(), &at(-30))), "replayed");
            f.verify(&mut conn, t0(), &at(0)).expect("the current step");
            assert!(invalid(f.verify(&mut conn, t0(), &at(0))), "replayed");

            // Half a minute on, that code is the previous step's: in the window, but used.
            let later = t0() + seconds(30);
            assert!(invalid(f.verify(&mut conn, later, &at(0))), "replayed a step later");
            f.verify(&mut conn, later, &at(60)).expect("the next step");
            assert!(invalid(f.verify(&mut conn, later, &wrong_code(&secret, later))));
            assert!(invalid(f.verify(&mut conn, later, "12345")));
            assert!(invalid(f.verify(&mut conn, later, "abcdef")));

            let much_later = t0() + Duration::minutes(5);
            let spaced = code(&secret, much_later);
            f.verify(&mut conn, much_later, &format!("{} {}", &spaced[..3], &spaced[3..])).expect("as the app shows it");
            let factor = enrolled(&mut conn, &f.cipher, f.tenant.id, f.user.id).unwrap().unwrap();
            assert_eq!(factor.last_used_at, Some(much_later));
            assert_eq!(rate_limits::get(&mut conn, f.tenant.id, &bucket(f.user.id)).unwrap(), None, "a success forgets failures");
        }

        fn concurrent_submissions_of_one_code_pass_once(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let secret = f.enrol(&mut conn, t0() - Duration::minutes(10));
            drop(conn);
            let code = code(&secret, t0());
            let barrier = Barrier::new(4);
            let results: Vec<Result<(), AuthnError>> = std::thread::scope(|scope| {
                let attempts: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut conn = db.conn();
                            barrier.wait();
                            f.verify(&mut conn, t0(), &code)
                        })
                    })
                    .collect();
                attempts.into_iter().map(|attempt| attempt.join().unwrap()).collect()
            });
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
            assert!(
                results.iter().all(|r| matches!(r, Ok(()) | Err(AuthnError::InvalidCode))),
                "{results:?}"
            );
        }

        fn the_secret_is_sealed_at_rest(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let enrolment = begin_enrolment(&mut conn, &f.cipher, t0(), &f.tenant, &f.user).unwrap();
            let secret = Secret::try_from_base32(&*enrolment.secret_base32).unwrap();
            let assert_sealed = |rows: Vec<String>| {
                assert_eq!(rows.len(), 1);
                let row = &rows[0];
                assert!(!row.contains(enrolment.secret_base32.as_str()), "base32 secret in clear: {row}");
                assert!(!row.to_lowercase().contains(&hex::encode(secret.as_bytes())), "hex secret in clear");
                assert!(
                    !row.as_bytes().windows(secret.as_bytes().len()).any(|w| w == secret.as_bytes()),
                    "raw secret in clear"
                );
            };
            assert_sealed(stored_credential_data(&mut conn));
            confirm_enrolment(
                &mut conn, &f.cipher, t0(), f.tenant.id, f.user.id, enrolment.credential,
                &code(&enrolment.secret_base32, t0()),
            )
            .unwrap();
            assert_sealed(stored_credential_data(&mut conn));
        }

        fn failures_lock_the_factor_without_spending_codes(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let secret = f.enrol(&mut conn, t0() - Duration::minutes(10));
            let wrong = wrong_code(&secret, t0());
            for _ in 1..crate::factor_attempts::LOCKOUT_THRESHOLD {
                assert!(matches!(f.verify(&mut conn, t0(), &wrong), Err(AuthnError::InvalidCode)));
            }
            match f.verify(&mut conn, t0(), &wrong) {
                Err(AuthnError::Throttled { until }) => assert_eq!(until, Some(t0() + Duration::minutes(1))),
                other => panic!("expected a lockout, got {other:?}"),
            }

            // While locked even the right code is refused, and it is not spent.
            let locked = t0() + seconds(30);
            let right = code(&secret, locked);
            assert!(matches!(f.verify(&mut conn, locked, &right), Err(AuthnError::Throttled { .. })));
            let counter = rate_limits::get(&mut conn, f.tenant.id, &bucket(f.user.id)).unwrap().unwrap();
            assert_eq!(counter.failures, crate::factor_attempts::LOCKOUT_THRESHOLD, "refused attempts are not counted again");

            let unlocked = t0() + seconds(61);
            f.verify(&mut conn, unlocked, &right).expect("the same code, a step later");
            assert_eq!(rate_limits::get(&mut conn, f.tenant.id, &bucket(f.user.id)).unwrap(), None);
        }
    }
}
