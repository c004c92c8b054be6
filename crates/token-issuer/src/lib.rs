//! Gatehouse token issuance: per-tenant signing keys and the JWTs signed with them.
//!
//! - [`keys`]: the [`KeyRing`] (active signer per algorithm, published JWKS,
//!   verification keys), key generation, and the rotation rule ([`keys::rotate`]).
//! - [`jwt`]: access tokens (RFC 9068) and ID tokens (OIDC Core): [`sign`],
//!   [`verify_access_token`], [`at_hash`].
//!
//! Modules depend one way: `jwt` → `keys` → `error`, and both `jwt` and `keys` on
//! `token_kind` (the `typ` of each kind of token); JOSE itself (algorithms, public
//! JWKs, JWS parsing, signature checks) is `gatehouse-jose`'s.
//!
//! Depends on `gatehouse-core`, `gatehouse-identity-store`, `gatehouse-jose` and, for
//! back-channel logout delivery, `gatehouse-outbound`; it knows nothing of HTTP
//! servers. Store work is synchronous: callers run it on the blocking pool.

pub mod acr;
pub mod backchannel;
mod bearer_cache;
pub mod claims;
pub mod client_auth;
pub mod code_flow;
pub mod consent_basis;
mod error;
pub mod jwt;
pub mod keys;
pub mod logout;
pub mod oauth_error;
pub mod par;
pub mod schedule;
pub mod service;
mod token_kind;

pub use error::{IssuerError, IssuerResult, Rejection};
/// A key's life-cycle state, as stored (`next`, `active`, `retired`).
pub use gatehouse_identity_store::signing_keys::KeyState;
pub use jwt::{
    AccessTokenClaims, Audience, IdTokenClaims, TokenClaims, TokenKind, at_hash, sign,
    verify_access_token, verify_access_token_with_leeway,
};
pub use keys::{
    Algorithm, KeyRing, PublicJwk, Rotation, Signer, ensure_active, ensure_keys, prune, rotate,
};
