//! Mermaid text of a compiled graph, as LangGraph's `draw_mermaid`.

use std::fmt::Write as _;

use super::{
    CompiledGraph, END, START, State,
    pregel::{Edge, Target},
};

impl<S: State> CompiledGraph<S> {
    /// The graph as a Mermaid flowchart: `START` and `END` as stadiums, fixed edges solid,
    /// conditional edges, command destinations and unmapped routers dotted (labelled with
    /// their route keys), fan-in edges solid from each source. Paste it into any Mermaid
    /// renderer (GitHub Markdown renders ```` ```mermaid ```` blocks).
    ///
    /// ```
    /// use agent_core::graph::{END, START, StateGraph, reducer::Overwrite};
    ///
    /// agent_core::state! {
    ///     /// Example state.
    ///     pub struct S / U {
    ///         /// A counter.
    ///         pub x: u32 => Overwrite,
    ///     }
    /// }
    /// let mut g = StateGraph::new();
    /// g.add_node("plan", |_: S, _| async { Ok(U::default()) })
    ///     .add_node("act", |_: S, _| async { Ok(U::default()) })
    ///     .add_edge(START, "plan")
    ///     .add_conditional_edges("plan", |s: &S| if s.x > 0 { "go" } else { "stop" }, [("go", "act"), ("stop", END)])
    ///     .add_edge("act", END);
    /// let text = g.compile()?.draw_mermaid();
    /// assert!(text.contains("__start__ --> plan;"));
    /// assert!(text.contains("plan -. &nbsp;go&nbsp; .-> act;"));
    /// # Ok::<(), agent_core::graph::GraphError>(())
    /// ```
    pub fn draw_mermaid(&self) -> String {
        let spec = &*self.spec;
        let mut out =
            String::from("---\nconfig:\n  flowchart:\n    curve: linear\n---\ngraph TD;\n");
        let id = |name: &str| name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let target = |t: &Target| match t {
            Target::End => END.to_owned(),
            Target::Node(i) => spec.names[*i].to_string(),
        };
        let _ = writeln!(out, "\t{START}([<p>{START}</p>]):::first");
        for name in &spec.names {
            let _ = writeln!(out, "\t{}({name})", id(name));
        }
        let _ = writeln!(out, "\t{END}([<p>{END}</p>]):::last");
        let sources = std::iter::once((START.to_owned(), &spec.start_edges))
            .chain(spec.names.iter().map(|name| id(name)).zip(&spec.edges));
        for (from, edges) in sources {
            for edge in edges {
                match edge {
                    Edge::Fixed(t) => {
                        let _ = writeln!(out, "\t{from} --> {};", id(&target(t)));
                    }
                    Edge::Conditional { map, .. } if map.is_empty() => {
                        // An unmapped router may reach any node.
                        for name in &spec.names {
                            let _ = writeln!(out, "\t{from} -.-> {};", id(name));
                        }
                        let _ = writeln!(out, "\t{from} -.-> {END};");
                    }
                    Edge::Conditional { map, .. } => {
                        for (key, t) in map {
                            let to = id(&target(t));
                            if *key == target(t) {
                                let _ = writeln!(out, "\t{from} -.-> {to};");
                            } else {
                                let _ = writeln!(out, "\t{from} -. &nbsp;{key}&nbsp; .-> {to};");
                            }
                        }
                    }
                }
            }
        }
        for (i, dests) in spec.destinations.iter().enumerate() {
            for t in dests {
                let _ = writeln!(out, "\t{} -.-> {};", id(&spec.names[i]), id(&target(t)));
            }
        }
        for join in &spec.joins {
            for source in &join.sources {
                let _ = writeln!(
                    out,
                    "\t{} --> {};",
                    id(&spec.names[*source]),
                    id(&target(&join.target))
                );
            }
        }
        out.push_str("\tclassDef default fill:#f2f0ff,line-height:1.2\n");
        out.push_str("\tclassDef first fill-opacity:0\n");
        out.push_str("\tclassDef last fill:#bfb6fc\n");
        out
    }
}
