//! One test environment for the authentication service's tests (unit and
//! integration): a throwaway
//! database (SQLite or PostgreSQL), a tenant `acme`, a service with cheap Argon2
//! and real SMTP to a catcher, a manual clock and an event bus. Each module's tests
//! wrap it with their own helpers instead of building it again.

use std::sync::Arc;

use gatehouse_core::config::{Config, MailConfig, MailTls, PasswordConfig};
use gatehouse_core::events::EventBus;
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_core::{Clock, ManualClock};
use gatehouse_identity_store::db::ConnectOptions;
use gatehouse_identity_store::tenants::{self, Tenant, TenantData};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::{Backend, Pool};

use crate::Authn;
use crate::testing::{PlainMailRenderer, SmtpCatcher};

/// Argon2's minimum cost: these tests are about what the service does, not strength.
pub fn cheap_passwords(memory_kib: u32) -> PasswordConfig {
    PasswordConfig {
        memory_kib,
        iterations: 1,
        parallelism: 1,
        ..PasswordConfig::default()
    }
}

/// What a test environment is made of; fields move out into a module's own `Env`.
#[allow(missing_debug_implementations)]
pub struct Kit {
    pub authn: Authn,
    pub pool: Pool,
    pub clock: ManualClock,
    pub cipher: Cipher,
    pub tenant: Tenant,
    /// The bus the service publishes on; subscribe to see its events.
    pub bus: EventBus,
    pub catcher: SmtpCatcher,
    pub dir: tempfile::TempDir,
    /// Dropped last: the database outlives the service's connections.
    pub db: TestDb,
}

/// How to build a [`Kit`].
#[derive(Debug)]
pub struct KitOptions {
    pub connections: u32,
    /// The tenant's settings.
    pub settings: serde_json::Value,
    /// The hashing pool's threads and queue; the machine's default when `None`.
    pub hashing: Option<(usize, usize)>,
}

impl Default for KitOptions {
    fn default() -> Self {
        KitOptions {
            connections: 4,
            settings: serde_json::json!({}),
            hashing: None,
        }
    }
}

impl Kit {
    /// A kit with `options`, its configuration adjusted by `adjust` last.
    pub fn with(backend: Backend, options: KitOptions, adjust: impl FnOnce(&mut Config)) -> Kit {
        let db = TestDb::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let catcher = SmtpCatcher::start();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            passwords: cheap_passwords(8),
            mail: MailConfig {
                smtp_host: Some("127.0.0.1".into()),
                smtp_port: catcher.port(),
                tls: MailTls::None,
                timeout_secs: 5,
                ..MailConfig::default()
            },
            ..Config::default()
        };
        adjust(&mut config);
        let pool = gatehouse_identity_store::db::pool(&ConnectOptions {
            pool_size: options.connections,
            ..ConnectOptions::new(&db.url)
        })
        .unwrap();
        let cipher = Cipher::new(vec![MasterKey::generate()]).unwrap();
        let clock = ManualClock::fixed();
        let tenant = tenants::create(
            &mut pool.get().unwrap(),
            clock.now(),
            TenantData {
                slug: "acme".into(),
                display_name: "Acme".into(),
                settings: options.settings.as_object().cloned().unwrap_or_default(),
            },
        )
        .unwrap();
        let bus = EventBus::in_process();
        let mut authn = Authn::new(
            &config,
            pool.clone(),
            cipher.clone(),
            Arc::new(clock.clone()),
            bus.clone(),
            PlainMailRenderer::shared(),
        )
        .unwrap();
        if let Some((threads, queue)) = options.hashing {
            Arc::get_mut(&mut authn.inner).unwrap().hashing =
                crate::hashing::HashingPool::new(threads, queue).unwrap();
        }
        Kit {
            authn,
            pool,
            clock,
            cipher,
            tenant,
            bus,
            catcher,
            dir,
            db,
        }
    }
}
