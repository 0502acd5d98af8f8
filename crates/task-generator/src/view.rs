//! The results view: every task's latest state, by `task_id`.
//!
//! Fed by two readers that every replica runs over all partitions from the beginning (no
//! consumer group, nothing committed), so a restarted replica rebuilds the same view:
//! the events topic makes a task `pending`, the results topic settles it. It is
//! idempotent by `task_id`: a redelivered task or result never shows twice.
//!
//! Which result wins when several arrive for one task (a redelivered task solved
//! twice): a `completed` result beats a `failed` one; between two of the same status the
//! first in the log stays — by position in the partition, since every result of a task
//! is keyed by the task id and so shares one partition. A later one (the duplicate of a
//! redelivered task, or a forgery by whoever may write the results topic) never
//! replaces it. The results' own `finished_at` is never trusted for this: a skewed clock
//! or a forged far-future time would let any later result take over, and pin the view.
//!
//! A result whose task the view has not seen (yet) shows with `"task": null`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use agent_core::task::{Task, TaskResult, TaskStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One task as the view sees it: the body of `GET /task-result/{task_id}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskView {
    /// The task id.
    pub task_id: Uuid,
    /// `pending`, `completed` or `failed`.
    pub status: TaskStatus,
    /// The task, when its event was seen; `null` for a result whose task the view has
    /// not seen.
    pub task: Option<Task>,
    /// The result, once it arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// When the view first learnt of the task (its `created_at` when known).
    pub created_at: DateTime<Utc>,
    /// Where [`TaskView::result`] sits in the results topic.
    #[serde(skip)]
    pub result_at: Option<LogPosition>,
}

/// A record's place in its topic: the partition and the offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
}

/// The view; cheap to clone, shared by the routes and the readers.
#[derive(Debug, Clone, Default)]
pub struct ResultsView {
    tasks: Arc<RwLock<HashMap<Uuid, TaskView>>>,
}

impl ResultsView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a published task as `pending`, unless the view already knows more of it.
    pub fn record_task(&self, task: &Task) {
        let Ok(mut tasks) = self.tasks.write() else {
            return;
        };
        tasks
            .entry(task.task_id)
            .and_modify(|view| {
                if view.task.is_none() {
                    view.task = Some(task.clone());
                    view.created_at = task.created_at;
                }
            })
            .or_insert_with(|| TaskView {
                task_id: task.task_id,
                status: TaskStatus::Pending,
                task: Some(task.clone()),
                result: None,
                created_at: task.created_at,
                result_at: None,
            });
    }

    /// Records a result read at `at` in the results topic; see the module doc for which
    /// result wins. A result from another partition than the one already shown (not
    /// keyed by its task id) never replaces it.
    pub fn record_result(&self, result: TaskResult, at: LogPosition) {
        let Ok(mut tasks) = self.tasks.write() else {
            return;
        };
        let view = tasks.entry(result.task_id).or_insert_with(|| TaskView {
            task_id: result.task_id,
            status: TaskStatus::Pending,
            task: None,
            result: None,
            created_at: result.started_at,
            result_at: None,
        });
        let wins = match (&view.result, view.result_at) {
            (Some(old), Some(old_at)) => {
                old_at.partition == at.partition
                    && match (old.status, result.status) {
                        (TaskStatus::Completed, TaskStatus::Failed) => false,
                        (TaskStatus::Failed, TaskStatus::Completed) => true,
                        _ => at.offset < old_at.offset,
                    }
            }
            _ => true,
        };
        if wins {
            view.status = result.status;
            view.result = Some(result);
            view.result_at = Some(at);
        }
    }

    /// One task's view.
    pub fn get(&self, task_id: Uuid) -> Option<TaskView> {
        self.tasks.read().ok()?.get(&task_id).cloned()
    }

    /// Up to `limit` tasks, newest first, optionally only those with `status`.
    pub fn list(&self, status: Option<TaskStatus>, limit: usize) -> Vec<TaskView> {
        let Ok(tasks) = self.tasks.read() else {
            return Vec::new();
        };
        let mut views: Vec<&TaskView> = tasks
            .values()
            .filter(|v| status.is_none_or(|s| v.status == s))
            .collect();
        views.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.task_id.cmp(&a.task_id))
        });
        views.into_iter().take(limit).cloned().collect()
    }

    /// How many tasks the view holds.
    pub fn len(&self) -> usize {
        self.tasks.read().map(|t| t.len()).unwrap_or(0)
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use agent_core::task::TokenUsage;

    use super::*;

    fn at(offset: i64) -> LogPosition {
        LogPosition {
            partition: 0,
            offset,
        }
    }

    fn result(task: &Task, ok: bool) -> TaskResult {
        if ok {
            TaskResult::completed(task, "done", "s", Utc::now(), TokenUsage::default())
        } else {
            TaskResult::failed(task, "boom", "s", Utc::now(), TokenUsage::default())
        }
    }

    #[test]
    fn a_task_is_pending_until_its_result_and_never_listed_twice() {
        let view = ResultsView::new();
        let task = Task::new("n", "d", "").expect("valid");
        view.record_task(&task);
        assert_eq!(
            view.get(task.task_id).map(|v| v.status),
            Some(TaskStatus::Pending)
        );
        view.record_result(result(&task, true), at(1));
        view.record_task(&task);
        view.record_result(result(&task, true), at(2));
        assert_eq!(view.len(), 1);
        let seen = view.get(task.task_id).expect("known");
        assert_eq!(seen.status, TaskStatus::Completed);
        assert_eq!(seen.task.as_ref(), Some(&task));
    }

    #[test]
    fn completed_beats_failed_whatever_the_order() {
        let task = Task::new("n", "d", "").expect("valid");
        for order in [[true, false], [false, true]] {
            let view = ResultsView::new();
            for ok in order {
                view.record_result(result(&task, ok), at(3));
            }
            assert_eq!(
                view.get(task.task_id).map(|v| v.status),
                Some(TaskStatus::Completed)
            );
        }
    }

    #[test]
    fn the_first_result_in_the_log_stays_whatever_a_later_one_s_finished_at() {
        let task = Task::new("n", "d", "").expect("valid");
        let view = ResultsView::new();
        let shown = |view: &ResultsView| {
            view.get(task.task_id)
                .and_then(|v| v.result)
                .and_then(|r| r.result)
        };
        view.record_result(result(&task, true), at(3));
        let mut forged = result(&task, true);
        forged.result = Some("FORGED, finished in 2099".into());
        forged.finished_at = DateTime::from_timestamp(4_070_908_800, 0).expect("time");
        view.record_result(forged, at(7));
        assert_eq!(shown(&view).as_deref(), Some("done"));

        // Read out of order, the earlier position takes its place; another partition's
        // result (not keyed by the task id) never does.
        let mut earlier = result(&task, true);
        earlier.result = Some("earlier".into());
        view.record_result(earlier.clone(), at(1));
        assert_eq!(shown(&view).as_deref(), Some("earlier"));
        view.record_result(
            earlier,
            LogPosition {
                partition: 1,
                offset: 0,
            },
        );
        assert_eq!(shown(&view).as_deref(), Some("earlier"));
    }

    #[test]
    fn a_result_before_its_task_shows_with_a_null_task_until_the_task_comes() {
        let view = ResultsView::new();
        let orphan = Task::new("n", "d", "").expect("valid");
        view.record_result(result(&orphan, true), at(1));
        let json = serde_json::to_value(view.get(orphan.task_id).expect("kept")).expect("json");
        assert!(json["task"].is_null(), "{json}");
    }

    #[test]
    fn a_result_before_its_task_still_lists_and_keeps_the_task_later() {
        let view = ResultsView::new();
        let task = Task::new("n", "d", "").expect("valid");
        view.record_result(result(&task, false), at(4));
        view.record_task(&task);
        let seen = view.get(task.task_id).expect("known");
        assert_eq!(seen.status, TaskStatus::Failed);
        assert!(seen.task.is_some());
    }

    #[test]
    fn list_is_newest_first_filtered_and_limited() {
        let view = ResultsView::new();
        let mut tasks = Vec::new();
        for i in 0..5 {
            let mut task = Task::new(format!("t{i}"), "d", "").expect("valid");
            task.created_at = DateTime::from_timestamp(1_700_000_000 + i, 0).expect("time");
            view.record_task(&task);
            tasks.push(task);
        }
        view.record_result(result(&tasks[1], true), at(5));
        let names: Vec<String> = view
            .list(None, 3)
            .into_iter()
            .filter_map(|v| v.task.map(|t| t.task_name))
            .collect();
        assert_eq!(names, ["t4", "t3", "t2"]);
        let done = view.list(Some(TaskStatus::Completed), 10);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].task_id, tasks[1].task_id);
        assert_eq!(view.list(Some(TaskStatus::Pending), 10).len(), 4);
    }
}
