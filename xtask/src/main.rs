//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! Every CI step lives here so that CI and a developer run the same thing; `.ci/run`
//! only prepares the machine and calls `cargo xtask ci`. Std only, to stay cheap to build.

mod pg;
// Tidy checks are ordinary tests over the workspace; they need no code in the binary.
#[cfg(test)]
mod tidy;

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  test [nextest args]   check PostgreSQL, then the whole test suite (nextest) and the doc tests
  dev [-- server args]  run the server for development (`gatehouse serve`)
  lint                  rustfmt check and clippy with warnings denied
  bench [cargo args]    run the benchmarks
  ci                    lint, then test (what .ci/run calls)";

/// A failed step; carries the exit code to hand back to the shell.
#[derive(Debug)]
struct Failed(u8);

type Outcome = Result<(), Failed>;

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();
    let outcome = match command.as_ref().and_then(|c| c.to_str()) {
        Some("test") => test(&rest, None),
        Some("dev") => dev(&rest),
        Some("lint") => lint(),
        Some("bench") => bench(&rest),
        Some("ci") => ci(),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            if let Some(other) = other {
                eprintln!("unknown command `{other}`\n");
            }
            eprintln!("{USAGE}");
            Err(Failed(2))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed(code)) => ExitCode::from(code),
    }
}

fn test(extra: &[OsString], nextest_profile: Option<&str>) -> Outcome {
    // Fail before compiling anything: the store tests never skip PostgreSQL, so a
    // missing server would otherwise surface as dozens of failures minutes later.
    let url = pg::test_url();
    if let Err(reason) = pg::check_reachable(&url) {
        eprintln!(
            "PostgreSQL is not reachable at {}: {reason} — the store tests need it; \
             start it or set GATEHOUSE_TEST_PG_URL",
            pg::redact(&url)
        );
        return Err(Failed(1));
    }
    eprintln!("PostgreSQL is reachable at {}", pg::redact(&url));

    let suite = if has_nextest() {
        let mut cmd = cargo();
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(extra);
        if let Some(profile) = nextest_profile {
            // An env var rather than `--profile`, so a caller's NEXTEST_PROFILE still wins.
            if env::var_os("NEXTEST_PROFILE").is_none() {
                cmd.env("NEXTEST_PROFILE", profile);
            }
        }
        run(&mut cmd)
    } else {
        eprintln!(
            "cargo-nextest is not installed; install it with `cargo install cargo-nextest --locked`.\n\
             Falling back to `cargo test --workspace` (extra args are passed to it unchanged)."
        );
        // `cargo test` already runs the doc tests, so this is the whole suite.
        return run(cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(extra));
    };
    // nextest does not run doc tests. Run them even after a failure so one CI run
    // reports everything, then fail with the first error.
    let doc = run(cargo().args(["test", "--workspace", "--doc", "--no-fail-fast"]));
    suite.and(doc)
}

fn dev(extra: &[OsString]) -> Outcome {
    // `cargo xtask dev -- --flag` and `cargo xtask dev --flag` mean the same.
    let extra = match extra.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => extra,
    };
    let mut cmd = cargo();
    cmd.args([
        "run",
        "-p",
        "gatehouse-server",
        "--bin",
        "gatehouse",
        "--",
        "serve",
    ])
    .args(extra);
    exec(&mut cmd)
}

fn lint() -> Outcome {
    // Run both so one pass shows formatting and clippy problems together.
    let fmt = run(cargo().args(["fmt", "--all", "--", "--check"]));
    let clippy = run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]));
    fmt.and(clippy)
}

fn bench(extra: &[OsString]) -> Outcome {
    run(cargo()
        .args(["bench", "-p", "gatehouse-identity-store"])
        .args(extra))
}

fn ci() -> Outcome {
    // Lint first: it is the cheaper step and a lint failure fails CI anyway.
    lint()?;
    test(&[], Some("ci"))
}

/// The workspace root; commands run there whatever the caller's directory.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo that launched us (set by `cargo run`), so toolchain overrides carry over.
fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn run(cmd: &mut Command) -> Outcome {
    eprintln!("$ {}", display(cmd));
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            // Killed by a signal has no code; any non-zero byte still fails the caller.
            let code = status.code().and_then(|c| u8::try_from(c).ok());
            Err(Failed(code.filter(|&c| c != 0).unwrap_or(1)))
        }
        Err(err) => {
            eprintln!("failed to start {}: {err}", cmd.get_program().display());
            Err(Failed(1))
        }
    }
}

/// Replaces this process, so Ctrl-C reaches the server directly and its exit code is ours.
#[cfg(unix)]
fn exec(cmd: &mut Command) -> Outcome {
    use std::os::unix::process::CommandExt;
    eprintln!("$ {}", display(cmd));
    let err = cmd.exec();
    eprintln!("failed to start {}: {err}", cmd.get_program().display());
    Err(Failed(1))
}

#[cfg(not(unix))]
fn exec(cmd: &mut Command) -> Outcome {
    run(cmd)
}

fn display(cmd: &Command) -> String {
    let program = cmd.get_program();
    // Show `cargo`, not the toolchain's absolute path.
    let program = std::path::Path::new(program).file_name().unwrap_or(program);
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
