//! Federated sign-ins per second through the OpenID Connect callback, on SQLite
//! and on PostgreSQL, signature checks included.
//!
//! Gatehouse runs in-process with its defaults and one connection to the scripted
//! upstream provider of the tests (`tests/server/scripted_op.rs`: discovery, key
//! set, token endpoint; ES256). No browser: each of C clients keeps a browser's
//! CSRF cookie and, per sign-in, (1) posts the start form, reads the authorization
//! request's state, nonce and PKCE challenge from the page that would send the
//! browser upstream, tells the provider what that code's exchange must answer,
//! and (2) opens the callback, which exchanges the code (a real HTTP call to the
//! provider), verifies the ID token's signature, issuer, audience, expiry and
//! nonce, applies the mapping rules and opens a session in one transaction. Only
//! (2) is timed. U users take turns: the first pass makes their accounts just in
//! time (reported apart), the measured passes sign linked users in.
//!
//! Run with `cargo bench -p gatehouse-server --bench federation` (needs
//! PostgreSQL as the tests do). `GATEHOUSE_BENCH_USERS` sets U (default 200),
//! `GATEHOUSE_BENCH_REQUESTS` the measured sign-ins (default 2,000),
//! `GATEHOUSE_BENCH_CONCURRENCY` C (default 8), `GATEHOUSE_BENCH_BACKENDS` the
//! backends (default `sqlite,postgres`). Results in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the in-process server of the shared kit is used here.
#[allow(dead_code)]
mod common;
#[path = "../tests/server/local_config.rs"]
mod local_config;
#[path = "../tests/server/scripted_op.rs"]
#[allow(dead_code)]
mod scripted_op;

use common::{at, env_or};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gatehouse_authn::testing::SmtpCatcher;
use gatehouse_identity_store::testing::TestDb;
use gatehouse_server::state::AppState;
use local_config::local_config;
use reqwest::blocking::Client;
use scripted_op::{IdToken, ScriptedOp, upstream_url};
use serde_json::json;

const CLIENT_ID: &str = "bench-rp";

/// A browser without JavaScript: its CSRF cookie and the form's token.
struct Browser {
    http: Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    fn open(base: &str) -> Browser {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = http.get(format!("{base}/signin")).send().unwrap();
        let cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("; ");
        let body = page.text().unwrap();
        let marker = "name=\"csrf_token\" value=\"";
        let start = body.find(marker).unwrap() + marker.len();
        let csrf = body[start..].split('"').next().unwrap().to_owned();
        Browser {
            http,
            base: base.to_owned(),
            cookie,
            csrf,
        }
    }

    /// One federated sign-in as `user`: the callback's latency and whether a
    /// session came of it.
    fn sign_in(&self, op: &ScriptedOp, user: usize, code: &str, now: i64) -> (Duration, bool) {
        let started = self
            .http
            .post(format!("{}/federation/partner/start", self.base))
            .header("Cookie", &self.cookie)
            .form(&[("csrf_token", self.csrf.as_str())])
            .send()
            .unwrap()
            .text()
            .unwrap();
        let params: HashMap<String, String> =
            upstream_url(&started).query_pairs().into_owned().collect();
        op.expect(
            code,
            &params["code_challenge"],
            IdToken::Signed(json!({
                "iss": op.base,
                "sub": format!("partner-user-{user}"),
                "aud": CLIENT_ID,
                "exp": now + 300,
                "iat": now,
                "nonce": params["nonce"],
                "email": format!("user-{user}@partner.example"),
                "email_verified": true,
                "given_name": format!("User {user}"),
            })),
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", code)
            .append_pair("state", &params["state"])
            .append_pair("iss", &op.base)
            .finish();
        let began = Instant::now();
        let answer = self
            .http
            .get(format!("{}/federation/partner/callback?{query}", self.base))
            .header("Cookie", &self.cookie)
            .send()
            .unwrap();
        let took = began.elapsed();
        let signed_in = answer.status().as_u16() == 303
            && answer
                .headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap_or("").contains("gatehouse-session-"));
        (took, signed_in)
    }
}

/// `count` sign-ins by `clients` browsers, users taken in turn from `users`;
/// latencies sorted, errors, and the wall time.
fn measure(
    base: &str,
    op: &ScriptedOp,
    state: &AppState,
    count: usize,
    clients: usize,
    users: usize,
    offset: usize,
) -> (Vec<Duration>, usize, Duration) {
    let next = AtomicUsize::new(0);
    let began = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let browser = Browser::open(base);
                    let (mut latencies, mut errors) = (Vec::new(), 0);
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            break;
                        }
                        let code = format!("code-{offset}-{n}");
                        let now = state.clock.now().timestamp();
                        let (took, ok) = browser.sign_in(op, n % users, &code, now);
                        latencies.push(took);
                        errors += usize::from(!ok);
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = began.elapsed();
    let mut latencies: Vec<Duration> = results.iter().flat_map(|(l, _)| l.clone()).collect();
    latencies.sort_unstable();
    (latencies, results.iter().map(|(_, e)| e).sum(), wall)
}

fn main() {
    let users: usize = env_or("GATEHOUSE_BENCH_USERS", 200);
    let requests: usize = env_or("GATEHOUSE_BENCH_REQUESTS", 2_000);
    let clients: usize = env_or("GATEHOUSE_BENCH_CONCURRENCY", 8);
    let backends =
        std::env::var("GATEHOUSE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!("| backend | sign-ins | kind | sign-ins/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
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
        let mut config = local_config(dir.path(), &db.url, port, smtp.port());
        // The scripted provider listens on loopback.
        config.outbound.allow_private_networks = true;
        let (state, _) = AppState::open(config).unwrap();
        let base = common::serve_in_background(&state, listener, "/readyz");
        let op = ScriptedOp::start();
        let operator = gatehouse_admin::Operator::named("bench").unwrap();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(state.admin.create_connection(
                &operator,
                "default",
                gatehouse_admin::NewConnection {
                    slug: "partner".into(),
                    display_name: "Partner".into(),
                    logo_url: None,
                    enabled: true,
                    jit_provisioning: true,
                    trust_verified_email: true,
                    kind: "oidc".into(),
                    settings: json!({"issuer": op.base, "client_id": CLIENT_ID}),
                    idp_metadata: None,
                    mapping: None,
                    client_secret: Some("bench-client-secret".into()),
                    domains: vec![],
                },
            ))
            .unwrap();
        let report =
            |count: usize,
             kind: &str,
             (latencies, errors, wall): (Vec<Duration>, usize, Duration)| {
                println!(
                    "| {backend} | {count} | {kind} | {:.0} | {:.2} | {:.2} | {:.1} | {errors} |",
                    count as f64 / wall.as_secs_f64(),
                    at(&latencies, 0.5),
                    at(&latencies, 0.99),
                    at(&latencies, 1.0),
                );
            };
        report(
            users,
            "first sign-in (account made just in time)",
            measure(&base, &op, &state, users, clients, users, 0),
        );
        // Warm, then measured: linked users signing in again.
        measure(&base, &op, &state, requests / 4, clients, users, 1);
        report(
            requests,
            "linked user",
            measure(&base, &op, &state, requests, clients, users, 2),
        );
        drop(smtp);
    }
}
