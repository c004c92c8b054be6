//! The operator's use cases against a real store, on SQLite and PostgreSQL: each
//! action finds by the operator's names, changes what it says, and audits with the
//! operator as the actor and the reason in the record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gatehouse_admin::{Admin, AdminError, Operator, Reason, TenantUrls};
use gatehouse_authn::Authn;
use gatehouse_core::config::Config;
use gatehouse_core::events::EventBus;
use gatehouse_core::ids::TenantId;
use gatehouse_core::{Clock, ManualClock};
use gatehouse_identity_store::db::ConnectOptions;
use gatehouse_identity_store::tenants::{self, TenantData};
use gatehouse_identity_store::testing::{TestDb, test_cipher};
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{PageRequest, Pool, audit};
use gatehouse_token_issuer::service::Issuer;

/// The tenant is served at one fixed URL, as a server's directory would say.
struct FixedUrl;

impl TenantUrls for FixedUrl {
    fn issuer_for(&self, _tenant: TenantId) -> Result<Option<String>, String> {
        Ok(Some("https://login.example.test".into()))
    }
}

struct Env {
    admin: Admin,
    pool: Pool,
    tenant: TenantId,
    _dir: tempfile::TempDir,
}

fn env(db: &TestDb) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let pool = gatehouse_identity_store::db::pool(&ConnectOptions {
        pool_size: 2,
        ..ConnectOptions::new(&db.url)
    })
    .unwrap();
    let clock = ManualClock::fixed();
    let mut conn = pool.get().unwrap();
    let tenant = tenants::create(
        &mut conn,
        clock.now(),
        TenantData {
            slug: "acme".into(),
            display_name: "Acme".into(),
            settings: serde_json::Map::new(),
        },
    )
    .unwrap()
    .id;
    users::create(
        &mut conn,
        clock.now(),
        tenant,
        UserData {
            emails: vec![Email {
                value: "ada@example.com".into(),
                kind: None,
                primary: true,
                verified: true,
            }],
            ..UserData::new("ada@example.com")
        },
    )
    .unwrap();
    drop(conn);
    let cipher = test_cipher();
    let authn = Authn::new(
        &config,
        pool.clone(),
        cipher.clone(),
        Arc::new(clock.clone()),
        EventBus::in_process(),
    )
    .unwrap();
    let issuer = Issuer::new(pool.clone(), cipher, Arc::new(clock));
    let admin = Admin::new(pool.clone(), authn, issuer, Arc::new(FixedUrl)).unwrap();
    Env {
        admin,
        pool,
        tenant,
        _dir: dir,
    }
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

impl Env {
    fn audit(&self) -> Vec<audit::AuditEvent> {
        audit::list(
            &mut self.pool.get().unwrap(),
            self.tenant,
            &PageRequest::first(100),
        )
        .unwrap()
        .items
    }

    fn active(&self) -> bool {
        users::find_by_primary_email(
            &mut self.pool.get().unwrap(),
            self.tenant,
            "ada@example.com",
        )
        .unwrap()
        .unwrap()
        .data
        .active
    }
}

gatehouse_identity_store::backend_tests! {
    fn disabling_and_enabling_are_audited_with_the_operator_and_reason(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let why = Reason::new("ticket 4711: account sold").unwrap();

        let done = block_on(env.admin.disable_user(&grace, "acme", "ada@example.com", &why)).unwrap();
        assert!(done.was_active);
        assert!(!env.active());
        let again = block_on(env.admin.disable_user(&grace, "acme", "ADA@example.com", &why)).unwrap();
        assert!(!again.was_active, "already disabled");

        assert!(block_on(env.admin.enable_user(&grace, "acme", "ada@example.com", &why)).unwrap());
        assert!(env.active());

        let records: Vec<_> = env
            .audit()
            .into_iter()
            .filter(|e| e.actor == "operator:grace")
            .collect();
        assert_eq!(records.len(), 3, "{records:#?}");
        assert!(records.iter().all(|e| e.details.contains("ticket 4711")), "{records:#?}");
    }

    fn roles_are_created_assigned_and_removed_by_name(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let role = block_on(env.admin.create_role(&grace, "acme", " auditor ", Some("reads"))).unwrap();
        assert_eq!(role.name, "auditor");
        let taken = block_on(env.admin.create_role(&grace, "acme", "auditor", None)).unwrap_err();
        assert!(matches!(taken, AdminError::Conflict(_)), "{taken:?}");

        assert!(block_on(env.admin.assign_role(&grace, "acme", "ada@example.com", "auditor")).unwrap());
        assert!(!block_on(env.admin.assign_role(&grace, "acme", "ada@example.com", "auditor")).unwrap());
        let removed = block_on(env.admin.remove_role(&grace, "acme", "ada@example.com", "auditor")).unwrap();
        assert!(removed.was_assigned);
        assert_eq!(removed.grants_revoked, 0);
        assert_eq!(
            block_on(env.admin.roles("acme")).unwrap().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["auditor"]
        );
        assert!(env.audit().iter().filter(|e| e.actor == "operator:grace").count() >= 3);
    }

    fn unknown_names_are_not_found_and_empty_operators_are_refused(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let why = Reason::new("test").unwrap();
        for error in [
            block_on(env.admin.disable_user(&grace, "nope", "ada@example.com", &why)).unwrap_err(),
            block_on(env.admin.disable_user(&grace, "acme", "nobody@example.com", &why)).unwrap_err(),
            block_on(env.admin.assign_role(&grace, "acme", "ada@example.com", "ghost")).unwrap_err(),
        ] {
            assert!(matches!(error, AdminError::NotFound(_)), "{error:?}");
        }
        assert!(matches!(Operator::named("  "), Err(AdminError::Invalid { field: "operator", .. })));
        assert!(matches!(Reason::new(""), Err(AdminError::Invalid { field: "reason", .. })));
        assert!(env.active(), "nothing changed");
    }
}
