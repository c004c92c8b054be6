//! OAuth 2.0 endpoints over HTTP: metadata, JWKS, client credentials, introspection
//! and revocation, including hostile input. Tokens are checked with jsonwebtoken
//! against the published JWKS, not with Gatehouse's own verifier.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::clients::ClientData;
use gatehouse_token_issuer::client_auth::secret_hash;
use reqwest::blocking::Client as Http;
use serde_json::Value;

use crate::web_kit::{ApiAnswer, WebApp, basic};

pub(crate) const SECRET: &str = "s3cret-s3cret-s3cret-s3cret-s3cret-0123456";

pub(crate) fn register(app: &WebApp, tenant_slug: &str, client_id: &str, method: &str) {
    app.create_client(
        tenant_slug,
        ClientData {
            auth_method: method.into(),
            secret_hash: Some(secret_hash(SECRET)),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["orders:read".into(), "orders:write".into()],
            audiences: vec![
                "https://api.example".into(),
                "https://billing.example".into(),
            ],
            default_audience: Some("https://api.example".into()),
            refresh_token_ttl_secs: 0,
            refresh_idle_ttl_secs: 0,
            ..ClientData::new(client_id, client_id)
        },
    );
}

fn token(app: &WebApp, prefix: &str, client_id: &str, extra: &str) -> ApiAnswer {
    app.post_urlencoded(
        &format!("{prefix}/oauth2/token"),
        Some(&basic(client_id, SECRET)),
        &format!("grant_type=client_credentials{extra}"),
    )
}

/// Verifies a token the way an API would: with the published JWKS and a generic library.
fn verify_independently(app: &WebApp, prefix: &str, token: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = app.get_json(&format!("{prefix}/jwks"));
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["https://api.example", "https://billing.example"]);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

fn acme(app: &WebApp) {
    app.create_tenant("acme", "Acme", serde_json::json!({}));
}

fn client_credentials_flow(backend: Backend) {
    let app = WebApp::start(backend);
    register(&app, "default", "reports", "client_secret_basic");

    let issued = token(&app, "", "reports", "&scope=orders%3Aread");
    assert_eq!(issued.status, 200, "{}", issued.json);
    assert_eq!(issued.headers["cache-control"], "no-store");
    assert_eq!(issued.json["token_type"], "Bearer");
    assert_eq!(issued.json["expires_in"], 300);
    assert_eq!(issued.json["scope"], "orders:read");
    let access_token = issued.json["access_token"].as_str().unwrap().to_owned();
    let claims = verify_independently(&app, "", &access_token);
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["sub"], "reports");
    assert_eq!(claims["client_id"], "reports");
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    let active = app.post_urlencoded(
        "/oauth2/introspect",
        Some(&basic("reports", SECRET)),
        &format!("token={access_token}"),
    );
    assert_eq!(active.status, 200);
    assert_eq!(active.json["active"], true);
    assert_eq!(active.json["client_id"], "reports");
    assert_eq!(active.json["scope"], "orders:read");

    // A token without `openid` is not for UserInfo (RFC 6750 insufficient_scope).
    let userinfo = Http::new()
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(&access_token)
        .send()
        .unwrap();
    assert_eq!(userinfo.status(), 403);
    assert!(
        userinfo.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    assert_eq!(
        userinfo.json::<Value>().unwrap()["error"],
        "insufficient_scope"
    );

    let revoked = app.post_urlencoded(
        "/oauth2/revoke",
        Some(&basic("reports", SECRET)),
        &format!("token={access_token}&token_type_hint=access_token"),
    );
    assert_eq!(revoked.status, 200);
    assert_eq!(
        revoked.json,
        Value::Null,
        "RFC 7009 revocation answers with an empty body"
    );
    let after = app.post_urlencoded(
        "/oauth2/introspect",
        Some(&basic("reports", SECRET)),
        &format!("token={access_token}"),
    );
    assert_eq!(
        after.json,
        serde_json::json!({ "active": false }),
        "revocation was not reflected at once"
    );
}

gatehouse_identity_store::on_both_backends!(client_credentials_flow);

#[test]
fn client_authentication_failures_follow_rfc_6749() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, "default", "reports", "client_secret_basic");
    register(&app, "default", "poster", "client_secret_post");

    let wrong = app.post_urlencoded(
        "/oauth2/token",
        Some(&basic("reports", "wrong")),
        "grant_type=client_credentials",
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json["error"], "invalid_client");
    assert!(wrong.header("www-authenticate").starts_with("Basic"));
    let unknown = app.post_urlencoded(
        "/oauth2/token",
        Some(&basic("nobody", SECRET)),
        "grant_type=client_credentials",
    );
    assert_eq!(
        (unknown.status, &unknown.json),
        (401, &wrong.json),
        "unknown and wrong clients must look alike"
    );

    let by_post = app.post_urlencoded(
        "/oauth2/token",
        None,
        &format!("grant_type=client_credentials&client_id=poster&client_secret={SECRET}"),
    );
    assert_eq!(by_post.status, 200, "{}", by_post.json);
    let wrong_method = app.post_urlencoded(
        "/oauth2/token",
        None,
        &format!("grant_type=client_credentials&client_id=reports&client_secret={SECRET}"),
    );
    assert_eq!(
        wrong_method.status, 401,
        "a basic client authenticated with the post method"
    );
    let nothing = app.post_urlencoded("/oauth2/token", None, "grant_type=client_credentials");
    assert_eq!(nothing.json["error"], "invalid_client");
    let no_auth_introspect = app.post_urlencoded("/oauth2/introspect", None, "token=abc");
    assert_eq!(no_auth_introspect.status, 401);
}

#[test]
fn hostile_and_malformed_token_requests_get_rfc_errors() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, "default", "reports", "client_secret_basic");
    let cases = [
        ("&scope=admin", "invalid_scope"),
        ("&scope=openid", "invalid_scope"),
        ("&resource=https%3A%2F%2Fevil.example", "invalid_target"),
        (
            "&scope=orders%3Aread&scope=orders%3Awrite",
            "invalid_request",
        ),
    ];
    for (extra, expected) in cases {
        let answer = token(&app, "", "reports", extra);
        assert_eq!(
            (answer.status, answer.json["error"].as_str()),
            (400, Some(expected)),
            "{extra}"
        );
        assert_eq!(answer.headers["cache-control"], "no-store");
    }
    let unsupported = app.post_urlencoded(
        "/oauth2/token",
        Some(&basic("reports", SECRET)),
        "grant_type=password&username=a&password=b",
    );
    assert_eq!(unsupported.json["error"], "unsupported_grant_type");
    let missing = app.post_urlencoded(
        "/oauth2/token",
        Some(&basic("reports", SECRET)),
        "scope=orders%3Aread",
    );
    assert_eq!(missing.json["error"], "invalid_request");
    let json_body = Http::new()
        .post(format!("{}/oauth2/token", app.base))
        .header("Authorization", basic("reports", SECRET))
        .json(&serde_json::json!({ "grant_type": "client_credentials" }))
        .send()
        .unwrap();
    assert_eq!(json_body.status(), 400);

    // Two resources give an audience array (RFC 8707).
    let both = token(
        &app,
        "",
        "reports",
        "&resource=https%3A%2F%2Fapi.example&resource=https%3A%2F%2Fbilling.example",
    );
    assert_eq!(both.status, 200, "{}", both.json);
    let claims = verify_independently(&app, "", both.json["access_token"].as_str().unwrap());
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://api.example", "https://billing.example"])
    );
}

#[test]
fn forged_expired_and_foreign_tokens_are_inactive() {
    let app = WebApp::start(Backend::Sqlite);
    acme(&app);
    register(&app, "default", "reports", "client_secret_basic");
    register(&app, "acme", "reports", "client_secret_basic");
    let introspect = |prefix: &str, token: &str| {
        app.post_urlencoded(
            &format!("{prefix}/oauth2/introspect"),
            Some(&basic("reports", SECRET)),
            &format!("token={token}"),
        )
        .json
    };

    let good = token(&app, "", "reports", "").json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect("", &good)["active"], true);

    // A token of the default tenant presented at acme.
    assert_eq!(
        introspect("/t/acme", &good),
        serde_json::json!({ "active": false })
    );

    // Tampered payload, same signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["scope"] = "orders:read orders:write admin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    assert_eq!(introspect("", &tampered)["active"], false);

    // alg: none.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{header}.{}.", parts[1]);
    assert_eq!(introspect("", &unsigned)["active"], false);
    assert_eq!(introspect("", "not-a-jwt")["active"], false);

    // Revoking someone else's token is refused; revoking garbage is fine (RFC 7009).
    let acme_token = token(&app, "/t/acme", "reports", "").json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(introspect("/t/acme", &acme_token)["active"], true);
    let junk = app.post_urlencoded(
        "/oauth2/revoke",
        Some(&basic("reports", SECRET)),
        "token=junk",
    );
    assert_eq!(junk.status, 200);

    // Expiry: move the clock past the lifetime.
    app.advance(Duration::seconds(301));
    assert_eq!(introspect("", &good)["active"], false);
}

#[test]
fn metadata_and_jwks_describe_each_tenant() {
    let app = WebApp::start(Backend::Sqlite);
    acme(&app);
    let get = |path: &str| {
        Http::new()
            .get(format!("{}{path}", app.base))
            .send()
            .unwrap()
    };
    let root: Value = get("/.well-known/oauth-authorization-server")
        .json()
        .unwrap();
    assert_eq!(root["issuer"], app.base);
    let acme_meta: Value = get("/.well-known/oauth-authorization-server/t/acme")
        .json()
        .unwrap();
    let acme_issuer = format!("{}/t/acme", app.base);
    assert_eq!(acme_meta["issuer"], acme_issuer);
    assert_eq!(
        acme_meta["token_endpoint"],
        format!("{acme_issuer}/oauth2/token")
    );

    // Snapshot: the metadata document changes only on purpose. Keys sorted: the
    // wire order is serde_json's (insertion order once any crate in the build asks
    // for `preserve_order`) and means nothing.
    let mut sorted = root.clone();
    sorted.sort_all_objects();
    let normalised = serde_json::to_string_pretty(&sorted)
        .unwrap()
        .replace(&app.base, "https://ISSUER");
    let expected = include_str!("snapshots/oauth-authorization-server.json");
    assert_eq!(
        normalised.trim(),
        expected.trim(),
        "metadata changed; review and update tests/server/snapshots/"
    );

    let jwks = get("/jwks");
    assert_eq!(jwks.headers()["content-type"], "application/jwk-set+json");
    let jwks: Value = jwks.json().unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
    }
    let acme_jwks: Value = get("/t/acme/jwks").json().unwrap();
    assert_ne!(acme_jwks, jwks, "tenants share signing keys");
}
