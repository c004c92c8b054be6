use chrono::Duration;
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_identity_store::grants::{self, Authentication, NewGrant};
use gatehouse_identity_store::groups::{self, GroupData};
use gatehouse_identity_store::roles::{self, RoleData};
use gatehouse_identity_store::users::{self, UserData};
use gatehouse_identity_store::{PageRequest, StoreError};

use crate::{now, tenant, tenant_and_other};

fn group(name: &str) -> GroupData {
    GroupData {
        display_name: name.into(),
        external_id: None,
    }
}

fn role(name: &str) -> RoleData {
    RoleData {
        name: name.into(),
        description: Some(format!("{name} role")),
    }
}

gatehouse_identity_store::backend_tests! {
    fn groups_have_unique_names_and_members(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let staff = groups::create(&mut conn, now(), t, group("Staff")).unwrap();
        let clash = groups::create(&mut conn, now(), t, group("STAFF"));
        assert!(matches!(clash, Err(StoreError::Conflict { field: "displayName", .. })), "{clash:?}");
        assert_eq!(groups::find_by_display_name(&mut conn, t, "staff").unwrap().unwrap().id, staff.id);

        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap();
        assert!(groups::add_member(&mut conn, now(), t, staff.id, alice.id).unwrap());
        assert!(!groups::add_member(&mut conn, now(), t, staff.id, alice.id).unwrap(), "second add is a no-op");
        assert!(groups::add_member(&mut conn, now(), t, staff.id, bob.id).unwrap());

        let first = groups::members(&mut conn, t, staff.id, &PageRequest::first(1)).unwrap();
        let rest = groups::members(&mut conn, t, staff.id, &PageRequest::after(first.next_cursor.clone().unwrap(), 1)).unwrap();
        let mut all: Vec<UserId> = first.items.into_iter().chain(rest.items).collect();
        all.sort();
        let mut expected = vec![alice.id, bob.id];
        expected.sort();
        assert_eq!(all, expected);
        assert_eq!(groups::groups_of_user(&mut conn, t, alice.id).unwrap(), vec![staff.clone()]);

        assert!(groups::remove_member(&mut conn, t, staff.id, alice.id).unwrap());
        assert!(!groups::remove_member(&mut conn, t, staff.id, alice.id).unwrap());
        assert!(groups::groups_of_user(&mut conn, t, alice.id).unwrap().is_empty());

        // Deleting the user ends the membership.
        users::delete(&mut conn, t, bob.id).unwrap();
        assert!(groups::members(&mut conn, t, staff.id, &PageRequest::first(10)).unwrap().items.is_empty());
    }

    fn memberships_never_cross_tenants(db) {
        let mut conn = db.conn();
        let acme = tenant(&mut conn, "acme");
        let evil = tenant(&mut conn, "evil");
        let acme_group = groups::create(&mut conn, now(), acme, group("Admins")).unwrap();
        let evil_user = users::create(&mut conn, now(), evil, UserData::new("mallory")).unwrap();
        let join = groups::add_member(&mut conn, now(), acme, acme_group.id, evil_user.id);
        assert!(matches!(join, Err(StoreError::NotFound { .. })), "{join:?}");
        let join_as_evil = groups::add_member(&mut conn, now(), evil, acme_group.id, evil_user.id);
        assert!(matches!(join_as_evil, Err(StoreError::NotFound { .. })), "{join_as_evil:?}");
        assert!(matches!(groups::get(&mut conn, evil, acme_group.id), Err(StoreError::NotFound { .. })));
    }

    fn group_updates_check_the_version(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let g = groups::create(&mut conn, now(), t, group("Staff")).unwrap();
        let renamed = groups::update(&mut conn, now(), t, g.id, g.version, group("Employees")).unwrap();
        assert_eq!(renamed.display_name, "Employees");
        let stale = groups::update(&mut conn, now(), t, g.id, g.version, group("Crew"));
        assert!(matches!(stale, Err(StoreError::StaleVersion { .. })));
        assert_eq!(groups::list(&mut conn, t, &PageRequest::first(10)).unwrap().items, vec![renamed.clone()]);
        groups::delete(&mut conn, t, g.id).unwrap();
        assert!(matches!(groups::get(&mut conn, t, g.id), Err(StoreError::NotFound { .. })));
    }

    fn roles_are_assigned_within_a_tenant(db) {
        let mut conn = db.conn();
        let (t, evil) = tenant_and_other(&mut conn, "acme");
        let admin = roles::create(&mut conn, now(), t, role("admin")).unwrap();
        let auditor = roles::create(&mut conn, now(), t, role("auditor")).unwrap();
        assert!(matches!(roles::create(&mut conn, now(), t, role("ADMIN")), Err(StoreError::Conflict { field: "name", .. })));
        assert!(matches!(roles::create(&mut conn, now(), t, role("two words")), Err(StoreError::Invalid { .. })));

        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        assert!(roles::assign(&mut conn, now(), t, admin.id, alice.id).unwrap());
        assert!(!roles::assign(&mut conn, now(), t, admin.id, alice.id).unwrap());
        assert!(roles::assign(&mut conn, now(), t, auditor.id, alice.id).unwrap());
        let names: Vec<String> = roles::roles_of_user(&mut conn, t, alice.id).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["admin", "auditor"]);
        assert!(roles::roles_of_user(&mut conn, evil, alice.id).unwrap().is_empty());

        let mallory = users::create(&mut conn, now(), evil, UserData::new("mallory")).unwrap();
        assert!(matches!(roles::assign(&mut conn, now(), t, admin.id, mallory.id), Err(StoreError::NotFound { .. })));

        assert!(roles::unassign(&mut conn, t, admin.id, alice.id).unwrap());
        assert_eq!(roles::roles_of_user(&mut conn, t, alice.id).unwrap(), vec![auditor.clone()]);
        let updated = roles::update(&mut conn, now(), t, auditor.id, auditor.version, role("reviewer")).unwrap();
        assert!(matches!(
            roles::update(&mut conn, now(), t, auditor.id, auditor.version, role("x")),
            Err(StoreError::StaleVersion { .. })
        ));
        assert_eq!(roles::find_by_name(&mut conn, t, "Reviewer").unwrap().unwrap(), updated);
        assert_eq!(roles::list(&mut conn, t, &PageRequest::first(10)).unwrap().items.len(), 2);
        roles::delete(&mut conn, t, auditor.id).unwrap();
        assert!(roles::roles_of_user(&mut conn, t, alice.id).unwrap().is_empty());
    }

    fn grants_whose_scopes_carry_roles_are_revoked_across_clients(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap();
        let grant = |conn: &mut gatehouse_identity_store::AnyConnection, user: UserId, client: &str, scope: &str| {
            grants::create(conn, now(), t, NewGrant {
                client_id: client.into(),
                issuer: None,
                authentication: Some(Authentication { user_id: user, session_id: SessionId::new(), auth_time: now(), acr: None, amr: vec!["pwd".into()] }),
                scope: scope.into(),
                resources: vec![],
                purposes: vec![],
                lifetime: Duration::days(1),
            }).unwrap().id
        };
        let shop = grant(&mut conn, alice.id, "shop", "openid entitlements");
        let crm = grant(&mut conn, alice.id, "crm", "openid profile entitlements");
        let plain = grant(&mut conn, alice.id, "shop", "openid profile");
        let bobs = grant(&mut conn, bob.id, "shop", "openid entitlements");
        let covering = ["entitlements".to_owned()];
        assert!(grants::revoke_for_user_with_scopes(&mut conn, now(), t, alice.id, &[], "role_removed").unwrap().is_empty());
        let mut revoked = grants::revoke_for_user_with_scopes(&mut conn, now(), t, alice.id, &covering, "role_removed").unwrap();
        revoked.sort();
        let mut expected = vec![shop.clone(), crm.clone()];
        expected.sort();
        assert_eq!(revoked, expected);
        let active = |conn: &mut gatehouse_identity_store::AnyConnection, id: &str| grants::get(conn, t, id).unwrap().unwrap().is_active(now());
        assert!(!active(&mut conn, &shop) && !active(&mut conn, &crm));
        assert!(active(&mut conn, &plain), "a grant without the scope was revoked");
        assert!(active(&mut conn, &bobs), "another user's grant was revoked");
        // Already revoked grants are not revoked (or reported) twice.
        assert!(grants::revoke_for_user_with_scopes(&mut conn, now(), t, alice.id, &covering, "role_removed").unwrap().is_empty());
        let other = tenant(&mut conn, "other");
        assert!(grants::revoke_for_user_with_scopes(&mut conn, now(), other, bob.id, &covering, "role_removed").unwrap().is_empty());
        assert!(active(&mut conn, &bobs));
    }
}
