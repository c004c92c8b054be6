//! Application state: everything a request handler may need, built once at start.

use std::path::Path;
use std::sync::Arc;

use gatehouse_core::config::{Config, DatabaseBackend};
use gatehouse_core::events::{DomainEvent, EventBus, EventEnvelope, EventTransport};
use gatehouse_core::ids::{EventId, NodeId};
use gatehouse_core::secrets::{Cipher, KeySource};
use gatehouse_core::{SharedClock, SystemClock};
use gatehouse_identity_store::Pool;
use gatehouse_identity_store::db::{self, ConnectOptions};
use gatehouse_identity_store::events_pg::{self, Listener, PgNotifyTransport};

use gatehouse_authn::Authn;
use gatehouse_consent::Consents;
use gatehouse_consent::pdp::{Pdp, PdpConfig};
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
    pub cookie_policy: CookiePolicy,
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
pub fn announce(config: &Config, pool: &Pool, event: DomainEvent) {
    if !matches!(config.database.backend(), Ok(DatabaseBackend::Postgres)) {
        return;
    }
    let envelope = EventEnvelope {
        id: EventId::new(),
        origin: NodeId::new(),
        event,
    };
    if let Err(error) = PgNotifyTransport::new(pool.clone()).publish(&envelope) {
        tracing::warn!(%error, "running servers were not notified; they pick the change up within a minute");
    }
}

/// Opens the pool after preparing whatever the database needs on disk.
pub fn open_pool(config: &Config) -> Result<Pool, ServerError> {
    let url = config.database_url();
    let backend = config.database.backend().map_err(ServerError::Config)?;
    // The dev master key creates the directory itself when it needs to.
    if backend == DatabaseBackend::Sqlite {
        prepare_data_dir(&config.data_dir)?;
    }
    let options = ConnectOptions {
        url,
        pool_size: config.database.pool_size,
        connect_timeout: config.database.connect_timeout(),
        sqlite_busy_timeout: config.database.sqlite_busy_timeout(),
    };
    Ok(db::pool(&options)?)
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
        let applied = db::run_migrations(&mut conn)?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database migrations applied");
        }
        let bootstrapped = bootstrap::ensure(&mut conn, &cipher, clock.now(), &config.bootstrap)?;
        drop(conn);

        let (events, listener) = match config.database.backend().map_err(ServerError::Config)? {
            DatabaseBackend::Sqlite => (EventBus::in_process(), None),
            DatabaseBackend::Postgres => {
                let bus = EventBus::with_transport(
                    NodeId::new(),
                    Arc::new(PgNotifyTransport::new(pool.clone())),
                );
                let listener =
                    events_pg::spawn_listener(config.database_url(), bus.clone(), EVENT_POLL)?;
                (bus, Some(Arc::new(listener)))
            }
        };

        let metrics = Arc::new(Metrics::new());
        let authn = Authn::new(
            &config,
            pool.clone(),
            cipher.clone(),
            Arc::clone(&clock),
            events.clone(),
        )
        .map_err(|e| ServerError::Startup(format!("authentication service: {e}")))?;
        let issuer = Issuer::new(pool.clone(), cipher.clone(), Arc::clone(&clock));
        let consents = Consents::new(pool.clone(), Arc::clone(&clock), events.clone());
        let pdp = Pdp::on_store(
            pool.clone(),
            Arc::clone(&clock),
            PdpConfig {
                subject_ttl: std::time::Duration::from_millis(config.pdp.subject_cache_ms),
                ..PdpConfig::default()
            },
        )
        .map_err(|e| ServerError::Startup(format!("policy decision point: {e}")))?;
        // The subject cache, kept exact by this node's events and bounded by its
        // lifetime across nodes.
        pdp.watch(&events);
        let ui = Ui::embedded().map_err(|e| ServerError::Startup(format!("themes: {e}")))?;
        let public_url = config.server.public_url();
        let tenants =
            TenantDirectory::new(pool.clone(), config.bootstrap.tenant.clone(), &public_url);
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
                _listener: listener,
            },
            bootstrapped,
        ))
    }
}
