use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use gatehouse_identity_store::db;
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::{AnyConnection, Backend};

#[derive(QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Integer)]
    not_null: i32,
}

/// table -> column -> NOT NULL, as the database itself reports it.
fn shape(conn: &mut AnyConnection) -> BTreeMap<String, BTreeMap<String, bool>> {
    let rows: Vec<Column> = match conn {
        AnyConnection::Postgresql(pg) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name,
                    CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END AS not_null
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load(pg)
        .unwrap(),
        AnyConnection::Sqlite(lite) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name,
                    CASE WHEN p.\"notnull\" = 1 OR p.pk > 0 THEN 1 ELSE 0 END AS not_null
             FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
               AND m.name <> '__diesel_schema_migrations'",
        )
        .load(lite)
        .unwrap(),
    };
    let mut tables: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for row in rows {
        tables
            .entry(row.table_name)
            .or_default()
            .insert(row.column_name, row.not_null == 1);
    }
    tables
}

#[test]
fn migration_trees_agree() {
    let sqlite = TestDb::sqlite();
    let postgres = TestDb::postgres();
    let sqlite_shape = shape(&mut sqlite.conn());
    let postgres_shape = shape(&mut postgres.conn());
    assert!(sqlite_shape.contains_key("users") && sqlite_shape.contains_key("audit_events"));
    assert_eq!(
        sqlite_shape, postgres_shape,
        "the SQLite and PostgreSQL migration trees differ"
    );
    assert_eq!(
        db::embedded_migration_names(Backend::Sqlite).unwrap(),
        db::embedded_migration_names(Backend::Postgres).unwrap(),
        "both trees must hold the same migrations"
    );
}

gatehouse_identity_store::backend_tests! {
    fn migrations_are_idempotent(db) {
        let mut conn = db.conn();
        assert_eq!(db::pending_migrations(&mut conn).unwrap(), 0);
        assert!(db::run_migrations(&mut conn).unwrap().is_empty());
    }

    fn sqlite_connections_enforce_foreign_keys_and_wal(db) {
        let mut conn = db.conn();
        if let AnyConnection::Sqlite(lite) = &mut *conn {
            #[derive(QueryableByName)]
            struct Pragma {
                #[diesel(sql_type = Text)]
                journal_mode: String,
            }
            let mode: Vec<Pragma> = diesel::sql_query("PRAGMA journal_mode").load(lite).unwrap();
            assert_eq!(mode[0].journal_mode, "wal");
        }
        // A user pointing at a tenant that does not exist is refused on both backends.
        let orphan = diesel::sql_query(
            "INSERT INTO users (id, tenant_id, user_name, user_name_key, active, phone_numbers,
                                custom_attributes, created_at, updated_at, version)
             VALUES ('u', 'no-such-tenant', 'x', 'x', true, '[]', '{}',
                     CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)",
        )
        .execute(&mut *conn);
        assert!(orphan.is_err(), "foreign keys are not enforced");
    }
}

#[test]
fn unreachable_postgres_is_a_clear_connect_error() {
    let options = db::ConnectOptions {
        connect_timeout: std::time::Duration::from_secs(1),
        ..db::ConnectOptions::new("postgres://postgres@127.0.0.1:1/none")
    };
    let error = db::connect(&options).unwrap_err().to_string();
    assert!(
        error.starts_with("cannot connect to the PostgreSQL database"),
        "{error}"
    );
}

#[test]
fn unknown_url_schemes_are_refused() {
    let error = db::connect(&db::ConnectOptions::new("mysql://localhost/x")).unwrap_err();
    assert!(error.to_string().contains("mysql://localhost/x"));
}
