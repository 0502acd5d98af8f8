//! [`MemoryStore`]: the view in a map in the process, rebuilt from offset 0 at every
//! start.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{Arc, PoisonError, RwLock},
};

use agent_core::task::{Task, TaskResult, TaskStatus};
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt, ready};
use uuid::Uuid;

use super::{
    Batch, Cursor, ListQuery, LogPosition, NextOffset, Page, StoreError, StoredJson, TaskView,
    ViewRecord, ViewStore,
};

/// The view in a `HashMap`; cheap to clone. It keeps no offsets across restarts (each
/// start reads the topics from the beginning), and `list` sorts every task: fine for
/// tests and thousands of tasks, not millions (use [`SqliteStore`](super::SqliteStore)).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<Uuid, TaskView>,
    offsets: HashMap<(String, i32), i64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tasks the view holds.
    pub fn len(&self) -> usize {
        self.read().tasks.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn record_task(&mut self, task: &Task, json: StoredJson<Task>) {
        match self.tasks.entry(task.task_id) {
            Entry::Occupied(mut seen) => {
                let view = seen.get_mut();
                if view.task.is_none() {
                    view.task = Some(json);
                    view.created_at = task.created_at;
                }
            }
            Entry::Vacant(new) => {
                new.insert(TaskView {
                    task_id: task.task_id,
                    status: TaskStatus::Pending,
                    task: Some(json),
                    result: None,
                    created_at: task.created_at,
                    result_at: None,
                });
            }
        }
    }

    fn record_result(
        &mut self,
        result: &TaskResult,
        json: StoredJson<TaskResult>,
        at: LogPosition,
    ) {
        let view = self
            .tasks
            .entry(result.task_id)
            .or_insert_with(|| TaskView {
                task_id: result.task_id,
                status: TaskStatus::Pending,
                task: None,
                result: None,
                created_at: result.started_at,
                result_at: None,
            });
        if view.taken_over_by(result, at) {
            view.status = result.status;
            view.result = Some(json);
            view.result_at = Some(at);
        }
    }
}

/// A record of a batch with its JSON, as the view keeps it.
enum Encoded<'a> {
    Task(&'a Task, StoredJson<Task>),
    Result(&'a TaskResult, StoredJson<TaskResult>, LogPosition),
}

impl ViewStore for MemoryStore {
    fn apply(&self, batch: Batch) -> BoxFuture<'static, Result<(), StoreError>> {
        // Encoded before the lock is taken: a record that does not encode leaves the
        // view as it was.
        let encoded = batch
            .records
            .iter()
            .map(|record| match record {
                ViewRecord::Task(task) => {
                    StoredJson::of(task).map(|json| Encoded::Task(task, json))
                }
                ViewRecord::Result(result, at) => {
                    StoredJson::of(result).map(|json| Encoded::Result(result, json, *at))
                }
            })
            .collect::<Result<Vec<_>, _>>();
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(err) => return ready(Err(err)).boxed(),
        };
        let mut inner = self.write();
        for record in encoded {
            match record {
                Encoded::Task(task, json) => inner.record_task(task, json),
                Encoded::Result(result, json, at) => inner.record_result(result, json, at),
            }
        }
        for next in batch.offsets {
            inner
                .offsets
                .insert((next.topic, next.partition), next.offset);
        }
        ready(Ok(())).boxed()
    }

    fn offsets(&self) -> BoxFuture<'static, Result<Vec<NextOffset>, StoreError>> {
        let offsets = self
            .read()
            .offsets
            .iter()
            .map(|((topic, partition), offset)| NextOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
            .collect();
        ready(Ok(offsets)).boxed()
    }

    fn get(&self, task_id: Uuid) -> BoxFuture<'static, Result<Option<TaskView>, StoreError>> {
        ready(Ok(self.read().tasks.get(&task_id).cloned())).boxed()
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'static, Result<Page, StoreError>> {
        let inner = self.read();
        let mut views: Vec<&TaskView> = inner
            .tasks
            .values()
            .filter(|v| query.status.is_none_or(|s| v.status == s))
            .filter(|v| {
                query.after.is_none_or(|after| {
                    let here = Cursor::after(v);
                    (here.created_at_ns, here.task_id) < (after.created_at_ns, after.task_id)
                })
            })
            .collect();
        views.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.task_id.cmp(&a.task_id))
        });
        let found = views.into_iter().take(query.limit + 1).cloned().collect();
        ready(Ok(Page::of(found, query.limit))).boxed()
    }

    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'static, Result<u64, StoreError>> {
        let mut inner = self.write();
        let was = inner.tasks.len();
        inner
            .tasks
            .retain(|_, v| !v.status.is_final() || v.created_at >= before);
        ready(Ok((was - inner.tasks.len()) as u64)).boxed()
    }
}
