//! The results view: every task's latest state, by `task_id`, in a [`ViewStore`].
//!
//! The view is fed by the events topic (a task is `pending`) and the results topic (it
//! settles), read by [`ViewReader`](crate::reader::ViewReader) in batches. Each batch is
//! applied with the offsets it ends at, in one transaction ([`ViewStore::apply`]), so a
//! restarted replica resumes where its store stopped ([`ViewStore::offsets`]): nothing
//! replayed from offset 0, no record applied twice. Applying is idempotent by `task_id`
//! anyway: a redelivered task or result never shows twice.
//!
//! Which result wins when several arrive for one task (a redelivered task solved
//! twice): a `completed` result beats a `failed` one, and either beats an `interrupted`
//! one (a task paused for review, which a later result settles); between two
//! `interrupted` results the later in the log wins (the task paused again, after a
//! rejected plan); between two final results of the same status the first in the log
//! stays — by position in the partition, since every result of a task
//! is keyed by the task id and so shares one partition. A later one (the duplicate of a
//! redelivered task, or a forgery by whoever may write the results topic) never
//! replaces it, nor does one from another partition. The results' own `finished_at` is
//! never trusted for this: a skewed clock or a forged far-future time would let any
//! later result take over, and pin the view. A result whose task the view has not seen
//! (yet) shows with `"task": null`.
//!
//! # Stores
//!
//! - [`SqliteStore`] (`RESULTS_STORE=sqlite`, the default): a file under `DATA_DIR`, WAL
//!   mode; one replica's own view.
//! - [`PostgresStore`] (`RESULTS_STORE=postgres`): tables in the PostgreSQL at
//!   `DATABASE_URL`, the same database as the checkpointer's; every replica shares one
//!   view.
//! - [`MemoryStore`] (`RESULTS_STORE=memory`): a map in the process, rebuilt from offset 0
//!   at every start (the view of earlier versions; tests and comparisons).
//!
//! Every store passes the same conformance tests (`tests.rs`).

mod memory;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::{fmt, marker::PhantomData, str::FromStr};

use agent_core::task::{Task, TaskResult, TaskStatus};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Serialize, Serializer, de::DeserializeOwned};
use serde_json::value::RawValue;
use uuid::Uuid;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One task as the view sees it: the body of `GET /task-result/{task_id}`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({
    "task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "status": "completed",
    "task": {"task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "task_name": "Project help",
             "task_description": "Help the user with their project.", "context": "",
             "created_at": "2026-11-21T13:27:24.100Z", "source": "task-generator"},
    "result": {"task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "task_name": "Project help",
               "status": "completed", "result": "1. List the parts of the project.",
               "solver_id": "task-solver-7d9c", "attempts": 1,
               "started_at": "2026-11-21T13:27:24.300Z", "finished_at": "2026-11-21T13:27:26.900Z",
               "usage": {"prompt_tokens": 180, "completion_tokens": 300, "total_tokens": 480}},
    "created_at": "2026-11-21T13:27:24.100Z"
}))]
pub struct TaskView {
    /// The task id.
    pub task_id: Uuid,
    /// `pending`, `completed`, `failed` or `interrupted` (waiting for a person).
    pub status: TaskStatus,
    /// The task, when its event was seen; `null` for a result whose task the view has
    /// not seen. Always present.
    #[schema(value_type = Option<Task>, required = true)]
    pub task: Option<StoredJson<Task>>,
    /// The result, once it arrived; its `status` is the view's `status`. Absent (never
    /// `null`) until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = TaskResult, required = false)]
    pub result: Option<StoredJson<TaskResult>>,
    /// When the view first learnt of the task (its `created_at` when known, else the
    /// result's `started_at`).
    pub created_at: DateTime<Utc>,
    /// Where [`TaskView::result`] sits in the results topic.
    #[serde(skip)]
    pub result_at: Option<LogPosition>,
}

impl TaskView {
    /// Whether `result` at `at` replaces what this view shows (see the module docs).
    pub fn taken_over_by(&self, result: &TaskResult, at: LogPosition) -> bool {
        match (&self.result, self.result_at) {
            (Some(_), Some(old_at)) => {
                old_at.partition == at.partition
                    && match rank(result.status).cmp(&rank(self.status)) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Less => false,
                        // A newer pause replaces an older one; a final result stays.
                        std::cmp::Ordering::Equal if result.status == TaskStatus::Interrupted => {
                            at.offset > old_at.offset
                        }
                        std::cmp::Ordering::Equal => at.offset < old_at.offset,
                    }
            }
            _ => true,
        }
    }
}

/// How strongly a result of `status` holds the view: `completed` beats `failed`, which
/// beats `interrupted` (the stores' SQL spells the same order).
fn rank(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Completed => 3,
        TaskStatus::Failed => 2,
        TaskStatus::Interrupted => 1,
        TaskStatus::Pending => 0,
    }
}

/// A task or a result as a store keeps it: its JSON text, which an answer writes as it
/// is, never decoded into a `T` and encoded again (most of the cost of a
/// `GET /task-results` page otherwise). Text read back from a store is checked to be
/// JSON ([`StoredJson::from_text`]); [`StoredJson::decode`] gives the `T`.
pub struct StoredJson<T> {
    text: Box<RawValue>,
    of: PhantomData<fn() -> T>,
}

impl<T: Serialize> StoredJson<T> {
    /// `value` as JSON text, the form every store keeps.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when `value` does not encode (a map with keys that are
    /// not strings; never for a `Task` or a `TaskResult`).
    pub fn of(value: &T) -> Result<Self, StoreError> {
        serde_json::value::to_raw_value(value)
            .map(Self::new)
            .map_err(|err| StoreError::Corrupt(err.to_string()))
    }
}

impl<T> StoredJson<T> {
    fn new(text: Box<RawValue>) -> Self {
        Self {
            text,
            of: PhantomData,
        }
    }

    /// Text read back from a store, once checked to be one JSON value (whitespace around
    /// it is kept).
    ///
    /// # Errors
    /// When `text` is not JSON.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self::new)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.text.get()
    }
}

impl<T: DeserializeOwned> StoredJson<T> {
    /// The `T` the text holds.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the text is JSON but not a `T` (written by another
    /// version, or damaged).
    pub fn decode(&self) -> Result<T, StoreError> {
        serde_json::from_str(self.text.get()).map_err(|err| StoreError::Corrupt(err.to_string()))
    }
}

impl<T> Serialize for StoredJson<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(serializer)
    }
}

impl<T> Clone for StoredJson<T> {
    fn clone(&self) -> Self {
        Self::new(self.text.clone())
    }
}

impl<T> fmt::Debug for StoredJson<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoredJson").field(&self.as_str()).finish()
    }
}

/// The same text.
impl<T> PartialEq for StoredJson<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A record's place in its topic: the partition and the offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
}

/// What a record of the view's topics says.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewRecord {
    /// A published task (events topic): `pending` unless the view knows more.
    Task(Task),
    /// A result (results topic) at its position there.
    Result(TaskResult, LogPosition),
}

/// Where reading a partition resumes: the offset of the next record to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read (one past the last applied).
    pub offset: i64,
}

/// Records to apply at once, and the offsets reading has reached with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The records, in the order read.
    pub records: Vec<ViewRecord>,
    /// For each partition read from, the offset after its last record in this batch
    /// (records skipped as invalid count as read).
    pub offsets: Vec<NextOffset>,
}

/// Where a page of `GET /task-results` ends: the last task's `(created_at, task_id)`;
/// the next page starts after it. Shown to clients as opaque text,
/// `<created_at in ns since the epoch>.<task_id without hyphens>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `created_at` of the last task shown, in nanoseconds since the Unix epoch.
    pub created_at_ns: i64,
    /// Its task id.
    pub task_id: Uuid,
}

impl Cursor {
    /// The cursor after `view`.
    pub fn after(view: &TaskView) -> Self {
        Self {
            created_at_ns: nanos(view.created_at),
            task_id: view.task_id,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at_ns, self.task_id.simple())
    }
}

/// What a [`Cursor`] looks like, as an ECMA-262 regular expression (the OpenAPI
/// document's `pattern` of `cursor`): 1 to 19 digits of nanoseconds (as many as an `i64`
/// always holds), a `.`, the task id as 32 hex digits. [`Cursor::from_str`] takes exactly
/// the texts it matches.
pub const CURSOR_PATTERN: &str = r"^(?:[0-9]{1,18}|[0-8][0-9]{18})\.[0-9a-fA-F]{32}$";

impl FromStr for Cursor {
    type Err = StoreError;

    /// Reads a cursor as [`Cursor`]'s `Display` writes it; any text
    /// [`CURSOR_PATTERN`] does not match is [`StoreError::BadCursor`].
    fn from_str(text: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadCursor;
        let (at, id) = text.split_once('.').ok_or_else(bad)?;
        let nanos = match at.len() {
            1..=18 => true,
            19 => at.as_bytes()[0] <= b'8',
            _ => false,
        } && at.bytes().all(|b| b.is_ascii_digit());
        let hex = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !(nanos && hex) {
            return Err(bad());
        }
        Ok(Self {
            created_at_ns: at.parse().map_err(|_| bad())?,
            task_id: Uuid::try_parse(id).map_err(|_| bad())?,
        })
    }
}

/// A query of `GET /task-results`: newest first, by `(created_at, task_id)` descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// At most this many.
    pub limit: usize,
    /// Only tasks after this one (the `next` of the previous page).
    pub after: Option<Cursor>,
}

/// A page of tasks and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The tasks, newest first.
    pub results: Vec<TaskView>,
    /// The cursor of the next page; `None` when this one is the last.
    pub next: Option<Cursor>,
}

impl Page {
    /// The page of `limit` out of `found`, which holds up to `limit + 1` views: one more
    /// than asked says there is a next page.
    pub fn of(mut found: Vec<TaskView>, limit: usize) -> Self {
        let more = found.len() > limit;
        found.truncate(limit);
        let next = more.then(|| found.last().map(Cursor::after)).flatten();
        Self {
            results: found,
            next,
        }
    }
}

/// A failure of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (the file cannot be opened, the disk is full, locked for too long).
    #[error("results store: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite store's schema could not be brought up to date.
    #[error("results store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// PostgreSQL failed (unreachable, refused the login, a statement or a migration
    /// failed): what was being done and why, never the password of the database URL.
    #[error("results store: {0}")]
    Postgres(String),
    /// A stored row does not decode (written by another version, or damaged).
    #[error("results store: a stored row does not decode: {0}")]
    Corrupt(String),
    /// A `cursor` that no page of this view gave.
    #[error("cursor is not one this view gave: pass the `next` of the previous page")]
    BadCursor,
}

/// Where the results view is kept. Implementations must make [`ViewStore::apply`]
/// atomic (records and offsets together, or neither) and idempotent by `task_id`.
pub trait ViewStore: Send + Sync + fmt::Debug {
    /// Applies `batch`'s records and stores its offsets, in one transaction.
    fn apply(&self, batch: Batch) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The stored offsets where reading resumes, one per partition read so far.
    fn offsets(&self) -> BoxFuture<'static, Result<Vec<NextOffset>, StoreError>>;

    /// One task's view; `None` when the store does not hold it.
    fn get(&self, task_id: Uuid) -> BoxFuture<'static, Result<Option<TaskView>, StoreError>>;

    /// A page of tasks, newest first.
    fn list(&self, query: ListQuery) -> BoxFuture<'static, Result<Page, StoreError>>;

    /// Removes finished tasks (`completed` or `failed`) created before `before`; returns
    /// how many.
    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Whether several replicas share this store (one consumer group then writes it,
    /// each replica its share of the partitions); `false` for a replica's own store.
    fn shared(&self) -> bool {
        false
    }
}

/// A row of a SQL store's tasks table, as read: what [`StoredRow::into_view`] decodes
/// the same way for every SQL store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// `task_id`, 16 bytes.
    pub task_id: Vec<u8>,
    /// `status`: `pending`, `completed`, `failed` or `interrupted`.
    pub status: String,
    /// `task` as JSON.
    pub task: Option<String>,
    /// `result` as JSON.
    pub result: Option<String>,
    /// `created_at`, ns since the Unix epoch.
    pub created_at_ns: i64,
    /// `result_partition`.
    pub result_partition: Option<i32>,
    /// `result_offset`.
    pub result_offset: Option<i64>,
}

impl StoredRow {
    /// The view the row holds. The task and result are checked to be JSON, not decoded
    /// (see [`StoredJson`]).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the column that does not decode.
    pub fn into_view(self) -> Result<TaskView, StoreError> {
        let corrupt =
            |what: &str, err: &dyn fmt::Display| StoreError::Corrupt(format!("{what}: {err}"));
        let task_id = Uuid::from_slice(&self.task_id).map_err(|err| corrupt("task_id", &err))?;
        let status = TaskStatus::from_str(&self.status).map_err(|err| corrupt("status", &err))?;
        let task = self
            .task
            .map(StoredJson::from_text)
            .transpose()
            .map_err(|err| corrupt("task", &err))?;
        let result = self
            .result
            .map(StoredJson::from_text)
            .transpose()
            .map_err(|err| corrupt("result", &err))?;
        Ok(TaskView {
            task_id,
            status,
            task,
            result,
            created_at: DateTime::from_timestamp_nanos(self.created_at_ns),
            result_at: self
                .result_partition
                .zip(self.result_offset)
                .map(|(partition, offset)| LogPosition { partition, offset }),
        })
    }
}

/// `at` in nanoseconds since the Unix epoch, saturating (years 1677 to 2262 are exact).
pub fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}
