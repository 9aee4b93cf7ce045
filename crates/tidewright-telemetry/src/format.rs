//! Log lines with their trace id: compact text for people, one JSON object
//! per line for collectors.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{Compact, Format, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub struct WithTraceId {
    format: LogFormat,
    text: Format<Compact>,
}

impl WithTraceId {
    pub fn new(format: LogFormat, ansi: bool) -> Self {
        WithTraceId {
            format,
            text: Format::default().compact().with_ansi(ansi),
        }
    }
}

impl<S, N> FormatEvent<S, N> for WithTraceId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let trace_id = crate::traced::traced()
            .then(|| trace_id(&tracing::Span::current()))
            .flatten();
        match self.format {
            LogFormat::Text => {
                let mut line = String::new();
                self.text.format_event(ctx, Writer::new(&mut line), event)?;
                let line = line.trim_end_matches('\n');
                match trace_id {
                    Some(id) => writeln!(writer, "{line} trace_id={id}"),
                    None => writeln!(writer, "{line}"),
                }
            }
            LogFormat::Json => {
                let mut time = String::new();
                SystemTime.format_time(&mut Writer::new(&mut time))?;
                let metadata = event.metadata();
                let mut fields = JsonFields(serde_json::Map::new());
                event.record(&mut fields);
                let mut line = fields.0;
                line.insert("timestamp".into(), time.into());
                line.insert("level".into(), metadata.level().as_str().into());
                line.insert("target".into(), metadata.target().into());
                if let Some(scope) = ctx.event_scope() {
                    let spans: Vec<serde_json::Value> =
                        scope.from_root().map(|span| span.name().into()).collect();
                    line.insert("spans".into(), spans.into());
                }
                if let Some(id) = trace_id {
                    line.insert("trace_id".into(), id.into());
                }
                let mut text = serde_json::Value::Object(line).to_string();
                text.push('\n');
                writer.write_str(&text)
            }
        }
    }
}

/// An event's fields as JSON values, the message as `message`.
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One compact line per event, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The hex trace id of `span`, if it belongs to a trace.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
