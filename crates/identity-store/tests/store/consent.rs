use chrono::Duration;
use diesel::prelude::*;
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_identity_store::consent_records::{
    self, ConsentEventKind, CurrentConsent, NewGrant, NewWithdrawal,
};
use gatehouse_identity_store::grants::{self, Authentication};
use gatehouse_identity_store::purposes::{self, LegalBasis, PurposeChange, PurposeData};
use gatehouse_identity_store::users::{self, UserData};
use gatehouse_identity_store::{StoreError, consents};

use crate::{now, tenant, tenant_and_other};

fn newsletter() -> PurposeData {
    PurposeData {
        slug: "newsletter".into(),
        name: "Newsletter".into(),
        description: "We mail you news.".into(),
        scopes: vec!["email".into()],
        legal_basis: LegalBasis::Consent,
    }
}

fn grant<'a>(user: UserId, client_id: &'a str, purpose: &'a str, version: i32) -> NewGrant<'a> {
    NewGrant {
        user,
        client_id,
        purpose,
        version,
        expires_at: None,
        channel: "account_page",
    }
}

fn withdrawal<'a>(
    user: UserId,
    client_id: &'a str,
    purpose: &'a str,
    version: i32,
) -> NewWithdrawal<'a> {
    NewWithdrawal {
        user,
        client_id,
        purpose,
        version,
        channel: "account_page",
    }
}

fn oauth_grant(
    conn: &mut gatehouse_identity_store::AnyConnection,
    tenant: gatehouse_core::ids::TenantId,
    user: UserId,
    client_id: &str,
    scope: &str,
) -> String {
    grants::create(
        conn,
        now(),
        tenant,
        grants::NewGrant {
            client_id: client_id.into(),
            issuer: None,
            authentication: Some(Authentication {
                user_id: user,
                session_id: SessionId::new(),
                auth_time: now(),
                acr: None,
                amr: vec!["pwd".into()],
            }),
            scope: scope.into(),
            resources: vec![],
            purposes: vec![],
            lifetime: Duration::days(30),
        },
    )
    .unwrap()
    .id
}

gatehouse_identity_store::backend_tests! {
    fn batched_subject_reads_match_the_reads_one_by_one(db) {
        use gatehouse_identity_store::{groups, roles, MAX_BATCH};
        use std::collections::{BTreeSet, HashMap};
        let mut conn = db.conn();
        let (t, evil) = tenant_and_other(&mut conn, "acme");
        let role = |name: &str| roles::RoleData { name: name.into(), description: None };
        let admin = roles::create(&mut conn, now(), t, role("admin")).unwrap();
        let auditor = roles::create(&mut conn, now(), t, role("auditor")).unwrap();
        let evil_admin = roles::create(&mut conn, now(), evil, role("admin")).unwrap();
        let staff = groups::create(&mut conn, now(), t, groups::GroupData { display_name: "Staff".into(), external_id: None }).unwrap();
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap().id;
        let carol = users::create(&mut conn, now(), t, UserData::new("carol")).unwrap().id;
        let mallory = users::create(&mut conn, now(), evil, UserData::new("mallory")).unwrap().id;
        for r in [admin.id, auditor.id] {
            roles::assign(&mut conn, now(), t, r, alice).unwrap();
        }
        roles::assign(&mut conn, now(), evil, evil_admin.id, mallory).unwrap();
        groups::add_member(&mut conn, now(), t, staff.id, alice).unwrap();
        groups::add_member(&mut conn, now(), t, staff.id, bob).unwrap();
        purposes::create(&mut conn, now(), t, newsletter()).unwrap();
        purposes::create(&mut conn, now(), evil, newsletter()).unwrap();
        for user in [alice, bob] {
            consent_records::append_grant(&mut conn, now(), t, grant(user, "shop", "newsletter", 1)).unwrap();
        }
        consent_records::append_grant(&mut conn, now(), t, grant(alice, "crm", "newsletter", 1)).unwrap();
        consent_records::append_withdrawal(&mut conn, now(), t, withdrawal(bob, "shop", "newsletter", 1)).unwrap();
        consent_records::append_grant(&mut conn, now(), evil, grant(mallory, "shop", "newsletter", 1)).unwrap();

        let asked = [alice, bob, carol, mallory, UserId::new()];
        let found = users::get_many(&mut conn, t, &asked).unwrap();
        let ids: BTreeSet<UserId> = found.iter().map(|u| u.id).collect();
        assert_eq!(ids, BTreeSet::from([alice, bob, carol]), "only this tenant's, only existing");
        for user in &found {
            assert_eq!(user, &users::get(&mut conn, t, user.id).unwrap());
        }

        let roles_of = roles::roles_of_users(&mut conn, t, &asked).unwrap();
        assert_eq!(roles_of, HashMap::from([(alice, roles::roles_of_user(&mut conn, t, alice).unwrap())]));
        assert_eq!(roles_of[&alice].len(), 2);

        let groups_of = groups::groups_of_users(&mut conn, t, &asked).unwrap();
        assert_eq!(groups_of, HashMap::from([(alice, vec![staff.clone()]), (bob, vec![staff.clone()])]));

        let consents_of = consent_records::current_for_users(&mut conn, now(), t, &asked).unwrap();
        let alices = consent_records::current_for_user(&mut conn, now(), t, alice).unwrap();
        assert_eq!(alices.len(), 2);
        assert_eq!(consents_of, HashMap::from([(alice, alices)]), "bob withdrew; mallory is elsewhere");

        let too_many: Vec<UserId> = (0..=MAX_BATCH).map(|_| UserId::new()).collect();
        assert!(matches!(users::get_many(&mut conn, t, &too_many), Err(StoreError::Invalid { .. })));
        assert!(matches!(roles::roles_of_users(&mut conn, t, &too_many), Err(StoreError::Invalid { .. })));
        assert!(users::get_many(&mut conn, t, &[]).unwrap().is_empty());
    }

    fn purposes_are_versioned_and_old_versions_stay_readable(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let first = purposes::create(&mut conn, now(), t, newsletter()).unwrap();
        assert_eq!((first.version, first.legal_basis, first.scopes.clone()), (1, LegalBasis::Consent, vec!["email".to_owned()]));
        assert!(matches!(purposes::create(&mut conn, now(), t, newsletter()), Err(StoreError::Conflict { .. })));
        let other = tenant(&mut conn, "other");
        purposes::create(&mut conn, now(), other, newsletter()).unwrap();

        let later = now() + Duration::days(1);
        let change = PurposeChange { name: "Weekly newsletter".into(), description: "News, weekly.".into(), scopes: vec!["email".into(), "profile".into()] };
        let second = purposes::new_version(&mut conn, later, t, "newsletter", 1, change.clone()).unwrap();
        assert_eq!((second.version, second.name.as_str(), second.created_at), (2, "Weekly newsletter", later));
        assert_eq!(second.legal_basis, LegalBasis::Consent, "the legal basis is kept");
        assert!(matches!(purposes::new_version(&mut conn, later, t, "newsletter", 1, change.clone()), Err(StoreError::StaleVersion { .. })));
        assert!(matches!(purposes::new_version(&mut conn, later, t, "nothing", 1, change), Err(StoreError::NotFound { .. })));

        assert_eq!(purposes::get(&mut conn, t, "newsletter").unwrap(), Some(second.clone()));
        assert_eq!(purposes::get_version(&mut conn, t, "newsletter", 1).unwrap(), Some(first.clone()));
        assert_eq!(purposes::versions(&mut conn, t, "newsletter").unwrap(), vec![first, second.clone()]);
        let analytics = purposes::create(&mut conn, now(), t, PurposeData { slug: "analytics".into(), legal_basis: LegalBasis::LegitimateInterest, ..newsletter() }).unwrap();
        assert_eq!(purposes::list(&mut conn, t).unwrap(), vec![analytics, second]);
        assert_eq!(purposes::list(&mut conn, other).unwrap().len(), 1);

        for slug in ["", "News", "a b", "x/y"] {
            assert!(matches!(purposes::create(&mut conn, now(), t, PurposeData { slug: slug.into(), ..newsletter() }), Err(StoreError::Invalid { .. })), "slug {slug:?} accepted");
        }
        assert!(matches!(purposes::create(&mut conn, now(), t, PurposeData { slug: "x".into(), scopes: vec!["a b".into()], ..newsletter() }), Err(StoreError::Invalid { .. })));
    }

    fn purposes_and_consent_events_refuse_updates(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        purposes::create(&mut conn, now(), t, newsletter()).unwrap();
        consent_records::append_grant(&mut conn, now(), t, grant(alice, "shop", "newsletter", 1)).unwrap();
        for statement in ["UPDATE consent_events SET kind = 'withdrawn'", "UPDATE consent_purposes SET name = 'x'"] {
            assert!(diesel::sql_query(statement).execute(&mut *conn).is_err(), "{statement} succeeded");
        }
        assert_eq!(consent_records::history_for_user(&mut conn, t, alice).unwrap()[0].kind, ConsentEventKind::Granted);
    }

    fn only_the_latest_unexpired_grant_is_in_force(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap().id;
        purposes::create(&mut conn, now(), t, newsletter()).unwrap();
        purposes::create(&mut conn, now(), t, PurposeData { slug: "analytics".into(), ..newsletter() }).unwrap();
        assert!(consent_records::current_for_user(&mut conn, now(), t, alice).unwrap().is_empty());

        consent_records::append_grant(&mut conn, now(), t, grant(alice, "shop", "newsletter", 1)).unwrap();
        let expiring = NewGrant { expires_at: Some(now() + Duration::days(30)), ..grant(alice, "shop", "analytics", 1) };
        consent_records::append_grant(&mut conn, now(), t, expiring).unwrap();
        consent_records::append_grant(&mut conn, now(), t, grant(alice, "blog", "newsletter", 1)).unwrap();
        consent_records::append_grant(&mut conn, now(), t, grant(bob, "shop", "newsletter", 1)).unwrap();
        let in_force = consent_records::current_for_user(&mut conn, now(), t, alice).unwrap();
        let current = |client: &str, purpose: &str, expires_at| CurrentConsent { client_id: client.into(), purpose: purpose.into(), version: 1, granted_at: now(), expires_at };
        assert_eq!(in_force, vec![
            current("blog", "newsletter", None),
            current("shop", "analytics", Some(now() + Duration::days(30))),
            current("shop", "newsletter", None),
        ]);
        assert_eq!(consent_records::current_for(&mut conn, now(), t, alice, "blog").unwrap(), vec![current("blog", "newsletter", None)]);

        // Expiry ends it without a row; a withdrawal at the same instant as the grant
        // still comes after it.
        let month = now() + Duration::days(30);
        assert_eq!(consent_records::current_for(&mut conn, month, t, alice, "shop").unwrap(), vec![current("shop", "newsletter", None)]);
        let withdrawn = consent_records::append_withdrawal(&mut conn, now(), t, withdrawal(alice, "shop", "newsletter", 1)).unwrap();
        assert_eq!(withdrawn.kind, ConsentEventKind::Withdrawn);
        assert_eq!(consent_records::current_for(&mut conn, now(), t, alice, "shop").unwrap(), vec![current("shop", "analytics", Some(month))]);
        assert_eq!(consent_records::latest(&mut conn, t, alice, "shop", "newsletter").unwrap(), Some(withdrawn));
        assert_eq!(consent_records::current_for_user(&mut conn, now(), t, bob).unwrap().len(), 1, "bob's consent was touched");

        // Granted again later, to a new version: the history keeps all of it.
        purposes::new_version(&mut conn, now(), t, "newsletter", 1, PurposeChange { name: "N2".into(), description: String::new(), scopes: vec!["email".into()] }).unwrap();
        let later = now() + Duration::hours(1);
        consent_records::append_grant(&mut conn, later, t, grant(alice, "shop", "newsletter", 2)).unwrap();
        let shop = consent_records::current_for(&mut conn, later, t, alice, "shop").unwrap();
        assert_eq!((shop[1].purpose.as_str(), shop[1].version, shop[1].granted_at), ("newsletter", 2, later));
        let history = consent_records::history_for_user(&mut conn, t, alice).unwrap();
        let kinds: Vec<_> = history.iter().map(|e| (e.client_id.as_str(), e.purpose.as_str(), e.version, e.kind)).collect();
        assert_eq!(kinds, vec![
            ("shop", "newsletter", 1, ConsentEventKind::Granted),
            ("shop", "analytics", 1, ConsentEventKind::Granted),
            ("blog", "newsletter", 1, ConsentEventKind::Granted),
            ("shop", "newsletter", 1, ConsentEventKind::Withdrawn),
            ("shop", "newsletter", 2, ConsentEventKind::Granted),
        ]);
        assert!(history.iter().all(|e| e.channel == "account_page" && e.user_id == alice));
        let other = tenant(&mut conn, "other");
        assert!(consent_records::history_for_user(&mut conn, other, alice).unwrap().is_empty());
    }

    fn a_grant_needs_a_known_purpose_version_and_user_of_the_tenant(db) {
        let mut conn = db.conn();
        let (t, other) = tenant_and_other(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        purposes::create(&mut conn, now(), t, newsletter()).unwrap();
        assert!(matches!(consent_records::append_grant(&mut conn, now(), t, grant(alice, "shop", "newsletter", 2)), Err(StoreError::NotFound { .. })));
        assert!(matches!(consent_records::append_grant(&mut conn, now(), t, grant(alice, "shop", "unknown", 1)), Err(StoreError::NotFound { .. })));
        purposes::create(&mut conn, now(), other, newsletter()).unwrap();
        assert!(matches!(consent_records::append_grant(&mut conn, now(), other, grant(alice, "shop", "newsletter", 1)), Err(StoreError::NotFound { .. })), "a user of another tenant");
        let past = NewGrant { expires_at: Some(now()), ..grant(alice, "shop", "newsletter", 1) };
        assert!(matches!(consent_records::append_grant(&mut conn, now(), t, past), Err(StoreError::Invalid { .. })));
        let odd = NewGrant { channel: "Account Page", ..grant(alice, "shop", "newsletter", 1) };
        assert!(matches!(consent_records::append_grant(&mut conn, now(), t, odd), Err(StoreError::Invalid { .. })));
    }

    fn grants_of_a_client_are_revoked_by_the_scopes_they_hold(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap().id;
        let with_email = oauth_grant(&mut conn, t, alice, "shop", "openid email");
        let without = oauth_grant(&mut conn, t, alice, "shop", "openid profile");
        let other_client = oauth_grant(&mut conn, t, alice, "blog", "openid email");
        let bobs = oauth_grant(&mut conn, t, bob, "shop", "openid email");

        assert_eq!(grants::live_clients_for_user(&mut conn, now(), t, alice).unwrap(), ["blog", "shop"]);
        let revoked = grants::revoke_for_user_and_client(&mut conn, now(), t, alice, "shop", Some(&["email".to_owned()]), "consent_withdrawn").unwrap();
        assert_eq!(revoked, vec![with_email.clone()]);
        let active = |conn: &mut gatehouse_identity_store::AnyConnection, id: &str| grants::get(conn, t, id).unwrap().unwrap().is_active(now());
        assert!(!active(&mut conn, &with_email));
        assert!(active(&mut conn, &without) && active(&mut conn, &other_client) && active(&mut conn, &bobs));

        let revoked = grants::revoke_for_user_and_client(&mut conn, now(), t, alice, "shop", None, "app_revoked").unwrap();
        assert_eq!(revoked, vec![without.clone()], "an already revoked grant counted again");
        assert!(!active(&mut conn, &without) && active(&mut conn, &other_client));
        assert_eq!(grants::live_clients_for_user(&mut conn, now(), t, alice).unwrap(), ["blog"]);
        assert!(grants::live_clients_for_user(&mut conn, now() + Duration::days(31), t, bob).unwrap().is_empty(), "an expired grant counted");
    }

    fn remembered_scopes_are_forgotten(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let scopes = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        consents::grant(&mut conn, now(), t, alice, "shop", &scopes(&["openid", "email", "profile"])).unwrap();
        consents::grant(&mut conn, now(), t, alice, "blog", &scopes(&["email"])).unwrap();
        consents::forget(&mut conn, t, alice, "shop", Some(&scopes(&["email"]))).unwrap();
        assert_eq!(consents::scopes(&mut conn, t, alice, "shop").unwrap(), scopes(&["openid", "profile"]));
        assert_eq!(consents::for_user(&mut conn, t, alice).unwrap(), vec![("blog".to_owned(), scopes(&["email"])), ("shop".to_owned(), scopes(&["openid", "profile"]))]);
        consents::forget(&mut conn, t, alice, "shop", None).unwrap();
        assert!(consents::scopes(&mut conn, t, alice, "shop").unwrap().is_empty());
        assert_eq!(consents::scopes(&mut conn, t, alice, "blog").unwrap(), scopes(&["email"]));
    }
}
