//! The generation graph: conversation → task on the events topic.
//!
//! ```text
//! START → draft → validate ─(valid)→ publish → END
//!           ▲         │
//!           └(invalid, attempts left)┘   (invalid, none left) → END
//! ```
//!
//! `draft` asks the LLM for `{task_name, task_description, context}` under
//! [`llm_task_schema`] (structured output); `validate` builds a [`Task`] from it (and
//! re-asks, up to [`MAX_DRAFTS`] in all, when the answer breaks the task rules);
//! `publish` sends the task keyed by `task_id` and waits for the broker's
//! acknowledgement.

use std::sync::Arc;

use agent_core::{
    graph::{
        CompiledGraph, END, GraphError, NodeError, RetryPolicy, RunContext, START, State,
        StateGraph,
    },
    task::{Task, TaskDraft, TaskStatus, TokenUsage, llm_task_schema},
};
use agent_runtime::{
    kafka::{CloudEvent, Delivery, Producer, headers::TASK_CREATED},
    llm::{ChatMessage, LlmClient, Role},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SERVICE;

/// Drafts asked of the LLM before giving up on an invalid answer.
pub const MAX_DRAFTS: u32 = 3;
/// Longest answer asked of the LLM, in tokens.
const DRAFT_MAX_TOKENS: u32 = 320;

const SYSTEM_PROMPT: &str = "You turn a conversation between a user and an assistant into one \
task for a solver agent. Answer only with a JSON object with three string fields: \
task_name (a short title of at most 10 words), task_description (what the solver must do, \
in one to three sentences) and context (the facts from the conversation the solver needs, \
in one or two sentences).";

/// A conversation as clients send it: one transcript (`"User: …\nAssistant: …"`) or a list
/// of `{role, content}` messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Conversation {
    /// A transcript.
    Transcript(String),
    /// Messages, oldest first.
    Messages(Vec<ChatMessage>),
}

impl Conversation {
    /// The conversation as one transcript, a line per message (`User: …`), trimmed.
    pub fn transcript(&self) -> String {
        match self {
            Self::Transcript(text) => text.trim().to_owned(),
            Self::Messages(messages) => messages
                .iter()
                .filter(|m| !m.content.trim().is_empty())
                .map(|m| {
                    let who = match m.role {
                        Role::System => "System",
                        Role::User => "User",
                        Role::Assistant => "Assistant",
                    };
                    format!("{who}: {}", m.content.trim())
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Why generation failed; each maps to an HTTP status in [`crate::routes`].
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The LLM request failed (after its retries).
    #[error("the model failed: {0}")]
    Llm(String),
    /// The LLM kept answering with tasks that break the rules.
    #[error("the model proposed no valid task in {MAX_DRAFTS} tries; last problem: {0}")]
    InvalidTask(String),
    /// The broker did not acknowledge the task.
    #[error("the task could not be stored on the broker: {0}")]
    Publish(String),
    /// The graph itself failed (a bug).
    #[error("generation graph failed: {0}")]
    Graph(String),
}

/// The generation graph's state.
#[derive(Debug, Clone, Default)]
pub struct GenerationState {
    /// The conversation transcript (input).
    pub transcript: String,
    /// The task id to assign (input), so the caller knows it up front.
    pub task_id: Uuid,
    /// Whether the task asks for human review (input; see `Task::human_review`).
    pub human_review: bool,
    /// Drafts asked so far.
    pub drafts: u32,
    /// The last draft, when not yet validated.
    pub draft: Option<serde_json::Value>,
    /// The last validation problem.
    pub problem: Option<String>,
    /// The validated task.
    pub task: Option<Task>,
    /// Where the broker stored it.
    pub delivery: Option<Delivery>,
    /// Tokens spent.
    pub usage: TokenUsage,
}

/// One node's contribution to [`GenerationState`].
#[derive(Debug, Clone)]
pub enum GenerationUpdate {
    /// `draft` got an answer: JSON, or why the answer was unusable.
    Drafted(Result<serde_json::Value, String>, TokenUsage),
    /// `validate` accepted the draft.
    Valid(Task),
    /// `validate` rejected it, saying why.
    Invalid(String),
    /// `publish` got the acknowledgement.
    Published(Delivery),
}

impl State for GenerationState {
    type Update = GenerationUpdate;

    fn apply(&mut self, update: GenerationUpdate) -> Result<(), GraphError> {
        match update {
            GenerationUpdate::Drafted(draft, usage) => {
                self.drafts += 1;
                self.usage += usage;
                match draft {
                    Ok(draft) => self.draft = Some(draft),
                    Err(problem) => {
                        self.draft = None;
                        self.problem = Some(problem);
                    }
                }
            }
            GenerationUpdate::Valid(task) => {
                self.task = Some(task);
                self.problem = None;
            }
            GenerationUpdate::Invalid(problem) => self.problem = Some(problem),
            GenerationUpdate::Published(delivery) => self.delivery = Some(delivery),
        }
        Ok(())
    }
}

/// What the graph's nodes need.
#[derive(Clone)]
pub struct Deps {
    /// The model.
    pub llm: LlmClient,
    /// The producer.
    pub producer: Producer,
    /// The events topic.
    pub events_topic: String,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// The outcome of one generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The task as published.
    pub task: Task,
    /// Where the broker stored it.
    pub delivery: Delivery,
    /// Tokens spent.
    pub usage: TokenUsage,
}

/// The answer of `POST /generate-task`, and the `task` event of its event stream.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, utoipa::ToSchema)]
#[schema(example = json!({
    "task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "status": "pending",
    "task": {"task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "task_name": "Project help",
             "task_description": "Help the user with their project.",
             "context": "The user needs help with a project.",
             "created_at": "2026-11-21T13:27:24.100Z", "source": "task-generator"},
    "topic": "dev-langgraph-agent-events", "partition": 1, "offset": 0
}))]
pub struct Accepted {
    /// The task's id.
    pub task_id: Uuid,
    /// The task as published.
    pub task: Task,
    /// Always `pending`: the task waits for a solver.
    pub status: TaskStatus,
    /// The events topic it was published to.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

impl Accepted {
    /// The answer for `generated`.
    pub fn of(generated: &Generated) -> Self {
        Self {
            task_id: generated.task.task_id,
            task: generated.task.clone(),
            status: TaskStatus::Pending,
            topic: generated.delivery.topic.clone(),
            partition: generated.delivery.partition,
            offset: generated.delivery.offset,
        }
    }
}

/// Builds the generation graph.
///
/// # Errors
/// [`GraphError`] if the graph does not compile (a bug caught by the tests).
pub fn graph(deps: Deps) -> Result<CompiledGraph<GenerationState>, GraphError> {
    let deps = Arc::new(deps);
    let mut g = StateGraph::new();
    // The client of the draft node: its requests are labelled `draft`.
    let llm = Arc::new(deps.llm.for_node("draft"));
    g.add_node("draft", move |s: GenerationState, _ctx: RunContext| {
        let llm = Arc::clone(&llm);
        async move { draft(&llm, &s).await }
    });
    g.add_node(
        "validate",
        |s: GenerationState, _ctx: RunContext| async move { Ok(validate(&s)) },
    );
    let d = Arc::clone(&deps);
    g.add_node("publish", move |s: GenerationState, _ctx: RunContext| {
        let d = Arc::clone(&d);
        async move { publish(&d, &s).await }
    });
    g.add_edge(START, "draft")
        .add_edge("draft", "validate")
        .add_conditional_edges(
            "validate",
            |s: &GenerationState| match (&s.task, s.drafts) {
                (Some(_), _) => "valid",
                (None, n) if n < MAX_DRAFTS => "retry",
                (None, _) => "give_up",
            },
            [("valid", "publish"), ("retry", "draft"), ("give_up", END)],
        )
        .add_edge("publish", END)
        // The client already retries 429s, 5xx and connection errors; a request that
        // timed out is tried once more.
        .retry_policy(
            "draft",
            RetryPolicy {
                max_attempts: 2,
                initial_interval: std::time::Duration::from_secs(1),
                ..RetryPolicy::default()
            },
        );
    g.compile()
}

/// Runs `graph` on a conversation transcript and returns the published task.
///
/// # Errors
/// [`GenerationError`] saying which step failed and why.
pub async fn generate(
    graph: &CompiledGraph<GenerationState>,
    transcript: String,
    human_review: bool,
) -> Result<Generated, GenerationError> {
    let task_id = Uuid::new_v4();
    let input = GenerationState {
        transcript,
        task_id,
        human_review,
        ..GenerationState::default()
    };
    let config = agent_core::graph::RunConfig::thread(task_id.to_string());
    let out = graph
        .invoke_with(input, config)
        .await
        .map_err(generation_error)?;
    generated(out)
}

/// A node of the generation graph starting or finishing, as [`generate_streamed`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStep {
    /// `draft`, `validate` or `publish`.
    pub node: String,
    /// The superstep, from 0.
    pub superstep: u64,
    /// `None` when it started; how long it ran when it finished.
    pub finished_after: Option<std::time::Duration>,
}

/// [`generate`] with the id the task will have (the caller may already have told it
/// to its client), reporting each node's start and end to `on_step` as it happens.
///
/// # Errors
/// As [`generate`].
pub async fn generate_streamed(
    graph: &CompiledGraph<GenerationState>,
    transcript: String,
    human_review: bool,
    task_id: Uuid,
    mut on_step: impl FnMut(NodeStep),
) -> Result<Generated, GenerationError> {
    use agent_core::graph::{DebugEvent, StreamEvent, StreamMode};
    use futures::StreamExt;

    let input = GenerationState {
        transcript,
        task_id,
        human_review,
        ..GenerationState::default()
    };
    let config = agent_core::graph::RunConfig::thread(task_id.to_string());
    let mut events =
        std::pin::pin!(graph.stream(input, config, &[StreamMode::Values, StreamMode::Debug]));
    let mut last = None;
    while let Some(event) = events.next().await {
        match event.map_err(generation_error)? {
            StreamEvent::Values(state) => last = Some(state),
            StreamEvent::Debug(DebugEvent::TaskStart { step, node, .. }) => on_step(NodeStep {
                node,
                superstep: step as u64,
                finished_after: None,
            }),
            StreamEvent::Debug(DebugEvent::TaskEnd {
                step,
                node,
                elapsed,
                ..
            }) => on_step(NodeStep {
                node,
                superstep: step as u64,
                finished_after: Some(elapsed),
            }),
            _ => {}
        }
    }
    generated(last.ok_or_else(|| GenerationError::Graph("the run streamed no state".into()))?)
}

/// A failed run as the step that failed.
fn generation_error(err: GraphError) -> GenerationError {
    match err {
        GraphError::Node { error, .. } => match error
            .inner()
            .and_then(|e| e.downcast_ref::<GenerationError>())
        {
            Some(GenerationError::Llm(m)) => GenerationError::Llm(m.clone()),
            Some(GenerationError::Publish(m)) => GenerationError::Publish(m.clone()),
            Some(other) => GenerationError::Graph(other.to_string()),
            None => GenerationError::Graph(error.to_string()),
        },
        other => GenerationError::Graph(other.to_string()),
    }
}

/// The published task of a finished run, or why there is none.
fn generated(out: GenerationState) -> Result<Generated, GenerationError> {
    match (out.task, out.delivery) {
        (Some(task), Some(delivery)) => Ok(Generated {
            task,
            delivery,
            usage: out.usage,
        }),
        _ => Err(GenerationError::InvalidTask(
            out.problem.unwrap_or_else(|| "no task".into()),
        )),
    }
}

#[tracing::instrument(skip_all, fields(task_id = %s.task_id, attempt = s.drafts + 1))]
async fn draft(llm: &LlmClient, s: &GenerationState) -> Result<GenerationUpdate, NodeError> {
    let mut messages = vec![
        ChatMessage::system(SYSTEM_PROMPT),
        ChatMessage::user(format!("Conversation:\n{}", s.transcript)),
    ];
    if let Some(problem) = &s.problem {
        messages.push(ChatMessage::user(format!(
            "Your last answer was not usable ({problem}). Answer again with a non-empty task_name and task_description."
        )));
    }
    match llm
        .structured(&messages, "task", llm_task_schema(), DRAFT_MAX_TOKENS)
        .await
    {
        Ok(answer) => Ok(GenerationUpdate::Drafted(Ok(answer.content), answer.usage)),
        Err(agent_runtime::Error::LlmAnswer(problem)) => {
            tracing::warn!(problem = %problem, "the model's answer is unusable");
            Ok(GenerationUpdate::Drafted(
                Err(problem),
                TokenUsage::default(),
            ))
        }
        Err(err @ agent_runtime::Error::LlmTimeout(_)) => {
            Err(NodeError::transient(GenerationError::Llm(err.to_string())))
        }
        Err(err) => Err(NodeError::permanent(GenerationError::Llm(err.to_string()))),
    }
}

fn validate(s: &GenerationState) -> GenerationUpdate {
    let Some(draft) = s.draft.clone() else {
        return GenerationUpdate::Invalid(s.problem.clone().unwrap_or_else(|| "no draft".into()));
    };
    let parsed: Result<TaskDraft, _> = serde_json::from_value(draft);
    let task = parsed.map_err(agent_core::Error::from).and_then(|d| {
        TaskDraft {
            task_id: Some(s.task_id),
            source: Some(SERVICE.to_owned()),
            created_at: None,
            human_review: s.human_review,
            ..d
        }
        .into_task(Uuid::new_v4)
    });
    match task {
        Ok(task) => GenerationUpdate::Valid(task),
        Err(err) => {
            tracing::warn!(task_id = %s.task_id, problem = %err, "the model's draft is invalid");
            GenerationUpdate::Invalid(err.to_string())
        }
    }
}

#[tracing::instrument(skip_all, fields(task_id = %s.task_id))]
async fn publish(deps: &Deps, s: &GenerationState) -> Result<GenerationUpdate, NodeError> {
    let task = s
        .task
        .as_ref()
        .ok_or_else(|| GenerationError::Graph("publish ran without a task".into()))?;
    let event = CloudEvent::new(SERVICE, TASK_CREATED, None);
    let delivery = deps
        .producer
        .send_json(&deps.events_topic, &task.task_id.to_string(), task, &event)
        .await
        .map_err(|err| NodeError::permanent(GenerationError::Publish(err.to_string())))?;
    metrics::counter!("tasks_published_total").increment(1);
    tracing::info!(
        topic = %delivery.topic,
        partition = delivery.partition,
        offset = delivery.offset,
        trace_id = %event.trace.trace_id_hex(),
        "task published"
    );
    Ok(GenerationUpdate::Published(delivery))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_and_message_lists_normalize_alike() {
        let text: Conversation =
            serde_json::from_str(r#""  User: hi\nAssistant: hello  ""#).expect("string");
        assert_eq!(text.transcript(), "User: hi\nAssistant: hello");
        let list: Conversation = serde_json::from_str(
            r#"[{"role": "user", "content": " hi "}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": ""}]"#,
        )
        .expect("list");
        assert_eq!(list.transcript(), "User: hi\nAssistant: hello");
    }

    #[test]
    fn validate_accepts_a_good_draft_and_names_the_problem_of_a_bad_one() {
        let id = Uuid::new_v4();
        let mut s = GenerationState {
            task_id: id,
            draft: Some(
                serde_json::json!({"task_name": "Plan", "task_description": "Do it", "context": "c"}),
            ),
            ..GenerationState::default()
        };
        match validate(&s) {
            GenerationUpdate::Valid(task) => {
                assert_eq!(task.task_id, id);
                assert_eq!(task.source.as_deref(), Some(SERVICE));
            }
            other => panic!("unexpected {other:?}"),
        }
        s.draft =
            Some(serde_json::json!({"task_name": "", "task_description": "Do it", "context": ""}));
        match validate(&s) {
            GenerationUpdate::Invalid(problem) => {
                assert!(problem.contains("task_name"), "{problem}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
