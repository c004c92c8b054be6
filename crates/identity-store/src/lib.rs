//! Gatehouse persistence on SQLite (embedded default) and PostgreSQL (production).
//!
//! One query layer serves both backends: every repository is written once against
//! [`AnyConnection`]; only connection set-up, migrations and the NOTIFY transport know
//! which backend they are on. Repositories take the connection as an argument and
//! never hold a pool, so callers decide transaction boundaries.
//!
//! This crate must never depend on an HTTP framework (checked by the tidy test).

pub mod account_recoveries;
pub mod audit;
pub mod clients;
pub mod consent_records;
pub mod consents;
pub mod credentials;
pub mod db;
pub mod decision_log;
mod error;
pub mod events_pg;
pub mod federated_identities;
pub mod federated_sessions;
pub mod federation_connections;
pub mod federation_requests;
pub mod grants;
pub mod groups;
pub mod key_canary;
mod keys;
pub mod one_time_tokens;
pub mod page;
pub mod policy_sets;
pub mod purposes;
pub mod pushed_requests;
mod query;
pub mod rate_limits;
pub mod revoked_tokens;
pub mod rewrap;
pub mod roles;
pub mod saml_replay;
pub mod schema;
pub mod sessions;
pub mod signing_keys;
pub mod tenants;
pub mod users;
pub mod webauthn_challenges;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use db::{AnyConnection, Backend, Pool, PooledConnection};
pub use error::{StoreError, StoreResult};
pub use keys::{IdentifierProblem, fold as fold_key, identifier_problem, skeleton as skeleton_key};
pub use page::{Page, PageRequest};

/// Ids one batched read takes at most: well below SQLite's bound parameters and
/// PostgreSQL's, and a statement that still parses quickly.
pub const MAX_BATCH: usize = 500;

/// `ids` as the text the tables store, refused beyond [`MAX_BATCH`].
fn batch_ids(ids: &[gatehouse_core::ids::UserId]) -> StoreResult<Vec<String>> {
    if ids.len() > MAX_BATCH {
        return Err(StoreError::invalid(
            "batch",
            format!("{} ids, at most {MAX_BATCH} per read", ids.len()),
        ));
    }
    Ok(ids.iter().map(ToString::to_string).collect())
}
