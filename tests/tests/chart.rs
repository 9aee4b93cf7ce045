//! The Helm chart: `helm lint` and `helm template` with the real helm binary
//! (scripts/tools.sh fetches it), every rendered object parsed as its
//! Kubernetes type, the wiring checked (images, args, the Service address),
//! the CRDs equal to crds/, and the rendered tokens accepted by a real
//! control plane.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Secret};
use serde_json::Value;
use tidewright_api::v1;
use tidewright_tests::chart::{documents, helm, render};
use tidewright_tests::*;

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn container(objects: &[Value], deployment: &str) -> Container {
    let deployment: Deployment =
        serde_json::from_value(find(objects, "Deployment", deployment).clone())
            .expect("a Deployment");
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].clone())
        .expect("a container")
}

fn env(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn secret_value(objects: &[Value], name: &str, key: &str) -> String {
    let secret: Secret =
        serde_json::from_value(find(objects, "Secret", name).clone()).expect("a Secret");
    secret
        .string_data
        .and_then(|d| d.get(key).cloned())
        .expect("the key")
}

#[test]
fn the_chart_lints_clean() {
    let out = helm()
        .args(["lint", "--strict", "charts/tidewright"])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rendered_object_is_a_known_kind_and_parses_as_it() {
    let mut objects = render(&[]).expect("renders");
    // On PostgreSQL, as replicas, with their disruption budget.
    objects.extend(
        render(&["store.postgresUrl=postgres://tidewright@db/tidewright"]).expect("renders"),
    );
    // With tenants' budgets.
    objects.extend(render(&["controlPlane.tenantBudgets.team-a.usdPerDay=50"]).expect("renders"));
    // With its Ingress.
    objects.extend(
        render(&[
            "ingress.enabled=true",
            "ingress.host=tidewright.example.com",
        ])
        .expect("renders")
        .into_iter()
        .filter(|o| o["kind"] == "Ingress"),
    );
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let parsed = match kind {
            "Deployment" => serde_json::from_value::<Deployment>(object.clone()).map(drop),
            "Service" => serde_json::from_value::<k8s_openapi::api::core::v1::Service>(object.clone()).map(drop),
            "Secret" => serde_json::from_value::<Secret>(object.clone()).map(drop),
            "ServiceAccount" => serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(object.clone()).map(drop),
            "PersistentVolumeClaim" => serde_json::from_value::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(object.clone()).map(drop),
            "Role" => serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(object.clone()).map(drop),
            "RoleBinding" => serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(object.clone()).map(drop),
            "ClusterRole" => serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRole>(object.clone()).map(drop),
            "ClusterRoleBinding" => serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(object.clone()).map(drop),
            "CustomResourceDefinition" => serde_json::from_value::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(object.clone()).map(drop),
            "PodDisruptionBudget" => serde_json::from_value::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(object.clone()).map(drop),
            "Ingress" => serde_json::from_value::<k8s_openapi::api::networking::v1::Ingress>(object.clone()).map(drop),
            "ConfigMap" => serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(object.clone()).map(drop),
            "NetworkPolicy" => serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(object.clone()).map(drop),
            other => panic!("the chart renders an unexpected kind {other:?}"),
        };
        parsed.unwrap_or_else(|e| panic!("{kind} {}: {e}", object["metadata"]["name"]));
    }
    let kinds: std::collections::BTreeSet<&str> =
        objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "ClusterRole",
        "CustomResourceDefinition",
        "PodDisruptionBudget",
        "Ingress",
        "ConfigMap",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
}

/// Two objects of one kind, namespace and name would make `helm install`
/// fail, though `helm template` renders them happily.
#[test]
fn no_two_objects_share_a_kind_namespace_and_name() {
    let objects = render(&[
        "serviceMonitor.enabled=true",
        "agentNamespaces={team-a,tidewright-system}",
    ])
    .expect("renders");
    let mut seen = std::collections::BTreeSet::new();
    for object in &objects {
        let key = (
            object["kind"].as_str().unwrap_or_default().to_string(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("tidewright-system")
                .to_string(),
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        assert!(seen.insert(key.clone()), "rendered twice: {key:?}");
    }
}

#[test]
fn images_args_and_addresses_reach_the_containers() {
    let objects = render(&[]).expect("renders");
    let server = container(&objects, "tidewright");
    assert_eq!(
        server.image.as_deref(),
        Some("ghcr.io/tidewright/tidewright:0.2.0")
    );
    let args = server.args.clone().unwrap_or_default();
    for arg in [
        "server",
        "--listen=0.0.0.0:7070",
        "--data-dir=/var/lib/tidewright",
        "--rate-limit=50/200",
        // SQLite's durability is said by its URL.
        "--store=sqlite:///var/lib/tidewright/tidewright.db?synchronous=normal",
    ] {
        assert!(
            args.iter().any(|a| a == arg),
            "control plane args {args:?} lack {arg}"
        );
    }
    assert!(!args.iter().any(|a| a == "--audit-log"), "off by default");
    let operator = container(&objects, "tidewright-operator");
    assert_eq!(
        operator.args,
        Some(vec!["operator".to_string(), "run".to_string()])
    );
    assert_eq!(
        env(&operator, "TIDEWRIGHT_SERVER").as_deref(),
        Some("http://tidewright.tidewright-system.svc:7070")
    );
    assert_eq!(
        env(&operator, "TIDEWRIGHT_WORKER_IMAGE").as_deref(),
        Some("ghcr.io/tidewright/tidewright-worker:0.2.0")
    );
    let service = find(&objects, "Service", "tidewright");
    assert_eq!(service["spec"]["ports"][0]["port"], 7070);
    // All namespaces by default: cluster-wide RBAC, TenantShares among it.
    find(&objects, "ClusterRole", "tidewright-operator");
    let shares = find(&objects, "ClusterRole", "tidewright-operator-tenantshares");
    assert_eq!(
        shares["rules"][0]["resources"],
        serde_json::json!(["tenantshares"])
    );

    // Values change what they should.
    let objects = render(&[
        "image.tag=1.2.3",
        "operator.watchNamespace=team-a",
        "controlPlane.rateLimit=",
        "controlPlane.auditLog=true",
        "controlPlane.retention=7d",
        "controlPlane.tenantRetention.team-a=0",
        "controlPlane.durability=machine",
    ])
    .expect("renders");
    let server = container(&objects, "tidewright");
    assert_eq!(
        server.image.as_deref(),
        Some("ghcr.io/tidewright/tidewright:1.2.3")
    );
    let args = server.args.unwrap_or_default();
    for flag in [
        "--retention=7d",
        "--tenant-retention=team-a=0",
        "--audit-retention=365d",
        "--store=sqlite:///var/lib/tidewright/tidewright.db?synchronous=full",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--rate-limit")));
    assert!(args.iter().any(|a| a == "--audit-log"), "{args:?}");
    let operator = container(&objects, "tidewright-operator");
    assert_eq!(
        env(&operator, "TIDEWRIGHT_WATCH_NAMESPACE").as_deref(),
        Some("team-a")
    );
    let role = find(&objects, "Role", "tidewright-operator");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert!(
        !objects.iter().any(|o| o["kind"] == "ClusterRole"),
        "one namespace: no cluster-wide role"
    );
    // No planner unless a key Secret is named; then its key is mounted and
    // the flags point at it.
    let planner_args = |objects: &[Value]| control_plane_args(objects, "--planner");
    assert!(planner_args(&render(&[]).expect("renders")).is_empty());
    let objects = render(&[
        "controlPlane.planner.apiKeySecret.name=anthropic",
        "controlPlane.planner.baseUrl=https://gateway.example",
    ])
    .expect("renders");
    assert_eq!(
        planner_args(&objects),
        [
            "--planner-api-key-file=/etc/tidewright/planner/api-key",
            "--planner-model=claude-sonnet-4-5",
            "--planner-base-url=https://gateway.example"
        ]
    );
    let deployment = find(&objects, "Deployment", "tidewright");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("\"secretName\":\"anthropic\""),
        "{volumes}"
    );
    // Rubrics are graded once a grader model is named.
    let grader_args = |objects: &[Value]| control_plane_args(objects, "--grader");
    assert!(grader_args(&render(&[]).expect("renders")).is_empty());
    let objects = render(&["controlPlane.graderModel=claude-sonnet-4-5"]).expect("renders");
    assert_eq!(grader_args(&objects), ["--grader-model=claude-sonnet-4-5"]);
    assert!(
        render(&["controlPlane.graderModel=two words"]).is_err(),
        "the schema refuses a model name with a space"
    );
    // The repositories' credentials, for resolving a Task's ref: mounted
    // as the control plane's --repo-secrets-dir when a Secret is named.
    let repo_args = |objects: &[Value]| control_plane_args(objects, "--repo-secrets-dir");
    assert!(repo_args(&render(&[]).expect("renders")).is_empty());
    let objects = render(&["controlPlane.repoSecretsSecret=git-tokens"]).expect("renders");
    assert_eq!(
        repo_args(&objects),
        ["--repo-secrets-dir=/etc/tidewright/repo-secrets"]
    );
    let deployment = find(&objects, "Deployment", "tidewright");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("\"secretName\":\"git-tokens\""),
        "{volumes}"
    );
}

#[test]
fn the_charts_crds_are_crds_dir() {
    let objects = render(&[]).expect("renders");
    let rendered: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let committed =
        std::fs::read_to_string(repo_root().join("crds/tidewright.dev.yaml")).expect("crds/");
    let committed = documents(&committed);
    assert_eq!(rendered.len(), committed.len());
    for (got, want) in rendered.iter().zip(&committed) {
        assert_eq!(
            *got, want,
            "charts/tidewright/crds differs from crds/: run `make crds`"
        );
    }
}

#[test]
fn metrics_and_probes_use_the_http_port_and_a_service_monitor_scrapes_it() {
    let objects = render(&[]).expect("renders");
    assert!(
        !objects.iter().any(|o| o["kind"] == "ServiceMonitor"),
        "off by default: not every cluster has the Prometheus Operator"
    );
    let server = container(&objects, "tidewright");
    let args = server.args.clone().unwrap_or_default();
    assert!(
        args.contains(&"--http-listen=0.0.0.0:9090".to_string()),
        "{args:?}"
    );
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(&server.readiness_probe).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        probe_path(&server.liveness_probe).as_deref(),
        Some("/healthz")
    );

    let objects = render(&[
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=prometheus",
    ])
    .expect("renders");
    let monitor = find(&objects, "ServiceMonitor", "tidewright");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // It selects the control plane's Service, which has the port it names.
    let service = find(&objects, "Service", "tidewright");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (key, value) in selector {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "http" && p["port"] == 9090),
        "{ports:?}"
    );
    // /metrics needs a token: Prometheus presents the metrics token.
    let credentials = |endpoint: &Value| {
        assert_eq!(endpoint["authorization"]["type"], "Bearer");
        endpoint["authorization"]["credentials"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let secret = credentials(&monitor["spec"]["endpoints"][0]);
    assert_eq!(secret, "tidewright-metrics-token");
    assert!(!secret_value(&objects, &secret, "token").is_empty());

    // Worker pods, found by the labels the operator gives them, on the
    // port it gives them, asking for the same token.
    let pods = find(&objects, "PodMonitor", "tidewright-workers");
    let endpoint = &pods["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "http");
    assert_eq!(credentials(endpoint), secret);
    for (key, value) in tidewright_operator::workers::selector_labels("any") {
        if let Some(wanted) = pods["spec"]["selector"]["matchLabels"][&key].as_str() {
            assert_eq!(wanted, value, "{key}");
        }
    }
    assert!(
        pods["spec"]["selector"]["matchLabels"]
            .as_object()
            .is_some_and(|labels| !labels.is_empty())
    );
    let operator = container(&objects, "tidewright-operator");
    let worker_secret = env(&operator, "TIDEWRIGHT_WORKER_METRICS_TOKEN_SECRET").expect("set");
    assert_eq!(
        secret_value(&objects, &worker_secret, "token"),
        secret_value(&objects, &secret, "token"),
        "worker pods ask for the token Prometheus has"
    );
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    for (set, named) in [
        ("controlPlane.port=0", "/controlPlane/port"),
        ("operator.replica=2", "replica"),
        (
            "controlPlane.durability=sometimes",
            "/controlPlane/durability",
        ),
        (
            "store.postgresUrl=mysql://db/tidewright",
            "/store/postgresUrl",
        ),
        ("store.postgresSecret.key=", "/store/postgresSecret/key"),
        (
            "controlPlane.planner.baseUrl=ftp://x",
            "/controlPlane/planner/baseUrl",
        ),
        ("serviceMonitor.interval=often", "/serviceMonitor/interval"),
        ("ingress.host=Not A Host", "/ingress/host"),
        ("ingress.enabled=maybe", "/ingress/enabled"),
        (
            "controlPlane.tenantBudgets.team-a.usdPerDay=-1",
            "/controlPlane/tenantBudgets/team-a/usdPerDay",
        ),
        (
            "controlPlane.tenantBudgets.team-a.usdPerWeek=5",
            "usdPerWeek",
        ),
        (
            "controlPlane.checkpoints.retention=forever",
            "/controlPlane/checkpoints/retention",
        ),
        (
            "controlPlane.checkpoints.maxBytes=10",
            "/controlPlane/checkpoints/maxBytes",
        ),
        ("controlPlane.hotTasks=0", "/controlPlane/hotTasks"),
    ] {
        let error = render(&[set]).expect_err(set);
        assert!(error.contains(named), "--set {set}: {error}");
    }
}

#[test]
fn on_postgres_the_control_plane_runs_as_replicas_spread_and_budgeted() {
    let deployment = |objects: &[Value]| -> Deployment {
        serde_json::from_value(find(objects, "Deployment", "tidewright").clone())
            .expect("a Deployment")
    };
    let objects =
        render(&["store.postgresUrl=postgres://tidewright@db/tidewright"]).expect("renders");
    let spec = deployment(&objects).spec.expect("spec");
    assert_eq!(spec.replicas, Some(3), "three by default on PostgreSQL");
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("RollingUpdate")
    );
    let pod = spec.template.spec.expect("pod");
    let spread = serde_json::to_value(&pod.affinity).expect("affinity");
    assert_eq!(
        spread["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname",
        "{spread}"
    );
    let server = pod.containers[0].clone();
    assert_eq!(
        env(&server, "TIDEWRIGHT_ADVERTISE").as_deref(),
        Some("$(POD_IP):7070")
    );
    assert_eq!(
        env(&server, "TIDEWRIGHT_LEADER_LEASE").as_deref(),
        Some("4s")
    );
    let names: Vec<&str> = server
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    let at = |name: &str| names.iter().position(|n| *n == name).expect(name);
    assert!(
        at("POD_IP") < at("TIDEWRIGHT_ADVERTISE"),
        "POD_IP is defined before it is used: {names:?}"
    );
    let readiness = server.readiness_probe.expect("readiness");
    assert_eq!(
        readiness.http_get.and_then(|h| h.path).as_deref(),
        Some("/readyz"),
        "ready means leading"
    );
    let budget = find(&objects, "PodDisruptionBudget", "tidewright");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(budget["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "control-plane"
    );

    // One replica on PostgreSQL: no budget, nothing to spread.
    let objects = render(&[
        "store.postgresUrl=postgres://tidewright@db/tidewright",
        "controlPlane.replicas=1",
    ])
    .expect("renders");
    assert!(!objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    assert_eq!(deployment(&objects).spec.and_then(|s| s.replicas), Some(1));

    // SQLite: one, replaced rather than rolled; more are refused, saying why.
    let objects = render(&[]).expect("renders");
    let spec = deployment(&objects).spec.expect("spec");
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );
    assert!(!objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    let refused = render(&["controlPlane.replicas=3"]).expect_err("SQLite has one writer");
    assert!(
        refused.contains("/controlPlane/replicas")
            && refused.contains("more than one replica needs PostgreSQL"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_url_comes_from_a_secret_and_a_real_control_plane_serves_with_it() {
    let postgres = tidewright_store_postgres::throwaway::Server::from_env().expect("postgres");
    let url = postgres.fresh_database().await.expect("database");
    let objects = render(&[&format!("store.postgresUrl={url}")]).expect("renders");
    // The URL is in a Secret, never in the args; no claim is made.
    assert_eq!(secret_value(&objects, "tidewright-store", "url"), url);
    let server = container(&objects, "tidewright");
    let args = server.args.clone().unwrap_or_default();
    assert!(
        !args
            .iter()
            .any(|a| a.contains("postgres") || a.starts_with("--store")),
        "{args:?}"
    );
    // As a file from the Secret: never a variable a process inherits.
    assert_eq!(
        env(&server, "TIDEWRIGHT_STORE_FILE").as_deref(),
        Some("/etc/tidewright/store/url")
    );
    assert!(env(&server, "TIDEWRIGHT_STORE").is_none());
    let store_volume = |objects: &[Value]| {
        let deployment = find(objects, "Deployment", "tidewright");
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].clone();
        let volume = volumes
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "store-url")
            .cloned()
            .expect("the store URL's volume");
        (
            volume["secret"]["secretName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            volume["secret"]["items"][0]["key"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert_eq!(
        store_volume(&objects),
        ("tidewright-store".into(), "url".into())
    );
    let mounts = serde_json::to_string(&server.volume_mounts).expect("mounts");
    assert!(mounts.contains("/etc/tidewright/store"), "{mounts}");
    assert!(!objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim"));
    let mounts = serde_json::to_string(&server.volume_mounts).expect("mounts");
    assert!(
        mounts.contains("/var/lib/tidewright/step-tokens.key"),
        "{mounts}"
    );
    let key = secret_value(&objects, "tidewright-step-token-key", "token");
    assert!(key.len() >= 32);

    // The real control plane, given that file as the pod would be.
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("store-url");
    std::fs::write(&url_file, format!("{url}\n")).expect("the mounted key");
    let url_file = url_file.to_string_lossy().into_owned();
    let running = Server::start_with_env(
        dir.path(),
        "127.0.0.1:0",
        &[],
        &[("TIDEWRIGHT_STORE_FILE", &url_file)],
    )
    .expect("serves on postgres");
    let client = running.tasks().await.expect("client");
    let id = submit(&client, task("through-the-chart", vec![noop_step("a")]))
        .await
        .expect("submitted");
    assert!(!id.is_empty());
    assert!(
        !dir.path().join("tidewright.db").exists(),
        "the tasks are in postgres"
    );

    // An existing Secret instead; not both.
    let objects = render(&[
        "store.postgresSecret.name=db",
        "store.postgresSecret.key=dsn",
    ])
    .expect("renders");
    assert_eq!(store_volume(&objects), ("db".into(), "dsn".into()));
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "tidewright-store")
    );
    let both = render(&[
        &format!("store.postgresUrl={url}"),
        "store.postgresSecret.name=db",
    ])
    .expect_err("both");
    assert!(both.contains("set one, not both"), "{both}");
}

#[tokio::test]
async fn the_rendered_tokens_let_each_component_in_and_no_further() {
    let objects = render(&[]).expect("renders");
    let tokens = secret_value(&objects, "tidewright-tokens", "tokens");
    let lines: Vec<String> = tokens.lines().map(str::to_string).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let server = start_with_tokens(dir.path(), &lines, &["--http-listen", &http])
        .expect("the control plane accepts the tokens file");

    let admin = secret_value(&objects, "tidewright-admin-token", "token");
    let operator = secret_value(&objects, "tidewright-operator-token", "token");
    let worker = secret_value(&objects, "tidewright-worker-token", "token");
    let metrics = secret_value(&objects, "tidewright-metrics-token", "token");
    assert_eq!(admin.len(), 48);
    assert!(admin != operator && operator != worker && worker != metrics);

    server
        .tasks_as(&admin)
        .await
        .expect("client")
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .expect("admin reads");
    // The operator submits into any namespace's tenant.
    let mut as_operator = server.tasks_as(&operator).await.expect("client");
    let mut request = task("from-a-namespace", vec![noop_step("a")]);
    request.tenant = "team-a".into();
    as_operator
        .submit_task(request)
        .await
        .expect("the operator submits");
    // And applies the cluster's TenantShares, which only admins may.
    as_operator
        .set_tenant_share(v1::SetTenantShareRequest {
            tenant: "team-a".into(),
            weight: Some(2),
            ..v1::SetTenantShareRequest::default()
        })
        .await
        .expect("the operator sets a share");
    // The workers' token connects workers, and reads no tasks.
    let refused = server
        .tasks_as(&worker)
        .await
        .expect("client")
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .expect_err("a worker token reads no tasks");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // The metrics token scrapes, and changes nothing.
    let (status, body) = http_get(&http, "/metrics", Some(&metrics)).expect("scrape");
    assert_eq!(status, 200, "{body}");
    let refused = server
        .tasks_as(&metrics)
        .await
        .expect("client")
        .submit_task(task("scraper", vec![noop_step("a")]))
        .await
        .expect_err("a metrics token submits nothing");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

/// The HTTP port (the JSON API, the console) leaves the cluster only
/// through an Ingress asked for; with TLS there, the control plane marks
/// its session cookies Secure.
#[tokio::test]
async fn tenant_budgets_render_to_a_file_the_control_plane_sets_on_start() {
    assert!(
        render(&[])
            .expect("renders")
            .iter()
            .all(|o| o["kind"] != "ConfigMap"),
        "no budgets, no ConfigMap"
    );
    let objects = render(&[
        "controlPlane.tenantBudgets.team-a.usdPerDay=50",
        "controlPlane.tenantBudgets.team-a.usdPerMonth=800",
        "controlPlane.tenantBudgets.team-b.tokensPerDay=20000000",
    ])
    .expect("renders");
    let server = container(&objects, "tidewright");
    let args = server.args.clone().unwrap_or_default();
    assert!(
        args.iter()
            .any(|a| a == "--tenant-budgets=/etc/tidewright/budgets/budgets.yaml"),
        "{args:?}"
    );
    let mounted = server
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == "tenant-budgets" && m.mount_path == "/etc/tidewright/budgets");
    assert!(mounted, "the budgets are mounted where the flag says");
    let map = find(&objects, "ConfigMap", "tidewright-tenant-budgets");
    let file = map["data"]["budgets.yaml"].as_str().expect("budgets.yaml");
    // The real control plane takes the rendered file.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("budgets.yaml");
    std::fs::write(&path, file).expect("file");
    let path = path.display().to_string();
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--tenant-budgets", &path]).expect("server");
    let listed = succeed(server.cli().args(["budget", "get", "-o", "json"]));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["tenant"], "team-a");
    assert_eq!(listed[0]["usdPerDay"], 50.0);
    assert_eq!(listed[0]["usdPerMonth"], 800.0);
    assert_eq!(listed[1]["tokensPerDay"], 20_000_000);
}

/// The checkpoint settings and the cap on tasks held whole reach the
/// control plane's flags, which the real control plane takes.
#[tokio::test]
async fn memory_and_checkpoint_settings_render_to_flags_the_control_plane_takes() {
    let flags = |objects: &[Value]| -> Vec<String> {
        container(objects, "tidewright")
            .args
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.contains("checkpoint") || a.starts_with("--hot-tasks"))
            .collect()
    };
    assert_eq!(
        flags(&render(&[]).expect("renders")),
        [
            "--hot-tasks=50000",
            "--max-checkpoint-bytes=8388608",
            "--checkpoint-retention=24h"
        ]
    );
    let set = flags(
        &render(&[
            "controlPlane.checkpoints.maxBytes=1048576",
            "controlPlane.checkpoints.retention=90m",
            "controlPlane.hotTasks=2000",
        ])
        .expect("renders"),
    );
    assert_eq!(
        set,
        [
            "--hot-tasks=2000",
            "--max-checkpoint-bytes=1048576",
            "--checkpoint-retention=90m"
        ]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<&str> = set.iter().map(String::as_str).collect();
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &args).expect("server");
    server.wait_leading().await.expect("serves with them");
}

#[test]
fn an_ingress_is_made_only_when_asked_and_routes_to_the_http_port() {
    let plain = render(&[]).expect("renders");
    assert!(
        !plain.iter().any(|o| o["kind"] == "Ingress"),
        "no Ingress by default"
    );
    assert!(
        !container(&plain, "tidewright")
            .args
            .unwrap_or_default()
            .contains(&"--secure-cookies".to_string())
    );
    let objects = render(&[
        "ingress.enabled=true",
        "ingress.className=nginx",
        "ingress.host=tidewright.example.com",
        "ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-buffering=off",
        "ingress.tls[0].secretName=tidewright-tls",
        "ingress.tls[0].hosts[0]=tidewright.example.com",
    ])
    .expect("renders");
    let ingress: k8s_openapi::api::networking::v1::Ingress =
        serde_json::from_value(find(&objects, "Ingress", "tidewright").clone())
            .expect("an Ingress");
    let spec = ingress.spec.expect("a spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &spec.rules.expect("rules")[0];
    assert_eq!(rule.host.as_deref(), Some("tidewright.example.com"));
    let path = &rule.http.as_ref().expect("http").paths[0];
    assert_eq!(
        (path.path.as_deref(), path.path_type.as_str()),
        (Some("/"), "Prefix")
    );
    let backend = path.backend.service.as_ref().expect("a Service backend");
    // The Service it names exists and has the port it names.
    let service: k8s_openapi::api::core::v1::Service =
        serde_json::from_value(find(&objects, "Service", &backend.name).clone())
            .expect("the Service");
    let port_name = backend
        .port
        .as_ref()
        .and_then(|p| p.name.clone())
        .expect("a port name");
    assert!(
        service
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .iter()
            .any(|p| p.name.as_deref() == Some(port_name.as_str())),
        "the Service has port {port_name}"
    );
    assert_eq!(
        spec.tls.expect("tls")[0].secret_name.as_deref(),
        Some("tidewright-tls")
    );
    assert_eq!(
        ingress
            .metadata
            .annotations
            .unwrap_or_default()
            .get("nginx.ingress.kubernetes.io/proxy-buffering")
            .map(String::as_str),
        Some("off")
    );
    assert!(
        container(&objects, "tidewright")
            .args
            .unwrap_or_default()
            .contains(&"--secure-cookies".to_string()),
        "TLS at the Ingress: Secure cookies"
    );
}

/// The control plane's arguments that start with `prefix`.
fn control_plane_args(objects: &[Value], prefix: &str) -> Vec<String> {
    container(objects, "tidewright")
        .args
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.starts_with(prefix))
        .collect()
}
