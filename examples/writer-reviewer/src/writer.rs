//! The `writer` agent: drafts a text for a brief, asks the `reviewer` agent for a review
//! over Kafka, revises the draft from the feedback, and repeats until the reviewer
//! approves or the rounds run out. Its rules are [`first_draft`] and [`revise`], its
//! loop [`write_with_reviews`]; [`register_writer`] serves it over Kafka.

use std::{fmt, future::Future, time::Duration};

use agent_runtime::agents::{AgentError, AgentMessage, AgentRuntime, SendError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    brief::{Brief, mentions},
    reviewer::{REVIEWER, Review, ReviewRequest},
};

/// The writer's agent type: requests on `{prefix}-agent-requests-writer`, consumer group
/// `agent.writer`.
pub const WRITER: &str = "writer";

/// The most rounds (drafts reviewed) a commission may ask for.
pub const MAX_ROUNDS: u32 = 20;

/// What a caller sends the writer: `{"brief": {…}, "max_rounds": 5}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commission {
    /// What to write.
    pub brief: Brief,
    /// The most drafts the reviewer reviews, 1 to [`MAX_ROUNDS`]: the writer stops there,
    /// approved or not.
    pub max_rounds: u32,
}

/// One round: a draft and its review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    /// The round, from 1.
    pub number: u32,
    /// The draft reviewed.
    pub draft: String,
    /// The review.
    pub review: Review,
    /// The agent id of the reviewer instance that answered (the runtime's
    /// [`Reply::agent_id`](agent_runtime::agents::Reply::agent_id)).
    pub reviewer_id: String,
}

/// The writer's reply to a [`Commission`]: the last draft reviewed, whether it was
/// approved, and every round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether the reviewer approved [`Outcome::draft`]; `false` when the rounds ran out
    /// first.
    pub approved: bool,
    /// The last draft reviewed: the approved one, or the one the last round rejected.
    pub draft: String,
    /// Every round, in order: at least one, at most the commission's `max_rounds`.
    pub rounds: Vec<Round>,
    /// The writer instance that did the work.
    pub writer_id: String,
    /// The reviewer instances that answered, each once, in order of their first review.
    pub reviewer_ids: Vec<String>,
}

impl fmt::Display for Outcome {
    /// Each round (its reviewer, its feedback, its draft), then the outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for round in &self.rounds {
            writeln!(
                f,
                "round {} (reviewer {}, {} words): {}",
                round.number, round.reviewer_id, round.review.words, round.review
            )?;
            writeln!(f, "  {}", round.draft)?;
        }
        let rounds = self.rounds.len();
        let plural = if rounds == 1 { "" } else { "s" };
        match self.approved {
            true => writeln!(
                f,
                "approved after {rounds} round{plural} (writer {})",
                self.writer_id
            ),
            false => writeln!(
                f,
                "not approved after {rounds} round{plural}, the most allowed (writer {}); \
                 the last draft stands as it is",
                self.writer_id
            ),
        }
    }
}

/// A draft as the writer keeps it: sentences, each knowing the point it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    sentences: Vec<Sentence>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sentence {
    text: String,
    /// The brief's point it mentions, if any.
    point: Option<String>,
}

impl Draft {
    /// The text: the sentences, joined by spaces.
    pub fn text(&self) -> String {
        self.sentences
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Its length in words.
    pub fn words(&self) -> usize {
        self.sentences
            .iter()
            .map(|s| s.text.split_whitespace().count())
            .sum()
    }
}

/// The writer's first draft: an opening sentence on the subject, a sentence on the
/// brief's first point only, and a long sentence of background — so that a reviewer has
/// points to ask for and, for a tight limit, words to cut. Deterministic: no model is
/// asked.
pub fn first_draft(brief: &Brief) -> Draft {
    let subject = brief.subject.trim();
    let mut sentences = vec![Sentence {
        text: format!("This note is about {subject}."),
        point: None,
    }];
    if let Some(point) = brief.points.first() {
        sentences.push(Sentence {
            text: format!("It starts with {point}."),
            point: Some(point.clone()),
        });
    }
    sentences.push(Sentence {
        text: format!(
            "Much more could be said about {subject}, and a first draft tends to say it at \
             length before it reaches the points that matter."
        ),
        point: None,
    });
    Draft { sentences }
}

/// The writer's revision: addresses exactly the review's feedback, nothing else.
///
/// - Each point of `review.missing` that is one of the brief's and not yet in the draft
///   gets a sentence (`It also covers {point}.`); points the brief does not list are
///   ignored.
/// - When the review says the draft is too long ([`Review::too_long`]), sentences that
///   make no point are dropped, last first, until the draft fits `review.max_words`; if
///   it still does not fit, the point sentences are cut to the point alone (`{Point}.`),
///   last first. A point sentence is never dropped. A brief whose points alone are over
///   its limit cannot be met: the draft stays too long.
pub fn revise(brief: &Brief, draft: &Draft, review: &Review) -> Draft {
    let mut revised = draft.clone();
    for point in &review.missing {
        let in_brief = brief.points.iter().any(|p| p == point);
        if in_brief && !mentions(&revised.text(), point) {
            revised.sentences.push(Sentence {
                text: format!("It also covers {point}."),
                point: Some(point.clone()),
            });
        }
    }
    if review.too_long() {
        while revised.words() > review.max_words {
            if let Some(i) = revised.sentences.iter().rposition(|s| s.point.is_none()) {
                revised.sentences.remove(i);
                continue;
            }
            let long = revised.sentences.iter_mut().rev().find(|s| {
                s.point
                    .as_deref()
                    .is_some_and(|point| s.text != terse(point))
            });
            match long {
                Some(sentence) => {
                    let point = sentence.point.as_deref().unwrap_or_default();
                    sentence.text = terse(point);
                }
                None => break,
            }
        }
    }
    revised
}

/// A point's sentence at its shortest: the point alone, capitalized (`Offsets.`).
fn terse(point: &str) -> String {
    let mut chars = point.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).chain(['.']).collect(),
        None => String::new(),
    }
}

/// The writer's loop, apart from Kafka: drafts for `brief`, has `ask` review each draft
/// (`ask` answers the review and the agent id of the reviewer that gave it), revises it
/// from the feedback, and stops at the first approval or after `max_rounds` reviews,
/// whichever comes first — never later, whatever the reviewer says.
///
/// ```
/// use writer_reviewer::{Brief, review, write_with_reviews};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let brief: Brief = "Kafka; must mention: partitions, offsets; at most 20 words".parse()?;
/// // The reviewer's rules called in-process; over Kafka, `register_writer` asks the
/// // `reviewer` agent type.
/// let outcome = write_with_reviews(&brief, 5, "writer-1", |request| async move {
///     Ok((review(&request.brief, &request.draft), "reviewer-1".to_owned()))
/// })
/// .await?;
/// assert!(outcome.approved);
/// assert_eq!(outcome.rounds.len(), 2);
/// # Ok(()) }
/// ```
///
/// # Errors
/// - `invalid_input`: an invalid brief, or `max_rounds` not from 1 to [`MAX_ROUNDS`];
/// - any error `ask` answers, as it is (see [`register_writer`] for the writer's own).
pub async fn write_with_reviews<F, Fut>(
    brief: &Brief,
    max_rounds: u32,
    writer_id: &str,
    mut ask: F,
) -> Result<Outcome, AgentError>
where
    F: FnMut(ReviewRequest) -> Fut,
    Fut: Future<Output = Result<(Review, String), AgentError>>,
{
    brief
        .validate()
        .map_err(|err| AgentError::new("invalid_input", err.to_string()))?;
    if !(1..=MAX_ROUNDS).contains(&max_rounds) {
        return Err(AgentError::new(
            "invalid_input",
            format!("max_rounds must be 1 to {MAX_ROUNDS}, not {max_rounds}"),
        ));
    }
    let mut draft = first_draft(brief);
    let mut rounds: Vec<Round> = Vec::new();
    for number in 1..=max_rounds {
        let text = draft.text();
        let (review, reviewer_id) = ask(ReviewRequest {
            brief: brief.clone(),
            draft: text.clone(),
            round: number,
        })
        .await?;
        tracing::info!(round = number, approved = review.approved, reviewer_id, feedback = %review, "reviewed");
        let approved = review.approved;
        if !approved && number < max_rounds {
            draft = revise(brief, &draft, &review);
        }
        rounds.push(Round {
            number,
            draft: text,
            review,
            reviewer_id,
        });
        if approved {
            break;
        }
    }
    let mut reviewer_ids: Vec<String> = Vec::new();
    for round in &rounds {
        if !reviewer_ids.contains(&round.reviewer_id) {
            reviewer_ids.push(round.reviewer_id.clone());
        }
    }
    let last = rounds.last();
    Ok(Outcome {
        approved: last.is_some_and(|r| r.review.approved),
        draft: last.map(|r| r.draft.clone()).unwrap_or_default(),
        writer_id: writer_id.to_owned(),
        reviewer_ids,
        rounds,
    })
}

/// Registers the `writer` agent type on `runtime`: each request, a [`Commission`], is
/// answered with its [`Outcome`]. The handler runs [`write_with_reviews`], asking the `reviewer`
/// agent type for each review with [`AgentRuntime::send_message`] from `runtime` (so
/// the reviews come back to this instance's reply partition), each within
/// `review_timeout`. The handler keeps a clone of `runtime` until the runtime shuts
/// down. `Ok(false)` when the runtime's shutdown came first.
///
/// A commission takes at most `max_rounds` × `review_timeout` (and the runtime's
/// [`handler_timeout`](agent_runtime::agents::RuntimeOptions::handler_timeout)): give the
/// caller's `send_message` more than that.
///
/// The handler's errors, which the caller gets as
/// [`SendError::Agent`] with this code:
/// - `invalid_input`: a request that is no [`Commission`], an invalid brief, or
///   `max_rounds` out of range;
/// - `reviewer_unavailable`: no review within `review_timeout` (no reviewer running, or
///   too slow), naming the round;
/// - `review_failed`: the reviewer answered an error, or the review request could not be
///   sent; its reason;
/// - `invalid_review`: the reviewer answered something that is no [`Review`].
///
/// # Errors
/// As [`AgentRuntime::register`]: [`agent_runtime::Error::Kafka`] when the request topic
/// cannot be created.
pub async fn register_writer(
    runtime: &AgentRuntime,
    review_timeout: Duration,
) -> agent_runtime::Result<bool> {
    let caller = runtime.clone();
    runtime
        .register(WRITER, move |message| {
            let caller = caller.clone();
            async move { handle(&caller, &message, review_timeout).await }
        })
        .await
}

/// One commission's work: check it, then [`write_with_reviews`] with reviews over Kafka.
async fn handle(
    runtime: &AgentRuntime,
    message: &AgentMessage,
    review_timeout: Duration,
) -> Result<Value, AgentError> {
    let commission: Commission = serde_json::from_value(message.value.clone())
        .map_err(|err| AgentError::new("invalid_input", format!("not a commission: {err}")))?;
    let ask = |request: ReviewRequest| ask_reviewer(runtime, request, review_timeout);
    let outcome = write_with_reviews(
        &commission.brief,
        commission.max_rounds,
        runtime.instance_id(),
        ask,
    )
    .await?;
    serde_json::to_value(&outcome).map_err(|err| AgentError::new("internal", err.to_string()))
}

/// Sends `request` to the `reviewer` agent type and waits up to `timeout` for its review.
async fn ask_reviewer(
    runtime: &AgentRuntime,
    request: ReviewRequest,
    timeout: Duration,
) -> Result<(Review, String), AgentError> {
    let round = request.round;
    match runtime.send_message(REVIEWER, &request, timeout).await {
        Ok(reply) => {
            let review: Review = serde_json::from_value(reply.value).map_err(|err| {
                AgentError::new(
                    "invalid_review",
                    format!(
                        "round {round}: reviewer {} answered no review: {err}",
                        reply.agent_id
                    ),
                )
            })?;
            Ok((review, reply.agent_id))
        }
        Err(err @ SendError::Timeout { .. }) => Err(AgentError::new(
            "reviewer_unavailable",
            format!("round {round}: {err}"),
        )),
        Err(err) => Err(AgentError::new(
            "review_failed",
            format!("round {round}: {err}"),
        )),
    }
}

#[cfg(test)]
mod tests;
