//! What every second-factor attempt goes through, whichever factor it is: the
//! lockout for guessable codes before (a locked bucket checks nothing), the count
//! after (a wrong code counts, a right one clears it), and on success the
//! cancellation of any recovery of lost factors waiting on the account. Shared by
//! TOTP, recovery codes and passkeys — and used by recovery — which is why it is in
//! none of them.

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::{AnyConnection, account_recoveries, rate_limits};
use serde_json::json;

use crate::AuthnError;

/// The failure that locks the factor; the ones before it are free, for typos and a
/// phone whose clock is off.
pub(crate) const LOCKOUT_THRESHOLD: i32 = 5;

/// Failures are forgotten a day after the first one of a series, or at a success.
pub(crate) fn failure_window() -> Duration {
    Duration::hours(24)
}

/// At [`LOCKOUT_THRESHOLD`] failures: 1 minute, then doubling with each further one
/// up to about 17 hours. With ±1 step a guess hits one of three codes in a million,
/// so what matters is how many guesses fit in a year, and doubling keeps that small
/// while a user who mistyped a few times waits only a minute.
pub(crate) fn lock_for(failures: i32) -> Option<Duration> {
    (failures >= LOCKOUT_THRESHOLD).then(|| {
        let exponent = (failures - LOCKOUT_THRESHOLD).clamp(0, 10) as u32;
        Duration::minutes(1 << exponent)
    })
}

/// Refuses at once while the bucket is locked: a locked factor checks no code, so a
/// right code sent during a lockout is not spent either. Other buckets (reset
/// requests, links) use it the same way.
pub(crate) fn ensure_not_locked(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    bucket: &str,
) -> Result<(), AuthnError> {
    match rate_limits::get(conn, tenant, bucket)? {
        Some(counter) if counter.is_locked(now) => Err(AuthnError::Throttled {
            until: counter.locked_until,
        }),
        _ => Ok(()),
    }
}

/// One attempt at a guessable code under `bucket`: refused while the bucket is
/// locked, then counted by [`settle`].
pub(crate) fn attempt<T>(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    bucket: &str,
    check: impl FnOnce(&mut AnyConnection) -> Result<T, AuthnError>,
) -> Result<T, AuthnError> {
    ensure_not_locked(conn, now, tenant, bucket)?;
    let outcome = check(conn);
    settle(conn, now, tenant, bucket, outcome)
}

/// Counts a wrong code (committed on its own) and forgets the failures after a
/// success. Other outcomes, such as no factor at all, are not guesses and count
/// nothing.
pub(crate) fn settle<T>(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    bucket: &str,
    outcome: Result<T, AuthnError>,
) -> Result<T, AuthnError> {
    match outcome {
        Ok(value) => {
            rate_limits::reset(conn, tenant, bucket)?;
            Ok(value)
        }
        Err(AuthnError::InvalidCode) => {
            let counter =
                rate_limits::record_failure(conn, now, tenant, bucket, failure_window(), lock_for)?;
            Err(if counter.is_locked(now) {
                AuthnError::Throttled {
                    until: counter.locked_until,
                }
            } else {
                AuthnError::InvalidCode
            })
        }
        Err(other) => Err(other),
    }
}

/// A second factor of `user` just passed (`factor`: `totp`, `recovery_code`,
/// `passkey`), so it is not lost: every recovery of lost factors waiting on the
/// account is cancelled and audited, in the caller's transaction with the factor's
/// own write. Decided now, not looked up when the recovery completes: by then the
/// proof may be gone (a recovery code is deleted as it is spent).
pub(crate) fn cancel_recoveries_on_factor_use(
    conn: &mut AnyConnection,
    cipher: &gatehouse_core::secrets::Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    factor: &'static str,
) -> Result<(), AuthnError> {
    let cancelled =
        account_recoveries::cancel_open_for_user(conn, now, tenant, user, "second_factor_used")?;
    if cancelled > 0 {
        gatehouse_identity_store::audit::append(
            conn,
            cipher,
            now,
            tenant,
            gatehouse_identity_store::audit::NewAuditEvent {
                actor: format!("user:{user}"),
                action: "recovery.factor_recovery_cancelled".into(),
                target: Some(format!("user:{user}")),
                outcome: Outcome::Success,
                ip: None,
                details: json!({
                    "reason": "second_factor_used",
                    "factor": factor,
                    "recoveries": cancelled,
                }),
            },
        )?;
    }
    Ok(())
}
