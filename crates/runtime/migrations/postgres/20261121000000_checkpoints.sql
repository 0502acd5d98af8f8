-- Checkpoints of graph runs (agent_core::graph::Checkpoint), written by
-- agent_runtime::checkpoint::PostgresSaver. JSON is kept as bytea: the exact bytes
-- written come back (jsonb would reorder keys and refuses \u0000), and nothing is
-- parsed on the write path.

-- One row per checkpoint: one per superstep of a run, plus the run's input and each
-- update_state. `checkpoint` is the encoded Checkpoint (it carries the format version)
-- with its `state` replaced by the layout of the state's blobs; `blobs` lists the
-- hashes of those blobs, in layout order.
CREATE TABLE checkpoints (
    thread_id     text               NOT NULL,
    -- v7 UUIDs: byte order ("C") is time order, whatever the database's collation.
    checkpoint_id text COLLATE "C"   NOT NULL,
    parent_id     text COLLATE "C",
    step          bigint             NOT NULL,
    source        text               NOT NULL,
    created_at    timestamptz        NOT NULL,
    checkpoint    bytea              NOT NULL,
    blobs         bytea[]            NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id)
);

-- The state's parts, content-addressed per thread: a top-level field of the state (or
-- a chunk of an array field, or a whole non-object state), keyed by the SHA-256 of its
-- JSON. A part that does not change between supersteps is stored once.
CREATE TABLE checkpoint_blobs (
    thread_id text  NOT NULL,
    hash      bytea NOT NULL,
    -- The field the part was first stored for (for people reading the table).
    key       text  NOT NULL,
    value     bytea NOT NULL,
    PRIMARY KEY (thread_id, hash)
);

-- Pending writes: the output (or interrupt) of each task that finished in a superstep
-- that did not, recorded against the checkpoint the superstep started from. `seq`
-- keeps the order they were recorded in; a write replaces an earlier one of its task.
CREATE TABLE checkpoint_writes (
    thread_id     text             NOT NULL,
    checkpoint_id text COLLATE "C" NOT NULL,
    task_id       text             NOT NULL,
    seq           bigserial        NOT NULL,
    write         bytea            NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id, task_id)
);
