//! The operator's use cases against a real store, on SQLite and PostgreSQL: each
//! action finds by the operator's names, changes what it says, and audits with the
//! operator as the actor and the reason in the record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gatehouse_admin::{
    Admin, AdminError, AdminParts, AuditFilter, AuditQuery, NewClient, Operator, Reason, TenantUrls,
};
use gatehouse_authn::Authn;
use gatehouse_consent::Consents;
use gatehouse_consent::pdp::Pdp;
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

    fn platform_tenant(&self) -> &str {
        "default"
    }

    fn public_host(&self) -> &str {
        "login.example.test"
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
        gatehouse_authn::testing::PlainMailRenderer::shared(),
    )
    .unwrap();
    let issuer = Issuer::new(pool.clone(), cipher.clone(), Arc::new(clock.clone()));
    let consents = Consents::new(
        pool.clone(),
        cipher.clone(),
        Arc::new(clock.clone()),
        EventBus::in_process(),
    );
    let pdp = Pdp::new(pool.clone(), Arc::new(clock.clone())).unwrap();
    let admin = Admin::new(AdminParts {
        pool: pool.clone(),
        cipher,
        clock: Arc::new(clock),
        events: EventBus::in_process(),
        authn,
        issuer,
        consents,
        pdp,
        urls: Arc::new(FixedUrl),
        outbound: gatehouse_outbound::Outbound::new(Default::default()).unwrap(),
    })
    .unwrap();
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
    /// The tenant's audit events, their personal data opened.
    fn audit(&self) -> Vec<audit::AuditEvent> {
        block_on(self.admin.audit_events(
            "acme",
            gatehouse_admin::AuditQuery {
                filter: Default::default(),
                limit: 100,
            },
        ))
        .unwrap()
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

    fn clients_are_registered_and_deleted_with_an_audit_record_each(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let new = NewClient {
            id_token_alg: "RS256".into(),
            ..NewClient::web_app("Shop", "shop", "https://shop.example/cb")
        };
        let created = block_on(env.admin.create_client(&grace, "acme", new.clone())).unwrap();
        assert!(created.secret.is_some());
        assert_eq!(block_on(env.admin.client("acme", "shop")).unwrap().data.name, "Shop");
        // The RS256 ID-token key exists before the first token.
        let keys = block_on(env.admin.signing_keys("acme")).unwrap();
        assert!(keys.iter().any(|k| format!("{:?}", k.alg).to_uppercase().contains("RS256")), "{keys:?}");
        let again = block_on(env.admin.create_client(&grace, "acme", new)).unwrap_err();
        assert!(matches!(again, AdminError::Conflict(_)), "{again:?}");

        block_on(env.admin.delete_client(&grace, "acme", "shop")).unwrap();
        let gone = block_on(env.admin.delete_client(&grace, "acme", "shop")).unwrap_err();
        assert!(matches!(gone, AdminError::NotFound(_)), "{gone:?}");
        let actions: Vec<_> = env
            .audit()
            .into_iter()
            .filter(|e| e.actor == "operator:grace")
            .map(|e| (e.action, e.target))
            .collect();
        assert_eq!(
            actions,
            [
                ("client.created".to_owned(), Some("client:shop".to_owned())),
                ("client.deleted".to_owned(), Some("client:shop".to_owned())),
            ]
        );
    }

    fn key_rotations_are_audited(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let rotation = block_on(env.admin.rotate_keys(&grace, "acme", "ES256", chrono::Duration::hours(1))).unwrap();
        let bad = block_on(env.admin.rotate_keys(&grace, "acme", "HS256", chrono::Duration::hours(1))).unwrap_err();
        assert!(matches!(bad, AdminError::Invalid { field: "alg", .. }), "{bad:?}");
        let records: Vec<_> = env
            .audit()
            .into_iter()
            .filter(|e| e.action == "keys.rotated")
            .collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].actor, "operator:grace");
        assert_eq!(records[0].target, Some(format!("key:{}", rotation.kid)));
    }

    fn policy_saves_are_validated_audited_and_listed(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let bad = block_on(env.admin.save_policies(&grace, "acme", "permit(principal, action, resource")).unwrap_err();
        assert!(matches!(bad, AdminError::Invalid { field: "policies", .. }), "{bad:?}");
        assert!(block_on(env.admin.policy_versions("acme")).unwrap().is_empty(), "nothing saved");

        let text = "@id(\"everyone\")\npermit(principal, action, resource);";
        let version = block_on(env.admin.save_policies(&grace, "acme", text)).unwrap();
        let versions = block_on(env.admin.policy_versions("acme")).unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!((versions[0].version, versions[0].created_by.as_str()), (version, "operator:grace"));
        let saved: Vec<_> = env.audit().into_iter().filter(|e| e.action == "policies.saved").collect();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].actor, "operator:grace");
        assert!(saved[0].details.contains("everyone"), "{}", saved[0].details);
    }

    fn purposes_are_defined_and_updated_by_version(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let purpose = |slug: &str, basis: &str| gatehouse_admin::NewPurpose {
            slug: slug.into(),
            name: "Newsletter".into(),
            description: "Mail about news".into(),
            scopes: vec!["news".into()],
            legal_basis: basis.into(),
        };
        let defined = block_on(env.admin.define_purpose(&grace, "acme", purpose("newsletter", "consent"))).unwrap();
        assert_eq!(defined.version, 1);
        let bad = block_on(env.admin.define_purpose(&grace, "acme", purpose("x", "whim"))).unwrap_err();
        assert!(matches!(bad, AdminError::Invalid { field: "legal_basis", .. }), "{bad:?}");
        let edit = gatehouse_admin::PurposeEdit { name: Some("News".into()), ..Default::default() };
        let updated = block_on(env.admin.update_purpose(&grace, "acme", "newsletter", 1, edit.clone())).unwrap();
        assert_eq!((updated.version, updated.name.as_str()), (2, "News"));
        let stale = block_on(env.admin.update_purpose(&grace, "acme", "newsletter", 1, edit)).unwrap_err();
        assert!(matches!(stale, AdminError::Conflict(_)), "{stale:?}");
        assert_eq!(block_on(env.admin.purposes("acme")).unwrap().len(), 1);
    }
}

gatehouse_identity_store::backend_tests! {
    fn groups_are_created_and_members_added_and_removed_with_audit(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let group = block_on(env.admin.create_group(&grace, "acme", " Partners ")).unwrap();
        assert_eq!(group.display_name, "Partners");
        let taken = block_on(env.admin.create_group(&grace, "acme", "Partners")).unwrap_err();
        assert!(matches!(taken, AdminError::Conflict(_)), "{taken:?}");
        let unknown = block_on(env.admin.add_to_group(&grace, "acme", "Nobody", "ada@example.com"))
            .unwrap_err();
        assert!(matches!(unknown, AdminError::NotFound(_)), "{unknown:?}");

        assert!(block_on(env.admin.add_to_group(&grace, "acme", "Partners", "ada@example.com")).unwrap());
        assert!(!block_on(env.admin.add_to_group(&grace, "acme", "Partners", "ada@example.com")).unwrap());
        let user = users::find_by_primary_email(&mut env.pool.get().unwrap(), env.tenant, "ada@example.com")
            .unwrap()
            .unwrap();
        let of_user = gatehouse_identity_store::groups::groups_of_user(&mut env.pool.get().unwrap(), env.tenant, user.id)
            .unwrap();
        assert_eq!(of_user.iter().map(|g| g.display_name.as_str()).collect::<Vec<_>>(), ["Partners"]);
        assert!(block_on(env.admin.remove_from_group(&grace, "acme", "Partners", "ada@example.com")).unwrap());
        assert!(!block_on(env.admin.remove_from_group(&grace, "acme", "Partners", "ada@example.com")).unwrap());

        let actions: Vec<String> = env
            .audit()
            .into_iter()
            .filter(|e| e.actor == "operator:grace")
            .map(|e| e.action)
            .collect();
        // Only what changed is recorded: the repeated add and remove wrote nothing.
        assert_eq!(actions, ["group.created", "group.member_added", "group.member_removed"]);
        assert_eq!(block_on(env.admin.groups("acme")).unwrap().len(), 1);
    }

    fn the_audit_log_is_read_by_actor_action_target_and_time_and_verified(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let alan = Operator::named("alan").unwrap();
        block_on(env.admin.create_group(&grace, "acme", "One")).unwrap();
        block_on(env.admin.create_group(&alan, "acme", "Two")).unwrap();
        block_on(env.admin.add_to_group(&grace, "acme", "One", "ada@example.com")).unwrap();

        let read = |query: AuditQuery| block_on(env.admin.audit_events("acme", query)).unwrap();
        let everything = AuditQuery { limit: 100, ..AuditQuery::default() };
        let with = |filter: AuditFilter| AuditQuery { filter, ..everything.clone() };
        let by_grace = read(with(AuditFilter { actor: Some("operator:grace".into()), ..AuditFilter::default() }));
        assert_eq!(by_grace.len(), 2);
        let group_events = read(with(AuditFilter { action: Some("group.".into()), ..AuditFilter::default() }));
        assert_eq!(group_events.len(), 3);
        // Actions are compared lower-cased, alike on both backends.
        assert_eq!(read(with(AuditFilter { action: Some("GROUP.".into()), ..AuditFilter::default() })).len(), 3);
        // A LIKE wildcard in the prefix is a plain character.
        assert!(read(with(AuditFilter { action: Some("gro_p.".into()), ..AuditFilter::default() })).is_empty());
        let created = read(with(AuditFilter { action: Some("group.created".into()), ..AuditFilter::default() }));
        assert_eq!(created.len(), 2);
        let about_ada = read(with(AuditFilter { target: by_grace[1].target.clone(), ..AuditFilter::default() }));
        assert_eq!(about_ada.len(), 1);
        assert_eq!(about_ada[0].action, "group.member_added");
        let first = read(AuditQuery { limit: 1, ..everything.clone() });
        assert_eq!(first.len(), 1);
        assert!(first[0].seq <= group_events[0].seq);
        let later = read(with(AuditFilter {
            since: Some(group_events[2].occurred_at + chrono::Duration::seconds(1)),
            ..AuditFilter::default()
        }));
        assert!(later.is_empty(), "{later:#?}");
        let bad = block_on(env.admin.audit_events("acme", AuditQuery::default())).unwrap_err();
        assert!(matches!(bad, AdminError::Invalid { field: "limit", .. }), "{bad:?}");

        let report = block_on(env.admin.verify_audit()).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert!(report.events >= 3);
    }

    fn tenants_are_listed_with_their_issuer(db) {
        let env = env(db);
        let tenants = block_on(env.admin.tenants()).unwrap();
        let acme = tenants.iter().find(|v| v.tenant.slug == "acme").expect("acme listed");
        assert_eq!(acme.issuer.as_deref(), Some("https://login.example.test"));
        let shown = block_on(env.admin.tenant_view("acme")).unwrap();
        assert_eq!(shown.tenant.id, env.tenant);
        let missing = block_on(env.admin.tenant_view("nope")).unwrap_err();
        assert!(matches!(missing, AdminError::NotFound(_)), "{missing:?}");
    }

    fn users_are_listed_by_page_and_deleted_with_what_is_theirs(db) {
        let env = env(db);
        let grace = Operator::named("grace").unwrap();
        let why = Reason::new("GDPR erasure request 17").unwrap();
        let first = block_on(env.admin.users("acme", PageRequest::first(1))).unwrap();
        assert_eq!(first.items.len(), 1);
        assert_eq!(first.items[0].primary_email().unwrap().value, "ada@example.com");
        assert!(first.next_cursor.is_none(), "one user, one page");

        block_on(env.admin.create_group(&grace, "acme", "Partners")).unwrap();
        block_on(env.admin.add_to_group(&grace, "acme", "Partners", "ada@example.com")).unwrap();
        let deleted = block_on(env.admin.delete_user(&grace, "acme", "ada@example.com", &why)).unwrap();
        assert_eq!(deleted.grants_revoked, 0);
        let gone = users::find_by_primary_email(&mut env.pool.get().unwrap(), env.tenant, "ada@example.com").unwrap();
        assert!(gone.is_none(), "the user is deleted");
        assert!(block_on(env.admin.users("acme", PageRequest::first(10))).unwrap().items.is_empty());
        let again = block_on(env.admin.delete_user(&grace, "acme", "ada@example.com", &why)).unwrap_err();
        assert!(matches!(again, AdminError::NotFound(_)), "{again:?}");

        let records = env.audit();
        let deletion = records.iter().find(|e| e.action == "user.deleted").expect("audited");
        assert_eq!(deletion.actor, "operator:grace");
        assert!(deletion.details.contains("GDPR erasure request 17"));
        // Deactivated first, so a failure half way leaves no live account.
        let order: Vec<&str> = records.iter().map(|e| e.action.as_str()).collect();
        let deactivated = order.iter().position(|a| a.starts_with("user.deactivated")).expect("deactivated first");
        assert!(deactivated < order.iter().position(|a| *a == "user.deleted").unwrap(), "{order:?}");
        assert!(block_on(env.admin.verify_audit()).unwrap().is_intact());
    }
}
