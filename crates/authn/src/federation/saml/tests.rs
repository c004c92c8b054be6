//! The ACS checks against a scripted IdP: an honest response passes, and every
//! hostile one is refused with its own code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::testing::saml_idp::{ResponseSpec, SamlIdp, Signed, encode};

const IDP: &str = "https://idp.partner.example/metadata";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

fn sp() -> SpUrls {
    SpUrls::new("https://id.example/t/acme", "partner")
}

fn settings(idp: &SamlIdp) -> SamlSettings {
    SamlSettings::from_metadata(&idp.metadata("https://idp.partner.example/sso"), Some(IDP))
        .unwrap()
}

fn honest(idp: &SamlIdp) -> ResponseSpec {
    idp.answer(&sp(), "_request", "alice", now())
}

fn code_of(result: Result<Asserted, AuthnError>) -> &'static str {
    match result {
        Err(AuthnError::Federation(refusal)) => refusal.code,
        Err(other) => panic!("not a refusal: {other:?}"),
        Ok(asserted) => panic!("accepted: {asserted:?}"),
    }
}

fn verify(idp: &SamlIdp, encoded: &str) -> Result<Asserted, AuthnError> {
    verify_response(&settings(idp), &sp(), None, encoded, now())
}

#[test]
fn an_honest_response_is_accepted_signed_either_way() {
    let idp = SamlIdp::new(IDP);
    for signed in [Signed::Assertion, Signed::Response, Signed::Both] {
        let spec = ResponseSpec {
            signed,
            ..honest(&idp)
        };
        let asserted = verify(&idp, &idp.encoded(&spec)).unwrap();
        assert_eq!(asserted.subject, "alice");
        assert_eq!(asserted.assertion_id, spec.assertion_id);
        assert_eq!(asserted.in_response_to.as_deref(), Some("_request"));
        assert_eq!(
            asserted.session_index.as_deref(),
            Some(spec.session_index.as_str())
        );
        assert_eq!(asserted.claims.0["mail"], vec!["alice@partner.example"]);
        assert_eq!(
            asserted.claims.0["eduPersonAffiliation"],
            vec!["member", "sales-emea"]
        );
        assert_eq!(asserted.claims.0["nameid"], vec!["alice"]);
        assert_eq!(asserted.aal, 1);
        assert!(asserted.remember_until >= spec.not_on_or_after);
    }
}

#[test]
fn the_authn_context_maps_to_an_assurance_level() {
    let idp = SamlIdp::new(IDP);
    let mut settings = settings(&idp);
    settings
        .authn_context_levels
        .insert("urn:partner:mfa".into(), 2);
    let spec = ResponseSpec {
        class_ref: "urn:partner:mfa".into(),
        ..honest(&idp)
    };
    let asserted = verify_response(&settings, &sp(), None, &idp.encoded(&spec), now()).unwrap();
    assert_eq!(asserted.aal, 2);
}

#[test]
fn signatures_must_be_the_configured_idps() {
    let idp = SamlIdp::new(IDP);
    let unsigned = ResponseSpec {
        signed: Signed::Neither,
        ..honest(&idp)
    };
    assert_eq!(
        code_of(verify(&idp, &idp.encoded(&unsigned))),
        "saml_signature"
    );
    // Another key, whatever certificate the message carries.
    let impostor = SamlIdp::new(IDP);
    assert_eq!(
        code_of(verify(&idp, &impostor.encoded(&honest(&impostor)))),
        "saml_signature"
    );
    // Changed after signing.
    let xml = idp.response(&honest(&idp));
    let tampered = xml.replace("alice@partner.example", "admin@partner.example");
    assert_ne!(xml, tampered);
    assert_eq!(code_of(verify(&idp, &encode(&tampered))), "saml_signature");
}

#[test]
fn sha1_signatures_are_refused() {
    let idp = SamlIdp::new(IDP);
    let spec = honest(&idp);
    let assertion = idp.assertion_xml(&spec, false);
    let template = signature_template(&spec.assertion_id, "")
        .replace(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        )
        .replace(
            "http://www.w3.org/2001/04/xmlenc#sha256",
            "http://www.w3.org/2000/09/xmldsig#sha1",
        );
    let with_template =
        assertion.replacen("</saml:Issuer>", &format!("</saml:Issuer>{template}"), 1);
    let signed = idp.sign_raw(&with_template);
    assert!(signed.contains("rsa-sha1"));
    let xml = idp.response_xml(&spec, &signed);
    assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_signature");
}

/// An independent verifier (Debian's `xmlsec1`) still finds the signature in
/// `xml` valid: the refusal is the shape check's, not a broken fixture's.
fn still_validly_signed(idp: &SamlIdp, xml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, document) = (dir.path().join("idp.pem"), dir.path().join("r.xml"));
    std::fs::write(&certificate, idp.certificate_pem()).unwrap();
    std::fs::write(&document, xml).unwrap();
    let checked = std::process::Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(&certificate)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg(&document)
        .output()
        .expect("xmlsec1 (Debian package xmlsec1) runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && said.lines().any(|l| l == "OK"),
        "xmlsec1 refused the fixture: {said}"
    );
}

#[test]
fn signature_wrapping_is_refused_before_cryptography() {
    let idp = SamlIdp::new(IDP);
    let spec = honest(&idp);
    let signed = idp.assertion_xml(&spec, true);
    let signed = signed
        .split_once("?>")
        .map_or(signed.as_str(), |(_, body)| body)
        .to_owned();
    let evil_spec = ResponseSpec {
        assertion_id: "_evil".into(),
        name_id: "admin".into(),
        ..spec.clone()
    };
    let evil = idp.assertion_xml(&evil_spec, false);
    // An evil assertion next to the signed one, before or after it.
    for assertions in [format!("{evil}{signed}"), format!("{signed}{evil}")] {
        let xml = idp.response_xml(&spec, &assertions);
        assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_structure");
        still_validly_signed(&idp, &xml);
    }
    // The signed assertion hidden in Extensions, the evil one where readers look.
    let hidden = format!("<samlp:Extensions>{signed}</samlp:Extensions>{evil}");
    let xml = idp.response_xml(&spec, &hidden);
    assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_structure");
    still_validly_signed(&idp, &xml);
    // The evil assertion inside the signed one's signature object.
    let inside = signed.replacen(
        "</ds:Signature>",
        &format!("<ds:Object>{evil}</ds:Object></ds:Signature>"),
        1,
    );
    let xml = idp.response_xml(&spec, &inside);
    assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_structure");
    still_validly_signed(&idp, &xml);
    // The evil assertion carrying the signed one's ID.
    let twin = idp.assertion_xml(
        &ResponseSpec {
            assertion_id: spec.assertion_id.clone(),
            ..evil_spec
        },
        false,
    );
    let xml = idp.response_xml(&spec, &format!("{twin}{signed}"));
    assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_structure");
}

#[test]
fn a_comment_cannot_cut_the_name_id() {
    let idp = SamlIdp::new(IDP);
    let spec = ResponseSpec {
        name_id: "alice@partner.example.evil".into(),
        ..honest(&idp)
    };
    let xml = idp.response(&spec).replace(
        "alice@partner.example.evil",
        "alice@partner.example<!---->.evil",
    );
    assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_structure");
}

#[test]
fn addressing_must_name_this_service_provider() {
    let idp = SamlIdp::new(IDP);
    let cases: Vec<(ResponseSpec, &str)> = vec![
        (
            ResponseSpec {
                audience: Some("https://other-sp.example".into()),
                ..honest(&idp)
            },
            "saml_audience",
        ),
        (
            ResponseSpec {
                audience: None,
                ..honest(&idp)
            },
            "saml_audience",
        ),
        (
            ResponseSpec {
                recipient: "https://other-sp.example/acs".into(),
                ..honest(&idp)
            },
            "saml_confirmation",
        ),
        (
            ResponseSpec {
                destination: Some("https://other-sp.example/acs".into()),
                ..honest(&idp)
            },
            "saml_destination",
        ),
        (
            ResponseSpec {
                issuer: "https://evil.example".into(),
                ..honest(&idp)
            },
            "saml_issuer",
        ),
        (
            ResponseSpec {
                status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
                ..honest(&idp)
            },
            "saml_status",
        ),
        (
            ResponseSpec {
                name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into(),
                ..honest(&idp)
            },
            "saml_subject",
        ),
    ];
    for (spec, code) in cases {
        assert_eq!(code_of(verify(&idp, &idp.encoded(&spec))), code, "{spec:?}");
    }
}

#[test]
fn time_is_gatehouses_clock_with_the_configured_skew() {
    let idp = SamlIdp::new(IDP);
    let expired = ResponseSpec {
        not_on_or_after: now() - Duration::seconds(61),
        ..honest(&idp)
    };
    assert_eq!(code_of(verify(&idp, &idp.encoded(&expired))), "saml_time");
    let early = ResponseSpec {
        not_before: now() + Duration::seconds(61),
        ..honest(&idp)
    };
    assert_eq!(code_of(verify(&idp, &idp.encoded(&early))), "saml_time");
    let old = idp.answer(&sp(), "_request", "alice", now() - Duration::minutes(7));
    let old = ResponseSpec {
        not_on_or_after: now() + Duration::minutes(5),
        confirmation_until: now() + Duration::minutes(5),
        ..old
    };
    assert_eq!(code_of(verify(&idp, &idp.encoded(&old))), "saml_time");
    let confirmation_over = ResponseSpec {
        confirmation_until: now() - Duration::seconds(61),
        ..honest(&idp)
    };
    assert_eq!(
        code_of(verify(&idp, &idp.encoded(&confirmation_over))),
        "saml_confirmation"
    );
    // Within the skew: accepted.
    let late = ResponseSpec {
        not_on_or_after: now() - Duration::seconds(30),
        ..honest(&idp)
    };
    verify(&idp, &idp.encoded(&late)).unwrap();
}

#[test]
fn hostile_documents_are_refused_cheaply() {
    let idp = SamlIdp::new(IDP);
    let xml = idp.response(&honest(&idp));
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>{}"#,
        xml.split_once("?>").map_or(xml.as_str(), |(_, body)| body)
    );
    assert_eq!(code_of(verify(&idp, &encode(&laughs))), "saml_structure");
    let external = laughs.replace(
        r#"<!ENTITY a "aaaaaaaaaa">"#,
        r#"<!ENTITY a SYSTEM "file:///etc/passwd">"#,
    );
    assert_eq!(code_of(verify(&idp, &encode(&external))), "saml_structure");
    let huge = "A".repeat(MAX_ENCODED_RESPONSE + 1);
    assert_eq!(code_of(verify(&idp, &huge)), "saml_too_large");
    assert_eq!(code_of(verify(&idp, "not base64!")), "saml_encoding");
    assert_eq!(code_of(verify(&idp, &encode("<a>"))), "saml_structure");
}

#[test]
fn metadata_gives_the_settings_and_sp_metadata_is_signed() {
    let idp = SamlIdp::new(IDP);
    let settings = settings(&idp);
    assert_eq!(settings.idp_entity_id, IDP);
    assert_eq!(settings.sso_url, "https://idp.partner.example/sso");
    assert_eq!(settings.idp_certificates.len(), 1);
    assert!(
        SamlSettings::from_metadata(&idp.metadata("https://x.example/sso"), Some("other")).is_err()
    );
    assert!(SamlSettings::from_metadata("<!DOCTYPE x><x/>", None).is_err());
    let keys = SamlSecrets::generate("Gatehouse SP").unwrap();
    let metadata = sp_metadata(&settings, &keys, &sp(), now()).unwrap();
    assert!(metadata.contains(r#"AuthnRequestsSigned="true""#));
    assert!(metadata.contains(&sp().acs));
    let certificate = CertificateDer::from(certificate_der(&keys.sp_certificate).unwrap());
    let xml = metadata
        .split_once("?>")
        .map_or(metadata.as_str(), |(_, b)| b);
    Crypto::reduce_xml_to_signed(xml, &[certificate], ReduceMode::ValidateAndMarkNoAncestors)
        .expect("SP metadata verifies with its own certificate");
}

#[test]
fn the_authn_request_is_signed_over_the_redirect_binding() {
    let idp = SamlIdp::new(IDP);
    let keys = SamlSecrets::generate("Gatehouse SP").unwrap();
    let url =
        authn_request_url(&settings(&idp), &keys, &sp(), "_req1", "relay", None, now()).unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let names: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(names, ["SAMLRequest", "RelayState", "SigAlg", "Signature"]);
    let verifier = samael::crypto::UrlVerifier::from_x509_cert_pem(&keys.sp_certificate).unwrap();
    assert!(verifier.verify_signed_request_url(&parsed).unwrap());
}

#[test]
fn encrypted_assertions_are_taken_inside_a_signed_response_only() {
    let idp = SamlIdp::new(IDP);
    let keys = SamlSecrets::generate("Gatehouse SP").unwrap();
    let settings = settings(&idp);
    let encrypted = ResponseSpec {
        signed: Signed::Both,
        encrypt_to: Some(keys.sp_certificate.clone()),
        ..honest(&idp)
    };
    let encoded = idp.encoded(&encrypted);
    assert!(
        !idp.response(&encrypted).contains("alice@partner.example"),
        "really encrypted"
    );
    let asserted = verify_response(&settings, &sp(), Some(&keys), &encoded, now()).unwrap();
    assert_eq!(asserted.subject, "alice");
    assert_eq!(asserted.claims.0["mail"], vec!["alice@partner.example"]);
    // Another SP's key cannot open it.
    let other = SamlSecrets::generate("Other SP").unwrap();
    assert_eq!(
        code_of(verify_response(
            &settings,
            &sp(),
            Some(&other),
            &encoded,
            now()
        )),
        "saml_encrypted"
    );
    // Under an unsigned Response the ciphertext is nobody's word.
    let unsigned_outer = ResponseSpec {
        signed: Signed::Assertion,
        ..encrypted.clone()
    };
    let encoded = idp.encoded(&unsigned_outer);
    assert_eq!(
        code_of(verify_response(
            &settings,
            &sp(),
            Some(&keys),
            &encoded,
            now()
        )),
        "saml_encrypted"
    );
    // RSA PKCS#1 v1.5 key transport is refused.
    let legacy = ResponseSpec {
        key_transport: "http://www.w3.org/2001/04/xmlenc#rsa-1_5".into(),
        ..encrypted
    };
    let encoded = idp.encoded(&legacy);
    assert_eq!(
        code_of(verify_response(
            &settings,
            &sp(),
            Some(&keys),
            &encoded,
            now()
        )),
        "saml_encrypted"
    );
}

#[test]
fn only_a_signed_part_says_which_request_is_answered() {
    let idp = SamlIdp::new(IDP);
    // An assertion answering nothing (IdP-initiated), signed alone, in a Response
    // whose unsigned InResponseTo names the attacker's own request.
    let unsolicited = ResponseSpec {
        in_response_to: None,
        ..honest(&idp)
    };
    let xml = idp.response(&unsolicited).replacen(
        "<samlp:Response ",
        r#"<samlp:Response InResponseTo="_request" "#,
        1,
    );
    assert_eq!(code_of(verify(&idp, &encode(&xml))), "saml_in_response_to");
    // The same assertion left unsolicited is just that.
    let asserted = verify(&idp, &idp.encoded(&unsolicited)).unwrap();
    assert_eq!(asserted.in_response_to, None);
    // A signed Response must say where it goes.
    let nowhere = ResponseSpec {
        signed: Signed::Response,
        destination: None,
        ..honest(&idp)
    };
    assert_eq!(
        code_of(verify(&idp, &idp.encoded(&nowhere))),
        "saml_destination"
    );
}

#[test]
fn a_step_up_forces_a_fresh_sign_in_of_the_classes_that_count() {
    use std::io::Read;
    let idp = SamlIdp::new(IDP);
    let keys = SamlSecrets::generate("Gatehouse SP").unwrap();
    let classes = vec!["urn:partner:mfa".to_owned()];
    let url = authn_request_url(
        &settings(&idp),
        &keys,
        &sp(),
        "_r",
        "relay",
        Some(&classes),
        now(),
    )
    .unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let request = parsed
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .unwrap()
        .1
        .into_owned();
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(request)
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice())
        .read_to_string(&mut xml)
        .unwrap();
    assert!(xml.contains(r#"ForceAuthn="true""#), "{xml}");
    assert!(
        xml.contains(r#"<samlp:RequestedAuthnContext Comparison="exact"><saml:AuthnContextClassRef>urn:partner:mfa</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>"#),
        "{xml}"
    );
    prescan::check_message(&xml).unwrap();
}

#[test]
fn the_post_binding_carries_a_request_signed_inside() {
    let idp = SamlIdp::new(IDP);
    let keys = SamlSecrets::generate("Gatehouse SP").unwrap();
    let fields =
        authn_request_form(&settings(&idp), &keys, &sp(), "_req2", "relay", None, now()).unwrap();
    assert_eq!(fields[1], ("RelayState".to_owned(), "relay".to_owned()));
    let xml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&fields[0].1)
            .unwrap(),
    )
    .unwrap();
    assert!(
        xml.contains(r#"ID="_req2""#) && xml.contains("Destination="),
        "{xml}"
    );
    let certificate = CertificateDer::from(certificate_der(&keys.sp_certificate).unwrap());
    let body = xml.split_once("?>").map_or(xml.as_str(), |(_, b)| b);
    let signed =
        Crypto::reduce_xml_to_signed(body, &[certificate], ReduceMode::ValidateAndMarkNoAncestors)
            .expect("the request verifies with the SP's certificate");
    assert!(signed.contains("AuthnRequest"));
}
