//! Signing in through a partner's SAML identity provider, over real HTTP. The
//! IdP is scripted (`gatehouse_authn::testing::saml_idp`): it signs with its own
//! key as a real one does, and each case bends one thing. The honest response
//! signs in; a replayed, misdirected or another browser's one is refused with its
//! reference code, audited, and opens nothing. The journey against an independent
//! IdP (SimpleSAMLphp) runs in the browser tests.

use std::collections::HashMap;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_authn::federation::SpUrls;
use gatehouse_authn::testing::saml_idp::{ResponseSpec, SamlIdp, Signed};
use gatehouse_identity_store::Backend;
use serde_json::{Value, json};

use crate::scripted_op::upstream_url;
use crate::web_kit::{Browser, Page, WebApp};

const IDP: &str = "https://idp.partner.example/metadata";
const SSO: &str = "https://idp.partner.example/sso";

/// A sign-in begun on the sign-in page: the browser, the AuthnRequest's ID and
/// the RelayState, and the SP's URLs as the request names them.
fn begin(app: &WebApp) -> (Browser, String, String, SpUrls) {
    let mut browser = app.browser();
    let signin = browser.get("/signin");
    assert!(
        signin.body.contains("Partner SSO"),
        "a button: {}",
        signin.body
    );
    let started = browser.post_form("/federation/partner/start", &signin, &[]);
    assert_eq!(started.status, 200, "{}", started.body);
    let url = upstream_url(&started.body);
    assert_eq!(url.as_str().split('?').next(), Some(SSO), "sent to the IdP");
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        params["SigAlg"],
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    );
    assert!(!params["Signature"].is_empty(), "the request is signed");
    let deflated = STANDARD.decode(&params["SAMLRequest"]).unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice())
        .read_to_string(&mut xml)
        .unwrap();
    let attribute = |name: &str| {
        let marker = format!("{name}=\"");
        let start = xml.find(&marker).unwrap() + marker.len();
        xml[start..].split('"').next().unwrap().to_owned()
    };
    let issuer_start = xml.find("<saml:Issuer>").unwrap() + "<saml:Issuer>".len();
    let issuer = xml[issuer_start..].split('<').next().unwrap().to_owned();
    let acs = attribute("AssertionConsumerServiceURL");
    let urls = SpUrls {
        entity_id: issuer,
        slo: acs.replace("/saml/acs", "/saml/slo"),
        acs,
    };
    assert_eq!(attribute("Destination"), SSO);
    assert!(urls.acs.ends_with("/federation/partner/saml/acs"));
    (browser, attribute("ID"), params["RelayState"].clone(), urls)
}

/// The IdP's page posting `spec` to the ACS: cross-site, so without the
/// browser's cookies.
fn post_to_acs(app: &WebApp, idp: &SamlIdp, spec: &ResponseSpec, relay_state: &str) -> Page {
    app.browser().post_raw(
        "/federation/partner/saml/acs",
        &[
            ("SAMLResponse", &idp.encoded(spec)),
            ("RelayState", relay_state),
        ],
        &[("Origin", "https://idp.partner.example")],
    )
}

#[track_caller]
fn assert_refused(page: &Page, code: &str) {
    assert_eq!(page.status, 400, "refused: {}", page.body);
    assert!(
        page.body.contains(&format!("Reference: {code}")),
        "reference {code}: {}",
        page.body
    );
}

fn partner_account(app: &WebApp) -> bool {
    let mut conn = app.db.conn();
    gatehouse_identity_store::users::find_by_user_name(
        &mut conn,
        app.default_tenant(),
        "pat@partner.example",
    )
    .unwrap()
    .is_some()
}

fn refusal_codes(app: &WebApp) -> Vec<String> {
    app.audit_events(300)
        .into_iter()
        .filter(|e| e.action == "federation.refused")
        .map(|e| {
            let details: Value = serde_json::from_str(&e.details).unwrap();
            details["code"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Adds the SAML connection `partner` (just-in-time accounts) from `metadata`.
fn add_partner(app: &WebApp, settings: Value, metadata: gatehouse_admin::IdpMetadata) {
    add_mapped_partner(app, settings, metadata, None, false);
}

/// [`add_partner`] with mapping rules of its own (`None`: the SAML defaults), and
/// whether the tenant trusts the partner's verified emails.
fn add_mapped_partner(
    app: &WebApp,
    settings: Value,
    metadata: gatehouse_admin::IdpMetadata,
    mapping: Option<Value>,
    trust_verified_email: bool,
) {
    let operator = gatehouse_admin::Operator::named("test").unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(app.state.admin.create_connection(
            &operator,
            "default",
            gatehouse_admin::NewConnection {
                slug: "partner".into(),
                display_name: "Partner SSO".into(),
                logo_url: None,
                enabled: true,
                jit_provisioning: true,
                trust_verified_email,
                kind: "saml".into(),
                settings,
                idp_metadata: Some(metadata),
                mapping,
                client_secret: None,
                domains: vec![],
            },
        ))
        .unwrap();
}

fn saml_partners_sign_in_once_per_assertion(backend: Backend) {
    let app = WebApp::start(backend);
    let idp = SamlIdp::new(IDP);
    add_partner(
        &app,
        json!({"authn_context_levels": {"urn:partner:mfa": 2}}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
    );
    let now = || app.state.clock.now();

    // The SP metadata the partner's IdP is configured with.
    let metadata = app.browser().get("/federation/partner/saml/metadata");
    assert_eq!(metadata.status, 200);
    assert!(metadata.header("content-type").contains("samlmetadata+xml"));
    assert!(metadata.body.contains("<ds:SignatureValue>"), "signed");

    // Honest: signs in, a new account from the mapped attributes.
    // The first sign-in: another browser tries to end it.
    let (_first, request_id, relay_state, urls) = begin(&app);
    let honest = ResponseSpec {
        class_ref: "urn:partner:mfa".into(),
        attributes: vec![
            ("mail".into(), vec!["Pat@Partner.example".into()]),
            ("givenName".into(), vec!["Pat".into()]),
        ],
        ..idp.answer(&urls, &request_id, "partner-user-7", now())
    };
    let acs = post_to_acs(&app, &idp, &honest, &relay_state);
    assert_eq!(acs.status, 303, "{}", acs.body);
    assert!(
        !acs.headers.contains_key("set-cookie"),
        "the ACS answers a cross-site post: it sets no cookie"
    );
    let finish = acs.location().unwrap();
    // Another browser cannot end this sign-in: the result is bound to the one
    // that began it, and a wrong attempt uses it up.
    let mut thief = app.browser();
    assert_refused(&thief.get(&finish), "saml_state");
    assert!(thief.session_cookie().is_none());
    assert!(!partner_account(&app));

    let (mut browser2, request_id, relay_state, urls) = begin(&app);
    let honest = ResponseSpec {
        in_response_to: Some(request_id.clone()),
        ..honest
    };
    let honest = ResponseSpec {
        assertion_id: gatehouse_authn::testing::saml_idp::new_id(),
        ..honest
    };
    let acs = post_to_acs(&app, &idp, &honest, &relay_state);
    assert_eq!(acs.status, 303, "{}", acs.body);
    let done = browser2.get(&acs.location().unwrap());
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(browser2.session_cookie().is_some(), "signed in");
    assert!(
        partner_account(&app),
        "made just in time, email lower-cased"
    );
    let account = browser2.get("/account");
    assert_eq!(account.status, 200);
    assert!(account.body.contains("Pat"), "the mapped name");

    // The same response again: its request is used up.
    assert_refused(
        &post_to_acs(&app, &idp, &honest, &relay_state),
        "saml_state",
    );
    // The same assertion for a new request: the replay cache refuses it.
    let (_, request_id, relay_state, _) = begin(&app);
    let replayed = ResponseSpec {
        in_response_to: Some(request_id),
        ..honest.clone()
    };
    assert_refused(
        &post_to_acs(&app, &idp, &replayed, &relay_state),
        "saml_replay",
    );
    // An answer to another request.
    let (_, _, relay_state, _) = begin(&app);
    let (_, other_request, _, _) = begin(&app);
    let misdirected = ResponseSpec {
        assertion_id: gatehouse_authn::testing::saml_idp::new_id(),
        ..idp.answer(&urls, &other_request, "partner-user-7", now())
    };
    assert_refused(
        &post_to_acs(&app, &idp, &misdirected, &relay_state),
        "saml_in_response_to",
    );
    // Unsolicited (IdP-initiated is not accepted).
    let unsolicited = ResponseSpec {
        in_response_to: None,
        ..idp.answer(&urls, "", "partner-user-7", now())
    };
    assert_refused(&post_to_acs(&app, &idp, &unsolicited, ""), "saml_state");
    // Signed by someone else, for a live request: the request survives it.
    let (mut browser3, request_id, relay_state, urls) = begin(&app);
    let impostor = SamlIdp::new(IDP);
    let forged = impostor.answer(&urls, &request_id, "partner-user-7", now());
    assert_refused(
        &post_to_acs(&app, &impostor, &forged, &relay_state),
        "saml_signature",
    );
    let late = ResponseSpec {
        signed: Signed::Both,
        ..idp.answer(&urls, &request_id, "partner-user-7", now())
    };
    let acs = post_to_acs(&app, &idp, &late, &relay_state);
    assert_eq!(acs.status, 303, "{}", acs.body);
    assert_eq!(browser3.get(&acs.location().unwrap()).status, 303);
    assert!(
        browser3.session_cookie().is_some(),
        "the existing link signs in"
    );

    let codes = refusal_codes(&app);
    for code in [
        "saml_state",
        "saml_replay",
        "saml_in_response_to",
        "saml_signature",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} audited: {codes:?}");
    }
    let users = {
        let mut conn = app.db.conn();
        gatehouse_identity_store::federated_identities::of_user(
            &mut conn,
            app.default_tenant(),
            app.user_id("pat@partner.example"),
        )
        .unwrap()
    };
    assert_eq!(users.len(), 1, "one link, by the partner's subject");
    assert_eq!(users[0].subject, "partner-user-7");
}

gatehouse_identity_store::on_both_backends!(saml_partners_sign_in_once_per_assertion);

/// On PostgreSQL several nodes share the replay cache: an assertion accepted on
/// one is refused on the other.
fn a_replay_is_refused_on_another_node(backend: Backend) {
    let app = WebApp::start(backend);
    let node2 = app.start_node();
    let idp = SamlIdp::new(IDP);
    add_partner(
        &app,
        json!({}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
    );
    let (_, request_id, relay_state, urls) = begin(&app);
    let spec = idp.answer(&urls, &request_id, "partner-user-9", app.state.clock.now());
    assert_eq!(post_to_acs(&app, &idp, &spec, &relay_state).status, 303);
    let (_, request_id, relay_state, _) = begin(&node2);
    let again = ResponseSpec {
        in_response_to: Some(request_id),
        ..spec
    };
    assert_refused(
        &post_to_acs(&node2, &idp, &again, &relay_state),
        "saml_replay",
    );
}

gatehouse_identity_store::on_both_backends!(a_replay_is_refused_on_another_node);

/// Single logout begun by the identity provider: only its own signed, fresh,
/// first-seen LogoutRequest ends the sessions it opened for that user.
fn the_identity_provider_signs_its_user_out(backend: Backend) {
    let app = WebApp::start(backend);
    let idp = SamlIdp::new(IDP);
    add_partner(
        &app,
        json!({}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
    );
    let now = || app.state.clock.now();
    let (mut browser, request_id, relay_state, urls) = begin(&app);
    let spec = idp.answer(&urls, &request_id, "partner-user-5", now());
    let acs = post_to_acs(&app, &idp, &spec, &relay_state);
    assert_eq!(browser.get(&acs.location().unwrap()).status, 303);
    assert_eq!(browser.get("/account").status, 200, "signed in");

    let slo = "/federation/partner/saml/slo";
    let logout = |id: &str, name_id: &str| {
        idp.logout_request(id, &urls.slo, name_id, Some(&spec.session_index), now())
    };
    // Unsigned, or signed by another key: refused, the session lives on.
    let unsigned = {
        let signed = idp.redirect_query("SAMLRequest", &logout("_l1", "partner-user-5"), None);
        signed.split("&SigAlg").next().unwrap().to_owned()
    };
    assert_refused(
        &app.browser().get(&format!("{slo}?{unsigned}")),
        "saml_signature",
    );
    let impostor = SamlIdp::new(IDP);
    let forged = impostor.redirect_query("SAMLRequest", &logout("_l2", "partner-user-5"), None);
    assert_refused(
        &app.browser().get(&format!("{slo}?{forged}")),
        "saml_signature",
    );
    // Signed, but the query altered after signing.
    let honest = idp.redirect_query("SAMLRequest", &logout("_l3", "partner-user-5"), Some("r"));
    let altered = honest.replace("RelayState=r", "RelayState=x");
    assert_refused(
        &app.browser().get(&format!("{slo}?{altered}")),
        "saml_signature",
    );
    // Another user of the partner: nobody here is signed out.
    let other = idp.redirect_query("SAMLRequest", &logout("_l4", "partner-user-6"), None);
    assert_eq!(app.browser().get(&format!("{slo}?{other}")).status, 303);
    assert_eq!(browser.get("/account").status, 200, "still signed in");

    // The honest request: the session ends, the answer goes back to the IdP.
    let answer = app.browser().get(&format!("{slo}?{honest}"));
    assert_eq!(answer.status, 303, "{}", answer.body);
    let back = answer.location().unwrap();
    assert!(
        back.starts_with(&format!("{SSO}/slo?SAMLResponse=")),
        "{back}"
    );
    assert!(
        back.contains("&RelayState=r&SigAlg="),
        "RelayState passed back: {back}"
    );
    assert_eq!(browser.get("/account").status, 303, "signed out here");
    // The same request again is a replay.
    assert_refused(
        &app.browser().get(&format!("{slo}?{honest}")),
        "saml_replay",
    );
    // A LogoutResponse nobody here asked for.
    let response = idp.redirect_query(
        "SAMLResponse",
        &format!(
            concat!(
                r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
                r#"ID="_r1" Version="2.0" IssueInstant="2026-12-07T12:00:00Z" InResponseTo="_x">"#,
                r#"<saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:LogoutResponse>"#
            ),
            IDP
        ),
        Some("unknown"),
    );
    assert_refused(
        &app.browser().get(&format!("{slo}?{response}")),
        "saml_state",
    );
    // A deflate bomb: a small message that inflates past the cap.
    let bomb = format!(
        "{}<x>{}</x></samlp:LogoutRequest>",
        logout("_l5", "partner-user-5").replace("</samlp:LogoutRequest>", ""),
        " ".repeat(200_000)
    );
    let bomb = idp.redirect_query("SAMLRequest", &bomb, None);
    assert!(bomb.len() < 4_000, "small on the wire");
    assert_refused(
        &app.browser().get(&format!("{slo}?{bomb}")),
        "saml_too_large",
    );
}

gatehouse_identity_store::on_both_backends!(the_identity_provider_signs_its_user_out);

/// IdP-initiated sign-in, where the connection allows it: the response nobody
/// here asked for signs in only after the person confirms on this site's page,
/// so a response posted into someone's browser (login CSRF) opens nothing alone.
fn unsolicited_responses_sign_in_after_the_person_confirms(backend: Backend) {
    let app = WebApp::start(backend);
    let idp = SamlIdp::new(IDP);
    add_partner(
        &app,
        json!({"allow_idp_initiated": true}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
    );
    let (_, _, _, urls) = begin(&app);
    let unsolicited = ResponseSpec {
        in_response_to: None,
        attributes: vec![("mail".into(), vec!["pat@partner.example".into()])],
        ..idp.answer(&urls, "", "partner-user-8", app.state.clock.now())
    };
    let acs = post_to_acs(&app, &idp, &unsolicited, "https://evil.example/");
    assert_eq!(acs.status, 303, "{}", acs.body);
    let finish = acs.location().unwrap();
    assert!(
        !finish.contains("evil.example"),
        "RelayState is never a redirect"
    );

    let mut browser = app.browser();
    let asked = browser.get(&finish);
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(
        asked.body.contains("pat@partner.example"),
        "names the account: {}",
        asked.body
    );
    assert!(
        browser.session_cookie().is_none(),
        "nothing signed in by the post alone"
    );
    assert!(!partner_account(&app));
    // Asking again is fine (the page reads, it does not use the sign-in up).
    assert_eq!(browser.get(&finish).status, 200);
    let handle = finish.split("h=").nth(1).unwrap().to_owned();
    // Without this site's CSRF token, the confirmation is refused.
    let forged = app.browser().post_raw(
        "/federation/partner/saml/finish",
        &[("h", &handle), ("csrf_token", "forged")],
        &[],
    );
    assert_ne!(forged.status, 303, "{}", forged.body);
    let done = browser.post_form("/federation/partner/saml/finish", &asked, &[("h", &handle)]);
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        browser.session_cookie().is_some(),
        "signed in after confirming"
    );
    assert!(partner_account(&app));
    // Used once.
    assert_refused(&app.browser().get(&finish), "saml_state");
    // The same response again is a replay.
    assert_refused(&post_to_acs(&app, &idp, &unsolicited, ""), "saml_replay");
}

gatehouse_identity_store::on_both_backends!(
    unsolicited_responses_sign_in_after_the_person_confirms
);

/// A plain HTTP server answering every request with the current body: where an
/// IdP publishes its metadata.
struct MetadataHost {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<String>>,
}

impl MetadataHost {
    fn start(initial: String) -> MetadataHost {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/metadata.xml", listener.local_addr().unwrap());
        let body = std::sync::Arc::new(std::sync::Mutex::new(initial));
        let serving = body.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let body = serving.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/samlmetadata+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        MetadataHost { url, body }
    }

    fn publish(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }
}

/// The IdP rolls its signing key over by publishing the next certificate in its
/// metadata: the refresh takes it up, and later drops the retired one. A broken
/// document keeps the last good settings and shows as the connection's error.
fn the_idp_rolls_its_key_over_through_its_metadata(backend: Backend) {
    let app = WebApp::start(backend);
    let current = SamlIdp::new(IDP);
    let next = SamlIdp::new(IDP);
    let host = MetadataHost::start(current.metadata(SSO));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = &app.state.admin;
    add_partner(
        &app,
        json!({}),
        gatehouse_admin::IdpMetadata::Url(host.url.clone()),
    );
    let shown = rt.block_on(admin.connection("default", "partner")).unwrap();
    assert_eq!(shown.connection.settings["metadata_url"], json!(host.url));
    let sign_in_with = |idp: &SamlIdp| {
        let (mut browser, request_id, relay_state, urls) = begin(&app);
        let spec = idp.answer(&urls, &request_id, "partner-user-3", app.state.clock.now());
        let acs = post_to_acs(&app, idp, &spec, &relay_state);
        if acs.status == 303 {
            assert_eq!(browser.get(&acs.location().unwrap()).status, 303);
        }
        acs
    };
    let refresh = || rt.block_on(admin.refresh_saml_metadata(None)).unwrap();
    assert_eq!(refresh(), 0, "nothing changed");
    assert_refused(&sign_in_with(&next), "saml_signature");

    // The next certificate is published beside the current one.
    host.publish(current.metadata_with_next(SSO, &next));
    assert_eq!(refresh(), 1);
    assert_eq!(sign_in_with(&next).status, 303, "the next key is accepted");
    assert_eq!(
        sign_in_with(&current).status,
        303,
        "and the current one still"
    );
    let audited = app
        .audit_events(100)
        .into_iter()
        .find(|e| e.action == "connection.metadata_changed")
        .expect("audited");
    let details: Value = serde_json::from_str(&audited.details).unwrap();
    assert_eq!(
        details["certificates_after"].as_array().unwrap().len(),
        2,
        "{details}"
    );

    // The old one retired.
    host.publish(next.metadata(SSO));
    assert_eq!(refresh(), 1);
    assert_refused(&sign_in_with(&current), "saml_signature");

    // A broken document changes nothing and is the connection's last error.
    host.publish("<EntityDescriptor".into());
    assert_eq!(refresh(), 0);
    let shown = rt.block_on(admin.connection("default", "partner")).unwrap();
    assert!(
        shown
            .connection
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("metadata refresh:")),
        "{:?}",
        shown.connection.last_error
    );
    assert_eq!(
        sign_in_with(&next).status,
        303,
        "the last good settings hold"
    );
    // Fixed again: the error clears.
    host.publish(next.metadata(SSO));
    assert_eq!(refresh(), 0);
    let shown = rt.block_on(admin.connection("default", "partner")).unwrap();
    assert_eq!(shown.connection.last_error, None);
}

gatehouse_identity_store::on_both_backends!(the_idp_rolls_its_key_over_through_its_metadata);

/// A whole SP-initiated sign-in of the partner's user `pat` whose response carries
/// `member_of`: the browser's last answer.
fn signed_in_with(app: &WebApp, idp: &SamlIdp, member_of: &[&str]) -> Page {
    saml_sign_in(
        app,
        idp,
        &[("mail", &["pat@partner.example"]), ("memberOf", member_of)],
    )
    .1
}

/// A whole SP-initiated sign-in of the partner's user `partner-user-9` whose
/// response carries `attributes`: the browser and its last answer.
fn saml_sign_in(app: &WebApp, idp: &SamlIdp, attributes: &[(&str, &[&str])]) -> (Browser, Page) {
    let (mut browser, request_id, relay_state, urls) = begin(app);
    let spec = ResponseSpec {
        attributes: attributes
            .iter()
            .map(|(name, values)| {
                (
                    (*name).to_owned(),
                    values.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect(),
        ..idp.answer(&urls, &request_id, "partner-user-9", app.state.clock.now())
    };
    let acs = post_to_acs(app, idp, &spec, &relay_state);
    assert_eq!(acs.status, 303, "{}", acs.body);
    let page = browser.get(&acs.location().unwrap());
    (browser, page)
}

fn role_names(app: &WebApp) -> Vec<String> {
    let user = app.user_id("pat@partner.example");
    let mut conn = app.db.conn();
    gatehouse_identity_store::roles::roles_of_user(&mut conn, app.default_tenant(), user)
        .unwrap()
        .into_iter()
        .map(|role| role.name)
        .collect()
}

fn partner_roles_follow_the_partners_attributes(backend: Backend) {
    let app = WebApp::start(backend);
    let idp = SamlIdp::new(IDP);
    add_mapped_partner(
        &app,
        json!({}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
        Some(json!({"rules": [
            {"from": "mail", "to": "email", "transforms": ["lower"], "required": true},
            {"from": "memberOf", "to": "role", "transforms": [{"regex": "^gh-(.+)$", "capture": 1}]}
        ]})),
        false,
    );
    let operator = gatehouse_admin::Operator::named("test").unwrap();
    let admin = &app.state.admin;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for role in ["auditor", "support"] {
        runtime
            .block_on(admin.create_role(&operator, "default", role, None))
            .unwrap();
    }

    // The partner says auditor: the account made just in time has the role.
    let done = signed_in_with(&app, &idp, &["gh-auditor", "staff"]);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(role_names(&app), ["auditor"]);
    let given = app
        .audit_events(300)
        .into_iter()
        .find(|e| e.action == "user.role_assigned")
        .expect("audited");
    assert!(given.actor.starts_with("connection:"), "{}", given.actor);

    // An operator's role is the operator's: the partner's rules never take it.
    let pat = app.user_id("pat@partner.example");
    runtime
        .block_on(admin.assign_role(&operator, "default", pat, "support"))
        .unwrap();
    let done = signed_in_with(&app, &idp, &[]);
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        role_names(&app),
        ["support"],
        "the partner took auditor back"
    );
    assert!(
        app.audit_events(300)
            .iter()
            .any(|e| e.action == "user.role_removed" && e.actor.starts_with("connection:"))
    );

    // A role the tenant does not have is a clear mapping error, not a silent drop.
    let refused = signed_in_with(&app, &idp, &["gh-owner"]);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("Reference: mapping"),
        "{}",
        refused.body
    );
    assert_eq!(role_names(&app), ["support"]);
}

gatehouse_identity_store::on_both_backends!(partner_roles_follow_the_partners_attributes);

fn a_verified_partner_email_links_after_the_account_owner_confirms_by_mail(backend: Backend) {
    let app = WebApp::start(backend);
    app.create_verified_user("pat@partner.example", "correct horse battery");
    let local = app.user_id("pat@partner.example");
    let idp = SamlIdp::new(IDP);
    add_mapped_partner(
        &app,
        json!({}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
        None,
        true,
    );
    let mails_before = app.smtp.messages().len();

    // The partner does not vouch for the address: nothing is mailed, sign in first.
    let (_, unverified) = saml_sign_in(
        &app,
        &idp,
        &[
            ("mail", &["pat@partner.example"]),
            ("email_verified", &["false"]),
        ],
    );
    assert_eq!(unverified.status, 409, "{}", unverified.body);
    app.settle();
    assert_eq!(app.smtp.messages().len(), mails_before);

    // It does: the account's owner gets a link; nothing is linked yet.
    let (mut owner, offered) = saml_sign_in(
        &app,
        &idp,
        &[
            ("mail", &["pat@partner.example"]),
            ("email_verified", &["true"]),
        ],
    );
    assert_eq!(offered.status, 200, "{}", offered.body);
    assert!(offered.body.contains("Partner SSO"), "{}", offered.body);
    let mail = app.mails(mails_before + 1).pop().unwrap();
    assert_eq!(mail.to, ["pat@partner.example"]);
    let link = mail
        .find_link(&format!("{}/federation/link?token=", app.base))
        .expect("a link in the mail");
    let linked_identities = |app: &WebApp| {
        let mut conn = app.db.conn();
        gatehouse_identity_store::federated_identities::of_user(
            &mut conn,
            app.default_tenant(),
            local,
        )
        .unwrap()
        .len()
    };
    assert_eq!(linked_identities(&app), 0);

    // In another browser than the one that signed in at the partner, the link is
    // refused: whoever holds the partner identity cannot have the account's owner
    // click it into their account.
    let elsewhere = app.browser().get_absolute(&link);
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.body);

    // Opening the link (a mail scanner would) only asks.
    let asked = owner.get_absolute(&link);
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains("pat@partner.example"), "{}", asked.body);
    let again = owner.get_absolute(&link);
    assert_eq!(again.status, 200, "opening twice spends nothing");
    assert_eq!(linked_identities(&app), 0);

    // Without the page's CSRF token, nothing either.
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let forged = app
        .browser()
        .post_raw("/federation/link", &[("h", token.as_str())], &[]);
    assert_ne!(forged.status, 200, "{}", forged.body);
    assert_eq!(linked_identities(&app), 0);

    let done = owner.post_form("/federation/link", &asked, &[("h", token.as_str())]);
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(linked_identities(&app), 1);
    assert!(
        app.audit_events(300)
            .iter()
            .any(|e| e.action == "federation.linked" && e.details.contains("email"))
    );

    // The link works once, in its own browser too.
    let spent = owner.get_absolute(&link);
    assert_eq!(spent.status, 400, "{}", spent.body);

    // The partner's sign-in now opens the local account; no second account.
    let (browser, signed_in) = saml_sign_in(&app, &idp, &[("mail", &["pat@partner.example"])]);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(browser.session_cookie().is_some());
    let mut conn = app.db.conn();
    let holder = gatehouse_identity_store::users::find_by_user_name(
        &mut conn,
        app.default_tenant(),
        "pat@partner.example",
    )
    .unwrap()
    .unwrap();
    assert_eq!(holder.id, local);
}

gatehouse_identity_store::on_both_backends!(
    a_verified_partner_email_links_after_the_account_owner_confirms_by_mail
);

fn an_address_whose_responses_keep_being_refused_is_turned_away_unread(backend: Backend) {
    let app = WebApp::start(backend);
    let idp = SamlIdp::new(IDP);
    add_partner(
        &app,
        json!({}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
    );
    let garbage = STANDARD.encode("<samlp:Response>not signed</samlp:Response>");
    let post = |response: &str, relay_state: &str| {
        app.browser().post_raw(
            "/federation/partner/saml/acs",
            &[("SAMLResponse", response), ("RelayState", relay_state)],
            &[("Origin", "https://idp.partner.example")],
        )
    };
    for _ in 0..30 {
        let refused = post(&garbage, "r");
        assert_eq!(refused.status, 400, "{}", refused.body);
    }
    // Now even an honest response from this address is turned away unread, on
    // every node (the count is in the database).
    let (_browser, request_id, relay_state, urls) = begin(&app);
    let honest = idp.answer(&urls, &request_id, "partner-user-3", app.state.clock.now());
    let node2 = app.start_node();
    for node in [&app, &node2] {
        let turned_away = node.browser().post_raw(
            "/federation/partner/saml/acs",
            &[
                ("SAMLResponse", &idp.encoded(&honest)),
                ("RelayState", &relay_state),
            ],
            &[("Origin", "https://idp.partner.example")],
        );
        assert_eq!(turned_away.status, 429, "{}", turned_away.body);
        assert!(turned_away.body.contains("Reference: acs_throttled"));
    }
    // The window passes; the address may post again.
    app.advance(chrono::Duration::minutes(11));
    let (mut browser, request_id, relay_state, urls) = begin(&app);
    let honest = idp.answer(&urls, &request_id, "partner-user-3", app.state.clock.now());
    let acs = post_to_acs(&app, &idp, &honest, &relay_state);
    assert_eq!(acs.status, 303, "{}", acs.body);
    assert_eq!(browser.get(&acs.location().unwrap()).status, 303);
}

gatehouse_identity_store::on_both_backends!(
    an_address_whose_responses_keep_being_refused_is_turned_away_unread
);

/// An IdP-initiated response is bound to no browser: whoever is sent to confirm it
/// would get the mailed link bound to theirs. So it never offers one, whatever the
/// partner vouches for.
fn an_unsolicited_response_never_offers_a_mailed_link(backend: Backend) {
    let app = WebApp::start(backend);
    app.create_verified_user("pat@partner.example", "correct horse battery");
    let idp = SamlIdp::new(IDP);
    add_mapped_partner(
        &app,
        json!({"allow_idp_initiated": true}),
        gatehouse_admin::IdpMetadata::Xml(idp.metadata(SSO)),
        None,
        true,
    );
    let mails_before = app.smtp.messages().len();
    let (_, _, _, urls) = begin(&app);
    let unsolicited = ResponseSpec {
        in_response_to: None,
        attributes: vec![
            ("mail".into(), vec!["pat@partner.example".into()]),
            ("email_verified".into(), vec!["true".into()]),
        ],
        ..idp.answer(&urls, "", "partner-user-6", app.state.clock.now())
    };
    let acs = post_to_acs(&app, &idp, &unsolicited, "");
    assert_eq!(acs.status, 303, "{}", acs.body);
    let finish = acs.location().unwrap();
    let mut victim = app.browser();
    let asked = victim.get(&finish);
    assert_eq!(asked.status, 200, "{}", asked.body);
    let handle = finish.split("h=").nth(1).unwrap().to_owned();
    let done = victim.post_form("/federation/partner/saml/finish", &asked, &[("h", &handle)]);
    assert_eq!(done.status, 409, "the account-exists page: {}", done.body);
    app.settle();
    assert_eq!(app.smtp.messages().len(), mails_before, "no link mailed");
}

gatehouse_identity_store::on_both_backends!(an_unsolicited_response_never_offers_a_mailed_link);
