//! `cargo xtask deploy <container|kubernetes|systemd>`: ship the `gatehouse` binary.
//!
//! - `container` writes an OCI image layout itself (no container engine needed);
//! - `kubernetes` renders `deploy/kubernetes/templates` with one values file and, when
//!   kubectl has a context, applies them (migration Job first);
//! - `systemd` rolls the binary and a hardened unit out host by host over ssh, and
//!   rolls a host back when it does not become ready.
//!
//! Std only, like the rest of xtask: archives, digests and remote work go through
//! system tools (tar, gzip, sha256sum, ldd, ssh, scp, curl, kubectl). Every target takes
//! `--dry-run`, which prints what would be done and changes nothing. See
//! `deploy/README.md`.

mod container;
mod kubernetes;
mod systemd;
#[cfg(test)]
mod testing;

use std::ffi::OsString;
use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Failed, Outcome, workspace_root};

pub const USAGE: &str = "\
usage: cargo xtask deploy <target> [--dry-run] [options]

targets:
  container [--binary PATH] [--output DIR] [--tag TAG]
        an OCI image layout of the binary (default target/oci/gatehouse, tag the
        crate version); push it with `skopeo copy oci:DIR:TAG docker://…`
  kubernetes [--values FILE] [--output DIR]
        render deploy/kubernetes/templates with deploy/kubernetes/values.toml into
        deploy/kubernetes/rendered; apply them when `kubectl config current-context`
        names a cluster (migration Job first, then the rest, then the rollout)
  systemd --host USER@HOST... [--binary PATH] [--ready-url-port PORT] [--ready-timeout SECS]
        one host at a time over ssh: install the binary and deploy/systemd/gatehouse.service,
        migrate (first host), restart, wait for /readyz; roll a host back and stop when
        it does not become ready (ssh and scp: GATEHOUSE_DEPLOY_SSH, GATEHOUSE_DEPLOY_SCP)

options:
  --dry-run      print what would be done; change nothing
  --binary PATH  ship this gatehouse binary instead of building
                 `cargo build --release -p gatehouse-server --bin gatehouse`";

/// The Python tools the deploy tests run: kubernetes-validate, and PyYAML to read
/// the manifests (`deploy/kubernetes/requirements.txt`).
pub(crate) fn tools_venv() -> PathBuf {
    crate::python::venv_dir("GATEHOUSE_DEPLOY_VENV", "deploy-venv")
}

/// Installs them; `cargo xtask test` does so before the suite, which never skips
/// the tests that need them.
pub(crate) fn prepare_test_tools() -> Outcome {
    let requirements = workspace_root().join("deploy/kubernetes/requirements.txt");
    crate::python::venv(&requirements, &tools_venv()).map(|_| ())
}

/// An error worth one line to the operator; becomes exit code 1 at the top.
pub(crate) type Res<T> = Result<T, String>;

pub fn run(args: &[OsString]) -> Outcome {
    let Some((target, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Err(Failed(2));
    };
    let done = match target.to_str() {
        Some("container") => container::command(rest),
        Some("kubernetes") => kubernetes::command(rest),
        Some("systemd") => systemd::command(rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => {
            eprintln!("unknown deploy target `{}`\n\n{USAGE}", target.display());
            return Err(Failed(2));
        }
    };
    done.map_err(|message| {
        eprintln!("deploy failed: {message}");
        Failed(1)
    })
}

/// A progress line for a step that may take a while.
fn step(message: impl Display) {
    eprintln!("==> {message}");
}

/// One target's command line: `--name value`, `--name=value` and bare flags.
#[derive(Debug, Default)]
struct Options {
    values: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
}

impl Options {
    /// Parses `args` against the options a target takes (`valued` need a value).
    fn parse(args: &[OsString], valued: &[&'static str], flags: &[&'static str]) -> Res<Options> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let arg = arg
                .to_str()
                .ok_or_else(|| format!("argument {} is not UTF-8", arg.display()))?;
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg, None),
            };
            if let Some(&flag) = flags.iter().find(|f| **f == name) {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                options.flags.push(flag);
            } else if let Some(&option) = valued.iter().find(|o| **o == name) {
                let value = match inline {
                    Some(value) => value,
                    None => args
                        .next()
                        .and_then(|v| v.to_str())
                        .ok_or_else(|| format!("{option} needs a value"))?
                        .to_owned(),
                };
                options.values.push((option, value));
            } else {
                return Err(format!(
                    "unknown option `{arg}` (see `cargo xtask deploy --help`)"
                ));
            }
        }
        Ok(options)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    /// The one value of an option; given twice is a mistake worth naming.
    fn value<'a>(&'a self, name: &'a str) -> Res<Option<&'a str>> {
        let mut given = self.all(name);
        let first = given.next();
        if given.next().is_some() {
            return Err(format!("{name} given more than once"));
        }
        Ok(first)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.values
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A path for messages: relative to the workspace when inside it.
fn shown(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A path from the command line, relative to the caller's directory.
fn user_path(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    match std::env::current_dir() {
        Ok(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// The binary to ship: the one given, or a fresh release build. A dry run builds
/// nothing, so without `--binary` it gets `None` and says what it would build.
fn binary(given: Option<&str>, dry_run: bool) -> Res<Option<PathBuf>> {
    if let Some(path) = given {
        let path = user_path(path);
        if !path.is_file() {
            return Err(format!("--binary {}: no such file", path.display()));
        }
        return Ok(Some(path));
    }
    if dry_run {
        println!(
            "would build: cargo build --release -p gatehouse-server --bin gatehouse \
             (pass --binary PATH to ship a given binary)"
        );
        return Ok(None);
    }
    step("building the release binary (cargo build --release -p gatehouse-server)…");
    crate::e2e::build_server(crate::e2e::Profile::Release)
        .map(Some)
        .map_err(|_| "the release build failed".to_owned())
}

/// Runs a tool and returns its stdout; a failure carries the tool's stderr.
fn output(cmd: &mut Command) -> Res<String> {
    let shown = crate::display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run `{shown}`: {err}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            stderr.trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`{shown}` printed non-UTF-8 output"))
}

/// Runs a tool with its output shown to the operator.
fn run_shown(cmd: &mut Command) -> Res<()> {
    crate::run(cmd).map_err(|_| format!("`{}` failed", crate::display(cmd)))
}

/// The SHA-256 of a file as lowercase hex, from `sha256sum`.
fn sha256(path: &Path) -> Res<String> {
    let out = output(Command::new("sha256sum").arg("--binary").arg(path))?;
    let hex = out.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("sha256sum printed `{}`", out.trim()));
    }
    Ok(hex.to_ascii_lowercase())
}

/// The commit the work tree is at, for the image's revision label.
fn git_revision() -> Res<String> {
    let mut cmd = Command::new("git");
    cmd.args(["rev-parse", "HEAD"])
        .current_dir(workspace_root());
    Ok(output(&mut cmd)?.trim().to_owned())
}

/// `version` in crates/server/Cargo.toml's `[package]`: the default image tag.
fn server_version() -> Res<String> {
    let manifest = workspace_root().join("crates/server/Cargo.toml");
    let text = read(&manifest)?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("version") {
            let value = rest.trim_start().strip_prefix('=').map(str::trim);
            if let Some(version) = value.and_then(|v| v.strip_prefix('"')?.strip_suffix('"')) {
                return Ok(version.to_owned());
            }
        }
    }
    Err(format!(
        "no `version = \"…\"` in [package] of {}",
        manifest.display()
    ))
}

fn read(path: &Path) -> Res<String> {
    fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Res<()> {
    fs::write(path, contents).map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// Quotes a word for a POSIX shell: what is printed is what a remote shell gets.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_take_values_both_ways_and_refuse_unknown_ones() {
        let parsed = Options::parse(
            &args(&["--host", "a@h1", "--dry-run", "--host=a@h2", "--tag", "x"]),
            &["--host", "--tag"],
            &["--dry-run"],
        )
        .unwrap();
        assert!(parsed.flag("--dry-run"));
        assert_eq!(parsed.all("--host").collect::<Vec<_>>(), ["a@h1", "a@h2"]);
        assert_eq!(parsed.value("--tag").unwrap(), Some("x"));
        assert!(parsed.value("--host").is_err(), "given twice");

        let unknown = Options::parse(&args(&["--frobnicate"]), &[], &["--dry-run"]);
        assert!(unknown.unwrap_err().contains("--frobnicate"));
        let missing = Options::parse(&args(&["--tag"]), &["--tag"], &[]);
        assert_eq!(missing.unwrap_err(), "--tag needs a value");
        let valued_flag = Options::parse(&args(&["--dry-run=yes"]), &[], &["--dry-run"]);
        assert!(valued_flag.is_err());
    }

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("/usr/local/bin/gatehouse"),
            "/usr/local/bin/gatehouse"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_server_version_is_read_from_its_manifest() {
        let version = server_version().unwrap();
        assert!(version.split('.').count() == 3, "{version}");
    }
}
