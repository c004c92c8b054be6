//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! Every CI step lives here so that CI and a developer run the same thing; `.ci/run`
//! only prepares the machine and calls `cargo xtask ci`. Std only, to stay cheap to build.

mod bench;
mod deploy;
mod e2e;
mod pg;
mod python;
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
  test [--no-e2e] [nextest args]
                        check PostgreSQL, then the whole test suite (nextest), the doc tests
                        and the browser tests (`e2e`; --no-e2e skips them for a quick run)
  e2e [node args]       browser end-to-end tests in e2e/: build the server, `npm ci` when
                        needed, then `node --test` driving headless /usr/bin/chromium
  dev [-- server args]  run the server for development (`gatehouse serve`)
  lint                  rustfmt check and clippy with warnings denied
  bench [--no-load] [cargo args]
                        run the benchmarks, then the token endpoint load run (release
                        server + wrk, about 20 s; --no-load skips it)
  bench-token           only the token endpoint load run
  bench-pdp             the policy decision point load run (release server, seeded
                        users, realistic policies, wrk at several connection counts)
  deploy <container|kubernetes|systemd> [--dry-run] [options]
                        ship the server: an OCI image layout, the Kubernetes manifests
                        (rendered, applied when kubectl has a context) or a rollout to
                        hosts over ssh with rollback (`cargo xtask deploy --help`)
  ci                    lint, then test, then e2e (what .ci/run calls)";

/// A failed step; carries the exit code to hand back to the shell.
#[derive(Debug)]
struct Failed(u8);

type Outcome = Result<(), Failed>;

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();
    let outcome = match command.as_ref().and_then(|c| c.to_str()) {
        Some("test") => {
            let (rest, browser) = take_no_e2e(&rest);
            test(&rest, None, browser)
        }
        Some("e2e") => e2e::run_e2e(&rest),
        Some("dev") => dev(&rest),
        Some("lint") => lint(),
        Some("bench") => bench(&rest),
        Some("bench-token") => bench::token_load(),
        Some("bench-pdp") => bench::pdp_load(),
        Some("deploy") => deploy::run(&rest),
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

/// `--no-e2e` among our args (not after a `--`, which belongs to the test binaries):
/// the args without it, and whether the browser tests should run.
fn take_no_e2e(args: &[OsString]) -> (Vec<OsString>, Browser) {
    let ours = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (head, tail) = args.split_at(ours);
    let skip = head.iter().any(|a| a == "--no-e2e");
    let kept = head
        .iter()
        .filter(|a| *a != "--no-e2e")
        .chain(tail)
        .cloned()
        .collect();
    (kept, if skip { Browser::Skip } else { Browser::Run })
}

/// Whether `test` ends with the browser end-to-end tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Browser {
    Run,
    Skip,
}

fn test(extra: &[OsString], nextest_profile: Option<&str>, browser: Browser) -> Outcome {
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
    // kubernetes-validate and PyYAML, for the xtask deploy tests (which never skip).
    deploy::prepare_test_tools()?;

    let suite = rust_suite(extra, nextest_profile);
    if browser == Browser::Skip {
        return suite;
    }
    // After a failed suite too, so one run reports everything; the first error wins.
    let browser = e2e::run_e2e(&[]);
    suite.and(browser)
}

/// Every Rust test: nextest and the doc tests, or `cargo test` without nextest.
fn rust_suite(extra: &[OsString], nextest_profile: Option<&str>) -> Outcome {
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
    let (extra, no_load) = bench::take_flag(extra, "--no-load");
    let extra = extra.as_slice();
    run(cargo()
        .args(["bench", "-p", "gatehouse-identity-store"])
        .args(extra))?;
    // Password sign-in against raw Argon2id (about 2 minutes).
    run(cargo()
        .args(["bench", "-p", "gatehouse-server", "--bench", "signin"])
        .args(extra))?;
    if no_load {
        return Ok(());
    }
    bench::token_load()
}

fn ci() -> Outcome {
    // Lint first: it is the cheaper step and a lint failure fails CI anyway. `test`
    // ends with the browser tests, so this is lint, test, then e2e.
    lint()?;
    test(&[], Some("ci"), Browser::Run)
}

/// The workspace root; commands run there whatever the caller's directory.
fn workspace_root() -> PathBuf {
    // The parent, not `xtask/..`, so paths in messages read plainly.
    let xtask = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_e2e_is_taken_only_before_a_double_dash() {
        assert_eq!(take_no_e2e(&args(&[])), (args(&[]), Browser::Run));
        assert_eq!(
            take_no_e2e(&args(&["-E", "test(x)", "--no-e2e"])),
            (args(&["-E", "test(x)"]), Browser::Skip)
        );
        assert_eq!(
            take_no_e2e(&args(&["--no-e2e", "--", "--no-e2e"])),
            (args(&["--", "--no-e2e"]), Browser::Skip)
        );
        assert_eq!(
            take_no_e2e(&args(&["--", "--no-e2e"])),
            (args(&["--", "--no-e2e"]), Browser::Run)
        );
    }
}
