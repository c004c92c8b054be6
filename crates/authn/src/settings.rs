//! What the authentication services need from configuration and tenant settings.

use chrono::Duration;
use gatehouse_core::config::Config;
use gatehouse_core::tenant_settings::TenantSettings;

#[derive(Clone, Debug)]
pub struct AuthnSettings {
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// Failures per submitted account identifier before a temporary lockout.
    pub account_lockout_threshold: i32,
    /// Failures after which each further attempt must wait (1 s, 2 s, 4 s, …).
    pub account_backoff_after: i32,
    pub ip_lockout_threshold: i32,
    pub lockout: Duration,
    pub failure_window: Duration,
    pub verification_link_lifetime: Duration,
    pub resend_per_hour: i32,
    /// Sign-up mails (verification link or "already registered" notice) per target
    /// address and hour.
    pub signup_mails_per_hour: i32,
    /// Sign-up mails one client address may cause per hour, to any addresses.
    pub signup_mails_per_ip_hour: i32,
    /// Rejected assertions of one passkey before it is locked.
    pub passkey_credential_lockout_threshold: i32,
    /// Rejected assertions of one passkey after which each further one must wait
    /// (1 s, 2 s, 4 s, …).
    pub passkey_credential_backoff_after: i32,
    /// Rejected assertions from one client address before it is locked out.
    pub passkey_ip_lockout_threshold: i32,
    pub passkey_lockout: Duration,
    pub passkey_failure_window: Duration,
    /// Only update a session's last-seen time this often: a write per page view buys
    /// nothing for a 30-minute idle timeout.
    pub touch_interval: Duration,
    /// How recent a second factor must be for a sensitive account action (change of
    /// password or email, removing a factor, new recovery codes).
    pub step_up_window: Duration,
    /// How long a right password waits for its second factor.
    pub second_factor_wait: Duration,
    /// How long a password-reset link works: 15 minutes. Long enough to switch to
    /// the mail client and back, short enough that a link found later in a mailbox
    /// (or a mail archive) is dead. A new link can always be asked for.
    pub password_reset_link_lifetime: Duration,
    /// Reset requests per account identifier and hour (whether or not the account
    /// exists): 5. Enough for a lost mail or two; a mailbox is not flooded.
    pub password_reset_requests_per_hour: i32,
    /// Reset requests per client IP and hour: 30, for many people behind one NAT.
    pub password_reset_requests_per_ip_hour: i32,
    /// How long a recovery of lost second factors waits before it can complete: 24
    /// hours, so an owner whose mailbox (and nothing else) was taken over sees the
    /// notice and cancels before the factors go.
    pub factor_recovery_cooling_off: Duration,
    /// How long after its cooling-off a factor recovery can still be completed: 7
    /// days. Afterwards it is void and must be started again.
    pub factor_recovery_window: Duration,
}

fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn small(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

impl AuthnSettings {
    pub fn from_config(config: &Config) -> Self {
        AuthnSettings {
            session_idle: Duration::minutes(int(config.sessions.idle_timeout_mins)),
            session_absolute: Duration::hours(int(config.sessions.absolute_timeout_hours)),
            account_lockout_threshold: small(config.sign_in.account_lockout_threshold),
            account_backoff_after: small(config.sign_in.account_backoff_after),
            ip_lockout_threshold: small(config.sign_in.ip_lockout_threshold),
            lockout: Duration::minutes(int(config.sign_in.lockout_mins)),
            failure_window: Duration::minutes(int(config.sign_in.window_mins)),
            verification_link_lifetime: Duration::hours(int(config
                .registration
                .verification_link_hours)),
            resend_per_hour: small(config.registration.resend_per_hour),
            signup_mails_per_hour: small(config.registration.signup_mails_per_hour),
            signup_mails_per_ip_hour: small(config.registration.signup_mails_per_ip_hour),
            passkey_credential_lockout_threshold: small(
                config.passkeys.credential_lockout_threshold,
            ),
            passkey_credential_backoff_after: small(config.passkeys.credential_backoff_after),
            passkey_ip_lockout_threshold: small(config.passkeys.ip_lockout_threshold),
            passkey_lockout: Duration::minutes(int(config.passkeys.lockout_mins)),
            passkey_failure_window: Duration::minutes(int(config.passkeys.window_mins)),
            touch_interval: Duration::seconds(60),
            step_up_window: Duration::minutes(10),
            second_factor_wait: Duration::minutes(5),
            password_reset_link_lifetime: Duration::minutes(15),
            password_reset_requests_per_hour: 5,
            password_reset_requests_per_ip_hour: 30,
            factor_recovery_cooling_off: Duration::hours(24),
            factor_recovery_window: Duration::days(7),
        }
    }

    /// Backoff, then lockout, for the per-account counter.
    pub fn account_lock_for(&self, failures: i32) -> Option<Duration> {
        back_off_then_lock(
            failures,
            self.account_backoff_after,
            self.account_lockout_threshold,
            self.lockout,
        )
    }

    pub fn ip_lock_for(&self, failures: i32) -> Option<Duration> {
        (failures >= self.ip_lockout_threshold).then_some(self.lockout)
    }

    /// Backoff, then lockout, for one passkey's counter: as for an account.
    pub fn passkey_credential_lock_for(&self, failures: i32) -> Option<Duration> {
        back_off_then_lock(
            failures,
            self.passkey_credential_backoff_after,
            self.passkey_credential_lockout_threshold,
            self.passkey_lockout,
        )
    }

    pub fn passkey_ip_lock_for(&self, failures: i32) -> Option<Duration> {
        (failures >= self.passkey_ip_lockout_threshold).then_some(self.passkey_lockout)
    }
}

/// From `backoff_after` failures each further attempt waits 1 s, 2 s, 4 s, … (at most
/// 64 s); from `threshold` the counter is locked for `lockout`.
fn back_off_then_lock(
    failures: i32,
    backoff_after: i32,
    threshold: i32,
    lockout: Duration,
) -> Option<Duration> {
    if failures >= threshold {
        Some(lockout)
    } else if failures >= backoff_after {
        let exponent = (failures - backoff_after).clamp(0, 6) as u32;
        Some(Duration::seconds(1 << exponent))
    } else {
        None
    }
}

/// A tenant's sign-up and sign-in rules, from its settings JSON
/// (`"registration": {…}`, `"mfa": {"required": …}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantPolicy {
    pub registration_enabled: bool,
    pub require_verified_email: bool,
    /// Every user needs a second factor: one without is sent to enrol before
    /// anything else. Off by default (MFA optional).
    pub mfa_required: bool,
    /// Authorization requests from these clients need a second factor
    /// (`"mfa": {"clients": [...]}`), even when MFA is otherwise optional.
    pub mfa_clients: Vec<String>,
    /// … and requests for any of these scopes (`"mfa": {"scopes": [...]}`).
    pub mfa_scopes: Vec<String>,
}

impl TenantPolicy {
    pub fn from_settings(settings: &TenantSettings) -> Self {
        TenantPolicy {
            registration_enabled: settings.registration.enabled,
            require_verified_email: settings.registration.require_verified_email,
            mfa_required: settings.mfa.required,
            mfa_clients: settings.mfa.clients.clone(),
            mfa_scopes: settings.mfa.scopes.clone(),
        }
    }

    /// Whether an authorization request by `client_id` for `scopes` needs a second
    /// factor under this policy.
    pub fn mfa_required_for(&self, client_id: &str, scopes: &[String]) -> bool {
        self.mfa_required
            || self.mfa_clients.iter().any(|c| c == client_id)
            || scopes.iter().any(|s| self.mfa_scopes.contains(s))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Map, Value};

    use super::*;

    #[test]
    fn account_failures_back_off_then_lock() {
        let settings = AuthnSettings::from_config(&Config::default());
        assert_eq!(settings.account_lock_for(1), None);
        assert_eq!(
            settings.account_lock_for(settings.account_backoff_after),
            Some(Duration::seconds(1))
        );
        assert_eq!(
            settings.account_lock_for(settings.account_backoff_after + 2),
            Some(Duration::seconds(4))
        );
        assert_eq!(
            settings.account_lock_for(settings.account_lockout_threshold),
            Some(settings.lockout)
        );
    }

    #[test]
    fn passkey_failures_are_limited_like_passwords_by_default() {
        let settings = AuthnSettings::from_config(&Config::default());
        for failures in 0..=settings.account_lockout_threshold + 1 {
            assert_eq!(
                settings.passkey_credential_lock_for(failures),
                settings.account_lock_for(failures),
                "{failures}"
            );
        }
        assert_eq!(settings.passkey_ip_lock_for(99), None);
        assert_eq!(
            settings.passkey_ip_lock_for(100),
            Some(Duration::minutes(15))
        );

        let mut config = Config::default();
        config.passkeys.ip_lockout_threshold = 3;
        config.passkeys.lockout_mins = 2;
        let settings = AuthnSettings::from_config(&config);
        assert_eq!(settings.passkey_ip_lock_for(3), Some(Duration::minutes(2)));
        assert_eq!(settings.ip_lock_for(3), None, "passwords keep their own");
    }

    #[test]
    fn mfa_can_be_required_for_some_clients_or_scopes_only() {
        let settings: Map<String, Value> =
            serde_json::from_str(r#"{"mfa": {"clients": ["payroll"], "scopes": ["payments"]}}"#)
                .unwrap();
        let policy = TenantPolicy::from_settings(&TenantSettings::from_map(&settings).unwrap());
        assert!(!policy.mfa_required);
        assert!(policy.mfa_required_for("payroll", &["openid".into()]));
        assert!(policy.mfa_required_for("webapp", &["openid".into(), "payments".into()]));
        assert!(!policy.mfa_required_for("webapp", &["openid".into(), "profile".into()]));
    }

    #[test]
    fn tenant_policy_defaults_to_open_registration_with_verified_email() {
        let policy = TenantPolicy::from_settings(&TenantSettings::default());
        assert!(policy.registration_enabled && policy.require_verified_email);
        assert!(
            !policy.mfa_required,
            "MFA is optional unless the tenant says so"
        );
        let closed: Map<String, Value> = serde_json::from_str(
            r#"{"registration": {"enabled": false, "require_verified_email": false}, "mfa": {"required": true, "clients": ["payroll"], "scopes": ["payments"]}}"#,
        )
        .unwrap();
        assert_eq!(
            TenantPolicy::from_settings(&TenantSettings::from_map(&closed).unwrap()),
            TenantPolicy {
                registration_enabled: false,
                require_verified_email: false,
                mfa_required: true,
                mfa_clients: vec!["payroll".into()],
                mfa_scopes: vec!["payments".into()],
            }
        );
    }
}
