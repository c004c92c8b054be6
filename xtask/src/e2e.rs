//! `cargo xtask e2e`: the browser end-to-end tests in `e2e/`.
//!
//! They drive Debian's headless Chromium (`/usr/bin/chromium`) with playwright-core
//! under node's own test runner, against the `gatehouse` binary built here. Nothing
//! is downloaded but the npm packages in `e2e/package-lock.json`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use crate::{Failed, Outcome, cargo, run, workspace_root};

/// Where the tests launch Chromium from; `e2e/lib/browser.js` uses the same path.
const CHROMIUM: &str = "/usr/bin/chromium";
/// playwright-core's own minimum (its `engines` field).
const MIN_NODE_MAJOR: u32 = 20;
const SKIP_HINT: &str =
    "(`cargo xtask test --no-e2e` runs the rest of the suite without the browser tests)";

/// Checks the machine, builds the server, installs the npm packages when the lock file
/// changed, then runs `node --test` in `e2e/` (extra args go to node, after `--test`).
pub fn run_e2e(extra: &[OsString]) -> Outcome {
    // The cheap checks first: no point building for a run that cannot start a browser.
    if !Path::new(CHROMIUM).exists() {
        eprintln!("{CHROMIUM} not found: install chromium (apt-get install -y chromium)");
        eprintln!("{SKIP_HINT}");
        return Err(Failed(1));
    }
    check_node()?;

    let binary = build_server(Profile::Debug)?;
    let dir = workspace_root().join("e2e");
    if needs_npm_ci(&dir) {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir);
        run(&mut npm)?;
    }

    let python = python_tools(&dir)?;

    let mut node = Command::new("node");
    node.arg("--test")
        .args(extra)
        .current_dir(&dir)
        .env("GATEHOUSE_BIN", &binary)
        .env("GATEHOUSE_E2E_PYTHON", &python);
    eprintln!("GATEHOUSE_BIN={}", binary.display());
    run(&mut node)
}

fn check_node() -> Outcome {
    let version = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    let version = match version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => {
            eprintln!("node not found: install Node.js {MIN_NODE_MAJOR} or later with npm");
            eprintln!("{SKIP_HINT}");
            return Err(Failed(1));
        }
    };
    // "v20.20.2" → 20
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(()),
        _ => {
            eprintln!(
                "node {version} is too old: the browser tests need Node.js {MIN_NODE_MAJOR} or later"
            );
            eprintln!("{SKIP_HINT}");
            Err(Failed(1))
        }
    }
}

/// Which cargo profile [`build_server`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Debug,
    Release,
}

/// Builds `gatehouse` and returns its path as cargo reports it, so a `CARGO_TARGET_DIR`
/// or a configured target directory is honoured without guessing.
pub(crate) fn build_server(profile: Profile) -> Result<PathBuf, Failed> {
    let mut cmd = cargo();
    cmd.arg("build");
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    cmd.args([
        "-p",
        "gatehouse-server",
        "--bin",
        "gatehouse",
        // JSON messages on stdout for us; diagnostics still rendered for the reader.
        "--message-format=json-render-diagnostics",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    eprintln!("$ {}", crate::display(&cmd));
    let output = cmd.output().map_err(|err| {
        eprintln!("failed to start cargo: {err}");
        Failed(1)
    })?;
    if !output.status.success() {
        return Err(Failed(1));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match gatehouse_executable(&stdout) {
        Some(path) => Ok(path),
        None => {
            eprintln!("cargo built gatehouse-server but reported no `gatehouse` executable");
            Err(Failed(1))
        }
    }
}

/// The last `executable` of a `compiler-artifact` message whose file is `gatehouse`.
fn gatehouse_executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|line| json_string_field(line, "executable"))
        .map(PathBuf::from)
        .find(|path| path.file_stem().is_some_and(|stem| stem == "gatehouse"))
}

/// The string value of the first `"field":"…"` in one line of cargo's JSON, unescaped.
/// Enough for cargo's compact output; not a general JSON parser.
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let key = format!(r#""{field}":""#);
    let start = line.find(&key)? + key.len();
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                'b' => value.push('\u{8}'),
                'f' => value.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other), // \" \\ \/
            },
            c => value.push(c),
        }
    }
    None
}

/// `npm ci` when `node_modules` is missing or older than the package files. npm writes
/// `node_modules/.package-lock.json` on every install, so its time is the install's.
fn needs_npm_ci(dir: &Path) -> bool {
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    let Some(installed) = installed else {
        return true;
    };
    ["package-lock.json", "package.json"]
        .iter()
        .filter_map(|name| modified(&dir.join(name)))
        .any(|changed| changed > installed)
}

/// The Python the SCIM conformance tests run scim2-tester with
/// (`e2e/scim/requirements.txt`, in `GATEHOUSE_E2E_VENV` or ~/.cache/gatehouse/e2e-venv).
fn python_tools(dir: &Path) -> Result<PathBuf, Failed> {
    let requirements = dir.join("scim").join("requirements.txt");
    let venv = crate::python::venv_dir("GATEHOUSE_E2E_VENV", "e2e-venv");
    crate::python::venv(&requirements, &venv).inspect_err(|_| eprintln!("{SKIP_HINT}"))
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_gatehouse_executable_among_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"serde"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"gatehouse","kind":["bin"]},"executable":"/t/debug/gatehouse","fresh":true}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            gatehouse_executable(messages),
            Some(PathBuf::from("/t/debug/gatehouse"))
        );
        assert_eq!(gatehouse_executable(r#"{"reason":"build-finished"}"#), None);
    }

    #[test]
    fn unescapes_json_strings() {
        let line = r#"{"executable":"C:\\t\\d\u00e9bug\\\"x\".exe","other":"y"}"#;
        assert_eq!(
            json_string_field(line, "executable").as_deref(),
            Some(r#"C:\t\débug\"x".exe"#)
        );
        assert_eq!(json_string_field(line, "missing"), None);
        assert_eq!(
            json_string_field(r#"{"executable":"cut"#, "executable"),
            None
        );
    }

    #[test]
    fn npm_ci_runs_until_node_modules_is_newer_than_the_lock_file() {
        let dir = std::env::temp_dir().join(format!("xtask-e2e-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("node_modules")).unwrap();
        fs::write(dir.join("package.json"), "{}").unwrap();
        fs::write(dir.join("package-lock.json"), "{}").unwrap();
        assert!(needs_npm_ci(&dir), "no install yet");

        let installed = dir.join("node_modules").join(".package-lock.json");
        fs::write(&installed, "{}").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&installed)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!needs_npm_ci(&dir), "installed after the lock file");

        fs::File::options()
            .write(true)
            .open(dir.join("package-lock.json"))
            .unwrap()
            .set_modified(later + std::time::Duration::from_secs(60))
            .unwrap();
        assert!(needs_npm_ci(&dir), "lock file changed since");
        fs::remove_dir_all(&dir).unwrap();
    }
}
