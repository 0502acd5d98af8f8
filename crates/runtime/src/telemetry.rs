//! Tracing subscriber and W3C trace context.
//!
//! [`init`] installs a subscriber writing human-readable (`LOG_FORMAT=pretty`) or JSON
//! (`LOG_FORMAT=json`) lines, filtered by `RUST_LOG` (default `info`).
//! [`TraceContext`] is the W3C Trace Context (<https://www.w3.org/TR/trace-context/>)
//! carried in the `traceparent` Kafka header, so one task can be followed across services.

use std::fmt;

use tracing_subscriber::{EnvFilter, fmt as tfmt, prelude::*};

/// Installs the global tracing subscriber; a second call does nothing (tests start
/// several services in one process).
pub fn init(log_format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` fails only when a subscriber is already installed: keep that one.
    let _ = if log_format == "json" {
        registry
            .with(
                tfmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
    } else {
        registry.with(tfmt::layer().with_target(false)).try_init()
    };
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
    use super::*;

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
