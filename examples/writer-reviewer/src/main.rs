//! `writer-reviewer`: runs the writer and reviewer agents over Kafka on one brief and
//! prints each round and the outcome. Exits 0 when the draft was approved, 3 when the
//! rounds ran out first, 1 on an error.

use std::process::ExitCode;

use agent_runtime::shutdown;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use writer_reviewer::{Brief, MAX_ROUNDS, RunOptions};

/// A writer agent and a reviewer agent talk over Kafka until the draft is approved.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers (the other KAFKA_* variables apply too).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    brokers: String,
    /// The prefix of the agent topics.
    #[arg(long, env = "KAFKA_TOPIC_PREFIX", default_value = "dev")]
    topic_prefix: String,
    /// The most drafts the reviewer reviews.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_ROUNDS)))]
    max_rounds: u32,
    /// The brief: "SUBJECT; must mention: A, B, ...; at most N words".
    #[arg(
        default_value = "Apache Kafka; must mention: topics, partitions, consumer groups, offsets; at most 30 words"
    )]
    brief: Brief,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let kafka = writer_reviewer::kafka_settings(&args.brokers, &args.topic_prefix)?;
    let options = RunOptions {
        max_rounds: args.max_rounds,
        ..RunOptions::default()
    };
    println!("brief: {}", args.brief);
    let outcome = writer_reviewer::run(&kafka, &args.brief, &options, shutdown::signal()).await?;
    print!("{outcome}");
    Ok(ExitCode::from(if outcome.approved { 0 } else { 3 }))
}
