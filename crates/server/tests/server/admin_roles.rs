//! Who may do what in the admin API: each role's client against every operation of
//! the contract (allowed, or refused with the reason code, and the refusal in the
//! decision log), and the cross-tenant matrix — a tenant administrator of one
//! tenant naming another tenant's things gets 404 on every route that names one.

use std::collections::BTreeSet;

use gatehouse_identity_store::Backend;
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::admin_api::{call, token_for};
use crate::admin_governance::read;
use crate::web_kit::WebApp;

/// The role scopes, as a client is registered with them.
const ROLE_SCOPES: [&str; 4] = ["platform", "admin", "admin:helpdesk", "admin:audit"];

/// What each role may do, written out independently of the shipped policies: the
/// helpdesk reads and supports users, the auditor reads, the tenant administrator
/// does everything of the tenant, the platform administrator operates tenants.
fn expected_scopes(action: &str) -> BTreeSet<&'static str> {
    const HELPDESK: [&str; 11] = [
        "users.read",
        "users.sessions.read",
        "users.consents.read",
        "users.audit.read",
        "users.identities.read",
        "users.reset",
        "users.sessions.end",
        "users.consents.withdraw",
        "users.identities.write",
        "users.disable",
        "users.enable",
    ];
    if action.starts_with("tenants.") {
        return BTreeSet::from(["platform"]);
    }
    let mut scopes = BTreeSet::from(["admin"]);
    if HELPDESK.contains(&action) {
        scopes.insert("admin:helpdesk");
    }
    if action.ends_with(".read") || action == "policies.test" {
        scopes.insert("admin:audit");
    }
    scopes
}

/// Every operation of the contract: method, path (under `/admin/v1`), action and
/// the role scopes the document says are open to it.
fn operations(app: &WebApp, prefix: &str) -> Vec<(Method, String, String, BTreeSet<String>)> {
    let doc: Value = call(app, None, |http, base| {
        http.get(format!("{base}{prefix}/admin/v1/openapi.json"))
    })
    .json()
    .unwrap();
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let action = operation["x-gatehouse-action"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} names no action"))
                .to_owned();
            let scopes = operation["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} states no security"))
                .iter()
                .flat_map(|requirement| requirement["admin_token"].as_array().unwrap())
                .map(|scope| scope.as_str().unwrap().to_owned())
                .collect();
            found.push((method, path.clone(), action, scopes));
        }
    }
    assert!(found.len() > 40, "{} operations", found.len());
    found
}

/// `path` with each `{placeholder}` replaced by `fill(placeholder)`.
fn filled(path: &str, fill: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').unwrap();
        out.push_str(&rest[..open]);
        out.push_str(&fill(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out + rest
}

fn send(
    app: &WebApp,
    token: &str,
    method: &Method,
    url_path: &str,
    body: Option<&Value>,
) -> Response {
    call(app, Some(token), |http, base| {
        let request = http
            .request(method.clone(), format!("{base}{url_path}"))
            .header("If-Match", "\"1\"")
            .header("Gatehouse-Reason", "role matrix");
        match body {
            Some(body) => request.json(body),
            None => request,
        }
    })
}

fn every_role_takes_exactly_its_own_operations(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let tokens: Vec<(&str, String)> = ROLE_SCOPES
        .iter()
        .map(|scope| {
            let client = format!("role-{}", scope.replace(':', "-"));
            (
                *scope,
                token_for(&app, "default", &client, scope, &audience),
            )
        })
        .collect();

    for (method, path, action, documented) in operations(&app, "") {
        let expected = expected_scopes(&action);
        let documented: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
        assert_eq!(documented, expected, "{method} {path} ({action})");
        // Names no one has: an allowed call ends at 404 or at the body's check, so the
        // matrix changes nothing it could trip over later.
        let url_path = format!("/admin/v1{}", filled(&path, |_| "nobody-here".to_owned()));
        let body = json!({"not_a_member": true});
        let body = (method != Method::GET && method != Method::DELETE).then_some(&body);
        for (scope, token) in &tokens {
            let answer = send(&app, token, &method, &url_path, body);
            let status = answer.status().as_u16();
            let challenge = answer
                .headers()
                .get("www-authenticate")
                .map(|h| h.to_str().unwrap().to_owned());
            let (_, problem) = read(answer);
            if expected.contains(scope) {
                assert!(
                    ![401, 403].contains(&status) && status < 500,
                    "{scope} may {action} ({method} {path}): {status} {problem}"
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{scope} may not {action} ({method} {path}): {problem}"
                );
                assert_eq!(problem["error"], "forbidden", "{problem}");
                assert_eq!(problem["action"], action.as_str());
                assert_eq!(problem["reason"], "entitlement_missing");
                // The challenge names the scopes that would do (RFC 6750 §3).
                let scopes = expected.iter().copied().collect::<Vec<_>>().join(" ");
                let challenge = challenge.unwrap_or_default();
                assert!(challenge.contains("insufficient_scope"), "{challenge}");
                for scope in &expected {
                    assert!(
                        challenge.contains(scope),
                        "{challenge} lacks {scope} ({scopes})"
                    );
                }
            }
        }
    }

    // Each refusal is in the decision log, with the operator, the action and the
    // reason code; so is each permission.
    app.state.pdp.flush_log();
    let admin = &tokens[1].1;
    let (status, log) = read(call(&app, Some(admin), |http, base| {
        http.get(format!("{base}/admin/v1/decisions?limit=1000"))
    }));
    assert_eq!(status, 200, "{log}");
    let operator_decisions: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["request"]["subject"]["type"] == "operator")
        .collect();
    let refused = |client: &str, action: &str| {
        operator_decisions.iter().any(|d| {
            d["request"]["subject"]["id"] == format!("client:{client}")
                && d["request"]["action"]["name"] == action
                && d["decision"] == false
                && d["reason"] == "entitlement_missing"
        })
    };
    assert!(refused("role-admin-helpdesk", "clients.write"));
    assert!(refused("role-admin-helpdesk", "policies.write"));
    assert!(refused("role-admin-audit", "users.reset"));
    assert!(refused("role-admin", "tenants.write"));
    assert!(operator_decisions.iter().any(|d| {
        d["request"]["subject"]["id"] == "client:role-admin-helpdesk"
            && d["request"]["action"]["name"] == "users.reset"
            && d["decision"] == true
            && d["policies"] == json!(["helpdesk"])
    }));
}

gatehouse_identity_store::on_both_backends!(every_role_takes_exactly_its_own_operations);

fn a_helpdesk_resets_and_signs_out_users_but_changes_no_client(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let helpdesk = token_for(&app, "default", "desk", "admin:helpdesk", &audience);
    let auditor = token_for(&app, "default", "reader", "admin:audit", &audience);
    app.create_verified_user("carol@example.com", "correct horse battery");
    let id = app.user_id("carol@example.com").to_string();
    let user_path = format!("/admin/v1/users/{id}");

    let (status, reset) = read(send(
        &app,
        &helpdesk,
        &Method::POST,
        &format!("{user_path}/reset"),
        None,
    ));
    assert_eq!(status, 200, "{reset}");
    let (status, ended) = read(send(
        &app,
        &helpdesk,
        &Method::DELETE,
        &format!("{user_path}/sessions"),
        None,
    ));
    assert_eq!(status, 200, "{ended}");
    let (status, refused) = read(send(
        &app,
        &helpdesk,
        &Method::POST,
        "/admin/v1/clients",
        Some(&json!({"client_id": "sneaky", "name": "Sneaky"})),
    ));
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["reason"], "entitlement_missing");

    // The auditor reads the user and the audit trail of the reset, and changes
    // nothing.
    let (status, shown) = read(send(&app, &auditor, &Method::GET, &user_path, None));
    assert_eq!(status, 200, "{shown}");
    let (status, trail) = read(send(
        &app,
        &auditor,
        &Method::GET,
        &format!("{user_path}/audit"),
        None,
    ));
    assert_eq!(status, 200, "{trail}");
    assert!(
        trail["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["actor"] == "client:desk"),
        "{trail}"
    );
    let (status, _) = read(send(
        &app,
        &auditor,
        &Method::POST,
        &format!("{user_path}/disable"),
        None,
    ));
    assert_eq!(status, 403);
    let (_, still) = read(send(&app, &auditor, &Method::GET, &user_path, None));
    assert_eq!(still["active"], true, "{still}");
}

gatehouse_identity_store::on_both_backends!(
    a_helpdesk_resets_and_signs_out_users_but_changes_no_client
);

fn another_tenants_things_are_not_found_on_every_route(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let home = token_for(&app, "default", "ops-bot", "admin", &audience);
    app.create_tenant("acme", "Acme", json!({}));
    let acme = token_for(
        &app,
        "acme",
        "acme-ops",
        "admin",
        &format!("{}/t/acme/admin/v1", app.base),
    );

    // The default tenant's things, made through its own API.
    let made = |path: &str, body: Value| {
        let (status, made) = read(send(&app, &home, &Method::POST, path, Some(&body)));
        assert_eq!(status, 201, "{path}: {made}");
        made
    };
    let user = made(
        "/admin/v1/users",
        json!({"email": "dora@example.com", "invite": false}),
    );
    let user_id = user["id"].as_str().unwrap().to_owned();
    made("/admin/v1/roles", json!({"name": "exporter"}));
    made("/admin/v1/groups", json!({"display_name": "Night Shift"}));
    made(
        "/admin/v1/purposes",
        json!({"slug": "newsletter", "name": "Newsletter", "description": "Monthly news",
            "scopes": ["newsletter"], "legal_basis": "consent"}),
    );
    let theirs = |placeholder: &str| match placeholder {
        "id" => user_id.clone(),
        "role" => "exporter".to_owned(),
        "group" => "Night%20Shift".to_owned(),
        "client_id" => "ops-bot".to_owned(),
        "slug" | "purpose" => "newsletter".to_owned(),
        "identity" => gatehouse_core::ids::FederatedIdentityId::new().to_string(),
        other => panic!("no value of the default tenant for {{{other}}}"),
    };

    let mut checked = 0;
    for (method, path, _, _) in operations(&app, "/t/acme") {
        // A scope names an entry of the caller's own scope table, no thing of
        // another tenant's.
        if !path.contains('{') || path.starts_with("/scopes/") {
            continue;
        }
        let url_path = format!("/t/acme/admin/v1{}", filled(&path, theirs));
        // Bodies that would pass the checks, so the lookup is what answers.
        let body = match (method.as_str(), path.as_str()) {
            ("PATCH", "/users/{id}") => Some(json!({"given_name": "Mallory"})),
            ("PATCH", "/clients/{client_id}") => Some(json!({"name": "Mallory"})),
            ("PATCH", "/purposes/{slug}") => Some(json!({"version": 1, "name": "Mallory"})),
            ("PATCH", "/tenants/{slug}") => Some(json!({"display_name": "Mallory"})),
            ("PATCH", "/connections/{slug}") => Some(json!({"display_name": "Mallory"})),
            ("POST", "/connections/{slug}/mapping/test") => Some(json!({"claims": {}})),
            _ => None,
        };
        let (status, answer) = read(send(&app, &acme, &method, &url_path, body.as_ref()));
        assert_eq!(status, 404, "{method} {url_path}: {answer}");
        checked += 1;
    }
    assert!(checked > 20, "{checked} routes name a thing");

    // Nothing of the default tenant changed.
    let (status, dora) = read(send(
        &app,
        &home,
        &Method::GET,
        &format!("/admin/v1/users/{user_id}"),
        None,
    ));
    assert_eq!(status, 200);
    assert_eq!(dora["active"], true, "{dora}");
    assert_eq!(dora["version"], user["version"], "untouched: {dora}");
    let (_, client) = read(send(
        &app,
        &home,
        &Method::GET,
        "/admin/v1/clients/ops-bot",
        None,
    ));
    assert_ne!(client["name"], "Mallory", "{client}");

    // And the default tenant's token is no token at all at acme's API.
    let (status, _) = read(send(
        &app,
        &home,
        &Method::GET,
        "/t/acme/admin/v1/users",
        None,
    ));
    assert_eq!(status, 401);
    // The platform scope means nothing outside the platform's own tenant.
    let acme_platform = token_for(
        &app,
        "acme",
        "acme-platform",
        "platform",
        &format!("{}/t/acme/admin/v1", app.base),
    );
    let (status, _) = read(send(
        &app,
        &acme_platform,
        &Method::GET,
        "/t/acme/admin/v1/users",
        None,
    ));
    assert_eq!(
        status, 401,
        "a platform scope in another tenant holds no role"
    );
}

gatehouse_identity_store::on_both_backends!(another_tenants_things_are_not_found_on_every_route);

fn the_helpdesk_leaves_administrators_to_administrators(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let helpdesk = token_for(&app, "default", "desk", "admin:helpdesk", &audience);
    let administrator = token_for(&app, "default", "ops", "admin", &audience);
    let (status, found) = read(send(
        &app,
        &helpdesk,
        &Method::GET,
        "/admin/v1/users?filter=userName%20eq%20%22admin%22",
        None,
    ));
    assert_eq!(status, 200, "{found}");
    let admin_path = format!(
        "/admin/v1/users/{}",
        found["items"][0]["id"].as_str().unwrap()
    );

    // Reading an administrator is the helpdesk's; resetting, signing out or
    // disabling one is not.
    let (status, _) = read(send(&app, &helpdesk, &Method::GET, &admin_path, None));
    assert_eq!(status, 200);
    for (method, suffix) in [
        (Method::POST, "/reset"),
        (Method::DELETE, "/sessions"),
        (Method::POST, "/disable"),
        (Method::POST, "/enable"),
    ] {
        let (status, refused) = read(send(
            &app,
            &helpdesk,
            &method,
            &format!("{admin_path}{suffix}"),
            None,
        ));
        assert_eq!(status, 403, "{method} {suffix}: {refused}");
        assert_eq!(refused["reason"], "entitlement_missing", "{refused}");
    }
    let (_, still) = read(send(&app, &helpdesk, &Method::GET, &admin_path, None));
    assert_eq!(still["active"], true, "{still}");
    assert!(
        app.denied_by_policy("support-spares-administrators"),
        "the refusal is logged with its policy"
    );

    // A tenant administrator may.
    let (status, ended) = read(send(
        &app,
        &administrator,
        &Method::DELETE,
        &format!("{admin_path}/sessions"),
        None,
    ));
    assert_eq!(status, 200, "{ended}");
}

gatehouse_identity_store::on_both_backends!(the_helpdesk_leaves_administrators_to_administrators);
