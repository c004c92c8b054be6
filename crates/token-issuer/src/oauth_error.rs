//! OAuth 2.0 error responses (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 7662 §2.3), built in
//! one place so every endpoint answers with the same shape.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    UnsupportedTokenType,
    UnsupportedResponseType,
    AccessDenied,
    LoginRequired,
    ConsentRequired,
    /// OIDC Core §3.1.2.6: the `request` parameter (a request object) is not supported.
    RequestNotSupported,
    /// RFC 6750: a bearer token that is missing, expired, revoked or malformed.
    InvalidToken,
    /// RFC 6750: the token lacks a scope the resource needs.
    InsufficientScope,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An OAuth error. `status` and `www_authenticate` follow RFC 6749 §5.2: a failed
/// HTTP Basic client authentication answers 401 with a `Basic` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    pub error: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(skip)]
    pub status: u16,
    #[serde(skip)]
    pub www_authenticate: Option<String>,
}

impl OAuthError {
    pub fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        let status = match error {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            _ => 400,
        };
        OAuthError {
            error,
            error_description: Some(description.into()),
            status,
            www_authenticate: None,
        }
    }

    /// Client authentication failed. With Basic the challenge names the scheme the
    /// client used; otherwise RFC 6749 still allows 401 and we keep it uniform.
    pub fn invalid_client(used_basic: bool) -> Self {
        OAuthError {
            error: ErrorCode::InvalidClient,
            error_description: Some("client authentication failed".into()),
            status: 401,
            www_authenticate: used_basic.then(|| "Basic realm=\"gatehouse\"".to_owned()),
        }
    }

    /// RFC 6750 §3: a resource request with a bad bearer token.
    pub fn invalid_token(description: &str) -> Self {
        OAuthError {
            error: ErrorCode::InvalidToken,
            error_description: Some(description.to_owned()),
            status: 401,
            www_authenticate: Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{description}\""
            )),
        }
    }

    pub fn server_error() -> Self {
        OAuthError::new(ErrorCode::ServerError, "internal error")
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: {}",
            self.error,
            self.error_description.as_deref().unwrap_or("")
        )
    }
}
