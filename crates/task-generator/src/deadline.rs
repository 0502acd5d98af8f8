//! The review deadline (`REVIEW_TIMEOUT_SECS`): a task that waits for review longer
//! than this fails with `review timed out`.
//!
//! A waiting task is held by no process (its solver committed its offset and keeps only
//! its checkpoint), so the deadline is kept by the view, which lists the waiting tasks
//! anyway: every quarter of the deadline (at least every second, at most every minute)
//! [`review_deadlines`] looks through the `interrupted` tasks and, for each pause older
//! than the deadline (by its result's `finished_at`, the moment the solver paused),
//! publishes a [`ResumeRequest`] with [`Review::TimedOut`] for that very pause. The
//! solver that owns the task then ends it `failed`; a person's resume of the same pause
//! that came first wins, and the timeout is stale (strict resume). Every replica may
//! send it; the second is stale too.

use std::{collections::HashSet, sync::Arc, time::Duration};

use agent_core::task::{ResumeRequest, Review, TaskResult, TaskStatus};
use agent_runtime::kafka::Producer;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    resume,
    store::{ListQuery, ViewStore},
};

/// Tasks read from the view per page while looking for expired pauses.
const PAGE: usize = 500;

/// Fails the reviews that waited longer than `timeout` (see the module docs), until
/// `shutdown`.
pub async fn review_deadlines(
    store: Arc<dyn ViewStore>,
    producer: Producer,
    events_topic: String,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let every = (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let after_secs = timeout.as_secs();
    // Pauses already timed out by this replica, so each is sent once.
    let mut sent: HashSet<(Uuid, String)> = HashSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let waiting = match expired(&*store, timeout).await {
            Ok(waiting) => waiting,
            Err(err) => {
                tracing::warn!(error = %err, "review deadline: the view cannot be read; trying again");
                continue;
            }
        };
        for (task_id, interrupt_id) in waiting.iter().filter(|p| p.2).map(|p| (p.0, &p.1)) {
            if sent.contains(&(task_id, interrupt_id.clone())) {
                continue;
            }
            let request = ResumeRequest {
                task_id,
                interrupt_id: Some(interrupt_id.clone()),
                resume: Review::TimedOut { after_secs },
                requested_at: Utc::now(),
            };
            match resume::publish(&producer, &events_topic, &request).await {
                Ok(_) => {
                    tracing::info!(%task_id, %interrupt_id, after_secs, "review timed out; the task will fail");
                    sent.insert((task_id, interrupt_id.clone()));
                }
                Err(err) => {
                    tracing::warn!(%task_id, error = %err, "review deadline: the timeout could not be published; trying again");
                }
            }
        }
        // Forget the pauses that are over.
        sent.retain(|(task_id, id)| waiting.iter().any(|p| p.0 == *task_id && p.1 == *id));
    }
}

/// Every task waiting for review: its id, its pause's id, and whether the pause is
/// older than `timeout`.
async fn expired(
    store: &dyn ViewStore,
    timeout: Duration,
) -> Result<Vec<(Uuid, String, bool)>, crate::store::StoreError> {
    let now = Utc::now();
    let timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let mut waiting = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(ListQuery {
                status: Some(TaskStatus::Interrupted),
                limit: PAGE,
                after,
            })
            .await?;
        for view in &page.results {
            let Some(result) = view.result.as_ref().and_then(|r| r.decode().ok()) else {
                continue;
            };
            let TaskResult {
                interrupt: Some(interrupt),
                finished_at,
                ..
            } = result
            else {
                continue;
            };
            waiting.push((view.task_id, interrupt.id, now - finished_at >= timeout));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(waiting),
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_core::task::{Task, TaskInterrupt, TokenUsage};

    use super::*;
    use crate::store::{Batch, LogPosition, MemoryStore, ViewRecord};

    #[tokio::test]
    async fn only_pauses_older_than_the_deadline_are_expired() {
        let store = MemoryStore::new();
        let mut records = Vec::new();
        for (n, age_secs) in [(0_i64, 10_i64), (1, 3600)] {
            let task = Task::new(format!("t{n}"), "d", "").expect("task");
            let mut paused = TaskResult::interrupted(
                &task,
                TaskInterrupt {
                    id: format!("p{n}"),
                    node: "review".into(),
                    value: serde_json::json!({"plan": "p"}),
                },
                "s",
                Utc::now(),
                TokenUsage::default(),
            );
            paused.finished_at = Utc::now() - chrono::Duration::seconds(age_secs);
            records.push(ViewRecord::Task(task));
            records.push(ViewRecord::Result(
                paused,
                LogPosition {
                    partition: 0,
                    offset: n,
                },
            ));
        }
        store
            .apply(Batch {
                records,
                offsets: vec![],
            })
            .await
            .expect("applied");
        let mut waiting = expired(&store, Duration::from_secs(60))
            .await
            .expect("listed");
        waiting.sort_by(|a, b| a.1.cmp(&b.1));
        let flags: Vec<(&str, bool)> = waiting.iter().map(|p| (p.1.as_str(), p.2)).collect();
        assert_eq!(flags, [("p0", false), ("p1", true)]);
    }
}
