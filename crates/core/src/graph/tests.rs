use std::{sync::Arc, time::Duration};

use super::*;

/// A state whose update appends to a log and may add to a counter.
#[derive(Clone, Default, Debug)]
struct Log {
    count: u32,
    lines: Vec<String>,
}

impl State for Log {
    type Update = Vec<String>;
    fn apply(&mut self, update: Vec<String>) -> Result<(), GraphError> {
        if update.iter().any(|l| l == "forbidden") {
            return Err(GraphError::InvalidUpdate {
                node: String::new(),
                reason: "forbidden line".into(),
            });
        }
        self.count += update.len() as u32;
        self.lines.extend(update);
        Ok(())
    }
}

fn say(
    word: &'static str,
) -> impl Fn(Log, RunContext) -> futures::future::Ready<Result<Vec<String>, NodeError>>
+ std::marker::Send
+ Sync
+ 'static {
    move |_, ctx| futures::future::ready(Ok(vec![format!("{}:{word}", ctx.step())]))
}

#[tokio::test]
async fn chain_runs_nodes_in_order_one_step_each() {
    let mut g = StateGraph::new();
    g.add_node("a", say("a"))
        .add_node("b", say("b"))
        .add_node("c", say("c"))
        .add_edge(START, "a")
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect("runs");
    assert_eq!(out.lines, ["0:a", "1:b", "2:c"]);
}

#[tokio::test]
async fn fan_out_nodes_share_a_superstep_and_merge_in_node_order() {
    let mut g = StateGraph::new();
    // Added z before y: z's update must apply first whatever finishes first.
    g.add_node("z", |_: Log, _| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(vec!["z".to_owned()])
    })
    .add_node("y", say("y"))
    .add_node("join", |s: Log, _| async move {
        Ok(vec![format!("join saw {}", s.count)])
    })
    .add_edge(START, "z")
    .add_edge(START, "y")
    .add_edge("z", "join")
    .add_edge("y", "join")
    .add_edge("join", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect("runs");
    // join is triggered by both but runs once, in step 1, after both updates merged.
    assert_eq!(out.lines, ["z", "0:y", "join saw 2"]);
}

#[tokio::test]
async fn nodes_of_one_superstep_run_concurrently() {
    // Each node waits for the other at a barrier: run one after the other, they would
    // never finish.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut g = StateGraph::new();
    for name in ["left", "right"] {
        let barrier = Arc::clone(&barrier);
        g.add_node(name, move |_: Log, _| {
            let barrier = Arc::clone(&barrier);
            async move {
                barrier.wait().await;
                Ok(vec![name.to_owned()])
            }
        })
        .add_edge(START, name)
        .add_edge(name, END);
    }
    let app = g.compile().expect("compiles");
    let out = tokio::time::timeout(Duration::from_secs(5), app.invoke(Log::default()))
        .await
        .expect("nodes ran concurrently")
        .expect("runs");
    assert_eq!(out.lines, ["left", "right"]);
}

#[tokio::test]
async fn conditional_edges_route_through_the_path_map_and_can_loop() {
    let mut g = StateGraph::new();
    g.add_node("work", say("work"))
        .add_node("finish", say("finish"))
        .add_edge(START, "work")
        .add_conditional_edges(
            "work",
            |s: &Log| if s.count < 3 { "more" } else { "stop" },
            [("more", "work"), ("stop", "finish")],
        )
        .add_edge("finish", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect("runs");
    assert_eq!(out.lines, ["0:work", "1:work", "2:work", "3:finish"]);
}

#[tokio::test]
async fn a_router_may_pick_several_nodes_or_end_by_name() {
    let mut g = StateGraph::new();
    g.add_node("a", say("a"))
        .add_node("b", say("b"))
        .add_conditional_edges(START, |_: &Log| vec!["b", "a"], Vec::<(&str, &str)>::new())
        .add_conditional_edges("a", |_: &Log| END, Vec::<(&str, &str)>::new())
        .add_edge("b", END);
    let out = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect("runs");
    assert_eq!(out.lines, ["0:a", "0:b"]);
}

#[tokio::test]
async fn an_undeclared_route_is_an_error_naming_node_and_route() {
    let mut g = StateGraph::new();
    g.add_node("a", say("a"))
        .add_edge(START, "a")
        .add_conditional_edges("a", |_: &Log| "elsewhere", [("done", END)]);
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect_err("bad route");
    assert_eq!(
        err.to_string(),
        r#"router of node "a" returned "elsewhere", which is not one of its targets"#
    );
}

#[tokio::test]
async fn recursion_limit_stops_a_runaway_loop_with_the_path() {
    let mut g = StateGraph::new();
    g.add_node("spin", say("spin"))
        .add_edge(START, "spin")
        .add_conditional_edges("spin", |_: &Log| "again", [("again", "spin"), ("out", END)]);
    let app = g.compile().expect("compiles");
    let err = app
        .invoke_with(
            Log::default(),
            RunConfig {
                recursion_limit: 4,
                ..RunConfig::default()
            },
        )
        .await
        .expect_err("loops forever");
    match err {
        GraphError::RecursionLimit { limit, path } => {
            assert_eq!(limit, 4);
            assert_eq!(path, ["spin"; 5]);
        }
        other => panic!("unexpected {other}"),
    }
    // The default limit is LangGraph's 25.
    let err = app.invoke(Log::default()).await.expect_err("loops forever");
    assert!(
        err.to_string()
            .starts_with("recursion limit of 25 supersteps")
    );
}

#[tokio::test]
async fn a_failing_node_fails_the_run_naming_the_node() {
    let mut g = StateGraph::new();
    g.add_node("ok", say("ok"))
        .add_node("bad", |_: Log, _| async {
            Err::<Vec<String>, _>(NodeError::msg("model said no"))
        })
        .add_edge(START, "ok")
        .add_edge("ok", "bad")
        .add_edge("bad", END);
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect_err("fails");
    assert_eq!(err.to_string(), r#"node "bad" failed: model said no"#);
}

#[tokio::test]
async fn a_refused_update_names_the_node() {
    let mut g = StateGraph::new();
    g.add_node("rogue", |_: Log, _| async {
        Ok(vec!["forbidden".to_owned()])
    })
    .add_edge(START, "rogue")
    .add_edge("rogue", END);
    let err = g
        .compile()
        .expect("compiles")
        .invoke(Log::default())
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        r#"invalid update from node "rogue": forbidden line"#
    );
}

#[tokio::test]
async fn nodes_see_the_thread_id() {
    let mut g = StateGraph::new();
    g.add_node("who", |_: Log, ctx: RunContext| async move {
        Ok(vec![ctx.thread_id().unwrap_or("none").to_owned()])
    })
    .add_edge(START, "who")
    .add_edge("who", END);
    let app = g.compile().expect("compiles");
    let out = app
        .invoke_with(Log::default(), RunConfig::thread("t-1"))
        .await
        .expect("runs");
    assert_eq!(out.lines, ["t-1"]);
}

#[test]
fn compile_rejects_broken_graphs() {
    fn err_of(build: impl FnOnce(&mut StateGraph<Log>)) -> String {
        let mut g = StateGraph::new();
        build(&mut g);
        match g.compile() {
            Ok(_) => "compiled".to_owned(),
            Err(e) => e.to_string(),
        }
    }
    assert_eq!(
        err_of(|g| {
            g.add_node("a", say("a"))
                .add_edge(START, "a")
                .add_edge("a", "missing");
        }),
        r#"unknown node "missing" in edge a -> missing"#
    );
    assert_eq!(
        err_of(|g| {
            g.add_node("a", say("a")).add_edge("a", END);
        }),
        "the graph has no entry point: add an edge from START"
    );
    assert_eq!(
        err_of(|g| {
            g.add_node("a", say("a"))
                .add_node("dead", say("d"))
                .add_edge(START, "a")
                .add_edge("a", "dead")
                .add_edge("a", END);
        }),
        r#"node "dead" has no path to END"#
    );
    assert_eq!(
        err_of(|g| {
            // A cycle with no exit has no path to END either.
            g.add_node("p", say("p"))
                .add_node("q", say("q"))
                .add_edge(START, "p")
                .add_edge("p", "q")
                .add_edge("q", "p");
        }),
        r#"node "p" has no path to END"#
    );
    assert_eq!(
        err_of(|g| {
            g.add_node("a", say("a"))
                .add_node("a", say("b"))
                .add_edge(START, "a")
                .add_edge("a", END);
        }),
        r#"invalid node name "a": a node of this name was already added"#
    );
    assert_eq!(
        err_of(|g| {
            g.add_node(END, say("a")).add_edge(START, END);
        }),
        r#"invalid node name "__end__": START and END are reserved"#
    );
    assert_eq!(
        err_of(|g| {
            g.add_node("a", say("a"))
                .add_edge(START, "a")
                .add_conditional_edges("a", |_: &Log| "x", [("x", "nowhere")]);
        }),
        r#"unknown node "nowhere" in path map of a"#
    );
}
