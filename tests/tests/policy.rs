//! The manifests tidewright ships and makes, held to what a platform team checks
//! before admitting them: a maintained policy scanner (checkov) over the
//! chart and the objects the operator makes of the example Agents, and the
//! CRDs' CEL validation rules run by a CEL implementation (cel-python) as
//! the API server would run them. Both come from PyPI, pinned, through
//! scripts/policy.sh.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tidewright_operator::crd::Agent;
use tidewright_operator::{WorkerSettings, network, step_pods, workers};
use tidewright_tests::chart::{documents, render};
use tidewright_tests::*;

fn tool(name: &str) -> PathBuf {
    let path = repo_root().join(".tools/policy/venv/bin").join(name);
    assert!(
        path.exists(),
        "no {} : run scripts/policy.sh (make test does)",
        path.display()
    );
    path
}

fn env_value(container: &Value, name: &str) -> String {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("the operator has no {name}"))
        .to_string()
}

/// What the chart's operator hands the pools it makes.
fn worker_settings(objects: &[Value]) -> WorkerSettings {
    let operator = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "tidewright-operator")
        .expect("the operator's Deployment");
    let container = &operator["spec"]["template"]["spec"]["containers"][0];
    WorkerSettings {
        server: env_value(container, "TIDEWRIGHT_SERVER"),
        image: env_value(container, "TIDEWRIGHT_WORKER_IMAGE"),
        token_secret: env_value(container, "TIDEWRIGHT_WORKER_TOKEN_SECRET"),
        token_key: "token".into(),
        metrics_token_secret: Some(env_value(
            container,
            "TIDEWRIGHT_WORKER_METRICS_TOKEN_SECRET",
        )),
    }
}

/// The example Agents, as `kubectl apply` in team-a would store them.
fn example_agents() -> Vec<Agent> {
    ["claude-pool.yaml", "shell-pool.yaml"]
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(repo_root().join("deploy/examples").join(file))
                .expect("example");
            let mut agent: Agent = serde_yaml::from_str(&text).expect("an Agent");
            agent.metadata.namespace = Some("team-a".into());
            agent.metadata.uid = Some(format!("uid-{file}"));
            agent
        })
        .collect()
}

#[test]
fn the_chart_and_what_the_operator_makes_pass_the_policy_scanner() {
    // Not a dot-directory (tempdir's default): checkov skips those.
    let dir = tempfile::Builder::new()
        .prefix("manifests")
        .tempdir()
        .expect("tempdir");
    // As a production install runs it: images pinned by digest.
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = [
        format!("image.digest={digest}"),
        format!("workerImage.digest={digest}"),
    ];
    let value_sets: [&[&str]; 3] = [
        &[],
        &[
            "store.postgresSecret.name=db",
            "store.postgresSecret.key=dsn",
            "ingress.enabled=true",
            "ingress.host=tidewright.example.com",
            "serviceMonitor.enabled=true",
        ],
        &["operator.watchNamespace=team-a"],
    ];
    let mut agents_made = 0;
    for (n, sets) in value_sets.iter().enumerate() {
        let mut all: Vec<&str> = pinned.iter().map(String::as_str).collect();
        all.extend(sets.iter());
        let objects = render(&all).expect("renders");
        let chart: Vec<Value> = objects
            .iter()
            .filter(|o| o["kind"] != "CustomResourceDefinition")
            .cloned()
            .collect();
        write_stream(&dir.path().join(format!("chart-{n}.yaml")), &chart);
        if n > 0 {
            continue;
        }
        // What the operator of this install makes of the examples.
        let settings = worker_settings(&objects);
        for agent in example_agents() {
            let name = agent.metadata.name.clone().expect("name");
            let mut made = vec![
                serde_json::to_value(workers::deployment(&agent, &settings, 2)).expect("json"),
            ];
            if let Some(policy) = network::network_policy(&agent, &settings).expect("valid egress")
            {
                made.push(serde_json::to_value(policy).expect("json"));
            }
            // The same pool with a pod of its own per step.
            let mut per_step = agent.clone();
            per_step.spec.isolation = tidewright_operator::crd::Isolation::Pod;
            let pod = step_pods::step_pod(&per_step, &settings, step_pods::pod_name(&name));
            made.push(serde_json::to_value(pod).expect("json"));
            agents_made += made.len();
            write_stream(&dir.path().join(format!("agent-{name}.yaml")), &made);
        }
    }
    assert_eq!(
        agents_made, 6,
        "each pool's Deployment, NetworkPolicy and a step pod"
    );

    let out = Command::new(tool("checkov"))
        .args(["--directory"])
        .arg(dir.path())
        .args(["--config-file"])
        .arg(repo_root().join("deploy/checkov.yaml"))
        .args(["--output", "json", "--skip-download"])
        .env("LOG_LEVEL", "ERROR")
        .output()
        .expect("checkov runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let reports = match report {
        Value::Array(reports) => reports,
        one => vec![one],
    };
    let mut passed = 0;
    let mut failed = Vec::new();
    for report in &reports {
        passed += report["summary"]["passed"].as_u64().unwrap_or(0);
        for check in report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            failed.push(format!(
                "{} {} ({}) in {}",
                check["check_id"].as_str().unwrap_or("?"),
                check["check_name"].as_str().unwrap_or("?"),
                check["resource"].as_str().unwrap_or("?"),
                check["file_path"].as_str().unwrap_or("?"),
            ));
        }
    }
    assert!(failed.is_empty(), "checkov finds:\n{}", failed.join("\n"));
    // It did look: the restricted-PSS checks, probes, limits and the rest,
    // over every Deployment.
    assert!(passed > 300, "only {passed} checks passed");
}

fn write_stream(path: &std::path::Path, objects: &[Value]) {
    let text = objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(path, text).expect("write manifests");
}

/// Every CEL rule in the CRDs, by its message.
fn rule_messages(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, sub) in map {
                if key == "x-kubernetes-validations" {
                    for rule in sub.as_array().into_iter().flatten() {
                        found.push(rule["message"].as_str().unwrap_or_default().to_string());
                    }
                } else {
                    rule_messages(sub, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| rule_messages(i, found)),
        _ => {}
    }
}

/// Runs `tests/policy/<script>` in the policy tools' venv with `request` on
/// its stdin; what it prints, as JSON.
fn python<T: serde::de::DeserializeOwned>(script: &str, request: &Value) -> T {
    let mut child = Command::new(tool("python"))
        .arg(repo_root().join("tests/policy").join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("send the request");
    let out = child.wait_with_output().expect("python ends");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("results")
}

#[test]
fn the_crds_cel_rules_admit_and_refuse_as_they_say() {
    let crds = repo_root().join("crds/tidewright.dev.yaml");
    // (kind, object, old object on an update, the messages it breaks)
    let cases: Vec<(&str, Value, Option<Value>, Vec<&str>)> = vec![
        (
            "Agent",
            json!({"spec": {"minReplicas": 1, "maxReplicas": 4}}),
            None,
            vec![],
        ),
        (
            "Agent",
            json!({"spec": {"minReplicas": 5, "maxReplicas": 4}}),
            None,
            vec!["minReplicas must not exceed maxReplicas"],
        ),
        (
            "Agent",
            json!({"spec": {"seedCache": {"hostPath": "/var/lib/tidewright-seeds", "size": "50Gi"}, "repoCache": {"claimName": "mirrors"}}}),
            None,
            vec![],
        ),
        (
            "Agent",
            json!({"spec": {"seedCache": {"claimName": "seeds", "hostPath": "/var/lib/tidewright-seeds"}}}),
            None,
            vec!["name claimName or hostPath, not both"],
        ),
        // maxReplicas defaults to 10 before the rule runs.
        (
            "Agent",
            json!({"spec": {"minReplicas": 11}}),
            None,
            vec!["minReplicas must not exceed maxReplicas"],
        ),
        (
            "Task",
            json!({"spec": {"name": "t", "steps": [{"id": "a"}]}}),
            None,
            vec![],
        ),
        (
            "Task",
            json!({"spec": {"templateRef": {"name": "feature"}, "parameters": {"x": "1"}}}),
            None,
            vec![],
        ),
        (
            "Task",
            json!({"spec": {"templateRef": {"name": "feature"}, "steps": [{"id": "a"}]}}),
            None,
            vec![
                "a Task with templateRef takes its steps from the template: give parameters, not steps or a prompt",
            ],
        ),
        (
            "Task",
            json!({"spec": {"templateRef": {"name": "feature"}, "prompt": "do it"}}),
            None,
            vec![
                "a Task with templateRef takes its steps from the template: give parameters, not steps or a prompt",
            ],
        ),
        (
            "Schedule",
            json!({"spec": {"cron": "@daily", "task": {"steps": [{"id": "a"}]}}}),
            None,
            vec![],
        ),
        (
            "Schedule",
            json!({"spec": {"cron": "@daily", "templateRef": {"name": "triage"}}}),
            None,
            vec![],
        ),
        (
            "Schedule",
            json!({"spec": {"cron": "@daily"}}),
            None,
            vec!["give the task each tick submits, or a templateRef: one of them"],
        ),
        (
            "Schedule",
            json!({"spec": {"cron": "@daily", "templateRef": {"name": "triage"}, "task": {"steps": [{"id": "a"}]}}}),
            None,
            vec!["give the task each tick submits, or a templateRef: one of them"],
        ),
        // Updates: the same spec passes, a changed one does not.
        (
            "Task",
            json!({"spec": {"name": "t", "prompt": "a"}}),
            Some(json!({"spec": {"name": "t", "prompt": "a"}})),
            vec![],
        ),
        (
            "Task",
            json!({"spec": {"name": "t", "prompt": "b"}}),
            Some(json!({"spec": {"name": "t", "prompt": "a"}})),
            vec!["a Task's spec cannot change once it is created; create a new Task"],
        ),
    ];
    let request = json!({
        "crds": crds,
        "cases": cases.iter().map(|(kind, object, old, _)| json!({"kind": kind, "object": object, "old": old})).collect::<Vec<_>>(),
    });
    let results: Vec<Vec<String>> = python("cel_rules.py", &request);
    for ((kind, object, old, want), got) in cases.iter().zip(&results) {
        assert_eq!(got, want, "{kind} {object} (old: {old:?})");
    }

    // Every rule in the CRDs has a case that breaks it: a new rule comes
    // with its cases.
    let text = std::fs::read_to_string(&crds).expect("crds");
    let mut messages = Vec::new();
    for doc in documents(&text) {
        rule_messages(&doc, &mut messages);
    }
    assert!(messages.len() >= 3, "{messages:?}");
    for message in messages {
        assert!(
            cases
                .iter()
                .any(|(.., want)| want.contains(&message.as_str())),
            "no case breaks the rule {message:?}"
        );
    }
}

/// What the operator makes for `isolation: sandbox` (a SandboxTemplate, a
/// SandboxWarmPool and a SandboxClaim per example pool) is admitted by the
/// schemas kubernetes-sigs/agent-sandbox publishes for them, with strict
/// field validation: a field they do not know would be pruned by the API
/// server without a word (a misspelled `networkPolicyManagement` would
/// leave agent-sandbox's default policy cutting the workers off from the
/// control plane). A claim with such a field is refused, so the check
/// bites.
#[test]
fn what_isolation_sandbox_makes_is_admitted_by_agent_sandboxs_published_crds() {
    use tidewright_operator::sandbox_claims;
    let fixtures = repo_root().join("tests/fixtures/agent-sandbox");
    let crds: Vec<PathBuf> = ["sandboxtemplates", "sandboxwarmpools", "sandboxclaims"]
        .iter()
        .map(|k| fixtures.join(format!("extensions.agents.x-k8s.io_{k}.yaml")))
        .collect();
    let settings = worker_settings(&render(&[]).expect("the chart renders"));
    let mut objects = Vec::new();
    for mut agent in example_agents() {
        agent.spec.isolation = tidewright_operator::crd::Isolation::Sandbox;
        let name = agent.metadata.name.clone().expect("name");
        objects.push(sandbox_claims::template(&agent, &settings));
        objects.push(sandbox_claims::warm_pool(&agent));
        objects.push(sandbox_claims::claim(&agent, step_pods::pod_name(&name)));
    }
    let mut misspelled = objects[2].clone();
    misspelled["spec"]["warmPoolReference"] = misspelled["spec"]["warmPoolRef"].take();
    objects.push(misspelled);
    let request = json!({"crds": crds, "objects": objects});
    let mut results: Vec<Vec<String>> = python("crd_schema.py", &request);
    let refused = results.pop().expect("the misspelled claim");
    assert!(
        refused.iter().any(|p| p.contains("warmPoolReference"))
            && refused.iter().any(|p| p.contains("warmPoolRef")),
        "{refused:?}"
    );
    assert_eq!(results.len(), 6);
    for (object, problems) in objects.iter().zip(&results) {
        assert!(
            problems.is_empty(),
            "{} {}: {problems:?}",
            object["kind"],
            object["metadata"]["name"]
        );
    }
}
