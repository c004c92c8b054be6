//! How accounts are made and proven: first-start bootstrap, password policy and
//! hashing, sessions, sign-in throttling, passkeys, registration.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    pub tenant: String,
    pub admin_user_name: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            tenant: "default".to_owned(),
            admin_user_name: "admin".to_owned(),
        }
    }
}

/// Password hashing (Argon2id) and the password policy (NIST SP 800-63B: a length
/// floor, a generous ceiling, a strength estimate and no composition rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Argon2id memory cost in KiB (OWASP: 19456 = 19 MiB).
    pub memory_kib: u32,
    /// Argon2id passes over the memory (OWASP: 2).
    pub iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    pub parallelism: u32,
    /// Shortest accepted password, in characters; never below 8 (the NIST floor).
    pub min_length: u32,
    /// Longest accepted password, in characters; bounds the hashing work per attempt.
    pub max_length: u32,
    /// Lowest accepted zxcvbn strength score, 0 (anything) to 4 (very strong).
    pub min_strength: u8,
}

impl PasswordConfig {
    /// NIST SP 800-63B: memorized secrets of at least 8 characters.
    pub const MIN_LENGTH_FLOOR: u32 = 8;
    /// Above this, a "password" is a denial-of-service attempt, not a passphrase.
    pub const MAX_LENGTH_CEILING: u32 = 1024;
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
            min_length: 12,
            max_length: 256,
            min_strength: 3,
        }
    }
}

/// Server-side sign-in sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    pub idle_timeout_mins: u64,
    /// A session ends this long after sign-in, however active.
    pub absolute_timeout_hours: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout_mins: 30,
            absolute_timeout_hours: 12,
        }
    }
}

impl SessionConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_mins.saturating_mul(60))
    }

    pub fn absolute_timeout(&self) -> Duration {
        Duration::from_secs(self.absolute_timeout_hours.saturating_mul(3600))
    }
}

/// Throttling of failed sign-ins, per account and per client IP address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignInConfig {
    /// Failures within the window after which an account is locked.
    pub account_lockout_threshold: u32,
    /// Failures within the window after which each further attempt is delayed.
    pub account_backoff_after: u32,
    /// Failures within the window from one IP address after which it is locked out.
    pub ip_lockout_threshold: u32,
    /// How long a lockout lasts.
    pub lockout_mins: u64,
    /// How far back failures are counted.
    pub window_mins: u64,
}

impl Default for SignInConfig {
    fn default() -> Self {
        SignInConfig {
            account_lockout_threshold: 10,
            account_backoff_after: 3,
            ip_lockout_threshold: 100,
            lockout_mins: 15,
            window_mins: 60,
        }
    }
}

impl SignInConfig {
    pub fn lockout(&self) -> Duration {
        Duration::from_secs(self.lockout_mins.saturating_mul(60))
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_mins.saturating_mul(60))
    }
}

/// Throttling of failed passkey sign-ins, per passkey and per client IP address:
/// the same shape, and the same defaults, as [`SignInConfig`] for passwords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeyConfig {
    /// Rejected assertions of one passkey within the window after which it is locked.
    pub credential_lockout_threshold: u32,
    /// Rejected assertions of one passkey after which each further one is delayed.
    pub credential_backoff_after: u32,
    /// Rejected assertions from one IP address after which it is locked out.
    pub ip_lockout_threshold: u32,
    /// How long a lockout lasts.
    pub lockout_mins: u64,
    /// How far back failures are counted.
    pub window_mins: u64,
}

impl Default for PasskeyConfig {
    fn default() -> Self {
        let passwords = SignInConfig::default();
        PasskeyConfig {
            credential_lockout_threshold: passwords.account_lockout_threshold,
            credential_backoff_after: passwords.account_backoff_after,
            ip_lockout_threshold: passwords.ip_lockout_threshold,
            lockout_mins: passwords.lockout_mins,
            window_mins: passwords.window_mins,
        }
    }
}

/// Calls Gatehouse makes to addresses others chose (back-channel logout URIs;
/// Self-service sign-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// How long an email verification link stays valid.
    pub verification_link_hours: u64,
    /// How many verification mails one address may be sent per hour.
    pub resend_per_hour: u32,
    /// How many sign-up mails (the verification link, or the "someone tried to sign
    /// up with your address" notice) one address may be sent per hour.
    pub signup_mails_per_hour: u32,
    /// How many sign-up mails, to any addresses, one client IP address may cause
    /// per hour.
    pub signup_mails_per_ip_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            verification_link_hours: 24,
            resend_per_hour: 3,
            signup_mails_per_hour: 3,
            signup_mails_per_ip_hour: 30,
        }
    }
}

impl RegistrationConfig {
    pub fn verification_link_lifetime(&self) -> Duration {
        Duration::from_secs(self.verification_link_hours.saturating_mul(3600))
    }
}

impl PasswordConfig {
    pub fn validate(&self) -> Result<(), Error> {
        at_least("passwords.parallelism", self.parallelism, 1)?;
        if self.parallelism > 0x00FF_FFFF {
            return Err(Error::config(
                "passwords.parallelism",
                format!("must be at most 16777215, got {}", self.parallelism),
            ));
        }
        let memory_floor = self.parallelism.saturating_mul(8);
        if self.memory_kib < memory_floor {
            return Err(Error::config(
                "passwords.memory_kib",
                format!(
                    "must be at least 8 × parallelism ({memory_floor}), got {}; \
                     OWASP recommends 19456 with iterations = 2, parallelism = 1",
                    self.memory_kib
                ),
            ));
        }
        at_least("passwords.iterations", self.iterations, 1)?;
        if self.min_length < Self::MIN_LENGTH_FLOOR {
            return Err(Error::config(
                "passwords.min_length",
                format!(
                    "must be at least {} (NIST SP 800-63B), got {}",
                    Self::MIN_LENGTH_FLOOR,
                    self.min_length
                ),
            ));
        }
        if self.max_length < self.min_length || self.max_length > Self::MAX_LENGTH_CEILING {
            return Err(Error::config(
                "passwords.max_length",
                format!(
                    "must be between min_length ({}) and {}, got {}; NIST asks for at \
                     least 64",
                    self.min_length,
                    Self::MAX_LENGTH_CEILING,
                    self.max_length
                ),
            ));
        }
        if self.min_strength > 4 {
            return Err(Error::config(
                "passwords.min_strength",
                format!("is a zxcvbn score from 0 to 4, got {}", self.min_strength),
            ));
        }
        Ok(())
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), Error> {
        at_least("sessions.idle_timeout_mins", self.idle_timeout_mins, 1)?;
        at_least(
            "sessions.absolute_timeout_hours",
            self.absolute_timeout_hours,
            1,
        )?;
        if self.idle_timeout() > self.absolute_timeout() {
            return Err(Error::config(
                "sessions.idle_timeout_mins",
                "must not exceed sessions.absolute_timeout_hours",
            ));
        }
        Ok(())
    }
}

impl SignInConfig {
    pub fn validate(&self) -> Result<(), Error> {
        at_least(
            "sign_in.account_lockout_threshold",
            self.account_lockout_threshold,
            1,
        )?;
        at_least(
            "sign_in.account_backoff_after",
            self.account_backoff_after,
            1,
        )?;
        if self.account_backoff_after > self.account_lockout_threshold {
            return Err(Error::config(
                "sign_in.account_backoff_after",
                format!(
                    "must not exceed sign_in.account_lockout_threshold ({}), got {}",
                    self.account_lockout_threshold, self.account_backoff_after
                ),
            ));
        }
        at_least("sign_in.ip_lockout_threshold", self.ip_lockout_threshold, 1)?;
        at_least("sign_in.lockout_mins", self.lockout_mins, 1)?;
        at_least("sign_in.window_mins", self.window_mins, 1)?;
        Ok(())
    }
}

impl PasskeyConfig {
    pub fn validate(&self) -> Result<(), Error> {
        at_least(
            "passkeys.credential_lockout_threshold",
            self.credential_lockout_threshold,
            1,
        )?;
        at_least(
            "passkeys.credential_backoff_after",
            self.credential_backoff_after,
            1,
        )?;
        if self.credential_backoff_after > self.credential_lockout_threshold {
            return Err(Error::config(
                "passkeys.credential_backoff_after",
                format!(
                    "must not exceed passkeys.credential_lockout_threshold ({}), got {}",
                    self.credential_lockout_threshold, self.credential_backoff_after
                ),
            ));
        }
        at_least(
            "passkeys.ip_lockout_threshold",
            self.ip_lockout_threshold,
            1,
        )?;
        at_least("passkeys.lockout_mins", self.lockout_mins, 1)?;
        at_least("passkeys.window_mins", self.window_mins, 1)?;
        Ok(())
    }
}

impl RegistrationConfig {
    pub fn validate(&self) -> Result<(), Error> {
        at_least(
            "registration.verification_link_hours",
            self.verification_link_hours,
            1,
        )?;
        at_least("registration.resend_per_hour", self.resend_per_hour, 1)?;
        at_least(
            "registration.signup_mails_per_hour",
            self.signup_mails_per_hour,
            1,
        )?;
        at_least(
            "registration.signup_mails_per_ip_hour",
            self.signup_mails_per_ip_hour,
            1,
        )?;
        Ok(())
    }
}
