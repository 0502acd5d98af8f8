//! `POST /generate-task` from C concurrent clients, each sending its next conversation as
//! soon as its previous one was answered (a closed loop).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};

use super::Sent;
use crate::epoch_ms;

/// Sends `n` conversations `User: I need help with project {i}` to
/// `{url}/generate-task` from `c` clients. A `200` whose body has a `task_id` is
/// [`Sent::accepted`] at the moment its request was sent; any other answer, or no answer
/// within 120 s, is [`Sent::refused`].
///
/// # Errors
/// When the HTTP client cannot be built.
pub async fn run(url: &str, n: usize, c: usize, sent: &Sent) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .timeout(Duration::from_secs(120))
        .build()?;
    let endpoint = format!("{}/generate-task", url.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));
    let clients = (0..c.max(1)).map(|_| {
        let (client, endpoint, next, sent) = (
            client.clone(),
            endpoint.clone(),
            Arc::clone(&next),
            sent.clone(),
        );
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let at = epoch_ms();
                let body =
                    json!({"conversation_history": format!("User: I need help with project {i}")});
                match post(&client, &endpoint, &body).await {
                    Some(id) => sent.accepted(id, at),
                    None => sent.refused(),
                }
            }
        }
    });
    futures::future::join_all(clients).await;
    Ok(())
}

/// The `task_id` of a `200` answer, or `None`.
async fn post(client: &reqwest::Client, endpoint: &str, body: &Value) -> Option<String> {
    let response = client.post(endpoint).json(body).send().await.ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let answer: Value = response.json().await.ok()?;
    answer.get("task_id")?.as_str().map(str::to_owned)
}
