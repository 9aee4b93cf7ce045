//! One trace per task across processes: an OTLP trace receiver in the test
//! collects the spans the real CLI, control plane and worker export for one
//! submitted task, and they form one chain, client → server → task → step
//! attempt, down to the step process's `TRACEPARENT`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use tidewright_tests::*;
use tonic::{Request, Response, Status};

/// A span as received: which service sent it, its process's other
/// resource attributes, and its ids as hex.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    resource: BTreeMap<String, String>,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for resource_spans in request.into_inner().resource_spans {
            let mut resource: BTreeMap<String, String> = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter_map(|a| match a.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some((a.key.clone(), s.clone())),
                    _ => None,
                })
                .collect();
            let service = resource.remove("service.name").unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        resource: resource.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves OTLP/gRPC on a free loopback port until the test ends.
    async fn start() -> (Collector, SocketAddr) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        (collector, addr)
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

const TASK: &str = r#"name: traced
steps:
  - id: traced
    shell:
      command: [sh, -c, 'tidewright state put seen true && echo "{\"traceparent\": \"$TRACEPARENT\"}" > "$TIDEWRIGHT_OUTPUT"']
"#;

/// Submits TASK with the CLI (under `env`) and waits for it: the task, whose
/// trace id `tidewright get task` shows.
async fn run_traced_task(
    server: &Server,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> tidewright_api::v1::Task {
    let file = dir.join("traced.yaml");
    std::fs::write(&file, TASK).expect("task file");
    let submitted = succeed(
        server
            .cli()
            .envs(env.iter().copied())
            .args(["submit", "-f"])
            .arg(&file)
            .arg("--watch"),
    );
    assert!(submitted.status.success());
    let client = server.tasks().await.expect("client");
    let id = all_task_ids(&client)
        .await
        .expect("list")
        .pop()
        .expect("the task");
    let task = wait_succeeded(&client, &id, Duration::from_secs(30))
        .await
        .expect("succeeded");
    assert_eq!(task.trace_id.len(), 32, "a trace id: {:?}", task.trace_id);
    let shown = succeed(server.cli().args(["get", "task", &id]));
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!("Trace:     {}", task.trace_id)),
        "tidewright get task shows the trace id"
    );
    task
}

// Multi-threaded: the collector answers while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_is_one_trace_from_the_cli_to_the_step_process() {
    let (collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export within a tenth of a second, not the default five.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(dir.path(), "127.0.0.1:0", &[], &otel).expect("server");
    // The environment names the worker's service and where it runs, as the
    // OpenTelemetry specification lets any process be told.
    let worker_otel = [
        otel[0],
        otel[1],
        ("OTEL_SERVICE_NAME", "gpu-pool-worker"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=e2e,service.name=overridden",
        ),
    ];
    let _worker = start_worker_env(
        &server.url,
        dir.path(),
        "w1",
        &["shell"],
        1,
        &[],
        &server.worker_token,
        &worker_otel,
    )
    .expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("worker up");
    let task = run_traced_task(&server, dir.path(), &otel).await;
    let trace_id = task.trace_id.clone();

    // Every process's spans arrive, all in the task's trace.
    let spans = eventually(Duration::from_secs(20), || {
        let spans = collector.of_trace(&trace_id);
        let complete = ["tidewright", "tidewright-server", "gpu-pool-worker"]
            .iter()
            .all(|service| spans.iter().any(|s| s.service == *service))
            && [
                "task",
                "tidewright state",
                "/tidewright.v1.StateService/PutState",
            ]
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name));
        async move { complete.then_some(spans) }
    })
    .await
    .expect("spans from the CLI, the control plane and the worker");
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("no {service} span {name:?} in {spans:#?}"))
            .clone()
    };
    let cli = find("tidewright", "tidewright submit");
    let rpc = find("tidewright-server", "/tidewright.v1.TaskService/SubmitTask");
    let task_span = find("tidewright-server", "task");
    let attempt = find("gpu-pool-worker", "step traced attempt 1");
    assert_eq!(cli.parent_span_id, "", "the client starts the trace");
    assert_eq!(rpc.parent_span_id, cli.span_id, "server under client");
    assert_eq!(
        task_span.parent_span_id, rpc.span_id,
        "task under its submit"
    );
    assert_eq!(
        attempt.parent_span_id, task_span.span_id,
        "attempt under task"
    );
    // What the step itself calls joins the trace under its attempt.
    let from_step = find("tidewright", "tidewright state");
    let put = find("tidewright-server", "/tidewright.v1.StateService/PutState");
    assert_eq!(from_step.parent_span_id, attempt.span_id, "step's CLI");
    assert_eq!(put.parent_span_id, from_step.span_id, "its request");

    // OTEL_SERVICE_NAME wins over the default and over the service.name in
    // OTEL_RESOURCE_ATTRIBUTES; the other attributes are kept. The step's
    // own process is not the worker's service but runs where it does.
    let environment = |span: &Received| span.resource.get("deployment.environment").cloned();
    assert_eq!(environment(&attempt).as_deref(), Some("e2e"));
    assert_eq!(environment(&from_step).as_deref(), Some("e2e"));
    assert_eq!(environment(&rpc), None, "the server was told nothing");
    assert!(
        spans
            .iter()
            .all(|s| s.service != "tidewright-worker" && s.service != "overridden"),
        "{spans:#?}"
    );

    // The step's process was given the attempt's context.
    let output = step_output(&task, "traced").expect("output");
    let traceparent = output["traceparent"].as_str().expect("a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], trace_id.as_str());
    assert_eq!(parts[2], attempt.span_id);
}

/// Without an exporter tidewright makes no spans (its log lines carry no trace
/// ids), yet a task still has a trace: `tidewright get task` shows its id, and the
/// step's process gets a child of it in TRACEPARENT, for an agent that
/// exports its own spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_a_task_keeps_its_trace_and_no_span_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The audit line of the submit is logged within the call's span.
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &["--audit-log"]).expect("server");
    let _worker = server.worker("w1", &["shell"], 1).expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("worker up");
    let task = run_traced_task(&server, dir.path(), &[]).await;
    let output: serde_json::Value =
        serde_json::from_str(&task.steps[0].output_json).expect("the step's output");
    let traceparent = output["traceparent"].as_str().expect("a traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], task.trace_id, "the task's trace");
    let log = std::fs::read_to_string(&server.process.log).expect("the server's log");
    assert!(
        log.contains("task.submit"),
        "the submit's audit line: {log}"
    );
    assert!(
        !log.contains("trace_id="),
        "a trace id in a log line: {log}"
    );
}
