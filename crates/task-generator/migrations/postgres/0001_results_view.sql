-- The results view: one row a task, and the offsets reading has reached. The tables are
-- named for the view, so they cannot clash with the checkpointer's in the same database;
-- the applied migrations are recorded in `_results_view_migrations` (see postgres.rs).
CREATE TABLE results_view_tasks (
    task_id          BYTEA   NOT NULL PRIMARY KEY  -- the UUID's 16 bytes: sorts as Rust's `Uuid`
                     CHECK (octet_length(task_id) = 16),
    status           TEXT    NOT NULL,             -- pending | completed | failed
    task             TEXT,                         -- the task as JSON; NULL until seen
    result           TEXT,                         -- the result as JSON; NULL while pending
    created_at       BIGINT  NOT NULL,             -- ns since the Unix epoch
    result_partition INTEGER,                      -- where `result` sits in the results topic
    result_offset    BIGINT
);

-- GET /task-results: newest first, by (created_at, task_id), with or without a status.
-- The first also serves prune's `created_at <` scan.
CREATE INDEX results_view_tasks_newest ON results_view_tasks (created_at DESC, task_id DESC);
CREATE INDEX results_view_tasks_status_newest
    ON results_view_tasks (status, created_at DESC, task_id DESC);

-- Where reading resumes: stored in the same transaction as the rows they produced.
CREATE TABLE results_view_offsets (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition)
);
