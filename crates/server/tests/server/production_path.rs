//! The production path: PostgreSQL under concurrency, two nodes, database faults
//! played by a TCP proxy, and start-up refusing keys that cannot open the data.

use std::time::{Duration, Instant};

use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::testing::fault_proxy::{Fault, FaultProxy};
use gatehouse_identity_store::testing::{TestDb, pg_admin_url, with_database};

use crate::oauth::{SECRET, register};
use crate::support::*;
use crate::web_kit::{WebApp, basic};

const PASSWORD: &str = "violet-harbor-quilt-97-lantern";
const IN_FLIGHT: usize = 64;

/// Runs `work(i)` for every `i` in `0..n` on `n` threads at once, released together.
fn all_at_once<T: Send>(n: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (start, work) = (&start, &work);
                scope.spawn(move || {
                    start.wait();
                    work(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn email(i: usize) -> String {
    format!("user{i}@example.com")
}

#[test]
fn sixty_four_concurrent_signups_signins_and_token_requests_on_postgres() {
    // The default pool (8 connections), as an operator would run it.
    let app = WebApp::start_with(Backend::Postgres, |config| {
        config.database.pool_size = gatehouse_core::config::DatabaseConfig::default().pool_size;
        config.server.workers = 4;
        // Every browser here comes from 127.0.0.1: let each of them have its mail.
        config.registration.signup_mails_per_ip_hour = IN_FLIGHT as _;
    });
    let second = app.start_node();
    let mut heard_elsewhere = second.state.events.subscribe();

    let signed_up = all_at_once(IN_FLIGHT, |i| {
        let done = app.browser().sign_up("/signup", &email(i), PASSWORD);
        (done.status, done.body)
    });
    for (status, body) in &signed_up {
        assert_eq!(*status, 200, "{body}");
    }

    // Every sign-up's event reached the other node.
    let mut users = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while users.len() < IN_FLIGHT {
        assert!(
            Instant::now() < deadline,
            "the other node heard {} of {IN_FLIGHT} sign-ups",
            users.len()
        );
        match heard_elsewhere.try_next() {
            Some(envelope) => {
                if let DomainEvent::UserChanged { user, .. } = &envelope.event {
                    users.insert(*user);
                }
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let publisher = app.state.event_publisher.as_ref().unwrap().stats();
    assert_eq!(
        (publisher.dropped, publisher.queued),
        (0, 0),
        "{publisher:?}"
    );

    let mails = app.mails(IN_FLIGHT);
    let mut verifier = app.browser();
    for mail in &mails {
        let link = mail
            .find_link(&format!("{}/verify?token=", app.base))
            .unwrap();
        assert_eq!(verifier.get_absolute(&link).status, 200);
    }

    let signed_in = all_at_once(IN_FLIGHT, |i| {
        let done = app.browser().sign_in(&email(i), PASSWORD);
        (done.status, done.body)
    });
    for (status, body) in &signed_in {
        assert_eq!(*status, 303, "{body}");
    }

    register(&app, "default", "reports", "client_secret_basic");
    let http = reqwest::blocking::Client::new();
    let tokens = all_at_once(IN_FLIGHT, |_| {
        let response = http
            .post(format!("{}/oauth2/token", app.base))
            .header("Authorization", basic("reports", SECRET))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    });
    for (status, body) in &tokens {
        assert_eq!(*status, 200, "{body}");
    }
}

/// A server on PostgreSQL reached through `proxy`, with short deadlines.
fn server_behind(proxy: &FaultProxy, db: &TestDb) -> WebApp {
    let url = proxy.url_for(&db.url);
    WebApp::start_with_url(db, url, |config| {
        config.server.request_timeout_ms = 2_000;
        config.server.readiness_timeout_ms = 500;
        config.database.acquire_timeout_ms = 1_000;
        config.database.statement_timeout_ms = 1_000;
        config.database.network_timeout_ms = 2_000;
    })
}

/// GET `path`: status and how long the answer took.
fn timed_get(client: &reqwest::blocking::Client, url: &str) -> (u16, Duration) {
    let start = Instant::now();
    let status = client.get(url).send().unwrap().status().as_u16();
    (status, start.elapsed())
}

fn ready_again(app: &WebApp, client: &reqwest::blocking::Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while timed_get(client, &format!("{}/readyz", app.base)).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never ready again after the fault ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sign_up(app: &WebApp, address: &str) -> (u16, Duration) {
    let mut browser = app.browser();
    let form = browser.get("/signup");
    let start = Instant::now();
    let done = browser.post_form(
        "/signup",
        &form,
        &[("email", address), ("password", PASSWORD)],
    );
    (done.status, start.elapsed())
}

/// Checks an answer `what` got under a fault: within `deadline_secs`, and with one
/// of `statuses` (none listed: any).
fn assert_prompt(
    what: &str,
    (status, took): (u16, Duration),
    statuses: &[u16],
    deadline_secs: u64,
) {
    assert!(
        statuses.is_empty() || statuses.contains(&status),
        "{what} answered {status}"
    );
    assert!(
        took < Duration::from_secs(deadline_secs),
        "{what} took {took:?}"
    );
}

#[test]
fn database_faults_give_prompt_answers_and_heal_without_a_restart() {
    let db = TestDb::postgres();
    let upstream = pg_admin_url();
    let host = upstream
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@').map_or(Some(rest), |(_, h)| Some(h)))
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(
        std::net::ToSocketAddrs::to_socket_addrs(&host)
            .unwrap()
            .next()
            .unwrap(),
    );
    let app = server_behind(&proxy, &db);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let readyz = format!("{}/readyz", app.base);
    assert_eq!(timed_get(&client, &readyz).0, 200);
    assert_eq!(sign_up(&app, "before@example.com").0, 200);

    // Under each fault /readyz (within 2 s) and a sign-up (within 4 s) still answer,
    // with one of the statuses listed for them; once the fault clears, the node
    // heals without a restart.
    let faults: [(&str, Fault, &[u16], &[u16]); 3] = [
        // Black hole: connections stay open, nothing comes back.
        ("hole", Fault::BlackHole, &[503], &[503]),
        // Refused: every connection reset, new ones closed at once.
        ("refused", Fault::Refuse, &[503], &[503, 500]),
        // Slow: every chunk waits; answers still come within the deadlines.
        ("slow", Fault::Slow(Duration::from_millis(300)), &[], &[]),
    ];
    for (name, fault, readyz_statuses, sign_up_statuses) in faults {
        proxy.set(fault);
        let answered = timed_get(&client, &readyz);
        assert_prompt(&format!("{name}: /readyz"), answered, readyz_statuses, 2);
        let answered = sign_up(&app, &format!("{name}@example.com"));
        assert_prompt(&format!("{name}: sign-up"), answered, sign_up_statuses, 4);
        proxy.set(Fault::None);
        ready_again(&app, &client);
        assert_eq!(sign_up(&app, &format!("after-{name}@example.com")).0, 200);
    }
}

/// Starts `gatehouse serve` and waits for it to exit (it must refuse to start).
fn refused_start(mut command: std::process::Command) -> String {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "start was not refused");
            let mut text = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
            return text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with keys that cannot open its data");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_wrong_master_key_is_refused_at_start_on_postgres() {
    let admin = pg_admin_url();
    let name = format!("gatehouse_keys_{}", uuid::Uuid::new_v4().simple());
    let mut conn = gatehouse_identity_store::db::connect(
        &gatehouse_identity_store::db::ConnectOptions::new(&admin),
    )
    .unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        &format!("CREATE DATABASE {name}"),
    )
    .unwrap();
    let url = with_database(&admin, &name);
    let dir = temp_dir();
    let production = |key: &str| {
        let mut command = gatehouse(dir.path(), &["serve"]);
        command
            .env("GATEHOUSE_DATABASE__URL", &url)
            .env("GATEHOUSE_MODE", "production")
            .env("GATEHOUSE_SECRETS__MASTER_KEYS", key)
            .env("GATEHOUSE_MAIL__SMTP_HOST", "127.0.0.1")
            .env("GATEHOUSE_SERVER__PUBLIC_URL", "https://login.example.test");
        command
    };
    let key = |fill: u8| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([fill; 32])
    };
    let right = format!("k1:{}", key(1));
    let server = Server::start(production(&right));
    assert!(server.terminate().success());

    let wrong = format!("k1:{}", key(2));
    let refused = refused_start(production(&wrong));
    assert!(
        refused.contains("cannot open this database's secrets"),
        "{refused}"
    );
    // A rotation that keeps the old key behind a new one is no wrong key ...
    let rotated = format!("k2:{},{right}", key(3));
    let server = Server::start(production(&rotated));
    assert!(server.terminate().success());
    // ... but the old key cannot be dropped while data sealed with it remains.
    let refused = refused_start(production(&format!("k2:{}", key(3))));
    assert!(refused.contains("sealed with key `k1`"), "{refused}");
}

#[test]
fn dev_mode_never_makes_a_new_key_beside_existing_data() {
    let dir = temp_dir();
    let server = Server::start(gatehouse(dir.path(), &["serve"]));
    assert!(server.terminate().success());
    std::fs::remove_file(data_dir(dir.path()).join("master.key")).unwrap();

    let refused = refused_start(gatehouse(dir.path(), &["serve"]));
    assert!(refused.contains("master.key is missing"), "{refused}");
    assert!(
        !data_dir(dir.path()).join("master.key").exists(),
        "a new key was written anyway"
    );
}

/// An SMTP server that accepts connections and never says a word: mail sent to it
/// hangs until the mailer's own timeout.
struct SilentSmtp {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentSmtp {
    fn start() -> SilentSmtp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        SilentSmtp { port, accepted }
    }

    /// Waits (up to 10 s) until at least `count` mail connections have been opened.
    fn wait_for_connections(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.accepted.load(std::sync::atomic::Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "no mail was attempted");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn mail_never_holds_up_an_answer_so_pending_and_unknown_addresses_look_alike() {
    let smtp = SilentSmtp::start();
    let app = WebApp::start_with(Backend::Postgres, |config| {
        config.mail.smtp_port = smtp.port;
        config.mail.timeout_secs = 120;
    });
    let mut browser = app.browser();

    // A sign-up answers while its verification mail is stuck in SMTP ...
    let new = browser.sign_up("/signup", "pending@example.com", PASSWORD);
    assert_eq!(new.status, 200, "{}", new.body);
    smtp.wait_for_connections(1);
    // ... and so does a sign-up for the same address, whose note is stuck too.
    let again = browser.sign_up("/signup", "pending@example.com", PASSWORD);
    assert_eq!(again.status, 200);
    assert_eq!(strip_tokens(&again.body), strip_tokens(&new.body));
    smtp.wait_for_connections(2);

    // Resend for the pending account and for an unknown address: the same answer,
    // given while the pending account's mail has not even been accepted by SMTP.
    let resend = |browser: &mut crate::web_kit::Browser, email: &str| {
        browser.fill_in("/signin", "/verify/resend", &[("email", email)])
    };
    let pending = resend(&mut browser, "pending@example.com");
    let unknown = resend(&mut browser, "nobody@example.com");
    assert_eq!((pending.status, unknown.status), (200, 200));
    assert_eq!(
        strip_tokens(&pending.body.replace("pending@", "someone@")),
        strip_tokens(&unknown.body.replace("nobody@", "someone@"))
    );
    // The pending account's link was sent after its answer, not before.
    smtp.wait_for_connections(3);

    // Forgot-password: the same, and the account's reset link goes out afterwards.
    let forgot = |browser: &mut crate::web_kit::Browser, email: &str| {
        browser.fill_in("/recover/request", "/recover/request", &[("email", email)])
    };
    let known = forgot(&mut browser, "pending@example.com");
    let unknown = forgot(&mut browser, "nobody@example.com");
    assert_eq!((known.status, unknown.status), (200, 200), "{}", known.body);
    assert_eq!(
        strip_tokens(&known.body.replace("pending@", "someone@")),
        strip_tokens(&unknown.body.replace("nobody@", "someone@"))
    );
    smtp.wait_for_connections(4);
}

/// A page without its per-request parts (CSRF tokens, nonces), for comparing answers.
fn strip_tokens(body: &str) -> String {
    body.split('"')
        .filter(|part| part.len() < 20 || part.contains(' '))
        .collect::<Vec<_>>()
        .join("\"")
}

/// Sign-ups from `writers` threads against `nodes` real binaries on one database
/// until the first node is killed with SIGKILL; the other nodes must keep answering
/// every sign-up sent to them. Then every user in the database must have its
/// `user.registered` audit record (they commit together), and every acknowledged
/// sign-up must be there.
fn kill_9_during_signups(db: &TestDb, nodes: usize) {
    const WRITERS: usize = 6;
    const ACKS_BEFORE_KILL: usize = 48;
    const ACKS_AFTER_KILL: usize = 24;
    let dir = temp_dir();
    let mut servers: Vec<Server> = (0..nodes)
        .map(|_| {
            let mut command = gatehouse(dir.path(), &["serve"]);
            command
                .env("GATEHOUSE_DATABASE__URL", &db.url)
                // Cheap hashes: the burst is about commits, not Argon2.
                .env("GATEHOUSE_PASSWORDS__MEMORY_KIB", "1024")
                .env("GATEHOUSE_PASSWORDS__ITERATIONS", "1")
                .env("GATEHOUSE_REGISTRATION__SIGNUP_MAILS_PER_IP_HOUR", "100000");
            Server::start(command)
        })
        .collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base_url.clone()).collect();
    let victim = servers.remove(0);

    let acknowledged = std::sync::Mutex::new(Vec::<String>::new());
    let after_kill = std::sync::atomic::AtomicUsize::new(0);
    let killed = std::sync::atomic::AtomicBool::new(false);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (acknowledged, killed, done, after_kill) =
                (&acknowledged, &killed, &done, &after_kill);
            let node = writer % nodes;
            let base = &bases[node];
            scope.spawn(move || {
                let mut browser = crate::web_kit::Browser::at(base);
                let form = browser.get("/signup");
                let (csrf, cookie) = (form.csrf(), browser.cookie_header());
                let client = http();
                for n in 0.. {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let was_killed = killed.load(std::sync::atomic::Ordering::SeqCst);
                    let email = format!("w{writer}-{n}@burst.test");
                    let sent = client
                        .post(format!("{base}/signup"))
                        .header("Cookie", &cookie)
                        .form(&[
                            ("csrf_token", csrf.as_str()),
                            ("email", email.as_str()),
                            ("password", PASSWORD),
                        ])
                        .send();
                    match sent {
                        Ok(response) if response.status().as_u16() == 200 => {
                            acknowledged.lock().unwrap().push(email);
                            if was_killed {
                                after_kill.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        // The kill: connections refused or cut mid-request, on the
                        // killed node only.
                        Ok(_) | Err(_) => {
                            assert!(
                                node == 0 && killed.load(std::sync::atomic::Ordering::SeqCst),
                                "a sign-up to node {node} failed (killed: {})",
                                killed.load(std::sync::atomic::Ordering::SeqCst)
                            );
                            return;
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().unwrap().len() < ACKS_BEFORE_KILL {
            assert!(Instant::now() < deadline, "sign-ups too slow");
            std::thread::sleep(Duration::from_millis(5));
        }
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        let status = victim.kill_hard();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        // The survivors keep answering.
        if nodes > 1 {
            while after_kill.load(std::sync::atomic::Ordering::SeqCst) < ACKS_AFTER_KILL {
                assert!(
                    Instant::now() < deadline,
                    "the other nodes stopped answering"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    drop(servers);

    let mut conn = db.conn();
    let tenant = gatehouse_identity_store::tenants::find_by_slug(&mut conn, "default")
        .unwrap()
        .unwrap()
        .id;
    let mut users = Vec::new();
    let mut page = gatehouse_identity_store::PageRequest::first(100);
    loop {
        let found = gatehouse_identity_store::users::list(&mut conn, tenant, &page).unwrap();
        users.extend(found.items);
        match found.next_cursor {
            Some(cursor) => page = gatehouse_identity_store::PageRequest::after(cursor, 100),
            None => break,
        }
    }
    let mut registered = std::collections::HashSet::new();
    let mut page = gatehouse_identity_store::PageRequest::first(500);
    loop {
        let found = gatehouse_identity_store::audit::list(&mut conn, tenant, &page).unwrap();
        registered.extend(
            found
                .items
                .iter()
                .filter(|e| e.action == "user.registered")
                .filter_map(|e| e.target.clone()),
        );
        match found.next_cursor {
            Some(cursor) => page = gatehouse_identity_store::PageRequest::after(cursor, 500),
            None => break,
        }
    }
    let burst: Vec<_> = users
        .iter()
        .filter(|u| u.data.user_name.ends_with("@burst.test"))
        .collect();
    let unaudited: Vec<_> = burst
        .iter()
        .filter(|u| !registered.contains(&format!("user:{}", u.id)))
        .map(|u| u.data.user_name.clone())
        .collect();
    assert!(
        unaudited.is_empty(),
        "users without their audit record: {unaudited:?}"
    );
    let names: std::collections::HashSet<_> =
        burst.iter().map(|u| u.data.user_name.as_str()).collect();
    let acknowledged = acknowledged.into_inner().unwrap();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|e| !names.contains(e.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged sign-ups lost: {lost:?}");
    assert!(burst.len() >= acknowledged.len());
}

#[test]
fn kill_9_of_one_of_three_nodes_loses_no_acknowledged_write_and_the_others_answer() {
    kill_9_during_signups(&TestDb::postgres(), 3);
}

#[test]
fn kill_9_during_signups_leaves_no_user_without_its_audit_record_on_sqlite() {
    kill_9_during_signups(&TestDb::sqlite(), 1);
}
