//! Misconfiguration ends the process with one clear line and a non-zero exit:
//! never a panic or a backtrace.

use crate::support::*;

fn assert_clean_failure(output: &std::process::Output, code: i32, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    assert_eq!(
        err.trim().lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
}

#[test]
fn a_misspelt_key_in_the_config_file_is_named() {
    let dir = temp_dir();
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, "[server]\nlistn = \"127.0.0.1:9\"\n").unwrap();
    let output = run(&mut gatehouse(
        dir.path(),
        &["--config", file.to_str().unwrap(), "serve"],
    ));
    assert_clean_failure(&output, 2, "listn");
    assert!(
        !data_dir(dir.path()).exists(),
        "a bad config must not create anything"
    );
}

#[test]
fn an_unknown_environment_variable_is_named() {
    let dir = temp_dir();
    let output = run(gatehouse(dir.path(), &["check-config"]).env("GATEHOUSE_DATABASE__URI", "x"));
    assert_clean_failure(&output, 2, "GATEHOUSE_DATABASE__URI");
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let dir = temp_dir();
    let output = run(gatehouse(dir.path(), &["serve"])
        .env(
            "GATEHOUSE_DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/gatehouse",
        )
        .env("GATEHOUSE_DATABASE__CONNECT_TIMEOUT_SECS", "1"));
    assert_clean_failure(&output, 1, "cannot connect to the PostgreSQL database");
}

#[test]
fn an_unwritable_data_directory_is_a_clear_error() {
    let dir = temp_dir();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let output =
        run(gatehouse(dir.path(), &["serve"]).env("GATEHOUSE_DATA_DIR", blocker.join("data")));
    assert_clean_failure(&output, 1, "data directory");
}

#[test]
fn production_mode_refuses_to_start_without_a_master_key() {
    let dir = temp_dir();
    let output = run(gatehouse(dir.path(), &["serve"]).env("GATEHOUSE_MODE", "production"));
    assert_clean_failure(&output, 2, "master key");
}

#[test]
fn check_config_reports_the_resolved_settings() {
    let dir = temp_dir();
    let output = run(&mut gatehouse(dir.path(), &["check-config"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains("configuration OK") && out.contains("Sqlite"),
        "{out}"
    );
    assert!(
        !data_dir(dir.path()).exists(),
        "check-config must not create the data directory"
    );
}

#[test]
fn clients_are_created_listed_shown_and_deleted_from_the_command_line() {
    let dir = temp_dir();
    let early = run(&mut gatehouse(dir.path(), &["clients", "list"]));
    assert_clean_failure(&early, 1, "first `gatehouse serve`");
    // The first start creates the default tenant.
    assert!(
        Server::start(gatehouse(dir.path(), &["serve"]))
            .terminate()
            .success()
    );
    let created = run(&mut gatehouse(
        dir.path(),
        &[
            "clients",
            "create",
            "--name",
            "Web shop",
            "--client-id",
            "shop",
            "--redirect-uri",
            "https://shop.example/cb",
            "--scope",
            "openid",
            "--audience",
            "https://api.example",
            "--post-logout-redirect-uri",
            "https://shop.example/bye",
            "--backchannel-logout-uri",
            "https://shop.example/backchannel",
        ],
    ));
    assert!(created.status.success(), "{}", stderr(&created));
    let out = stdout(&created);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .expect("secret printed once")
        .trim()
        .to_owned();
    assert_eq!(secret.len(), 43, "secret must carry 256 bits");
    assert!(out.contains("client_secret_basic"));

    let listed = stdout(&run(&mut gatehouse(dir.path(), &["clients", "list"])));
    assert!(listed.contains("shop\tconfidential\tWeb shop"), "{listed}");
    let shown = stdout(&run(&mut gatehouse(
        dir.path(),
        &["clients", "show", "shop"],
    )));
    assert!(
        shown.contains("https://shop.example/cb") && !shown.contains(&secret),
        "{shown}"
    );
    assert!(
        shown.contains("logout URIs:    https://shop.example/bye")
            && shown.contains("back-channel:   https://shop.example/backchannel"),
        "{shown}"
    );

    // The stored form is the hash, never the secret.
    let db = std::fs::read(data_dir(dir.path()).join("gatehouse.db")).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "secret stored in clear"
    );

    let bad = run(&mut gatehouse(
        dir.path(),
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--redirect-uri",
            "http://evil.example/cb",
        ],
    ));
    assert_clean_failure(&bad, 1, "loopback");
    let public_cc = run(&mut gatehouse(
        dir.path(),
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--kind",
            "public",
            "--grant",
            "client_credentials",
        ],
    ));
    assert_clean_failure(
        &public_cc,
        1,
        "public clients cannot use client_credentials",
    );

    assert!(
        run(&mut gatehouse(dir.path(), &["clients", "delete", "shop"]))
            .status
            .success()
    );
    let gone = run(&mut gatehouse(dir.path(), &["clients", "show", "shop"]));
    assert_clean_failure(&gone, 1, "no client `shop`");
}

#[test]
fn keys_rotate_publishes_first_and_signs_later() {
    let dir = temp_dir();
    assert!(
        Server::start(gatehouse(dir.path(), &["serve"]))
            .terminate()
            .success()
    );
    let list = |dir: &std::path::Path| stdout(&run(&mut gatehouse(dir, &["keys", "list"])));
    // The first rotation on a tenant without keys makes an active key at once.
    let first = run(&mut gatehouse(dir.path(), &["keys", "rotate"]));
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(list(dir.path()).contains("Active"), "{}", list(dir.path()));
    let second = stdout(&run(&mut gatehouse(dir.path(), &["keys", "rotate"])));
    assert!(second.contains("(Next)"), "{second}");
    let keys = list(dir.path());
    assert!(keys.contains("Active") && keys.contains("Next"), "{keys}");
    let third = stdout(&run(&mut gatehouse(
        dir.path(),
        &["keys", "rotate", "--max-token-lifetime", "600"],
    )));
    assert!(
        third.contains("now signing with") && third.contains("retired"),
        "{third}"
    );
    let keys = list(dir.path());
    assert!(
        keys.contains("Retired") && keys.contains("Active") && keys.contains("Next"),
        "{keys}"
    );
    let bad = run(&mut gatehouse(
        dir.path(),
        &["keys", "rotate", "--alg", "HS256"],
    ));
    assert_clean_failure(&bad, 1, "unknown algorithm");
}

#[test]
fn users_reset_removes_the_password_audits_the_operator_and_mails_a_link() {
    use gatehouse_identity_store::db::{ConnectOptions, pool};
    use gatehouse_identity_store::{PageRequest, audit, credentials, tenants, users};

    let dir = temp_dir();
    assert!(
        Server::start(gatehouse(dir.path(), &["serve"]))
            .terminate()
            .success()
    );
    let url = format!(
        "sqlite://{}",
        data_dir(dir.path()).join("gatehouse.db").display()
    );
    let store = pool(&ConnectOptions::new(&url)).unwrap();
    let mut conn = store.get().unwrap();
    let tenant = tenants::find_by_slug(&mut conn, "default")
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now();
    let user = users::create(
        &mut conn,
        now,
        tenant.id,
        users::UserData {
            emails: vec![users::Email {
                value: "lost@example.com".into(),
                kind: None,
                primary: true,
                verified: true,
            }],
            ..users::UserData::new("lost@example.com")
        },
    )
    .unwrap();
    credentials::create(
        &mut conn,
        &gatehouse_core::secrets::Cipher::new(vec![gatehouse_core::secrets::MasterKey::generate()])
            .unwrap(),
        now,
        tenant.id,
        user.id,
        credentials::NewCredential {
            kind: credentials::CredentialKind::Password,
            label: None,
            secret: b"sealed with another key: never read here",
        },
    )
    .unwrap();
    drop(conn);

    let unknown = run(&mut gatehouse(
        dir.path(),
        &[
            "users",
            "reset",
            "--email",
            "nobody@example.com",
            "--reason",
            "ticket 7",
            "--operator",
            "ops",
        ],
    ));
    assert_clean_failure(&unknown, 1, "no user with the address");
    let no_reason = run(&mut gatehouse(
        dir.path(),
        &[
            "users",
            "reset",
            "--email",
            "lost@example.com",
            "--reason",
            " ",
            "--operator",
            "ops",
        ],
    ));
    assert_clean_failure(&no_reason, 1, "must not be empty");

    let reset = run(&mut gatehouse(
        dir.path(),
        &[
            "users",
            "reset",
            "--email",
            "lost@example.com",
            "--reason",
            "ticket 7: passport checked",
            "--operator",
            "ops-ann",
        ],
    ));
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(stdout(&reset).contains("mailed"), "{}", stdout(&reset));

    let mut conn = store.get().unwrap();
    assert!(
        credentials::list_for_user(&mut conn, tenant.id, user.id, None)
            .unwrap()
            .is_empty(),
        "the password is gone; the user chooses a new one through the link"
    );
    let events = audit::list(&mut conn, tenant.id, &PageRequest::first(100))
        .unwrap()
        .items;
    let event = events
        .iter()
        .find(|e| e.action == "recovery.admin_reset")
        .expect("audited");
    assert_eq!(event.actor, "operator:ops-ann");
    assert!(
        event.details.to_string().contains("passport checked"),
        "{:?}",
        event.details
    );
    // Without SMTP the mail lands in the data directory (development mode).
    let mails: Vec<_> = std::fs::read_dir(data_dir(dir.path()).join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        mails
            .iter()
            .any(|m| m.contains("lost@example.com") && m.contains("/recover?token=")),
        "{mails:?}"
    );
}
