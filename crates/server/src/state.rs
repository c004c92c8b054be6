//! Application state: everything a request handler may need, built once at start.

use std::path::Path;
use std::sync::Arc;

use gatehouse_core::config::{Config, DatabaseBackend, DecisionLogWhenFull};
use gatehouse_core::events::{DomainEvent, EventBus, EventEnvelope, EventTransport};
use gatehouse_core::ids::{EventId, NodeId};
use gatehouse_core::secrets::{Cipher, KeySource};
use gatehouse_core::{SharedClock, SystemClock};
use gatehouse_identity_store::Pool;
use gatehouse_identity_store::db::{self, ConnectOptions};
use gatehouse_identity_store::events_pg::{self, Listener, PgNotifyTransport};
use gatehouse_identity_store::key_canary::{self, CanaryCheck};

use gatehouse_authn::Authn;
use gatehouse_consent::Consents;
use gatehouse_consent::pdp::{LogOverflow, Pdp, PdpConfig};
use gatehouse_token_issuer::service::Issuer;

use crate::ServerError;
use crate::bootstrap::{self, Bootstrapped};
use crate::http::cookies::CookiePolicy;
use crate::http::metrics::Metrics;
use crate::http::tenant::TenantDirectory;
use crate::ui::Ui;

const EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(25);

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub cipher: Cipher,
    pub events: EventBus,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub authn: Authn,
    pub issuer: Issuer,
    /// Purposes and consent records; withdrawal revokes the grants under it.
    pub consents: Consents,
    /// The policy decision point (AuthZEN).
    pub pdp: Pdp,
    pub ui: Ui,
    pub tenants: TenantDirectory,
    /// The operator's use cases, for the admin API.
    pub admin: gatehouse_admin::Admin,
    pub cookie_policy: CookiePolicy,
    /// Sends this node's events to the others (PostgreSQL only); its counters are
    /// exported at `/metrics`.
    pub event_publisher: Option<Arc<PgNotifyTransport>>,
    /// One readiness check at a time: a check the deadline gave up on may still hold
    /// a pooled connection until the socket times out, and probes must not pile up
    /// more of them while the database stalls.
    pub readiness_check: Arc<tokio::sync::Semaphore>,
    /// Keeps the cross-node event listener alive as long as any state clone lives.
    _listener: Option<Arc<Listener>>,
}

/// Creates the data directory (0700: it holds the SQLite database and in dev the
/// master key) and proves it is writable, so a bad path fails at start, clearly.
pub fn prepare_data_dir(path: &Path) -> Result<(), ServerError> {
    let fail = |source| ServerError::DataDir {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(path).map_err(fail)?;
    }
    let probe = path.join(".gatehouse-write-test");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Tells running servers about a change made by a CLI command. On PostgreSQL the
/// event goes out over NOTIFY and every node reacts at once; SQLite has no
/// cross-process channel, so nodes there see the change when their caches expire.
pub fn announce(config: &Config, event: DomainEvent) {
    if !matches!(config.database.backend(), Ok(DatabaseBackend::Postgres)) {
        return;
    }
    let envelope = EventEnvelope {
        id: EventId::new(),
        origin: NodeId::new(),
        event,
    };
    let sent = PgNotifyTransport::start_delivering(connect_options(config), CLI_DELIVERY_TIMEOUT)
        .map_err(|e| e.to_string())
        .and_then(|transport| transport.publish(&envelope).map_err(|e| e.to_string()));
    if let Err(error) = sent {
        tracing::warn!(%error, "running servers were not notified; they pick the change up within a minute");
    }
}

/// The bus for a command-line process: on PostgreSQL every event reaches the running
/// nodes before the call returns (the process may exit right after); on SQLite no
/// other process can hear it.
pub fn cli_bus(config: &Config) -> EventBus {
    if !matches!(config.database.backend(), Ok(DatabaseBackend::Postgres)) {
        return EventBus::in_process();
    }
    match PgNotifyTransport::start_delivering(connect_options(config), CLI_DELIVERY_TIMEOUT) {
        Ok(transport) => EventBus::with_transport(NodeId::new(), Arc::new(transport)),
        Err(error) => {
            tracing::warn!(%error, "cannot start the event publisher; running servers will not hear of this change");
            EventBus::in_process()
        }
    }
}

const CLI_DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connection settings for the pool and for the dedicated event connections.
pub fn connect_options(config: &Config) -> ConnectOptions {
    ConnectOptions {
        url: config.database_url(),
        pool_size: config.database.pool_size,
        connect_timeout: config.database.connect_timeout(),
        acquire_timeout: config.database.acquire_timeout(),
        sqlite_busy_timeout: config.database.sqlite_busy_timeout(),
        statement_timeout: config.database.statement_timeout(),
        network_timeout: config.database.network_timeout(),
    }
}

/// Refuses to start when the configured master keys cannot open the database's
/// canary: a node with the wrong keys would otherwise report ready and then fail
/// every sign-in and token request.
pub fn prove_master_keys(
    conn: &mut gatehouse_identity_store::AnyConnection,
    cipher: &Cipher,
    source: &KeySource,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ServerError> {
    match key_canary::check(conn, cipher, now)? {
        CanaryCheck::Opened | CanaryCheck::Created => Ok(()),
        CanaryCheck::WrongKeys { key_id } => {
            let sealed_with = key_id.as_deref().unwrap_or("unknown");
            if let KeySource::Generated(path) = source {
                // The dev key file was missing and has just been made: it can open
                // nothing here. Take it away again so that restoring the original
                // file is all the operator has to do.
                let _ = std::fs::remove_file(path);
                return Err(ServerError::Startup(format!(
                    "{} is missing but this database holds secrets sealed with key `{sealed_with}`: \
                     restore the key file (its secrets cannot be opened without it), or use a \
                     fresh database to start afresh",
                    path.display()
                )));
            }
            Err(ServerError::Startup(format!(
                "the configured master keys ({}) cannot open this database's secrets, which were \
                 sealed with key `{sealed_with}`: configure the master keys this database was \
                 created with",
                cipher.key_ids().join(", "),
            )))
        }
    }
}

/// Opens the pool after preparing whatever the database needs on disk.
pub fn open_pool(config: &Config) -> Result<Pool, ServerError> {
    let backend = config.database.backend().map_err(ServerError::Config)?;
    // The dev master key creates the directory itself when it needs to.
    if backend == DatabaseBackend::Sqlite {
        prepare_data_dir(&config.data_dir)?;
    }
    Ok(db::pool(&connect_options(config))?)
}

impl AppState {
    /// Everything `serve` needs: keys, pool, migrations, event bus, first-start data.
    pub fn open(config: Config) -> Result<(AppState, Bootstrapped), ServerError> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// As [`AppState::open`], with time supplied by the caller (tests move it).
    pub fn open_with_clock(
        config: Config,
        clock: SharedClock,
    ) -> Result<(AppState, Bootstrapped), ServerError> {
        let pool = open_pool(&config)?;
        let (cipher, source) = Cipher::load(&config).map_err(ServerError::Secrets)?;
        match &source {
            KeySource::Generated(path) => tracing::warn!(
                path = %path.display(),
                "generated a development master key; production mode requires GATEHOUSE_SECRETS__MASTER_KEYS or secrets.master_key_file"
            ),
            other => {
                tracing::info!(source = %other, key_id = cipher.active_key_id(), "master key loaded")
            }
        }

        let mut conn = pool
            .get()
            .map_err(gatehouse_identity_store::StoreError::from)?;
        if config.database.migrate_on_start {
            let applied = db::run_migrations(&mut conn)?;
            if !applied.is_empty() {
                tracing::info!(?applied, "database migrations applied");
            }
        } else {
            let pending = db::pending_migrations(&mut conn)?;
            if pending > 0 {
                return Err(ServerError::Startup(format!(
                    "{pending} database migration(s) pending and database.migrate_on_start \
                     is false: run `gatehouse migrate` first (the deploy's migration job)"
                )));
            }
        }
        prove_master_keys(&mut conn, &cipher, &source, clock.now())?;
        let bootstrapped = bootstrap::ensure(&mut conn, &cipher, clock.now(), &config.bootstrap)?;
        drop(conn);

        let (events, listener, event_publisher) = match config
            .database
            .backend()
            .map_err(ServerError::Config)?
        {
            DatabaseBackend::Sqlite => (EventBus::in_process(), None, None),
            DatabaseBackend::Postgres => {
                let node = NodeId::new();
                let transport = Arc::new(PgNotifyTransport::start(connect_options(&config), node)?);
                let bus = EventBus::with_transport(node, Arc::clone(&transport) as _);
                let listener =
                    events_pg::spawn_listener(connect_options(&config), bus.clone(), EVENT_POLL)?;
                (bus, Some(Arc::new(listener)), Some(transport))
            }
        };

        let metrics = Arc::new(Metrics::new());
        let ui = Ui::embedded().map_err(|e| ServerError::Startup(format!("themes: {e}")))?;
        let authn = Authn::new(
            &config,
            pool.clone(),
            cipher.clone(),
            Arc::clone(&clock),
            events.clone(),
            Arc::new(ui.clone()),
        )
        .map_err(|e| ServerError::Startup(format!("authentication service: {e}")))?;
        authn.count_outcomes(Arc::clone(&metrics) as _);
        let issuer = Issuer::new(pool.clone(), cipher.clone(), Arc::clone(&clock));
        let consents = Consents::new(
            pool.clone(),
            cipher.clone(),
            Arc::clone(&clock),
            events.clone(),
        );
        let pdp = Pdp::on_store(
            pool.clone(),
            Arc::clone(&clock),
            PdpConfig {
                subject_ttl: std::time::Duration::from_millis(config.pdp.subject_cache_ms),
                log_capacity: config.pdp.decision_log_queue,
                log_overflow: match config.pdp.decision_log_when_full {
                    DecisionLogWhenFull::Wait => LogOverflow::Wait,
                    DecisionLogWhenFull::Sample => LogOverflow::Sample,
                },
                log_wait: std::time::Duration::from_millis(config.pdp.decision_log_wait_ms),
                ..PdpConfig::default()
            },
        )
        .map_err(|e| ServerError::Startup(format!("policy decision point: {e}")))?;
        // The subject cache, kept exact by this node's events and bounded by its
        // lifetime across nodes.
        pdp.watch(&events);
        let public_url = config.server.public_url();
        let tenants =
            TenantDirectory::new(pool.clone(), config.bootstrap.tenant.clone(), &public_url);
        let admin = gatehouse_admin::Admin::new(gatehouse_admin::AdminParts {
            pool: pool.clone(),
            cipher: cipher.clone(),
            clock: clock.clone(),
            events: events.clone(),
            authn: authn.clone(),
            issuer: issuer.clone(),
            consents: consents.clone(),
            pdp: pdp.clone(),
            urls: Arc::new(tenants.clone()),
            outbound: gatehouse_outbound::Outbound::from_config(&config.outbound)
                .map_err(|e| ServerError::Startup(e.to_string()))?,
        })
        .map_err(|e| ServerError::Startup(format!("the admin service: {e}")))?;
        Ok((
            AppState {
                cookie_policy: CookiePolicy::for_public_url(&public_url),
                config: Arc::new(config),
                pool,
                cipher,
                events,
                clock,
                metrics,
                authn,
                issuer,
                consents,
                pdp,
                ui,
                tenants,
                admin,
                event_publisher,
                readiness_check: Arc::new(tokio::sync::Semaphore::new(1)),
                _listener: listener,
            },
            bootstrapped,
        ))
    }
}
