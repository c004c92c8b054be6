use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub type StoreResult<T> = Result<T, StoreError>;

/// The one error type of the identity store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} not found")]
    NotFound { entity: &'static str },

    /// A uniqueness rule was violated, e.g. a second user with the same userName.
    #[error("{entity} with this {field} already exists")]
    Conflict {
        entity: &'static str,
        field: &'static str,
    },

    /// Optimistic concurrency: the row changed since the caller read it.
    #[error("{entity} was modified concurrently (stale version)")]
    StaleVersion { entity: &'static str },

    /// The caller passed data that breaks a store invariant.
    #[error("invalid {entity}: {message}")]
    Invalid {
        entity: &'static str,
        message: String,
    },

    /// A stored row cannot be decoded (bad id, bad JSON): never silently skipped.
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },

    #[error("cannot connect to the {backend} database: {message}")]
    Connect {
        backend: &'static str,
        message: String,
    },

    #[error(
        "database URL `{0}` is not supported (use sqlite://<path>, sqlite::memory: or postgres://…)"
    )]
    UnsupportedUrl(String),

    #[error("migration failed: {0}")]
    Migration(String),

    #[error("database error: {0}")]
    Database(DieselError),

    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),

    #[error(transparent)]
    Secret(#[from] gatehouse_core::Error),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        StoreError::Database(error)
    }
}

impl StoreError {
    /// Whether the database could not be reached in time (no pooled connection, a
    /// connection that broke or was cancelled by a timeout): the request may well
    /// succeed when retried, so adapters answer 503 with `Retry-After`, not 500.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::DatabaseErrorKind;
        match self {
            StoreError::Pool(_) | StoreError::Connect { .. } => true,
            StoreError::Database(DieselError::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || info
                    .message()
                    .contains("canceling statement due to statement timeout")
                    || info.message().contains("server closed the connection")
                    || info.message().contains("database is locked")
            }
            _ => false,
        }
    }

    pub(crate) fn invalid(entity: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            entity,
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(table: &'static str, message: impl ToString) -> Self {
        StoreError::Corrupt {
            table,
            message: message.to_string(),
        }
    }
}

/// Parses a text column read from `table` (an id, a JSON document): a value that
/// does not parse means the row is corrupt.
pub(crate) fn parse_column<T>(table: &'static str, text: &str) -> StoreResult<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| StoreError::corrupt(table, e))
}

/// Maps a unique violation to `Conflict` naming the field whose index fired.
/// PostgreSQL reports the index name, SQLite the indexed columns; `indexes` lists
/// `(index name, column that identifies it, field)` so both are recognised in one place.
pub(crate) fn map_unique(
    entity: &'static str,
    indexes: &[(&str, &str, &'static str)],
) -> impl Fn(DieselError) -> StoreError {
    move |error| match &error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            let constraint = info.constraint_name().unwrap_or_default();
            let message = info.message();
            let field = indexes
                .iter()
                .find(|(index, column, _)| {
                    constraint == *index || (constraint.is_empty() && message.contains(column))
                })
                .map(|(_, _, field)| *field)
                .unwrap_or("key");
            StoreError::Conflict { entity, field }
        }
        _ => StoreError::Database(error),
    }
}

/// Maps a foreign-key violation (a member or assignee in another tenant, or gone)
/// to `NotFound`: with composite keys, "not in this tenant" and "absent" look alike.
pub(crate) fn map_missing_reference(entity: &'static str) -> impl Fn(DieselError) -> StoreError {
    move |error| match &error {
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::NotFound { entity }
        }
        _ => StoreError::Database(error),
    }
}

pub(crate) fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// A write aimed at one row that touched none: the row is not there (in this tenant).
pub(crate) fn touched_one(rows: usize, entity: &'static str) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::NotFound { entity });
    }
    Ok(())
}

/// The outcome of an UPDATE guarded by the version the caller read (`updated` rows):
/// the row as `reread` finds it now; `NotFound` when it is gone, `StaleVersion`
/// when it is there but changed since.
pub(crate) fn versioned<T>(
    updated: usize,
    entity: &'static str,
    reread: impl FnOnce() -> StoreResult<T>,
) -> StoreResult<T> {
    let current = reread()?;
    if updated == 0 {
        return Err(StoreError::StaleVersion { entity });
    }
    Ok(current)
}

/// The outcome of inserting a link row (a membership, an assignment): `true` when it
/// was added, `false` when it was there already, `NotFound` when either end is
/// missing or in another tenant.
pub(crate) fn linked(
    inserted: diesel::QueryResult<usize>,
    entity: &'static str,
) -> Result<bool, StoreError> {
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(map_missing_reference(entity)(e)),
    }
}
