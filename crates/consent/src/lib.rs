//! Consent and runtime authorization.
//!
//! - Purposes and consent records (per user × client × purpose, versioned,
//!   append-only history); withdrawing consent revokes what depended on it.
//! - The policy decision point: OpenID AuthZEN evaluations decided by Cedar
//!   policies over entities built from the live store, with a decision log.
//!
//! Depends on `gatehouse-identity-store` and `gatehouse-core` only; never on another
//! feature crate or an HTTP framework type in its public API.

pub mod consents;
pub mod error;
pub mod pdp;

pub use consents::{Channel, Consents};
pub use error::ConsentError;
