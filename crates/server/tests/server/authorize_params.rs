//! The authorization request parameters beyond the basics: acr_values (tokens carry
//! what was achieved; step-up is in `mfa`), login_hint, ui_locales, and the POST
//! form of the endpoint.

use gatehouse_identity_store::Backend;

use crate::code_flow::{
    VERIFIER, authorize_query, client_and_signed_in_user, exchange, id_token_claims, param,
    register, urlencode,
};
use crate::web_kit::WebApp;

const AAL1: &str = "urn:gatehouse:aal1";

#[test]
fn a_met_acr_goes_straight_to_the_code_and_the_tokens_carry_it() {
    let (app, mut browser) = client_and_signed_in_user(true);
    // Unknown values are ignored; the known one is met by a password session.
    let met = browser.get(&authorize_query(&format!(
        "&acr_values={}",
        urlencode(&format!("{AAL1}x {AAL1}"))
    )));
    assert_eq!(met.status, 303);
    let code = param(&met.location().unwrap(), "code").expect("a code");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let claims = id_token_claims(&app, tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], AAL1);
    // Higher levels, step-up and a user without a second factor: see `mfa`.
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
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
}

#[test]
fn the_authorization_endpoint_accepts_post() {
    let (_app, mut browser) = client_and_signed_in_user(true);
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
    let (app, mut browser) = client_and_signed_in_user(false);
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
    let location = browser.approve_consent(&page, &request);
    assert!(location.starts_with("/authorize?"), "{location}");
    assert!(param(&location, "code").is_none());
}

#[test]
fn a_negative_max_age_is_an_invalid_request() {
    let (_app, mut browser) = client_and_signed_in_user(true);
    let answer = browser.get(&authorize_query("&max_age=-1"));
    assert_eq!(answer.status, 303);
    assert_eq!(
        param(&answer.location().unwrap(), "error").as_deref(),
        Some("invalid_request")
    );
}
