//! The key ring: per-tenant signing keys, their rotation, and the published JWKS.
//!
//! # Rotation rule
//!
//! Each tenant has, per algorithm, at most one `active` key (it signs) and at most one
//! `next` key (published, not signing). [`rotate`] does, in one transaction:
//!
//! 1. if a `next` key exists: the `active` key becomes `retired`, with
//!    `publish_until = now + max_token_lifetime`, and the `next` key becomes `active`;
//! 2. a **new** key is inserted as `next`: published in the JWKS, not yet signing.
//!
//! So every key is published for one whole rotation period before it signs: relying
//! parties that cache the JWKS (typically for hours) already hold it when the first
//! token signed with it arrives, and never need to refetch on an unknown `kid`. A
//! retired key stays published until every token it signed has expired, then
//! [`prune`] deletes it. Without a `next` key (the first rotation after
//! [`ensure_active`]) step 1 is skipped and the active key keeps signing; a tenant
//! with no key of the algorithm at all gets the new key `active` at once.
//!
//! `max_token_lifetime` must cover the longest-lived token the key signs **plus** how
//! long a node may keep signing with a cached [`KeyRing`] after the rotation (its
//! refresh interval) and clock skew between nodes.
//!
//! Verification accepts `next` keys too: another node may already have promoted the
//! key while this node's ring still lists it as `next`.
//!
//! # Storage
//!
//! Private keys are PKCS#8 DER, sealed by the store with the master key (associated
//! data: tenant, kid, alg). Only `active` keys are unsealed, when a ring is built.
//! The `kid` is the key's RFC 7638 JWK thumbprint (SHA-256, base64url).
//!
//! # Modules
//!
//! One concern each, depending one way: `rotation` (what changes in the store) uses
//! `generate`; `key_ring` (what is read from it) uses `signer`, as does
//! `generate`; `client_jwks` (keys clients register) stands apart. The JOSE side — algorithms, public JWKs,
//! thumbprints, signature checks — is `gatehouse-jose`'s.

pub(crate) mod client_jwks;
mod generate;
pub(crate) mod key_ring;
pub mod rotation;
mod signer;

use gatehouse_identity_store::signing_keys::KeyAlgorithm;
pub use gatehouse_jose::{Algorithm, PublicJwk};

pub(crate) use client_jwks::{ClientKey, client_keys};
pub use key_ring::KeyRing;
pub use rotation::{Rotation, ensure_active, ensure_keys, prune, rotate};
pub use signer::Signer;

/// RSA modulus size for new keys. Loaded keys, and keys clients register, must be
/// at least this large.
pub const RSA_BITS: usize = 2048;

/// How the store names `alg`.
pub(crate) fn to_store(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::ES256 => KeyAlgorithm::Es256,
        Algorithm::RS256 => KeyAlgorithm::Rs256,
        Algorithm::EdDSA => KeyAlgorithm::EdDsa,
    }
}

fn from_store(alg: KeyAlgorithm) -> Algorithm {
    match alg {
        KeyAlgorithm::Es256 => Algorithm::ES256,
        KeyAlgorithm::Rs256 => Algorithm::RS256,
        KeyAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

#[cfg(test)]
pub(crate) mod tests;
