#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::{ManualClock, SharedClock};
use gatehouse_identity_store::decision_log::NewDecision;
use serde_json::{Value, json};

use super::*;

#[derive(Debug, Default)]
struct Memory {
    sets: Mutex<HashMap<TenantId, Vec<String>>>,
    users: Mutex<HashMap<String, UserFacts>>,
    log: Mutex<Vec<NewDecision>>,
    version_reads: Mutex<usize>,
    user_reads: Mutex<usize>,
}

impl PolicySource for Memory {
    fn latest_version(&self, tenant: TenantId) -> Result<Option<i64>, ConsentError> {
        *self.version_reads.lock().unwrap() += 1;
        Ok(self
            .sets
            .lock()
            .unwrap()
            .get(&tenant)
            .map(|v| v.len() as i64))
    }
    fn latest(&self, tenant: TenantId) -> Result<Option<StoredPolicies>, ConsentError> {
        Ok(self.sets.lock().unwrap().get(&tenant).and_then(|v| {
            v.last().map(|text| StoredPolicies {
                version: v.len() as i64,
                text: text.clone(),
            })
        }))
    }
    fn save(
        &self,
        tenant: TenantId,
        _now: DateTime<Utc>,
        text: &str,
        _by: &str,
    ) -> Result<i64, ConsentError> {
        let mut sets = self.sets.lock().unwrap();
        let versions = sets.entry(tenant).or_default();
        versions.push(text.to_owned());
        Ok(versions.len() as i64)
    }
}

impl SubjectFacts for Memory {
    fn user(
        &self,
        _tenant: TenantId,
        id: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<UserFacts>, ConsentError> {
        *self.user_reads.lock().unwrap() += 1;
        Ok(self.users.lock().unwrap().get(id).cloned())
    }
}

impl DecisionSink for Memory {
    fn write(&self, batch: &[NewDecision]) -> Result<usize, ConsentError> {
        self.log.lock().unwrap().extend_from_slice(batch);
        Ok(batch.len())
    }
}

fn alice() -> UserFacts {
    UserFacts {
        id: "alice".into(),
        user_name: "alice".into(),
        active: true,
        email_verified: true,
        roles: vec!["exporter".into()],
        groups: vec!["Sales".into()],
        consents: vec!["crm:marketing".into()],
        attributes: vec![("department".into(), "sales".into())],
    }
}

fn setup() -> (Pdp, Arc<Memory>, TenantId) {
    let memory = Arc::new(Memory::default());
    memory.users.lock().unwrap().insert("alice".into(), alice());
    let clock: SharedClock = Arc::new(ManualClock::fixed());
    let pdp = Pdp::with_parts(
        clock,
        memory.clone(),
        memory.clone(),
        memory.clone(),
        PdpConfig {
            version_check: Duration::from_secs(3600),
            ..PdpConfig::default()
        },
    )
    .unwrap();
    (pdp, memory, TenantId::new())
}

fn request(value: serde_json::Value) -> EvaluationRequest {
    EvaluationRequest::from_json(value.to_string().as_bytes()).unwrap()
}

fn ask(action: &str, owner: &str, context: serde_json::Value) -> EvaluationRequest {
    request(json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": action},
        "resource": {"type": "document", "id": "d1", "properties": {"owner": owner}},
        "context": context,
    }))
}

#[test]
fn the_shipped_schema_and_default_set_compile() {
    let schema = policies::schema().unwrap();
    let set = policies::compile(&schema, DEFAULT_POLICIES).unwrap();
    assert!(
        set.policy(&cedar_policy::PolicyId::new("consent-required"))
            .is_some(),
        "@id names policies"
    );
}

#[test]
fn permit_needs_a_policy_and_forbid_overrides_permit() {
    let (pdp, _, tenant) = setup();
    pdp.save_policies(
        tenant,
        r#"
        @id("sales-read") permit (principal in Gatehouse::Group::"Sales", action == Gatehouse::Action::"read", resource);
        @id("everyone-list") permit (principal, action == Gatehouse::Action::"list", resource);
        @id("no-secret-lists") @reason("classified")
        forbid (principal, action == Gatehouse::Action::"list", resource) when { resource.hasTag("secret") };
        "#,
        "test",
    )
    .unwrap();
    let allowed = pdp
        .evaluate(tenant, "pep", &ask("read", "bob", json!({})), None)
        .unwrap();
    assert!(allowed.allowed);
    assert_eq!(allowed.policies, vec!["sales-read"]);
    assert_eq!(allowed.to_authzen(), json!({"decision": true}));

    let none = pdp
        .evaluate(tenant, "pep", &ask("update", "bob", json!({})), None)
        .unwrap();
    assert!(!none.allowed, "default deny");
    assert_eq!(none.reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
    assert!(none.policies.is_empty());

    let secret = request(json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "list"},
        "resource": {"type": "folder", "id": "f", "properties": {"secret": true}},
    }));
    let denied = pdp.evaluate(tenant, "pep", &secret, None).unwrap();
    assert!(!denied.allowed, "forbid must override the permit");
    assert_eq!(denied.reason.as_deref(), Some("classified"));
    assert_eq!(denied.policies, vec!["no-secret-lists"]);
    assert_eq!(denied.policy_version, Some(1));
}

/// The `ip(...)` context values are kept per address: each address must still give
/// its own answer, whichever was asked before.
#[test]
fn network_rules_see_each_address_whatever_came_before() {
    let (pdp, _, tenant) = setup();
    pdp.save_policies(
        tenant,
        r#"
        @id("all") permit (principal, action, resource);
        @id("office-only") @reason("outside_office")
        forbid (principal, action, resource) unless { context has ip && context.ip.isInRange(ip("10.0.0.0/8")) };
        "#,
        "test",
    )
    .unwrap();
    let from = |address: &str| {
        pdp.evaluate(
            tenant,
            "pep",
            &ask("read", "bob", json!({"ip": address})),
            None,
        )
        .unwrap()
        .allowed
    };
    let answers: Vec<bool> = [
        "10.1.2.3",
        "192.0.2.7",
        "10.1.2.3",
        "192.0.2.7",
        "10.200.0.1",
        "::1",
    ]
    .into_iter()
    .map(from)
    .collect();
    assert_eq!(answers, vec![true, false, true, false, true, false]);
    let bad = pdp.evaluate(
        tenant,
        "pep",
        &ask("read", "bob", json!({"ip": "10.1.2"})),
        None,
    );
    assert!(matches!(bad, Err(ConsentError::Invalid(_))), "{bad:?}");
}

#[test]
fn an_invalid_policy_set_is_refused_and_the_previous_one_keeps_serving() {
    let (pdp, memory, tenant) = setup();
    pdp.save_policies(
        tenant,
        r#"@id("all") permit (principal, action, resource);"#,
        "t",
    )
    .unwrap();
    let error = pdp
        .save_policies(
            tenant,
            r#"permit (principal, action, resource) when { principal.salary > 10 };"#,
            "t",
        )
        .unwrap_err();
    let ConsentError::Policy(message) = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("salary"), "{message}");
    let error = pdp
        .save_policies(tenant, "permit (principal, action, resource", "t")
        .unwrap_err();
    assert!(matches!(error, ConsentError::Policy(m) if m.contains("parse error")));
    let error = pdp
        .save_policies(tenant, r#"@id("x") permit (principal, action, resource); @id("x") forbid (principal, action, resource);"#, "t")
        .unwrap_err();
    assert!(matches!(error, ConsentError::Policy(m) if m.contains("`x`")));
    assert_eq!(
        memory.sets.lock().unwrap()[&tenant].len(),
        1,
        "a refused set was stored"
    );
    let still = pdp
        .evaluate(tenant, "pep", &ask("manage", "bob", json!({})), None)
        .unwrap();
    assert!(still.allowed);
    assert_eq!(still.policies, vec!["all"]);
}

#[test]
fn a_new_version_serves_after_the_version_check() {
    let memory = Arc::new(Memory::default());
    memory.users.lock().unwrap().insert("alice".into(), alice());
    let pdp = Pdp::with_parts(
        Arc::new(ManualClock::fixed()),
        memory.clone(),
        memory.clone(),
        memory.clone(),
        PdpConfig {
            version_check: Duration::ZERO,
            ..PdpConfig::default()
        },
    )
    .unwrap();
    let tenant = TenantId::new();
    assert_eq!(
        pdp.serving_version(tenant).unwrap(),
        None,
        "the default set serves"
    );
    // Another node saved a set: only the store knows.
    memory
        .save(
            tenant,
            Utc::now(),
            "forbid (principal, action, resource);",
            "other",
        )
        .unwrap();
    assert_eq!(pdp.serving_version(tenant).unwrap(), Some(1));
    let decision = pdp
        .evaluate(tenant, "pep", &ask("read", "alice", json!({})), None)
        .unwrap();
    assert_eq!(decision.reason.as_deref(), Some(reason::DENIED_BY_POLICY));
}

#[test]
fn the_version_is_not_read_on_every_request() {
    let (pdp, memory, tenant) = setup();
    for _ in 0..10 {
        pdp.evaluate(tenant, "pep", &ask("read", "alice", json!({})), None)
            .unwrap();
    }
    assert_eq!(*memory.version_reads.lock().unwrap(), 0);
}

#[test]
fn step_up_denials_say_which_acr_to_reach() {
    let (pdp, _, tenant) = setup();
    let low = pdp
        .evaluate(
            tenant,
            "pep",
            &ask("export", "alice", json!({"acr": "urn:gatehouse:aal1"})),
            None,
        )
        .unwrap();
    assert!(!low.allowed);
    assert_eq!(
        low.reason.as_deref(),
        Some(reason::INSUFFICIENT_AUTHENTICATION)
    );
    assert_eq!(low.acr_values.as_deref(), Some("urn:gatehouse:aal2"));
    assert_eq!(
        low.to_authzen(),
        json!({"decision": false, "context": {"reason": "insufficient_authentication", "acr_values": "urn:gatehouse:aal2"}})
    );
    let missing = pdp
        .evaluate(tenant, "pep", &ask("export", "alice", json!({})), None)
        .unwrap();
    assert_eq!(
        missing.reason.as_deref(),
        Some(reason::INSUFFICIENT_AUTHENTICATION),
        "no acr is level 0"
    );
    let high = pdp
        .evaluate(
            tenant,
            "pep",
            &ask("export", "alice", json!({"acr": "urn:gatehouse:aal2"})),
            None,
        )
        .unwrap();
    assert!(high.allowed, "{high:?}");
    assert_eq!(high.policies, vec!["owner-full-access"]);
}

#[test]
fn a_missing_consent_is_consent_withdrawn() {
    let (pdp, _, tenant) = setup();
    let granted = pdp
        .evaluate(
            tenant,
            "crm",
            &ask("read", "bob", json!({"purpose": "marketing"})),
            None,
        )
        .unwrap();
    assert!(granted.allowed, "{granted:?}");
    let other_client = pdp
        .evaluate(
            tenant,
            "shop",
            &ask("read", "bob", json!({"purpose": "marketing"})),
            None,
        )
        .unwrap();
    assert!(!other_client.allowed);
    assert_eq!(
        other_client.reason.as_deref(),
        Some(reason::CONSENT_WITHDRAWN)
    );
    assert_eq!(other_client.policies, vec!["consent-required"]);
    let named = pdp
        .evaluate(
            tenant,
            "shop",
            &ask(
                "read",
                "bob",
                json!({"purpose": "marketing", "client_id": "crm"}),
            ),
            None,
        )
        .unwrap();
    assert!(named.allowed, "context.client_id names the client");
    // Consent outranks step-up: re-authenticating would not help.
    let both = pdp
        .evaluate(
            tenant,
            "crm",
            &ask("export", "alice", json!({"purpose": "analytics"})),
            None,
        )
        .unwrap();
    assert_eq!(both.reason.as_deref(), Some(reason::CONSENT_WITHDRAWN));
    assert_eq!(both.acr_values, None);
}

#[test]
fn high_risk_is_risk_too_high_and_unknown_subjects_are_denied() {
    let (pdp, _, tenant) = setup();
    let risky = pdp
        .evaluate(
            tenant,
            "pep",
            &ask(
                "read",
                "alice",
                json!({"risk_score": 95, "ip": "10.0.0.1", "device": "managed"}),
            ),
            None,
        )
        .unwrap();
    assert_eq!(risky.reason.as_deref(), Some(reason::RISK_TOO_HIGH));
    let unknown = request(json!({
        "subject": {"type": "user", "id": "nobody"},
        "action": {"name": "read"},
        "resource": {"type": "document", "id": "d1"},
    }));
    let decision = pdp.evaluate(tenant, "pep", &unknown, None).unwrap();
    assert_eq!(decision.reason.as_deref(), Some(reason::UNKNOWN_SUBJECT));
}

#[test]
fn malformed_requests_are_invalid() {
    let (pdp, _, tenant) = setup();
    for body in [
        json!({"subject": {"type": "user"}, "action": {"name": "read"}, "resource": {"type": "d", "id": "1"}}),
        json!({"subject": {"type": "user", "id": "alice"}, "resource": {"type": "d", "id": "1"}}),
        json!({"subject": {"type": "user", "id": ""}, "action": {"name": "read"}, "resource": {"type": "d", "id": "1"}}),
        json!({"subject": {"type": "user", "id": 7}, "action": {"name": "read"}, "resource": {"type": "d", "id": "1"}}),
    ] {
        assert!(
            matches!(
                EvaluationRequest::from_json(body.to_string().as_bytes()),
                Err(ConsentError::Invalid(_))
            ),
            "{body}"
        );
    }
    assert!(EvaluationRequest::from_json(b"{not json").is_err());
    for context in [
        json!({"acr": "gold"}),
        json!({"risk_score": "high"}),
        json!({"ip": "nope"}),
        json!({"acr": 9}),
    ] {
        let result = pdp.evaluate(tenant, "pep", &ask("read", "alice", context.clone()), None);
        assert!(
            matches!(result, Err(ConsentError::Invalid(_))),
            "{context}: {result:?}"
        );
    }
    let machine = request(json!({
        "subject": {"type": "service", "id": "x"},
        "action": {"name": "read"},
        "resource": {"type": "d", "id": "1"},
    }));
    assert!(matches!(
        pdp.evaluate(tenant, "pep", &machine, None),
        Err(ConsentError::Invalid(_))
    ));
}

fn batch(semantic: &str) -> EvaluationsRequest {
    EvaluationsRequest::from_json(
        json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "update"},
            "options": {"evaluations_semantic": semantic},
            "evaluations": [
                {"resource": {"type": "doc", "id": "1", "properties": {"owner": "alice"}}},
                {"resource": {"type": "doc", "id": "2", "properties": {"owner": "bob"}}},
                {"resource": {"type": "doc", "id": "3", "properties": {"owner": "alice"}}},
                {"action": {"name": "read"}, "resource": {"type": "doc", "id": "4"}}
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn decisions(outcome: &BatchOutcome) -> Vec<bool> {
    let BatchOutcome::Many(entries) = outcome else {
        panic!("{outcome:?}")
    };
    entries
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect()
}

#[test]
fn batches_honour_defaults_and_each_semantic() {
    let (pdp, memory, tenant) = setup();
    let all = pdp
        .evaluate_batch(tenant, "pep", &batch("execute_all"), Some("r1"))
        .unwrap();
    assert_eq!(decisions(&all), vec![true, false, true, true]);
    assert_eq!(
        *memory.user_reads.lock().unwrap(),
        1,
        "a batch about one subject reads it once"
    );
    let deny_first = pdp
        .evaluate_batch(tenant, "pep", &batch("deny_on_first_deny"), None)
        .unwrap();
    assert_eq!(decisions(&deny_first), vec![true, false]);
    let permit_first = pdp
        .evaluate_batch(tenant, "pep", &batch("permit_on_first_permit"), None)
        .unwrap();
    assert_eq!(decisions(&permit_first), vec![true]);
    assert!(
        EvaluationsRequest::from_json(br#"{"options": {"evaluations_semantic": "sometimes"}}"#)
            .is_err()
    );

    let single = EvaluationsRequest::from_json(
        json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"}, "resource": {"type": "d", "id": "1"}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        pdp.evaluate_batch(tenant, "pep", &single, None)
            .unwrap()
            .to_authzen(),
        json!({"decision": true}),
        "no evaluations: a single decision"
    );
    let incomplete = EvaluationsRequest::from_json(
        json!({"subject": {"type": "user", "id": "alice"}, "evaluations": [{"action": {"name": "read"}}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let bad_context = EvaluationsRequest::from_json(
        json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
               "evaluations": [{"resource": {"type": "d", "id": "1"}, "context": {"acr": "gold"}},
                               {"resource": {"type": "d", "id": "2"}}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let entries = pdp
        .evaluate_batch(tenant, "pep", &bad_context, None)
        .unwrap()
        .to_authzen();
    assert_eq!(
        entries["evaluations"][0]["context"]["reason"],
        json!("invalid_request")
    );
    assert_eq!(
        entries["evaluations"][1],
        json!({"decision": true}),
        "the batch goes on"
    );
    let outcome = pdp
        .evaluate_batch(tenant, "pep", &incomplete, None)
        .unwrap()
        .to_authzen();
    assert_eq!(outcome["evaluations"][0]["decision"], json!(false));
    assert_eq!(
        outcome["evaluations"][0]["context"]["error"]["status"],
        json!(400)
    );

    pdp.flush_log();
    let log = memory.log.lock().unwrap();
    assert_eq!(
        log.len(),
        4 + 2 + 1 + 1 + 1,
        "one record per evaluated entry"
    );
    assert_eq!(log[0].request_id.as_deref(), Some("r1"));
    let logged: Value = serde_json::from_str(&log[0].request).unwrap();
    assert_eq!(logged["caller"], json!("pep"));
    assert_eq!(logged["subject"]["type"], json!("user"));
    assert_eq!(log[1].reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
    assert_eq!(pdp.dropped_log_records(), 0);
}

#[test]
fn a_full_log_queue_drops_instead_of_blocking() {
    #[derive(Debug)]
    struct Slow;
    impl DecisionSink for Slow {
        fn write(&self, batch: &[NewDecision]) -> Result<usize, ConsentError> {
            std::thread::sleep(Duration::from_millis(200));
            Ok(batch.len())
        }
    }
    let memory = Arc::new(Memory::default());
    memory.users.lock().unwrap().insert("alice".into(), alice());
    let pdp = Pdp::with_parts(
        Arc::new(ManualClock::fixed()),
        memory.clone(),
        memory,
        Arc::new(Slow),
        PdpConfig {
            log_capacity: 2,
            log_batch: 1,
            ..PdpConfig::default()
        },
    )
    .unwrap();
    let tenant = TenantId::new();
    let started = std::time::Instant::now();
    for _ in 0..20 {
        pdp.evaluate(tenant, "pep", &ask("read", "alice", json!({})), None)
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "evaluations waited for the log"
    );
    assert!(pdp.dropped_log_records() > 0);
}

// ---------------------------------------------------------------------------
// Subject facts from the store, one by one and in batches

mod store_facts {
    use gatehouse_core::Clock;
    use gatehouse_identity_store::consent_records::{self, NewGrant};
    use gatehouse_identity_store::groups::{self, GroupData};
    use gatehouse_identity_store::purposes::{self, LegalBasis, PurposeData};
    use gatehouse_identity_store::roles::{self, RoleData};
    use gatehouse_identity_store::tenants::{self, TenantData};
    use gatehouse_identity_store::users::{self, Email, UserData};

    use super::*;

    gatehouse_identity_store::backend_tests! {
        fn a_batched_read_gives_what_reads_one_by_one_give(db) {
            let now = ManualClock::fixed().now();
            let mut conn = db.conn();
            let tenant = tenants::create(&mut conn, now, TenantData { slug: "acme".into(), display_name: "Acme".into(), ..TenantData::default() }).unwrap().id;
            let mut alice = UserData::new("alice");
            alice.emails = vec![Email { value: "alice@example.com".into(), kind: None, primary: true, verified: true }];
            alice.custom_attributes.insert("department".into(), json!("sales"));
            let alice = users::create(&mut conn, now, tenant, alice).unwrap().id;
            let bob = users::create(&mut conn, now, tenant, UserData::new("bob")).unwrap().id;
            let admin = roles::create(&mut conn, now, tenant, RoleData { name: "admin".into(), description: None }).unwrap();
            roles::assign(&mut conn, now, tenant, admin.id, alice).unwrap();
            let staff = groups::create(&mut conn, now, tenant, GroupData { display_name: "Staff".into(), external_id: None }).unwrap();
            groups::add_member(&mut conn, now, tenant, staff.id, bob).unwrap();
            purposes::create(&mut conn, now, tenant, PurposeData { slug: "marketing".into(), name: "Marketing".into(), description: "News.".into(), scopes: vec!["email".into()], legal_basis: LegalBasis::Consent }).unwrap();
            consent_records::append_grant(&mut conn, now, tenant, NewGrant { user: alice, client_id: "crm", purpose: "marketing", version: 1, expires_at: None, channel: "api" }).unwrap();
            drop(conn);

            let facts = StoreFacts::new(db.pool().clone());
            // As PEPs write them: any case, a made-up id, something not a UUID.
            let alice_loud = alice.to_string().to_uppercase();
            let bob_id = bob.to_string();
            let stranger = gatehouse_core::ids::UserId::new().to_string();
            let asked = [alice_loud.as_str(), bob_id.as_str(), stranger.as_str(), "not-a-uuid"];
            let batch = facts.users(tenant, &asked, now).unwrap();
            assert_eq!(batch.len(), 2, "{batch:?}");
            for id in asked {
                assert_eq!(batch.get(id), facts.user(tenant, id, now).unwrap().as_ref(), "{id}");
            }
            let alice_facts = &batch[&alice_loud];
            assert_eq!(alice_facts.roles, ["admin"]);
            assert_eq!(alice_facts.consents, ["crm:marketing"]);
            assert_eq!(alice_facts.attributes, [("department".to_owned(), "sales".to_owned())]);
            assert!(alice_facts.email_verified);
            assert_eq!(batch[&bob_id].groups, ["Staff"]);
        }
    }
}
