//! Upstream SAML 2.0: Gatehouse as the service provider of a partner's identity
//! provider (Web Browser SSO profile, SP-initiated).
//!
//! - **Metadata** per connection, signed with the connection's own SP key
//!   (RSA-2048, generated when the connection is made, sealed at rest).
//! - **AuthnRequest** over HTTP-Redirect, signed (RSA-SHA256 over the query, SAML
//!   bindings §3.4.4.1); the RelayState is an opaque single-use handle, never a URL.
//! - **Response** at the ACS (HTTP-POST): [`prescan`] refuses every shape that
//!   leaves room for signature wrapping before any cryptography; libxmlsec1
//!   (through samael) verifies the signatures against the connection's
//!   configured IdP certificates only (never a key the message carries) and
//!   reduces the document to what they cover; the assertion is then read from that
//!   reduced document alone and checked with Gatehouse's clock: Issuer,
//!   Destination, Audience, Conditions, the bearer SubjectConfirmation's Recipient
//!   and expiry, InResponseTo. samael's own `ServiceProvider` checks are not used:
//!   they read the wall clock and skip what a missing element would have said.

pub(crate) mod prescan;
pub(crate) mod slo;

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::metadata::EntityDescriptor;
use samael::schema::{Assertion, Response};
use serde::{Deserialize, Serialize};

use super::Refusal;
use super::mapping::Claims;
use crate::AuthnError;

const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// The largest `SAMLResponse` field read (base64), and the XML it may decode to.
pub const MAX_ENCODED_RESPONSE: usize = 256 * 1024;
const MAX_RESPONSE_XML: usize = 192 * 1024;
/// The largest IdP metadata document taken.
pub const MAX_METADATA: usize = 1024 * 1024;
/// How old an assertion may be when it arrives (besides the skew).
const MAX_ASSERTION_AGE_MINUTES: i64 = 5;
const MAX_SKEW_SECONDS: i64 = 300;
/// The longest subject kept (a NameID or the configured attribute's value).
const MAX_SUBJECT: usize = 256;

/// Signatures accepted from an identity provider: SHA-2 only.
const ALLOWED_ALGORITHMS: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
];

/// The settings of an upstream SAML identity provider (what is not secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlSettings {
    /// The identity provider's entityID: every Issuer must be this.
    pub idp_entity_id: String,
    /// Its SingleSignOnService (for `authn_request_binding`).
    pub sso_url: String,
    /// How AuthnRequests travel: `redirect` (signed over the query; the default)
    /// or `post` (signed inside the XML).
    #[serde(default)]
    pub authn_request_binding: RequestBinding,
    /// The certificates whose keys may sign responses (PEM); several during a
    /// rollover. Keys a message carries itself are never used.
    pub idp_certificates: Vec<String>,
    /// How far the two clocks may disagree, in seconds (at most 300).
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: i64,
    /// The attribute that names the user at the partner, where the NameID is not
    /// persistent; otherwise the NameID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_attribute: Option<String>,
    /// AuthnContextClassRef → Gatehouse assurance level (1–3); any other counts as 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authn_context_levels: BTreeMap<String, i32>,
    /// Its SingleLogoutService for the HTTP-Redirect binding, if it offers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_url: Option<String>,
    /// Signing out here signs out at the identity provider too (single logout),
    /// when it offers it.
    #[serde(default = "yes")]
    pub logout: bool,
    /// Responses nobody here asked for (IdP-initiated sign-in) are taken, after
    /// the person confirms on a page of this site. Off by default.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Where the IdP publishes its metadata: read again regularly, so a new
    /// signing certificate (a rollover) or endpoint is taken up without an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
}

fn yes() -> bool {
    true
}

/// The binding AuthnRequests use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestBinding {
    #[default]
    Redirect,
    Post,
}

fn default_skew() -> i64 {
    60
}

fn web_url(field: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{field}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!("{field}: an http(s) URL is needed"));
    }
    Ok(())
}

impl SamlSettings {
    /// Parses and checks settings as stored or as an operator sent them.
    pub fn parse(value: &serde_json::Value) -> Result<SamlSettings, String> {
        let settings: SamlSettings =
            serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if settings.idp_entity_id.trim().is_empty() || settings.idp_entity_id.len() > 1024 {
            return Err("idp_entity_id: must be 1 to 1024 characters".into());
        }
        web_url("sso_url", &settings.sso_url)?;
        if let Some(slo) = &settings.slo_url {
            web_url("slo_url", slo)?;
        }
        if settings.idp_certificates.is_empty() {
            return Err("idp_certificates: at least one signing certificate is needed".into());
        }
        for (index, pem) in settings.idp_certificates.iter().enumerate() {
            certificate_der(pem)
                .map_err(|e| format!("idp_certificates[{index}]: not a certificate ({e})"))?;
        }
        if !(0..=MAX_SKEW_SECONDS).contains(&settings.clock_skew_seconds) {
            return Err(format!(
                "clock_skew_seconds: must be 0 to {MAX_SKEW_SECONDS}"
            ));
        }
        if let Some((class, level)) = settings
            .authn_context_levels
            .iter()
            .find(|(_, level)| !(1..=3).contains(*level))
        {
            return Err(format!(
                "authn_context_levels: `{class}` maps to {level}, not 1–3"
            ));
        }
        Ok(settings)
    }

    /// Settings read from the identity provider's metadata (its entityID, its
    /// HTTP-Redirect SSO endpoint and its signing certificates); the rest default.
    /// `entity_id` picks one entity of an aggregate.
    pub fn from_metadata(xml: &str, entity_id: Option<&str>) -> Result<SamlSettings, String> {
        if xml.len() > MAX_METADATA {
            return Err("the metadata is larger than 1 MiB".into());
        }
        prescan::check_plain(xml)?;
        let descriptor: EntityDescriptor =
            xml.parse().map_err(|e| format!("not SAML metadata: {e}"))?;
        let found = descriptor.entity_id.clone().unwrap_or_default();
        if let Some(wanted) = entity_id
            && wanted != found
        {
            return Err(format!("the metadata describes `{found}`, not `{wanted}`"));
        }
        let idp = descriptor
            .idp_sso_descriptors
            .as_ref()
            .and_then(|all| all.first())
            .ok_or("the metadata has no IDPSSODescriptor")?;
        let endpoint = |binding: &str| {
            idp.single_sign_on_services
                .iter()
                .find(|service| service.binding == binding)
                .map(|service| service.location.clone())
        };
        let (sso_url, authn_request_binding) = match (endpoint(HTTP_REDIRECT), endpoint(HTTP_POST))
        {
            (Some(url), _) => (url, RequestBinding::Redirect),
            (None, Some(url)) => (url, RequestBinding::Post),
            (None, None) => {
                return Err(
                    "the identity provider offers no HTTP-Redirect or HTTP-POST SingleSignOnService"
                        .into(),
                );
            }
        };
        let slo_url = idp
            .single_logout_services
            .iter()
            .find(|service| service.binding == HTTP_REDIRECT)
            .map(|service| service.location.clone());
        let idp_certificates: Vec<String> = idp
            .key_descriptors
            .iter()
            .filter(|key| key.key_use.as_deref() != Some("encryption"))
            .filter_map(|key| key.key_info.x509_data.as_ref())
            .flat_map(|data| data.certificates.iter())
            .map(|base64| pem_of(base64))
            .collect();
        SamlSettings::parse(
            &serde_json::to_value(SamlSettings {
                idp_entity_id: found,
                sso_url,
                authn_request_binding,
                idp_certificates,
                clock_skew_seconds: default_skew(),
                subject_attribute: None,
                authn_context_levels: BTreeMap::new(),
                slo_url,
                logout: true,
                allow_idp_initiated: false,
                metadata_url: None,
            })
            .map_err(|e| e.to_string())?,
        )
    }

    /// These settings with what the IdP's current metadata says of itself (its
    /// signing certificates and endpoints); the operator's own choices stay. The
    /// metadata must still describe the same entity.
    pub fn refreshed(&self, xml: &str) -> Result<SamlSettings, String> {
        let read = SamlSettings::from_metadata(xml, Some(&self.idp_entity_id))?;
        // The operator's binding stays; the endpoint is the metadata's for it.
        let sso_url = if self.authn_request_binding == read.authn_request_binding {
            read.sso_url
        } else {
            self.sso_url.clone()
        };
        Ok(SamlSettings {
            sso_url,
            slo_url: read.slo_url,
            idp_certificates: read.idp_certificates,
            ..self.clone()
        })
    }

    /// SHA-256 fingerprints of the signing certificates, for the audit log.
    pub fn certificate_fingerprints(&self) -> Vec<String> {
        self.idp_certificates
            .iter()
            .filter_map(|pem| certificate_der(pem).ok())
            .map(|der| crate::secrets::digest_bytes(&der))
            .collect()
    }

    fn aal_of(&self, class: Option<&str>) -> i32 {
        class
            .and_then(|class| self.authn_context_levels.get(class))
            .copied()
            .unwrap_or(1)
    }
}

/// A certificate as PEM, from the base64 DER that metadata carries.
fn pem_of(base64: &str) -> String {
    let compact: String = base64.chars().filter(|c| !c.is_whitespace()).collect();
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in compact.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    let certificate = X509::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    certificate.to_der().map_err(|e| e.to_string())
}

/// The connection's own keys as a service provider (sealed at rest).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlSecrets {
    /// PKCS#8 PEM.
    pub sp_key: String,
    /// Its self-signed certificate, PEM: what metadata publishes.
    pub sp_certificate: String,
}

impl std::fmt::Debug for SamlSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlSecrets").finish_non_exhaustive()
    }
}

fn crypto_failure(error: impl std::fmt::Display) -> AuthnError {
    AuthnError::Internal(format!("SAML key material: {error}"))
}

impl SamlSecrets {
    /// A fresh RSA-2048 key and a self-signed certificate for it, valid ten years
    /// (SAML peers pin the key; the dates are not checked).
    pub fn generate(common_name: &str) -> Result<SamlSecrets, AuthnError> {
        let rsa = Rsa::generate(2048).map_err(crypto_failure)?;
        let key = PKey::from_rsa(rsa).map_err(crypto_failure)?;
        let mut name = X509NameBuilder::new().map_err(crypto_failure)?;
        let cn: String = common_name.chars().take(64).collect();
        name.append_entry_by_text("CN", &cn)
            .map_err(crypto_failure)?;
        let name = name.build();
        let mut serial = BigNum::new().map_err(crypto_failure)?;
        serial
            .rand(127, openssl::bn::MsbOption::MAYBE_ZERO, false)
            .map_err(crypto_failure)?;
        let serial = Asn1Integer::from_bn(&serial).map_err(crypto_failure)?;
        let mut builder = X509::builder().map_err(crypto_failure)?;
        builder.set_version(2).map_err(crypto_failure)?;
        builder.set_serial_number(&serial).map_err(crypto_failure)?;
        builder.set_subject_name(&name).map_err(crypto_failure)?;
        builder.set_issuer_name(&name).map_err(crypto_failure)?;
        builder.set_pubkey(&key).map_err(crypto_failure)?;
        let not_before = Asn1Time::days_from_now(0).map_err(crypto_failure)?;
        let not_after = Asn1Time::days_from_now(3650).map_err(crypto_failure)?;
        builder
            .set_not_before(&not_before)
            .map_err(crypto_failure)?;
        builder.set_not_after(&not_after).map_err(crypto_failure)?;
        builder
            .sign(&key, MessageDigest::sha256())
            .map_err(crypto_failure)?;
        let certificate = builder.build();
        let pem = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(crypto_failure);
        Ok(SamlSecrets {
            sp_key: pem(key.private_key_to_pem_pkcs8().map_err(crypto_failure)?)?,
            sp_certificate: pem(certificate.to_pem().map_err(crypto_failure)?)?,
        })
    }

    fn key(&self) -> Result<PKey<Private>, AuthnError> {
        PKey::private_key_from_pem(self.sp_key.as_bytes()).map_err(crypto_failure)
    }

    /// The certificate as metadata and signatures carry it: base64 DER, one line.
    pub(crate) fn certificate_base64(&self) -> Result<String, AuthnError> {
        Ok(STANDARD.encode(certificate_der(&self.sp_certificate).map_err(crypto_failure)?))
    }
}

/// Where this connection's service provider lives on a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpUrls {
    /// The entityID, which is also where the metadata is served.
    pub entity_id: String,
    pub acs: String,
    /// Single logout (HTTP-Redirect): the partner's answers and requests.
    pub slo: String,
}

impl SpUrls {
    /// `base` is the tenant's absolute base URL.
    pub fn new(base: &str, slug: &str) -> SpUrls {
        SpUrls {
            entity_id: format!("{base}/federation/{slug}/saml/metadata"),
            acs: format!("{base}/federation/{slug}/saml/acs"),
            slo: format!("{base}/federation/{slug}/saml/slo"),
        }
    }
}

/// Escapes text for an XML attribute value or element content.
fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

pub(crate) fn instant(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An XML ID: `_` and 32 random bytes in hex (an NCName; samael's own are 32 bits).
pub(crate) fn new_id() -> String {
    let mut bytes = [0_u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    format!("_{}", hex::encode(bytes))
}

/// An enveloped signature template for the element `id`: RSA-SHA256, SHA-256
/// digest, exclusive canonicalisation. (samael's template digests with SHA-1.)
pub(crate) fn signature_template(id: &str, certificate_base64: &str) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>"#,
            r#"<ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"#,
            r#"</ds:Signature>"#
        ),
        id = id,
        certificate = certificate_base64
    )
}

/// Signs `xml`, which carries a [`signature_template`], with the SP key.
pub(crate) fn sign(xml: &str, secrets: &SamlSecrets) -> Result<String, AuthnError> {
    let der = secrets
        .key()?
        .private_key_to_der()
        .map_err(crypto_failure)?;
    Crypto::sign_xml(xml, &der).map_err(crypto_failure)
}

/// The connection's SP metadata, signed, valid for a week.
pub(crate) fn sp_metadata(
    settings: &SamlSettings,
    secrets: &SamlSecrets,
    urls: &SpUrls,
    now: DateTime<Utc>,
) -> Result<String, AuthnError> {
    let id = new_id();
    let certificate = secrets.certificate_base64()?;
    let name_id_format = if settings.subject_attribute.is_some() {
        UNSPECIFIED
    } else {
        PERSISTENT
    };
    let xml = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="{id}" entityID="{entity}" validUntil="{valid_until}">"#,
            "{signature}",
            r#"<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            r#"<md:KeyDescriptor use="encryption"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"#,
            r#"<md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes128-gcm"/>"#,
            r#"<md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>"#,
            r#"<md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/></md:KeyDescriptor>"#,
            r#"<md:SingleLogoutService Binding="{redirect}" Location="{slo}"/>"#,
            r#"<md:NameIDFormat>{name_id_format}</md:NameIDFormat>"#,
            r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
            r#"</md:SPSSODescriptor></md:EntityDescriptor>"#
        ),
        id = id,
        entity = escape(&urls.entity_id),
        valid_until = instant(now + Duration::days(7)),
        signature = signature_template(&id, &certificate),
        certificate = certificate,
        name_id_format = name_id_format,
        post = HTTP_POST,
        acs = escape(&urls.acs),
        redirect = HTTP_REDIRECT,
        slo = escape(&urls.slo),
    );
    sign(&xml, secrets)
}

/// The URL that carries a signed AuthnRequest to the identity provider over the
/// HTTP-Redirect binding.
pub(crate) fn authn_request_url(
    settings: &SamlSettings,
    secrets: &SamlSecrets,
    urls: &SpUrls,
    request_id: &str,
    relay_state: &str,
    step_up: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<String, AuthnError> {
    let xml = authn_request_xml(settings, urls, request_id, step_up, now, "");
    redirect_url(
        &settings.sso_url,
        "SAMLRequest",
        &xml,
        Some(relay_state),
        secrets,
    )
}

/// The same request for the HTTP-POST binding (SAML bindings §3.5): signed
/// inside the XML (enveloped, our SHA-256 template), base64; the form fields to
/// post to the IdP's SSO URL.
pub(crate) fn authn_request_form(
    settings: &SamlSettings,
    secrets: &SamlSecrets,
    urls: &SpUrls,
    request_id: &str,
    relay_state: &str,
    step_up: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, AuthnError> {
    let template = signature_template(request_id, &secrets.certificate_base64()?);
    let xml = authn_request_xml(settings, urls, request_id, step_up, now, &template);
    let signed = sign(&xml, secrets)?;
    Ok(vec![
        ("SAMLRequest".into(), STANDARD.encode(signed)),
        ("RelayState".into(), relay_state.to_owned()),
    ])
}

/// An AuthnRequest; `signature` (a template, or nothing) goes right after the
/// Issuer, where the schema puts it.
fn authn_request_xml(
    settings: &SamlSettings,
    urls: &SpUrls,
    request_id: &str,
    step_up: Option<&[String]>,
    now: DateTime<Utc>,
    signature: &str,
) -> String {
    // A step-up asks for a fresh sign-in of one of these classes (SAML core §3.3.2.2.1).
    let (force, requested) = match step_up {
        Some(classes) => (
            r#" ForceAuthn="true""#,
            format!(
                r#"<samlp:RequestedAuthnContext Comparison="exact">{}</samlp:RequestedAuthnContext>"#,
                classes
                    .iter()
                    .map(|c| format!(
                        "<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>",
                        escape(c)
                    ))
                    .collect::<String>()
            ),
        ),
        None => ("", String::new()),
    };
    let name_id_format = if settings.subject_attribute.is_some() {
        UNSPECIFIED
    } else {
        PERSISTENT
    };
    format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
            r#"ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{destination}" "#,
            r#"AssertionConsumerServiceURL="{acs}" ProtocolBinding="{post}"{force}>"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer>{signature}"#,
            r#"<samlp:NameIDPolicy Format="{format}" AllowCreate="true"/>{requested}"#,
            r#"</samlp:AuthnRequest>"#
        ),
        id = request_id,
        now = instant(now),
        destination = escape(&settings.sso_url),
        acs = escape(&urls.acs),
        post = HTTP_POST,
        issuer = escape(&urls.entity_id),
        format = name_id_format,
        force = force,
        requested = requested,
        signature = signature,
    )
}

/// A message over the HTTP-Redirect binding (SAML bindings §3.4.4): deflated,
/// base64, in the query of `target` as `parameter`, signed with the SP key
/// (RSA-SHA256 over `parameter=…&RelayState=…&SigAlg=…`).
pub(crate) fn redirect_url(
    target: &str,
    parameter: &str,
    xml: &str,
    relay_state: Option<&str>,
    secrets: &SamlSecrets,
) -> Result<String, AuthnError> {
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater
        .write_all(xml.as_bytes())
        .and_then(|()| deflater.flush())
        .map_err(|e| AuthnError::Internal(e.to_string()))?;
    let deflated = deflater
        .finish()
        .map_err(|e| AuthnError::Internal(e.to_string()))?;
    let mut url = url::Url::parse(target)
        .map_err(|e| Refusal::error("connection_invalid", format!("{target}: {e}")))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair(parameter, &STANDARD.encode(deflated));
        if let Some(relay_state) = relay_state {
            query.append_pair("RelayState", relay_state);
        }
    }
    let signed = samael::crypto::sign_url(url, &secrets.key()?).map_err(crypto_failure)?;
    Ok(signed.to_string())
}

/// Names a user at a partner for single logout: the SHA-256 of the NameID.
pub(crate) fn name_id_key(name_id: &str) -> String {
    crate::secrets::digest(name_id)
}

/// What a verified response established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asserted {
    pub(crate) assertion_id: String,
    /// Until when the assertion ID must be remembered (replay).
    pub(crate) remember_until: DateTime<Utc>,
    /// The request it answers; `None`: unsolicited.
    pub(crate) in_response_to: Option<String>,
    pub(crate) subject: String,
    pub(crate) name_id: String,
    pub(crate) name_id_format: Option<String>,
    pub(crate) session_index: Option<String>,
    pub(crate) claims: Claims,
    pub(crate) aal: i32,
}

fn refuse(code: &'static str, detail: impl Into<String>) -> AuthnError {
    Refusal::error(code, detail)
}

/// Decodes, shape-checks, verifies and validates a `SAMLResponse` (the form
/// field's base64) for this connection at `now`.
pub(crate) fn verify_response(
    settings: &SamlSettings,
    urls: &SpUrls,
    decryption_key: Option<&SamlSecrets>,
    encoded: &str,
    now: DateTime<Utc>,
) -> Result<Asserted, AuthnError> {
    if encoded.len() > MAX_ENCODED_RESPONSE {
        return Err(refuse("saml_too_large", "the response is too large"));
    }
    let compact: String = encoded
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = STANDARD
        .decode(compact)
        .map_err(|e| refuse("saml_encoding", format!("not base64: {e}")))?;
    if bytes.len() > MAX_RESPONSE_XML {
        return Err(refuse("saml_too_large", "the response is too large"));
    }
    let xml = String::from_utf8(bytes)
        .map_err(|_| refuse("saml_encoding", "the response is not UTF-8"))?;
    let shape = prescan::check_response(&xml).map_err(|e| refuse("saml_structure", e))?;
    // An encrypted assertion is taken only inside a signed Response: the signature
    // then covers the ciphertext, so nobody can probe the decryption (no padding
    // or key-transport oracle) and the plaintext is the IdP's.
    if shape.encrypted && !shape.response_signed {
        return Err(refuse(
            "saml_encrypted",
            "an encrypted assertion needs a signed Response",
        ));
    }
    let certificates = settings
        .idp_certificates
        .iter()
        .map(|pem| certificate_der(pem).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse("connection_invalid", format!("idp_certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(refuse(
            "connection_invalid",
            "no IdP certificate is configured",
        ));
    }
    if !shape.response_signed && !shape.assertion_signed {
        return Err(refuse(
            "saml_signature",
            "neither the response nor the assertion is signed",
        ));
    }
    let reduced = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        &xml,
        &certificates,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(ALLOWED_ALGORITHMS),
    )
    .map_err(|e| refuse("saml_signature", e.to_string()))?;
    if shape.response_signed {
        // Everything is read from what the signature covered.
        let signed: Response = reduced
            .parse()
            .map_err(|e: quick_xml::DeError| refuse("saml_structure", e.to_string()))?;
        if signed.id != shape.response_id {
            return Err(refuse(
                "saml_signature",
                "the signature covers another response",
            ));
        }
        let assertion = match (&signed.assertion, &signed.encrypted_assertion) {
            (Some(assertion), None) if !shape.encrypted => assertion.clone(),
            (None, Some(encrypted)) if shape.encrypted => {
                let keys = decryption_key.ok_or_else(|| {
                    refuse(
                        "saml_encrypted",
                        "the connection has no SP key to decrypt with",
                    )
                })?;
                decrypt(encrypted, keys)?
            }
            _ => {
                return Err(refuse(
                    "saml_structure",
                    "the signed response holds no assertion",
                ));
            }
        };
        return validate(settings, urls, &signed, true, &assertion, now);
    }
    let assertion: Assertion = reduced
        .parse()
        .map_err(|e: Box<dyn std::error::Error>| refuse("saml_structure", e.to_string()))?;
    if Some(&assertion.id) != shape.assertion_id.as_ref() {
        return Err(refuse(
            "saml_signature",
            "the signature covers another assertion",
        ));
    }
    // The unsigned Response around a signed assertion is anyone's word: it may
    // refuse (a status, another destination) but never vouch for anything.
    let outer: Response = xml
        .parse()
        .map_err(|e: quick_xml::DeError| refuse("saml_structure", e.to_string()))?;
    validate(settings, urls, &outer, false, &assertion, now)
}

/// Key transport Gatehouse takes: RSA-OAEP. (RSA PKCS#1 v1.5 is refused: the
/// Bleichenbacher class.)
const KEY_TRANSPORT_OAEP: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";

/// Decrypts an assertion with the connection's SP key.
fn decrypt(
    encrypted: &samael::schema::EncryptedAssertion,
    keys: &SamlSecrets,
) -> Result<Assertion, AuthnError> {
    let failed = |detail: &str| refuse("saml_encrypted", detail.to_owned());
    let (key_value, key_method) = encrypted
        .encrypted_key_info()
        .ok_or_else(|| failed("no EncryptedKey"))?;
    if key_method != KEY_TRANSPORT_OAEP {
        return Err(failed(&format!(
            "key transport {key_method} is not accepted"
        )));
    }
    let (data_value, data_method) = encrypted
        .encrypted_value_info()
        .ok_or_else(|| failed("no EncryptedData"))?;
    if data_method != AES128_CBC && data_method != AES128_GCM {
        return Err(failed(&format!(
            "content encryption {data_method} is not accepted"
        )));
    }
    // samael slices the IV and the tag without looking: short data would panic.
    let data_len = STANDARD
        .decode(data_value.value.lines().collect::<String>())
        .map_err(|_| failed("the ciphertext is not base64"))?
        .len();
    if data_len < 16 + 16 {
        return Err(failed("the ciphertext is too short"));
    }
    let key = Crypto::decrypt_assertion_key_info(key_value, key_method, &keys.key()?)
        .map_err(|_| failed("the key does not decrypt"))?;
    let mut plain = Crypto::decrypt_assertion_value_info(data_value, data_method, &key)
        .map_err(|_| failed("the assertion does not decrypt"))?;
    if data_method == AES128_CBC {
        // XML Encryption's padding: the last byte counts the padding bytes.
        let pad = usize::from(*plain.last().ok_or_else(|| failed("empty plaintext"))?);
        if pad == 0 || pad > 16 || pad > plain.len() {
            return Err(failed("bad padding"));
        }
        plain.truncate(plain.len() - pad);
    }
    let xml = String::from_utf8(plain).map_err(|_| failed("the plaintext is not UTF-8"))?;
    prescan::check_assertion(&xml).map_err(|e| refuse("saml_structure", e))?;
    xml.parse()
        .map_err(|e: Box<dyn std::error::Error>| refuse("saml_structure", e.to_string()))
}

fn validate(
    settings: &SamlSettings,
    urls: &SpUrls,
    response: &Response,
    response_signed: bool,
    assertion: &Assertion,
    now: DateTime<Utc>,
) -> Result<Asserted, AuthnError> {
    let skew = Duration::seconds(settings.clock_skew_seconds);
    let status = response
        .status
        .as_ref()
        .and_then(|status| status.status_code.value.clone())
        .unwrap_or_default();
    if status != SUCCESS {
        return Err(refuse(
            "saml_status",
            format!("the partner answered `{status}`"),
        ));
    }
    if response.version != "2.0" || assertion.version != "2.0" {
        return Err(refuse("saml_structure", "not SAML 2.0"));
    }
    match &response.destination {
        Some(destination) if destination != &urls.acs => {
            return Err(refuse("saml_destination", format!("sent to {destination}")));
        }
        // SAML bindings §3.5.5.2: a signed Response names where it goes.
        None if response_signed => {
            return Err(refuse(
                "saml_destination",
                "a signed Response without Destination",
            ));
        }
        _ => {}
    }
    if let Some(issuer) = response.issuer.as_ref().and_then(|i| i.value.as_deref())
        && issuer != settings.idp_entity_id
    {
        return Err(refuse(
            "saml_issuer",
            format!("the response is from `{issuer}`"),
        ));
    }
    let issuer = assertion.issuer.value.as_deref().unwrap_or_default();
    if issuer != settings.idp_entity_id {
        return Err(refuse(
            "saml_issuer",
            format!("the assertion is from `{issuer}`"),
        ));
    }
    if assertion.issue_instant > now + skew
        || assertion.issue_instant + Duration::minutes(MAX_ASSERTION_AGE_MINUTES) + skew < now
    {
        return Err(refuse(
            "saml_time",
            "the assertion was issued too long ago or in the future",
        ));
    }
    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or_else(|| refuse("saml_conditions", "the assertion has no Conditions"))?;
    if conditions.not_before.is_some_and(|at| now + skew < at) {
        return Err(refuse("saml_time", "the assertion is not valid yet"));
    }
    let not_on_or_after = conditions
        .not_on_or_after
        .ok_or_else(|| refuse("saml_conditions", "the Conditions set no NotOnOrAfter"))?;
    if now >= not_on_or_after + skew {
        return Err(refuse("saml_time", "the assertion has expired"));
    }
    let restrictions = conditions
        .audience_restrictions
        .as_deref()
        .unwrap_or_default();
    if restrictions.is_empty()
        || !restrictions
            .iter()
            .all(|restriction| restriction.audience.iter().any(|a| a == &urls.entity_id))
    {
        return Err(refuse(
            "saml_audience",
            "the assertion is not for this service provider",
        ));
    }
    let subject = assertion
        .subject
        .as_ref()
        .ok_or_else(|| refuse("saml_subject", "the assertion has no Subject"))?;
    let confirmation = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .filter_map(|c| c.subject_confirmation_data.as_ref())
        .find(|data| {
            data.recipient.as_deref() == Some(urls.acs.as_str())
                && data.not_on_or_after.is_some_and(|until| now < until + skew)
                && data.not_before.is_none()
        })
        .ok_or_else(|| {
            refuse(
                "saml_confirmation",
                "no bearer confirmation for this ACS that is still valid",
            )
        })?;
    // Only a signed part may say which request this answers: the Response when it
    // is signed, else the assertion's confirmation. (An unsigned Response's
    // InResponseTo would turn anyone's unsolicited assertion into an answer to
    // the attacker's own request.)
    let confirmed = confirmation.in_response_to.clone();
    let in_response_to = match (&response.in_response_to, &confirmed) {
        (Some(a), Some(b)) if a != b => {
            return Err(refuse(
                "saml_in_response_to",
                "the response and the assertion answer different requests",
            ));
        }
        (Some(a), None) if response_signed => Some(a.clone()),
        (Some(_), None) => {
            return Err(refuse(
                "saml_in_response_to",
                "only the unsigned Response says which request it answers",
            ));
        }
        (_, confirmed) => confirmed.clone(),
    };
    let name_id = subject
        .name_id
        .as_ref()
        .ok_or_else(|| refuse("saml_subject", "the Subject has no NameID"))?;
    let mut claims = BTreeMap::<String, Vec<String>>::new();
    let mut friendly_names = Vec::new();
    for statement in assertion.attribute_statements.iter().flatten() {
        for attribute in &statement.attributes {
            let values: Vec<String> = attribute
                .values
                .iter()
                .filter_map(|value| value.value.clone())
                .collect();
            if let Some(name) = &attribute.name {
                claims
                    .entry(name.clone())
                    .or_default()
                    .extend(values.iter().cloned());
            }
            if let Some(friendly) = &attribute.friendly_name {
                friendly_names.push((friendly.clone(), values));
            }
        }
    }
    // A FriendlyName is a second key for an attribute only where no attribute
    // has it as its Name: two attributes never merge into one claim.
    for (friendly, values) in friendly_names {
        claims.entry(friendly).or_insert(values);
    }
    claims.insert("nameid".into(), vec![name_id.value.clone()]);
    let subject_value = match &settings.subject_attribute {
        Some(attribute) => match claims.get(attribute).map(Vec::as_slice) {
            Some([one]) => one.clone(),
            _ => {
                return Err(refuse(
                    "saml_subject",
                    format!("the attribute `{attribute}` does not hold exactly one value"),
                ));
            }
        },
        None => {
            if name_id.format.as_deref() == Some(TRANSIENT) {
                return Err(refuse(
                    "saml_subject",
                    "a transient NameID names nobody: configure subject_attribute",
                ));
            }
            name_id.value.clone()
        }
    };
    if subject_value.trim().is_empty() || subject_value.len() > MAX_SUBJECT {
        return Err(refuse("saml_subject", "the subject is empty or too long"));
    }
    let statement = assertion
        .authn_statements
        .iter()
        .flatten()
        .next()
        .ok_or_else(|| refuse("saml_structure", "the assertion has no AuthnStatement"))?;
    if statement
        .session_not_on_or_after
        .is_some_and(|until| now >= until + skew)
    {
        return Err(refuse("saml_time", "the partner's session has ended"));
    }
    let class = statement
        .authn_context
        .as_ref()
        .and_then(|context| context.value.as_ref())
        .and_then(|class| class.value.as_deref());
    let remember_until = confirmation
        .not_on_or_after
        .map_or(not_on_or_after, |until| until.max(not_on_or_after))
        + skew;
    Ok(Asserted {
        assertion_id: assertion.id.clone(),
        remember_until,
        in_response_to,
        subject: subject_value,
        name_id: name_id.value.clone(),
        name_id_format: name_id.format.clone(),
        session_index: statement.session_index.clone(),
        claims: Claims(claims),
        aal: settings.aal_of(class),
    })
}

#[cfg(test)]
mod tests;
