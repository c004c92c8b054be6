//! Single logout with a SAML identity provider over the HTTP-Redirect binding
//! (SAML profiles §4.4, bindings §3.4): Gatehouse's LogoutRequest when a user
//! signs out here, the IdP's LogoutResponse to it, the IdP's own LogoutRequest
//! when the user signs out there, and Gatehouse's answer.
//!
//! A redirect-binding message is signed over its query string, not inside the
//! XML: the signature is checked over the parameters exactly as they arrived
//! (re-encoding them could differ from the IdP's encoding), with SHA-2 only and
//! only the connection's configured certificates; then the message is inflated
//! with a size cap (no deflate bomb) and shape-checked like any other.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use openssl::x509::X509;
use samael::schema::{LogoutRequest, LogoutResponse};
use serde::{Deserialize, Serialize};

use super::{SamlSecrets, SamlSettings, SpUrls, escape, instant, prescan, redirect_url};
use crate::AuthnError;
use crate::federation::Refusal;

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
/// The largest inflated logout message read.
const MAX_MESSAGE: u64 = 64 * 1024;
/// The largest query string looked at.
const MAX_QUERY: usize = 32 * 1024;
/// How old an IdP's LogoutRequest may be (besides the skew).
const MAX_REQUEST_AGE_MINUTES: i64 = 5;

/// What Gatehouse kept of a partner's session for single logout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UpstreamSession {
    pub(crate) name_id: String,
    #[serde(default)]
    pub(crate) format: Option<String>,
    #[serde(default)]
    pub(crate) session_index: Option<String>,
}

fn refuse(code: &'static str, detail: impl Into<String>) -> AuthnError {
    Refusal::error(code, detail)
}

/// The IdP's single-logout endpoint, when single logout is on and it has one.
pub(crate) fn slo_target(settings: &SamlSettings) -> Option<&str> {
    settings.slo_url.as_deref().filter(|_| settings.logout)
}

/// A signed LogoutRequest for `session`, as a URL to send the browser to.
pub(crate) fn logout_request_url(
    target: &str,
    secrets: &SamlSecrets,
    urls: &SpUrls,
    session: &UpstreamSession,
    request_id: &str,
    relay_state: &str,
    now: DateTime<Utc>,
) -> Result<String, AuthnError> {
    let format = session
        .format
        .as_ref()
        .map(|f| format!(r#" Format="{}""#, escape(f)))
        .unwrap_or_default();
    let session_index = session
        .session_index
        .as_ref()
        .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(i)))
        .unwrap_or_default();
    let xml = format!(
        concat!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
            r#"ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{destination}" NotOnOrAfter="{until}">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer><saml:NameID{format}>{name_id}</saml:NameID>{session_index}"#,
            r#"</samlp:LogoutRequest>"#
        ),
        id = request_id,
        now = instant(now),
        destination = escape(target),
        until = instant(now + Duration::minutes(5)),
        issuer = escape(&urls.entity_id),
        format = format,
        name_id = escape(&session.name_id),
        session_index = session_index,
    );
    redirect_url(target, "SAMLRequest", &xml, Some(relay_state), secrets)
}

/// A redirect-binding message whose signature checked out.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) xml: String,
    pub(crate) relay_state: Option<String>,
}

/// Reads `parameter` (`SAMLRequest` or `SAMLResponse`) from a redirect-binding
/// query as received, after checking its signature against the IdP's keys.
pub(crate) fn receive(
    settings: &SamlSettings,
    raw_query: &str,
    parameter: &str,
) -> Result<Received, AuthnError> {
    if raw_query.len() > MAX_QUERY {
        return Err(refuse("saml_too_large", "the query is too large"));
    }
    let mut raw: [Option<&str>; 4] = [None; 4];
    let names = [parameter, "RelayState", "SigAlg", "Signature"];
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        if let Some(slot) = names.iter().position(|n| *n == name) {
            if raw[slot].is_some() {
                return Err(refuse("saml_structure", format!("{name} appears twice")));
            }
            raw[slot] = Some(pair);
        }
    }
    let decoded = |pair: Option<&str>| {
        pair.and_then(|pair| url::form_urlencoded::parse(pair.as_bytes()).next())
            .map(|(_, value)| value.into_owned())
    };
    let (Some(message), Some(sig_alg), Some(signature)) = (raw[0], raw[2], raw[3]) else {
        return Err(refuse(
            "saml_signature",
            format!("an unsigned or incomplete {parameter}"),
        ));
    };
    let algorithm = decoded(Some(sig_alg)).unwrap_or_default();
    if algorithm != RSA_SHA256 && algorithm != ECDSA_SHA256 {
        return Err(refuse(
            "saml_signature",
            format!("signature algorithm {algorithm} is not accepted"),
        ));
    }
    let mut signed = String::from(message);
    if let Some(relay) = raw[1] {
        signed.push('&');
        signed.push_str(relay);
    }
    signed.push('&');
    signed.push_str(sig_alg);
    let signature = STANDARD
        .decode(decoded(Some(signature)).unwrap_or_default())
        .map_err(|_| refuse("saml_signature", "the signature is not base64"))?;
    let verified = settings.idp_certificates.iter().any(|pem| {
        X509::from_pem(pem.as_bytes())
            .and_then(|certificate| certificate.public_key())
            .and_then(|key| {
                let mut verifier = Verifier::new(MessageDigest::sha256(), &key)?;
                verifier.update(signed.as_bytes())?;
                verifier.verify(&signature)
            })
            .unwrap_or(false)
    });
    if !verified {
        return Err(refuse(
            "saml_signature",
            format!("the {parameter} is not signed by the identity provider"),
        ));
    }
    let deflated = STANDARD
        .decode(decoded(Some(message)).unwrap_or_default())
        .map_err(|_| refuse("saml_encoding", "the message is not base64"))?;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(deflated.as_slice())
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| refuse("saml_encoding", "the message does not inflate"))?;
    if inflated.len() as u64 > MAX_MESSAGE {
        return Err(refuse("saml_too_large", "the message inflates too far"));
    }
    let xml = String::from_utf8(inflated)
        .map_err(|_| refuse("saml_encoding", "the message is not UTF-8"))?;
    prescan::check_message(&xml).map_err(|e| refuse("saml_structure", e))?;
    Ok(Received {
        xml,
        relay_state: decoded(raw[1]),
    })
}

/// Checks the IdP's LogoutResponse to Gatehouse's request `request_id`; whether
/// the IdP says it succeeded.
pub(crate) fn check_logout_response(
    settings: &SamlSettings,
    urls: &SpUrls,
    xml: &str,
    request_id: &str,
) -> Result<bool, AuthnError> {
    let response = xml
        .parse::<LogoutResponse>()
        .map_err(|e| refuse("saml_structure", e.to_string()))?;
    let issuer = response.issuer.as_ref().and_then(|i| i.value.as_deref());
    if issuer != Some(settings.idp_entity_id.as_str()) {
        return Err(refuse(
            "saml_issuer",
            "the LogoutResponse is from someone else",
        ));
    }
    // Signed messages name their destination (SAML bindings §3.4.5.2), so one
    // signed for another SP cannot be replayed here.
    if response.destination.as_deref() != Some(urls.slo.as_str()) {
        return Err(refuse(
            "saml_destination",
            "the LogoutResponse is for another SP",
        ));
    }
    if response.in_response_to.as_deref() != Some(request_id) {
        return Err(refuse(
            "saml_in_response_to",
            "the LogoutResponse answers another request",
        ));
    }
    let status = response
        .status
        .as_ref()
        .and_then(|s| s.status_code.value.as_deref());
    Ok(status == Some(SUCCESS))
}

/// What an IdP's LogoutRequest asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogoutOrder {
    pub(crate) id: String,
    pub(crate) name_id: String,
    pub(crate) session_index: Option<String>,
    /// Until when its ID must be remembered (replay).
    pub(crate) remember_until: DateTime<Utc>,
}

/// Checks an IdP's LogoutRequest at `now`.
pub(crate) fn check_logout_request(
    settings: &SamlSettings,
    urls: &SpUrls,
    xml: &str,
    now: DateTime<Utc>,
) -> Result<LogoutOrder, AuthnError> {
    let request = xml
        .parse::<LogoutRequest>()
        .map_err(|e| refuse("saml_structure", e.to_string()))?;
    let skew = Duration::seconds(settings.clock_skew_seconds);
    let issuer = request.issuer.as_ref().and_then(|i| i.value.as_deref());
    if issuer != Some(settings.idp_entity_id.as_str()) {
        return Err(refuse(
            "saml_issuer",
            "the LogoutRequest is from someone else",
        ));
    }
    // Signed messages name their destination (SAML bindings §3.4.5.2), so one
    // signed for another SP cannot be replayed here.
    if request.destination.as_deref() != Some(urls.slo.as_str()) {
        return Err(refuse(
            "saml_destination",
            "the LogoutRequest is for another SP",
        ));
    }
    let issued = request
        .issue_instant
        .ok_or_else(|| refuse("saml_structure", "the LogoutRequest has no IssueInstant"))?;
    if issued > now + skew || issued + Duration::minutes(MAX_REQUEST_AGE_MINUTES) + skew < now {
        return Err(refuse(
            "saml_time",
            "the LogoutRequest is too old or from the future",
        ));
    }
    let id = request
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refuse("saml_structure", "the LogoutRequest has no ID"))?;
    let name_id = request
        .name_id
        .map(|n| n.value)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| refuse("saml_subject", "the LogoutRequest names nobody"))?;
    Ok(LogoutOrder {
        id,
        name_id,
        session_index: request.session_index,
        remember_until: issued + Duration::minutes(MAX_REQUEST_AGE_MINUTES) + skew * 2,
    })
}

/// Gatehouse's signed LogoutResponse to the IdP's request `in_response_to`.
pub(crate) fn logout_response_url(
    target: &str,
    secrets: &SamlSecrets,
    urls: &SpUrls,
    in_response_to: &str,
    relay_state: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, AuthnError> {
    let xml = format!(
        concat!(
            r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" "#,
            r#"ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{destination}" InResponseTo="{in_response_to}">"#,
            r#"<saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{success}"/></samlp:Status>"#,
            r#"</samlp:LogoutResponse>"#
        ),
        id = super::new_id(),
        now = instant(now),
        destination = escape(target),
        in_response_to = escape(in_response_to),
        issuer = escape(&urls.entity_id),
        success = SUCCESS,
    );
    redirect_url(target, "SAMLResponse", &xml, relay_state, secrets)
}
