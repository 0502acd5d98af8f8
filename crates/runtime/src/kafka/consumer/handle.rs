//! One message's attempts: [`handle_one`].

use std::{future::Future, time::Duration};

use rdkafka::{Message, message::OwnedMessage};
use tokio_util::sync::CancellationToken;

use super::MAX_DEAD_LETTER_REASON_BYTES;
use super::dead_letter::{bounded, dead_letter};
use super::{ConsumerOptions, Outcome};
use crate::Result;
use crate::kafka::Producer;

/// Runs `process` on one message until it succeeds, or fails of its own
/// [`ConsumerOptions::max_attempts`] times and is dead-lettered (`true`: the message is
/// done), or shutdown stops it (`false`: leave the message uncommitted).
pub(super) async fn handle_one<F, Fut>(
    message: &OwnedMessage,
    options: &ConsumerOptions,
    producer: &Producer,
    shutdown: &CancellationToken,
    process: &F,
) -> bool
where
    F: Fn(OwnedMessage) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let key = (message.topic().to_owned(), message.partition());
    let mut backoff = Duration::from_millis(200);
    let mut own_failures = 0;
    loop {
        let drain = async {
            shutdown.cancelled().await;
            tokio::time::sleep(options.drain_timeout).await;
        };
        let outcome = tokio::select! {
            outcome = process(message.clone()) => outcome,
            () = drain => {
                tracing::warn!("drain timeout reached; message left for redelivery");
                return false;
            }
        };
        let failure = match outcome {
            Ok(Outcome::Done) => return true,
            Ok(Outcome::DeadLetter(reason)) => {
                return dead_letter(producer, message, options, &reason, shutdown).await;
            }
            Err(err) => err,
        };
        let text = failure.to_string();
        options.progress.failed(&key, &text);
        if failure.is_permanent() {
            own_failures += 1;
            if own_failures >= options.max_attempts {
                let reason = format!("gave up after {own_failures} attempts: {text}");
                return dead_letter(producer, message, options, &reason, shutdown).await;
            }
        }
        tracing::warn!(error = %bounded(&text, MAX_DEAD_LETTER_REASON_BYTES), own_failures, retry_in_ms = backoff.as_millis() as u64, "processing failed; will retry");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
