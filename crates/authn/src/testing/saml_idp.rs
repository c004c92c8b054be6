//! A scripted SAML identity provider for hostile tests: it builds responses the
//! way a real IdP does (an assertion signed with its own RSA key through
//! libxmlsec1, optionally the response too) and lets a test bend any part of
//! them. The honest journey runs against SimpleSAMLphp in the browser tests;
//! this is for what no honest IdP sends.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};

use crate::federation::saml::{self, SamlSecrets, SpUrls, instant};

/// Which parts of a response carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    Assertion,
    Response,
    Both,
    Neither,
}

/// An identity provider with its own key.
#[derive(Debug, Clone)]
pub struct SamlIdp {
    pub entity_id: String,
    keys: SamlSecrets,
}

/// Everything a response says, each part open to change.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    pub response_id: String,
    pub assertion_id: String,
    pub issuer: String,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub status: String,
    pub issue_instant: DateTime<Utc>,
    pub name_id: String,
    pub name_id_format: String,
    pub recipient: String,
    pub confirmation_until: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub not_on_or_after: DateTime<Utc>,
    /// `None`: no AudienceRestriction at all.
    pub audience: Option<String>,
    pub class_ref: String,
    pub session_index: String,
    pub attributes: Vec<(String, Vec<String>)>,
    pub signed: Signed,
    /// Encrypts the (signed) assertion to this certificate (PEM), AES-128-GCM with
    /// the key transported by `key_transport`.
    pub encrypt_to: Option<String>,
    pub key_transport: String,
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

impl SamlIdp {
    pub fn new(entity_id: &str) -> SamlIdp {
        SamlIdp {
            entity_id: entity_id.to_owned(),
            keys: SamlSecrets::generate("Test IdP").expect("an IdP key"),
        }
    }

    pub fn certificate_pem(&self) -> String {
        self.keys.sp_certificate.clone()
    }

    /// This IdP's metadata listing `next`'s certificate too (a rollover under way).
    pub fn metadata_with_next(&self, sso_url: &str, next: &SamlIdp) -> String {
        let key = |idp: &SamlIdp| {
            format!(
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                idp.keys.certificate_base64().expect("a certificate")
            )
        };
        let own = key(self);
        self.metadata(sso_url)
            .replacen(&own, &format!("{own}{}", key(next)), 1)
    }

    /// This IdP's metadata (unsigned), as an operator would import it.
    pub fn metadata(&self, sso_url: &str) -> String {
        format!(
            concat!(
                r#"<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">"#,
                r#"<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                r#"<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"#,
                r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}/slo"/>"#,
                r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/>"#,
                r#"</md:IDPSSODescriptor></md:EntityDescriptor>"#
            ),
            entity = escape(&self.entity_id),
            certificate = self.keys.certificate_base64().expect("a certificate"),
            sso = escape(sso_url),
        )
    }

    /// An honest answer to `request_id` for `subject`, from this IdP to `sp` at `now`.
    pub fn answer(
        &self,
        sp: &SpUrls,
        request_id: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> ResponseSpec {
        ResponseSpec {
            response_id: saml::new_id(),
            assertion_id: saml::new_id(),
            issuer: self.entity_id.clone(),
            destination: Some(sp.acs.clone()),
            in_response_to: Some(request_id.to_owned()),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            issue_instant: now,
            name_id: subject.to_owned(),
            name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
            recipient: sp.acs.clone(),
            confirmation_until: now + Duration::minutes(5),
            not_before: now - Duration::seconds(30),
            not_on_or_after: now + Duration::minutes(5),
            audience: Some(sp.entity_id.clone()),
            class_ref: "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into(),
            session_index: saml::new_id(),
            attributes: vec![
                ("mail".into(), vec![format!("{subject}@partner.example")]),
                ("givenName".into(), vec!["Alice".into()]),
                ("sn".into(), vec!["Partner".into()]),
                (
                    "eduPersonAffiliation".into(),
                    vec!["member".into(), "sales-emea".into()],
                ),
            ],
            signed: Signed::Assertion,
            encrypt_to: None,
            key_transport: "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p".into(),
        }
    }

    /// The assertion's XML, unsigned or signed by this IdP.
    pub fn assertion_xml(&self, spec: &ResponseSpec, sign: bool) -> String {
        let attributes: String = spec
            .attributes
            .iter()
            .map(|(name, values)| {
                let values: String = values
                    .iter()
                    .map(|v| format!("<saml:AttributeValue>{}</saml:AttributeValue>", escape(v)))
                    .collect();
                format!(
                    r#"<saml:Attribute Name="{}">{values}</saml:Attribute>"#,
                    escape(name)
                )
            })
            .collect();
        let audience = spec
            .audience
            .as_ref()
            .map(|a| {
                format!(
                    "<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>",
                    escape(a)
                )
            })
            .unwrap_or_default();
        let in_response_to = optional_attribute("InResponseTo", spec.in_response_to.as_deref());
        let signature = self.template_for(&spec.assertion_id, sign);
        let xml = format!(
            concat!(
                r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}">"#,
                r#"<saml:Issuer>{issuer}</saml:Issuer>{signature}"#,
                r#"<saml:Subject><saml:NameID Format="{format}">{name_id}</saml:NameID>"#,
                r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">"#,
                r#"<saml:SubjectConfirmationData NotOnOrAfter="{confirmation_until}" Recipient="{recipient}"{in_response_to}/>"#,
                r#"</saml:SubjectConfirmation></saml:Subject>"#,
                r#"<saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{not_on_or_after}">{audience}</saml:Conditions>"#,
                r#"<saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{session_index}"><saml:AuthnContext>"#,
                r#"<saml:AuthnContextClassRef>{class_ref}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
                r#"<saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion>"#
            ),
            id = escape(&spec.assertion_id),
            issued = instant(spec.issue_instant),
            issuer = escape(&spec.issuer),
            signature = signature,
            format = escape(&spec.name_id_format),
            name_id = escape(&spec.name_id),
            confirmation_until = instant(spec.confirmation_until),
            recipient = escape(&spec.recipient),
            in_response_to = in_response_to,
            not_before = instant(spec.not_before),
            not_on_or_after = instant(spec.not_on_or_after),
            audience = audience,
            session_index = escape(&spec.session_index),
            class_ref = escape(&spec.class_ref),
            attributes = attributes,
        );
        if sign {
            saml::sign(&xml, &self.keys).expect("signed assertion")
        } else {
            xml
        }
    }

    /// A LogoutRequest from this IdP for `name_id` (HTTP-Redirect, unsigned XML).
    pub fn logout_request(
        &self,
        id: &str,
        destination: &str,
        name_id: &str,
        session_index: Option<&str>,
        now: DateTime<Utc>,
    ) -> String {
        let session_index = session_index
            .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(i)))
            .unwrap_or_default();
        format!(
            concat!(
                r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
                r#"ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{destination}">"#,
                r#"<saml:Issuer>{issuer}</saml:Issuer><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{name_id}</saml:NameID>"#,
                r#"{session_index}</samlp:LogoutRequest>"#
            ),
            id = escape(id),
            now = instant(now),
            destination = escape(destination),
            issuer = escape(&self.entity_id),
            name_id = escape(name_id),
            session_index = session_index,
        )
    }

    /// `xml` over the HTTP-Redirect binding as this IdP sends it: the query
    /// string (`parameter=…&RelayState=…&SigAlg=…&Signature=…`), signed by its key.
    pub fn redirect_query(&self, parameter: &str, xml: &str, relay_state: Option<&str>) -> String {
        let url = saml::redirect_url(
            "https://sp.example/",
            parameter,
            xml,
            relay_state,
            &self.keys,
        )
        .expect("signed");
        url.split_once('?').expect("a query").1.to_owned()
    }

    /// A signature template for the element `id`, or nothing when unsigned.
    fn template_for(&self, id: &str, sign: bool) -> String {
        if !sign {
            return String::new();
        }
        saml::signature_template(id, &self.keys.certificate_base64().expect("a certificate"))
    }

    /// Signs a document that already carries a signature template.
    pub fn sign_raw(&self, xml: &str) -> String {
        saml::sign(xml, &self.keys).expect("signed")
    }

    /// The response's XML around `assertion` (already built), signed where `spec` says.
    pub fn response_xml(&self, spec: &ResponseSpec, assertion: &str) -> String {
        let sign = matches!(spec.signed, Signed::Response | Signed::Both);
        // The signed assertion is a document of its own: drop its XML declaration.
        let assertion = match assertion.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or(rest, |(_, body)| body).trim(),
            None => assertion,
        };
        let destination = optional_attribute("Destination", spec.destination.as_deref());
        let in_response_to = optional_attribute("InResponseTo", spec.in_response_to.as_deref());
        let signature = self.template_for(&spec.response_id, sign);
        let xml = format!(
            concat!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
                r#"ID="{id}" Version="2.0" IssueInstant="{issued}"{destination}{in_response_to}>"#,
                r#"<saml:Issuer>{issuer}</saml:Issuer>{signature}"#,
                r#"<samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>{assertion}</samlp:Response>"#
            ),
            id = escape(&spec.response_id),
            issued = instant(spec.issue_instant),
            destination = destination,
            in_response_to = in_response_to,
            issuer = escape(&spec.issuer),
            signature = signature,
            status = escape(&spec.status),
            assertion = assertion,
        );
        if sign {
            saml::sign(&xml, &self.keys).expect("signed response")
        } else {
            xml
        }
    }

    /// The whole response as XML.
    pub fn response(&self, spec: &ResponseSpec) -> String {
        let assertion = self.assertion_xml(
            spec,
            matches!(spec.signed, Signed::Assertion | Signed::Both),
        );
        match &spec.encrypt_to {
            Some(certificate) => {
                let assertion = match assertion.strip_prefix("<?xml") {
                    Some(rest) => rest.split_once("?>").map_or(rest, |(_, body)| body).trim(),
                    None => assertion.as_str(),
                };
                let encrypted = encrypt(assertion, certificate, &spec.key_transport);
                self.response_xml(spec, &encrypted)
            }
            None => self.response_xml(spec, &assertion),
        }
    }

    /// The response as the `SAMLResponse` form field carries it.
    pub fn encoded(&self, spec: &ResponseSpec) -> String {
        encode(&self.response(spec))
    }
}

/// `assertion` as an EncryptedAssertion to `certificate`: AES-128-GCM content,
/// its key transported with RSA-OAEP (or with PKCS#1 v1.5 when
/// `key_transport` names rsa-1_5, which Gatehouse must refuse).
fn encrypt(assertion: &str, certificate: &str, key_transport: &str) -> String {
    use openssl::rand::rand_bytes;
    use openssl::rsa::Padding;
    use openssl::symm::{Cipher, encrypt_aead};
    let mut key = [0_u8; 16];
    let mut iv = [0_u8; 12];
    rand_bytes(&mut key).expect("random");
    rand_bytes(&mut iv).expect("random");
    let mut tag = [0_u8; 16];
    let ciphertext = encrypt_aead(
        Cipher::aes_128_gcm(),
        &key,
        Some(&iv),
        &[],
        assertion.as_bytes(),
        &mut tag,
    )
    .expect("encrypted");
    let mut data = iv.to_vec();
    data.extend_from_slice(&ciphertext);
    data.extend_from_slice(&tag);
    let public = openssl::x509::X509::from_pem(certificate.as_bytes())
        .expect("a certificate")
        .public_key()
        .expect("its key")
        .rsa()
        .expect("RSA");
    let padding = if key_transport.ends_with("rsa-1_5") {
        Padding::PKCS1
    } else {
        Padding::PKCS1_OAEP
    };
    let mut wrapped = vec![0_u8; public.size() as usize];
    let length = public
        .public_encrypt(&key, &mut wrapped, padding)
        .expect("wrapped");
    wrapped.truncate(length);
    format!(
        concat!(
            r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes128-gcm"/>"#,
            r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>"#,
            r#"<xenc:EncryptionMethod Algorithm="{transport}"/>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{key}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{data}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedData></saml:EncryptedAssertion>"#
        ),
        transport = key_transport,
        key = STANDARD.encode(wrapped),
        data = STANDARD.encode(data),
    )
}

/// A fresh XML ID, as an IdP makes them.
pub fn new_id() -> String {
    saml::new_id()
}

/// ` name="value"`, escaped, or nothing.
fn optional_attribute(name: &str, value: Option<&str>) -> String {
    value
        .map(|value| format!(r#" {name}="{}""#, escape(value)))
        .unwrap_or_default()
}

/// Base64, as the HTTP-POST binding carries a message.
pub fn encode(xml: &str) -> String {
    STANDARD.encode(xml)
}
