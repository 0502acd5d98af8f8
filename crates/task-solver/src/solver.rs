//! The solver graph: plan → (review) → solve → format.
//!
//! ```text
//! START → plan ─(human_review)→ review ─(approved, or an edited plan)→ solve → format → END
//!           ▲  └──────────────────────────────────────────────────────┘▲
//!           └────────────(rejected: plan again, with the feedback)──┘
//! ```
//!
//! `review` runs only for a task with `human_review`: it pauses the run with
//! `interrupt({"plan": …})` until a person's [`Review`] resumes it ([`crate::review`]).
//! `plan` asks the LLM for a short numbered plan (and emits it as a `custom` event
//! `{"plan": …}`); `solve` asks it to carry the plan out and answer, streaming the answer
//! as the model writes it (`ctx.emit_token`: the run's `messages` stream, published as
//! `token` progress events); `format` assembles the result text: that answer, trimmed. A timed-out request or an unusable
//! answer is asked again, up to [`LLM_NODE_ATTEMPTS`] in all; past that, or on any other
//! LLM failure, the run fails with the reason, which the worker turns into a `failed`
//! result.

use std::{sync::Arc, time::Duration};

use agent_core::{
    graph::{
        Checkpointer, CompiledGraph, END, GraphError, NodeError, RetryPolicy, RunContext, START,
        State, StateGraph,
    },
    task::{Review, Task, TokenUsage},
};
use agent_runtime::llm::{ChatMessage, LlmClient};
use serde::{Deserialize, Serialize};

const PLAN_MAX_TOKENS: u32 = 128;
const SOLVE_MAX_TOKENS: u32 = 320;

/// The solver graph's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SolverState {
    /// The task (input).
    pub task: Task,
    /// The plan, after `plan` (or as the reviewer edited it).
    pub plan: Option<String>,
    /// The reviewer's last decision, after `review`.
    #[serde(default)]
    pub review: Option<Review>,
    /// The plans the reviewer rejected, each with its feedback, oldest first: what
    /// `plan` is told when it plans again.
    #[serde(default)]
    pub rejected: Vec<(String, Option<String>)>,
    /// The answer, after `solve`.
    pub answer: Option<String>,
    /// The result text, after `format`.
    pub result: Option<String>,
    /// Tokens spent.
    pub usage: TokenUsage,
}

impl SolverState {
    /// The initial state for `task`.
    pub fn new(task: Task) -> Self {
        Self {
            task,
            plan: None,
            review: None,
            rejected: Vec::new(),
            answer: None,
            result: None,
            usage: TokenUsage::default(),
        }
    }
}

/// One node's contribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SolverUpdate {
    /// `plan` answered.
    Planned(String, TokenUsage),
    /// `review` got a person's decision.
    Reviewed(Review),
    /// `solve` answered.
    Solved(String, TokenUsage),
    /// `format` assembled the result.
    Formatted(String),
}

impl State for SolverState {
    type Update = SolverUpdate;

    fn apply(&mut self, update: SolverUpdate) -> Result<(), GraphError> {
        match update {
            SolverUpdate::Planned(plan, usage) => {
                self.plan = Some(plan);
                self.review = None;
                self.usage += usage;
            }
            SolverUpdate::Reviewed(review) => {
                match &review {
                    Review::Approved | Review::TimedOut { .. } => {}
                    Review::Rejected { feedback } => {
                        let plan = self.plan.take().unwrap_or_default();
                        self.rejected.push((plan, feedback.clone()));
                    }
                    Review::Edited { plan } => self.plan = Some(plan.clone()),
                }
                self.review = Some(review);
            }
            SolverUpdate::Solved(answer, usage) => {
                self.answer = Some(answer);
                self.usage += usage;
            }
            SolverUpdate::Formatted(result) => self.result = Some(result),
        }
        Ok(())
    }
}

fn describe(task: &Task) -> String {
    let mut text = format!("Task: {}\n{}", task.task_name, task.task_description);
    if !task.context.trim().is_empty() {
        text.push_str(&format!("\nContext: {}", task.context));
    }
    text
}

/// How many times an LLM node asks in all when the model times out or answers with
/// something unusable (an empty answer, a body that is not a chat completion).
pub const LLM_NODE_ATTEMPTS: u32 = 3;

/// Retries of an LLM node: the client already retries 429s, 5xx and connection errors,
/// so the graph re-asks what it does not — a request that timed out, an unusable answer
/// — up to [`LLM_NODE_ATTEMPTS`] in all; past that the run fails with the last reason.
fn llm_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: LLM_NODE_ATTEMPTS,
        initial_interval: Duration::from_secs(1),
        ..RetryPolicy::default()
    }
}

/// Builds the solver graph over `llm`, checkpointed by `checkpointer` when given (thread
/// id = task id, so a redelivered task resumes where it stopped).
///
/// # Errors
/// [`GraphError`] if the graph does not compile (a bug caught by the tests).
pub fn graph(
    llm: LlmClient,
    checkpointer: Option<Arc<dyn Checkpointer>>,
) -> Result<CompiledGraph<SolverState>, GraphError> {
    let mut g = StateGraph::new();
    let l = Arc::new(llm.for_node("plan"));
    g.add_node("plan", move |s: SolverState, ctx: RunContext| {
        let llm = Arc::clone(&l);
        async move {
            let mut messages = vec![
                ChatMessage::system(
                    "You are a careful planner. Write a short numbered plan (at most 5 steps) to solve the task.",
                ),
                ChatMessage::user(describe(&s.task)),
            ];
            for (plan, feedback) in &s.rejected {
                messages.push(ChatMessage::user(format!(
                    "A reviewer rejected this plan:\n{plan}\nTheir feedback: {}\nWrite a new plan.",
                    feedback.as_deref().unwrap_or("(none given)")
                )));
            }
            let answer = llm
                .chat(&messages, PLAN_MAX_TOKENS)
                .await
                .map_err(agent_runtime::Error::into_node_error)?;
            ctx.emit(serde_json::json!({ "plan": answer.content }));
            Ok::<_, NodeError>(SolverUpdate::Planned(answer.content, answer.usage))
        }
    });
    let l = Arc::new(llm.for_node("solve"));
    g.add_node("solve", move |s: SolverState, ctx: RunContext| {
        let llm = Arc::clone(&l);
        async move {
            let plan = s.plan.as_deref().unwrap_or("(no plan)");
            let messages = [
                ChatMessage::system(
                    "You are a helpful expert. Carry out the plan and give the final answer to the task, concisely.",
                ),
                ChatMessage::user(format!("{}\n\nPlan:\n{plan}", describe(&s.task))),
            ];
            let answer = llm
                .chat_stream(&messages, SOLVE_MAX_TOKENS, |piece| ctx.emit_token(piece))
                .await
                .map_err(agent_runtime::Error::into_node_error)?;
            Ok::<_, NodeError>(SolverUpdate::Solved(answer.content, answer.usage))
        }
    });
    g.add_node("review", |s: SolverState, ctx: RunContext| async move {
        let decision = ctx.interrupt(serde_json::json!({ "plan": s.plan }))?;
        // The resume was checked when it was read (`ResumeRequest`); a value that is not
        // a decision cannot come from it.
        let review = Review::try_from(decision)
            .map_err(|err| NodeError::permanent(format!("the review's answer: {err}")))?;
        if let Review::TimedOut { after_secs } = review {
            return Err(NodeError::permanent(format!(
                "review timed out: no decision within {after_secs} s (REVIEW_TIMEOUT_SECS)"
            )));
        }
        Ok::<_, NodeError>(SolverUpdate::Reviewed(review))
    });
    g.add_node("format", |s: SolverState, _ctx: RunContext| async move {
        let answer = s.answer.unwrap_or_default();
        Ok::<_, NodeError>(SolverUpdate::Formatted(answer.trim().to_owned()))
    });
    g.add_edge(START, "plan")
        .add_conditional_edges(
            "plan",
            |s: &SolverState| {
                if s.task.human_review {
                    "review"
                } else {
                    "solve"
                }
            },
            [("review", "review"), ("solve", "solve")],
        )
        .add_conditional_edges(
            "review",
            |s: &SolverState| match s.review {
                Some(Review::Rejected { .. }) => "plan",
                _ => "solve",
            },
            [("plan", "plan"), ("solve", "solve")],
        )
        .add_edge("solve", "format")
        .add_edge("format", END)
        .retry_policy("plan", llm_retry())
        .retry_policy("solve", llm_retry());
    match checkpointer {
        Some(saver) => g.compile_with_checkpointer(saver),
        None => g.compile(),
    }
}
