//! The dead-letter path: bounded records, and what happens when even they are refused.

use std::time::Duration;

use chrono::Utc;
use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
};
use tokio_util::sync::CancellationToken;

use super::ConsumerOptions;
use crate::Result;
use crate::kafka::{MAX_OWN_RECORD_BYTES, Producer};

/// Sends `message` to the dead-letter topic with `reason` (`true` once it is there, or
/// once the loop gave up on it; `false` when shutdown came first). The full record is
/// tried first; if the broker refuses it for good, a minimal record (see
/// [`send_to_dead_letter`]); if that is refused for good too, the message's coordinates
/// and the reason are logged at ERROR and the loop moves on (the original stays on its
/// topic until retention removes it). While the broker is unreachable it is tried again
/// with backoff.
pub(super) async fn dead_letter(
    producer: &Producer,
    message: &OwnedMessage,
    options: &ConsumerOptions,
    reason: &str,
    shutdown: &CancellationToken,
) -> bool {
    let key = (message.topic().to_owned(), message.partition());
    let reason = crate::redact::redact(reason);
    let shown = bounded(&reason, MAX_DEAD_LETTER_REASON_BYTES);
    let mut backoff = Duration::from_millis(200);
    loop {
        let failure = match send_to_dead_letter(producer, message, options, &reason, false).await {
            Ok(()) => {
                tracing::warn!(reason = %shown, topic = %options.dead_letter_topic, "message sent to the dead-letter topic");
                count(options);
                return true;
            }
            Err(err) if err.is_permanent() => {
                tracing::warn!(error = %err, "the dead-letter record was refused; sending a minimal one");
                match send_to_dead_letter(producer, message, options, &reason, true).await {
                    Ok(()) => {
                        tracing::warn!(reason = %shown, topic = %options.dead_letter_topic, "minimal record sent to the dead-letter topic");
                        count(options);
                        return true;
                    }
                    Err(err) if err.is_permanent() => {
                        tracing::error!(reason = %shown, error = %err, "cannot dead-letter the message; skipped (it stays at its offset until retention)");
                        return true;
                    }
                    Err(err) => err,
                }
            }
            Err(err) => err,
        };
        let text = format!("dead-letter publish failed: {failure}");
        options.progress.failed(&key, &text);
        tracing::warn!(error = %text, retry_in_ms = backoff.as_millis() as u64, "will retry");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Counts a record acknowledged on the dead-letter topic:
/// `dead_letters_total{topic}`, `topic` being the dead-letter topic.
fn count(options: &ConsumerOptions) {
    metrics::counter!("dead_letters_total", "topic" => options.dead_letter_topic.clone())
        .increment(1);
}

/// The longest `dlq_error` header, in bytes: a reason, never a payload (a parse error
/// may quote the whole value it choked on).
pub const MAX_DEAD_LETTER_REASON_BYTES: usize = 1024;

/// The largest dead-letter record the loop produces, key, value and headers (the
/// broker's default limit, `message.max.bytes`, is 1 MB).
pub const MAX_DEAD_LETTER_BYTES: usize = MAX_OWN_RECORD_BYTES;

/// How much of a value that does not fit is kept in its dead-letter record.
pub const DEAD_LETTER_PREFIX_BYTES: usize = 64 * 1024;

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub(super) fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Publishes `message` to the dead-letter topic with its error in headers: unchanged when
/// it fits [`MAX_DEAD_LETTER_BYTES`]; otherwise the first [`DEAD_LETTER_PREFIX_BYTES`]
/// of its value, its original headers dropped, and `dlq_truncated: true` with
/// `dlq_original_bytes` (the original stays at `dlq_topic`/`dlq_partition`/`dlq_offset`
/// until retention removes it). `minimal` sends no value at all (and `dlq_truncated`).
/// The reason is cut to [`MAX_DEAD_LETTER_REASON_BYTES`].
pub(super) async fn send_to_dead_letter(
    producer: &Producer,
    message: &OwnedMessage,
    options: &ConsumerOptions,
    reason: &str,
    minimal: bool,
) -> Result<()> {
    let payload = message.payload().unwrap_or_default();
    let original_headers: usize = message.headers().map_or(0, |headers| {
        headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    });
    let key_bytes = message.key().map_or(0, <[u8]>::len);
    // Our own headers stay well under 2 KiB (the reason is bounded).
    let fits = !minimal
        && key_bytes + payload.len() + original_headers + MAX_DEAD_LETTER_REASON_BYTES + 1024
            <= MAX_DEAD_LETTER_BYTES;
    let mut headers = OwnedHeaders::new();
    if fits && let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(h);
        }
    }
    let value = if fits {
        payload
    } else if minimal {
        &[]
    } else {
        &payload[..payload.len().min(DEAD_LETTER_PREFIX_BYTES)]
    };
    let reason = bounded(reason, MAX_DEAD_LETTER_REASON_BYTES);
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let time = Utc::now().to_rfc3339();
    let original_bytes = payload.len().to_string();
    if !fits {
        for (key, value) in [
            ("dlq_truncated", "true"),
            ("dlq_original_bytes", original_bytes.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    for (key, value) in [
        ("dlq_error", reason.as_ref()),
        ("dlq_topic", message.topic()),
        ("dlq_partition", partition.as_str()),
        ("dlq_offset", offset.as_str()),
        ("dlq_group", options.group_id.as_str()),
        ("dlq_time", time.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let key = message.key().map(String::from_utf8_lossy);
    producer
        .send_bytes(&options.dead_letter_topic, key.as_deref(), value, headers)
        .await?;
    Ok(())
}
