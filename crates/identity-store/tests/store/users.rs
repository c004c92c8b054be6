use gatehouse_core::ids::UserId;
use gatehouse_identity_store::users::{self, Email, Name, PhoneNumber, UserData};
use gatehouse_identity_store::{PageRequest, StoreError};

use crate::{now, tenant, tenant_and_other};

fn email(value: &str, primary: bool) -> Email {
    Email {
        value: value.into(),
        kind: Some("work".into()),
        primary,
        verified: false,
    }
}

fn alice() -> UserData {
    let mut custom = serde_json::Map::new();
    custom.insert("loyaltyTier".into(), serde_json::json!("gold"));
    UserData {
        name: Name {
            given_name: Some("Alice".into()),
            family_name: Some("Liddell".into()),
            ..Name::default()
        },
        display_name: Some("Alice L.".into()),
        locale: Some("en-GB".into()),
        timezone: Some("Europe/London".into()),
        external_id: Some("crm-42".into()),
        emails: vec![
            email("Alice@Example.com", true),
            email("alice@home.example", false),
        ],
        phone_numbers: vec![PhoneNumber {
            value: "+44 20 7946 0000".into(),
            kind: Some("mobile".into()),
            primary: true,
        }],
        custom_attributes: custom,
        ..UserData::new("Alice")
    }
}

gatehouse_identity_store::backend_tests! {
    fn a_user_round_trips_every_attribute(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let created = users::create(&mut conn, now(), t, alice()).unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(created.created_at, now());
        let loaded = users::get(&mut conn, t, created.id).unwrap();
        assert_eq!(loaded, created);
        assert_eq!(loaded.data, alice());
        assert_eq!(loaded.primary_email().unwrap().value, "Alice@Example.com");
        let by_external = users::find_by_external_id(&mut conn, t, "crm-42").unwrap().unwrap();
        assert_eq!(by_external.id, created.id);
    }

    fn user_names_are_unique_per_tenant_ignoring_case_and_width(db) {
        let mut conn = db.conn();
        let (t, other) = tenant_and_other(&mut conn, "acme");
        users::create(&mut conn, now(), t, UserData::new("Alice")).unwrap();
        for clash in ["alice", "ALICE", " Alice ", "ＡＬＩＣＥ"] {
            let result = users::create(&mut conn, now(), t, UserData::new(clash));
            assert!(
                matches!(result, Err(StoreError::Conflict { field: "userName", .. })),
                "{clash:?} was accepted: {result:?}"
            );
        }
        // Another tenant is another namespace.
        users::create(&mut conn, now(), other, UserData::new("alice")).unwrap();
        let found = users::find_by_user_name(&mut conn, t, "aLiCe").unwrap().unwrap();
        assert_eq!(found.data.user_name, "Alice");
        assert!(users::find_by_user_name(&mut conn, t, "bob").unwrap().is_none());
    }

    fn primary_emails_are_unique_per_tenant_ignoring_case(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let first = users::create(&mut conn, now(), t, alice()).unwrap();
        let clash = UserData {
            emails: vec![email("ALICE@example.COM", true)],
            ..UserData::new("alice2")
        };
        let result = users::create(&mut conn, now(), t, clash);
        assert!(matches!(result, Err(StoreError::Conflict { field: "email", .. })), "{result:?}");
        // The failed create left nothing behind.
        assert!(users::find_by_user_name(&mut conn, t, "alice2").unwrap().is_none());
        // The same address as a secondary email is allowed.
        let secondary = UserData {
            emails: vec![email("bob@example.com", true), email("alice@example.com", false)],
            ..UserData::new("bob")
        };
        users::create(&mut conn, now(), t, secondary).unwrap();
        let found = users::find_by_primary_email(&mut conn, t, "alice@EXAMPLE.com").unwrap().unwrap();
        assert_eq!(found.id, first.id);
    }

    fn at_most_one_email_is_primary(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let two = UserData {
            emails: vec![email("a@example.com", true), email("b@example.com", true)],
            ..UserData::new("alice")
        };
        assert!(matches!(users::create(&mut conn, now(), t, two), Err(StoreError::Invalid { .. })));
        assert!(matches!(users::create(&mut conn, now(), t, UserData::new("  ")), Err(StoreError::Invalid { .. })));
    }

    fn a_stale_version_cannot_overwrite_a_newer_one(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, alice()).unwrap();
        let first_writer = UserData { display_name: Some("First".into()), ..user.data.clone() };
        let second_writer = UserData { display_name: Some("Second".into()), ..user.data.clone() };
        let updated = users::update(&mut conn, now(), t, user.id, user.version, first_writer).unwrap();
        assert_eq!(updated.version, 2);
        let stale = users::update(&mut conn, now(), t, user.id, user.version, second_writer);
        assert!(matches!(stale, Err(StoreError::StaleVersion { .. })), "{stale:?}");
        assert_eq!(users::get(&mut conn, t, user.id).unwrap().data.display_name.as_deref(), Some("First"));
        let missing = users::update(&mut conn, now(), t, UserId::new(), 1, UserData::new("x"));
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    }

    fn update_replaces_emails_and_keeps_uniqueness(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, alice()).unwrap();
        let bob = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("bob@example.com", true)],
            ..UserData::new("bob")
        }).unwrap();
        let data = UserData { emails: vec![email("new@example.com", true)], ..alice.data.clone() };
        let updated = users::update(&mut conn, now(), t, alice.id, alice.version, data).unwrap();
        assert_eq!(updated.data.emails, vec![email("new@example.com", true)]);
        assert!(users::find_by_primary_email(&mut conn, t, "alice@example.com").unwrap().is_none());
        // Taking bob's primary address fails and changes nothing.
        let steal = UserData { emails: vec![email("BOB@example.com", true)], ..updated.data.clone() };
        let result = users::update(&mut conn, now(), t, alice.id, updated.version, steal);
        assert!(matches!(result, Err(StoreError::Conflict { field: "email", .. })), "{result:?}");
        assert_eq!(users::get(&mut conn, t, alice.id).unwrap(), updated);
        assert_eq!(users::find_by_primary_email(&mut conn, t, "bob@example.com").unwrap().unwrap().id, bob.id);
    }

    fn every_query_is_scoped_by_tenant(db) {
        let mut conn = db.conn();
        let acme = tenant(&mut conn, "acme");
        let evil = tenant(&mut conn, "evil");
        let user = users::create(&mut conn, now(), acme, alice()).unwrap();
        assert!(matches!(users::get(&mut conn, evil, user.id), Err(StoreError::NotFound { .. })));
        assert!(users::find_by_user_name(&mut conn, evil, "alice").unwrap().is_none());
        assert!(users::find_by_primary_email(&mut conn, evil, "alice@example.com").unwrap().is_none());
        assert!(matches!(users::delete(&mut conn, evil, user.id), Err(StoreError::NotFound { .. })));
        let stolen = users::update(&mut conn, now(), evil, user.id, 1, UserData::new("mine"));
        assert!(matches!(stolen, Err(StoreError::NotFound { .. })));
        assert!(users::list(&mut conn, evil, &PageRequest::first(10)).unwrap().items.is_empty());
        assert_eq!(users::get(&mut conn, acme, user.id).unwrap(), user);
    }

    fn users_list_in_stable_pages(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let mut created = Vec::new();
        for i in 0..5 {
            created.push(users::create(&mut conn, now(), t, UserData {
                emails: vec![email(&format!("u{i}@example.com"), true)],
                ..UserData::new(format!("user{i}"))
            }).unwrap().id);
        }
        let mut seen = Vec::new();
        let mut request = PageRequest::first(2);
        loop {
            let page = users::list(&mut conn, t, &request).unwrap();
            assert!(page.items.len() <= 2);
            assert!(page.items.iter().all(|u| u.data.emails.len() == 1));
            seen.extend(page.items.iter().map(|u| u.id));
            match page.next_cursor {
                Some(cursor) => request = PageRequest::after(cursor, 2),
                None => break,
            }
        }
        assert_eq!(seen, created);
        assert_eq!(users::count(&mut conn, t).unwrap(), 5);
        assert!(users::list(&mut conn, t, &PageRequest::first(0)).is_err());
    }

    fn deleting_a_user_frees_their_names(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, alice()).unwrap();
        users::delete(&mut conn, t, user.id).unwrap();
        assert!(matches!(users::get(&mut conn, t, user.id), Err(StoreError::NotFound { .. })));
        users::create(&mut conn, now(), t, alice()).unwrap();
    }

    fn an_operator_sets_the_active_flag_without_naming_a_version(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, alice()).unwrap();
        assert!(users::set_active(&mut conn, now(), t, user.id, false).unwrap());
        let off = users::get(&mut conn, t, user.id).unwrap();
        assert!(!off.data.active);
        assert_eq!(off.version, user.version + 1);
        assert_eq!(off.data, UserData { active: false, ..user.data.clone() });
        // Idempotent: no change, no new version.
        assert!(!users::set_active(&mut conn, now(), t, user.id, false).unwrap());
        assert_eq!(users::get(&mut conn, t, user.id).unwrap().version, off.version);
        // An edit based on the version before the deactivation cannot undo it.
        let stale = users::update(&mut conn, now(), t, user.id, user.version, user.data.clone());
        assert!(matches!(stale, Err(StoreError::StaleVersion { .. })), "{stale:?}");
        assert!(users::set_active(&mut conn, now(), t, user.id, true).unwrap());
        assert!(users::get(&mut conn, t, user.id).unwrap().data.active);
        let other = tenant(&mut conn, "other");
        assert!(matches!(users::set_active(&mut conn, now(), other, user.id, false), Err(StoreError::NotFound { .. })));
        assert!(matches!(users::set_active(&mut conn, now(), t, UserId::new(), false), Err(StoreError::NotFound { .. })));
    }
}

/// Users written before look-alike keys existed: their skeletons are cleared and
/// their identifiers set by plain SQL, as an older node would have left them.
fn make_legacy(
    conn: &mut gatehouse_identity_store::AnyConnection,
    id: UserId,
    user_name: &str,
    primary: &str,
) {
    use diesel::prelude::*;
    use gatehouse_identity_store::schema::{user_emails, users as users_table};
    let id = id.to_string();
    diesel::update(users_table::table.filter(users_table::id.eq(&id)))
        .set((
            users_table::user_name.eq(user_name),
            users_table::user_name_key.eq(gatehouse_identity_store::fold_key(user_name)),
            users_table::user_name_skeleton.eq(None::<String>),
        ))
        .execute(conn)
        .unwrap();
    diesel::update(user_emails::table.filter(user_emails::user_id.eq(&id)))
        .set((
            user_emails::value.eq(primary),
            user_emails::value_key.eq(gatehouse_identity_store::fold_key(primary)),
            user_emails::value_skeleton.eq(None::<String>),
        ))
        .execute(conn)
        .unwrap();
}

gatehouse_identity_store::backend_tests! {
    fn look_alike_user_names_and_emails_are_refused(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        users::create(&mut conn, now(), t, alice()).unwrap();
        // Whole-script Cyrillic and a dotless ı: single-script, so only the skeleton stops them.
        for look_alike in ["аӏісе", "alıce"] {
            let result = users::create(&mut conn, now(), t, UserData::new(look_alike));
            assert!(
                matches!(result, Err(StoreError::Conflict { field: users::USER_NAME_LOOK_ALIKE, .. })),
                "{look_alike:?}: {result:?}"
            );
        }
        let result = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("alıce@example.com", true)],
            ..UserData::new("someone")
        });
        assert!(
            matches!(result, Err(StoreError::Conflict { field: users::EMAIL_LOOK_ALIKE, .. })),
            "{result:?}"
        );
        // A plain duplicate still says which identifier, whichever index fired first.
        let result = users::create(&mut conn, now(), t, UserData::new("ALICE"));
        assert!(matches!(result, Err(StoreError::Conflict { field: "userName", .. })), "{result:?}");
        let result = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("alice@EXAMPLE.com", true)],
            ..UserData::new("someone")
        });
        assert!(matches!(result, Err(StoreError::Conflict { field: "email", .. })), "{result:?}");
        // Another tenant is another namespace; a look-alike secondary address is fine.
        let other = tenant(&mut conn, "other");
        users::create(&mut conn, now(), other, UserData::new("alıce")).unwrap();
        users::create(&mut conn, now(), t, UserData {
            emails: vec![email("bob@example.com", true), email("alıce@example.com", false)],
            ..UserData::new("bob")
        })
        .unwrap();
    }

    fn an_update_cannot_take_a_look_alike(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        users::create(&mut conn, now(), t, alice()).unwrap();
        let bob = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("bob@example.com", true)],
            ..UserData::new("bob")
        })
        .unwrap();
        let steal = UserData { emails: vec![email("alicе@example.com", true)], ..bob.data.clone() };
        let result = users::update(&mut conn, now(), t, bob.id, bob.version, steal);
        assert!(matches!(result, Err(StoreError::Conflict { field: users::EMAIL_LOOK_ALIKE, .. })), "{result:?}");
        // Its own identifiers, re-spelled, are no conflict.
        let respelled = UserData { user_name: "BOB".into(), emails: vec![email("Bob@Example.com", true)], ..bob.data.clone() };
        users::update(&mut conn, now(), t, bob.id, bob.version, respelled).unwrap();
    }

    fn new_identifiers_with_invisible_or_mixed_script_characters_are_refused(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        for name in ["bob\u{200b}", "pаypal", "alice\u{0}", "bob\u{202e}"] {
            let result = users::create(&mut conn, now(), t, UserData::new(name));
            assert!(matches!(result, Err(StoreError::Invalid { .. })), "{name:?}: {result:?}");
        }
        let result = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("pаypal@example.com", true)],
            ..UserData::new("paypal")
        });
        assert!(matches!(result, Err(StoreError::Invalid { .. })), "{result:?}");
        assert_eq!(users::count(&mut conn, t).unwrap(), 0);
    }

    fn the_backfill_fills_old_rows_and_reports_look_alikes(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let first = users::create(&mut conn, now(), t, alice()).unwrap();
        let second = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("tim@example.com", true)],
            ..UserData::new("tim")
        })
        .unwrap();
        let third = users::create(&mut conn, now(), t, UserData {
            emails: vec![email("dave@example.com", true)],
            ..UserData::new("dave")
        })
        .unwrap();
        make_legacy(&mut conn, first.id, "alice", "alice@example.com");
        make_legacy(&mut conn, second.id, "tim", "tim@example.com");
        // Written by an old node: a look-alike of alice that nothing stopped then.
        make_legacy(&mut conn, third.id, "alıce", "alıce@example.com");
        let report = users::backfill_skeletons(&mut conn).unwrap();
        assert_eq!(report.look_alikes.len(), 1, "{report:?}");
        assert!(
            [first.id.to_string(), third.id.to_string()].contains(&report.look_alikes[0]),
            "{report:?}"
        );
        // Two users and three email rows (alice has a secondary address too).
        assert_eq!(report.filled, 5, "{report:?}");
        // Filled rows now keep their look-alikes out; a second run has nothing to fill.
        let result = users::create(&mut conn, now(), t, UserData::new("tım"));
        assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
        let again = users::backfill_skeletons(&mut conn).unwrap();
        assert_eq!(again.filled, 0);
        assert_eq!(again.look_alikes, report.look_alikes);
        // The unresolved user still works; renaming it resolves the pair.
        let stuck = users::get(&mut conn, t, third.id).unwrap();
        let renamed = UserData { user_name: "dave".into(), emails: vec![email("dave@example.com", true)], ..stuck.data.clone() };
        users::update(&mut conn, now(), t, third.id, stuck.version, renamed).unwrap();
        assert!(users::backfill_skeletons(&mut conn).unwrap().look_alikes.is_empty());
    }
}
