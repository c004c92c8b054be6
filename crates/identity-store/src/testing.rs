//! Throwaway databases for tests: a fresh SQLite file or a fresh PostgreSQL database
//! per test, migrated, dropped afterwards. Tests run in parallel without sharing
//! state. PostgreSQL is never skipped: when it is unreachable the test fails and
//! says how to point it elsewhere.

pub mod fault_proxy;

use diesel::connection::SimpleConnection;

use crate::db::{self, Backend, ConnectOptions};
use crate::{Pool, PooledConnection};

/// Where the test PostgreSQL server is: `GATEHOUSE_TEST_PG_URL`, or the local default.
///
/// The default asks for no TLS. The local server offers it (Debian turns `ssl` on),
/// and libpq's default `sslmode=prefer` would take it: nothing gained on loopback,
/// and a test process that exits while an in-process server's threads still hold
/// or open connections (the event listener reconnecting after its database was
/// dropped) lets OpenSSL's exit-time cleanup free what a TLS handshake on another
/// thread is using — an intermittent SIGSEGV after the test had passed.
pub fn pg_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG_URL").unwrap_or_else(|_| {
        "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned()
    })
}

/// Replaces the database name in a PostgreSQL URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another handle's database: left as it is.
    None,
}

#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pool: Option<Pool>,
    cleanup: Cleanup,
}

#[allow(clippy::expect_used, clippy::panic)]
impl TestDb {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres(),
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self::migrated(url, Backend::Sqlite, Cleanup::Sqlite(dir))
    }

    pub fn postgres() -> Self {
        let admin_url = pg_admin_url();
        let name = format!("gatehouse_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = db::connect(&ConnectOptions::new(&admin_url)).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for the store tests and is unreachable at {admin_url}: {e}\n\
                 Start it, or set GATEHOUSE_TEST_PG_URL to a server where user may CREATE DATABASE."
            )
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        Self::migrated(
            url,
            Backend::Postgres,
            Cleanup::Postgres { admin_url, name },
        )
    }

    /// Another handle on a database that `owner` created (a second node of a test
    /// cluster); dropping it leaves the database to its owner.
    pub fn attach(owner: &TestDb) -> Self {
        let mut options = ConnectOptions::new(&owner.url);
        options.pool_size = 4;
        TestDb {
            url: owner.url.clone(),
            backend: owner.backend,
            pool: Some(db::pool(&options).expect("test database pool")),
            cleanup: Cleanup::None,
        }
    }

    fn migrated(url: String, backend: Backend, cleanup: Cleanup) -> Self {
        let mut options = ConnectOptions::new(&url);
        options.pool_size = 4;
        let pool = db::pool(&options).expect("test database pool");
        let mut conn = pool.get().expect("test database connection");
        db::run_migrations(&mut conn).expect("migrations");
        drop(conn);
        TestDb {
            url,
            backend,
            pool: Some(pool),
            cleanup,
        }
    }

    pub fn pool(&self) -> &Pool {
        self.pool.as_ref().expect("pool lives until drop")
    }

    pub fn conn(&self) -> PooledConnection {
        self.pool().get().expect("test database connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.take();
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup
            && let Ok(mut admin) = db::connect(&ConnectOptions::new(admin_url.as_str()))
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs tests written as `fn <name>(Backend)` on both backends, as `<name>::sqlite`
/// and `<name>::postgres`: for service tests that build their own environment on a
/// backend (the store's own tests use [`backend_tests!`]).
///
/// ```ignore
/// on_both_backends!(signs_in, locks_out);
/// fn signs_in(backend: Backend) { let env = Env::new(backend); /* … */ }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::Backend::Sqlite)
            }

            #[test]
            fn postgres() {
                super::$name($crate::Backend::Postgres)
            }
        }
    )*};
}

/// Declares each test twice, as `<name>::sqlite` and `<name>::postgres`, so every
/// store rule is proven on both backends:
///
/// ```ignore
/// backend_tests! {
///     fn creates_a_user(db) { let mut conn = db.conn(); /* … */ }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($(fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($db: &$crate::testing::TestDb) $body

            #[test]
            fn sqlite() {
                run(&$crate::testing::TestDb::sqlite())
            }

            #[test]
            fn postgres() {
                run(&$crate::testing::TestDb::postgres())
            }
        }
    )*};
}

/// A cipher under a fresh random master key, for tests that seal values or append
/// to the (keyed) audit chain. Verify a chain with the same cipher that wrote it.
#[allow(clippy::expect_used)]
pub fn test_cipher() -> gatehouse_core::secrets::Cipher {
    gatehouse_core::secrets::Cipher::new(vec![gatehouse_core::secrets::MasterKey::generate()])
        .expect("a cipher from a generated key")
}

/// How many rows each table that has a `tenant_id` column holds for `tenant`, as
/// the database itself lists its tables (so a table added later is counted too).
#[allow(clippy::expect_used)]
pub fn rows_of_tenant(
    conn: &mut crate::AnyConnection,
    tenant: gatehouse_core::ids::TenantId,
) -> std::collections::BTreeMap<String, i64> {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let (tables_sql, placeholder) = match conn {
        crate::AnyConnection::Postgresql(_) => (
            "SELECT table_name::text AS name FROM information_schema.columns \
             WHERE table_schema = 'public' AND column_name = 'tenant_id'",
            "$1",
        ),
        crate::AnyConnection::Sqlite(_) => (
            "SELECT m.name AS name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'tenant_id'",
            "?",
        ),
    };
    let tables: Vec<Table> = diesel::sql_query(tables_sql)
        .load(conn)
        .expect("the tables are listed");
    let mut counts = std::collections::BTreeMap::new();
    for table in tables {
        // Table names come from the database's own catalogue, never from input.
        let count: Count = diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM {} WHERE tenant_id = {placeholder}",
            table.name
        ))
        .bind::<Text, _>(tenant.to_string())
        .get_result(conn)
        .expect("the rows are counted");
        counts.insert(table.name, count.n);
    }
    counts
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_swapped_in_urls() {
        assert_eq!(
            super::with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://u:p@h/db?sslmode=disable", "y"),
            "postgres://u:p@h/y?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://h:5432", "z"),
            "postgres://h:5432/z"
        );
    }
}
