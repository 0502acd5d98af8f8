//! The graph engine's features, through its public API.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use agent_core::graph::{
    Command, CompiledGraph, DebugEvent, Durability, END, GraphError, InMemorySaver, Input, Message,
    NodeError, RetryPolicy, RunConfig, RunContext, RunOutcome, START, StateGraph, StreamEvent,
    StreamMode,
    reducer::{AddMessages, Append, MergeMap, Overwrite, custom},
};
use futures::StreamExt;

agent_core::state! {
    /// A state with one field per reducer.
    pub struct Doc / DocUpdate {
        /// Overwritten.
        pub title: String => Overwrite,
        /// Appended.
        pub log: Vec<String> => Append,
        /// Merged.
        pub scores: HashMap<String, u32> => MergeMap,
        /// Messages.
        pub messages: Vec<Message> => AddMessages,
        /// Summed.
        pub total: u64 => custom(|t: &mut u64, n: u64| *t += n),
        /// Items to fan out over.
        pub items: Vec<u32> => Overwrite,
        /// One item (the input of a `Send`).
        pub item: u32 => Overwrite,
    }
}

type Res = Result<DocUpdate, NodeError>;

fn log(line: &str) -> DocUpdate {
    DocUpdate::default().log(vec![line.to_owned()])
}

fn logger(
    line: &'static str,
) -> impl Fn(Doc, RunContext) -> futures::future::Ready<Res> + Send + Sync + 'static {
    move |_, _| futures::future::ready(Ok(log(line)))
}

#[tokio::test]
async fn reducers_merge_a_superstep_per_field_in_node_order() {
    let mut g = StateGraph::new();
    g.add_node("a", |_: Doc, _| async {
        Ok(DocUpdate::default()
            .log(vec!["a".to_owned()])
            .scores(HashMap::from([("x".to_owned(), 1), ("y".to_owned(), 1)]))
            .messages(vec![Message::user("hi").with_id("m1")])
            .total(2u64))
    })
    .add_node("b", |_: Doc, _| async {
        Ok(DocUpdate::default()
            .log(vec!["b".to_owned()])
            .scores(HashMap::from([("y".to_owned(), 2)]))
            .messages(vec![
                Message::user("hi, edited").with_id("m1"),
                Message::assistant("hello"),
            ])
            .total(3u64)
            .title("only b"))
    })
    .add_edge(START, "a")
    .add_edge(START, "b")
    .add_edge("a", END)
    .add_edge("b", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect("runs");
    assert_eq!(out.log, ["a", "b"]);
    assert_eq!(
        out.scores,
        HashMap::from([("x".to_owned(), 1), ("y".to_owned(), 2)])
    );
    assert_eq!(out.messages.len(), 2);
    assert_eq!(out.messages[0].content, "hi, edited");
    assert_eq!(out.total, 5);
    assert_eq!(out.title, "only b");
}

#[tokio::test]
async fn two_writes_to_a_field_without_reducer_is_an_error_naming_it() {
    let mut g = StateGraph::new();
    for name in ["a", "b"] {
        g.add_node(name, move |_: Doc, _| async move {
            Ok(DocUpdate::default().title(name))
        })
        .add_edge(START, name)
        .add_edge(name, END);
    }
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect_err("conflict");
    assert!(
        matches!(
            err,
            GraphError::ConcurrentUpdate {
                field: "title",
                writes: 2
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("field `title` received 2 writes"));
}

#[tokio::test]
async fn a_join_edge_waits_for_all_its_sources_across_supersteps() {
    let mut g = StateGraph::new();
    g.add_node("fast", logger("fast"))
        .add_node("slow1", logger("slow1"))
        .add_node("slow2", logger("slow2"))
        .add_node("join", |s: Doc, _| async move {
            Ok(log(&format!("join after {}", s.log.join(","))))
        })
        .add_edge(START, "fast")
        .add_edge(START, "slow1")
        .add_edge("slow1", "slow2")
        .add_join_edge(&["fast", "slow2"], "join")
        .add_edge("join", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect("runs");
    // join ran once, after slow2 (step 1), not after fast (step 0) alone.
    assert_eq!(
        out.log,
        ["fast", "slow1", "slow2", "join after fast,slow1,slow2"]
    );
}

fn fan_out(width: u32) -> CompiledGraph<Doc> {
    let mut g = StateGraph::new();
    g.add_node("work", |s: Doc, _| async move {
        Ok(DocUpdate::default().log(vec![format!("{}", s.item * 2)]))
    })
    .add_node("reduce", |s: Doc, _| async move {
        Ok(DocUpdate::default().total(s.log.len() as u64))
    })
    .add_conditional_edges(
        START,
        |s: &Doc| {
            s.items
                .iter()
                .map(|&i| {
                    agent_core::graph::Send::new(
                        "work",
                        Doc {
                            item: i,
                            ..Doc::default()
                        },
                    )
                })
                .collect::<Vec<_>>()
        },
        Vec::<(&str, &str)>::new(),
    )
    .add_edge("work", "reduce")
    .add_edge("reduce", END);
    let _ = width;
    g.compile().expect("compiles")
}

#[tokio::test]
async fn send_maps_one_node_over_many_inputs_and_reduces() {
    let input = Doc {
        items: (0..100).collect(),
        ..Doc::default()
    };
    let out = fan_out(100).invoke(input).await.expect("runs");
    assert_eq!(out.log.len(), 100);
    // Each task saw its own input; results merge in send order.
    assert_eq!(out.log[0], "0");
    assert_eq!(out.log[99], "198");
    assert_eq!(out.total, 100, "reduce ran once, after all 100");
}

#[tokio::test]
async fn a_command_updates_and_routes_at_once() {
    let mut g = StateGraph::new();
    g.add_command_node("decide", &["left", "right"], |s: Doc, _| async move {
        let next = if s.total > 0 { "right" } else { "left" };
        Ok(Command::update(log(&format!("decide -> {next}"))).and_goto(next))
    })
    .add_node("left", logger("left"))
    .add_node("right", logger("right"))
    .add_edge(START, "decide")
    .add_edge("left", END)
    .add_edge("right", END);
    let app = g.compile().expect("compiles");
    let out = app.invoke(Doc::default()).await.expect("runs");
    assert_eq!(out.log, ["decide -> left", "left"]);
    let out = app
        .invoke(Doc {
            total: 1,
            ..Doc::default()
        })
        .await
        .expect("runs");
    assert_eq!(out.log, ["decide -> right", "right"]);
    assert!(app.draw_mermaid().contains("decide -.-> right;"));
}

#[tokio::test]
async fn a_command_to_an_unknown_node_is_an_error() {
    let mut g = StateGraph::new();
    g.add_command_node("decide", &[END], |_: Doc, _| async move {
        Ok(Command::goto("nowhere"))
    })
    .add_edge(START, "decide");
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect_err("bad goto");
    assert!(
        matches!(err, GraphError::UnknownRoute { ref route, .. } if route == "nowhere"),
        "{err}"
    );
}

#[tokio::test]
async fn a_subgraph_runs_as_a_node_and_can_command_its_parent() {
    // The subgraph: two steps, then a command that sends the parent to `after`.
    let mut sub = StateGraph::new();
    sub.add_node("inner1", logger("inner1"))
        .add_command_node("inner2", &[END], |_: Doc, _| async move {
            Ok(Command::update(log("inner2")).and_goto("after").to_parent())
        })
        .add_edge(START, "inner1")
        .add_edge("inner1", "inner2");
    let sub = sub.compile().expect("subgraph compiles");

    let mut g = StateGraph::new();
    g.add_node("before", logger("before"))
        .add_subgraph("sub", sub, |before: &Doc, after: Doc| {
            DocUpdate::default().log(after.log[before.log.len()..].to_vec())
        })
        .add_node("after", logger("after"))
        .add_edge(START, "before")
        .add_edge("before", "sub")
        .add_edge("sub", END)
        .add_edge("after", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect("runs");
    // inner1's update stays in the subgraph; inner2's command updates the parent and routes it.
    assert_eq!(out.log, ["before", "inner2", "after"]);

    // Without a parent, the same command is an error.
    let mut lone = StateGraph::new();
    lone.add_command_node("x", &[END], |_: Doc, _| async {
        Ok(Command::goto("y").to_parent())
    })
    .add_edge(START, "x");
    let err = lone
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect_err("no parent");
    assert!(matches!(err, GraphError::ParentCommand(_)), "{err}");
}

#[tokio::test]
async fn a_subgraph_with_its_own_state_runs_inside_a_node() {
    agent_core::state! {
        /// The inner state.
        pub struct Inner / InnerUpdate {
            /// A counter.
            pub n: u32 => custom(|a: &mut u32, b: u32| *a += b),
        }
    }
    let mut inner = StateGraph::new();
    inner
        .add_node("twice", |s: Inner, _| async move {
            Ok(InnerUpdate::default().n(s.n))
        })
        .add_edge(START, "twice")
        .add_edge("twice", END);
    let inner = inner.compile().expect("inner compiles");
    let mut g = StateGraph::new();
    g.add_node("call", move |s: Doc, _| {
        let inner = inner.clone();
        async move {
            let out = inner.invoke(Inner { n: s.item }).await?;
            Ok(DocUpdate::default().total(u64::from(out.n)))
        }
    })
    .add_edge(START, "call")
    .add_edge("call", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Doc {
            item: 21,
            ..Doc::default()
        })
        .await
        .expect("runs");
    assert_eq!(out.total, 42);
}

fn counted(
    calls: &Arc<AtomicUsize>,
    line: &'static str,
) -> impl Fn(Doc, RunContext) -> futures::future::Ready<Res> + Send + Sync + 'static {
    let calls = Arc::clone(calls);
    move |_, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        futures::future::ready(Ok(log(line)))
    }
}

fn chain_with_saver(saver: &InMemorySaver, calls: &Arc<AtomicUsize>) -> CompiledGraph<Doc> {
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
async fn checkpoints_give_state_history_updates_and_time_travel() {
    let saver = InMemorySaver::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = chain_with_saver(&saver, &calls);
    let thread = RunConfig::thread("t1");
    app.invoke_with(Doc::default(), thread.clone())
        .await
        .expect("runs");

    let now = app
        .get_state(&thread)
        .await
        .expect("reads")
        .expect("has state");
    assert_eq!(now.values.log, ["one", "two", "three"]);
    assert!(now.next.is_empty(), "done");
    let history = app.get_state_history(&thread).await.expect("reads");
    // input + one per superstep, newest first, each the parent of the one before.
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].next, ["one"]);
    assert_eq!(history[1].next, ["three"]);
    assert_eq!(
        history[0].parent_id.as_deref(),
        Some(history[1].checkpoint_id.as_str())
    );

    // Time travel: resume from the checkpoint before `three`; only `three` runs again.
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
    assert_eq!(
        forked.parent_id.as_deref(),
        Some(before_three.as_str()),
        "a fork of history"
    );

    // update_state as if `two` had written, then continue: `three` runs on the edit.
    let edited = app
        .update_state(
            &thread
                .clone()
                .at_checkpoint(history[2].checkpoint_id.clone()),
            log("edited"),
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
async fn durability_modes_decide_when_checkpoints_are_written() {
    for (mode, expected) in [
        (Durability::Sync, 4),
        (Durability::Async, 4),
        (Durability::Exit, 1),
    ] {
        let saver = InMemorySaver::new();
        let app = chain_with_saver(&saver, &Arc::new(AtomicUsize::new(0)));
        let config = RunConfig::thread("t").with_durability(mode);
        app.invoke_with(Doc::default(), config.clone())
            .await
            .expect("runs");
        let history = app.get_state_history(&config).await.expect("reads");
        assert_eq!(history.len(), expected, "{mode:?}");
        assert_eq!(history[0].values.log, ["one", "two", "three"], "{mode:?}");
    }
}

#[tokio::test]
async fn nodes_that_finished_in_a_failed_superstep_are_not_run_again() {
    let saver = InMemorySaver::new();
    let ok_calls = Arc::new(AtomicUsize::new(0));
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let mut g = StateGraph::new();
    let flaky = Arc::clone(&flaky_calls);
    g.add_node("ok", counted(&ok_calls, "ok"))
        .add_node("flaky", move |_: Doc, _| {
            let n = flaky.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(NodeError::msg("crashed"))
                } else {
                    Ok(log("flaky"))
                }
            }
        })
        .add_edge(START, "ok")
        .add_edge(START, "flaky")
        .add_edge("ok", END)
        .add_edge("flaky", END);
    let app = g
        .compile_with_checkpointer(Arc::new(saver))
        .expect("compiles");
    let thread = RunConfig::thread("t");
    let err = app
        .invoke_with(Doc::default(), thread.clone())
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("crashed"));
    // Resume, as after a crash: only the failed task runs; `ok`'s write is reused.
    let out = app
        .invoke_with(Command::default(), thread)
        .await
        .expect("resumes");
    assert_eq!(out.log, ["ok", "flaky"]);
    assert_eq!(ok_calls.load(Ordering::SeqCst), 1);
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 2);
}

fn approval_graph(saver: &InMemorySaver) -> CompiledGraph<Doc> {
    let mut g = StateGraph::new();
    g.add_node("draft", logger("draft"))
        .add_node("review", |s: Doc, ctx: RunContext| async move {
            let answer =
                ctx.interrupt(serde_json::json!({"question": "approve?", "draft": s.log}))?;
            Ok(log(&format!("review: {}", answer.as_str().unwrap_or("?"))))
        })
        .add_edge(START, "draft")
        .add_edge("draft", "review")
        .add_edge("review", END);
    g.compile_with_checkpointer(Arc::new(saver.clone()))
        .expect("compiles")
}

#[tokio::test]
async fn an_interrupt_pauses_and_a_later_invocation_resumes_it() {
    let saver = InMemorySaver::new();
    let thread = RunConfig::thread("human");
    let outcome = approval_graph(&saver)
        .run(Doc::default(), thread.clone())
        .await
        .expect("runs");
    let RunOutcome::Interrupted { state, interrupts } = outcome else {
        panic!("expected an interrupt");
    };
    assert_eq!(state.log, ["draft"]);
    assert_eq!(interrupts.len(), 1);
    assert_eq!(interrupts[0].node, "review");
    assert_eq!(interrupts[0].value["question"], "approve?");
    let snapshot = approval_graph(&saver)
        .get_state(&thread)
        .await
        .expect("reads")
        .expect("state");
    assert_eq!(snapshot.next, ["review"]);
    assert_eq!(snapshot.interrupts, interrupts);

    // Another graph instance (as another process would) resumes from the saver.
    let out = approval_graph(&saver)
        .invoke_with(Command::resume("yes"), thread.clone())
        .await
        .expect("resumes");
    assert_eq!(out.log, ["draft", "review: yes"]);
}

#[tokio::test]
async fn several_pending_interrupts_are_resumed_at_once_by_id() {
    let saver = InMemorySaver::new();
    let mut g = StateGraph::new();
    for name in ["left", "right"] {
        g.add_node(name, move |_: Doc, ctx: RunContext| async move {
            let v = ctx.interrupt(format!("{name}?"))?;
            Ok(log(&format!("{name}={v}")))
        })
        .add_edge(START, name)
        .add_edge(name, END);
    }
    let app = g
        .compile_with_checkpointer(Arc::new(saver))
        .expect("compiles");
    let thread = RunConfig::thread("two");
    let err = app
        .invoke_with(Doc::default(), thread.clone())
        .await
        .expect_err("interrupted");
    let GraphError::Interrupted { interrupts } = err else {
        panic!("expected interrupts, got {err}");
    };
    assert_eq!(interrupts.len(), 2);
    let err = app
        .invoke_with(Command::resume(1), thread.clone())
        .await
        .expect_err("ambiguous");
    assert!(err.to_string().contains("resume them by id"), "{err}");
    let values = interrupts
        .iter()
        .map(|i| (i.id.clone(), serde_json::json!(i.node.len())))
        .collect::<Vec<_>>();
    let out = app
        .invoke_with(Command::resume_many(values), thread)
        .await
        .expect("resumes");
    assert_eq!(out.log, ["left=4", "right=5"]);
}

#[tokio::test]
async fn a_retry_policy_retries_transient_errors_with_backoff() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let mut g = StateGraph::new();
    g.add_node("llm", move |_: Doc, ctx: RunContext| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(NodeError::transient("429 too many requests"))
            } else {
                Ok(log(&format!("answered on attempt {}", ctx.attempt())))
            }
        }
    })
    .add_edge(START, "llm")
    .add_edge("llm", END)
    .retry_policy(
        "llm",
        RetryPolicy {
            initial_interval: Duration::from_millis(10),
            jitter: false,
            ..RetryPolicy::default()
        },
    );
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect("retried");
    assert_eq!(out.log, ["answered on attempt 3"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_attempts_are_bounded() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let mut g = StateGraph::new();
    g.add_node("bad", move |_: Doc, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<DocUpdate, _>(NodeError::permanent("400 bad request")) }
    })
    .add_edge(START, "bad")
    .add_edge("bad", END)
    .retry_policy(
        "bad",
        RetryPolicy {
            jitter: false,
            initial_interval: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
    );
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("400 bad request"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_node_timeout_fails_slow_attempts_and_the_policy_retries_them() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let mut g = StateGraph::new();
    g.add_node("slow", move |_: Doc, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(log("late"))
        }
    })
    .add_edge(START, "slow")
    .add_edge("slow", END)
    .node_timeout("slow", Duration::from_millis(50))
    .retry_policy(
        "slow",
        RetryPolicy {
            max_attempts: 2,
            jitter: false,
            initial_interval: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
    );
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Doc::default())
        .await
        .expect_err("times out");
    assert_eq!(
        err.to_string(),
        r#"node "slow" failed: timed out after 50 ms"#
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stream_yields_values_updates_custom_messages_and_debug_events() {
    let mut g = StateGraph::new();
    g.add_node("talk", |_: Doc, ctx: RunContext| async move {
        for token in ["Hel", "lo"] {
            ctx.emit(token);
            ctx.emit_token(token);
        }
        Ok(log("talked"))
    })
    .add_node("done", logger("done"))
    .add_edge(START, "talk")
    .add_edge("talk", "done")
    .add_edge("done", END);
    let app = g.compile().expect("compiles");
    let modes = [
        StreamMode::Values,
        StreamMode::Updates,
        StreamMode::Custom,
        StreamMode::Messages,
        StreamMode::Debug,
    ];
    let events: Vec<_> = app
        .stream(Doc::default(), RunConfig::default(), &modes)
        .collect()
        .await;
    let describe: Vec<String> = events
        .iter()
        .map(|e| match e {
            Ok(StreamEvent::Values(s)) => format!("values {}", s.log.join(",")),
            Ok(StreamEvent::Updates { node, update }) => format!("update {node} {:?}", update.log),
            Ok(StreamEvent::Custom { node, value }) => format!("custom {node} {value}"),
            Ok(StreamEvent::Messages { node, chunk }) => format!("token {node} {chunk}"),
            Ok(StreamEvent::Debug(DebugEvent::TaskStart { node, .. })) => format!("start {node}"),
            Ok(StreamEvent::Debug(DebugEvent::TaskEnd { node, error, .. })) => {
                format!("end {node} {error:?}")
            }
            Ok(StreamEvent::Interrupted(_)) => "interrupted".to_owned(),
            Err(err) => format!("error {err}"),
        })
        .collect();
    assert_eq!(
        describe,
        [
            "values ",
            "start talk",
            r#"custom talk "Hel""#,
            "token talk Hel",
            r#"custom talk "lo""#,
            "token talk lo",
            "end talk None",
            r#"update talk Some(["talked"])"#,
            "values talked",
            "start done",
            "end done None",
            r#"update done Some(["done"])"#,
            "values talked,done",
        ]
    );
}

#[tokio::test]
async fn the_messages_mode_carries_tokens_only_from_subgraphs_too() {
    let mut inner = StateGraph::new();
    inner
        .add_node("write", |_: Doc, ctx: RunContext| async move {
            ctx.emit("a custom event");
            ctx.emit_token("Hi");
            ctx.emit_token(" there");
            Ok(log("wrote"))
        })
        .add_edge(START, "write")
        .add_edge("write", END);
    let inner = inner.compile().expect("compiles");
    let mut g = StateGraph::new();
    g.add_subgraph("nested", inner, |_: &Doc, after: Doc| {
        DocUpdate::default().log(after.log)
    })
    .add_edge(START, "nested")
    .add_edge("nested", END);
    let app = g.compile().expect("compiles");
    let chunks: Vec<(String, String)> = app
        .stream(
            Doc::default(),
            RunConfig::default(),
            &[StreamMode::Messages],
        )
        .filter_map(|e| async move {
            match e {
                Ok(StreamEvent::Messages { node, chunk }) => Some((node, chunk)),
                Ok(other) => panic!("only messages were asked for: {other:?}"),
                Err(err) => panic!("the run failed: {err}"),
            }
        })
        .collect()
        .await;
    assert_eq!(
        chunks,
        [
            ("write".to_owned(), "Hi".to_owned()),
            ("write".to_owned(), " there".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_failing_run_ends_its_stream_with_the_error() {
    let mut g = StateGraph::new();
    g.add_node("boom", |_: Doc, _| async {
        Err::<DocUpdate, _>(NodeError::msg("boom"))
    })
    .add_edge(START, "boom")
    .add_edge("boom", END);
    let events: Vec<_> = g
        .compile()
        .expect("compiles")
        .stream(Doc::default(), RunConfig::default(), &[StreamMode::Values])
        .collect()
        .await;
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0], Ok(StreamEvent::Values(_))));
    assert!(matches!(&events[1], Err(e) if e.to_string() == r#"node "boom" failed: boom"#));
}

#[test]
fn mermaid_draws_nodes_and_every_kind_of_edge() {
    let mut g = StateGraph::<Doc>::new();
    g.add_node("plan", logger("plan"))
        .add_node("act", logger("act"))
        .add_node("check", logger("check"))
        .add_edge(START, "plan")
        .add_edge("plan", "act")
        .add_conditional_edges("act", |_: &Doc| "ok", [("ok", "check"), ("retry", "act")])
        .add_edge("check", END);
    let text = g.compile().expect("compiles").draw_mermaid();
    let expected = "---\nconfig:\n  flowchart:\n    curve: linear\n---\ngraph TD;\n\
\t__start__([<p>__start__</p>]):::first\n\tplan(plan)\n\tact(act)\n\tcheck(check)\n\
\t__end__([<p>__end__</p>]):::last\n\t__start__ --> plan;\n\tplan --> act;\n\
\tact -. &nbsp;ok&nbsp; .-> check;\n\tact -. &nbsp;retry&nbsp; .-> act;\n\tcheck --> __end__;\n\
\tclassDef default fill:#f2f0ff,line-height:1.2\n\tclassDef first fill-opacity:0\n\tclassDef last fill:#bfb6fc\n";
    assert_eq!(text, expected);
}

#[tokio::test]
async fn a_corrupt_or_incompatible_checkpoint_is_a_clear_error() {
    let saver = InMemorySaver::new();
    let app = chain_with_saver(&saver, &Arc::new(AtomicUsize::new(0)));
    let thread = RunConfig::thread("c");
    app.invoke_with(Doc::default(), thread.clone())
        .await
        .expect("runs");
    saver.tamper("c", |c| c.state = serde_json::json!("not a Doc"));
    let err = app.get_state(&thread).await.expect_err("corrupt");
    assert!(
        err.to_string()
            .starts_with("corrupt checkpoint: state of checkpoint"),
        "{err}"
    );
    saver.tamper("c", |c| c.v = 99);
    let err = app
        .invoke_with(Command::default(), thread)
        .await
        .expect_err("incompatible");
    assert_eq!(
        err.to_string(),
        "checkpoint format version 99 is not supported (this build reads version 1)"
    );
}

#[tokio::test]
async fn resuming_without_a_checkpoint_says_why() {
    let app = chain_with_saver(&InMemorySaver::new(), &Arc::new(AtomicUsize::new(0)));
    let err = app
        .invoke_with(Command::resume("x"), RunConfig::thread("never"))
        .await
        .expect_err("nothing");
    assert_eq!(
        err.to_string(),
        "cannot resume: thread never has no checkpoint"
    );
    let err = app
        .invoke(Input::Resume(Command::default()))
        .await
        .expect_err("no thread");
    assert!(
        err.to_string()
            .contains("needs a checkpointer and a thread id"),
        "{err}"
    );
}
