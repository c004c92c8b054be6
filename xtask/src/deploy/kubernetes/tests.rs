use serde_json::Value as Json;

use super::*;
use crate::deploy::testing::{TEST_MASTER_KEYS, TempDir, check_config, server_binary};

/// The Kubernetes release whose API schemas the manifests are validated against
/// (kubernetes-validate ships them). 1.30 is the oldest the manifests support
/// (the preStop `sleep` action).
const KUBERNETES_VERSION: &str = "1.30.0";

fn base() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

fn committed_values() -> Values {
    load_values(&base().join("values.toml")).unwrap()
}

fn rendered_dir() -> PathBuf {
    base().join("rendered")
}

fn rendered_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(rendered_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rendered manifests");
    files
}

/// A tool from the deploy tests' virtual environment; fails with how to get it.
fn venv_tool(name: &str) -> PathBuf {
    let path = crate::deploy::tools_venv().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo xtask test` installs deploy/kubernetes/requirements.txt there \
         (or: python3 -m venv {venv} && {venv}/bin/pip install -r deploy/kubernetes/requirements.txt)",
        path.display(),
        venv = crate::deploy::tools_venv().display()
    );
    path
}

/// Every document of every rendered file, read by PyYAML (not by us).
fn rendered_documents() -> Vec<Json> {
    let script = "import json, sys, yaml\n\
                  docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f))]\n\
                  json.dump(docs, sys.stdout)";
    let out = output(
        Command::new(venv_tool("python"))
            .args(["-c", script])
            .args(rendered_files()),
    )
    .unwrap();
    match serde_json::from_str(&out).unwrap() {
        Json::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn kind<'a>(docs: &'a [Json], kind: &str) -> &'a Json {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let doc = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "one {kind} only");
    doc
}

fn values_of(text: &str) -> Values {
    parse_values(text).unwrap()
}

#[test]
fn the_values_subset_parses_strings_numbers_booleans_and_comments() {
    let values = values_of(
        "# a comment\n\
         \n\
         name = \"a \\\"quoted\\\" # not a comment\"  # a comment\n\
         count = -42\n\
         on = true\n\
         off = false # trailing\n",
    );
    assert_eq!(
        values["name"],
        Value::Str("a \"quoted\" # not a comment".to_owned())
    );
    assert_eq!(values["count"], Value::Int(-42));
    assert_eq!(values["on"], Value::Bool(true));
    assert_eq!(values["off"], Value::Bool(false));

    for (bad, why) in [
        ("[table]\n", "tables"),
        ("a = 1\na = 2\n", "twice"),
        ("a = 1.5\n", "not a value"),
        ("a = \"x\\n\"\n", "escape"),
        ("a = \"open\n", "unterminated"),
        ("a = [1, 2]\n", "not a value"),
        ("a = \"x\" y\n", "unexpected"),
        ("A-b = 1\n", "plain key"),
        ("just words\n", "key = value"),
    ] {
        let err = parse_values(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
        assert!(err.starts_with("line "), "{err}");
    }
}

#[test]
fn an_unknown_or_missing_key_is_refused() {
    let mut values = committed_values();
    values.insert("replica".to_owned(), Value::Int(3));
    let err = check_values(&values).unwrap_err();
    assert!(err.contains("unknown key `replica`"), "{err}");

    let mut values = committed_values();
    values.remove("secret_name");
    assert_eq!(
        check_values(&values).unwrap_err(),
        "`secret_name` is missing"
    );

    let mut values = committed_values();
    values.insert("replicas".to_owned(), Value::Str("2".to_owned()));
    assert!(
        check_values(&values)
            .unwrap_err()
            .contains("must be an integer")
    );
}

#[test]
fn values_are_checked_for_their_shape() {
    for (key, bad) in [
        ("image_tag", Value::Str("V1".to_owned())),
        ("image_tag", Value::Str("1..2".to_owned())),
        ("image_tag", Value::Str("x".repeat(46))),
        ("namespace", Value::Str("Gate_house".to_owned())),
        ("database_cidr", Value::Str("10.0.0.0".to_owned())),
        ("database_cidr", Value::Str("10.0.0.0/33".to_owned())),
        ("database_port", Value::Int(70000)),
        ("mail_tls", Value::Str("ssl".to_owned())),
        ("max_replicas", Value::Int(1)),
    ] {
        let mut values = committed_values();
        values.insert(key.to_owned(), bad.clone());
        assert!(check_values(&values).is_err(), "{key} = {bad} was accepted");
    }
}

fn one_value(key: &str, value: Value) -> Values {
    Values::from([(key.to_owned(), value)])
}

#[test]
fn an_unknown_placeholder_is_refused() {
    let templates = [(
        "a.yaml".to_owned(),
        "name: \"{{ name }}-{{ nmae }}\"\n".to_owned(),
    )];
    let err = render_all(&templates, &one_value("name", Value::Str("x".to_owned()))).unwrap_err();
    assert!(
        err.contains("a.yaml") && err.contains("unknown placeholder `{{ nmae }}`"),
        "{err}"
    );

    let unclosed = [("b.yaml".to_owned(), "name: \"{{ name\"\n".to_owned())];
    let err = render_all(&unclosed, &one_value("name", Value::Str("x".to_owned()))).unwrap_err();
    assert!(err.contains("without `}}`"), "{err}");
}

#[test]
fn an_unused_value_is_refused() {
    let templates = [("a.yaml".to_owned(), "replicas: {{ replicas }}\n".to_owned())];
    let mut values = one_value("replicas", Value::Int(2));
    values.insert("forgotten".to_owned(), Value::Bool(true));
    let err = render_all(&templates, &values).unwrap_err();
    assert!(err.contains("no template uses forgotten"), "{err}");
}

#[test]
fn strings_go_only_inside_double_quotes_and_are_escaped_there() {
    let values = one_value("v", Value::Str("a\"b\\c\nkind: Secret".replace('\n', " ")));
    let quoted = [(
        "a.yaml".to_owned(),
        "x: \"pre-{{ v }}\" # {{v}}?\n".to_owned(),
    )];
    let err = render_all(&quoted, &values).unwrap_err();
    assert!(
        err.contains("inside double quotes"),
        "the comment's copy is unquoted: {err}"
    );

    let quoted = [(
        "a.yaml".to_owned(),
        "x: \"pre-{{v}}\"\ny: [\"{{ v }}\"]\n".to_owned(),
    )];
    let rendered = render_all(&quoted, &values).unwrap();
    assert_eq!(
        rendered[0].1,
        format!("{HEADER}x: \"pre-a\\\"b\\\\c kind: Secret\"\ny: [\"a\\\"b\\\\c kind: Secret\"]\n")
    );
    let bare = [("a.yaml".to_owned(), "x: {{ v }}\n".to_owned())];
    assert!(render_all(&bare, &values).unwrap_err().contains("line 1"));
    // Numbers and booleans may stand anywhere.
    let number = [(
        "a.yaml".to_owned(),
        "n: {{ n }}\ns: \"{{ n }}\"\n".to_owned(),
    )];
    let rendered = render_all(&number, &one_value("n", Value::Int(5))).unwrap();
    assert_eq!(rendered[0].1, format!("{HEADER}n: 5\ns: \"5\"\n"));
}

#[test]
fn the_committed_manifests_equal_a_fresh_render() {
    let fresh = render_dir(&base().join("templates"), &committed_values()).unwrap();
    let committed: Vec<(String, String)> = rendered_files()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(p).unwrap())
        })
        .collect();
    let names = |list: &[(String, String)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&committed), names(&fresh), "the same files");
    for ((name, old), (_, new)) in committed.iter().zip(&fresh) {
        assert!(
            old == new,
            "deploy/kubernetes/rendered/{name} is stale: run `cargo xtask deploy kubernetes` \
             (kubectl without a context only renders) and commit the result"
        );
    }
}

#[test]
fn kubernetes_validate_accepts_every_manifest_strictly() {
    let mut cmd = Command::new(venv_tool("kubernetes-validate"));
    cmd.args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(rendered_files());
    let out = cmd.output().expect("running kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    // One "passed" line per file; no warning (an unknown version would warn).
    assert_eq!(
        report.matches("passed").count(),
        rendered_files().len(),
        "{report}"
    );
    assert!(!report.to_lowercase().contains("warn"), "{report}");
}

#[test]
fn no_manifest_carries_a_secret_only_references_to_one() {
    let values = committed_values();
    let secret = values["secret_name"].to_string();
    for file in rendered_files() {
        let text = fs::read_to_string(&file).unwrap();
        for leak in ["postgres://", "postgresql://", "stringData", "PRIVATE KEY"] {
            assert!(!text.contains(leak), "{} contains {leak}", file.display());
        }
    }
    let docs = rendered_documents();
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "no Secret is rendered"
    );
    let mut checked = 0;
    for doc in &docs {
        let Some(containers) = doc["spec"]["template"]["spec"]["containers"].as_array() else {
            continue;
        };
        for container in containers {
            for var in container["env"].as_array().unwrap() {
                let name = var["name"].as_str().unwrap();
                let sensitive = [
                    "DATABASE__URL",
                    "MASTER_KEY",
                    "PASSWORD",
                    "USERNAME",
                    "SECRET",
                ]
                .iter()
                .any(|s| name.contains(s));
                if sensitive {
                    assert!(var.get("value").is_none(), "{name} has a literal value");
                    assert_eq!(
                        var["valueFrom"]["secretKeyRef"]["name"],
                        secret.as_str(),
                        "{name}"
                    );
                    checked += 1;
                }
            }
        }
    }
    // The server's four and the Job's two.
    assert_eq!(checked, 6);
}

#[test]
fn the_manifests_say_what_the_brief_asks() {
    let values = committed_values();
    let docs = rendered_documents();
    let deployment = kind(&docs, "Deployment");
    let job = kind(&docs, "Job");
    let tag = values["image_tag"].to_string();
    let image = format!("{}:{tag}", values["image_repository"]);
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["namespace"],
            values["namespace"].to_string().as_str()
        );
    }
    assert_eq!(job["metadata"]["name"], migration_job_name(&tag).as_str());
    assert_eq!(job["spec"]["backoffLimit"], 2);

    for (workload, args) in [(deployment, "serve"), (job, "migrate")] {
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(
            pod["enableServiceLinks"], false,
            "GATEHOUSE_SERVICE_* would stop the server"
        );
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["image"], image.as_str());
        assert_eq!(container["args"], serde_json::json!([args]));
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/tmp");
        assert!(pod["volumes"][0]["emptyDir"].is_object());
    }

    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = |name: &str| -> Json {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} not set"))
            .clone()
    };
    assert_eq!(env("GATEHOUSE_MODE")["value"], "production");
    assert_eq!(
        env("GATEHOUSE_SERVER__OPERATIONS_LISTEN")["value"],
        "0.0.0.0:9090"
    );
    assert_eq!(
        env("GATEHOUSE_DATABASE__MIGRATE_ON_START")["value"],
        "false"
    );
    assert_eq!(
        env("GATEHOUSE_SERVER__TRUSTED_PROXIES")["value"],
        values["ingress_network"].to_string().as_str()
    );
    assert_eq!(
        env("GATEHOUSE_SERVER__PUBLIC_URL")["value"],
        format!("https://{}", values["host"]).as_str()
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(container["ports"][0]["containerPort"], 8080);

    let service_ports: Vec<i64> = kind(&docs, "Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(service_ports, [8080, 9090]);
    let ingress = kind(&docs, "Ingress");
    assert_eq!(
        ingress["spec"]["rules"][0]["host"],
        values["host"].to_string().as_str()
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"],
        values["tls_secret_name"].to_string().as_str()
    );
    assert_eq!(
        kind(&docs, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
    let hpa = kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");

    let policy = &kind(&docs, "NetworkPolicy")["spec"];
    let ingress_rules = policy["ingress"].as_array().unwrap();
    let allowed: Vec<(String, i64)> = ingress_rules
        .iter()
        .map(|rule| {
            let from =
                &rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"];
            (
                from.as_str().unwrap().to_owned(),
                rule["ports"][0]["port"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        allowed,
        [
            (values["ingress_namespace"].to_string(), 8080),
            (values["monitoring_namespace"].to_string(), 9090)
        ]
    );
    let egress = serde_json::to_string(&policy["egress"]).unwrap();
    for wanted in ["database_cidr", "mail_relay_cidr"] {
        assert!(
            egress.contains(&values[wanted].to_string()),
            "egress to {wanted}"
        );
    }
}

#[test]
fn changes_name_new_changed_unchanged_and_removed_files() {
    let out = TempDir::new("render");
    let rendered = vec![
        ("a.yaml".to_owned(), "a\n".to_owned()),
        ("b.yaml".to_owned(), "b\n".to_owned()),
    ];
    let all_new = changes(&rendered, out.path()).unwrap();
    assert!(all_new.iter().all(|c| c.change == Change::New));
    write_rendered(&rendered, &all_new, out.path()).unwrap();
    assert!(
        changes(&rendered, out.path())
            .unwrap()
            .iter()
            .all(|c| c.change == Change::Same)
    );

    fs::write(out.path().join("b.yaml"), "edited\n").unwrap();
    fs::write(out.path().join("old.yaml"), "gone\n").unwrap();
    let found: Vec<(String, Change)> = changes(&rendered, out.path())
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.change))
        .collect();
    assert_eq!(
        found,
        [
            ("a.yaml".to_owned(), Change::Same),
            ("b.yaml".to_owned(), Change::Changed),
            ("old.yaml".to_owned(), Change::Removed)
        ]
    );
    let pending = changes(&rendered, out.path()).unwrap();
    write_rendered(&rendered, &pending, out.path()).unwrap();
    assert!(!out.path().join("old.yaml").exists());
    assert_eq!(
        fs::read_to_string(out.path().join("b.yaml")).unwrap(),
        "b\n"
    );
}

#[test]
fn the_migration_job_is_applied_and_waited_for_first() {
    let values = committed_values();
    let rendered = render_dir(&base().join("templates"), &values).unwrap();
    let plan = Apply::new(&values, Path::new("/r"), &rendered);
    let shown: Vec<String> = plan.commands().iter().map(crate::display).collect();
    let tag = values["image_tag"].to_string();
    assert_eq!(shown[0], "kubectl apply -f /r/migration-job.yaml");
    assert_eq!(
        shown[1],
        format!(
            "kubectl --namespace gatehouse wait --for=condition=complete --timeout=600s \
             job/gatehouse-migrate-{tag}"
        )
    );
    assert!(
        shown[2].starts_with("kubectl apply -f /r/deployment.yaml"),
        "{}",
        shown[2]
    );
    assert!(!shown[2].contains("migration-job"), "{}", shown[2]);
    assert_eq!(
        shown[3],
        "kubectl --namespace gatehouse rollout status deployment/gatehouse --timeout=600s"
    );
}

/// The strict configuration refuses an unknown `GATEHOUSE_*` variable, so the real
/// server reads what the pods get: the image's environment, the manifest's, and
/// stand-ins for the Secret's keys.
#[test]
fn the_server_accepts_the_configuration_the_pods_get() {
    let binary = server_binary();
    let docs = rendered_documents();
    for workload in ["Deployment", "Job"] {
        let container = &kind(&docs, workload)["spec"]["template"]["spec"]["containers"][0];
        let mut vars: Vec<(String, String)> = crate::deploy::container::image_env()
            .iter()
            .filter_map(|var| var.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for var in container["env"].as_array().unwrap() {
            let name = var["name"].as_str().unwrap().to_owned();
            let value = match var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                None => var["value"].as_str().unwrap().to_owned(),
                Some("database-url") => "postgres://gatehouse:x@db:5432/gatehouse".to_owned(),
                Some("master-keys") => TEST_MASTER_KEYS.to_owned(),
                // Optional keys a Secret may leave out.
                Some(_) if var["valueFrom"]["secretKeyRef"]["optional"] == true => continue,
                Some(other) => panic!("{name}: unexpected Secret key {other}"),
            };
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
        }
        check_config(&binary, &vars, &format!("the {workload}'s environment"));
    }
}
