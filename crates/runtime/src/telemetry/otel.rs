//! OpenTelemetry trace export over OTLP, configured by the standard `OTEL_*` variables
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>).
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; `/v1/traces` is
//! appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) is set, unless
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Then spans of our crates
//! (`agent_core`'s graph nodes at DEBUG, the rest at INFO) go through a batch processor
//! on its own thread to an OTLP/HTTP endpoint, as protobuf (`OTEL_EXPORTER_OTLP_PROTOCOL`
//! = `http/protobuf`, the default) or JSON (`http/json`); gRPC is not built in. The
//! exporter reads its own variables too: `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, the `_TRACES_` forms; the SDK reads
//! `OTEL_TRACES_SAMPLER` (and `_ARG`), `OTEL_SERVICE_NAME` (default: the service's own
//! name) and `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! Only spans are exported, never log events: an event's text may quote what the log
//! writer redacts ([`crate::redact`]), and the logs have their own path. Without the
//! variables no layer is installed, and nothing is built, sent or slowed.
//!
//! Trace context crosses processes as W3C `traceparent`: in HTTP requests
//! ([`crate::http`] makes the request span a child of the one it names) and in Kafka
//! headers ([`TraceContext::current`](super::TraceContext::current) is what a record
//! carries; [`follow`] makes a consumer's span a child of it).

use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceContext;
use crate::{Error, Result};

/// Whether this process exports spans: set once by [`super::init`] when it installs
/// the OpenTelemetry layer. Read before any per-record work for the exporter, so that
/// without export none is done.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans (see [`super::init`]).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Records that the OpenTelemetry layer is installed.
pub(crate) fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the `OTEL_*` variables (read through `var`) ask for trace export.
pub(crate) fn configured(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter = var("OTEL_TRACES_EXPORTER")
        .is_some_and(|v| v.split(',').all(|e| e.trim().eq_ignore_ascii_case("none")));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !disabled
        && !no_exporter
}

/// The OTLP protocol the variables ask for: `http/protobuf` (unset, the default) or
/// `http/json`, the signal's own variable first.
///
/// # Errors
/// [`Error::Config`] naming the variable for anything else (`grpc` is not built in).
fn protocol(var: impl Fn(&str) -> Option<String>) -> Result<opentelemetry_otlp::Protocol> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        match var(name).as_deref().map(str::trim) {
            None | Some("") => {}
            Some("http/protobuf") => return Ok(opentelemetry_otlp::Protocol::HttpBinary),
            Some("http/json") => return Ok(opentelemetry_otlp::Protocol::HttpJson),
            Some(_) => {
                return Err(Error::Config(format!(
                    "{name} must be `http/protobuf` or `http/json` (OTLP over HTTP, port 4318 \
                     by default); gRPC is not built in"
                )));
            }
        }
    }
    Ok(opentelemetry_otlp::Protocol::HttpBinary)
}

/// The URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended (the specification's rule,
/// <https://opentelemetry.io/docs/specs/otel/protocol/exporter/#endpoint-urls-for-otlphttp>).
fn endpoint(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
        set("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|base| format!("{}/v1/traces", base.trim().trim_end_matches('/')))
    })
}

/// The tracer provider exporting `service`'s spans over OTLP per the `OTEL_*`
/// variables `var` reads (the endpoint and protocol; the exporter and SDK read the
/// others from the process's environment).
///
/// # Errors
/// [`Error::Config`] naming the variable when a protocol variable is not supported or
/// the endpoint is not a URL.
pub(crate) fn provider(
    service: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let protocol = protocol(&var)?;
    let url = endpoint(&var).ok_or_else(|| {
        Error::Config("OTEL_EXPORTER_OTLP_ENDPOINT is not set: nowhere to export to".into())
    })?;
    if reqwest::Url::parse(&url).is_err() {
        return Err(Error::Config(
            "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is not a URL"
                .into(),
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(url)
        .build()
        .map_err(|err| {
            Error::Config(format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter: {err}"
            ))
        })?;
    let mut resource = Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none_or(|v| v.trim().is_empty()) {
        resource = resource.with_service_name(service.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// `trace` as an OpenTelemetry parent context (a remote span context).
fn remote(trace: TraceContext) -> Context {
    let span = SpanContext::new(
        TraceId::from(trace.trace_id),
        SpanId::from(trace.span_id),
        TraceFlags::new(trace.flags),
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(span)
}

/// Makes `span` — not entered yet — a child of the remote span `trace` names (a
/// `traceparent` from a Kafka record or an HTTP request). Nothing when export is off
/// or `trace` is `None`.
pub fn follow(span: &tracing::Span, trace: Option<TraceContext>) {
    if let Some(trace) = trace.filter(|_| exporting()) {
        // Fails only when no OpenTelemetry layer is installed (export off) or the span
        // is disabled: then there is nothing to link.
        let _ = span.set_parent(remote(trace));
    }
}

/// Sets OpenTelemetry attributes on `span` — for the exported span only: they are not
/// fields of the `tracing` span, so log lines do not repeat them. Nothing when export
/// is off.
pub(crate) fn annotate<const N: usize>(
    span: &tracing::Span,
    attributes: impl FnOnce() -> [(&'static str, opentelemetry::Value); N],
) {
    if !exporting() {
        return;
    }
    for (key, value) in attributes() {
        span.set_attribute(key, value);
    }
}

/// The exported span `span` is, as a [`TraceContext`] for a `traceparent`; `None` when
/// export is off.
pub(crate) fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| TraceContext {
        trace_id: u128::from_be_bytes(span.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(span.span_id().to_bytes()),
        flags: span.trace_flags().to_u8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_is_on_with_an_endpoint_unless_disabled() {
        assert!(!configured(vars(&[])));
        assert!(!configured(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(configured(vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318"
        )])));
        assert!(configured(vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )])));
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(!configured(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                off,
            ])));
        }
    }

    #[test]
    fn grpc_is_refused_with_the_variable_named() {
        assert!(matches!(
            protocol(vars(&[])),
            Ok(opentelemetry_otlp::Protocol::HttpBinary)
        ));
        assert!(matches!(
            protocol(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])),
            Ok(opentelemetry_otlp::Protocol::HttpJson)
        ));
        let err =
            protocol(vars(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")])).expect_err("grpc");
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn the_traces_path_is_appended_to_the_base_endpoint_only() {
        assert_eq!(
            endpoint(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            endpoint(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/traces"),
            ]))
            .as_deref(),
            Some("http://t:9/traces")
        );
        assert!(endpoint(vars(&[])).is_none());
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_is_refused_with_the_variable_named() {
        let err = provider(
            "s",
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
        )
        .expect_err("no URL");
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{err}"
        );
    }

    #[test]
    fn a_remote_parent_keeps_the_trace_and_span_ids() {
        let trace = TraceContext::new_root();
        let context = remote(trace);
        let span = context.span();
        let span = span.span_context();
        assert_eq!(
            u128::from_be_bytes(span.trace_id().to_bytes()),
            trace.trace_id
        );
        assert_eq!(u64::from_be_bytes(span.span_id().to_bytes()), trace.span_id);
        assert!(span.is_remote() && span.is_sampled());
    }
}
