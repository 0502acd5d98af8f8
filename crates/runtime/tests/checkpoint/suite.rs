//! The behaviour every durable checkpointer shares, written once against a
//! [`Fixture`] (the database of one test) and run for each saver by [`run_suite!`]:
//! round trips, pending writes, a graph's history and time travel, durability modes,
//! a failed superstep's finished tasks not run again, an interrupt resumed by another
//! process, an unchanged history stored once, corrupt and incompatible rows.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use agent_core::graph::{
    Checkpoint, CheckpointError, CheckpointSource, Checkpointer, Command, CompiledGraph,
    Durability, END, GraphError, InMemorySaver, Interrupt, Message, NodeError, PendingWrite,
    RunConfig, RunContext, RunOutcome, START, StateGraph, checkpoint::TaskSpec,
};
use serde_json::json;

use crate::{Chat, ChatUpdate};

/// What one test of the suite stored, as read in the saver's own tables.
#[derive(Debug)]
pub(crate) struct Stored {
    /// Rows of `checkpoints`.
    pub(crate) checkpoints: i64,
    /// Bytes of the blobs of the `messages` field.
    pub(crate) messages_bytes: i64,
    /// Bytes of every blob, checkpoint body and list of blob hashes.
    pub(crate) total_bytes: i64,
}

/// The database of one test, and the few things the suite must do to it behind the
/// saver's back (its SQL differs per database).
pub(crate) trait Fixture: Sized {
    /// The saver under test.
    type Saver: Checkpointer + Clone + 'static;

    /// A database for one test; `None` (after a loud `SKIPPED` line) when there is none
    /// to test against.
    async fn start() -> Option<Self>;

    /// A saver on the database with a pool of its own, as another process would open.
    async fn open(&self) -> Self::Saver;

    /// The saver's `delete_thread`.
    async fn delete_thread(&self, saver: &Self::Saver, thread: &str);

    /// What `thread` takes in the tables.
    async fn stored(&self, saver: &Self::Saver, thread: &str) -> Stored;

    /// Overwrites the `checkpoint` column of `thread`'s newest checkpoint.
    async fn set_newest_body(&self, saver: &Self::Saver, thread: &str, body: &'static [u8]);

    /// Deletes `thread`'s newest checkpoint and the blobs of its field `key`, which the
    /// older checkpoints refer to.
    async fn drop_newest_and_blobs_of(&self, saver: &Self::Saver, thread: &str, key: &str);
}

/// One `#[tokio::test]` per test of the suite, against the fixture `$fixture`.
macro_rules! run_suite {
    ($fixture:ty) => {
        $crate::suite::run_suite!(@each $fixture:
            checkpoints_round_trip_exactly_and_list_newest_first,
            pending_writes_add_up_and_replace_by_task_id_as_in_memory,
            a_graph_keeps_its_history_and_travels_back_in_time,
            durability_modes_decide_which_checkpoints_reach_the_database,
            nodes_that_finished_in_a_failed_superstep_are_not_run_again,
            an_interrupt_is_resumed_by_another_process,
            an_unchanged_message_history_is_stored_once,
            a_corrupt_or_incompatible_row_is_a_clear_error,
        );
    };
    (@each $fixture:ty: $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                if let Some(db) = <$fixture as $crate::suite::Fixture>::start().await {
                    $crate::suite::$test(&db).await;
                }
            }
        )*
    };
}
pub(crate) use run_suite;

pub(crate) fn thread() -> String {
    format!("test-{}", uuid::Uuid::new_v4())
}

fn history(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            Message::new(role, format!("message {i}: {}", "lorem ipsum ".repeat(16)))
                .with_id(format!("m{i}"))
        })
        .collect()
}

pub(crate) fn checkpoint(parent: Option<&Checkpoint>, state: serde_json::Value) -> Checkpoint {
    Checkpoint {
        v: agent_core::graph::checkpoint::CHECKPOINT_VERSION,
        id: Checkpoint::new_id(),
        parent_id: parent.map(|p| p.id.clone()),
        step: parent.map_or(0, |p| p.step + 1),
        created_at: chrono::Utc::now(),
        source: CheckpointSource::Loop,
        state,
        next: vec![
            TaskSpec {
                id: "1:work:0".into(),
                node: "work".into(),
                arg: Some(json!({"item": 1, "z": null, "a": [0.5, -2]})),
            },
            TaskSpec {
                id: "1:reduce:1".into(),
                node: "reduce".into(),
                arg: None,
            },
        ],
        joins: vec![vec!["fast".into()], vec![]],
        resumes: BTreeMap::from([("1:work:0".into(), vec![json!("yes"), json!({"b": 2})])]),
    }
}

pub(crate) async fn checkpoints_round_trip_exactly_and_list_newest_first<F: Fixture>(db: &F) {
    let saver = db.open().await;
    let t = thread();
    let messages = serde_json::to_value(history(50)).expect("json");
    let first = checkpoint(None, json!({"messages": messages, "count": 0, "log": []}));
    let second = checkpoint(
        Some(&first),
        json!({"messages": messages, "count": 1, "log": ["a"]}),
    );
    // Not an object: one blob. Unicode and a NUL, which jsonb would refuse.
    let third = checkpoint(
        Some(&second),
        json!(["ü", "\u{0}", 18446744073709551615u64]),
    );
    for c in [&first, &second, &third] {
        saver.put(&t, c.clone()).await.expect("saves");
    }

    let newest = saver.get(&t, None).await.expect("reads").expect("some");
    assert_eq!(newest.checkpoint, third);
    assert!(newest.pending_writes.is_empty());
    let by_id = saver.get(&t, Some(&first.id)).await.expect("reads");
    assert_eq!(by_id.expect("some").checkpoint, first);
    // The nanoseconds of `created_at` too (a timestamptz column keeps microseconds).
    assert_eq!(
        saver.list(&t, None).await.expect("lists"),
        [third.clone(), second.clone(), first.clone()]
    );
    assert_eq!(
        saver.list(&t, Some(2)).await.expect("lists"),
        [third.clone(), second]
    );
    assert!(saver.get(&t, Some("nope")).await.expect("reads").is_none());
    assert!(saver.get(&thread(), None).await.expect("reads").is_none());
    assert!(saver.list(&thread(), None).await.expect("lists").is_empty());

    // Saving the same checkpoint again (a retry) replaces it.
    saver.put(&t, third.clone()).await.expect("saves again");
    assert_eq!(saver.list(&t, None).await.expect("lists").len(), 3);

    db.delete_thread(&saver, &t).await;
    assert!(saver.get(&t, None).await.expect("reads").is_none());
}

pub(crate) fn write(task: &str, n: u32) -> PendingWrite {
    PendingWrite {
        task_id: task.into(),
        node: task.split(':').nth(1).unwrap_or(task).into(),
        update: Some(json!({"count": n})),
        goto: vec![
            ("next".into(), None),
            ("work".into(), Some(json!({"item": n}))),
        ],
        interrupt: None,
    }
}

pub(crate) async fn pending_writes_add_up_and_replace_by_task_id_as_in_memory<F: Fixture>(db: &F) {
    let saver = db.open().await;
    let memory = InMemorySaver::new();
    let t = thread();
    let c = checkpoint(None, json!({"count": 0}));
    let interrupt = PendingWrite {
        task_id: "0:ask:2".into(),
        node: "ask".into(),
        update: None,
        goto: vec![],
        interrupt: Some(Interrupt {
            id: "i1".into(),
            node: "ask".into(),
            value: json!({"question": "approve?"}),
        }),
    };
    let batches = [
        vec![write("0:a:0", 1), write("0:b:1", 2)],
        vec![write("0:a:0", 3), interrupt, write("0:a:0", 4)],
        vec![],
    ];
    for store in [&saver as &dyn Checkpointer, &memory] {
        store.put(&t, c.clone()).await.expect("saves");
        for batch in &batches {
            store
                .put_writes(&t, &c.id, batch.clone())
                .await
                .expect("writes");
        }
    }
    let stored = saver.get(&t, None).await.expect("reads").expect("some");
    let expected = memory.get(&t, None).await.expect("reads").expect("some");
    assert_eq!(stored, expected);
    let order: Vec<_> = stored
        .pending_writes
        .iter()
        .map(|w| w.task_id.as_str())
        .collect();
    assert_eq!(order, ["0:b:1", "0:ask:2", "0:a:0"]);
    assert_eq!(stored.pending_writes[2].update, Some(json!({"count": 4})));
    // Writes belong to their checkpoint only.
    let later = checkpoint(Some(&c), json!({"count": 1}));
    saver.put(&t, later).await.expect("saves");
    let newest = saver.get(&t, None).await.expect("reads").expect("some");
    assert!(newest.pending_writes.is_empty());
}

fn counted(
    calls: &Arc<AtomicUsize>,
    line: &'static str,
) -> impl Fn(Chat, RunContext) -> futures::future::Ready<Result<ChatUpdate, NodeError>>
+ Send
+ Sync
+ 'static {
    let calls = Arc::clone(calls);
    move |_, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        futures::future::ready(Ok(ChatUpdate::default().log(vec![line.to_owned()])))
    }
}

fn chain<S: Checkpointer + Clone + 'static>(
    saver: &S,
    calls: &Arc<AtomicUsize>,
) -> CompiledGraph<Chat> {
    let mut g = StateGraph::new();
    g.add_node("one", counted(calls, "one"))
        .add_node("two", counted(calls, "two"))
        .add_node("three", counted(calls, "three"))
        .add_edge(START, "one")
        .add_edge("one", "two")
        .add_edge("two", "three")
        .add_edge("three", END);
    g.compile_with_checkpointer(Arc::new(saver.clone()))
        .expect("compiles")
}

pub(crate) async fn a_graph_keeps_its_history_and_travels_back_in_time<F: Fixture>(db: &F) {
    let saver = db.open().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let app = chain(&saver, &calls);
    let thread = RunConfig::thread(thread());
    app.invoke_with(Chat::default(), thread.clone())
        .await
        .expect("runs");
    let history = app.get_state_history(&thread).await.expect("reads");
    // The input and one checkpoint per superstep, newest first, each the parent of the
    // one before.
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].values.log, ["one", "two", "three"]);
    assert_eq!(history[3].next, ["one"]);
    assert_eq!(history[1].next, ["three"]);
    for pair in history.windows(2) {
        assert_eq!(
            pair[0].parent_id.as_deref(),
            Some(pair[1].checkpoint_id.as_str())
        );
    }

    // Resume from the checkpoint before `three`: only `three` runs again.
    calls.store(0, Ordering::SeqCst);
    let before_three = history[1].checkpoint_id.clone();
    let replay = app
        .invoke_with(
            Command::default(),
            thread.clone().at_checkpoint(before_three.clone()),
        )
        .await
        .expect("replays");
    assert_eq!(replay.log, ["one", "two", "three"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let forked = app.get_state(&thread).await.expect("reads").expect("state");
    assert_eq!(forked.parent_id.as_deref(), Some(before_three.as_str()));
    assert_eq!(
        app.get_state_history(&thread).await.expect("reads").len(),
        5
    );

    // Edit an earlier state as if `two` had written it, then go on from there.
    let edited = app
        .update_state(
            &thread
                .clone()
                .at_checkpoint(history[2].checkpoint_id.clone()),
            ChatUpdate::default().log(vec!["edited".to_owned()]),
            Some("two"),
        )
        .await
        .expect("updates");
    let out = app
        .invoke_with(Command::default(), thread.clone().at_checkpoint(edited))
        .await
        .expect("continues");
    assert_eq!(out.log, ["one", "edited", "three"]);
}

pub(crate) async fn durability_modes_decide_which_checkpoints_reach_the_database<F: Fixture>(
    db: &F,
) {
    let saver = db.open().await;
    for (mode, expected) in [
        (Durability::Sync, 4),
        (Durability::Async, 4),
        (Durability::Exit, 1),
    ] {
        let app = chain(&saver, &Arc::new(AtomicUsize::new(0)));
        let config = RunConfig::thread(thread()).with_durability(mode);
        app.invoke_with(Chat::default(), config.clone())
            .await
            .expect("runs");
        let history = app.get_state_history(&config).await.expect("reads");
        assert_eq!(history.len(), expected, "{mode:?}");
        assert_eq!(history[0].values.log, ["one", "two", "three"], "{mode:?}");
    }
}

pub(crate) async fn nodes_that_finished_in_a_failed_superstep_are_not_run_again<F: Fixture>(
    db: &F,
) {
    let saver = db.open().await;
    let ok_calls = Arc::new(AtomicUsize::new(0));
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let flaky = Arc::clone(&flaky_calls);
    let mut g = StateGraph::new();
    g.add_node("ok", counted(&ok_calls, "ok"))
        .add_node("flaky", move |_: Chat, _| {
            let n = flaky.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(NodeError::msg("crashed"))
                } else {
                    Ok(ChatUpdate::default().log(vec!["flaky".to_owned()]))
                }
            }
        })
        .add_edge(START, "ok")
        .add_edge(START, "flaky")
        .add_edge("ok", END)
        .add_edge("flaky", END);
    let app = g
        .compile_with_checkpointer(Arc::new(saver.clone()))
        .expect("compiles");
    let config = RunConfig::thread(thread());
    let err = app
        .invoke_with(Chat::default(), config.clone())
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("crashed"), "{err}");
    // `ok`'s output is in the database, recorded against the step's checkpoint.
    let stored = saver
        .get(config.thread_id.as_deref().expect("thread"), None)
        .await
        .expect("reads")
        .expect("some");
    assert_eq!(stored.pending_writes.len(), 1);
    assert_eq!(stored.pending_writes[0].node, "ok");

    let out = app
        .invoke_with(Command::default(), config)
        .await
        .expect("resumes");
    assert_eq!(out.log, ["ok", "flaky"]);
    assert_eq!(ok_calls.load(Ordering::SeqCst), 1, "ok ran once");
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 2);
}

fn approval<S: Checkpointer + 'static>(saver: S) -> CompiledGraph<Chat> {
    let mut g = StateGraph::new();
    g.add_node("draft", |_: Chat, _| async {
        Ok(ChatUpdate::default()
            .log(vec!["draft".to_owned()])
            .messages(vec![Message::assistant("a draft")]))
    })
    .add_node("review", |s: Chat, ctx: RunContext| async move {
        let answer = ctx.interrupt(json!({"question": "approve?", "draft": s.log}))?;
        Ok(ChatUpdate::default().log(vec![format!("review: {}", answer.as_str().unwrap_or("?"))]))
    })
    .add_edge(START, "draft")
    .add_edge("draft", "review")
    .add_edge("review", END);
    g.compile_with_checkpointer(Arc::new(saver))
        .expect("compiles")
}

pub(crate) async fn an_interrupt_is_resumed_by_another_process<F: Fixture>(db: &F) {
    let saver = db.open().await;
    let config = RunConfig::thread(thread());
    let outcome = approval(saver.clone())
        .run(Chat::default(), config.clone())
        .await
        .expect("runs");
    let RunOutcome::Interrupted { state, interrupts } = outcome else {
        panic!("expected an interrupt");
    };
    assert_eq!(state.log, ["draft"]);
    assert_eq!(interrupts[0].value["question"], "approve?");
    drop(saver);

    // Another process: its own pool, its own graph.
    let other = db.open().await;
    let app = approval(other);
    let snapshot = app.get_state(&config).await.expect("reads").expect("state");
    assert_eq!(snapshot.next, ["review"]);
    assert_eq!(snapshot.interrupts, interrupts);
    let out = app
        .invoke_with(Command::resume("yes"), config.clone())
        .await
        .expect("resumes");
    assert_eq!(out.log, ["draft", "review: yes"]);
    assert_eq!(out.messages[0].content, "a draft");
    assert!(
        app.get_state(&config)
            .await
            .expect("reads")
            .expect("state")
            .next
            .is_empty(),
        "done"
    );
}

pub(crate) async fn an_unchanged_message_history_is_stored_once<F: Fixture>(db: &F) {
    let saver = db.open().await;
    const STEPS: u32 = 10;
    let mut g = StateGraph::new();
    g.add_node("tick", |s: Chat, _| async move {
        Ok(ChatUpdate::default().count(s.count + 1))
    })
    .add_edge(START, "tick")
    .add_conditional_edges(
        "tick",
        |s: &Chat| if s.count < STEPS { "again" } else { "done" },
        [("again", "tick"), ("done", END)],
    );
    let app = g
        .compile_with_checkpointer(Arc::new(saver.clone()))
        .expect("compiles");
    let t = thread();
    let input = Chat {
        messages: history(50),
        ..Chat::default()
    };
    let out = app
        .invoke_with(input.clone(), RunConfig::thread(&t))
        .await
        .expect("runs");
    assert_eq!(out.count, STEPS);
    assert_eq!(out.messages, input.messages);

    let Stored {
        checkpoints,
        messages_bytes,
        total_bytes,
    } = db.stored(&saver, &t).await;
    assert_eq!(checkpoints, i64::from(STEPS) + 1, "input + one per step");
    let one_copy = serde_json::to_vec(&input.messages).expect("json").len() as i64;
    // The history's chunks, stored once: its JSON plus a bracket per chunk.
    assert!(
        (one_copy..one_copy + 16).contains(&messages_bytes),
        "messages stored as {messages_bytes} bytes; one copy is {one_copy}"
    );
    // All 11 checkpoints take less than two full copies of one.
    let full = saver
        .get(&t, None)
        .await
        .expect("reads")
        .expect("some")
        .checkpoint
        .encode()
        .expect("encodes")
        .len() as i64;
    assert!(
        total_bytes < 2 * full,
        "{checkpoints} checkpoints stored in {total_bytes} bytes; one is {full}"
    );

    // Every one of them reads back whole.
    let history = app
        .get_state_history(&RunConfig::thread(&t))
        .await
        .expect("reads");
    assert_eq!(history.len(), 11);
    assert!(history.iter().all(|s| s.values.messages == input.messages));
}

pub(crate) async fn a_corrupt_or_incompatible_row_is_a_clear_error<F: Fixture>(db: &F) {
    let saver = db.open().await;
    let app = chain(&saver, &Arc::new(AtomicUsize::new(0)));
    let t = thread();
    let config = RunConfig::thread(&t);
    app.invoke_with(Chat::default(), config.clone())
        .await
        .expect("runs");
    db.set_newest_body(&saver, &t, b"not json").await;
    let err = app.get_state(&config).await.expect_err("corrupt");
    assert!(err.to_string().starts_with("corrupt checkpoint:"), "{err}");

    db.set_newest_body(&saver, &t, br#"{"v": 99}"#).await;
    let err = app
        .invoke_with(Command::default(), config.clone())
        .await
        .expect_err("incompatible");
    assert_eq!(
        err.to_string(),
        "checkpoint format version 99 is not supported (this build reads version 1)"
    );
    assert!(matches!(
        saver.get(&t, None).await,
        Err(CheckpointError::Incompatible {
            found: 99,
            expected: 1
        })
    ));

    // A blob gone: the older checkpoints refer to it.
    db.drop_newest_and_blobs_of(&saver, &t, "log").await;
    let err = app.get_state_history(&config).await.expect_err("corrupt");
    assert!(
        matches!(&err, GraphError::Checkpoint(CheckpointError::Corrupt(m)) if m.contains("is missing")),
        "{err}"
    );
}
