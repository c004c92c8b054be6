//! The platform's part of the admin API: the tenants, for API clients of the
//! platform's own tenant with the scope `platform`; under any other tenant the
//! routes do not exist.

use gatehouse_identity_store::Backend;
use serde_json::{Value, json};

use crate::admin_api::{call, token_for};
use crate::admin_governance::{members, read};
use crate::web_kit::WebApp;

fn tenants_are_created_and_changed_by_platform_administrators_only(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let platform = token_for(&app, "default", "platform-bot", "platform", &audience);
    let tenant_admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let tenants = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        read(call(&app, Some(token), |http, base| {
            let request = http.request(method, format!("{base}/admin/v1/tenants{path}"));
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        }))
    };

    let (status, made) = tenants(
        &platform,
        reqwest::Method::POST,
        "",
        Some(json!({
        "slug": "acme", "display_name": "Acme", "settings": {"registration": {"enabled": false}}})),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["issuer"], format!("{}/t/acme", app.base));
    assert_eq!(made["settings"]["registration"]["enabled"], false);
    assert_eq!(
        tenants(
            &platform,
            reqwest::Method::POST,
            "",
            Some(json!({"slug": "acme", "display_name": "Again"}))
        )
        .0,
        409
    );
    let (status, bad) = tenants(
        &platform,
        reqwest::Method::POST,
        "",
        Some(json!({"slug": "Not A Slug", "display_name": "X"})),
    );
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = tenants(
        &platform,
        reqwest::Method::POST,
        "",
        Some(json!({
        "slug": "beta", "display_name": "Beta", "settings": {"mfa": {"required": "often"}}})),
    );
    assert_eq!(
        (status, bad["field"].as_str()),
        (400, Some("settings")),
        "{bad}"
    );

    // The new tenant serves at once: its discovery names its issuer.
    let discovery: Value = app.get_json("/t/acme/.well-known/openid-configuration");
    assert_eq!(discovery["issuer"], format!("{}/t/acme", app.base));

    // A change names the version it was made to: without If-Match 428, with a
    // version no longer current 412, nothing overwritten.
    let (status, _) = tenants(
        &platform,
        reqwest::Method::PATCH,
        "/acme",
        Some(json!({"display_name": "Acme Corp"})),
    );
    assert_eq!(status, 428);
    let patch_at = |tag: &str, name: &str| {
        let answer = call(&app, Some(&platform), |http, base| {
            http.patch(format!("{base}/admin/v1/tenants/acme"))
                .header("If-Match", tag)
                .json(&json!({"display_name": name}))
        });
        let etag = answer
            .headers()
            .get("etag")
            .map(|t| t.to_str().unwrap().to_owned());
        let (status, body) = read(answer);
        (status, body, etag)
    };
    let read_tag = call(&app, Some(&platform), |http, base| {
        http.get(format!("{base}/admin/v1/tenants/acme"))
    })
    .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, changed, new_tag) = patch_at(&read_tag, "Acme Corp");
    assert_eq!(
        (status, changed["display_name"].as_str()),
        (200, Some("Acme Corp")),
        "{changed}"
    );
    assert_ne!(new_tag.as_deref(), Some(read_tag.as_str()));
    let (status, stale, _) = patch_at(&read_tag, "Acme Again");
    assert_eq!(status, 412, "{stale}");
    let (status, shown) = tenants(&platform, reqwest::Method::GET, "/acme", None);
    assert_eq!(
        (status, shown["version"].as_i64()),
        (200, changed["version"].as_i64())
    );
    let (_, all) = tenants(&platform, reqwest::Method::GET, "", None);
    let slugs = members(&all["items"], "slug");
    assert!(
        slugs.contains(&"acme") && slugs.contains(&"default"),
        "{slugs:?}"
    );
    assert_eq!(
        tenants(&platform, reqwest::Method::GET, "/nobody", None).0,
        404
    );

    // Disabled, nothing of the tenant is served; enabled, all of it again.
    let switch = |verb: &str, slug: &str, why: Option<&str>| {
        read(call(&app, Some(&platform), |http, base| {
            let request = http.post(format!("{base}/admin/v1/tenants/{slug}/{verb}"));
            match why {
                Some(why) => request.header("Gatehouse-Reason", why),
                None => request,
            }
        }))
    };
    let served = |path: &str| {
        reqwest::blocking::get(format!("{}{path}", app.base))
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        switch("disable", "acme", None).0,
        400,
        "a reason is required"
    );
    assert_eq!(
        switch("disable", "acme", Some("contract ended")),
        (200, json!({"changed": true}))
    );
    assert_eq!(
        switch("disable", "acme", Some("again")),
        (200, json!({"changed": false}))
    );
    for path in [
        "/t/acme/.well-known/openid-configuration",
        "/t/acme/jwks",
        "/t/acme/sign-in",
    ] {
        assert_eq!(served(path), 404, "{path}");
    }
    let (_, shown) = tenants(&platform, reqwest::Method::GET, "/acme", None);
    assert!(shown["disabled_at"].is_string(), "{shown}");
    let (status, refused) = switch("disable", "default", Some("oops"));
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("slug")),
        "{refused}"
    );
    assert_eq!(
        served("/.well-known/openid-configuration"),
        200,
        "the platform stays"
    );
    assert_eq!(
        switch("enable", "acme", Some("renewed")),
        (200, json!({"changed": true}))
    );
    assert_eq!(served("/t/acme/.well-known/openid-configuration"), 200);

    // A tenant administrator is not a platform administrator.
    assert_eq!(
        tenants(&tenant_admin, reqwest::Method::GET, "", None).0,
        403
    );
    // Under another tenant the routes do not exist, even with the scope.
    let acme_audience = format!("{}/t/acme/admin/v1", app.base);
    let acme_platform = token_for(&app, "acme", "acme-bot", "platform", &acme_audience);
    let (status, _) = read(call(&app, Some(&acme_platform), |http, base| {
        http.get(format!("{base}/t/acme/admin/v1/tenants"))
    }));
    assert_eq!(status, 404);
    let (status, _) = read(call(&app, None, |http, base| {
        http.get(format!("{base}/t/acme/admin/v1/tenants"))
    }));
    assert_eq!(status, 404, "not even a challenge tells they exist");

    // Each write is in the tenant's own log with the platform client as the actor.
    let acme_admin = token_for(&app, "acme", "acme-ops", "admin", &acme_audience);
    let (_, audit) = read(call(&app, Some(&acme_admin), |http, base| {
        http.get(format!(
            "{base}/t/acme/admin/v1/audit?actor=client:platform-bot"
        ))
    }));
    let actions = members(&audit["items"], "action");
    assert_eq!(
        actions,
        [
            "tenant.created",
            "tenant.updated",
            "tenant.disabled",
            "tenant.enabled"
        ],
        "{audit}"
    );
}

gatehouse_identity_store::on_both_backends!(
    tenants_are_created_and_changed_by_platform_administrators_only
);

/// Deleting a tenant takes everything of it — users and theirs, clients, grants,
/// keys, policies, the decision log, revocations, counters and its audit trail —
/// in one go, only once it is disabled, and never the platform's own; the
/// platform's audit log keeps the deletion, and every chain still verifies.
fn a_disabled_tenant_is_deleted_with_all_of_its_data(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let platform = token_for(&app, "default", "platform-bot", "platform", &audience);
    let send = |method: reqwest::Method, path: &str, why: Option<&str>, body: Option<Value>| {
        read(call(&app, Some(&platform), |http, base| {
            let mut request = http.request(method, format!("{base}/admin/v1/tenants{path}"));
            if let Some(why) = why {
                request = request.header("Gatehouse-Reason", why);
            }
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        }))
    };
    let (status, made) = send(
        reqwest::Method::POST,
        "",
        None,
        Some(json!({"slug": "doomed", "display_name": "Doomed"})),
    );
    assert_eq!(status, 201, "{made}");
    let doomed: gatehouse_core::ids::TenantId = made["id"].as_str().unwrap().parse().unwrap();

    // Some of what a tenant holds: a client and its token, a user, decisions, a
    // revocation, a counter, audit events and a subject key. (Every table keyed by
    // tenant is counted below, whether it holds rows here or not.)
    let doomed_audience = format!("{}/t/doomed/admin/v1", app.base);
    let ops = token_for(&app, "doomed", "doomed-ops", "admin", &doomed_audience);
    let (status, user) = read(call(&app, Some(&ops), |http, base| {
        http.post(format!("{base}/t/doomed/admin/v1/users"))
            .json(&json!({"email": "dora@example.com", "invite": false}))
    }));
    assert_eq!(status, 201, "{user}");
    {
        let mut conn = app.db.conn();
        let now = chrono::Utc::now();
        gatehouse_identity_store::revoked_tokens::revoke(
            &mut conn,
            now,
            doomed,
            "a-token",
            now + chrono::Duration::hours(1),
        )
        .unwrap();
        gatehouse_identity_store::rate_limits::record_failure(
            &mut conn,
            now,
            doomed,
            "ip:203.0.113.9",
            chrono::Duration::minutes(15),
            |_| None,
        )
        .unwrap();
    }
    app.state.pdp.flush_log();
    let held = gatehouse_identity_store::testing::rows_of_tenant(&mut app.db.conn(), doomed);
    for table in [
        "users",
        "oauth_clients",
        "signing_keys",
        "audit_events",
        "audit_heads",
        "audit_subject_keys",
        "decision_log",
        "revoked_tokens",
        "rate_limits",
    ] {
        assert!(held[table] > 0, "{table} holds nothing yet: {held:?}");
    }

    // Served, it is not deleted; nor without a reason; nor the platform's own.
    let (status, refused) = send(reqwest::Method::DELETE, "/doomed", Some("closing"), None);
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        send(
            reqwest::Method::POST,
            "/doomed/disable",
            Some("closing"),
            None
        )
        .0,
        200
    );
    assert_eq!(send(reqwest::Method::DELETE, "/doomed", None, None).0, 400);
    let (status, refused) = send(reqwest::Method::DELETE, "/default", Some("oops"), None);
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("slug")),
        "{refused}"
    );

    let (status, _) = send(
        reqwest::Method::DELETE,
        "/doomed",
        Some("contract ended"),
        None,
    );
    assert_eq!(status, 204);
    let left = gatehouse_identity_store::testing::rows_of_tenant(&mut app.db.conn(), doomed);
    assert!(left.values().all(|&n| n == 0), "rows left behind: {left:?}");
    assert_eq!(send(reqwest::Method::GET, "/doomed", None, None).0, 404);
    let discovery = reqwest::blocking::get(format!(
        "{}/t/doomed/.well-known/openid-configuration",
        app.base
    ))
    .unwrap();
    assert_eq!(discovery.status(), 404);

    // On record in the platform's log; every remaining chain verifies.
    let (_, audit) = read(call(
        &app,
        Some(&token_for(
            &app,
            "default",
            "reader",
            "admin:audit",
            &audience,
        )),
        |http, base| http.get(format!("{base}/admin/v1/audit?action=tenant.deleted")),
    ));
    let deletion = &audit["items"][0];
    assert_eq!(deletion["target"], "tenant:doomed", "{audit}");
    assert_eq!(deletion["actor"], "client:platform-bot");
    assert_eq!(deletion["details"]["reason"], "contract ended");
    let report =
        gatehouse_identity_store::audit::verify(&mut app.db.conn(), &app.state.cipher).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);

    // The slug is free again, for a tenant that starts empty.
    let (status, again) = send(
        reqwest::Method::POST,
        "",
        None,
        Some(json!({"slug": "doomed", "display_name": "Reborn"})),
    );
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["id"], made["id"]);
}

gatehouse_identity_store::on_both_backends!(a_disabled_tenant_is_deleted_with_all_of_its_data);

/// What a hostile review tried: a tenant administrator making itself a platform
/// administrator, a tenant taking the platform's or another tenant's host, tokens
/// outliving their client's registration, unchecked themes through the platform
/// routes, lifetimes that overflow.
fn escalations_and_takeovers_are_refused(backend: Backend) {
    let app = WebApp::start(backend);
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let platform = token_for(&app, "default", "platform-bot", "platform", &audience);
    // A change to a tenant is made at the version just read (If-Match).
    let send = |token: &str, method: reqwest::Method, path: &str, body: Value| {
        let tag = (method == reqwest::Method::PATCH && path.starts_with("/tenants/")).then(|| {
            call(&app, Some(token), |http, base| {
                http.get(format!("{base}/admin/v1{path}"))
            })
            .headers()["etag"]
                .to_str()
                .unwrap()
                .to_owned()
        });
        read(call(&app, Some(token), |http, base| {
            let request = http
                .request(method, format!("{base}/admin/v1{path}"))
                .json(&body);
            match &tag {
                Some(tag) => request.header("If-Match", tag),
                None => request,
            }
        }))
    };

    // A tenant administrator cannot give the platform's scope, by create or change.
    let (status, refused) = send(
        &admin,
        reqwest::Method::POST,
        "/clients",
        json!({
        "name": "Escalator", "client_id": "escalator", "grants": ["client_credentials"],
        "scopes": ["platform"], "audiences": [audience]}),
    );
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("scopes")),
        "{refused}"
    );
    let (status, made) = send(
        &admin,
        reqwest::Method::POST,
        "/clients",
        json!({
        "name": "Worker", "client_id": "worker", "grants": ["client_credentials"],
        "scopes": ["admin"], "audiences": [audience]}),
    );
    assert_eq!(status, 201, "{made}");
    // Changes the worker client at the version just read.
    let change_worker = |change: Value| {
        let etag = call(&app, Some(&admin), |http, base| {
            http.get(format!("{base}/admin/v1/clients/worker"))
        })
        .headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
        read(call(&app, Some(&admin), |http, base| {
            http.patch(format!("{base}/admin/v1/clients/worker"))
                .header("If-Match", &etag)
                .json(&change)
        }))
    };
    let (status, refused) = change_worker(json!({"scopes": ["admin", "platform"]}));
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("scopes")),
        "{refused}"
    );
    // A value of the wrong type is named by its path.
    let (status, refused) = send(&admin, reqwest::Method::POST, "/users", json!({"email": 5}));
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("email")),
        "{refused}"
    );
    let (status, refused) = send(
        &admin,
        reqwest::Method::POST,
        "/clients",
        json!({"name": "Typed", "redirect_uris": ["https://a.example/cb", 7]}),
    );
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("redirect_uris[1]")),
        "{refused}"
    );
    let (status, refused) = send(
        &admin,
        reqwest::Method::POST,
        "/users",
        json!({"given_name": "No mail"}),
    );
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("email")),
        "{refused}"
    );
    for ttl in [100_000_000_000_000_i64, -5, 0] {
        let (status, refused) = send(
            &admin,
            reqwest::Method::POST,
            "/clients",
            json!({
            "name": "Forever", "grants": ["client_credentials"], "access_token_ttl_secs": ttl}),
        );
        assert_eq!(
            (status, refused["field"].as_str()),
            (400, Some("access_token_ttl_secs")),
            "{ttl}: {refused}"
        );
    }
    let (status, refused) = send(
        &admin,
        reqwest::Method::POST,
        "/keys/rotate",
        json!({"max_token_lifetime_secs": i64::MAX}),
    );
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("max_token_lifetime_secs")),
        "{refused}"
    );

    // No tenant takes the platform's host or another tenant's.
    let public_host = reqwest::Url::parse(&app.base)
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    let (status, _) = send(
        &platform,
        reqwest::Method::POST,
        "/tenants",
        json!({
        "slug": "first", "display_name": "First", "settings": {"hosts": ["first.example"]}}),
    );
    assert_eq!(status, 201);
    for host in [public_host.as_str(), "FIRST.example"] {
        let (status, refused) = send(
            &platform,
            reqwest::Method::POST,
            "/tenants",
            json!({
            "slug": "second", "display_name": "Second", "settings": {"hosts": [host]}}),
        );
        assert_eq!(
            (status, refused["field"].as_str()),
            (400, Some("settings")),
            "{host}: {refused}"
        );
    }
    let (status, refused) = send(
        &platform,
        reqwest::Method::PATCH,
        "/tenants/first",
        json!({"settings": {"hosts": [public_host]}}),
    );
    assert_eq!(status, 400, "{refused}");
    let (status, _) = send(
        &platform,
        reqwest::Method::PATCH,
        "/tenants/first",
        json!({"settings": {"hosts": ["first.example", "www.first.example"]}}),
    );
    assert_eq!(status, 200, "its own host again is fine");
    let discovery: Value = app.get_json("/.well-known/openid-configuration");
    assert_eq!(
        discovery["issuer"], app.base,
        "the root is the platform's still"
    );

    // Themes through the platform routes are checked like the tenant's own.
    for theme in [
        json!({"template_dir": "/tmp"}),
        json!({"primary_colour": "#000000"}),
    ] {
        let (status, refused) = send(
            &platform,
            reqwest::Method::PATCH,
            "/tenants/first",
            json!({"settings": {"theme": theme}}),
        );
        assert_eq!(status, 400, "{theme}: {refused}");
    }

    // A token outlives nothing of its client's registration.
    let worker = crate::admin_api::client_token(
        &app,
        "default",
        "worker",
        made["client_secret"].as_str().unwrap(),
    );
    assert_eq!(
        read(call(&app, Some(&worker), |http, base| http
            .get(format!("{base}/admin/v1/tenant"))))
        .0,
        200
    );
    let (status, _) = change_worker(json!({"scopes": ["reports"]}));
    assert_eq!(status, 200);
    assert_eq!(
        read(call(&app, Some(&worker), |http, base| http
            .get(format!("{base}/admin/v1/tenant"))))
        .0,
        401,
        "the scope is gone"
    );
    let (status, _) = read(call(&app, Some(&admin), |http, base| {
        http.delete(format!("{base}/admin/v1/clients/ops-bot"))
    }));
    assert_eq!(status, 204);
    assert_eq!(
        read(call(&app, Some(&admin), |http, base| http
            .get(format!("{base}/admin/v1/tenant"))))
        .0,
        401,
        "the client is gone"
    );

    // The audit log reads past the store's page size (500).
    let auditor = token_for(&app, "default", "auditor-bot", "admin", &audience);
    let (status, audit) = read(call(&app, Some(&auditor), |http, base| {
        http.get(format!("{base}/admin/v1/audit?limit=600"))
    }));
    assert_eq!(status, 200, "{audit}");
    assert!(!audit["items"].as_array().unwrap().is_empty());
}

gatehouse_identity_store::on_both_backends!(escalations_and_takeovers_are_refused);
