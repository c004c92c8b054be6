use diesel::connection::SimpleConnection;
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::audit::{self, NewAuditEvent, Outcome};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::{AnyConnection, Backend, PageRequest, PooledConnection};

use crate::now;

static CIPHER: std::sync::LazyLock<gatehouse_core::secrets::Cipher> =
    std::sync::LazyLock::new(gatehouse_identity_store::testing::test_cipher);

/// The content hash as a plain SHA-256 chain computes it: what an attacker with
/// write access to the database but not the master key can recompute.
fn unkeyed_hash(conn: &mut AnyConnection, tenant: TenantId, seq: i64, prev_hash: &str) -> String {
    use sha2::Digest;
    let e = audit::list(conn, tenant, &PageRequest::first(500))
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.seq == seq)
        .unwrap();
    let mut canonical = serde_json::json!([
        prev_hash,
        e.id.to_string(),
        e.tenant_id,
        e.seq,
        e.occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.actor,
        e.action,
        e.target,
        e.outcome,
        e.ip,
        e.details,
    ]);
    if let Some(subject) = &e.sealed_for {
        canonical
            .as_array_mut()
            .unwrap()
            .push(subject.clone().into());
    }
    hex::encode(sha2::Sha256::digest(canonical.to_string().as_bytes()))
}

/// Re-hashes events `seqs` as a plain SHA-256 chain continuing from `prev`, as
/// someone with write access to the database but not the key would; returns the
/// last hash.
fn rehash_unkeyed(
    conn: &mut AnyConnection,
    tenant: TenantId,
    seqs: std::ops::RangeInclusive<i64>,
    mut prev: String,
) -> String {
    for seq in seqs {
        let hash = unkeyed_hash(conn, tenant, seq, &prev);
        conn.batch_execute(&format!(
            "UPDATE audit_events SET prev_hash = '{prev}', hash = '{hash}' \
             WHERE tenant_id = '{tenant}' AND seq = {seq}"
        ))
        .unwrap();
        prev = hash;
    }
    prev
}

/// Appends `count` events (`e.0`, `e.1`, …) to the tenant's chain.
fn append_events(conn: &mut AnyConnection, tenant: TenantId, count: usize) {
    for i in 0..count {
        audit::append(conn, &CIPHER, now(), tenant, event(&format!("e.{i}"))).unwrap();
    }
}

fn event(action: &str) -> NewAuditEvent {
    NewAuditEvent {
        actor: "system".into(),
        action: action.into(),
        target: Some("user:42".into()),
        outcome: Outcome::Success,
        ip: Some("203.0.113.7".into()),
        details: serde_json::json!({ "n": action }),
    }
}

/// What an attacker with database access does first: remove the append-only guard.
fn drop_append_only_guard(db: &TestDb, conn: &mut AnyConnection) {
    let sql = match db.backend {
        Backend::Sqlite => {
            "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;"
        }
        Backend::Postgres => "DROP TRIGGER audit_events_append_only ON audit_events;",
    };
    conn.batch_execute(sql).unwrap();
}

/// A tenant's chain of `events` events with the append-only guard dropped: where
/// every tampering test starts.
fn chain_open_to_tampering(db: &TestDb, events: usize) -> (PooledConnection, TenantId) {
    let mut conn = db.conn();
    let t = TenantId::new();
    append_events(&mut conn, t, events);
    drop_append_only_guard(db, &mut conn);
    (conn, t)
}

gatehouse_identity_store::backend_tests! {
    fn events_form_a_verifiable_chain_per_tenant(db) {
        let mut conn = db.conn();
        let (a, b) = (TenantId::new(), TenantId::new());
        for i in 0..3 {
            audit::append(&mut conn, &CIPHER, now(), a, event(&format!("a.{i}"))).unwrap();
            audit::append(&mut conn, &CIPHER, now(), b, event(&format!("b.{i}"))).unwrap();
        }
        let page = audit::list(&mut conn, a, &PageRequest::first(2)).unwrap();
        assert_eq!(page.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(page.items[1].prev_hash, page.items[0].hash);
        assert_eq!(page.items[0].prev_hash, audit::GENESIS_HASH);
        let rest = audit::list(&mut conn, a, &PageRequest::after(page.next_cursor.unwrap(), 2)).unwrap();
        assert_eq!(rest.items[0].action, "a.2");

        let report = audit::verify(&mut conn, &CIPHER).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!((report.tenants, report.events), (2, 6));
    }

    fn the_database_refuses_to_change_or_delete_audit_events(db) {
        let mut conn = db.conn();
        let t = crate::tenant(&mut conn, "kept");
        audit::append(&mut conn, &CIPHER, now(), t, event("x")).unwrap();
        assert!(conn.batch_execute("UPDATE audit_events SET action = 'y'").is_err());
        assert!(conn.batch_execute("DELETE FROM audit_events").is_err());
        // A deleted tenant's trail may go with it, and only then.
        gatehouse_identity_store::tenants::delete(&mut conn, t).unwrap();
        assert!(conn.batch_execute("UPDATE audit_events SET action = 'y'").is_err());
        conn.batch_execute(&format!("DELETE FROM audit_events WHERE tenant_id = '{t}'")).unwrap();
    }

    fn personal_data_is_sealed_per_user_and_erased_with_their_key(db) {
        use gatehouse_core::ids::UserId;
        let mut conn = db.conn();
        let t = TenantId::new();
        let (alice, bob) = (UserId::new(), UserId::new());
        let about = |actor: String, target: Option<String>, details: serde_json::Value| NewAuditEvent {
            actor,
            action: "user.changed".into(),
            target,
            outcome: Outcome::Success,
            ip: Some("203.0.113.7".into()),
            details,
        };
        for new in [
            about("operator:ops".into(), Some(format!("user:{alice}")), serde_json::json!({"email": "alice@example.com"})),
            about(format!("user:{bob}"), Some("client:app".into()), serde_json::json!({"email": "bob@example.com"})),
            about("system".into(), Some("client:app".into()), serde_json::json!({"n": 1})),
        ] {
            audit::append(&mut conn, &CIPHER, now(), t, new).unwrap();
        }

        // As stored: nothing personal in clear, each sealed for its user.
        let stored = audit::list(&mut conn, t, &PageRequest::first(10)).unwrap().items;
        assert_eq!(stored[0].sealed_for, Some(alice.to_string()));
        assert_eq!(stored[1].sealed_for, Some(bob.to_string()));
        assert_eq!(stored[2].sealed_for, None);
        for sealed in &stored[..2] {
            assert!(!sealed.details.contains("example.com"), "{}", sealed.details);
            assert_eq!(sealed.ip, None);
        }
        assert_eq!(stored[2].ip.as_deref(), Some("203.0.113.7"));

        // Opened with the users' keys: as written.
        let mut opened = stored.clone();
        audit::personal::open(&mut conn, &CIPHER, &mut opened).unwrap();
        assert!(opened[0].details.contains("alice@example.com"));
        assert_eq!(opened[0].ip.as_deref(), Some("203.0.113.7"));
        assert!(opened[1].details.contains("bob@example.com"));
        assert!(!opened.iter().any(|e| e.erased));

        // Alice is erased: her events stay in the chain, which still verifies, and
        // what they said of her is gone; Bob's are untouched.
        audit::personal::erase(&mut conn, now(), t, alice).unwrap();
        let mut after = audit::list(&mut conn, t, &PageRequest::first(10)).unwrap().items;
        audit::personal::open(&mut conn, &CIPHER, &mut after).unwrap();
        assert!(after[0].erased);
        assert_eq!((after[0].ip.as_deref(), after[0].details.as_str()), (None, "{}"));
        assert!(after[1].details.contains("bob@example.com"));
        let report = audit::verify(&mut conn, &CIPHER).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);

        // Events about her afterwards are not sealed with a new key: there is
        // no one left to describe.
        let later = audit::append(&mut conn, &CIPHER, now(), t,
            about("operator:ops".into(), Some(format!("user:{alice}")), serde_json::json!({"reason": "asked"}))).unwrap();
        assert_eq!(later.sealed_for, None);
        assert_eq!(later.ip, None, "nor where the request came from");
        assert!(audit::verify(&mut conn, &CIPHER).unwrap().is_intact());
    }

    fn sealed_personal_data_is_bound_to_its_event(db) {
        let (mut conn, t) = chain_open_to_tampering(db, 2);
        // Swapping two events' sealed details does not open (and breaks the chain
        // besides): the moved event reads as unreadable, the others as written.
        conn.batch_execute(&format!(
            "UPDATE audit_events SET details = (SELECT details FROM audit_events WHERE tenant_id = '{t}' AND seq = 1) \
             WHERE tenant_id = '{t}' AND seq = 2"
        )).unwrap();
        let mut events = audit::list(&mut conn, t, &PageRequest::first(10)).unwrap().items;
        audit::personal::open(&mut conn, &CIPHER, &mut events).unwrap();
        assert!(!events[0].unreadable && events[1].unreadable);
        assert_eq!(events[1].details, "{}");
        assert!(events[0].details.contains("e.0"), "{}", events[0].details);
    }

    fn verify_reports_an_altered_event(db) {
        let (mut conn, _) = chain_open_to_tampering(db, 4);
        conn.batch_execute("UPDATE audit_events SET outcome = 'failure' WHERE seq = 2").unwrap();
        let report = audit::verify(&mut conn, &CIPHER).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].seq, 2);
        assert!(report.problems[0].problem.contains("altered"));
    }

    fn verify_reports_a_removed_event_and_a_cut_tail(db) {
        let (mut conn, _) = chain_open_to_tampering(db, 5);
        conn.batch_execute("DELETE FROM audit_events WHERE seq IN (3, 5)").unwrap();
        let problems = audit::verify(&mut conn, &CIPHER).unwrap().problems;
        assert!(problems.iter().any(|p| p.seq == 4 && p.problem.contains("sequence gap")), "{problems:?}");
        assert!(problems.iter().any(|p| p.problem.contains("cut off")), "{problems:?}");
    }

    fn concurrent_appends_keep_one_unbroken_chain(db) {
        let t = TenantId::new();
        std::thread::scope(|scope| {
            for worker in 0..4 {
                scope.spawn(move || {
                    let mut conn = db.conn();
                    for i in 0..15 {
                        audit::append(&mut conn, &CIPHER, now(), t, event(&format!("w{worker}.{i}"))).unwrap();
                    }
                });
            }
        });
        let mut conn = db.conn();
        let report = audit::verify(&mut conn, &CIPHER).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.events, 60);
    }

    fn a_chain_edited_and_rehashed_without_the_key_fails_verification(db) {
        let (mut conn, t) = chain_open_to_tampering(db, 4);
        // Edit event 2, then re-hash it and everything after, and move the head.
        conn.batch_execute(&format!(
            "UPDATE audit_events SET outcome = 'failure' WHERE tenant_id = '{t}' AND seq = 2"
        ))
        .unwrap();
        let first = audit::list(&mut conn, t, &PageRequest::first(10)).unwrap().items[0]
            .hash
            .clone();
        let prev = rehash_unkeyed(&mut conn, t, 2..=4, first);
        conn.batch_execute(&format!(
            "UPDATE audit_heads SET last_hash = '{prev}' WHERE tenant_id = '{t}'"
        ))
        .unwrap();

        let problems = audit::verify(&mut conn, &CIPHER).unwrap().problems;
        assert!(
            problems.iter().any(|p| p.seq == 2 && p.problem.contains("keyed hash")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.problem.contains("head does not match its MAC")),
            "{problems:?}"
        );
    }

    fn a_dropped_tail_with_the_head_moved_back_fails_verification(db) {
        let mut conn = db.conn();
        let t = TenantId::new();
        append_events(&mut conn, t, 5);
        let third = audit::list(&mut conn, t, &PageRequest::first(10)).unwrap().items[2]
            .hash
            .clone();
        drop_append_only_guard(db, &mut conn);
        conn.batch_execute(&format!(
            "DELETE FROM audit_events WHERE tenant_id = '{t}' AND seq > 3; \
             UPDATE audit_heads SET last_seq = 3, last_hash = '{third}' WHERE tenant_id = '{t}'"
        ))
        .unwrap();
        let problems = audit::verify(&mut conn, &CIPHER).unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].problem.contains("head does not match its MAC"), "{problems:?}");
    }

    fn a_chain_cannot_be_checked_with_other_keys_or_without_its_key(db) {
        let mut conn = db.conn();
        let t = TenantId::new();
        audit::append(&mut conn, &CIPHER, now(), t, event("e")).unwrap();
        let other = gatehouse_identity_store::testing::test_cipher();
        let problems = audit::verify(&mut conn, &other).unwrap().problems;
        assert!(problems.iter().any(|p| p.problem.contains("does not open")), "{problems:?}");

        conn.batch_execute(&format!(
            "UPDATE audit_heads SET sealed_key = NULL WHERE tenant_id = '{t}'"
        ))
        .unwrap();
        let problems = audit::verify(&mut conn, &CIPHER).unwrap().problems;
        assert!(problems.iter().any(|p| p.problem.contains("has no key")), "{problems:?}");
    }

    fn an_unkeyed_chain_from_before_keying_still_verifies_and_is_keyed_on(db) {
        // Rewrite the chain as an older release wrote it: plain SHA-256, no key.
        let (mut conn, t) = chain_open_to_tampering(db, 3);
        let prev = rehash_unkeyed(&mut conn, t, 1..=3, audit::GENESIS_HASH.to_owned());
        conn.batch_execute(&format!(
            "UPDATE audit_heads SET last_hash = '{prev}', sealed_key = NULL, \
             keyed_from_seq = NULL, head_mac = NULL WHERE tenant_id = '{t}'"
        ))
        .unwrap();
        // The next append keys the chain from event 4 on.
        audit::append(&mut conn, &CIPHER, now(), t, event("e.3")).unwrap();
        let report = audit::verify(&mut conn, &CIPHER).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.events, 4);

        // Rewriting the unkeyed part now breaks the first keyed event's link.
        conn.batch_execute(&format!(
            "UPDATE audit_events SET action = 'forged' WHERE tenant_id = '{t}' AND seq = 1"
        ))
        .unwrap();
        rehash_unkeyed(&mut conn, t, 1..=3, audit::GENESIS_HASH.to_owned());
        let problems = audit::verify(&mut conn, &CIPHER).unwrap().problems;
        assert!(problems.iter().any(|p| p.seq == 4 && p.problem.contains("link broken")), "{problems:?}");
    }
}
