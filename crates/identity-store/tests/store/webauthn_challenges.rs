use std::sync::Barrier;

use chrono::Duration;
use diesel::prelude::*;
use diesel::sql_types::Text;
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::users::{self, UserData};
use gatehouse_identity_store::webauthn_challenges::{
    NewChallenge, Purpose, insert, prune_expired, take,
};

use crate::{now, tenant, tenant_and_other};

fn cipher() -> Cipher {
    Cipher::new(vec![MasterKey::generate()]).unwrap()
}

fn challenge<'a>(
    purpose: Purpose,
    user: Option<gatehouse_core::ids::UserId>,
    binding: &'a str,
    state: &'a [u8],
) -> NewChallenge<'a> {
    NewChallenge {
        purpose,
        user,
        binding,
        state,
        expires_at: now() + Duration::minutes(5),
    }
}

#[derive(QueryableByName)]
struct Raw {
    #[diesel(sql_type = Text)]
    state: String,
}

gatehouse_identity_store::backend_tests! {
    fn a_challenge_is_taken_once_with_its_state(db) {
        let mut conn = db.conn();
        let conn = &mut *conn;
        let cipher = cipher();
        let t = tenant(conn, "acme");
        let alice = users::create(conn, now(), t, UserData::new("alice")).unwrap();
        let state = br#"{"challenge":"c2VjcmV0LWNoYWxsZW5nZQ"}"#;
        insert(conn, &cipher, now(), t, "h1", challenge(Purpose::Registration, Some(alice.id), "browser-1", state)).unwrap();

        let raw: Vec<Raw> = diesel::sql_query("SELECT state FROM webauthn_challenges").load(conn).unwrap();
        assert_eq!(raw.len(), 1);
        assert!(!raw[0].state.contains("c2VjcmV0"), "state stored in clear: {}", raw[0].state);

        let taken = take(conn, &cipher, now(), t, "h1", Purpose::Registration, "browser-1").unwrap().unwrap();
        assert_eq!(&taken.state[..], state);
        assert_eq!(taken.purpose, Purpose::Registration);
        assert_eq!(taken.user_id, Some(alice.id));
        assert_eq!(taken.created_at, now());
        assert_eq!(taken.expires_at, now() + Duration::minutes(5));
        assert!(!format!("{taken:?}").contains("c2VjcmV0"), "Debug shows the state");

        assert!(take(conn, &cipher, now(), t, "h1", Purpose::Registration, "browser-1").unwrap().is_none(), "taken twice");
        assert!(take(conn, &cipher, now(), t, "unknown", Purpose::Registration, "browser-1").unwrap().is_none());

        // Discoverable sign-in: no user yet.
        insert(conn, &cipher, now(), t, "h2", challenge(Purpose::Authentication, None, "browser-1", b"{}")).unwrap();
        let taken = take(conn, &cipher, now(), t, "h2", Purpose::Authentication, "browser-1").unwrap().unwrap();
        assert_eq!(taken.user_id, None);
    }

    fn a_wrong_binding_purpose_or_tenant_or_an_expired_challenge_gives_nothing(db) {
        let mut conn = db.conn();
        let conn = &mut *conn;
        let cipher = cipher();
        let (t, other) = tenant_and_other(conn, "acme");
        let new = |binding| challenge(Purpose::Authentication, None, binding, b"{}");
        let count = |conn: &mut gatehouse_identity_store::AnyConnection| -> usize {
            diesel::sql_query("SELECT state FROM webauthn_challenges").load::<Raw>(conn).unwrap().len()
        };

        insert(conn, &cipher, now(), t, "a", new("browser-1")).unwrap();
        assert!(take(conn, &cipher, now(), other, "a", Purpose::Authentication, "browser-1").unwrap().is_none(), "another tenant");
        assert_eq!(count(conn), 1, "another tenant cannot spend it");
        assert!(take(conn, &cipher, now(), t, "a", Purpose::Authentication, "browser-2").unwrap().is_none(), "another browser");
        assert_eq!(count(conn), 0, "a wrong binding spends it");
        assert!(take(conn, &cipher, now(), t, "a", Purpose::Authentication, "browser-1").unwrap().is_none(), "after the wrong binding");

        insert(conn, &cipher, now(), t, "b", new("browser-1")).unwrap();
        assert!(take(conn, &cipher, now(), t, "b", Purpose::Registration, "browser-1").unwrap().is_none(), "another purpose");
        assert!(take(conn, &cipher, now(), t, "b", Purpose::Authentication, "browser-1").unwrap().is_none());

        insert(conn, &cipher, now(), t, "c", new("browser-1")).unwrap();
        let expiry = now() + Duration::minutes(5);
        assert!(take(conn, &cipher, expiry, t, "c", Purpose::Authentication, "browser-1").unwrap().is_none(), "expired");
        assert_eq!(count(conn), 0);

        assert!(matches!(
            insert(conn, &cipher, now(), t, "d", new("")),
            Err(StoreError::Invalid { .. })
        ), "an unbound challenge");
    }

    fn state_moved_to_another_row_does_not_open(db) {
        let mut conn = db.conn();
        let conn = &mut *conn;
        let cipher = cipher();
        let t = tenant(conn, "acme");
        insert(conn, &cipher, now(), t, "mine", challenge(Purpose::Authentication, None, "browser-1", b"mine")).unwrap();
        insert(conn, &cipher, now(), t, "theirs", challenge(Purpose::Authentication, None, "browser-2", b"theirs")).unwrap();
        diesel::sql_query("UPDATE webauthn_challenges SET state = (SELECT state FROM webauthn_challenges WHERE id_hash = 'theirs') WHERE id_hash = 'mine'")
            .execute(conn)
            .unwrap();
        assert!(take(conn, &cipher, now(), t, "mine", Purpose::Authentication, "browser-1").is_err());
    }

    fn concurrent_takes_get_the_state_once(db) {
        let cipher = cipher();
        let t = tenant(&mut db.conn(), "acme");
        insert(&mut db.conn(), &cipher, now(), t, "race", challenge(Purpose::Authentication, None, "b", b"{}")).unwrap();
        let barrier = Barrier::new(4);
        let taken = std::thread::scope(|scope| {
            let attempts: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut conn = db.conn();
                        barrier.wait();
                        take(&mut conn, &cipher, now(), t, "race", Purpose::Authentication, "b").unwrap()
                    })
                })
                .collect();
            attempts.into_iter().filter_map(|a| a.join().unwrap()).count()
        });
        assert_eq!(taken, 1);
    }

    fn deleting_the_user_removes_their_challenges_and_expired_ones_are_pruned(db) {
        let mut conn = db.conn();
        let conn = &mut *conn;
        let cipher = cipher();
        let t = tenant(conn, "acme");
        let alice = users::create(conn, now(), t, UserData::new("alice")).unwrap();
        insert(conn, &cipher, now(), t, "alice", challenge(Purpose::Registration, Some(alice.id), "b", b"{}")).unwrap();
        users::delete(conn, t, alice.id).unwrap();
        assert!(take(conn, &cipher, now(), t, "alice", Purpose::Registration, "b").unwrap().is_none());

        let ghost = gatehouse_core::ids::UserId::new();
        assert!(matches!(
            insert(conn, &cipher, now(), t, "ghost", challenge(Purpose::Registration, Some(ghost), "b", b"{}")),
            Err(StoreError::NotFound { .. })
        ));

        for (hash, minutes) in [("one", 1), ("five", 5), ("ten", 10)] {
            insert(conn, &cipher, now(), t, hash, NewChallenge {
                expires_at: now() + Duration::minutes(minutes),
                ..challenge(Purpose::Authentication, None, "b", b"{}")
            }).unwrap();
        }
        assert_eq!(prune_expired(conn, now() + Duration::minutes(5)).unwrap(), 2);
        assert!(take(conn, &cipher, now(), t, "ten", Purpose::Authentication, "b").unwrap().is_some());
    }

    fn passkeys_are_found_by_credential_id_which_is_unique_per_tenant(db) {
        let mut conn = db.conn();
        let conn = &mut *conn;
        let cipher = cipher();
        let (t, other) = tenant_and_other(conn, "acme");
        let alice = users::create(conn, now(), t, UserData::new("alice")).unwrap();
        let bob = users::create(conn, now(), t, UserData::new("bob")).unwrap();
        let carol = users::create(conn, now(), other, UserData::new("carol")).unwrap();
        let passkey = |label: &str| NewCredential {
            kind: CredentialKind::Webauthn,
            label: Some(label.into()),
            secret: b"{\"cred\":{}}",
        };

        let created = credentials::create_with_lookup_key(conn, &cipher, now(), t, alice.id, passkey("laptop"), "Y3JlZC0x").unwrap();
        assert_eq!(created.lookup_key.as_deref(), Some("Y3JlZC0x"));
        let found = credentials::find_by_lookup_key(conn, t, CredentialKind::Webauthn, "Y3JlZC0x").unwrap().unwrap();
        assert_eq!(found.id, created.id);
        assert_eq!(found.user_id, alice.id);
        assert_eq!(found.lookup_key.as_deref(), Some("Y3JlZC0x"));
        assert!(credentials::find_by_lookup_key(conn, t, CredentialKind::Totp, "Y3JlZC0x").unwrap().is_none(), "another kind");
        assert!(credentials::find_by_lookup_key(conn, other, CredentialKind::Webauthn, "Y3JlZC0x").unwrap().is_none(), "another tenant");

        for user in [alice.id, bob.id] {
            assert!(matches!(
                credentials::create_with_lookup_key(conn, &cipher, now(), t, user, passkey("again"), "Y3JlZC0x"),
                Err(StoreError::Conflict { .. })
            ), "a credential id registered twice");
        }
        credentials::create_with_lookup_key(conn, &cipher, now(), other, carol.id, passkey("x"), "Y3JlZC0x")
            .expect("another tenant is another relying party's namespace");
        // Credentials without a key do not collide.
        for _ in 0..2 {
            credentials::create(conn, &cipher, now(), t, alice.id, NewCredential {
                kind: CredentialKind::RecoveryCode, label: None, secret: b"digest",
            }).unwrap();
        }

        credentials::set_label(conn, t, created.id, Some("work laptop")).unwrap();
        assert_eq!(credentials::get(conn, t, created.id).unwrap().label.as_deref(), Some("work laptop"));
        assert!(matches!(
            credentials::set_label(conn, other, created.id, Some("stolen")),
            Err(StoreError::NotFound { .. })
        ));
    }
}
