use diesel::connection::SimpleConnection;
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::audit::{self, NewAuditEvent, Outcome};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::{AnyConnection, Backend, PageRequest};

use crate::now;

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

gatehouse_identity_store::backend_tests! {
    fn events_form_a_verifiable_chain_per_tenant(db) {
        let mut conn = db.conn();
        let (a, b) = (TenantId::new(), TenantId::new());
        for i in 0..3 {
            audit::append(&mut conn, now(), a, event(&format!("a.{i}"))).unwrap();
            audit::append(&mut conn, now(), b, event(&format!("b.{i}"))).unwrap();
        }
        let page = audit::list(&mut conn, a, &PageRequest::first(2)).unwrap();
        assert_eq!(page.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(page.items[1].prev_hash, page.items[0].hash);
        assert_eq!(page.items[0].prev_hash, audit::GENESIS_HASH);
        let rest = audit::list(&mut conn, a, &PageRequest::after(page.next_cursor.unwrap(), 2)).unwrap();
        assert_eq!(rest.items[0].action, "a.2");

        let report = audit::verify(&mut conn).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!((report.tenants, report.events), (2, 6));
    }

    fn the_database_refuses_to_change_or_delete_audit_events(db) {
        let mut conn = db.conn();
        audit::append(&mut conn, now(), TenantId::new(), event("x")).unwrap();
        assert!(conn.batch_execute("UPDATE audit_events SET action = 'y'").is_err());
        assert!(conn.batch_execute("DELETE FROM audit_events").is_err());
    }

    fn verify_reports_an_altered_event(db) {
        let mut conn = db.conn();
        let t = TenantId::new();
        for i in 0..4 {
            audit::append(&mut conn, now(), t, event(&format!("e.{i}"))).unwrap();
        }
        drop_append_only_guard(db, &mut conn);
        conn.batch_execute("UPDATE audit_events SET outcome = 'failure' WHERE seq = 2").unwrap();
        let report = audit::verify(&mut conn).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].seq, 2);
        assert!(report.problems[0].problem.contains("altered"));
    }

    fn verify_reports_a_removed_event_and_a_cut_tail(db) {
        let mut conn = db.conn();
        let t = TenantId::new();
        for i in 0..5 {
            audit::append(&mut conn, now(), t, event(&format!("e.{i}"))).unwrap();
        }
        drop_append_only_guard(db, &mut conn);
        conn.batch_execute("DELETE FROM audit_events WHERE seq IN (3, 5)").unwrap();
        let problems = audit::verify(&mut conn).unwrap().problems;
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
                        audit::append(&mut conn, now(), t, event(&format!("w{worker}.{i}"))).unwrap();
                    }
                });
            }
        });
        let mut conn = db.conn();
        let report = audit::verify(&mut conn).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.events, 60);
    }
}
