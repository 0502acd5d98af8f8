//! [`Pending`]: the requests waiting for replies, and the routing of each record of the
//! caller's reply partition to the request it answers.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use rdkafka::Message;
use tokio::sync::mpsc;

use super::{
    envelope::{ReplyRecord, parse_reply},
    error::SendError,
};

/// What the reply reader hands a waiting request: a reply, or why a record carrying
/// its correlation id was not one.
pub(crate) type Routed = Result<ReplyRecord, String>;

/// The requests waiting for replies, by correlation id; at most `limit` at once.
#[derive(Debug)]
pub(crate) struct Pending {
    waiters: Mutex<Waiters>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Waiters {
    by_id: HashMap<String, mpsc::Sender<Routed>>,
    closed: bool,
}

/// A request's place in [`Pending`]; removed when dropped (the reply came, the timeout
/// ran out, or the caller's future was dropped), so the map never keeps a dead entry.
#[derive(Debug)]
pub(crate) struct Waiting {
    pending: Arc<Pending>,
    id: String,
    pub(crate) replies: mpsc::Receiver<Routed>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.pending.lock().by_id.remove(&self.id);
    }
}

impl Pending {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            waiters: Mutex::default(),
            limit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for up to `capacity` replies to `id` (1 for `send_message`, `max_replies`
    /// for a scatter-gather); replies past it are dropped.
    ///
    /// # Errors
    /// [`SendError::Busy`] when `limit` requests wait already; [`SendError::Closed`]
    /// after [`Pending::close`].
    pub(crate) fn wait(self: &Arc<Self>, id: &str, capacity: usize) -> Result<Waiting, SendError> {
        let mut waiters = self.lock();
        if waiters.closed {
            return Err(SendError::Closed);
        }
        if waiters.by_id.len() >= self.limit {
            return Err(SendError::Busy { limit: self.limit });
        }
        let (sender, replies) = mpsc::channel(capacity.max(1));
        waiters.by_id.insert(id.to_owned(), sender);
        Ok(Waiting {
            pending: Arc::clone(self),
            id: id.to_owned(),
            replies,
        })
    }

    /// How many requests wait now.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Hands a record of the reply partition to the request it answers; a record that
    /// answers none waiting (a late reply, another caller's on a shared partition, not a
    /// reply at all) is dropped. Never blocks: a request with its replies full drops the
    /// rest.
    pub(crate) fn route<M: Message>(&self, message: &M) {
        let Some((id, reply)) = parse_reply(message) else {
            tracing::debug!(
                partition = message.partition(),
                offset = message.offset(),
                "record without a correlation id on the reply partition; dropped"
            );
            return;
        };
        let waiters = self.lock();
        match waiters.by_id.get(&id) {
            Some(sender) => {
                if let Err(err) = &reply {
                    tracing::warn!(correlation_id = %id, offset = message.offset(), error = %err, "invalid reply");
                }
                let _ = sender.try_send(reply);
            }
            None => {
                tracing::debug!(correlation_id = %id, "reply for no request waiting here; dropped")
            }
        }
    }

    /// No more requests; those waiting get [`SendError::Closed`] (their channels close).
    pub(crate) fn close(&self) {
        let mut waiters = self.lock();
        waiters.closed = true;
        waiters.by_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_bounded_and_an_entry_goes_when_its_request_stops_waiting() {
        let pending = Pending::new(2);
        let first = pending.wait("a", 1).expect("room");
        let second = pending.wait("b", 1).expect("room");
        assert!(matches!(
            pending.wait("c", 1),
            Err(SendError::Busy { limit: 2 })
        ));
        drop(first);
        assert_eq!(pending.len(), 1);
        let _third = pending.wait("c", 1).expect("room again");
        pending.close();
        assert_eq!(pending.len(), 0);
        drop(second);
        assert!(matches!(pending.wait("d", 1), Err(SendError::Closed)));
    }
}
