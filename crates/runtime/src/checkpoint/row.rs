//! What every saver stores, whatever its database: a checkpoint as the columns of its
//! row (the encoded checkpoint with its state replaced by the state's [`Layout`], and
//! the state's blobs), pending writes as JSON, and the way back. The savers differ only
//! in their SQL.

use agent_core::graph::{Checkpoint, CheckpointError, CheckpointSource, PendingWrite};

use super::blob::{self, Layout};

/// The columns of a checkpoint row to save.
pub(crate) struct Encoded {
    pub(crate) checkpoint_id: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) step: i64,
    pub(crate) source: &'static str,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
    /// [`Checkpoint::encode`] of the checkpoint, its state replaced by the layout.
    pub(crate) body: Vec<u8>,
    /// The state's blobs and the hashes the row refers to.
    pub(crate) split: blob::Split,
}

impl Encoded {
    /// Cuts `checkpoint`'s state into blobs and encodes the rest.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] when the checkpoint cannot be encoded or its step
    /// does not fit an `i64`.
    pub(crate) fn encode(mut checkpoint: Checkpoint) -> Result<Self, CheckpointError> {
        let corrupt = |e: serde_json::Error| {
            CheckpointError::Corrupt(format!("encoding checkpoint {}: {e}", checkpoint.id))
        };
        let split = blob::split(&checkpoint.state).map_err(corrupt)?;
        checkpoint.state = serde_json::to_value(&split.layout).map_err(corrupt)?;
        let step = i64::try_from(checkpoint.step).map_err(|_| {
            CheckpointError::Corrupt(format!("step {} out of range", checkpoint.step))
        })?;
        Ok(Self {
            body: checkpoint.encode()?,
            step,
            source: match checkpoint.source {
                CheckpointSource::Input => "input",
                CheckpointSource::Loop => "loop",
                CheckpointSource::Update => "update",
            },
            created_at: checkpoint.created_at,
            checkpoint_id: checkpoint.id,
            parent_id: checkpoint.parent_id,
            split,
        })
    }
}

/// Reads a checkpoint back from its row's `body` and the values of its state blobs in
/// layout order (`None` for a blob that is not stored).
///
/// # Errors
/// [`CheckpointError::Incompatible`] for a body of another format version;
/// [`CheckpointError::Corrupt`] for an unreadable body or layout, or a missing blob.
pub(crate) fn decode(
    body: &[u8],
    blobs: Vec<Option<Vec<u8>>>,
) -> Result<Checkpoint, CheckpointError> {
    let mut checkpoint = Checkpoint::decode(body)?;
    let corrupt =
        |what: String| CheckpointError::Corrupt(format!("checkpoint {}: {what}", checkpoint.id));
    let layout: Layout = serde_json::from_value(std::mem::take(&mut checkpoint.state))
        .map_err(|e| corrupt(format!("state layout: {e}")))?;
    let values = blobs
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| corrupt(format!("state blob {i} is missing"))))
        .collect::<Result<Vec<_>, _>>()?;
    checkpoint.state = blob::join(layout, values).map_err(corrupt)?;
    Ok(checkpoint)
}

/// `writes` to record, as `(task id, JSON)`: of a task written twice in one call, its
/// last write in its last place (as one call of `InMemorySaver` leaves them).
///
/// # Errors
/// [`CheckpointError::Corrupt`] when a write cannot be encoded.
pub(crate) fn encode_writes(
    writes: Vec<PendingWrite>,
) -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
    let mut kept: Vec<PendingWrite> = Vec::with_capacity(writes.len());
    for write in writes {
        kept.retain(|w| w.task_id != write.task_id);
        kept.push(write);
    }
    kept.into_iter()
        .map(|write| {
            let json = serde_json::to_vec(&write).map_err(|e| {
                CheckpointError::Corrupt(format!("encoding a write of {}: {e}", write.task_id))
            })?;
            Ok((write.task_id, json))
        })
        .collect()
}

/// The pending writes of checkpoint `checkpoint_id` from their JSON, in order.
///
/// # Errors
/// [`CheckpointError::Corrupt`] for one that is not a pending write.
pub(crate) fn decode_writes(
    checkpoint_id: &str,
    writes: &[Vec<u8>],
) -> Result<Vec<PendingWrite>, CheckpointError> {
    writes
        .iter()
        .map(|w| {
            serde_json::from_slice(w).map_err(|e| {
                CheckpointError::Corrupt(format!(
                    "pending write of checkpoint {checkpoint_id}: {e}"
                ))
            })
        })
        .collect()
}
