//! The authentication service through its public surface, on SQLite and
//! PostgreSQL: one integration-test binary, one module per topic. Tests that need
//! private items stay beside the code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// A module's test environment: the shared kit, whose fields and helpers read
/// through it, plus the module's own fields.
macro_rules! kit_env {
    ($($field:ident: $ty:ty),* $(,)?) => {
        struct Env {
            kit: gatehouse_authn::testing::kit::Kit,
            $($field: $ty,)*
        }

        impl std::ops::Deref for Env {
            type Target = gatehouse_authn::testing::kit::Kit;

            fn deref(&self) -> &Self::Target {
                &self.kit
            }
        }
    };
}

mod lifecycle;
mod passkeys;
mod recovery;
mod sign_in;
