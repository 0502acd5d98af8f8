//! Per-node retry policy and timeout (LangGraph's `RetryPolicy`).

use std::{fmt, sync::Arc, time::Duration};

use super::{NodeError, node::ErrorKind};

/// Whether an error is worth another attempt.
pub(crate) type RetryOn = Arc<dyn Fn(&NodeError) -> bool + Send + Sync>;

/// How a failing node is retried: up to `max_attempts` attempts in all, waiting
/// `initial_interval`, then that times `backoff_factor` after each failure, at most
/// `max_interval`, plus up to 1 s of random jitter when `jitter` is set — LangGraph's
/// `RetryPolicy` and its defaults. Only errors `retry_on` accepts are retried; by
/// default every error but one marked [`NodeError::permanent`].
///
/// ```
/// use std::time::Duration;
/// use agent_core::graph::{END, NodeError, RetryPolicy, RunContext, START, StateGraph, reducer::{Append, Overwrite}};
/// agent_core::state! {
///     /// Example state.
///     pub struct S / U {
///         /// Inputs.
///         pub items: Vec<u32> => Overwrite,
///         /// One input.
///         pub x: u32 => Overwrite,
///         /// Outputs, appended.
///         pub out: Vec<String> => Append,
///     }
/// }
/// # futures::executor::block_on(async {
/// let mut g = StateGraph::new();
/// g.add_node("flaky", |_: S, ctx: RunContext| async move {
///     if ctx.attempt() < 3 {
///         return Err(NodeError::transient("429 too many requests"));
///     }
///     Ok(U::default().out(vec![format!("ok on attempt {}", ctx.attempt())]))
/// })
/// .add_edge(START, "flaky")
/// .add_edge("flaky", END)
/// .retry_policy("flaky", RetryPolicy { initial_interval: Duration::from_millis(1), jitter: false, ..RetryPolicy::default() })
/// .node_timeout("flaky", Duration::from_secs(30));
/// let out = g.compile()?.invoke(S::default()).await?;
/// assert_eq!(out.out, ["ok on attempt 3"]);
/// # Ok::<(), agent_core::graph::GraphError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3).
    pub max_attempts: u32,
    /// Wait before the second attempt (default 500 ms).
    pub initial_interval: Duration,
    /// Growth of the wait after each failure (default 2.0).
    pub backoff_factor: f64,
    /// Longest wait (default 128 s).
    pub max_interval: Duration,
    /// Add a random 0–1 s to each wait (default true).
    pub jitter: bool,
    /// Which errors to retry.
    pub retry_on: RetryOn,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_interval: Duration::from_millis(500),
            backoff_factor: 2.0,
            max_interval: Duration::from_secs(128),
            jitter: true,
            retry_on: Arc::new(|error: &NodeError| error.kind() != ErrorKind::Permanent),
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_interval", &self.initial_interval)
            .field("backoff_factor", &self.backoff_factor)
            .field("max_interval", &self.max_interval)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), jitter included.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff_factor
            .max(1.0)
            .powi(attempt.saturating_sub(1) as i32);
        let base = self.initial_interval.mul_f64(factor).min(self.max_interval);
        if self.jitter {
            // A v4 UUID's low bits are random: no RNG dependency needed.
            let unit = (uuid::Uuid::new_v4().as_u128() as u64 % 1_000_000) as f64 / 1_000_000.0;
            base + Duration::from_secs_f64(unit)
        } else {
            base
        }
    }

    /// Only errors accepted by `retry_on` are retried.
    #[must_use]
    pub fn retry_on(
        mut self,
        retry_on: impl Fn(&NodeError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_on = Arc::new(retry_on);
        self
    }
}

/// Options of one node: retry policy and per-attempt timeout.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Retries, when set.
    pub retry: Option<RetryPolicy>,
    /// Longest one attempt may take; a timed-out attempt fails with a transient error
    /// (retried under the policy).
    pub timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap() {
        let policy = RetryPolicy {
            initial_interval: Duration::from_millis(100),
            backoff_factor: 3.0,
            max_interval: Duration::from_millis(500),
            jitter: false,
            ..RetryPolicy::default()
        };
        let waits: Vec<u128> = (1..=4).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 300, 500, 500]);
        let jittered = RetryPolicy {
            jitter: true,
            ..policy
        }
        .backoff(1);
        assert!(jittered >= Duration::from_millis(100) && jittered < Duration::from_millis(1100));
    }

    #[test]
    fn the_default_retries_all_but_permanent_errors() {
        let policy = RetryPolicy::default();
        assert!((policy.retry_on)(&NodeError::msg("flaky")));
        assert!((policy.retry_on)(&NodeError::transient("429")));
        assert!(!(policy.retry_on)(&NodeError::permanent("bad request")));
    }
}
