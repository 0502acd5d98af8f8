//! Per-step overhead of the engine: the same graphs as LangGraph's baseline
//! (`shared/baselines/bench_langgraph.py`) — a 10-node chain of trivial nodes, with and
//! without an in-memory checkpointer, and a 100-way `Send` fan-out. `make bench` runs both
//! and prints them side by side.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use agent_core::graph::{
    CompiledGraph, END, InMemorySaver, NodeError, RunConfig, RunContext, START, StateGraph,
    reducer::{Append, Overwrite},
};
use criterion::{Criterion, criterion_group, criterion_main};
use futures::executor::block_on;

agent_core::state! {
    /// The chain's state: a counter and a log (LangGraph: `count: int`, `log: Annotated[list, operator.add]`).
    pub struct Chain / ChainUpdate {
        /// Incremented by each node.
        pub count: u64 => Overwrite,
        /// One entry per node.
        pub log: Vec<u8> => Append,
    }
}

agent_core::state! {
    /// The fan-out's state (LangGraph: `items: list`, `results: Annotated[list, operator.add]`).
    pub struct Fan / FanUpdate {
        /// The inputs.
        pub items: Vec<u64> => Overwrite,
        /// One input, for a `Send`.
        pub x: u64 => Overwrite,
        /// The outputs.
        pub results: Vec<u64> => Append,
    }
}

async fn step(s: Chain, _: RunContext) -> Result<ChainUpdate, NodeError> {
    Ok(ChainUpdate::default().count(s.count + 1).log(vec![1]))
}

fn chain(n: usize, saver: Option<InMemorySaver>) -> CompiledGraph<Chain> {
    let mut g = StateGraph::new();
    for i in 0..n {
        g.add_node(format!("n{i}"), step);
    }
    g.add_edge(START, "n0");
    for i in 0..n - 1 {
        g.add_edge(format!("n{i}"), format!("n{}", i + 1));
    }
    g.add_edge(format!("n{}", n - 1), END);
    match saver {
        Some(saver) => g.compile_with_checkpointer(Arc::new(saver)),
        None => g.compile(),
    }
    .unwrap_or_else(|e| panic!("chain compiles: {e}"))
}

fn fanout() -> CompiledGraph<Fan> {
    let mut g = StateGraph::new();
    g.add_node("work", |s: Fan, _| async move {
        Ok(FanUpdate::default().results(vec![s.x * 2]))
    })
    .add_node("join", |_: Fan, _| async { Ok(FanUpdate::default()) })
    .add_conditional_edges(
        START,
        |s: &Fan| {
            s.items
                .iter()
                .map(|&x| {
                    agent_core::graph::Send::new(
                        "work",
                        Fan {
                            x,
                            ..Fan::default()
                        },
                    )
                })
                .collect::<Vec<_>>()
        },
        Vec::<(&str, &str)>::new(),
    )
    .add_edge("work", "join")
    .add_edge("join", END);
    g.compile()
        .unwrap_or_else(|e| panic!("fan-out compiles: {e}"))
}

fn benches(c: &mut Criterion) {
    let app = chain(10, None);
    c.bench_function("chain10", |b| {
        b.iter(|| {
            let out = block_on(app.invoke(Chain::default())).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(out.count, 10);
        });
    });

    let app = chain(10, Some(InMemorySaver::new()));
    let thread = AtomicUsize::new(0);
    c.bench_function("chain10_inmemory_saver", |b| {
        b.iter(|| {
            // A new thread per run, as the baseline does.
            let config = RunConfig::thread(thread.fetch_add(1, Ordering::Relaxed).to_string());
            let out = block_on(app.invoke_with(Chain::default(), config))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(out.count, 10);
        });
    });

    let app = fanout();
    let input = Fan {
        items: (0..100).collect(),
        ..Fan::default()
    };
    c.bench_function("fanout100_send", |b| {
        b.iter(|| {
            let out = block_on(app.invoke(input.clone())).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(out.results.len(), 100);
        });
    });
}

criterion_group!(engine, benches);
criterion_main!(engine);
