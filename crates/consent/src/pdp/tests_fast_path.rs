//! The two things that make an evaluation cheap — per-action policy slices and the
//! event-fed subject cache — must not change a single answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cedar_policy::{Authorizer, Entities, PolicySet, Request, Schema};
use chrono::{DateTime, Utc};
use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::{Clock, ManualClock, SharedClock};
use gatehouse_identity_store::decision_log::NewDecision;
use serde_json::{Value, json};

use super::*;

// ---------------------------------------------------------------------------
// Slices

/// Every kind of action scope: unconstrained, `==`, `in` one action, `in` a list,
/// with permits and forbids, conditions that read principal, resource and context,
/// on top of the default set (which has `in [..]` step-up and read/list permits).
const MIXED: &str = r#"
@id("editors-write")
permit (principal in Gatehouse::Role::"editor",
        action in [Gatehouse::Action::"create", Gatehouse::Action::"update", Gatehouse::Action::"delete"],
        resource);

@id("exporters-export")
permit (principal in Gatehouse::Role::"exporter", action == Gatehouse::Action::"export", resource);

@id("risky-export")
@reason("risk_too_high")
forbid (principal, action == Gatehouse::Action::"export", resource)
when { context.risk_score > 50 };

@id("delete-needs-aal3")
@reason("insufficient_authentication")
@acr_values("urn:gatehouse:aal3")
forbid (principal, action in Gatehouse::Action::"delete", resource)
when { context.acr < 3 };

@id("sales-share-list")
permit (principal, action in [Gatehouse::Action::"share", Gatehouse::Action::"list"], resource)
when { principal.groups.contains("Sales") };

@id("confidential-nobody")
forbid (principal, action, resource)
when { resource.hasTag("sensitivity") && resource.getTag("sensitivity") == "secret" && !(principal in Gatehouse::Role::"admin") };

@id("night-approvals")
forbid (principal, action == Gatehouse::Action::"approve", resource)
when { context.hour < 6 };

@id("managers-approve")
permit (principal in Gatehouse::Role::"manager", action in [Gatehouse::Action::"approve", Gatehouse::Action::"manage"], resource);
"#;

fn person(id: &str, roles: &[&str], groups: &[&str], active: bool) -> UserFacts {
    UserFacts {
        id: id.into(),
        user_name: id.into(),
        active,
        email_verified: id != "unverified",
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        idps: vec![],
        partners: vec![],
        consents: vec!["crm:marketing".into()],
        attributes: vec![],
    }
}

fn people() -> Vec<UserFacts> {
    vec![
        person("alice", &["exporter"], &["Sales"], true),
        person("ed", &["editor"], &[], true),
        person("root", &["admin"], &[], true),
        person("mia", &["manager"], &["Sales"], true),
        person("gone", &["admin"], &[], false),
        person("unverified", &[], &[], true),
    ]
}

fn contexts() -> Vec<Value> {
    vec![
        json!({}),
        json!({"acr": 2}),
        json!({"acr": 3, "risk_score": 60}),
        json!({"acr": 3, "purpose": "marketing"}),
        json!({"acr": 1, "purpose": "ads", "risk_score": 85}),
    ]
}

/// Types that policies below name, alone or with others, and one none names.
const RESOURCE_TYPES: [&str; 5] = ["document", "invoice", "payroll", "contract", "gadget"];

fn resources(owner: &str) -> Vec<Value> {
    RESOURCE_TYPES
        .iter()
        .flat_map(|kind| {
            [
                json!({"type": kind, "id": "d1"}),
                json!({"type": kind, "id": "d2", "properties": {"owner": owner}}),
                json!({"type": kind, "id": "d3", "properties": {"sensitivity": "secret"}}),
            ]
        })
        .collect()
}

/// Decision and determining policies for every combination, for `action`, each
/// decided by the set `pick` gives for the resource's type.
/// `actions`: the schema's action entities when the hierarchy is to be honoured.
fn answers<'s>(
    pick: impl Fn(&str) -> &'s PolicySet,
    action: &str,
    actions: Option<&Entities>,
    hours: &[u32],
) -> Vec<(bool, BTreeSet<String>)> {
    let names = context::Names::new().unwrap();
    let authorizer = Authorizer::new();
    let mut out = Vec::new();
    for hour in hours {
        let now: DateTime<Utc> = format!("2026-11-25T{hour:02}:30:00Z").parse().unwrap();
        for user in people() {
            for resource in resources(&user.id) {
                for ctx in contexts() {
                    let principal = context::user_entity(&names, &user).unwrap();
                    let resource: Resource = serde_json::from_value(resource.clone()).unwrap();
                    let set = pick(&resource.kind);
                    let resource = context::resource_entity(&names, &resource).unwrap();
                    let cedar_context =
                        context::build(&names, ctx.as_object().unwrap(), "crm", now).unwrap();
                    let request = Request::new(
                        principal.uid(),
                        context::action_uid(&names, action),
                        resource.uid(),
                        cedar_context,
                        None,
                    )
                    .unwrap();
                    let mut entities =
                        Entities::from_entities([principal, resource], None).unwrap();
                    if let Some(actions) = actions {
                        entities = entities
                            .add_entities(actions.iter().cloned(), None)
                            .unwrap();
                    }
                    let response = authorizer.is_authorized(&request, set, &entities);
                    assert!(
                        response.diagnostics().errors().next().is_none(),
                        "the cases are chosen to evaluate without errors"
                    );
                    let reasons = response
                        .diagnostics()
                        .reason()
                        .map(ToString::to_string)
                        .collect();
                    out.push((
                        response.decision() == cedar_policy::Decision::Allow,
                        reasons,
                    ));
                }
            }
        }
    }
    out
}

/// Compares, for every declared action and one the schema does not know, and
/// every resource type, the whole set with the slice the PDP would use. Returns the
/// slices.
fn assert_slices_agree(
    schema: &Schema,
    text: &str,
    honour_hierarchy: bool,
) -> HashMap<String, policies::ActionSlice> {
    let set = policies::compile(schema, text).unwrap();
    let slices = policies::slices(schema, &set).unwrap();
    let actions = schema.action_entities().unwrap();
    let hierarchy = honour_hierarchy.then_some(&actions);
    let mut declared: Vec<String> = schema
        .actions()
        .map(|a| a.id().unescaped().to_owned())
        .collect();
    declared.sort();
    assert_eq!(
        slices.len(),
        declared.len(),
        "one slice per declared action"
    );
    let (mut permits, mut denials) = (0, 0);
    for action in declared.iter().map(String::as_str).chain(["frobnicate"]) {
        let whole = answers(|_| &set, action, hierarchy, &[3, 12]);
        let sliced = answers(
            |kind| {
                slices
                    .get(action)
                    .map_or(&set, |slice| slice.for_type(kind))
            },
            action,
            hierarchy,
            &[3, 12],
        );
        assert_eq!(
            whole, sliced,
            "action {action}: the slice decides otherwise"
        );
        permits += whole.iter().filter(|(allowed, _)| *allowed).count();
        denials += whole.iter().filter(|(allowed, _)| !*allowed).count();
    }
    assert!(
        permits > 100 && denials > 100,
        "{permits} permits, {denials} denials"
    );
    slices
}

#[test]
fn a_slice_decides_like_the_whole_set_for_every_action() {
    let schema = policies::schema().unwrap();
    let text = format!("{DEFAULT_POLICIES}\n{MIXED}");
    let slices = assert_slices_agree(&schema, &text, false);
    let total = policies::compile(&schema, &text)
        .unwrap()
        .policies()
        .count();
    let size = |action: &str| slices[action].for_type("document").policies().count();
    // Unconstrained policies are in every slice; the rest only where they can match.
    assert!(size("read") < total && size("invoke") < size("read"));
    assert!(
        slices["delete"]
            .for_type("document")
            .policy(&cedar_policy::PolicyId::new("delete-needs-aal3"))
            .is_some()
    );
    assert!(
        slices["read"]
            .for_type("document")
            .policy(&cedar_policy::PolicyId::new("delete-needs-aal3"))
            .is_none()
    );
}

/// The benchmark's realistic set (49 policies) too.
#[test]
fn the_benchmark_policy_set_slices_without_changing_a_decision() {
    let text = include_str!("../../benches/realistic.cedar");
    let schema = policies::schema().unwrap();
    let slices = assert_slices_agree(&schema, text, false);
    let total = policies::compile(&schema, text).unwrap().policies().count();
    assert_eq!(total, 49);
    // By action alone `read` met 32 of the 49; a resource type leaves the rules of
    // the other nine types out.
    let read = &slices["read"];
    let count = |set: &PolicySet| set.policies().count();
    let mut types: Vec<&str> = read.types().collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "asset", "contract", "customer", "document", "invoice", "order", "payroll", "project",
            "report", "ticket"
        ]
    );
    assert!(
        count(read.for_type("document")) <= 14,
        "{}",
        count(read.for_type("document"))
    );
    assert!(count(read.for_type("gadget")) < count(read.for_type("document")));
    let has = |kind: &str, id: &str| {
        read.for_type(kind)
            .policy(&cedar_policy::PolicyId::new(id))
            .is_some()
    };
    // `||` of types: in both; `&&` with other conditions: in its type's only.
    assert!(has("invoice", "finance-money") && has("payroll", "finance-money"));
    assert!(!has("document", "finance-money") && !has("gadget", "finance-money"));
    assert!(has("payroll", "payroll-step-up") && !has("invoice", "payroll-step-up"));
    assert!(has("gadget", "same-department-read") && has("document", "same-department-read"));
}

/// What the type analysis makes of each shape of condition: it may only ever keep
/// a policy in.
#[test]
fn required_types_reads_only_what_it_understands() {
    let schema = policies::schema().unwrap();
    let text = r#"
@id("eq") permit (principal, action, resource) when { resource.type == "a" };
@id("reversed") permit (principal, action, resource) when { "a" == resource.type };
@id("or") permit (principal, action, resource) when { resource.type == "a" || resource.type == "b" };
@id("and") permit (principal, action, resource) when { context.acr >= 2 && resource.type == "b" };
@id("two-whens") permit (principal, action, resource) when { resource.type == "a" || resource.type == "b" } when { resource.type == "b" };
@id("contradiction") permit (principal, action, resource) when { resource.type == "a" && resource.type == "b" };
@id("or-with-other") permit (principal, action, resource) when { resource.type == "a" || context.acr >= 2 };
@id("not") permit (principal, action, resource) when { !(resource.type == "a") };
@id("not-equal") permit (principal, action, resource) when { resource.type != "a" };
@id("unless") permit (principal, action, resource) unless { resource.type == "a" };
@id("other-attr") permit (principal, action, resource) when { resource.id == "a" };
@id("like") permit (principal, action, resource) when { resource.type like "a*" };
"#;
    let set = policies::compile(&schema, text).unwrap();
    let types = |id: &str| {
        policies::required_types(set.policy(&cedar_policy::PolicyId::new(id)).unwrap())
            .map(|t| t.into_iter().collect::<Vec<_>>())
    };
    let some = |t: &[&str]| Some(t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    assert_eq!(types("eq"), some(&["a"]));
    assert_eq!(types("reversed"), some(&["a"]));
    assert_eq!(types("or"), some(&["a", "b"]));
    assert_eq!(types("and"), some(&["b"]));
    assert_eq!(types("two-whens"), some(&["b"]));
    assert_eq!(types("contradiction"), some(&[]));
    for any in [
        "or-with-other",
        "not",
        "not-equal",
        "unless",
        "other-attr",
        "like",
    ] {
        assert_eq!(types(any), None, "{any}");
    }
}

/// The shipped schema has no action groups; a schema with some must put a policy
/// scoped to a group into the slice of each member, and decide as the whole set
/// does even when the hierarchy is honoured at evaluation.
#[test]
fn a_policy_on_an_action_group_is_in_its_members_slices() {
    let declared = "action read, list, create, update, delete, share, export, import, transfer, approve, manage, invoke\n    appliesTo { principal: [User], resource: [Resource], context: Env };";
    assert!(
        SCHEMA_TEXT.contains(declared),
        "the schema's action line moved"
    );
    let grouped = SCHEMA_TEXT.replace(
        declared,
        "action viewing, writing;\n  action read, list in [viewing] appliesTo { principal: [User], resource: [Resource], context: Env };\n  action create, update, delete in [writing] appliesTo { principal: [User], resource: [Resource], context: Env };\n  action share, export, import, transfer, approve, manage, invoke appliesTo { principal: [User], resource: [Resource], context: Env };",
    );
    let (schema, _) = Schema::from_cedarschema_str(&grouped).unwrap();
    let text = format!(
        "{DEFAULT_POLICIES}\n{MIXED}\n{}",
        r#"
@id("sales-view") permit (principal, action in Gatehouse::Action::"viewing", resource) when { principal.groups.contains("Sales") };
@id("writers-aal2") @reason("insufficient_authentication") @acr_values("urn:gatehouse:aal2")
forbid (principal, action in [Gatehouse::Action::"writing", Gatehouse::Action::"share"], resource) when { context.acr < 2 };
"#
    );
    let slices = assert_slices_agree(&schema, &text, true);
    let has = |action: &str, id: &str| {
        slices[action]
            .for_type("document")
            .policy(&cedar_policy::PolicyId::new(id))
            .is_some()
    };
    assert!(has("read", "sales-view") && has("list", "sales-view"));
    assert!(!has("create", "sales-view"));
    assert!(has("update", "writers-aal2") && has("share", "writers-aal2"));
    assert!(!has("read", "writers-aal2"));
}

// ---------------------------------------------------------------------------
// The subject cache

#[derive(Debug, Default)]
struct Store {
    users: Mutex<HashMap<String, UserFacts>>,
    /// Full reads of a user (four queries in the store), alone or in a batch.
    reads: Mutex<usize>,
    /// Batched reads (a few queries for many users in the store).
    batches: Mutex<usize>,
}

impl SubjectFacts for Store {
    fn user(
        &self,
        _tenant: TenantId,
        id: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<UserFacts>, ConsentError> {
        *self.reads.lock().unwrap() += 1;
        // As the store does: any spelling of the UUID finds the user.
        let id = id.to_ascii_lowercase();
        Ok(self.users.lock().unwrap().get(&id).cloned())
    }

    fn users(
        &self,
        tenant: TenantId,
        ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, UserFacts>, ConsentError> {
        *self.batches.lock().unwrap() += 1;
        let mut found = HashMap::new();
        for id in ids {
            if let Some(facts) = self.user(tenant, id, now)? {
                found.insert((*id).to_owned(), facts);
            }
        }
        Ok(found)
    }
}

impl PolicySource for Store {
    fn latest_version(&self, _: TenantId) -> Result<Option<i64>, ConsentError> {
        Ok(None)
    }
    fn latest(&self, _: TenantId) -> Result<Option<StoredPolicies>, ConsentError> {
        Ok(None)
    }
    fn save(&self, _: TenantId, _: DateTime<Utc>, _: &str, _: &str) -> Result<i64, ConsentError> {
        Ok(1)
    }
}

impl DecisionSink for Store {
    fn write(&self, batch: &[NewDecision]) -> Result<usize, ConsentError> {
        Ok(batch.len())
    }
}

struct Fixture {
    pdp: Pdp,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
    bus: EventBus,
    tenant: TenantId,
    user: UserId,
}

impl Fixture {
    fn new(watch: bool) -> Fixture {
        let store = Arc::new(Store::default());
        let user = UserId::new();
        let facts = person(&user.to_string(), &[], &[], true);
        store.users.lock().unwrap().insert(user.to_string(), facts);
        let clock = Arc::new(ManualClock::fixed());
        let shared: SharedClock = clock.clone();
        let pdp = Pdp::with_parts(
            shared,
            store.clone(),
            store.clone(),
            store.clone(),
            PdpConfig {
                version_check: Duration::from_secs(3600),
                ..PdpConfig::default()
            },
        )
        .unwrap();
        let bus = EventBus::in_process();
        if watch {
            pdp.watch(&bus);
        }
        Fixture {
            pdp,
            store,
            clock,
            bus,
            tenant: TenantId::new(),
            user,
        }
    }

    fn reads(&self) -> usize {
        *self.store.reads.lock().unwrap()
    }

    /// `read` of a document for the purpose `marketing`: allowed while the consent
    /// holds and the user is active (verified users may read).
    fn ask_as(&self, id: &str) -> EvaluationRequest {
        EvaluationRequest::from_json(
            json!({
                "subject": {"type": "user", "id": id},
                "action": {"name": "read"},
                "resource": {"type": "document", "id": "d1"},
                "context": {"purpose": "marketing"},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn decide_as(&self, id: &str) -> Decision {
        self.pdp
            .evaluate(self.tenant, "crm", &self.ask_as(id), None)
            .unwrap()
    }

    fn decide(&self) -> Decision {
        self.decide_as(&self.user.to_string())
    }

    /// Publishes an event about the fixture's user, made from its tenant and id.
    fn announce(&self, event: fn(TenantId, UserId) -> DomainEvent) {
        self.bus.publish(event(self.tenant, self.user)).unwrap();
    }

    fn change_in_store(&self, change: impl FnOnce(&mut UserFacts)) {
        change(
            self.store
                .users
                .lock()
                .unwrap()
                .get_mut(&self.user.to_string())
                .unwrap(),
        );
    }
}

#[test]
fn without_events_every_evaluation_reads_the_whole_subject() {
    let f = Fixture::new(false);
    assert!(f.decide().allowed);
    assert!(f.decide().allowed);
    assert_eq!(f.reads(), 2);
    f.change_in_store(|u| u.active = false);
    assert!(!f.decide().allowed, "nothing is cached");
}

#[test]
fn a_cached_subject_costs_no_read_and_an_announced_withdrawal_counts_at_once() {
    let f = Fixture::new(true);
    assert!(f.decide().allowed);
    for _ in 0..3 {
        assert!(f.decide().allowed);
    }
    assert_eq!(f.reads(), 1, "after the first read the cache answers");
    // A withdrawal on this node: its event is drained by the next lookup.
    f.change_in_store(|u| u.consents.clear());
    f.bus
        .publish(DomainEvent::ConsentWithdrawn {
            tenant: f.tenant,
            user: f.user,
            client_id: "crm".into(),
            purpose: "marketing".into(),
        })
        .unwrap();
    let after = f.decide();
    assert!(!after.allowed);
    assert_eq!(after.reason.as_deref(), Some(reason::CONSENT_WITHDRAWN));
    assert_eq!(f.reads(), 2);
    // A consent granted again (no event for grants) is found once the entry ages
    // out: the cache may deny for up to its TTL, never allow.
    f.change_in_store(|u| u.consents = vec!["crm:marketing".into()]);
    assert!(!f.decide().allowed);
    f.clock.advance(chrono::Duration::seconds(1));
    assert!(f.decide().allowed);
}

#[test]
fn a_withdrawal_whose_event_never_arrives_counts_within_the_ttl() {
    let f = Fixture::new(true);
    assert!(f.decide().allowed);
    // Another node's withdrawal whose notification was lost (delivery across nodes
    // is at most once), or the CLI's on SQLite.
    f.change_in_store(|u| u.consents.clear());
    f.clock.advance(chrono::Duration::milliseconds(999));
    assert!(
        f.decide().allowed,
        "the cached consent serves within the TTL"
    );
    f.clock.advance(chrono::Duration::milliseconds(1));
    let after = f.decide();
    assert_eq!(after.reason.as_deref(), Some(reason::CONSENT_WITHDRAWN));
}

#[test]
fn memory_only_evaluation_answers_from_the_caches_or_not_at_all() {
    let f = Fixture::new(true);
    let ask = f.ask_as(&f.user.to_string());
    // Nothing cached yet: no answer, no read, nothing logged.
    assert!(f.pdp.evaluate_cached(f.tenant, "crm", &ask, None).is_none());
    assert_eq!(f.reads(), 0);
    assert!(f.decide().allowed);
    let cached = f.pdp.evaluate_cached(f.tenant, "crm", &ask, None);
    assert_eq!(cached.map(|d| d.unwrap().allowed), Some(true));
    assert_eq!(f.reads(), 1, "the cached answer read nothing");
    // An announced change empties the cache: memory-only gives up again.
    f.announce(|tenant, user| DomainEvent::UserChanged { tenant, user });
    assert!(f.pdp.evaluate_cached(f.tenant, "crm", &ask, None).is_none());
    // Without the cache switched on it never answers.
    let cold = Fixture::new(false);
    assert!(cold.decide().allowed);
    assert!(
        cold.pdp
            .evaluate_cached(
                cold.tenant,
                "crm",
                &cold.ask_as(&cold.user.to_string()),
                None
            )
            .is_none()
    );
    // Malformed input still gets its error from memory: nothing to look up.
    let robot = EvaluationRequest::from_json(
        json!({
            "subject": {"type": "robot", "id": "r2"},
            "action": {"name": "read"},
            "resource": {"type": "document", "id": "d1"},
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        f.pdp.evaluate_cached(f.tenant, "crm", &robot, None),
        Some(Err(ConsentError::Invalid(_)))
    ));
}

#[test]
fn user_tenant_and_resync_events_drop_cached_subjects() {
    let f = Fixture::new(true);
    let other = TenantId::new();
    let events = [
        DomainEvent::ConsentWithdrawn {
            tenant: f.tenant,
            user: f.user,
            client_id: "crm".into(),
            purpose: "marketing".into(),
        },
        DomainEvent::ConsentGranted {
            tenant: f.tenant,
            user: f.user,
            client_id: "crm".into(),
            purpose: "marketing".into(),
        },
        DomainEvent::UserChanged {
            tenant: f.tenant,
            user: f.user,
        },
        DomainEvent::UserDeactivated {
            tenant: f.tenant,
            user: f.user,
        },
        DomainEvent::CredentialsChanged {
            tenant: f.tenant,
            user: f.user,
        },
        DomainEvent::TenantChanged { tenant: f.tenant },
        DomainEvent::Resync,
    ];
    f.decide();
    for (index, event) in events.into_iter().enumerate() {
        let before = f.reads();
        f.bus.publish(event.clone()).unwrap();
        f.decide();
        assert_eq!(f.reads(), before + 1, "{event:?} must drop the entry");
        // Another user's or tenant's event leaves it alone.
        let unrelated = match index {
            0 => DomainEvent::UserChanged {
                tenant: f.tenant,
                user: UserId::new(),
            },
            _ => DomainEvent::TenantChanged { tenant: other },
        };
        f.bus.publish(unrelated).unwrap();
        f.decide();
        assert_eq!(f.reads(), before + 1);
    }
    // What `UserDeactivated` is for: published on this node, it counts at once —
    // the lookup drains the subscription itself, no background task must run first.
    f.change_in_store(|u| u.active = false);
    f.announce(|tenant, user| DomainEvent::UserDeactivated { tenant, user });
    assert!(!f.decide().allowed);
    // The PEP may spell the UUID in capitals: the event still finds the entry.
    f.change_in_store(|u| u.active = true);
    let shouting = f.user.to_string().to_uppercase();
    f.bus.publish(DomainEvent::Resync).unwrap();
    assert!(f.decide_as(&shouting).allowed);
    f.change_in_store(|u| u.active = false);
    f.announce(|tenant, user| DomainEvent::UserChanged { tenant, user });
    assert!(!f.decide_as(&shouting).allowed);
}

#[test]
fn cached_subjects_expire_after_the_ttl() {
    let f = Fixture::new(true);
    assert!(f.decide().allowed);
    // A change whose event was missed (another node's: delivery is at most once; or
    // the CLI on SQLite): the TTL bounds how long it goes unseen.
    f.change_in_store(|u| u.active = false);
    f.clock.advance(chrono::Duration::milliseconds(999));
    assert!(f.decide().allowed, "within the TTL the cached facts serve");
    f.clock.advance(chrono::Duration::milliseconds(1));
    assert!(!f.decide().allowed, "after 1 s the store is read again");
    assert_eq!(f.reads(), 2);
}

#[test]
fn unknown_subjects_are_cached_as_absent_until_the_user_appears() {
    let f = Fixture::new(true);
    let newcomer = UserId::new();
    for _ in 0..3 {
        assert_eq!(
            f.decide_as(&newcomer.to_string()).reason.as_deref(),
            Some(reason::UNKNOWN_SUBJECT)
        );
    }
    assert_eq!(f.reads(), 1, "absence is remembered");
    // Registration on this node announces the new user.
    let facts = person(&newcomer.to_string(), &[], &[], true);
    f.store
        .users
        .lock()
        .unwrap()
        .insert(newcomer.to_string(), facts);
    f.bus
        .publish(DomainEvent::UserChanged {
            tenant: f.tenant,
            user: newcomer,
        })
        .unwrap();
    assert!(f.decide_as(&newcomer.to_string()).allowed);
    assert_eq!(f.reads(), 2);
}

/// A subject cache of 100 entries kept for 1 s, watching a bus of its own.
fn watched_cache() -> (subjects::SubjectCache, EventBus) {
    let cache = subjects::SubjectCache::new(Duration::from_secs(1), 100);
    let bus = EventBus::in_process();
    cache.watch(&bus);
    (cache, bus)
}

/// What the cache keeps for the active user `id` without roles or groups.
fn cached_person(names: &context::Names, id: &str) -> Arc<subjects::Subject> {
    let facts = person(id, &[], &[], true);
    Arc::new(subjects::Subject::new(context::user_entity(names, &facts).unwrap()).unwrap())
}

#[test]
fn a_flood_of_unknown_subjects_cannot_push_real_ones_out() {
    let (cache, _bus) = watched_cache();
    let tenant = TenantId::new();
    let names = context::Names::new().unwrap();
    let now = ManualClock::fixed().now();
    let real: Vec<String> = (0..50).map(|_| UserId::new().to_string()).collect();
    for id in &real {
        let subject = cached_person(&names, id);
        let (_, epoch) = cache.get(tenant, id, now);
        cache.keep(tenant, id, Some(&subject), now, epoch);
    }
    for n in 0..1000 {
        let id = format!("made-up-{n}");
        let (_, epoch) = cache.get(tenant, &id, now);
        cache.keep(tenant, &id, None, now, epoch);
    }
    assert_eq!(cache.len(), 60, "absent subjects take a tenth at most");
    assert!(real.iter().all(|id| cache.get(tenant, id, now).0.is_some()));
    assert!(matches!(cache.get(tenant, "made-up-0", now).0, Some(None)));
    assert!(cache.get(tenant, "made-up-999", now).0.is_none());
}

/// A read that started before an invalidation and finishes after it must not be
/// kept: it may hold the facts from before the withdrawal.
#[test]
fn a_read_overtaken_by_an_invalidation_is_not_kept() {
    let (cache, bus) = watched_cache();
    let tenant = TenantId::new();
    let user = UserId::new();
    let id = user.to_string();
    let subject = cached_person(&context::Names::new().unwrap(), &id);
    let now = ManualClock::fixed().now();

    let (hit, epoch) = cache.get(tenant, &id, now);
    assert!(hit.is_none());
    bus.publish(DomainEvent::ConsentWithdrawn {
        tenant,
        user,
        client_id: "crm".into(),
        purpose: "marketing".into(),
    })
    .unwrap();
    cache.keep(tenant, &id, Some(&subject), now, epoch);
    assert_eq!(cache.len(), 0);

    let (_, epoch) = cache.get(tenant, &id, now);
    cache.keep(tenant, &id, Some(&subject), now, epoch);
    assert_eq!(cache.len(), 1, "an undisturbed read is kept");
    assert!(cache.get(tenant, &id, now).0.is_some());
}

#[test]
fn subjects_in_use_are_read_again_before_they_expire() {
    let f = Fixture::new(true);
    assert!(f.decide().allowed);
    f.clock.advance(chrono::Duration::milliseconds(600));
    assert!(f.decide().allowed, "in use: a hit");
    f.change_in_store(|u| u.consents.clear());
    f.pdp.refresh_subjects_now();
    assert_eq!(f.reads(), 2, "read again in the second half of its life");
    // Past the first read's lifetime: the refreshed entry serves, with what the
    // store held at the refresh, and the request path reads nothing.
    f.clock.advance(chrono::Duration::milliseconds(600));
    let after = f.decide();
    assert_eq!(after.reason.as_deref(), Some(reason::CONSENT_WITHDRAWN));
    assert_eq!(f.reads(), 2);
}

#[test]
fn subjects_not_asked_about_are_left_to_expire() {
    let f = Fixture::new(true);
    assert!(f.decide().allowed);
    f.clock.advance(chrono::Duration::milliseconds(600));
    f.pdp.refresh_subjects_now();
    assert_eq!(
        f.reads(),
        1,
        "not asked about since its read: not read again"
    );
    f.clock.advance(chrono::Duration::milliseconds(400));
    f.change_in_store(|u| u.active = false);
    assert!(!f.decide().allowed, "expired, so read on the request path");
    assert_eq!(f.reads(), 2);
}

#[test]
fn the_refresher_reads_the_subjects_due_together() {
    let f = Fixture::new(true);
    let others: Vec<UserId> = (0..99).map(|_| UserId::new()).collect();
    for id in &others {
        let facts = person(&id.to_string(), &[], &[], true);
        f.store.users.lock().unwrap().insert(id.to_string(), facts);
    }
    let stranger = UserId::new().to_string();
    let everyone: Vec<String> = others
        .iter()
        .map(ToString::to_string)
        .chain([f.user.to_string(), stranger.clone()])
        .collect();
    for id in &everyone {
        f.decide_as(id);
    }
    assert_eq!(f.reads(), 101);
    f.clock.advance(chrono::Duration::milliseconds(600));
    for id in &everyone {
        f.decide_as(id);
    }
    assert_eq!(f.reads(), 101, "all cached, the stranger as absent");
    f.change_in_store(|u| u.active = false);
    f.pdp.refresh_subjects_now();
    assert_eq!(f.reads(), 202, "every subject in use read again");
    assert_eq!(
        *f.store.batches.lock().unwrap(),
        101usize.div_ceil(REFRESH_CHUNK),
        "in chunks of {REFRESH_CHUNK}"
    );
    f.clock.advance(chrono::Duration::milliseconds(600));
    assert!(!f.decide().allowed, "the refreshed facts serve");
    assert_eq!(
        f.decide_as(&stranger).reason.as_deref(),
        Some(reason::UNKNOWN_SUBJECT)
    );
    assert_eq!(f.reads(), 202);
}
