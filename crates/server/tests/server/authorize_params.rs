//! The authorization request parameters beyond the basics: acr_values (a session
//! below the requested level authenticates again; tokens carry what was achieved),
//! login_hint, ui_locales, and the POST form of the endpoint.

use gatehouse_identity_store::Backend;

use crate::code_flow::{
    PASSWORD, VERIFIER, authorize_query, exchange, id_token_claims, param, register, signed_in,
    urlencode,
};
use crate::web_kit::WebApp;

const AAL1: &str = "urn:gatehouse:aal1";
const AAL2: &str = "urn:gatehouse:aal2";

#[test]
fn a_session_below_the_requested_acr_signs_in_again_and_gets_what_it_achieved() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    let mut browser = signed_in(&app);

    // Met: straight to the code.
    let met = browser.get(&authorize_query(&format!(
        "&acr_values={}",
        urlencode(AAL1)
    )));
    assert_eq!(met.status, 303);
    assert!(param(&met.location().unwrap(), "code").is_some());

    // prompt=none cannot ask the user for more.
    let silent = browser.get(&authorize_query(&format!(
        "&acr_values={}&prompt=none",
        urlencode(AAL2)
    )));
    assert_eq!(
        param(&silent.location().unwrap(), "error").as_deref(),
        Some("login_required")
    );

    // Not met: sign in again, then the tokens say AAL1 (acr_values are voluntary).
    app.advance(chrono::Duration::seconds(5));
    let step_up = browser.get(&authorize_query(&format!(
        "&acr_values={}",
        urlencode(&format!("{AAL2} {AAL1}x"))
    )));
    assert_eq!(step_up.status, 303);
    let to_sign_in = step_up.location().unwrap();
    assert!(to_sign_in.starts_with("/signin?"), "{to_sign_in}");
    let return_to = param(&to_sign_in, "return_to").unwrap();
    let page = browser.get(&to_sign_in);
    let signed = browser.post_form(
        "/signin",
        &page,
        &[
            ("email", "uma@example.com"),
            ("password", PASSWORD),
            ("return_to", &return_to),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    let back = browser.get(&signed.location().unwrap());
    assert_eq!(back.status, 303, "{}", back.body);
    let code = param(&back.location().unwrap(), "code").expect("no code after signing in again");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], AAL1);
    assert!(
        claims["auth_time"].as_i64().unwrap() >= app.state.clock.now().timestamp() - 1,
        "auth_time is not the new sign-in"
    );
}

#[test]
fn login_hint_and_ui_locales_reach_the_sign_in_page() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    let mut browser = app.browser();
    let answer = browser.get(&authorize_query(
        "&login_hint=kim%40example.com&ui_locales=fr-CA%20de",
    ));
    let location = answer.location().unwrap();
    assert_eq!(
        param(&location, "login_hint").as_deref(),
        Some("kim@example.com")
    );
    assert_eq!(param(&location, "lang").as_deref(), Some("de"));
    let page = browser.get(&location);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("value=\"kim@example.com\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<html lang=\"de\">"),
        "not German: {}",
        &page.body[..200]
    );
    // The sign-in form leads back to the client, so CSP must allow that redirect.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
}

#[test]
fn the_authorization_endpoint_accepts_post() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    let mut browser = signed_in(&app);
    let query = authorize_query("");
    let body = query.split_once('?').unwrap().1;
    let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let posted = browser.post_raw("/authorize", &fields, &[]);
    assert_eq!(posted.status, 303, "{}", posted.body);
    let get = browser.get(&posted.location().unwrap());
    assert_eq!(get.status, 303);
    assert!(param(&get.location().unwrap(), "code").is_some());
}

#[test]
fn a_forced_sign_in_cannot_be_skipped_by_forging_its_marker_or_the_consent_form() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, false);
    let mut browser = signed_in(&app);
    app.advance(chrono::Duration::seconds(30));

    for marker in ["1", "0", "99999999999"] {
        let forged = browser.get(&authorize_query(&format!(
            "&prompt=login&gh_login_after={marker}"
        )));
        assert_eq!(forged.status, 303, "{}", forged.body);
        let location = forged.location().unwrap();
        assert!(
            location.starts_with("/signin?"),
            "marker {marker} skipped the sign-in: {location}"
        );
    }

    // Posting the consent form directly with max_age=0 does not yield a code either.
    let page = browser.get("/account");
    let request = authorize_query("&max_age=0")
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    let posted = browser.post_form(
        "/authorize/consent",
        &page,
        &[("request", &request), ("decision", "allow")],
    );
    assert_eq!(posted.status, 303, "{}", posted.body);
    let location = posted.location().unwrap();
    assert!(location.starts_with("/authorize?"), "{location}");
    assert!(param(&location, "code").is_none());
}

#[test]
fn a_negative_max_age_is_an_invalid_request() {
    let app = WebApp::start(Backend::Sqlite);
    register(&app, true);
    let mut browser = signed_in(&app);
    let answer = browser.get(&authorize_query("&max_age=-1"));
    assert_eq!(answer.status, 303);
    assert_eq!(
        param(&answer.location().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
}
