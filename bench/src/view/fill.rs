//! Tasks and their results produced onto the view's topics, as the services would have
//! written them: JSON keyed by task id.

use std::time::{Duration, Instant};

use agent_core::task::{Task, TaskResult, TokenUsage};
use anyhow::Context;
use futures::{StreamExt, stream::FuturesUnordered};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use uuid::Uuid;

/// Records awaiting the broker's acknowledgement at once.
const IN_FLIGHT: usize = 20_000;

/// Produces `count` tasks onto `events` and a `completed` result of `answer_bytes`
/// characters for each onto `results`; returns the task ids. Prints progress every 10%.
///
/// # Errors
/// When the producer cannot be made or the broker refuses a record.
pub async fn fill(
    bootstrap: &str,
    events: &str,
    results: &str,
    count: usize,
    answer_bytes: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000")
        .create()
        .context("producer")?;
    let answer = "x".repeat(answer_bytes);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(count);
    let mut pending = FuturesUnordered::new();
    for i in 0..count {
        let task = Task::new(format!("bench task {i}"), format!("do thing {i}"), "")?;
        let result = TaskResult::completed(
            &task,
            answer.as_str(),
            "bench-solver",
            task.created_at,
            TokenUsage::default(),
        );
        let key = task.task_id.to_string();
        for (topic, value) in [
            (events, serde_json::to_vec(&task)?),
            (results, serde_json::to_vec(&result)?),
        ] {
            let record = FutureRecord::to(topic).key(&key).payload(&value);
            let delivery = producer
                .send_result(record)
                .map_err(|(err, _)| anyhow::anyhow!("enqueue: {err}"))?;
            pending.push(delivery);
            while pending.len() >= IN_FLIGHT {
                acknowledged(pending.next().await)?;
            }
        }
        ids.push(task.task_id);
        if (i + 1) % (count / 10).max(1) == 0 {
            eprintln!(
                "view-bench: filled {} of {count} tasks and results ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(delivery) = pending.next().await {
        acknowledged(Some(delivery))?;
    }
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60));
    Ok(ids)
}

type DeliveryOutcome = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

fn acknowledged(delivery: Option<DeliveryOutcome>) -> anyhow::Result<()> {
    match delivery {
        Some(Ok(Ok(_))) | None => Ok(()),
        Some(Ok(Err((err, _)))) => Err(anyhow::anyhow!("the broker refused a record: {err}")),
        Some(Err(_)) => Err(anyhow::anyhow!("the producer went away")),
    }
}
