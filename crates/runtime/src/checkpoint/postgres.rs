//! [`PostgresSaver`]: checkpoints in PostgreSQL through sqlx.

use std::{fmt, str::FromStr};

use agent_core::graph::{Checkpoint, CheckpointError, CheckpointTuple, Checkpointer, PendingWrite};
use futures::future::BoxFuture;
use sqlx::{
    Connection, Row,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};

use super::row::{self, Encoded};
use crate::redact::UrlPassword;

/// Where the applied migrations are recorded: a table of its own, so the schema's
/// versions never mix with those of an application's own sqlx migrations in the same
/// database.
const MIGRATIONS_TABLE: &str = "_agent_checkpoint_migrations";

/// Saves a checkpoint: its state blobs that are new, then the row (one statement, so
/// one round trip and atomic). `$8..$10` are the blobs to store, `$11` the hashes the
/// row refers to.
const PUT: &str = r#"
WITH new_blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, hash, key, value)
    SELECT $1, b.hash, b.key, b.value
      FROM unnest($8::bytea[], $9::text[], $10::bytea[]) AS b(hash, key, value)
    ON CONFLICT (thread_id, hash) DO NOTHING
)
INSERT INTO checkpoints
    (thread_id, checkpoint_id, parent_id, step, source, created_at, checkpoint, blobs)
VALUES ($1, $2, $3, $4, $5, $6, $7, $11)
ON CONFLICT (thread_id, checkpoint_id) DO UPDATE SET
    parent_id = EXCLUDED.parent_id,
    step = EXCLUDED.step,
    source = EXCLUDED.source,
    created_at = EXCLUDED.created_at,
    checkpoint = EXCLUDED.checkpoint,
    blobs = EXCLUDED.blobs
"#;

/// Records pending writes in order; one of a task already there is replaced and moves
/// to the end (a new `seq`).
const PUT_WRITES: &str = r#"
INSERT INTO checkpoint_writes (thread_id, checkpoint_id, task_id, write)
SELECT $1, $2, w.task_id, w.write
  FROM unnest($3::text[], $4::bytea[]) WITH ORDINALITY AS w(task_id, write, n)
 ORDER BY w.n
ON CONFLICT (thread_id, checkpoint_id, task_id) DO UPDATE SET
    write = EXCLUDED.write,
    seq = EXCLUDED.seq
"#;

/// The newest checkpoint of thread `$1`, or checkpoint `$2`: the row, its state blobs
/// in layout order (NULL for a missing one) and its pending writes in order.
const GET: &str = r#"
SELECT c.checkpoint,
       ARRAY(SELECT b.value
               FROM unnest(c.blobs) WITH ORDINALITY AS r(hash, n)
               LEFT JOIN checkpoint_blobs b ON b.thread_id = c.thread_id AND b.hash = r.hash
              ORDER BY r.n) AS blob_values,
       ARRAY(SELECT w.write
               FROM checkpoint_writes w
              WHERE w.thread_id = c.thread_id AND w.checkpoint_id = c.checkpoint_id
              ORDER BY w.seq) AS writes
  FROM checkpoints c
 WHERE c.thread_id = $1 AND ($2::text IS NULL OR c.checkpoint_id = $2)
 ORDER BY c.checkpoint_id DESC
 LIMIT 1
"#;

/// The checkpoints of thread `$1`, newest first, at most `$2` (NULL: all), with their
/// state blobs as in [`GET`].
const LIST: &str = r#"
SELECT c.checkpoint,
       ARRAY(SELECT b.value
               FROM unnest(c.blobs) WITH ORDINALITY AS r(hash, n)
               LEFT JOIN checkpoint_blobs b ON b.thread_id = c.thread_id AND b.hash = r.hash
              ORDER BY r.n) AS blob_values
  FROM checkpoints c
 WHERE c.thread_id = $1
 ORDER BY c.checkpoint_id DESC
 LIMIT $2
"#;

/// Removes a thread: its checkpoints, blobs and writes.
const DELETE_THREAD: &str = r#"
WITH w AS (DELETE FROM checkpoint_writes WHERE thread_id = $1),
     b AS (DELETE FROM checkpoint_blobs WHERE thread_id = $1)
DELETE FROM checkpoints WHERE thread_id = $1
"#;

/// A [`Checkpointer`] in PostgreSQL (LangGraph's `PostgresSaver`).
///
/// Three tables, created by the crate's migrations ([`setup`](Self::setup)):
///
/// - `checkpoints (thread_id, checkpoint_id, parent_id, step, source, created_at,
///   checkpoint, blobs)`: one row per checkpoint. `checkpoint` is the checkpoint encoded
///   as by [`Checkpoint::encode`] (carrying its format version) with the state replaced
///   by its layout; `blobs` the SHA-256 hashes of the state's parts.
/// - `checkpoint_blobs (thread_id, hash, key, value)`: the state's parts — each
///   top-level field of an object state, array fields in chunks of ~4 KiB — stored once
///   per thread however many checkpoints refer to them.
/// - `checkpoint_writes (thread_id, checkpoint_id, task_id, seq, write)`: pending writes.
///
/// A checkpoint read back equals the one saved. A row written by another format version
/// is [`CheckpointError::Incompatible`]; an unreadable one (or a missing blob)
/// [`CheckpointError::Corrupt`]; a database failure [`CheckpointError::Backend`], whose
/// message never holds the password of the database URL.
///
/// Cheap to clone: clones share the pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), agent_core::graph::CheckpointError> {
/// use std::sync::Arc;
/// use agent_runtime::checkpoint::PostgresSaver;
///
/// let saver = PostgresSaver::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// // graph.compile_with_checkpointer(Arc::new(saver))
/// # let _ = Arc::new(saver);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSaver {
    pool: PgPool,
    redact: Redact,
}

impl fmt::Debug for PostgresSaver {
    // Not the pool's: its connect options hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSaver")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresSaver {
    /// Connects a pool (sqlx's defaults: up to 10 connections) to `database_url`
    /// (`postgres://user:password@host:port/db`) and runs the migrations.
    ///
    /// # Errors
    /// [`CheckpointError::Backend`] when the database cannot be reached or the migrations
    /// fail; the message does not hold the URL's password.
    pub async fn connect(database_url: &str) -> Result<Self, CheckpointError> {
        let redact = Redact::of_url(database_url);
        let options = PgConnectOptions::from_str(database_url)
            .map_err(|e| redact.backend("reading the database URL", e))?;
        // One connection first, so that a server that is not there fails at once (a
        // pool retries until its acquire timeout, 30 s).
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| redact.backend("connecting to PostgreSQL", e))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new().connect_lazy_with(options);
        let saver = Self { pool, redact };
        saver.setup().await?;
        Ok(saver)
    }

    /// A saver over an existing pool. Run [`setup`](Self::setup) once before use.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            redact: Redact::default(),
        }
    }

    /// Creates or upgrades the tables (the crate's `migrations/postgres`, recorded in
    /// `_agent_checkpoint_migrations`). Idempotent; concurrent callers wait on a lock.
    ///
    /// # Errors
    /// [`CheckpointError::Backend`] when a migration fails.
    pub async fn setup(&self) -> Result<(), CheckpointError> {
        let mut migrator: Migrator = sqlx::migrate!("./migrations/postgres");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| self.redact.backend("migrating the checkpoint tables", e))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Deletes every checkpoint, blob and pending write of `thread_id` (LangGraph's
    /// `delete_thread`).
    ///
    /// # Errors
    /// [`CheckpointError::Backend`] when the database fails.
    pub async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError> {
        sqlx::query(DELETE_THREAD)
            .bind(thread_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.redact.backend("deleting a thread", e))?;
        Ok(())
    }
}

/// Reads a checkpoint from its row: `checkpoint` and `blob_values`.
fn decode(row: &PgRow, redact: &Redact) -> Result<Checkpoint, CheckpointError> {
    let body: Vec<u8> = row
        .try_get("checkpoint")
        .map_err(|e| redact.backend("reading a checkpoint row", e))?;
    let blobs: Vec<Option<Vec<u8>>> = row
        .try_get("blob_values")
        .map_err(|e| redact.backend("reading a checkpoint row", e))?;
    row::decode(&body, blobs)
}

impl Checkpointer for PostgresSaver {
    fn put(
        &self,
        thread_id: &str,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'static, Result<(), CheckpointError>> {
        let (pool, redact, thread) = (self.pool.clone(), self.redact.clone(), thread_id.to_owned());
        Box::pin(async move {
            let row = Encoded::encode(checkpoint)?;
            let (mut hashes, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
            for b in row.split.blobs {
                hashes.push(b.hash);
                keys.push(b.key);
                values.push(b.value);
            }
            sqlx::query(PUT)
                .bind(&thread)
                .bind(&row.checkpoint_id)
                .bind(&row.parent_id)
                .bind(row.step)
                .bind(row.source)
                .bind(row.created_at)
                .bind(&row.body)
                .bind(&hashes)
                .bind(&keys)
                .bind(&values)
                .bind(&row.split.refs)
                .execute(&pool)
                .await
                .map_err(|e| redact.backend("saving a checkpoint", e))?;
            Ok(())
        })
    }

    fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: &str,
        writes: Vec<PendingWrite>,
    ) -> BoxFuture<'static, Result<(), CheckpointError>> {
        let (pool, redact) = (self.pool.clone(), self.redact.clone());
        let (thread, checkpoint_id) = (thread_id.to_owned(), checkpoint_id.to_owned());
        Box::pin(async move {
            // A task written twice in one call: its last write, in its last place (one
            // statement cannot update a row twice).
            let writes = row::encode_writes(writes)?;
            if writes.is_empty() {
                return Ok(());
            }
            let (task_ids, encoded): (Vec<String>, Vec<Vec<u8>>) = writes.into_iter().unzip();
            sqlx::query(PUT_WRITES)
                .bind(&thread)
                .bind(&checkpoint_id)
                .bind(&task_ids)
                .bind(&encoded)
                .execute(&pool)
                .await
                .map_err(|e| redact.backend("saving pending writes", e))?;
            Ok(())
        })
    }

    fn get(
        &self,
        thread_id: &str,
        checkpoint_id: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<CheckpointTuple>, CheckpointError>> {
        let (pool, redact, thread) = (self.pool.clone(), self.redact.clone(), thread_id.to_owned());
        let checkpoint_id = checkpoint_id.map(str::to_owned);
        Box::pin(async move {
            let Some(row) = sqlx::query(GET)
                .bind(&thread)
                .bind(&checkpoint_id)
                .fetch_optional(&pool)
                .await
                .map_err(|e| redact.backend("reading a checkpoint", e))?
            else {
                return Ok(None);
            };
            let checkpoint = decode(&row, &redact)?;
            let writes: Vec<Vec<u8>> = row
                .try_get("writes")
                .map_err(|e| redact.backend("reading pending writes", e))?;
            let pending_writes = row::decode_writes(&checkpoint.id, &writes)?;
            Ok(Some(CheckpointTuple {
                checkpoint,
                pending_writes,
            }))
        })
    }

    fn list(
        &self,
        thread_id: &str,
        limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Checkpoint>, CheckpointError>> {
        let (pool, redact, thread) = (self.pool.clone(), self.redact.clone(), thread_id.to_owned());
        // LIMIT NULL is no limit.
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        Box::pin(async move {
            let rows = sqlx::query(LIST)
                .bind(&thread)
                .bind(limit)
                .fetch_all(&pool)
                .await
                .map_err(|e| redact.backend("listing checkpoints", e))?;
            rows.iter().map(|row| decode(row, &redact)).collect()
        })
    }
}

/// Blanks the password of the database URL out of error messages.
#[derive(Debug, Clone, Default)]
struct Redact(UrlPassword);

impl Redact {
    fn of_url(url: &str) -> Self {
        Self(UrlPassword::of(url))
    }

    fn backend(&self, doing: &str, err: impl fmt::Display) -> CheckpointError {
        CheckpointError::Backend(self.0.blank(&format!("{doing}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_the_url_is_blanked_out_of_errors() {
        let redact = Redact::of_url("postgres://app:s3cr%40t@db.example:5432/app?sslmode=require");
        let err = redact.backend("connecting", "auth failed for app:s3cr%40t and s3cr@t");
        assert_eq!(
            err.to_string(),
            "checkpoint storage failed: connecting: auth failed for app:*** and ***"
        );
        let redact = Redact::of_url("postgres://app@db/app?password=hunter2&x=1");
        assert!(
            !redact
                .backend("x", "bad password hunter2")
                .to_string()
                .contains("hunter2")
        );
        let redact = Redact::of_url("postgres://postgres@127.0.0.1/test");
        assert_eq!(
            redact.backend("x", "refused").to_string(),
            "checkpoint storage failed: x: refused"
        );
    }
}
