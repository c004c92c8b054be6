//! private_key_jwt (OIDC Core §9, RFC 7523) over HTTP, and per-client ID token
//! algorithms. Assertions are minted with jsonwebtoken from fixed test keys, so
//! Gatehouse checks signatures it did not make; tokens are checked the same way,
//! against the published JWKS.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Duration;
use gatehouse_core::Clock;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::clients::ClientData;
use gatehouse_token_issuer::client_auth::{JWT_BEARER, secret_hash};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::code_flow::assert_oauth_error;
use crate::support::*;
use crate::web_kit::{Browser, WebApp};

/// A P-256 key made for these tests (PKCS#8 DER) and its public coordinates.
const EC_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOa8300fuzqcoapU/T1zfONcHk4fbJyEtUWAnqLrIn5ChRANCAASBX3kcIGFXjo8MHUA3vvtW7rqUuM+KZfSYoDYYqKGo5RLhh+TwXHgGPhNeyWSey098+v+epAcu16qg1gVNfzHD";
const EC_X: &str = "gV95HCBhV46PDB1AN777Vu66lLjPimX0mKA2GKihqOU";
const EC_Y: &str = "EuGH5PBceAY-E17JZJ7LT3z6_56kBy7XqqDWBU1_McM";
/// RFC 8032 §7.1, test 1, as PKCS#8 DER, and its public key.
const ED_PKCS8: &str = "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g";
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// Another P-256 key: the forger's.
const OTHER_EC_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSMQ2IIBo9nTwkli/NWLuwdQGcx64ATAlVPbsAv79TX+hRANCAASL5GGfKmTqIQL4iKQVF/+/F8AMdsZuQY2sNC97Up/d2Z55a0pfNdfUwZt1YcErEMzLgDb3PA/Hw4fZ5meF8oK/";

const PASSWORD: &str = "violet-harbor-quilt-97-lantern";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn client_jwks() -> Value {
    json!({ "keys": [
        { "kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "ec-1", "use": "sig", "alg": "ES256" },
        // No kid and no alg: the key type says EdDSA.
        { "kty": "OKP", "crv": "Ed25519", "x": ED_X },
    ]})
}

fn client(client_id: &str, method: &str, id_token_alg: &str) -> ClientData {
    ClientData {
        auth_method: method.into(),
        secret_hash: (method != "private_key_jwt").then(|| secret_hash("a-secret")),
        jwks: (method == "private_key_jwt").then(|| client_jwks().to_string()),
        redirect_uris: vec![REDIRECT.into()],
        grant_types: vec!["client_credentials".into(), "authorization_code".into()],
        scopes: vec!["openid".into(), "email".into(), "orders:read".into()],
        audiences: vec!["https://api.example".into()],
        default_audience: Some("https://api.example".into()),
        refresh_token_ttl_secs: 0,
        refresh_idle_ttl_secs: 0,
        id_token_alg: id_token_alg.into(),
        first_party: true,
        ..ClientData::new(client_id, client_id)
    }
}

fn register(app: &WebApp, tenant_slug: &str, data: ClientData) {
    let tenant = app.tenant_id(tenant_slug);
    // As `gatehouse clients create` does: the signing key of a client's ID-token
    // algorithm is made with the client, never during one of its requests (an RSA
    // key takes seconds to generate in a debug build).
    let alg: gatehouse_token_issuer::Algorithm = data.id_token_alg.parse().unwrap();
    gatehouse_token_issuer::ensure_active(
        &mut app.db.conn(),
        &app.state.cipher,
        app.clock.now(),
        tenant,
        alg,
    )
    .unwrap();
    app.create_client(tenant_slug, data);
}

#[derive(Clone, Copy)]
enum Key {
    Ec,
    Ed,
    Forged,
}

/// Signs `claims` as a client assertion. The EC keys name the registered kid (the
/// forger claims it too); the Ed25519 key was registered without one.
fn assertion_with(key: Key, claims: Value) -> String {
    let der = |b64: &str| STANDARD.decode(b64).unwrap();
    let (alg, key, kid) = match key {
        Key::Ec => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_der(&der(EC_PKCS8)),
            Some("ec-1"),
        ),
        Key::Ed => (
            jsonwebtoken::Algorithm::EdDSA,
            jsonwebtoken::EncodingKey::from_ed_der(&der(ED_PKCS8)),
            None,
        ),
        Key::Forged => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_der(&der(OTHER_EC_PKCS8)),
            Some("ec-1"),
        ),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn claims(app: &WebApp, client_id: &str, aud: &str, jti: &str) -> Value {
    let now = app.clock.now().timestamp();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": jti,
    })
}

/// An assertion for `client_id`, addressed to `aud`, valid for a minute.
fn assertion(app: &WebApp, key: Key, client_id: &str, aud: &str, jti: &str) -> String {
    assertion_with(key, claims(app, client_id, aud, jti))
}

fn with_assertion(assertion: &str) -> String {
    format!(
        "client_assertion_type={}&client_assertion={assertion}",
        urlencode(JWT_BEARER)
    )
}

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The status and JSON of a form post to `path`, with `authorization` if given.
fn post(app: &WebApp, path: &str, body: &str, authorization: Option<&str>) -> (u16, Value) {
    let answer = app.post_urlencoded(path, authorization, body);
    (answer.status, answer.json)
}

fn client_credentials(app: &WebApp, prefix: &str, assertion: &str) -> (u16, Value) {
    post(
        app,
        &format!("{prefix}/oauth2/token"),
        &format!(
            "grant_type=client_credentials&{}",
            with_assertion(assertion)
        ),
        None,
    )
}

fn introspect(app: &WebApp, token: &str, assertion: &str) -> (u16, Value) {
    post(
        app,
        "/oauth2/introspect",
        &format!("token={token}&{}", with_assertion(assertion)),
        None,
    )
}

fn jwks(app: &WebApp) -> jsonwebtoken::jwk::JwkSet {
    app.get_json("/jwks")
}

/// Checks a token against the published JWKS with jsonwebtoken; returns its header
/// algorithm and claims.
fn verified(app: &WebApp, token: &str, audience: &str) -> (jsonwebtoken::Algorithm, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set = jwks(app);
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("the signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.base.as_str()]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    (header.alg, claims)
}

fn private_key_jwt_flow(backend: Backend) {
    let app = WebApp::start(backend);
    register(&app, "default", client("svc", "private_key_jwt", "ES256"));
    let issuer = app.base.clone();

    let first = assertion(&app, Key::Ec, "svc", &issuer, "jti-1");
    let (status, issued) = client_credentials(&app, "", &first);
    assert_eq!(status, 200, "{issued}");
    let access_token = issued["access_token"].as_str().unwrap().to_owned();
    let (alg, claims) = verified(&app, &access_token, "https://api.example");
    assert_eq!(alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(
        (&claims["sub"], &claims["client_id"]),
        (&json!("svc"), &json!("svc"))
    );

    // The same assertion again is a replay.
    let (status, replayed) = client_credentials(&app, "", &first);
    assert_oauth_error(status, &replayed, 401, "invalid_client");

    // Introspection with an EdDSA assertion addressed to the issuer itself.
    let by_issuer = assertion(&app, Key::Ed, "svc", &app.base, "jti-2");
    let (status, active) = introspect(&app, &access_token, &by_issuer);
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["active"], true);

    // Revocation with one addressed to the revocation endpoint (the endpoint called).
    let revocation = assertion(&app, Key::Ec, "svc", &issuer, "jti-3");
    let (status, _) = post(
        &app,
        "/oauth2/revoke",
        &format!("token={access_token}&{}", with_assertion(&revocation)),
        None,
    );
    assert_eq!(status, 200);
    let again = assertion(&app, Key::Ec, "svc", &issuer, "jti-4");
    assert_eq!(introspect(&app, &access_token, &again).1["active"], false);
}

gatehouse_identity_store::on_both_backends!(private_key_jwt_flow);

#[test]
fn bad_assertions_are_invalid_client() {
    let app = WebApp::start(Backend::Sqlite);
    app.create_tenant("acme", "Acme", serde_json::json!({}));
    register(&app, "default", client("svc", "private_key_jwt", "ES256"));
    register(&app, "acme", client("svc", "private_key_jwt", "ES256"));
    register(
        &app,
        "default",
        client("basic", "client_secret_basic", "ES256"),
    );
    let issuer = app.base.clone();
    let refused = |answer: (u16, Value), why: &str| {
        assert_eq!(
            (answer.0, answer.1["error"].as_str()),
            (401, Some("invalid_client")),
            "{why}: {}",
            answer.1
        );
    };

    refused(
        client_credentials(&app, "", &assertion(&app, Key::Forged, "svc", &issuer, "f")),
        "signed by another key",
    );
    // Only the issuer identifier is an audience: not the token endpoint's URL.
    refused(
        client_credentials(
            &app,
            "",
            &assertion(
                &app,
                Key::Ec,
                "svc",
                &format!("{}/oauth2/token", app.base),
                "te",
            ),
        ),
        "addressed to the token endpoint",
    );
    // An assertion for acme does not work at the default tenant.
    let for_acme = assertion(&app, Key::Ec, "svc", &format!("{}/t/acme", app.base), "a");
    refused(
        client_credentials(&app, "", &for_acme),
        "addressed to another tenant",
    );
    let (status, _) = client_credentials(&app, "/t/acme", &for_acme);
    assert_eq!(
        status, 200,
        "the same assertion is good where it is addressed"
    );
    refused(
        client_credentials(
            &app,
            "",
            &assertion(&app, Key::Ec, "svc", "https://elsewhere.example/token", "b"),
        ),
        "addressed to another server",
    );
    let mut wrong_issuer = claims(&app, "svc", &issuer, "c");
    wrong_issuer["iss"] = "someone-else".into();
    refused(
        client_credentials(&app, "", &assertion_with(Key::Ec, wrong_issuer)),
        "iss is not the client",
    );
    // A client registered for client_secret_basic cannot switch to assertions.
    refused(
        client_credentials(&app, "", &assertion(&app, Key::Ec, "basic", &issuer, "d")),
        "a client_secret_basic client",
    );
    // alg none.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(&app, "svc", &issuer, "e").to_string())
    );
    refused(client_credentials(&app, "", &unsigned), "alg none");
    // Expired: minted, then the clock moves past exp and the leeway.
    let late = assertion(&app, Key::Ec, "svc", &issuer, "g");
    app.advance(Duration::seconds(60 + 30));
    refused(client_credentials(&app, "", &late), "expired");

    // Two methods at once, or half an assertion, is a malformed request; the
    // client_id parameter, when sent, must be the assertion's subject.
    let fresh = assertion(&app, Key::Ec, "svc", &issuer, "h");
    let basic = format!("Basic {}", STANDARD.encode("svc:a-secret"));
    let malformed = [
        (
            "two methods at once",
            format!("grant_type=client_credentials&{}", with_assertion(&fresh)),
            Some(basic.as_str()),
            (400, "invalid_request"),
        ),
        (
            "half an assertion",
            format!("grant_type=client_credentials&client_assertion={fresh}"),
            None,
            (400, "invalid_request"),
        ),
        (
            "a client_id that is not the assertion's subject",
            format!(
                "grant_type=client_credentials&client_id=basic&{}",
                with_assertion(&fresh)
            ),
            None,
            (401, "invalid_client"),
        ),
    ];
    for (what, body, authorization, (status, error)) in malformed {
        let (got, answer) = post(&app, "/oauth2/token", &body, authorization);
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{what}: {answer}"
        );
    }
    // None of the failures above used up `h`.
    let (status, ok) = post(
        &app,
        "/oauth2/token",
        &format!(
            "grant_type=client_credentials&client_id=svc&{}",
            with_assertion(&fresh)
        ),
        None,
    );
    assert_eq!(status, 200, "{ok}");
}

fn signed_in(app: &WebApp) -> Browser {
    app.create_verified_user("ada@example.com", PASSWORD);
    app.signed_in_browser("ada@example.com", PASSWORD)
}

/// Runs the code flow for `client_id` (first party: no consent page) and redeems
/// the code authenticating with an assertion.
fn code_flow_tokens(app: &WebApp, browser: &mut Browser, client_id: &str) -> Value {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let page = browser.get(&format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20email&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        urlencode(REDIRECT)
    ));
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.location().unwrap();
    let query = location.split_once('?').unwrap().1;
    let code = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .expect("a code in the redirect");
    let proof = assertion(
        app,
        Key::Ed,
        client_id,
        &app.base,
        &format!("code-{client_id}"),
    );
    let (status, tokens) = post(
        app,
        "/oauth2/token",
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}&{}",
            urlencode(REDIRECT),
            with_assertion(&proof)
        ),
        None,
    );
    assert_eq!(status, 200, "{tokens}");
    tokens
}

#[test]
fn id_tokens_are_signed_with_the_clients_algorithm() {
    let app = WebApp::start(Backend::Sqlite);
    register(
        &app,
        "default",
        client("rsa-app", "private_key_jwt", "RS256"),
    );
    register(
        &app,
        "default",
        client("ed-app", "private_key_jwt", "EdDSA"),
    );
    register(
        &app,
        "default",
        client("plain-app", "private_key_jwt", "ES256"),
    );
    let mut browser = signed_in(&app);
    let half = |digest: &[u8]| URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2]);
    for (client_id, expected) in [
        ("rsa-app", jsonwebtoken::Algorithm::RS256),
        ("ed-app", jsonwebtoken::Algorithm::EdDSA),
        ("plain-app", jsonwebtoken::Algorithm::ES256),
    ] {
        let tokens = code_flow_tokens(&app, &mut browser, client_id);
        let access = tokens["access_token"].as_str().unwrap();
        let (alg, claims) = verified(&app, tokens["id_token"].as_str().unwrap(), client_id);
        assert_eq!(alg, expected, "{client_id}");
        assert_eq!(
            (&claims["aud"], &claims["nonce"]),
            (&json!(client_id), &json!("n"))
        );
        // at_hash uses the ID token's hash: SHA-512 for Ed25519, SHA-256 otherwise.
        let at_hash = if alg == jsonwebtoken::Algorithm::EdDSA {
            half(&Sha512::digest(access.as_bytes()))
        } else {
            half(&Sha256::digest(access.as_bytes()))
        };
        assert_eq!(claims["at_hash"], at_hash, "{client_id}");
        // Access tokens stay ES256, whatever the client reads its ID tokens with.
        let (alg, _) = verified(&app, access, "https://api.example");
        assert_eq!(alg, jsonwebtoken::Algorithm::ES256);
    }
    let algs: Vec<String> = jwks(&app)
        .keys
        .iter()
        .filter_map(|key| key.common.key_algorithm.map(|alg| format!("{alg:?}")))
        .collect();
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(algs.iter().any(|a| a == alg), "{alg} not in {algs:?}");
    }
}

#[test]
fn the_cli_registers_private_key_jwt_clients_and_their_id_token_key() {
    let dir = started_once();
    let jwks_file = dir.path().join("client-jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::to_string_pretty(&client_jwks()).unwrap(),
    )
    .unwrap();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "clients",
            "create",
            "--name",
            "Batch",
            "--grant",
            "client_credentials",
            "--scope",
            "orders:read",
            "--audience",
            "https://api.example",
        ];
        args.extend_from_slice(extra);
        run(&mut gatehouse(dir.path(), &args))
    };
    let created = create(&[
        "--client-id",
        "batch",
        "--auth-method",
        "private-key-jwt",
        "--jwks",
        jwks_file.to_str().unwrap(),
        "--id-token-alg",
        "EdDSA",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let out = stdout(&created);
    assert!(
        out.contains("private_key_jwt") && out.contains("EdDSA"),
        "{out}"
    );
    assert!(
        !out.contains("client_secret:"),
        "no secret for private_key_jwt: {out}"
    );
    // The ID token key exists before any token is signed with it.
    let keys = stdout(&run(&mut gatehouse(dir.path(), &["keys", "list"])));
    assert!(keys.contains("\tEdDSA\tactive\t"), "{keys}");

    // Inline JSON works too.
    let inline = create(&[
        "--client-id",
        "inline",
        "--auth-method",
        "private-key-jwt",
        "--jwks",
        &client_jwks().to_string(),
    ]);
    assert!(inline.status.success(), "{}", stderr(&inline));

    let fails = |output: std::process::Output, needle: &str| {
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(create(&["--auth-method", "private-key-jwt"]), "--jwks");
    let mut private = client_jwks();
    private["keys"][0]["d"] = "c2VjcmV0".into();
    fails(
        create(&[
            "--auth-method",
            "private-key-jwt",
            "--jwks",
            &private.to_string(),
        ]),
        "private key material",
    );
    fails(
        create(&["--jwks", &client_jwks().to_string()]),
        "--jwks is for private_key_jwt clients only",
    );
    fails(
        create(&["--id-token-alg", "HS256"]),
        "unknown ID token algorithm",
    );
}
