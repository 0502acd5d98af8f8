//! Tasks produced straight onto the events topic, all at once: the solver's capacity
//! with a backlog, with no HTTP and no generation LLM call in the way.

use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, stream::FuturesUnordered};
use rdkafka::{
    ClientConfig,
    error::KafkaError,
    producer::{FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
};
use serde_json::json;

use super::Sent;
use crate::epoch_ms;

/// Produces `n` plain JSON tasks `{"task_id", "task_name": "Project {i}",
/// "task_description": "Help the user with project {i}", "context": "bench"}` (with
/// `"human_review": true` when `human_review`: each pauses after its plan), keyed by
/// their (v4) `task_id`, onto `topic` at `bootstrap` without waiting between them; when
/// the producer's queue is full it waits for room. A task is [`Sent::accepted`] at the
/// moment it was handed to the producer once the broker acknowledged it (`acks=all`),
/// [`Sent::refused`] when it was not.
///
/// # Errors
/// When the producer cannot be created.
pub async fn run(
    bootstrap: &str,
    topic: &str,
    n: usize,
    human_review: bool,
    sent: &Sent,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipeline-bench-loadgen")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .context("cannot create the task producer")?;
    let mut deliveries = FuturesUnordered::new();
    for i in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let mut payload = json!({
            "task_id": id,
            "task_name": format!("Project {i}"),
            "task_description": format!("Help the user with project {i}"),
            "context": "bench",
        });
        if human_review {
            payload["human_review"] = json!(true);
        }
        let payload = payload.to_string();
        let mut record = FutureRecord::to(topic).key(&id).payload(&payload);
        loop {
            let at = epoch_ms();
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(async move { (id, at, delivery.await) });
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((err, _)) => {
                    eprintln!("loadgen: cannot produce task {i}: {err}");
                    sent.refused();
                    break;
                }
            }
        }
    }
    while let Some((id, at, delivery)) = deliveries.next().await {
        match delivery {
            Ok(Ok(_)) => sent.accepted(id, at),
            Ok(Err((err, _))) => {
                eprintln!("loadgen: task {id} not acknowledged: {err}");
                sent.refused();
            }
            Err(_) => sent.refused(),
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .context("cannot flush the task producer")?;
    Ok(())
}
