//! Connections, pooling and migrations for both backends.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{StoreError, StoreResult};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// One connection type over both backends. PostgreSQL comes first because the
/// derived `establish` tries variants in order; we never rely on that (see
/// [`connect`]), but it keeps a PostgreSQL URL from being mistaken for a file name.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

impl std::fmt::Debug for AnyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnyConnection::Postgresql(_) => "AnyConnection::Postgresql",
            AnyConnection::Sqlite(_) => "AnyConnection::Sqlite",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

impl AnyConnection {
    pub fn backend(&self) -> Backend {
        match self {
            AnyConnection::Postgresql(_) => Backend::Postgres,
            AnyConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Settings that apply to every connection a pool opens.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    /// How long a caller waits for a pooled connection before the pool gives up.
    pub acquire_timeout: Duration,
    pub sqlite_busy_timeout: Duration,
    /// PostgreSQL: the server cancels a statement that runs longer (a slow or stuck
    /// query fails instead of holding its connection). Zero turns it off.
    pub statement_timeout: Duration,
    /// PostgreSQL: how long sent data may stay unacknowledged, and roughly how long
    /// an idle connection to a vanished server survives (TCP keepalive), before the
    /// kernel drops the connection and the caller gets an error. Zero: the OS default.
    pub network_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            network_timeout: Duration::from_secs(15),
        }
    }
}

enum Target<'a> {
    Sqlite(&'a str),
    Postgres,
}

fn parse_url(url: &str) -> StoreResult<Target<'_>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Target::Postgres)
    } else if url == "sqlite::memory:" {
        Ok(Target::Sqlite(":memory:"))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Target::Sqlite(path))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

pub fn backend_of(url: &str) -> StoreResult<Backend> {
    Ok(match parse_url(url)? {
        Target::Sqlite(_) => Backend::Sqlite,
        Target::Postgres => Backend::Postgres,
    })
}

/// Opens one connection, choosing the backend from the URL scheme so that a failure
/// reports the real cause (the derived `establish` would swallow it).
pub fn connect(options: &ConnectOptions) -> StoreResult<AnyConnection> {
    match parse_url(&options.url)? {
        Target::Postgres => Ok(AnyConnection::Postgresql(connect_pg(options)?)),
        Target::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(path).map_err(|e| StoreError::Connect {
                backend: "SQLite",
                message: e.to_string(),
            })?;
            // WAL lets readers run beside the writer; FULL makes every acknowledged
            // commit durable even across power loss, not only process crashes.
            // Checkpoints every 256 pages (1 MiB) instead of SQLite's 1,000: the
            // committing thread copies the WAL into the database in one go, and on
            // a busy node (the PDP's decision log) a 4 MiB copy held a core for
            // 3 ms while a request thread waited for it.
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {};
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 256;
                 PRAGMA foreign_keys = ON;",
                options.sqlite_busy_timeout.as_millis()
            ))
            .map_err(|e| StoreError::Connect {
                backend: "SQLite",
                message: e.to_string(),
            })?;
            Ok(AnyConnection::Sqlite(conn))
        }
    }
}

/// Opens one PostgreSQL connection with the timeouts of `options`: the pool's, the
/// event listener's and the event publisher's connections all behave alike when the
/// network to the database fails.
pub fn connect_pg(options: &ConnectOptions) -> StoreResult<PgConnection> {
    let url = pg_url_with_timeouts(&options.url, options);
    PgConnection::establish(&url).map_err(|e| StoreError::Connect {
        backend: "PostgreSQL",
        message: e.to_string().trim().to_owned(),
    })
}

/// The connection string with libpq's timeout parameters added, each only when the
/// operator's URL does not set it already (theirs wins).
///
/// - `connect_timeout`: a database that does not answer the handshake.
/// - `keepalives*`: an idle pooled connection to a vanished server is found dead
///   (idle + interval × count ≈ `network_timeout`) rather than on its next use.
/// - `tcp_user_timeout`: a query sent into a partition fails after `network_timeout`
///   instead of waiting for TCP's retransmissions (about 15 minutes on Linux).
/// - `options=-c statement_timeout=…`: the server cancels a statement that runs too
///   long; set as the session default so a `RESET` (or a migration that lifts it
///   with `SET LOCAL`) returns to it.
fn pg_url_with_timeouts(url: &str, options: &ConnectOptions) -> String {
    let mut params: Vec<(&str, String)> = vec![(
        "connect_timeout",
        options.connect_timeout.as_secs().max(1).to_string(),
    )];
    let network = options.network_timeout;
    if !network.is_zero() {
        let idle = (network.as_secs() / 3).max(1);
        let count = 3u64;
        let interval = ((network.as_secs().saturating_sub(idle)) / count).max(1);
        params.extend([
            ("keepalives", "1".to_owned()),
            ("keepalives_idle", idle.to_string()),
            ("keepalives_interval", interval.to_string()),
            ("keepalives_count", count.to_string()),
            ("tcp_user_timeout", network.as_millis().to_string()),
        ]);
    }
    if !options.statement_timeout.is_zero() {
        // URL-encoded `-c statement_timeout=<ms>`.
        params.push((
            "options",
            format!(
                "-c%20statement_timeout%3D{}",
                options.statement_timeout.as_millis()
            ),
        ));
    }
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let present = |key: &str| {
        query
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == key)
    };
    let mut out = url.to_owned();
    for (key, value) in params {
        if present(key) {
            continue;
        }
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
    }
    out
}

/// r2d2 manager that opens connections with [`connect`], so every pooled SQLite
/// connection carries the same pragmas.
#[derive(Debug)]
pub struct ConnectionManager {
    options: ConnectOptions,
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = StoreError;

    fn connect(&self) -> Result<AnyConnection, StoreError> {
        connect(&self.options)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        conn.batch_execute("SELECT 1").map_err(StoreError::from)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// Builds a pool after proving one connection works, so an unreachable database is
/// reported once, clearly, instead of as a pool timeout.
pub fn pool(options: &ConnectOptions) -> StoreResult<Pool> {
    let backend = backend_of(&options.url)?;
    drop(connect(options)?);
    // An in-memory SQLite database exists per connection: share exactly one.
    let size = if options.url == "sqlite::memory:" {
        1
    } else {
        options.pool_size.max(1)
    };
    let pool = r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(if backend == Backend::Sqlite { 1 } else { 0 }))
        .connection_timeout(options.acquire_timeout)
        .build(ConnectionManager {
            options: options.clone(),
        })?;
    Ok(pool)
}

/// The advisory-lock key migrations run under on PostgreSQL ("gatehouse" in ASCII,
/// fixed so that every version of Gatehouse takes the same lock).
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

/// Applies pending migrations; returns the versions applied.
pub fn run_migrations(conn: &mut AnyConnection) -> StoreResult<Vec<String>> {
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    if postgres {
        // A migration may rewrite a large table: the request-sized statement
        // timeout does not apply to it. RESET returns to the connection's default.
        conn.batch_execute("SET statement_timeout = 0")?;
        // Nodes started together (or a migration Job beside a node that migrates
        // on start) take turns: the first applies, the others wait here and then
        // find nothing pending. A session lock, because each migration commits in
        // its own transaction; a dying process releases it with its connection.
        // The Rust steps after the migrations run under it too.
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    }
    let applied = apply_pending(conn).and_then(|applied| after_migrations(conn).map(|()| applied));
    if postgres {
        let unlocked = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
        let reset = conn.batch_execute("RESET statement_timeout");
        // The migration's own error first: it is the one the operator needs.
        let applied = applied?;
        unlocked?;
        reset?;
        return Ok(applied);
    }
    applied
}

fn apply_pending(conn: &mut AnyConnection) -> StoreResult<Vec<String>> {
    match conn {
        AnyConnection::Postgresql(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|versions| versions.into_iter().map(|v| v.to_string()).collect()),
        AnyConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|versions| versions.into_iter().map(|v| v.to_string()).collect()),
    }
    .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Data steps written in Rust that follow the schema migrations (idempotent).
fn after_migrations(conn: &mut AnyConnection) -> StoreResult<()> {
    let backfill = crate::users::backfill_skeletons(conn)?;
    if !backfill.look_alikes.is_empty() {
        tracing::warn!(
            users = ?backfill.look_alikes,
            "these users' userName or primary email looks like another user's in the same \
             tenant; rename one of each pair so it gets its look-alike key"
        );
    }
    Ok(())
}

/// The number of embedded migrations not yet applied (readiness reports 0).
pub fn pending_migrations(conn: &mut AnyConnection) -> StoreResult<usize> {
    match conn {
        AnyConnection::Postgresql(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|p| p.len()),
        AnyConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|p| p.len()),
    }
    .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Names of every embedded migration for a backend, in order.
pub fn embedded_migration_names(backend: Backend) -> StoreResult<Vec<String>> {
    match backend {
        Backend::Sqlite => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map(|m| m.iter().map(|m| m.name().to_string()).collect())
        }
        Backend::Postgres => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
            .map(|m| m.iter().map(|m| m.name().to_string()).collect()),
    }
    .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Cheap liveness probe used by readiness checks.
/// What [`backup_sqlite`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub bytes: u64,
    pub tables: usize,
}

/// Writes a consistent copy of the SQLite database to `to` while it keeps serving:
/// `VACUUM INTO` reads inside one read transaction (WAL readers never block the
/// writers, nor they it), so the copy is the database as of one instant, compacted.
/// The copy is then opened and checked (`PRAGMA integrity_check`) before it counts.
/// `to` must not exist: a backup never overwrites. PostgreSQL has its own tools
/// (base backup and WAL archiving), which this does not replace.
pub fn backup_sqlite(conn: &mut AnyConnection, to: &std::path::Path) -> StoreResult<Backup> {
    let AnyConnection::Sqlite(c) = conn else {
        return Err(StoreError::Invalid {
            entity: "backup",
            message: "backup copies the embedded SQLite database; back PostgreSQL up with its own \
             tools (pg_basebackup and WAL archiving, docs/operations.md)"
                .into(),
        });
    };
    if to.exists() {
        return Err(StoreError::Invalid {
            entity: "backup",
            message: format!("{} exists: a backup never overwrites a file", to.display()),
        });
    }
    let target = to.to_str().ok_or_else(|| StoreError::Invalid {
        entity: "backup",
        message: "the backup path must be UTF-8".into(),
    })?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(target)
        .execute(c)?;
    let mut copy = SqliteConnection::establish(target).map_err(|e| StoreError::Invalid {
        entity: "backup",
        message: format!("the copy cannot be opened: {e}"),
    })?;
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let checks: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(&mut copy)?;
    if checks.len() != 1 || checks[0].integrity_check != "ok" {
        drop(copy);
        // A copy that failed its check must not pass for a backup later.
        let _ = std::fs::remove_file(to);
        let found: Vec<String> = checks.into_iter().map(|c| c.integrity_check).collect();
        return Err(StoreError::Invalid {
            entity: "backup",
            message: format!("the copy failed its integrity check: {}", found.join("; ")),
        });
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let tables: Count =
        diesel::sql_query("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'")
            .get_result(&mut copy)?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(Backup {
        bytes,
        tables: usize::try_from(tables.n).unwrap_or(0),
    })
}

pub fn ping(conn: &mut AnyConnection) -> StoreResult<()> {
    conn.batch_execute("SELECT 1").map_err(StoreError::from)
}

/// Runs one insert in a savepoint: `false` when the row was there already (a
/// unique violation, from a concurrent writer that got in first). On PostgreSQL
/// that violation would otherwise abort the caller's whole transaction.
pub(crate) fn insert_unless_present(
    conn: &mut AnyConnection,
    insert: impl FnOnce(&mut AnyConnection) -> StoreResult<usize>,
) -> StoreResult<bool> {
    match transaction(conn, insert) {
        Ok(_) => Ok(true),
        Err(StoreError::Database(e)) if crate::error::is_unique_violation(&e) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Runs `work` in one transaction (a savepoint when nested), so callers outside this
/// crate can group repository calls without depending on diesel.
pub fn transaction<T>(
    conn: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    transaction_with(conn, work)
}

/// [`transaction`] for callers with their own error type (one that a [`StoreError`]
/// converts into): any `Err` from `work` rolls the transaction back and is returned
/// as it was.
///
/// On SQLite the outermost transaction begins `IMMEDIATE`, taking the write lock
/// at once: a deferred one that read first could not upgrade once another
/// connection had committed since its read (`database is locked` at once, past
/// any busy timeout), which the decision log's writer or a second request makes
/// likely. Waiting for the lock up front is what the busy timeout handles.
pub fn transaction_with<T, E: From<StoreError>>(
    conn: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};

    enum Failure<E> {
        Database(diesel::result::Error),
        Caller(E),
    }
    impl<E> From<diesel::result::Error> for Failure<E> {
        fn from(error: diesel::result::Error) -> Self {
            Failure::Database(error)
        }
    }
    let outermost_sqlite = match conn {
        AnyConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::transaction_manager_status_mut(sqlite)
                .transaction_depth()
                .map_err(|e| E::from(StoreError::from(e)))?
                .is_none()
        }
        AnyConnection::Postgresql(_) => false,
    };
    if !outermost_sqlite {
        return conn
            .transaction(|conn| work(conn).map_err(Failure::Caller))
            .map_err(|failure| match failure {
                Failure::Database(error) => E::from(StoreError::from(error)),
                Failure::Caller(error) => error,
            });
    }
    let database = |e: diesel::result::Error| E::from(StoreError::from(e));
    with_sqlite(conn, |c| {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
    })
    .map_err(database)?;
    match work(conn) {
        Ok(value) => {
            with_sqlite(conn, AnsiTransactionManager::commit_transaction).map_err(database)?;
            Ok(value)
        }
        Err(error) => {
            // The caller's error is what it reports; a failed rollback leaves the
            // connection broken, which the pool's health check discards.
            if let Err(rollback) = with_sqlite(conn, AnsiTransactionManager::rollback_transaction) {
                tracing::warn!(%rollback, "rolling back an SQLite transaction failed");
            }
            Err(error)
        }
    }
}

/// `op` on the SQLite connection inside `conn` (callers checked the backend).
fn with_sqlite<T>(
    conn: &mut AnyConnection,
    op: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<T>,
) -> diesel::QueryResult<T> {
    match conn {
        AnyConnection::Sqlite(sqlite) => op(sqlite),
        AnyConnection::Postgresql(_) => Err(diesel::result::Error::BrokenTransactionManager),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use diesel::connection::SimpleConnection;

    use super::*;

    #[derive(Debug, PartialEq)]
    enum CallerError {
        Refused,
        Store(String),
    }

    impl From<StoreError> for CallerError {
        fn from(error: StoreError) -> Self {
            CallerError::Store(error.to_string())
        }
    }

    fn rows(conn: &mut AnyConnection) -> i64 {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result::<Count>(conn)
            .unwrap()
            .n
    }

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    #[test]
    fn postgres_urls_get_every_timeout_unless_the_operator_set_it() {
        let options = ConnectOptions {
            statement_timeout: Duration::from_millis(2500),
            network_timeout: Duration::from_secs(12),
            connect_timeout: Duration::from_secs(3),
            ..ConnectOptions::new("postgres://db/gatehouse")
        };
        assert_eq!(
            pg_url_with_timeouts("postgres://db/gatehouse", &options),
            "postgres://db/gatehouse?connect_timeout=3&keepalives=1&keepalives_idle=4\
             &keepalives_interval=2&keepalives_count=3&tcp_user_timeout=12000\
             &options=-c%20statement_timeout%3D2500"
        );
        let theirs = "postgres://db/g?sslmode=require&connect_timeout=9&options=-c%20x%3Dy";
        let ours = pg_url_with_timeouts(theirs, &options);
        assert!(ours.starts_with(theirs), "{ours}");
        assert_eq!(ours.matches("connect_timeout=").count(), 1, "{ours}");
        assert_eq!(ours.matches("options=").count(), 1, "{ours}");
        assert!(ours.contains("&tcp_user_timeout=12000"), "{ours}");

        let off = ConnectOptions {
            statement_timeout: Duration::ZERO,
            network_timeout: Duration::ZERO,
            ..options
        };
        assert_eq!(
            pg_url_with_timeouts("postgres://db/g", &off),
            "postgres://db/g?connect_timeout=3"
        );
    }

    #[test]
    fn transaction_with_commits_on_ok_and_rolls_back_on_any_error() {
        let mut conn = connect(&ConnectOptions::new("sqlite::memory:")).unwrap();
        conn.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .unwrap();
        let insert = |conn: &mut AnyConnection, id: i32| -> StoreResult<()> {
            conn.batch_execute(&format!("INSERT INTO t (id) VALUES ({id})"))?;
            Ok(())
        };

        let kept: Result<u8, CallerError> = transaction_with(&mut conn, |conn| {
            insert(conn, 1)?;
            Ok(7)
        });
        assert_eq!(kept, Ok(7));
        assert_eq!(rows(&mut conn), 1);

        let refused: Result<(), CallerError> = transaction_with(&mut conn, |conn| {
            insert(conn, 2)?;
            Err(CallerError::Refused)
        });
        assert_eq!(refused, Err(CallerError::Refused));
        assert_eq!(rows(&mut conn), 1, "the caller's error did not roll back");

        let failed: Result<(), CallerError> = transaction_with(&mut conn, |conn| {
            insert(conn, 3)?;
            insert(conn, 1)?; // duplicate key
            Ok(())
        });
        assert!(matches!(failed, Err(CallerError::Store(_))), "{failed:?}");
        assert_eq!(rows(&mut conn), 1, "the database error did not roll back");
    }

    #[test]
    fn an_sqlite_transaction_that_reads_first_still_writes_after_another_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let options = ConnectOptions {
            sqlite_busy_timeout: Duration::from_millis(200),
            ..ConnectOptions::new(url)
        };
        let mut ours = connect(&options).unwrap();
        let mut other = connect(&options).unwrap();
        ours.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .unwrap();

        let written: StoreResult<()> = transaction(&mut ours, |conn| {
            assert_eq!(rows(conn), 0);
            // Another connection cannot commit in between: the write lock is ours
            // from the start, so it waits (here: times out) instead of making our
            // own write fail after our read.
            let theirs = other.batch_execute("INSERT INTO t (id) VALUES (2)");
            assert!(theirs.is_err(), "the other writer got in");
            conn.batch_execute("INSERT INTO t (id) VALUES (1)")?;
            Ok(())
        });
        written.unwrap();
        other
            .batch_execute("INSERT INTO t (id) VALUES (2)")
            .unwrap();
        assert_eq!(rows(&mut ours), 2);
        // Nested calls are savepoints inside the outer transaction.
        let nested: StoreResult<()> = transaction(&mut ours, |conn| {
            let inner: StoreResult<()> = transaction(conn, |conn| {
                conn.batch_execute("INSERT INTO t (id) VALUES (3)")?;
                Err(StoreError::invalid("t", "refused"))
            });
            assert!(inner.is_err());
            conn.batch_execute("INSERT INTO t (id) VALUES (4)")?;
            Ok(())
        });
        nested.unwrap();
        assert_eq!(rows(&mut ours), 3, "the savepoint alone rolled back");
    }
}
