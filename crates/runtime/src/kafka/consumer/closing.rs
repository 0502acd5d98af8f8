//! [`ClosingConsumer`].

use std::time::Duration;

use rdkafka::consumer::{ConsumerContext, DefaultConsumerContext, StreamConsumer};

/// A consumer whose closing (librdkafka's consumer close: leave the group, final commit),
/// which blocks until the broker answers, happens on its own thread: an unreachable broker
/// cannot hang the task, the runtime's shutdown or the process exit that drops it.
pub struct ClosingConsumer<C: ConsumerContext + 'static = DefaultConsumerContext>(
    Option<StreamConsumer<C>>,
);

impl<C: ConsumerContext + 'static> std::fmt::Debug for ClosingConsumer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosingConsumer").finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static> ClosingConsumer<C> {
    /// Wraps `consumer`.
    pub fn new(consumer: StreamConsumer<C>) -> Self {
        Self(Some(consumer))
    }

    /// Closes the consumer, waiting up to `timeout` for the close to finish; past it the
    /// close goes on in the background.
    pub async fn close(mut self, timeout: Duration) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        close_in_background(consumer, Some(done));
        if tokio::time::timeout(timeout, finished).await.is_err() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "consumer close did not finish in time (broker unreachable?); leaving it to finish in the background"
            );
        }
    }
}

fn close_in_background<C: ConsumerContext + 'static>(
    consumer: StreamConsumer<C>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            drop(consumer);
            if let Some(done) = done {
                let _ = done.send(());
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot spawn a thread to close the consumer");
    }
}

impl<C: ConsumerContext + 'static> std::ops::Deref for ClosingConsumer<C> {
    type Target = StreamConsumer<C>;

    fn deref(&self) -> &StreamConsumer<C> {
        // Only `close` and `drop` take the consumer out, and both consume `self`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("consumer already closed"))
    }
}

impl<C: ConsumerContext + 'static> Drop for ClosingConsumer<C> {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_in_background(consumer, None);
        }
    }
}
