//! Hostile upstream OpenID providers. A scripted provider — a plain HTTP server in
//! the test, serving discovery, its keys and a token endpoint whose ID token each
//! case crafts — answers a federated sign-in begun on Gatehouse's real pages. Each
//! forged or misdirected answer is refused with its own reference code, audited
//! as `federation.refused`, and creates no account, link or session; the honest
//! answer, sent the same way, signs in (so the refusals are the checks', not the
//! rig's).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_identity_store::Backend;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::scripted_op::{IdToken, Key, ScriptedOp, upstream_url};
use crate::web_kit::{Browser, Page, WebApp};

const CLIENT_ID: &str = "gatehouse-rp";
const CLIENT_SECRET: &str = "scripted-op-client-secret";
const CODE: &str = "scripted-code";

/// A sign-in begun on the sign-in page: the browser and the authorization
/// request's parameters.
fn begin(app: &WebApp, op: &ScriptedOp, slug: &str) -> (Browser, HashMap<String, String>) {
    let mut browser = app.browser();
    let signin = browser.get("/signin");
    let started = browser.post_form(&format!("/federation/{slug}/start"), &signin, &[]);
    assert_eq!(started.status, 200, "{}", started.body);
    let url = upstream_url(&started.body);
    assert_eq!(
        url.origin().ascii_serialization(),
        op.base,
        "sent to the provider"
    );
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["client_id"], CLIENT_ID);
    (browser, params)
}

fn claims(op: &ScriptedOp, nonce: &str, now: i64) -> Value {
    json!({
        "iss": op.base,
        "sub": "partner-user-1",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": nonce,
        "email": "sam@partner.example",
        "email_verified": true,
        "given_name": "Sam",
    })
}

/// The provider's answer for the request `params` began: the code, exchanged for
/// `id_token`, with `state` and `iss` as given.
fn answer(
    browser: &mut Browser,
    op: &ScriptedOp,
    params: &HashMap<String, String>,
    id_token: IdToken,
    state: &str,
    iss: &str,
) -> Page {
    op.expect(CODE, &params["code_challenge"], id_token);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", CODE)
        .append_pair("state", state)
        .append_pair("iss", iss)
        .finish();
    browser.get(&format!("/federation/partner/callback?{query}"))
}

#[track_caller]
fn assert_refused(page: &Page, code: &str) {
    assert!(
        page.status == 400 || page.status == 502,
        "refused, not {}: {}",
        page.status,
        page.body
    );
    assert!(
        page.body.contains(&format!("Reference: {code}")),
        "reference {code}: {}",
        page.body
    );
}

fn no_partner_account(app: &WebApp) -> bool {
    let mut conn = app.db.conn();
    gatehouse_identity_store::users::find_by_user_name(
        &mut conn,
        app.default_tenant(),
        "sam@partner.example",
    )
    .unwrap()
    .is_none()
}

fn forged_answers_from_the_provider_are_refused(backend: Backend) {
    let app = WebApp::start(backend);
    let op = ScriptedOp::start();
    // Another key under the provider's kid: not the key its set publishes.
    let stranger = Key::new("k1");
    let sign = |claims: &Value| op.script.lock().unwrap().key.sign(claims);
    let admin = &app.state.admin;
    let operator = gatehouse_admin::Operator::named("test").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connection = |slug: &str, issuer: &str| gatehouse_admin::NewConnection {
        slug: slug.into(),
        display_name: "Partner".into(),
        logo_url: None,
        enabled: true,
        jit_provisioning: true,
        trust_verified_email: true,
        kind: "oidc".into(),
        settings: json!({"issuer": issuer, "client_id": CLIENT_ID}),
        idp_metadata: None,
        mapping: None,
        client_secret: Some(CLIENT_SECRET.into()),
        domains: vec![],
    };
    rt.block_on(admin.create_connection(&operator, "default", connection("partner", &op.base)))
        .unwrap();
    // Configured with another issuer than the provider's document names (a mix-up).
    rt.block_on(admin.create_connection(
        &operator,
        "default",
        connection("mixup", &format!("{}/tenant-b", op.base)),
    ))
    .unwrap();
    let now = || app.state.clock.now().timestamp();

    // Each forgery: what the ID token says, and the code that refuses it.
    let none_token = |claims: &Value| {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let hmac_token = |claims: &Value| {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    type Forge<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let cases: Vec<(&str, Forge)> = vec![
        (
            "another issuer",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now());
                c["iss"] = json!("https://evil.example");
                sign(&c)
            }),
        ),
        (
            "another audience",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now());
                c["aud"] = json!("someone-else");
                sign(&c)
            }),
        ),
        (
            "an untrusted extra audience",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now());
                c["aud"] = json!([CLIENT_ID, "someone-else"]);
                sign(&c)
            }),
        ),
        (
            "alg none",
            Box::new(|nonce| none_token(&claims(&op, nonce, now()))),
        ),
        (
            "HMAC keyed with the client secret",
            Box::new(|nonce| hmac_token(&claims(&op, nonce, now()))),
        ),
        (
            "a key not in the provider's set (same kid)",
            Box::new(|nonce| stranger.sign(&claims(&op, nonce, now()))),
        ),
        (
            "a key the provider never published",
            Box::new(|nonce| Key::new("k9").sign(&claims(&op, nonce, now()))),
        ),
        (
            "another nonce",
            Box::new(|_| sign(&claims(&op, "not-the-nonce", now()))),
        ),
        (
            "expired",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now() - 3600);
                c["exp"] = json!(now() - 600);
                sign(&c)
            }),
        ),
    ];
    for (case, forge) in &cases {
        let (mut browser, params) = begin(&app, &op, "partner");
        let forged = IdToken::Raw(forge(&params["nonce"]));
        let page = answer(
            &mut browser,
            &op,
            &params,
            forged,
            &params["state"],
            &op.base,
        );
        assert_refused(&page, "oidc_id_token");
        assert!(browser.session_cookie().is_none(), "{case}: no session");
        assert!(no_partner_account(&app), "{case}: no account");
    }

    // The answer's `iss` naming another issuer (RFC 9207).
    let (mut browser, params) = begin(&app, &op, "partner");
    let honest = IdToken::Signed(claims(&op, &params["nonce"], now()));
    assert_refused(
        &answer(
            &mut browser,
            &op,
            &params,
            honest,
            &params["state"],
            "https://evil.example",
        ),
        "oidc_issuer",
    );

    // An answer carried to another browser, and a state never issued.
    let (_, params) = begin(&app, &op, "partner");
    let mut other = app.browser();
    other.get("/signin");
    let before = op.token_requests();
    let honest = || IdToken::Signed(claims(&op, &params["nonce"], now()));
    assert_refused(
        &answer(
            &mut other,
            &op,
            &params,
            honest(),
            &params["state"],
            &op.base,
        ),
        "oidc_state",
    );
    assert_refused(
        &answer(&mut other, &op, &params, honest(), "never-issued", &op.base),
        "oidc_state",
    );
    assert_eq!(op.token_requests(), before, "no code was exchanged");

    // A provider whose document names another issuer is refused before anyone is sent.
    let mut browser = app.browser();
    let signin = browser.get("/signin");
    let refused = browser.post_form("/federation/mixup/start", &signin, &[]);
    assert_refused(&refused, "oidc_discovery");

    assert!(no_partner_account(&app));
    let shown = rt
        .block_on(admin.connection("default", "mixup"))
        .unwrap()
        .connection;
    assert!(
        shown
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("issuer")),
        "the operator sees why: {:?}",
        shown.last_error
    );
    let refusals: Vec<String> = app
        .audit_events(200)
        .into_iter()
        .filter(|e| e.action == "federation.refused")
        .map(|e| {
            serde_json::from_str::<Value>(&e.details).unwrap()["code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(refusals.len(), cases.len() + 4, "{refusals:?}");

    // The honest answer, sent the same way, signs in.
    let (mut browser, params) = begin(&app, &op, "partner");
    let honest = || IdToken::Signed(claims(&op, &params["nonce"], now()));
    let page = answer(
        &mut browser,
        &op,
        &params,
        honest(),
        &params["state"],
        &op.base,
    );
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(browser.session_cookie().is_some());
    assert!(!no_partner_account(&app));
    // And the same answer again is a replay.
    assert_refused(
        &answer(
            &mut browser,
            &op,
            &params,
            honest(),
            &params["state"],
            &op.base,
        ),
        "oidc_state",
    );

    // The provider rotates its key: a token signed by the new one makes Gatehouse
    // read the key set again (at most once a minute) and the sign-in goes through.
    op.set(|s| {
        s.key = Key::new("k2");
        s.jwks = json!({"keys": [s.key.jwk]});
    });
    app.advance(chrono::Duration::minutes(2));
    let (mut browser, params) = begin(&app, &op, "partner");
    let rotated = IdToken::Signed(claims(&op, &params["nonce"], now()));
    let page = answer(
        &mut browser,
        &op,
        &params,
        rotated,
        &params["state"],
        &op.base,
    );
    assert_eq!(page.status, 303, "after the rollover: {}", page.body);
    assert_eq!(browser.get("/account").status, 200, "signed in");

    // The partner is offboarded: deleting its connection ends the sessions it opened.
    rt.block_on(admin.delete_connection(&operator, "default", "partner", None))
        .unwrap();
    let after = browser.get("/account");
    assert_eq!(after.status, 303, "{}", after.body);
    assert!(after.location().unwrap().contains("/signin"), "signed out");
    let deleted = app
        .audit_events(300)
        .into_iter()
        .find(|e| e.action == "connection.deleted")
        .unwrap();
    let details: Value = serde_json::from_str(&deleted.details).unwrap();
    assert!(
        details["sessions_ended"].as_u64().unwrap() >= 1,
        "{details}"
    );
}

gatehouse_identity_store::on_both_backends!(forged_answers_from_the_provider_are_refused);

/// `private_key_jwt`: the connection gets its own key (never a shared secret),
/// whose public half the partner fetches; leaving it needs a secret.
fn a_connection_can_authenticate_with_its_own_key(backend: Backend) {
    let app = WebApp::start(backend);
    let admin = &app.state.admin;
    let operator = gatehouse_admin::Operator::named("test").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let new = |secret: Option<&str>| gatehouse_admin::NewConnection {
        slug: "keyed".into(),
        display_name: "Keyed".into(),
        logo_url: None,
        enabled: true,
        jit_provisioning: false,
        trust_verified_email: false,
        kind: "oidc".into(),
        settings: json!({"issuer": "https://op.example", "client_id": "gh", "client_auth": "private_key_jwt"}),
        idp_metadata: None,
        mapping: None,
        client_secret: secret.map(str::to_owned),
        domains: vec![],
    };
    let refused = rt.block_on(admin.create_connection(&operator, "default", new(Some("s3cret"))));
    assert!(
        matches!(
            refused,
            Err(gatehouse_admin::AdminError::Invalid {
                field: "client_secret",
                ..
            })
        ),
        "{refused:?}"
    );
    let made = rt
        .block_on(admin.create_connection(&operator, "default", new(None)))
        .unwrap();
    assert!(made.connection.has_secrets);
    let jwks: Value =
        serde_json::from_str(&app.browser().get("/federation/keyed/jwks").body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(key.get("d").is_none(), "the public half only");
    // Leaving private_key_jwt needs a secret in the same change.
    let basic = json!({"issuer": "https://op.example", "client_id": "gh"});
    let edit = |secret: Option<&str>, version: i64| gatehouse_admin::ConnectionEdit {
        settings: Some(basic.clone()),
        client_secret: secret.map(str::to_owned),
        expected_version: version,
        ..Default::default()
    };
    let refused = rt.block_on(admin.update_connection(
        &operator,
        "default",
        "keyed",
        edit(None, made.connection.version),
    ));
    assert!(matches!(
        refused,
        Err(gatehouse_admin::AdminError::Invalid {
            field: "client_secret",
            ..
        })
    ));
    rt.block_on(admin.update_connection(
        &operator,
        "default",
        "keyed",
        edit(Some("s3cret"), made.connection.version),
    ))
    .unwrap();
    assert_eq!(
        app.browser().get("/federation/keyed/jwks").status,
        404,
        "no key any more"
    );
}

gatehouse_identity_store::on_both_backends!(a_connection_can_authenticate_with_its_own_key);

/// Step-up at the partner: the partner is asked for a fresh, stronger sign-in
/// (`acr_values` that count as the wanted level, `prompt=login`); the answer must
/// name the same person and reach the level, or the session stays as it was.
fn a_partner_session_steps_up_at_the_partner(backend: Backend) {
    let app = WebApp::start(backend);
    let op = ScriptedOp::start();
    let operator = gatehouse_admin::Operator::named("test").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(app.state.admin.create_connection(
        &operator,
        "default",
        gatehouse_admin::NewConnection {
            slug: "partner".into(),
            display_name: "Partner".into(),
            logo_url: None,
            enabled: true,
            jit_provisioning: true,
            trust_verified_email: true,
            kind: "oidc".into(),
            settings: json!({"issuer": op.base, "client_id": CLIENT_ID,
                "acr_levels": {"urn:partner:pwd": 1, "urn:partner:mfa": 2}}),
            idp_metadata: None,
            mapping: None,
            client_secret: Some(CLIENT_SECRET.into()),
            domains: vec![],
        },
    ))
    .unwrap();
    let now = || app.state.clock.now().timestamp();
    let (mut browser, params) = begin(&app, &op, "partner");
    let mut first = claims(&op, &params["nonce"], now());
    first["acr"] = json!("urn:partner:pwd");
    let page = answer(
        &mut browser,
        &op,
        &params,
        IdToken::Signed(first),
        &params["state"],
        &op.base,
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let session = |browser: &Browser| {
        let (_, secret) = browser.session_cookie().unwrap();
        let mut conn = app.db.conn();
        gatehouse_identity_store::sessions::find_active(
            &mut conn,
            app.state.clock.now(),
            app.default_tenant(),
            &gatehouse_authn::testing::secret_digest(&secret),
        )
        .unwrap()
        .unwrap()
    };
    let before = session(&browser);
    assert_eq!(before.aal, 1);
    // Asks the partner; returns the authorization request's parameters.
    let step_up = |browser: &mut Browser| {
        let binding = browser.get("/account").csrf();
        let url = rt
            .block_on(app.state.authn.upstream_step_up(
                &session(browser),
                2,
                app.base.clone(),
                binding,
                "/account".into(),
                Default::default(),
            ))
            .unwrap()
            .expect("the partner can vouch for level 2");
        let gatehouse_authn::federation::UpstreamStep::Redirect(url) = url else {
            panic!("OIDC goes upstream by redirect");
        };
        let url = openidconnect::url::Url::parse(&url).unwrap();
        let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(params["prompt"], "login");
        assert_eq!(params["acr_values"], "urn:partner:mfa");
        params
    };
    // Not strong enough.
    let params = step_up(&mut browser);
    let mut weak = claims(&op, &params["nonce"], now());
    weak["acr"] = json!("urn:partner:pwd");
    assert_refused(
        &answer(
            &mut browser,
            &op,
            &params,
            IdToken::Signed(weak),
            &params["state"],
            &op.base,
        ),
        "step_up_insufficient",
    );
    // Someone else.
    let params = step_up(&mut browser);
    let mut other = claims(&op, &params["nonce"], now());
    other["acr"] = json!("urn:partner:mfa");
    other["sub"] = json!("partner-user-2");
    other["email"] = json!("other@partner.example");
    assert_refused(
        &answer(
            &mut browser,
            &op,
            &params,
            IdToken::Signed(other),
            &params["state"],
            &op.base,
        ),
        "step_up_subject",
    );
    assert_eq!(session(&browser).aal, 1, "unchanged by the refusals");
    // The same person, more strongly: the same session (its sid) at level 2.
    let params = step_up(&mut browser);
    let mut strong = claims(&op, &params["nonce"], now());
    strong["acr"] = json!("urn:partner:mfa");
    let page = answer(
        &mut browser,
        &op,
        &params,
        IdToken::Signed(strong),
        &params["state"],
        &op.base,
    );
    assert_eq!(page.status, 303, "{}", page.body);
    let after = session(&browser);
    assert_eq!(after.aal, 2);
    assert_eq!(after.id, before.id, "the same session, a new cookie");
}

gatehouse_identity_store::on_both_backends!(a_partner_session_steps_up_at_the_partner);
