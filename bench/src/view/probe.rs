//! Lookup latency under concurrent clients.

use std::time::{Duration, Instant};

use anyhow::bail;
use uuid::Uuid;

use crate::report::percentile;

/// Latency percentiles of one route, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    /// Requests answered.
    pub requests: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// `clients` clients asking `route` (`by_id`: `GET /task-result/{id}` of a random id of
/// `ids`; else `GET /task-results?limit=50`) back to back for `run`.
///
/// # Errors
/// When an answer is not 200.
pub async fn probe(
    http: &reqwest::Client,
    base: &str,
    ids: &[Uuid],
    by_id: bool,
    clients: usize,
    run: Duration,
) -> anyhow::Result<Latency> {
    let until = Instant::now() + run;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let http = http.clone();
        let base = base.to_owned();
        let ids = ids.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            // A cheap, different sequence per client (xorshift).
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (client as u64 + 1);
            while Instant::now() < until {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let url = if by_id {
                    let id = ids[(state % ids.len() as u64) as usize];
                    format!("{base}/task-result/{id}")
                } else {
                    format!("{base}/task-results?limit=50")
                };
                let sent = Instant::now();
                let response = http.get(&url).send().await?;
                let status = response.status();
                let _ = response.bytes().await?;
                times.push(sent.elapsed().as_secs_f64() * 1000.0);
                if !status.is_success() {
                    bail!("{url} answered {status}");
                }
            }
            Ok(times)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(Latency {
        requests: all.len(),
        p50_ms: percentile(&all, 0.5).unwrap_or(0.0),
        p99_ms: percentile(&all, 0.99).unwrap_or(0.0),
        max_ms: all.last().copied().unwrap_or(0.0),
    })
}
