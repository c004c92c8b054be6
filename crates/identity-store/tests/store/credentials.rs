use diesel::prelude::*;
use diesel::sql_types::Text;
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::users::{self, UserData};

use crate::{now, tenant, tenant_and_other};

fn cipher() -> Cipher {
    Cipher::new(vec![MasterKey::generate()]).unwrap()
}

#[derive(QueryableByName)]
struct Raw {
    #[diesel(sql_type = Text)]
    data: String,
}

gatehouse_identity_store::backend_tests! {
    fn credentials_are_sealed_at_rest(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let secret = b"JBSWY3DPEHPK3PXP-totp-seed";
        let created = credentials::create(&mut conn, &cipher, now(), t, alice.id, NewCredential {
            kind: CredentialKind::Totp,
            label: Some("phone".into()),
            secret,
        }).unwrap();

        let raw: Vec<Raw> = diesel::sql_query("SELECT data FROM credentials").load(&mut *conn).unwrap();
        assert_eq!(raw.len(), 1);
        assert!(!raw[0].data.contains("JBSWY3DP"), "secret stored in clear: {}", raw[0].data);

        let loaded = credentials::get(&mut conn, t, created.id).unwrap();
        assert_eq!(&loaded.secret(&cipher).unwrap()[..], secret);
        assert!(loaded.secret(&self::cipher()).is_err(), "opened with another master key");
    }

    fn a_sealed_secret_moved_to_another_row_does_not_open(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let mallory = users::create(&mut conn, now(), t, UserData::new("mallory")).unwrap();
        let alices = credentials::create(&mut conn, &cipher, now(), t, alice.id, NewCredential {
            kind: CredentialKind::Password, label: None, secret: b"$argon2id$alice",
        }).unwrap();
        let mallorys = credentials::create(&mut conn, &cipher, now(), t, mallory.id, NewCredential {
            kind: CredentialKind::Password, label: None, secret: b"$argon2id$mallory",
        }).unwrap();
        // Someone with database access copies mallory's hash onto alice's row.
        diesel::sql_query("UPDATE credentials SET data = (SELECT data FROM credentials WHERE id = $1) WHERE id = $2")
            .bind::<Text, _>(mallorys.id.to_string())
            .bind::<Text, _>(alices.id.to_string())
            .execute(&mut *conn)
            .unwrap();
        let tampered = credentials::get(&mut conn, t, alices.id).unwrap();
        assert!(matches!(tampered.secret(&cipher), Err(StoreError::Secret(_))));
    }

    fn credentials_are_listed_used_replaced_and_deleted_per_user(db) {
        let mut conn = db.conn();
        let cipher = cipher();
        let (t, evil) = tenant_and_other(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let password = credentials::create(&mut conn, &cipher, now(), t, alice.id, NewCredential {
            kind: CredentialKind::Password, label: None, secret: b"old-hash",
        }).unwrap();
        for code in ["code-1", "code-2", "code-3"] {
            credentials::create(&mut conn, &cipher, now(), t, alice.id, NewCredential {
                kind: CredentialKind::RecoveryCode, label: None, secret: code.as_bytes(),
            }).unwrap();
        }
        assert_eq!(credentials::list_for_user(&mut conn, t, alice.id, None).unwrap().len(), 4);
        assert_eq!(credentials::list_for_user(&mut conn, t, alice.id, Some(CredentialKind::RecoveryCode)).unwrap().len(), 3);
        assert!(credentials::list_for_user(&mut conn, evil, alice.id, None).unwrap().is_empty());
        assert!(matches!(credentials::get(&mut conn, evil, password.id), Err(StoreError::NotFound { .. })));

        credentials::replace_secret(&mut conn, &cipher, &password, b"new-hash").unwrap();
        credentials::mark_used(&mut conn, now(), t, password.id).unwrap();
        let reloaded = credentials::get(&mut conn, t, password.id).unwrap();
        assert_eq!(&reloaded.secret(&cipher).unwrap()[..], b"new-hash");
        assert_eq!(reloaded.last_used_at, Some(now()));

        assert_eq!(credentials::delete_kind_for_user(&mut conn, t, alice.id, CredentialKind::RecoveryCode).unwrap(), 3);
        credentials::delete(&mut conn, t, password.id).unwrap();
        assert!(credentials::list_for_user(&mut conn, t, alice.id, None).unwrap().is_empty());

        let orphan = credentials::create(&mut conn, &cipher, now(), evil, alice.id, NewCredential {
            kind: CredentialKind::Password, label: None, secret: b"x",
        });
        assert!(matches!(orphan, Err(StoreError::NotFound { .. })), "credential attached across tenants: {orphan:?}");
    }
}
