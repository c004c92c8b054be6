//! The one error type of `gatehouse-consent`. HTTP mapping happens in the server.

/// Messages never contain personal data beyond identifiers: they end up in logs.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error(transparent)]
    Store(#[from] gatehouse_identity_store::StoreError),

    #[error(transparent)]
    Core(#[from] gatehouse_core::Error),

    /// Input that breaks the model's rules (unknown purpose, bad version, …).
    #[error("invalid: {0}")]
    Invalid(String),

    /// A policy set that does not parse or validate, with Cedar's messages.
    #[error("policy set refused: {0}")]
    Policy(String),

    /// The user was shown an older version of the purpose than the latest: ask again.
    #[error("purpose {purpose} has changed: the latest version is {latest}")]
    OutdatedVersion { purpose: String, latest: i32 },

    #[error("not found: {0}")]
    NotFound(&'static str),

    /// Something the answer depends on is too slow or away right now (the decision
    /// log cannot take the record): try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),

    #[error("internal error: {0}")]
    Internal(String),
}
