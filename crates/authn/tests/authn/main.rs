//! The authentication service through its public surface, on SQLite and
//! PostgreSQL: one integration-test binary, one module per topic. Tests that need
//! private items stay beside the code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lifecycle;
mod passkeys;
mod recovery;
mod sign_in;
