//! One test environment for the authentication service's tests (unit and
//! integration): a throwaway
//! database (SQLite or PostgreSQL), a tenant `acme`, a service with cheap Argon2
//! and real SMTP to a catcher, a manual clock and an event bus. Each module's tests
//! wrap it with their own helpers instead of building it again.

use std::sync::Arc;

use chrono::Duration;
use gatehouse_core::config::{Config, MailConfig, MailTls, PasswordConfig};
use gatehouse_core::events::EventBus;
use gatehouse_core::ids::{SessionId, TenantId, UserId};
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_core::{Clock, ManualClock};
use gatehouse_identity_store::audit::{self, AuditEvent};
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::db::ConnectOptions;
use gatehouse_identity_store::grants::{self, Authentication, NewGrant};
use gatehouse_identity_store::sessions::{self, NewSession, Session};
use gatehouse_identity_store::tenants::{self, Tenant, TenantData};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{
    AnyConnection, Backend, PageRequest, Pool, one_time_tokens, rate_limits,
};

use crate::PasswordHasher;
use crate::settings::TenantPolicy;
use crate::sign_in::{SignInOutcome, SignedIn};
use crate::testing::{PlainMailRenderer, SmtpCatcher};
use crate::{Authn, AuthnError, ClientInfo};

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
        let tenant = create_acme(
            &mut pool.get().unwrap(),
            clock.now(),
            options.settings.as_object().cloned().unwrap_or_default(),
        );
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

impl Kit {
    /// The tenant every test works in.
    pub fn t(&self) -> TenantId {
        self.tenant.id
    }

    pub fn conn(&self) -> gatehouse_identity_store::PooledConnection {
        self.pool.get().unwrap()
    }

    /// Writes `user` to the store of the kit's tenant, created now.
    pub fn seed(&self, user: SeedUser<'_>) -> UserId {
        seed_user(&self.pool, &self.cipher, self.clock.now(), self.t(), user)
    }

    /// An active user with a verified primary address and `password`.
    pub fn user_with_password(&self, email: &str, password: &str) -> UserId {
        self.seed(SeedUser {
            password: Some(password),
            ..SeedUser::new(email)
        })
    }

    /// A live session of `user` (three days long, password only), as a sign-in from
    /// `ip` would leave it.
    pub fn live_session(&self, user: UserId, ip: Option<&str>) -> SessionId {
        let (_, secret_hash) = crate::secrets::generate();
        sessions::create(
            &mut self.conn(),
            self.clock.now(),
            self.t(),
            NewSession {
                user_id: user,
                secret_hash,
                idle_timeout: Duration::days(3),
                absolute_timeout: Duration::days(3),
                ip: ip.map(str::to_owned),
                user_agent: None,
                auth_methods: Vec::new(),
                aal: 1,
            },
        )
        .unwrap()
        .id
    }

    /// A 30-day grant of `scope` to `client`, made now in `user`'s password `session`.
    pub fn session_grant(
        &self,
        user: UserId,
        session: SessionId,
        client: &str,
        issuer: Option<&str>,
        scope: &str,
    ) -> String {
        let now = self.clock.now();
        grants::create(
            &mut self.conn(),
            now,
            self.t(),
            NewGrant {
                client_id: client.into(),
                issuer: issuer.map(str::to_owned),
                authentication: Some(Authentication {
                    user_id: user,
                    session_id: session,
                    auth_time: now,
                    acr: None,
                    amr: vec!["pwd".into()],
                }),
                scope: scope.into(),
                resources: Vec::new(),
                purposes: Vec::new(),
                lifetime: Duration::days(30),
            },
        )
        .unwrap()
        .id
    }

    /// A password reset link for `user` issued now, valid for 15 minutes: the token
    /// the link carries.
    pub fn reset_link(&self, user: UserId) -> String {
        let (token, token_hash) = crate::secrets::generate();
        one_time_tokens::issue(
            &mut self.conn(),
            self.clock.now(),
            self.t(),
            user,
            one_time_tokens::Purpose::PasswordReset,
            &token_hash,
            Duration::minutes(15),
            &serde_json::json!({}),
        )
        .unwrap();
        token
    }

    /// A password sign-in from [`IP`] under [`open_policy`], for accounts without a
    /// second factor (see [`sign_in_with`]).
    pub async fn sign_in(
        &self,
        identifier: &str,
        password: &str,
        previous: Option<String>,
    ) -> Result<SignedIn, AuthnError> {
        sign_in_with(&self.authn, self.t(), identifier, password, previous, IP).await
    }

    /// A password sign-in under the policy of a tenant without settings, whatever
    /// its outcome (a second factor may be asked for).
    pub async fn password_sign_in(
        &self,
        email: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<SignInOutcome, AuthnError> {
        self.authn
            .sign_in_with_password(
                self.t(),
                &TenantPolicy::from_settings(&Default::default()),
                email.into(),
                zeroize::Zeroizing::new(password.into()),
                None,
                client,
            )
            .await
    }
}

/// The tenant `acme` with `settings`, the one every test works in.
pub fn create_acme(
    conn: &mut AnyConnection,
    now: chrono::DateTime<chrono::Utc>,
    settings: serde_json::Map<String, serde_json::Value>,
) -> Tenant {
    tenants::create(
        conn,
        now,
        TenantData {
            slug: "acme".into(),
            display_name: "Acme".into(),
            settings,
        },
    )
    .unwrap()
}

/// A runtime for driving the service's async API from synchronous tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What a browser at `ip` tells the service about itself.
pub fn client_from(ip: &str) -> ClientInfo {
    ClientInfo {
        ip: Some(ip.into()),
        user_agent: Some("test".into()),
        locale: None,
    }
}

/// Open registration, verified addresses required, no second factor asked.
pub fn open_policy() -> TenantPolicy {
    TenantPolicy {
        registration_enabled: true,
        require_verified_email: true,
        mfa_required: false,
        mfa_clients: Vec::new(),
        mfa_scopes: Vec::new(),
    }
}

/// The client address of [`Kit::sign_in`].
pub const IP: &str = "203.0.113.7";

/// A password sign-in from `ip` under [`open_policy`], for accounts without a
/// second factor.
pub async fn sign_in_with(
    authn: &Authn,
    tenant: TenantId,
    identifier: &str,
    password: &str,
    previous: Option<String>,
    ip: &str,
) -> Result<SignedIn, AuthnError> {
    authn
        .sign_in_with_password(
            tenant,
            &open_policy(),
            identifier.into(),
            zeroize::Zeroizing::new(password.into()),
            previous,
            client_from(ip),
        )
        .await
        .map(|outcome| {
            outcome
                .signed_in()
                .expect("no second factor in these tests")
        })
}

/// What an authenticator app shows at `at` for a base32 key: computed with
/// `totp-rs` directly, not with the code under test.
pub fn totp_code(secret_base32: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(crate::totp::DIGITS)
        .with_step_duration(crate::totp::STEP_SECONDS)
        .with_skew(0)
        .with_secret(totp_rs::Secret::try_from_base32(secret_base32).unwrap())
        .build()
        .unwrap()
        .generate(u64::try_from(at.timestamp()).unwrap())
        .to_string()
}

/// A six-digit code valid for no step near `at`.
pub fn wrong_totp_code(secret_base32: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let step = chrono::Duration::seconds(i64::try_from(crate::totp::STEP_SECONDS).unwrap());
    let valid: Vec<String> = (-3..=3)
        .map(|steps| totp_code(secret_base32, at + step * steps))
        .collect();
    (1..)
        .map(|n| format!("{:06}", n * 7919 % 1_000_000))
        .find(|candidate| !valid.contains(candidate))
        .unwrap()
}

/// The test password of [`seed_user`]'s accounts when none is given.
pub const SEED_PASSWORD: &str = "correct horse battery staple";

/// A user to put straight into the store, as the tests need one.
#[derive(Debug, Clone)]
pub struct SeedUser<'a> {
    pub email: &'a str,
    /// Hashed with cheap Argon2 unless `hashing` says otherwise; no password
    /// credential when `None`.
    pub password: Option<&'a str>,
    pub verified: bool,
    pub active: bool,
    /// The address's `kind` (`work`, `home`).
    pub kind: Option<&'a str>,
    pub hashing: Option<&'a PasswordConfig>,
}

impl<'a> SeedUser<'a> {
    /// An active user with a verified primary address and [`SEED_PASSWORD`].
    pub fn new(email: &'a str) -> Self {
        SeedUser {
            email,
            password: Some(SEED_PASSWORD),
            verified: true,
            active: true,
            kind: None,
            hashing: None,
        }
    }
}

/// Writes `user` (and its password credential) to the store.
pub fn seed_user(
    pool: &Pool,
    cipher: &Cipher,
    now: chrono::DateTime<chrono::Utc>,
    tenant: TenantId,
    user: SeedUser<'_>,
) -> UserId {
    let mut conn = pool.get().unwrap();
    let created = users::create(
        &mut conn,
        now,
        tenant,
        UserData {
            emails: vec![Email {
                value: user.email.into(),
                kind: user.kind.map(str::to_owned),
                primary: true,
                verified: user.verified,
            }],
            active: user.active,
            ..UserData::new(user.email)
        },
    )
    .unwrap();
    if let Some(password) = user.password {
        let cheap = cheap_passwords(8);
        let phc = PasswordHasher::new(user.hashing.unwrap_or(&cheap))
            .unwrap()
            .hash(password)
            .unwrap();
        credentials::create(
            &mut conn,
            cipher,
            now,
            tenant,
            created.id,
            NewCredential {
                kind: CredentialKind::Password,
                label: None,
                secret: phc.as_bytes(),
            },
        )
        .unwrap();
    }
    created.id
}

impl Kit {
    /// Every audit action of the tenant so far, in order; the chain must be intact.
    pub fn actions(&self) -> Vec<String> {
        self.audit_events()
            .into_iter()
            .map(|event| event.action)
            .collect()
    }

    /// Asserts that each of `expected` is among [`Kit::actions`].
    pub fn assert_audited(&self, expected: &[&str]) {
        let actions = self.actions();
        for expected in expected {
            assert!(
                actions.iter().any(|a| a == expected),
                "{expected} in {actions:?}"
            );
        }
    }

    /// Every audit event of the tenant so far, in order; the chain must be intact.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        let mut conn = self.conn();
        assert!(audit::verify(&mut conn, &self.cipher).unwrap().is_intact());
        let mut events = audit::list(&mut conn, self.t(), &PageRequest::first(500))
            .unwrap()
            .items;
        audit::personal::open(&mut conn, &self.cipher, &mut events).unwrap();
        events
    }

    /// The first audit event of `action`; there must be one.
    pub fn first_event(&self, action: &str) -> AuditEvent {
        self.audit_events()
            .into_iter()
            .find(|event| event.action == action)
            .unwrap_or_else(|| panic!("no {action} event"))
    }

    /// The failure count of a throttling bucket, `None` when it has none.
    pub fn failures(&self, bucket: &str) -> Option<i32> {
        rate_limits::get(&mut self.conn(), self.t(), bucket)
            .unwrap()
            .map(|counter| counter.failures)
    }

    /// The user's live sessions now.
    pub fn active_sessions(&self, user: UserId) -> Vec<Session> {
        sessions::list_active_for_user(&mut self.conn(), self.clock.now(), self.t(), user).unwrap()
    }
}
