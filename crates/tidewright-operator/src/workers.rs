//! The Deployment an `Agent` owns: pods running `tidewright worker` for the pool,
//! pointed at the control plane, with the worker token and the pool's
//! secrets mounted, time to drain on scale-in, and (given a metrics token)
//! an HTTP port for their metrics and probes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::{Agent, AgentRuntime};

/// Where the workers' secrets directory is mounted.
pub const SECRETS_DIR: &str = "/var/run/tidewright/secrets";
/// Where a pool's repository cache is mounted.
pub const MIRRORS_DIR: &str = "/var/cache/tidewright/mirrors";
/// Where a pool's `seedCache` is mounted.
pub const SEEDS_DIR: &str = "/var/cache/tidewright/seeds";
/// Where the metrics token is mounted, and the worker's HTTP port.
pub const METRICS_TOKEN_DIR: &str = "/var/run/tidewright/metrics";
/// Where the worker token is mounted, as the file `token`.
pub const TOKEN_DIR: &str = "/var/run/tidewright/token";
/// Where the model provider's API key is mounted, as the file `api-key`.
pub const API_KEY_DIR: &str = "/var/run/tidewright/api-key";
pub const HTTP_PORT: i32 = 9090;
/// How long a pod has to finish its steps when scaled in; the worker hands
/// back what is left a little before the kubelet's SIGKILL.
pub const DRAIN_GRACE_SECONDS: i64 = 120;

/// What the operator was installed with: the defaults every pool shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The control plane's Service, e.g. `http://tidewright.tidewright-system:7070`.
    pub server: String,
    /// The worker image when an `Agent` names none.
    pub image: String,
    /// The Secret (and key) holding a token with the worker role.
    pub token_secret: String,
    pub token_key: String,
    /// The Secret (key `token`) scrapers of the workers' `/metrics` must
    /// present; `None` serves no HTTP port on worker pods.
    pub metrics_token_secret: Option<String>,
}

/// Labels that select one pool's pods.
pub fn selector_labels(agent_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "tidewright-worker".to_string(),
        ),
        ("tidewright.dev/agent".to_string(), agent_name.to_string()),
    ])
}

/// The pool name the workers register with: `namespace/name`, so pools of
/// the same name in two namespaces stay apart in the control plane.
pub fn pool_name(agent: &Agent) -> String {
    format!(
        "{}/{}",
        agent.metadata.namespace.as_deref().unwrap_or("default"),
        agent.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The Deployment's name for an Agent.
pub fn deployment_name(agent_name: &str) -> String {
    format!("{agent_name}-workers")
}

/// `key=value,...`, for the `/scale` subresource's selector.
pub fn selector_string(agent_name: &str) -> String {
    selector_labels(agent_name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The pool's capabilities, with the runtime's own first so a claude-code
/// pool always offers `claude-code`.
pub fn capabilities(agent: &Agent) -> Vec<String> {
    let runtime = match agent.spec.runtime {
        AgentRuntime::Shell => "shell",
        AgentRuntime::ClaudeCode => "claude-code",
        AgentRuntime::Codex => "codex",
        AgentRuntime::GeminiCli => "gemini-cli",
    };
    let mut all = vec![runtime.to_string()];
    for capability in &agent.spec.capabilities {
        if !all.contains(capability) {
            all.push(capability.clone());
        }
    }
    all
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// A Secret as read-only files (owner-readable only) under `path`.
/// A pool's caches, a row each: the volume's name, where it is mounted,
/// and the workers' settings of its directory and of its bound.
struct CacheKind {
    volume: &'static str,
    mount_path: &'static str,
    dir_env: &'static str,
    max_bytes_env: &'static str,
}

const REPO_CACHE: CacheKind = CacheKind {
    volume: "repo-cache",
    mount_path: MIRRORS_DIR,
    dir_env: "TIDEWRIGHT_MIRRORS_DIR",
    max_bytes_env: "TIDEWRIGHT_MIRRORS_MAX_BYTES",
};

const SEED_CACHE: CacheKind = CacheKind {
    volume: "seed-cache",
    mount_path: SEEDS_DIR,
    dir_env: "TIDEWRIGHT_SEEDS_DIR",
    max_bytes_env: "TIDEWRIGHT_SEED_CACHE_BYTES",
};

/// A cache's volume and mount, and the bytes past which the workers evict
/// from it: nine tenths of its size, so eviction comes before the
/// kubelet's own for an emptyDir over its limit.
fn cache_volume(kind: &CacheKind, cache: &crate::crd::Cache) -> (Volume, VolumeMount, Option<u64>) {
    use k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, HostPathVolumeSource, PersistentVolumeClaimVolumeSource,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let volume = match (&cache.claim_name, &cache.host_path) {
        (Some(claim), _) => Volume {
            name: kind.volume.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        (None, Some(path)) => Volume {
            name: kind.volume.into(),
            host_path: Some(HostPathVolumeSource {
                path: path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Volume::default()
        },
        (None, None) => Volume {
            name: kind.volume.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: cache.size.clone().map(Quantity),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    };
    let mount = VolumeMount {
        name: kind.volume.into(),
        mount_path: kind.mount_path.into(),
        ..VolumeMount::default()
    };
    let max_bytes = cache
        .size
        .as_deref()
        .and_then(quantity_bytes)
        .map(|bytes| bytes / 10 * 9);
    (volume, mount, max_bytes)
}

/// The bytes a Kubernetes quantity names (`20Gi`, `500M`, `1024`).
fn quantity_bytes(quantity: &str) -> Option<u64> {
    let split = quantity
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(quantity.len());
    let (number, unit) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return None,
    };
    Some((number * scale) as u64)
}

fn secret_volume(name: &str, secret: &str, path: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// One key of a Secret, as the file `file` under `path`.
fn secret_key_volume(
    name: &str,
    secret: &str,
    key: &str,
    path: &str,
    file: &str,
) -> (Volume, VolumeMount) {
    let (mut volume, mount) = secret_volume(name, secret, path);
    if let Some(source) = volume.secret.as_mut() {
        source.items = Some(vec![KeyToPath {
            key: key.into(),
            path: file.into(),
            mode: None,
        }]);
    }
    (volume, mount)
}

/// The image's user (`tidewright`, uid 10001 in deploy/Dockerfile).
pub const WORKER_UID: i64 = 10001;

/// The restricted Pod Security Standard, pod side: not root, and the
/// runtime's default seccomp profile. The group owns mounted volumes, so
/// the worker (not root) reads its Secrets' files.
fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(WORKER_UID),
        run_as_group: Some(WORKER_UID),
        fs_group: Some(WORKER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The restricted Pod Security Standard, container side: no privilege
/// escalation, every capability dropped, and a read-only root filesystem
/// (what a step writes lands in its workspace under /tmp, and goes with
/// the pod).
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// The pod's writable scratch space, at /tmp.
fn scratch_volume() -> Volume {
    Volume {
        name: "scratch".into(),
        empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn scratch_mount() -> VolumeMount {
    VolumeMount {
        name: "scratch".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }
}

fn http_probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        ..Probe::default()
    }
}

/// The Deployment for `agent` at `replicas` pods, owned by the Agent so it
/// goes when the Agent does.
pub fn deployment(agent: &Agent, settings: &WorkerSettings, replicas: i32) -> Deployment {
    let name = agent.metadata.name.clone().unwrap_or_default();
    let labels = selector_labels(&name);
    let owner: Option<OwnerReference> = agent.controller_owner_ref(&());
    Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(&name)),
            namespace: agent.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels),
                ..LabelSelector::default()
            },
            template: pod_template(agent, settings),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The label a pod of its own per step carries: `pod` or `sandbox`, its
/// pool's isolation.
pub const ISOLATION_LABEL: &str = "tidewright.dev/isolation";

/// The pod every worker of the pool runs as. With `isolation: pod` or
/// `sandbox` it has one slot and leaves after one step (`--steps 1`).
pub fn pod_template(agent: &Agent, settings: &WorkerSettings) -> PodTemplateSpec {
    let name = agent.metadata.name.clone().unwrap_or_default();
    let mut labels = selector_labels(&name);
    let spec = &agent.spec;
    let per_step = spec.isolation.per_step();
    let slots = if per_step { 1 } else { spec.slots_per_pod };

    let mut env_vars = vec![
        env("TIDEWRIGHT_SERVER", settings.server.clone()),
        env("TIDEWRIGHT_POOL", pool_name(agent)),
        env("TIDEWRIGHT_CAPABILITIES", capabilities(agent).join(",")),
        env("TIDEWRIGHT_SLOTS", slots.to_string()),
        env(
            "TIDEWRIGHT_MAX_CONCURRENT_AGENTS",
            spec.max_concurrent_agents.unwrap_or(0).to_string(),
        ),
        env(
            "TIDEWRIGHT_DRAIN_GRACE",
            format!("{}s", DRAIN_GRACE_SECONDS - 10),
        ),
        // The root filesystem is read-only: workspaces, the agent CLI's
        // home and whatever a step's tools write under $HOME go to /tmp,
        // an emptyDir of the pod's own.
        env("TIDEWRIGHT_WORK_DIR", "/tmp/tidewright-work"),
        env("HOME", "/tmp"),
        // A pod under the restricted Pod Security Standard cannot make the
        // user namespaces a step's bubblewrap sandbox needs (RuntimeDefault
        // seccomp refuses them): the pod is the boundary, said out loud
        // (the worker shows `none (--sandbox=off)` and is audited). A pool
        // on nodes that allow them sets TIDEWRIGHT_SANDBOX=on in its env.
        env("TIDEWRIGHT_SANDBOX", "off"),
        EnvVar {
            name: "TIDEWRIGHT_WORKER_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..EnvVar::default()
        },
        // A file, not a variable: no process the worker starts inherits it.
        env("TIDEWRIGHT_TOKEN_FILE", format!("{TOKEN_DIR}/token")),
    ];
    if per_step {
        env_vars.push(env("TIDEWRIGHT_STEPS", "1"));
        labels.insert(ISOLATION_LABEL.into(), spec.isolation.name().into());
    }
    // The runtime's own settings: its model, and what its key is.
    let (model_var, key_var) = match spec.runtime {
        AgentRuntime::Codex => ("TIDEWRIGHT_CODEX_MODEL", "TIDEWRIGHT_OPENAI_API_KEY_FILE"),
        AgentRuntime::GeminiCli => ("TIDEWRIGHT_GEMINI_MODEL", "TIDEWRIGHT_GEMINI_API_KEY_FILE"),
        AgentRuntime::Shell | AgentRuntime::ClaudeCode => {
            ("TIDEWRIGHT_MODEL", "TIDEWRIGHT_ANTHROPIC_API_KEY_FILE")
        }
    };
    if let Some(model) = &spec.model {
        env_vars.push(env(model_var, model.clone()));
    }
    if let Some(bytes) = spec.checkpoint_max_bytes {
        env_vars.push(env("TIDEWRIGHT_CHECKPOINT_MAX_BYTES", bytes.to_string()));
    }
    let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
    if let Some(secret) = &spec.secrets_secret_name {
        env_vars.push(env("TIDEWRIGHT_SECRETS_DIR", SECRETS_DIR));
        let (volume, mount) = secret_volume("secrets", secret, SECRETS_DIR);
        volumes.push(volume);
        mounts.push(mount);
    }
    for (kind, cache) in [
        (&REPO_CACHE, &spec.repo_cache),
        (&SEED_CACHE, &spec.seed_cache),
    ] {
        let Some(cache) = cache else {
            continue;
        };
        let (volume, mount, max_bytes) = cache_volume(kind, cache);
        env_vars.push(env(kind.dir_env, kind.mount_path));
        if let Some(bytes) = max_bytes {
            env_vars.push(env(kind.max_bytes_env, bytes.to_string()));
        }
        volumes.push(volume);
        mounts.push(mount);
    }
    let mut ports = None;
    let (mut readiness_probe, mut liveness_probe) = (None, None);
    if let Some(secret) = &settings.metrics_token_secret {
        env_vars.push(env(
            "TIDEWRIGHT_WORKER_HTTP_LISTEN",
            format!("0.0.0.0:{HTTP_PORT}"),
        ));
        env_vars.push(env(
            "TIDEWRIGHT_METRICS_TOKEN_FILE",
            format!("{METRICS_TOKEN_DIR}/token"),
        ));
        let (volume, mount) = secret_volume("metrics-token", secret, METRICS_TOKEN_DIR);
        volumes.push(volume);
        mounts.push(mount);
        ports = Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            ..ContainerPort::default()
        }]);
        // Ready while registered with the control plane: the pool's
        // `ready` count is workers that can take steps.
        readiness_probe = Some(http_probe("/readyz", 5));
        liveness_probe = Some(http_probe("/healthz", 10));
    }
    if let Some(key) = &spec.api_key_secret {
        let (volume, mount) =
            secret_key_volume("api-key", &key.name, &key.key, API_KEY_DIR, "api-key");
        env_vars.push(env(key_var, format!("{API_KEY_DIR}/api-key")));
        volumes.push(volume);
        mounts.push(mount);
    }
    let (volume, mount) = secret_key_volume(
        "token",
        &settings.token_secret,
        &settings.token_key,
        TOKEN_DIR,
        "token",
    );
    volumes.extend([volume, scratch_volume()]);
    mounts.extend([mount, scratch_mount()]);
    // A pool that turns the sandbox on (nodes that allow user namespaces)
    // also has its worker's egress proxy hold the list, by name.
    let sandboxed = spec
        .env
        .iter()
        .any(|e| e.name == "TIDEWRIGHT_SANDBOX" && e.value.as_deref() == Some("on"));
    if let (true, Some(egress)) = (sandboxed, &spec.egress) {
        env_vars.push(env("TIDEWRIGHT_EGRESS_ALLOW", egress.allow.join(",")));
    }
    // The pool's own variables come last, so they may override ours.
    env_vars.extend(spec.env.iter().cloned());

    let container = Container {
        name: "worker".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| settings.image.clone())),
        args: Some(vec!["worker".into()]),
        env: Some(env_vars),
        env_from: (!spec.env_from.is_empty()).then(|| spec.env_from.clone()),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        ports,
        readiness_probe,
        liveness_probe,
        security_context: Some(container_security()),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            service_account_name: spec.service_account_name.clone(),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            volumes: Some(volumes),
            security_context: Some(pod_security()),
            // Workers (and their steps) have no business with the
            // Kubernetes API.
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(DRAIN_GRACE_SECONDS),
            // A worker of its own per step leaves after it; its pod is
            // then done, not restarted.
            restart_policy: per_step.then(|| "Never".to_string()),
            ..PodSpec::default()
        }),
    }
}

/// What a chart installed in tidewright-system hands its pools, for tests.
#[cfg(test)]
pub(crate) fn test_settings() -> WorkerSettings {
    WorkerSettings {
        server: "http://tidewright.tidewright-system:7070".into(),
        image: "ghcr.io/tidewright/worker:0.1.0".into(),
        token_secret: "tidewright-worker-token".into(),
        token_key: "token".into(),
        metrics_token_secret: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::test_agent as agent;
    use test_settings as settings;

    fn env_of(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    #[test]
    fn codex_and_gemini_pools_offer_their_runtime_with_their_providers_key_and_model() {
        let codex = agent(
            "runtime: codex\ncapabilities: [git]\nmodel: gpt-6.1-sol\napiKeySecret: {name: openai, key: api-key}\n",
        );
        let d = deployment(&codex, &settings(), 1);
        let env = env_of(&d);
        let value = |name: &str| env[name].value.clone().unwrap_or_default();
        assert_eq!(value("TIDEWRIGHT_CAPABILITIES"), "codex,git");
        assert_eq!(value("TIDEWRIGHT_CODEX_MODEL"), "gpt-6.1-sol");
        assert_eq!(
            value("TIDEWRIGHT_OPENAI_API_KEY_FILE"),
            format!("{API_KEY_DIR}/api-key")
        );
        assert!(!env.contains_key("TIDEWRIGHT_ANTHROPIC_API_KEY_FILE"));
        assert!(!env.contains_key("TIDEWRIGHT_MODEL"));
        let gemini = agent(
            "runtime: gemini-cli\nmodel: gemini-2.5-pro\napiKeySecret: {name: google, key: api-key}\n",
        );
        let env = env_of(&deployment(&gemini, &settings(), 1));
        let value = |name: &str| env[name].value.clone().unwrap_or_default();
        assert_eq!(value("TIDEWRIGHT_CAPABILITIES"), "gemini-cli");
        assert_eq!(value("TIDEWRIGHT_GEMINI_MODEL"), "gemini-2.5-pro");
        assert_eq!(
            value("TIDEWRIGHT_GEMINI_API_KEY_FILE"),
            format!("{API_KEY_DIR}/api-key")
        );
    }

    #[test]
    fn a_pool_becomes_workers_pointed_at_the_control_plane() {
        let agent = agent(
            "runtime: claude-code\ncapabilities: [git, claude-code]\nslotsPerPod: 2\nmaxConcurrentAgents: 5\ncheckpointMaxBytes: 1048576\nmodel: claude-sonnet\nsecretsSecretName: anthropic\napiKeySecret: {name: anthropic, key: api-key}\n",
        );
        let d = deployment(&agent, &settings(), 3);
        assert_eq!(d.metadata.name.as_deref(), Some("coders-workers"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("team-a"));
        let owner = &d.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Agent", "uid-1", Some(true))
        );
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            spec.template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref())
        );
        let env = env_of(&d);
        let value = |name: &str| env[name].value.clone().unwrap_or_default();
        assert_eq!(
            value("TIDEWRIGHT_SERVER"),
            "http://tidewright.tidewright-system:7070"
        );
        assert_eq!(value("TIDEWRIGHT_CAPABILITIES"), "claude-code,git");
        assert_eq!(value("TIDEWRIGHT_SLOTS"), "2");
        assert_eq!(value("TIDEWRIGHT_MAX_CONCURRENT_AGENTS"), "5");
        assert_eq!(value("TIDEWRIGHT_CHECKPOINT_MAX_BYTES"), "1048576");
        assert_eq!(value("TIDEWRIGHT_POOL"), "team-a/coders");
        assert_eq!(value("TIDEWRIGHT_SANDBOX"), "off");
        assert_eq!(value("TIDEWRIGHT_MODEL"), "claude-sonnet");
        assert_eq!(value("TIDEWRIGHT_SECRETS_DIR"), SECRETS_DIR);
        assert_eq!(
            value("TIDEWRIGHT_ANTHROPIC_API_KEY_FILE"),
            format!("{API_KEY_DIR}/api-key")
        );
        assert!(!env.contains_key("TIDEWRIGHT_TOKEN"), "the token is a file");
        assert_eq!(value("TIDEWRIGHT_TOKEN_FILE"), format!("{TOKEN_DIR}/token"));
        let pod = spec.template.spec.as_ref().expect("pod");
        let token = pod.volumes.iter().flatten().find(|v| v.name == "token");
        let token = token
            .and_then(|v| v.secret.clone())
            .expect("the token's volume");
        assert_eq!(
            token.secret_name.as_deref(),
            Some("tidewright-worker-token")
        );
        assert_eq!(token.items.expect("one key")[0].key, "token");
        let key = pod.volumes.iter().flatten().find(|v| v.name == "api-key");
        let key = key
            .and_then(|v| v.secret.clone())
            .expect("the API key's volume");
        assert_eq!(key.secret_name.as_deref(), Some("anthropic"));
        assert_eq!(key.items.expect("one key")[0].key, "api-key");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("ghcr.io/tidewright/worker:0.1.0")
        );
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(DRAIN_GRACE_SECONDS)
        );
        assert!(pod.volumes.as_ref().is_some_and(|v| v[0].secret.is_some()));

        assert_eq!(pod.automount_service_account_token, Some(false));
        // The restricted Pod Security Standard.
        let security = pod.security_context.as_ref().expect("pod security");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        let container = pod.containers[0]
            .security_context
            .as_ref()
            .expect("security");
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(
            container.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        // With a read-only root, what the worker and its steps write goes
        // to the pod's scratch volume.
        let mounts = pod.containers[0].volume_mounts.clone().unwrap_or_default();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/tmp" && m.name == "scratch")
        );
        assert!(value("TIDEWRIGHT_WORK_DIR").starts_with("/tmp/") && value("HOME") == "/tmp");
    }

    #[test]
    fn a_sandboxed_pools_worker_holds_its_egress_list_by_name_too() {
        let allow = "egress: {allow: [pypi.org, '*.github.com']}\n";
        let unsandboxed = deployment(&agent(allow), &settings(), 1);
        // Without the sandbox the worker refuses a list: the NetworkPolicy holds it.
        assert!(!env_of(&unsandboxed).contains_key("TIDEWRIGHT_EGRESS_ALLOW"));
        let sandboxed = format!("{allow}env: [{{name: TIDEWRIGHT_SANDBOX, value: \"on\"}}]\n");
        let d = deployment(&agent(&sandboxed), &settings(), 1);
        assert_eq!(
            env_of(&d)["TIDEWRIGHT_EGRESS_ALLOW"].value.as_deref(),
            Some("pypi.org,*.github.com")
        );
    }

    #[test]
    fn a_pools_repository_cache_is_a_volume_its_workers_keep_mirrors_in() {
        let env_value = |d: &Deployment, name: &str| {
            env_of(d)
                .get(name)
                .and_then(|e| e.value.clone())
                .unwrap_or_default()
        };
        let pod_of = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.clone())
                .expect("pod")
        };
        let d = deployment(&agent("repoCache: {size: 10Gi}\n"), &settings(), 1);
        let pod = pod_of(&d);
        let volume = &pod.volumes.as_ref().expect("volumes")[0];
        assert_eq!(
            volume
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .map(|q| q.0.as_str()),
            Some("10Gi")
        );
        assert_eq!(env_value(&d, "TIDEWRIGHT_MIRRORS_DIR"), MIRRORS_DIR);
        assert_eq!(
            env_value(&d, "TIDEWRIGHT_MIRRORS_MAX_BYTES"),
            (10u64 * 1024 * 1024 * 1024 / 10 * 9).to_string()
        );
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        assert_eq!(mounts[0].mount_path, MIRRORS_DIR);

        let d = deployment(
            &agent("repoCache: {claimName: mirrors, size: 500M}\n"),
            &settings(),
            1,
        );
        let pod = pod_of(&d);
        let claim = pod.volumes.as_ref().expect("volumes")[0]
            .persistent_volume_claim
            .clone()
            .expect("a claim");
        assert_eq!(claim.claim_name, "mirrors");
        assert_eq!(env_value(&d, "TIDEWRIGHT_MIRRORS_MAX_BYTES"), "450000000");

        // The seeds, on the node's disk, or a claim.
        let d = deployment(
            &agent("seedCache: {hostPath: /var/lib/tidewright-seeds, size: 50Gi}\n"),
            &settings(),
            1,
        );
        let pod = pod_of(&d);
        let volume = &pod.volumes.as_ref().expect("volumes")[0];
        let host = volume.host_path.clone().expect("the node's disk");
        assert_eq!(
            (
                volume.name.as_str(),
                host.path.as_str(),
                host.type_.as_deref()
            ),
            (
                "seed-cache",
                "/var/lib/tidewright-seeds",
                Some("DirectoryOrCreate")
            )
        );
        assert_eq!(env_value(&d, "TIDEWRIGHT_SEEDS_DIR"), SEEDS_DIR);
        assert_eq!(
            env_value(&d, "TIDEWRIGHT_SEED_CACHE_BYTES"),
            (50u64 * 1024 * 1024 * 1024 / 10 * 9).to_string()
        );
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        assert_eq!(mounts[0].mount_path, SEEDS_DIR);
        let d = deployment(
            &agent("repoCache: {size: 1Gi}\nseedCache: {claimName: seeds}\n"),
            &settings(),
            1,
        );
        let volumes = pod_of(&d).volumes.expect("volumes");
        let named = |name: &str| volumes.iter().find(|v| v.name == name).expect("its volume");
        assert!(named("repo-cache").empty_dir.is_some());
        assert_eq!(
            named("seed-cache")
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("seeds")
        );
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("12x"), None);
    }

    #[test]
    fn the_pools_own_image_and_env_win() {
        let agent =
            agent("image: my/worker:1\nenv:\n  - name: TIDEWRIGHT_SLOTS\n    value: \"9\"\n");
        let d = deployment(&agent, &settings(), 0);
        let pod = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        assert_eq!(pod.containers[0].image.as_deref(), Some("my/worker:1"));
        // The pool's variable comes after ours, and the last one wins.
        let slots: Vec<_> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter(|e| e.name == "TIDEWRIGHT_SLOTS")
            .collect();
        assert_eq!(slots.last().and_then(|e| e.value.as_deref()), Some("9"));
        let volumes = pod.volumes.clone().unwrap_or_default();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["token", "scratch"],
            "no secrets volume unless asked"
        );
        assert_eq!(
            selector_string("coders"),
            "app.kubernetes.io/name=tidewright-worker,tidewright.dev/agent=coders"
        );
    }
}
