use chrono::Duration;
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::federation_connections::{
    self as connections, ConnectionData, SecretsChange,
};
use gatehouse_identity_store::federation_requests::{self as requests, NewRequest};
use gatehouse_identity_store::groups::{self, GroupData};
use gatehouse_identity_store::users::{self, UserData};
use gatehouse_identity_store::{
    federated_identities as identities, federated_sessions as sessions_store, saml_replay, testing,
};
use serde_json::json;

use crate::{now, tenant, tenant_and_other};

fn cipher() -> Cipher {
    Cipher::new(vec![MasterKey::generate()]).unwrap()
}

fn data(name: &str) -> ConnectionData {
    ConnectionData {
        display_name: name.into(),
        logo_url: None,
        enabled: true,
        jit_provisioning: false,
        trust_verified_email: false,
        settings: json!({"issuer": "https://partner.example", "client_id": "gh"}),
        mapping: json!({"rules": []}),
    }
}

gatehouse_identity_store::backend_tests! {
    fn connections_keep_secrets_sealed_and_change_at_a_version(db) {
        let mut conn = db.conn();
        let (a, b) = tenant_and_other(&mut conn, "a");
        let cipher = cipher();
        let created = connections::create(&mut conn, &cipher, now(), a, "partner", "oidc", data("Partner"), Some(r#"{"client_secret":"s3cret"}"#)).unwrap();
        assert!(created.has_secrets);
        let same_slug = connections::create(&mut conn, &cipher, now(), a, "partner", "oidc", data("Again"), None);
        assert!(matches!(same_slug, Err(StoreError::Conflict { field: "slug", .. })), "{same_slug:?}");
        // Another tenant may use the slug; it never sees this one.
        connections::create(&mut conn, &cipher, now(), b, "partner", "oidc", data("B's"), None).unwrap();
        assert!(connections::find_by_slug(&mut conn, b, "partner").unwrap().unwrap().display_name == "B's");
        assert!(matches!(connections::create(&mut conn, &cipher, now(), a, "Not A Slug", "oidc", data("x"), None), Err(StoreError::Invalid { .. })));

        let secret = connections::secrets(&mut conn, &cipher, a, created.id).unwrap().unwrap();
        assert_eq!(secret.as_str(), r#"{"client_secret":"s3cret"}"#);
        let raw = testing::rows_of_tenant(&mut conn, a);
        assert!(raw.get("federation_connections").copied().unwrap_or(0) == 1);

        let updated = connections::update(&mut conn, &cipher, now(), a, created.id, created.version, data("Partner Corp"), SecretsChange::Set(r#"{"client_secret":"next"}"#)).unwrap();
        assert_eq!(updated.version, created.version + 1);
        let stale = connections::update(&mut conn, &cipher, now(), a, created.id, created.version, data("Lost"), SecretsChange::Keep);
        assert!(matches!(stale, Err(StoreError::StaleVersion { .. })), "{stale:?}");
        assert_eq!(connections::secrets(&mut conn, &cipher, a, created.id).unwrap().unwrap().as_str(), r#"{"client_secret":"next"}"#);
        // Sealed to its row: another key cannot open it.
        assert!(connections::secrets(&mut conn, &self::cipher(), a, created.id).is_err());
    }

    fn a_domain_routes_to_one_connection(db) {
        let mut conn = db.conn();
        let a = tenant(&mut conn, "a");
        let cipher = cipher();
        let one = connections::create(&mut conn, &cipher, now(), a, "one", "oidc", data("One"), None).unwrap();
        let two = connections::create(&mut conn, &cipher, now(), a, "two", "oidc", data("Two"), None).unwrap();
        assert!(!connections::any_domains(&mut conn, a).unwrap());
        connections::set_domains(&mut conn, a, one.id, &["partner.example".into()]).unwrap();
        assert!(connections::any_domains(&mut conn, a).unwrap());
        let taken = connections::set_domains(&mut conn, a, two.id, &["partner.example".into()]);
        assert!(matches!(taken, Err(StoreError::Conflict { field: "domain", .. })), "{taken:?}");
        assert_eq!(connections::find_by_domain(&mut conn, a, "partner.example").unwrap().unwrap().id, one.id);
        assert!(connections::find_by_domain(&mut conn, a, "other.example").unwrap().is_none());
    }

    fn identities_link_once_and_go_with_their_connection(db) {
        let mut conn = db.conn();
        let (a, b) = tenant_and_other(&mut conn, "a");
        let cipher = cipher();
        let connection = connections::create(&mut conn, &cipher, now(), a, "partner", "oidc", data("Partner"), None).unwrap();
        let alice = users::create(&mut conn, now(), a, UserData::new("alice@a.example")).unwrap();
        let bob = users::create(&mut conn, now(), a, UserData::new("bob@a.example")).unwrap();
        let stranger = users::create(&mut conn, now(), b, UserData::new("eve@b.example")).unwrap();

        let linked = identities::link(&mut conn, now(), a, connection.id, "sub-1", alice.id).unwrap();
        // The subject is compared exactly: another case is another identity.
        assert!(identities::find(&mut conn, a, connection.id, "SUB-1").unwrap().is_none());
        assert_eq!(identities::find(&mut conn, a, connection.id, "sub-1").unwrap().unwrap().user_id, alice.id);
        let again = identities::link(&mut conn, now(), a, connection.id, "sub-1", bob.id);
        assert!(matches!(again, Err(StoreError::Conflict { field: "subject", .. })), "{again:?}");
        let second = identities::link(&mut conn, now(), a, connection.id, "sub-2", alice.id);
        assert!(matches!(second, Err(StoreError::Conflict { field: "user", .. })), "{second:?}");
        let other_tenant = identities::link(&mut conn, now(), a, connection.id, "sub-3", stranger.id);
        assert!(matches!(other_tenant, Err(StoreError::NotFound { .. })), "{other_tenant:?}");
        assert!(identities::unlink(&mut conn, a, bob.id, linked.id).unwrap().is_none(), "only its owner unlinks it");

        // Memberships made by the connection's rules are reconciled; manual ones stay.
        let sales = groups::create(&mut conn, now(), a, GroupData { display_name: "sales".into(), external_id: None }).unwrap();
        let staff = groups::create(&mut conn, now(), a, GroupData { display_name: "staff".into(), external_id: None }).unwrap();
        groups::add_member(&mut conn, now(), a, staff.id, alice.id).unwrap();
        let source = format!("connection:{}", connection.id);
        assert!(groups::reconcile_sourced(&mut conn, now(), a, alice.id, &source, &[sales.id, staff.id]).unwrap());
        assert!(!groups::reconcile_sourced(&mut conn, now(), a, alice.id, &source, &[sales.id, staff.id]).unwrap());
        assert!(groups::reconcile_sourced(&mut conn, now(), a, alice.id, &source, &[]).unwrap());
        let names: Vec<String> = groups::groups_of_user(&mut conn, a, alice.id).unwrap().into_iter().map(|g| g.display_name).collect();
        assert_eq!(names, ["staff"], "the manual membership stays");

        connections::delete(&mut conn, a, connection.id).unwrap();
        assert!(identities::of_user(&mut conn, a, alice.id).unwrap().is_empty(), "its identities went with it");
        assert!(users::get(&mut conn, a, alice.id).is_ok(), "the user stays");
    }

    fn a_partners_session_record_is_sealed_and_taken_once(db) {
        let mut conn = db.conn();
        let a = tenant(&mut conn, "a");
        let cipher = cipher();
        let connection = connections::create(&mut conn, &cipher, now(), a, "partner", "oidc", data("Partner"), None).unwrap();
        let alice = users::create(&mut conn, now(), a, UserData::new("alice@a.example")).unwrap();
        let session = gatehouse_identity_store::sessions::create(
            &mut conn,
            now(),
            a,
            gatehouse_identity_store::sessions::NewSession {
                user_id: alice.id,
                secret_hash: "h".into(),
                idle_timeout: Duration::minutes(30),
                absolute_timeout: Duration::hours(8),
                ip: None,
                user_agent: None,
                auth_methods: vec![gatehouse_identity_store::sessions::AuthMethod::new("fed", now())],
                aal: 1,
            },
        )
        .unwrap();
        sessions_store::remember(&mut conn, &cipher, now(), a, session.id, connection.id, sessions_store::Upstream { document: "first.id.token", key: Some("k1") }).unwrap();
        // Signed in again through the partner: the newer token replaces the older.
        sessions_store::remember(&mut conn, &cipher, now(), a, session.id, connection.id, sessions_store::Upstream { document: "eyJ.id.token", key: Some("k2") }).unwrap();
        assert!(testing::rows_of_tenant(&mut conn, a).get("federated_sessions") == Some(&1));
        // Found by the partner's name for the user (SAML single logout), live sessions only.
        assert!(sessions_store::open_by_upstream_key(&mut conn, &cipher, a, connection.id, "k1").unwrap().is_empty());
        let found = sessions_store::open_by_upstream_key(&mut conn, &cipher, a, connection.id, "k2").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0, found[0].1, found[0].2.as_str()), (session.id, alice.id, "eyJ.id.token"));
        let (found, token) = sessions_store::take(&mut conn, &cipher, a, session.id).unwrap().unwrap();
        assert_eq!(found, connection.id);
        assert_eq!(token.as_str(), "eyJ.id.token");
        assert!(sessions_store::take(&mut conn, &cipher, a, session.id).unwrap().is_none(), "taken once");
    }

    fn a_request_is_taken_once_by_its_browser(db) {
        let mut conn = db.conn();
        let a = tenant(&mut conn, "a");
        let cipher = cipher();
        let connection = connections::create(&mut conn, &cipher, now(), a, "partner", "oidc", data("Partner"), None).unwrap();
        let other = connections::create(&mut conn, &cipher, now(), a, "other", "oidc", data("Other"), None).unwrap();
        let new = |binding: &'static str| NewRequest {
            connection: connection.id,
            purpose: "sign_in",
            user: None,
            binding,
            state: b"pkce+nonce",
            expires_at: now() + Duration::minutes(10),
        };
        requests::insert(&mut conn, &cipher, now(), a, "h1", new("browser")).unwrap();
        let taken = requests::take(&mut conn, &cipher, now(), a, "h1", connection.id, Some("browser")).unwrap().unwrap();
        assert_eq!(taken.state.as_slice(), b"pkce+nonce");
        assert!(requests::take(&mut conn, &cipher, now(), a, "h1", connection.id, Some("browser")).unwrap().is_none(), "used once");
        requests::insert(&mut conn, &cipher, now(), a, "h2", new("browser")).unwrap();
        assert!(requests::take(&mut conn, &cipher, now(), a, "h2", connection.id, Some("another")).unwrap().is_none(), "another browser's");
        assert!(requests::take(&mut conn, &cipher, now(), a, "h2", connection.id, Some("browser")).unwrap().is_none(), "gone after a wrong attempt");
        requests::insert(&mut conn, &cipher, now(), a, "h3", new("browser")).unwrap();
        assert!(requests::take(&mut conn, &cipher, now(), a, "h3", other.id, Some("browser")).unwrap().is_none(), "another connection's");
        requests::insert(&mut conn, &cipher, now(), a, "h4", new("browser")).unwrap();
        assert!(requests::take(&mut conn, &cipher, now() + Duration::minutes(11), a, "h4", connection.id, Some("browser")).unwrap().is_none(), "expired");
        requests::insert(&mut conn, &cipher, now(), a, "h5", new("browser")).unwrap();
        assert_eq!(requests::prune_expired(&mut conn, now() + Duration::minutes(11)).unwrap(), 1);
        // A SAML response comes without the browser's cookies: taken unbound, the
        // stored binding goes on to the step that has them.
        requests::insert(&mut conn, &cipher, now(), a, "h6", new("browser")).unwrap();
        let taken = requests::take(&mut conn, &cipher, now(), a, "h6", connection.id, None).unwrap().unwrap();
        assert_eq!(taken.binding, "browser");
        assert!(requests::take(&mut conn, &cipher, now(), a, "h6", connection.id, None).unwrap().is_none(), "used once");
    }

    fn an_assertion_is_accepted_once_until_it_expires(db) {
        let mut conn = db.conn();
        let a = tenant(&mut conn, "a");
        let b = tenant(&mut conn, "b");
        let cipher = cipher();
        let connection = connections::create(&mut conn, &cipher, now(), a, "partner", "saml", data("Partner"), None).unwrap();
        let other = connections::create(&mut conn, &cipher, now(), a, "other", "saml", data("Other"), None).unwrap();
        let elsewhere = connections::create(&mut conn, &cipher, now(), b, "partner", "saml", data("Partner"), None).unwrap();
        let until = now() + Duration::minutes(5);
        saml_replay::remember(&mut conn, a, connection.id, "_a1", until).unwrap();
        assert!(matches!(
            saml_replay::remember(&mut conn, a, connection.id, "_a1", until),
            Err(StoreError::Conflict { field: "assertion_id", .. })
        ), "a replay");
        // IDs are the issuer's: another connection (or tenant) may use the same one.
        saml_replay::remember(&mut conn, a, other.id, "_a1", until).unwrap();
        saml_replay::remember(&mut conn, b, elsewhere.id, "_a1", until).unwrap();
        assert!(matches!(
            saml_replay::remember(&mut conn, a, connection.id, &"x".repeat(257), until),
            Err(StoreError::Invalid { .. })
        ));
        assert_eq!(saml_replay::prune_expired(&mut conn, now()).unwrap(), 0);
        assert_eq!(saml_replay::prune_expired(&mut conn, until).unwrap(), 3);
        saml_replay::remember(&mut conn, a, connection.id, "_a1", until).unwrap();
        connections::delete(&mut conn, a, connection.id).unwrap();
        saml_replay::remember(&mut conn, a, other.id, "_a2", until).unwrap();
    }
}
