//! `SqliteSaver` on files in a temporary folder, one file a test: the suite, then what
//! only a file shows — several savers (processes) on one file at once, many tasks
//! writing at once, a file that cannot be opened.

use std::path::PathBuf;

use agent_core::graph::{CheckpointError, Checkpointer};
use agent_runtime::checkpoint::SqliteSaver;
use serde_json::json;

use crate::suite::{Fixture, Stored, checkpoint, run_suite, thread, write};

/// A temporary folder holding the test's file, `checkpoints.sqlite` (removed when
/// dropped).
pub(crate) struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("checkpoints.sqlite")
    }
}

run_suite!(Sqlite);

impl Fixture for Sqlite {
    type Saver = SqliteSaver;

    async fn start() -> Option<Self> {
        Some(Self::new())
    }

    async fn open(&self) -> SqliteSaver {
        SqliteSaver::open(self.path()).await.expect("opens")
    }

    async fn delete_thread(&self, saver: &SqliteSaver, thread: &str) {
        saver.delete_thread(thread).await.expect("deletes");
    }

    async fn stored(&self, saver: &SqliteSaver, thread: &str) -> Stored {
        let (checkpoints, messages_bytes, total_bytes) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = ?1),
                    (SELECT sum(length(value)) FROM checkpoint_blobs
                      WHERE thread_id = ?1 AND key = 'messages'),
                    (SELECT sum(length(value)) FROM checkpoint_blobs WHERE thread_id = ?1)
                  + (SELECT sum(length(checkpoint) + length(blobs))
                       FROM checkpoints WHERE thread_id = ?1)",
        )
        .bind(thread)
        .fetch_one(saver.pool())
        .await
        .expect("sizes");
        Stored {
            checkpoints,
            messages_bytes,
            total_bytes,
        }
    }

    async fn set_newest_body(&self, saver: &SqliteSaver, thread: &str, body: &'static [u8]) {
        sqlx::query(
            "UPDATE checkpoints SET checkpoint = ?2
              WHERE thread_id = ?1
                AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = ?1)",
        )
        .bind(thread)
        .bind(body)
        .execute(saver.pool())
        .await
        .expect("corrupts");
    }

    async fn drop_newest_and_blobs_of(&self, saver: &SqliteSaver, thread: &str, key: &str) {
        let mut tx = saver.pool().begin().await.expect("begins");
        sqlx::query(
            "DELETE FROM checkpoints WHERE thread_id = ?1
                AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = ?1)",
        )
        .bind(thread)
        .execute(&mut *tx)
        .await
        .expect("deletes the newest");
        sqlx::query("DELETE FROM checkpoint_blobs WHERE thread_id = ?1 AND key = ?2")
            .bind(thread)
            .bind(key)
            .execute(&mut *tx)
            .await
            .expect("deletes the blobs");
        tx.commit().await.expect("commits");
    }
}

#[tokio::test]
async fn two_savers_opened_on_one_new_file_at_once_share_it() {
    let dir = Sqlite::new();
    // A folder that is not there yet: created.
    let path = dir.dir.path().join("data").join("checkpoints.sqlite");
    // Both migrate the new file at the same moment: one waits for the other.
    let (a, b) = tokio::join!(SqliteSaver::open(&path), SqliteSaver::open(&path));
    let (a, b) = (a.expect("one opens"), b.expect("the other opens"));

    let t = thread();
    let first = checkpoint(None, json!({"count": 0, "log": []}));
    let second = checkpoint(Some(&first), json!({"count": 1, "log": ["a"]}));
    a.put(&t, first.clone()).await.expect("a saves");
    b.put(&t, second.clone()).await.expect("b saves");
    a.put_writes(&t, &second.id, vec![write("1:x:0", 1)])
        .await
        .expect("a writes");
    b.put_writes(&t, &second.id, vec![write("1:y:1", 2)])
        .await
        .expect("b writes");
    for saver in [&a, &b] {
        let newest = saver.get(&t, None).await.expect("reads").expect("some");
        assert_eq!(newest.checkpoint, second);
        let order: Vec<_> = newest.pending_writes.iter().map(|w| &w.task_id).collect();
        assert_eq!(order, ["1:x:0", "1:y:1"]);
        assert_eq!(
            saver.list(&t, None).await.expect("lists"),
            [second.clone(), first.clone()]
        );
    }
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(a.pool())
        .await
        .expect("reads the journal mode");
    assert_eq!(journal, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_writing_at_once_through_two_savers_all_succeed() {
    const TASKS: usize = 64;
    const STEPS: u32 = 5;
    let db = Sqlite::new();
    // Two processes on one file, each with its pool of 4 connections.
    let savers = [db.open().await, db.open().await];
    let runs: Vec<_> = (0..TASKS)
        .map(|i| {
            let saver = savers[i % 2].clone();
            tokio::spawn(async move {
                let t = format!("task-{i}");
                let mut saved = Vec::new();
                for step in 0..STEPS {
                    let c = checkpoint(
                        saved.last(),
                        json!({"count": step, "log": vec![format!("task {i}"); 50]}),
                    );
                    saver.put(&t, c.clone()).await?;
                    saver
                        .put_writes(&t, &c.id, vec![write(&format!("{step}:a:0"), step)])
                        .await?;
                    saved.push(c);
                }
                Ok::<_, CheckpointError>((t, saved))
            })
        })
        .collect();
    for run in runs {
        let (t, mut saved) = run
            .await
            .expect("the task ends")
            .expect("every write of every task lands");
        // Read through the other saver than the one that wrote.
        let reader = &savers[1];
        let newest = reader.get(&t, None).await.expect("reads").expect("some");
        assert_eq!(newest.pending_writes.len(), 1);
        saved.reverse();
        assert_eq!(reader.list(&t, None).await.expect("lists"), saved);
    }
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_is_an_error_naming_it() {
    let db = Sqlite::new();
    // Its folder would have to be made inside a file.
    let file = db.dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("writes");
    let path = file.join("checkpoints.sqlite");
    let err = SqliteSaver::open(&path).await.expect_err("no folder");
    assert!(matches!(err, CheckpointError::Backend(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "checkpoint storage failed: creating the folder of {}:",
            path.display()
        )),
        "{message}"
    );

    // Not a database.
    std::fs::write(db.path(), vec![b'x'; 8192]).expect("writes");
    let err = SqliteSaver::open(db.path()).await.expect_err("not SQLite");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "checkpoint storage failed: opening {}:",
            db.path().display()
        )),
        "{message}"
    );
    assert!(message.contains("not a database"), "{message}");
}

#[tokio::test]
async fn a_row_whose_blob_hashes_are_cut_short_is_corrupt() {
    let db = Sqlite::new();
    let saver = db.open().await;
    let t = thread();
    let c = checkpoint(None, json!({"count": 0}));
    saver.put(&t, c.clone()).await.expect("saves");
    sqlx::query("UPDATE checkpoints SET blobs = substr(blobs, 1, 31) WHERE thread_id = ?1")
        .bind(&t)
        .execute(saver.pool())
        .await
        .expect("cuts");
    for err in [
        saver.get(&t, None).await.map(|_| ()).expect_err("corrupt"),
        saver.list(&t, None).await.map(|_| ()).expect_err("corrupt"),
    ] {
        assert!(
            matches!(&err, CheckpointError::Corrupt(m)
                if m == &format!("checkpoint {}: its blob hashes take 31 bytes, not a multiple of 32", c.id)),
            "{err:?}"
        );
    }
}
