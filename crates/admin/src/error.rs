use gatehouse_authn::AuthnError;
use gatehouse_consent::ConsentError;
use gatehouse_identity_store::StoreError;

/// Everything an operator action can answer besides success. Adapters map it once:
/// the CLI to a message and exit code, the admin API (later) to problem details.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Input the action cannot take, naming the field at fault.
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A tenant, user or role named by the operator does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken (a role, a client …).
    #[error("{0}")]
    Conflict(String),
    /// The operator policies refuse the operator this action; `reason` is the
    /// decision's reason code (`entitlement_missing`, `insufficient_authentication`
    /// with what to step up to).
    #[error("not permitted to {action} ({reason})")]
    Denied {
        action: String,
        reason: String,
        acr_values: Option<String>,
        /// The scopes of the roles that may take the action (the bearer challenge's
        /// `scope`).
        scopes: Vec<String>,
    },
    /// A part the action needs could not be reached or started.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// The store's error under this one, whichever layer passed it up: adapters map
    /// a store refusal (invalid input, a taken name, a stale version, an
    /// unreachable database) the same wherever it was noticed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            AdminError::Store(store)
            | AdminError::Authn(AuthnError::Store(store))
            | AdminError::Consent(ConsentError::Store(store)) => Some(store),
            _ => None,
        }
    }
}
