//! The AuthZEN Authorization API over HTTP: metadata, bearer-token protection
//! (401/403), malformed input, single and batch evaluations with each semantic,
//! the reason codes of the default policy set, X-Request-ID and the decision log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_core::Clock;
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{Backend, decision_log};
use reqwest::blocking::Client as Http;
use serde_json::{Value, json};

use crate::code_flow::{SECRET, client_data, register_client};
use crate::web_kit::{WebApp, basic};

/// A confidential client that may use client_credentials, with `scopes`.
pub fn register_pep(app: &WebApp, client_id: &str, scopes: &[&str]) {
    let mut data = client_data(false);
    data.client_id = client_id.into();
    data.grant_types = vec!["client_credentials".into()];
    data.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    register_client(app, data);
}

pub fn access_token(app: &WebApp, client_id: &str, scope: &str) -> String {
    let answer = app.post_urlencoded(
        "/oauth2/token",
        Some(&basic(client_id, SECRET)),
        &format!("grant_type=client_credentials&scope={scope}"),
    );
    answer.json["access_token"].as_str().unwrap().to_owned()
}

pub struct Answer {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub request_id: Option<String>,
    pub body: Value,
}

pub fn post(
    app: &WebApp,
    path: &str,
    token: Option<&str>,
    body: &str,
    request_id: Option<&str>,
) -> Answer {
    let mut request = Http::new()
        .post(format!("{}{path}", app.base))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    if let Some(id) = request_id {
        request = request.header("X-Request-ID", id);
    }
    let response = request.send().unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, www_authenticate, request_id) = (
        response.status().as_u16(),
        header("www-authenticate"),
        header("x-request-id"),
    );
    let text = response.text().unwrap();
    Answer {
        status,
        www_authenticate,
        request_id,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn alice(app: &WebApp) -> String {
    let tenant = app.default_tenant();
    let mut conn = app.db.conn();
    users::create(
        &mut conn,
        app.clock.now(),
        tenant,
        UserData {
            emails: vec![Email {
                value: "alice@example.com".into(),
                kind: None,
                primary: true,
                verified: true,
            }],
            ..UserData::new("alice")
        },
    )
    .unwrap()
    .id
    .to_string()
}

pub fn evaluation(user: &str, action: &str, owner: &str, context: Value) -> String {
    json!({
        "subject": {"type": "user", "id": user},
        "action": {"name": action},
        "resource": {"type": "document", "id": "doc-1", "properties": {"owner": owner}},
        "context": context,
    })
    .to_string()
}

fn conformance(backend: Backend) {
    let app = WebApp::start(backend);
    register_pep(&app, "pep", &["authzen:evaluate"]);
    register_pep(&app, "other-api", &["orders:read"]);
    let user = alice(&app);
    let token = access_token(&app, "pep", "authzen:evaluate");
    let unscoped = access_token(&app, "other-api", "orders:read");
    let single = "/access/v1/evaluation";
    let batch = "/access/v1/evaluations";
    let read = evaluation(&user, "read", "bob", json!({}));

    // Metadata, at the root and for a path-routed tenant.
    let metadata: Value = app.get_json("/.well-known/authzen-configuration");
    assert_eq!(metadata["policy_decision_point"], json!(app.base));
    assert_eq!(
        metadata["access_evaluation_endpoint"],
        json!(format!("{}{single}", app.base))
    );
    assert_eq!(
        metadata["access_evaluations_endpoint"],
        json!(format!("{}{batch}", app.base))
    );
    for path in [
        "/.well-known/authzen-configuration/t/default",
        "/t/default/.well-known/authzen-configuration",
    ] {
        let tenant: Value = app.get_json(path);
        assert_eq!(
            tenant["policy_decision_point"],
            json!(format!("{}/t/default", app.base)),
            "{path}"
        );
    }

    // Protection: no token, a bad token, a token without the scope.
    let none = post(&app, single, None, &read, None);
    assert_eq!(none.status, 401);
    assert_eq!(none.www_authenticate.as_deref(), Some("Bearer"));
    let forged = post(&app, single, Some("not.a.token"), &read, None);
    assert_eq!(forged.status, 401);
    assert!(forged.www_authenticate.unwrap().contains("invalid_token"));
    let no_scope = post(&app, single, Some(&unscoped), &read, None);
    assert_eq!(no_scope.status, 403, "{:?}", no_scope.body);
    assert!(
        no_scope
            .www_authenticate
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(post(&app, batch, None, &read, None).status, 401);

    // Malformed input.
    for body in [
        "{not json".to_owned(),
        json!({"subject": {"type": "user", "id": user}, "action": {"name": "read"}}).to_string(),
        json!({"subject": {"type": "user"}, "action": {"name": "read"}, "resource": {"type": "d", "id": "1"}}).to_string(),
        evaluation(&user, "read", "bob", json!({"acr": "gold"})),
    ] {
        let answer = post(&app, single, Some(&token), &body, None);
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["error"], json!("invalid_request"));
    }
    let bad_semantic = json!({"options": {"evaluations_semantic": "sometimes"}, "evaluations": []});
    assert_eq!(
        post(&app, batch, Some(&token), &bad_semantic.to_string(), None).status,
        400
    );

    // Single evaluations and the four reason codes of the default policy set.
    let allowed = post(&app, single, Some(&token), &read, Some("authzen-test-1"));
    assert_eq!(allowed.status, 200, "{:?}", allowed.body);
    assert_eq!(allowed.body, json!({"decision": true}));
    assert_eq!(
        allowed.request_id.as_deref(),
        Some("authzen-test-1"),
        "X-Request-ID echoed"
    );
    let cases = [
        (
            evaluation(&user, "update", "bob", json!({})),
            json!({"reason": "entitlement_missing"}),
        ),
        (
            evaluation(&user, "export", &user, json!({"acr": "urn:gatehouse:aal1"})),
            json!({"reason": "insufficient_authentication", "acr_values": "urn:gatehouse:aal2"}),
        ),
        (
            evaluation(&user, "read", "bob", json!({"purpose": "marketing"})),
            json!({"reason": "consent_withdrawn"}),
        ),
        (
            evaluation(&user, "read", "bob", json!({"risk_score": 90})),
            json!({"reason": "risk_too_high"}),
        ),
    ];
    for (body, context) in cases {
        let answer = post(&app, single, Some(&token), &body, None);
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.body,
            json!({"decision": false, "context": context}),
            "{body}"
        );
    }
    // Consent granted through the consent service, then withdrawn: the next decision
    // sees each at once (the events drop the PDP's cached subject on this node).
    let marketing = evaluation(&user, "read", "bob", json!({"purpose": "marketing"}));
    {
        use gatehouse_consent::Channel;
        use gatehouse_identity_store::purposes::{LegalBasis, PurposeData};
        let tenant = app.default_tenant();
        let user_id = user.parse().unwrap();
        let consents = &app.state.consents;
        consents
            .define_purpose(
                tenant,
                "admin",
                PurposeData {
                    slug: "marketing".into(),
                    name: "Marketing".into(),
                    description: "Offers by mail".into(),
                    scopes: vec!["offers".into()],
                    legal_basis: LegalBasis::Consent,
                },
            )
            .unwrap();
        let before = post(&app, single, Some(&token), &marketing, None);
        assert_eq!(
            before.body,
            json!({"decision": false, "context": {"reason": "consent_withdrawn"}}),
            "no consent yet (and the subject is cached now)"
        );
        consents
            .grant(tenant, user_id, "pep", "marketing", 1, Channel::Api, None)
            .unwrap();
        let granted = post(&app, single, Some(&token), &marketing, None);
        assert_eq!(granted.body, json!({"decision": true}), "a granted consent");
        consents
            .withdraw(tenant, user_id, "pep", "marketing", Channel::Api)
            .unwrap();
    }
    let withdrawn = post(&app, single, Some(&token), &marketing, None);
    assert_eq!(
        withdrawn.body,
        json!({"decision": false, "context": {"reason": "consent_withdrawn"}})
    );

    let stepped_up = post(
        &app,
        single,
        Some(&token),
        &evaluation(&user, "export", &user, json!({"acr": "urn:gatehouse:aal2"})),
        None,
    );
    assert_eq!(stepped_up.body, json!({"decision": true}));

    // Batches: defaults, overrides and each semantic.
    let entries = json!([
        {"resource": {"type": "document", "id": "1", "properties": {"owner": user}}},
        {"action": {"name": "update"}, "resource": {"type": "document", "id": "2", "properties": {"owner": "bob"}}},
        {"resource": {"type": "document", "id": "3"}}
    ]);
    let mut decisions = Vec::new();
    for semantic in [
        "execute_all",
        "deny_on_first_deny",
        "permit_on_first_permit",
    ] {
        let body = json!({
            "subject": {"type": "user", "id": user},
            "action": {"name": "read"},
            "options": {"evaluations_semantic": semantic},
            "evaluations": entries,
        });
        let answer = post(&app, batch, Some(&token), &body.to_string(), None);
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let got: Vec<bool> = answer.body["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect();
        decisions.push(got);
    }
    assert_eq!(
        decisions,
        vec![vec![true, false, true], vec![true, false], vec![true]]
    );
    let denied_entry = post(
        &app,
        batch,
        Some(&token),
        &json!({"subject": {"type": "user", "id": user}, "action": {"name": "update"},
                "evaluations": [{"resource": {"type": "document", "id": "2"}}]})
        .to_string(),
        None,
    );
    assert_eq!(
        denied_entry.body,
        json!({"evaluations": [{"decision": false, "context": {"reason": "entitlement_missing"}}]})
    );
    let as_single = post(&app, batch, Some(&token), &read, None);
    assert_eq!(
        as_single.body,
        json!({"decision": true}),
        "no evaluations array: one decision"
    );

    // The decision log, once flushed.
    app.state.pdp.flush_log();
    let logged = decision_log::recent(&mut app.db.conn(), app.default_tenant(), 100).unwrap();
    assert_eq!(
        logged.len(),
        2 + 4 + 2 + 1 + (3 + 2 + 1) + 1 + 1,
        "one row per evaluation"
    );
    let first = logged
        .iter()
        .find(|d| d.request_id.as_deref() == Some("authzen-test-1"))
        .expect("the request id is logged");
    assert!(first.decision);
    assert_eq!(first.request["caller"], json!("pep"));
    assert_eq!(first.request["subject"]["id"], json!(user));
    assert!(
        first.policies.contains(&"verified-users-read".to_owned()),
        "{:?}",
        first.policies
    );
    assert!(
        logged
            .iter()
            .any(|d| d.reason.as_deref() == Some("consent_withdrawn")
                && d.policies == vec!["consent-required".to_owned()])
    );
    let stats = app.state.pdp.decision_log_stats();
    assert_eq!(
        (stats.skipped, stats.failed, stats.wait_timeouts),
        (0, 0, 0)
    );
}

fn metrics(app: &WebApp) -> String {
    Http::new()
        .get(format!("{}/metrics", app.base))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Forward-compatible but never open: members the PDP does not read are ignored
/// yet recorded and counted; a purpose-governed action asked without a purpose is
/// denied; a value of the wrong type is a 400 naming it.
fn never_fails_open(backend: Backend) {
    let app = WebApp::start(backend);
    register_pep(&app, "pep", &["authzen:evaluate"]);
    let user = alice(&app);
    let token = access_token(&app, "pep", "authzen:evaluate");
    let single = "/access/v1/evaluation";
    let batch = "/access/v1/evaluations";
    let ask = |body: &str, id: Option<&str>| post(&app, single, Some(&token), body, id);

    // `share` is governed by a purpose in the default set: without one — the member
    // misspelt, which AuthZEN says to ignore, or left out — it is denied.
    let purpose_missing = json!({"decision": false, "context": {"reason": "purpose_missing"}});
    for context in [json!({}), json!({"consent": "marketing"})] {
        let answer = ask(&evaluation(&user, "share", &user, context.clone()), None);
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body, purpose_missing, "{context}");
    }
    let named = ask(
        &evaluation(&user, "share", &user, json!({"purpose": "marketing"})),
        None,
    );
    assert_eq!(
        named.body,
        json!({"decision": false, "context": {"reason": "consent_withdrawn"}}),
        "with the purpose named, its consent decides"
    );

    // An action no purpose governs: the typo changes nothing in the answer, but it
    // is in the decision log and counted at /metrics.
    let typo = json!({
        "subject": {"type": "user", "id": user, "properties": {"departmnet": "sales"}},
        "action": {"name": "read"},
        "resource": {"type": "document", "id": "doc-1", "properties": {"owner": "bob"}},
        "context": {"consent": "marketing", "acr": 1},
        "an_extension": {"anything": true},
    });
    let answer = ask(&typo.to_string(), Some("typo-1"));
    assert_eq!(
        answer.body,
        json!({"decision": true}),
        "unknown members are ignored"
    );
    let in_batch = json!({
        "subject": {"type": "user", "id": user},
        "action": {"name": "read"},
        "evaluations": [{"resource": {"type": "document", "id": "2"}, "context": {"consent": "x"}}],
    });
    let answer = post(&app, batch, Some(&token), &in_batch.to_string(), None);
    assert_eq!(answer.body, json!({"evaluations": [{"decision": true}]}));

    // A member the PDP reads, with the wrong type: 400 naming it.
    for (body, member) in [
        (
            evaluation(&user, "read", "bob", json!({"risk_score": "high"})),
            "context.risk_score",
        ),
        (
            evaluation(&user, "read", "bob", json!({"purpose": 7})),
            "context.purpose",
        ),
        (
            evaluation(&user, "read", "bob", json!({"auth_time": "2026-01-01"})),
            "context.auth_time",
        ),
        (
            json!({
                "subject": {"type": "user", "id": user},
                "action": {"name": "read"},
                "resource": {"type": "document", "id": "doc-1", "properties": {"owner": 42}},
            })
            .to_string(),
            "resource.properties.owner",
        ),
    ] {
        let answer = ask(&body, None);
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["error"], json!("invalid_request"));
        let message = answer.body["error_description"].as_str().unwrap();
        assert!(message.contains(member), "{member}: {message}");
    }
    let bad_entry = json!({
        "subject": {"type": "user", "id": user},
        "action": {"name": "read"},
        "evaluations": [{"resource": {"type": "document", "id": "2", "properties": {"owner": ["bob"]}}}],
    });
    let answer = post(&app, batch, Some(&token), &bad_entry.to_string(), None);
    assert_eq!(
        answer.status, 200,
        "a batch reports a bad entry in place (§7.2.1)"
    );
    assert_eq!(answer.body["evaluations"][0]["decision"], json!(false));
    assert_eq!(
        answer.body["evaluations"][0]["context"]["error"]["status"],
        json!(400)
    );
    assert!(
        answer.body["evaluations"][0]["context"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resource.properties.owner"),
        "{:?}",
        answer.body
    );

    app.state.pdp.flush_log();
    let tenant = app.default_tenant();
    let logged = decision_log::recent(&mut app.db.conn(), tenant, 100).unwrap();
    let record = logged
        .iter()
        .find(|d| d.request_id.as_deref() == Some("typo-1"))
        .expect("the typo's decision is logged");
    assert_eq!(
        record.unknown_keys,
        ["context.consent", "subject.properties.departmnet"]
    );
    assert_eq!(record.request["context"]["consent"], json!("marketing"));
    assert_eq!(
        logged
            .iter()
            .filter(|d| d.reason.as_deref() == Some("purpose_missing"))
            .count(),
        2
    );

    let exposed = metrics(&app);
    for line in [
        r#"gatehouse_pdp_unknown_keys_total{key="context.consent"} 3"#,
        r#"gatehouse_pdp_unknown_keys_total{key="subject.properties.departmnet"} 1"#,
        "gatehouse_pdp_decision_log_skipped_total 0",
        "gatehouse_pdp_decision_log_failed_total 0",
        "gatehouse_pdp_decision_log_waits_total 0",
        "gatehouse_pdp_decision_log_wait_timeouts_total 0",
        "gatehouse_pdp_decision_log_queued 0",
    ] {
        assert!(exposed.contains(line), "{line} in:\n{exposed}");
    }
}

gatehouse_identity_store::on_both_backends!(never_fails_open);

/// The PEP's token is verified once and then taken from memory for up to a second:
/// a revocation through this node's RFC 7009 endpoint counts at once, and one that
/// only reached the database (another node, the CLI) within that second.
fn revoked_pep_tokens(backend: Backend) {
    use gatehouse_identity_store::revoked_tokens;
    let app = WebApp::start(backend);
    register_pep(&app, "pep", &["authzen:evaluate"]);
    let user = alice(&app);
    let ask = evaluation(&user, "read", "bob", json!({}));
    let single = "/access/v1/evaluation";
    let status = |token: &str| post(&app, single, Some(token), &ask, None).status;

    let token = access_token(&app, "pep", "authzen:evaluate");
    assert_eq!(status(&token), 200);
    assert_eq!(status(&token), 200, "served from memory");
    let revoked = Http::new()
        .post(format!("{}/oauth2/revoke", app.base))
        .header(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("pep:{SECRET}"))),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(status(&token), 401, "revoked here: refused at once");

    let token = access_token(&app, "pep", "authzen:evaluate");
    assert_eq!(status(&token), 200);
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let tenant = app.default_tenant();
    revoked_tokens::revoke(
        &mut app.db.conn(),
        app.clock.now(),
        tenant,
        claims["jti"].as_str().unwrap(),
        app.clock.now() + chrono::Duration::minutes(5),
    )
    .unwrap();
    assert_eq!(
        status(&token),
        200,
        "within the second the cached check serves"
    );
    app.advance(chrono::Duration::seconds(1));
    assert_eq!(status(&token), 401, "a second later the revocation counts");
}

gatehouse_identity_store::on_both_backends!(revoked_pep_tokens);

gatehouse_identity_store::on_both_backends!(conformance);

#[test]
fn policies_are_loaded_listed_and_tested_from_the_command_line() {
    use crate::support::{gatehouse, run, started_once, stderr, stdout};
    let dir = started_once();
    let cli = |args: &[&str]| run(&mut gatehouse(dir.path(), args));
    assert!(stdout(&cli(&["policy", "list"])).contains("built-in default serves"));

    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit (principal, action, resource) when { principal.salary > 1 };",
    )
    .unwrap();
    let refused = cli(&["policy", "load", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("salary"), "{}", stderr(&refused));

    let good = dir.path().join("good.cedar");
    std::fs::write(
        &good,
        r#"@id("readers") permit (principal, action == Gatehouse::Action::"read", resource);"#,
    )
    .unwrap();
    let loaded = cli(&["policy", "load", good.to_str().unwrap()]);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(stdout(&loaded).contains("version 1"), "{}", stdout(&loaded));
    let listed = stdout(&cli(&["policy", "list"]));
    assert!(
        listed.starts_with("1\t") && listed.contains("serving"),
        "{listed}"
    );

    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        json!({"subject": {"type": "user", "id": "nobody"}, "action": {"name": "read"}, "resource": {"type": "d", "id": "1"}}).to_string(),
    )
    .unwrap();
    let tested = cli(&["policy", "test", request.to_str().unwrap()]);
    assert!(tested.status.success(), "{}", stderr(&tested));
    let answer: Value = serde_json::from_str(&stdout(&tested)).unwrap();
    assert_eq!(answer["context"]["reason"], json!("unknown_subject"));
    assert_eq!(answer["policy_version"], json!(1));

    let decisions = cli(&["decisions", "list", "--limit", "5"]);
    assert!(decisions.status.success(), "{}", stderr(&decisions));
    assert!(
        stdout(&decisions).is_empty(),
        "policy test must not log decisions"
    );
}
