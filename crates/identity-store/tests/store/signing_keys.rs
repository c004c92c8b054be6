use chrono::Duration;
use diesel::prelude::*;
use diesel::sql_types::Text;
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::signing_keys::{
    self, Advanced, KeyAlgorithm, KeyState, NewSigningKey,
};

use crate::{now, tenant, tenant_and_other};

fn cipher() -> Cipher {
    Cipher::new(vec![MasterKey::generate()]).unwrap()
}

fn key<'a>(kid: &str, alg: KeyAlgorithm, state: KeyState, secret: &'a [u8]) -> NewSigningKey<'a> {
    NewSigningKey {
        kid: kid.into(),
        alg,
        private_key: secret,
        public_jwk: format!(r#"{{"kid":"{kid}"}}"#),
        state,
    }
}

#[derive(QueryableByName)]
struct Raw {
    #[diesel(sql_type = Text)]
    private_key: String,
}

fn kids(keys: &[signing_keys::SigningKey]) -> Vec<(&str, KeyState)> {
    keys.iter().map(|k| (k.kid.as_str(), k.state)).collect()
}

gatehouse_identity_store::backend_tests! {
    fn private_keys_are_sealed_and_bound_to_their_row(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        let created = signing_keys::insert(&mut conn, &cipher, now(), t,
            key("k1", KeyAlgorithm::Es256, KeyState::Active, b"PKCS8-SECRET-ONE")).unwrap();
        assert_eq!(created.activated_at, Some(now()));
        signing_keys::insert(&mut conn, &cipher, now(), t,
            key("k2", KeyAlgorithm::EdDsa, KeyState::Active, b"PKCS8-SECRET-TWO")).unwrap();

        let raw: Vec<Raw> = diesel::sql_query("SELECT private_key FROM signing_keys").load(&mut *conn).unwrap();
        assert_eq!(raw.len(), 2);
        assert!(raw.iter().all(|r| !r.private_key.contains("SECRET")), "key stored in clear");

        let loaded = signing_keys::get(&mut conn, t, "k1").unwrap();
        assert_eq!(&loaded.private_key(&cipher).unwrap()[..], b"PKCS8-SECRET-ONE");
        assert_eq!(loaded.public_jwk, r#"{"kid":"k1"}"#);
        assert!(loaded.private_key(&self::cipher()).is_err(), "opened with another master key");

        // Copying one sealed key onto another row (another kid and alg) does not open.
        diesel::sql_query("UPDATE signing_keys SET private_key = (SELECT private_key FROM signing_keys WHERE kid = 'k1') WHERE kid = 'k2'")
            .execute(&mut *conn)
            .unwrap();
        let moved = signing_keys::get(&mut conn, t, "k2").unwrap();
        assert!(matches!(moved.private_key(&cipher), Err(StoreError::Secret(_))));
    }

    fn keys_are_tenant_scoped(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let (t, evil) = tenant_and_other(&mut conn, "acme");
        signing_keys::insert(&mut conn, &cipher, now(), t,
            key("k1", KeyAlgorithm::Es256, KeyState::Active, b"x")).unwrap();
        assert!(matches!(signing_keys::get(&mut conn, evil, "k1"), Err(StoreError::NotFound { .. })));
        assert!(signing_keys::list_published(&mut conn, evil, now()).unwrap().is_empty());
        assert!(signing_keys::active(&mut conn, evil, KeyAlgorithm::Es256).unwrap().is_none());
        assert_eq!(signing_keys::advance(&mut conn, now(), evil, KeyAlgorithm::Es256, now()).unwrap(), Advanced::default());
        // Another tenant may have its own active ES256 key.
        signing_keys::insert(&mut conn, &cipher, now(), evil,
            key("k2", KeyAlgorithm::Es256, KeyState::Active, b"y")).unwrap();
        // A kid is global: reusing one is a conflict, not a silent overwrite.
        let duplicate = signing_keys::insert(&mut conn, &cipher, now(), evil,
            key("k1", KeyAlgorithm::Es256, KeyState::Next, b"z"));
        assert!(matches!(duplicate, Err(StoreError::Conflict { field: "kid", .. })), "{duplicate:?}");
        let orphan = signing_keys::insert(&mut conn, &cipher, now(), gatehouse_core::ids::TenantId::new(),
            key("k3", KeyAlgorithm::Es256, KeyState::Active, b"z"));
        assert!(matches!(orphan, Err(StoreError::NotFound { .. })), "{orphan:?}");
    }

    fn one_active_and_one_next_per_algorithm(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        signing_keys::insert(&mut conn, &cipher, now(), t,
            key("a1", KeyAlgorithm::Es256, KeyState::Active, b"x")).unwrap();
        signing_keys::insert(&mut conn, &cipher, now(), t,
            key("n1", KeyAlgorithm::Es256, KeyState::Next, b"x")).unwrap();
        signing_keys::insert(&mut conn, &cipher, now(), t,
            key("r1", KeyAlgorithm::Rs256, KeyState::Active, b"x")).unwrap();
        for (kid, state) in [("a2", KeyState::Active), ("n2", KeyState::Next)] {
            let second = signing_keys::insert(&mut conn, &cipher, now(), t,
                key(kid, KeyAlgorithm::Es256, state, b"x"));
            assert!(matches!(second, Err(StoreError::Conflict { field: "state", .. })), "{second:?}");
        }
        let retired = signing_keys::insert(&mut conn, &cipher, now(), t,
            key("x", KeyAlgorithm::Es256, KeyState::Retired, b"x"));
        assert!(matches!(retired, Err(StoreError::Invalid { .. })));
    }

    fn advance_retires_active_and_promotes_next(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        let alg = KeyAlgorithm::Es256;
        let later = now() + Duration::hours(1);
        let until = later + Duration::minutes(10);

        signing_keys::insert(&mut conn, &cipher, now(), t, key("k1", alg, KeyState::Active, b"x")).unwrap();
        // Without a next key nothing moves: the tenant keeps its signing key.
        assert_eq!(signing_keys::advance(&mut conn, later, t, alg, until).unwrap(), Advanced::default());
        assert_eq!(signing_keys::active(&mut conn, t, alg).unwrap().unwrap().kid, "k1");

        signing_keys::insert(&mut conn, &cipher, now(), t, key("k2", alg, KeyState::Next, b"x")).unwrap();
        let advanced = signing_keys::advance(&mut conn, later, t, alg, until).unwrap();
        assert_eq!(advanced, Advanced { retired: Some("k1".into()), activated: Some("k2".into()) });

        let k1 = signing_keys::get(&mut conn, t, "k1").unwrap();
        assert_eq!((k1.state, k1.retired_at, k1.publish_until), (KeyState::Retired, Some(later), Some(until)));
        let k2 = signing_keys::active(&mut conn, t, alg).unwrap().unwrap();
        assert_eq!((k2.kid.as_str(), k2.activated_at), ("k2", Some(later)));
        assert!(signing_keys::find(&mut conn, t, alg, KeyState::Next).unwrap().is_none());

        // A next key alone (no active) is promoted.
        signing_keys::insert(&mut conn, &cipher, now(), t, key("e1", KeyAlgorithm::EdDsa, KeyState::Next, b"x")).unwrap();
        let advanced = signing_keys::advance(&mut conn, later, t, KeyAlgorithm::EdDsa, until).unwrap();
        assert_eq!(advanced, Advanced { retired: None, activated: Some("e1".into()) });
        // Other algorithms were not touched.
        assert_eq!(signing_keys::active(&mut conn, t, alg).unwrap().unwrap().kid, "k2");
    }

    fn published_keys_and_pruning_follow_publish_until(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        let alg = KeyAlgorithm::Es256;
        let until = now() + Duration::minutes(10);
        signing_keys::insert(&mut conn, &cipher, now(), t, key("k1", alg, KeyState::Active, b"x")).unwrap();
        signing_keys::insert(&mut conn, &cipher, now(), t, key("k2", alg, KeyState::Next, b"x")).unwrap();
        signing_keys::advance(&mut conn, now(), t, alg, until).unwrap();
        signing_keys::insert(&mut conn, &cipher, now(), t, key("k3", alg, KeyState::Next, b"x")).unwrap();

        let published = signing_keys::list_published(&mut conn, t, now()).unwrap();
        assert_eq!(kids(&published), [("k1", KeyState::Retired), ("k2", KeyState::Active), ("k3", KeyState::Next)]);
        assert!(published.iter().all(|k| k.is_published_at(now())));

        // Nothing is pruned while the retired key is still published.
        assert_eq!(signing_keys::prune(&mut conn, until - Duration::seconds(1), t).unwrap(), 0);
        let at_end = signing_keys::list_published(&mut conn, t, until).unwrap();
        assert_eq!(kids(&at_end), [("k2", KeyState::Active), ("k3", KeyState::Next)]);
        assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), 3);

        assert_eq!(signing_keys::prune(&mut conn, until, t).unwrap(), 1);
        assert!(matches!(signing_keys::get(&mut conn, t, "k1"), Err(StoreError::NotFound { .. })));
        assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), 2);
    }

    fn deleting_a_tenant_deletes_its_keys(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        signing_keys::insert(&mut conn, &cipher, now(), t,
            key("k1", KeyAlgorithm::Es256, KeyState::Active, b"x")).unwrap();
        diesel::sql_query("DELETE FROM tenants").execute(&mut *conn).unwrap();
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let left: Vec<Count> = diesel::sql_query("SELECT COUNT(*) AS n FROM signing_keys").load(&mut *conn).unwrap();
        assert_eq!(left[0].n, 0);
    }
}
