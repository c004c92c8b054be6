use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::deploy::testing::{TEST_MASTER_KEYS, TempDir, check_config, need_tool, server_binary};

fn unit_file() -> PathBuf {
    workspace_root().join("deploy/systemd/gatehouse.service")
}

fn unit() -> String {
    fs::read_to_string(unit_file()).unwrap()
}

/// The unit with its programs pointed at an executable that exists here (this test
/// binary), since verify checks them; everything else as shipped.
fn verifiable_copy(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let text = unit().replace(BINARY, &exe.to_string_lossy());
    let path = dir.join("gatehouse.service");
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_has_the_settings_asked_for() {
    let unit = unit();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for wanted in [
        "User=gatehouse",
        "DynamicUser=no",
        "StateDirectory=gatehouse",
        "ConfigurationDirectory=gatehouse",
        "EnvironmentFile=-/etc/gatehouse/gatehouse.env",
        "ExecStartPre=/usr/local/bin/gatehouse check-config",
        "ExecStart=/usr/local/bin/gatehouse serve",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "UMask=0077",
        "Restart=on-failure",
        "LimitNOFILE=65536",
    ] {
        assert!(lines.contains(&wanted), "the unit lacks {wanted}");
    }
    // Longer than the server's own graceful shutdown, or systemd kills it mid-way.
    let stop = lines
        .iter()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse::<u64>().ok())
        .expect("TimeoutStopSec=<seconds>s");
    assert!((31..=60).contains(&stop), "TimeoutStopSec={stop}");
}

/// The unit's `Environment=` lines and the example env file, as systemd would pass
/// them, read by the real server (its configuration refuses unknown variables).
#[test]
fn the_server_accepts_the_units_environment_and_the_example_file() {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |line: &str| {
        if let Some((name, value)) = line.split_once('=') {
            vars.retain(|(k, _)| k != name);
            vars.push((name.to_owned(), value.to_owned()));
        }
    };
    for line in unit().lines() {
        if let Some(assignment) = line.strip_prefix("Environment=") {
            set(assignment);
        }
    }
    let example = workspace_root().join("deploy/systemd/gatehouse.env.example");
    for line in fs::read_to_string(example).unwrap().lines() {
        if !(line.is_empty() || line.starts_with('#')) {
            set(line);
        }
    }
    let keys = vars
        .iter_mut()
        .find(|(k, _)| k == "GATEHOUSE_SECRETS__MASTER_KEYS")
        .expect("the example sets the master keys");
    assert!(
        keys.1.contains("<base64url 32-byte key>"),
        "a placeholder, not a key"
    );
    keys.1 = TEST_MASTER_KEYS.to_owned();
    check_config(&server_binary(), &vars, "gatehouse.env.example");
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    need_tool("systemd-analyze", "apt-get install -y systemd");
    let dir = TempDir::new("verify");
    let copy = verifiable_copy(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    need_tool("systemd-analyze", "apt-get install -y systemd");
    let dir = TempDir::new("security");
    let copy = verifiable_copy(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "→ Overall exposure level for gatehouse.service: 1.2 OK 🙂"
    let overall = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for gatehouse.service: "))
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    let mut words = overall.split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    assert!(
        score <= 2.5,
        "exposure {overall} (at most 2.5 wanted):\n{report}"
    );
    assert_eq!(words.next(), Some("OK"), "{overall}");
}

#[test]
fn migrate_runs_with_the_units_user_and_environment() {
    let properties = migrate_properties(&unit());
    assert_eq!(
        properties,
        [
            "User=gatehouse",
            "Group=gatehouse",
            "StateDirectory=gatehouse",
            "Environment=GATEHOUSE_MODE=production",
            "Environment=GATEHOUSE_DATA_DIR=/var/lib/gatehouse",
            "EnvironmentFile=-/etc/gatehouse/gatehouse.env",
        ]
    );
}

#[test]
fn ssh_and_scp_come_from_the_environment() {
    let env = HashMap::from([("GATEHOUSE_DEPLOY_SSH", "ssh -o BatchMode=yes")]);
    let remote = Remote::from_env(|name| env.get(name).map(OsString::from));
    assert_eq!(remote.ssh, ["ssh", "-o", "BatchMode=yes"]);
    assert_eq!(remote.scp, ["scp"]);
    let action = Action::Run("echo 'hi'".to_owned());
    assert_eq!(
        action.shown(&remote, "root@h1"),
        r"ssh -o BatchMode=yes root@h1 'echo '\''hi'\'''"
    );
}

const NEW_BUILD: &str = "the new build";
const OLD_BUILD: &str = "the running build";
const OLD_UNIT: &str = "[Service]\nExecStart=/usr/local/bin/gatehouse serve\n";

fn rollout(dir: &Path) -> Rollout {
    let binary = dir.join("gatehouse");
    fs::write(&binary, NEW_BUILD).unwrap();
    Rollout {
        binary,
        unit_file: unit_file(),
        migrate_properties: migrate_properties(&unit()),
        port: 8080,
        ready_timeout: Duration::from_secs(2),
    }
}

fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Hosts simulated on this machine: each host `user@NAME` is a directory
/// `hosts/NAME` standing for its root. The fake scp copies into it; the fake ssh runs
/// the remote command with `sh -c` (as sshd would), its absolute paths moved under
/// that directory, with systemctl, systemd-run, useradd, id and curl replaced by
/// stubs that log. curl fails on `h2`: its new build never becomes ready. Every
/// ssh/scp call is logged to `calls.log`, every stub call to `stubs.log`.
struct Fleet {
    dir: PathBuf,
    remote: Remote,
}

impl Fleet {
    fn new(dir: &Path) -> Fleet {
        let stubs = dir.join("stubs");
        fs::create_dir_all(&stubs).unwrap();
        let log = |name: &str| dir.join(name).display().to_string();
        let stub_log = format!(
            "printf '%s: %s\\n' \"$FAKE_HOST\" \"$(basename $0) $*\" >> '{}'\n",
            log("stubs.log")
        );
        for name in ["systemctl", "systemd-run", "useradd"] {
            script(&stubs.join(name), &format!("{stub_log}exit 0\n"));
        }
        // The user does not exist yet, so useradd is called.
        script(&stubs.join("id"), "exit 1\n");
        script(
            &stubs.join("curl"),
            &format!(
                "{stub_log}[ \"$FAKE_HOST\" = h2 ] && {{ echo 'curl: (7) refused' >&2; exit 7; }}\nexit 0\n"
            ),
        );
        let calls = log("calls.log");
        let hosts = dir.join("hosts").display().to_string();
        let ssh = dir.join("ssh");
        script(
            &ssh,
            &format!(
                "printf '%s\\n' \"ssh $*\" >> '{calls}'\n\
                 FAKE_HOST=\"${{1#*@}}\"; export FAKE_HOST\n\
                 root='{hosts}'/\"$FAKE_HOST\"\n\
                 command=$(printf '%s' \"$2\" | sed -e \"s#/usr/local/bin/#$root/usr/local/bin/#g\" \
                 -e \"s#/etc/systemd/system/#$root/etc/systemd/system/#g\")\n\
                 PATH='{}':\"$PATH\" exec sh -c \"$command\"\n",
                stubs.display()
            ),
        );
        let scp = dir.join("scp");
        script(
            &scp,
            &format!(
                "printf '%s\\n' \"scp $*\" >> '{calls}'\n\
                 host=\"${{2%%:*}}\"; exec cp \"$1\" '{hosts}'/\"${{host#*@}}\"\"${{2#*:}}\"\n"
            ),
        );
        let env = HashMap::from([("GATEHOUSE_DEPLOY_SSH", ssh), ("GATEHOUSE_DEPLOY_SCP", scp)]);
        let remote = Remote::from_env(|name| env.get(name).map(|p| p.clone().into_os_string()));
        Fleet {
            dir: dir.to_owned(),
            remote,
        }
    }

    /// A host; `running` gives it a deployed build and unit already.
    fn host(&self, name: &str, running: bool) -> String {
        let root = self.root(name);
        fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
        if running {
            fs::write(root.join("usr/local/bin/gatehouse"), OLD_BUILD).unwrap();
            fs::write(root.join("etc/systemd/system/gatehouse.service"), OLD_UNIT).unwrap();
        }
        format!("root@{name}")
    }

    fn root(&self, name: &str) -> PathBuf {
        self.dir.join("hosts").join(name)
    }

    fn file(&self, host: &str, path: &str) -> Option<String> {
        fs::read_to_string(self.root(host).join(path.trim_start_matches('/'))).ok()
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

#[test]
fn a_host_that_is_not_ready_is_rolled_back_and_the_rollout_stops() {
    let dir = TempDir::new("rollout");
    let fleet = Fleet::new(dir.path());
    let hosts = ["h1", "h2", "h3"].map(|h| fleet.host(h, true));
    let plan = rollout(dir.path());

    let outcome = plan.run(&fleet.remote, &hosts);
    let Outcome::RolledBack { host, reason } = &outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(host, "root@h2");
    assert!(
        reason.contains("not ready within 2 s") && reason.contains("refused"),
        "{reason}"
    );

    let unit = unit();
    let bin = "/usr/local/bin/gatehouse";
    let unit_path = "/etc/systemd/system/gatehouse.service";
    // h1 runs the new build and unit, and keeps the old ones to go back to.
    assert_eq!(fleet.file("h1", bin).as_deref(), Some(NEW_BUILD));
    assert_eq!(
        fleet.file("h1", &format!("{bin}.previous")).as_deref(),
        Some(OLD_BUILD)
    );
    assert_eq!(fleet.file("h1", unit_path).as_deref(), Some(unit.as_str()));
    assert_eq!(
        fleet
            .file("h1", &format!("{unit_path}.previous"))
            .as_deref(),
        Some(OLD_UNIT)
    );
    // h2 is back on the old build and unit.
    assert_eq!(fleet.file("h2", bin).as_deref(), Some(OLD_BUILD));
    assert_eq!(fleet.file("h2", unit_path).as_deref(), Some(OLD_UNIT));
    assert_eq!(fleet.file("h2", &format!("{bin}.previous")), None);
    // h3 was never touched.
    assert_eq!(fleet.file("h3", bin).as_deref(), Some(OLD_BUILD));
    assert_eq!(
        fs::read_dir(fleet.root("h3").join("usr/local/bin"))
            .unwrap()
            .count(),
        1
    );
    let calls = fleet.log("calls.log");
    assert!(!calls.contains("h3"), "h3 was contacted:\n{calls}");

    // What ran where: one migration (on h1, as the unit's user), a restart on each,
    // readiness polled on h2 until the deadline, then the old build restarted.
    let stubs = fleet.log("stubs.log");
    let on = |host: &str| -> Vec<&str> {
        stubs
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{host}: ")))
            .collect()
    };
    let h1 = on("h1");
    let migrations: Vec<&&str> = h1.iter().filter(|l| l.starts_with("systemd-run")).collect();
    assert_eq!(migrations.len(), 1, "{stubs}");
    assert!(
        migrations[0].contains("--property=User=gatehouse"),
        "{}",
        migrations[0]
    );
    assert!(
        migrations[0].ends_with("/usr/local/bin/gatehouse migrate"),
        "{}",
        migrations[0]
    );
    assert!(h1.contains(&"useradd --system --user-group --no-create-home --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin gatehouse"));
    assert!(h1.contains(&"systemctl restart gatehouse"), "{stubs}");
    assert_eq!(
        h1.iter().filter(|l| l.starts_with("curl")).count(),
        1,
        "ready at once"
    );
    assert!(h1[h1.len() - 1].contains("http://127.0.0.1:8080/readyz"));

    let h2 = on("h2");
    assert!(
        !h2.iter().any(|l| l.starts_with("systemd-run")),
        "migrated once only"
    );
    let restarts: Vec<usize> = h2
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "systemctl restart gatehouse")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        restarts.len(),
        2,
        "the new build, then the old one:\n{stubs}"
    );
    let polls = h2[restarts[0]..restarts[1]]
        .iter()
        .filter(|l| l.starts_with("curl"))
        .count();
    assert!(
        (2..=3).contains(&polls),
        "polled {polls} times in 2 s:\n{stubs}"
    );
    assert!(!stubs.contains("h3:"));
}

#[test]
fn a_first_install_that_is_not_ready_is_stopped() {
    let dir = TempDir::new("first");
    let fleet = Fleet::new(dir.path());
    let host = fleet.host("h2", false);
    let outcome = rollout(dir.path()).run(&fleet.remote, &[host]);
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    // Nothing to go back to: the service is stopped, not left failing.
    assert!(
        fleet
            .log("stubs.log")
            .contains("h2: systemctl disable --now gatehouse")
    );
}

#[test]
fn a_failed_upload_changes_nothing_and_stops() {
    let dir = TempDir::new("upload");
    let mut fleet = Fleet::new(dir.path());
    let hosts = ["h1", "h2"].map(|h| fleet.host(h, true));
    fleet.remote.scp = vec!["false".into()];
    let outcome = rollout(dir.path()).run(&fleet.remote, &hosts);
    assert!(
        matches!(&outcome, Outcome::Stopped { host, .. } if host == "root@h1"),
        "{outcome:?}"
    );
    assert_eq!(fleet.log("calls.log"), "", "no ssh call");
    assert_eq!(
        fleet.file("h1", "/usr/local/bin/gatehouse").as_deref(),
        Some(OLD_BUILD)
    );
}

#[test]
fn all_ready_hosts_are_deployed() {
    let dir = TempDir::new("all");
    let fleet = Fleet::new(dir.path());
    let hosts = [fleet.host("h1", true), fleet.host("h3", false)];
    assert_eq!(
        rollout(dir.path()).run(&fleet.remote, &hosts),
        Outcome::Done
    );
    for host in ["h1", "h3"] {
        assert_eq!(
            fleet.file(host, "/usr/local/bin/gatehouse").as_deref(),
            Some(NEW_BUILD)
        );
    }
    let stubs = fleet.log("stubs.log");
    assert_eq!(stubs.matches("systemd-run").count(), 1, "{stubs}");
    assert!(!stubs.contains("disable"), "no rollback:\n{stubs}");
}
