-- The results view: one row a task, and the offsets reading has reached.
CREATE TABLE IF NOT EXISTS task_views (
    task_id          BLOB    NOT NULL PRIMARY KEY, -- 16 bytes
    status           TEXT    NOT NULL,             -- pending | completed | failed
    task             TEXT,                         -- the task as JSON; NULL until seen
    result           TEXT,                         -- the result as JSON; NULL while pending
    created_at       INTEGER NOT NULL,             -- ns since the Unix epoch
    result_partition INTEGER,                      -- where `result` sits in the results topic
    result_offset    INTEGER
); -- a rowid table: its rows (~2 KB of JSON) are too large for WITHOUT ROWID

-- GET /task-results: newest first, by (created_at, task_id), with or without a status.
CREATE INDEX IF NOT EXISTS task_views_newest ON task_views (created_at DESC, task_id DESC);
CREATE INDEX IF NOT EXISTS task_views_status_newest
    ON task_views (status, created_at DESC, task_id DESC);

-- Where reading resumes: stored in the same transaction as the rows they produced.
CREATE TABLE IF NOT EXISTS view_offsets (
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
