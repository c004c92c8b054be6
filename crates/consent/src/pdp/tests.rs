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
        idps: vec!["partner".into()],
        partners: vec!["Partner Corp".into()],
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

/// `pdp`'s decision for `client` on [`ask`], logged without a request id.
fn decide(
    pdp: &Pdp,
    tenant: TenantId,
    client: &str,
    action: &str,
    owner: &str,
    context: Value,
) -> Decision {
    pdp.evaluate(tenant, client, &ask(action, owner, context), None)
        .unwrap()
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
    let allowed = decide(&pdp, tenant, "pep", "read", "bob", json!({}));
    assert!(allowed.allowed);
    assert_eq!(allowed.policies, vec!["sales-read"]);
    assert_eq!(allowed.to_authzen(), json!({"decision": true}));

    let none = decide(&pdp, tenant, "pep", "update", "bob", json!({}));
    assert!(!none.allowed, "default deny");
    assert_eq!(none.reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
    assert!(none.policies.is_empty());

    let secret = request(json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "list"},
        "resource": {"type": "folder", "id": "f", "properties": {"secret": "yes"}},
    }));
    let denied = pdp.evaluate(tenant, "pep", &secret, None).unwrap();
    assert!(!denied.allowed, "forbid must override the permit");
    assert_eq!(denied.reason.as_deref(), Some("classified"));
    assert_eq!(denied.policies, vec!["no-secret-lists"]);
    assert_eq!(denied.policy_version, Some(1));
}

/// A policy can require that the user came through a partner: the connections
/// (federation) the user has a linked identity at are `principal.idps`.
#[test]
fn policies_see_the_partners_identity_providers_of_the_user() {
    let (pdp, memory, tenant) = setup();
    pdp.save_policies(
        tenant,
        r#"@id("partner-users") permit (principal, action == Gatehouse::Action::"read", resource)
           when { principal.idps.contains("partner") && principal.partners.contains("Partner Corp") };"#,
        "test",
    )
    .unwrap();
    assert!(decide(&pdp, tenant, "pep", "read", "bob", json!({})).allowed);
    let mut bob = alice();
    bob.id = "bob".into();
    bob.idps = vec![];
    memory.users.lock().unwrap().insert("bob".into(), bob);
    let unlinked = pdp
        .evaluate(
            tenant,
            "pep",
            &request(json!({
                "subject": {"type": "user", "id": "bob"},
                "action": {"name": "read"},
                "resource": {"type": "document", "id": "d1"},
            })),
            None,
        )
        .unwrap();
    assert!(!unlinked.allowed, "no partner identity, no permit");
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
    let from =
        |address: &str| decide(&pdp, tenant, "pep", "read", "bob", json!({"ip": address})).allowed;
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
    let still = decide(&pdp, tenant, "pep", "manage", "bob", json!({}));
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
    let decision = decide(&pdp, tenant, "pep", "read", "alice", json!({}));
    assert_eq!(decision.reason.as_deref(), Some(reason::DENIED_BY_POLICY));
}

#[test]
fn the_version_is_not_read_on_every_request() {
    let (pdp, memory, tenant) = setup();
    for _ in 0..10 {
        decide(&pdp, tenant, "pep", "read", "alice", json!({}));
    }
    assert_eq!(*memory.version_reads.lock().unwrap(), 0);
}

#[test]
fn step_up_denials_say_which_acr_to_reach() {
    let (pdp, _, tenant) = setup();
    let aal1 = json!({"acr": "urn:gatehouse:aal1"});
    let aal2 = json!({"acr": "urn:gatehouse:aal2"});
    let low = decide(&pdp, tenant, "pep", "export", "alice", aal1);
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
    let missing = decide(&pdp, tenant, "pep", "export", "alice", json!({}));
    assert_eq!(
        missing.reason.as_deref(),
        Some(reason::INSUFFICIENT_AUTHENTICATION),
        "no acr is level 0"
    );
    let high = decide(&pdp, tenant, "pep", "export", "alice", aal2);
    assert!(high.allowed, "{high:?}");
    assert_eq!(high.policies, vec!["owner-full-access"]);
}

#[test]
fn a_missing_consent_is_consent_withdrawn() {
    let (pdp, _, tenant) = setup();
    let marketing = json!({"purpose": "marketing"});
    let granted = decide(&pdp, tenant, "crm", "read", "bob", marketing.clone());
    assert!(granted.allowed, "{granted:?}");
    let other_client = decide(&pdp, tenant, "shop", "read", "bob", marketing);
    assert!(!other_client.allowed);
    assert_eq!(
        other_client.reason.as_deref(),
        Some(reason::CONSENT_WITHDRAWN)
    );
    assert_eq!(other_client.policies, vec!["consent-required"]);
    let for_crm = json!({"purpose": "marketing", "client_id": "crm"});
    let named = decide(&pdp, tenant, "shop", "read", "bob", for_crm);
    assert!(named.allowed, "context.client_id names the client");
    // Consent outranks step-up: re-authenticating would not help.
    let analytics = json!({"purpose": "analytics"});
    let both = decide(&pdp, tenant, "crm", "export", "alice", analytics);
    assert_eq!(both.reason.as_deref(), Some(reason::CONSENT_WITHDRAWN));
    assert_eq!(both.acr_values, None);
}

/// The default set governs `share` by a purpose: asked without one — or with the
/// member misspelt, which AuthZEN says to ignore — it is `purpose_missing`, ahead of
/// any other reason; with one, the consent decides. Actions no policy governs still
/// go without a purpose.
#[test]
fn a_purpose_governed_action_asked_without_a_purpose_is_purpose_missing() {
    let (pdp, _, tenant) = setup();
    let share = |context: Value| decide(&pdp, tenant, "crm", "share", "alice", context);
    for context in [
        json!({}),
        json!({"consent": "marketing"}),
        json!({"purpose": null}),
        json!({"risk_score": 95, "acr": 1}),
    ] {
        let missing = share(context.clone());
        assert!(!missing.allowed, "{context}");
        assert_eq!(
            missing.reason.as_deref(),
            Some(reason::PURPOSE_MISSING),
            "{context}"
        );
        assert!(
            missing
                .policies
                .contains(&"purpose-required-for-sharing".to_owned()),
            "{:?}",
            missing.policies
        );
        assert_eq!(
            missing.to_authzen(),
            json!({"decision": false, "context": {"reason": "purpose_missing"}})
        );
    }
    assert!(share(json!({"purpose": "marketing"})).allowed, "consented");
    assert_eq!(
        share(json!({"purpose": "analytics"})).reason.as_deref(),
        Some(reason::CONSENT_WITHDRAWN)
    );
    let read = decide(&pdp, tenant, "crm", "read", "bob", json!({}));
    assert!(read.allowed, "read is not governed by a purpose: {read:?}");

    // A tenant's own set says which actions a purpose governs.
    pdp.save_policies(
        tenant,
        r#"
        @id("all") permit (principal, action, resource);
        @id("purpose-for-reads") @reason("purpose_missing")
        forbid (principal, action == Gatehouse::Action::"read", resource) unless { context has consent };
        "#,
        "test",
    )
    .unwrap();
    let read = |context: Value| decide(&pdp, tenant, "crm", "read", "bob", context);
    assert_eq!(
        read(json!({"consent": "marketing"})).reason.as_deref(),
        Some(reason::PURPOSE_MISSING)
    );
    assert!(read(json!({"purpose": "marketing"})).allowed);
}

/// AuthZEN requests may carry members the PDP does not read; they are ignored, but
/// every record names them and the PDP counts them, so a PEP's typo shows up.
#[test]
fn members_the_pdp_does_not_read_are_logged_and_counted() {
    let (pdp, memory, tenant) = setup();
    let typo = request(json!({
        "subject": {"type": "user", "id": "alice", "properties": {"department": "sales"}},
        "action": {"name": "read", "properties": {"method": "GET"}},
        "resource": {"type": "document", "id": "d1", "properties": {"owner": "bob"}},
        "context": {"consent": "marketing", "acr": 2, "time": 0, "x-trace": "abc"},
    }));
    let decision = pdp.evaluate(tenant, "crm", &typo, Some("typo")).unwrap();
    assert!(
        decision.allowed,
        "unknown members are ignored: {decision:?}"
    );
    for context in [json!({"consent": "x"}), json!({"purpose": "marketing"})] {
        decide(&pdp, tenant, "crm", "read", "bob", context);
    }
    let typos_in_a_batch = EvaluationsRequest::from_json(
        json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
               "context": {"consent": "marketing"},
               "evaluations": [{"resource": {"type": "d", "id": "1"}},
                               {"resource": {"type": "d", "id": "2"}, "context": {"purpose": "marketing"}}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    pdp.evaluate_batch(tenant, "crm", &typos_in_a_batch, None)
        .unwrap();

    pdp.flush_log();
    let log = memory.log.lock().unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].request_id.as_deref(), Some("typo"));
    assert_eq!(
        log[0].unknown_keys,
        [
            "action.properties.method",
            "context.consent",
            "context.time",
            "context.x-trace",
            "subject.properties.department"
        ]
    );
    assert_eq!(log[1].unknown_keys, ["context.consent"]);
    assert!(log[2].unknown_keys.is_empty(), "every member known");
    assert_eq!(log[3].unknown_keys, ["context.consent"]);
    assert!(log[4].unknown_keys.is_empty(), "the entry's own context");
    drop(log);
    let seen: HashMap<String, u64> = pdp.unknown_keys_seen().into_iter().collect();
    assert_eq!(seen["context.consent"], 3);
    assert_eq!(seen["subject.properties.department"], 1);
    assert_eq!(seen.len(), 5);

    // A PEP sending ever new names cannot grow the table without bound.
    for index in 0..150 {
        let context = json!({ format!("k{index}"): 1 });
        decide(&pdp, tenant, "crm", "read", "bob", context);
    }
    let seen: HashMap<String, u64> = pdp.unknown_keys_seen().into_iter().collect();
    assert_eq!(seen.len(), 101);
    assert_eq!(seen[OTHER_UNKNOWN_KEYS], 55);
}

/// A member the PDP reads must have the schema's type: anything else is refused
/// with the member's name (a 400 over HTTP), never guessed at.
#[test]
fn values_of_the_wrong_type_are_refused_by_name() {
    let (pdp, _, tenant) = setup();
    let cases = [
        (json!({"acr": true}), "context.acr"),
        (json!({"auth_time": "yesterday"}), "context.auth_time"),
        (json!({"risk_score": 12.5}), "context.risk_score"),
        (json!({"ip": 10}), "context.ip"),
        (json!({"device": {"managed": true}}), "context.device"),
        (json!({"purpose": ["marketing"]}), "context.purpose"),
        (json!({"purpose": ""}), "context.purpose"),
        (
            json!({"purpose": "marketing", "client_id": 7}),
            "context.client_id",
        ),
    ];
    for (context, member) in cases {
        let refused = pdp.evaluate(tenant, "crm", &ask("read", "bob", context.clone()), None);
        assert!(
            matches!(&refused, Err(ConsentError::Invalid(message)) if message.contains(member)),
            "{context}: {refused:?}"
        );
    }
    for owner in [json!(42), json!(["bob"]), json!({"id": "bob"}), json!(true)] {
        let asked = request(json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "read"},
            "resource": {"type": "document", "id": "d1", "properties": {"owner": owner}},
        }));
        let refused = pdp.evaluate(tenant, "crm", &asked, None);
        assert!(
            matches!(&refused, Err(ConsentError::Invalid(message)) if message.contains("resource.properties.owner")),
            "{owner}: {refused:?}"
        );
    }
    let absent = request(json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "update"},
        "resource": {"type": "document", "id": "d1", "properties": {"owner": null}},
        "context": {"purpose": null, "risk_score": null},
    }));
    let decision = pdp.evaluate(tenant, "crm", &absent, None).unwrap();
    assert_eq!(
        decision.reason.as_deref(),
        Some(reason::ENTITLEMENT_MISSING),
        "null is absent"
    );
}

#[test]
fn high_risk_is_risk_too_high_and_unknown_subjects_are_denied() {
    let (pdp, _, tenant) = setup();
    let high_risk = json!({"risk_score": 95, "ip": "10.0.0.1", "device": "managed"});
    let risky = decide(&pdp, tenant, "pep", "read", "alice", high_risk);
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
    let stats = pdp.decision_log_stats();
    assert_eq!((stats.skipped, stats.failed, stats.waits), (0, 0, 0));
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
            let partner = gatehouse_identity_store::federation_connections::create(
                &mut conn,
                &gatehouse_identity_store::testing::test_cipher(),
                now,
                tenant,
                "partner",
                "oidc",
                gatehouse_identity_store::federation_connections::ConnectionData {
                    display_name: "Partner".into(),
                    logo_url: None,
                    enabled: true,
                    jit_provisioning: false,
                    trust_verified_email: false,
                    settings: json!({}),
                    mapping: json!({}),
                },
                None,
            )
            .unwrap();
            gatehouse_identity_store::federated_identities::link(&mut conn, now, tenant, partner.id, "sub-a", alice).unwrap();
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
            assert_eq!(alice_facts.idps, ["partner"]);
            assert!(!alice_facts.partners.is_empty(), "the partner behind the connection");
            assert!(batch[&bob_id].idps.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// The decision log on the store, with its queue full

mod full_decision_log {
    use std::collections::BTreeSet;
    use std::time::Instant;

    use gatehouse_core::events::EventBus;
    use gatehouse_identity_store::decision_log;
    use gatehouse_identity_store::tenants::{self, TenantData};
    use gatehouse_identity_store::testing::TestDb;
    use gatehouse_identity_store::users::{self, Email, UserData};

    use super::*;

    /// A PDP on `db` whose decision log writes through a pool of its own (so the
    /// test can starve the writer of connections while evaluations read the
    /// store), with a queue of 4 and batches of 2; and a verified user.
    fn pdp_on(
        db: &TestDb,
        log_db: &TestDb,
        overflow: LogOverflow,
        wait: Duration,
    ) -> (Pdp, TenantId, String) {
        let clock: SharedClock = Arc::new(ManualClock::fixed());
        let mut conn = db.conn();
        let now = clock.now();
        let tenant = tenants::create(
            &mut conn,
            now,
            TenantData {
                slug: "full".into(),
                display_name: "Full".into(),
                ..TenantData::default()
            },
        )
        .unwrap()
        .id;
        let mut alice = UserData::new("alice");
        alice.emails = vec![Email {
            value: "alice@example.com".into(),
            kind: None,
            primary: true,
            verified: true,
        }];
        let alice = users::create(&mut conn, now, tenant, alice)
            .unwrap()
            .id
            .to_string();
        drop(conn);
        let pdp = Pdp::with_parts(
            clock,
            Arc::new(StorePolicies::new(db.pool().clone())),
            Arc::new(StoreFacts::new(db.pool().clone())),
            Arc::new(StoreDecisionLog::new(log_db.pool().clone())),
            PdpConfig {
                version_check: Duration::from_secs(3600),
                log_capacity: 4,
                log_batch: 2,
                // Only a full batch or a flush writes: what the writer holds is known.
                log_flush_every: Duration::from_secs(3600),
                log_overflow: overflow,
                log_wait: wait,
                ..PdpConfig::default()
            },
        )
        .unwrap();
        pdp.watch(&EventBus::in_process());
        (pdp, tenant, alice)
    }

    fn read(user: &str) -> EvaluationRequest {
        request(json!({
            "subject": {"type": "user", "id": user},
            "action": {"name": "read"},
            "resource": {"type": "document", "id": "d1", "properties": {"owner": "bob"}},
        }))
    }

    /// Behind a blocked writer, fills the log's queue (capacity 4) with r2 to r5.
    fn fill_the_queue(pdp: &Pdp, tenant: TenantId, user: &str) {
        for index in 2..6 {
            let id = format!("r{index}");
            pdp.evaluate(tenant, "pep", &read(user), Some(&id)).unwrap();
        }
    }

    /// Polls `condition` (a state the test waits for, not a guess at a duration).
    fn until(what: &str, condition: impl Fn() -> bool) {
        let started = Instant::now();
        while !condition() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out waiting until {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Takes every connection of the log's pool, then lets the writer take a full
    /// batch (r0, r1) and block on the pool with it; the queue is then empty and
    /// stays as the test fills it.
    fn block_the_writer(
        pdp: &Pdp,
        tenant: TenantId,
        user: &str,
        log_db: &TestDb,
    ) -> Vec<gatehouse_identity_store::PooledConnection> {
        let held: Vec<_> = (0..4).map(|_| log_db.conn()).collect();
        for id in ["r0", "r1"] {
            pdp.evaluate(tenant, "pep", &read(user), Some(id)).unwrap();
        }
        until("the writer holds r0 and r1", || {
            pdp.decision_log_stats().queued == 0
        });
        held
    }

    fn logged(db: &TestDb, tenant: TenantId) -> Vec<decision_log::Decision> {
        decision_log::recent(&mut db.conn(), tenant, 1000).unwrap()
    }

    gatehouse_identity_store::backend_tests! {
        // The default: a full queue holds the evaluation back until the writer
        // makes room, and every decision given is in the log.
        fn a_full_queue_holds_evaluations_back_and_no_record_is_missing(db) {
            let log_db = TestDb::attach(db);
            let (pdp, tenant, alice) = pdp_on(db, &log_db, LogOverflow::Wait, Duration::from_secs(60));
            let held = block_the_writer(&pdp, tenant, &alice, &log_db);
            fill_the_queue(&pdp, tenant, &alice);
            assert_eq!(pdp.decision_log_stats().queued, 4, "the queue is full");
            assert_eq!(
                pdp.evaluate_cached(tenant, "pep", &read(&alice), Some("from-memory")).map(|d| d.unwrap().allowed),
                None,
                "from memory it does not wait: it hands over to a thread that may"
            );
            let evaluator = {
                let (pdp, alice) = (pdp.clone(), alice.clone());
                std::thread::spawn(move || {
                    for index in 6..20 {
                        pdp.evaluate(tenant, "pep", &read(&alice), Some(&format!("r{index}"))).unwrap();
                    }
                })
            };
            until("an evaluation waits for room", || pdp.decision_log_stats().waits > 0);
            assert!(!evaluator.is_finished(), "held back while the log is full");

            drop(held);
            evaluator.join().unwrap();
            pdp.flush_log();
            let records = logged(&log_db, tenant);
            let ids: BTreeSet<String> = records.iter().filter_map(|d| d.request_id.clone()).collect();
            let expected: BTreeSet<String> = (0..20).map(|i| format!("r{i}")).collect();
            assert_eq!(ids, expected, "every decision given is logged, nothing else");
            assert_eq!(records.len(), 20);
            assert!(records.iter().all(|d| !d.is_gap()));
            let stats = pdp.decision_log_stats();
            assert_eq!((stats.skipped, stats.failed, stats.wait_timeouts, stats.queued), (0, 0, 0, 0));
        }

        // Waiting is bounded: past `log_wait` the evaluation fails, and the
        // decision it would have given is neither answered nor logged.
        fn an_evaluation_the_log_cannot_take_in_time_fails(db) {
            let log_db = TestDb::attach(db);
            let (pdp, tenant, alice) = pdp_on(db, &log_db, LogOverflow::Wait, Duration::from_millis(50));
            let held = block_the_writer(&pdp, tenant, &alice, &log_db);
            fill_the_queue(&pdp, tenant, &alice);
            let refused = pdp.evaluate(tenant, "pep", &read(&alice), Some("too-late"));
            assert!(matches!(refused, Err(ConsentError::Unavailable(_))), "{refused:?}");
            let stats = pdp.decision_log_stats();
            assert_eq!((stats.waits, stats.wait_timeouts), (1, 1));

            drop(held);
            pdp.flush_log();
            let records = logged(&log_db, tenant);
            assert_eq!(records.len(), 6);
            assert!(records.iter().all(|d| d.request_id.as_deref() != Some("too-late")));
        }

        // Sampling, when an operator chose it: evaluations never wait; what the
        // full queue could not take is counted, exactly, in one gap record.
        fn sampling_skips_and_a_gap_record_has_the_exact_count(db) {
            let log_db = TestDb::attach(db);
            let (pdp, tenant, alice) = pdp_on(db, &log_db, LogOverflow::Sample, Duration::from_secs(60));
            let held = block_the_writer(&pdp, tenant, &alice, &log_db);
            for index in 2..20 {
                let id = format!("r{index}");
                // From memory too: sampling never needs to wait.
                let decision = if index % 2 == 0 {
                    pdp.evaluate(tenant, "pep", &read(&alice), Some(&id)).unwrap()
                } else {
                    pdp.evaluate_cached(tenant, "pep", &read(&alice), Some(&id)).unwrap().unwrap()
                };
                assert!(decision.allowed);
            }
            // r0, r1 with the writer; r2..r5 queued; r6..r19 skipped.
            let stats = pdp.decision_log_stats();
            assert_eq!((stats.skipped, stats.waits, stats.queued), (14, 0, 4));

            drop(held);
            pdp.flush_log();
            let records = logged(&log_db, tenant);
            let decisions: BTreeSet<String> = records.iter().filter_map(|d| d.request_id.clone()).collect();
            let expected: BTreeSet<String> = (0..6).map(|i| format!("r{i}")).collect();
            assert_eq!(decisions, expected);
            let gaps: Vec<_> = records.iter().filter(|d| d.is_gap()).collect();
            assert_eq!(gaps.len(), 1, "{gaps:?}");
            assert_eq!(gaps[0].skipped, Some(14));
            assert_eq!(gaps[0].reason.as_deref(), Some(decision_log::GAP_REASON));
            assert_eq!(records.len(), 6 + 1);
            assert_eq!(pdp.decision_log_stats().failed, 0);
        }
    }
}

fn operator(roles: &[&str], action: &str, platform_tenant: bool) -> OperatorRequest {
    OperatorRequest {
        operator: "client:ops".into(),
        roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        interactive: false,
        acr: 0,
        action: action.into(),
        tenant_slug: "acme".into(),
        platform_tenant,
        target_administrator: None,
    }
}

/// The decision on `action` for an API client holding `roles` in an ordinary tenant.
fn operator_allowed(pdp: &Pdp, roles: &[&str], action: &str) -> bool {
    pdp.judge_operator(&operator(roles, action, false))
        .unwrap()
        .allowed
}

#[test]
fn each_role_takes_its_own_admin_actions_and_no_others() {
    let (pdp, _, _) = setup();
    let reads = [
        "users.read",
        "clients.read",
        "audit.read",
        "decisions.read",
        "policies.read",
    ];
    let support = [
        "users.reset",
        "users.sessions.end",
        "users.disable",
        "users.enable",
    ];
    let administer = [
        "users.create",
        "clients.write",
        "policies.write",
        "keys.rotate",
        "roles.write",
    ];
    for action in reads.iter().chain(&support).chain(&administer) {
        assert!(
            operator_allowed(&pdp, &["tenant_administrator"], action),
            "{action}"
        );
        assert!(!operator_allowed(&pdp, &[], action), "no role: {action}");
    }
    for action in reads
        .iter()
        .filter(|a| a.starts_with("users."))
        .chain(&support)
    {
        assert!(
            operator_allowed(&pdp, &["helpdesk"], action),
            "helpdesk {action}"
        );
    }
    for action in ["clients.read", "policies.read", "audit.read"]
        .iter()
        .chain(&administer)
    {
        assert!(
            !operator_allowed(&pdp, &["helpdesk"], action),
            "helpdesk {action}"
        );
    }
    for action in &reads {
        assert!(
            operator_allowed(&pdp, &["auditor"], action),
            "auditor {action}"
        );
    }
    for action in support.iter().chain(&administer) {
        assert!(
            !operator_allowed(&pdp, &["auditor"], action),
            "auditor {action}"
        );
    }
    // Roles add up: an auditor who is also helpdesk reads clients and resets users.
    assert!(operator_allowed(
        &pdp,
        &["auditor", "helpdesk"],
        "clients.read"
    ));
    assert!(operator_allowed(
        &pdp,
        &["auditor", "helpdesk"],
        "users.reset"
    ));
    // The platform role operates tenants and nothing inside them.
    assert!(!operator_allowed(
        &pdp,
        &["platform_administrator"],
        "users.read"
    ));
    assert!(!operator_allowed(
        &pdp,
        &["tenant_administrator"],
        "tenants.write"
    ));
}

#[test]
fn tenants_are_operated_from_the_platform_tenant_only() {
    let (pdp, _, _) = setup();
    let platform = ["platform_administrator"];
    for action in ["tenants.read", "tenants.write"] {
        let at_home = pdp
            .judge_operator(&operator(&platform, action, true))
            .unwrap();
        assert!(at_home.allowed, "{action}");
        let elsewhere = pdp
            .judge_operator(&operator(&platform, action, false))
            .unwrap();
        assert!(!elsewhere.allowed, "{action}");
        assert_eq!(
            elsewhere.reason.as_deref(),
            Some(reason::ENTITLEMENT_MISSING)
        );
        assert_eq!(
            elsewhere.policies,
            vec!["tenants-from-the-platform-only".to_owned()]
        );
    }
}

#[test]
fn a_console_session_below_aal2_is_sent_to_step_up() {
    let (pdp, _, _) = setup();
    let mut at_console = operator(&["tenant_administrator"], "users.read", false);
    at_console.interactive = true;
    at_console.acr = 1;
    let refused = pdp.judge_operator(&at_console).unwrap();
    assert!(!refused.allowed);
    assert_eq!(
        refused.reason.as_deref(),
        Some(reason::INSUFFICIENT_AUTHENTICATION)
    );
    assert_eq!(refused.acr_values.as_deref(), Some("urn:gatehouse:aal2"));
    at_console.acr = 2;
    assert!(pdp.judge_operator(&at_console).unwrap().allowed);
}

#[test]
fn operator_decisions_are_logged_and_unknown_actions_refused() {
    let (pdp, memory, tenant) = setup();
    let denied = pdp
        .authorize_operator(
            tenant,
            &operator(&["helpdesk"], "clients.write", false),
            Some("req-1"),
        )
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
    pdp.flush_log();
    let log = memory.log.lock().unwrap().clone();
    let entry = log.last().expect("the decision is logged");
    assert_eq!(entry.tenant_id, tenant);
    assert!(!entry.decision);
    assert_eq!(entry.reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
    assert_eq!(entry.request_id.as_deref(), Some("req-1"));
    let logged: Value = serde_json::from_str(&entry.request).unwrap();
    assert_eq!(logged["subject"]["type"], SUBJECT_OPERATOR);
    assert_eq!(logged["subject"]["id"], "client:ops");
    assert_eq!(logged["action"]["name"], "clients.write");
    assert_eq!(logged["resource"]["id"], "acme");

    assert!(pdp.knows_operator_action("users.reset"));
    assert!(!pdp.knows_operator_action("users.reset.everything"));
    let unknown = pdp.judge_operator(&operator(&["tenant_administrator"], "drop.tables", false));
    assert!(matches!(unknown, Err(ConsentError::Invalid(_))));
}

#[test]
fn a_provisioner_keeps_users_and_groups_and_nothing_else() {
    let (pdp, _, _) = setup();
    for action in [
        "users.read",
        "users.create",
        "users.update",
        "users.delete",
        "users.disable",
        "groups.read",
        "groups.write",
        "users.groups.write",
    ] {
        assert!(operator_allowed(&pdp, &["provisioner"], action), "{action}");
    }
    for action in [
        "users.reset",
        "users.export",
        "users.roles.write",
        "users.audit.read",
        "clients.read",
        "policies.write",
        "tenants.read",
    ] {
        assert!(
            !operator_allowed(&pdp, &["provisioner"], action),
            "{action}"
        );
    }
}

#[test]
fn a_provisioner_cannot_touch_an_administrator_but_a_tenant_administrator_can() {
    let (pdp, _, _) = setup();
    for action in ["users.update", "users.delete", "users.disable"] {
        let mut asked = operator(&["provisioner"], action, false);
        asked.target_administrator = Some(true);
        let refused = pdp.judge_operator(&asked).unwrap();
        assert!(!refused.allowed, "{action}");
        assert_eq!(refused.reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
        assert!(
            refused
                .policies
                .contains(&"provisioning-spares-administrators".to_owned()),
            "{:?}",
            refused.policies
        );
        asked.target_administrator = Some(false);
        assert!(pdp.judge_operator(&asked).unwrap().allowed, "{action}");
        let mut admin = operator(&["tenant_administrator"], action, false);
        admin.target_administrator = Some(true);
        assert!(pdp.judge_operator(&admin).unwrap().allowed, "{action}");
    }
}

#[test]
fn the_helpdesk_cannot_touch_an_administrator_but_reads_one() {
    let (pdp, _, _) = setup();
    for action in [
        "users.reset",
        "users.sessions.end",
        "users.disable",
        "users.enable",
    ] {
        let mut asked = operator(&["helpdesk"], action, false);
        asked.target_administrator = Some(true);
        let refused = pdp.judge_operator(&asked).unwrap();
        assert!(!refused.allowed, "{action}");
        assert_eq!(refused.reason.as_deref(), Some(reason::ENTITLEMENT_MISSING));
        assert!(
            refused
                .policies
                .contains(&"support-spares-administrators".to_owned()),
            "{:?}",
            refused.policies
        );
        asked.target_administrator = Some(false);
        assert!(pdp.judge_operator(&asked).unwrap().allowed, "{action}");
    }
    let mut read = operator(&["helpdesk"], "users.read", false);
    read.target_administrator = Some(false);
    assert!(pdp.judge_operator(&read).unwrap().allowed);
}
