use chrono::Duration;
use gatehouse_identity_store::decision_log::{self, NewDecision};
use gatehouse_identity_store::policy_sets;
use serde_json::json;

use crate::{now, tenant, tenant_and_other};

gatehouse_identity_store::backend_tests! {
    fn policy_sets_are_versioned_per_tenant(db) {
        let mut conn = db.conn();
        let conn = &mut conn;
        let now = now();
        let (t, other) = tenant_and_other(conn, "pol");
        assert_eq!(policy_sets::latest_version(conn, t).unwrap(), None);
        assert!(policy_sets::latest(conn, t).unwrap().is_none());

        let first = policy_sets::insert(conn, now, t, "permit(principal, action, resource);", "cli").unwrap();
        assert_eq!(first.version, 1);
        let second = policy_sets::insert(conn, now + Duration::seconds(1), t, "forbid(principal, action, resource);", "admin:x").unwrap();
        assert_eq!(second.version, 2);
        policy_sets::insert(conn, now, other, "// other", "cli").unwrap();

        assert_eq!(policy_sets::latest_version(conn, t).unwrap(), Some(2));
        let latest = policy_sets::latest(conn, t).unwrap().unwrap();
        assert_eq!(latest, second);
        assert_eq!(policy_sets::get(conn, t, 1).unwrap(), first);
        assert!(policy_sets::get(conn, t, 3).is_err());
        let versions = policy_sets::list(conn, t).unwrap();
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(versions[0].created_by, "admin:x");
        assert_eq!(policy_sets::latest_version(conn, other).unwrap(), Some(1), "versions are per tenant");
        assert!(policy_sets::insert(conn, now, t, "x", " ").is_err(), "anonymous save");
    }

    fn decisions_are_logged_in_batches(db) {
        let mut conn = db.conn();
        let conn = &mut conn;
        let now = now();
        let (t, other) = tenant_and_other(conn, "dec");
        let decision = |at: i64, allowed: bool, tenant| NewDecision {
            tenant_id: tenant,
            at: now + Duration::seconds(at),
            request: json!({"subject": {"type": "user", "id": "u1"}, "action": {"name": "read"}})
                .to_string(),
            decision: allowed,
            reason: (!allowed).then(|| "consent_withdrawn".to_owned()),
            policies: vec!["consent".to_owned()],
            request_id: Some(format!("req-{at}")),
            unknown_keys: if at == 1 { vec!["context.consent".to_owned()] } else { vec![] },
            skipped: None,
        };
        assert_eq!(decision_log::append(conn, &[]).unwrap(), 0);
        let batch = vec![decision(0, true, t), decision(1, false, t), decision(2, true, other)];
        assert_eq!(decision_log::append(conn, &batch).unwrap(), 3);

        let recent = decision_log::recent(conn, t, 10).unwrap();
        assert_eq!(recent.len(), 2, "another tenant's decision is listed");
        assert_eq!(recent[0].request_id.as_deref(), Some("req-1"), "newest first");
        assert!(!recent[0].decision);
        assert_eq!(recent[0].reason.as_deref(), Some("consent_withdrawn"));
        assert_eq!(recent[0].policies, vec!["consent".to_owned()]);
        assert_eq!(recent[0].request.to_string(), batch[1].request);
        assert_eq!(recent[0].at, batch[1].at);
        assert_eq!(recent[0].unknown_keys, ["context.consent"]);
        assert!(recent[1].unknown_keys.is_empty());
        assert!(!recent[0].is_gap());
        assert_eq!(decision_log::recent(conn, t, 1).unwrap().len(), 1);

        assert_eq!(decision_log::prune(conn, now + Duration::seconds(2)).unwrap(), 2);
        assert!(decision_log::recent(conn, t, 10).unwrap().is_empty());
        assert_eq!(decision_log::recent(conn, other, 10).unwrap().len(), 1);

        // A batch larger than one multi-row INSERT: every row lands, in order.
        let bulk = tenant(conn, "dec-bulk");
        let many: Vec<_> = (0..600).map(|i| decision(10 + i, i % 3 != 0, bulk)).collect();
        assert_eq!(decision_log::append(conn, &many).unwrap(), 600);
        let listed = decision_log::recent(conn, bulk, 1000).unwrap();
        assert_eq!(listed.len(), 600);
        assert_eq!(listed[0].request_id.as_deref(), Some("req-609"));
        assert_eq!(listed[599].request_id.as_deref(), Some("req-10"));
        assert_eq!(listed.iter().filter(|d| !d.decision).count(), 200);

        // A gap record stands for decisions that were not logged, with their count.
        let gaps = tenant(conn, "dec-gap");
        let gap = NewDecision::gap(gaps, now, now + Duration::seconds(3), 4711);
        assert_eq!(decision_log::append(conn, &[gap, decision(5, true, gaps)]).unwrap(), 2);
        let listed = decision_log::recent(conn, gaps, 10).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(!listed[0].is_gap());
        assert!(listed[1].is_gap());
        assert_eq!(listed[1].skipped, Some(4711));
        assert_eq!(listed[1].reason.as_deref(), Some(decision_log::GAP_REASON));
        assert_eq!(listed[1].request["skipped"], json!(4711));
    }
}
