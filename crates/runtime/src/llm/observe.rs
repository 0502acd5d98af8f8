//! What each model request leaves behind: Prometheus metrics and a client span.
//!
//! Metrics (the `metrics` facade, rendered by [`crate::http::metrics`]), each labelled
//! with the `model` asked and the graph `node` that asked ([`LlmClient::for_node`]):
//!
//! - `llm_requests_total{model, node}`: requests made (one per call, whatever its
//!   retries);
//! - `llm_errors_total{model, node, kind}`: those that failed, `kind` = `timeout`
//!   ([`Error::LlmTimeout`]), `api` ([`Error::Llm`]: refused, unreachable, broken off) or
//!   `answer` ([`Error::LlmAnswer`]: no text, not JSON, not a completion);
//! - `llm_request_duration_seconds{model, node}`: a histogram of the time to the whole
//!   answer, retries included, in seconds;
//! - `llm_tokens_total{model, node, type}`: tokens the server says it spent, `type` =
//!   `input` (prompt) or `output` (completion).
//!
//! The span, `chat {model}`, follows OpenTelemetry's semantic conventions for GenAI
//! client spans (<https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>):
//! `gen_ai.operation.name`, `gen_ai.system`, `gen_ai.request.model`,
//! `gen_ai.request.max_tokens`, `gen_ai.usage.input_tokens`,
//! `gen_ai.usage.output_tokens`, and `error.type` on failure.
//!
//! [`LlmClient::for_node`]: super::LlmClient::for_node

use std::time::Instant;

use tracing::{Instrument, field::Empty};

use super::Completion;
use crate::{Error, Result};

/// The `kind` label of a failed request.
fn kind(err: &Error) -> &'static str {
    match err {
        Error::LlmTimeout(_) => "timeout",
        Error::LlmAnswer(_) => "answer",
        _ => "api",
    }
}

/// Runs one model request (`call`) inside its client span and records its metrics.
pub(super) async fn observed<T>(
    model: &str,
    node: &str,
    max_tokens: u32,
    call: impl Future<Output = Result<Completion<T>>>,
) -> Result<Completion<T>> {
    let span = tracing::info_span!(
        "chat",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.system = "openai",
        gen_ai.request.model = %model,
        gen_ai.request.max_tokens = max_tokens,
        langgraph.node = %node,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let labels = [("model", model.to_owned()), ("node", node.to_owned())];
    metrics::counter!("llm_requests_total", &labels).increment(1);
    metrics::histogram!("llm_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(completion) => {
            let usage = &completion.usage;
            span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
            span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
            for (kind, tokens) in [
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
            ] {
                metrics::counter!(
                    "llm_tokens_total",
                    "model" => model.to_owned(),
                    "node" => node.to_owned(),
                    "type" => kind,
                )
                .increment(u64::from(tokens));
            }
        }
        Err(err) => {
            let kind = kind(err);
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
            metrics::counter!(
                "llm_errors_total",
                "model" => model.to_owned(),
                "node" => node.to_owned(),
                "kind" => kind,
            )
            .increment(1);
        }
    }
    result
}
