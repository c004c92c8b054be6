//! Consent that is enforced: withdrawing a purpose through the consent service ends,
//! at once, the refresh token and the access token of the grant that held its
//! scopes, and the consent page asks again.

use gatehouse_consent::Channel;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::purposes::{LegalBasis, PurposeData};

use crate::authzen::{access_token, evaluation, post, register_pep};
use crate::code_flow::{
    VERIFIER, assert_oauth_error, authorize_query, client_and_signed_in_user, exchange, get_code,
    introspect_active, refresh, register, signed_in, signed_in_with_tokens,
};
use crate::web_kit::WebApp;

/// The newsletter purpose that other tests define as it stands: consent to be
/// mailed, over `email`.
pub fn newsletter() -> PurposeData {
    PurposeData {
        name: "Newsletter".into(),
        ..purpose("newsletter", "email")
    }
}

fn purpose(slug: &str, scope: &str) -> PurposeData {
    PurposeData {
        slug: slug.into(),
        name: format!("The {slug}"),
        description: format!("Uses your {scope}."),
        scopes: vec![scope.into()],
        legal_basis: LegalBasis::Consent,
    }
}

pub(crate) fn tenant_and_user(app: &WebApp) -> (TenantId, UserId) {
    (app.default_tenant(), app.user_id("uma@example.com"))
}

/// Defines the purpose `slug` over `scope` and records uma's consent to it for
/// `webapp`, as the consent page would.
pub(crate) fn consented(app: &WebApp, slug: &str, scope: &str) {
    let (tenant, user) = tenant_and_user(app);
    let consents = &app.state.consents;
    consents
        .define_purpose(tenant, "admin", purpose(slug, scope))
        .unwrap();
    consents
        .grant(
            tenant,
            user,
            "webapp",
            slug,
            1,
            Channel::OauthConsentPage,
            None,
        )
        .unwrap();
}

fn withdrawal_ends_the_tokens_that_depended_on_it(backend: Backend) {
    let app = WebApp::start(backend);
    let (mut browser, tokens) = signed_in_with_tokens(&app, false);
    let (tenant, user) = tenant_and_user(&app);

    let consents = &app.state.consents;
    for (slug, scope) in [("newsletter", "email"), ("telephony", "phone")] {
        consented(&app, slug, scope);
    }

    // A purpose whose scopes the grant does not hold leaves it alone.
    let other = consents
        .withdraw(tenant, user, "webapp", "telephony", Channel::AccountPage)
        .unwrap();
    assert!(other.event.is_some() && other.grants_revoked.is_empty());
    let (status, rotated) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "{rotated}");
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh_token = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert!(introspect_active(&app, &access));

    let done = consents
        .withdraw(tenant, user, "webapp", "newsletter", Channel::AccountPage)
        .unwrap();
    assert_eq!(done.grants_revoked.len(), 1, "{done:?}");
    assert!(
        !introspect_active(&app, &access),
        "introspection still answers active after the withdrawal"
    );
    let (status, refused) = refresh(&app, &refresh_token);
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    let current = consents.current(tenant, user).unwrap();
    assert!(current.is_empty(), "{current:?}");

    // The withdrawn scope is no longer remembered: the consent page asks again.
    let again = browser.get(&authorize_query(""));
    assert_eq!(again.status, 200, "no consent asked after a withdrawal");
}

gatehouse_identity_store::on_both_backends!(withdrawal_ends_the_tokens_that_depended_on_it);

#[test]
fn revoking_an_app_ends_all_its_tokens() {
    let app = WebApp::start(Backend::Sqlite);
    let (mut browser, tokens) = signed_in_with_tokens(&app, false);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (tenant, user) = tenant_and_user(&app);
    assert!(introspect_active(&app, &access));

    let done = app
        .state
        .consents
        .revoke_app(tenant, user, "webapp", Channel::AccountPage)
        .unwrap();
    assert_eq!(done.grants_revoked.len(), 1);
    assert!(!introspect_active(&app, &access));
    let (status, refused) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    assert_eq!(browser.get(&authorize_query("")).status, 200);
}

#[test]
fn the_apps_page_withdraws_revokes_and_hands_out_the_receipt() {
    let app = WebApp::start(Backend::Sqlite);
    let (mut browser, tokens) = signed_in_with_tokens(&app, false);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (_tenant, user) = tenant_and_user(&app);
    consented(&app, "newsletter", "email");

    let page = browser.get("/account/apps");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Web App") && page.body.contains("The newsletter"));
    assert!(page.body.contains("name=\"purpose\" value=\"newsletter\""));

    // Without the CSRF token nothing is withdrawn.
    let forged = browser.post_raw(
        "/account/apps/withdraw",
        &[("client_id", "webapp"), ("purpose", "newsletter")],
        &[],
    );
    assert_eq!(forged.status, 403);
    assert!(introspect_active(&app, &access));

    let withdrawn = browser.post_form(
        "/account/apps/withdraw",
        &page,
        &[("client_id", "webapp"), ("purpose", "newsletter")],
    );
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    assert!(withdrawn.body.contains("Your consent has been withdrawn."));
    assert!(!introspect_active(&app, &access));
    let (status, refused) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    let unknown = browser.post_form(
        "/account/apps/withdraw",
        &page,
        &[("client_id", "webapp"), ("purpose", "nothing")],
    );
    assert_eq!(unknown.status, 404);

    let receipt = browser.get("/account/apps/receipt");
    assert_eq!(receipt.status, 200);
    assert!(
        receipt
            .header("content-disposition")
            .starts_with("attachment")
    );
    let receipt: serde_json::Value = serde_json::from_str(&receipt.body).unwrap();
    let events: Vec<_> = receipt["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["channel"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("granted", "oauth_consent_page"),
            ("withdrawn", "account_page")
        ]
    );
    assert_eq!(receipt["user"], user.to_string());

    // The consent page still remembers openid and profile: the app stays listed
    // until it is revoked.
    let page = browser.get("/account/apps");
    assert!(page.body.contains("Web App"));
    let revoked = browser.post_form("/account/apps/revoke", &page, &[("client_id", "webapp")]);
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(revoked.body.contains("No app has access to your account"));

    let mut stranger = app.browser();
    let page = stranger.get("/account/apps");
    assert_eq!(page.status, 303);
    assert_eq!(stranger.get("/account/apps/receipt").status, 303);
}

#[test]
fn the_consent_page_records_the_purposes_it_shows() {
    let (app, mut browser) = client_and_signed_in_user(false);
    let (tenant, user) = tenant_and_user(&app);
    let consents = &app.state.consents;
    for (slug, scope) in [("newsletter", "email"), ("telephony", "phone")] {
        consents
            .define_purpose(tenant, "admin", purpose(slug, scope))
            .unwrap();
    }
    let request = authorize_query("").split_once('?').unwrap().1.to_owned();
    let approve =
        |browser: &mut crate::web_kit::Browser, page: &crate::web_kit::Page, shown: &str| {
            browser.post_form(
                "/authorize/consent",
                page,
                &[
                    ("request", &request),
                    ("decision", "allow"),
                    ("purposes", shown),
                ],
            )
        };

    let page = browser.get(&authorize_query(""));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("The newsletter") && !page.body.contains("The telephony"));
    assert!(
        page.body
            .contains("name=\"purposes\" value=\"newsletter:1\"")
    );

    // The text changed while the page was open: shown again, nothing recorded.
    let change = gatehouse_identity_store::purposes::PurposeChange {
        name: "The weekly newsletter".into(),
        description: "Weekly.".into(),
        scopes: vec!["email".into()],
    };
    consents
        .update_purpose(tenant, "admin", "newsletter", 1, change)
        .unwrap();
    let stale = approve(&mut browser, &page, "newsletter:1");
    assert_eq!(stale.status, 303);
    assert!(
        stale.location().unwrap().contains("/authorize?"),
        "{:?}",
        stale.location()
    );
    assert!(consents.current(tenant, user).unwrap().is_empty());
    let forged = approve(&mut browser, &page, "telephony:1");
    assert_eq!(
        forged.status, 400,
        "consent to a purpose the page did not ask about"
    );

    let page = browser.get(&authorize_query(""));
    assert!(page.body.contains("The weekly newsletter"));
    let approved = approve(&mut browser, &page, "newsletter:2");
    assert_eq!(approved.status, 303, "{}", approved.body);
    let code = crate::code_flow::param(&approved.location().unwrap(), "code").unwrap();
    let current = consents.current(tenant, user).unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(
        (current[0].purpose.as_str(), current[0].version),
        ("newsletter", 2)
    );
    assert_eq!(
        consents.history(tenant, user).unwrap()[0].channel,
        "oauth_consent_page"
    );

    let (_, tokens) = exchange(&app, &code, VERIFIER);
    consents
        .withdraw(tenant, user, "webapp", "newsletter", Channel::AccountPage)
        .unwrap();
    let (status, _) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(status, 400);
}

/// Two nodes on one PostgreSQL database: a withdrawal recorded through one is
/// enforced by the other within a second (it checks the grant in the database).
#[test]
fn a_withdrawal_on_one_node_is_enforced_by_another() {
    let first = WebApp::start(Backend::Postgres);
    let (_browser, tokens) = signed_in_with_tokens(&first, false);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (tenant, user) = tenant_and_user(&first);
    consented(&first, "newsletter", "email");

    register_pep(&first, "pep", &["authzen:evaluate"]);
    let second = first.start_node();
    assert!(
        introspect_active(&second, &access),
        "the other node accepts the token first"
    );
    let pdp_token = access_token(&second, "pep", "authzen:evaluate");
    let ask = evaluation(
        &user.to_string(),
        "read",
        "bob",
        serde_json::json!({"purpose": "newsletter", "client_id": "webapp"}),
    );
    let decide = || {
        post(
            &second,
            "/access/v1/evaluation",
            Some(&pdp_token),
            &ask,
            None,
        )
        .body
    };
    assert_eq!(
        decide(),
        serde_json::json!({"decision": true}),
        "consent in force"
    );
    first
        .state
        .consents
        .withdraw(tenant, user, "webapp", "newsletter", Channel::AccountPage)
        .unwrap();
    let withdrawn = std::time::Instant::now();
    while introspect_active(&second, &access) {
        assert!(
            withdrawn.elapsed() < std::time::Duration::from_secs(1),
            "the other node still accepts the token a second after the withdrawal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, refused) = refresh(&second, tokens["refresh_token"].as_str().unwrap());
    assert_oauth_error(status, &refused, 400, "invalid_grant");
    // And the policy decision point of the other node denies the purpose: its
    // cached subject is dropped by the withdrawal's event (the test clock never
    // moves, so this is the event, not the cache's lifetime).
    let denied = serde_json::json!({"decision": false, "context": {"reason": "consent_withdrawn"}});
    while decide() != denied {
        assert!(
            withdrawn.elapsed() < std::time::Duration::from_secs(1),
            "the other node's PDP still permits a second after the withdrawal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An application records and withdraws consent for its user with the user's token,
/// sees only its own part of the receipt, and a client-credentials token is refused;
/// what it sends wrong (an expiry in the past included) is a 400 that says why.
fn applications_manage_their_users_consent_through_the_api(backend: Backend) {
    use crate::code_flow::{REDIRECT, client_data, param, register_client};
    use gatehouse_core::Clock;
    use reqwest::blocking::Client as Http;

    let app = WebApp::start(backend);
    let mut data = client_data(true);
    data.scopes.push("consent".into());
    data.grant_types.push("client_credentials".into());
    register_client(&app, data);
    let mut browser = signed_in(&app);
    let query = authorize_query("").replace(
        "scope=openid%20profile%20email",
        "scope=openid%20consent%20email",
    );
    assert!(query.contains("consent"), "{query}");
    let answer = browser.get(&query);
    let location = answer.location().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let code = param(&location, "code").unwrap();
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let (tenant, user) = tenant_and_user(&app);
    app.state
        .consents
        .define_purpose(tenant, "admin", purpose("newsletter", "email"))
        .unwrap();

    let call = |method: &str, path: &str, token: &str, body: Option<serde_json::Value>| {
        let url = format!("{}{path}", app.base);
        let mut request = match method {
            "GET" => Http::new().get(url),
            _ => Http::new().post(url),
        }
        .header("Authorization", format!("Bearer {token}"));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or(serde_json::Value::String(text)),
        )
    };

    // Grants the body asks for, as the signed-in user through this client.
    let grant =
        |body: serde_json::Value| call("POST", "/consents/v1/me/grants", &access, Some(body));
    let now = app.clock.now();
    for expired in [now - chrono::Duration::days(1), now] {
        let (status, body) = grant(
            serde_json::json!({"purpose": "newsletter", "version": 1, "expires_at": expired}),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("expires_at"),
            "{body}"
        );
    }
    let in_a_year = now + chrono::Duration::days(365);
    let (status, body) =
        grant(serde_json::json!({"purpose": "newsletter", "version": 1, "expires_at": in_a_year}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["channel"], "api");
    assert_eq!(body["expires_at"], serde_json::json!(in_a_year), "{body}");
    let (status, body) = grant(serde_json::json!({"purpose": "nope", "version": 1}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = grant(serde_json::json!({"purpose": 7}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = call("GET", "/consents/v1/me", &access, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["in_force"][0]["purpose"], "newsletter", "{body}");

    // Another application's consent stays out of this one's receipt.
    let mut other = client_data(true);
    other.client_id = "other-app".into();
    register_client(&app, other);
    app.state
        .consents
        .grant(
            tenant,
            user,
            "other-app",
            "newsletter",
            1,
            Channel::AccountPage,
            None,
        )
        .unwrap();
    assert_eq!(
        app.state
            .consents
            .receipt(tenant, user)
            .unwrap()
            .history
            .len(),
        2
    );
    let (status, receipt) = call("GET", "/consents/v1/me/receipt", &access, None);
    assert_eq!(status, 200, "{receipt}");
    assert!(
        receipt["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["client_id"] == "webapp"),
        "{receipt}"
    );
    assert_eq!(receipt["history"].as_array().unwrap().len(), 1, "{receipt}");

    // A client-credentials token names no user.
    let (_, service) = crate::code_flow::token(&app, "grant_type=client_credentials&scope=consent");
    let service = service["access_token"].as_str().unwrap();
    assert_eq!(call("GET", "/consents/v1/me", service, None).0, 403);
    assert_eq!(call("GET", "/consents/v1/me", "not-a-token", None).0, 401);

    // Withdrawing revokes the grant that held the purpose's scope: the calling token too.
    let (status, body) = call(
        "POST",
        "/consents/v1/me/withdrawals",
        &access,
        Some(serde_json::json!({"purpose": "newsletter"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["grants_revoked"], 1, "{body}");
    assert!(!introspect_active(&app, &access));
    assert_eq!(call("GET", "/consents/v1/me", &access, None).0, 401);
}

gatehouse_identity_store::on_both_backends!(
    applications_manage_their_users_consent_through_the_api
);

fn introspection(app: &WebApp, token: &str) -> serde_json::Value {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("webapp:{}", crate::code_flow::SECRET));
    reqwest::blocking::Client::new()
        .post(format!("{}/oauth2/introspect", app.base))
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn purpose_entry<'a>(answer: &'a serde_json::Value, slug: &str) -> Option<&'a serde_json::Value> {
    answer["purposes"]
        .as_array()?
        .iter()
        .find(|p| p["purpose"] == slug)
}

fn approve(browser: &mut crate::web_kit::Browser, shown: &str) -> String {
    let page = browser.get(&authorize_query(""));
    assert_eq!(page.status, 200, "no consent page: {}", page.body);
    assert!(
        page.body
            .contains(&format!("name=\"purposes\" value=\"{shown}\"")),
        "{}",
        page.body
    );
    let request = authorize_query("").split_once('?').unwrap().1.to_owned();
    let approved = browser.post_form(
        "/authorize/consent",
        &page,
        &[
            ("request", &request),
            ("decision", "allow"),
            ("purposes", shown),
        ],
    );
    assert_eq!(approved.status, 303, "{}", approved.body);
    crate::code_flow::param(&approved.location().unwrap(), "code").unwrap()
}

/// Issuance follows the consent in force when the tokens are made, not when the
/// client was approved: a first-party client still asks for a purpose's consent, a
/// withdrawal between code and exchange withholds the purpose's scopes, the tokens
/// name the purposes and versions they were issued under (introspection reports
/// them), a new version is asked for again with what changed, and an expired consent
/// ends the tokens that rested on it.
fn issuance_follows_the_consent_in_force(backend: Backend) {
    let app = WebApp::start(backend);
    register(&app, true);
    let mut browser = signed_in(&app);
    let (tenant, user) = tenant_and_user(&app);
    let consents = &app.state.consents;
    consents
        .define_purpose(tenant, "admin", purpose("newsletter", "email"))
        .unwrap();
    consents
        .define_purpose(
            tenant,
            "admin",
            PurposeData {
                legal_basis: LegalBasis::Contract,
                ..purpose("account", "profile")
            },
        )
        .unwrap();

    // First-party, yet the consent-based purpose is asked for.
    let code = approve(&mut browser, "newsletter:1");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid profile email");
    let answer = introspection(&app, tokens["access_token"].as_str().unwrap());
    assert_eq!(answer["active"], true, "{answer}");
    let newsletter = purpose_entry(&answer, "newsletter").expect("newsletter in introspection");
    assert_eq!(
        (
            &newsletter["version"],
            &newsletter["consent"],
            &newsletter["legal_basis"]
        ),
        (&1.into(), &"in_force".into(), &"consent".into()),
        "{answer}"
    );
    let account = purpose_entry(&answer, "account").expect("account in introspection");
    assert_eq!(account["legal_basis"], "contract");
    assert!(account.get("consent").is_none(), "{answer}");

    // Withdrawn after the code was issued, before it was exchanged.
    let pending = get_code(&mut browser, "");
    consents
        .withdraw(tenant, user, "webapp", "newsletter", Channel::AccountPage)
        .unwrap();
    let (status, narrowed) = exchange(&app, &pending, VERIFIER);
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(narrowed["scope"], "openid profile", "{narrowed}");
    let answer = introspection(&app, narrowed["access_token"].as_str().unwrap());
    assert!(purpose_entry(&answer, "newsletter").is_none(), "{answer}");

    // Consent again, then a new version: old consent still carries the tokens, but
    // the page asks again and says what changed.
    let code = approve(&mut browser, "newsletter:1");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    let change = gatehouse_identity_store::purposes::PurposeChange {
        name: "The newsletter".into(),
        description: "Uses your email, and your phone for reminders.".into(),
        scopes: vec!["email".into(), "phone".into()],
    };
    consents
        .update_purpose(tenant, "admin", "newsletter", 1, change)
        .unwrap();
    let (status, rotated) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["scope"], "openid profile email");
    let answer = introspection(&app, rotated["access_token"].as_str().unwrap());
    let newsletter = purpose_entry(&answer, "newsletter").unwrap();
    assert_eq!(
        (&newsletter["version"], &newsletter["latest_version"]),
        (&1.into(), &2.into()),
        "{answer}"
    );
    let page = browser.get(&authorize_query(""));
    assert_eq!(page.status, 200);
    for shown in [
        "Changed since you agreed to version 1",
        "It used to say: “Uses your email.”",
        "Now also uses: phone",
    ] {
        assert!(
            page.body.contains(shown),
            "missing {shown:?}: {}",
            page.body
        );
    }

    // A consent that expires takes the tokens resting on it with it.
    let expires = gatehouse_core::Clock::now(&app.clock) + chrono::Duration::minutes(2);
    consents
        .grant(
            tenant,
            user,
            "webapp",
            "newsletter",
            2,
            Channel::Api,
            Some(expires),
        )
        .unwrap();
    let code = get_code(&mut browser, "");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    let access = tokens["access_token"].as_str().unwrap();
    let answer = introspection(&app, access);
    assert_eq!(purpose_entry(&answer, "newsletter").unwrap()["version"], 2);
    app.advance(chrono::Duration::minutes(3));
    assert_eq!(
        introspection(&app, access)["active"],
        false,
        "the access token outlived the consent it rested on"
    );
    let (status, refused) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_oauth_error(status, &refused, 400, "invalid_grant");

    // A purpose defined after a grant withholds its scopes at the next refresh.
    let code = approve(&mut browser, "newsletter:2");
    let (_, tokens) = exchange(&app, &code, VERIFIER);
    consents
        .define_purpose(tenant, "admin", purpose("profiling", "profile"))
        .unwrap();
    let (status, rotated) = refresh(&app, tokens["refresh_token"].as_str().unwrap());
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["scope"], "openid email", "{rotated}");
}

gatehouse_identity_store::on_both_backends!(issuance_follows_the_consent_in_force);

/// An operator withdraws consent on the user's behalf (a support request, a legal
/// order) through the admin API: in force at once, with the operator and the
/// reason on record; an unknown client or purpose is a 404, never an empty record.
fn an_operator_withdraws_a_users_consent_through_the_admin_api(backend: Backend) {
    use crate::admin_api::{call, token_for};
    let app = WebApp::start(backend);
    let (_browser, tokens) = signed_in_with_tokens(&app, false);
    let (tenant, user) = tenant_and_user(&app);
    for (slug, scope) in [("newsletter", "email"), ("telephony", "phone")] {
        consented(&app, slug, scope);
    }
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert!(introspect_active(&app, &access));
    let audience = format!("{}/admin/v1", app.base);
    let helpdesk = token_for(&app, "default", "desk", "admin:helpdesk", &audience);
    let withdraw = |path: &str, why: Option<&str>| {
        let answer = call(&app, Some(&helpdesk), |http, base| {
            let request = http.delete(format!("{base}/admin/v1/users/{user}/consents{path}"));
            match why {
                Some(why) => request.header("Gatehouse-Reason", why),
                None => request,
            }
        });
        let status = answer.status().as_u16();
        (status, answer.json::<serde_json::Value>().unwrap())
    };

    assert_eq!(
        withdraw("/webapp/newsletter", None).0,
        400,
        "a reason is required"
    );
    assert_eq!(withdraw("/webapp/nonsense", Some("ticket 9")).0, 404);
    assert_eq!(withdraw("/nobody/newsletter", Some("ticket 9")).0, 404);
    let (status, done) = withdraw("/webapp/newsletter", Some("ticket 9: asked by phone"));
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done,
        serde_json::json!({"withdrawn": ["newsletter"], "grants_revoked": 1})
    );
    assert!(
        !introspect_active(&app, &access),
        "the token outlived the withdrawal"
    );

    // Without a purpose, everything the user gave the client goes.
    let (status, done) = withdraw("/webapp", Some("ticket 9: remove the app"));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["withdrawn"], serde_json::json!(["telephony"]));
    let current = app.state.consents.current(tenant, user).unwrap();
    assert!(current.is_empty(), "{current:?}");

    let events = app.audit_events(500);
    let withdrawn: Vec<_> = events
        .iter()
        .filter(|e| e.action == "consent.withdrawn" || e.action == "consent.app_revoked")
        .collect();
    assert_eq!(withdrawn.len(), 3, "{withdrawn:#?}");
    assert!(
        withdrawn
            .iter()
            .all(|e| e.actor == "client:desk" && e.details.contains("ticket 9")),
        "{withdrawn:#?}"
    );
}

gatehouse_identity_store::on_both_backends!(
    an_operator_withdraws_a_users_consent_through_the_admin_api
);
