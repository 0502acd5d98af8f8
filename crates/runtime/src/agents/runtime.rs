//! [`AgentRuntime`]: registration, `send_message`, `publish_message` and
//! `scatter_gather` over Kafka.

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::Utc;
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    AgentMessage, ErrorReply, Gathered, Reply, RuntimeOptions,
    envelope::{self, ReplyRecord, ReplyTo, ReplyTopic, valid_id},
    error::{AgentError, SendError},
    replies::{Pending, Routed},
    responder::{BoxedHandler, Responder},
    topics,
};
use crate::{
    Error, Result,
    kafka::{
        CloudEvent, ConsumerOptions, ConsumerProgress, Delivery, KafkaSettings, PartitionLookup,
        Producer, TopicReader, TopicSpec, ensure_topics,
        headers::{AGENT_MESSAGE, AGENT_REQUEST},
        partition_for_key, run_at_least_once, valid_topic_name,
    },
};

/// The topic configs of the reply topic: records kept one hour (`retention.ms`
/// 3 600 000), longer than any caller waits for a reply.
pub const REPLY_TOPIC_CONFIGS: &[(&str, &str)] = &[("retention.ms", "3600000")];

/// The most replies one scatter-gather collects (`max_replies`).
pub const MAX_GATHER_REPLIES: usize = 1024;

/// An agent runtime over Kafka: one per process (or per agent instance). Cheap to clone;
/// clones share it. See the [module docs](super) for the topics, the reply path and
/// the guarantees.
#[derive(Clone)]
pub struct AgentRuntime {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) settings: KafkaSettings,
    pub(super) instance_id: String,
    pub(super) options: RuntimeOptions,
    pub(super) producer: Producer,
    pub(super) reply: ReplyTo,
    pub(super) reply_topic: ReplyTopic,
    pub(super) pending: Arc<Pending>,
    pub(super) shutdown: CancellationToken,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Request topics known to exist.
    pub(super) known_topics: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuntime")
            .field("instance_id", &self.inner.instance_id)
            .field("reply", &self.inner.reply)
            .finish_non_exhaustive()
    }
}

impl AgentRuntime {
    /// Starts a runtime for instance `instance_id` (1 to 128 visible ASCII characters,
    /// unique among running instances, e.g. the pod name): creates the reply topic and
    /// the dead-letter topic when missing ([`ensure_topics`]), picks this instance's
    /// partition of the reply topic (the CRC-32 of the instance id modulo the partition
    /// count, [`partition_for_key`]) and starts reading it from its end. `Ok(None)` when
    /// `shutdown` fired first. Everything the runtime runs stops when `shutdown` fires
    /// (or at [`AgentRuntime::shutdown`]).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid instance id or options; [`Error::Kafka`] when a
    /// Kafka client cannot be created or the broker does not answer for the reply
    /// topic's partitions.
    pub async fn start(
        settings: &KafkaSettings,
        instance_id: &str,
        options: RuntimeOptions,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>> {
        if !valid_id(instance_id) {
            return Err(Error::Config(format!(
                "agent instance id {:?} must be 1 to {} visible ASCII characters",
                super::error::cut(instance_id, 64),
                envelope::MAX_ID_BYTES
            )));
        }
        options.validate()?;
        let shutdown = shutdown.child_token();
        let reply_topic = topics::reply_topic(&settings.topic_prefix);
        let specs = [
            TopicSpec {
                name: &reply_topic,
                configs: REPLY_TOPIC_CONFIGS,
            },
            TopicSpec::plain(&settings.topics.dead_letter),
        ];
        if !ensure_topics(settings, &specs, &shutdown).await? {
            return Ok(None);
        }
        let client_id = format!("agent-{instance_id}");
        let lookup = PartitionLookup::new(settings, &reply_topic, &client_id)?;
        let partitions = lookup.partitions().await?;
        if partitions < 1 {
            return Err(Error::Config(format!(
                "the reply topic {reply_topic} has no partitions"
            )));
        }
        let partition = partition_for_key(instance_id.as_bytes(), partitions);
        // From the partition's end as it is now: a reply produced after this point is
        // read, whenever the reader starts fetching. (An end looked up late only means
        // older records read and dropped.)
        let (_, end) = lookup.bounds(partition).await?;
        // Destroying a librdkafka client blocks: not on the async workers.
        tokio::task::spawn_blocking(move || drop(lookup));
        let reader = TopicReader::open_partition(
            settings,
            &reply_topic,
            partition,
            rdkafka::Offset::Offset(end),
            &format!("{client_id}-replies"),
        )?;
        let pending = Pending::new(options.max_pending);
        let routed = Arc::clone(&pending);
        let reading = shutdown.clone();
        let reader_task = tokio::spawn(async move {
            reader
                .follow(&reading, |message| routed.route(message))
                .await;
            routed.close();
        });
        tracing::info!(instance_id, topic = %reply_topic, partition, partitions, "agent runtime started");
        Ok(Some(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                instance_id: instance_id.to_owned(),
                producer: Producer::new(settings, &client_id)?,
                reply: ReplyTo {
                    topic: reply_topic.clone(),
                    partition,
                },
                reply_topic: ReplyTopic {
                    name: reply_topic,
                    partitions,
                },
                options,
                pending,
                shutdown,
                tasks: Mutex::new(vec![reader_task]),
                known_topics: Mutex::default(),
            }),
        }))
    }

    /// As [`AgentRuntime::start`], trying again every 2 s, with a WARN saying why, while
    /// the broker does not answer (what a service does at start-up: its agent runtime
    /// comes up with the broker, and nothing else waits for it). `Ok(None)` once
    /// `shutdown` fires.
    ///
    /// # Errors
    /// [`Error::Config`] (an invalid instance id or options, a reply topic without
    /// partitions): not tried again.
    pub async fn start_retrying(
        settings: &KafkaSettings,
        instance_id: &str,
        options: RuntimeOptions,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>> {
        loop {
            match Self::start(settings, instance_id, options.clone(), shutdown.clone()).await {
                Ok(started) => return Ok(started),
                Err(err @ Error::Config(_)) => return Err(err),
                Err(err) => {
                    tracing::warn!(error = %err, "agent runtime not started; trying again in 2 s");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// A service's agent runtime from start to stop: starts it
    /// ([`start_retrying`](AgentRuntime::start_retrying)), lets `setup` use it (register
    /// agent types, hand it to HTTP routes), answers `describe` with `describe(&runtime)`
    /// ([`serve_describe`](AgentRuntime::serve_describe)) until `shutdown` fires, then
    /// shuts it down. What fails is logged, not returned: the service goes on without its
    /// agent runtime.
    pub async fn run_service<S, Fut, D>(
        settings: &KafkaSettings,
        instance_id: &str,
        options: RuntimeOptions,
        shutdown: CancellationToken,
        setup: S,
        describe: D,
    ) where
        S: FnOnce(&Self) -> Fut,
        Fut: Future<Output = Result<bool>>,
        D: Fn(&Self) -> super::AgentDescription + Send + Sync + 'static,
    {
        let service = options.service.clone();
        let runtime = match Self::start_retrying(settings, instance_id, options, shutdown.clone())
            .await
        {
            Ok(Some(runtime)) => runtime,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(service, error = %err, "agent runtime not started: no agent requests, no describe");
                return;
            }
        };
        let set_up = setup(&runtime).await;
        let described = runtime.clone();
        let answering = runtime.serve_describe(move || describe(&described)).await;
        for (what, outcome) in [("setup", set_up), ("describe", answering)] {
            if let Err(err) = outcome {
                tracing::error!(service, what, error = %err, "agent runtime: not serving");
            }
        }
        shutdown.cancelled().await;
        runtime.shutdown().await;
    }

    /// The options it runs with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Where this instance reads its replies: the reply topic and its partition.
    pub fn reply_to(&self) -> &ReplyTo {
        &self.inner.reply
    }

    /// How many requests of this instance wait for replies now.
    pub fn pending(&self) -> usize {
        self.inner.pending.len()
    }

    /// Registers `handler` for `agent_type` (1 to 100 of `a-z A-Z 0-9 . _ -`): this
    /// instance joins consumer group `{prefix}-agent.{agent_type}` on the type's request topic
    /// (`{prefix}-agent-requests-{agent_type}`, created when missing), so each request
    /// goes to one instance of the type. Requests are consumed with
    /// [`run_at_least_once`]: the reply is produced and acknowledged before the offset is
    /// stored; a record that is not a valid request goes to the dead-letter topic.
    /// `Ok(false)` when shutdown came first.
    ///
    /// The handler gets the request ([`AgentMessage`]) and answers its reply, or an
    /// [`AgentError`] that the caller gets as [`SendError::Agent`].
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid agent type; [`Error::Kafka`] when the admin
    /// client cannot be created.
    pub async fn register<F, Fut>(&self, agent_type: &str, handler: F) -> Result<bool>
    where
        F: Fn(AgentMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AgentError>> + Send + 'static,
    {
        check_agent_type(agent_type).map_err(Error::Config)?;
        let topic = topics::request_topic(&self.inner.settings.topic_prefix, agent_type);
        let group = topics::consumer_group(&self.inner.settings.topic_prefix, agent_type);
        self.serve(agent_type, topic, group, true, boxed(handler))
            .await
    }

    /// Subscribes `agent_type` to `topic` (created when missing): every message
    /// published there ([`AgentRuntime::publish_message`], or any JSON record) reaches
    /// one instance of each subscribed type — consumer group
    /// `{prefix}-agent.{agent_type}+{topic}` — and a [`scatter_gather`](AgentRuntime::scatter_gather)
    /// request gets the handler's answer as its reply. A record that is not JSON goes to
    /// the dead-letter topic; a handler's error on a published message is logged.
    /// `Ok(false)` when shutdown came first.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid agent type or topic name; [`Error::Kafka`] when
    /// the admin client cannot be created.
    pub async fn subscribe<F, Fut>(&self, agent_type: &str, topic: &str, handler: F) -> Result<bool>
    where
        F: Fn(AgentMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, AgentError>> + Send + 'static,
    {
        check_agent_type(agent_type).map_err(Error::Config)?;
        check_topic(topic).map_err(Error::Config)?;
        let group =
            topics::subscription_group(&self.inner.settings.topic_prefix, agent_type, topic);
        self.serve(agent_type, topic.to_owned(), group, false, boxed(handler))
            .await
    }

    async fn serve(
        &self,
        agent_type: &str,
        topic: String,
        group: String,
        requests: bool,
        handler: BoxedHandler,
    ) -> Result<bool> {
        let inner = &self.inner;
        if !ensure_topics(
            &inner.settings,
            &[TopicSpec::plain(&topic)],
            &inner.shutdown,
        )
        .await?
        {
            return Ok(false);
        }
        inner.known(&topic);
        let responder = Arc::new(Responder {
            agent_type: agent_type.to_owned(),
            instance_id: inner.instance_id.clone(),
            service: inner.options.service.clone(),
            handler,
            producer: inner.producer.clone(),
            replies: inner.reply_topic.clone(),
            requests,
            handler_timeout: inner.options.handler_timeout,
        });
        let options = ConsumerOptions {
            group_id: group,
            topics: vec![topic],
            dead_letter_topic: inner.settings.topics.dead_letter.clone(),
            client_id: format!("agent-{}-{agent_type}", inner.instance_id),
            drain_timeout: inner.options.drain_timeout,
            concurrency: inner.options.concurrency,
            max_attempts: inner.options.max_attempts,
            progress: ConsumerProgress::default(),
        };
        let process = move |message| {
            let responder = Arc::clone(&responder);
            async move { responder.process(message).await }
        };
        let (settings, producer, shutdown) = (
            inner.settings.clone(),
            inner.producer.clone(),
            inner.shutdown.clone(),
        );
        let agent_type = agent_type.to_owned();
        let task = tokio::spawn(async move {
            if let Err(err) =
                run_at_least_once(&settings, options, producer, shutdown, process).await
            {
                tracing::error!(agent_type, error = %err, "agent consumer stopped");
            }
        });
        inner.lock_tasks().push(task);
        Ok(true)
    }

    /// Sends `message` to one instance of `agent_type` and waits up to `timeout` for its
    /// reply (AutoGen's `send_message`): the request goes to the type's request topic,
    /// keyed and correlated by a new id, naming this instance's reply partition and its
    /// deadline (now + `timeout`). The request topic is created when missing, so an
    /// instance that starts later finds the request (and skips it once past its
    /// deadline).
    ///
    /// # Errors
    /// - [`SendError::Agent`]: the handler failed; its code and message.
    /// - [`SendError::Timeout`]: no reply within `timeout` — however long the broker
    ///   takes, the call returns by then.
    /// - [`SendError::InvalidReply`]: a record with this request's id that is no reply.
    /// - [`SendError::Invalid`]: an invalid agent type, or a zero timeout.
    /// - [`SendError::Busy`]: [`RuntimeOptions::max_pending`] requests wait already.
    /// - [`SendError::Closed`]: the runtime is shut down.
    /// - [`SendError::Runtime`]: the request cannot be encoded, is over the producer's
    ///   limit ([`Error::RecordTooLarge`]), or was refused by the broker.
    pub async fn send_message<T: Serialize + ?Sized>(
        &self,
        agent_type: &str,
        message: &T,
        timeout: Duration,
    ) -> Result<Reply, SendError> {
        check_agent_type(agent_type).map_err(SendError::Invalid)?;
        if timeout.is_zero() {
            return Err(SendError::Invalid("the timeout must be above 0".into()));
        }
        let timed_out = || SendError::Timeout {
            target: agent_type.to_owned(),
            timeout,
        };
        let payload = serde_json::to_vec(message).map_err(Error::from)?;
        let topic = topics::request_topic(&self.inner.settings.topic_prefix, agent_type);
        let id = uuid::Uuid::new_v4().to_string();
        let mut waiting = self.inner.pending.wait(&id, 1)?;
        let deadline = Utc::now() + timeout;
        let exchange = async {
            self.inner.ensure_known(TopicSpec::plain(&topic)).await?;
            self.request(&topic, &id, &payload, Some(deadline)).await?;
            match waiting.replies.recv().await {
                Some(reply) => reply_of(reply),
                None => Err(SendError::Closed),
            }
        };
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        count_request(agent_type, &answer, started.elapsed());
        answer
    }

    /// Publishes `message` to `topic` (AutoGen's `publish_message`): one instance of
    /// every agent type subscribed to `topic` ([`AgentRuntime::subscribe`]) gets it;
    /// nobody replies. Returns once the broker acknowledged it.
    ///
    /// # Errors
    /// [`SendError::Invalid`] for an invalid topic name; [`SendError::Runtime`] when the
    /// message cannot be encoded or the broker does not take it (a missing topic is not
    /// created: it fails after `KAFKA_PRODUCE_TIMEOUT_MS`).
    pub async fn publish_message<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
    ) -> Result<Delivery, SendError> {
        check_topic(topic).map_err(SendError::Invalid)?;
        let payload = serde_json::to_vec(message).map_err(Error::from)?;
        let id = uuid::Uuid::new_v4().to_string();
        let event = CloudEvent::new(&self.inner.options.service, AGENT_MESSAGE, None);
        let headers = envelope::request_headers(&event, &id, &self.inner.instance_id, None, None);
        Ok(self
            .inner
            .producer
            .send_bytes(topic, Some(&id), &payload, headers)
            .await?)
    }

    /// Broadcasts `message` as a request on `topic` and gathers the replies of the
    /// subscribed agent types (scatter-gather) that arrive within `window` of the call,
    /// up to `max_replies` (1 to [`MAX_GATHER_REPLIES`]); at most one per agent type (a
    /// redelivered request answered twice counts once). `timed_out` is true when the
    /// window ran out before `max_replies` came. Error replies are gathered apart
    /// ([`Gathered::errors`]) and count towards `max_replies`; records with this
    /// request's id that are no reply are dropped.
    ///
    /// # Errors
    /// [`SendError::Invalid`] for an invalid topic, a zero window or `max_replies` out of
    /// range; [`SendError::Busy`], [`SendError::Closed`] as for
    /// [`AgentRuntime::send_message`]; [`SendError::Runtime`] when the request cannot be
    /// encoded or the broker refuses it within the window (not taken within the window:
    /// an empty [`Gathered`] that timed out).
    pub async fn scatter_gather<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
        window: Duration,
        max_replies: usize,
    ) -> Result<Gathered, SendError> {
        check_topic(topic).map_err(SendError::Invalid)?;
        if window.is_zero() {
            return Err(SendError::Invalid("the window must be above 0".into()));
        }
        if !(1..=MAX_GATHER_REPLIES).contains(&max_replies) {
            return Err(SendError::Invalid(format!(
                "max_replies must be 1 to {MAX_GATHER_REPLIES}"
            )));
        }
        let payload = serde_json::to_vec(message).map_err(Error::from)?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut waiting = self.inner.pending.wait(&id, max_replies)?;
        let deadline = Utc::now() + window;
        let mut gathered = Gathered {
            replies: Vec::new(),
            errors: Vec::new(),
            timed_out: true,
        };
        let mut answered: HashSet<String> = HashSet::new();
        let collect = async {
            self.request(topic, &id, &payload, Some(deadline)).await?;
            while let Some(routed) = waiting.replies.recv().await {
                let Ok(record) = routed else { continue };
                if !answered.insert(record.agent_type.clone()) {
                    continue;
                }
                match record.body {
                    Ok(value) => gathered.replies.push(Reply {
                        value,
                        agent_id: record.agent_id,
                        agent_type: record.agent_type,
                        trace: record.trace,
                    }),
                    Err(error) => gathered.errors.push(ErrorReply {
                        error,
                        agent_id: record.agent_id,
                        agent_type: record.agent_type,
                    }),
                }
                if gathered.replies.len() + gathered.errors.len() >= max_replies {
                    gathered.timed_out = false;
                    return Ok(());
                }
            }
            Err(SendError::Closed)
        };
        match tokio::time::timeout(window, collect).await {
            Ok(Err(err)) => Err(err),
            Ok(Ok(())) | Err(_) => Ok(gathered),
        }
    }

    /// Produces a request to `topic` naming this instance's reply partition.
    async fn request(
        &self,
        topic: &str,
        id: &str,
        payload: &[u8],
        deadline: Option<chrono::DateTime<Utc>>,
    ) -> Result<(), SendError> {
        let inner = &self.inner;
        let event = CloudEvent::new(&inner.options.service, AGENT_REQUEST, None);
        let headers =
            envelope::request_headers(&event, id, &inner.instance_id, Some(&inner.reply), deadline);
        inner
            .producer
            .send_bytes(topic, Some(id), payload, headers)
            .await?;
        Ok(())
    }

    /// Stops every consumer of this runtime (work in flight gets
    /// [`RuntimeOptions::drain_timeout`]) and its reply reader; requests waiting get
    /// [`SendError::Closed`]. Returns once they have stopped.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.pending.close();
        let tasks = std::mem::take(&mut *self.inner.lock_tasks());
        for task in tasks {
            let _ = task.await;
        }
        self.inner.producer.flush(Duration::from_secs(5));
    }
}

impl Inner {
    pub(super) fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn known(&self, topic: &str) {
        self.known_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned());
    }

    /// Creates the topic of `spec` when this runtime has not seen it exist yet.
    pub(super) async fn ensure_known(&self, spec: TopicSpec<'_>) -> Result<(), SendError> {
        let known = self
            .known_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(spec.name);
        if !known {
            if !ensure_topics(&self.settings, &[spec], &self.shutdown).await? {
                return Err(SendError::Closed);
            }
            self.known(spec.name);
        }
        Ok(())
    }
}

/// Counts a `send_message` in `agent_requests_total{agent_type, outcome}` (`reply`,
/// `agent_error`, `timeout`, `invalid_reply`, or `not_sent`: refused before or while
/// sending) and, when an agent answered, its round trip in
/// `agent_request_duration_seconds{agent_type}` (seconds).
fn count_request(agent_type: &str, answer: &Result<Reply, SendError>, took: Duration) {
    let outcome = match answer {
        Ok(_) => "reply",
        Err(SendError::Agent { .. }) => "agent_error",
        Err(SendError::Timeout { .. }) => "timeout",
        Err(SendError::InvalidReply(_)) => "invalid_reply",
        Err(_) => "not_sent",
    };
    let agent_type = agent_type.to_owned();
    metrics::counter!("agent_requests_total", "agent_type" => agent_type.clone(), "outcome" => outcome)
        .increment(1);
    if matches!(outcome, "reply" | "agent_error") {
        metrics::histogram!("agent_request_duration_seconds", "agent_type" => agent_type)
            .record(took.as_secs_f64());
    }
}

/// A reply record as `send_message` answers it.
fn reply_of(routed: Routed) -> Result<Reply, SendError> {
    let ReplyRecord {
        agent_id,
        agent_type,
        trace,
        body,
    } = routed.map_err(SendError::InvalidReply)?;
    match body {
        Ok(value) => Ok(Reply {
            value,
            agent_id,
            agent_type,
            trace,
        }),
        Err(AgentError { code, message }) => Err(SendError::Agent {
            code,
            message,
            agent_type,
            agent_id,
        }),
    }
}

fn boxed<F, Fut>(handler: F) -> BoxedHandler
where
    F: Fn(AgentMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, AgentError>> + Send + 'static,
{
    Arc::new(move |message| handler(message).boxed())
}

/// [`topics::valid_agent_type`], with the reason when it is not.
fn check_agent_type(agent_type: &str) -> Result<(), String> {
    if topics::valid_agent_type(agent_type) {
        Ok(())
    } else {
        Err(format!(
            "agent type {:?} must be 1 to {} characters of a-z, A-Z, 0-9, '.', '_' or '-'",
            super::error::cut(agent_type, 64),
            topics::MAX_AGENT_TYPE_BYTES
        ))
    }
}

fn check_topic(topic: &str) -> Result<(), String> {
    if valid_topic_name(topic) {
        Ok(())
    } else {
        Err(format!(
            "topic {:?} must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
            super::error::cut(topic, 64)
        ))
    }
}
