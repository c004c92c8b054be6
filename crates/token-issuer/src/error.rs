use gatehouse_identity_store::StoreError;
use gatehouse_jose::Algorithm;

pub type IssuerResult<T> = Result<T, IssuerError>;

/// The one error type of the token issuer.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The tenant has no active key for the algorithm (call `ensure_keys` /
    /// `ensure_active`, or the client asks for an algorithm the tenant does not use).
    #[error("no active {alg} signing key")]
    NoSigningKey { alg: Algorithm },

    #[error("cannot generate a {alg} key: {message}")]
    KeyGeneration { alg: Algorithm, message: String },

    /// A stored key cannot be used: undecodable, or its private and public halves
    /// disagree. Never silently skipped.
    #[error("signing key {kid} is unusable: {message}")]
    BadKey { kid: String, message: String },

    /// The caller's claims cannot be signed (e.g. a configured claim reuses a
    /// registered name).
    #[error("invalid claims: {0}")]
    Claims(String),

    #[error("signing failed: {0}")]
    Signing(String),

    /// A token failed verification. The reason is for logs; callers answer
    /// `invalid_token` whatever it is.
    #[error("token rejected: {0}")]
    Rejected(#[from] Rejection),
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed token")]
    Malformed,
    #[error("wrong token type (typ)")]
    WrongType,
    #[error("unknown key id")]
    UnknownKey,
    #[error("algorithm not allowed for this key")]
    AlgorithmNotAllowed,
    #[error("unsupported critical header parameter")]
    CriticalHeader,
    #[error("bad signature")]
    BadSignature,
    #[error("claims missing or malformed")]
    BadClaims,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("signing key no longer published")]
    KeyWithdrawn,
}
