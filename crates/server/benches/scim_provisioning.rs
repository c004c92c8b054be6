//! Bulk provisioning through SCIM, on SQLite and on PostgreSQL: how many users a
//! provisioning system creates per second with `POST /scim/v2/Users`, and the
//! latency tail while it does.
//!
//! For each backend Gatehouse runs in-process with its defaults (pool of 8
//! connections, the server's HTTP workers); a provisioning client (scope `scim`)
//! gets a client-credentials token, then C keep-alive clients post users — each a
//! userName, a name, a work address and the enterprise extension, as an HR system
//! sends them — until N users exist. Each request is the whole path: the token, the
//! PDP's decision (logged), the user and address rows and the audit record in one
//! transaction, the answer's resource. Every answer but 201 counts as an error.
//!
//! Run with `cargo bench -p gatehouse-server --bench scim_provisioning` (needs
//! PostgreSQL as the tests do). `GATEHOUSE_BENCH_USERS` sets N (default 100,000),
//! `GATEHOUSE_BENCH_CONCURRENCY` the clients (default 16),
//! `GATEHOUSE_BENCH_BACKENDS` the backends (default `sqlite,postgres`). Results in
//! `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the in-process server of the shared kit is used here.
#[allow(dead_code)]
mod common;
#[path = "../tests/server/local_config.rs"]
mod local_config;

use common::env_or;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gatehouse_authn::testing::SmtpCatcher;
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::clients::{self, ClientData};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_server::state::AppState;
use gatehouse_token_issuer::client_auth::secret_hash;
use local_config::local_config;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const SECRET: &str = "bench-provisioning-secret-0123456789";

struct Server {
    base: String,
    token: String,
    _smtp: SmtpCatcher,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

fn start_server(db: TestDb) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCatcher::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = local_config(dir.path(), &db.url, port, smtp.port());
    let (state, bootstrapped) = AppState::open(config).unwrap();
    let base = common::serve_in_background(&state, listener, "/readyz");
    let audience = format!("{base}/scim/v2");
    clients::create(
        &mut db.conn(),
        SystemClock.now(),
        bootstrapped.tenant.id,
        ClientData {
            secret_hash: Some(secret_hash(SECRET)),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["scim".into()],
            audiences: vec![audience.clone()],
            default_audience: Some(audience),
            ..ClientData::new("hr-sync", "HR sync")
        },
    )
    .unwrap();
    let answer: Value = Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth("hr-sync", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = answer["access_token"].as_str().unwrap().to_owned();
    Server {
        base,
        token,
        _smtp: smtp,
        _db: db,
        _dir: dir,
    }
}

fn user(n: usize) -> String {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "userName": format!("employee{n:07}"),
        "externalId": format!("hr-{n}"),
        "name": {"givenName": format!("Given{n}"), "familyName": "Example"},
        "emails": [{"value": format!("employee{n}@corp.example"), "type": "work", "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": n.to_string(), "department": "Operations"
        }
    })
    .to_string()
}

fn main() {
    let total: usize = env_or("GATEHOUSE_BENCH_USERS", 100_000);
    let clients: usize = env_or("GATEHOUSE_BENCH_CONCURRENCY", 16);
    let backends =
        std::env::var("GATEHOUSE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!("| backend | users | in flight | users/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let db = match backend {
            "sqlite" => TestDb::sqlite(),
            "postgres" => TestDb::postgres(),
            other => panic!("unknown backend `{other}`"),
        };
        let server = start_server(db);
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    let (server, next) = (&server, &next);
                    scope.spawn(move || {
                        let http = Client::new();
                        let url = format!("{}/scim/v2/Users", server.base);
                        let mut latencies = Vec::new();
                        let mut errors = 0;
                        loop {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            if n >= total {
                                break;
                            }
                            let began = Instant::now();
                            let status = http
                                .post(&url)
                                .bearer_auth(&server.token)
                                .header("Content-Type", "application/scim+json")
                                .body(user(n))
                                .send()
                                .map(|answer| {
                                    let status = answer.status().as_u16();
                                    let _ = answer.bytes();
                                    status
                                });
                            latencies.push(began.elapsed());
                            errors += usize::from(!matches!(status, Ok(201)));
                        }
                        (latencies, errors)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let elapsed = started.elapsed();
        let mut latencies: Vec<Duration> = results.iter().flat_map(|(l, _)| l.clone()).collect();
        latencies.sort_unstable();
        let errors: usize = results.iter().map(|(_, e)| e).sum();
        let at = |p: f64| {
            let index = ((latencies.len() - 1) as f64 * p).round() as usize;
            latencies[index].as_secs_f64() * 1000.0
        };
        println!(
            "| {backend} | {total} | {clients} | {:.0} | {:.1} | {:.1} | {:.1} | {errors} |",
            total as f64 / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            at(1.0),
        );
    }
}
