//! [`SqliteStore`]: the view in an SQLite file (WAL mode), one replica's own.

use std::{path::Path, time::Duration};

use agent_core::task::TaskStatus;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use sqlx::{
    Row, SqlitePool,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};
use uuid::Uuid;

use super::{
    Batch, ListQuery, NextOffset, Page, StoreError, StoredRow, TaskView, ViewRecord, ViewStore,
    nanos,
};

/// The schema, applied at open.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections in the pool: one writer at a time (SQLite's rule) and readers beside it
/// (WAL mode lets them read while it writes).
const MAX_CONNECTIONS: u32 = 4;

/// Pages of SQLite's cache a connection keeps (`PRAGMA cache_size`, KiB when negative):
/// 2 MiB each, so the pool stays within 8 MiB however large the view (lookups go by
/// index and touch few pages; the newest pages, which `GET /task-results` reads, stay
/// cached). At 1,000,000 tasks, 2 MiB rather than 4 took the generator from 72 MB to
/// 50–56 MB after catching up, with lookups no slower (`make bench-view`).
const CACHE_KIB: i64 = 2 * 1024;

/// Tasks removed by one statement of [`ViewStore::prune`], so a prune never holds the
/// writer for long.
const PRUNE_CHUNK: i64 = 10_000;

/// Makes a task `pending`, or gives a row made by an earlier result its task.
const UPSERT_TASK: &str = "
    INSERT INTO task_views (task_id, status, task, created_at)
    VALUES (?1, 'pending', ?2, ?3)
    ON CONFLICT (task_id) DO UPDATE SET task = excluded.task, created_at = excluded.created_at
    WHERE task_views.task IS NULL";

/// Settles a task with a result, unless the one it shows wins (the module docs of
/// [`super`]): the same rule as [`TaskView::taken_over_by`].
const UPSERT_RESULT: &str = "
    INSERT INTO task_views (task_id, status, result, created_at, result_partition, result_offset)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (task_id) DO UPDATE SET
        status = excluded.status,
        result = excluded.result,
        result_partition = excluded.result_partition,
        result_offset = excluded.result_offset
    WHERE task_views.result IS NULL
       OR (task_views.result_partition = excluded.result_partition
           AND (CASE excluded.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                  > CASE task_views.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                OR (CASE excluded.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                      = CASE task_views.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                    AND CASE WHEN excluded.status = 'interrupted'
                             THEN excluded.result_offset > task_views.result_offset
                             ELSE excluded.result_offset < task_views.result_offset END)))";

const UPSERT_OFFSET: &str = "
    INSERT INTO view_offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3)
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset";

const COLUMNS: &str = "task_id, status, task, result, created_at, result_partition, result_offset";

/// The view in an SQLite database; cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its folder when missing) the database at `path`, in WAL
    /// mode with `synchronous=NORMAL` (a committed batch survives the process's crash;
    /// a power loss may lose the last batches, which are then read again from their
    /// stored offsets), and brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the file cannot be created or opened,
    /// [`StoreError::Migrate`] when its schema is not one this version knows.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(folder) = path.parent()
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder).map_err(|err| StoreError::Database(err.into()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", (-CACHE_KIB).to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

impl ViewStore for SqliteStore {
    fn apply(&self, batch: Batch) -> BoxFuture<'static, Result<(), StoreError>> {
        let pool = self.pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            for record in &batch.records {
                match record {
                    ViewRecord::Task(task) => {
                        sqlx::query(UPSERT_TASK)
                            .bind(task.task_id.as_bytes().as_slice())
                            .bind(json(task)?)
                            .bind(nanos(task.created_at))
                            .execute(&mut *tx)
                            .await?;
                    }
                    ViewRecord::Result(result, at) => {
                        sqlx::query(UPSERT_RESULT)
                            .bind(result.task_id.as_bytes().as_slice())
                            .bind(result.status.as_str())
                            .bind(json(result)?)
                            .bind(nanos(result.started_at))
                            .bind(at.partition)
                            .bind(at.offset)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            for next in &batch.offsets {
                sqlx::query(UPSERT_OFFSET)
                    .bind(&next.topic)
                    .bind(next.partition)
                    .bind(next.offset)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .boxed()
    }

    fn offsets(&self) -> BoxFuture<'static, Result<Vec<NextOffset>, StoreError>> {
        let pool = self.pool.clone();
        async move {
            let rows = sqlx::query("SELECT topic, partition, next_offset FROM view_offsets")
                .fetch_all(&pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(NextOffset {
                        topic: row.try_get("topic")?,
                        partition: row.try_get("partition")?,
                        offset: row.try_get("next_offset")?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn get(&self, task_id: Uuid) -> BoxFuture<'static, Result<Option<TaskView>, StoreError>> {
        let pool = self.pool.clone();
        async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM task_views WHERE task_id = ?1"
            )))
            .bind(task_id.as_bytes().as_slice())
            .fetch_optional(&pool)
            .await?;
            row.as_ref().map(view_of).transpose()
        }
        .boxed()
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'static, Result<Page, StoreError>> {
        let pool = self.pool.clone();
        async move {
            // One statement a shape, so that each uses its index; every piece is a
            // constant of this file, the values are bound.
            let mut sql = format!("SELECT {COLUMNS} FROM task_views WHERE 1 = 1");
            if query.status.is_some() {
                sql.push_str(" AND status = ?1");
            }
            if query.after.is_some() {
                sql.push_str(" AND (created_at, task_id) < (?2, ?3)");
            }
            sql.push_str(" ORDER BY created_at DESC, task_id DESC LIMIT ?4");
            let after = query.after;
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(query.status.map(TaskStatus::as_str))
                .bind(after.map(|a| a.created_at_ns))
                .bind(after.map(|a| a.task_id.as_bytes().to_vec()))
                .bind(i64::try_from(query.limit + 1).unwrap_or(i64::MAX))
                .fetch_all(&pool)
                .await?;
            let found = rows.iter().map(view_of).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::of(found, query.limit))
        }
        .boxed()
    }

    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'static, Result<u64, StoreError>> {
        let pool = self.pool.clone();
        async move {
            let mut removed = 0;
            loop {
                let done = sqlx::query(
                    "DELETE FROM task_views WHERE task_id IN (
                         SELECT task_id FROM task_views
                         WHERE created_at < ?1 AND status IN ('completed', 'failed') LIMIT ?2)",
                )
                .bind(nanos(before))
                .bind(PRUNE_CHUNK)
                .execute(&pool)
                .await?
                .rows_affected();
                removed += done;
                if done < PRUNE_CHUNK as u64 {
                    return Ok(removed);
                }
            }
        }
        .boxed()
    }
}

/// `value` as JSON text.
fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

/// The view a row of [`COLUMNS`] holds.
fn view_of(row: &SqliteRow) -> Result<TaskView, StoreError> {
    StoredRow {
        task_id: row.try_get("task_id")?,
        status: row.try_get("status")?,
        task: row.try_get("task")?,
        result: row.try_get("result")?,
        created_at_ns: row.try_get("created_at")?,
        result_partition: row.try_get("result_partition")?,
        result_offset: row.try_get("result_offset")?,
    }
    .into_view()
}
