//! `agent-bench`: the agent runtime's request/reply round trip through the broker (see
//! [`pipeline_bench::agents`]). `agent-bench serve` answers the `echo` agent type until
//! SIGTERM; `agent-bench call`, in another process, warms up, then sends `-n` requests
//! at each level of concurrent callers and prints one JSON object on stdout, a table on
//! stderr.

use std::time::Duration;

use agent_runtime::{agents::RuntimeOptions, shutdown};
use clap::{Parser, Subcommand};
use pipeline_bench::agents::{self, Plan};
use serde_json::json;

/// Request/reply round trips of the agent runtime over Kafka.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "localhost:9092"
    )]
    brokers: String,
    /// The prefix of the agent topics (use a fresh one per run).
    #[arg(long, default_value = "bench")]
    topic_prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answers the `echo` agent type until SIGTERM or Ctrl-C.
    Serve {
        /// This instance's id.
        #[arg(long, default_value = "echo-1")]
        instance_id: String,
        /// Requests answered at once (the runtime's default: 8).
        #[arg(long, default_value_t = RuntimeOptions::default().concurrency)]
        concurrency: usize,
    },
    /// Calls the `echo` agent type and measures the round trips.
    Call {
        /// Requests at each level.
        #[arg(short = 'n', default_value_t = 2000)]
        requests: usize,
        /// The levels of concurrent callers, comma-separated.
        #[arg(short = 'c', long, value_delimiter = ',', default_value = "1,64")]
        callers: Vec<usize>,
        /// Requests sent before measuring (after a first one that waits for the `echo`
        /// consumer group to form).
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// How long each request waits for its reply, ms.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = agents::settings(&args.brokers, &args.topic_prefix);
    match args.command {
        Command::Serve {
            instance_id,
            concurrency,
        } => agents::serve(&settings, &instance_id, concurrency, shutdown::signal()).await,
        Command::Call {
            requests,
            callers,
            warmup,
            timeout_ms,
        } => {
            let plan = Plan {
                requests,
                callers,
                warmup,
                timeout: Duration::from_millis(timeout_ms),
            };
            let levels = agents::measure(&settings, &plan).await?;
            println!(
                "{}",
                json!({ "requests": requests, "warmup": warmup, "levels": levels })
            );
            eprint!("\n{}", agents::table(&levels));
            anyhow::ensure!(levels.iter().all(|l| l.errors == 0), "some requests failed");
            Ok(())
        }
    }
}
