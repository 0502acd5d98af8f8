//! [`PostgresStore`]: the view in PostgreSQL, one view that every replica shares.

use std::{fmt, str::FromStr};

use agent_runtime::redact::UrlPassword;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use sqlx::{
    Connection, Row,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};
use uuid::Uuid;

use super::{
    Batch, ListQuery, NextOffset, Page, StoreError, StoredRow, TaskView, ViewRecord, ViewStore,
    nanos,
};

/// Where the view's applied migrations are recorded: a table of its own, not sqlx's
/// default `_sqlx_migrations`, so that they never mix with the versions of another
/// migrator in the same database (the checkpointer's, an application's): sqlx refuses
/// to run when its table holds a version it does not know ("previously applied but
/// missing").
const MIGRATIONS_TABLE: &str = "_results_view_migrations";

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 8;

/// Tasks removed by one statement of [`ViewStore::prune`], so a prune never holds many
/// rows locked for long.
const PRUNE_CHUNK: i64 = 10_000;

/// Makes a task `pending`, or gives a row made by an earlier result its task.
const UPSERT_TASK: &str = "
    INSERT INTO results_view_tasks (task_id, status, task, created_at)
    VALUES ($1, 'pending', $2, $3)
    ON CONFLICT (task_id) DO UPDATE SET task = excluded.task, created_at = excluded.created_at
    WHERE results_view_tasks.task IS NULL";

/// Settles a task with a result, unless the one it shows wins (the module docs of
/// [`super`]): the same rule as [`TaskView::taken_over_by`].
const UPSERT_RESULT: &str = "
    INSERT INTO results_view_tasks
        (task_id, status, result, created_at, result_partition, result_offset)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (task_id) DO UPDATE SET
        status = excluded.status,
        result = excluded.result,
        result_partition = excluded.result_partition,
        result_offset = excluded.result_offset
    WHERE results_view_tasks.result IS NULL
       OR (results_view_tasks.result_partition = excluded.result_partition
           AND (CASE excluded.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                  > CASE results_view_tasks.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                OR (CASE excluded.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                      = CASE results_view_tasks.status WHEN 'completed' THEN 3 WHEN 'failed' THEN 2 WHEN 'interrupted' THEN 1 ELSE 0 END
                    AND CASE WHEN excluded.status = 'interrupted'
                             THEN excluded.result_offset > results_view_tasks.result_offset
                             ELSE excluded.result_offset < results_view_tasks.result_offset END)))";

/// Stores where reading resumes; never moves it back, so that a late batch of a replica
/// that has just lost the partition to another (a rebalance of the view's consumer
/// group) does not make the next owner read again what is already applied.
const UPSERT_OFFSET: &str = "
    INSERT INTO results_view_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
    ON CONFLICT (topic, partition)
    DO UPDATE SET next_offset = GREATEST(results_view_offsets.next_offset, excluded.next_offset)";

/// Removes up to `$2` finished tasks created before `$1`. Rows another transaction holds
/// (a replica applying a batch, or pruning too) are skipped, not waited for: the next
/// prune takes them. `= ANY(ARRAY(…))` rather than `IN (…)`: the rows are then found by
/// the primary key, where `IN` may get a hash join over the whole table.
const PRUNE: &str = "
    DELETE FROM results_view_tasks WHERE task_id = ANY(ARRAY(
        SELECT task_id FROM results_view_tasks
        WHERE created_at < $1 AND status IN ('completed', 'failed')
        LIMIT $2
        FOR UPDATE SKIP LOCKED))";

const COLUMNS: &str = "task_id, status, task, result, created_at, result_partition, result_offset";

/// The view in PostgreSQL, shared by every replica connected to the same database; cheap
/// to clone (clones share the pool).
///
/// Two tables, created by the crate's `migrations/postgres` at
/// [`connect`](Self::connect): `results_view_tasks`, one row a task (`task_id` as the
/// UUID's 16 bytes, `created_at` in nanoseconds, the task and result as JSON text), and
/// `results_view_offsets`, where reading resumes. They can share a database with the
/// checkpointer's tables: the names differ, and so do the migrations tables.
///
/// The replicas' readers form one consumer group ([`ViewStore::shared`]), each applying
/// its partitions; around a rebalance two may still apply overlapping batches: each
/// upsert decides in one statement, on the row as committed, which result wins, and a
/// batch takes its rows' locks in `task_id` order, so two batches never deadlock. The
/// stored offsets only move forward.
///
/// Errors are [`StoreError::Postgres`], whose message never holds the password of the
/// database URL, or [`StoreError::Corrupt`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    database: Option<String>,
    redact: Redact,
}

impl fmt::Debug for PostgresStore {
    // Not the pool's: its connect options hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.database)
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `database_url` (`postgres://user:password@host:port/db`; the
    /// checkpointer's `DATABASE_URL`) and brings the view's schema up to date, then
    /// keeps a pool of up to 8 connections, opened as needed.
    ///
    /// The migrations run on a connection of their own, under sqlx's advisory lock on
    /// the database, so replicas starting at once apply them once; the others wait and
    /// find them applied. A connection whose migration fails is closed, which releases
    /// the lock.
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the URL does not parse, the server cannot be
    /// reached (at once, not after a pool's retries) or refuses the login, or the schema
    /// cannot be brought up to date (a migration fails, or the database holds a version
    /// of the view this one does not know). The message never holds the URL's password.
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let redact = Redact::of_url(database_url);
        let options = PgConnectOptions::from_str(database_url)
            .map_err(|err| redact.error("reading the database URL", err))?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|err| redact.error("connecting to PostgreSQL", err))?;
        let mut migrator: Migrator = sqlx::migrate!("./migrations/postgres");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
            .run(&mut conn)
            .await
            .map_err(|err| redact.error("migrating the results view", err))?;
        let _ = conn.close().await;
        let database = options.get_database().map(str::to_owned);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            database,
            redact,
        })
    }
}

impl ViewStore for PostgresStore {
    fn apply(&self, batch: Batch) -> BoxFuture<'static, Result<(), StoreError>> {
        let (pool, redact) = (self.pool.clone(), self.redact.clone());
        async move {
            let db = |err| redact.error("applying a batch", err);
            // Rows locked in one order by every transaction: no deadlock between
            // replicas. The sort is stable, so each task's records keep their order
            // (the only order that matters: a record touches its task's row only).
            let mut records: Vec<&ViewRecord> = batch.records.iter().collect();
            records.sort_by_key(|record| match record {
                ViewRecord::Task(task) => task.task_id,
                ViewRecord::Result(result, _) => result.task_id,
            });
            let mut offsets: Vec<&NextOffset> = batch.offsets.iter().collect();
            offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));

            let mut tx = pool.begin().await.map_err(db)?;
            for record in records {
                match record {
                    ViewRecord::Task(task) => {
                        sqlx::query(UPSERT_TASK)
                            .bind(task.task_id.as_bytes().as_slice())
                            .bind(json(task)?)
                            .bind(nanos(task.created_at))
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
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
                            .await
                            .map_err(db)?;
                    }
                }
            }
            for next in offsets {
                sqlx::query(UPSERT_OFFSET)
                    .bind(&next.topic)
                    .bind(next.partition)
                    .bind(next.offset)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok(())
        }
        .boxed()
    }

    fn offsets(&self) -> BoxFuture<'static, Result<Vec<NextOffset>, StoreError>> {
        let (pool, redact) = (self.pool.clone(), self.redact.clone());
        async move {
            let db = |err| redact.error("reading the offsets", err);
            let rows =
                sqlx::query("SELECT topic, partition, next_offset FROM results_view_offsets")
                    .fetch_all(&pool)
                    .await
                    .map_err(db)?;
            rows.iter()
                .map(|row| {
                    Ok(NextOffset {
                        topic: row.try_get("topic").map_err(db)?,
                        partition: row.try_get("partition").map_err(db)?,
                        offset: row.try_get("next_offset").map_err(db)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn get(&self, task_id: Uuid) -> BoxFuture<'static, Result<Option<TaskView>, StoreError>> {
        let (pool, redact) = (self.pool.clone(), self.redact.clone());
        async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM results_view_tasks WHERE task_id = $1"
            )))
            .bind(task_id.as_bytes().as_slice())
            .fetch_optional(&pool)
            .await
            .map_err(|err| redact.error("reading a task", err))?;
            row.as_ref().map(|row| view_of(row, &redact)).transpose()
        }
        .boxed()
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'static, Result<Page, StoreError>> {
        let (pool, redact) = (self.pool.clone(), self.redact.clone());
        async move {
            // One statement a shape, so that each uses its index, binding only what it
            // names (PostgreSQL refuses extra parameters); every piece is a constant of
            // this file, the values are bound.
            let mut sql = format!("SELECT {COLUMNS} FROM results_view_tasks WHERE TRUE");
            let mut n = 0;
            let mut param = || {
                n += 1;
                format!("${n}")
            };
            if query.status.is_some() {
                sql.push_str(&format!(" AND status = {}", param()));
            }
            if query.after.is_some() {
                let (at, id) = (param(), param());
                sql.push_str(&format!(" AND (created_at, task_id) < ({at}, {id})"));
            }
            sql.push_str(&format!(
                " ORDER BY created_at DESC, task_id DESC LIMIT {}",
                param()
            ));
            let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(status) = query.status {
                statement = statement.bind(status.as_str());
            }
            if let Some(after) = query.after {
                statement = statement
                    .bind(after.created_at_ns)
                    .bind(after.task_id.as_bytes().to_vec());
            }
            let rows = statement
                .bind(i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX))
                .fetch_all(&pool)
                .await
                .map_err(|err| redact.error("listing tasks", err))?;
            let found = rows
                .iter()
                .map(|row| view_of(row, &redact))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::of(found, query.limit))
        }
        .boxed()
    }

    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'static, Result<u64, StoreError>> {
        let (pool, redact) = (self.pool.clone(), self.redact.clone());
        async move {
            let mut removed = 0;
            loop {
                let done = sqlx::query(PRUNE)
                    .bind(nanos(before))
                    .bind(PRUNE_CHUNK)
                    .execute(&pool)
                    .await
                    .map_err(|err| redact.error("pruning tasks", err))?
                    .rows_affected();
                removed += done;
                if done < PRUNE_CHUNK as u64 {
                    return Ok(removed);
                }
            }
        }
        .boxed()
    }

    fn shared(&self) -> bool {
        true
    }
}

/// `value` as JSON text.
fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

/// The view a row of [`COLUMNS`] holds.
fn view_of(row: &PgRow, redact: &Redact) -> Result<TaskView, StoreError> {
    let db = |err| redact.error("reading a task row", err);
    StoredRow {
        task_id: row.try_get("task_id").map_err(db)?,
        status: row.try_get("status").map_err(db)?,
        task: row.try_get("task").map_err(db)?,
        result: row.try_get("result").map_err(db)?,
        created_at_ns: row.try_get("created_at").map_err(db)?,
        result_partition: row.try_get("result_partition").map_err(db)?,
        result_offset: row.try_get("result_offset").map_err(db)?,
    }
    .into_view()
}

/// Blanks the password of the database URL out of error messages.
#[derive(Debug, Clone, Default)]
pub(super) struct Redact(UrlPassword);

impl Redact {
    /// The password of `url` ([`UrlPassword::of`]).
    pub(super) fn of_url(url: &str) -> Self {
        Self(UrlPassword::of(url))
    }

    /// [`StoreError::Postgres`]: `doing: err`, without the password.
    pub(super) fn error(&self, doing: &str, err: impl fmt::Display) -> StoreError {
        StoreError::Postgres(self.0.blank(&format!("{doing}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_the_url_is_blanked_out_of_errors() {
        let redact = Redact::of_url("postgres://app:s3cr%40t@db.example:5432/app?sslmode=require");
        let err = redact.error("connecting", "auth failed for app:s3cr%40t and s3cr@t");
        assert_eq!(
            err.to_string(),
            "results store: connecting: auth failed for app:*** and ***"
        );
        let redact = Redact::of_url("postgres://app@db/app?password=hunter2&x=1");
        assert!(
            !redact
                .error("x", "bad password hunter2")
                .to_string()
                .contains("hunter2")
        );
        let redact = Redact::of_url("postgres://postgres@127.0.0.1/test");
        assert_eq!(
            redact.error("x", "refused").to_string(),
            "results store: x: refused"
        );
    }

    #[tokio::test]
    async fn connecting_to_no_server_fails_at_once_and_the_error_holds_no_password() {
        let started = std::time::Instant::now();
        let err = PostgresStore::connect("postgres://app:s3cr%40t@127.0.0.1:1/view")
            .await
            .expect_err("nothing listens on port 1");
        let message = err.to_string();
        assert!(matches!(err, StoreError::Postgres(_)), "{message}");
        assert!(!message.contains("s3cr"), "{message}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{message}"
        );
    }
}
