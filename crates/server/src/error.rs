use gatehouse_identity_store::StoreError;

/// The one error type of the server crate. Its `Display` is what operators see as
/// the single line before a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[source] gatehouse_core::Error),

    #[error("{0}")]
    Secrets(#[source] gatehouse_core::Error),

    #[error("{0}")]
    Store(#[from] StoreError),

    #[error("data directory {path} is not usable: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Io(#[from] std::io::Error),

    #[error("cannot start: {0}")]
    Startup(String),

    /// A command was used wrongly (unknown tenant, bad argument).
    #[error("{0}")]
    Usage(String),

    #[error("audit chain is broken: {0} problem(s) found")]
    AuditBroken(usize),
}

impl ServerError {
    /// 2 for a configuration mistake (fix the file), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServerError::Config(_) => 2,
            _ => 1,
        }
    }
}
