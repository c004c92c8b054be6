//! Helpers the deploy tests share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::{env, fs};

/// A fresh directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = env::temp_dir().join(format!("xtask-deploy-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Where a tool the test needs is on PATH; fails (never skips) when it is not.
pub(crate) fn need_tool(name: &str, install: &str) -> PathBuf {
    env::var_os("PATH")
        .and_then(|path| {
            env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is not on PATH; this test needs it ({install})"))
}

/// The debug server binary, built when it is missing (the tests run the real one).
pub(crate) fn server_binary() -> PathBuf {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let binary = target.join("debug/gatehouse");
    if binary.is_file() {
        return binary;
    }
    crate::e2e::build_server(crate::e2e::Profile::Debug).expect("building the debug server")
}

/// A master key for `GATEHOUSE_SECRETS__MASTER_KEYS` (32 bytes, base64url): what the
/// Secret or the env file would hold.
pub(crate) const TEST_MASTER_KEYS: &str = "mk-test:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// `gatehouse check-config` with only the given environment: the server's own,
/// strict reading of a configuration a deploy file gives it.
pub(crate) fn check_config(binary: &Path, vars: &[(String, String)], what: &str) {
    let out = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running gatehouse check-config");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("configuration OK"),
        "{} check-config refuses {what} (is the binary current?):\n{said}\nwith {vars:#?}",
        binary.display()
    );
}
