//! SCIM's user searches at scale, on both backends: the store's typed filter tree
//! (`users::search`, what `GET /scim/v2/Users?filter=…` runs) among 1,000,000 users
//! in one tenant (`GATEHOUSE_BENCH_USERS` to change it), reporting p50/p99/max
//! latency per query kind, since the targets are percentiles:
//!
//! - `userName eq "…"` — p99 under 10 ms;
//! - `emails.value eq "…"` — p99 under 10 ms;
//! - a page of 100 users without a filter, first page and a page at a random depth
//!   (startIndex paging is an OFFSET) — under 50 ms.
//!
//! Each search is what the endpoint does: the total (`COUNT`), the page, and the
//! page's emails. `GATEHOUSE_BENCH_BACKENDS` narrows the backends. Users are seeded through `users::create` in transactions of
//! 10,000, each followed by `ANALYZE` (on PostgreSQL in bulk by the server, see
//! [`seed_in_bulk`]). Run with
//! `cargo bench -p gatehouse-identity-store --bench user_search`; method and numbers
//! in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use gatehouse_core::ids::TenantId;
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::db::Backend;
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::users::search::{
    Comparison, EmailAttribute, EmailFilter, FilterValue, UserAttribute, UserFilter, UserQuery,
    search,
};
use gatehouse_identity_store::users::{self, Email, Name, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError, tenants};

const DEFAULT_USERS: usize = 1_000_000;
const BATCH: usize = 10_000;
/// Lookups measured per kind (after as many again to warm up).
const LOOKUPS: usize = 2_000;
/// Pages measured per kind: each counts every user of the tenant.
const PAGES: usize = 200;

fn person(i: usize) -> UserData {
    UserData {
        name: Name {
            given_name: Some(format!("Given{i}")),
            family_name: Some(format!("Family{}", i % 5_000)),
            ..Name::default()
        },
        emails: vec![Email {
            value: format!("person{i}@bench.example"),
            kind: Some("work".into()),
            primary: true,
            verified: true,
        }],
        title: i.is_multiple_of(3).then(|| "Engineer".to_owned()),
        ..UserData::new(format!("person{i:07}"))
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

/// On PostgreSQL the million rows are written by the server itself
/// (`generate_series`): the store's own path runs at about 700 users a second
/// there (one round trip per statement), which is half an hour of seeding. The rows
/// are what `users::create` writes for these ASCII names (the key and look-alike
/// key are the lower-cased name), and the tenant's count is moved to match.
fn seed_in_bulk(conn: &mut AnyConnection, tenant: TenantId, count: usize) {
    let started = Instant::now();
    let t = tenant.to_string();
    let id = |prefix: &str| format!("'{prefix}-0000-7000-8000-' || lpad(to_hex(i), 12, '0')");
    let (user_id, email_id) = (id("01000000"), id("02000000"));
    conn.batch_execute(&format!(
        "INSERT INTO users (id, tenant_id, user_name, user_name_key, user_name_skeleton,
             given_name, family_name, title, active, phone_numbers, custom_attributes,
             created_at, updated_at, version)
         SELECT {user_id}, '{t}', 'person' || lpad(i::text, 7, '0'),
             'person' || lpad(i::text, 7, '0'), 'person' || lpad(i::text, 7, '0'),
             'Given' || i, 'Family' || (i % 5000),
             CASE WHEN i % 3 = 0 THEN 'Engineer' END, true, '[]', '{{}}',
             now(), now(), 1
         FROM generate_series(0, {last}) AS i;
         INSERT INTO user_emails (id, tenant_id, user_id, value, value_key, value_skeleton,
             kind, is_primary, verified, position)
         SELECT {email_id}, '{t}', {user_id}, 'person' || i || '@bench.example',
             'person' || i || '@bench.example', 'person' || i || '@bench.example',
             'work', true, true, 0
         FROM generate_series(0, {last}) AS i;
         UPDATE user_counts SET users = users + {count} WHERE tenant_id = '{t}' AND shard = 0;",
        last = count - 1,
    ))
    .unwrap();
    // What autovacuum does after a large insert: the visibility map that lets
    // index-only scans skip the table.
    // One statement a call: VACUUM cannot run in the implicit transaction of a
    // multi-statement query.
    for table in ["users", "user_emails"] {
        conn.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .unwrap();
    }
    eprintln!(
        "seeded {count} users in bulk in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn seed(conn: &mut AnyConnection, tenant: TenantId, count: usize) {
    let started = Instant::now();
    for batch in 0..count.div_ceil(BATCH) {
        conn.transaction::<_, StoreError, _>(|conn| {
            for i in batch * BATCH..((batch + 1) * BATCH).min(count) {
                users::create(conn, SystemClock.now(), tenant, person(i))?;
            }
            Ok(())
        })
        .unwrap();
        // Statistics as autovacuum would keep them: without them PostgreSQL's
        // cached generic plans take the growing tables for empty and scan them,
        // making each insert's read-back slower than the last.
        conn.batch_execute("ANALYZE users; ANALYZE user_emails")
            .unwrap();
    }
    eprintln!(
        "seeded {count} users in {:.1} s ({:.0} users/s)",
        started.elapsed().as_secs_f64(),
        count as f64 / started.elapsed().as_secs_f64()
    );
}

/// A cheap, repeatable scatter over `0..n` (a multiplicative step coprime to n
/// for the sizes used), so successive searches hit different index pages.
fn scattered(i: usize, n: usize) -> usize {
    (i.wrapping_mul(7_919) + 13) % n
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn measure(samples: usize, mut run: impl FnMut(usize)) -> Percentiles {
    for i in 0..samples {
        run(i + samples);
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|i| {
            let started = Instant::now();
            run(i);
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    Percentiles {
        p50: times[samples / 2],
        p99: times[samples * 99 / 100],
        max: times[samples - 1],
    }
}

fn report(backend: &str, kind: &str, p: &Percentiles) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{backend:9} {kind:32} p50 {:8.3} ms   p99 {:8.3} ms   max {:8.3} ms",
        ms(p.p50),
        ms(p.p99),
        ms(p.max)
    );
}

fn query(filter: Option<UserFilter>, start_index: i64, count: i64) -> UserQuery {
    UserQuery::by_index(filter, None, start_index, count)
}

fn run(backend: Backend, users_count: usize) {
    let label = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let db = TestDb::new(backend);
    let mut conn = db.conn();
    let t = tenant(&mut conn, "bench");
    // Another tenant with the same names: the searches must stay within theirs.
    let other = tenant(&mut conn, "other");
    seed(&mut conn, other, 1_000);
    match backend {
        Backend::Sqlite => seed(&mut conn, t, users_count),
        Backend::Postgres => seed_in_bulk(&mut conn, t, users_count),
    }
    conn.batch_execute("ANALYZE").unwrap();

    let by_user_name = measure(LOOKUPS, |i| {
        let n = scattered(i, users_count);
        let filter = UserFilter::Compare(
            UserAttribute::UserName,
            Comparison::Eq,
            FilterValue::Text(format!("PERSON{n:07}")),
        );
        let found = search(&mut conn, t, &query(Some(filter), 1, 100)).unwrap();
        assert_eq!(found.total, Some(1));
    });
    report(label, "userName eq", &by_user_name);

    let by_email = measure(LOOKUPS, |i| {
        let n = scattered(i, users_count);
        let filter = UserFilter::Email(EmailFilter::Compare(
            EmailAttribute::Value,
            Comparison::Eq,
            FilterValue::Text(format!("Person{n}@Bench.Example")),
        ));
        let found = search(&mut conn, t, &query(Some(filter), 1, 100)).unwrap();
        assert_eq!(found.total, Some(1));
    });
    report(label, "emails.value eq", &by_email);

    let first_page = measure(PAGES, |_| {
        let found = search(&mut conn, t, &query(None, 1, 100)).unwrap();
        assert_eq!(found.users.len(), 100);
    });
    report(label, "page of 100, first", &first_page);

    let deep_page = measure(PAGES, |i| {
        let start = scattered(i, users_count - 100) as i64 + 1;
        let found = search(&mut conn, t, &query(None, start, 100)).unwrap();
        assert_eq!(found.users.len(), 100);
    });
    report(label, "page of 100, random depth", &deep_page);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no
    // such flag: then only a small smoke run, so the suite stays fast.
    let benching = std::env::args().any(|a| a == "--bench");
    let users_count = std::env::var("GATEHOUSE_BENCH_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { DEFAULT_USERS } else { 1_000 });
    println!(
        "{users_count} users in the searched tenant; {LOOKUPS} lookups and {PAGES} pages per kind"
    );
    let backends =
        std::env::var("GATEHOUSE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',').map(str::trim) {
        match backend {
            "sqlite" => run(Backend::Sqlite, users_count),
            "postgres" => run(Backend::Postgres, users_count),
            other => panic!("unknown backend `{other}`"),
        }
    }
}
