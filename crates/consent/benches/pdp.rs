//! Policy decision point throughput: evaluations per second of `Pdp::evaluate` with
//! a realistic policy set (the default set plus 40 role and resource-type rules).
//!
//! - `engine`: subject facts from memory — Cedar evaluation, entity and context
//!   building, the decision-log hand-off; what the PDP itself costs.
//! - `engine_realistic`: the same against `benches/realistic.cedar` (49 policies,
//!   the set of the HTTP load run).
//! - `sqlite`: the same with facts read from a SQLite store (user, roles, groups,
//!   consents: four indexed reads per evaluation).
//! - `sqlite_cached`: the same PDP watching an event bus, so the subject comes from
//!   its cache after the first read (what the server does).
//!
//! Run with `cargo bench -p gatehouse-consent --bench pdp`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_consent::ConsentError;
use gatehouse_consent::pdp::{
    DEFAULT_POLICIES, DecisionSink, EvaluationRequest, Pdp, PdpConfig, PolicySource, StoreFacts,
    StoredPolicies, SubjectFacts, UserFacts,
};
use gatehouse_core::events::EventBus;
use gatehouse_core::ids::TenantId;
use gatehouse_core::{Clock, ManualClock, SharedClock};
use gatehouse_identity_store::decision_log::NewDecision;
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{roles, tenants};
use serde_json::json;

fn policy_text() -> String {
    let mut text = DEFAULT_POLICIES.to_owned();
    for i in 0..20 {
        text.push_str(&format!(
            "\n@id(\"role-{i}\") permit (principal in Gatehouse::Role::\"role-{i}\", action in [Gatehouse::Action::\"read\", Gatehouse::Action::\"update\"], resource) when {{ resource.type == \"type-{i}\" }};"
        ));
        text.push_str(&format!(
            "\n@id(\"dept-{i}\") permit (principal, action == Gatehouse::Action::\"list\", resource) when {{ principal.hasTag(\"department\") && principal.getTag(\"department\") == \"dept-{i}\" && context.hour >= 6 && context.hour < 22 }};"
        ));
    }
    text
}

#[derive(Debug)]
struct Fixed {
    text: String,
    user: UserFacts,
}

impl PolicySource for Fixed {
    fn latest_version(&self, _: TenantId) -> Result<Option<i64>, ConsentError> {
        Ok(Some(1))
    }
    fn latest(&self, _: TenantId) -> Result<Option<StoredPolicies>, ConsentError> {
        Ok(Some(StoredPolicies {
            version: 1,
            text: self.text.clone(),
        }))
    }
    fn save(&self, _: TenantId, _: DateTime<Utc>, _: &str, _: &str) -> Result<i64, ConsentError> {
        Ok(1)
    }
}

impl SubjectFacts for Fixed {
    fn user(
        &self,
        _: TenantId,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Option<UserFacts>, ConsentError> {
        Ok(Some(self.user.clone()))
    }
}

#[derive(Debug)]
struct Discard;

impl DecisionSink for Discard {
    fn write(&self, batch: &[NewDecision]) -> Result<usize, ConsentError> {
        Ok(batch.len())
    }
}

fn request(user: &str) -> EvaluationRequest {
    let body = json!({
        "subject": {"type": "user", "id": user},
        "action": {"name": "update"},
        "resource": {"type": "type-7", "id": "d-42", "properties": {"owner": "someone-else", "sensitivity": "internal"}},
        "context": {"acr": "urn:gatehouse:aal2", "ip": "192.0.2.10", "risk_score": 20, "purpose": "analytics", "auth_time": 1_700_000_000}
    });
    EvaluationRequest::from_json(body.to_string().as_bytes()).unwrap()
}

fn config() -> PdpConfig {
    PdpConfig {
        version_check: Duration::from_secs(3600),
        ..PdpConfig::default()
    }
}

fn engine(c: &mut Criterion) {
    engine_with(c, "engine", policy_text());
    // The same request against the 7 default policies: what the set's size costs.
    engine_with(c, "engine_default_set", DEFAULT_POLICIES.to_owned());
    engine_with(
        c,
        "engine_realistic",
        include_str!("realistic.cedar").to_owned(),
    );
}

fn engine_with(c: &mut Criterion, name: &str, text: String) {
    let fixed = Arc::new(Fixed {
        text,
        user: UserFacts {
            id: "u-1".into(),
            user_name: "u1".into(),
            active: true,
            email_verified: true,
            roles: vec!["role-3".into(), "role-7".into(), "member".into()],
            groups: vec!["Sales".into(), "EMEA".into()],
            idps: vec![],
            partners: vec![],
            consents: vec![
                "pep:analytics".into(),
                "pep:marketing".into(),
                "crm:support".into(),
            ],
            attributes: vec![
                ("department".into(), "dept-5".into()),
                ("level".into(), "3".into()),
            ],
        },
    });
    let clock: SharedClock = Arc::new(ManualClock::fixed());
    let pdp = Pdp::with_parts(clock, fixed.clone(), fixed, Arc::new(Discard), config()).unwrap();
    let tenant = TenantId::new();
    let request = request("u-1");
    let decision = pdp.evaluate(tenant, "pep", &request, None).unwrap();
    assert!(decision.allowed || name != "engine", "{decision:?}");
    bench_evaluate(c, name, &pdp, tenant, &request);
}

/// One decision per iteration, as the `pdp` group's `name`.
fn bench_evaluate(
    c: &mut Criterion,
    name: &str,
    pdp: &Pdp,
    tenant: TenantId,
    request: &EvaluationRequest,
) {
    let mut group = c.benchmark_group("pdp");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            black_box(
                pdp.evaluate(tenant, "pep", black_box(request), None)
                    .unwrap(),
            )
        })
    });
    group.finish();
}

fn sqlite(c: &mut Criterion) {
    let db = TestDb::sqlite();
    let mut conn = db.conn();
    let clock = ManualClock::fixed();
    let now = clock.now();
    let tenant = tenants::create(
        &mut conn,
        now,
        tenants::TenantData {
            slug: "bench".into(),
            display_name: "Bench".into(),
            ..Default::default()
        },
    )
    .unwrap()
    .id;
    let user = users::create(
        &mut conn,
        now,
        tenant,
        UserData {
            emails: vec![Email {
                value: "u@example.test".into(),
                kind: None,
                primary: true,
                verified: true,
            }],
            ..UserData::new("u1")
        },
    )
    .unwrap();
    let role = roles::create(
        &mut conn,
        now,
        tenant,
        roles::RoleData {
            name: "role-7".into(),
            description: None,
        },
    )
    .unwrap();
    roles::assign(&mut conn, now, tenant, role.id, user.id).unwrap();
    drop(conn);
    let text = policy_text();
    let shared: SharedClock = Arc::new(clock);
    for cached in [false, true] {
        sqlite_with(c, &db, tenant, &user.id.to_string(), &text, &shared, cached);
    }
}

fn sqlite_with(
    c: &mut Criterion,
    db: &TestDb,
    tenant: TenantId,
    user: &str,
    text: &str,
    shared: &SharedClock,
    cached: bool,
) {
    let bus = EventBus::in_process();
    let pdp = Pdp::with_parts(
        Arc::clone(shared),
        Arc::new(Fixed {
            text: text.to_owned(),
            user: UserFacts::default(),
        }),
        Arc::new(StoreFacts::new(db.pool().clone())),
        Arc::new(Discard),
        config(),
    )
    .unwrap();
    if cached {
        pdp.watch(&bus);
    }
    // No consent for the purpose in the store: a consent_withdrawn denial, which
    // reads as much as a permit does.
    let name = if cached { "sqlite_cached" } else { "sqlite" };
    bench_evaluate(c, name, &pdp, tenant, &request(user));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    targets = engine, sqlite
}
criterion_main!(benches);
