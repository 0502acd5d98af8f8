//! Consumer lag, from librdkafka's statistics: the `kafka_consumer_lag` gauge.
//!
//! A group member is created with `statistics.interval.ms` = [`STATISTICS_INTERVAL`]
//! ([`member_config`](super::ownership::member_config)); librdkafka then hands its
//! context a JSON report at that interval (<https://github.com/confluentinc/librdkafka/blob/master/STATISTICS.md>),
//! and [`record`] sets, for each partition the member fetches,
//! `kafka_consumer_lag{group, topic, partition}` = the high watermark minus the group's
//! committed offset, in records (librdkafka's `consumer_lag`: what a `kafka-consumer-groups
//! --describe` shows). A partition whose lag is not known yet (nothing committed, no
//! fetch answered) or that this member no longer fetches keeps its last value.

use std::time::Duration;

use rdkafka::statistics::Statistics;

/// How often librdkafka reports its statistics, hence how fresh the lag is.
pub(crate) const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// Sets `kafka_consumer_lag` for each partition of `statistics` that `group`'s member
/// fetches (`fetch_state` = `active`) and whose lag is known.
pub(crate) fn record(group: &str, statistics: &Statistics) {
    for (topic, stats) in &statistics.topics {
        for (partition, p) in &stats.partitions {
            // Partition -1 is librdkafka's queue of records with no partition yet.
            if *partition < 0 || p.fetch_state != "active" || p.consumer_lag < 0 {
                continue;
            }
            metrics::gauge!(
                "kafka_consumer_lag",
                "group" => group.to_owned(),
                "topic" => topic.clone(),
                "partition" => partition.to_string(),
            )
            .set(p.consumer_lag as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fetched_partitions_with_a_known_lag_are_recorded() {
        let _ = crate::http::metrics::prometheus();
        let partition = |id: i32, state: &str, lag: i64| {
            let p = rdkafka::statistics::Partition {
                partition: id,
                fetch_state: state.to_owned(),
                consumer_lag: lag,
                ..Default::default()
            };
            (id, p)
        };
        let topic = rdkafka::statistics::Topic {
            topic: "lag-test-topic".to_owned(),
            partitions: [
                partition(0, "active", 7),
                partition(1, "active", -1),
                partition(2, "none", 3),
                partition(-1, "none", -1),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let statistics = Statistics {
            topics: [("lag-test-topic".to_owned(), topic)].into_iter().collect(),
            ..Default::default()
        };
        record("lag-test-group", &statistics);
        let text = crate::http::metrics::prometheus()
            .expect("recorder")
            .render();
        assert!(
            text.contains(
                r#"kafka_consumer_lag{group="lag-test-group",topic="lag-test-topic",partition="0"} 7"#
            ),
            "{text}"
        );
        for partition in ["1", "2", "-1"] {
            assert!(
                !text.contains(&format!(
                    r#"topic="lag-test-topic",partition="{partition}""#
                )),
                "partition {partition} recorded: {text}"
            );
        }
    }
}
