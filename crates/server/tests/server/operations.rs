//! Running it: the operations listener, migrations when several nodes start at
//! once, nodes that may not migrate, and online backups with a restore drill.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use gatehouse_identity_store::Backend;
use gatehouse_identity_store::db::{self, ConnectOptions};
use gatehouse_identity_store::testing::{pg_admin_url, with_database};

use crate::support::*;
use crate::web_kit::{Browser, WebApp};

/// An empty PostgreSQL database (no migrations), dropped when the test ends.
struct EmptyPostgres {
    admin_url: String,
    name: String,
    url: String,
}

impl EmptyPostgres {
    fn create() -> EmptyPostgres {
        let admin_url = pg_admin_url();
        let name = format!("gatehouse_ops_{}", uuid::Uuid::new_v4().simple());
        db::connect(&ConnectOptions::new(&admin_url))
            .expect("PostgreSQL must be reachable")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_database(&admin_url, &name);
        EmptyPostgres {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for EmptyPostgres {
    fn drop(&mut self) {
        if let Ok(mut admin) = db::connect(&ConnectOptions::new(&self.admin_url)) {
            let _ = admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name));
        }
    }
}

/// The operations listener's URL, from the line the server logs when it binds it.
fn operations_url(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(url) = server.stderr().lines().find_map(|line| {
            let rest = line.split("operations (probes, metrics) on ").nth(1)?;
            Some(
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.'))
                    .collect::<String>(),
            )
        }) {
            return url;
        }
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_leave_the_public_listener_when_an_operations_listener_is_set() {
    let dir = temp_dir();
    let client = http();

    // Without one (development), /metrics is on the public listener.
    let plain = Server::start(gatehouse(dir.path(), &["serve"]));
    assert_eq!(
        client.get(plain.url("/metrics")).send().unwrap().status(),
        200
    );
    assert!(plain.terminate().success());

    let server = Server::start({
        let mut command = gatehouse(dir.path(), &["serve"]);
        command.env("GATEHOUSE_SERVER__OPERATIONS_LISTEN", "127.0.0.1:0");
        command
    });
    let operations = operations_url(&server);
    assert_ne!(operations, server.base_url);

    let public = client.get(server.url("/metrics")).send().unwrap();
    assert_eq!(public.status(), 404);
    assert!(!public.text().unwrap().contains("gatehouse_"));

    let scraped = client.get(format!("{operations}/metrics")).send().unwrap();
    assert_eq!(scraped.status(), 200);
    let body = scraped.text().unwrap();
    assert!(body.contains("gatehouse_build_info"), "{body}");
    for probe in ["/healthz", "/readyz"] {
        for base in [&server.base_url, &operations] {
            let answer = client.get(format!("{base}{probe}")).send().unwrap();
            assert_eq!(answer.status(), 200, "{base}{probe}");
        }
    }
    // Nothing else is served there: no page, no protocol endpoint.
    for path in [
        "/signin",
        "/.well-known/openid-configuration",
        "/admin/v1/users",
    ] {
        let answer = client.get(format!("{operations}{path}")).send().unwrap();
        assert_eq!(answer.status(), 404, "{path}");
    }
    assert!(
        server.terminate().success(),
        "both listeners stop on SIGTERM"
    );
}

#[test]
fn the_operations_listener_must_differ_from_the_public_one() {
    let dir = temp_dir();
    let output = run(gatehouse(dir.path(), &["check-config"])
        .env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:8080")
        .env("GATEHOUSE_SERVER__OPERATIONS_LISTEN", "127.0.0.1:8080"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("server.operations_listen"));
}

#[test]
fn nodes_migrating_at_once_apply_each_migration_once_on_postgres() {
    let database = EmptyPostgres::create();
    let dir = temp_dir();
    let outputs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    run(gatehouse(dir.path(), &["migrate"])
                        .env("GATEHOUSE_DATABASE__URL", &database.url))
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for output in &outputs {
        assert!(output.status.success(), "{}", stderr(output));
    }
    let applied: Vec<String> = outputs.iter().map(stdout).collect();
    assert_eq!(
        applied.iter().filter(|out| out.contains("applied")).count(),
        1,
        "exactly one run applies; the others wait and find nothing: {applied:?}"
    );
    assert_eq!(
        applied
            .iter()
            .filter(|out| out.contains("up to date"))
            .count(),
        3
    );
}

#[test]
fn a_node_that_may_not_migrate_waits_for_the_migration_job_on_postgres() {
    let database = EmptyPostgres::create();
    let dir = temp_dir();
    let serve = || {
        let mut command = gatehouse(dir.path(), &["serve"]);
        command
            .env("GATEHOUSE_DATABASE__URL", &database.url)
            .env("GATEHOUSE_DATABASE__MIGRATE_ON_START", "false");
        command
    };
    let refused = run(&mut serve());
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(err.contains("gatehouse migrate"), "{err}");
    assert!(err.contains("pending"), "{err}");

    let migrated =
        run(gatehouse(dir.path(), &["migrate"]).env("GATEHOUSE_DATABASE__URL", &database.url));
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let server = Server::start(serve());
    assert_eq!(
        http().get(server.url("/readyz")).send().unwrap().status(),
        200
    );
    assert!(server.terminate().success());
}

#[test]
fn a_backup_taken_while_serving_restores_to_a_working_server() {
    let app = WebApp::start(Backend::Sqlite);
    let users: Vec<String> = (0..3).map(|i| format!("kept{i}@example.com")).collect();
    for user in &users {
        app.create_verified_user(user, "correct horse battery");
    }
    let dir = temp_dir();
    let copy = dir.path().join("backup.db");

    // Sign-ups keep writing while the copy is taken.
    let writing = std::sync::atomic::AtomicBool::new(true);
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut written = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let page = app.browser().sign_up(
                    "/signup",
                    &format!("busy{written}@example.com"),
                    "correct horse battery",
                );
                assert_eq!(page.status, 200, "{}", page.body);
                written += 1;
            }
            written
        });
        let output = run(
            gatehouse(dir.path(), &["backup", "--to", copy.to_str().unwrap()])
                .env("GATEHOUSE_DATABASE__URL", &app.db.url),
        );
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
        output
    });
    let said = succeeded(&output);
    assert!(said.contains("integrity checked"), "{said}");

    // Never over an existing file.
    let again = run(
        gatehouse(dir.path(), &["backup", "--to", copy.to_str().unwrap()])
            .env("GATEHOUSE_DATABASE__URL", &app.db.url),
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );

    // The restore drill: a server on the copy, with the same master key (the same
    // data directory), signs the users in.
    let restored = Server::start({
        let mut command = gatehouse(dir.path(), &["serve"]);
        command
            .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
            .env(
                "GATEHOUSE_DATABASE__URL",
                format!("sqlite://{}", copy.display()),
            );
        command
    });
    for user in &users {
        let signed_in = Browser::at(&restored.base_url).sign_in(user, "correct horse battery");
        assert_eq!(signed_in.status, 303, "{user}: {}", signed_in.body);
    }
    let verified = run(gatehouse(dir.path(), &["audit", "verify"])
        .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
        .env(
            "GATEHOUSE_DATABASE__URL",
            format!("sqlite://{}", copy.display()),
        ));
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(restored.terminate().success());
}

#[test]
fn backup_points_postgres_to_its_own_tools() {
    let database = EmptyPostgres::create();
    let dir = temp_dir();
    let output = run(gatehouse(
        dir.path(),
        &["backup", "--to", dir.path().join("x.db").to_str().unwrap()],
    )
    .env("GATEHOUSE_DATABASE__URL", &database.url));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("pg_basebackup"), "{err}");
    assert!(!dir.path().join("x.db").exists());
}

/// The value of the series `name{labels…}` in a Prometheus text scrape, 0 if absent.
fn series(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn sign_ins_tokens_and_mail_are_counted_by_outcome_and_tenant() {
    let app = WebApp::start(Backend::Sqlite);
    let tenant = app.default_tenant().to_string();
    let scrape = || app.browser().get("/metrics").body;

    app.create_verified_user("counted@example.com", "correct horse battery");
    assert_eq!(
        app.browser()
            .sign_in("counted@example.com", "correct horse battery")
            .status,
        303
    );
    for _ in 0..2 {
        let refused = app
            .browser()
            .sign_in("counted@example.com", "wrong password here");
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    crate::admin_api::token_for(&app, "default", "metered", "admin", "gatehouse-admin");
    let wrong_grant = app.post_urlencoded(
        "/oauth2/token",
        Some(&crate::web_kit::basic("metered", crate::code_flow::SECRET)),
        "grant_type=authorization_code&code=nope&redirect_uri=https%3A%2F%2Fx.test%2F",
    );
    assert_eq!(wrong_grant.status, 400);
    let refusal = wrong_grant.json["error"].as_str().unwrap().to_owned();
    // A policy decision, denied for want of a subject, and written to the log.
    crate::authzen::register_pep(&app, "pep", &["authzen:evaluate"]);
    let pep = crate::authzen::access_token(&app, "pep", "authzen:evaluate");
    let nobody = uuid::Uuid::new_v4().to_string();
    let decided = crate::authzen::post(
        &app,
        "/access/v1/evaluation",
        Some(&pep),
        &crate::authzen::evaluation(&nobody, "read", "bob", serde_json::json!({})),
        None,
    );
    assert_eq!(decided.status, 200, "{}", decided.body);
    let reason = decided.body["context"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", decided.body))
        .to_owned();
    app.state.pdp.flush_log();
    app.settle();

    let metrics = scrape();
    let count = |name: &str, labels: &[(&str, &str)]| series(&metrics, name, labels);
    assert_eq!(
        count(
            "gatehouse_auth_events_total",
            &[
                ("tenant", &tenant),
                ("event", "login.succeeded"),
                ("result", "success")
            ]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        count(
            "gatehouse_auth_events_total",
            &[("tenant", &tenant), ("event", "login.failed")]
        ),
        2.0
    );
    // The verification mail of the sign-up went out through SMTP.
    assert!(
        count(
            "gatehouse_auth_events_total",
            &[("event", "mail.sent"), ("result", "success")]
        ) >= 1.0
    );
    assert_eq!(
        count(
            "gatehouse_tokens_total",
            &[("grant", "client_credentials"), ("result", "issued")]
        ),
        2.0,
        "the administrator's token and the PEP's"
    );
    assert_eq!(
        count(
            "gatehouse_tokens_total",
            &[("grant", "authorization_code"), ("result", &refusal)]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        count(
            "gatehouse_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        count(
            "gatehouse_pdp_decisions_total",
            &[("decision", "deny"), ("reason", &reason)]
        ),
        1.0,
        "{metrics}"
    );
}

/// A master key line (`kid base64url-key`) for a key file, random.
fn new_key_line(kid: &str) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0_u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{kid} {}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    )
}

fn master_key_file(dir: &std::path::Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn master_key_rotation(backend: Backend) {
    let dir = temp_dir();
    let old_line = new_key_line("mk-first");
    let new_line = new_key_line("mk-next_1");
    let only_old = master_key_file(dir.path(), "old.key", &[&old_line]);
    let both = master_key_file(dir.path(), "both.key", &[&new_line, &old_line]);
    let only_new = master_key_file(dir.path(), "new.key", &[&new_line]);
    let app = WebApp::start_with(backend, |config| {
        config.secrets.master_key_file = Some(only_old.clone())
    });
    app.create_verified_user("sealed@example.com", "correct horse battery");
    crate::admin_api::token_for(&app, "default", "sealer", "admin", "gatehouse-admin");
    // The rotation's first step: the nodes restart with the new key first and the
    // old one still configured.
    let node = WebApp::start_with_url(&app.db, app.db.url.clone(), |config| {
        config.secrets.master_key_file = Some(both.clone())
    });
    let old_kid = "mk-first";
    let with_keys = |file: &std::path::Path, args: &[&str]| {
        run(gatehouse(dir.path(), args)
            .env("GATEHOUSE_DATABASE__URL", &app.db.url)
            .env("GATEHOUSE_SECRETS__MASTER_KEY_FILE", file))
    };

    // Before: everything under the old key, which must stay.
    let before = succeeded(&with_keys(&both, &["secrets", "status"]));
    assert!(
        before.contains(&format!("{old_kid} still seals")),
        "{before}"
    );

    // The new key alone cannot open this database yet.
    let refused = with_keys(&only_new, &["secrets", "status"]);
    assert!(!refused.status.success());

    // Re-wrapped while the server keeps serving sign-ins.
    let rewrapped = std::thread::scope(|scope| {
        let serving = scope.spawn(|| {
            for _ in 0..3 {
                let page = node
                    .browser()
                    .sign_in("sealed@example.com", "correct horse battery");
                assert_eq!(page.status, 303, "{}", page.body);
            }
        });
        let output = with_keys(&both, &["secrets", "rewrap", "--batch", "2"]);
        serving.join().unwrap();
        output
    });
    let said = succeeded(&rewrapped);
    assert!(said.contains("the other keys may be retired"), "{said}");
    assert!(!said.contains("still seals"), "{said}");

    // The old key retired: a server with the new key alone opens every secret —
    // the password, the signing key, the audit chains.
    let server = Server::start({
        let mut command = gatehouse(dir.path(), &["serve"]);
        command
            .env("GATEHOUSE_DATABASE__URL", &app.db.url)
            .env("GATEHOUSE_SECRETS__MASTER_KEY_FILE", &only_new);
        command
    });
    let signed_in =
        Browser::at(&server.base_url).sign_in("sealed@example.com", "correct horse battery");
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let token = http()
        .post(server.url("/oauth2/token"))
        .header(
            "Authorization",
            crate::web_kit::basic("sealer", crate::code_flow::SECRET),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .unwrap();
    assert_eq!(
        token.status(),
        200,
        "signed with the re-wrapped signing key"
    );
    assert!(server.terminate().success());
    let verified = with_keys(&only_new, &["audit", "verify"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let after = succeeded(&with_keys(&only_new, &["secrets", "status"]));
    assert!(after.contains("may be retired"), "{after}");
}

gatehouse_identity_store::on_both_backends!(master_key_rotation);

/// Just enough of OTLP's `ExportTraceServiceRequest` (opentelemetry-proto, trace and
/// common v1) to read what Gatehouse sent, written from the protocol's field
/// numbers rather than taken from the exporter's own crate.
mod otlp {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(string, tag = "1")]
        pub string_value: String,
    }

    pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
        attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .map(|v| v.string_value.as_str())
    }
}

/// An OTLP/HTTP receiver on loopback: answers every POST 200 and hands its body on.
fn otlp_receiver() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut content_type) = (0, String::new());
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "content-type" => content_type = value.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                    let _ = sent.send((format!("{} {content_type}", request_line.trim()), body));
                }
            });
        }
    });
    (url, received)
}

#[test]
fn traces_reach_an_otlp_receiver_with_the_request_id_the_logs_carry() {
    use prost::Message;
    let (endpoint, received) = otlp_receiver();
    let dir = temp_dir();
    let server = Server::start({
        let mut command = gatehouse(dir.path(), &["serve"]);
        command
            .env("GATEHOUSE_LOG__OTLP_ENDPOINT", &endpoint)
            .env("GATEHOUSE_LOG__FORMAT", "json");
        command
    });
    let answer = http()
        .get(server.url("/signin"))
        .header("X-Request-ID", "otlp-trace-1")
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Shutting down sends what is still batched.
    let (status, _, logs) = server.stop();
    assert!(status.success());
    assert!(
        logs.lines()
            .any(|l| l.contains("otlp-trace-1") && l.contains("\"route\"")),
        "the access log line carries the request id: {logs}"
    );

    let mut found = None;
    while let Ok((request, body)) = received.recv_timeout(Duration::from_secs(10)) {
        assert!(request.starts_with("POST /v1/traces"), "{request}");
        assert!(request.ends_with("application/x-protobuf"), "{request}");
        let export = otlp::ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for resource in &export.resource_spans {
            let attributes = &resource.resource.as_ref().unwrap().attributes;
            assert_eq!(otlp::find(attributes, "service.name"), Some("gatehouse"));
            for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                if otlp::find(&span.attributes, "request_id") == Some("otlp-trace-1") {
                    found = Some(span.clone());
                }
            }
        }
        if found.is_some() {
            break;
        }
    }
    let span = found.expect("no span carried the request id");
    assert_eq!(span.name, "request");
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(otlp::find(&span.attributes, "path"), Some("/signin"));
}
