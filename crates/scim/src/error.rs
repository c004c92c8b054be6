//! SCIM error responses (RFC 7644 §3.12).

use serde_json::{Value, json};

/// The `scimType` values of RFC 7644 §3.12, Table 9.
pub mod scim_type {
    /// The filter syntax was invalid, or an operator was applied to an
    /// attribute type it does not support.
    pub const INVALID_FILTER: &str = "invalidFilter";
    /// The filter matched more resources than the server is willing to process.
    pub const TOO_MANY: &str = "tooMany";
    /// One or more attribute values are already in use or reserved.
    pub const UNIQUENESS: &str = "uniqueness";
    /// The operation would change an immutable or read-only attribute.
    pub const MUTABILITY: &str = "mutability";
    /// The request body did not conform to the message schema.
    pub const INVALID_SYNTAX: &str = "invalidSyntax";
    /// The PATCH `path` was invalid or malformed.
    pub const INVALID_PATH: &str = "invalidPath";
    /// The PATCH `path` did not yield an attribute or value to operate on.
    pub const NO_TARGET: &str = "noTarget";
    /// A required value was missing, or a value did not fit the operation or
    /// attribute type.
    pub const INVALID_VALUE: &str = "invalidValue";
    /// The requested protocol version is not supported.
    pub const INVALID_VERS: &str = "invalidVers";
    /// The request would disclose data the client may not see.
    pub const SENSITIVE: &str = "sensitive";
}

/// URN of the SCIM error message (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM protocol error: the HTTP status, the `scimType` and a detail for the
/// client. Render it with [`ScimError::to_json`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    /// HTTP status code of the response.
    pub status: u16,
    /// One of the [`scim_type`] constants, for 400 (and 409 `uniqueness`).
    pub scim_type: Option<&'static str>,
    /// Human-readable explanation; it is sent to the client.
    pub detail: String,
}

impl ScimError {
    /// An error with any status and type.
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::INVALID_FILTER), detail)
    }

    /// 400 `invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::INVALID_PATH), detail)
    }

    /// 400 `noTarget`.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::NO_TARGET), detail)
    }

    /// 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::INVALID_VALUE), detail)
    }

    /// 400 `invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::INVALID_SYNTAX), detail)
    }

    /// 400 `mutability`.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::MUTABILITY), detail)
    }

    /// 400 `tooMany`.
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type::TOO_MANY), detail)
    }

    /// 409 `uniqueness` (RFC 7644 §3.3 answers a clash on create with 409).
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(scim_type::UNIQUENESS), detail)
    }

    /// The RFC 7644 §3.12 error body. `status` is a JSON string there, not a
    /// number; `scimType` is left out when there is none.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(scim_type), Value::Object(members)) = (self.scim_type, &mut body) {
            members.insert("scimType".to_owned(), Value::from(scim_type));
        }
        body
    }

    /// The same error, its detail prefixed with where it happened.
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.detail = format!("{prefix}{}", self.detail);
        self
    }
}
