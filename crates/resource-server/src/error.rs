//! Why a token was refused, and the HTTP answer for it (RFC 6750 §3, RFC 9470 §3).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};

/// Why a token is not valid. The [`Display`](std::fmt::Display) text is for logs;
/// clients see the coarser [`BearerError::description`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not a JWS in compact form")]
    Malformed,
    #[error("header `typ` is not at+jwt")]
    WrongType,
    #[error("header has a `crit` extension, which is not understood")]
    CriticalHeader,
    #[error("no `kid` in the header")]
    MissingKeyId,
    #[error("`alg` is not the algorithm of the key named by `kid`")]
    AlgorithmNotAllowed,
    #[error("`kid` names no key in the issuer's JWK Set")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("claims are missing or malformed")]
    BadClaims,
    #[error("`iss` is not the expected issuer")]
    WrongIssuer,
    #[error("`aud` does not name this API")]
    WrongAudience,
    #[error("expired")]
    Expired,
    #[error("not valid yet (`nbf`)")]
    NotYetValid,
}

/// Why [`Verifier::verify`](crate::Verifier::verify) gave no claims.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid access token: {0}")]
    Invalid(Rejection),
    /// The issuer's keys could not be fetched and none are cached: the token cannot
    /// be judged either way.
    #[error("the issuer's keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl From<Rejection> for VerifyError {
    fn from(rejection: Rejection) -> Self {
        VerifyError::Invalid(rejection)
    }
}

/// A refusal, as the HTTP answer it becomes: the status and the `WWW-Authenticate`
/// challenge from [`BearerError::challenge`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No bearer token: 401 with a bare `Bearer` challenge (RFC 6750 §3.1: "SHOULD
    /// NOT include an error code" when authentication information is missing).
    #[error("no bearer token")]
    Missing,
    /// A malformed `Authorization` header: 400 `invalid_request`.
    #[error("malformed request: {0}")]
    InvalidRequest(&'static str),
    /// 401 `invalid_token`.
    #[error("invalid access token: {0}")]
    InvalidToken(Rejection),
    /// 403 `insufficient_scope`; `scope` lists every scope the resource needs.
    #[error("insufficient scope; needs `{scope}`")]
    InsufficientScope { scope: String },
    /// 401 `insufficient_user_authentication` (RFC 9470 §3), with the resource's
    /// `acr_values` and `max_age`, so the client can re-authorize once for both.
    #[error("insufficient user authentication: {description}")]
    InsufficientUserAuthentication {
        description: &'static str,
        acr_values: Option<String>,
        max_age: Option<u64>,
    },
    /// 503: the issuer's keys are unavailable. No challenge: the client's token
    /// may be fine, and asking it to get another would not help.
    #[error("the issuer's keys are unavailable")]
    Unavailable,
}

impl From<VerifyError> for BearerError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Invalid(rejection) => BearerError::InvalidToken(rejection),
            VerifyError::KeysUnavailable(_) => BearerError::Unavailable,
        }
    }
}

/// Appends `, name="value"` with `value` as an RFC 9110 quoted-string. The values
/// written here come from this crate or the API's own configuration and should
/// never contain `"` or `\` (RFC 6750 excludes them), but an escaped one cannot
/// break the header open.
fn param(challenge: &mut String, name: &str, value: &str) {
    // The first parameter follows the scheme after a space, later ones a comma.
    challenge.push_str(if challenge == "Bearer" { " " } else { ", " });
    challenge.push_str(name);
    challenge.push_str("=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            challenge.push('\\');
        }
        // Control characters cannot be sent in a header value at all.
        if !c.is_control() {
            challenge.push(c);
        }
    }
    challenge.push('"');
}

impl BearerError {
    /// The RFC 6750 `error` code, if the answer has one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            BearerError::Missing | BearerError::Unavailable => None,
            BearerError::InvalidRequest(_) => Some("invalid_request"),
            BearerError::InvalidToken(_) => Some("invalid_token"),
            BearerError::InsufficientScope { .. } => Some("insufficient_scope"),
            BearerError::InsufficientUserAuthentication { .. } => {
                Some("insufficient_user_authentication")
            }
        }
    }

    /// The `error_description` sent to the client. For invalid tokens it says what a
    /// client can act on (expired, wrong API, …) and lumps key and signature
    /// failures together: those are not the client's to fix.
    pub fn description(&self) -> Option<&'static str> {
        Some(match self {
            BearerError::Missing | BearerError::Unavailable => return None,
            BearerError::InvalidRequest(description) => description,
            BearerError::InvalidToken(rejection) => match rejection {
                Rejection::Expired => "The access token expired",
                Rejection::NotYetValid => "The access token is not valid yet",
                Rejection::WrongAudience => "The access token is not meant for this resource",
                Rejection::WrongIssuer => "The access token is from another issuer",
                Rejection::WrongType => "The token is not an access token",
                _ => "The access token is invalid",
            },
            BearerError::InsufficientScope { .. } => {
                "The access token does not grant the required scope"
            }
            BearerError::InsufficientUserAuthentication { description, .. } => description,
        })
    }

    /// The `WWW-Authenticate` value, or `None` for [`BearerError::Unavailable`].
    /// For example
    /// `Bearer error="insufficient_user_authentication", error_description="A
    /// different authentication level is required", acr_values="urn:gatehouse:aal2"`.
    pub fn challenge(&self) -> Option<String> {
        if matches!(self, BearerError::Unavailable) {
            return None;
        }
        let mut challenge = String::from("Bearer");
        if let Some(code) = self.code() {
            param(&mut challenge, "error", code);
        }
        if let Some(description) = self.description() {
            param(&mut challenge, "error_description", description);
        }
        match self {
            BearerError::InsufficientScope { scope } => param(&mut challenge, "scope", scope),
            BearerError::InsufficientUserAuthentication {
                acr_values,
                max_age,
                ..
            } => {
                if let Some(acr_values) = acr_values {
                    param(&mut challenge, "acr_values", acr_values);
                }
                if let Some(max_age) = max_age {
                    param(&mut challenge, "max_age", &max_age.to_string());
                }
            }
            _ => {}
        }
        Some(challenge)
    }
}

impl ResponseError for BearerError {
    fn status_code(&self) -> StatusCode {
        match self {
            BearerError::Missing
            | BearerError::InvalidToken(_)
            | BearerError::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
            BearerError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            BearerError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            BearerError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        // A refusal is about this request's credentials; no cache may replay it.
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = self.challenge() {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        response.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750_and_rfc_9470() {
        assert_eq!(BearerError::Missing.challenge().as_deref(), Some("Bearer"));
        assert_eq!(
            BearerError::InvalidToken(Rejection::Expired)
                .challenge()
                .as_deref(),
            Some(r#"Bearer error="invalid_token", error_description="The access token expired""#)
        );
        assert_eq!(
            BearerError::InsufficientScope {
                scope: "orders:read orders:write".into()
            }
            .challenge()
            .as_deref(),
            Some(
                r#"Bearer error="insufficient_scope", error_description="The access token does not grant the required scope", scope="orders:read orders:write""#
            )
        );
        assert_eq!(
            BearerError::InsufficientUserAuthentication {
                description: "More recent authentication is required",
                acr_values: None,
                max_age: Some(300),
            }
            .challenge()
            .as_deref(),
            Some(
                r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", max_age="300""#
            )
        );
        assert_eq!(BearerError::Unavailable.challenge(), None);
    }

    #[test]
    fn quoted_values_cannot_break_the_header() {
        let challenge = BearerError::InsufficientScope {
            scope: "a\"b\\c\r\nd".into(),
        }
        .challenge()
        .unwrap_or_default();
        assert!(challenge.ends_with(r#"scope="a\"b\\cd""#), "{challenge}");
    }
}
