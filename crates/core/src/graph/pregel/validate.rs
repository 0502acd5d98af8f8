//! Compile-time checks of a graph (LangGraph's `pregel/_validate.py`): node names, an
//! entry point, a path to `END` from every node.
//!
//! [`StateGraph::compile`](crate::graph::StateGraph::compile) calls [`node_index`] first,
//! resolves every edge against it (unknown names are [`GraphError::UnknownNode`] there),
//! then [`validate_graph`] on the resolved [`Spec`].

use std::collections::HashMap;

use super::spec::{Edge, Spec, Target};
use crate::graph::{END, GraphError, START, State};

/// Name → index of `names`, in order.
///
/// # Errors
/// [`GraphError::InvalidNodeName`] for the first empty, reserved (`START`, `END`) or
/// duplicate name.
pub(crate) fn node_index<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, usize>, GraphError> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        let reason = if name.is_empty() {
            Some("names must not be empty")
        } else if name == START || name == END {
            Some("START and END are reserved")
        } else if index.contains_key(name) {
            Some("a node of this name was already added")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(GraphError::InvalidNodeName {
                name: name.to_owned(),
                reason,
            });
        }
        index.insert(name.to_owned(), i);
    }
    Ok(index)
}

/// Checks a resolved graph can run: it has an entry point and every node can reach `END`.
///
/// # Errors
/// [`GraphError::NoEntryPoint`] when no edge leaves `START`; [`GraphError::NoPathToEnd`]
/// for the first node (in the order added) from which `END` cannot be reached.
pub(crate) fn validate_graph<S: State>(spec: &Spec<S>) -> Result<(), GraphError> {
    if spec.start_edges.is_empty() {
        return Err(GraphError::NoEntryPoint);
    }
    check_paths_to_end(spec)
}

/// Every node must reach `END`: walk the edges backwards from `END` until nothing changes.
fn check_paths_to_end<S: State>(spec: &Spec<S>) -> Result<(), GraphError> {
    let n = spec.names.len();
    let mut reaches = vec![false; n];
    let hits = |t: &Target, reaches: &[bool]| match t {
        Target::End => true,
        Target::Node(i) => reaches[*i],
    };
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            if reaches[i] {
                continue;
            }
            let via_edges = spec.edges[i].iter().any(|edge| match edge {
                Edge::Fixed(t) => hits(t, &reaches),
                // An unmapped router may go anywhere, END included.
                Edge::Conditional { map, .. } if map.is_empty() => true,
                Edge::Conditional { map, .. } => map.iter().any(|(_, t)| hits(t, &reaches)),
            });
            let via_commands = spec.destinations[i].iter().any(|t| hits(t, &reaches));
            let via_joins = spec
                .joins
                .iter()
                .any(|j| j.sources.contains(&i) && hits(&j.target, &reaches));
            if via_edges || via_commands || via_joins {
                reaches[i] = true;
                changed = true;
            }
        }
    }
    match reaches.iter().position(|r| !r) {
        Some(i) => Err(GraphError::NoPathToEnd {
            node: spec.names[i].to_string(),
        }),
        None => Ok(()),
    }
}
