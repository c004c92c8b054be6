use gatehouse_identity_store::tenants::{self, TenantData};
use gatehouse_identity_store::users::{self, UserData};
use gatehouse_identity_store::{PageRequest, StoreError};

use crate::{now, tenant};

gatehouse_identity_store::backend_tests! {
    fn tenant_slugs_are_unique_and_case_insensitive(db) {
        let mut conn = db.conn();
        let id = tenant(&mut conn, "acme");
        assert_eq!(tenants::find_by_slug(&mut conn, "ACME").unwrap().unwrap().id, id);
        let again = tenants::create(&mut conn, now(), TenantData {
            slug: "Acme".into(),
            display_name: "Acme again".into(),
            ..TenantData::default()
        });
        assert!(matches!(again, Err(StoreError::Conflict { field: "slug", .. })), "{again:?}");
        let bad = tenants::create(&mut conn, now(), TenantData {
            slug: "no spaces/allowed".into(),
            display_name: "x".into(),
            ..TenantData::default()
        });
        assert!(matches!(bad, Err(StoreError::Invalid { .. })));
    }

    fn tenant_settings_are_checked_when_written(db) {
        let mut conn = db.conn();
        let id = tenant(&mut conn, "acme");
        let current = tenants::get(&mut conn, id).unwrap();
        for (section, value) in [
            ("mfa", serde_json::json!({"required": "yes"})),
            ("hosts", serde_json::json!(["bad host"])),
            ("colour", serde_json::json!("blue")),
        ] {
            let mut data = TenantData {
                slug: current.slug.clone(),
                display_name: current.display_name.clone(),
                settings: current.settings.clone(),
            };
            data.settings.insert(section.into(), value);
            let refused = tenants::update(&mut conn, now(), id, current.version, data);
            match refused {
                Err(StoreError::Invalid { message, .. }) => {
                    assert!(message.contains(section), "{section}: {message}")
                }
                other => panic!("{section}: {other:?}"),
            }
        }
        assert_eq!(tenants::get(&mut conn, id).unwrap().version, current.version, "nothing written");
    }

    fn tenant_update_checks_the_version(db) {
        let mut conn = db.conn();
        let id = tenant(&mut conn, "acme");
        let current = tenants::get(&mut conn, id).unwrap();
        let mut data = TenantData {
            slug: current.slug.clone(),
            display_name: "Acme Corp".into(),
            settings: current.settings.clone(),
        };
        data.settings.insert("registration".into(), serde_json::json!({"enabled": false}));
        let updated = tenants::update(&mut conn, now(), id, current.version, data.clone()).unwrap();
        assert_eq!(updated.version, current.version + 1);
        assert_eq!(updated.settings["registration"], serde_json::json!({"enabled": false}));
        assert!(!updated.typed_settings().registration.enabled);
        let stale = tenants::update(&mut conn, now(), id, current.version, data);
        assert!(matches!(stale, Err(StoreError::StaleVersion { .. })));
    }

    fn deleting_a_tenant_removes_its_users(db) {
        let mut conn = db.conn();
        let id = tenant(&mut conn, "gone");
        let user = users::create(&mut conn, now(), id, UserData::new("alice")).unwrap();
        tenants::delete(&mut conn, id).unwrap();
        assert!(matches!(users::get(&mut conn, id, user.id), Err(StoreError::NotFound { .. })));
        assert!(matches!(tenants::delete(&mut conn, id), Err(StoreError::NotFound { .. })));
    }

    fn tenants_list_in_pages(db) {
        let mut conn = db.conn();
        for slug in ["a", "b", "c"] {
            tenant(&mut conn, slug);
        }
        let first = tenants::list(&mut conn, &PageRequest::first(2)).unwrap();
        assert_eq!(first.items.len(), 2);
        let next = first.next_cursor.clone().unwrap();
        let second = tenants::list(&mut conn, &PageRequest::after(next, 2)).unwrap();
        assert_eq!(second.items.len(), 1);
        assert!(second.next_cursor.is_none());
        assert_eq!(second.items[0].slug, "c");
    }
}
