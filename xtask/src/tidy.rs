//! Tidy checks over the workspace, run as tests with the rest of the suite.
//!
//! The crate graph points one way: `gatehouse-core` knows no other
//! crate, the store knows only core, feature crates (authn, token-issuer, consent)
//! know the store and core but not each other, the admin layer knows the feature
//! crates, only `gatehouse-server` sees everything, and the resource-server helper
//! (linked into third-party APIs) knows none of them but the JOSE crate, which it
//! shares with token-issuer and which knows no Gatehouse crate at all. The HTTP server framework
//! lives only in the server; the store, core and consent pull no HTTP stack at all
//! (they never call out), and core must not pull diesel, even transitively. The rules
//! are data below; the checks are plain functions over a [`Graph`] so that a
//! hand-made graph can prove they catch violations.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

const SERVER: &str = "gatehouse-server";
const STORE: &str = "gatehouse-identity-store";
const CORE: &str = "gatehouse-core";
const AUTHN: &str = "gatehouse-authn";
const TOKEN_ISSUER: &str = "gatehouse-token-issuer";
const CONSENT: &str = "gatehouse-consent";
const FEATURE_CRATES: &[&str] = &[AUTHN, TOKEN_ISSUER, CONSENT];
/// The operator's use cases: over the feature crates, under every adapter.
const ADMIN: &str = "gatehouse-admin";
/// The one outbound HTTP client (SSRF rules, timeouts, size limits).
const OUTBOUND: &str = "gatehouse-outbound";
const HTTP_STACKS: &[&str] = &["actix-web", "actix-http", "hyper", "reqwest", "axum"];
/// HTTP server frameworks: only the server adapts HTTP. Outbound clients are allowed
/// where a feature must call out (back-channel logout, federation).
const SERVER_FRAMEWORKS: &[&str] = &["actix-web", "actix-http", "actix-server", "axum"];
/// Linked into third-party APIs, so it knows Gatehouse only by its wire format.
const RESOURCE_SERVER: &str = "gatehouse-resource-server";
/// JWS and JWK for token-issuer and the resource server; linked into third-party
/// APIs too, so nothing of Gatehouse.
const JOSE: &str = "gatehouse-jose";
/// SCIM's grammar and semantics (filters, PATCH): a protocol library that knows
/// nothing of Gatehouse; only the server's SCIM adapter uses it.
const SCIM: &str = "gatehouse-scim";

/// Which workspace crates a member may depend on (normal dependencies).
enum Allowed {
    Any,
    Only(&'static [&'static str]),
}

/// `None` for a member without a rule: a new crate must get one written down here.
fn allowed_workspace_deps(name: &str) -> Option<Allowed> {
    match name {
        SERVER => Some(Allowed::Any),
        STORE => Some(Allowed::Only(&[CORE])),
        CORE => Some(Allowed::Only(&[])),
        RESOURCE_SERVER => Some(Allowed::Only(&[JOSE])),
        JOSE => Some(Allowed::Only(&[])),
        SCIM => Some(Allowed::Only(&[])),
        // Automation drives crates through cargo; linking them would make it slow to build.
        "xtask" => Some(Allowed::Only(&[])),
        ADMIN => Some(Allowed::Only(&[
            AUTHN,
            TOKEN_ISSUER,
            CONSENT,
            OUTBOUND,
            STORE,
            CORE,
        ])),
        OUTBOUND => Some(Allowed::Only(&[CORE])),
        TOKEN_ISSUER => Some(Allowed::Only(&[JOSE, OUTBOUND, STORE, CORE])),
        _ if FEATURE_CRATES.contains(&name) => Some(Allowed::Only(&[OUTBOUND, STORE, CORE])),
        _ => None,
    }
}

/// External crates a member must not reach through normal dependencies.
fn forbidden_external_deps(name: &str) -> Vec<&'static str> {
    match name {
        CORE => [HTTP_STACKS, &["diesel"]].concat(),
        // JOSE never calls out: fetching a JWK Set is its users' business.
        STORE | CONSENT | JOSE => HTTP_STACKS.to_vec(),
        // A grammar: no HTTP, no database; the store gets typed filters, never text.
        SCIM => [HTTP_STACKS, &["diesel"]].concat(),
        // The resource-server helper is an actix extractor for API teams' own servers.
        SERVER | RESOURCE_SERVER | "xtask" => Vec::new(),
        _ => SERVER_FRAMEWORKS.to_vec(),
    }
}

/// The resolved dependency graph, normal edges only. Keyed by package id because
/// one name can resolve to several versions.
#[derive(Debug, Default)]
struct Graph {
    names: BTreeMap<String, String>,
    deps: BTreeMap<String, Vec<String>>,
    members: BTreeSet<String>,
}

impl Graph {
    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    fn deps_of(&self, id: &str) -> &[String] {
        self.deps.get(id).map_or(&[], Vec::as_slice)
    }
}

/// Every violation of the rules above, as messages naming crate, dependency and path.
fn check(graph: &Graph) -> Vec<String> {
    let mut violations = Vec::new();
    for member in &graph.members {
        let name = graph.name(member);
        match allowed_workspace_deps(name) {
            None => violations.push(format!(
                "workspace crate `{name}` has no dependency rule; add one to xtask/src/tidy.rs"
            )),
            Some(Allowed::Any) => {}
            Some(Allowed::Only(allowed)) => {
                for dep in graph.deps_of(member) {
                    let dep_name = graph.name(dep);
                    if graph.members.contains(dep) && !allowed.contains(&dep_name) {
                        violations.push(format!(
                            "`{name}` must not depend on `{dep_name}` \
                             (allowed workspace deps: {allowed:?})"
                        ));
                    }
                }
            }
        }
        violations.extend(forbidden_paths(graph, member));
    }
    violations
}

/// Breadth-first from `member`, so each reported path is a shortest one.
fn forbidden_paths(graph: &Graph, member: &str) -> Vec<String> {
    let forbidden = forbidden_external_deps(graph.name(member));
    if forbidden.is_empty() {
        return Vec::new();
    }
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([member]);
    let mut found = Vec::new();
    while let Some(id) = queue.pop_front() {
        for dep in graph.deps_of(id) {
            if dep == member || parent.contains_key(dep.as_str()) {
                continue;
            }
            parent.insert(dep, id);
            queue.push_back(dep);
            if forbidden.contains(&graph.name(dep)) {
                let mut path = vec![graph.name(dep)];
                let mut at = dep.as_str();
                while let Some(&up) = parent.get(at) {
                    path.push(graph.name(up));
                    at = up;
                }
                path.reverse();
                found.push(format!(
                    "`{}` must not pull `{}`, but does via {}",
                    graph.name(member),
                    graph.name(dep),
                    path.join(" -> ")
                ));
            }
        }
    }
    found
}

/// Builds the graph from `cargo metadata` JSON, keeping only normal edges (not dev
/// or build). All features are on, so an optional HTTP feature cannot hide a violation.
fn graph_from_metadata(meta: &serde_json::Value) -> Result<Graph, String> {
    let array = |v: &serde_json::Value, key: &str| -> Result<Vec<serde_json::Value>, String> {
        v.get(key)
            .and_then(serde_json::Value::as_array)
            .cloned()
            .ok_or_else(|| format!("cargo metadata: no `{key}` array"))
    };
    let string = |v: &serde_json::Value, key: &str| -> Result<String, String> {
        v.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("cargo metadata: no `{key}` string"))
    };

    let mut graph = Graph::default();
    for package in array(meta, "packages")? {
        graph
            .names
            .insert(string(&package, "id")?, string(&package, "name")?);
    }
    for member in array(meta, "workspace_members")? {
        let id = member
            .as_str()
            .ok_or("cargo metadata: bad workspace member")?;
        graph.members.insert(id.to_owned());
    }
    let resolve = meta.get("resolve").ok_or("cargo metadata: no `resolve`")?;
    for node in array(resolve, "nodes")? {
        let mut deps = Vec::new();
        for dep in array(&node, "deps")? {
            let normal = array(&dep, "dep_kinds")?
                .iter()
                .any(|k| k.get("kind").is_some_and(serde_json::Value::is_null));
            if normal {
                deps.push(string(&dep, "pkg")?);
            }
        }
        graph.deps.insert(string(&node, "id")?, deps);
    }
    Ok(graph)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo_metadata() -> Result<serde_json::Value, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--all-features"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: bad JSON: {e}"))
}

/// Whether a manifest opts into `[workspace.lints]`, in any of TOML's spellings.
fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line: String = line
            .split('#')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Some(header) = line.strip_prefix('[') {
            table = Some(header.trim_end_matches(']').to_owned());
            continue;
        }
        let found = match table.as_deref() {
            Some("lints") => line == "workspace=true",
            None => line == "lints.workspace=true" || line == "lints={workspace=true}",
            Some(_) => false,
        };
        if found {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A hand-made graph; ids are names, members marked with a leading `*`.
    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        let mut g = Graph::default();
        for (from, tos) in edges {
            let from = match from.strip_prefix('*') {
                Some(member) => {
                    g.members.insert(member.to_owned());
                    member
                }
                None => from,
            };
            for id in std::iter::once(from).chain(tos.iter().copied()) {
                g.names.insert(id.to_owned(), id.to_owned());
            }
            g.deps
                .insert(from.to_owned(), tos.iter().map(|&t| t.to_owned()).collect());
        }
        g
    }

    #[test]
    fn the_rules_accept_a_well_shaped_graph() {
        let g = graph(&[
            (
                "*gatehouse-server",
                &["gatehouse-authn", STORE, CORE, "actix-web"],
            ),
            ("*gatehouse-authn", &[STORE, CORE, "reqwest"]),
            ("*gatehouse-admin", &[AUTHN, TOKEN_ISSUER, STORE]),
            ("*gatehouse-token-issuer", &[JOSE, STORE, "reqwest"]),
            (
                "*gatehouse-resource-server",
                &[JOSE, "actix-web", "reqwest"],
            ),
            ("*gatehouse-jose", &["serde"]),
            ("*gatehouse-identity-store", &[CORE, "diesel"]),
            ("*gatehouse-core", &["serde"]),
            ("*xtask", &[]),
            ("actix-web", &["actix-http"]),
            ("actix-http", &[]),
            ("reqwest", &["hyper"]),
            ("hyper", &[]),
            ("diesel", &[]),
            ("serde", &[]),
        ]);
        assert_eq!(check(&g), Vec::<String>::new());
    }

    #[test]
    fn the_rules_report_every_kind_of_violation() {
        let g = graph(&[
            ("*gatehouse-server", &[]),
            ("*gatehouse-authn", &["gatehouse-consent", SERVER]),
            ("*gatehouse-consent", &["reqwest"]),
            ("*gatehouse-admin", &[SERVER]),
            ("*gatehouse-token-issuer", &[AUTHN, "web"]),
            ("*gatehouse-identity-store", &[CORE, "metrics"]),
            ("*gatehouse-core", &[STORE, "util"]),
            ("*gatehouse-mystery", &[]),
            ("*gatehouse-jose", &[CONSENT, "reqwest"]),
            ("*gatehouse-resource-server", &[TOKEN_ISSUER, JOSE]),
            ("metrics", &["hyper"]),
            ("util", &["diesel"]),
            ("web", &["actix-web"]),
            ("actix-web", &[]),
            ("reqwest", &[]),
            ("hyper", &[]),
            ("diesel", &[]),
        ]);
        let found = check(&g);
        let expected = [
            "`gatehouse-authn` must not depend on `gatehouse-consent`",
            "`gatehouse-authn` must not depend on `gatehouse-server`",
            "`gatehouse-core` must not depend on `gatehouse-identity-store`",
            "`gatehouse-identity-store` must not pull `hyper`, but does via \
             gatehouse-identity-store -> metrics -> hyper",
            // Reached through the store, which core must not depend on anyway.
            "`gatehouse-core` must not pull `hyper`, but does via \
             gatehouse-core -> gatehouse-identity-store -> metrics -> hyper",
            "`gatehouse-core` must not pull `diesel`, but does via gatehouse-core -> util -> diesel",
            "workspace crate `gatehouse-mystery` has no dependency rule",
            // The admin layer sits under every adapter, never over one.
            "`gatehouse-admin` must not depend on `gatehouse-server`",
            // Feature crates never depend on each other, either way round.
            "`gatehouse-token-issuer` must not depend on `gatehouse-authn`",
            // The server framework only in the server.
            "`gatehouse-token-issuer` must not pull `actix-web`, but does via \
             gatehouse-token-issuer -> web -> actix-web",
            // Consent never calls out.
            "`gatehouse-consent` must not pull `reqwest`, but does via gatehouse-consent -> reqwest",
            // JOSE knows no Gatehouse crate and never calls out.
            "`gatehouse-jose` must not depend on `gatehouse-consent`",
            "`gatehouse-jose` must not pull `reqwest`, but does via gatehouse-jose -> reqwest",
            // The resource server shares JOSE with token-issuer, nothing more.
            "`gatehouse-resource-server` must not depend on `gatehouse-token-issuer`",
        ];
        for e in expected {
            assert!(
                found.iter().any(|f| f.starts_with(e)),
                "missing `{e}` in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn metadata_keeps_normal_edges_and_drops_dev_and_build_edges() {
        let meta = serde_json::json!({
            "packages": [
                {"id": "core-id", "name": "gatehouse-core"},
                {"id": "hyper-id", "name": "hyper"},
                {"id": "diesel-id", "name": "diesel"},
                {"id": "cc-id", "name": "cc"},
            ],
            "workspace_members": ["core-id"],
            "resolve": {"nodes": [
                {"id": "core-id", "deps": [
                    {"pkg": "hyper-id", "dep_kinds": [{"kind": "dev", "target": null}]},
                    {"pkg": "cc-id", "dep_kinds": [{"kind": "build", "target": null}]},
                    {"pkg": "diesel-id", "dep_kinds": [
                        {"kind": "dev", "target": null},
                        {"kind": null, "target": "cfg(unix)"}
                    ]},
                ]},
                {"id": "hyper-id", "deps": []},
                {"id": "diesel-id", "deps": []},
                {"id": "cc-id", "deps": []},
            ]},
        });
        let g = graph_from_metadata(&meta).unwrap();
        assert_eq!(g.deps_of("core-id"), ["diesel-id".to_owned()]);
        assert_eq!(
            check(&g),
            ["`gatehouse-core` must not pull `diesel`, but does via gatehouse-core -> diesel"]
        );
    }

    #[test]
    fn lints_inheritance_is_recognised_in_each_spelling() {
        assert!(inherits_workspace_lints(
            "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
        ));
        assert!(inherits_workspace_lints(
            "lints.workspace = true\n[package]\n"
        ));
        assert!(inherits_workspace_lints("lints = { workspace = true }\n"));
        assert!(!inherits_workspace_lints("[package]\nname = \"x\"\n"));
        assert!(!inherits_workspace_lints("[lints]\n# workspace = true\n"));
        assert!(!inherits_workspace_lints(
            "[lints]\n[package.metadata]\nworkspace = true\n"
        ));
        assert!(!inherits_workspace_lints("[lints]\nworkspace = false\n"));
    }

    #[test]
    fn crate_graph_points_one_way() {
        let meta = cargo_metadata().unwrap();
        let graph = graph_from_metadata(&meta).unwrap();
        // Guards against a parse that silently yields an empty graph.
        assert!(graph.members.iter().any(|m| graph.name(m) == CORE));
        let violations = check(&graph);
        assert!(
            violations.is_empty(),
            "crate graph rules broken (xtask/src/tidy.rs):\n  {}",
            violations.join("\n  ")
        );
    }

    #[test]
    fn every_member_inherits_workspace_lints() {
        let meta = cargo_metadata().unwrap();
        let members: BTreeSet<&str> = meta["workspace_members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m.as_str())
            .collect();
        let mut checked = 0;
        let mut missing = Vec::new();
        for package in meta["packages"].as_array().unwrap() {
            if !members.contains(package["id"].as_str().unwrap()) {
                continue;
            }
            let path = package["manifest_path"].as_str().unwrap();
            let text = std::fs::read_to_string(path).expect(path);
            checked += 1;
            if !inherits_workspace_lints(&text) {
                missing.push(path.to_owned());
            }
        }
        assert_eq!(checked, members.len());
        assert!(
            missing.is_empty(),
            "add `[lints]\\nworkspace = true` to: {}",
            missing.join(", ")
        );
    }
}
