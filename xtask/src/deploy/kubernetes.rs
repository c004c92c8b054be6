//! `cargo xtask deploy kubernetes`: render `deploy/kubernetes/templates/*.yaml` with
//! `deploy/kubernetes/values.toml` into `deploy/kubernetes/rendered/`, then apply them
//! when kubectl has a context: the migration Job first (and wait for it), then the
//! rest, then wait for the rollout.
//!
//! The values file is a flat TOML subset read here (`key = "string"`, integers,
//! `true`/`false`, `#` comments). Templates hold `{{ key }}` placeholders. Both sides
//! are strict: a key the schema below does not know, a key missing, a placeholder
//! naming no key and a key no template uses are all refused, so a typo fails the
//! render instead of shipping a manifest with a hole in it. String values may only
//! stand inside double quotes, where they are escaped, so no value can change the
//! YAML's structure.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Options, Res, output, read, run_shown, shown, step, user_path, write};
use crate::workspace_root;

/// The Deployment's name; `kubectl rollout status` waits for it.
const DEPLOYMENT: &str = "gatehouse";
/// The template applied (and waited for) before everything else.
const MIGRATION_TEMPLATE: &str = "migration-job.yaml";
const MIGRATION_JOB_PREFIX: &str = "gatehouse-migrate-";

/// The first line of every rendered file.
const HEADER: &str = "# Rendered by `cargo xtask deploy kubernetes` from deploy/kubernetes/templates \
                      and values.toml: edit those, not this file.\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// A check beyond the type, where a bad value would only fail in the cluster.
#[derive(Debug, Clone, Copy)]
enum Check {
    Any,
    /// A DNS-1123 label: names of namespaces, Secrets, classes.
    Label,
    /// Part of the migration Job's name, which must stay a label of at most 63.
    Tag,
    Host,
    Cidr,
    Port,
    /// At least this much.
    Min(i64),
    OneOf(&'static [&'static str]),
}

/// Every key the values file has, with its type; the templates use each of them.
const SCHEMA: &[(&str, Kind, Check)] = &[
    ("namespace", Kind::Str, Check::Label),
    ("image_repository", Kind::Str, Check::Any),
    ("image_tag", Kind::Str, Check::Tag),
    ("replicas", Kind::Int, Check::Min(1)),
    ("max_replicas", Kind::Int, Check::Min(1)),
    ("target_cpu_utilization", Kind::Int, Check::Min(1)),
    ("cpu_request", Kind::Str, Check::Any),
    ("memory_request", Kind::Str, Check::Any),
    ("memory_limit", Kind::Str, Check::Any),
    ("rollout_timeout_seconds", Kind::Int, Check::Min(30)),
    ("host", Kind::Str, Check::Host),
    ("ingress_class", Kind::Str, Check::Label),
    ("tls_secret_name", Kind::Str, Check::Label),
    ("secret_name", Kind::Str, Check::Label),
    ("ingress_namespace", Kind::Str, Check::Label),
    ("ingress_network", Kind::Str, Check::Cidr),
    ("monitoring_namespace", Kind::Str, Check::Label),
    ("database_cidr", Kind::Str, Check::Cidr),
    ("database_port", Kind::Int, Check::Port),
    ("mail_relay_host", Kind::Str, Check::Host),
    ("mail_relay_cidr", Kind::Str, Check::Cidr),
    ("mail_relay_port", Kind::Int, Check::Port),
    (
        "mail_tls",
        Kind::Str,
        Check::OneOf(&["starttls", "tls", "none"]),
    ),
    ("mail_from", Kind::Str, Check::Any),
    ("outbound_https_cidr", Kind::Str, Check::Cidr),
    ("migration_backoff_limit", Kind::Int, Check::Min(0)),
    ("migration_ttl_seconds", Kind::Int, Check::Min(0)),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::Str,
            Value::Int(_) => Kind::Int,
            Value::Bool(_) => Kind::Bool,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

pub(crate) type Values = BTreeMap<String, Value>;

pub fn command(args: &[OsString]) -> Res<()> {
    let options = Options::parse(args, &["--values", "--output"], &["--dry-run"])?;
    let dry_run = options.flag("--dry-run");
    let base = workspace_root().join("deploy/kubernetes");
    let values_file = options
        .value("--values")?
        .map_or_else(|| base.join("values.toml"), user_path);
    let out_dir = options
        .value("--output")?
        .map_or_else(|| base.join("rendered"), user_path);

    step(format!(
        "rendering {} with {}…",
        shown(&base.join("templates")),
        shown(&values_file)
    ));
    let values = load_values(&values_file)?;
    let rendered = render_dir(&base.join("templates"), &values)?;
    let changes = changes(&rendered, &out_dir)?;
    let plan = Apply::new(&values, &out_dir, &rendered);

    if dry_run {
        print_changes(&changes, &rendered, &out_dir)?;
        match current_context() {
            Some(context) => {
                println!("would apply to kubectl context `{context}`:");
                for cmd in plan.commands() {
                    println!("  $ {}", crate::display(&cmd));
                }
            }
            None => println!("would not apply: kubectl has no current context"),
        }
        return Ok(());
    }

    write_rendered(&rendered, &changes, &out_dir)?;
    let written = changes.iter().filter(|c| c.change != Change::Same).count();
    println!(
        "rendered {} manifests into {} ({written} changed)",
        rendered.len(),
        shown(&out_dir)
    );
    let Some(context) = current_context() else {
        println!(
            "not applied: kubectl has no current context (`kubectl config current-context` \
             failed); apply {} yourself, the migration Job first",
            shown(&out_dir)
        );
        return Ok(());
    };
    plan.run(&context)
}

/// Reads and checks a values file.
pub(crate) fn load_values(path: &Path) -> Res<Values> {
    let text = read(path)?;
    let values = parse_values(&text).map_err(|err| format!("{}: {err}", shown(path)))?;
    check_values(&values).map_err(|err| format!("{}: {err}", shown(path)))?;
    Ok(values)
}

/// The flat TOML subset: `key = value` lines, comments and blank lines.
pub(crate) fn parse_values(text: &str) -> Res<Values> {
    let mut values = Values::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let at = |message: String| format!("line {line_no}: {message}");
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            return Err(at(
                "tables are not supported: the values file is flat".to_owned()
            ));
        }
        let (key, rest) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected `key = value`, found `{line}`")))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(at(format!("`{key}` is not a plain key (a-z, 0-9, _)")));
        }
        let (value, trailing) = parse_value(rest.trim()).map_err(&at)?;
        let trailing = trailing.trim();
        if !(trailing.is_empty() || trailing.starts_with('#')) {
            return Err(at(format!(
                "unexpected `{trailing}` after the value of `{key}`"
            )));
        }
        if values.insert(key.to_owned(), value).is_some() {
            return Err(at(format!("`{key}` is set twice")));
        }
    }
    Ok(values)
}

/// One value and what follows it on the line.
fn parse_value(text: &str) -> Res<(Value, &str)> {
    if let Some(body) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Value::Str(value), &body[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, '"')) => value.push('"'),
                    Some((_, '\\')) => value.push('\\'),
                    other => {
                        let shown = other.map_or(String::new(), |(_, c)| c.to_string());
                        return Err(format!(
                            "unsupported escape `\\{shown}` (only \\\" and \\\\)"
                        ));
                    }
                },
                c if c.is_control() => return Err("control character in a string".to_owned()),
                c => value.push(c),
            }
        }
        return Err("unterminated string".to_owned());
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == '#')
        .unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    let value = match word {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match word.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => {
                return Err(format!(
                    "`{word}` is not a value: use \"a string\", an integer, true or false"
                ));
            }
        },
    };
    Ok((value, rest))
}

/// Every key known and present, each of its type and shape.
pub(crate) fn check_values(values: &Values) -> Res<()> {
    for key in values.keys() {
        if !SCHEMA.iter().any(|(known, ..)| known == key) {
            let known: Vec<&str> = SCHEMA.iter().map(|(k, ..)| *k).collect();
            return Err(format!(
                "unknown key `{key}`; the keys are: {}",
                known.join(", ")
            ));
        }
    }
    for (key, kind, check) in SCHEMA {
        let value = values
            .get(*key)
            .ok_or_else(|| format!("`{key}` is missing"))?;
        if value.kind() != *kind {
            return Err(format!(
                "`{key}` must be {}, not `{value}`",
                kind_name(*kind)
            ));
        }
        check_value(value, *check).map_err(|err| format!("`{key}` = `{value}`: {err}"))?;
    }
    let (Some(Value::Int(min)), Some(Value::Int(max))) =
        (values.get("replicas"), values.get("max_replicas"))
    else {
        return Ok(());
    };
    if max < min {
        return Err(format!("max_replicas ({max}) is below replicas ({min})"));
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "a \"string\"",
        Kind::Int => "an integer",
        Kind::Bool => "true or false",
    }
}

fn check_value(value: &Value, check: Check) -> Res<()> {
    let label = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    match (check, value) {
        (Check::Any, _) => Ok(()),
        (Check::Label, Value::Str(s)) if label(s, 63) => Ok(()),
        (Check::Label, _) => Err("expected a DNS label (a-z, 0-9, -; at most 63)".to_owned()),
        // The Job's name is the prefix and the tag, and must stay a label.
        (Check::Tag, Value::Str(s))
            if !s.contains("..")
                && label(&s.replace('.', "-"), 63 - MIGRATION_JOB_PREFIX.len()) =>
        {
            Ok(())
        }
        (Check::Tag, _) => Err(format!(
            "expected a lower-case tag (a-z, 0-9, ., -; at most {}) so the migration Job's \
             name can carry it",
            63 - MIGRATION_JOB_PREFIX.len()
        )),
        (Check::Host, Value::Str(s))
            if !s.is_empty()
                && s.split('.')
                    .all(|part| label(&part.to_ascii_lowercase(), 63)) =>
        {
            Ok(())
        }
        (Check::Host, _) => Err("expected a host name".to_owned()),
        (Check::Cidr, Value::Str(s)) => {
            let parsed = s.split_once('/').and_then(|(ip, bits)| {
                let ip: IpAddr = ip.parse().ok()?;
                let bits: u8 = bits.parse().ok()?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                (bits <= max).then_some(())
            });
            parsed.ok_or_else(|| "expected a CIDR network such as 10.0.0.0/16".to_owned())
        }
        (Check::Port, Value::Int(n)) if (1..=65535).contains(n) => Ok(()),
        (Check::Port, _) => Err("expected a port, 1 to 65535".to_owned()),
        (Check::Min(min), Value::Int(n)) if n >= &min => Ok(()),
        (Check::Min(min), _) => Err(format!("expected at least {min}")),
        (Check::OneOf(choices), Value::Str(s)) if choices.contains(&s.as_str()) => Ok(()),
        (Check::OneOf(choices), _) => Err(format!("expected one of {}", choices.join(", "))),
        (_, _) => Err("wrong type".to_owned()),
    }
}

/// Renders every `*.yaml` in `dir` (by name) and checks that each key was used.
pub(crate) fn render_dir(dir: &Path, values: &Values) -> Res<Vec<(String, String)>> {
    let mut templates = Vec::new();
    let listing =
        fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    for entry in listing {
        let path = entry
            .map_err(|err| format!("cannot list {}: {err}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            templates.push((name, read(&path)?));
        }
    }
    templates.sort();
    render_all(&templates, values)
}

/// Renders each (name, text) template; fails on a placeholder naming no value and on
/// a value no template uses.
pub(crate) fn render_all(
    templates: &[(String, String)],
    values: &Values,
) -> Res<Vec<(String, String)>> {
    let mut used = BTreeSet::new();
    let mut rendered = Vec::new();
    for (name, text) in templates {
        let body =
            render(text, values, &mut used).map_err(|err| format!("template {name}: {err}"))?;
        rendered.push((name.clone(), format!("{HEADER}{body}")));
    }
    let unused: Vec<&str> = values
        .keys()
        .map(String::as_str)
        .filter(|key| !used.contains(*key))
        .collect();
    if !unused.is_empty() {
        return Err(format!(
            "no template uses {}: remove them from the values or use them",
            unused.join(", ")
        ));
    }
    Ok(rendered)
}

/// Replaces every `{{ key }}` in one template, noting the keys used.
fn render(text: &str, values: &Values, used: &mut BTreeSet<String>) -> Res<String> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let at = |message: String| format!("line {}: {message}", index + 1);
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..]
                .find("}}")
                .map(|e| start + e)
                .ok_or_else(|| at("`{{` without `}}`".to_owned()))?;
            let key = rest[start + 2..end].trim();
            let value = values
                .get(key)
                .ok_or_else(|| at(format!("unknown placeholder `{{{{ {key} }}}}`")))?;
            let before = &rest[..start];
            out.push_str(before);
            match value {
                Value::Str(s) => {
                    // Inside "…" the value is escaped; anywhere else it could end
                    // the scalar and write YAML of its own.
                    let done = &out[out.rfind('\n').map_or(0, |n| n + 1)..];
                    if !inside_double_quotes(done) {
                        return Err(at(format!(
                            "`{{{{ {key} }}}}` holds a string: put it inside double quotes"
                        )));
                    }
                    out.push_str(&s.replace('\\', "\\\\").replace('"', "\\\""));
                }
                other => out.push_str(&other.to_string()),
            }
            used.insert(key.to_owned());
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Whether a line rendered so far ends inside a double-quoted YAML scalar.
fn inside_double_quotes(line: &str) -> bool {
    let mut inside = false;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if inside && !escaped => {
                escaped = true;
                continue;
            }
            '"' if !escaped => inside = !inside,
            _ => {}
        }
        escaped = false;
    }
    inside
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    New,
    Changed,
    Same,
    /// In the output directory, but no template renders it any more.
    Removed,
}

#[derive(Debug)]
struct FileChange {
    name: String,
    change: Change,
}

fn changes(rendered: &[(String, String)], out_dir: &Path) -> Res<Vec<FileChange>> {
    let mut changes = Vec::new();
    for (name, text) in rendered {
        let change = match fs::read_to_string(out_dir.join(name)) {
            Ok(old) if old == *text => Change::Same,
            Ok(_) => Change::Changed,
            Err(_) => Change::New,
        };
        changes.push(FileChange {
            name: name.clone(),
            change,
        });
    }
    if let Ok(listing) = fs::read_dir(out_dir) {
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") && !rendered.iter().any(|(n, _)| *n == name) {
                changes.push(FileChange {
                    name,
                    change: Change::Removed,
                });
            }
        }
    }
    changes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(changes)
}

/// The dry run's summary: one line per file, and `diff -u` for the changed ones.
fn print_changes(changes: &[FileChange], rendered: &[(String, String)], out_dir: &Path) -> Res<()> {
    println!("rendered manifests in {}:", shown(out_dir));
    let scratch = std::env::temp_dir().join(format!("gatehouse-render-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)
        .map_err(|err| format!("cannot create {}: {err}", scratch.display()))?;
    let printed = changes
        .iter()
        .try_for_each(|change| print_change(change, rendered, out_dir, &scratch));
    let _ = fs::remove_dir_all(&scratch);
    printed
}

fn print_change(
    FileChange { name, change }: &FileChange,
    rendered: &[(String, String)],
    out_dir: &Path,
    scratch: &Path,
) -> Res<()> {
    match change {
        Change::Same => println!("  = {name} (unchanged)"),
        Change::New => println!("  + {name} (new)"),
        Change::Removed => println!("  - {name} (would be removed)"),
        Change::Changed => {
            println!("  ~ {name} (would change):");
            let text = rendered.iter().find(|(n, _)| n == name).map(|(_, t)| t);
            let fresh = scratch.join(name);
            write(&fresh, text.map_or("", String::as_str))?;
            // diff exits 1 when the files differ: that is the answer expected here.
            let diff = Command::new("diff")
                .args(["-u", "--label", &format!("current/{name}")])
                .args(["--label", &format!("new/{name}")])
                .arg(out_dir.join(name))
                .arg(&fresh)
                .output()
                .map_err(|err| format!("cannot run diff: {err}"))?;
            print!("{}", String::from_utf8_lossy(&diff.stdout));
        }
    }
    Ok(())
}

fn write_rendered(
    rendered: &[(String, String)],
    changes: &[FileChange],
    out_dir: &Path,
) -> Res<()> {
    fs::create_dir_all(out_dir)
        .map_err(|err| format!("cannot create {}: {err}", out_dir.display()))?;
    for (name, text) in rendered {
        write(&out_dir.join(name), text)?;
    }
    for FileChange { name, change } in changes {
        if *change == Change::Removed {
            let path = out_dir.join(name);
            fs::remove_file(&path)
                .map_err(|err| format!("cannot remove {}: {err}", path.display()))?;
        }
    }
    Ok(())
}

/// kubectl's current context, when there is kubectl and it has one.
fn current_context() -> Option<String> {
    let mut cmd = Command::new("kubectl");
    cmd.args(["config", "current-context"]);
    output(&mut cmd)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The kubectl steps of one deploy.
#[derive(Debug)]
struct Apply {
    namespace: String,
    job: String,
    job_file: PathBuf,
    rest: Vec<PathBuf>,
    timeout: String,
}

impl Apply {
    fn new(values: &Values, out_dir: &Path, rendered: &[(String, String)]) -> Apply {
        let text = |key: &str| values.get(key).map(Value::to_string).unwrap_or_default();
        Apply {
            namespace: text("namespace"),
            job: migration_job_name(&text("image_tag")),
            job_file: out_dir.join(MIGRATION_TEMPLATE),
            rest: rendered
                .iter()
                .filter(|(name, _)| name != MIGRATION_TEMPLATE)
                .map(|(name, _)| out_dir.join(name))
                .collect(),
            timeout: format!("{}s", text("rollout_timeout_seconds")),
        }
    }

    fn commands(&self) -> Vec<Command> {
        let kubectl = |args: &[&str]| {
            let mut cmd = Command::new("kubectl");
            cmd.args(args);
            cmd
        };
        let mut apply_job = kubectl(&["apply", "-f"]);
        apply_job.arg(&self.job_file);
        let wait = kubectl(&[
            "--namespace",
            &self.namespace,
            "wait",
            "--for=condition=complete",
            &format!("--timeout={}", self.timeout),
            &format!("job/{}", self.job),
        ]);
        let mut apply_rest = kubectl(&["apply"]);
        for file in &self.rest {
            apply_rest.arg("-f").arg(file);
        }
        let rollout = kubectl(&[
            "--namespace",
            &self.namespace,
            "rollout",
            "status",
            &format!("deployment/{DEPLOYMENT}"),
            &format!("--timeout={}", self.timeout),
        ]);
        vec![apply_job, wait, apply_rest, rollout]
    }

    fn run(&self, context: &str) -> Res<()> {
        let labels = [
            format!(
                "applying the migration Job {} (context `{context}`)…",
                self.job
            ),
            format!(
                "waiting for {} to complete (up to {})…",
                self.job, self.timeout
            ),
            "applying the Deployment, Service, Ingress and policies…".to_owned(),
            format!(
                "waiting for the rollout of deployment/{DEPLOYMENT} (up to {})…",
                self.timeout
            ),
        ];
        for (label, mut cmd) in labels.iter().zip(self.commands()) {
            step(label);
            run_shown(&mut cmd)?;
        }
        println!(
            "deployed image tag {} to namespace {}",
            self.job.trim_start_matches(MIGRATION_JOB_PREFIX),
            self.namespace
        );
        Ok(())
    }
}

/// One Job per image tag, so each deploy migrates once and a re-run finds it done.
fn migration_job_name(tag: &str) -> String {
    format!("{MIGRATION_JOB_PREFIX}{tag}")
}

#[cfg(test)]
mod tests;
