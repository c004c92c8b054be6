//! Misconfiguration ends the process with one clear line and a non-zero exit:
//! never a panic or a backtrace.

use crate::support::*;

fn assert_no_data_dir(home: &std::path::Path, why: &str) {
    assert!(!data_dir(home).exists(), "{why}");
}

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

/// `users <verb>` for the account at `email`, with the reason and the operator
/// that every change to an account must give.
fn user_action<'a>(
    verb: &'a str,
    email: &'a str,
    reason: &'a str,
    operator: &'a str,
) -> [&'a str; 8] {
    [
        "users",
        verb,
        "--email",
        email,
        "--reason",
        reason,
        "--operator",
        operator,
    ]
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
    assert_no_data_dir(dir.path(), "a bad config must not create anything");
}

#[test]
fn an_unknown_environment_variable_is_named() {
    let dir = temp_dir();
    let output = run(gatehouse(dir.path(), &["check-config"]).env("GATEHOUSE_DATABASE__URI", "x"));
    assert_clean_failure(&output, 2, "GATEHOUSE_DATABASE__URI");
    // Named once, with the settings it could have meant.
    let err = stderr(&output);
    assert_eq!(err.matches("GATEHOUSE_DATABASE__URI").count(), 1, "{err}");
    assert!(err.contains("GATEHOUSE_DATABASE__URL"), "{err}");

    let typed =
        run(gatehouse(dir.path(), &["check-config"]).env("GATEHOUSE_SERVER__WORKERS", "many"));
    assert_clean_failure(&typed, 2, "must be an integer, got `many`");
    assert_eq!(
        stderr(&typed).matches("GATEHOUSE_SERVER__WORKERS").count(),
        1
    );
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
    let out = succeeded(&run(&mut gatehouse(dir.path(), &["check-config"])));
    assert!(
        out.contains("configuration OK") && out.contains("Sqlite"),
        "{out}"
    );
    assert_no_data_dir(
        dir.path(),
        "check-config must not create the data directory",
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
    let out = succeeded(&run(&mut gatehouse(
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
            "--cors-origin",
            "https://Shop.example/",
            "--cors-origin",
            "http://localhost:5173",
        ],
    )));
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
    // Origins as browsers send them; OpenID Connect's default ID-token algorithm,
    // whose key exists before the first token; PKCE required unless asked otherwise.
    assert!(
        shown.contains("CORS origins:   http://localhost:5173 https://shop.example")
            && shown.contains("ID token alg:   RS256")
            && shown.contains("PKCE:           required"),
        "{shown}"
    );
    let keys = stdout(&run(&mut gatehouse(dir.path(), &["keys", "list"])));
    assert!(keys.contains("\tRS256\tactive\t"), "{keys}");
    let bad_origin = run(&mut gatehouse(
        dir.path(),
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--cors-origin",
            "https://shop.example/app",
        ],
    ));
    assert_clean_failure(&bad_origin, 1, "--cors-origin");

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

    let rotated = succeeded(&run(&mut gatehouse(
        dir.path(),
        &["clients", "rotate-secret", "shop", "--operator", "ops-ann"],
    )));
    let new_secret = rotated
        .lines()
        .find_map(|l| {
            l.strip_prefix("client_secret:")
                .map(|s| s.trim().to_owned())
        })
        .expect("the new secret, once");
    assert_ne!(new_secret, secret);
    let db = std::fs::read(data_dir(dir.path()).join("gatehouse.db")).unwrap();
    assert!(
        !db.windows(new_secret.len())
            .any(|w| w == new_secret.as_bytes()),
        "rotated secret stored in clear"
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
    let dir = started_once();
    let list = |dir: &std::path::Path| stdout(&run(&mut gatehouse(dir, &["keys", "list"])));
    // The first rotation on a tenant without keys makes an active key at once.
    let _first = succeeded(&run(&mut gatehouse(dir.path(), &["keys", "rotate"])));
    assert!(
        list(dir.path()).contains("\tactive\t"),
        "{}",
        list(dir.path())
    );
    let second = stdout(&run(&mut gatehouse(dir.path(), &["keys", "rotate"])));
    assert!(second.contains("(next)"), "{second}");
    let keys = list(dir.path());
    assert!(
        keys.contains("\tES256\tactive\t") && keys.contains("\tES256\tnext\t"),
        "{keys}"
    );
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
        keys.contains("\tretired\t") && keys.contains("\tactive\t") && keys.contains("\tnext\t"),
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
    use gatehouse_identity_store::{PageRequest, audit, credentials, tenants, users};

    let dir = started_once();
    let store = sqlite_store(dir.path());
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
        &user_action("reset", "nobody@example.com", "ticket 7", "ops"),
    ));
    assert_clean_failure(&unknown, 1, "no user with the address");
    let no_reason = run(&mut gatehouse(
        dir.path(),
        &user_action("reset", "lost@example.com", " ", "ops"),
    ));
    assert_clean_failure(&no_reason, 1, "must not be empty");

    let reset = succeeded(&run(&mut gatehouse(
        dir.path(),
        &user_action(
            "reset",
            "lost@example.com",
            "ticket 7: passport checked",
            "ops-ann",
        ),
    )));
    assert!(reset.contains("mailed"), "{reset}");

    let mut conn = store.get().unwrap();
    assert!(
        credentials::list_for_user(&mut conn, tenant.id, user.id, None)
            .unwrap()
            .is_empty(),
        "the password is gone; the user chooses a new one through the link"
    );
    // As stored, the event's details are sealed with the user's own audit key (so
    // erasing the user can make them unreadable); the operator reads them.
    let events = audit::list(&mut conn, tenant.id, &PageRequest::first(100))
        .unwrap()
        .items;
    let event = events
        .iter()
        .find(|e| e.action == "recovery.admin_reset")
        .expect("audited");
    assert_eq!(event.actor, "operator:ops-ann");
    assert_eq!(event.sealed_for, Some(user.id.to_string()));
    assert!(!event.details.contains("passport"), "{}", event.details);
    let listed = succeeded(&run(&mut gatehouse(
        dir.path(),
        &["audit", "list", "--action", "recovery.admin_reset"],
    )));
    assert!(listed.contains("passport checked"), "{listed}");
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

/// An in-process server on SQLite with one verified user, and a working directory
/// for the commands run against it.
fn app_with_user(email: &str) -> (crate::web_kit::WebApp, tempfile::TempDir) {
    let app = crate::web_kit::WebApp::start(gatehouse_identity_store::Backend::Sqlite);
    app.create_verified_user(email, "correct horse battery staple");
    (app, temp_dir())
}

/// A command of the real binary against an in-process server's database and data
/// directory (so its development master key), as an operator would run it there.
fn gatehouse_for(
    app: &crate::web_kit::WebApp,
    cwd: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    run(gatehouse(cwd, args)
        .env("GATEHOUSE_DATABASE__URL", &app.db.url)
        .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
        .env("GATEHOUSE_SERVER__PUBLIC_URL", &app.base))
}

fn refresh_refused(app: &crate::web_kit::WebApp, refresh_token: &str) -> bool {
    let (status, answer) = crate::code_flow::refresh(app, refresh_token);
    (status, answer["error"].as_str()) == (400, Some("invalid_grant"))
}

fn sign_in_status(app: &crate::web_kit::WebApp) -> u16 {
    app.browser()
        .sign_in("uma@example.com", crate::code_flow::PASSWORD)
        .status
}

/// Checks that a command which ended a session or grant of `webapp` reported the
/// back-channel logout in `out`, and that the relying party got one; the logout
/// token's verified header and claims.
fn logout_delivered(
    app: &crate::web_kit::WebApp,
    out: &str,
    logouts: &crate::web_kit::BackchannelReceiver,
) -> (jsonwebtoken::Header, serde_json::Value) {
    assert!(
        out.contains("back-channel logout delivered to webapp"),
        "{out}"
    );
    let logout = logouts.next().expect("no back-channel logout arrived");
    crate::code_flow::logout_token_claims(app, &logout)
}

/// Registers the test client with a back-channel logout URI: a receiver on
/// 127.0.0.1, returned to read the logout tokens from.
fn backchannel_client(app: &crate::web_kit::WebApp) -> crate::web_kit::BackchannelReceiver {
    use crate::code_flow::{client_data, register_client};
    use gatehouse_identity_store::clients::ClientData;

    let logouts = crate::web_kit::BackchannelReceiver::start();
    register_client(
        app,
        ClientData {
            backchannel_logout_uri: Some(logouts.url.clone()),
            ..client_data(false)
        },
    );
    logouts
}

/// A running app with a client that registered a back-channel logout URI (a
/// receiver on 127.0.0.1), a browser signed in to it and the tokens the client got.
fn signed_in_to_a_backchannel_client(
    backend: gatehouse_identity_store::Backend,
) -> (
    crate::web_kit::WebApp,
    crate::web_kit::BackchannelReceiver,
    crate::web_kit::Browser,
    serde_json::Value,
) {
    use crate::code_flow::{VERIFIER, exchange, get_code, signed_in};

    let app = crate::web_kit::WebApp::start(backend);
    let logouts = backchannel_client(&app);
    let mut browser = signed_in(&app);
    let code = get_code(&mut browser, "");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    (app, logouts, browser, tokens)
}

fn users_disable_ends_every_token_at_once_and_enable_lets_the_user_back(
    backend: gatehouse_identity_store::Backend,
) {
    use crate::code_flow::{introspect_active, verified_claims};

    use gatehouse_identity_store::users;

    let (app, logouts, mut browser, tokens) = signed_in_to_a_backchannel_client(backend);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert!(introspect_active(&app, access));
    let cwd = temp_dir();

    let no_reason = gatehouse_for(
        &app,
        cwd.path(),
        &user_action("disable", "uma@example.com", "", "ops"),
    );
    assert_clean_failure(&no_reason, 1, "must not be empty");
    assert!(introspect_active(&app, access));

    let out = succeeded(&gatehouse_for(
        &app,
        cwd.path(),
        &user_action(
            "disable",
            "uma@example.com",
            "ticket 9: account compromised",
            "ops-ann",
        ),
    ));
    assert!(
        out.contains("disabled uma@example.com")
            && out.contains("1 sessions ended, 1 grants revoked"),
        "{out}"
    );
    assert!(
        !introspect_active(&app, access),
        "introspection still answers active after the user was disabled"
    );
    let (header, claims) = logout_delivered(&app, &out, &logouts);
    let (_, id_token) = verified_claims(&app, tokens["id_token"].as_str().unwrap(), "webapp");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(
        (&claims["sub"], &claims["sid"]),
        (&id_token["sub"], &id_token["sid"])
    );
    assert!(
        refresh_refused(&app, refresh_token),
        "the refresh token still works"
    );
    let account = browser.get("/account");
    assert_ne!(
        account.status, 200,
        "the browser's session survived: {}",
        account.body
    );
    assert_ne!(sign_in_status(&app), 303, "a disabled user signed in");

    let user =
        users::find_by_primary_email(&mut app.db.conn(), app.default_tenant(), "uma@example.com")
            .unwrap()
            .unwrap();
    assert!(!user.data.active);
    let events = app.audit_events(500);
    let event = events
        .iter()
        .find(|e| e.action == "user.deactivated")
        .expect("audited");
    assert_eq!(event.actor, "operator:ops-ann");
    assert_eq!(event.target, Some(format!("user:{}", user.id)));
    assert!(
        event.details.to_string().contains("account compromised"),
        "{:?}",
        event.details
    );

    let enabled = succeeded(&gatehouse_for(
        &app,
        cwd.path(),
        &user_action("enable", "uma@example.com", "ticket 9 closed", "ops-ann"),
    ));
    assert!(enabled.contains("enabled uma@example.com"), "{enabled}");
    assert_eq!(
        sign_in_status(&app),
        303,
        "the re-enabled user cannot sign in"
    );
    assert!(
        !introspect_active(&app, access),
        "a token came back to life"
    );
    assert!(refresh_refused(&app, refresh_token));
    let again = gatehouse_for(
        &app,
        cwd.path(),
        &user_action("enable", "uma@example.com", "again", "ops"),
    );
    assert!(
        stdout(&again).contains("was not disabled"),
        "{}",
        stdout(&again)
    );
}

gatehouse_identity_store::on_both_backends!(
    users_disable_ends_every_token_at_once_and_enable_lets_the_user_back
);

/// An administrator's reset ends the user's sessions from the CLI process, which
/// running servers never hear about on SQLite: the command itself tells the relying
/// parties (back-channel logout), as `users disable` does.
#[test]
fn users_reset_logs_the_relying_parties_out_of_the_sessions_it_ended() {
    use crate::code_flow::{introspect_active, verified_claims};

    let (app, logouts, mut browser, tokens) =
        signed_in_to_a_backchannel_client(gatehouse_identity_store::Backend::Sqlite);
    let access = tokens["access_token"].as_str().unwrap();
    let cwd = temp_dir();
    let out = succeeded(&gatehouse_for(
        &app,
        cwd.path(),
        &user_action(
            "reset",
            "uma@example.com",
            "ticket 12: phone lost, identity checked",
            "ops-ann",
        ),
    ));
    assert!(out.contains("1 sessions ended, 1 grants revoked"), "{out}");
    assert!(!introspect_active(&app, access));
    let (_, claims) = logout_delivered(&app, &out, &logouts);
    let (_, id_token) = verified_claims(&app, tokens["id_token"].as_str().unwrap(), "webapp");
    assert_eq!(
        (&claims["sub"], &claims["sid"]),
        (&id_token["sub"], &id_token["sid"]),
        "the logout names the session the reset ended"
    );
    assert_ne!(browser.get("/account").status, 200, "the session survived");
}

#[test]
fn roles_are_created_audited_listed_and_assignable_from_the_command_line() {
    let (app, cwd) = app_with_user("rita@example.com");
    let cli = |args: &[&str]| gatehouse_for(&app, cwd.path(), args);
    let create = |name: &str| {
        cli(&[
            "roles",
            "create",
            "--name",
            name,
            "--description",
            "Reads the audit trail",
            "--operator",
            "ops-ann",
        ])
    };

    let created = succeeded(&create("auditor"));
    assert!(created.contains("created the role auditor"));
    let listed = cli(&["roles", "list"]);
    assert!(
        stdout(&listed).contains("auditor\tReads the audit trail"),
        "{}",
        stdout(&listed)
    );
    // Names compare folded: the same name in capitals is refused, cleanly.
    assert_clean_failure(&create("AUDITOR"), 1, "already has a role named `AUDITOR`");
    let unnamed = cli(&["roles", "create", "--name", " ", "--operator", "ops"]);
    assert_clean_failure(&unnamed, 1, "must not be empty");

    let _assigned = succeeded(&cli(&[
        "roles",
        "assign",
        "--email",
        "rita@example.com",
        "--role",
        "auditor",
        "--operator",
        "ops-ann",
    ]));

    let events = app.audit_events(500);
    let made: Vec<_> = events
        .iter()
        .filter(|e| e.action == "role.created")
        .collect();
    assert_eq!(
        made.len(),
        1,
        "a refused duplicate is not audited as created"
    );
    assert_eq!(made[0].actor, "operator:ops-ann");
    assert!(made[0].target.as_deref().unwrap().starts_with("role:"));
    let rita = app.user_id("rita@example.com");
    let roles = gatehouse_identity_store::roles::roles_of_user(
        &mut app.db.conn(),
        app.default_tenant(),
        rita,
    )
    .unwrap();
    assert_eq!(
        roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec!["auditor"]
    );
}

#[test]
fn roles_remove_revokes_the_grants_whose_tokens_carry_roles() {
    use crate::code_flow::{
        VERIFIER, exchange, get_code, introspect_active, signed_in, verified_claims,
    };
    use gatehouse_identity_store::roles::{self, RoleData};
    use gatehouse_identity_store::{Backend, tenants};

    let app = crate::web_kit::WebApp::start(Backend::Sqlite);
    // The tenant releases roles with `profile`, which the test client asks for.
    let mut conn = app.db.conn();
    let tenant = tenants::find_by_slug(&mut conn, "default")
        .unwrap()
        .unwrap();
    let mut data = tenants::TenantData {
        slug: tenant.slug.clone(),
        display_name: tenant.display_name.clone(),
        settings: tenant.settings.clone(),
    };
    data.settings.insert(
        "scopes".into(),
        serde_json::json!({ "profile": ["name", "preferred_username", "roles"] }),
    );
    tenants::update(
        &mut conn,
        chrono::Utc::now(),
        tenant.id,
        tenant.version,
        data,
    )
    .unwrap();
    roles::create(
        &mut conn,
        chrono::Utc::now(),
        tenant.id,
        RoleData {
            name: "auditor".into(),
            description: Some("Reads the books".into()),
        },
    )
    .unwrap();
    drop(conn);
    let logouts = backchannel_client(&app);
    let mut browser = signed_in(&app);
    let cwd = temp_dir();
    let role_command = |action: &str, role: &str| {
        gatehouse_for(
            &app,
            cwd.path(),
            &[
                "roles",
                action,
                "--email",
                "uma@example.com",
                "--role",
                role,
                "--operator",
                "ops-ann",
            ],
        )
    };

    let listed = gatehouse_for(&app, cwd.path(), &["roles", "list"]);
    assert!(
        stdout(&listed).contains("auditor\tReads the books"),
        "{}",
        stdout(&listed)
    );
    assert_clean_failure(
        &role_command("assign", "nosuchrole"),
        1,
        "no role `nosuchrole`",
    );
    let assigned = succeeded(&role_command("assign", "auditor"));
    assert!(assigned.contains("now has the role auditor"), "{assigned}");

    let code = get_code(&mut browser, "");
    let (status, tokens) = exchange(&app, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    let (_, id_token) = verified_claims(&app, tokens["id_token"].as_str().unwrap(), "webapp");
    assert_eq!(
        id_token["roles"],
        serde_json::json!(["auditor"]),
        "{id_token}"
    );
    let access = tokens["access_token"].as_str().unwrap();
    assert!(introspect_active(&app, access));

    let removed = succeeded(&role_command("remove", "auditor"));
    assert!(
        removed.contains("no longer has the role auditor; 1 grants revoked"),
        "{removed}"
    );
    assert!(
        !introspect_active(&app, access),
        "a token stating the removed role is still active"
    );
    // The relying party's session built on the grant ends too.
    let (_, claims) = logout_delivered(&app, &removed, &logouts);
    assert_eq!(claims["sid"], id_token["sid"]);
    assert!(refresh_refused(
        &app,
        tokens["refresh_token"].as_str().unwrap()
    ));
    // The session stays: only the grants go.
    assert_eq!(browser.get("/account").status, 200);
    let again = role_command("remove", "auditor");
    assert!(
        stdout(&again).contains("did not have the role"),
        "{}",
        stdout(&again)
    );

    let actions: Vec<(String, String)> = app
        .audit_events(500)
        .into_iter()
        .map(|e| (e.action, e.actor))
        .collect();
    for action in ["user.role_assigned", "user.role_removed"] {
        assert!(
            actions.contains(&(action.to_owned(), "operator:ops-ann".to_owned())),
            "{action}: {actions:?}"
        );
    }
}

#[test]
fn purposes_are_defined_versioned_and_listed_from_the_command_line() {
    let dir = started_once();
    let cli = |args: &[&str]| run(&mut gatehouse(dir.path(), args));
    // `purposes <verb> --slug <slug> <fields…> --operator <operator>`.
    let purposes = |verb: &str, slug: &str, fields: &[&str], operator: &str| {
        let mut args = vec!["purposes", verb, "--slug", slug];
        args.extend_from_slice(fields);
        args.extend(["--operator", operator]);
        cli(&args)
    };
    let empty = succeeded(&cli(&["purposes", "list"]));
    assert!(empty.contains("no purposes defined"), "{empty}");

    let defined = succeeded(&purposes(
        "define",
        "newsletter",
        &[
            "--name",
            "Newsletter",
            "--description",
            "We mail you news.",
            "--scope",
            "email",
            "--scope",
            "profile",
        ],
        "ops-ann",
    ));
    assert!(
        defined.contains("newsletter\tv1\tconsent\temail profile\tNewsletter"),
        "{defined}"
    );
    let bad_basis = purposes(
        "define",
        "x",
        &[
            "--name",
            "X",
            "--description",
            "x",
            "--scope",
            "email",
            "--legal-basis",
            "because",
        ],
        "ops",
    );
    assert_clean_failure(&bad_basis, 1, "unknown legal basis `because`");
    let twice = purposes(
        "define",
        "newsletter",
        &["--name", "Again", "--description", "x", "--scope", "email"],
        "ops",
    );
    assert!(!twice.status.success(), "a purpose was defined twice");

    let updated = succeeded(&purposes(
        "update",
        "newsletter",
        &[
            "--expected-version",
            "1",
            "--description",
            "We mail you news and offers.",
        ],
        "ops-ann",
    ));
    assert!(
        updated.contains("newsletter\tv2\tconsent\temail profile\tNewsletter"),
        "{updated}"
    );
    let stale = purposes(
        "update",
        "newsletter",
        &["--expected-version", "1", "--name", "Lost update"],
        "ops",
    );
    assert_clean_failure(&stale, 1, "is at version 2, not 1");
    let nothing = purposes("update", "newsletter", &["--expected-version", "2"], "ops");
    assert_clean_failure(&nothing, 1, "nothing to change");

    let listed = stdout(&cli(&["purposes", "list"]));
    assert!(listed.contains("newsletter\tv2\t"), "{listed}");
    assert!(!listed.contains("Lost update"), "{listed}");

    use gatehouse_identity_store::{PageRequest, audit, purposes, tenants};
    let store = sqlite_store(dir.path());
    let mut conn = store.get().unwrap();
    let tenant = tenants::find_by_slug(&mut conn, "default")
        .unwrap()
        .unwrap()
        .id;
    let latest = purposes::get(&mut conn, tenant, "newsletter")
        .unwrap()
        .unwrap();
    assert_eq!(latest.description, "We mail you news and offers.");
    assert_eq!(latest.scopes, ["email", "profile"]);
    let actors: Vec<String> = audit::list(&mut conn, tenant, &PageRequest::first(100))
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.action.starts_with("purpose."))
        .map(|e| e.actor)
        .collect();
    assert_eq!(actors, ["operator:ops-ann", "operator:ops-ann"]);
}

/// With the default outbound policy a back-channel logout URI on a private address
/// (here 127.0.0.1) is never called: the action happens, the call is refused and
/// reported, the relying party hears nothing.
#[test]
fn back_channel_logout_to_a_private_address_is_refused_by_default() {
    let (app, logouts, _browser, _tokens) =
        signed_in_to_a_backchannel_client(gatehouse_identity_store::Backend::Sqlite);

    let cwd = temp_dir();
    let disabled = run(gatehouse(
        cwd.path(),
        &user_action("disable", "uma@example.com", "ticket 10", "ops"),
    )
    .env("GATEHOUSE_DATABASE__URL", &app.db.url)
    .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
    .env("GATEHOUSE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "false"));
    assert!(disabled.status.success(), "{}", stderr(&disabled));
    assert!(
        stderr(&disabled).contains("was not delivered"),
        "{}",
        stderr(&disabled)
    );
    // The command has exited: whatever it was going to send, it has sent.
    assert!(!logouts.has_received(), "the private address was called");
}

#[test]
fn tenants_are_created_and_changed_from_the_command_line_and_served_at_once() {
    use gatehouse_identity_store::Backend;

    let app = crate::web_kit::WebApp::start(Backend::Sqlite);
    let cwd = temp_dir();
    let cli = |args: &[&str]| gatehouse_for(&app, cwd.path(), args);
    let created = succeeded(&cli(&[
        "tenants",
        "create",
        "--slug",
        "Acme",
        "--name",
        "Acme Corp",
        "--registration",
        "closed",
        "--operator",
        "ops-ann",
    ]));
    let issuer = format!("{}/t/acme", app.base);
    assert!(
        created.contains(&format!("created tenant acme at {issuer}")),
        "{created}"
    );
    // The running server did not hear of it (SQLite: no events between processes);
    // it looks an unknown slug up again, so the tenant is served within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metadata = loop {
        let answer = http()
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .unwrap();
        if answer.status() == 200 {
            break answer.json::<serde_json::Value>().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new tenant is not served"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert!(
        stdout(&cli(&["tenants", "show", "--tenant", "acme"])).contains("registration: closed")
    );

    let _changed = succeeded(&cli(&[
        "tenants",
        "update",
        "--tenant",
        "acme",
        "--name",
        "Acme Inc",
        "--mfa",
        "required",
        "--registration",
        "open",
        "--operator",
        "ops-ann",
    ]));
    let shown = stdout(&cli(&["tenants", "show", "--tenant", "acme"]));
    assert!(
        shown.contains("name:         Acme Inc")
            && shown.contains("registration: open")
            && shown.contains("second factor required:  yes"),
        "{shown}"
    );

    assert_clean_failure(
        &cli(&["tenants", "create", "--slug", "acme", "--name", "Again"]),
        1,
        "exists already",
    );
    assert_clean_failure(
        &cli(&["tenants", "create", "--slug", "no spaces", "--name", "Bad"]),
        1,
        "--slug",
    );
    assert_clean_failure(
        &cli(&[
            "tenants",
            "update",
            "--tenant",
            "acme",
            "--host",
            "bad host!",
        ]),
        1,
        "hosts",
    );
    let audit = stdout(&cli(&[
        "audit", "list", "--tenant", "acme", "--action", "tenant.",
    ]));
    let actions: Vec<String> = audit
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["actor"], "operator:ops-ann", "{line}");
            event["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(actions, ["tenant.created", "tenant.updated"]);
}

#[test]
fn tenants_groups_users_and_the_audit_log_from_the_command_line() {
    let (app, cwd) = app_with_user("gus@example.com");
    let cli = |args: &[&str]| gatehouse_for(&app, cwd.path(), args);

    let listed = succeeded(&cli(&["tenants", "list"]));
    assert!(listed.starts_with("default\t"), "{listed}");
    let shown = cli(&["tenants", "show"]);
    assert!(
        stdout(&shown).contains("registration: open"),
        "{}",
        stdout(&shown)
    );
    assert_clean_failure(
        &cli(&["tenants", "show", "--tenant", "nope"]),
        1,
        "no tenant `nope`",
    );

    let _created = succeeded(&cli(&[
        "groups",
        "create",
        "--name",
        "Partners",
        "--operator",
        "ops-ann",
    ]));
    let member = |verb: &str| {
        cli(&[
            "groups",
            verb,
            "--group",
            "Partners",
            "--email",
            "gus@example.com",
            "--operator",
            "ops-ann",
        ])
    };
    assert!(stdout(&member("add-member")).contains("is now a member of `Partners`"));
    assert!(stdout(&member("add-member")).contains("was a member of `Partners` already"));
    assert!(stdout(&cli(&["groups", "list"])).contains("\tPartners"));
    assert!(stdout(&member("remove-member")).contains("is no longer a member"));

    let audit = succeeded(&cli(&[
        "audit",
        "list",
        "--actor",
        "operator:ops-ann",
        "--action",
        "group.",
    ]));
    let actions: Vec<String> = audit
        .lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).expect("one JSON event a line");
            event["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "group.created",
            "group.member_added",
            "group.member_removed"
        ]
    );
    let verified = cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    assert!(stdout(&verified).contains("audit log intact"));

    // An account made by an operator, with a password read from standard input.
    let create_user = |email: &str, stdin: &str, extra: &[&str]| {
        use std::io::Write;
        let mut args = vec!["users", "create", "--email", email, "--operator", "ops-ann"];
        args.extend_from_slice(extra);
        let mut child = gatehouse(cwd.path(), &args)
            .env("GATEHOUSE_DATABASE__URL", &app.db.url)
            .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let made = succeeded(&create_user(
        "hal@example.com",
        "violet-harbor-quilt-97-lantern\n",
        &["--password-stdin", "--verified", "--given-name", "Hal"],
    ));
    assert!(made.starts_with("created user "), "{made}");
    let mut browser = app.browser();
    let signed_in = browser.sign_in("hal@example.com", "violet-harbor-quilt-97-lantern");
    assert_eq!(signed_in.status, 303, "the new account cannot sign in");
    assert_clean_failure(
        &create_user("hal@example.com", "", &[]),
        1,
        "has an account",
    );
    assert_clean_failure(
        &create_user("weak@example.com", "password\n", &["--password-stdin"]),
        1,
        "password",
    );
    let audit = stdout(&cli(&["audit", "list", "--action", "user.created"]));
    assert!(
        audit.contains("\"operator:ops-ann\"") && audit.contains("\"verified\":true"),
        "{audit}"
    );

    let listed = cli(&["users", "list"]);
    assert!(
        stdout(&listed).contains("\tgus@example.com\tactive\tverified"),
        "{}",
        stdout(&listed)
    );
    // A SCIM filter narrows the list; a malformed one is a clean usage error.
    let filtered = stdout(&cli(&[
        "users",
        "list",
        "--filter",
        "emails.value sw \"HAL@\"",
    ]));
    assert!(filtered.contains("\thal@example.com\t"), "{filtered}");
    assert!(!filtered.contains("gus@example.com"), "{filtered}");
    assert_clean_failure(
        &cli(&["users", "list", "--filter", "emails.value sw"]),
        1,
        "--filter",
    );
    let deleted = succeeded(&cli(&user_action(
        "delete",
        "gus@example.com",
        "asked to be forgotten",
        "ops-ann",
    )));
    assert!(deleted.contains("deleted gus@example.com"));
    assert!(!stdout(&cli(&["users", "list"])).contains("gus@example.com"));
    assert_clean_failure(
        &cli(&user_action(
            "delete",
            "gus@example.com",
            "again",
            "ops-ann",
        )),
        1,
        "gus@example.com",
    );
}
