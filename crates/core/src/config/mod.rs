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

mod accounts;
mod env;
mod server;
mod services;

pub use accounts::*;
use env::*;
pub use server::*;
pub use services::*;

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
    "server.operations_listen",
    "log.otlp_endpoint",
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
                .map_err(|_| Error::config(&name, "is not valid UTF-8"))?;
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
        self.server.operations_addr()?;
        if let Some(url) = &self.log.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::config(
                "log.otlp_endpoint",
                format!("`{url}` must be an http:// or https:// URL (OTLP over HTTP)"),
            ));
        }
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

#[cfg(test)]
mod tests;
