//! `PostgresSaver` against a real PostgreSQL: `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test` (the database is created when missing).
//! Without a server the tests print `SKIPPED: …` and pass, except under `CI=true`, where
//! they fail. Each test uses its own thread ids, so they run concurrently and again.

use std::{
    collections::BTreeMap,
    io::Write,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use agent_core::graph::{
    Checkpoint, CheckpointError, CheckpointSource, Checkpointer, Command, CompiledGraph,
    Durability, END, GraphError, InMemorySaver, Interrupt, Message, NodeError, PendingWrite,
    RunConfig, RunContext, RunOutcome, START, StateGraph,
    checkpoint::TaskSpec,
    reducer::{AddMessages, Append, Overwrite},
};
use agent_runtime::checkpoint::PostgresSaver;
use serde_json::json;
use sqlx::{
    Connection, PgConnection,
    postgres::{PgConnectOptions, PgDatabaseError},
};

agent_core::state! {
    /// A chat with a counter and a log.
    pub struct Chat / ChatUpdate {
        /// The history.
        pub messages: Vec<Message> => AddMessages,
        /// Bumped by `tick`.
        pub count: u32 => Overwrite,
        /// One line per node run.
        pub log: Vec<String> => Append,
    }
}

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `host:port/db` of the URL, without user or password.
fn server(url: &str) -> &str {
    url.rsplit_once('@')
        .map_or(url, |(_, rest)| rest)
        .trim_start_matches("postgres://")
        .trim_start_matches("postgresql://")
}

/// Creates the URL's database when the server has no such database (idempotent, and
/// safe against tests doing it at once).
async fn create_database(url: &str) {
    let Ok(options) = PgConnectOptions::from_str(url) else {
        return;
    };
    let Some(name) = options.get_database().map(str::to_owned) else {
        return;
    };
    let Ok(mut conn) = PgConnection::connect_with(&options.database("postgres")).await else {
        return; // no server: `saver` says so
    };
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .expect("pg_database readable");
    if exists.is_none() {
        // The name is quoted as an identifier: safe.
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await
        {
            let code = err
                .as_database_error()
                .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
                .map(|e| e.code().to_owned());
            // Created meanwhile by another test: duplicate_database, unique_violation.
            assert!(
                matches!(code.as_deref(), Some("42P04" | "23505")),
                "creating database {name}: {err}"
            );
        }
    }
}

/// A saver on the test database, or `None` after a loud `SKIPPED` line when no
/// PostgreSQL answers (a failure under `CI=true`).
async fn connect() -> Option<PostgresSaver> {
    let url = database_url();
    create_database(&url).await;
    match PostgresSaver::connect(&url).await {
        Ok(saver) => Some(saver),
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no PostgreSQL at {} (CI=true): {err}", server(&url))
        }
        Err(err) => {
            // Straight to stderr: the test harness hides `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: no PostgreSQL at {} ({err}); set DATABASE_URL ***\n",
                server(&url)
            );
            None
        }
    }
}

fn thread() -> String {
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

fn checkpoint(parent: Option<&Checkpoint>, state: serde_json::Value) -> Checkpoint {
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

#[tokio::test]
async fn checkpoints_round_trip_exactly_and_list_newest_first() {
    let Some(saver) = connect().await else { return };
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
    // The nanoseconds of `created_at` too (a timestamptz keeps microseconds).
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

    saver.delete_thread(&t).await.expect("deletes");
    assert!(saver.get(&t, None).await.expect("reads").is_none());
}

fn write(task: &str, n: u32) -> PendingWrite {
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

#[tokio::test]
async fn pending_writes_add_up_and_replace_by_task_id_as_in_memory() {
    let Some(saver) = connect().await else { return };
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

fn chain(saver: &PostgresSaver, calls: &Arc<AtomicUsize>) -> CompiledGraph<Chat> {
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

#[tokio::test]
async fn a_graph_keeps_its_history_and_travels_back_in_time() {
    let Some(saver) = connect().await else { return };
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

#[tokio::test]
async fn durability_modes_decide_which_checkpoints_reach_the_database() {
    let Some(saver) = connect().await else { return };
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

#[tokio::test]
async fn nodes_that_finished_in_a_failed_superstep_are_not_run_again() {
    let Some(saver) = connect().await else { return };
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

fn approval(saver: PostgresSaver) -> CompiledGraph<Chat> {
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

#[tokio::test]
async fn an_interrupt_is_resumed_by_another_process() {
    let Some(saver) = connect().await else { return };
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
    let Some(other) = connect().await else { return };
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

#[tokio::test]
async fn an_unchanged_message_history_is_stored_once() {
    let Some(saver) = connect().await else { return };
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

    let (checkpoints, messages_bytes, total_bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = $1),
                (SELECT sum(octet_length(value))::bigint FROM checkpoint_blobs
                  WHERE thread_id = $1 AND key = 'messages'),
                (SELECT sum(octet_length(value))::bigint FROM checkpoint_blobs
                  WHERE thread_id = $1)
              + (SELECT sum(octet_length(checkpoint) + octet_length(array_to_string(blobs, '')))::bigint
                   FROM checkpoints WHERE thread_id = $1)",
    )
    .bind(&t)
    .fetch_one(saver.pool())
    .await
    .expect("sizes");
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

#[tokio::test]
async fn a_corrupt_or_incompatible_row_is_a_clear_error() {
    let Some(saver) = connect().await else { return };
    let app = chain(&saver, &Arc::new(AtomicUsize::new(0)));
    let t = thread();
    let config = RunConfig::thread(&t);
    app.invoke_with(Chat::default(), config.clone())
        .await
        .expect("runs");
    let newest = |body: &'static [u8]| {
        sqlx::query(
            "UPDATE checkpoints SET checkpoint = $2
              WHERE thread_id = $1
                AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = $1)",
        )
        .bind(t.clone())
        .bind(body)
        .execute(saver.pool())
    };

    newest(b"not json").await.expect("corrupts");
    let err = app.get_state(&config).await.expect_err("corrupt");
    assert!(err.to_string().starts_with("corrupt checkpoint:"), "{err}");

    newest(br#"{"v": 99}"#).await.expect("corrupts");
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
    sqlx::query(
        "WITH newest AS (DELETE FROM checkpoints WHERE thread_id = $1
                            AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints
                                                  WHERE thread_id = $1))
         DELETE FROM checkpoint_blobs WHERE thread_id = $1 AND key = 'log'",
    )
    .bind(&t)
    .execute(saver.pool())
    .await
    .expect("deletes");
    let err = app.get_state_history(&config).await.expect_err("corrupt");
    assert!(
        matches!(&err, GraphError::Checkpoint(CheckpointError::Corrupt(m)) if m.contains("is missing")),
        "{err}"
    );
}

#[tokio::test]
async fn errors_never_show_the_password_of_the_url() {
    // Nothing listens on port 1: the connection is refused, server or no server.
    let err = PostgresSaver::connect("postgres://app:s3cret-pw@127.0.0.1:1/test")
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.starts_with("checkpoint storage failed: connecting to PostgreSQL"),
        "{message}"
    );
    assert!(!message.contains("s3cret-pw"), "{message}");
    let err = PostgresSaver::connect("postgres://app:s3cret-pw@127.0.0.1:notaport/test")
        .await
        .expect_err("bad url");
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
}
