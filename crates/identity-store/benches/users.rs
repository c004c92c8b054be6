//! User repository benchmarks on both backends: a committed insert, and lookups by
//! userName and by id among 10,000 users.
//!
//! SQLite is a file in a temporary directory on the local disk, opened by the store
//! itself (WAL, `synchronous = FULL`); PostgreSQL is a fresh database on the test
//! server (`GATEHOUSE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped afterwards. Run with `cargo bench -p gatehouse-identity-store`; results
//! and how to read them are in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diesel::Connection;
use diesel::connection::SimpleConnection;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::db::{self, Backend};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError, tenants};

/// Users in the tenant the lookups search.
const SEEDED_USERS: usize = 10_000;

fn user(user_name: String) -> UserData {
    UserData {
        emails: vec![Email {
            value: format!("{user_name}@example.test"),
            kind: Some("work".into()),
            primary: true,
            verified: true,
        }],
        display_name: Some(format!("User {user_name}")),
        ..UserData::new(user_name)
    }
}

fn tenant(conn: &mut AnyConnection, slug: &str) -> TenantId {
    tenants::create(
        conn,
        SystemClock.now(),
        tenants::TenantData {
            slug: slug.into(),
            display_name: slug.into(),
            ..tenants::TenantData::default()
        },
    )
    .unwrap()
    .id
}

/// Creates the lookup population through the store itself, in one transaction
/// (one commit, one fsync) so that seeding takes seconds, not minutes.
fn seed(conn: &mut AnyConnection, tenant: TenantId) -> Vec<(UserId, String)> {
    conn.transaction::<_, StoreError, _>(|conn| {
        (0..SEEDED_USERS)
            .map(|i| {
                let name = format!("seeded-{i:05}");
                let created = users::create(conn, SystemClock.now(), tenant, user(name.clone()))?;
                Ok((created.id, name))
            })
            .collect()
    })
    .unwrap()
}

/// Visits the seeded users in a scattered order, so successive lookups do not hit
/// neighbouring index pages.
fn scattered(i: usize) -> usize {
    (i * 7_919) % SEEDED_USERS
}

/// The benchmark `name`: one `lookup` of a seeded user an iteration, the users
/// visited in [`scattered`] order.
fn bench_lookups(
    c: &mut Criterion,
    name: &str,
    label: &str,
    seeded: &[(UserId, String)],
    mut lookup: impl FnMut(&(UserId, String)),
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function(label, |b| {
        b.iter(|| {
            lookup(&seeded[scattered(i)]);
            i += 1;
        })
    });
    group.finish();
}

fn backend(c: &mut Criterion, backend: Backend) {
    let label = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let db = TestDb::new(backend);
    let mut conn = db.conn();

    let lookups = tenant(&mut conn, "lookups");
    let seeded = seed(&mut conn, lookups);
    // The same userName in another tenant: lookups must stay within their tenant.
    let noise = tenant(&mut conn, "noise");
    users::create(
        &mut conn,
        SystemClock.now(),
        noise,
        user("seeded-00000".into()),
    )
    .unwrap();
    // Give the planners the table statistics a live database has. PostgreSQL's
    // autovacuum would analyze the freshly loaded tables within a minute; until
    // then its cached generic plans take the tables for tiny and scan them (about
    // 1 ms per lookup instead of 0.2 ms). Harmless on SQLite.
    conn.batch_execute("ANALYZE").unwrap();

    // The floor under every other number: one `SELECT 1` (one round trip on
    // PostgreSQL, one call into the library on SQLite).
    let mut group = c.benchmark_group("ping");
    group.throughput(Throughput::Elements(1));
    group.bench_function(label, |b| b.iter(|| db::ping(&mut conn).unwrap()));
    group.finish();

    bench_lookups(c, "find_by_user_name", label, &seeded, |(id, name)| {
        let found = users::find_by_user_name(&mut conn, lookups, black_box(name)).unwrap();
        assert_eq!(found.map(|u| u.id), Some(*id));
    });
    bench_lookups(c, "get_by_id", label, &seeded, |(id, _)| {
        black_box(users::get(&mut conn, lookups, black_box(*id)).unwrap());
    });

    // Each iteration is one committed transaction (user row + primary email), so
    // it includes the commit's fsync, as every acknowledged write in production does.
    let inserts = tenant(&mut conn, "inserts");
    let mut group = c.benchmark_group("insert_user");
    group.throughput(Throughput::Elements(1)).sample_size(30);
    let mut n = 0u64;
    group.bench_function(label, |b| {
        b.iter(|| {
            n += 1;
            let data = user(format!("inserted-{n}"));
            black_box(users::create(&mut conn, SystemClock.now(), inserts, data).unwrap())
        })
    });
    group.finish();
}

fn sqlite(c: &mut Criterion) {
    backend(c, Backend::Sqlite);
}

fn postgres(c: &mut Criterion) {
    backend(c, Backend::Postgres);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = sqlite, postgres
}
criterion_main!(benches);
