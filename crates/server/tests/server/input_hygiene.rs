//! Hostile input at the edge: control characters, bytes that are not UTF-8 and
//! look-alike identifiers, at every form and JSON endpoint. Such input is refused
//! with 400 (a readable page, or the RFC error JSON on protocol endpoints), nothing
//! ever answers 500, and SQLite and PostgreSQL give the same answer.

use std::cell::RefCell;

use gatehouse_identity_store::{Backend, users};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::authzen::{access_token, register_pep};
use crate::code_flow::{
    PASSWORD, SECRET, VERIFIER, authorize_query, client_data, exchange, param, register_client,
    signed_in,
};
use crate::consent::newsletter;
use crate::web_kit::{Browser, Page, WebApp};

/// One server per backend, set up alike and reused by every case.
struct Target {
    app: WebApp,
    /// Signed in as uma@example.com, with the CSRF token of its pages.
    member: Browser,
    member_csrf: String,
    /// uma's access token with the scope `consent`.
    user_token: String,
    /// A policy enforcement point's token (`authzen:evaluate`).
    pep_token: String,
}

impl Target {
    fn start(backend: Backend) -> Target {
        let app = WebApp::start(backend);
        let mut client = client_data(true);
        client.scopes.push("consent".into());
        register_client(&app, client);
        let mut member = signed_in(&app);
        app.create_verified_user("alice@example.com", PASSWORD);
        let query = authorize_query("").replace(
            "scope=openid%20profile%20email",
            "scope=openid%20consent%20email",
        );
        let location = member.get(&query).location().unwrap();
        let code = param(&location, "code").unwrap();
        let (status, tokens) = exchange(&app, &code, VERIFIER);
        assert_eq!(status, 200, "{tokens}");
        let user_token = tokens["access_token"].as_str().unwrap().to_owned();
        app.state
            .consents
            .define_purpose(app.default_tenant(), "admin", newsletter())
            .unwrap();
        register_pep(&app, "pep", &["authzen:evaluate"]);
        let pep_token = access_token(&app, "pep", "authzen:evaluate");
        let member_csrf = member.get("/account").csrf();
        Target {
            app,
            member,
            member_csrf,
            user_token,
            pep_token,
        }
    }
}

/// Who sends a form.
#[derive(Debug, Clone, Copy)]
enum Sender {
    /// A browser without a session (a fresh one per case), with its CSRF token.
    Visitor,
    /// The signed-in browser, with its CSRF token.
    Member,
    /// An OAuth client: no cookies; with HTTP Basic credentials when `true`.
    Client(bool),
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// A form post: valid `fields`, the case's value in `fuzzed`.
    Form {
        path: &'static str,
        sender: Sender,
        fields: &'static [(&'static str, &'static str)],
        fuzzed: &'static str,
    },
    /// A page's query parameter.
    Query {
        path: &'static str,
        fuzzed: &'static str,
    },
    /// A JSON body; `@` in `template` is replaced by the case's value as a JSON
    /// string. `consent` picks uma's token, else the PEP's.
    Json {
        path: &'static str,
        consent: bool,
        template: &'static str,
    },
}

const SIGN_UP: &[(&str, &str)] = &[
    ("email", "newcomer@example.com"),
    ("password", PASSWORD),
    ("given_name", "New"),
    ("family_name", "Comer"),
];
const SIGN_IN: &[(&str, &str)] = &[
    ("email", "uma@example.com"),
    ("password", PASSWORD),
    ("return_to", ""),
];
const PROFILE: &[(&str, &str)] = &[
    ("given_name", "Uma"),
    ("family_name", "Example"),
    ("display_name", "Uma"),
];

/// Every form and JSON endpoint a stranger or a signed-in user reaches, in an
/// order that keeps later ones reachable (the failed-password counts come last).
const ENDPOINTS: &[Endpoint] = &[
    Endpoint::Form {
        path: "/account/profile",
        sender: Sender::Member,
        fields: PROFILE,
        fuzzed: "given_name",
    },
    Endpoint::Form {
        path: "/account/profile",
        sender: Sender::Member,
        fields: PROFILE,
        fuzzed: "display_name",
    },
    Endpoint::Form {
        path: "/account/email",
        sender: Sender::Member,
        fields: &[
            ("new_email", "uma.new@example.com"),
            ("current_password", PASSWORD),
        ],
        fuzzed: "new_email",
    },
    Endpoint::Form {
        path: "/signup",
        sender: Sender::Visitor,
        fields: SIGN_UP,
        fuzzed: "email",
    },
    Endpoint::Form {
        path: "/signup",
        sender: Sender::Visitor,
        fields: SIGN_UP,
        fuzzed: "password",
    },
    Endpoint::Form {
        path: "/signup",
        sender: Sender::Visitor,
        fields: SIGN_UP,
        fuzzed: "given_name",
    },
    Endpoint::Form {
        path: "/signin",
        sender: Sender::Visitor,
        fields: SIGN_IN,
        fuzzed: "return_to",
    },
    Endpoint::Form {
        path: "/signin",
        sender: Sender::Visitor,
        fields: SIGN_IN,
        fuzzed: "email",
    },
    Endpoint::Form {
        path: "/signin",
        sender: Sender::Visitor,
        fields: SIGN_IN,
        fuzzed: "password",
    },
    Endpoint::Form {
        path: "/verify/resend",
        sender: Sender::Visitor,
        fields: &[("email", "uma@example.com")],
        fuzzed: "email",
    },
    Endpoint::Form {
        path: "/recover/request",
        sender: Sender::Visitor,
        fields: &[("email", "uma@example.com")],
        fuzzed: "email",
    },
    Endpoint::Query {
        path: "/signin",
        fuzzed: "return_to",
    },
    Endpoint::Query {
        path: "/verify",
        fuzzed: "token",
    },
    Endpoint::Query {
        path: "/recover",
        fuzzed: "token",
    },
    Endpoint::Form {
        path: "/oauth2/token",
        sender: Sender::Client(false),
        fields: &[
            ("grant_type", "authorization_code"),
            ("code", "abc"),
            ("client_id", "webapp"),
        ],
        fuzzed: "client_id",
    },
    Endpoint::Form {
        path: "/oauth2/token",
        sender: Sender::Client(true),
        fields: &[("grant_type", "authorization_code"), ("code", "abc")],
        fuzzed: "code",
    },
    Endpoint::Json {
        path: "/consents/v1/me/grants",
        consent: true,
        template: r#"{"purpose":@,"version":1}"#,
    },
    Endpoint::Json {
        path: "/consents/v1/me/withdrawals",
        consent: true,
        template: r#"{"purpose":@}"#,
    },
    Endpoint::Json {
        path: "/access/v1/evaluation",
        consent: false,
        template: r#"{"subject":{"type":"user","id":@},"action":{"name":"read"},"resource":{"type":"document","id":"doc-1"},"context":{}}"#,
    },
    Endpoint::Json {
        path: "/access/v1/evaluation",
        consent: false,
        template: r#"{"subject":{"type":"user","id":"someone"},"action":{"name":@},"resource":{"type":"document","id":"doc-1"},"context":{}}"#,
    },
    Endpoint::Json {
        path: "/access/v1/evaluation",
        consent: false,
        template: r#"{"subject":{"type":"user","id":"someone"},"action":{"name":"read"},"resource":{"type":"document","id":"doc-1"},"context":{@:"x"}}"#,
    },
    Endpoint::Form {
        path: "/account/password",
        sender: Sender::Member,
        fields: &[
            ("current_password", "not-the-password-1"),
            ("new_password", "a-new-password-that-is-long"),
        ],
        fuzzed: "current_password",
    },
];

/// A case: the value, and whether it goes into the body raw rather than encoded
/// (percent-encoded in a form, escaped in JSON).
type Case = (Vec<u8>, bool);

fn percent_encoded(bytes: &[u8]) -> String {
    form_urlencoded::byte_serialize(bytes).collect()
}

/// The value as a JSON string: escaped by serde when it is text; raw (only `"` and
/// `\` escaped) when it is not, or when the case asks for raw bytes.
fn json_string(bytes: &[u8], raw: bool) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !raw => serde_json::to_vec(text).unwrap(),
        _ => {
            let mut out = vec![b'"'];
            for byte in bytes {
                if matches!(byte, b'"' | b'\\') {
                    out.push(b'\\');
                }
                out.push(*byte);
            }
            out.push(b'"');
            out
        }
    }
}

fn form_body(fields: &[(&str, &str)], fuzzed: &str, value: &[u8], raw: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, (name, default)) in fields.iter().enumerate() {
        if index > 0 {
            body.push(b'&');
        }
        body.extend_from_slice(name.as_bytes());
        body.push(b'=');
        if *name == fuzzed {
            if raw {
                body.extend_from_slice(value);
            } else {
                body.extend_from_slice(percent_encoded(value).as_bytes());
            }
        } else {
            body.extend_from_slice(percent_encoded(default.as_bytes()).as_bytes());
        }
    }
    body
}

/// Sends the case to one server; its status and the start of its body.
fn send(target: &mut Target, endpoint: &Endpoint, (value, raw): &Case) -> (u16, String) {
    let app = &target.app;
    let page: Page = match endpoint {
        Endpoint::Form {
            path,
            sender,
            fields,
            fuzzed,
        } => {
            let body = form_body(fields, fuzzed, value, *raw);
            let form = "application/x-www-form-urlencoded";
            match sender {
                Sender::Visitor => {
                    let mut visitor = app.browser();
                    let csrf = visitor.get("/signin").csrf();
                    let mut all = format!("csrf_token={csrf}&").into_bytes();
                    all.extend(body);
                    visitor.post_bytes(path, form, all)
                }
                Sender::Member => {
                    let mut all = format!("csrf_token={}&", target.member_csrf).into_bytes();
                    all.extend(body);
                    target.member.post_bytes(path, form, all)
                }
                Sender::Client(authenticated) => {
                    let mut request = reqwest::blocking::Client::new()
                        .post(format!("{}{path}", app.base))
                        .header("Content-Type", form)
                        .body(body);
                    if *authenticated {
                        request = request.basic_auth("webapp", Some(SECRET));
                    }
                    let response = request.send().unwrap();
                    Page {
                        status: response.status().as_u16(),
                        headers: response.headers().clone(),
                        body: response.text().unwrap(),
                    }
                }
            }
        }
        Endpoint::Query { path, fuzzed } => {
            let mut visitor = app.browser();
            visitor.get(&format!("{path}?{fuzzed}={}", percent_encoded(value)))
        }
        Endpoint::Json {
            path,
            consent,
            template,
        } => {
            let (before, after) = template.split_once('@').unwrap();
            let mut body = before.as_bytes().to_vec();
            body.extend(json_string(value, *raw));
            body.extend_from_slice(after.as_bytes());
            let token = if *consent {
                &target.user_token
            } else {
                &target.pep_token
            };
            let response = reqwest::blocking::Client::new()
                .post(format!("{}{path}", app.base))
                .header("Content-Type", "application/json")
                .bearer_auth(token)
                .body(body)
                .send()
                .unwrap();
            Page {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.text().unwrap(),
            }
        }
    };
    (page.status, page.body.chars().take(300).collect())
}

/// Whether the edge must refuse `value` in this endpoint's syntax (JSON carries tab,
/// CR and LF; a form or query field carries no control character at all).
fn must_refuse(endpoint: &Endpoint, value: &[u8]) -> bool {
    let json = matches!(endpoint, Endpoint::Json { .. });
    match std::str::from_utf8(value) {
        Err(_) => true,
        Ok(text) => text
            .chars()
            .any(|c| c.is_control() && !(json && matches!(c, '\t' | '\n' | '\r'))),
    }
}

const CONTROLS: &[char] = &[
    '\0', '\u{1}', '\u{8}', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1b}', '\u{7f}', '\u{80}',
    '\u{85}', '\u{9b}',
];
const INVISIBLES: &[char] = &[
    '\u{200b}', '\u{200d}', '\u{ad}', '\u{feff}', '\u{202e}', '\u{2060}',
];
/// Latin letters and a look-alike each: Cyrillic, a dotless i, Greek, full width.
const CONFUSABLES: &[(char, char)] = &[
    ('a', 'а'),
    ('e', 'е'),
    ('o', 'о'),
    ('c', 'с'),
    ('p', 'р'),
    ('i', 'ı'),
    ('i', 'і'),
    ('o', 'ο'),
    ('a', 'ɑ'),
    ('m', 'ｍ'),
];
const BASES: &[&str] = &[
    "uma@example.com",
    "alice@example.com",
    "newsletter",
    "webapp",
    "/authorize?client_id=webapp&response_type=code",
];

fn with_control() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(BASES),
        prop::sample::select(CONTROLS),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(base, control, at)| {
            let mut chars: Vec<char> = base.chars().collect();
            chars.insert(at.index(chars.len() + 1), control);
            chars.into_iter().collect::<String>().into_bytes()
        })
}

fn look_alike() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&BASES[..2]),
        prop::collection::vec(prop::sample::select(CONFUSABLES), 0..3),
        prop::option::of((
            prop::sample::select(INVISIBLES),
            any::<prop::sample::Index>(),
        )),
        any::<bool>(),
    )
        .prop_map(|(base, swaps, invisible, upper)| {
            let mut text = if upper {
                base.to_uppercase()
            } else {
                base.to_owned()
            };
            for (latin, other) in swaps {
                text = text.replacen(latin, &other.to_string(), 1);
            }
            if let Some((mark, at)) = invisible {
                let mut chars: Vec<char> = text.chars().collect();
                chars.insert(at.index(chars.len() + 1), mark);
                text = chars.into_iter().collect();
            }
            text.into_bytes()
        })
}

fn hostile_value() -> impl Strategy<Value = Case> {
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        with_control(),
        look_alike(),
        prop::collection::vec(any::<char>(), 0..12)
            .prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
    ];
    (value, prop::bool::weighted(0.2))
}

/// Cases per endpoint: 22 endpoints × 12 cases × 2 backends ≈ 530 requests.
const CASES_PER_ENDPOINT: u32 = 12;

#[test]
fn hostile_input_never_fails_and_both_backends_agree() {
    let targets = RefCell::new([
        Target::start(Backend::Sqlite),
        Target::start(Backend::Postgres),
    ]);
    for endpoint in ENDPOINTS {
        let mut runner = TestRunner::new(Config {
            // PROPTEST_CASES=500 for a deeper run by hand.
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|cases| cases.parse().ok())
                .unwrap_or(CASES_PER_ENDPOINT),
            failure_persistence: None,
            ..Config::default()
        });
        let outcome = runner.run(&hostile_value(), |case| {
            let mut targets = targets.borrow_mut();
            let [sqlite, postgres] = &mut *targets;
            let (on_sqlite, sqlite_body) = send(sqlite, endpoint, &case);
            let (on_postgres, postgres_body) = send(postgres, endpoint, &case);
            let shown = String::from_utf8_lossy(&case.0).escape_debug().to_string();
            if on_sqlite >= 500 || on_postgres >= 500 {
                return Err(TestCaseError::fail(format!(
                    "{shown}: SQLite {on_sqlite} {sqlite_body:?}, PostgreSQL {on_postgres} {postgres_body:?}"
                )));
            }
            prop_assert_eq!(on_sqlite, on_postgres, "{}: {:?} / {:?}", shown, sqlite_body, postgres_body);
            if !case.1 && must_refuse(endpoint, &case.0) {
                prop_assert_eq!(on_sqlite, 400, "{} was not refused: {:?}", shown, sqlite_body);
            }
            Ok(())
        });
        if let Err(error) = outcome {
            panic!("{endpoint:?}: {error}");
        }
    }
}

fn refusals_are_readable_pages_and_rfc_errors(backend: Backend) {
    let target = Target::start(backend);
    let app = &target.app;

    let users_before = users::count(&mut app.db.conn(), app.default_tenant()).unwrap();
    // A page: the readable 400 page, in the page's own layout.
    let mut visitor = app.browser();
    let page = visitor.post_encoded_form("/signup", "email=eve%00@example.com&password=x");
    page.assert_shows(400, "Characters not allowed");
    assert!(page.header("content-type").starts_with("text/html"));
    // %FF is refused, not stored as U+FFFD.
    let page = visitor.post_encoded_form(
        "/signup",
        &format!("email=eve%FF@example.com&password={PASSWORD}"),
    );
    assert_eq!(page.status, 400, "{}", page.body);
    let users_after = users::count(&mut app.db.conn(), app.default_tenant()).unwrap();
    assert_eq!(users_after, users_before);
    // Also under a tenant prefix, where routing has not named the tenant yet.
    let page = visitor.get("/t/default/signin?return_to=%0B");
    page.assert_shows(400, "Characters not allowed");

    // The token endpoint: RFC 6749 §5.2, no client credentials needed to get there.
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/oauth2/token", app.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=%00")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "the form field client_id contains a control character"
    );

    // The consent API: the same shape, for an escaped NUL in JSON.
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/consents/v1/me/grants", app.base))
        .header("Content-Type", "application/json")
        .bearer_auth(&target.user_token)
        .body(r#"{"purpose":"news\u0000letter","version":1}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"], "invalid_request");
    // Multi-line JSON is fine (here a clean but unknown purpose).
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/consents/v1/me/withdrawals", app.base))
        .header("Content-Type", "application/json")
        .bearer_auth(&target.user_token)
        .body("{\n\t\"purpose\": \"newsletter\"\r\n}")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

gatehouse_identity_store::on_both_backends!(refusals_are_readable_pages_and_rfc_errors);

fn a_hostile_return_to_never_follows_a_sign_in(backend: Backend) {
    let app = WebApp::start(backend);
    app.create_verified_user("uma@example.com", PASSWORD);
    for return_to in ["/authorize?x=1%0B", "/authorize?x=1%7F", "/authorize?x=%00"] {
        let mut browser = app.browser();
        let page = browser.post_encoded_form(
            "/signin",
            &format!(
                "email=uma%40example.com&password={PASSWORD}&return_to={}",
                form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
            ),
        );
        // The nested request's control character: no redirect back into it, but the
        // sign-in itself went through to the account page.
        assert_eq!(page.status, 303, "{return_to}: {}", page.body);
        assert_eq!(page.location().as_deref(), Some("/account"), "{return_to}");
        assert!(browser.session_cookie().is_some());
    }
    // Raw in the field itself: refused at the edge, before any session exists.
    let mut browser = app.browser();
    let page = browser.post_encoded_form(
        "/signin",
        &format!("email=uma%40example.com&password={PASSWORD}&return_to=%2Fauthorize%3Fx%3D%0B"),
    );
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(browser.session_cookie().is_none());
}

gatehouse_identity_store::on_both_backends!(a_hostile_return_to_never_follows_a_sign_in);

fn look_alike_addresses_get_no_second_account(backend: Backend) {
    let app = WebApp::start(backend);
    app.create_verified_user("alice@example.com", PASSWORD);
    let tenant = app.default_tenant();
    let users_before = users::count(&mut app.db.conn(), tenant).unwrap();
    let sign_up = |email: &str| {
        let mut browser = app.browser();
        browser.sign_up("/signup", email, PASSWORD)
    };
    // Refused outright, whoever exists: mixed scripts in one label, invisible marks.
    for refused in [
        "аlice@example.com",
        "ali\u{200b}ce@example.com",
        "alice@exаmple.com",
    ] {
        let page = sign_up(refused);
        assert_eq!(page.status, 422, "{refused}: {}", page.body);
        assert!(page.body.contains("mix alphabets"), "{}", page.body);
    }
    // Single-script look-alikes: the same answer as any sign-up, no account, and a
    // note to the look-alike address that it cannot be used.
    let before = app.smtp.messages().len();
    for look_alike in ["alıce@example.com", "аӏісе@example.com"] {
        let page = sign_up(look_alike);
        assert_eq!(page.status, 200, "{look_alike}: {}", page.body);
        assert!(page.body.contains("Check your email"), "{}", page.body);
    }
    let mails = app.mails(before + 2);
    for mail in &mails[before..] {
        assert!(
            mail.data.contains("This address cannot be used to sign up"),
            "{}",
            mail.data
        );
    }
    let mut conn = app.db.conn();
    assert_eq!(users::count(&mut conn, tenant).unwrap(), users_before);
    assert!(
        users::find_by_primary_email(&mut conn, tenant, "alıce@example.com")
            .unwrap()
            .is_none()
    );
    drop(conn);

    // An email change to a look-alike of another account is refused too.
    app.create_verified_user("bob@example.com", PASSWORD);
    let mut bob = app.browser();
    let signed = bob.sign_in("bob@example.com", PASSWORD);
    assert_eq!(signed.status, 303);
    let page = bob.change_email("alıce@example.com", PASSWORD);
    // Refused as taken, shown at the new address's field after the redirect.
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location().as_deref(),
        Some("/account?error=account.error.email_taken&field=email-new#email-new")
    );
}

gatehouse_identity_store::on_both_backends!(look_alike_addresses_get_no_second_account);
