use std::path::PathBuf;

/// The one error type of `gatehouse-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file or environment variable is invalid. `key` names the
    /// offending setting when it is known, so operators see exactly what to fix.
    #[error("invalid configuration{}: {message}", key.as_deref().map(|k| format!(" at `{k}`")).unwrap_or_default())]
    Config {
        key: Option<String>,
        message: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A master key is missing, malformed or of the wrong length.
    #[error("master key: {0}")]
    MasterKey(String),

    /// A sealed secret could not be opened: unknown key id, tampered or malformed.
    /// Deliberately carries no detail about the plaintext.
    #[error("sealed secret cannot be opened: {0}")]
    Unseal(&'static str),

    /// An event could not be encoded or decoded.
    #[error("domain event: {0}")]
    Event(String),
}

impl Error {
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: Some(key.into()),
            message: message.into(),
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
