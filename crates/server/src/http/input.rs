//! Input hygiene at the edge, in one place: before any handler runs, a request whose
//! path, query or body carries a control character or text that is not UTF-8 is
//! refused with 400. No backend then sees a NUL (PostgreSQL fails on one, SQLite
//! stores it, so they would disagree) and nothing is decoded lossily (`%FF` stored as
//! U+FFFD).
//!
//! The rules:
//! - **Path, query and form bodies** (`application/x-www-form-urlencoded`), every name
//!   and value after percent-decoding: no control character at all — C0 with tab, CR
//!   and LF (no Gatehouse form field is multi-line, and browsers strip line breaks
//!   from single-line inputs), DEL and C1 — and only UTF-8.
//! - **Every other body** (JSON: AuthZEN, the consent API, the passkey ceremonies,
//!   whose handlers read JSON whatever the declared type): UTF-8, and no control
//!   character raw or as a `\u` escape, except tab, CR and LF, which JSON whitespace
//!   and multi-line string values legitimately carry; no `\u` escape of an unpaired
//!   surrogate. A form body gets this check as well, since a JSON handler reads it.
//!
//! Protocol endpoints answer `{"error": "invalid_request", "error_description"}`
//! (RFC 6749 §5.2; the consent API and AuthZEN use the same shape); pages a readable
//! 400 page, or that JSON when a page's script sent JSON.

use std::fmt;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, web};
use serde_json::json;

/// Path prefixes (after an optional `/t/{tenant}`) of the endpoints that speak a
/// protocol rather than show pages.
const PROTOCOL_PATHS: &[&str] = &[
    "/.well-known/",
    "/jwks",
    "/userinfo",
    "/oauth2/token",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/oauth2/par",
    "/access/",
    "/consents/",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Where in the request the refused input was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path,
    /// A query parameter, named when its name is itself plain.
    Query(Option<String>),
    /// A form field, named when its name is itself plain.
    Form(Option<String>),
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    ControlCharacter,
    InvalidUtf8,
    UnpairedSurrogate,
}

/// Why a request was refused; its `Display` is safe for a log line and an
/// `error_description` (printable ASCII, no quotes or backslashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub location: Location,
    pub problem: Problem,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Path => write!(f, "the path")?,
            Location::Query(Some(name)) => write!(f, "the query parameter {name}")?,
            Location::Query(None) => write!(f, "a query parameter")?,
            Location::Form(Some(name)) => write!(f, "the form field {name}")?,
            Location::Form(None) => write!(f, "a form field")?,
            Location::Body => write!(f, "the body")?,
        }
        f.write_str(match self.problem {
            Problem::ControlCharacter => " contains a control character",
            Problem::InvalidUtf8 => " is not valid UTF-8",
            Problem::UnpairedSurrogate => " contains an unpaired surrogate escape",
        })
    }
}

/// A field's name as a refusal may repeat it: only when plain and short.
fn plain_name(decoded: &[u8]) -> Option<String> {
    let plain = !decoded.is_empty()
        && decoded.len() <= 64
        && decoded
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plain.then(|| String::from_utf8_lossy(decoded).into_owned())
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// `%XX` becomes its byte (a `%` without two hex digits stays, as form parsers
/// leave it), `+` a space in forms and queries; everything else is kept as it is.
fn percent_decode(raw: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let byte = raw[index];
        let escaped = (byte == b'%')
            .then(|| {
                Some((
                    hex_value(*raw.get(index + 1)?)?,
                    hex_value(*raw.get(index + 2)?)?,
                ))
            })
            .flatten();
        match escaped {
            Some((high, low)) => {
                decoded.push((high << 4) | low);
                index += 3;
            }
            None => {
                decoded.push(if plus_is_space && byte == b'+' {
                    b' '
                } else {
                    byte
                });
                index += 1;
            }
        }
    }
    decoded
}

/// UTF-8 without any control character: what a decoded name or value must be.
fn check_text(bytes: &[u8]) -> Result<(), Problem> {
    let text = std::str::from_utf8(bytes).map_err(|_| Problem::InvalidUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(Problem::ControlCharacter);
    }
    Ok(())
}

pub fn check_path(path: &str) -> Result<(), Refusal> {
    check_text(&percent_decode(path.as_bytes(), false)).map_err(|problem| Refusal {
        location: Location::Path,
        problem,
    })
}

/// `name=value` pairs separated by `&`, as in a query string or a form body.
fn check_pairs(raw: &[u8], located: fn(Option<String>) -> Location) -> Result<(), Refusal> {
    for pair in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = percent_decode(name, true);
        let mut value = percent_decode(value, true);
        // Base64 of a SAML message may be wrapped in lines; nothing else may.
        if matches!(name.as_slice(), b"SAMLResponse" | b"SAMLRequest") {
            value.retain(|b| !matches!(b, b'\r' | b'\n'));
        }
        if let Err(problem) = check_text(&name).and_then(|()| check_text(&value)) {
            return Err(Refusal {
                location: located(plain_name(&name)),
                problem,
            });
        }
    }
    Ok(())
}

pub fn check_query(query: &str) -> Result<(), Refusal> {
    check_pairs(query.as_bytes(), Location::Query)
}

fn check_form_body(body: &[u8]) -> Result<(), Refusal> {
    check_pairs(body, Location::Form)
}

/// What a JSON text may not carry, raw or escaped.
fn forbidden_in_json(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

fn read_hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

/// Malformed JSON passes here: its handler refuses it as malformed.
fn check_json_body(body: &[u8]) -> Result<(), Refusal> {
    let refuse = |problem| Refusal {
        location: Location::Body,
        problem,
    };
    let text = std::str::from_utf8(body).map_err(|_| refuse(Problem::InvalidUtf8))?;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if forbidden_in_json(c) {
            return Err(refuse(Problem::ControlCharacter));
        }
        if c != '\\' {
            continue;
        }
        match chars.next() {
            Some('u') => {}
            // The short escapes of control characters: backspace and form feed.
            Some('b' | 'f') => return Err(refuse(Problem::ControlCharacter)),
            _ => continue,
        }
        let Some(unit) = read_hex4(&mut chars) else {
            continue;
        };
        match unit {
            0xD800..=0xDBFF => {
                let low = (chars.next() == Some('\\') && chars.next() == Some('u'))
                    .then(|| read_hex4(&mut chars))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Err(refuse(Problem::UnpairedSurrogate));
                }
            }
            0xDC00..=0xDFFF => return Err(refuse(Problem::UnpairedSurrogate)),
            _ => {
                if char::from_u32(unit).is_some_and(forbidden_in_json) {
                    return Err(refuse(Problem::ControlCharacter));
                }
            }
        }
    }
    Ok(())
}

pub fn check_body(is_form: bool, body: &[u8]) -> Result<(), Refusal> {
    if is_form {
        check_form_body(body)?;
    }
    check_json_body(body)
}

fn content_type(req: &HttpRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The path below an optional `/t/{tenant}` prefix.
fn tenant_local_path(path: &str) -> &str {
    path.strip_prefix("/t/")
        .and_then(|rest| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or(path)
}

/// The SAML bindings' POST endpoints, whose bodies carry whole signed documents.
const SAML_BODY_LIMIT: usize = gatehouse_authn::federation::saml::MAX_ENCODED_RESPONSE + 1024;

fn is_saml_post(path: &str) -> bool {
    let local = tenant_local_path(path);
    local.starts_with("/federation/") && local.ends_with("/saml/acs")
}

fn is_protocol_endpoint(path: &str) -> bool {
    let local = tenant_local_path(path);
    PROTOCOL_PATHS
        .iter()
        .any(|prefix| local.starts_with(prefix))
}

/// The middleware: checks path, query and body; a clean request goes on with its
/// body buffered (within the same `PayloadConfig` limit the handlers use) and
/// already decompressed.
pub async fn refuse_unsafe_input(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let mut refused = check_path(req.path())
        .and_then(|()| check_query(req.query_string()))
        .err();
    if refused.is_none() {
        let body = if is_saml_post(req.path()) {
            // SAML responses outgrow the 32 KiB every other body gets.
            req.extract::<web::Payload>()
                .await?
                .to_bytes_limited(SAML_BODY_LIMIT)
                .await
                .map_err(|_| {
                    actix_web::error::ErrorPayloadTooLarge("the SAML message is too large")
                })??
        } else {
            req.extract::<web::Bytes>().await?
        };
        if req.headers().contains_key(header::CONTENT_ENCODING) {
            // The handler reads the decoded bytes below, not the encoded stream.
            req.headers_mut().remove(header::CONTENT_ENCODING);
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let is_form = content_type(req.request()).starts_with("application/x-www-form-urlencoded");
        refused = check_body(is_form, &body).err();
        req.set_payload(Payload::from(body));
    }
    let Some(refusal) = refused else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    tracing::info!(
        method = %req.method(),
        path = req.path(),
        reason = %refusal,
        "request refused: unsafe input"
    );
    // A page names its tenant in the path; routing has not run yet, so capture it
    // here for the error page (not from a path that was itself refused).
    if refusal.location != Location::Path {
        ResourceDef::prefix("/t/{tenant}").capture_match_info(req.match_info_mut());
    }
    let (request, _) = req.into_parts();
    let wants_json =
        is_protocol_endpoint(request.path()) || content_type(&request).contains("json");
    let response = if wants_json {
        refusal_json(&refusal)
    } else {
        crate::pages::refused_input(&request).await
    };
    Ok(ServiceResponse::new(request, response))
}

/// RFC 6749 §5.2's shape, which every JSON endpoint here answers errors in.
fn refusal_json(refusal: &Refusal) -> HttpResponse {
    HttpResponse::build(StatusCode::BAD_REQUEST)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": "invalid_request", "error_description": refusal.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem_of(result: Result<(), Refusal>) -> Option<Problem> {
        result.err().map(|r| r.problem)
    }

    #[test]
    fn queries_and_forms_refuse_every_control_character_and_invalid_utf8() {
        for (raw, problem) in [
            ("a=%00", Problem::ControlCharacter),
            ("a=b%0A", Problem::ControlCharacter),
            ("a=%09", Problem::ControlCharacter),
            ("a=%7F", Problem::ControlCharacter),
            ("a=%C2%85", Problem::ControlCharacter),
            ("a%00=b", Problem::ControlCharacter),
            ("a=%FF", Problem::InvalidUtf8),
            ("a=%C3", Problem::InvalidUtf8),
        ] {
            assert_eq!(problem_of(check_query(raw)), Some(problem), "{raw}");
            assert_eq!(
                problem_of(check_body(true, raw.as_bytes())),
                Some(problem),
                "{raw}"
            );
        }
        assert_eq!(
            problem_of(check_body(true, b"a=\x0b")),
            Some(Problem::ControlCharacter)
        );
        assert_eq!(
            problem_of(check_body(true, b"a=\xff")),
            Some(Problem::InvalidUtf8)
        );
        for fine in [
            "",
            "a=b&c=",
            "q=%E2%82%AC+x",
            "p=100%",
            "x=%zz",
            "email=a%40b.example",
        ] {
            assert_eq!(check_query(fine), Ok(()), "{fine}");
            assert_eq!(check_body(true, fine.as_bytes()), Ok(()), "{fine}");
        }
    }

    #[test]
    fn refusals_name_plain_fields_only() {
        let refusal = check_query("ok=1&return_to=%0B").unwrap_err();
        assert_eq!(refusal.location, Location::Query(Some("return_to".into())));
        assert_eq!(
            refusal.to_string(),
            "the query parameter return_to contains a control character"
        );
        let refusal = check_body(true, b"we%22ird=%00").unwrap_err();
        assert_eq!(refusal.location, Location::Form(None));
    }

    #[test]
    fn a_form_bodys_encoded_backslashes_are_text() {
        // Forms percent-encode a backslash, so `C:\backup` is no backspace escape.
        assert_eq!(check_body(true, b"password=C%3A%5Cbackup%5Cfx"), Ok(()));
    }

    #[test]
    fn json_allows_whitespace_controls_but_no_others() {
        let fine = "{\n\t\"a\": \"line\\nbreak\\t\\u000a\\u00e9 \\ud83d\\ude00 \\\\u0000 \\\\f \\\\b\"\r\n}";
        assert_eq!(check_body(false, fine.as_bytes()), Ok(()));
        for (raw, problem) in [
            ("{\"a\": \"\\u0000\"}", Problem::ControlCharacter),
            // JSON's short escapes of controls: backspace and form feed.
            ("{\"a\": \"\\f\"}", Problem::ControlCharacter),
            ("{\"\\b\": 1}", Problem::ControlCharacter),
            ("{\"a\": \"\\u001B\"}", Problem::ControlCharacter),
            ("{\"a\": \"\\u007f\"}", Problem::ControlCharacter),
            ("{\"a\": \"\\u0085\"}", Problem::ControlCharacter),
            ("{\"a\": \"\u{0}\"}", Problem::ControlCharacter),
            ("{\"a\": \"\u{85}\"}", Problem::ControlCharacter),
            ("{\"a\": \"\\ud800\"}", Problem::UnpairedSurrogate),
            ("{\"a\": \"\\ud800\\u0041\"}", Problem::UnpairedSurrogate),
            ("{\"a\": \"\\udc00\"}", Problem::UnpairedSurrogate),
        ] {
            assert_eq!(
                problem_of(check_body(false, raw.as_bytes())),
                Some(problem),
                "{raw:?}"
            );
        }
        assert_eq!(
            problem_of(check_body(false, b"{\"a\": \"\xff\"}")),
            Some(Problem::InvalidUtf8)
        );
        // A form body is read as JSON too (a JSON handler accepts any body).
        assert_eq!(
            problem_of(check_body(true, b"{\"a\":\"\\u0000\"}")),
            Some(Problem::ControlCharacter)
        );
    }

    #[test]
    fn paths_are_decoded_without_plus() {
        assert_eq!(check_path("/t/acme/signin"), Ok(()));
        assert_eq!(check_path("/t/a+b/signin"), Ok(()));
        assert_eq!(
            problem_of(check_path("/t/%00/signin")),
            Some(Problem::ControlCharacter)
        );
        assert_eq!(
            problem_of(check_path("/static/%FF")),
            Some(Problem::InvalidUtf8)
        );
    }

    #[test]
    fn protocol_endpoints_are_told_from_pages() {
        for path in [
            "/oauth2/token",
            "/t/acme/oauth2/token",
            "/consents/v1/me/grants",
            "/t/x/access/v1/evaluation",
            "/.well-known/openid-configuration",
        ] {
            assert!(is_protocol_endpoint(path), "{path}");
        }
        for path in [
            "/signup",
            "/t/acme/signin",
            "/oauth2/logout",
            "/t/acme/authorize",
            "/t/oauth2/signin",
        ] {
            assert!(!is_protocol_endpoint(path), "{path}");
        }
    }
}
