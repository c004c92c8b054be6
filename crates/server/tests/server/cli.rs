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
