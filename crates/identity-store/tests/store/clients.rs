use gatehouse_identity_store::clients::{self, ClientData};
use gatehouse_identity_store::{PageRequest, StoreError};

use crate::{now, tenant};

fn web_app(client_id: &str) -> ClientData {
    ClientData {
        secret_hash: Some("ab".repeat(32)),
        redirect_uris: vec!["https://shop.example/callback".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: vec!["openid".into(), "profile".into()],
        audiences: vec!["https://api.example".into()],
        default_audience: Some("https://api.example".into()),
        ..ClientData::new(client_id, "Web shop")
    }
}

gatehouse_identity_store::backend_tests! {
    fn clients_round_trip_and_are_unique_per_tenant(db) {
        let mut conn = db.conn();
        let acme = tenant(&mut conn, "acme");
        let other = tenant(&mut conn, "other");
        let created = clients::create(&mut conn, now(), acme, web_app("shop")).unwrap();
        assert_eq!(clients::get_by_client_id(&mut conn, acme, "shop").unwrap().unwrap(), created);
        assert!(clients::get_by_client_id(&mut conn, other, "shop").unwrap().is_none(), "client visible in another tenant");
        let clash = clients::create(&mut conn, now(), acme, web_app("shop"));
        assert!(matches!(clash, Err(StoreError::Conflict { field: "client_id", .. })), "{clash:?}");
        clients::create(&mut conn, now(), other, web_app("shop")).unwrap();

        let mut data = created.data.clone();
        data.redirect_uris.push("https://shop.example/other".into());
        let updated = clients::update(&mut conn, now(), acme, "shop", created.version, data.clone()).unwrap();
        assert_eq!(updated.data.redirect_uris.len(), 2);
        assert!(matches!(clients::update(&mut conn, now(), acme, "shop", created.version, data), Err(StoreError::StaleVersion { .. })));
        assert_eq!(clients::list(&mut conn, acme, &PageRequest::first(10)).unwrap().items.len(), 1);
        clients::delete(&mut conn, acme, "shop").unwrap();
        assert!(clients::get_by_client_id(&mut conn, acme, "shop").unwrap().is_none());
        assert!(matches!(clients::delete(&mut conn, acme, "shop"), Err(StoreError::NotFound { .. })));
    }
}
