//! Streaming a run: [`CompiledGraph::stream`] yields events as the run goes
//! (LangGraph's `stream_mode`: `values`, `updates`, `custom`, `debug`).

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt, channel::mpsc};
use serde_json::Value;

use super::{
    CompiledGraph, GraphError, Input, Interrupt, RunConfig, State,
    node::{Emitted, Emitter},
};

/// Which events a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// The whole state after each superstep.
    Values,
    /// Each node's update, as it is merged.
    Updates,
    /// What nodes [`emit`](super::RunContext::emit).
    Custom,
    /// Pieces of LLM output as nodes [`emit_token`](super::RunContext::emit_token) them
    /// (LangGraph's `messages`).
    Messages,
    /// Task start and end, with timings and errors.
    Debug,
}

/// A task's start or end.
#[derive(Debug, Clone, PartialEq)]
pub enum DebugEvent {
    /// A task attempt started.
    TaskStart {
        /// Superstep.
        step: usize,
        /// Task id.
        task_id: String,
        /// Node.
        node: String,
        /// Attempt, from 1.
        attempt: u32,
    },
    /// A task attempt ended.
    TaskEnd {
        /// Superstep.
        step: usize,
        /// Task id.
        task_id: String,
        /// Node.
        node: String,
        /// Attempt, from 1.
        attempt: u32,
        /// How long it took.
        elapsed: Duration,
        /// Its error, if it failed.
        error: Option<String>,
    },
}

/// One streamed event.
#[derive(Debug, Clone)]
pub enum StreamEvent<S: State> {
    /// The state after a superstep.
    Values(S),
    /// A node's update.
    Updates {
        /// The node.
        node: String,
        /// Its update.
        update: S::Update,
    },
    /// A node's own event.
    Custom {
        /// The node.
        node: String,
        /// What it emitted.
        value: Value,
    },
    /// A piece of a node's LLM output.
    Messages {
        /// The node.
        node: String,
        /// The text, as the model wrote it.
        chunk: String,
    },
    /// A task started or ended.
    Debug(DebugEvent),
    /// The run stopped at these interrupts.
    Interrupted(Vec<Interrupt>),
}

/// Copies an update for the `updates` mode (only streams ask `Update: Clone`).
type CloneUpdate<S> = fn(&<S as State>::Update) -> <S as State>::Update;

type Sender<S> = mpsc::UnboundedSender<Result<StreamEvent<S>, GraphError>>;

/// Where the executor reports events; each mode is on or off.
pub(crate) struct StreamSink<S: State> {
    tx: Option<Sender<S>>,
    values: bool,
    updates: Option<CloneUpdate<S>>,
    custom: Option<Emitter>,
    debug: bool,
}

impl<S: State> Clone for StreamSink<S> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            values: self.values,
            updates: self.updates,
            custom: self.custom.clone(),
            debug: self.debug,
        }
    }
}

impl<S: State> StreamSink<S> {
    /// A sink forwarding only what nodes emit (`custom` and `messages`) to `emitter`
    /// (subgraphs).
    pub(crate) fn custom_only(emitter: Emitter) -> Self {
        Self {
            tx: None,
            values: false,
            updates: None,
            custom: Some(emitter),
            debug: false,
        }
    }

    pub(crate) fn debugging(&self) -> bool {
        self.debug
    }

    pub(crate) fn emitter(&self) -> Option<Emitter> {
        self.custom.clone()
    }

    fn send(&self, event: StreamEvent<S>) {
        if let Some(tx) = &self.tx {
            // A dropped receiver only means nobody listens any more.
            let _ = tx.unbounded_send(Ok(event));
        }
    }

    pub(crate) fn values(&self, state: &S) {
        if self.values {
            self.send(StreamEvent::Values(state.clone()));
        }
    }

    pub(crate) fn update(&self, node: &str, update: &S::Update) {
        if let Some(clone) = self.updates {
            self.send(StreamEvent::Updates {
                node: node.to_owned(),
                update: clone(update),
            });
        }
    }

    pub(crate) fn debug(&self, event: DebugEvent) {
        if self.debug {
            self.send(StreamEvent::Debug(event));
        }
    }

    pub(crate) fn interrupted(&self, interrupts: &[Interrupt]) {
        self.send(StreamEvent::Interrupted(interrupts.to_vec()));
    }
}

fn clone_update<S: State>(update: &S::Update) -> S::Update
where
    S::Update: Clone,
{
    update.clone()
}

impl<S: State> CompiledGraph<S> {
    /// Runs the graph and streams its events in the chosen `modes` (LangGraph's
    /// `stream`). The stream ends after the run; a failed run ends it with the error.
    /// With [`StreamMode::Values`] the first event is the input state and the last the
    /// final state.
    ///
    /// ```
    /// use agent_core::graph::{END, RunConfig, RunContext, START, StateGraph, StreamEvent, StreamMode, reducer::{Append, Overwrite}};
    /// use futures::StreamExt;
    /// agent_core::state! {
    ///     /// Example state.
    ///     pub struct S / U {
    ///         /// A counter.
    ///         pub x: u32 => Overwrite,
    ///         /// Outputs, appended.
    ///         pub out: Vec<String> => Append,
    ///     }
    /// }
    /// # futures::executor::block_on(async {
    /// let mut g = StateGraph::new();
    /// g.add_node("talk", |_: S, ctx: RunContext| async move {
    ///     ctx.emit("token");
    ///     Ok(U::default().out(vec!["said".to_owned()]))
    /// })
    /// .add_edge(START, "talk")
    /// .add_edge("talk", END);
    /// let app = g.compile()?;
    /// let events: Vec<_> = app.stream(S::default(), RunConfig::default(), &[StreamMode::Custom, StreamMode::Updates]).collect().await;
    /// assert!(matches!(&events[0], Ok(StreamEvent::Custom { value, .. }) if value == "token"));
    /// assert!(matches!(&events[1], Ok(StreamEvent::Updates { node, .. }) if node == "talk"));
    /// # Ok::<(), agent_core::graph::GraphError>(())
    /// # }).unwrap();
    /// ```
    pub fn stream(
        &self,
        input: impl Into<Input<S>>,
        config: RunConfig,
        modes: &[StreamMode],
    ) -> impl Stream<Item = Result<StreamEvent<S>, GraphError>> + Send + 'static
    where
        S::Update: Clone,
    {
        let (tx, rx) = mpsc::unbounded();
        let custom_tx = tx.clone();
        let error_tx = tx.clone();
        let (custom, messages) = (
            modes.contains(&StreamMode::Custom),
            modes.contains(&StreamMode::Messages),
        );
        let custom: Option<Emitter> = (custom || messages).then(|| {
            Arc::new(move |node: &str, emitted: Emitted| {
                let event = match emitted {
                    Emitted::Custom(value) if custom => StreamEvent::Custom {
                        node: node.to_owned(),
                        value,
                    },
                    Emitted::Token(chunk) if messages => StreamEvent::Messages {
                        node: node.to_owned(),
                        chunk,
                    },
                    _ => return,
                };
                let _ = custom_tx.unbounded_send(Ok(event));
            }) as Emitter
        });
        let sink = StreamSink {
            tx: Some(tx),
            values: modes.contains(&StreamMode::Values),
            updates: modes
                .contains(&StreamMode::Updates)
                .then_some(clone_update::<S> as CloneUpdate<S>),
            custom,
            debug: modes.contains(&StreamMode::Debug),
        };
        let graph = self.clone();
        let input = input.into();
        if let Input::State(state) = &input {
            sink.values(state);
        }
        let run = async move {
            if let Err(err) = graph.execute(input, config, Some(sink)).await {
                let _ = error_tx.unbounded_send(Err(err));
            }
        };
        // The error goes through the channel too, after every event the run sent; the
        // run's own stream item is dropped. The channel closes when the run (holding the
        // last senders) ends.
        let driver = futures::stream::once(run).filter_map(|()| async { None });
        futures::stream::select(rx, driver)
    }
}
