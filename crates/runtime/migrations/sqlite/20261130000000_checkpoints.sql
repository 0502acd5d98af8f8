-- Checkpoints of graph runs (agent_core::graph::Checkpoint), written by
-- agent_runtime::checkpoint::SqliteSaver: the tables of the PostgreSQL schema
-- (../postgres) in SQLite's types, with the same meaning. JSON is kept as BLOB: the
-- exact bytes written come back, and nothing is parsed on the write path.

-- One row per checkpoint: one per superstep of a run, plus the run's input and each
-- update_state. `checkpoint` is the encoded Checkpoint (it carries the format version)
-- with its `state` replaced by the layout of the state's blobs; `blobs` holds the
-- SHA-256 hashes of those blobs in layout order, one after the other (32 bytes each).
CREATE TABLE checkpoints (
    thread_id     TEXT                 NOT NULL,
    -- v7 UUIDs: byte order (BINARY, SQLite's default, spelled out) is time order.
    checkpoint_id TEXT COLLATE BINARY  NOT NULL,
    parent_id     TEXT COLLATE BINARY,
    step          INTEGER              NOT NULL,
    source        TEXT                 NOT NULL,
    -- RFC 3339, UTC (the body holds the exact instant).
    created_at    TEXT                 NOT NULL,
    checkpoint    BLOB                 NOT NULL,
    blobs         BLOB                 NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id)
) STRICT;

-- The state's parts, content-addressed per thread: a top-level field of the state (or
-- a chunk of an array field, or a whole non-object state), keyed by the SHA-256 of its
-- JSON. A part that does not change between supersteps is stored once.
CREATE TABLE checkpoint_blobs (
    thread_id TEXT NOT NULL,
    hash      BLOB NOT NULL,
    -- The field the part was first stored for (for people reading the table).
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (thread_id, hash)
) STRICT;

-- Pending writes: the output (or interrupt) of each task that finished in a superstep
-- that did not, recorded against the checkpoint the superstep started from. `seq`
-- keeps the order they were recorded in (1, 2, … within a checkpoint); a write
-- replaces an earlier one of its task and takes the next `seq`.
CREATE TABLE checkpoint_writes (
    thread_id     TEXT                NOT NULL,
    checkpoint_id TEXT COLLATE BINARY NOT NULL,
    task_id       TEXT                NOT NULL,
    seq           INTEGER             NOT NULL,
    write         BLOB                NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id, task_id)
) STRICT;
