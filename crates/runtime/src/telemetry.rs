//! Tracing subscriber, OpenTelemetry trace export and W3C trace context.
//!
//! [`init`] installs a subscriber writing human-readable (`LOG_FORMAT=pretty`) or JSON
//! (`LOG_FORMAT=json`) lines, filtered by `RUST_LOG` (default `info`), through
//! [`LogWriter`]: every line has the registered secrets removed ([`crate::redact`]) and
//! is cut to [`MAX_LOG_LINE_BYTES`], whoever wrote it (our code or a library quoting a
//! body). With `OTEL_EXPORTER_OTLP_ENDPOINT` set it also exports spans over OTLP
//! (`otel`).
//! [`TraceContext`] is the W3C Trace Context (<https://www.w3.org/TR/trace-context/>)
//! carried in the `traceparent` Kafka header, so one task can be followed across services.
//!
//! # Layout
//!
//! - this module: [`init`], [`Telemetry`], [`LogWriter`], [`TraceContext`];
//! - `otel`: the OTLP export ([`follow`] makes a span the child of a remote one).

mod otel;

pub(crate) use otel::annotate;
pub use otel::{exporting, follow};

use std::{fmt, io::Write};

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, Targets, filter_fn},
    fmt as tfmt,
    fmt::MakeWriter,
    prelude::*,
};

/// The longest log line written, in bytes: a longer one (a library logging a whole
/// response body) keeps its first [`LOG_PREFIX_BYTES`] and says how much was cut.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// How much of an over-long log line is kept.
pub const LOG_PREFIX_BYTES: usize = 2 * 1024;

/// `LOG_FORMAT`: how log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `pretty` (the default): one human-readable line an event.
    #[default]
    Pretty,
    /// `json`: one JSON object a line, the event's fields flattened, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = crate::Error;

    /// `pretty` or `json`, as written.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming `LOG_FORMAT` (the value is not
    /// quoted).
    fn from_str(text: &str) -> crate::Result<Self> {
        match text {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err(crate::Error::Config(
                "LOG_FORMAT must be `pretty` or `json`".into(),
            )),
        }
    }
}

/// What [`init`] set up that must be finished at exit: the OTLP exporter's batch of
/// spans not sent yet.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` was set).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans not sent yet (waiting up to the exporter's timeout,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "the last spans could not be exported");
        }
    }
}

/// Installs the global tracing subscriber for `service` (the default
/// `OTEL_SERVICE_NAME`); a second call does nothing (tests start several services in one
/// process) and returns an idle [`Telemetry`].
///
/// Log lines go to stdout, filtered by `RUST_LOG`. With the `OTEL_*` variables asking
/// for it (see `otel`), spans (never events) of our crates are also exported over OTLP:
/// at INFO, and the graph engine's node spans (`agent_core`, DEBUG), whatever
/// `RUST_LOG` says.
///
/// # Errors
/// [`crate::Error::Config`] naming the variable when the `OTEL_*` variables ask for
/// export in a way that cannot be done (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, an endpoint
/// that is not a URL).
pub fn init(log_format: LogFormat, service: &str) -> crate::Result<Telemetry> {
    init_with(log_format, service, |name| std::env::var(name).ok())
}

/// [`init`], with the `OTEL_*` variables that choose whether and where spans are
/// exported (`OTEL_EXPORTER_OTLP_ENDPOINT`, `…_TRACES_ENDPOINT`, `…_PROTOCOL`,
/// `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, `OTEL_SERVICE_NAME`) read through `var`
/// (a test's own; the exporter and SDK read the rest from the environment).
///
/// # Errors
/// As [`init`].
pub fn init_with(
    log_format: LogFormat,
    service: &str,
    var: impl Fn(&str) -> Option<String>,
) -> crate::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let provider = match otel::configured(&var) {
        true => Some(otel::provider(service, &var)?),
        false => None,
    };
    let spans = provider.as_ref().map(|provider| {
        let ours = Targets::new()
            .with_target("agent_core", tracing::Level::DEBUG)
            .with_target("agent_runtime", tracing::Level::INFO)
            .with_target("task_generator", tracing::Level::INFO)
            .with_target("task_solver", tracing::Level::INFO)
            .with_target("agent_comms", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("langgraph-kafka"))
            .with_filter(ours.and(filter_fn(|meta| meta.is_span())))
    });
    let registry = tracing_subscriber::registry().with(spans);
    // `try_init` fails only when a subscriber is already installed: keep that one.
    let installed = if log_format == LogFormat::Json {
        registry
            .with(
                tfmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(LogWriter::stdout(true))
                    .with_filter(filter),
            )
            .try_init()
    } else {
        registry
            .with(
                tfmt::layer()
                    .with_target(false)
                    .with_writer(LogWriter::stdout(false))
                    .with_filter(filter),
            )
            .try_init()
    };
    match (installed, provider) {
        (Ok(()), provider) => {
            if provider.is_some() {
                otel::set_exporting();
                tracing::info!("exporting spans over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)");
            }
            Ok(Telemetry { provider })
        }
        (Err(_), provider) => {
            if let Some(provider) = provider {
                let _ = provider.shutdown();
            }
            Ok(Telemetry::default())
        }
    }
}

/// A [`MakeWriter`] for the fmt layer: each event's line is redacted
/// ([`crate::redact::redact`]) and, past [`MAX_LOG_LINE_BYTES`], replaced by its first
/// [`LOG_PREFIX_BYTES`] and a note of the bytes cut (in JSON mode, a JSON line whose
/// `message` says so and whose `prefix` holds the start, so the log stays one JSON
/// object per line).
#[derive(Clone)]
pub struct LogWriter<W> {
    sink: W,
    json: bool,
}

impl<W> std::fmt::Debug for LogWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").finish_non_exhaustive()
    }
}

impl LogWriter<fn() -> std::io::Stdout> {
    /// Writes to standard output; `json` when the lines are JSON objects.
    pub fn stdout(json: bool) -> Self {
        Self {
            sink: std::io::stdout,
            json,
        }
    }
}

impl<W> LogWriter<W> {
    /// Writes to what `sink` makes (tests write to a buffer).
    pub fn new(sink: W, json: bool) -> Self {
        Self { sink, json }
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for LogWriter<W> {
    type Writer = LineWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            inner: self.sink.make_writer(),
            json: self.json,
        }
    }
}

/// One event's writer made by [`LogWriter`]. The fmt layer writes each event's whole
/// line in one `write_all`, so each `write` is one line.
pub struct LineWriter<W> {
    inner: W,
    json: bool,
}

impl<W> std::fmt::Debug for LineWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter").finish_non_exhaustive()
    }
}

impl<W: Write> Write for LineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let line = crate::redact::redact(&text);
        if line.len() <= MAX_LOG_LINE_BYTES {
            self.inner.write_all(line.as_bytes())?;
        } else {
            self.inner
                .write_all(cut_line(&line, self.json).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `line` (longer than [`MAX_LOG_LINE_BYTES`]) as its first [`LOG_PREFIX_BYTES`] and a
/// note of the size.
fn cut_line(line: &str, json: bool) -> String {
    let mut end = LOG_PREFIX_BYTES.min(line.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = &line[..end];
    if json {
        // The level comes early in the line: read it from the prefix, not the whole line.
        let level = prefix
            .split_once("\"level\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("WARN", |(level, _)| level);
        let note = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "level": level,
            "message": format!("log line of {} bytes cut to its first {end}", line.len()),
            "prefix": prefix,
        });
        format!("{note}\n")
    } else {
        format!("{prefix}… [log line of {} bytes cut]\n", line.len())
    }
}

/// A W3C `traceparent`: `00-{trace_id:32 hex}-{parent_id:16 hex}-{flags:2 hex}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of one task shares.
    pub trace_id: u128,
    /// The span that sent the message.
    pub span_id: u64,
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceContext {
    /// A new trace (sampled), for work that did not arrive with one.
    pub fn new_root() -> Self {
        Self {
            trace_id: uuid::Uuid::new_v4().as_u128(),
            span_id: Self::new_span_id(),
            flags: 1,
        }
    }

    /// The exported span this code runs in, when spans are exported (`otel`): what a
    /// record sent from here names as its parent. `None` when export is off.
    pub fn current() -> Option<Self> {
        otel::context_of(&tracing::Span::current())
    }

    /// The same trace with a new span id: what a service sends on after receiving `self`.
    pub fn child(&self) -> Self {
        Self {
            span_id: Self::new_span_id(),
            ..*self
        }
    }

    /// Parses a `traceparent` header value; `None` when malformed or all-zero (as the
    /// spec says to ignore such a header).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let hex = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        };
        if !(hex(version) && hex(trace) && hex(span) && hex(flags)) {
            return None;
        }
        let ctx = Self {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (ctx.trace_id != 0 && ctx.span_id != 0).then_some(ctx)
    }

    /// The trace id as 32 lower-case hex digits, for log fields.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    fn new_span_id() -> u64 {
        // The low 64 bits of a v4 UUID are random (bar two variant bits); never zero.
        (uuid::Uuid::new_v4().as_u128() as u64) | 1
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink collecting what a [`LogWriter`] writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn written(json: bool, line: &str) -> String {
        let sink = Sink::default();
        let collected = sink.0.clone();
        let writer = LogWriter::new(move || sink.clone(), json);
        writer
            .make_writer()
            .write_all(line.as_bytes())
            .expect("write");
        String::from_utf8(collected.lock().expect("sink").clone()).expect("utf-8")
    }

    #[test]
    fn a_log_line_loses_its_secrets_and_a_huge_one_keeps_only_a_prefix() {
        crate::redact::register_secrets(["sk-log-writer-test-key".to_owned()]);
        let line = "ERROR 401 from the model server: bad key sk-log-writer-test-key\n";
        assert_eq!(
            written(false, line),
            "ERROR 401 from the model server: bad key [REDACTED]\n"
        );

        let huge = format!("ERROR failed deserialization of: {}\n", "x".repeat(5 << 20));
        let out = written(false, &huge);
        assert!(out.len() < LOG_PREFIX_BYTES + 100, "{} bytes", out.len());
        assert!(out.starts_with("ERROR failed deserialization of: xxx"));
        assert!(out.ends_with(&format!("[log line of {} bytes cut]\n", huge.len())));

        let json = format!(
            "{{\"timestamp\":\"t\",\"level\":\"ERROR\",\"message\":\"{}\"}}\n",
            "y".repeat(MAX_LOG_LINE_BYTES)
        );
        let out = written(true, &json);
        let note: serde_json::Value = serde_json::from_str(out.trim_end()).expect("one JSON line");
        assert_eq!(note["level"], "ERROR");
        assert!(
            note["prefix"]
                .as_str()
                .is_some_and(|p| p.len() <= LOG_PREFIX_BYTES)
        );
        assert!(
            note["message"].as_str().is_some_and(|m| m.contains("cut")),
            "{note}"
        );
    }

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(header).expect("valid");
        assert_eq!(ctx.to_string(), header);
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
        let root = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&root.to_string()), Some(root));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }
}
