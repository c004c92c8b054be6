//! Hostile upstream OpenID providers. A scripted provider — a plain HTTP server in
//! the test, serving discovery, its keys and a token endpoint whose ID token each
//! case crafts — answers a federated sign-in begun on Gatehouse's real pages. Each
//! forged or misdirected answer is refused with its own reference code, audited
//! as `federation.refused`, and creates no account, link or session; the honest
//! answer, sent the same way, signs in (so the refusals are the checks', not the
//! rig's).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_identity_store::Backend;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::web_kit::{Browser, Page, WebApp};

const CLIENT_ID: &str = "gatehouse-rp";
const CLIENT_SECRET: &str = "scripted-op-client-secret";

/// One P-256 key with its kid.
struct Key {
    kid: String,
    der: Vec<u8>,
    jwk: Value,
}

impl Key {
    fn new(kid: &str) -> Key {
        let signing = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let point = signing.verifying_key().to_encoded_point(false);
        Key {
            kid: kid.to_owned(),
            der: signing.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &EncodingKey::from_ec_der(&self.der)).unwrap()
    }
}

/// What the scripted provider answers with.
#[derive(Default)]
struct Script {
    /// The `issuer` its discovery document names.
    issuer: String,
    jwks: Value,
    id_token: String,
    /// The PKCE challenge of the request under way; the token endpoint checks it.
    code_challenge: String,
    token_requests: usize,
}

struct ScriptedOp {
    base: String,
    script: Arc<Mutex<Script>>,
}

impl ScriptedOp {
    fn start() -> ScriptedOp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script {
            issuer: base.clone(),
            ..Script::default()
        }));
        let shared = Arc::clone(&script);
        let origin = base.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                serve(stream, &origin, &shared);
            }
        });
        ScriptedOp { base, script }
    }

    fn set(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.script.lock().unwrap());
    }
}

fn serve(mut stream: std::net::TcpStream, base: &str, script: &Mutex<Script>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let mut script = script.lock().unwrap();
    let answer = if path.ends_with("/.well-known/openid-configuration") {
        json!({
            "issuer": script.issuer,
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        })
    } else if path == "/jwks" {
        script.jwks.clone()
    } else if path == "/token" {
        script.token_requests += 1;
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if challenge != script.code_challenge {
            json!({"error": "invalid_grant", "error_description": "PKCE verifier mismatch"})
        } else {
            json!({
                "access_token": "scripted-access-token",
                "token_type": "Bearer",
                "expires_in": 60,
                "id_token": script.id_token,
            })
        }
    } else {
        json!({"error": "not_found"})
    };
    let text = answer.to_string();
    let status = if answer.get("error").is_some() {
        "400 Bad Request"
    } else {
        "200 OK"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Where the start page sends the browser (the link its script follows).
fn upstream_url(page: &Page) -> openidconnect::url::Url {
    let marker = "id=\"continue-upstream\" class=\"gh-button gh-button--primary\" href=\"";
    let start = page
        .body
        .find(marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no way upstream: {}", page.body));
    let href = unescape(page.body[start..].split('"').next().unwrap());
    openidconnect::url::Url::parse(&href).unwrap()
}

/// A sign-in begun on the sign-in page: the browser and the authorization
/// request's parameters.
fn begin(app: &WebApp, op: &ScriptedOp, slug: &str) -> (Browser, HashMap<String, String>) {
    let mut browser = app.browser();
    let signin = browser.get("/signin");
    let started = browser.post_form(&format!("/federation/{slug}/start"), &signin, &[]);
    assert_eq!(started.status, 200, "{}", started.body);
    let url = upstream_url(&started);
    assert_eq!(
        url.origin().ascii_serialization(),
        op.base,
        "sent to the provider"
    );
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["client_id"], CLIENT_ID);
    op.set(|s| s.code_challenge = params["code_challenge"].clone());
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

fn answer(browser: &mut Browser, op: &ScriptedOp, state: &str, iss: &str) -> Page {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", "scripted-code")
        .append_pair("state", state)
        .append_pair("iss", iss)
        .finish();
    let _ = op;
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
    let key = Key::new("k1");
    let stranger = Key::new("k1");
    op.set(|s| s.jwks = json!({"keys": [key.jwk]}));
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
        settings: json!({"issuer": issuer, "client_id": CLIENT_ID}),
        mapping: None,
        client_secret: CLIENT_SECRET.into(),
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
                key.sign(&c)
            }),
        ),
        (
            "another audience",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now());
                c["aud"] = json!("someone-else");
                key.sign(&c)
            }),
        ),
        (
            "an untrusted extra audience",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now());
                c["aud"] = json!([CLIENT_ID, "someone-else"]);
                key.sign(&c)
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
            "another nonce",
            Box::new(|_| key.sign(&claims(&op, "not-the-nonce", now()))),
        ),
        (
            "expired",
            Box::new(|nonce| {
                let mut c = claims(&op, nonce, now() - 3600);
                c["exp"] = json!(now() - 600);
                key.sign(&c)
            }),
        ),
    ];
    for (case, forge) in &cases {
        let (mut browser, params) = begin(&app, &op, "partner");
        op.set(|s| s.id_token = forge(&params["nonce"]));
        let page = answer(&mut browser, &op, &params["state"], &op.base);
        assert_refused(&page, "oidc_id_token");
        assert!(browser.session_cookie().is_none(), "{case}: no session");
        assert!(no_partner_account(&app), "{case}: no account");
    }

    // The answer's `iss` naming another issuer (RFC 9207).
    let (mut browser, params) = begin(&app, &op, "partner");
    op.set(|s| s.id_token = key.sign(&claims(&op, &params["nonce"], now())));
    assert_refused(
        &answer(&mut browser, &op, &params["state"], "https://evil.example"),
        "oidc_issuer",
    );

    // An answer carried to another browser, and a state never issued.
    let (_, params) = begin(&app, &op, "partner");
    op.set(|s| s.id_token = key.sign(&claims(&op, &params["nonce"], now())));
    let mut other = app.browser();
    other.get("/signin");
    let before = op.script.lock().unwrap().token_requests;
    assert_refused(
        &answer(&mut other, &op, &params["state"], &op.base),
        "oidc_state",
    );
    assert_refused(
        &answer(&mut other, &op, "never-issued", &op.base),
        "oidc_state",
    );
    assert_eq!(
        op.script.lock().unwrap().token_requests,
        before,
        "no code was exchanged"
    );

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
    op.set(|s| s.id_token = key.sign(&claims(&op, &params["nonce"], now())));
    let page = answer(&mut browser, &op, &params["state"], &op.base);
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(browser.session_cookie().is_some());
    assert!(!no_partner_account(&app));
    // And the same answer again is a replay.
    assert_refused(
        &answer(&mut browser, &op, &params["state"], &op.base),
        "oidc_state",
    );
}

gatehouse_identity_store::on_both_backends!(forged_answers_from_the_provider_are_refused);
