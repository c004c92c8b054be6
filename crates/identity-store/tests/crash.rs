//! Durability under `kill -9`: a process killed in the middle of a burst of user
//! creations loses no write it acknowledged, on SQLite and on PostgreSQL.
//!
//! Each test prepares a database and a tenant, then re-executes this very test
//! binary as a child process that runs only [`crash_writer_child`]. The child
//! creates users forever and prints `ACK <user id> <userName>` after each
//! `users::create` has returned `Ok` (that is, after the transaction committed).
//! The parent reads those lines, sends SIGKILL part-way through the burst, then
//! reopens the database and checks that every acknowledged user is there, intact,
//! and that at most one unacknowledged write per writer (committed, killed before
//! it could print) is there as well.
//!
//! Scope: SIGKILL ends the process, not the machine; the kernel still holds any
//! data the process had handed to it. This proves the store acknowledges only
//! after commit and that both databases recover from a writer dying at any point
//! in a transaction. Power-loss durability rests on SQLite `synchronous = FULL`
//! and PostgreSQL `fsync = on`, which this test cannot observe.
//!
//! The child re-exec uses `<binary> --exact <name> --nocapture --include-ignored`,
//! which works the same whether the parent runs under `cargo test` or
//! `cargo nextest` (nextest runs each test as `<binary> --exact <name>`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::db::{self, ConnectOptions};
use gatehouse_identity_store::testing::TestDb;
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{PageRequest, tenants};

/// The name of the child entry point, as libtest knows it (`--exact`).
const CHILD_TEST: &str = "crash_writer_child";
const ENV_URL: &str = "GATEHOUSE_CRASH_CHILD_DATABASE_URL";
const ENV_TENANT: &str = "GATEHOUSE_CRASH_CHILD_TENANT_ID";
const ENV_WRITERS: &str = "GATEHOUSE_CRASH_CHILD_WRITERS";
/// Acknowledgements to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 200;
/// How long the parent waits for those acknowledgements before giving up.
const PARENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Safety net: a child nobody killed stops on its own (and the parent, seeing an
/// exit instead of SIGKILL, fails).
const CHILD_LIFETIME: Duration = Duration::from_secs(300);
const SIGKILL: i32 = 9;

/// Child-process entry point for the tests below; **not a test of its own**.
///
/// It is `#[ignore]`d so that test runs skip it, and it only does something when a
/// parent test starts it with the database URL and tenant id in the environment:
/// then it creates users until it is killed. Run directly (for example with
/// `--include-ignored`), it has nothing to write to and fails, saying so, rather
/// than passing without having checked anything.
#[test]
#[ignore = "child-process entry point of the kill -9 tests; started by them, not a test itself"]
fn crash_writer_child() {
    let (Ok(url), Ok(tenant)) = (std::env::var(ENV_URL), std::env::var(ENV_TENANT)) else {
        panic!(
            "`{CHILD_TEST}` is only the writer process that the \
             `kill_9_during_a_*_write_burst_*` tests start and then kill; it needs \
             {ENV_URL} and {ENV_TENANT}, which only those tests set. Run those tests instead."
        );
    };
    let tenant = TenantId::from_str(&tenant).expect("tenant id in the environment");
    let writers: u32 = std::env::var(ENV_WRITERS)
        .ok()
        .map(|w| w.parse().expect("writer count in the environment"))
        .unwrap_or(1);

    let mut options = ConnectOptions::new(url);
    options.pool_size = writers;
    let pool = db::pool(&options).expect("child database pool");
    let started = Instant::now();

    let handles: Vec<_> = (0..writers)
        .map(|writer| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut conn = pool.get().expect("child database connection");
                for seq in 0u64.. {
                    if started.elapsed() > CHILD_LIFETIME {
                        eprintln!("crash writer: never killed within {CHILD_LIFETIME:?}");
                        std::process::exit(3);
                    }
                    let user_name = format!("crash-{writer}-{seq}");
                    let data = UserData {
                        emails: vec![Email {
                            value: format!("{user_name}@example.test"),
                            kind: Some("work".into()),
                            primary: true,
                            verified: false,
                        }],
                        ..UserData::new(user_name.as_str())
                    };
                    let user = match users::create(&mut conn, SystemClock.now(), tenant, data) {
                        Ok(user) => user,
                        Err(e) => {
                            eprintln!("crash writer {writer}: create {user_name} failed: {e}");
                            std::process::exit(2);
                        }
                    };
                    // Committed: acknowledge it. One locked write per line, so lines
                    // from several writers never interleave.
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "ACK {} {user_name}", user.id)
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        // The parent is gone; nobody is listening.
                        std::process::exit(4);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("writer thread");
    }
}

/// Kills the child if the parent test fails before it meant to.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
struct Ack {
    id: UserId,
    user_name: String,
}

fn kill_writers_mid_burst(db: &TestDb, writers: u32) {
    let tenant = tenants::create(
        &mut db.conn(),
        SystemClock.now(),
        tenants::TenantData {
            slug: "crash".into(),
            display_name: "Crash test".into(),
            ..tenants::TenantData::default()
        },
    )
    .unwrap()
    .id;

    let exe = std::env::current_exe().expect("path of this test binary");
    let mut child = KillOnDrop(
        Command::new(exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
            .env(ENV_URL, &db.url)
            .env(ENV_TENANT, tenant.to_string())
            .env(ENV_WRITERS, writers.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the writer process"),
    );

    // Only complete `ACK` lines count: libtest prints its own lines on the same
    // stdout, and a line cut off by the kill was never fully acknowledged.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Ack>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 || !line.ends_with('\n') {
                return;
            }
            if let Some(rest) = line.trim_end().strip_prefix("ACK ") {
                let (id, user_name) = rest.split_once(' ').expect("ACK <id> <userName>");
                let ack = Ack {
                    id: id.parse().expect("user id in ACK"),
                    user_name: user_name.to_owned(),
                };
                if tx.send(ack).is_err() {
                    return;
                }
            }
        }
    });
    let mut stderr = child.0.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = Instant::now() + PARENT_TIMEOUT;
    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                let _ = child.0.kill();
                let _ = child.0.wait();
                panic!(
                    "the writer acknowledged only {} users ({e}); its stderr:\n{}",
                    acks.len(),
                    stderr.join().unwrap()
                );
            }
        }
    }

    // Mid-burst: the writer is still running (it never stops by itself) when the
    // signal lands. A random pause of up to about one create moves the kill across
    // every phase of a transaction from one run to the next.
    std::thread::sleep(Duration::from_micros(rand::random_range(0..2_000)));
    let still_running = child.0.try_wait().unwrap().is_none();
    child.0.kill().expect("SIGKILL the writer");
    let status = child.0.wait().unwrap();
    // Everything the writer printed before it died is an acknowledgement too.
    reader.join().unwrap();
    acks.extend(rx.iter());
    let stderr = stderr.join().unwrap();
    assert!(
        still_running && status.signal() == Some(SIGKILL),
        "the writer had to be killed mid-burst, but it ended with {status}; its stderr:\n{stderr}"
    );

    // A fresh connection, not one the writer or the test's pool used.
    let mut conn = db::connect(&ConnectOptions::new(&db.url)).expect("reopen the database");
    let mut names = HashSet::new();
    for ack in &acks {
        let user = users::get(&mut conn, tenant, ack.id)
            .unwrap_or_else(|e| panic!("acknowledged user {} is lost: {e}", ack.user_name));
        assert_eq!(user.data.user_name, ack.user_name);
        assert_eq!(
            user.primary_email().map(|e| e.value.as_str()),
            Some(format!("{}@example.test", ack.user_name).as_str())
        );
        assert!(names.insert(ack.user_name.clone()), "acknowledged twice");
    }

    // Beyond the acknowledged users there can only be those committed but not yet
    // printed when the signal landed: at most one per writer. Each of them must be
    // whole too (user row and email committed together, or neither).
    let count = users::count(&mut conn, tenant).unwrap();
    let acked = acks.len() as i64;
    assert!(
        (acked..=acked + i64::from(writers)).contains(&count),
        "{acked} users acknowledged, {count} stored (at most {writers} unacknowledged expected)"
    );
    let mut page = PageRequest::first(500);
    let mut seen = 0;
    loop {
        let result = users::list(&mut conn, tenant, &page).unwrap();
        for user in &result.items {
            let email = user
                .primary_email()
                .expect("every stored user has its email");
            assert_eq!(email.value, format!("{}@example.test", user.data.user_name));
        }
        seen += result.items.len() as i64;
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 500),
            None => break,
        }
    }
    assert_eq!(seen, count);
    eprintln!(
        "{:?}: {writers} writer(s) killed after {acked} acknowledged users; {count} stored",
        db.backend
    );
}

gatehouse_identity_store::backend_tests! {
    fn kill_9_during_a_write_burst_loses_no_acknowledged_user(db) {
        kill_writers_mid_burst(db, 1);
    }

    fn kill_9_during_a_concurrent_write_burst_loses_no_acknowledged_user(db) {
        kill_writers_mid_burst(db, 4);
    }
}
