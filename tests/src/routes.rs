//! The services' routes as methods of [`System`], zero2prod-style: a test says
//! `system.task_result(id)`, not the URL. Each answers an [`Answer`]: the status and the
//! JSON body as sent, for the checks of error answers, and [`Answer::ok`] for a 200 body
//! read as the route's type ([`GeneratedTask`], [`TaskView`], [`TaskResults`],
//! [`Delivery`], [`LastMessage`], [`Health`]), [`Answer::accepted`] a 202 body
//! ([`Resuming`]). The types are the project's own where they
//! deserialize ([`Task`], [`TaskResult`], [`TaskStatus`]); the services' answer types that
//! only serialize are mirrored here, with the fields the tests read.
//!
//! Requests that no well-behaved client sends (bad bodies, wrong methods, raw bytes) are
//! the tests' own: [`System::post_json`], [`System::get_json`], [`raw`](crate::raw).

use std::{
    fmt::Display,
    marker::PhantomData,
    time::{Duration, Instant},
};

use agent_core::task::{Task, TaskResult, TaskStatus};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::System;

/// What a route answered: its status and its body as JSON (`null` when the body is not
/// JSON); [`Answer::ok`] reads a 200 body as `T`.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON, `null` when it is not JSON.
    pub body: Value,
    shape: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Answer<T> {
    fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            shape: PhantomData,
        }
    }

    /// The body of a 200 answer as `T`.
    ///
    /// # Panics
    /// When the status is not 200 or the body is not a `T`; the message holds the body.
    pub fn ok(&self) -> T {
        assert_eq!(self.status, 200, "{}", self.body);
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|err| panic!("not the route's answer ({err}): {}", self.body))
    }

    /// The body of a 202 answer as `T`.
    ///
    /// # Panics
    /// When the status is not 202 or the body is not a `T`; the message holds the body.
    pub fn accepted(&self) -> T {
        assert_eq!(self.status, 202, "{}", self.body);
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|err| panic!("not the route's answer ({err}): {}", self.body))
    }
}

/// The 200 body of `POST /generate-task`: the published task and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GeneratedTask {
    /// The task's id, the key of its record.
    pub task_id: Uuid,
    /// The task as published.
    pub task: Task,
    /// `pending`.
    pub status: TaskStatus,
    /// The events topic.
    pub topic: String,
    /// The partition it is stored in.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}

/// A task as the results view shows it: the body of `GET /task-result/{task_id}` and an
/// entry of `GET /task-results` (task-generator's `view::TaskView`, which only
/// serializes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskView {
    /// The task id.
    pub task_id: Uuid,
    /// `pending`, `completed`, `failed` or `interrupted`.
    pub status: TaskStatus,
    /// The task, `None` for a result whose task the view has not seen.
    pub task: Option<Task>,
    /// The result, once it arrived.
    #[serde(default)]
    pub result: Option<TaskResult>,
}

impl TaskView {
    /// `completed` or `failed`.
    pub fn is_finished(&self) -> bool {
        matches!(self.status, TaskStatus::Completed | TaskStatus::Failed)
    }
}

/// The 202 body of `POST /task-result/{task_id}/resume`: the resume is stored
/// (task-generator's `resume::Resuming`, which only serializes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Resuming {
    /// The task.
    pub task_id: Uuid,
    /// The pause answered.
    pub interrupt_id: String,
    /// `resuming`.
    pub status: String,
}

/// The body of `GET /task-results`: the views, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskResults {
    /// How many are listed.
    pub count: usize,
    /// The views.
    pub results: Vec<TaskView>,
    /// The cursor of the next page; `None` on the last.
    #[serde(default)]
    pub next: Option<String>,
}

impl TaskResults {
    /// The `completed` and `failed` entries.
    pub fn finished(&self) -> Vec<&TaskView> {
        self.results.iter().filter(|t| t.is_finished()).collect()
    }

    /// The `completed` entries.
    pub fn completed(&self) -> Vec<&TaskView> {
        self.results
            .iter()
            .filter(|t| t.status == TaskStatus::Completed)
            .collect()
    }
}

/// The 200 body of `POST /send_event`: where the broker stored the event
/// (`agent_runtime::kafka::Delivery`, which only serializes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
}

/// The 200 body of `GET /last_message`: a topic's newest record
/// (`agent_comms::last_message::LastMessage`, which only serializes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LastMessage {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The key, as text.
    pub key: Option<String>,
    /// Broker or producer time, in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// The headers, values as text.
    pub headers: Map<String, Value>,
    /// The value: its JSON when it is JSON, else its text.
    pub payload: Value,
}

/// The body of `GET /health` and `GET /ready` (`agent_runtime::http::HealthReport`,
/// which only serializes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// The service name.
    pub service: String,
    /// The broker's last check.
    pub broker: BrokerCheck,
    /// Everything else: `topics`, `version` and the service's own facts
    /// (`llm_endpoint`, `checkpointer`, `llm_concurrency`, …).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// The broker's last check, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BrokerCheck {
    /// The broker answered at the last check.
    pub reachable: bool,
    /// Why not, when not (`not checked yet` before the first check).
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET url` with `http`; the status and the JSON body (`null` when it is not JSON).
pub async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = http.get(url).send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

impl System {
    /// POSTs `body` as JSON to `url`; the status and the JSON body (`null` when it is not
    /// JSON). For requests the route methods do not make.
    pub async fn post_json(&self, url: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs `url`; the status and the JSON body (`null` when it is not JSON). For
    /// requests the route methods do not make.
    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        get_json(&self.http, url).await
    }

    async fn post<T: DeserializeOwned>(&self, url: &str, body: &Value) -> Answer<T> {
        let (status, body) = self.post_json(url, body).await;
        Answer::new(status, body)
    }

    async fn get<T: DeserializeOwned>(&self, url: &str) -> Answer<T> {
        let (status, body) = self.get_json(url).await;
        Answer::new(status, body)
    }

    /// `POST /generate-task` with `{"conversation_history": conversation_history}` (a
    /// string or a list of `{role, content}`).
    pub async fn generate_task(&self, conversation_history: Value) -> Answer<GeneratedTask> {
        self.generate_task_with(&json!({ "conversation_history": conversation_history }))
            .await
    }

    /// `POST /generate-task` with `body` as it is, well-formed or not.
    pub async fn generate_task_with(&self, body: &Value) -> Answer<GeneratedTask> {
        self.post(&format!("{}/generate-task", self.generator), body)
            .await
    }

    /// `GET /task-result/{task_id}`; `task_id` goes into the path as given (a UUID, or
    /// not, to see the 400).
    pub async fn task_result(&self, task_id: impl Display) -> Answer<TaskView> {
        self.get(&format!("{}/task-result/{task_id}", self.generator))
            .await
    }

    /// `GET /task-results?{query}` (`query` as given, e.g. `limit=1000`; `""` for none).
    pub async fn task_results(&self, query: &str) -> Answer<TaskResults> {
        let url = if query.is_empty() {
            format!("{}/task-results", self.generator)
        } else {
            format!("{}/task-results?{query}", self.generator)
        };
        self.get(&url).await
    }

    /// Polls `GET /task-result/{task_id}` until the task is finished (`completed` or
    /// `failed`; a pause for review is not an end), up to `timeout`; the last view
    /// (still `pending` or `interrupted` when the time ran out).
    ///
    /// # Panics
    /// When the view does not know the task when the time runs out.
    pub async fn wait_for_result(&self, task_id: &str, timeout: Duration) -> TaskView {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.task_result(task_id).await;
            if answer.status == 200 {
                let view = answer.ok();
                if view.is_finished() || Instant::now() > deadline {
                    return view;
                }
            } else {
                assert!(
                    Instant::now() <= deadline,
                    "task {task_id} not in the view after {timeout:?}: {} {}",
                    answer.status,
                    answer.body
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `GET /task-result/{task_id}` until the task shows `status`, up to `timeout`;
    /// the last view (another status when the time ran out).
    ///
    /// # Panics
    /// When the view does not know the task when the time runs out.
    pub async fn wait_for_status(
        &self,
        task_id: &str,
        status: TaskStatus,
        timeout: Duration,
    ) -> TaskView {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.task_result(task_id).await;
            if answer.status == 200 {
                let view = answer.ok();
                if view.status == status || Instant::now() > deadline {
                    return view;
                }
            } else {
                assert!(
                    Instant::now() <= deadline,
                    "task {task_id} not in the view after {timeout:?}: {} {}",
                    answer.status,
                    answer.body
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `GET /task-results?limit=1000` until `accept` holds for it, up to `timeout`;
    /// the last list.
    ///
    /// # Panics
    /// When the route never answered 200 within `timeout`.
    pub async fn wait_for_results(
        &self,
        timeout: Duration,
        accept: impl Fn(&TaskResults) -> bool,
    ) -> TaskResults {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.task_results("limit=1000").await;
            if answer.status == 200 {
                let list = answer.ok();
                if accept(&list) || Instant::now() > deadline {
                    return list;
                }
            } else {
                assert!(
                    Instant::now() <= deadline,
                    "GET /task-results: {} {}",
                    answer.status,
                    answer.body
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `POST /task-result/{task_id}/resume` with `body` as it is (`{"interrupt_id"?,
    /// "resume"}`, well-formed or not).
    pub async fn resume_task(&self, task_id: impl Display, body: &Value) -> Answer<Resuming> {
        self.post(
            &format!("{}/task-result/{task_id}/resume", self.generator),
            body,
        )
        .await
    }

    /// `POST /send_event` of agent-comms with `body` as it is.
    pub async fn send_event(&self, body: &Value) -> Answer<Delivery> {
        self.post(&format!("{}/send_event", self.comms), body).await
    }

    /// `GET /last_message` of agent-comms for `topic` (`None`: the default, the results
    /// topic); `topic` goes into the query as given, so percent-encode it.
    pub async fn last_message(&self, topic: Option<&str>) -> Answer<LastMessage> {
        let url = match topic {
            Some(topic) => format!("{}/last_message?topic={topic}", self.comms),
            None => format!("{}/last_message", self.comms),
        };
        self.get(&url).await
    }

    /// `GET /health` of the service at `base` (e.g. [`System::generator`]).
    pub async fn health(&self, base: &str) -> Answer<Health> {
        self.get(&format!("{base}/health")).await
    }

    /// `GET /ready` of the service at `base`: 200 when healthy, 503 when degraded.
    pub async fn ready(&self, base: &str) -> Answer<Health> {
        self.get(&format!("{base}/ready")).await
    }
}
