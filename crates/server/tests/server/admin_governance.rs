//! The admin API's keys, policies, decision log, purposes, a user's consents and
//! client changes, on both backends: each write is audited with the calling client, each refusal
//! is a problem naming what was wrong, and what is read is what was written.

use gatehouse_identity_store::Backend;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::admin_api::{call, token_for, user_id_of};
use crate::web_kit::WebApp;

/// The string `member` of each element of the array `items`.
pub(crate) fn members<'a>(items: &'a Value, member: &str) -> Vec<&'a str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[member].as_str().unwrap())
        .collect()
}

/// The status and JSON body of an answer.
pub(crate) fn read(answer: Response) -> (u16, Value) {
    let status = answer.status().as_u16();
    (status, answer.json().unwrap_or(Value::Null))
}

fn keys_policies_and_purposes_are_operated_through_the_api(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let get = |path: &str| {
        read(call(&app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1{path}"))
        }))
    };
    let send = |method: reqwest::Method, path: &str, body: Value| {
        read(call(&app, Some(&admin), |http, base| {
            http.request(method, format!("{base}/admin/v1{path}"))
                .json(&body)
        }))
    };

    // Keys: the token above was signed, so an ES256 key is active; a rotation
    // promotes the next one and keeps the old published.
    let (status, keys) = get("/keys");
    assert_eq!(status, 200);
    let active: Vec<&Value> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "active")
        .collect();
    assert!(!active.is_empty(), "{keys}");
    assert!(
        active[0]["public_jwk"].get("d").is_none(),
        "only public parts"
    );
    let (status, rotation) = send(
        reqwest::Method::POST,
        "/keys/rotate",
        json!({"alg": "ES256"}),
    );
    assert_eq!(status, 200, "{rotation}");
    let (_, after) = get("/keys");
    assert!(
        after["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == rotation["kid"]),
        "{after}"
    );
    let (status, bad) = send(
        reqwest::Method::POST,
        "/keys/rotate",
        json!({"alg": "HS256"}),
    );
    assert_eq!((status, bad["field"].as_str()), (400, Some("alg")), "{bad}");

    // Policies: a set that does not parse is refused and nothing is saved; a good
    // one is versioned and serves.
    let put_policies = |text: &str| {
        read(call(&app, Some(&admin), |http, base| {
            http.put(format!("{base}/admin/v1/policies"))
                .header("Content-Type", "text/plain")
                .body(text.to_owned())
        }))
    };
    let (status, bad) = put_policies("permit(principal, action, resource");
    assert_eq!(status, 400, "{bad}");
    assert_eq!(get("/policies").1["items"], json!([]), "nothing saved");
    let (status, saved) = put_policies("@id(\"everyone\")\npermit(principal, action, resource);");
    assert_eq!(status, 201, "{saved}");
    let (_, versions) = get("/policies");
    assert_eq!(versions["items"][0]["version"], saved["version"]);
    assert_eq!(versions["items"][0]["created_by"], "client:ops-bot");
    let (status, decisions) = get("/decisions?limit=5");
    assert_eq!(status, 200);
    assert!(decisions["items"].is_array());
    assert_eq!(get("/decisions?limit=0").0, 400);

    // Purposes: defined, refused when the slug is taken, changed only at the
    // version read.
    let newsletter = json!({"slug": "newsletter", "name": "Newsletter", "description": "Monthly news",
        "scopes": ["newsletter"], "legal_basis": "consent"});
    let (status, defined) = send(reqwest::Method::POST, "/purposes", newsletter.clone());
    assert_eq!(status, 201, "{defined}");
    assert_eq!(defined["version"], 1);
    assert_eq!(send(reqwest::Method::POST, "/purposes", newsletter).0, 409);
    let (status, bad) = send(
        reqwest::Method::POST,
        "/purposes",
        json!({"slug": "x", "name": "X", "description": "x", "legal_basis": "whim"}),
    );
    assert_eq!(status, 400, "{bad}");
    let (status, stale) = send(
        reqwest::Method::PATCH,
        "/purposes/newsletter",
        json!({"version": 7, "name": "News"}),
    );
    assert_eq!(status, 409, "{stale}");
    let (status, changed) = send(
        reqwest::Method::PATCH,
        "/purposes/newsletter",
        json!({"version": 1, "name": "News"}),
    );
    assert_eq!(
        (status, changed["version"].as_i64()),
        (200, Some(2)),
        "{changed}"
    );
    let (_, purposes) = get("/purposes");
    assert_eq!(purposes["items"][0]["name"], "News");

    // Every write above is audited with the client as the actor.
    let (_, audit) = get("/audit?actor=client:ops-bot");
    let actions = members(&audit["items"], "action");
    for action in [
        "keys.rotated",
        "policies.saved",
        "purpose.created",
        "purpose.versioned",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

gatehouse_identity_store::on_both_backends!(
    keys_policies_and_purposes_are_operated_through_the_api
);

fn a_users_consents_and_audit_trail_are_read_through_the_api(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let (status, made) = read(call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/users"))
            .json(&json!({"email": "noor@example.com", "invite": false}))
    }));
    assert_eq!(status, 201, "{made}");
    let noor = user_id_of(&app, &admin, "noor@example.com");
    let (status, consents) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{noor}/consents"))
    }));
    assert_eq!(status, 200);
    assert_eq!(consents, json!({"current": [], "history": []}));
    let (status, trail) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{noor}/audit"))
    }));
    assert_eq!(status, 200);
    let subject = format!("user:{noor}");
    let events = trail["items"].as_array().unwrap();
    assert!(!events.is_empty(), "the creation is on record: {trail}");
    for event in events {
        assert!(
            event["actor"] == subject.as_str() || event["target"] == subject.as_str(),
            "{event}"
        );
    }
    let missing = "00000000-0000-7000-8000-000000000000";
    let (status, _) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/users/{missing}/consents"))
    }));
    assert_eq!(status, 404);
}

gatehouse_identity_store::on_both_backends!(
    a_users_consents_and_audit_trail_are_read_through_the_api
);

fn a_client_is_changed_at_the_version_read_and_by_the_registration_rules(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let (status, made) = read(call(&app, Some(&admin), |http, base| {
        http.post(format!("{base}/admin/v1/clients")).json(&json!({
            "name": "Billing", "client_id": "billing",
            "redirect_uris": ["https://billing.example/cb"]}))
    }));
    assert_eq!(status, 201, "{made}");
    let shown = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/clients/billing"))
    });
    let etag = shown.headers()["etag"].to_str().unwrap().to_owned();
    let patch = |tag: Option<&str>, body: Value| {
        let answer = call(&app, Some(&admin), |http, base| {
            let request = http
                .patch(format!("{base}/admin/v1/clients/billing"))
                .json(&body);
            match tag {
                Some(tag) => request.header("If-Match", tag),
                None => request,
            }
        });
        let etag = answer
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = read(answer);
        (status, body, etag)
    };

    let change = json!({"redirect_uris": ["https://billing.example/cb", "https://billing.example/cb2"],
        "cors_origins": ["https://billing.example"], "name": "Billing portal"});
    assert_eq!(patch(None, change.clone()).0, 428);
    let (status, changed, new_tag) = patch(Some(&etag), change.clone());
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "Billing portal");
    assert_eq!(changed["redirect_uris"][1], "https://billing.example/cb2");
    assert_eq!(changed["cors_origins"], json!(["https://billing.example"]));
    assert_ne!(new_tag.as_deref(), Some(etag.as_str()), "a new version");
    // The version read is gone: a second writer is refused, nothing is overwritten.
    let (status, _, _) = patch(Some(&etag), json!({"name": "Overwritten"}));
    assert_eq!(status, 412);
    // The changed registration passes the same rules as a new one.
    let new_tag = new_tag.unwrap();
    let (status, refused, _) = patch(
        Some(&new_tag),
        json!({"redirect_uris": ["http://127.0.0.1:1@evil.example/cb"]}),
    );
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("redirect_uri")),
        "{refused}"
    );
    let (status, refused, _) = patch(Some(&new_tag), json!({"client_secret": "mine"}));
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("client_secret")),
        "{refused}"
    );
    let (_, kept) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/clients/billing"))
    }));
    assert_eq!(kept["name"], "Billing portal", "nothing half-written");

    let (_, audit) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?action=client.updated"))
    }));
    let events = audit["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["actor"], "client:ops-bot");
    assert_eq!(
        events[0]["details"]["changed"],
        json!(["name", "redirect_uris", "cors_origins"])
    );
}

gatehouse_identity_store::on_both_backends!(
    a_client_is_changed_at_the_version_read_and_by_the_registration_rules
);

fn a_theme_is_checked_before_it_is_saved_and_applies_at_once(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let theme = |method: reqwest::Method, body: Option<Value>| {
        read(call(&app, Some(&admin), |http, base| {
            let request = http.request(method, format!("{base}/admin/v1/theme"));
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        }))
    };
    let css = || {
        reqwest::blocking::get(format!("{}/theme.css", app.base))
            .unwrap()
            .text()
            .unwrap()
    };

    assert_eq!(
        theme(reqwest::Method::GET, None).1,
        json!({"theme": null, "problems": []})
    );
    let (status, saved) = theme(
        reqwest::Method::PUT,
        Some(json!({"primary_color": "#0A7A55", "display_name": "Acme"})),
    );
    assert_eq!(status, 200, "{saved}");
    assert!(css().contains("#0a7a55"), "applied at once");

    // Refused, naming what is wrong; the saved theme stays.
    for bad in [
        json!({"primary_colour": "#000000"}),
        json!({"primary_color": "red"}),
        json!({"logo_url": "javascript:alert(1)"}),
    ] {
        let (status, refused) = theme(reqwest::Method::PUT, Some(bad.clone()));
        assert_eq!(
            (status, refused["field"].as_str()),
            (400, Some("theme")),
            "{bad}: {refused}"
        );
    }
    // A template directory is a path on the server: not a tenant client's to name.
    let overrides = tempfile::tempdir().unwrap();
    let (status, refused) = theme(
        reqwest::Method::PUT,
        Some(json!({"template_dir": overrides.path()})),
    );
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("template_dir")),
        "{refused}"
    );
    assert!(css().contains("#0a7a55"), "the saved theme stays");

    // A template directory the platform's operator set stays through the tenant's
    // own changes.
    let dir = overrides.path().to_str().unwrap().to_owned();
    let operator = gatehouse_admin::Operator::named("grace").unwrap();
    actix_web::rt::System::new()
        .block_on(app.state.admin.update_tenant(
            &operator,
            "default",
            gatehouse_admin::TenantChange {
                display_name: None,
                settings: serde_json::Map::from_iter([(
                    "theme".to_owned(),
                    json!({"primary_color": "#0a7a55", "template_dir": dir}),
                )]),
                expected_version: None,
            },
        ))
        .unwrap();
    app.state.tenants.invalidate();
    let (status, saved) = theme(
        reqwest::Method::PUT,
        Some(json!({"primary_color": "#112233"})),
    );
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["theme"]["template_dir"], dir.as_str(), "{saved}");
    let (status, removed) = theme(reqwest::Method::DELETE, None);
    assert_eq!(
        (status, &removed["theme"]),
        (200, &json!({"template_dir": dir}))
    );
    assert!(!css().contains("#0a7a55"), "the defaults again");

    let (_, audit) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/admin/v1/audit?action=tenant.updated"))
    }));
    assert_eq!(audit["items"].as_array().unwrap().len(), 4, "{audit}");
}

gatehouse_identity_store::on_both_backends!(
    a_theme_is_checked_before_it_is_saved_and_applies_at_once
);

/// The tenant's scopes and their claims through the admin API: listed with the
/// OpenID Connect defaults, changed and restored, the token's own claims and
/// malformed names refused — and a changed scope is what the next ID token carries.
fn scopes_release_the_claims_the_tenant_sets(backend: Backend) {
    use crate::code_flow::{VERIFIER, exchange, get_code, register, signed_in, verified_claims};
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let auditor = token_for(&app, "default", "reader", "admin:audit", &audience);
    let send = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        read(call(&app, Some(token), |http, base| {
            let request = http.request(method, format!("{base}/admin/v1/scopes{path}"));
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        }))
    };
    let scope = |listed: &Value, name: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["scope"] == name)
            .cloned()
    };

    let (status, listed) = send(&auditor, reqwest::Method::GET, "", None);
    assert_eq!(status, 200, "{listed}");
    let profile = scope(&listed, "profile").unwrap();
    assert_eq!(
        (
            profile["standard"].as_bool(),
            profile["customised"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert!(
        profile["claims"]
            .as_array()
            .unwrap()
            .contains(&json!("preferred_username"))
    );
    assert_eq!(
        scope(&listed, "email").unwrap()["claims"],
        json!(["email", "email_verified"])
    );

    // The auditor reads, the administrator changes.
    let staff = Some(json!({"claims": ["roles", "groups", "department"]}));
    assert_eq!(
        send(&auditor, reqwest::Method::PUT, "/staff", staff.clone()).0,
        403
    );
    for (path, body, field) in [
        ("/openid", json!({"claims": ["email"]}), "scope"),
        ("/staff", json!({"claims": ["aud"]}), "claims"),
        ("/staff", json!({"claims": ["nonce"]}), "claims"),
        ("/staff", json!({"claims": ["has space"]}), "claims"),
        ("/sta%22ff", json!({"claims": ["roles"]}), "scope"),
    ] {
        let (status, refused) = send(&admin, reqwest::Method::PUT, path, Some(body));
        assert_eq!(
            (status, refused["field"].as_str()),
            (400, Some(field)),
            "{path}: {refused}"
        );
    }
    let (status, refused) = send(
        &admin,
        reqwest::Method::PUT,
        "/staff",
        Some(json!({"claim": []})),
    );
    assert_eq!(status, 400, "{refused}");
    let (status, saved) = send(&admin, reqwest::Method::PUT, "/staff", staff);
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (saved["customised"].as_bool(), saved["standard"].as_bool()),
        (Some(true), Some(false))
    );

    // `profile` replaced: the next ID token carries exactly what it now releases.
    let (status, _) = send(
        &admin,
        reqwest::Method::PUT,
        "/profile",
        Some(json!({"claims": ["name", "groups"]})),
    );
    assert_eq!(status, 200);
    register(&app, false);
    let mut browser = signed_in(&app);
    let id_token = |browser: &mut crate::web_kit::Browser| {
        let code = get_code(browser, "");
        let (status, tokens) = exchange(&app, &code, VERIFIER);
        assert_eq!(status, 200, "{tokens}");
        verified_claims(&app, tokens["id_token"].as_str().unwrap(), "webapp").1
    };
    let claims = id_token(&mut browser);
    assert_eq!(claims["groups"], json!([]), "{claims}");
    assert!(claims.get("preferred_username").is_none(), "{claims}");

    // Removed, the default is back; removing again changes nothing.
    let (status, removed) = send(&admin, reqwest::Method::DELETE, "/profile", None);
    assert_eq!((status, removed), (200, json!({"changed": true})));
    let (_, again) = send(&admin, reqwest::Method::DELETE, "/profile", None);
    assert_eq!(again, json!({"changed": false}));
    let claims = id_token(&mut browser);
    assert_eq!(claims["preferred_username"], "uma@example.com", "{claims}");
    assert!(claims.get("groups").is_none(), "{claims}");
    let (_, listed) = send(&auditor, reqwest::Method::GET, "", None);
    assert_eq!(scope(&listed, "staff").unwrap()["customised"], true);
    assert_eq!(scope(&listed, "profile").unwrap()["customised"], false);

    // Each change is on record with the client that made it.
    let (_, audit) = read(call(&app, Some(&admin), |http, base| {
        http.get(format!(
            "{base}/admin/v1/audit?action=tenant.updated&actor=client:ops-bot"
        ))
    }));
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");
}

gatehouse_identity_store::on_both_backends!(scopes_release_the_claims_the_tenant_sets);
