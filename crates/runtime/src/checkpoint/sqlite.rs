//! [`SqliteSaver`]: checkpoints in an SQLite file through sqlx.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    path::Path,
    time::{Duration, Instant},
};

use agent_core::graph::{Checkpoint, CheckpointError, CheckpointTuple, Checkpointer, PendingWrite};
use futures::future::BoxFuture;
use sqlx::{
    Row, SqliteConnection,
    migrate::{MigrateError, Migrator},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

use super::{
    blob::HASH_BYTES,
    row::{self, Encoded},
};

/// Where the applied migrations are recorded: the table name of
/// [`PostgresSaver`](super::PostgresSaver)'s, so a file shared with an application's
/// own sqlx migrations keeps the two apart.
const MIGRATIONS_TABLE: &str = "_agent_checkpoint_migrations";

/// Connections in the pool: one writer at a time (SQLite's rule) and readers beside it
/// (WAL mode lets them read while it writes). As the results view's `SqliteStore`.
const MAX_CONNECTIONS: u32 = 4;

/// Pages of SQLite's cache a connection keeps (`PRAGMA cache_size`, KiB when negative):
/// 2 MiB each, 8 MiB for the pool, as the results view's `SqliteStore`. A run reads
/// back only its thread's newest checkpoint, by primary key.
const CACHE_KIB: i64 = 2 * 1024;

/// How a write transaction begins: with the file's write lock, waited for under the
/// busy timeout. A deferred `BEGIN` takes it at the first write, and a transaction
/// that has read by then cannot wait for it (SQLite answers `SQLITE_BUSY` at once
/// rather than break the transaction's snapshot).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Stores a state blob unless the thread already has it.
const PUT_BLOB: &str = "
INSERT INTO checkpoint_blobs (thread_id, hash, key, value) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (thread_id, hash) DO NOTHING";

/// Saves a checkpoint row (after its blobs, in the same transaction); saving one again
/// (a retry) replaces it.
const PUT: &str = "
INSERT INTO checkpoints
    (thread_id, checkpoint_id, parent_id, step, source, created_at, checkpoint, blobs)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (thread_id, checkpoint_id) DO UPDATE SET
    parent_id = excluded.parent_id,
    step = excluded.step,
    source = excluded.source,
    created_at = excluded.created_at,
    checkpoint = excluded.checkpoint,
    blobs = excluded.blobs";

/// Records one pending write after those of its checkpoint; one of a task already there
/// is replaced and moves to the end (the next `seq`).
const PUT_WRITE: &str = "
INSERT INTO checkpoint_writes (thread_id, checkpoint_id, task_id, seq, write)
VALUES (?1, ?2, ?3,
        (SELECT coalesce(max(seq), 0) + 1 FROM checkpoint_writes
          WHERE thread_id = ?1 AND checkpoint_id = ?2),
        ?4)
ON CONFLICT (thread_id, checkpoint_id, task_id) DO UPDATE SET
    write = excluded.write,
    seq = excluded.seq";

/// The newest checkpoint row of thread `?1`, or its checkpoint `?2`.
const GET: &str = "
SELECT checkpoint_id, checkpoint, blobs
  FROM checkpoints
 WHERE thread_id = ?1 AND (?2 IS NULL OR checkpoint_id = ?2)
 ORDER BY checkpoint_id DESC
 LIMIT 1";

/// The pending writes of checkpoint `?2` of thread `?1`, in order.
const WRITES: &str = "
SELECT write FROM checkpoint_writes
 WHERE thread_id = ?1 AND checkpoint_id = ?2
 ORDER BY seq";

/// The checkpoint rows of thread `?1`, newest first, at most `?2` (negative: all).
const LIST: &str = "
SELECT checkpoint_id, checkpoint, blobs
  FROM checkpoints
 WHERE thread_id = ?1
 ORDER BY checkpoint_id DESC
 LIMIT ?2";

/// The stored blobs of thread `?1` among the hashes `?2` (32-byte hashes one after the
/// other, as in `checkpoints.blobs`): `(hash, value)`. SQLite has no arrays, so a
/// recursive CTE counts through the hashes; `CROSS JOIN` keeps it the outer loop, one
/// primary-key lookup a hash.
const BLOBS: &str = "
WITH RECURSIVE n(i) AS (
    SELECT 0
     UNION ALL
    SELECT i + 1 FROM n WHERE (i + 1) * 32 < length(?2)
)
SELECT b.hash, b.value
  FROM n CROSS JOIN checkpoint_blobs b
 WHERE b.thread_id = ?1 AND b.hash = substr(?2, n.i * 32 + 1, 32)";

/// Removes a thread: its writes, blobs and checkpoints (one transaction).
const DELETE_THREAD: [&str; 3] = [
    "DELETE FROM checkpoint_writes WHERE thread_id = ?1",
    "DELETE FROM checkpoint_blobs WHERE thread_id = ?1",
    "DELETE FROM checkpoints WHERE thread_id = ?1",
];

/// A [`Checkpointer`] in an SQLite file (LangGraph's `SqliteSaver`, of
/// `langgraph-checkpoint-sqlite`): durable on one machine with nothing to install. The
/// checkpoints outlive the process; another process opening the same file (a solver
/// restarted) reads a thread's state and history, resumes an interrupt or travels back
/// in time.
///
/// The tables and behaviour of [`PostgresSaver`](super::PostgresSaver), in SQLite's
/// types (the crate's `migrations/sqlite`, [`setup`](Self::setup)):
///
/// - `checkpoints (thread_id, checkpoint_id, parent_id, step, source, created_at,
///   checkpoint, blobs)`: one row per checkpoint; `checkpoint` the checkpoint encoded as
///   by [`Checkpoint::encode`] with the state replaced by its layout, `blobs` the
///   SHA-256 hashes of the state's parts one after the other (32 bytes each). Checkpoint
///   ids (v7 UUIDs) compare as bytes, so newest is last.
/// - `checkpoint_blobs (thread_id, hash, key, value)`: the state's parts, stored once
///   per thread however many checkpoints refer to them.
/// - `checkpoint_writes (thread_id, checkpoint_id, task_id, seq, write)`: pending
///   writes, in the order recorded; a write of a task already there replaces it and
///   moves to the end.
///
/// The file is opened in WAL mode with `synchronous=NORMAL`: a saved checkpoint
/// survives a crash of the process; a power loss may lose the last ones (a run then
/// resumes from an earlier checkpoint). Each `put`, `put_writes` and
/// [`delete_thread`](Self::delete_thread) is one transaction that takes the file's one
/// write lock at its start, waiting up to [`BUSY_TIMEOUT`](Self::BUSY_TIMEOUT) for it
/// (for the pool's other connections and for other processes on the file); a `get` or
/// `list` reads one snapshot and never waits for a writer.
///
/// A checkpoint read back equals the one saved. A row written by another format version
/// is [`CheckpointError::Incompatible`]; an unreadable one (or a missing blob)
/// [`CheckpointError::Corrupt`]; a failure of the file (cannot be opened, locked past
/// the busy timeout, disk full) [`CheckpointError::Backend`], saying what was being
/// done.
///
/// Cheap to clone: clones share the pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), agent_core::graph::CheckpointError> {
/// use std::sync::Arc;
/// use agent_runtime::checkpoint::SqliteSaver;
///
/// let saver = SqliteSaver::open("data/checkpoints.sqlite").await?;
/// // graph.compile_with_checkpointer(Arc::new(saver))
/// # let _ = Arc::new(saver);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteSaver {
    pool: SqlitePool,
}

impl SqliteSaver {
    /// How long a write waits for the file's one write lock — held by another
    /// connection of the pool or another process on the same file, a few milliseconds
    /// a write — before it fails (`PRAGMA busy_timeout`).
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

    /// Opens the database at `path` (creating the file and its folder when missing) in
    /// WAL mode with `synchronous=NORMAL` and a busy timeout of
    /// [`BUSY_TIMEOUT`](Self::BUSY_TIMEOUT), with a pool of up to 4 connections, and
    /// runs the migrations.
    ///
    /// # Errors
    /// [`CheckpointError::Backend`] naming `path` when the folder or file cannot be
    /// created or opened, or the migrations fail (a file written by a newer version
    /// among them).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let failed = |doing: &str, err: &dyn fmt::Display| {
            backend(&format!("{doing} {}", path.display()), err)
        };
        if let Some(folder) = path.parent()
            && !folder.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(folder)
                .await
                .map_err(|e| failed("creating the folder of", &e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Self::BUSY_TIMEOUT)
            .pragma("cache_size", (-CACHE_KIB).to_string());
        let pool = connect(options).await.map_err(|e| failed("opening", &e))?;
        let saver = Self { pool };
        saver
            .migrate()
            .await
            .map_err(|e| failed("migrating the checkpoint tables of", &e))?;
        Ok(saver)
    }

    /// A saver over an existing pool. Run [`setup`](Self::setup) once before use; the
    /// pool's options (journal mode, busy timeout) are the caller's.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Creates or upgrades the tables (the crate's `migrations/sqlite`, recorded in
    /// `_agent_checkpoint_migrations`). Idempotent; savers opening one file at once
    /// migrate it one after the other, under the file's write lock.
    ///
    /// # Errors
    /// [`CheckpointError::Backend`] when a migration fails.
    pub async fn setup(&self) -> Result<(), CheckpointError> {
        self.migrate()
            .await
            .map_err(|e| backend("migrating the checkpoint tables", &e))
    }

    async fn migrate(&self) -> Result<(), MigrateError> {
        let mut migrator: Migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        // sqlx's migrator takes no lock on SQLite: the write lock of one transaction
        // around it does (each migration's own transaction becomes a savepoint of it).
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        migrator.run(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Deletes every checkpoint, blob and pending write of `thread_id` (LangGraph's
    /// `delete_thread`).
    ///
    /// # Errors
    /// [`CheckpointError::Backend`] when the database fails.
    pub async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError> {
        let failed = |e: sqlx::Error| backend("deleting a thread", &e);
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(failed)?;
        for statement in DELETE_THREAD {
            sqlx::query(statement)
                .bind(thread_id)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }
}

/// The pool over `options`, one connection opened now so that a file that cannot be
/// opened fails at once. Tried again while the file is busy, up to
/// [`SqliteSaver::BUSY_TIMEOUT`]: turning a new file to WAL takes a lock that SQLite's
/// busy timeout does not wait for, so savers creating one file at once would see
/// `database is locked`.
async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let deadline = Instant::now() + SqliteSaver::BUSY_TIMEOUT;
    loop {
        match SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
        {
            Err(err) if is_busy(&err) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            opened => return opened,
        }
    }
}

/// Whether `err` is SQLite's `SQLITE_BUSY` (5), or one of its extended codes.
fn is_busy(err: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    err.as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// A [`CheckpointError::Backend`]: what was being done, and why it failed.
fn backend(doing: &str, err: &dyn fmt::Display) -> CheckpointError {
    CheckpointError::Backend(format!("{doing}: {err}"))
}

/// A checkpoint row read: its id, body and blob hashes.
struct Stored {
    id: String,
    body: Vec<u8>,
    refs: Vec<u8>,
}

impl Stored {
    fn of(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("checkpoint_id")?,
            body: row.try_get("checkpoint")?,
            refs: row.try_get("blobs")?,
        })
    }

    /// The hashes of the state's blobs, in layout order.
    fn hashes(&self) -> Result<std::slice::ChunksExact<'_, u8>, CheckpointError> {
        if !self.refs.len().is_multiple_of(HASH_BYTES) {
            return Err(CheckpointError::Corrupt(format!(
                "checkpoint {}: its blob hashes take {} bytes, not a multiple of {HASH_BYTES}",
                self.id,
                self.refs.len()
            )));
        }
        Ok(self.refs.chunks_exact(HASH_BYTES))
    }

    /// The checkpoint, its state put back together from `blobs` (hash → value).
    fn decode(&self, blobs: &HashMap<Vec<u8>, Vec<u8>>) -> Result<Checkpoint, CheckpointError> {
        let values = self.hashes()?.map(|h| blobs.get(h).cloned()).collect();
        row::decode(&self.body, values)
    }
}

/// The blobs of `thread` among the concatenated `hashes`: hash → value (a hash that is
/// not stored is absent).
async fn blobs(
    conn: &mut SqliteConnection,
    thread: &str,
    hashes: Vec<u8>,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, sqlx::Error> {
    let found: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(BLOBS)
        .bind(thread)
        .bind(hashes)
        .fetch_all(conn)
        .await?;
    Ok(found.into_iter().collect())
}

impl Checkpointer for SqliteSaver {
    fn put(
        &self,
        thread_id: &str,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'static, Result<(), CheckpointError>> {
        let (pool, thread) = (self.pool.clone(), thread_id.to_owned());
        Box::pin(async move {
            let row = Encoded::encode(checkpoint)?;
            let failed = |e: sqlx::Error| backend("saving a checkpoint", &e);
            let mut tx = pool.begin_with(BEGIN_WRITE).await.map_err(failed)?;
            for b in &row.split.blobs {
                sqlx::query(PUT_BLOB)
                    .bind(&thread)
                    .bind(&b.hash)
                    .bind(&b.key)
                    .bind(&b.value)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
            }
            sqlx::query(PUT)
                .bind(&thread)
                .bind(&row.checkpoint_id)
                .bind(&row.parent_id)
                .bind(row.step)
                .bind(row.source)
                .bind(row.created_at)
                .bind(&row.body)
                .bind(row.split.refs.concat())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)
        })
    }

    fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: &str,
        writes: Vec<PendingWrite>,
    ) -> BoxFuture<'static, Result<(), CheckpointError>> {
        let pool = self.pool.clone();
        let (thread, checkpoint_id) = (thread_id.to_owned(), checkpoint_id.to_owned());
        Box::pin(async move {
            let writes = row::encode_writes(writes)?;
            if writes.is_empty() {
                return Ok(());
            }
            let failed = |e: sqlx::Error| backend("saving pending writes", &e);
            let mut tx = pool.begin_with(BEGIN_WRITE).await.map_err(failed)?;
            for (task_id, write) in &writes {
                sqlx::query(PUT_WRITE)
                    .bind(&thread)
                    .bind(&checkpoint_id)
                    .bind(task_id)
                    .bind(write)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
            }
            tx.commit().await.map_err(failed)
        })
    }

    fn get(
        &self,
        thread_id: &str,
        checkpoint_id: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<CheckpointTuple>, CheckpointError>> {
        let (pool, thread) = (self.pool.clone(), thread_id.to_owned());
        let checkpoint_id = checkpoint_id.map(str::to_owned);
        Box::pin(async move {
            let failed = |e: sqlx::Error| backend("reading a checkpoint", &e);
            // One read transaction: the row, its blobs and its writes of one snapshot.
            let mut tx = pool.begin().await.map_err(failed)?;
            let Some(found) = sqlx::query(GET)
                .bind(&thread)
                .bind(&checkpoint_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed)?
            else {
                return Ok(None);
            };
            let stored = Stored::of(&found).map_err(failed)?;
            let blobs = blobs(&mut tx, &thread, stored.refs.clone())
                .await
                .map_err(failed)?;
            let writes: Vec<Vec<u8>> = sqlx::query_scalar(WRITES)
                .bind(&thread)
                .bind(&stored.id)
                .fetch_all(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            let checkpoint = stored.decode(&blobs)?;
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
        let (pool, thread) = (self.pool.clone(), thread_id.to_owned());
        // A negative LIMIT is no limit.
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        Box::pin(async move {
            let failed = |e: sqlx::Error| backend("listing checkpoints", &e);
            let mut tx = pool.begin().await.map_err(failed)?;
            let rows = sqlx::query(LIST)
                .bind(&thread)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(failed)?;
            let stored = rows
                .iter()
                .map(Stored::of)
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            // Each blob once, however many of the checkpoints refer to it.
            let mut wanted = HashSet::new();
            for s in &stored {
                wanted.extend(s.hashes()?);
            }
            let blobs = blobs(
                &mut tx,
                &thread,
                wanted.into_iter().collect::<Vec<_>>().concat(),
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            stored.iter().map(|s| s.decode(&blobs)).collect()
        })
    }
}
