//! The cost of a tenant: does a thousand tenants change the latency of a request,
//! or the memory a request needs? On SQLite and on PostgreSQL.
//!
//! For each backend Gatehouse runs in-process with its defaults. The measured
//! request is a whole client-credentials token request to one tenant's token
//! endpoint (`/t/{slug}/oauth2/token`: tenant resolution, client authentication,
//! the tenant's signing key, a signed JWT, the audit-free answer), made R times by
//! C keep-alive clients, first with 1 tenant besides the platform's, then after
//! N-1 more tenants were created, each with its client, and each served once (so
//! every per-tenant cache is warm). With N tenants the requests go (a) to the same
//! tenant as before and (b) to a random one of the N. The process's resident
//! memory is read from `/proc/self/status` after each phase (client and server
//! share the process; the client's share does not grow with tenants).
//!
//! Run with `cargo bench -p gatehouse-server --bench tenant_scale` (needs
//! PostgreSQL as the tests do). `GATEHOUSE_BENCH_TENANTS` sets N (default 1,000),
//! `GATEHOUSE_BENCH_REQUESTS` R (default 4,000), `GATEHOUSE_BENCH_CONCURRENCY` C
//! (default 8), `GATEHOUSE_BENCH_BACKENDS` the backends (default
//! `sqlite,postgres`). Results in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the in-process server of the shared kit is used here.
#[allow(dead_code)]
mod common;
#[path = "../tests/server/local_config.rs"]
mod local_config;

use common::{at, env_or};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gatehouse_authn::testing::SmtpCatcher;
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::clients::{self, ClientData};
use gatehouse_identity_store::tenants::{self, TenantData};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_server::state::AppState;
use gatehouse_token_issuer::client_auth::secret_hash;
use local_config::local_config;
use reqwest::blocking::Client;

const SECRET: &str = "bench-tenant-secret-0123456789abcdef";

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib / 1024.0
}

fn slug(n: usize) -> String {
    format!("tenant-{n:05}")
}

/// Creates the tenant `slug` straight in the store with a client-credentials
/// client `app` whose audience is the tenant's issuer.
fn create_tenant(db: &TestDb, base: &str, slug: &str) {
    let mut conn = db.conn();
    let now = SystemClock.now();
    let tenant = tenants::create(
        &mut conn,
        now,
        TenantData {
            slug: slug.to_owned(),
            display_name: slug.to_owned(),
            ..TenantData::default()
        },
    )
    .unwrap();
    let audience = format!("{base}/t/{slug}/api");
    clients::create(
        &mut conn,
        now,
        tenant.id,
        ClientData {
            secret_hash: Some(secret_hash(SECRET)),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["read".into()],
            audiences: vec![audience.clone()],
            default_audience: Some(audience),
            ..ClientData::new("app", "Bench app")
        },
    )
    .unwrap();
}

fn token(http: &Client, base: &str, slug: &str) -> u16 {
    http.post(format!("{base}/t/{slug}/oauth2/token"))
        .basic_auth("app", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .map(|answer| {
            let status = answer.status().as_u16();
            let _ = answer.bytes();
            status
        })
        .unwrap_or(0)
}

/// R token requests by C clients, each to the tenant `pick` names; latencies
/// sorted, and the errors.
fn measure(
    base: &str,
    requests: usize,
    clients: usize,
    pick: &(dyn Fn(usize) -> String + Sync),
) -> (Vec<Duration>, usize) {
    let next = AtomicUsize::new(0);
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let http = Client::new();
                    let (mut latencies, mut errors) = (Vec::new(), 0);
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            break;
                        }
                        let slug = pick(n);
                        let began = Instant::now();
                        let status = token(&http, base, &slug);
                        latencies.push(began.elapsed());
                        errors += usize::from(status != 200);
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut latencies: Vec<Duration> = results.iter().flat_map(|(l, _)| l.clone()).collect();
    latencies.sort_unstable();
    (latencies, results.iter().map(|(_, e)| e).sum())
}

fn main() {
    let total: usize = env_or("GATEHOUSE_BENCH_TENANTS", 1_000);
    let requests: usize = env_or("GATEHOUSE_BENCH_REQUESTS", 4_000);
    let clients: usize = env_or("GATEHOUSE_BENCH_CONCURRENCY", 8);
    let backends =
        std::env::var("GATEHOUSE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "| backend | tenants | requests to | requests | p50 ms | p99 ms | max ms | errors | RSS MiB |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let db = match backend {
            "sqlite" => TestDb::sqlite(),
            "postgres" => TestDb::postgres(),
            other => panic!("unknown backend `{other}`"),
        };
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpCatcher::start();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = local_config(dir.path(), &db.url, port, smtp.port());
        let (state, _) = AppState::open(config).unwrap();
        let base = common::serve_in_background(&state, listener, "/readyz");
        let report = |tenants: usize, to: &str, (latencies, errors): (Vec<Duration>, usize)| {
            println!(
                "| {backend} | {tenants} | {to} | {requests} | {:.2} | {:.2} | {:.1} | {errors} | {:.0} |",
                at(&latencies, 0.5),
                at(&latencies, 0.99),
                at(&latencies, 1.0),
                rss_mib(),
            );
        };

        let first = slug(0);
        create_tenant(&db, &base, &first);
        state.tenants.invalidate();
        let warm = Client::new();
        assert_eq!(token(&warm, &base, &first), 200, "the first tenant serves");
        // Warm up the path, then measure it with one tenant.
        measure(&base, requests / 4, clients, &|_| first.clone());
        report(
            1,
            "the first tenant",
            measure(&base, requests, clients, &|_| first.clone()),
        );

        for n in 1..total {
            create_tenant(&db, &base, &slug(n));
        }
        state.tenants.invalidate();
        for n in 0..total {
            assert_eq!(token(&warm, &base, &slug(n)), 200, "tenant {n} serves");
        }
        report(
            total,
            "the first tenant",
            measure(&base, requests, clients, &|_| first.clone()),
        );
        // A fixed stride through the tenants: every request to another one.
        report(
            total,
            "each a different tenant",
            measure(&base, requests, clients, &|n| slug((n * 7919) % total)),
        );
        drop(smtp);
    }
}
