//! The two pure halves of a superstep's end (LangGraph's `pregel/_algo.py`):
//! [`apply_writes`] merges the finished tasks' updates through the state's reducers, and
//! [`prepare_next_tasks`] follows edges, commands, `Send`s and fan-in joins to the next
//! step's [`PregelTask`]s.

use super::spec::{Edge, Source, Spec, Target};
use crate::graph::{Command, END, Goto, GraphError, State, stream::StreamSink};

/// The sources that finished a step (or START, before the first), each with its
/// command's gotos: what [`prepare_next_tasks`] follows.
pub(crate) type Finished<S> = Vec<(Source, Vec<Goto<S>>)>;

/// One task of a superstep (LangGraph's `PregelExecutableTask`): a node to run, on the
/// state or on its own input.
pub(crate) struct PregelTask<S> {
    /// `{step}:{node}:{index}`, unique within a thread's step; keys resume values and
    /// pending writes.
    pub(crate) id: String,
    /// Node index.
    pub(crate) node: usize,
    /// Its own input state (a `Send`); `None` reads the step's state.
    pub(crate) arg: Option<S>,
}

/// The tasks of step `step` after `finished` sources (with their commands' gotos) ran
/// over `state`: fixed edges, routers read on the merged `state`, gotos and `Send`s; a
/// node's finish counts towards each fan-in join in `joins` (one list per [`Spec::joins`]
/// entry, of the sources seen since its target last ran), which fires its target once
/// every source is in. Triggered nodes run once each, in the order they were added, then
/// one task per `Send`, in order sent.
///
/// # Errors
/// [`GraphError::UnknownRoute`] for a route key, node name or `Send` target that names
/// nothing reachable.
pub(crate) fn prepare_next_tasks<S: State>(
    spec: &Spec<S>,
    step: usize,
    state: &S,
    finished: Finished<S>,
    joins: &mut [Vec<usize>],
) -> Result<Vec<PregelTask<S>>, GraphError> {
    let mut triggered: Vec<usize> = Vec::new();
    let mut sends: Vec<(usize, S)> = Vec::new();
    let follow = |triggered: &mut Vec<usize>,
                  sends: &mut Vec<(usize, S)>,
                  from: Source,
                  goto: Goto<S>,
                  map: Option<&[(String, Target)]>|
     -> Result<(), GraphError> {
        match goto {
            Goto::Node(key) => {
                let target = match map {
                    Some(map) if !map.is_empty() => {
                        map.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
                    }
                    _ if key == END => Some(Target::End),
                    _ => spec.index.get(&key).map(|&i| Target::Node(i)),
                };
                match target {
                    Some(Target::Node(i)) => triggered.push(i),
                    Some(Target::End) => {}
                    None => {
                        return Err(GraphError::UnknownRoute {
                            node: spec.name_of(from).to_owned(),
                            route: key,
                        });
                    }
                }
            }
            Goto::Send(send) => match spec.index.get(&send.node) {
                Some(&i) => sends.push((i, send.arg)),
                None => {
                    return Err(GraphError::UnknownRoute {
                        node: spec.name_of(from).to_owned(),
                        route: send.node,
                    });
                }
            },
        }
        Ok(())
    };
    for (source, gotos) in finished {
        for edge in spec.edges_from(source) {
            match edge {
                Edge::Fixed(Target::Node(i)) => triggered.push(*i),
                Edge::Fixed(Target::End) => {}
                Edge::Conditional { router, map } => {
                    for goto in router(state) {
                        follow(&mut triggered, &mut sends, source, goto, Some(map))?;
                    }
                }
            }
        }
        for goto in gotos {
            follow(&mut triggered, &mut sends, source, goto, None)?;
        }
        if let Source::Node(node) = source {
            for (j, join) in spec.joins.iter().enumerate() {
                if join.sources.contains(&node) && !joins[j].contains(&node) {
                    joins[j].push(node);
                    if joins[j].len() == join.sources.len() {
                        joins[j].clear();
                        if let Target::Node(i) = join.target {
                            triggered.push(i);
                        }
                    }
                }
            }
        }
    }
    triggered.sort_unstable();
    triggered.dedup();
    let mut tasks: Vec<PregelTask<S>> = triggered
        .into_iter()
        .map(|node| PregelTask {
            id: String::new(),
            node,
            arg: None,
        })
        .collect();
    tasks.extend(sends.into_iter().map(|(node, arg)| PregelTask {
        id: String::new(),
        node,
        arg: Some(arg),
    }));
    for (i, task) in tasks.iter_mut().enumerate() {
        task.id = format!("{step}:{}:{i}", spec.names[task.node]);
    }
    Ok(tasks)
}

/// Merges the commands of a superstep's finished `tasks` into `state`, in task order,
/// through [`State::apply_step`], reporting each update to `sink`'s `updates` mode first;
/// `commands` pairs a task's index in `tasks` with its command. Returns each task's node
/// with its gotos, for [`prepare_next_tasks`].
///
/// # Errors
/// Whatever the reducers return; an [`GraphError::InvalidUpdate`] that names no node is
/// given the step's label ([`Spec::step_label`]).
#[inline]
pub(crate) fn apply_writes<S: State>(
    spec: &Spec<S>,
    state: &mut S,
    tasks: &[PregelTask<S>],
    commands: Vec<(usize, Command<S>)>,
    sink: Option<&StreamSink<S>>,
) -> Result<Finished<S>, GraphError> {
    let mut updates = Vec::with_capacity(commands.len());
    let mut gotos: Finished<S> = Vec::with_capacity(commands.len());
    for (i, command) in commands {
        let node = tasks[i].node;
        if let Some(update) = command.update {
            if let Some(sink) = sink {
                sink.update(&spec.names[node], &update);
            }
            updates.push(update);
        }
        gotos.push((Source::Node(node), command.goto));
    }
    state.apply_step(updates).map_err(|err| match err {
        GraphError::InvalidUpdate { node, reason } if node.is_empty() => {
            GraphError::InvalidUpdate {
                node: spec.step_label(tasks.iter().map(|t| t.node)),
                reason,
            }
        }
        other => other,
    })?;
    Ok(gotos)
}
