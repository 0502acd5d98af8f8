//! [`LastMessages`]: the request side of the view.

use std::{collections::HashMap, sync::Arc, time::Duration};

use agent_runtime::{Result, kafka::KafkaSettings};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::{Follower, LOAD_WAIT, MAX_TOPICS, Newest};

/// What the view knows of one followed topic.
#[derive(Debug, Clone, Default)]
pub enum TopicState {
    /// Its partitions are not all read up to their last record yet (or its metadata is
    /// not known yet: the broker is unreachable, the topic does not exist yet).
    #[default]
    Loading,
    /// Loaded: its newest record, `None` while the topic is empty.
    Ready(Option<Arc<Newest>>),
}

/// The followed topics and the state of each; written by the [`Follower`] only.
pub(crate) type Directory = HashMap<String, watch::Receiver<TopicState>>;

/// A request to follow a topic the view does not have yet.
#[derive(Debug)]
pub(crate) struct Follow {
    /// The topic.
    pub(crate) topic: String,
    /// Where the answer goes; dropped when the client left.
    pub(crate) reply: oneshot::Sender<Admission>,
}

/// The [`Follower`]'s answer to a [`Follow`].
#[derive(Debug)]
pub(crate) enum Admission {
    /// Followed; it may still be loading.
    Followed(watch::Receiver<TopicState>),
    /// The topic does not exist.
    Missing,
    /// The view follows `limit` ([`ViewOptions::max_topics`]) topics already.
    Full {
        /// [`ViewOptions::max_topics`].
        limit: usize,
    },
    /// Its metadata could not be read.
    Failed(String),
}

/// Why [`LastMessages::newest`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The view already follows its most topics ([`ViewOptions::max_topics`]) and this
    /// is not one of them.
    #[error(
        "topic {topic} cannot be read: agent-comms follows at most {limit} topics and follows that many already"
    )]
    TooManyTopics {
        /// The topic asked for.
        topic: String,
        /// [`ViewOptions::max_topics`].
        limit: usize,
    },
    /// Only the followed topics may be read ([`ViewOptions::on_demand`] is off) and this
    /// is not one of them.
    #[error("topic {topic} is not readable here")]
    NotReadable {
        /// The topic asked for.
        topic: String,
    },
    /// The topic was not loaded within [`ViewOptions::load_wait`]: the broker is slow or
    /// unreachable.
    #[error("topic {topic} is not loaded yet after {waited_ms} ms (is the broker reachable?)")]
    NotLoaded {
        /// The topic asked for.
        topic: String,
        /// How long the request waited, in milliseconds.
        waited_ms: u64,
    },
    /// The topic's metadata could not be read.
    #[error("cannot look up topic {topic}: {reason}")]
    Lookup {
        /// The topic asked for.
        topic: String,
        /// The Kafka error.
        reason: String,
    },
    /// Too many topics not in the view yet are being asked for at once.
    #[error("too many new topics asked for at once; try again")]
    Busy,
    /// The view is stopped: the service is shutting down.
    #[error("the topic view is stopped (shutting down)")]
    Stopped,
}

/// Which topics the view follows, and how long a request waits for one to load.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// Followed from the start, retried every second until they exist.
    pub followed: Vec<String>,
    /// Whether a request may add another topic to the view (on its first request). With
    /// an allow-list of readable topics, the list goes in `followed` and this is `false`.
    pub on_demand: bool,
    /// The most topics followed at once, `followed` included.
    pub max_topics: usize,
    /// How long a request waits for its topic to load.
    pub load_wait: Duration,
}

impl ViewOptions {
    /// `followed` from the start, any other topic on demand, up to [`MAX_TOPICS`] in all,
    /// loads waited for up to [`LOAD_WAIT`].
    pub fn new(followed: Vec<String>) -> Self {
        Self {
            followed,
            on_demand: true,
            max_topics: MAX_TOPICS,
            load_wait: LOAD_WAIT,
        }
    }
}

/// Answers "what is the newest record of this topic?" from the view the [`Follower`]
/// keeps. Cheap to clone; a read takes no lock held across requests and does no I/O.
#[derive(Debug, Clone)]
pub struct LastMessages {
    directory: watch::Receiver<Directory>,
    requests: mpsc::Sender<Follow>,
    on_demand: bool,
    load_wait: Duration,
}

/// Requests for topics not in the view yet that may wait for the [`Follower`] at once;
/// past it they are answered [`ReadError::Busy`].
const FOLLOW_QUEUE: usize = 256;

impl LastMessages {
    /// The view of `options` on the brokers of `settings`, and the [`Follower`] that
    /// keeps it: run [`Follower::run`] (it contacts the broker), until then topics stay
    /// loading.
    ///
    /// # Errors
    /// A Kafka configuration error.
    pub fn new(settings: &KafkaSettings, options: ViewOptions) -> Result<(Self, Follower)> {
        let (requests, follow) = mpsc::channel(FOLLOW_QUEUE);
        let (directory, follower) = Follower::new(settings, &options, follow)?;
        let view = Self {
            directory,
            requests,
            on_demand: options.on_demand,
            load_wait: options.load_wait,
        };
        Ok((view, follower))
    }

    /// The newest record of `topic` (a valid topic name), `Ok(None)` when the topic is
    /// empty or does not exist. Answers at once from memory when the topic is followed
    /// and loaded; otherwise waits for it to load, up to [`ViewOptions::load_wait`].
    /// Dropping the future (the client left) withdraws the request.
    ///
    /// # Errors
    /// A [`ReadError`]: the topic cannot be followed, is not loaded in time, or its
    /// metadata cannot be read; the view is stopped.
    pub async fn newest(&self, topic: &str) -> Result<Option<Arc<Newest>>, ReadError> {
        let deadline = Instant::now() + self.load_wait;
        let known = self.directory.borrow().get(topic).cloned();
        let state = match known {
            Some(state) => state,
            None => match self.follow(topic, deadline).await? {
                Some(state) => state,
                None => return Ok(None),
            },
        };
        self.loaded(state, topic, deadline).await
    }

    /// The topics followed now.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.directory.borrow().keys().cloned().collect();
        topics.sort();
        topics
    }

    /// Asks the [`Follower`] to follow `topic`; `None` when it does not exist.
    async fn follow(
        &self,
        topic: &str,
        deadline: Instant,
    ) -> Result<Option<watch::Receiver<TopicState>>, ReadError> {
        if !self.on_demand {
            return Err(ReadError::NotReadable {
                topic: topic.to_owned(),
            });
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .try_send(Follow {
                topic: topic.to_owned(),
                reply,
            })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => ReadError::Busy,
                mpsc::error::TrySendError::Closed(_) => ReadError::Stopped,
            })?;
        match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => Err(self.not_loaded(topic)),
            Ok(Err(_)) => Err(ReadError::Stopped),
            Ok(Ok(Admission::Followed(state))) => Ok(Some(state)),
            Ok(Ok(Admission::Missing)) => Ok(None),
            Ok(Ok(Admission::Full { limit })) => Err(ReadError::TooManyTopics {
                topic: topic.to_owned(),
                limit,
            }),
            Ok(Ok(Admission::Failed(reason))) => Err(ReadError::Lookup {
                topic: topic.to_owned(),
                reason,
            }),
        }
    }

    /// Waits until `state` is loaded, up to `deadline`.
    async fn loaded(
        &self,
        mut state: watch::Receiver<TopicState>,
        topic: &str,
        deadline: Instant,
    ) -> Result<Option<Arc<Newest>>, ReadError> {
        let ready = |s: &TopicState| matches!(s, TopicState::Ready(_));
        match tokio::time::timeout_at(deadline, state.wait_for(ready)).await {
            Err(_) => Err(self.not_loaded(topic)),
            Ok(Err(_)) => Err(ReadError::Stopped),
            Ok(Ok(shown)) => match &*shown {
                TopicState::Ready(newest) => Ok(newest.clone()),
                TopicState::Loading => Err(self.not_loaded(topic)),
            },
        }
    }

    fn not_loaded(&self, topic: &str) -> ReadError {
        ReadError::NotLoaded {
            topic: topic.to_owned(),
            waited_ms: u64::try_from(self.load_wait.as_millis()).unwrap_or(u64::MAX),
        }
    }
}
