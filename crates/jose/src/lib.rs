//! JOSE for Gatehouse: what the token issuer and the APIs verifying its tokens
//! (`gatehouse-resource-server`) both need, and nothing of Gatehouse itself.
//!
//! - [`Algorithm`]: the JWS algorithms Gatehouse signs with — ES256, RS256, EdDSA —
//!   and deliberately no `none` and no HMAC.
//! - [`PublicJwk`]: a public key as Gatehouse publishes it, with its RFC 7638
//!   thumbprint.
//! - [`JwkSet`] and [`Jwk`]: someone else's JWK Set (an issuer's, a client's), read
//!   key by key so that one odd key does not spoil the set.
//! - [`PublicKey`]: a public key decoded once for the one algorithm it verifies,
//!   checked with *ring* (P-256 in assembly; measured in `docs/benchmarks.md`).
//! - [`CompactJws`]: a compact JWS split and its header decoded, nothing of the
//!   payload read until the caller has checked the signature.
//!
//! What a token must say (`typ`, issuer, audience, lifetimes) is the caller's policy.
//!
//! # Dependencies
//!
//! JWK members are parsed with `jsonwebtoken`'s JWK types, built without a crypto
//! backend: that is serde and base64 only, so an API linking the resource server
//! gets no RustCrypto tree. Signatures and the thumbprint's SHA-256 use *ring*,
//! which rustls already links.

mod algorithm;
mod error;
mod jwk;
mod jws;
mod key;

pub use algorithm::Algorithm;
pub use error::JoseError;
pub use jwk::{Jwk, JwkSet, PRIVATE_MEMBERS, PublicJwk, private_member};
pub use jws::{CompactJws, JoseHeader, MAX_JWS_LEN};
pub use key::PublicKey;
