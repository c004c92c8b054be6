use super::*;
use std::io::Write;

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../gatehouse.example.toml"
));

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

fn config_error(err: Error) -> (Option<String>, String) {
    match err {
        Error::Config { key, message } => (key, message),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn defaults_with_no_file_and_no_env() {
    let config = Config::load(None, env(&[("HOME", "/root")])).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.mode, Mode::Dev);
    assert_eq!(config.server.public_url(), "http://localhost:8080");
    assert_eq!(
        config.database_url(),
        "sqlite://gatehouse-data/gatehouse.db"
    );
    assert_eq!(config.database.backend().unwrap(), DatabaseBackend::Sqlite);
    assert_eq!(config.log_format(), LogFormat::Pretty);
    assert_eq!(
        config.master_key_file(),
        Some(PathBuf::from("gatehouse-data/master.key"))
    );
    assert!(config.server.worker_count() >= 1);
}

#[test]
fn file_values_are_used() {
    let f = file(
        "data_dir = \"/var/lib/gatehouse\"\n\
         [server]\nlisten = \"0.0.0.0:9000\"\npublic_url = \"https://id.example.com/\"\n\
         [database]\nurl = \"postgres://gh:pw@db/gatehouse\"\npool_size = 20\n\
         [log]\nformat = \"json\"\n",
    );
    let config = Config::load(Some(f.path()), env(&[])).unwrap();
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/gatehouse"));
    assert_eq!(config.server.listen, "0.0.0.0:9000");
    assert_eq!(config.server.public_url(), "https://id.example.com");
    assert_eq!(config.database.pool_size, 20);
    assert_eq!(
        config.database.backend().unwrap(),
        DatabaseBackend::Postgres
    );
    assert_eq!(config.log_format(), LogFormat::Json);
    assert_eq!(config.bootstrap, BootstrapConfig::default());
    assert!(!format!("{config:?}").contains("pw@"));
}

#[test]
fn env_overrides_file() {
    let f = file("[server]\nlisten = \"0.0.0.0:9000\"\nworkers = 2\n");
    let config = Config::load(
        Some(f.path()),
        env(&[
            ("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:7000"),
            ("GATEHOUSE_DATA_DIR", "/tmp/gh"),
            ("gatehouse_ignored_lowercase_prefix", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:7000");
    assert_eq!(config.server.workers, 2);
    assert_eq!(config.data_dir, PathBuf::from("/tmp/gh"));
}

#[test]
fn production_needs_an_https_public_url() {
    let error = Config::load(
        None,
        env(&[
            ("GATEHOUSE_MODE", "production"),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", "k1:x"),
            ("GATEHOUSE_MAIL__SMTP_HOST", "smtp.example.com"),
        ]),
    )
    .unwrap_err();
    assert!(error.to_string().contains("server.public_url"), "{error}");
}

#[test]
fn env_values_are_typed_by_the_schema() {
    let config = Config::load(
        None,
        env(&[
            ("GATEHOUSE_DATABASE__POOL_SIZE", "3"),
            ("GATEHOUSE_server__Shutdown_Timeout_Secs", " 12 "),
            ("GATEHOUSE_MODE", "production"),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", "k1:AAAA"),
            ("GATEHOUSE_MAIL__SMTP_HOST", "smtp.example.com"),
            ("GATEHOUSE_SERVER__PUBLIC_URL", "https://login.example.com"),
            (
                "GATEHOUSE_SECRETS__MASTER_KEY_FILE",
                "/etc/gatehouse/master.key",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(config.database.pool_size, 3);
    assert_eq!(config.server.shutdown_timeout(), Duration::from_secs(12));
    assert_eq!(config.mode, Mode::Production);
    assert_eq!(config.log_format(), LogFormat::Json);
    assert_eq!(
        config
            .secrets
            .master_keys
            .as_ref()
            .map(SecretString::expose),
        Some("k1:AAAA")
    );

    // No setting is boolean yet; the typing rule is exercised directly.
    let flag = toml::Value::Boolean(false);
    assert_eq!(
        typed_env_value("GATEHOUSE_X", &flag, "TRUE".to_owned()).unwrap(),
        toml::Value::Boolean(true)
    );
    let (key, _) =
        config_error(typed_env_value("GATEHOUSE_X", &flag, "yes".to_owned()).unwrap_err());
    assert_eq!(key.as_deref(), Some("GATEHOUSE_X"));
}

#[test]
fn unknown_file_key_is_named_with_its_location() {
    let f = file("mode = \"dev\"\n[server]\nlistn = \"0.0.0.0:1\"\n");
    let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
    let rendered = err.to_string();
    let (key, message) = config_error(err);
    assert_eq!(key.as_deref(), Some("server.listn"));
    assert!(message.contains(":3:1: unknown field `listn`"), "{message}");
    assert!(message.contains("`listen`"), "{message}");
    assert!(!rendered.contains('\n'), "must be one line: {rendered}");

    let f = file("bogus = 1\n");
    let (key, _) = config_error(Config::load(Some(f.path()), env(&[])).unwrap_err());
    assert_eq!(key.as_deref(), Some("bogus"));

    let f = file("[server]\nworkers = \"many\"\n");
    let (key, message) = config_error(Config::load(Some(f.path()), env(&[])).unwrap_err());
    assert_eq!(key.as_deref(), Some("server.workers"));
    assert!(message.contains(":2:11:"), "{message}");
}

#[test]
fn missing_explicit_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Config::load(Some(&dir.path().join("nope.toml")), env(&[])).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn unknown_env_var_is_named() {
    for var in [
        "GATEHOUSE_SERVER__LISTN",
        "GATEHOUSE_LISTEN",
        "GATEHOUSE_NOPE__LISTEN",
        "GATEHOUSE_SERVER",
        "GATEHOUSE_SERVER__LISTEN__X",
    ] {
        let err = Config::load(None, env(&[(var, "x")])).unwrap_err();
        let (key, message) = config_error(err);
        // Named once, by the error's key: the message does not repeat it.
        assert_eq!(key.as_deref(), Some(var));
        assert!(!message.contains(&format!("`{var}`")), "{message}");
    }
    let (_, message) =
        config_error(Config::load(None, env(&[("GATEHOUSE_SERVER__LISTN", "x")])).unwrap_err());
    assert!(
        message.contains("GATEHOUSE_SERVER__LISTEN"),
        "hint: {message}"
    );
}

#[test]
fn bad_env_value_names_the_variable() {
    let (key, message) = config_error(
        Config::load(None, env(&[("GATEHOUSE_SERVER__WORKERS", "four")])).unwrap_err(),
    );
    assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__WORKERS"));
    assert!(message.contains("integer"), "{message}");

    // Type errors the schema cannot catch surface from deserialization.
    let (key, message) =
        config_error(Config::load(None, env(&[("GATEHOUSE_SERVER__WORKERS", "-1")])).unwrap_err());
    assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__WORKERS"));
    assert!(!message.contains("GATEHOUSE_SERVER__WORKERS"), "{message}");

    let (key, message) =
        config_error(Config::load(None, env(&[("GATEHOUSE_MODE", "prod")])).unwrap_err());
    assert_eq!(key.as_deref(), Some("GATEHOUSE_MODE"));
    assert!(message.contains("unknown variant `prod`"), "{message}");
}

#[test]
fn same_setting_twice_in_env_is_rejected() {
    let err = Config::load(
        None,
        env(&[("GATEHOUSE_MODE", "dev"), ("GATEHOUSE_mode", "production")]),
    )
    .unwrap_err();
    let (_, message) = config_error(err);
    assert!(message.contains("GATEHOUSE_MODE") && message.contains("GATEHOUSE_mode"));
}

#[test]
fn config_path_and_test_variables_are_ignored() {
    let config = Config::load(
        None,
        env(&[
            ("GATEHOUSE_CONFIG", "/etc/gatehouse.toml"),
            ("GATEHOUSE_TEST_POSTGRES_URL", "postgres://x"),
            ("GATEHOUSE_TEST_", ""),
        ]),
    )
    .unwrap();
    assert_eq!(config, Config::default());
}

/// Breaks one setting of a default configuration.
type Breaker = fn(&mut Config);

/// Each breaker's configuration fails validation naming its key (and no secret).
fn assert_each_rejected(cases: &[(&str, Breaker)]) {
    for (expected, break_it) in cases {
        let mut config = Config::default();
        break_it(&mut config);
        let (key, message) = config_error(config.validate().unwrap_err());
        assert_eq!(key.as_deref(), Some(*expected));
        assert!(!message.contains("secret"), "{message}");
    }
}

#[test]
fn validation_rejects_bad_settings() {
    let mut production = Config {
        mode: Mode::Production,
        ..Config::default()
    };
    let (key, message) = config_error(production.validate().unwrap_err());
    assert_eq!(key.as_deref(), Some("secrets"));
    assert!(
        message.contains("GATEHOUSE_SECRETS__MASTER_KEYS"),
        "{message}"
    );
    assert!(Config::load(None, env(&[("GATEHOUSE_MODE", "production")])).is_err());
    production.secrets.master_key_file = Some(PathBuf::from("/etc/gatehouse/master.key"));
    production.server.public_url = Some("https://login.example.com".to_owned());
    let (key, message) = config_error(production.validate().unwrap_err());
    assert_eq!(key.as_deref(), Some("mail.smtp_host"));
    assert!(message.contains("GATEHOUSE_MAIL__SMTP_HOST"), "{message}");
    production.mail.smtp_host = Some("smtp.example.com".to_owned());
    production.validate().unwrap();

    let cases: [(&str, Breaker); 32] = [
        ("server.listen", |c| {
            c.server.listen = "localhost".to_owned()
        }),
        ("database.pool_size", |c| c.database.pool_size = 0),
        ("log.level", |c| c.log.level = " ".to_owned()),
        ("database.url", |c| {
            c.database.url = Some("mysql://u:secret@h/db".to_owned())
        }),
        ("server.public_url", |c| {
            c.server.public_url = Some("id.example.com".to_owned())
        }),
        ("passwords.memory_kib", |c| {
            c.passwords.parallelism = 4;
            c.passwords.memory_kib = 31;
        }),
        ("passwords.iterations", |c| c.passwords.iterations = 0),
        ("passwords.parallelism", |c| c.passwords.parallelism = 0),
        ("passwords.min_length", |c| c.passwords.min_length = 7),
        ("passwords.max_length", |c| c.passwords.max_length = 11),
        ("passwords.max_length", |c| c.passwords.max_length = 1025),
        ("passwords.min_strength", |c| c.passwords.min_strength = 5),
        ("mail.smtp_host", |c| {
            c.mail.smtp_host = Some(" ".to_owned())
        }),
        ("mail.smtp_port", |c| c.mail.smtp_port = 0),
        ("mail.timeout_secs", |c| c.mail.timeout_secs = 0),
        ("mail.password", |c| c.mail.username = Some("u".to_owned())),
        ("mail.username", |c| {
            c.mail.password = Some(SecretString::new("hunter2"))
        }),
        ("mail.from", |c| c.mail.from = "Gatehouse".to_owned()),
        ("mail.from", |c| {
            c.mail.from = "Gatehouse <@localhost>".to_owned()
        }),
        ("sessions.idle_timeout_mins", |c| {
            c.sessions.idle_timeout_mins = 0
        }),
        ("sessions.idle_timeout_mins", |c| {
            c.sessions.idle_timeout_mins = 13 * 60
        }),
        ("sign_in.account_backoff_after", |c| {
            c.sign_in.account_backoff_after = 11
        }),
        ("sign_in.window_mins", |c| c.sign_in.window_mins = 0),
        ("keys.retired_publish_hours", |c| {
            c.keys.retired_publish_hours = 0
        }),
        ("keys.rotation_days", |c| {
            c.keys.rotation_days = 1;
            c.keys.retired_publish_hours = 48
        }),
        ("registration.resend_per_hour", |c| {
            c.registration.resend_per_hour = 0
        }),
        ("pdp.decision_log_retention_days", |c| {
            c.pdp.decision_log_retention_days = 36_501
        }),
        ("pdp.subject_cache_ms", |c| c.pdp.subject_cache_ms = 60_001),
        ("pdp.decision_log_queue", |c| c.pdp.decision_log_queue = 0),
        ("pdp.decision_log_queue", |c| {
            c.pdp.decision_log_queue = 1_000_001
        }),
        ("pdp.decision_log_wait_ms", |c| {
            c.pdp.decision_log_wait_ms = 0
        }),
        ("pdp.decision_log_wait_ms", |c| {
            c.pdp.decision_log_wait_ms = 60_001
        }),
    ];
    assert_each_rejected(&cases);
}

#[test]
fn new_sections_from_file_and_env() {
    let f = file(
        "[passwords]\nmemory_kib = 65536\nmin_length = 15\n\
         [mail]\nsmtp_host = \"smtp.example.com\"\ntls = \"tls\"\nsmtp_port = 465\n\
         username = \"gatehouse\"\n\
         [sign_in]\nlockout_mins = 30\n",
    );
    let config = Config::load(
        Some(f.path()),
        env(&[
            ("GATEHOUSE_PASSWORDS__ITERATIONS", "3"),
            ("GATEHOUSE_MAIL__PASSWORD", "hunter2"),
            ("GATEHOUSE_SESSIONS__IDLE_TIMEOUT_MINS", "10"),
            ("GATEHOUSE_SIGN_IN__ACCOUNT_LOCKOUT_THRESHOLD", "5"),
            ("GATEHOUSE_REGISTRATION__RESEND_PER_HOUR", "1"),
            ("GATEHOUSE_MODE", "production"),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", "k1:x"),
            ("GATEHOUSE_SERVER__PUBLIC_URL", "https://login.example.com"),
        ]),
    )
    .unwrap();
    assert_eq!(config.passwords.memory_kib, 65536);
    assert_eq!(config.passwords.iterations, 3);
    assert_eq!(config.passwords.min_length, 15);
    assert_eq!(config.passwords.max_length, 256);
    assert_eq!(config.mail.smtp_host.as_deref(), Some("smtp.example.com"));
    assert_eq!(config.mail.tls, MailTls::Tls);
    assert_eq!(config.mail.smtp_port, 465);
    assert_eq!(config.mail.username.as_deref(), Some("gatehouse"));
    assert_eq!(
        config.mail.password.as_ref().map(SecretString::expose),
        Some("hunter2")
    );
    assert!(!format!("{config:?}").contains("hunter2"));
    assert_eq!(config.mail.timeout(), Duration::from_secs(10));
    assert_eq!(config.sessions.idle_timeout(), Duration::from_secs(600));
    assert_eq!(
        config.sessions.absolute_timeout(),
        Duration::from_secs(12 * 3600)
    );
    assert_eq!(config.sign_in.account_lockout_threshold, 5);
    assert_eq!(config.sign_in.lockout(), Duration::from_secs(1800));
    assert_eq!(config.sign_in.window(), Duration::from_secs(3600));
    assert_eq!(config.registration.resend_per_hour, 1);
    assert_eq!(
        config.registration.verification_link_lifetime(),
        Duration::from_secs(24 * 3600)
    );

    let (key, message) =
        config_error(Config::load(None, env(&[("GATEHOUSE_MAIL__TLS", "ssl")])).unwrap_err());
    assert_eq!(key.as_deref(), Some("GATEHOUSE_MAIL__TLS"));
    assert!(message.contains("unknown variant `ssl`"), "{message}");
}

#[test]
fn trusted_proxies_from_file_and_env() {
    assert!(Config::default().server.trusted_proxies.is_empty());
    assert_eq!(
        Config::default().server.forwarded_header,
        ForwardedHeader::XForwardedFor
    );
    let f = file(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]\n\
         forwarded_header = \"forwarded\"\n",
    );
    let config = Config::load(Some(f.path()), env(&[])).unwrap();
    let expected: Vec<IpNet> = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    assert_eq!(config.server.trusted_proxies, expected);
    assert_eq!(config.server.forwarded_header, ForwardedHeader::Forwarded);

    // The variable is a comma-separated list and wins over the file.
    let config = Config::load(
        Some(f.path()),
        env(&[(
            "GATEHOUSE_SERVER__TRUSTED_PROXIES",
            " 192.0.2.7 ,172.16.0.0/12,",
        )]),
    )
    .unwrap();
    let expected: Vec<IpNet> = vec![
        "192.0.2.7".parse().unwrap(),
        "172.16.0.0/12".parse().unwrap(),
    ];
    assert_eq!(config.server.trusted_proxies, expected);
    let config = Config::load(
        Some(f.path()),
        env(&[("GATEHOUSE_SERVER__TRUSTED_PROXIES", "")]),
    )
    .unwrap();
    assert!(config.server.trusted_proxies.is_empty());

    let (key, message) = config_error(
        Config::load(
            None,
            env(&[("GATEHOUSE_SERVER__TRUSTED_PROXIES", "10.0.0.1/8")]),
        )
        .unwrap_err(),
    );
    assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__TRUSTED_PROXIES"));
    assert!(message.contains("10.0.0.0/8"), "{message}");
    let bad = file("[server]\ntrusted_proxies = [\"proxy.internal\"]\n");
    let (key, message) = config_error(Config::load(Some(bad.path()), env(&[])).unwrap_err());
    assert_eq!(key.as_deref(), Some("server.trusted_proxies"));
    assert!(message.contains("not an IP address"), "{message}");
    let (key, _) = config_error(
        Config::load(
            None,
            env(&[("GATEHOUSE_SERVER__FORWARDED_HEADER", "x-real-ip")]),
        )
        .unwrap_err(),
    );
    assert_eq!(key.as_deref(), Some("GATEHOUSE_SERVER__FORWARDED_HEADER"));
}

#[test]
fn passkey_limits_default_to_the_password_ones() {
    let defaults = Config::default();
    assert_eq!(
        defaults.passkeys.credential_lockout_threshold,
        defaults.sign_in.account_lockout_threshold
    );
    assert_eq!(
        defaults.passkeys.credential_backoff_after,
        defaults.sign_in.account_backoff_after
    );
    assert_eq!(
        defaults.passkeys.ip_lockout_threshold,
        defaults.sign_in.ip_lockout_threshold
    );
    assert_eq!(
        defaults.passkeys.lockout_mins,
        defaults.sign_in.lockout_mins
    );
    assert_eq!(defaults.passkeys.window_mins, defaults.sign_in.window_mins);

    let config = Config::load(
        None,
        env(&[
            ("GATEHOUSE_PASSKEYS__IP_LOCKOUT_THRESHOLD", "500"),
            ("GATEHOUSE_REGISTRATION__SIGNUP_MAILS_PER_HOUR", "2"),
        ]),
    )
    .unwrap();
    assert_eq!(config.passkeys.ip_lockout_threshold, 500);
    assert_eq!(config.registration.signup_mails_per_hour, 2);

    let cases: [(&str, Breaker); 5] = [
        ("passkeys.credential_backoff_after", |c| {
            c.passkeys.credential_backoff_after = 11
        }),
        ("passkeys.ip_lockout_threshold", |c| {
            c.passkeys.ip_lockout_threshold = 0
        }),
        ("passkeys.window_mins", |c| c.passkeys.window_mins = 0),
        ("registration.signup_mails_per_hour", |c| {
            c.registration.signup_mails_per_hour = 0
        }),
        ("registration.signup_mails_per_ip_hour", |c| {
            c.registration.signup_mails_per_ip_hour = 0
        }),
    ];
    assert_each_rejected(&cases);
}

#[test]
fn decision_log_retention() {
    assert_eq!(
        Config::default().pdp.decision_log_retention(),
        Some(Duration::from_secs(90 * 86_400))
    );
    let config = Config::load(
        None,
        env(&[("GATEHOUSE_PDP__DECISION_LOG_RETENTION_DAYS", "0")]),
    )
    .unwrap();
    assert_eq!(config.pdp.decision_log_retention(), None, "0 keeps forever");
}

#[test]
fn decision_log_overflow_waits_unless_sampling_is_chosen() {
    let defaults = Config::default().pdp;
    assert_eq!(defaults.decision_log_when_full, DecisionLogWhenFull::Wait);
    let f = file("[pdp]\ndecision_log_when_full = \"sample\"\ndecision_log_queue = 8\n");
    let config = Config::load(
        Some(f.path()),
        env(&[("GATEHOUSE_PDP__DECISION_LOG_WAIT_MS", "250")]),
    )
    .unwrap();
    assert_eq!(
        config.pdp.decision_log_when_full,
        DecisionLogWhenFull::Sample
    );
    assert_eq!(config.pdp.decision_log_queue, 8);
    assert_eq!(config.pdp.decision_log_wait_ms, 250);
    let refused = Config::load(
        None,
        env(&[("GATEHOUSE_PDP__DECISION_LOG_WHEN_FULL", "drop")]),
    );
    assert!(refused.is_err(), "only wait or sample");
}

#[test]
fn database_urls() {
    use DatabaseBackend::*;
    for (url, backend) in [
        ("sqlite:///var/lib/gh.db", Sqlite),
        ("sqlite://gh.db", Sqlite),
        ("sqlite::memory:", Sqlite),
        ("postgres://u:p@h/db", Postgres),
        ("postgresql://h/db", Postgres),
    ] {
        assert_eq!(DatabaseBackend::from_url(url).unwrap(), backend, "{url}");
    }
    for url in [
        "sqlite://",
        "postgres://",
        "mysql://h/db",
        "gatehouse.db",
        "",
    ] {
        assert!(DatabaseBackend::from_url(url).is_err(), "{url}");
    }
    assert_eq!(sqlite_path("sqlite::memory:"), Some(":memory:"));
    assert_eq!(sqlite_path("sqlite:///a/b.db"), Some("/a/b.db"));
    assert_eq!(sqlite_path("postgres://h/db"), None);
    assert_eq!(
        redact_url_password("postgres://gh:hunter2@db:5432/gh?sslmode=require"),
        "postgres://gh:[redacted]@db:5432/gh?sslmode=require"
    );
    assert_eq!(redact_url_password("postgres://db/gh"), "postgres://db/gh");
}

#[test]
fn secret_string_debug_is_redacted() {
    let secret = SecretString::new("k1:c2VjcmV0");
    assert_eq!(format!("{secret:?}"), "\"[redacted]\"");
    let config = Config {
        secrets: SecretsConfig {
            master_keys: Some(secret.clone()),
            master_key_file: None,
        },
        ..Config::default()
    };
    assert!(!format!("{config:?}").contains("c2VjcmV0"));
    assert_eq!(secret, SecretString::new("k1:c2VjcmV0"));
    assert_ne!(secret, SecretString::new("k1:other"));
}

#[test]
fn optional_keys_are_real_settings() {
    // deny_unknown_fields makes this fail if an entry names no field.
    let schema = schema().unwrap();
    Config::deserialize(toml::Value::Table(schema)).unwrap();
}

/// The example file writes out every setting with its default value and leaves only
/// the "unset by default" ones commented, so it cannot drift from the code.
#[test]
fn example_file_is_exactly_the_defaults() {
    let parsed: Config = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(parsed, Config::default());

    // Every defaulted setting is written out, not just left to the defaults...
    let raw: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let defaults = match toml::Value::try_from(Config::default()).unwrap() {
        toml::Value::Table(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(raw, defaults);

    // ...the unset ones are shown commented out, and every variable is documented.
    for key in OPTIONAL_KEYS {
        let (_, field) = key.rsplit_once('.').unwrap();
        assert!(
            EXAMPLE.contains(&format!("# {field} = ")),
            "{key} not shown"
        );
    }
    let schema = schema().unwrap();
    let mut leaves = Vec::new();
    collect_leaves(&schema, &mut Vec::new(), &mut leaves);
    assert!(leaves.len() > 10);
    for leaf in leaves {
        let var = env_var_name(&leaf.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(EXAMPLE.contains(&var), "{var} not documented");
    }
}

fn collect_leaves(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Table(inner) => collect_leaves(inner, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}
