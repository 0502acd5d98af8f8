//! The live-streams benchmark (`make bench-streams`, binary `stream-bench`): what a
//! client of `POST /generate-task` with `Accept: text/event-stream` waits for, and what
//! many open streams cost the task-generator replica serving them.
//!
//! - **Time to first token**: `n` tasks from `c` clients, each timed from the moment
//!   its POST was sent to its first `token` event (and to its `result`).
//! - **Many streams**: `streams` POSTs at once, every one kept open until its `result`,
//!   while the replica's RSS (`VmRSS`) is sampled every 100 ms and its CPU time
//!   (`utime + stime`) read before and after.
//! - **Polling, the baseline of the same run**: as many clients doing what they did
//!   before streams: a JSON POST, then `GET /task-result/{id}` every second until the
//!   task is finished; the same figures.
//!
//! Every stream is checked: its `token` chunks must make up its `result` exactly.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

/// One event of a `text/event-stream` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:`, lines joined by `\n`.
    pub data: String,
}

/// Splits the complete events off the front of `buffer` (comments and empty blocks
/// dropped); what is left is an incomplete event.
pub fn take_events(buffer: &mut String) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let (mut event, mut data) = (None, Vec::new());
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                event = Some(value.trim_start().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        if event.is_some() || !data.is_empty() {
            events.push(SseEvent {
                event: event.unwrap_or_else(|| "message".into()),
                data: data.join("\n"),
            });
        }
    }
    events
}

/// What one streamed task showed its client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Streamed {
    /// POST sent → first `token` event.
    pub first_token: Duration,
    /// POST sent → `result` event.
    pub result: Duration,
    /// `token` events received.
    pub tokens: usize,
}

/// POSTs one conversation asking for an event stream and reads it to its `result`.
///
/// # Errors
/// When the POST fails, the stream ends early, or its tokens do not make up its result.
pub async fn stream_one(client: &reqwest::Client, url: &str, i: usize) -> anyhow::Result<Streamed> {
    let sent = Instant::now();
    let response = client
        .post(format!("{url}/generate-task"))
        .header("Accept", "text/event-stream")
        .json(&json!({"conversation_history": format!("User: I need help with project {i}")}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "POST answered {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let (mut first_token, mut text, mut tokens) = (None, String::new(), 0);
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?).replace("\r\n", "\n"));
        for event in take_events(&mut buffer) {
            match event.event.as_str() {
                "token" => {
                    first_token.get_or_insert_with(|| sent.elapsed());
                    tokens += 1;
                    let data: Value = serde_json::from_str(&event.data)?;
                    text.push_str(data["chunk"].as_str().unwrap_or_default());
                }
                "error" => anyhow::bail!("the stream ended with an error: {}", event.data),
                "result" => {
                    let result = sent.elapsed();
                    let data: Value = serde_json::from_str(&event.data)?;
                    let answer = data["result"].as_str().unwrap_or_default();
                    anyhow::ensure!(
                        answer == text,
                        "the tokens ({} chars) do not make up the result ({} chars)",
                        text.len(),
                        answer.len()
                    );
                    return Ok(Streamed {
                        first_token: first_token
                            .ok_or_else(|| anyhow::anyhow!("a result with no token"))?,
                        result,
                        tokens,
                    });
                }
                _ => {}
            }
        }
    }
    anyhow::bail!("the stream ended before its result")
}

/// POSTs one conversation (JSON) and polls `GET /task-result/{id}` every `every` until
/// the task is finished: what a client did before streams. The time to the answer.
///
/// # Errors
/// When a request fails or the task fails.
pub async fn poll_one(
    client: &reqwest::Client,
    url: &str,
    i: usize,
    every: Duration,
) -> anyhow::Result<Duration> {
    let sent = Instant::now();
    let answer: Value = client
        .post(format!("{url}/generate-task"))
        .json(&json!({"conversation_history": format!("User: I need help with project {i}")}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = answer["task_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no task_id in {answer}"))?;
    loop {
        tokio::time::sleep(every).await;
        let view: Value = client
            .get(format!("{url}/task-result/{id}"))
            .send()
            .await?
            .json()
            .await?;
        match view["status"].as_str() {
            Some("completed") => return Ok(sent.elapsed()),
            Some("failed") => anyhow::bail!("task {id} failed: {view}"),
            _ => {}
        }
    }
}

/// A process's resident memory (`VmRSS`, bytes) and CPU time (`utime + stime`), from
/// `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Resident memory, bytes.
    pub rss: u64,
    /// CPU time since the process started.
    pub cpu: Duration,
}

/// The [`Usage`] of process `pid` now, or `None` when it cannot be read.
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Usage {
        rss: rss_kb * 1024,
        cpu: Duration::from_secs_f64(ticks as f64 / CLK_TCK),
    })
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`): 100 on
/// every Linux this runs on (the kernel's `USER_HZ`).
const CLK_TCK: f64 = 100.0;

/// What a phase cost the measured process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Wall time of the phase, s.
    pub wall_s: f64,
    /// CPU time the process used in it, s.
    pub cpu_s: f64,
    /// RSS before the phase, MB.
    pub rss_before_mb: f64,
    /// The highest RSS sampled during it (every 100 ms), MB.
    pub rss_peak_mb: f64,
    /// RSS after it, MB.
    pub rss_after_mb: f64,
}

/// Runs `phase` while sampling process `pid`: its [`Cost`] and its output.
pub async fn measure<T>(pid: u32, phase: impl Future<Output = T>) -> (Cost, T) {
    let before = usage(pid).unwrap_or_default();
    let peak = Arc::new(AtomicU64::new(before.rss));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(now) = usage(pid) {
                    peak.fetch_max(now.rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let out = phase.await;
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let after = usage(pid).unwrap_or_default();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    (
        Cost {
            wall_s: wall.as_secs_f64(),
            cpu_s: after.cpu.saturating_sub(before.cpu).as_secs_f64(),
            rss_before_mb: mb(before.rss),
            rss_peak_mb: mb(peak.load(Ordering::Relaxed).max(after.rss)),
            rss_after_mb: mb(after.rss),
        },
        out,
    )
}

/// The `q` quantile (0–1) of `values` in ms, nearest rank; `None` when empty.
pub fn quantile_ms(values: &mut [Duration], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1].as_secs_f64() * 1e3)
}

/// Runs `n` jobs `job(i)` from `c` workers; the outputs, in no order.
pub async fn run_many<T, F, Fut>(n: usize, c: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..c.clamp(1, n.max(1))).map(|_| {
        let (next, job) = (Arc::clone(&next), job.clone());
        tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                out.push(job(i).await);
            }
        })
    });
    futures::future::join_all(workers)
        .await
        .into_iter()
        .flat_map(Result::unwrap_or_default)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_off_whole_and_comments_dropped() {
        let mut buffer =
            ":\n\nevent: token\nid: 4\ndata: {\"chunk\":\"a\"}\n\nevent: result\ndata: {"
                .to_owned();
        let events = take_events(&mut buffer);
        assert_eq!(
            events,
            vec![SseEvent {
                event: "token".into(),
                data: "{\"chunk\":\"a\"}".into()
            }]
        );
        assert_eq!(buffer, "event: result\ndata: {");
    }

    #[test]
    fn quantiles_are_nearest_rank_and_usage_reads_this_process() {
        let mut values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut values, 0.5), Some(50.0));
        assert_eq!(quantile_ms(&mut values, 0.99), Some(99.0));
        assert_eq!(quantile_ms(&mut [], 0.5), None);
        let me = usage(std::process::id()).expect("this process's usage");
        assert!(me.rss > 1_000_000, "{me:?}");
    }
}
