//! Python tools the tests run (scim2-tester, kubernetes-validate), each set in a
//! virtual environment outside the clone, like the cargo target, so CI reuses it;
//! rebuilt when its requirements file (every package pinned) changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Failed, run};

/// Where a virtual environment lives: `$var` when set, else
/// `~/.cache/gatehouse/<name>`.
pub(crate) fn venv_dir(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            home.join(".cache").join("gatehouse").join(name)
        }
    }
}

/// Makes `venv` hold exactly `requirements` (skipped when it already does) and
/// returns its python.
pub(crate) fn venv(requirements: &Path, venv: &Path) -> Result<PathBuf, Failed> {
    let wanted = fs::read_to_string(requirements).map_err(|err| {
        eprintln!("cannot read {}: {err}", requirements.display());
        Failed(1)
    })?;
    let python = venv.join("bin").join("python");
    let stamp = venv.join("installed-requirements.txt");
    if python.exists() && fs::read_to_string(&stamp).is_ok_and(|had| had == wanted) {
        return Ok(python);
    }
    let _ = fs::remove_dir_all(venv);
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(venv);
    run(&mut create).inspect_err(|_| {
        eprintln!(
            "python3 with its venv module is needed for {}",
            requirements.display()
        );
    })?;
    let mut install = Command::new(venv.join("bin").join("pip"));
    install
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements);
    run(&mut install)?;
    fs::write(&stamp, wanted).map_err(|err| {
        eprintln!("cannot write {}: {err}", stamp.display());
        Failed(1)
    })?;
    Ok(python)
}
