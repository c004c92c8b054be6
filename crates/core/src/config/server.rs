//! Where and how the server runs: listener and public URL, trusted proxies, the
//! database and its timeouts, master-key sources, logging.

use super::*;

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
    /// A second listener for operations (`/metrics`, `/healthz`, `/readyz`). When
    /// set, `/metrics` is served there only, never on the public listener.
    pub operations_listen: Option<String>,
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
            operations_listen: None,
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

    /// The operations listener's address, when one is configured.
    pub fn operations_addr(&self) -> Result<Option<SocketAddr>, Error> {
        let Some(listen) = &self.operations_listen else {
            return Ok(None);
        };
        let addr: SocketAddr = listen.parse().map_err(|_| {
            Error::config(
                "server.operations_listen",
                format!("`{listen}` is not a socket address; expected e.g. `0.0.0.0:9090`"),
            )
        })?;
        // Port 0 asks for any free port, so two of them never collide.
        if addr.port() != 0 && Some(addr) == self.listen.parse().ok() {
            return Err(Error::config(
                "server.operations_listen",
                "must differ from server.listen: operations stay off the public listener",
            ));
        }
        Ok(Some(addr))
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
    /// `serve` applies pending migrations before it listens. Off where a deploy runs
    /// `gatehouse migrate` once first (a Kubernetes Job): nodes then only check.
    pub migrate_on_start: bool,
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
            migrate_on_start: true,
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
            .field("migrate_on_start", &self.migrate_on_start)
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

pub(super) fn redact_url_password(url: &str) -> String {
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
    /// OpenTelemetry traces over OTLP/HTTP (protobuf) to this URL, e.g.
    /// `http://collector:4318/v1/traces`; `None`: no traces are exported.
    pub otlp_endpoint: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Auto,
            level: "info".to_owned(),
            otlp_endpoint: None,
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
