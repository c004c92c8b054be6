//! What the server talks to or signs with: mail, outbound HTTP, signing keys, the
//! policy decision point and its decision log.

use super::*;

/// Outgoing mail (verification links, password resets, notifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The SMTP server; `None` writes mail to `<data_dir>/mail/` instead (dev only).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub tls: MailTls,
    /// SMTP AUTH user name; set together with `password` or not at all.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The `From:` mailbox, e.g. `Gatehouse <no-reply@example.com>`.
    pub from: String,
    /// Timeout for each SMTP command, in seconds.
    pub timeout_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp_host: None,
            smtp_port: 587,
            tls: MailTls::default(),
            username: None,
            password: None,
            from: "Gatehouse <no-reply@localhost>".to_owned(),
            timeout_secs: 10,
        }
    }
}

impl MailConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Plain text: only for a relay on the same host or a test server.
    None,
    /// Upgrade with STARTTLS, and refuse to send if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte ("implicit TLS", usually port 465).
    Tls,
}

/// federation metadata later): one client, with a timeout, no redirects, a body
/// limit, and no private, loopback or link-local targets unless allowed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Allow targets on loopback, private (RFC 1918, unique-local) and link-local
    /// addresses. Off: a client registered with `http://169.254.169.254/…` or an
    /// internal host cannot make Gatehouse call it. Turn on for development, or when
    /// relying parties live on the private network.
    pub allow_private_networks: bool,
    /// For each call: connect, send and answer.
    pub timeout_ms: u64,
    /// The largest response body read.
    pub max_body_kib: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow_private_networks: false,
            timeout_ms: 5_000,
            max_body_kib: 1_024,
        }
    }
}

impl OutboundConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_body_kib.saturating_mul(1024)).unwrap_or(usize::MAX)
    }

    pub(super) fn validate(&self) -> Result<(), Error> {
        at_least("outbound.timeout_ms", self.timeout_ms, 100)?;
        at_least("outbound.max_body_kib", self.max_body_kib, 1)
    }
}

/// Scheduled rotation of token signing keys. A rotation activates the key that has
/// been published (as `next`) since the previous one and publishes a new `next`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Days an active signing key signs before the next one takes over; 0 turns
    /// scheduled rotation off (`gatehouse keys rotate` still works).
    pub rotation_days: u64,
    /// Hours a retired key stays in JWKS: at least the longest token lifetime plus
    /// the clock skew and caching of relying parties.
    pub retired_publish_hours: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            rotation_days: 90,
            retired_publish_hours: 24,
        }
    }
}

impl KeysConfig {
    /// `None` when scheduled rotation is off.
    pub fn rotation_interval(&self) -> Option<Duration> {
        (self.rotation_days > 0)
            .then(|| Duration::from_secs(self.rotation_days.saturating_mul(86_400)))
    }

    pub fn retired_publish(&self) -> Duration {
        Duration::from_secs(self.retired_publish_hours.saturating_mul(3600))
    }

    pub(super) fn validate(&self) -> Result<(), Error> {
        at_least("keys.retired_publish_hours", self.retired_publish_hours, 1)?;
        if self.rotation_days > 0
            && self.rotation_days.saturating_mul(24) <= self.retired_publish_hours
        {
            return Err(Error::config(
                "keys.rotation_days",
                "must be longer than keys.retired_publish_hours, or 0 to turn rotation off",
            ));
        }
        Ok(())
    }
}

/// The policy decision point (AuthZEN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdpConfig {
    /// Days a decision stays in the decision log; older ones are deleted by the
    /// periodic housekeeping. 0 keeps them forever.
    pub decision_log_retention_days: u64,
    /// Milliseconds a node may decide from its cached copy of a subject (user,
    /// roles, groups, consents) when no event told it of a change: the bound on how
    /// late a change made elsewhere whose event was lost counts here. 0: no cache.
    pub subject_cache_ms: u64,
    /// Decisions waiting for the decision log's writer at most; beyond that
    /// `decision_log_when_full` applies.
    pub decision_log_queue: usize,
    /// What a full decision log queue does with the next decision.
    pub decision_log_when_full: DecisionLogWhenFull,
    /// With `wait`: how long an evaluation waits for room in the queue before it
    /// fails (503) rather than answer with a decision the log does not have.
    pub decision_log_wait_ms: u64,
}

/// What the PDP does when its decision log's queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionLogWhenFull {
    /// Hold the evaluation back until there is room (bounded by
    /// `decision_log_wait_ms`): every decision given is logged.
    #[default]
    Wait,
    /// Skip the record and count it: the log gets a gap record with the count.
    Sample,
}

impl Default for PdpConfig {
    fn default() -> Self {
        PdpConfig {
            decision_log_retention_days: 90,
            subject_cache_ms: 1000,
            decision_log_queue: 65_536,
            decision_log_when_full: DecisionLogWhenFull::Wait,
            decision_log_wait_ms: 2000,
        }
    }
}

impl PdpConfig {
    /// How long decisions are kept; `None` when they are kept forever.
    pub fn decision_log_retention(&self) -> Option<Duration> {
        (self.decision_log_retention_days > 0)
            .then(|| Duration::from_secs(self.decision_log_retention_days.saturating_mul(86_400)))
    }
}

impl MailConfig {
    pub fn validate(&self, mode: Mode) -> Result<(), Error> {
        match &self.smtp_host {
            None if mode == Mode::Production => {
                return Err(Error::config(
                    "mail.smtp_host",
                    "production mode needs an SMTP server to send verification and \
                     recovery mail: set mail.smtp_host (GATEHOUSE_MAIL__SMTP_HOST); \
                     without one, mail is only written to files, which is for development",
                ));
            }
            Some(host) if host.trim().is_empty() || host.contains(char::is_whitespace) => {
                return Err(Error::config(
                    "mail.smtp_host",
                    "must be a host name or IP address; leave it unset to write mail to \
                     files in development",
                ));
            }
            _ => {}
        }
        at_least("mail.smtp_port", self.smtp_port, 1)?;
        at_least("mail.timeout_secs", self.timeout_secs, 1)?;
        match (&self.username, &self.password) {
            (Some(_), None) => {
                return Err(Error::config(
                    "mail.password",
                    "mail.username is set, so mail.password must be too \
                     (GATEHOUSE_MAIL__PASSWORD)",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "mail.username",
                    "mail.password is set, so mail.username must be too",
                ));
            }
            _ => {}
        }
        let from = self.from.trim();
        let address = match (from.rfind('<'), from.strip_suffix('>')) {
            (Some(open), Some(_)) => &from[open + 1..from.len() - 1],
            _ => from,
        };
        let valid = address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
        if !valid {
            return Err(Error::config(
                "mail.from",
                format!(
                    "`{}` is not a mail address; expected e.g. `Gatehouse <no-reply@example.com>`",
                    self.from
                ),
            ));
        }
        Ok(())
    }
}
