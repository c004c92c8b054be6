//! The admin REST API (`/admin/v1`) as an API client calls it: a client-credentials
//! token with the scope `admin` and the API's audience, the tenant, users (page,
//! create) and the audit log (query, NDJSON), answers as RFC 9457 problem details.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::clients::ClientData;
use gatehouse_token_issuer::client_auth::secret_hash;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::code_flow::{SECRET, assert_oauth_error};
use crate::web_kit::{WebApp, basic};

/// Registers a client-credentials client of `tenant` and returns an access token.
pub(crate) fn token_for(
    app: &WebApp,
    tenant: &str,
    client_id: &str,
    scope: &str,
    audience: &str,
) -> String {
    app.create_client(
        tenant,
        ClientData {
            secret_hash: Some(secret_hash(SECRET)),
            grant_types: vec!["client_credentials".into()],
            scopes: vec![scope.into()],
            audiences: vec![audience.into()],
            default_audience: Some(audience.into()),
            ..ClientData::new(client_id, client_id)
        },
    );
    client_token(app, tenant, client_id, SECRET)
}

/// A client-credentials access token of the client `client_id` of `tenant`.
pub(crate) fn client_token(app: &WebApp, tenant: &str, client_id: &str, secret: &str) -> String {
    let prefix = if tenant == "default" {
        String::new()
    } else {
        format!("/t/{tenant}")
    };
    let answer = app
        .post_urlencoded(
            &format!("{prefix}/oauth2/token"),
            Some(&basic(client_id, secret)),
            "grant_type=client_credentials",
        )
        .json;
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

pub(crate) fn call(
    app: &WebApp,
    token: Option<&str>,
    build: impl FnOnce(&Http, &str) -> RequestBuilder,
) -> Response {
    let http = Http::new();
    let mut request = build(&http, &app.base);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().unwrap()
}

/// The id of the user whose user name is `user_name`, read through the API.
pub(crate) fn user_id_of(app: &WebApp, admin: &str, user_name: &str) -> String {
    let listed: Value = call(app, Some(admin), |http, base| {
        http.get(format!("{base}/admin/v1/users?limit=500"))
    })
    .json()
    .unwrap();
    listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_name"] == user_name)
        .unwrap_or_else(|| panic!("no {user_name} in {listed}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn problem(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    (status, response.json().unwrap())
}

fn the_admin_api_answers_its_own_tenants_clients_only(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let no_scope = token_for(&app, "default", "reporter", "reports:read", &audience);
    let elsewhere = token_for(&app, "default", "api-bot", "admin", "https://api.example");

    let tenant = |token: Option<&str>| {
        call(&app, token, |http, base| {
            http.get(format!("{base}/admin/v1/tenant"))
        })
    };
    let ok = tenant(Some(&admin));
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().unwrap();
    assert_eq!(body["slug"], "default");
    assert_eq!(body["issuer"], app.base.as_str());

    let none = tenant(None);
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        tenant(Some(&no_scope)).status(),
        403,
        "a token without the scope"
    );
    let other_audience = tenant(Some(&elsewhere));
    assert_eq!(other_audience.status(), 401, "a token for another API");
    assert!(
        other_audience.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Another tenant is administered through its own issuer: this token is refused.
    app.create_tenant("acme", "Acme", json!({}));
    let foreign = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/t/acme/admin/v1/users"))
    });
    assert_eq!(foreign.status(), 401);
    let acme_admin = token_for(
        &app,
        "acme",
        "acme-ops",
        "admin",
        &format!("{}/t/acme/admin/v1", app.base),
    );
    let acme = call(&app, Some(&acme_admin), |http, base| {
        http.get(format!("{base}/t/acme/admin/v1/tenant"))
    });
    assert_eq!(acme.json::<Value>().unwrap()["slug"], "acme");
}

gatehouse_identity_store::on_both_backends!(the_admin_api_answers_its_own_tenants_clients_only);

fn users_are_created_and_paged_and_each_write_is_audited(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let create = |body: Value| {
        call(&app, Some(&admin), |http, base| {
            http.post(format!("{base}/admin/v1/users")).json(&body)
        })
    };

    let created =
        create(json!({"email": "lin@example.com", "given_name": "Lin", "verified": true}));
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let lin: Value = created.json().unwrap();
    assert!(
        location.ends_with(lin["id"].as_str().unwrap()),
        "{location}"
    );
    assert_eq!(lin["user_name"], "lin@example.com");
    assert_eq!(lin["given_name"], "Lin");
    assert_eq!(lin["emails"][0]["verified"], true);
    assert_eq!(lin["active"], true);
    assert_eq!(create(json!({"email": "kai@example.com"})).status(), 201);

    // Failures name the field; nothing is written.
    let (status, taken) = problem(create(json!({"email": "LIN@example.com"})));
    assert_oauth_error(status, &taken, 409, "conflict");
    let (status, unknown) = problem(create(json!({"email": "x@example.com", "nickname": "x"})));
    assert_eq!(
        (status, unknown["field"].as_str()),
        (400, Some("nickname")),
        "{unknown}"
    );
    let (status, bad) = problem(create(json!({"email": "not an address"})));
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("email")),
        "{bad}"
    );
    let (status, missing) = problem(create(json!({"given_name": "No Mail"})));
    assert_eq!(
        (status, missing["field"].as_str()),
        (400, Some("email")),
        "{missing}"
    );
    let not_json = call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/users")).body("{")
    });
    assert_eq!(problem(not_json).0, 400);

    // Pages, oldest first, with a cursor; every user once.
    let page = |query: &str| -> Value {
        call(&app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1/users{query}"))
        })
        .json()
        .unwrap()
    };
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let current = page(&query);
        let items = current["items"].as_array().unwrap();
        assert!(items.len() <= 1);
        seen.extend(
            items
                .iter()
                .map(|u| u["user_name"].as_str().unwrap().to_owned()),
        );
        match current["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=1&after={cursor}"),
            None => break,
        }
    }
    assert!(
        seen.contains(&"lin@example.com".to_owned())
            && seen.contains(&"kai@example.com".to_owned()),
        "{seen:?}"
    );
    assert_eq!(
        seen.len(),
        page("?limit=500")["items"].as_array().unwrap().len()
    );
    let (status, too_many) = problem(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users?limit=100000"))
    }));
    assert_eq!(status, 400, "{too_many}");
    let (status, stray) = problem(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users?sort=name"))
    }));
    assert_eq!(status, 400, "{stray}");

    // The audit log names the calling client as the actor; NDJSON for export.
    let audit: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?action=user.created"))
    })
    .json()
    .unwrap();
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{audit}");
    assert!(
        events.iter().all(|e| e["actor"] == "client:ops-bot"),
        "{audit}"
    );
    let export = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?actor=client:ops-bot"))
            .header("Accept", "application/x-ndjson")
    });
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = export
        .text()
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "user.created");
    let (status, limit) = problem(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?limit=5000"))
    }));
    assert_eq!(
        (status, limit["field"].as_str()),
        (400, Some("limit")),
        "{limit}"
    );
}

gatehouse_identity_store::on_both_backends!(users_are_created_and_paged_and_each_write_is_audited);

fn a_user_is_disabled_enabled_reset_and_deleted_by_id_with_a_reason(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let mut browser = crate::code_flow::signed_in(&app);
    assert_eq!(browser.get("/account").status, 200, "signed in");

    let uma = user_id_of(&app, &admin, "uma@example.com");
    let act = |verb: &str, why: Option<&str>| {
        call(&app, Some(&admin), |http, base| {
            let request = http.post(format!("{base}/admin/v1/users/{uma}/{verb}"));
            match why {
                Some(why) => request.header("Gatehouse-Reason", why),
                None => request,
            }
        })
    };

    // Signed out everywhere first: the session ends, the account stays.
    let sessions = |method: reqwest::Method, why: Option<&str>| {
        call(&app, Some(&admin), |http, base| {
            let request = http.request(method, format!("{base}/admin/v1/users/{uma}/sessions"));
            match why {
                Some(why) => request.header("Gatehouse-Reason", why),
                None => request,
            }
        })
    };
    let live: Value = sessions(reqwest::Method::GET, None).json().unwrap();
    assert_eq!(live["items"].as_array().unwrap().len(), 1, "{live}");
    assert_eq!(problem(sessions(reqwest::Method::DELETE, None)).0, 400);
    let ended: Value = sessions(reqwest::Method::DELETE, Some("lost laptop"))
        .json()
        .unwrap();
    assert_eq!(ended["sessions_ended"], 1);
    assert_ne!(browser.get("/account").status, 200, "signed out everywhere");
    let live: Value = sessions(reqwest::Method::GET, None).json().unwrap();
    assert!(live["items"].as_array().unwrap().is_empty());
    browser = crate::code_flow::signed_in_again(&app);

    let (status, unexplained) = problem(act("disable", None));
    assert_eq!(
        (status, unexplained["field"].as_str()),
        (400, Some("Gatehouse-Reason")),
        "{unexplained}"
    );
    let disabled = act("disable", Some("ticket 4711: account takeover suspected"));
    assert_eq!(disabled.status(), 200);
    let disabled: Value = disabled.json().unwrap();
    assert_eq!(disabled["was_active"], true);
    assert!(
        disabled["sessions_ended"].as_u64().unwrap() >= 1,
        "{disabled}"
    );
    assert_ne!(
        browser.get("/account").status,
        200,
        "the session outlived the deactivation"
    );
    let shown: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{uma}"))
    })
    .json()
    .unwrap();
    assert_eq!(shown["active"], false);

    let enabled: Value = act("enable", Some("ticket 4711: cleared")).json().unwrap();
    assert_eq!(enabled["was_disabled"], true);

    let before = app.smtp.messages().len();
    let reset: Value = act("reset", Some("ticket 4712: identity checked by video call"))
        .json()
        .unwrap();
    assert_eq!(reset["link_sent"], true, "{reset}");
    assert!(app.mails(before + 1).len() > before, "no reset mail");

    let audit: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?actor=client:ops-bot"))
    })
    .json()
    .unwrap();
    let reasons: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"ticket 4711: account takeover suspected")
            && reasons.contains(&"ticket 4711: cleared"),
        "{audit}"
    );

    let deleted = call(&app, Some(&admin), |http, base| {
        http.delete(format!("{base}/admin/v1/users/{uma}"))
            .header("Gatehouse-Reason", "asked to be forgotten")
    });
    assert_eq!(deleted.status(), 204);
    let gone = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{uma}"))
    });
    assert_eq!(problem(gone).0, 404);
    let nonsense = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/not-a-user"))
    });
    assert_eq!(problem(nonsense).0, 404);
}

gatehouse_identity_store::on_both_backends!(
    a_user_is_disabled_enabled_reset_and_deleted_by_id_with_a_reason
);

fn a_user_is_changed_only_at_the_version_that_was_read(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let created: Value = call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/users"))
            .json(&json!({"email": "ola@example.com", "given_name": "Ola", "family_name": "N"}))
    })
    .json()
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let read = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{id}"))
    });
    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
    let patch = |tag: Option<&str>, body: Value| {
        call(&app, Some(&admin), |http, base| {
            let request = http
                .patch(format!("{base}/admin/v1/users/{id}"))
                .json(&body);
            match tag {
                Some(tag) => request.header("If-Match", tag),
                None => request,
            }
        })
    };

    let (status, _) = problem(patch(None, json!({"given_name": "Ola-Marie"})));
    assert_eq!(status, 428, "a change without If-Match");
    let changed = patch(
        Some(&etag),
        json!({"given_name": "Ola-Marie", "family_name": null, "locale": "de"}),
    );
    assert_eq!(changed.status(), 200);
    let new_etag = changed.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let changed: Value = changed.json().unwrap();
    assert_eq!(changed["given_name"], "Ola-Marie");
    assert_eq!(changed["family_name"], Value::Null, "null clears");
    assert_eq!(changed["locale"], "de");

    // A second writer that read before the change: refused, nothing overwritten.
    let (status, stale) = problem(patch(Some(&etag), json!({"given_name": "Olaf"})));
    assert_oauth_error(status, &stale, 412, "precondition_failed");
    let now: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{id}"))
    })
    .json()
    .unwrap();
    assert_eq!(now["given_name"], "Ola-Marie");
    let (status, unknown) = problem(patch(Some(&new_etag), json!({"emails": []})));
    assert_eq!(
        (status, unknown["field"].as_str()),
        (400, Some("emails")),
        "{unknown}"
    );
    assert_eq!(problem(patch(Some("W/\"x\""), json!({}))).0, 412);

    let audit: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?action=user.updated"))
    })
    .json()
    .unwrap();
    assert_eq!(
        audit["items"][0]["details"]["changed"],
        json!(["given_name", "family_name", "locale"]),
        "{audit}"
    );
}

gatehouse_identity_store::on_both_backends!(a_user_is_changed_only_at_the_version_that_was_read);

fn roles_and_groups_are_made_and_given_through_the_api(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let user: Value = call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/users"))
            .json(&json!({"email": "ida@example.com"}))
    })
    .json()
    .unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let path = path.to_owned();
        call(&app, Some(&admin), move |http, base| {
            let request = http.request(method, format!("{base}/admin/v1{path}"));
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        })
    };
    use reqwest::Method;

    let role = send(
        Method::POST,
        "/roles",
        Some(json!({"name": "auditor", "description": "reads logs"})),
    );
    assert_eq!(role.status(), 201);
    let (status, _) = problem(send(
        Method::POST,
        "/roles",
        Some(json!({"name": "Auditor"})),
    ));
    assert_eq!(status, 409, "role names compare folded");
    let roles: Value = send(Method::GET, "/roles", None).json().unwrap();
    assert!(
        roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "auditor" && r["description"] == "reads logs"),
        "{roles}"
    );
    let given: Value = send(Method::PUT, &format!("/users/{id}/roles/auditor"), None)
        .json()
        .unwrap();
    assert_eq!(given["changed"], true);
    let again: Value = send(Method::PUT, &format!("/users/{id}/roles/auditor"), None)
        .json()
        .unwrap();
    assert_eq!(again["changed"], false, "idempotent");
    assert_eq!(
        problem(send(Method::PUT, &format!("/users/{id}/roles/nope"), None)).0,
        404
    );
    let taken: Value = send(Method::DELETE, &format!("/users/{id}/roles/auditor"), None)
        .json()
        .unwrap();
    assert_eq!(taken["changed"], true);

    assert_eq!(
        send(
            Method::POST,
            "/groups",
            Some(json!({"display_name": "Night Shift"}))
        )
        .status(),
        201
    );
    let groups: Value = send(Method::GET, "/groups", None).json().unwrap();
    assert!(
        groups["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["display_name"] == "Night Shift"),
        "{groups}"
    );
    let joined: Value = send(
        Method::PUT,
        &format!("/users/{id}/groups/Night%20Shift"),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(joined["changed"], true);
    let left: Value = send(
        Method::DELETE,
        &format!("/users/{id}/groups/Night%20Shift"),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(left["changed"], true);

    let audit: Value = send(Method::GET, "/audit?actor=client:ops-bot", None)
        .json()
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "role.created",
        "user.role_assigned",
        "user.role_removed",
        "group.created",
        "group.member_added",
        "group.member_removed",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
}

gatehouse_identity_store::on_both_backends!(roles_and_groups_are_made_and_given_through_the_api);

fn a_user_is_exported_with_everything_held_about_them(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    // A user who signed up, signed in and gave a consent in the code flow.
    crate::code_flow::register(&app, false);
    let mut browser = crate::code_flow::signed_in(&app);
    crate::code_flow::get_code(&mut browser, "");
    let uma = user_id_of(&app, &admin, "uma@example.com");

    let exported = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{uma}/export"))
    });
    assert_eq!(exported.status(), 200);
    assert!(
        exported.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let document: Value = exported.json().unwrap();
    assert_eq!(document["user"]["id"], uma.as_str());
    assert_eq!(document["user"]["emails"][0]["value"], "uma@example.com");
    let kinds: Vec<&str> = document["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["password"]);
    assert!(
        !document.to_string().contains("$argon2"),
        "a secret left the store"
    );
    assert_eq!(
        document["sessions"].as_array().unwrap().len(),
        1,
        "{document}"
    );
    let actions: Vec<&str> = document["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"user.registered") && actions.contains(&"login.succeeded"),
        "{actions:?}"
    );
    // The export itself is on record.
    let audit: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?action=user.exported"))
    })
    .json()
    .unwrap();
    assert_eq!(audit["items"][0]["target"], format!("user:{uma}"));
    assert_eq!(audit["items"][0]["actor"], "client:ops-bot");
}

gatehouse_identity_store::on_both_backends!(a_user_is_exported_with_everything_held_about_them);

/// Erasure (GDPR Art. 17): deleting a user destroys the key their audit events'
/// personal data was sealed with. The events stay, the chains still verify, and
/// nothing the events said of the person — address, IP address — can be read.
fn an_erased_user_leaves_a_verifiable_trail_with_nothing_about_them(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    crate::code_flow::register(&app, false);
    let mut browser = crate::code_flow::signed_in(&app);
    crate::code_flow::get_code(&mut browser, "");
    let uma = user_id_of(&app, &admin, "uma@example.com");
    // A failed sign-in names what was typed, not the account.
    let failed = app
        .browser()
        .sign_in("uma@example.com", "not her password at all");
    assert_ne!(failed.status, 303, "the wrong password signed in");
    let failures = |app: &WebApp| -> Value {
        call(app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1/audit?action=login.failed"))
        })
        .json()
        .unwrap()
    };
    let before_failures = failures(&app);
    assert!(
        before_failures.to_string().contains("uma@example.com"),
        "{before_failures}"
    );
    let trail = |app: &WebApp| -> Value {
        call(app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1/users/{uma}/audit"))
        })
        .json()
        .unwrap()
    };
    let before = trail(&app);
    let personal = |events: &Value| {
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                let text = e.to_string();
                text.contains("uma@example.com") || !e["ip"].is_null()
            })
            .count()
    };
    assert!(
        personal(&before) > 0,
        "the trail held personal data: {before}"
    );
    let stored_before = app.audit_events(500).len();

    let deleted = call(&app, Some(&admin), |http, base| {
        http.delete(format!("{base}/admin/v1/users/{uma}"))
            .header("Gatehouse-Reason", "erasure request 12")
    });
    assert!(deleted.status().is_success(), "{}", deleted.status());

    // Every event is still there (plus the deletion), the chains verify...
    let mut conn = app.db.conn();
    let stored = gatehouse_identity_store::audit::list(
        &mut conn,
        app.default_tenant(),
        &gatehouse_identity_store::PageRequest::first(500),
    )
    .unwrap()
    .items;
    assert!(stored.len() > stored_before, "no event was removed");
    let report = gatehouse_identity_store::audit::verify(&mut conn, &app.state.cipher).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    // ...and what they said of her is unreadable, to the operator and in the store.
    let after: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!(
            "{base}/admin/v1/audit?target=user:{uma}&limit=1000"
        ))
    })
    .json()
    .unwrap();
    let events = after["items"].as_array().unwrap();
    assert!(events.iter().any(|e| e["erased"] == true), "{after}");
    assert_eq!(personal(&after), 0, "{after}");
    let after_failures = failures(&app);
    assert!(
        !after_failures.to_string().contains("uma@example.com")
            && after_failures["items"][0]["erased"] == true,
        "{after_failures}"
    );
    let deletion = events
        .iter()
        .find(|e| e["action"] == "user.deleted")
        .expect("the deletion is on record");
    assert_eq!(deletion["details"]["reason"], "erasure request 12");
    assert!(
        !stored.iter().any(|e| {
            e.details.contains("uma@example.com")
                || (e.sealed_for.is_none()
                    && e.target.as_deref() == Some(&format!("user:{uma}"))
                    && e.ip.is_some())
        }),
        "personal data in clear in the store"
    );
}

gatehouse_identity_store::on_both_backends!(
    an_erased_user_leaves_a_verifiable_trail_with_nothing_about_them
);

/// A user's token, even with the scope and audience, is not an admin credential:
/// the client would act with admin power on the word of whichever user consented.
#[test]
fn a_users_token_is_refused_by_the_admin_api() {
    use crate::code_flow::{VERIFIER, client_data, exchange, register_client, signed_in};

    let app = WebApp::start(Backend::Sqlite);
    let audience = format!("{}/admin/v1", app.base);
    register_client(
        &app,
        ClientData {
            scopes: vec!["openid".into(), "admin".into()],
            audiences: vec![audience.clone()],
            default_audience: Some(audience.clone()),
            ..client_data(true)
        },
    );
    let mut browser = signed_in(&app);
    let query = crate::code_flow::authorize_query("")
        .replace("scope=openid%20profile%20email", "scope=openid%20admin");
    let answer = browser.get(&query);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location().unwrap();
    let code = crate::code_flow::param(&location, "code").expect("a code");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let user_token = tokens["access_token"].as_str().unwrap();
    let (status, refused) = problem(call(&app, Some(user_token), |http, base| {
        http.get(format!("{base}/admin/v1/tenant"))
    }));
    assert_eq!(status, 403, "{refused}");
}

fn clients_are_registered_read_and_deleted_through_the_api(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let register = |body: Value| {
        call(&app, Some(&admin), |http, base| {
            http.post(format!("{base}/admin/v1/clients")).json(&body)
        })
    };
    let created = register(json!({
        "name": "Reporting",
        "client_id": "reporting",
        "grants": ["client_credentials"],
        "scopes": ["reports:read"],
        "audiences": ["https://api.example"],
    }));
    assert_eq!(created.status(), 201);
    let created: Value = created.json().unwrap();
    let secret = created["client_secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert_eq!(created["id_token_alg"], "RS256");

    // The secret works at the token endpoint.
    let token = |secret: &str| {
        Http::new()
            .post(format!("{}/oauth2/token", app.base))
            .header(
                "Authorization",
                format!("Basic {}", STANDARD.encode(format!("reporting:{secret}"))),
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .unwrap()
    };
    assert_eq!(token(&secret).status(), 200);

    let shown: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/clients/reporting"))
    })
    .json()
    .unwrap();
    assert_eq!(shown["grants"], json!(["client_credentials"]));
    assert!(shown.get("client_secret").is_none(), "{shown}");
    let listed: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/clients"))
    })
    .json()
    .unwrap();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == "reporting"),
        "{listed}"
    );

    let (status, bad) = problem(register(
        json!({"name": "x", "redirect_uris": ["http://evil.example/cb"]}),
    ));
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("redirect_uri")),
        "{bad}"
    );
    let (status, unknown) = problem(register(json!({"name": "x", "secret": "mine"})));
    assert_eq!(
        (status, unknown["field"].as_str()),
        (400, Some("secret")),
        "{unknown}"
    );
    let (status, _) = problem(register(json!({"name": "Again", "client_id": "reporting"})));
    assert_eq!(status, 409);

    // Rotation: the new secret works, the old one stops (once the node's client
    // cache hears of the change, a moment later).
    let rotated: Value = call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/clients/reporting/secret"))
    })
    .json()
    .unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while token(&secret).status() != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old secret still works"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(token(&new_secret).status(), 200);
    let secret = new_secret;

    let deleted = call(&app, Some(&admin), |http, base| {
        http.delete(format!("{base}/admin/v1/clients/reporting"))
    });
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        problem(call(&app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1/clients/reporting"))
        }))
        .0,
        404
    );
    // The node's client cache hears of the deletion by event, a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while token(&secret).status() != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "a deleted client's secret still works"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

gatehouse_identity_store::on_both_backends!(
    clients_are_registered_read_and_deleted_through_the_api
);

/// An account made through the API is invited by mail: the link lets the user
/// choose a password, and using it proves the address, so sign-in works at once.
fn an_invited_user_chooses_a_password_and_signs_in(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let before = app.smtp.messages().len();
    let created: Value = call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/users"))
            .json(&json!({"email": "ivy@example.com", "given_name": "Ivy"}))
    })
    .json()
    .unwrap();
    assert_eq!(created["invitation_sent"], true, "{created}");
    assert_eq!(created["emails"][0]["verified"], false);

    let mail = app.mails(before + 1).pop().unwrap();
    assert!(mail.header("to").unwrap().contains("ivy@example.com"));
    let (path, token) = app.recovery_link(&mail);
    let mut browser = app.browser();
    let form = browser.get(&path);
    assert_eq!(form.status, 200, "{}", form.body);
    let password = "harbor-violet-quilt-58-lantern";
    let done = browser.post_form(
        "/recover",
        &form,
        &[("token", &token), ("new_password", password)],
    );
    assert_eq!(done.status, 200, "{}", done.body);

    let mut fresh = app.browser();
    let signed_in = fresh.sign_in("ivy@example.com", password);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let id = created["id"].as_str().unwrap();
    let now: Value = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{id}"))
    })
    .json()
    .unwrap();
    assert_eq!(
        now["emails"][0]["verified"], true,
        "the link proved the address"
    );

    // No invitation asked for: no mail.
    let quiet_before = app.smtp.messages().len();
    let quiet: Value = call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/users"))
            .json(&json!({"email": "max@example.com", "invite": false}))
    })
    .json()
    .unwrap();
    assert_eq!(quiet["invitation_sent"], Value::Null);
    assert_eq!(app.smtp.messages().len(), quiet_before);
}

gatehouse_identity_store::on_both_backends!(an_invited_user_chooses_a_password_and_signs_in);

fn users_are_found_by_a_scim_filter_a_page_at_a_time(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    for email in ["ann@acme.example", "bob@other.example", "cat@acme.example"] {
        let made = call(&app, Some(&admin), |http, base| {
            http.post(format!("{base}/admin/v1/users"))
                .json(&json!({"email": email, "invite": false}))
        });
        assert_eq!(made.status(), 201);
    }
    let list = |query: &str| {
        let answer = call(&app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1/users?{query}"))
        });
        (answer.status().as_u16(), answer.json::<Value>().unwrap())
    };
    let filter = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();

    let (status, first) = list(&format!(
        "limit=1&filter={}",
        filter("emails.value co \"@ACME.example\"")
    ));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["items"][0]["emails"][0]["value"], "ann@acme.example");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = list(&format!(
        "limit=1&after={cursor}&filter={}",
        filter("emails.value co \"@ACME.example\"")
    ));
    assert_eq!(second["items"][0]["emails"][0]["value"], "cat@acme.example");
    assert_eq!(
        second["next_cursor"],
        Value::Null,
        "the last match: no more pages"
    );

    let (_, precedence) = list(&format!(
        "filter={}",
        filter("emails.value sw \"bob\" or emails.value sw \"ann\" and not (active eq true)")
    ));
    let found: Vec<&str> = precedence["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["emails"][0]["value"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["bob@other.example"], "and binds tighter than or");

    for bad in [
        "emails.value co",
        "userName zz \"a\"",
        "active eq \"yes\"",
        "phoneNumbers pr",
    ] {
        let (status, problem) = list(&format!("filter={}", filter(bad)));
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(problem["field"], "filter", "{bad}: {problem}");
    }
}

gatehouse_identity_store::on_both_backends!(users_are_found_by_a_scim_filter_a_page_at_a_time);

fn partners_identity_providers_are_managed_through_the_api(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let send = |method: reqwest::Method, path: &str, body: Option<Value>, etag: Option<&str>| {
        call(&app, Some(&admin), |http, base| {
            let mut request = http
                .request(method, format!("{base}/admin/v1{path}"))
                .header("Gatehouse-Reason", "partner offboarded");
            if let Some(etag) = etag {
                request = request.header("If-Match", etag);
            }
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        })
    };
    let secret = "partner-client-secret-value";
    let created = send(
        reqwest::Method::POST,
        "/connections",
        Some(json!({
            "slug": "partner",
            "display_name": "Partner Corp",
            "client_secret": secret,
            "domains": ["Partner.Example."],
            "settings": {"issuer": "https://partner.example", "client_id": "gatehouse"},
            "mapping": {"rules": [
                {"from": "email", "to": "email", "transforms": ["lower"], "required": true},
                {"from": "groups", "to": "group", "transforms": [{"regex": "^sales-(.+)$"}]}
            ]}
        })),
        None,
    );
    assert_eq!(created.status(), 201);
    let created: Value = created.json().unwrap();
    assert_eq!(created["domains"], json!(["partner.example"]));
    assert_eq!(created["secret_set"], true);
    assert!(
        !created.to_string().contains(secret),
        "never shown: {created}"
    );
    // Sealed at rest: the row does not hold it in clear.
    {
        use diesel::prelude::*;
        use gatehouse_identity_store::schema::federation_connections as stored;
        let sealed: Vec<Option<String>> = stored::table
            .select(stored::secrets)
            .load(&mut *app.db.conn())
            .unwrap();
        assert_eq!(sealed.len(), 1);
        assert!(
            sealed.iter().flatten().all(|value| !value.contains(secret)),
            "the secret in clear: {sealed:?}"
        );
    }

    // A rule that could never apply is refused when saved, naming the field.
    let (status, refused) = problem(send(
        reqwest::Method::POST,
        "/connections",
        Some(json!({
            "slug": "other", "display_name": "Other", "client_secret": "s",
            "settings": {"issuer": "https://other.example", "client_id": "g"},
            "mapping": {"rules": [{"from": "groups", "to": "owner"}]}
        })),
        None,
    ));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["field"], "mapping", "{refused}");

    // Sample claims through the rules; a missing required claim names its rule.
    let tried: Value = send(
        reqwest::Method::POST,
        "/connections/partner/mapping/test",
        Some(
            json!({"claims": {"email": "Ann@Partner.Example", "groups": ["sales-emea", "staff"]}}),
        ),
        None,
    )
    .json()
    .unwrap();
    assert_eq!(tried["email"], "ann@partner.example");
    assert_eq!(tried["groups"], json!(["emea"]));
    let (status, missing) = problem(send(
        reqwest::Method::POST,
        "/connections/partner/mapping/test",
        Some(json!({"claims": {"groups": []}})),
        None,
    ));
    assert_eq!(status, 400);
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("mapping rule 1"),
        "{missing}"
    );

    // Changed only at the version read.
    let shown = send(reqwest::Method::GET, "/connections/partner", None, None);
    let etag = shown.headers()["etag"].to_str().unwrap().to_owned();
    let changed = send(
        reqwest::Method::PATCH,
        "/connections/partner",
        Some(json!({"enabled": false, "client_secret": "rotated-secret"})),
        Some(&etag),
    );
    assert_eq!(changed.status(), 200);
    let stale = send(
        reqwest::Method::PATCH,
        "/connections/partner",
        Some(json!({"enabled": true})),
        Some(&etag),
    );
    assert_eq!(stale.status(), 412);

    assert_eq!(
        send(reqwest::Method::DELETE, "/connections/partner", None, None).status(),
        204
    );
    assert_eq!(
        send(reqwest::Method::GET, "/connections/partner", None, None).status(),
        404
    );
    let actions: Vec<(String, String, Value)> = app
        .audit_events(50)
        .into_iter()
        .filter(|e| e.action.starts_with("connection."))
        .map(|e| (e.action, e.actor, serde_json::from_str(&e.details).unwrap()))
        .collect();
    let names: Vec<&str> = actions.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "connection.created",
            "connection.updated",
            "connection.deleted"
        ]
    );
    assert!(
        actions
            .iter()
            .all(|(_, actor, _)| actor == "client:ops-bot")
    );
    assert_eq!(
        actions[1].2["changed"],
        json!(["client_secret", "enabled"]),
        "{:?}",
        actions[1].2
    );
    assert_eq!(actions[2].2["reason"], "partner offboarded");
}

gatehouse_identity_store::on_both_backends!(
    partners_identity_providers_are_managed_through_the_api
);
