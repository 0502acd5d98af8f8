//! The load generator's one-line JSON summary, field for field the one of the
//! reference `loadgen.py`, plus the mode.

use std::{collections::HashMap, time::Duration};

use serde::Serialize;

/// What one load run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Tasks asked for (`-n`).
    pub n: usize,
    /// Concurrent clients (`-c`).
    pub c: usize,
    /// Tasks not accepted: a POST answered other than `200` or failed, or a produce the
    /// broker did not acknowledge.
    pub post_errors: usize,
    /// Accepted tasks per second of the sending phase.
    pub posts_per_s: f64,
    /// Completed tasks per second, from the start to the last result's timestamp.
    pub tasks_per_s: f64,
    /// Accepted tasks whose result was seen.
    pub completed: usize,
    /// Accepted tasks whose result was not seen before the timeout.
    pub lost: usize,
    /// Median latency, ms (send → result record timestamp); `null` when none completed.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// `post` or `topic`.
    pub mode: String,
}

/// The inputs of a [`Summary`].
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Tasks asked for.
    pub n: usize,
    /// Concurrent clients.
    pub c: usize,
    /// `post` or `topic`.
    pub mode: &'a str,
    /// Accepted task id → send time, ms since the epoch.
    pub sent: &'a HashMap<String, f64>,
    /// Tasks not accepted.
    pub errors: usize,
    /// Start of the sending phase, ms since the epoch.
    pub start_ms: f64,
    /// Length of the sending phase.
    pub sending: Duration,
    /// Task id → first result timestamp, ms since the epoch.
    pub seen: &'a HashMap<String, i64>,
}

impl Summary {
    /// Computes the summary of `run`.
    pub fn new(run: &Run<'_>) -> Self {
        let mut latencies = Vec::with_capacity(run.sent.len());
        let mut last = run.start_ms;
        for (id, sent_at) in run.sent {
            if let Some(&result_at) = run.seen.get(id) {
                // ms since the epoch are far below 2^53: exact as f64.
                let result_at = result_at as f64;
                latencies.push(result_at - sent_at);
                last = last.max(result_at);
            }
        }
        latencies.sort_by(f64::total_cmp);
        let completed = latencies.len();
        let per_s = |count: usize, seconds: f64| round1(count as f64 / seconds.max(1e-9));
        Self {
            n: run.n,
            c: run.c,
            post_errors: run.errors,
            posts_per_s: per_s(run.sent.len(), run.sending.as_secs_f64()),
            tasks_per_s: per_s(completed, (last - run.start_ms) / 1000.0),
            completed,
            lost: run.sent.len() - completed,
            p50_ms: percentile(&latencies, 0.5),
            p95_ms: percentile(&latencies, 0.95),
            p99_ms: percentile(&latencies, 0.99),
            mode: run.mode.to_owned(),
        }
    }
}

/// `sorted[min(len − 1, ⌊p·len⌋)]` rounded to 0.1 (the rule of `loadgen.py`); `None`
/// for no values.
///
/// ```
/// use pipeline_bench::report::percentile;
///
/// let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
/// assert_eq!(percentile(&sorted, 0.5), Some(51.0));
/// assert_eq!(percentile(&sorted, 0.99), Some(100.0));
/// assert_eq!(percentile(&[], 0.5), None);
/// ```
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let index = ((p * sorted.len() as f64) as usize).min(last);
    sorted.get(index).copied().map(round1)
}

/// `x` rounded to one decimal, as Python's `round(x, 1)` (ties to even on the exact
/// binary value, through Rust's correctly rounded formatting).
pub fn round1(x: f64) -> f64 {
    format!("{x:.1}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_small_run() {
        let sent: HashMap<String, f64> = [("a", 1_000.0), ("b", 1_000.5), ("c", 1_001.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let seen: HashMap<String, i64> = [("a", 1_100), ("b", 1_200), ("x", 5_000)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let summary = Summary::new(&Run {
            n: 4,
            c: 2,
            mode: "post",
            sent: &sent,
            errors: 1,
            start_ms: 1_000.0,
            sending: Duration::from_millis(500),
            seen: &seen,
        });
        assert_eq!(
            summary,
            Summary {
                n: 4,
                c: 2,
                post_errors: 1,
                posts_per_s: 6.0,
                tasks_per_s: 10.0,
                completed: 2,
                lost: 1,
                p50_ms: Some(199.5),
                p95_ms: Some(199.5),
                p99_ms: Some(199.5),
                mode: "post".into(),
            }
        );
        let line = serde_json::to_string(&summary).expect("JSON");
        assert!(
            line.starts_with(r#"{"n":4,"c":2,"post_errors":1,"posts_per_s":6.0,"#),
            "{line}"
        );
    }

    #[test]
    fn nothing_completed_gives_null_percentiles() {
        let summary = Summary::new(&Run {
            n: 1,
            c: 1,
            mode: "topic",
            sent: &HashMap::from([("a".to_owned(), 0.0)]),
            errors: 0,
            start_ms: 0.0,
            sending: Duration::from_secs(1),
            seen: &HashMap::new(),
        });
        assert_eq!(
            (summary.completed, summary.lost, summary.p50_ms),
            (0, 1, None)
        );
        assert_eq!(summary.tasks_per_s, 0.0);
    }
}
