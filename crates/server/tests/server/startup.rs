use std::os::unix::fs::PermissionsExt;

use diesel::connection::SimpleConnection;
use gatehouse_identity_store::db::{self, ConnectOptions};
use gatehouse_identity_store::testing::{pg_admin_url, with_database};

use crate::support::*;

#[test]
fn first_start_needs_no_configuration_and_prints_the_setup_secret_once() {
    let dir = temp_dir();
    let server = Server::start(gatehouse(dir.path(), &["serve"]));
    let client = http();
    let ready = client.get(server.url("/readyz")).send().unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().unwrap()["status"],
        "ready"
    );
    assert_eq!(
        client.get(server.url("/healthz")).send().unwrap().status(),
        200
    );

    let first_stdout = server.stdout();
    assert_eq!(
        first_stdout.matches("ghsetup_").count(),
        1,
        "{first_stdout}"
    );
    assert!(
        !server.stderr().contains("ghsetup_"),
        "the setup secret reached the log"
    );
    assert!(
        server.terminate().success(),
        "SIGTERM did not end the server cleanly"
    );

    let data = data_dir(dir.path());
    assert!(data.join("gatehouse.db").exists());
    let key_mode = std::fs::metadata(data.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let key_before = std::fs::read(data.join("master.key")).unwrap();

    let again = Server::start(gatehouse(dir.path(), &["serve"]));
    assert_eq!(
        client.get(again.url("/readyz")).send().unwrap().status(),
        200
    );
    assert!(again.terminate().success());
    assert_eq!(
        std::fs::read(data.join("master.key")).unwrap(),
        key_before,
        "master key regenerated"
    );

    // The restart printed no new secret.
    let second = Server::start(gatehouse(dir.path(), &["serve"]));
    let (status, stdout, _) = second.stop();
    assert!(status.success());
    assert!(!stdout.contains("ghsetup_"), "{stdout}");
}

#[test]
fn requests_carry_ids_and_are_counted_by_route() {
    let dir = temp_dir();
    let server = Server::start(gatehouse(dir.path(), &["serve"]));
    let client = http();

    let echoed = client
        .get(server.url("/healthz"))
        .header("X-Request-ID", "trace-123")
        .send()
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-123");
    assert_eq!(echoed.headers()["x-content-type-options"], "nosniff");
    let hostile = client
        .get(server.url("/healthz"))
        .header("X-Request-ID", "a b\"<script>")
        .send()
        .unwrap();
    let generated = hostile.headers()["x-request-id"].to_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(generated).is_ok(),
        "unsafe request id was echoed: {generated}"
    );
    assert_eq!(
        client
            .get(server.url("/no/such/page/123"))
            .send()
            .unwrap()
            .status(),
        404
    );

    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            r#"gatehouse_http_requests_total{method="GET",route="/healthz",status="200"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("/no/such/page"),
        "raw paths leak into metric labels"
    );
    assert!(metrics.contains("gatehouse_http_request_duration_seconds_bucket"));
    assert!(
        metrics.contains("gatehouse_db_pool_max_connections 8"),
        "{metrics}"
    );
}

#[test]
fn audit_verify_finds_a_tampered_row() {
    let dir = temp_dir();
    let server = Server::start(gatehouse(dir.path(), &["serve"]));
    assert!(server.terminate().success());

    let verified = run(&mut gatehouse(dir.path(), &["audit", "verify"]));
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(stdout(&verified).contains("audit log intact"));

    // Someone with write access to the database file rewrites history.
    let url = format!(
        "sqlite://{}",
        data_dir(dir.path()).join("gatehouse.db").display()
    );
    let mut conn = db::connect(&ConnectOptions::new(url)).unwrap();
    conn.batch_execute(
        "DROP TRIGGER audit_events_no_update;
         UPDATE audit_events SET details = '{\"user_name\":\"mallory\"}' WHERE seq = 1;",
    )
    .unwrap();

    let tampered = run(&mut gatehouse(dir.path(), &["audit", "verify"]));
    assert_eq!(tampered.status.code(), Some(1));
    assert!(
        stdout(&tampered).contains("altered"),
        "{}",
        stdout(&tampered)
    );
    assert!(
        stderr(&tampered).contains("audit chain is broken"),
        "{}",
        stderr(&tampered)
    );
}

#[test]
fn runs_on_postgres_after_gatehouse_migrate() {
    let admin_url = pg_admin_url();
    let name = format!("gatehouse_server_{}", uuid::Uuid::new_v4().simple());
    let mut admin =
        db::connect(&ConnectOptions::new(&admin_url)).expect("PostgreSQL must be reachable");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = with_database(&admin_url, &name);
    let dir = temp_dir();

    let migrate = || {
        let output = run(gatehouse(dir.path(), &["migrate"]).env("GATEHOUSE_DATABASE__URL", &url));
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert!(migrate().contains("applied"));
    assert!(migrate().contains("up to date"));

    let key = "k1:".to_owned() + &"A".repeat(43);
    let server = Server::start({
        let mut command = gatehouse(dir.path(), &["serve"]);
        command
            .env("GATEHOUSE_DATABASE__URL", &url)
            .env("GATEHOUSE_MODE", "production")
            .env("GATEHOUSE_SECRETS__MASTER_KEYS", &key)
            .env("GATEHOUSE_MAIL__SMTP_HOST", "127.0.0.1")
            .env("GATEHOUSE_SERVER__PUBLIC_URL", "https://login.example.test");
        command
    });
    assert_eq!(
        http().get(server.url("/readyz")).send().unwrap().status(),
        200
    );
    assert!(server.stdout().contains("ghsetup_"));
    assert!(
        server.stderr().contains("\"level\":\"INFO\""),
        "production logs are not JSON"
    );
    assert!(server.terminate().success());
    // Production on PostgreSQL writes nothing to the working directory.
    assert!(!data_dir(dir.path()).exists());
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();
}
