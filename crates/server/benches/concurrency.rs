//! Sign-ups and sign-ins under concurrency, on SQLite and on PostgreSQL: the
//! production path's throughput, latency tail and error count.
//!
//! For each backend Gatehouse runs in-process with its defaults (pool of 8
//! connections, OWASP Argon2id parameters, real SMTP to a local catcher) and the
//! server's two HTTP workers. For each concurrency level C, C keep-alive clients
//! each fetch the form once (CSRF cookie and token) and then, for the measured time:
//!
//! - `signup`: post `/signup` for a fresh address each time (expects 200: the
//!   account, its password hash, link, audit record; the mail goes out afterwards);
//! - `signin`: post `/signin` as the next of 512 seeded users (expects 303 with a
//!   session cookie).
//!
//! Every answer other than the expected one counts as an error (a 500 or 503, a
//! transport error). Latencies are per request, from send to the last body byte.
//!
//! Run with `cargo bench -p gatehouse-server --bench concurrency` (needs PostgreSQL
//! as the tests do: `GATEHOUSE_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432`).
//! `GATEHOUSE_BENCH_SECS` sets the measured time per run (default 5),
//! `GATEHOUSE_BENCH_CONCURRENCY` the levels (default `1,8,32,64`),
//! `GATEHOUSE_BENCH_BACKENDS` the backends (default `sqlite,postgres`). Results and
//! how to read them are in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/server/local_config.rs"]
mod local_config;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::FormClient;
use gatehouse_authn::testing::SmtpCatcher;
use gatehouse_identity_store::testing::TestDb;
use gatehouse_server::state::AppState;
use local_config::local_config;

const USERS: usize = 512;
const WARM_UP: Duration = Duration::from_secs(1);

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn measure_time() -> Duration {
    let secs = std::env::var("GATEHOUSE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

struct Server {
    base: String,
    _smtp: SmtpCatcher,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

fn start_server(db: TestDb) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpCatcher::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = local_config(dir.path(), &db.url, port, smtp.port());
    // Every client here is 127.0.0.1; the per-address mail limit would only hold
    // mail back, but keep the work the same as for many clients.
    config.registration.signup_mails_per_ip_hour = u32::MAX;
    let (state, bootstrapped) = AppState::open(config).unwrap();
    let tenant = bootstrapped.tenant.id;

    common::seed_users(&state, tenant, "seeded", USERS);

    let base = common::serve_in_background(&state, listener, "/readyz");
    Server {
        base,
        _smtp: smtp,
        _db: db,
        _dir: dir,
    }
}

#[derive(Clone, Copy)]
enum Workload {
    SignUp,
    SignIn,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SignUp => "signup",
            Workload::SignIn => "signin",
        }
    }
}

struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }
}

/// Addresses for sign-ups: unique across every run of the process.
static NEXT_ADDRESS: AtomicUsize = AtomicUsize::new(0);
static NEXT_USER: AtomicUsize = AtomicUsize::new(0);

fn run(server: &Server, workload: Workload, clients: usize, measure: Duration) -> Run {
    let path = match workload {
        Workload::SignUp => "/signup",
        Workload::SignIn => "/signin",
    };
    let forms: Vec<FormClient> = (0..clients)
        .map(|_| FormClient::new(&server.base, path))
        .collect();
    let start = Instant::now();
    let warm_until = start + WARM_UP;
    let stop = warm_until + measure;
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = forms
            .iter()
            .map(|form| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    loop {
                        let began = Instant::now();
                        if began >= stop {
                            break;
                        }
                        let ok = match workload {
                            Workload::SignUp => {
                                let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
                                form.post(&format!("new-{n}@example.test"), 200)
                            }
                            Workload::SignIn => {
                                let n = NEXT_USER.fetch_add(1, Ordering::Relaxed) % USERS;
                                form.post(&format!("seeded-{n}@example.test"), 303)
                            }
                        };
                        // Only requests that began and ended inside the window count.
                        let ended = Instant::now();
                        if began >= warm_until && ended <= stop {
                            latencies.push(ended - began);
                            errors += usize::from(!ok);
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut latencies: Vec<Duration> = results.iter().flat_map(|(l, _)| l.clone()).collect();
    latencies.sort();
    Run {
        latencies,
        errors: results.iter().map(|(_, e)| e).sum(),
        elapsed: measure,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let measure = measure_time();
    let levels: Vec<usize> = env_list("GATEHOUSE_BENCH_CONCURRENCY", "1,8,32,64")
        .iter()
        .map(|s| s.parse().expect("concurrency levels are numbers"))
        .collect();
    println!("| backend | workload | in flight | requests/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for backend in env_list("GATEHOUSE_BENCH_BACKENDS", "sqlite,postgres") {
        let db = match backend.as_str() {
            "sqlite" => TestDb::sqlite(),
            "postgres" => TestDb::postgres(),
            other => panic!("unknown backend `{other}`"),
        };
        let server = start_server(db);
        for workload in [Workload::SignUp, Workload::SignIn] {
            for &clients in &levels {
                let result = run(&server, workload, clients, measure);
                let count = result.latencies.len();
                println!(
                    "| {backend} | {} | {clients} | {:.1} | {:.0} | {:.0} | {:.0} | {} of {count} |",
                    workload.name(),
                    count as f64 / result.elapsed.as_secs_f64(),
                    result.percentile(0.5),
                    result.percentile(0.99),
                    result.percentile(1.0),
                    result.errors,
                );
            }
        }
    }
}
