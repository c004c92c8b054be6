//! SCIM 2.0 at `/scim/v2` as a provisioning system calls it: Users and Groups
//! created, found by filter, changed by PUT and PATCH at a version, deleted; every
//! refusal a SCIM error (RFC 7644 §3.12); the same on both backends. (The
//! independent conformance run is `e2e/scim.test.js`, with scim2-tester.)

use gatehouse_identity_store::Backend;
use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::admin_api::{call, token_for};
use crate::web_kit::WebApp;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim<'a> {
    app: &'a WebApp,
    token: String,
    prefix: String,
}

/// Status, ETag and JSON body.
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
}

impl Scim<'_> {
    fn for_tenant<'a>(app: &'a WebApp, tenant: &str) -> Scim<'a> {
        let prefix = if tenant == "default" {
            String::new()
        } else {
            format!("/t/{tenant}")
        };
        let audience = format!("{}{prefix}/scim/v2", app.base);
        let token = token_for(app, tenant, &format!("{tenant}-hr"), "scim", &audience);
        Scim { app, token, prefix }
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Answer {
        let answer: Response = call(self.app, Some(&self.token), |http, base| {
            let mut request = http
                .request(method, format!("{base}{}/scim/v2{path}", self.prefix))
                .header("Content-Type", "application/scim+json");
            if let Some(tag) = if_match {
                request = request.header("If-Match", tag);
            }
            match body {
                Some(body) => request.body(body.to_string()),
                None => request,
            }
        });
        let status = answer.status().as_u16();
        if status != 204 {
            let kind = answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                kind.starts_with("application/scim+json"),
                "{status}: {kind}"
            );
        }
        let etag = answer
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        Answer {
            status,
            etag,
            body: answer.json().unwrap_or(Value::Null),
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, None)
    }

    fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body), None)
    }

    /// The user names a filter finds, in the order answered.
    fn find(&self, filter: &str) -> Vec<String> {
        let query = format!("/Users?filter={}", urlencoding(filter));
        let answer = self.get(&query);
        assert_eq!(answer.status, 200, "{filter}: {}", answer.body);
        answer.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn urlencoding(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn user(user_name: &str, given: &str, emails: Value) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given, "familyName": "Jensen"},
        "emails": emails,
    })
}

fn assert_scim_error(answer: &Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(answer.body["status"], status.to_string());
    if let Some(scim_type) = scim_type {
        assert_eq!(answer.body["scimType"], scim_type, "{}", answer.body);
    }
}

fn users_are_provisioned_found_changed_and_removed(backend: Backend) {
    let app = WebApp::start(backend);
    let scim = Scim::for_tenant(&app, "default");
    // The tenant's first administrator is there already.
    let baseline = scim.get("/Users").body["totalResults"].as_i64().unwrap();

    let made = scim.post(
        "/Users",
        json!({
            "schemas": [USER, ENTERPRISE],
            "userName": "bjensen",
            "externalId": "hr-1001",
            "name": {"formatted": "Ms. Barbara J Jensen, III", "givenName": "Barbara", "familyName": "Jensen"},
            "title": "Tour Guide",
            "emails": [
                {"value": "bjensen@work.example", "type": "work", "primary": true},
                {"value": "babs@home.example", "type": "home"}
            ],
            "password": "correct horse battery staple",
            ENTERPRISE: {"employeeNumber": "701984", "department": "Tours",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}}
        }),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(made.etag.as_deref(), Some("W/\"1\""));
    assert_eq!(made.body["meta"]["version"], "W/\"1\"");
    assert_eq!(made.body["meta"]["resourceType"], "User");
    assert_eq!(made.body["active"], true);
    assert_eq!(made.body[ENTERPRISE]["department"], "Tours");
    assert_eq!(
        made.body["password"],
        Value::Null,
        "a password is never returned"
    );
    assert_eq!(made.body["name"]["formatted"], "Ms. Barbara J Jensen, III");
    // The provisioned password is the account's: it passes the password check and
    // meets the unproven address (a provisioned address is unverified); another
    // password does not get that far.
    let right = app
        .browser()
        .sign_in("bjensen@work.example", "correct horse battery staple");
    assert!(
        right.body.contains("confirm your email address first"),
        "{}",
        right.body
    );
    let wrong = app
        .browser()
        .sign_in("bjensen@work.example", "not the password at all");
    assert!(!wrong.body.contains("confirm your email address first"));

    for (name, given, mail) in [
        ("alice", "Alice", "alice@work.example"),
        ("carol", "Carol", "carol@home.example"),
    ] {
        let answer = scim.post("/Users", user(name, given, json!([{"value": mail, "type": if mail.contains("work") { "work" } else { "home" }}])));
        assert_eq!(answer.status, 201, "{}", answer.body);
    }

    // Filters: precedence, grouping, value paths, case-insensitive names and values.
    assert_eq!(scim.find("userName eq \"BJENSEN\""), ["bjensen"]);
    assert_eq!(scim.find("USERNAME Eq \"alice\""), ["alice"]);
    assert_eq!(
        scim.find("emails.value eq \"carol@home.example\""),
        ["carol"]
    );
    assert_eq!(
        scim.find("emails[type eq \"work\" and value co \"bjensen\"]"),
        ["bjensen"]
    );
    assert_eq!(
        scim.find("emails[type eq \"home\"] and not (userName sw \"c\")"),
        ["bjensen"]
    );
    assert_eq!(
        scim.find("userName eq \"alice\" or userName eq \"carol\" and title pr"),
        ["alice"],
        "and binds tighter than or"
    );
    assert_eq!(
        scim.find("(userName eq \"alice\" or userName eq \"carol\") and not (title pr)"),
        ["alice", "carol"]
    );
    assert_eq!(scim.find("externalId eq \"hr-1001\""), ["bjensen"]);
    assert_eq!(
        scim.find("meta.created gt \"2000-01-01T00:00:00Z\"").len() as i64,
        baseline + 3
    );
    for bad in [
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "nickName eq 3",
        "phoneNumbers pr",
    ] {
        let answer = scim.get(&format!("/Users?filter={}", urlencoding(bad)));
        assert_scim_error(&answer, 400, Some("invalidFilter"));
    }

    // Paging and sorting.
    let jensens = urlencoding("name.familyName eq \"jensen\"");
    let page = scim.get(&format!(
        "/Users?filter={jensens}&sortBy=userName&sortOrder=descending&startIndex=2&count=1"
    ));
    assert_eq!(page.status, 200);
    assert_eq!(page.body["totalResults"], 3);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 1);
    assert_eq!(page.body["Resources"][0]["userName"], "bjensen");
    let beyond = scim.get(&format!("/Users?filter={jensens}&startIndex=10&count=5"));
    assert_eq!(beyond.body["Resources"], json!([]));
    assert_eq!(beyond.body["totalResults"], 3);
    let projected = scim.get(&format!("/Users/{id}?attributes=userName,emails.value"));
    assert_eq!(projected.body["userName"], "bjensen");
    assert_eq!(projected.body["title"], Value::Null);
    assert_eq!(
        projected.body["emails"][0],
        json!({"value": "bjensen@work.example"})
    );
    assert_eq!(projected.body["id"], id.as_str());
    assert_scim_error(&scim.get("/Users?count=ten"), 400, Some("invalidValue"));

    // PATCH a multi-valued attribute through a value filter, at the version read.
    let patched = scim.send(
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@work.example"},
            {"op": "add", "path": "emails", "value": [{"value": "b@other.example", "type": "other"}]},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
            {"op": "replace", "path": "title", "value": "Senior Tour Guide"}
        ]})),
        Some("W/\"1\""),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.etag.as_deref(), Some("W/\"2\""));
    let emails: Vec<&str> = patched.body["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["barbara@work.example", "b@other.example"]);
    assert_eq!(patched.body["title"], "Senior Tour Guide");
    // A stale version changes nothing.
    let stale = scim.send(
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "X"}]})),
        Some("W/\"1\""),
    );
    assert_scim_error(&stale, 412, None);
    let read_only = scim.send(
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "id", "value": "x"}]})),
        None,
    );
    assert_scim_error(&read_only, 400, Some("mutability"));
    assert_eq!(
        scim.get(&format!("/Users/{id}")).body["title"],
        "Senior Tour Guide"
    );

    // PUT replaces the whole resource.
    let replaced = user(
        "bjensen",
        "Babs",
        json!([{"value": "barbara@work.example", "type": "work", "primary": true}]),
    );
    let put = scim.send(Method::PUT, &format!("/Users/{id}"), Some(replaced), None);
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["name"]["givenName"], "Babs");
    assert_eq!(
        put.body["title"],
        Value::Null,
        "PUT replaces: the title is gone"
    );
    assert_eq!(put.body[ENTERPRISE], Value::Null);

    // Bad input: each a SCIM error, nothing written.
    assert_scim_error(
        &scim.post("/Users", json!("not an object")),
        400,
        Some("invalidSyntax"),
    );
    let broken = scim.send(Method::POST, "/Users", None, None);
    assert_scim_error(&broken, 400, Some("invalidSyntax"));
    assert_scim_error(
        &scim.post(
            "/Users",
            json!({"schemas": [USER], "userName": "x", "favouriteColour": "red"}),
        ),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &scim.post("/Users", json!({"schemas": [USER]})),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &scim.post(
            "/Users",
            json!({"schemas": [USER], "userName": "y", "active": "yes"}),
        ),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &scim.post("/Users", user("ALICE", "Again", json!([]))),
        409,
        Some("uniqueness"),
    );
    assert_scim_error(
        &scim.post(
            "/Users",
            json!({"schemas": [USER], "userName": "weak", "password": "short"}),
        ),
        400,
        Some("invalidValue"),
    );
    assert_eq!(
        scim.get("/Users").body["totalResults"],
        baseline + 3,
        "nothing half-written"
    );
    assert_scim_error(&scim.get("/Users/not-an-id"), 404, None);

    // Deactivating a signed-in user ends their session at once; their proven
    // address stays proven through the change.
    let password = "correct horse battery staple";
    app.create_verified_user("erin@example.com", password);
    let mut browser = app.signed_in_browser("erin@example.com", password);
    assert_eq!(browser.get("/account").status, 200);
    let erin = scim.get(&format!(
        "/Users?filter={}",
        urlencoding("emails.value eq \"erin@example.com\"")
    ));
    let erin_id = erin.body["Resources"][0]["id"].as_str().unwrap().to_owned();
    let off = scim.send(
        Method::PATCH,
        &format!("/Users/{erin_id}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"active": false, "displayName": "Erin"}}
        ]})),
        None,
    );
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["active"], false);
    assert_ne!(browser.get("/account").status, 200, "the session ended");
    let on = scim.send(
        Method::PATCH,
        &format!("/Users/{erin_id}"),
        Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]})),
        None,
    );
    assert_eq!(on.body["active"], true);
    let again = app.browser().sign_in("erin@example.com", password);
    assert_eq!(again.status, 303, "still verified: {}", again.body);

    // DELETE removes the user; the audit log has each write with the client.
    let removed = scim.send(Method::DELETE, &format!("/Users/{id}"), None, None);
    assert_eq!(removed.status, 204);
    assert_scim_error(&scim.get(&format!("/Users/{id}")), 404, None);
    let actions = app.audit_actions(200);
    for action in [
        "user.created",
        "user.updated",
        "user.deactivated",
        "user.reactivated",
        "user.deleted",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    assert!(
        app.audit_events(200)
            .iter()
            .filter(|e| e.action == "user.created")
            .all(|e| e.actor == "client:default-hr")
    );
}

gatehouse_identity_store::on_both_backends!(users_are_provisioned_found_changed_and_removed);

fn groups_keep_their_members_through_patch_and_put(backend: Backend) {
    let app = WebApp::start(backend);
    let scim = Scim::for_tenant(&app, "default");
    let ids: Vec<String> = ["ann", "ben", "cat"]
        .iter()
        .map(|name| {
            let made = scim.post("/Users", user(name, name, json!([])));
            assert_eq!(made.status, 201, "{}", made.body);
            made.body["id"].as_str().unwrap().to_owned()
        })
        .collect();

    let made = scim.post(
        "/Groups",
        json!({"schemas": [GROUP], "displayName": "Night Shift",
            "members": [{"value": ids[0]}, {"value": ids[1]}]}),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let group = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(made.body["members"].as_array().unwrap().len(), 2);
    // The user shows the group (read-only `groups`).
    let ann = scim.get(&format!("/Users/{}", ids[0]));
    assert_eq!(ann.body["groups"][0]["display"], "Night Shift");

    // A malformed query is refused, as on Users, not read as "no projection".
    assert_scim_error(
        &scim.get(&format!("/Groups/{group}?count=ten")),
        400,
        Some("invalidValue"),
    );
    let patched = scim.send(
        Method::PATCH,
        &format!("/Groups/{group}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": ids[2]}]},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}
        ]})),
        made.etag.as_deref(),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let mut members: Vec<&str> = patched.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    let mut expected = vec![ids[1].as_str(), ids[2].as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
    assert_eq!(
        scim.get(&format!("/Users/{}", ids[0])).body["groups"],
        Value::Null
    );

    let filtered = scim.get(&format!(
        "/Groups?filter={}",
        urlencoding("displayName eq \"night shift\"")
    ));
    assert_eq!(filtered.body["totalResults"], 1, "{}", filtered.body);
    let by_member = scim.get(&format!(
        "/Groups?filter={}",
        urlencoding(&format!("members[value eq \"{}\"]", ids[2]))
    ));
    assert_eq!(by_member.body["totalResults"], 1);

    // A member that is no user of the tenant: refused, nothing changed.
    let foreign = scim.send(
        Method::PUT,
        &format!("/Groups/{group}"),
        Some(json!({"schemas": [GROUP], "displayName": "Night Shift",
            "members": [{"value": "0190d3a2-0000-7000-8000-000000000000"}]})),
        None,
    );
    assert_scim_error(&foreign, 400, Some("invalidValue"));
    assert_eq!(
        scim.get(&format!("/Groups/{group}")).body["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_scim_error(
        &scim.post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "NIGHT SHIFT"}),
        ),
        409,
        Some("uniqueness"),
    );

    // A search across resource types: users first, then groups, paged as one list;
    // a Group's attribute in the filter matches no user.
    let everything = scim.post(
        "/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": format!("userName eq \"ben\" or members[value eq \"{}\"]", ids[2]),
            "attributes": ["id"]}),
    );
    assert_eq!(everything.status, 200, "{}", everything.body);
    assert_eq!(everything.body["totalResults"], 2);
    let kinds: Vec<&str> = everything.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["User", "Group"]);
    let second = scim.post(
        "/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": format!("userName eq \"ben\" or members[value eq \"{}\"]", ids[2]),
            "startIndex": 2, "count": 1}),
    );
    assert_eq!(second.body["Resources"][0]["displayName"], "Night Shift");

    let removed = scim.send(Method::DELETE, &format!("/Groups/{group}"), None, None);
    assert_eq!(removed.status, 204);
    assert_scim_error(&scim.get(&format!("/Groups/{group}")), 404, None);
    assert_eq!(
        scim.get(&format!("/Users/{}", ids[1])).body["groups"],
        Value::Null
    );
}

gatehouse_identity_store::on_both_backends!(groups_keep_their_members_through_patch_and_put);

#[test]
fn scim_takes_its_own_tokens_and_answers_its_own_tenant_only() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant("acme", "Acme", json!({}));
    let home = Scim::for_tenant(&app, "default");
    let acme = Scim::for_tenant(&app, "acme");
    let made = home.post("/Users", user("dora", "Dora", json!([])));
    let id = made.body["id"].as_str().unwrap().to_owned();

    // Another tenant's SCIM does not know the user, by id or by filter.
    assert_scim_error(&acme.get(&format!("/Users/{id}")), 404, None);
    assert_eq!(acme.get("/Users").body["totalResults"], 0);
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]});
    assert_scim_error(
        &acme.send(Method::PATCH, &format!("/Users/{id}"), Some(patch), None),
        404,
        None,
    );
    assert_scim_error(
        &acme.send(Method::DELETE, &format!("/Users/{id}"), None, None),
        404,
        None,
    );

    // An admin API token is no SCIM token, and a SCIM token no admin token.
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let refused = call(&app, Some(&admin), |http, base| {
        http.get(format!("{base}/scim/v2/Users"))
    });
    assert_eq!(refused.status(), 403, "no scim scope");
    let refused = call(&app, Some(&home.token), |http, base| {
        http.get(format!("{base}/admin/v1/users"))
    });
    assert_eq!(refused.status(), 403, "no admin role's scope");
    let none = call(&app, None, |http, base| {
        http.get(format!("{base}/scim/v2/Users"))
    });
    assert_eq!(none.status(), 401);

    // Gatehouse's own administrators are spared: a provisioning client may read the
    // first administrator but not change, disable or delete them, and the PDP's
    // refusal is in the decision log with the deciding policy.
    let admins = home.get(&format!(
        "/Users?filter={}",
        urlencoding("userName eq \"admin\"")
    ));
    let admin_id = admins.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let takeover = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "emails", "value": [{"value": "mallory@evil.example", "primary": true}]},
        {"op": "add", "path": "password", "value": "mallory-owns-this-now-42"}
    ]});
    let refused = home.send(
        Method::PATCH,
        &format!("/Users/{admin_id}"),
        Some(takeover),
        None,
    );
    assert_scim_error(&refused, 403, None);
    let mut replaced = user("admin", "Mallory", json!([]));
    replaced["active"] = json!(false);
    assert_scim_error(
        &home.send(
            Method::PUT,
            &format!("/Users/{admin_id}"),
            Some(replaced),
            None,
        ),
        403,
        None,
    );
    assert_scim_error(
        &home.send(Method::DELETE, &format!("/Users/{admin_id}"), None, None),
        403,
        None,
    );
    let still = home.get(&format!("/Users/{admin_id}"));
    assert_eq!(still.body["active"], true);
    assert_eq!(
        still.body["meta"]["version"],
        admins.body["Resources"][0]["meta"]["version"]
    );
    // Nor moved into or out of groups: a group change that adds or removes an
    // administrator is refused whole.
    let with_admin = json!({"schemas": [GROUP], "displayName": "Keepers",
        "members": [{"value": admin_id}]});
    assert_scim_error(
        &home.send(Method::POST, "/Groups", Some(with_admin), None),
        403,
        None,
    );
    let keepers = home.send(
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "Keepers"})),
        None,
    );
    assert_eq!(keepers.status, 201, "{}", keepers.body);
    let keepers = keepers.body["id"].as_str().unwrap().to_owned();
    let add_admin = json!({"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": admin_id}]}
    ]});
    assert_scim_error(
        &home.send(
            Method::PATCH,
            &format!("/Groups/{keepers}"),
            Some(add_admin),
            None,
        ),
        403,
        None,
    );
    assert_eq!(
        home.get(&format!("/Groups/{keepers}")).body["members"],
        json!([]),
        "nobody was added"
    );
    assert!(
        app.denied_by_policy("provisioning-spares-administrators"),
        "the refusal is logged"
    );

    // A known path asked with another method: 405 naming the methods it takes.
    let wrong_method = call(&app, Some(&home.token), |http, base| {
        http.post(format!("{base}/scim/v2/ServiceProviderConfig"))
    });
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET");
    let wrong_method = call(&app, Some(&home.token), |http, base| {
        http.post(format!("{base}/scim/v2/Users/{id}"))
    });
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET, PUT, PATCH, DELETE");

    // Discovery is public and names what is supported.
    let config = call(&app, None, |http, base| {
        http.get(format!("{base}/scim/v2/ServiceProviderConfig"))
    });
    assert_eq!(config.status(), 200);
    let config: Value = config.json().unwrap();
    assert_eq!(config["patch"]["supported"], true);
    assert_eq!(config["bulk"]["supported"], false);
    let schemas: Value = call(&app, None, |http, base| {
        http.get(format!("{base}/scim/v2/Schemas"))
    })
    .json()
    .unwrap();
    assert_eq!(schemas["totalResults"], 3);
    let types: Value = call(&app, None, |http, base| {
        http.get(format!("{base}/t/acme/scim/v2/ResourceTypes/User"))
    })
    .json()
    .unwrap();
    assert_eq!(types["schemaExtensions"][0]["schema"], ENTERPRISE);
    assert_eq!(
        types["meta"]["location"],
        format!("{}/t/acme/scim/v2/ResourceTypes/User", app.base)
    );
}

/// The tenant's own User extension (RFC 7643 §3.3): defined by its administrator
/// through the admin API, served by the discovery endpoints at once, and what
/// provisioning systems send under it is kept, checked against it — unknown
/// attributes, wrong types and missing required ones refused — and reaches tokens
/// as custom attributes do.
fn a_tenant_defines_its_own_user_extension(backend: Backend) {
    const ACME: &str = "urn:acme:params:scim:schemas:extension:acme:2.0:User";
    let app = WebApp::start(backend);
    let scim = Scim::for_tenant(&app, "default");
    let audience = format!("{}/admin/v1", app.base);
    let admin = token_for(&app, "default", "ops-bot", "admin", &audience);
    let extension = |method: Method, body: Option<Value>| {
        let answer = call(&app, Some(&admin), |http, base| {
            let request = http.request(method, format!("{base}/admin/v1/user-extension"));
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        });
        let status = answer.status().as_u16();
        (status, answer.json::<Value>().unwrap_or(Value::Null))
    };
    assert_eq!(extension(Method::GET, None).0, 404);
    let defined = json!({
        "id": ACME, "name": "AcmeUser", "description": "What Acme's HR system knows",
        "attributes": [
            {"name": "badgeNumber", "type": "integer", "required": true},
            {"name": "clearances", "type": "string", "multi_valued": true},
            {"name": "remote", "type": "boolean"},
            {"name": "startDate", "type": "dateTime"}
        ]
    });
    for bad in [
        json!({"id": "not-a-urn", "name": "X", "attributes": [{"name": "a", "type": "string"}]}),
        json!({"id": ENTERPRISE, "name": "X", "attributes": [{"name": "a", "type": "string"}]}),
        json!({"id": ACME, "name": "X", "attributes": [{"name": "9lives", "type": "string"}]}),
        json!({"id": ACME, "name": "X", "attributes": [{"name": "a", "type": "complex"}]}),
        json!({"id": ACME, "name": "X", "attributes": []}),
        json!({"id": ACME, "name": "X", "attributes": [
            {"name": "a", "type": "string"}, {"name": "A", "type": "string"}]}),
    ] {
        let (status, refused) = extension(Method::PUT, Some(bad.clone()));
        assert_eq!(
            (status, refused["field"].as_str()),
            (400, Some("settings")),
            "{bad}: {refused}"
        );
    }
    let (status, saved) = extension(Method::PUT, Some(defined));
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["attributes"][1]["multi_valued"], true);
    assert_eq!(extension(Method::GET, None), (200, saved));

    // Discovery names it at once.
    let schema = scim.get(&format!("/Schemas/{ACME}"));
    assert_eq!(schema.status, 200, "{}", schema.body);
    assert_eq!(schema.body["attributes"][0]["name"], "badgeNumber");
    assert_eq!(schema.body["attributes"][0]["type"], "integer");
    assert_eq!(schema.body["attributes"][1]["multiValued"], true);
    let user_type = scim.get("/ResourceTypes/User");
    assert!(
        user_type.body["schemaExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["schema"] == ACME),
        "{}",
        user_type.body
    );

    // Kept as sent, checked against the definition.
    let mut ada = user(
        "ada",
        "Ada",
        json!([{"value": "ada@acme.example", "primary": true}]),
    );
    ada["schemas"] = json!([USER, ACME]);
    ada[ACME] = json!({"badgeNumber": 4711, "clearances": ["lab", "vault"], "remote": false});
    let made = scim.post("/Users", ada.clone());
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body[ACME]["clearances"], json!(["lab", "vault"]));
    assert!(
        made.body["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ACME))
    );
    let id = made.body["id"].as_str().unwrap().to_owned();
    for (bad, why) in [
        (json!({"badgeNumber": "4711"}), "a string for an integer"),
        (json!({"badgeNumber": 1.5}), "a decimal for an integer"),
        (
            json!({"badgeNumber": 1, "clearances": "lab"}),
            "a single value for a multi-valued one",
        ),
        (
            json!({"badgeNumber": 1, "shoeSize": 44}),
            "an attribute it does not define",
        ),
        (
            json!({"badgeNumber": 1, "startDate": "yesterday"}),
            "not a dateTime",
        ),
        (json!({"remote": true}), "the required attribute missing"),
    ] {
        let mut sent = user("bad", "Bad", json!([]));
        sent[ACME] = bad;
        assert_scim_error(&scim.post("/Users", sent), 400, Some("invalidValue"));
        let _ = why;
    }

    // PATCH by the extension's attribute path.
    let patch = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": format!("{ACME}:remote"), "value": true},
        {"op": "add", "path": format!("{ACME}:startDate"), "value": "2027-01-04T09:00:00Z"}
    ]});
    let patched = scim.send(Method::PATCH, &format!("/Users/{id}"), Some(patch), None);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body[ACME]["remote"], true);
    assert_eq!(patched.body[ACME]["badgeNumber"], 4711);

    // A stricter definition later never blocks other changes to users who hold
    // values it would refuse: deprovisioning goes through.
    let (status, _) = extension(
        Method::PUT,
        Some(json!({"id": ACME, "name": "AcmeUser", "attributes": [
            {"name": "badgeNumber", "type": "string", "required": true},
            {"name": "clearances", "type": "string", "multi_valued": true},
            {"name": "remote", "type": "boolean"},
            {"name": "startDate", "type": "dateTime"},
            {"name": "site", "type": "string", "required": true}
        ]})),
    );
    assert_eq!(status, 200);
    let off = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": false}
    ]});
    let deprovisioned = scim.send(Method::PATCH, &format!("/Users/{id}"), Some(off), None);
    assert_eq!(deprovisioned.status, 200, "{}", deprovisioned.body);
    assert_eq!(deprovisioned.body["active"], false);
    let touched = json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": format!("{ACME}:remote"), "value": false}
    ]});
    assert_scim_error(
        &scim.send(Method::PATCH, &format!("/Users/{id}"), Some(touched), None),
        400,
        Some("invalidValue"),
    );

    // Removed, the tenant serves SCIM without it; a user sending it is refused.
    assert_eq!(extension(Method::DELETE, None).0, 204);
    assert_eq!(scim.get(&format!("/Schemas/{ACME}")).status, 404);
    let mut again = ada;
    again["userName"] = json!("ada2");
    assert_scim_error(&scim.post("/Users", again), 400, Some("invalidValue"));
}

gatehouse_identity_store::on_both_backends!(a_tenant_defines_its_own_user_extension);
