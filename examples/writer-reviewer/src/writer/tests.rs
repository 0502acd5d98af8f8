use super::*;
use crate::reviewer::review;

fn brief(text: &str) -> Brief {
    text.parse().expect("a brief")
}

const KAFKA: &str =
    "Apache Kafka; must mention: topics, partitions, consumer groups, offsets; at most 30 words";

/// `write_with_reviews` with the reviewer's rules in-process, as reviewer `local`.
async fn write_locally(brief: &Brief, max_rounds: u32) -> Result<Outcome, AgentError> {
    write_with_reviews(brief, max_rounds, "writer-test", |request| async move {
        Ok((review(&request.brief, &request.draft), "local".to_owned()))
    })
    .await
}

#[test]
fn the_first_draft_makes_only_the_first_point_and_runs_long() {
    let brief = brief(KAFKA);
    let draft = first_draft(&brief);
    let review = review(&brief, &draft.text());
    assert_eq!(review.missing, ["partitions", "consumer groups", "offsets"]);
    assert_eq!((draft.words(), review.words), (35, 35));
    assert!(review.too_long());
}

#[test]
fn a_revision_adds_exactly_the_missing_points_and_cuts_only_when_told_too_long() {
    let brief = brief("Kafka; must mention: topics, offsets, partitions; at most 100 words");
    let draft = first_draft(&brief);
    let feedback = Review {
        approved: false,
        missing: vec!["offsets".into(), "not in the brief".into()],
        words: draft.words(),
        max_words: 100,
    };
    let revised = revise(&brief, &draft, &feedback);
    let text = revised.text();
    assert!(text.ends_with("It also covers offsets."), "{text}");
    assert!(!mentions(&text, "partitions"), "not asked for: {text}");
    assert!(!mentions(&text, "not in the brief"), "{text}");
    assert!(
        text.contains("Much more could be said"),
        "not told too long: {text}"
    );
}

#[test]
fn a_draft_told_too_long_loses_its_background_first_and_never_a_point() {
    let brief = brief(KAFKA);
    let draft = first_draft(&brief);
    let revised = revise(&brief, &draft, &review(&brief, &draft.text()));
    assert_eq!(
        revised.text(),
        "This note is about Apache Kafka. It starts with topics. It also covers partitions. \
         It also covers consumer groups. It also covers offsets."
    );
    assert!(review(&brief, &revised.text()).approved);

    // A limit that only the points alone meet: every sentence cut to its point.
    let tight = self::brief("Kafka; must mention: topics, consumer groups; at most 3 words");
    let draft = first_draft(&tight);
    let twice = revise(&tight, &draft, &review(&tight, &draft.text()));
    let twice = revise(&tight, &twice, &review(&tight, &twice.text()));
    assert_eq!(twice.text(), "Topics. Consumer groups.");
    assert!(review(&tight, &twice.text()).approved);
}

#[tokio::test]
async fn the_writer_is_approved_after_revising_and_its_last_draft_meets_the_brief() {
    let brief = brief(KAFKA);
    let outcome = write_locally(&brief, 5).await.expect("an outcome");
    assert!(outcome.approved);
    assert_eq!(outcome.rounds.len(), 2);
    assert_eq!(outcome.draft, outcome.rounds[1].draft);
    for point in &brief.points {
        assert!(
            mentions(&outcome.draft, point),
            "{point}: {}",
            outcome.draft
        );
    }
    assert!(outcome.draft.split_whitespace().count() <= brief.max_words);
    assert_eq!(outcome.reviewer_ids, ["local"]);
    assert_eq!(outcome.writer_id, "writer-test");
}

#[tokio::test]
async fn any_brief_whose_points_fit_its_limit_is_approved_within_three_rounds() {
    let names = [
        "topics",
        "consumer groups",
        "offsets",
        "the dead-letter topic",
        "keys",
    ];
    for count in 1..=names.len() {
        let points = &names[..count];
        let least: usize = points.iter().map(|p| p.split_whitespace().count()).sum();
        for max_words in least..least + 60 {
            let brief = Brief {
                subject: "Apache Kafka".into(),
                points: points.iter().map(|p| (*p).to_owned()).collect(),
                max_words,
            };
            let outcome = write_locally(&brief, 5).await.expect("an outcome");
            assert!(outcome.approved, "{brief}");
            assert!(outcome.rounds.len() <= 3, "{brief}: {outcome}");
        }
    }
}

#[tokio::test]
async fn a_brief_that_cannot_be_met_ends_after_max_rounds_not_approved() {
    let brief = brief("Kafka; must mention: topics, consumer groups, offsets; at most 3 words");
    let outcome = write_locally(&brief, 4).await.expect("an outcome");
    assert!(!outcome.approved);
    assert_eq!(outcome.rounds.len(), 4);
    assert_eq!(outcome.draft, "Topics. Consumer groups. Offsets.");
    assert!(outcome.rounds.iter().all(|r| !r.review.approved));
}

#[tokio::test]
async fn a_reviewer_that_never_approves_is_asked_max_rounds_times_and_no_more() {
    let brief = brief(KAFKA);
    let mut asked = 0;
    let outcome = write_with_reviews(&brief, 3, "writer-test", |request| {
        asked += 1;
        async move {
            let review = Review {
                approved: false,
                missing: vec![],
                words: request.draft.split_whitespace().count(),
                max_words: request.brief.max_words,
            };
            Ok((review, "harsh".to_owned()))
        }
    })
    .await
    .expect("an outcome");
    assert_eq!(asked, 3);
    assert!(!outcome.approved);
    assert_eq!(
        outcome.rounds.iter().map(|r| r.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Told only that round 1 was too long, the writer cut it; then nothing was left to fix.
    assert_eq!(
        outcome.draft,
        "This note is about Apache Kafka. It starts with topics."
    );
    assert_eq!(outcome.rounds[1].draft, outcome.rounds[2].draft);
    assert_eq!(
        outcome.rounds[2].review.to_string(),
        "not approved, with nothing to fix"
    );
    assert!(outcome.to_string().ends_with(
        "not approved after 3 rounds, the most allowed (writer writer-test); \
         the last draft stands as it is\n"
    ));
}

#[tokio::test]
async fn a_reviewers_error_ends_the_commission_with_that_error() {
    let brief = brief(KAFKA);
    let err = write_with_reviews(&brief, 3, "w", |request| async move {
        Err::<(Review, String), _>(AgentError::new(
            "reviewer_unavailable",
            format!("round {}: no reply", request.round),
        ))
    })
    .await
    .expect_err("the reviewer's error");
    assert_eq!(
        err,
        AgentError::new("reviewer_unavailable", "round 1: no reply")
    );
}

#[tokio::test]
async fn max_rounds_out_of_range_is_invalid_input() {
    let brief = brief(KAFKA);
    for rounds in [0, MAX_ROUNDS + 1] {
        let err = write_locally(&brief, rounds).await.expect_err("refused");
        assert_eq!(err.code, "invalid_input");
        assert_eq!(
            err.message,
            format!("max_rounds must be 1 to {MAX_ROUNDS}, not {rounds}")
        );
    }
}

#[tokio::test]
async fn the_outcome_prints_each_round_then_the_result() {
    let outcome = write_locally(&brief(KAFKA), 5).await.expect("an outcome");
    let printed = outcome.to_string();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines[0],
        "round 1 (reviewer local, 35 words): missing: partitions, consumer groups, offsets; \
         5 words over the limit of 30"
    );
    assert!(lines[1].starts_with("  This note is about Apache Kafka."));
    assert_eq!(lines[2], "round 2 (reviewer local, 23 words): approved");
    assert_eq!(lines[4], "approved after 2 rounds (writer writer-test)");
}
