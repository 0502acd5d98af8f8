//! The examples under `examples/` on a real broker: `writer-reviewer`, a writer agent
//! that asks a reviewer agent over Kafka until its draft is approved.

use std::time::{Duration, Instant};

use agent_runtime::agents::{SendError, envelope, topics};
use e2e::{Broker, agent_settings, read_topic, start_agent};
use rdkafka::{
    Message,
    message::{Headers, OwnedMessage},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use writer_reviewer::{Brief, Error, Outcome, Review, RunOptions};

const BRIEF: &str =
    "Apache Kafka; must mention: topics, partitions, consumer groups, offsets; at most 30 words";

/// The replies on the reply topic, as (`agent_type`, `agent_id`, value), once `count`
/// arrived.
async fn replies(broker: &Broker, count: usize) -> Vec<(String, String, serde_json::Value)> {
    let records = read_topic(
        &broker.bootstrap(),
        &topics::reply_topic("dev"),
        count,
        Duration::from_secs(30),
    )
    .await;
    records.iter().map(reply_of).collect()
}

fn reply_of(record: &OwnedMessage) -> (String, String, serde_json::Value) {
    let header = |name: &str| {
        record
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let value = serde_json::from_slice(record.payload().unwrap_or_default()).unwrap_or_default();
    (
        header(envelope::AGENT_TYPE),
        header(envelope::AGENT_ID),
        value,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_revises_until_the_reviewer_approves_and_every_review_crossed_kafka() {
    let broker = Broker::start();
    let brief: Brief = BRIEF.parse().expect("a brief");

    let outcome = writer_reviewer::run(
        &agent_settings(&broker),
        &brief,
        &RunOptions::default(),
        CancellationToken::new(),
    )
    .await
    .expect("an outcome");

    assert!(outcome.approved, "{outcome}");
    assert!(outcome.rounds.len() > 1, "revised at least once: {outcome}");
    let words = outcome.draft.split_whitespace().count();
    assert!(words <= brief.max_words, "{words} words: {}", outcome.draft);
    let draft = outcome.draft.to_lowercase();
    for point in &brief.points {
        assert!(draft.contains(point.as_str()), "{point}: {}", outcome.draft);
    }
    assert_eq!(outcome.draft, outcome.rounds.last().expect("rounds").draft);

    // The reviews came back from another instance, over the reply topic: one reply per
    // round from the reviewer, then the writer's outcome.
    assert!(outcome.writer_id.starts_with("writer-"), "{outcome:?}");
    assert_eq!(outcome.reviewer_ids.len(), 1, "{outcome:?}");
    let reviewer_id = &outcome.reviewer_ids[0];
    assert!(reviewer_id.starts_with("reviewer-"), "{outcome:?}");
    let on_topic = replies(&broker, outcome.rounds.len() + 1).await;
    let reviews: Vec<Review> = on_topic
        .iter()
        .filter(|(agent_type, agent_id, _)| agent_type == "reviewer" && agent_id == reviewer_id)
        .map(|(_, _, value)| serde_json::from_value(value.clone()).expect("a review"))
        .collect();
    let reviewed: Vec<Review> = outcome.rounds.iter().map(|r| r.review.clone()).collect();
    assert_eq!(reviews, reviewed, "the reviews on the reply topic");
    let written: Vec<Outcome> = on_topic
        .iter()
        .filter(|(agent_type, agent_id, _)| {
            agent_type == "writer" && *agent_id == outcome.writer_id
        })
        .map(|(_, _, value)| serde_json::from_value(value.clone()).expect("an outcome"))
        .collect();
    assert_eq!(written, [outcome], "the writer's reply on the reply topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_that_never_approves_ends_the_commission_after_max_rounds_not_approved() {
    let broker = Broker::start();
    let writer = start_agent(&broker, "writer-1").await;
    let options = RunOptions {
        max_rounds: 3,
        review_timeout: Duration::from_secs(20),
        ..RunOptions::default()
    };
    assert!(
        writer_reviewer::register_writer(&writer, options.review_timeout)
            .await
            .expect("registered")
    );
    let harsh = start_agent(&broker, "harsh-1").await;
    harsh
        .register(writer_reviewer::REVIEWER, |request| async move {
            let words = request.value["draft"]
                .as_str()
                .map_or(0, |d| d.split_whitespace().count());
            Ok(json!({
                "approved": false,
                "missing": ["a point no draft will ever make"],
                "words": words,
                "max_words": 1000,
            }))
        })
        .await
        .expect("registered");
    let caller = start_agent(&broker, "caller-1").await;
    let brief: Brief = BRIEF.parse().expect("a brief");

    let started = Instant::now();
    let outcome = writer_reviewer::commission(&caller, &brief, &options)
        .await
        .expect("an outcome");

    assert!(!outcome.approved, "{outcome}");
    assert_eq!(outcome.rounds.len(), 3, "{outcome}");
    assert_eq!(outcome.reviewer_ids, ["harsh-1"]);
    assert_eq!(outcome.writer_id, "writer-1");
    assert!(
        started.elapsed() < options.write_timeout(),
        "ended by max rounds, not by a timeout ({:?})",
        started.elapsed()
    );
    for runtime in [writer, harsh, caller] {
        runtime.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_reviewer_running_the_writer_answers_reviewer_unavailable() {
    let broker = Broker::start();
    let writer = start_agent(&broker, "writer-1").await;
    let options = RunOptions {
        max_rounds: 2,
        review_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    assert!(
        writer_reviewer::register_writer(&writer, options.review_timeout)
            .await
            .expect("registered")
    );
    let caller = start_agent(&broker, "caller-1").await;
    let brief: Brief = BRIEF.parse().expect("a brief");

    let err = writer_reviewer::commission(&caller, &brief, &options)
        .await
        .expect_err("no reviewer");

    match err {
        Error::Writer(SendError::Agent {
            code,
            message,
            agent_id,
            ..
        }) => {
            assert_eq!(code, "reviewer_unavailable");
            assert_eq!(
                message, "round 1: no reply from reviewer within 5000 ms",
                "names the round and the timeout"
            );
            assert_eq!(agent_id, "writer-1");
        }
        other => panic!("expected the writer's error, got {other:?}"),
    }
    for runtime in [writer, caller] {
        runtime.shutdown().await;
    }
}
