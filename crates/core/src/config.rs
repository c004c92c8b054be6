//! Strict configuration: one TOML file plus `GATEHOUSE_*` environment variables.
//!
//! Unknown keys are rejected everywhere, in the file and in the environment: a misspelt
//! setting that is silently ignored is worse than a server that refuses to start.
//! Environment variables win over the file, so containers can override single settings.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::Error;
use crate::net::IpNet;

const ENV_PREFIX: &str = "GATEHOUSE_";
/// Names the config file itself (read by the server's CLI), so it is not a setting.
const ENV_CONFIG_FILE: &str = "GATEHOUSE_CONFIG";
/// Test harnesses put their own knobs here; they must never be mistaken for config.
const ENV_TEST_PREFIX: &str = "GATEHOUSE_TEST_";
/// Separates path segments in variable names; single underscores occur inside keys.
const ENV_SEPARATOR: &str = "__";

/// Settings whose default is "unset". Serializing the defaults omits them, so the env
/// schema would not know they exist without this list. A test checks that every entry
/// is a real field; a missing entry fails closed (the variable is rejected as unknown).
const OPTIONAL_KEYS: &[&str] = &[
    "server.public_url",
    "database.url",
    "secrets.master_key_file",
    "secrets.master_keys",
    "mail.smtp_host",
    "mail.username",
    "mail.password",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    /// Holds the SQLite database and the generated dev master key by default.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub secrets: SecretsConfig,
    pub log: LogConfig,
    pub bootstrap: BootstrapConfig,
    pub passwords: PasswordConfig,
    pub mail: MailConfig,
    pub sessions: SessionConfig,
    pub sign_in: SignInConfig,
    pub passkeys: PasskeyConfig,
    pub registration: RegistrationConfig,
    pub keys: KeysConfig,
    pub pdp: PdpConfig,
    pub outbound: OutboundConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::default(),
            data_dir: PathBuf::from("gatehouse-data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            secrets: SecretsConfig::default(),
            log: LogConfig::default(),
            bootstrap: BootstrapConfig::default(),
            passwords: PasswordConfig::default(),
            mail: MailConfig::default(),
            sessions: SessionConfig::default(),
            sign_in: SignInConfig::default(),
            passkeys: PasskeyConfig::default(),
            registration: RegistrationConfig::default(),
            keys: KeysConfig::default(),
            pdp: PdpConfig::default(),
            outbound: OutboundConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Convenient defaults: a master key is generated on first start.
    #[default]
    Dev,
    /// Nothing secret is generated implicitly; missing key material is an error.
    Production,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Production => "production",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// The externally visible base URL; `None` derives it from `listen`.
    pub public_url: Option<String>,
    /// HTTP worker threads; 0 means one per available core.
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    /// Reverse proxies (addresses or CIDR networks) whose `forwarded_header` names
    /// the client. Empty: the TCP peer is the client, whatever the headers say.
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies set. One, not either: a proxy that sets one passes
    /// the other through from the client untouched, where anyone can forge it.
    pub forwarded_header: ForwardedHeader,
    /// A request still unanswered after this many milliseconds gets a 503 (its
    /// database work may still finish): a stuck database never holds clients longer.
    pub request_timeout_ms: u64,
    /// `/readyz` answers 503 when the database has not answered within this.
    pub readiness_timeout_ms: u64,
}

/// Which header a trusted reverse proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`: what nginx, HAProxy, Envoy, Traefik,
    /// Caddy and cloud load balancers set.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1, …`.
    Forwarded,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            public_url: None,
            workers: 0,
            shutdown_timeout_secs: 30,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            request_timeout_ms: 15_000,
            readiness_timeout_ms: 1_000,
        }
    }
}

impl ServerConfig {
    /// The base URL without a trailing slash, so callers can append `/path` directly.
    /// Loopback is shown as `localhost` because browsers treat that as a secure context.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => match self.listen.strip_prefix("127.0.0.1:") {
                Some(port) => format!("http://localhost:{port}"),
                None => format!("http://{}", self.listen),
            },
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, Error> {
        self.listen.parse().map_err(|_| {
            Error::config(
                "server.listen",
                format!(
                    "`{}` is not a socket address; expected e.g. `127.0.0.1:8080` or `[::]:8080`",
                    self.listen
                ),
            )
        })
    }

    /// The resolved worker count (never 0).
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `None` means the embedded SQLite file `<data_dir>/gatehouse.db`.
    pub url: Option<String>,
    pub pool_size: u32,
    pub connect_timeout_secs: u64,
    /// How long a request waits for a free pooled connection.
    pub acquire_timeout_ms: u64,
    pub sqlite_busy_timeout_ms: u64,
    /// PostgreSQL: statements running longer are cancelled by the server. 0: none.
    pub statement_timeout_ms: u64,
    /// PostgreSQL: a connection whose sent data stays unacknowledged this long (a
    /// partition), or that stays silent to keepalives, is dropped. 0: OS defaults.
    pub network_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            pool_size: 8,
            connect_timeout_secs: 5,
            acquire_timeout_ms: 3_000,
            sqlite_busy_timeout_ms: 5000,
            statement_timeout_ms: 10_000,
            network_timeout_ms: 15_000,
        }
    }
}

// Hand-written so that logging the config never prints a PostgreSQL password.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(redact_url_password))
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("sqlite_busy_timeout_ms", &self.sqlite_busy_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("network_timeout_ms", &self.network_timeout_ms)
            .finish()
    }
}

impl DatabaseConfig {
    /// The backend named by `url`; an unset URL means the embedded SQLite default.
    pub fn backend(&self) -> Result<DatabaseBackend, Error> {
        match &self.url {
            Some(url) => DatabaseBackend::from_url(url),
            None => Ok(DatabaseBackend::Sqlite),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub fn sqlite_busy_timeout(&self) -> Duration {
        Duration::from_millis(self.sqlite_busy_timeout_ms)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn network_timeout(&self) -> Duration {
        Duration::from_millis(self.network_timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

impl DatabaseBackend {
    /// Accepts `sqlite://<path>`, `sqlite::memory:`, `postgres://…` and `postgresql://…`.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        if sqlite_path(url).is_some_and(|path| !path.is_empty()) {
            return Ok(DatabaseBackend::Sqlite);
        }
        let postgres_rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"));
        if postgres_rest.is_some_and(|rest| !rest.is_empty()) {
            return Ok(DatabaseBackend::Postgres);
        }
        // Only the scheme is echoed: the rest of a URL may carry a password.
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        Err(Error::config(
            "database.url",
            format!(
                "unsupported database URL (scheme `{scheme}`); expected `sqlite://<path>`, \
                 `sqlite::memory:` or `postgres://user:password@host/db`"
            ),
        ))
    }
}

/// What to hand the SQLite driver for a `sqlite:` URL: the file path, or `:memory:`.
/// `None` when the URL is not a SQLite URL.
pub fn sqlite_path(url: &str) -> Option<&str> {
    if url == "sqlite::memory:" {
        return Some(":memory:");
    }
    url.strip_prefix("sqlite://")
}

fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:[redacted]{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Key file with `kid base64url-key` lines; in dev mode defaults to `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Comma-separated `kid:base64url-key` entries, first is active. Normally only set
    /// through `GATEHOUSE_SECRETS__MASTER_KEYS` so the keys never sit in the config file.
    pub master_keys: Option<SecretString>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` EnvFilter directive, e.g. `info` or `gatehouse=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Auto,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty in dev mode, JSON in production.
    #[default]
    Auto,
    Json,
    Pretty,
}

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

    fn validate(&self) -> Result<(), Error> {
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

    fn validate(&self) -> Result<(), Error> {
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

/// A string that never shows up in logs and is wiped from memory when dropped.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Config {
    /// Reads `file` (if given), applies `GATEHOUSE_*` variables from `env` over it and
    /// validates the result. `env` is a parameter so tests never touch the process
    /// environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let mut table = match file {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let overrides = env_overrides(env)?;
        for o in &overrides {
            insert_at(&mut table, &o.path, o.value.clone());
        }
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|err| merged_error(&err, &overrides))?;
        config.validate()?;
        Ok(config)
    }

    /// [`Config::load`] with the real process environment.
    pub fn from_process(file: Option<&Path>) -> Result<Config, Error> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            // Non-Unicode variables cannot be ours unless misconfigured; say so for those.
            let Some(name) = name.to_str().map(str::to_owned) else {
                continue;
            };
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| Error::config(&name, format!("`{name}` is not valid UTF-8")))?;
            env.push((name, value));
        }
        Config::load(file, env)
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.mode == Mode::Production
            && self.secrets.master_keys.is_none()
            && self.secrets.master_key_file.is_none()
        {
            return Err(Error::config(
                "secrets",
                "production mode needs a master key source: set GATEHOUSE_SECRETS__MASTER_KEYS \
                 (comma-separated `kid:base64url-key`) or secrets.master_key_file (a 0600 file \
                 with one `kid base64url-key` line per key)",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("data_dir", "must not be empty"));
        }
        self.server.listen_addr()?;
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::config(
                "server.public_url",
                format!("`{url}` must start with http:// or https://"),
            ));
        }
        // Session cookies are Secure and `__Host-` prefixed only over https; the
        // plain-http exception exists for local development alone.
        if self.mode == Mode::Production && !self.server.public_url().starts_with("https://") {
            return Err(Error::config(
                "server.public_url",
                "production mode needs an https:// public URL (cookies are Secure)",
            ));
        }
        if self.database.pool_size == 0 {
            return Err(Error::config("database.pool_size", "must be at least 1"));
        }
        at_least(
            "database.acquire_timeout_ms",
            self.database.acquire_timeout_ms,
            1,
        )?;
        at_least(
            "server.request_timeout_ms",
            self.server.request_timeout_ms,
            1,
        )?;
        at_least(
            "server.readiness_timeout_ms",
            self.server.readiness_timeout_ms,
            1,
        )?;
        self.database.backend()?;
        if self.log.level.trim().is_empty() {
            return Err(Error::config(
                "log.level",
                "must not be empty; use e.g. `info` or `gatehouse=debug,info`",
            ));
        }
        self.passwords.validate()?;
        self.mail.validate(self.mode)?;
        self.sessions.validate()?;
        self.sign_in.validate()?;
        self.passkeys.validate()?;
        self.registration.validate()?;
        if self.pdp.decision_log_retention_days > 36_500 {
            return Err(Error::config(
                "pdp.decision_log_retention_days",
                "must be at most 36500 (100 years), or 0 to keep decisions forever",
            ));
        }
        if self.pdp.subject_cache_ms > 60_000 {
            return Err(Error::config(
                "pdp.subject_cache_ms",
                "must be at most 60000 (a minute), or 0 to read every subject from the database",
            ));
        }
        at_least("pdp.decision_log_queue", self.pdp.decision_log_queue, 1)?;
        if self.pdp.decision_log_queue > 1_000_000 {
            return Err(Error::config(
                "pdp.decision_log_queue",
                "must be at most 1000000 (about 200 MB of queued decisions)",
            ));
        }
        at_least("pdp.decision_log_wait_ms", self.pdp.decision_log_wait_ms, 1)?;
        if self.pdp.decision_log_wait_ms > 60_000 {
            return Err(Error::config(
                "pdp.decision_log_wait_ms",
                "must be at most 60000 (a minute)",
            ));
        }
        self.keys.validate()?;
        self.outbound.validate()?;
        Ok(())
    }

    /// The database URL with the SQLite default resolved.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("gatehouse.db").display()),
        }
    }

    /// Where the master key file is, if keys come from a file: the configured path, or in
    /// dev mode `<data_dir>/master.key`.
    pub fn master_key_file(&self) -> Option<PathBuf> {
        match (&self.secrets.master_key_file, self.mode) {
            (Some(path), _) => Some(path.clone()),
            (None, Mode::Dev) => Some(self.data_dir.join("master.key")),
            (None, Mode::Production) => None,
        }
    }

    /// The log format with `auto` resolved; never returns [`LogFormat::Auto`].
    pub fn log_format(&self) -> LogFormat {
        match (self.log.format, self.mode) {
            (LogFormat::Auto, Mode::Dev) => LogFormat::Pretty,
            (LogFormat::Auto, Mode::Production) => LogFormat::Json,
            (format, _) => format,
        }
    }
}

/// `Err` naming `key` unless `value` is at least `min`.
fn at_least<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T) -> Result<(), Error> {
    if value < min {
        return Err(Error::config(
            key,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
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

fn read_file(path: &Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Error::io("cannot read config file", path, err))?;
    // Parsing into the typed struct first gives errors with a line, column and the name
    // of the offending key; the untyped table is what env overrides are merged into.
    toml::from_str::<Config>(&text).map_err(|err| file_error(path, &text, &err))?;
    toml::from_str::<toml::Table>(&text).map_err(|err| file_error(path, &text, &err))
}

fn file_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let location = match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{}:{line}:{column}", path.display())
        }
        None => path.display().to_string(),
    };
    Error::Config {
        key: error_key(err),
        message: format!("{location}: {}", err.message()),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted path of the setting a deserialization error is about, e.g.
/// `server.listn` for an unknown field.
fn error_key(err: &toml::de::Error) -> Option<String> {
    // toml keeps the key path private but prints it as a trailing "in `a.b`" line when
    // the error is rendered without its source text.
    let mut bare = err.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let mut path: Vec<&str> = rendered
        .lines()
        .last()
        .and_then(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .map(|p| p.split('.').collect())
        .unwrap_or_default();
    let unknown = err
        .message()
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    path.extend(unknown);
    (!path.is_empty()).then(|| path.join("."))
}

/// One `GATEHOUSE_*` variable, resolved to a config path and a typed value.
struct EnvOverride {
    var: String,
    path: Vec<String>,
    value: toml::Value,
}

/// The shape of the configuration, used to resolve and type environment variables.
fn schema() -> Result<toml::Table, Error> {
    let internal = |message: String| Error::Config { key: None, message };
    let mut table = match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(table)) => table,
        Ok(_) => return Err(internal("defaults did not serialize to a table".to_owned())),
        Err(err) => return Err(internal(format!("cannot serialize defaults: {err}"))),
    };
    for key in OPTIONAL_KEYS {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        insert_at(&mut table, &path, toml::Value::String(String::new()));
    }
    Ok(table)
}

fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvOverride>, Error> {
    let schema = schema()?;
    let mut by_path: BTreeMap<Vec<String>, EnvOverride> = BTreeMap::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == ENV_CONFIG_FILE || var.starts_with(ENV_TEST_PREFIX) {
            continue;
        }
        let path: Vec<String> = rest
            .to_lowercase()
            .split(ENV_SEPARATOR)
            .map(str::to_owned)
            .collect();
        let value = match lookup(&schema, &path) {
            Some(toml::Value::Table(_)) => {
                return Err(Error::config(
                    &var,
                    format!(
                        "`{var}` names the section `{}`, not a setting; expected one of {}",
                        path.join("."),
                        known_vars(&schema, &path).join(", ")
                    ),
                ));
            }
            Some(kind) => typed_env_value(&var, kind, raw)?,
            None => {
                let parent = &path[..path.len().saturating_sub(1)];
                let hint = match lookup_table(&schema, parent) {
                    Some(_) => format!(
                        "; expected one of {}",
                        known_vars(&schema, parent).join(", ")
                    ),
                    None => String::new(),
                };
                return Err(Error::config(
                    &var,
                    format!(
                        "unknown environment variable `{var}`: not a configuration setting{hint}"
                    ),
                ));
            }
        };
        if let Some(previous) = by_path.get(&path) {
            return Err(Error::config(
                &var,
                format!(
                    "`{var}` and `{}` both set `{}`; keep one",
                    previous.var,
                    path.join(".")
                ),
            ));
        }
        by_path.insert(path.clone(), EnvOverride { var, path, value });
    }
    Ok(by_path.into_values().collect())
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    lookup_table(table, parents)?.get(last)
}

fn lookup_table<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Table> {
    path.iter()
        .try_fold(table, |table, segment| table.get(segment)?.as_table())
}

/// The variable names of every setting in the section at `path`, for error hints.
fn known_vars(schema: &toml::Table, path: &[String]) -> Vec<String> {
    let Some(section) = lookup_table(schema, path) else {
        return Vec::new();
    };
    section
        .iter()
        .filter(|(_, value)| !value.is_table())
        .map(|(key, _)| {
            let mut segments: Vec<&str> = path.iter().map(String::as_str).collect();
            segments.push(key);
            env_var_name(&segments)
        })
        .collect()
}

fn env_var_name(path: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR).to_uppercase())
}

/// Environment values are always text; the schema's default says what type is meant.
/// A list is comma-separated (`10.0.0.0/8, 192.0.2.7`); an empty value is an empty list.
fn typed_env_value(var: &str, kind: &toml::Value, raw: String) -> Result<toml::Value, Error> {
    match kind {
        toml::Value::Array(_) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        )),
        toml::Value::Integer(_) => raw
            .trim()
            .parse()
            .map(toml::Value::Integer)
            .map_err(|_| Error::config(var, format!("`{var}` must be an integer, got `{raw}`"))),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(Error::config(
                var,
                format!("`{var}` must be `true` or `false`, got `{raw}`"),
            )),
        },
        _ => Ok(toml::Value::String(raw)),
    }
}

fn insert_at(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for segment in parents {
        let slot = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // A non-table here cannot come from a file that already parsed as `Config`.
        if !slot.is_table() {
            *slot = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = slot else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

/// Maps an error from the merged file + env table back to the variable that caused it.
fn merged_error(err: &toml::de::Error, overrides: &[EnvOverride]) -> Error {
    let key = error_key(err);
    let culprit = key
        .as_deref()
        .and_then(|key| overrides.iter().find(|o| o.path.join(".") == key));
    match culprit {
        Some(o) => Error::config(&o.var, format!("`{}`: {}", o.var, err.message())),
        None => Error::Config {
            key,
            message: err.message().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const EXAMPLE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../gatehouse.example.toml"
    ));

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f
    }

    fn config_error(err: Error) -> (Option<String>, String) {
        match err {
            Error::Config { key, message } => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_with_no_file_and_no_env() {
        let config = Config::load(None, env(&[("HOME", "/root")])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.mode, Mode::Dev);
        assert_eq!(config.server.public_url(), "http://localhost:8080");
        assert_eq!(
            config.database_url(),
            "sqlite://gatehouse-data/gatehouse.db"
        );
        assert_eq!(config.database.backend().unwrap(), DatabaseBackend::Sqlite);
        assert_eq!(config.log_format(), LogFormat::Pretty);
        assert_eq!(
            config.master_key_file(),
            Some(PathBuf::from("gatehouse-data/master.key"))
        );
        assert!(config.server.worker_count() >= 1);
    }

    #[test]
    fn file_values_are_used() {
        let f = file(
            "data_dir = \"/var/lib/gatehouse\"\n\
             [server]\nlisten = \"0.0.0.0:9000\"\npublic_url = \"https://id.example.com/\"\n\
             [database]\nurl = \"postgres://gh:pw@db/gatehouse\"\npool_size = 20\n\
             [log]\nformat = \"json\"\n",
        );
        let config = Config::load(Some(f.path()), env(&[])).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/gatehouse"));
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(config.server.public_url(), "https://id.example.com");
        assert_eq!(config.database.pool_size, 20);
        assert_eq!(
            config.database.backend().unwrap(),
            DatabaseBackend::Postgres
        );
        assert_eq!(config.log_format(), LogFormat::Json);
        assert_eq!(config.bootstrap, BootstrapConfig::default());
        assert!(!format!("{config:?}").contains("pw@"));
    }

    #[test]
    fn env_overrides_file() {
        let f = file("[server]\nlisten = \"0.0.0.0:9000\"\nworkers = 2\n");
        let config = Config::load(
            Some(f.path()),
            env(&[
                ("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:7000"),
                ("GATEHOUSE_DATA_DIR", "/tmp/gh"),
                ("gatehouse_ignored_lowercase_prefix", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:7000");
        assert_eq!(config.server.workers, 2);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/gh"));
    }

    #[test]
    fn production_needs_an_https_public_url() {
        let error = Config::load(
            None,
            env(&[
                ("GATEHOUSE_MODE", "production"),
                ("GATEHOUSE_SECRETS__MASTER_KEYS", "k1:x"),
                ("GATEHOUSE_MAIL__SMTP_HOST", "smtp.example.com"),
            ]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("server.public_url"), "{error}");
    }

    #[test]
    fn env_values_are_typed_by_the_schema() {
        let config = Config::load(
            None,
            env(&[
                ("GATEHOUSE_DATABASE__POOL_SIZE", "3"),
                ("GATEHOUSE_server__Shutdown_Timeout_Secs", " 12 "),
                ("GATEHOUSE_MODE", "production"),
                ("GATEHOUSE_SECRETS__MASTER_KEYS", "k1:AAAA"),
                ("GATEHOUSE_MAIL__SMTP_HOST", "smtp.example.com"),
                ("GATEHOUSE_SERVER__PUBLIC_URL", "https://login.example.com"),
                (
                    "GATEHOUSE_SECRETS__MASTER_KEY_FILE",
                    "/etc/gatehouse/master.key",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.pool_size, 3);
        assert_eq!(config.server.shutdown_timeout(), Duration::from_secs(12));
        assert_eq!(config.mode, Mode::Production);
        assert_eq!(config.log_format(), LogFormat::Json);
        assert_eq!(
            config
                .secrets
                .master_keys
                .as_ref()
                .map(SecretString::expose),
            Some("k1:AAAA")
        );

        // No setting is boolean yet; the typing rule is exercised directly.
        let flag = toml::Value::Boolean(false);
        assert_eq!(
            typed_env_value("GATEHOUSE_X", &flag, "TRUE".to_owned()).unwrap(),
            toml::Value::Boolean(true)
        );
        let (key, _) =
            config_error(typed_env_value("GATEHOUSE_X", &flag, "yes".to_owned()).unwrap_err());
        assert_eq!(key.as_deref(), Some("GATEHOUSE_X"));
    }

    #[test]
    fn unknown_file_key_is_named_with_its_location() {
        let f = file("mode = \"dev\"\n[server]\nlistn = \"0.0.0.0:1\"\n");
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        let rendered = err.to_string();
        let (key, message) = config_error(err);
        assert_eq!(key.as_deref(), Some("server.listn"));
        assert!(message.contains(":3:1: unknown field `listn`"), "{message}");
        assert!(message.contains("`listen`"), "{message}");
        assert!(!rendered.contains('\n'), "must be one line: {rendered}");

        let f = file("bogus = 1\n");
        let (key, _) = config_error(Config::load(Some(f.path()), env(&[])).unwrap_err());
        assert_eq!(key.as_deref(), Some("bogus"));

        let f = file("[server]\nworkers = \"many\"\n");
        let (key, message) = config_error(Config::load(Some(f.path()), env(&[])).unwrap_err());
        assert_eq!(key.as_deref(), Some("server.workers"));
        assert!(message.contains(":2:11:"), "{message}");
    }

    #[test]
    fn missing_explicit_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(Some(&dir.path().join("nope.toml")), env(&[])).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }

    #[test]
    fn unknown_env_var_is_named() {
        for var in [
            "GATEHOUSE_SERVER__LISTN",
            "GATEHOUSE_LISTEN",
            "GATEHOUSE_NOPE__LISTEN",
            "GATEHOUSE_SERVER",
            "GATEHOUSE_SERVER__LISTEN__X",
        ] {
            let err = Config::load(None, env(&[(var, "x")])).unwrap_err();
            let (key, message) = config_error(err);
            assert_eq!(key.as_deref(), Some(var));
            assert!(message.contains(var), "{message}");
        }
        let (_, message) =
            config_error(Config::load(None, env(&[("GATEHOUSE_SERVER__LISTN", "x")])).unwrap_err());
        assert!(
            message.contains("GATEHOUSE_SERVER__LISTEN"),
            "hint: {message}"
        );
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let (key, message) = config_error(
            Config::load(None, env(&[("GATEHOUSE_SERVER__WORKERS", "four")])).unwrap_err(),
        );
        assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__WORKERS"));
        assert!(message.contains("integer"), "{message}");

        // Type errors the schema cannot catch surface from deserialization.
        let (key, message) = config_error(
            Config::load(None, env(&[("GATEHOUSE_SERVER__WORKERS", "-1")])).unwrap_err(),
        );
        assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__WORKERS"));
        assert!(message.contains("GATEHOUSE_SERVER__WORKERS"), "{message}");

        let (key, message) =
            config_error(Config::load(None, env(&[("GATEHOUSE_MODE", "prod")])).unwrap_err());
        assert_eq!(key.as_deref(), Some("GATEHOUSE_MODE"));
        assert!(message.contains("unknown variant `prod`"), "{message}");
    }

    #[test]
    fn same_setting_twice_in_env_is_rejected() {
        let err = Config::load(
            None,
            env(&[("GATEHOUSE_MODE", "dev"), ("GATEHOUSE_mode", "production")]),
        )
        .unwrap_err();
        let (_, message) = config_error(err);
        assert!(message.contains("GATEHOUSE_MODE") && message.contains("GATEHOUSE_mode"));
    }

    #[test]
    fn config_path_and_test_variables_are_ignored() {
        let config = Config::load(
            None,
            env(&[
                ("GATEHOUSE_CONFIG", "/etc/gatehouse.toml"),
                ("GATEHOUSE_TEST_POSTGRES_URL", "postgres://x"),
                ("GATEHOUSE_TEST_", ""),
            ]),
        )
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn validation_rejects_bad_settings() {
        let mut production = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        let (key, message) = config_error(production.validate().unwrap_err());
        assert_eq!(key.as_deref(), Some("secrets"));
        assert!(
            message.contains("GATEHOUSE_SECRETS__MASTER_KEYS"),
            "{message}"
        );
        assert!(Config::load(None, env(&[("GATEHOUSE_MODE", "production")])).is_err());
        production.secrets.master_key_file = Some(PathBuf::from("/etc/gatehouse/master.key"));
        production.server.public_url = Some("https://login.example.com".to_owned());
        let (key, message) = config_error(production.validate().unwrap_err());
        assert_eq!(key.as_deref(), Some("mail.smtp_host"));
        assert!(message.contains("GATEHOUSE_MAIL__SMTP_HOST"), "{message}");
        production.mail.smtp_host = Some("smtp.example.com".to_owned());
        production.validate().unwrap();

        type Breaker = fn(&mut Config);
        let cases: [(&str, Breaker); 32] = [
            ("server.listen", |c| {
                c.server.listen = "localhost".to_owned()
            }),
            ("database.pool_size", |c| c.database.pool_size = 0),
            ("log.level", |c| c.log.level = " ".to_owned()),
            ("database.url", |c| {
                c.database.url = Some("mysql://u:secret@h/db".to_owned())
            }),
            ("server.public_url", |c| {
                c.server.public_url = Some("id.example.com".to_owned())
            }),
            ("passwords.memory_kib", |c| {
                c.passwords.parallelism = 4;
                c.passwords.memory_kib = 31;
            }),
            ("passwords.iterations", |c| c.passwords.iterations = 0),
            ("passwords.parallelism", |c| c.passwords.parallelism = 0),
            ("passwords.min_length", |c| c.passwords.min_length = 7),
            ("passwords.max_length", |c| c.passwords.max_length = 11),
            ("passwords.max_length", |c| c.passwords.max_length = 1025),
            ("passwords.min_strength", |c| c.passwords.min_strength = 5),
            ("mail.smtp_host", |c| {
                c.mail.smtp_host = Some(" ".to_owned())
            }),
            ("mail.smtp_port", |c| c.mail.smtp_port = 0),
            ("mail.timeout_secs", |c| c.mail.timeout_secs = 0),
            ("mail.password", |c| c.mail.username = Some("u".to_owned())),
            ("mail.username", |c| {
                c.mail.password = Some(SecretString::new("hunter2"))
            }),
            ("mail.from", |c| c.mail.from = "Gatehouse".to_owned()),
            ("mail.from", |c| {
                c.mail.from = "Gatehouse <@localhost>".to_owned()
            }),
            ("sessions.idle_timeout_mins", |c| {
                c.sessions.idle_timeout_mins = 0
            }),
            ("sessions.idle_timeout_mins", |c| {
                c.sessions.idle_timeout_mins = 13 * 60
            }),
            ("sign_in.account_backoff_after", |c| {
                c.sign_in.account_backoff_after = 11
            }),
            ("sign_in.window_mins", |c| c.sign_in.window_mins = 0),
            ("keys.retired_publish_hours", |c| {
                c.keys.retired_publish_hours = 0
            }),
            ("keys.rotation_days", |c| {
                c.keys.rotation_days = 1;
                c.keys.retired_publish_hours = 48
            }),
            ("registration.resend_per_hour", |c| {
                c.registration.resend_per_hour = 0
            }),
            ("pdp.decision_log_retention_days", |c| {
                c.pdp.decision_log_retention_days = 36_501
            }),
            ("pdp.subject_cache_ms", |c| c.pdp.subject_cache_ms = 60_001),
            ("pdp.decision_log_queue", |c| c.pdp.decision_log_queue = 0),
            ("pdp.decision_log_queue", |c| {
                c.pdp.decision_log_queue = 1_000_001
            }),
            ("pdp.decision_log_wait_ms", |c| {
                c.pdp.decision_log_wait_ms = 0
            }),
            ("pdp.decision_log_wait_ms", |c| {
                c.pdp.decision_log_wait_ms = 60_001
            }),
        ];
        for (expected, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            let (key, message) = config_error(config.validate().unwrap_err());
            assert_eq!(key.as_deref(), Some(expected));
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn new_sections_from_file_and_env() {
        let f = file(
            "[passwords]\nmemory_kib = 65536\nmin_length = 15\n\
             [mail]\nsmtp_host = \"smtp.example.com\"\ntls = \"tls\"\nsmtp_port = 465\n\
             username = \"gatehouse\"\n\
             [sign_in]\nlockout_mins = 30\n",
        );
        let config = Config::load(
            Some(f.path()),
            env(&[
                ("GATEHOUSE_PASSWORDS__ITERATIONS", "3"),
                ("GATEHOUSE_MAIL__PASSWORD", "hunter2"),
                ("GATEHOUSE_SESSIONS__IDLE_TIMEOUT_MINS", "10"),
                ("GATEHOUSE_SIGN_IN__ACCOUNT_LOCKOUT_THRESHOLD", "5"),
                ("GATEHOUSE_REGISTRATION__RESEND_PER_HOUR", "1"),
                ("GATEHOUSE_MODE", "production"),
                ("GATEHOUSE_SECRETS__MASTER_KEYS", "k1:x"),
                ("GATEHOUSE_SERVER__PUBLIC_URL", "https://login.example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(config.passwords.memory_kib, 65536);
        assert_eq!(config.passwords.iterations, 3);
        assert_eq!(config.passwords.min_length, 15);
        assert_eq!(config.passwords.max_length, 256);
        assert_eq!(config.mail.smtp_host.as_deref(), Some("smtp.example.com"));
        assert_eq!(config.mail.tls, MailTls::Tls);
        assert_eq!(config.mail.smtp_port, 465);
        assert_eq!(config.mail.username.as_deref(), Some("gatehouse"));
        assert_eq!(
            config.mail.password.as_ref().map(SecretString::expose),
            Some("hunter2")
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.mail.timeout(), Duration::from_secs(10));
        assert_eq!(config.sessions.idle_timeout(), Duration::from_secs(600));
        assert_eq!(
            config.sessions.absolute_timeout(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(config.sign_in.account_lockout_threshold, 5);
        assert_eq!(config.sign_in.lockout(), Duration::from_secs(1800));
        assert_eq!(config.sign_in.window(), Duration::from_secs(3600));
        assert_eq!(config.registration.resend_per_hour, 1);
        assert_eq!(
            config.registration.verification_link_lifetime(),
            Duration::from_secs(24 * 3600)
        );

        let (key, message) =
            config_error(Config::load(None, env(&[("GATEHOUSE_MAIL__TLS", "ssl")])).unwrap_err());
        assert_eq!(key.as_deref(), Some("GATEHOUSE_MAIL__TLS"));
        assert!(message.contains("unknown variant `ssl`"), "{message}");
    }

    #[test]
    fn trusted_proxies_from_file_and_env() {
        assert!(Config::default().server.trusted_proxies.is_empty());
        assert_eq!(
            Config::default().server.forwarded_header,
            ForwardedHeader::XForwardedFor
        );
        let f = file(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]\n\
             forwarded_header = \"forwarded\"\n",
        );
        let config = Config::load(Some(f.path()), env(&[])).unwrap();
        let expected: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        assert_eq!(config.server.trusted_proxies, expected);
        assert_eq!(config.server.forwarded_header, ForwardedHeader::Forwarded);

        // The variable is a comma-separated list and wins over the file.
        let config = Config::load(
            Some(f.path()),
            env(&[(
                "GATEHOUSE_SERVER__TRUSTED_PROXIES",
                " 192.0.2.7 ,172.16.0.0/12,",
            )]),
        )
        .unwrap();
        let expected: Vec<IpNet> = vec![
            "192.0.2.7".parse().unwrap(),
            "172.16.0.0/12".parse().unwrap(),
        ];
        assert_eq!(config.server.trusted_proxies, expected);
        let config = Config::load(
            Some(f.path()),
            env(&[("GATEHOUSE_SERVER__TRUSTED_PROXIES", "")]),
        )
        .unwrap();
        assert!(config.server.trusted_proxies.is_empty());

        let (key, message) = config_error(
            Config::load(
                None,
                env(&[("GATEHOUSE_SERVER__TRUSTED_PROXIES", "10.0.0.1/8")]),
            )
            .unwrap_err(),
        );
        assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__TRUSTED_PROXIES"));
        assert!(message.contains("10.0.0.0/8"), "{message}");
        let bad = file("[server]\ntrusted_proxies = [\"proxy.internal\"]\n");
        let (key, message) = config_error(Config::load(Some(bad.path()), env(&[])).unwrap_err());
        assert_eq!(key.as_deref(), Some("server.trusted_proxies"));
        assert!(message.contains("not an IP address"), "{message}");
        let (key, _) = config_error(
            Config::load(
                None,
                env(&[("GATEHOUSE_SERVER__FORWARDED_HEADER", "x-real-ip")]),
            )
            .unwrap_err(),
        );
        assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__FORWARDED_HEADER"));
    }

    #[test]
    fn passkey_limits_default_to_the_password_ones() {
        let defaults = Config::default();
        assert_eq!(
            defaults.passkeys.credential_lockout_threshold,
            defaults.sign_in.account_lockout_threshold
        );
        assert_eq!(
            defaults.passkeys.credential_backoff_after,
            defaults.sign_in.account_backoff_after
        );
        assert_eq!(
            defaults.passkeys.ip_lockout_threshold,
            defaults.sign_in.ip_lockout_threshold
        );
        assert_eq!(
            defaults.passkeys.lockout_mins,
            defaults.sign_in.lockout_mins
        );
        assert_eq!(defaults.passkeys.window_mins, defaults.sign_in.window_mins);

        let config = Config::load(
            None,
            env(&[
                ("GATEHOUSE_PASSKEYS__IP_LOCKOUT_THRESHOLD", "500"),
                ("GATEHOUSE_REGISTRATION__SIGNUP_MAILS_PER_HOUR", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(config.passkeys.ip_lockout_threshold, 500);
        assert_eq!(config.registration.signup_mails_per_hour, 2);

        type Breaker = fn(&mut Config);
        let cases: [(&str, Breaker); 5] = [
            ("passkeys.credential_backoff_after", |c| {
                c.passkeys.credential_backoff_after = 11
            }),
            ("passkeys.ip_lockout_threshold", |c| {
                c.passkeys.ip_lockout_threshold = 0
            }),
            ("passkeys.window_mins", |c| c.passkeys.window_mins = 0),
            ("registration.signup_mails_per_hour", |c| {
                c.registration.signup_mails_per_hour = 0
            }),
            ("registration.signup_mails_per_ip_hour", |c| {
                c.registration.signup_mails_per_ip_hour = 0
            }),
        ];
        for (expected, break_it) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            let (key, _) = config_error(config.validate().unwrap_err());
            assert_eq!(key.as_deref(), Some(expected));
        }
    }

    #[test]
    fn decision_log_retention() {
        assert_eq!(
            Config::default().pdp.decision_log_retention(),
            Some(Duration::from_secs(90 * 86_400))
        );
        let config = Config::load(
            None,
            env(&[("GATEHOUSE_PDP__DECISION_LOG_RETENTION_DAYS", "0")]),
        )
        .unwrap();
        assert_eq!(config.pdp.decision_log_retention(), None, "0 keeps forever");
    }

    #[test]
    fn decision_log_overflow_waits_unless_sampling_is_chosen() {
        let defaults = Config::default().pdp;
        assert_eq!(defaults.decision_log_when_full, DecisionLogWhenFull::Wait);
        let f = file("[pdp]\ndecision_log_when_full = \"sample\"\ndecision_log_queue = 8\n");
        let config = Config::load(
            Some(f.path()),
            env(&[("GATEHOUSE_PDP__DECISION_LOG_WAIT_MS", "250")]),
        )
        .unwrap();
        assert_eq!(
            config.pdp.decision_log_when_full,
            DecisionLogWhenFull::Sample
        );
        assert_eq!(config.pdp.decision_log_queue, 8);
        assert_eq!(config.pdp.decision_log_wait_ms, 250);
        let refused = Config::load(
            None,
            env(&[("GATEHOUSE_PDP__DECISION_LOG_WHEN_FULL", "drop")]),
        );
        assert!(refused.is_err(), "only wait or sample");
    }

    #[test]
    fn database_urls() {
        use DatabaseBackend::*;
        for (url, backend) in [
            ("sqlite:///var/lib/gh.db", Sqlite),
            ("sqlite://gh.db", Sqlite),
            ("sqlite::memory:", Sqlite),
            ("postgres://u:p@h/db", Postgres),
            ("postgresql://h/db", Postgres),
        ] {
            assert_eq!(DatabaseBackend::from_url(url).unwrap(), backend, "{url}");
        }
        for url in [
            "sqlite://",
            "postgres://",
            "mysql://h/db",
            "gatehouse.db",
            "",
        ] {
            assert!(DatabaseBackend::from_url(url).is_err(), "{url}");
        }
        assert_eq!(sqlite_path("sqlite::memory:"), Some(":memory:"));
        assert_eq!(sqlite_path("sqlite:///a/b.db"), Some("/a/b.db"));
        assert_eq!(sqlite_path("postgres://h/db"), None);
        assert_eq!(
            redact_url_password("postgres://gh:hunter2@db:5432/gh?sslmode=require"),
            "postgres://gh:[redacted]@db:5432/gh?sslmode=require"
        );
        assert_eq!(redact_url_password("postgres://db/gh"), "postgres://db/gh");
    }

    #[test]
    fn secret_string_debug_is_redacted() {
        let secret = SecretString::new("k1:c2VjcmV0");
        assert_eq!(format!("{secret:?}"), "\"[redacted]\"");
        let config = Config {
            secrets: SecretsConfig {
                master_keys: Some(secret.clone()),
                master_key_file: None,
            },
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
        assert_eq!(secret, SecretString::new("k1:c2VjcmV0"));
        assert_ne!(secret, SecretString::new("k1:other"));
    }

    #[test]
    fn optional_keys_are_real_settings() {
        // deny_unknown_fields makes this fail if an entry names no field.
        let schema = schema().unwrap();
        Config::deserialize(toml::Value::Table(schema)).unwrap();
    }

    /// The example file writes out every setting with its default value and leaves only
    /// the "unset by default" ones commented, so it cannot drift from the code.
    #[test]
    fn example_file_is_exactly_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());

        // Every defaulted setting is written out, not just left to the defaults...
        let raw: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults = match toml::Value::try_from(Config::default()).unwrap() {
            toml::Value::Table(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(raw, defaults);

        // ...the unset ones are shown commented out, and every variable is documented.
        for key in OPTIONAL_KEYS {
            let (_, field) = key.rsplit_once('.').unwrap();
            assert!(
                EXAMPLE.contains(&format!("# {field} = ")),
                "{key} not shown"
            );
        }
        let schema = schema().unwrap();
        let mut leaves = Vec::new();
        collect_leaves(&schema, &mut Vec::new(), &mut leaves);
        assert!(leaves.len() > 10);
        for leaf in leaves {
            let var = env_var_name(&leaf.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(EXAMPLE.contains(&var), "{var} not documented");
        }
    }

    fn collect_leaves(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (key, value) in table {
            prefix.push(key.clone());
            match value {
                toml::Value::Table(inner) => collect_leaves(inner, prefix, out),
                _ => out.push(prefix.clone()),
            }
            prefix.pop();
        }
    }
}
