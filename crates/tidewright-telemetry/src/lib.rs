//! tidewright's telemetry: logs (text or JSON, each line with its trace id) and
//! OpenTelemetry traces, exported over OTLP/gRPC when the standard `OTEL_*`
//! variables say where, and W3C trace context carried across processes (gRPC
//! metadata, the task's stored context, a step's `TRACEPARENT`), so one task
//! is one trace from the client to the agent process.
//!
//! Spans are made only when traces are exported: without an exporter nobody
//! reads them, and each call would pay for them. A task still gets a trace
//! context either way (`tidewright get task` shows its trace id), and its steps'
//! processes a child of it in `TRACEPARENT`, so an agent that exports its
//! own spans continues the task's trace; tidewright's log lines carry trace ids
//! when traces are exported.

mod format;
mod traced;

pub use format::{LogFormat, trace_id};
pub use traced::traced;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use opentelemetry::Context;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?}: tidewright exports traces over OTLP/gRPC only (grpc)"
    )]
    Protocol(String),
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
    #[error("logging is already set up")]
    AlreadySet,
}

/// What a process reports as, and how it logs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `service.name` of its spans (`tidewright-server`, `tidewright-worker`, `tidewright`)
    /// unless the environment names another.
    pub service: &'static str,
    pub format: LogFormat,
    /// The log level when `RUST_LOG` says nothing.
    pub default_level: &'static str,
}

/// Flushes the spans not yet exported when the process ends: call
/// [`Guard::shutdown`] before returning from `main`.
pub struct Guard {
    provider: SdkTracerProvider,
}

/// How long shutting down waits for the last spans to reach the collector.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

impl Guard {
    /// Exports what is left, off the async threads: the exporter's own
    /// connection runs on them and must keep going while this waits.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_LIMIT)).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("warning: exporting the last spans: {e}");
        }
    }
}

/// Whether the environment asks for traces to be exported.
pub fn exporting() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Sets up logging and tracing for this process. Call inside the Tokio
/// runtime: the exporter's connection lives on it.
pub fn init(settings: &Settings) -> Result<Guard, Error> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(settings.service));
    let traced = exporting();
    if traced {
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_default();
        if !matches!(protocol.as_str(), "" | "grpc") {
            return Err(Error::Protocol(protocol));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| Error::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("tidewright");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(settings.default_level));
    // Colours only on a terminal: files and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi && settings.format == LogFormat::Text)
        .event_format(format::WithTraceId::new(settings.format, ansi))
        .with_filter(filter);
    // Spans are traced whatever the log level (a client logs only warnings,
    // yet its span starts the trace), but only tidewright's own: a library's
    // internals are not worth a span each.
    let spanned = tracing_subscriber::filter::filter_fn(|metadata| {
        metadata.target().starts_with("tidewright") && *metadata.level() <= tracing::Level::INFO
    });
    // No exporter, no layer: spans then cost only their creation, and the
    // helpers below make none.
    let spans = traced.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spanned)
    });
    tracing_subscriber::registry()
        .with(spans)
        .with(fmt)
        .try_init()
        .map_err(|_| Error::AlreadySet)?;
    traced::set(traced);
    Ok(Guard { provider })
}

/// What this process's spans say about it. The environment wins, as the
/// OpenTelemetry specification says: `service.name` is `OTEL_SERVICE_NAME`,
/// else the one in `OTEL_RESOURCE_ATTRIBUTES`, else tidewright's name for the
/// process (`default_service`); the other attributes come from
/// `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(default_service: &'static str) -> Resource {
    use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
    let builder = Resource::builder_empty()
        .with_service_name(default_service)
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    match std::env::var(SERVICE_NAME_VARIABLE) {
        Ok(name) if !name.trim().is_empty() => builder.with_service_name(name),
        _ => builder,
    }
    .build()
}

/// The variable that names the service, over any default.
pub const SERVICE_NAME_VARIABLE: &str = "OTEL_SERVICE_NAME";

/// The variable of extra resource attributes, `key=value,key=value`.
pub const RESOURCE_ATTRIBUTES_VARIABLE: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// `OTEL_RESOURCE_ATTRIBUTES` without its `service.name`, for a child
/// process that is another service but shares the rest (where it runs, its
/// environment); `None` when nothing is left.
pub fn attributes_without_service_name(attributes: &str) -> Option<String> {
    let kept: Vec<&str> = attributes
        .split(',')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            !key.trim().is_empty() && key.trim() != "service.name"
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// The W3C `traceparent` of `span`, if it belongs to a trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !traced() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// The trace context a new task is stored with: its span's, a child of the
/// current (call's) span, when traces are exported (the span ends at once;
/// its context is what lasts, and every span of the task is its child);
/// else a fresh trace's root, made without a span.
pub fn task_trace_context(task_id: &str, name: &str) -> String {
    if traced() {
        let span = tracing::info_span!("task", task.id = %task_id, task.name = %name);
        return traceparent(&span).unwrap_or_default();
    }
    let ids = RandomIdGenerator::default();
    format!("00-{}-{}-01", ids.new_trace_id(), ids.new_span_id())
}

/// A child of `traceparent` for a step's process when no span is made for
/// its attempt: the same trace and flags, a span id of its own; `None`
/// for "" or a malformed one.
pub fn child_traceparent(traceparent: &str) -> Option<String> {
    let parent = parent_from_traceparent(traceparent);
    let context = parent.span().span_context().clone();
    context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            context.trace_flags().to_u8()
        )
    })
}

/// The remote parent a `traceparent` names; an empty context for "" or a
/// malformed one (a bad header never fails a request, it starts a new
/// trace).
pub fn parent_from_traceparent(traceparent: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of `parent` when `parent` belongs to a trace.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Fails only for a span already started without the layer.
        let _ = span.set_parent(parent);
    }
}

/// The span of one incoming gRPC call (for tonic's `trace_fn`), continuing
/// the caller's trace when its request carries one. Health checks get none:
/// probes every few seconds are not worth a trace.
pub fn rpc_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    if !traced() || path.starts_with("/grpc.health.") {
        return tracing::Span::none();
    }
    let span =
        tracing::info_span!("rpc", otel.name = %path, otel.kind = "server", rpc.system = "grpc");
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    set_parent(&span, parent);
    span
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Adds the current span's trace context to outgoing gRPC metadata.
pub fn inject_current(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips_through_grpc_metadata() {
        let parent = parent_from_traceparent(PARENT);
        assert!(parent.span().span_context().is_valid());
        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&parent, &mut MetadataInjector(&mut metadata));
        assert_eq!(
            metadata.get("traceparent").and_then(|v| v.to_str().ok()),
            Some(PARENT)
        );
        let headers = metadata.into_headers();
        let back = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert_eq!(
            back.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace_instead_of_failing() {
        for bad in ["", "garbage", "00-XYZ-00f067aa0ba902b7-01"] {
            assert!(
                !parent_from_traceparent(bad)
                    .span()
                    .span_context()
                    .is_valid()
            );
        }
    }

    #[test]
    fn a_child_process_keeps_the_resource_attributes_but_not_the_service_name() {
        assert_eq!(
            attributes_without_service_name(
                "deployment.environment=prod,service.name=blue, service.name =x,k8s.pod.name=p"
            )
            .as_deref(),
            Some("deployment.environment=prod,k8s.pod.name=p")
        );
        assert_eq!(attributes_without_service_name("service.name=blue"), None);
        assert_eq!(attributes_without_service_name(""), None);
    }

    #[test]
    fn without_an_exporter_no_span_is_made_and_a_task_still_gets_a_trace() {
        // No init here, so nothing is exported.
        assert!(!traced());
        let request = http::Request::builder()
            .uri("/tidewright.v1.TaskService/SubmitTask")
            .body(())
            .expect("a request");
        assert!(rpc_span(&request).is_none());
        let (first, second) = (task_trace_context("t1", "a"), task_trace_context("t2", "b"));
        let trace = |traceparent: &str| {
            let context = parent_from_traceparent(traceparent);
            let span = context.span().span_context().clone();
            assert!(span.is_valid(), "{traceparent}");
            (span.trace_id().to_string(), span.span_id().to_string())
        };
        assert_ne!(trace(&first).0, trace(&second).0, "a trace of its own each");
        // A step's process: the task's trace, a span id of its own.
        let child = child_traceparent(&first).expect("a child");
        assert_eq!(trace(&child).0, trace(&first).0);
        assert_ne!(trace(&child).1, trace(&first).1);
        assert!(child.ends_with("-01"), "{child}");
        assert_eq!(child_traceparent(""), None);
        assert_eq!(child_traceparent("garbage"), None);
    }

    #[test]
    fn log_formats_parse_by_name() {
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml"), None);
    }
}
