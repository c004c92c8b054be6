//! `cargo xtask deploy systemd --host user@h1 --host user@h2`: the binary and
//! `deploy/systemd/gatehouse.service` rolled out one host at a time over ssh/scp.
//!
//! Per host: copy the binary beside the live one, keep the live one as
//! `gatehouse.previous`, install the unit, migrate (first host only), restart, then
//! poll `/readyz` on the host. A host that does not become ready gets the previous
//! binary and unit back and is restarted; the rollout stops there, so at most one
//! host runs a bad build. The ssh user must be allowed to write /usr/local/bin and
//! /etc/systemd/system and run systemctl (root).
//!
//! `GATEHOUSE_DEPLOY_SSH` and `GATEHOUSE_DEPLOY_SCP` replace `ssh` and `scp` (split on
//! whitespace, so options may follow), which is how the tests run it against scripts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Options, Res, read, shell_quote, step};
use crate::workspace_root;

const BINARY: &str = "/usr/local/bin/gatehouse";
const UNIT: &str = "/etc/systemd/system/gatehouse.service";
/// The unit's user, made on the host when missing.
const USER: &str = "gatehouse";
/// How often readiness is asked.
const POLL: Duration = Duration::from_secs(1);

pub fn command(args: &[OsString]) -> Res<()> {
    let options = Options::parse(
        args,
        &["--binary", "--host", "--ready-url-port", "--ready-timeout"],
        &["--dry-run"],
    )?;
    let dry_run = options.flag("--dry-run");
    let hosts: Vec<String> = options.all("--host").map(str::to_owned).collect();
    if hosts.is_empty() {
        return Err("name at least one --host USER@HOST".to_owned());
    }
    // ssh and scp would read `-oProxyCommand=…` as an option, not a host.
    if let Some(bad) = hosts
        .iter()
        .find(|host| host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace))
    {
        return Err(format!("`{bad}` is not a host: give USER@HOST or HOST"));
    }
    let port = match options.value("--ready-url-port")? {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--ready-url-port {port}: not a port"))?,
        None => 8080,
    };
    let ready_timeout = match options.value("--ready-timeout")? {
        Some(secs) => secs
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("--ready-timeout {secs}: not a number of seconds"))?,
        None => Duration::from_secs(60),
    };
    let unit_file = workspace_root().join("deploy/systemd/gatehouse.service");
    let unit = read(&unit_file)?;
    let binary = super::binary(options.value("--binary")?, dry_run)?;
    let rollout = Rollout {
        binary: binary.unwrap_or_else(|| PathBuf::from("target/release/gatehouse")),
        unit_file,
        migrate_properties: migrate_properties(&unit),
        port,
        ready_timeout,
    };
    let remote = Remote::from_env(|name| std::env::var_os(name));
    if dry_run {
        rollout.print(&remote, &hosts);
        return Ok(());
    }
    match rollout.run(&remote, &hosts) {
        Outcome::Done => {
            println!("deployed to {} host(s): {}", hosts.len(), hosts.join(", "));
            Ok(())
        }
        Outcome::RolledBack { host, reason } => Err(format!(
            "{host} {reason}; it was rolled back to its previous version and the rollout \
             stopped (hosts after it were not touched)"
        )),
        Outcome::Stopped { host, reason } => Err(format!(
            "{host}: {reason}; nothing was changed there and the rollout stopped"
        )),
    }
}

/// The ssh and scp commands, as programs plus leading arguments.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    ssh: Vec<OsString>,
    scp: Vec<OsString>,
}

impl Remote {
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<OsString>) -> Remote {
        let words = |name: &str, default: &str| -> Vec<OsString> {
            let value = var(name).unwrap_or_else(|| default.into());
            let words: Vec<OsString> = value
                .to_string_lossy()
                .split_whitespace()
                .map(OsString::from)
                .collect();
            if words.is_empty() {
                vec![default.into()]
            } else {
                words
            }
        };
        Remote {
            ssh: words("GATEHOUSE_DEPLOY_SSH", "ssh"),
            scp: words("GATEHOUSE_DEPLOY_SCP", "scp"),
        }
    }
}

/// One thing done to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Copy { from: PathBuf, to: &'static str },
    Run(String),
}

impl Action {
    fn command(&self, remote: &Remote, host: &str) -> Command {
        let (program, args) = match self {
            Action::Copy { .. } => remote.scp.split_first(),
            Action::Run(_) => remote.ssh.split_first(),
        }
        .unwrap_or_else(|| unreachable!("Remote always has a program"));
        let mut cmd = Command::new(program);
        cmd.args(args);
        match self {
            Action::Copy { from, to } => cmd.arg(from).arg(format!("{host}:{to}")),
            Action::Run(script) => cmd.arg(host).arg(script),
        };
        cmd
    }

    /// The command as a shell would take it, for the dry run and the log.
    fn shown(&self, remote: &Remote, host: &str) -> String {
        let cmd = self.command(remote, host);
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|word| shell_quote(&word.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// Installed, then not ready (or a later step failed): put back.
    RolledBack {
        host: String,
        reason: String,
    },
    /// Failed before anything live changed on the host.
    Stopped {
        host: String,
        reason: String,
    },
}

/// What to ship and how to tell it works.
#[derive(Debug, Clone)]
pub(crate) struct Rollout {
    pub binary: PathBuf,
    pub unit_file: PathBuf,
    /// `systemd-run` properties that give `gatehouse migrate` the unit's user and
    /// environment (see [`migrate_properties`]).
    pub migrate_properties: Vec<String>,
    pub port: u16,
    pub ready_timeout: Duration,
}

impl Rollout {
    /// Copies both files beside the live ones; nothing live changes yet.
    fn upload(&self) -> Vec<Action> {
        vec![
            Action::Copy {
                from: self.binary.clone(),
                to: "/usr/local/bin/gatehouse.new",
            },
            Action::Copy {
                from: self.unit_file.clone(),
                to: "/etc/systemd/system/gatehouse.service.new",
            },
        ]
    }

    /// Keeps the live binary and unit as `.previous` (copies, so a restart in
    /// between still finds them; through a temporary name, so a failed copy never
    /// leaves half a file to roll back to) and renames the new ones into place.
    fn install(&self) -> Action {
        Action::Run(format!(
            "set -e; \
             for f in {BINARY} {UNIT}; do \
             if [ -e \"$f\" ]; then cp -p \"$f\" \"$f.previous.tmp\"; \
             mv -f \"$f.previous.tmp\" \"$f.previous\"; else rm -f \"$f.previous\"; fi; \
             done; \
             id -u {USER} >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
             --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin {USER}; \
             chmod 0755 {BINARY}.new; chmod 0644 {UNIT}.new; \
             mv -f {BINARY}.new {BINARY}; mv -f {UNIT}.new {UNIT}; \
             systemctl daemon-reload"
        ))
    }

    /// `gatehouse migrate` as the unit's user with the unit's environment, waited for.
    fn migrate(&self) -> Action {
        let mut words = vec![
            "systemd-run".to_owned(),
            "--quiet".to_owned(),
            "--wait".to_owned(),
            "--pipe".to_owned(),
            "--collect".to_owned(),
            "--unit=gatehouse-migrate".to_owned(),
        ];
        words.extend(
            self.migrate_properties
                .iter()
                .map(|p| format!("--property={p}")),
        );
        words.extend([BINARY.to_owned(), "migrate".to_owned()]);
        Action::Run(
            words
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    fn restart(&self) -> Action {
        Action::Run(
            "systemctl daemon-reload && systemctl enable --quiet gatehouse && \
             systemctl restart gatehouse"
                .to_owned(),
        )
    }

    fn ready(&self) -> Action {
        Action::Run(format!(
            "curl -fsS --max-time 5 -o /dev/null http://127.0.0.1:{}/readyz",
            self.port
        ))
    }

    /// Puts the previous binary and unit back and restarts them; a first install
    /// (nothing to go back to) is stopped and disabled instead.
    fn rollback(&self) -> Action {
        Action::Run(format!(
            "previous=no; \
             if [ -e {BINARY}.previous ]; then mv -f {BINARY}.previous {BINARY}; previous=yes; fi; \
             if [ -e {UNIT}.previous ]; then mv -f {UNIT}.previous {UNIT}; fi; \
             systemctl daemon-reload; \
             if [ $previous = yes ]; then systemctl restart gatehouse; \
             else systemctl disable --now gatehouse; fi"
        ))
    }

    fn print(&self, remote: &Remote, hosts: &[String]) {
        println!("would roll out to {} host(s), one at a time:", hosts.len());
        for (index, host) in hosts.iter().enumerate() {
            println!("{host}:");
            let mut steps = self.upload();
            steps.push(self.install());
            if index == 0 {
                steps.push(self.migrate());
            }
            steps.push(self.restart());
            for action in &steps {
                println!("  $ {}", action.shown(remote, host));
            }
            println!(
                "  $ {}   (every {} s until it succeeds, at most {} s)",
                self.ready().shown(remote, host),
                POLL.as_secs(),
                self.ready_timeout.as_secs()
            );
            println!("  if any step after the upload fails, or it is not ready in time:");
            println!("  $ {}", self.rollback().shown(remote, host));
            println!("  and stop the rollout");
        }
    }

    /// Deploys host after host; stops at the first that fails.
    pub(crate) fn run(&self, remote: &Remote, hosts: &[String]) -> Outcome {
        for (index, host) in hosts.iter().enumerate() {
            step(format!(
                "{host}: copying the binary and unit ({}/{})…",
                index + 1,
                hosts.len()
            ));
            for action in self.upload() {
                if let Err(reason) = exec(&action, remote, host) {
                    return Outcome::Stopped {
                        host: host.clone(),
                        reason,
                    };
                }
            }
            step(format!(
                "{host}: installing (the live version kept as .previous)…"
            ));
            if let Err(reason) = exec(&self.install(), remote, host) {
                return self.roll_back(remote, host, reason);
            }
            if index == 0 {
                // Once: later hosts find the schema current (and the server takes
                // a PostgreSQL advisory lock, so a concurrent run would be safe).
                step(format!("{host}: gatehouse migrate…"));
                if let Err(reason) = exec(&self.migrate(), remote, host) {
                    return self.roll_back(remote, host, reason);
                }
            }
            step(format!("{host}: restarting gatehouse…"));
            if let Err(reason) = exec(&self.restart(), remote, host) {
                return self.roll_back(remote, host, reason);
            }
            step(format!(
                "{host}: waiting for /readyz on port {} (up to {} s)…",
                self.port,
                self.ready_timeout.as_secs()
            ));
            if let Err(reason) = self.wait_ready(remote, host) {
                return self.roll_back(remote, host, reason);
            }
            step(format!("{host}: ready"));
        }
        Outcome::Done
    }

    fn wait_ready(&self, remote: &Remote, host: &str) -> Res<()> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            let mut cmd = self.ready().command(remote, host);
            let last = match cmd.stdin(Stdio::null()).output() {
                Ok(out) if out.status.success() => return Ok(()),
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(err) => format!("cannot run ssh: {err}"),
            };
            if Instant::now() + POLL > deadline {
                return Err(format!(
                    "was not ready within {} s (last answer: {last})",
                    self.ready_timeout.as_secs()
                ));
            }
            thread::sleep(POLL);
        }
    }

    fn roll_back(&self, remote: &Remote, host: &str, reason: String) -> Outcome {
        step(format!("{host}: {reason}; rolling back…"));
        match exec(&self.rollback(), remote, host) {
            Ok(()) => match self.wait_ready(remote, host) {
                Ok(()) => step(format!(
                    "{host}: rolled back; the previous version is ready"
                )),
                Err(err) => step(format!("{host}: rolled back, but it {err} either")),
            },
            Err(err) => step(format!("{host}: the rollback failed too: {err}")),
        }
        Outcome::RolledBack {
            host: host.to_owned(),
            reason,
        }
    }
}

/// Runs one action with its output shown; a failure says which command failed.
fn exec(action: &Action, remote: &Remote, host: &str) -> Res<()> {
    let shown = action.shown(remote, host);
    eprintln!("$ {shown}");
    let status = action
        .command(remote, host)
        .stdin(Stdio::null())
        .status()
        .map_err(|err| format!("cannot run `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// The unit's user and environment as `systemd-run` properties, read from the unit
/// itself, so `gatehouse migrate` sees the configuration the service will.
pub(crate) fn migrate_properties(unit: &str) -> Vec<String> {
    const TAKEN: &[&str] = &[
        "User",
        "Group",
        "Environment",
        "EnvironmentFile",
        "StateDirectory",
    ];
    let mut in_service = false;
    let mut properties = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        if in_service && TAKEN.contains(&key.trim()) {
            properties.push(line.to_owned());
        }
    }
    properties
}

#[cfg(test)]
mod tests;
