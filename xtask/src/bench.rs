//! The token endpoint load run of `cargo xtask bench`: a release build of `gatehouse
//! serve` on SQLite in a temporary directory, one confidential client registered with
//! `gatehouse clients create`, then `wrk` over loopback against `POST /oauth2/token`
//! (client_credentials, Basic auth), `GET /jwks` and the RFC 8414 metadata. Each
//! endpoint gets a 1 s warm-up and a 5 s measured run, so the load takes 18 s.
//!
//! `cargo xtask bench-pdp` is the policy decision point's load run on the same
//! scaffolding: a PEP client with `authzen:evaluate`, `crates/consent/benches/
//! realistic.cedar` loaded with `gatehouse policy load`, 1,000 users seeded by the
//! `pdp_seed` bench target of gatehouse-consent, then wrk posting AuthZEN
//! evaluations at several connection counts (see `pdp_load`).
//!
//! `GATEHOUSE_BENCH_SERVER=/path/to/gatehouse` loads that binary instead of building
//! one (to compare two builds under the same load).
//!
//! `wrk` is a Debian package. When it is missing, the run installs it if it can (as
//! root, with apt-get) and otherwise prints why and skips the load, without failing.
//! Any response that is not a success (or any socket error) fails the run.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Failed, Outcome, cargo, display, run};

const THREADS: u32 = 2;
const CONNECTIONS: u32 = 32;
const WARM_UP_SECS: u32 = 1;
const MEASURE_SECS: u32 = 5;
/// The token endpoint's budget on a 2-core machine (docs/benchmarks.md).
const TARGET_TOKENS_PER_SEC: f64 = 20_000.0;
const TARGET_P99_MS: f64 = 5.0;

const CLIENT_ID: &str = "bench";
const AUDIENCE: &str = "https://api.example";
const SCOPE: &str = "orders:read";

/// What one endpoint is loaded with.
struct Endpoint {
    label: &'static str,
    path: &'static str,
    /// Lua setting `wrk.method`, `wrk.body` and `wrk.headers`; empty for a plain GET.
    request: String,
}

/// What `wrk` measured, from the `done` hook of our script.
#[derive(Debug, Clone, Default, PartialEq)]
struct Measured {
    requests: u64,
    duration_us: u64,
    /// Responses with a status of 400 or more (wrk's "Non-2xx or 3xx responses").
    status_errors: u64,
    socket_errors: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
}

impl Measured {
    fn per_second(&self) -> f64 {
        if self.duration_us == 0 {
            return 0.0;
        }
        self.requests as f64 * 1e6 / self.duration_us as f64
    }
}

/// Reports what is done in `done`: one line wrk prints after the run.
const DONE_HOOK: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "gatehouse-bench requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#;

fn parse_measured(output: &str) -> Option<Measured> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse-bench "))?;
    let mut m = Measured::default();
    for pair in line.split_whitespace() {
        let (name, value) = pair.split_once('=')?;
        let int = || value.parse::<u64>().ok();
        let float = || value.parse::<f64>().ok();
        match name {
            "requests" => m.requests = int()?,
            "duration_us" => m.duration_us = int()?,
            "status_errors" => m.status_errors = int()?,
            "socket_errors" => m.socket_errors = int()?,
            "p50_us" => m.p50_us = float()?,
            "p90_us" => m.p90_us = float()?,
            "p99_us" => m.p99_us = float()?,
            "max_us" => m.max_us = float()?,
            _ => {}
        }
    }
    Some(m)
}

/// Removes the temporary directory however the run ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = env::temp_dir().join(format!(
            "gatehouse-bench-{}-{nanos:08x}",
            std::process::id()
        ));
        fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The server under load; stopped (SIGTERM, then SIGKILL) however the run ends.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fail(message: impl AsRef<str>) -> Failed {
    eprintln!("bench: {}", message.as_ref());
    Failed(1)
}

/// The token endpoint load run (see the module documentation).
pub(crate) fn token_load() -> Outcome {
    eprintln!("\n== token endpoint load run (wrk) ==");
    if !ensure_wrk() {
        return Ok(());
    }
    let binary = match env::var_os("GATEHOUSE_BENCH_SERVER") {
        Some(path) => PathBuf::from(path),
        None => build_server()?,
    };
    let dir = TempDir::new().map_err(|e| fail(format!("temporary directory: {e}")))?;
    let addr = free_addr()?;
    let server = start_server(&binary, &dir.0, addr)?;
    let secret = create_client(&binary, &dir.0)?;
    let authorization = format!(
        "Basic {}",
        base64(format!("{}:{}", form_encode(CLIENT_ID), form_encode(&secret)).as_bytes())
    );
    let endpoints = [
        Endpoint {
            label: "POST /oauth2/token (client_credentials)",
            path: "/oauth2/token",
            request: format!(
                "wrk.method = \"POST\"\n\
                 wrk.body = \"grant_type=client_credentials\"\n\
                 wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
                 wrk.headers[\"Authorization\"] = \"{authorization}\"\n"
            ),
        },
        Endpoint {
            label: "GET /jwks",
            path: "/jwks",
            request: String::new(),
        },
        Endpoint {
            label: "GET /.well-known/oauth-authorization-server",
            path: "/.well-known/oauth-authorization-server",
            request: String::new(),
        },
    ];
    // One request of each by hand first: a wrong setup fails with its reason, not as
    // a wall of non-2xx counts.
    check_token_response(addr, &authorization).map_err(|e| {
        fail(format!(
            "token request failed: {e}\nserver log:\n{}",
            server.log_tail()
        ))
    })?;
    for endpoint in &endpoints[1..] {
        let (status, body) = http(addr, &get_request(addr, endpoint.path))
            .map_err(|e| fail(format!("{}: {e}", endpoint.label)))?;
        if status != 200 {
            return Err(fail(format!("{}: status {status}: {body}", endpoint.label)));
        }
    }

    let mut results = Vec::new();
    for endpoint in &endpoints {
        let script = dir.0.join(format!(
            "{}.lua",
            endpoint
                .path
                .trim_start_matches('/')
                .replace(['/', '.'], "_")
        ));
        fs::write(&script, format!("{}{DONE_HOOK}", endpoint.request))
            .map_err(|e| fail(format!("write {}: {e}", script.display())))?;
        let url = format!("http://{addr}{}", endpoint.path);
        let warm = wrk(&script, &url, WARM_UP_SECS, false)?;
        let measured = wrk(&script, &url, MEASURE_SECS, true)?;
        for (phase, m) in [("warm-up", &warm), ("measured run", &measured)] {
            if m.status_errors > 0 || m.socket_errors > 0 {
                return Err(fail(format!(
                    "{}: {phase} had {} error responses and {} socket errors; server log:\n{}",
                    endpoint.label,
                    m.status_errors,
                    m.socket_errors,
                    server.log_tail()
                )));
            }
        }
        results.push((endpoint.label, measured));
    }
    drop(server);

    println!("{}", summary(&results));
    Ok(())
}

fn summary(results: &[(&str, Measured)]) -> String {
    let mut out = format!(
        "\ntoken endpoint load: wrk -t{THREADS} -c{CONNECTIONS}, {MEASURE_SECS} s each after a \
         {WARM_UP_SECS} s warm-up; release build, SQLite, loopback, wrk on the same machine\n\n\
         {:<46} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
        "endpoint", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for (label, m) in results {
        let _ = writeln!(
            out,
            "{label:<46} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            m.per_second(),
            m.p50_us / 1000.0,
            m.p90_us / 1000.0,
            m.p99_us / 1000.0,
            m.max_us / 1000.0,
            m.status_errors + m.socket_errors
        );
    }
    if let Some((_, token)) = results.first() {
        let met =
            token.per_second() >= TARGET_TOKENS_PER_SEC && token.p99_us / 1000.0 < TARGET_P99_MS;
        let _ = writeln!(
            out,
            "\ntarget (>= {TARGET_TOKENS_PER_SEC:.0} token responses/s, p99 < {TARGET_P99_MS} ms): {}",
            if met { "met" } else { "NOT met" }
        );
    }
    out
}

/// Whether `wrk` can be run, installing it (Debian package) when we may.
fn ensure_wrk() -> bool {
    if has_wrk() {
        return true;
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let has_apt = Command::new("apt-get")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if is_root && has_apt {
        eprintln!("wrk is not installed; installing the Debian package");
        let install = || {
            let mut cmd = Command::new("apt-get");
            cmd.args(["install", "-y", "--no-install-recommends", "wrk"])
                .env("DEBIAN_FRONTEND", "noninteractive");
            run(&mut cmd).is_ok()
        };
        // Package lists may be missing (slim images) or stale: update once on failure.
        if !install() {
            let _ = run(Command::new("apt-get").arg("update"));
            install();
        }
        if has_wrk() {
            return true;
        }
    }
    eprintln!(
        "warning: `wrk` is not installed{}, so the token endpoint load run is skipped. \
         Install it (Debian/Ubuntu: `apt-get install wrk`) and run `cargo xtask bench-token`.",
        if is_root {
            " and could not be installed"
        } else {
            " (installing it needs root)"
        }
    );
    false
}

fn has_wrk() -> bool {
    // `wrk -v` prints its version and exits non-zero; being able to start it is enough.
    Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Builds `gatehouse` in release and returns the binary's path (from cargo's JSON
/// messages, so `CARGO_TARGET_DIR` and `build.target-dir` are honoured).
fn build_server() -> Result<PathBuf, Failed> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "gatehouse-server",
        "--bin",
        "gatehouse",
        "--message-format=json-render-diagnostics",
    ])
    .stderr(Stdio::inherit());
    eprintln!("$ {}", display(&cmd));
    let out = cmd
        .output()
        .map_err(|e| fail(format!("failed to start cargo: {e}")))?;
    if !out.status.success() {
        return Err(fail("building the server failed"));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.contains(r#""reason":"compiler-artifact""#) && l.contains(r#""name":"gatehouse""#)
        })
        .find_map(|l| json_string_after(l, r#""executable":"#))
        .map(PathBuf::from)
        .ok_or_else(|| fail("cargo named no `gatehouse` executable"))
}

/// The JSON string value following `key` in `line` (escapes decoded), if it is one.
fn json_string_after(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut value = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
}

fn free_addr() -> Result<SocketAddr, Failed> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| fail(format!("no free port: {e}")))
}

/// `gatehouse` in `dir` with a clean GATEHOUSE_* environment.
fn gatehouse(binary: &Path, dir: &Path, addr: SocketAddr) -> Command {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir);
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("GATEHOUSE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("GATEHOUSE_SERVER__LISTEN", addr.to_string())
        .env("GATEHOUSE_LOG__LEVEL", "warn");
    // GATEHOUSE_BENCH_SERVER_ENV="KEY=VALUE …": settings for the measured server
    // (and its CLI runs), e.g. `GATEHOUSE_PDP__SUBJECT_CACHE_MS=5000`.
    if let Ok(extra) = env::var("GATEHOUSE_BENCH_SERVER_ENV") {
        for pair in extra.split_whitespace() {
            if let Some((key, value)) = pair.split_once('=') {
                cmd.env(key, value);
            }
        }
    }
    cmd
}

fn start_server(binary: &Path, dir: &Path, addr: SocketAddr) -> Result<Server, Failed> {
    let log = dir.join("server.log");
    let file = fs::File::create(&log).map_err(|e| fail(format!("{}: {e}", log.display())))?;
    let stderr = file
        .try_clone()
        .map_err(|e| fail(format!("{}: {e}", log.display())))?;
    let mut cmd = gatehouse(binary, dir, addr);
    cmd.arg("serve").stdout(file).stderr(stderr);
    eprintln!("$ {} (in {})", display(&cmd), dir.display());
    let child = cmd
        .spawn()
        .map_err(|e| fail(format!("failed to start the server: {e}")))?;
    let mut server = Server { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = get_request(addr, "/readyz");
    loop {
        if let Ok((200, _)) = http(addr, &probe) {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(fail(format!(
                "the server exited ({status}):\n{}",
                server.log_tail()
            )));
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "the server was not ready within 30 s:\n{}",
                server.log_tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Registers the benchmark's confidential client; returns its secret.
fn create_client(binary: &Path, dir: &Path) -> Result<String, Failed> {
    create_client_for(binary, dir, CLIENT_ID, SCOPE)
}

/// Registers a confidential client_credentials client; returns its secret.
fn create_client_for(
    binary: &Path,
    dir: &Path,
    client_id: &str,
    scope: &str,
) -> Result<String, Failed> {
    // The CLI opens the same SQLite file; the listen address is not used.
    let mut cmd = gatehouse(binary, dir, SocketAddr::from(([127, 0, 0, 1], 0)));
    cmd.args([
        "clients",
        "create",
        "--name",
        client_id,
        "--client-id",
        client_id,
        "--grant",
        "client_credentials",
        "--scope",
        scope,
        "--audience",
        AUDIENCE,
    ]);
    eprintln!("$ {}", display(&cmd));
    let out = cmd
        .output()
        .map_err(|e| fail(format!("failed to run gatehouse clients create: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(fail(format!(
            "gatehouse clients create failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail(format!("no `client_secret:` line in:\n{stdout}")))
}

fn check_token_response(addr: SocketAddr, authorization: &str) -> Result<(), String> {
    let body = "grant_type=client_credentials";
    let request = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = http(addr, &request).map_err(|e| e.to_string())?;
    if status != 200 || !body.contains(r#""access_token":""#) {
        return Err(format!("status {status}: {body}"));
    }
    Ok(())
}

fn get_request(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// One HTTP/1.1 exchange over a fresh connection: the status and the raw body.
fn http(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// Runs wrk; prints its report for the measured run.
fn wrk(script: &Path, url: &str, secs: u32, report: bool) -> Result<Measured, Failed> {
    wrk_with(script, url, secs, CONNECTIONS, report)
}

fn wrk_with(
    script: &Path,
    url: &str,
    secs: u32,
    connections: u32,
    report: bool,
) -> Result<Measured, Failed> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{THREADS}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url);
    if report {
        eprintln!("$ {}", display(&cmd));
    }
    let out = cmd
        .output()
        .map_err(|e| fail(format!("failed to start wrk: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(fail(format!(
            "wrk failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    if report {
        print!("{stdout}");
    }
    parse_measured(&stdout).ok_or_else(|| fail(format!("no result line from wrk:\n{stdout}")))
}

// ---------------------------------------------------------------------------
// The PDP load run

const PEP_ID: &str = "bench-pep";
const PDP_SCOPE: &str = "authzen:evaluate";
const PDP_USERS: usize = 1000;
const PDP_BODIES: usize = 4096;
const PDP_CONNECTIONS: [u32; 6] = [2, 4, 8, 16, 32, 64];
/// The PDP's budget on a 2-core machine (issue #6, docs/benchmarks.md).
const TARGET_DECISIONS_PER_SEC: f64 = 20_000.0;
const TARGET_PDP_P99_MS: f64 = 2.0;
const ACTIONS: [(&str, u32); 12] = [
    ("read", 40),
    ("list", 20),
    ("update", 10),
    ("create", 5),
    ("export", 5),
    ("share", 5),
    ("approve", 4),
    ("delete", 3),
    ("manage", 2),
    ("import", 2),
    ("invoke", 2),
    ("transfer", 2),
];
const RESOURCE_TYPES: [&str; 10] = [
    "document", "invoice", "ticket", "project", "report", "customer", "contract", "payroll",
    "asset", "order",
];
const DEPARTMENTS: [&str; 6] = ["sales", "finance", "support", "engineering", "legal", "hr"];

/// xorshift64: the same request mix on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// AuthZEN evaluation bodies about the seeded users (3 % about unknown ones), with
/// the action mix above, ten resource types, and contexts that trip each kind of
/// forbid now and then (step-up, risk, device, network, purpose without consent).
fn evaluation_bodies(users: &[String], count: usize, now: u64) -> Vec<String> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let total: u32 = ACTIONS.iter().map(|(_, w)| w).sum();
    (0..count)
        .map(|_| {
            let user = if rng.below(100) < 3 {
                format!("0190a000-0000-7000-8000-{:012x}", rng.below(1 << 40))
            } else {
                users[rng.below(users.len() as u64) as usize].clone()
            };
            let mut roll = rng.below(u64::from(total)) as u32;
            let action = ACTIONS
                .iter()
                .find(|(_, w)| {
                    if roll < *w {
                        true
                    } else {
                        roll -= w;
                        false
                    }
                })
                .map_or("read", |(name, _)| name);
            let kind = rng.pick(&RESOURCE_TYPES);
            let owner = if rng.below(10) == 0 { user.as_str() } else { "someone-else" };
            let sensitivity = if rng.below(20) == 0 { "secret" } else { "internal" };
            let department = rng.pick(&DEPARTMENTS);
            let acr = 1 + rng.below(3);
            let auth_time = now.saturating_sub(rng.below(3600));
            let ip = if rng.below(10) < 7 { "10.1.2.3" } else { "192.0.2.10" };
            let device = if rng.below(10) == 0 { "unmanaged" } else { "managed" };
            let risk = rng.below(10) * rng.below(10);
            let purpose = if rng.below(10) < 6 {
                r#","purpose":"analytics""#
            } else {
                ""
            };
            format!(
                r#"{{"subject":{{"type":"user","id":"{user}"}},"action":{{"name":"{action}"}},"resource":{{"type":"{kind}","id":"r-{}","properties":{{"owner":"{owner}","department":"{department}","sensitivity":"{sensitivity}"}}}},"context":{{"acr":"urn:gatehouse:aal{acr}","auth_time":{auth_time},"ip":"{ip}","device":"{device}","risk_score":{risk}{purpose}}}}}"#,
                rng.below(100_000)
            )
        })
        .collect()
}

/// The wrk script: every request the next body of the list (each thread starting
/// somewhere else), with the PEP's bearer token.
fn pdp_script(bodies: &[String], token: &str) -> String {
    let mut lua = String::from("local bodies = {\n");
    for body in bodies {
        let _ = writeln!(lua, "[==[{body}]==],");
    }
    let _ = write!(
        lua,
        "}}\n\
         wrk.method = \"POST\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n\
         local next_body = 0\n\
         init = function(args) math.randomseed(os.time() + math.random(1000)); next_body = math.random(#bodies) end\n\
         request = function()\n  next_body = next_body % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[next_body])\nend\n"
    );
    lua
}

/// A client_credentials token for the PEP.
fn pep_token(addr: SocketAddr, secret: &str) -> Result<String, String> {
    let authorization = format!(
        "Basic {}",
        base64(format!("{}:{}", form_encode(PEP_ID), form_encode(secret)).as_bytes())
    );
    let body = format!("grant_type=client_credentials&scope={PDP_SCOPE}");
    let request = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = http(addr, &request).map_err(|e| e.to_string())?;
    let token = body
        .split_once(r#""access_token":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(token, _)| token.to_owned());
    match token {
        Some(token) if status == 200 => Ok(token),
        _ => Err(format!("status {status}: {body}")),
    }
}

fn evaluation_request(addr: SocketAddr, token: &str, body: &str) -> String {
    format!(
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The decision mix of `bodies`, asked one by one: permits, and denials per reason.
fn decision_mix(
    addr: SocketAddr,
    token: &str,
    bodies: &[String],
) -> Result<(usize, Vec<(String, usize)>), String> {
    let mut permits = 0;
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for body in bodies {
        let (status, answer) =
            http(addr, &evaluation_request(addr, token, body)).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("status {status}: {answer}\nrequest: {body}"));
        }
        if answer.contains(r#""decision":true"#) {
            permits += 1;
            continue;
        }
        let reason = answer
            .split_once(r#""reason":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("?", |(reason, _)| reason)
            .to_owned();
        match reasons.iter_mut().find(|(known, _)| *known == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason, 1)),
        }
    }
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    Ok((permits, reasons))
}

/// Seeds users, roles, groups and consents (`crates/consent/benches/pdp_seed.rs`,
/// through the store's own repositories); returns the users' ids.
fn seed_pdp_users(dir: &Path) -> Result<Vec<String>, Failed> {
    let url = format!(
        "sqlite://{}",
        dir.join("gatehouse-data").join("gatehouse.db").display()
    );
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "-p",
        "gatehouse-consent",
        "--bench",
        "pdp_seed",
        "--",
        &url,
        "default",
        PEP_ID,
        &PDP_USERS.to_string(),
    ])
    .stderr(Stdio::inherit());
    eprintln!("$ {}", display(&cmd));
    let out = cmd
        .output()
        .map_err(|e| fail(format!("failed to start cargo: {e}")))?;
    if !out.status.success() {
        return Err(fail("seeding the PDP's users failed"));
    }
    let users: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("user "))
        .map(str::to_owned)
        .collect();
    if users.len() != PDP_USERS {
        return Err(fail(format!("the seed printed {} users", users.len())));
    }
    Ok(users)
}

/// The PDP load run: `POST /access/v1/evaluation` with a realistic policy set
/// (`crates/consent/benches/realistic.cedar`, 49 policies), 1,000 seeded users and
/// a mix of permits and denials, at several connection counts.
pub(crate) fn pdp_load() -> Outcome {
    eprintln!("\n== PDP load run (wrk) ==");
    if !ensure_wrk() {
        return Ok(());
    }
    let binary = match env::var_os("GATEHOUSE_BENCH_SERVER") {
        Some(path) => PathBuf::from(path),
        None => build_server()?,
    };
    let dir = TempDir::new().map_err(|e| fail(format!("temporary directory: {e}")))?;
    let addr = free_addr()?;
    let server = start_server(&binary, &dir.0, addr)?;
    let secret = create_client_for(&binary, &dir.0, PEP_ID, PDP_SCOPE)?;
    let policies = crate::workspace_root().join("crates/consent/benches/realistic.cedar");
    let mut load = gatehouse(&binary, &dir.0, SocketAddr::from(([127, 0, 0, 1], 0)));
    load.arg("policy").arg("load").arg(&policies);
    run(&mut load)?;
    let users = seed_pdp_users(&dir.0)?;
    let token = pep_token(addr, &secret).map_err(|e| {
        fail(format!(
            "token request failed: {e}\nserver log:\n{}",
            server.log_tail()
        ))
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bodies = evaluation_bodies(&users, PDP_BODIES, now);
    // GATEHOUSE_BENCH_BATCH=N: every request asks N decisions about one subject at
    // `/access/v1/evaluations` (a PEP rendering a page of N items); decisions/s counts
    // decisions, not requests.
    let batch = env::var("GATEHOUSE_BENCH_BATCH")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 1);
    let (permits, reasons) = decision_mix(addr, &token, &bodies[..400]).map_err(|e| {
        fail(format!(
            "evaluation failed: {e}\nserver log:\n{}",
            server.log_tail()
        ))
    })?;
    let script = dir.0.join("evaluation.lua");
    let (sent, url, per_request) = match batch {
        Some(n) => (
            batches(&bodies, n),
            format!("http://{addr}/access/v1/evaluations"),
            n,
        ),
        None => (
            bodies.clone(),
            format!("http://{addr}/access/v1/evaluation"),
            1,
        ),
    };
    fs::write(&script, format!("{}{DONE_HOOK}", pdp_script(&sent, &token)))
        .map_err(|e| fail(format!("write {}: {e}", script.display())))?;
    let pid = server.child.id();
    // GATEHOUSE_BENCH_PERF=<file>: a `perf record -g` of the server during the
    // measured run at 32 connections, for `perf report -i <file>`.
    let perf_out = env::var_os("GATEHOUSE_BENCH_PERF").map(PathBuf::from);
    let mut results = Vec::new();
    for connections in PDP_CONNECTIONS {
        let warm = wrk_with(&script, &url, WARM_UP_SECS, connections, false)?;
        let perf = match &perf_out {
            Some(out) if connections == 32 => Command::new("perf")
                .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
                .arg(out)
                .args(["--", "sleep", &MEASURE_SECS.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok(),
            _ => None,
        };
        let cpu_before = cpu_ticks(pid);
        let measured = wrk_with(&script, &url, MEASURE_SECS, connections, true)?;
        let cpu = cpu_ticks(pid).saturating_sub(cpu_before);
        if let Some(mut perf) = perf {
            let _ = perf.wait();
        }
        for (phase, m) in [("warm-up", &warm), ("measured run", &measured)] {
            if m.status_errors > 0 || m.socket_errors > 0 {
                return Err(fail(format!(
                    "{connections} connections: {phase} had {} error responses and {} socket errors; server log:\n{}",
                    m.status_errors,
                    m.socket_errors,
                    server.log_tail()
                )));
            }
        }
        // Clock ticks are 10 ms (USER_HZ = 100 on Linux).
        let decisions = measured.requests.max(1) * per_request as u64;
        let cpu_us = (cpu * 10_000) as f64 / decisions as f64;
        results.push((connections, measured, cpu_us));
    }
    // Where the requests were answered (the server's own counter).
    if let Ok((200, metrics)) = http(addr, &get_request(addr, "/metrics")) {
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("gatehouse_pdp_requests"))
        {
            println!("{line}");
        }
    }
    // How many threads the server ended up with (HTTP workers, blocking pool, …).
    let threads = fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    println!("server threads after the load: {threads}");
    let dropped = fs::read_to_string(&server.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("decision log"))
        .count();
    drop(server);
    println!(
        "{}",
        pdp_summary(&results, per_request, permits, &reasons, dropped)
    );
    Ok(())
}

/// `bodies` regrouped as Access Evaluations requests of `n` entries each, every
/// entry about the subject of the group's first body. (Text surgery on the bodies
/// `evaluation_bodies` writes: `{"subject":{…},"action":…}`; xtask has no JSON
/// library.)
fn batches(bodies: &[String], n: usize) -> Vec<String> {
    const SUBJECT: &str = r#"{"subject":"#;
    let split = |body: &str| -> Option<(String, String)> {
        let end = body.find(r#"},"action":"#)?;
        let subject = body.get(SUBJECT.len()..=end)?.to_owned();
        Some((subject, format!("{{{}", body.get(end + 2..)?)))
    };
    bodies
        .chunks(n)
        .filter_map(|group| {
            let parts: Vec<(String, String)> = group.iter().filter_map(|b| split(b)).collect();
            let subject = parts.first()?.0.clone();
            let entries: Vec<&str> = parts.iter().map(|(_, entry)| entry.as_str()).collect();
            Some(format!(
                r#"{{"subject":{subject},"evaluations":[{}]}}"#,
                entries.join(",")
            ))
        })
        .collect()
}

/// The server's user + system CPU time so far, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    field(11) + field(12)
}

fn pdp_summary(
    results: &[(u32, Measured, f64)],
    per_request: usize,
    permits: usize,
    reasons: &[(String, usize)],
    log_warnings: usize,
) -> String {
    let asked = permits + reasons.iter().map(|(_, n)| n).sum::<usize>();
    let endpoint = if per_request > 1 {
        format!("POST /access/v1/evaluations with {per_request} decisions per request")
    } else {
        "POST /access/v1/evaluation".to_owned()
    };
    let mut out = format!(
        "\nPDP load: {endpoint}, wrk -t{THREADS}, {MEASURE_SECS} s per connection \
         count after a {WARM_UP_SECS} s warm-up; release build, SQLite, loopback, wrk on the same \
         machine; {PDP_USERS} users, {PDP_BODIES} request bodies, crates/consent/benches/realistic.cedar\n\
         decision mix of the first {asked} bodies: {permits} permits",
    );
    for (reason, n) in reasons {
        let _ = write!(out, ", {n} {reason}");
    }
    let _ = writeln!(
        out,
        "\n\n{:>11} {:>12} {:>9} {:>9} {:>9} {:>9} {:>16}",
        "connections", "decisions/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "server CPU µs/op"
    );
    for (connections, m, cpu_us) in results {
        let _ = writeln!(
            out,
            "{connections:>11} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {cpu_us:>16.0}",
            m.per_second() * per_request as f64,
            m.p50_us / 1000.0,
            m.p90_us / 1000.0,
            m.p99_us / 1000.0,
            m.max_us / 1000.0,
        );
    }
    let met = results.iter().any(|(_, m, _)| {
        m.per_second() * per_request as f64 >= TARGET_DECISIONS_PER_SEC
            && m.p99_us / 1000.0 < TARGET_PDP_P99_MS
    });
    let _ = writeln!(
        out,
        "\ntarget (>= {TARGET_DECISIONS_PER_SEC:.0} decisions/s with p99 < {TARGET_PDP_P99_MS} ms at one connection count): {}",
        if met { "met" } else { "NOT met" }
    );
    if log_warnings > 0 {
        let _ = writeln!(
            out,
            "the server logged {log_warnings} decision-log warnings (queue full: records dropped)"
        );
    }
    out
}

/// `application/x-www-form-urlencoded` for a Basic credential (RFC 6749 §2.3.1).
fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'*') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `args` (before any `--`) hold `flag`; returns the args without it.
pub(crate) fn take_flag(args: &[OsString], flag: &str) -> (Vec<OsString>, bool) {
    let ours = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (head, tail) = args.split_at(ours);
    let found = head.iter().any(|a| a == flag);
    let kept = head
        .iter()
        .filter(|a| *a != flag)
        .chain(tail)
        .cloned()
        .collect();
    (kept, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn form_encoding_keeps_unreserved_characters() {
        assert_eq!(form_encode("abc-_.XYZ09"), "abc-_.XYZ09");
        assert_eq!(form_encode("a b:c/é"), "a%20b%3Ac%2F%C3%A9");
    }

    #[test]
    fn wrk_result_line_parses() {
        let output = "Running 5s test\n  Latency ...\ngatehouse-bench requests=100000 \
            duration_us=5000000 status_errors=0 socket_errors=0 p50_us=1200.0 p90_us=2000.5 \
            p99_us=4100.0 max_us=9000.0\n";
        let m = parse_measured(output).unwrap();
        assert_eq!(
            (m.requests, m.status_errors, m.socket_errors),
            (100_000, 0, 0)
        );
        assert!((m.per_second() - 20_000.0).abs() < 1e-6);
        assert!((m.p99_us - 4100.0).abs() < 1e-9);
        assert_eq!(parse_measured("no result"), None);
    }

    #[test]
    fn executable_path_is_read_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"gatehouse"},"executable":"/t/release/a \"b\"\\gatehouse","fresh":true}"#;
        assert_eq!(
            json_string_after(line, r#""executable":"#).as_deref(),
            Some(r#"/t/release/a "b"\gatehouse"#)
        );
        assert_eq!(
            json_string_after(r#"{"executable":null}"#, r#""executable":"#),
            None
        );
    }

    #[test]
    fn evaluation_bodies_are_authzen_requests_with_a_mix_of_actions() {
        let users = vec!["0190a000-0000-7000-8000-000000000001".to_owned()];
        let bodies = evaluation_bodies(&users, 500, 1_700_000_000);
        let mut actions = std::collections::BTreeSet::new();
        for body in &bodies {
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value["subject"]["type"], "user");
            assert!(value["resource"]["properties"]["owner"].is_string());
            assert!(value["context"]["risk_score"].as_u64().unwrap() < 100);
            actions.insert(value["action"]["name"].as_str().unwrap().to_owned());
        }
        assert_eq!(actions.len(), ACTIONS.len(), "every action is asked");
        assert_eq!(bodies, evaluation_bodies(&users, 500, 1_700_000_000));
        let script = pdp_script(&bodies[..2], "tok");
        assert!(script.contains("Bearer tok") && script.contains(&bodies[1]));
    }

    #[test]
    fn batches_are_access_evaluations_requests_about_the_first_subject() {
        let users = vec![
            "0190a000-0000-7000-8000-000000000001".to_owned(),
            "0190a000-0000-7000-8000-000000000002".to_owned(),
        ];
        let bodies = evaluation_bodies(&users, 10, 1_700_000_000);
        let grouped = batches(&bodies, 4);
        assert_eq!(grouped.len(), 3, "4 + 4 + 2");
        let first: serde_json::Value = serde_json::from_str(&grouped[0]).unwrap();
        let single: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(first["subject"], single["subject"]);
        let entries = first["evaluations"].as_array().unwrap();
        assert_eq!(entries.len(), 4);
        for (entry, body) in entries.iter().zip(&bodies) {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(entry["action"], body["action"]);
            assert_eq!(entry["resource"], body["resource"]);
            assert_eq!(entry["context"], body["context"]);
            assert!(entry.get("subject").is_none());
        }
        let last: serde_json::Value = serde_json::from_str(&grouped[2]).unwrap();
        assert_eq!(last["evaluations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn flags_are_taken_only_before_a_double_dash() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            take_flag(&args(&["--no-load", "--bench", "users"]), "--no-load"),
            (args(&["--bench", "users"]), true)
        );
        assert_eq!(
            take_flag(&args(&["--", "--no-load"]), "--no-load"),
            (args(&["--", "--no-load"]), false)
        );
    }
}
