//! Content-addressed state blobs: how [`PostgresSaver`](super::PostgresSaver) and
//! [`SqliteSaver`](super::SqliteSaver) cut a checkpoint's state so that what did not
//! change between supersteps is stored once.
//!
//! A state that is a JSON object (as `agent_core::state!` makes) is cut by top-level
//! field, one blob each; an array field (a message history) is cut further into chunks
//! of about [`CHUNK_BYTES`], so appending to it stores only its last chunk again, not
//! the whole history. Any other state is one blob. A blob is keyed by the SHA-256 of its
//! JSON bytes; the [`Layout`] says how to put the state back together.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// An array field is cut into chunks of about this many bytes of JSON (a chunk closes
/// after the element that reaches it): ~16 chat messages of 200 characters.
pub(crate) const CHUNK_BYTES: usize = 4096;

/// The length of a blob's hash (SHA-256), in bytes.
pub(crate) const HASH_BYTES: usize = 32;

/// How a state was cut into blobs, stored in the checkpoint row in place of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Layout {
    /// The state is not a JSON object: one blob.
    Whole,
    /// A JSON object: its fields in order.
    Fields(Vec<Field>),
}

/// One top-level field of an object state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Field {
    /// The field's name.
    pub(crate) key: String,
    /// For an array: how many chunk blobs hold its elements (0 for `[]`). `None`: one
    /// blob holds the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) chunks: Option<usize>,
}

/// A blob to store: its hash, the field it belongs to, its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    /// SHA-256 of `value` ([`HASH_BYTES`] bytes).
    pub(crate) hash: Vec<u8>,
    /// The top-level field, or `""` for a non-object state.
    pub(crate) key: String,
    /// JSON bytes.
    pub(crate) value: Vec<u8>,
}

/// A state cut into blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// How to put it back together.
    pub(crate) layout: Layout,
    /// The hash of each blob, in layout order (a hash may repeat).
    pub(crate) refs: Vec<Vec<u8>>,
    /// The blobs, each hash once.
    pub(crate) blobs: Vec<Blob>,
}

impl Split {
    fn push(&mut self, key: &str, value: Vec<u8>) {
        let hash = Sha256::digest(&value).to_vec();
        if !self.blobs.iter().any(|b| b.hash == hash) {
            self.blobs.push(Blob {
                hash: hash.clone(),
                key: key.to_owned(),
                value,
            });
        }
        self.refs.push(hash);
    }
}

/// Cuts `state` into blobs.
///
/// # Errors
/// If a value cannot be written as JSON (not expected for a `Value`).
pub(crate) fn split(state: &Value) -> Result<Split, serde_json::Error> {
    let Value::Object(fields) = state else {
        let mut split = Split {
            layout: Layout::Whole,
            refs: Vec::with_capacity(1),
            blobs: Vec::with_capacity(1),
        };
        split.push("", serde_json::to_vec(state)?);
        return Ok(split);
    };
    let mut split = Split {
        layout: Layout::Whole,
        refs: Vec::with_capacity(fields.len()),
        blobs: Vec::with_capacity(fields.len()),
    };
    let mut layout = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        let chunks = match value {
            Value::Array(items) => {
                let chunks = chunk(items)?;
                let n = chunks.len();
                for c in chunks {
                    split.push(key, c);
                }
                Some(n)
            }
            other => {
                split.push(key, serde_json::to_vec(other)?);
                None
            }
        };
        layout.push(Field {
            key: key.clone(),
            chunks,
        });
    }
    split.layout = Layout::Fields(layout);
    Ok(split)
}

/// The elements of an array as JSON arrays of about [`CHUNK_BYTES`] each, cut from the
/// start: appending elements changes only the last chunk.
fn chunk(items: &[Value]) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let mut chunks = Vec::new();
    let mut buf = Vec::new();
    for item in items {
        buf.push(if buf.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(&mut buf, item)?;
        if buf.len() >= CHUNK_BYTES {
            buf.push(b']');
            chunks.push(std::mem::take(&mut buf));
        }
    }
    if !buf.is_empty() {
        buf.push(b']');
        chunks.push(buf);
    }
    Ok(chunks)
}

/// Puts a state back together from its layout and its blobs' JSON, in layout order.
///
/// # Errors
/// A message when the blobs do not match the layout or are not JSON.
pub(crate) fn join(layout: Layout, values: Vec<Vec<u8>>) -> Result<Value, String> {
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes).map_err(|e| format!("state blob: {e}"))
    };
    let count = values.len();
    let mismatch = || format!("the layout does not match the {count} state blobs");
    let mut values = values.into_iter();
    let state = match layout {
        Layout::Whole => parse(&values.next().ok_or_else(mismatch)?)?,
        Layout::Fields(fields) => {
            let mut object = Map::with_capacity(fields.len());
            for field in fields {
                let value = match field.chunks {
                    None => parse(&values.next().ok_or_else(mismatch)?)?,
                    Some(n) => {
                        let mut items = Vec::new();
                        for _ in 0..n {
                            let chunk = values.next().ok_or_else(mismatch)?;
                            match parse(&chunk)? {
                                Value::Array(part) => items.extend(part),
                                _ => {
                                    return Err(format!(
                                        "chunk of {:?} is not an array",
                                        field.key
                                    ));
                                }
                            }
                        }
                        Value::Array(items)
                    }
                };
                object.insert(field.key, value);
            }
            Value::Object(object)
        }
    };
    if values.next().is_some() {
        return Err(mismatch());
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(state: &Value) -> Split {
        let split = split(state).expect("splits");
        let values = split
            .refs
            .iter()
            .map(|h| {
                split
                    .blobs
                    .iter()
                    .find(|b| &b.hash == h)
                    .expect("blob of ref")
                    .value
                    .clone()
            })
            .collect();
        let back = join(split.layout.clone(), values).expect("joins");
        assert_eq!(&back, state);
        // Key order too, not only equality.
        assert_eq!(
            serde_json::to_string(&back).expect("json"),
            serde_json::to_string(state).expect("json")
        );
        split
    }

    fn history(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": format!("m{i}"), "role": "user", "content": "x".repeat(200)}))
            .collect()
    }

    #[test]
    fn states_of_every_shape_round_trip() {
        for state in [
            json!(null),
            json!(42),
            json!("text"),
            json!([1, 2, 3]),
            json!({}),
            json!({"z": 1, "a": [], "m": {"b": 1, "a": [1.5, -0.0, 18446744073709551615u64]}}),
            json!({"messages": history(50), "count": 7, "title": "t"}),
        ] {
            round_trip(&state);
        }
    }

    #[test]
    fn an_unchanged_field_keeps_its_hash_and_an_append_changes_only_the_last_chunk() {
        let before = round_trip(&json!({"messages": history(50), "count": 1}));
        let after = round_trip(&json!({"messages": history(51), "count": 2}));
        let chunks = |s: &Split| match &s.layout {
            Layout::Fields(f) => f[0].chunks.expect("array"),
            Layout::Whole => panic!("object"),
        };
        let n = chunks(&before);
        assert!(n > 1, "50 messages of 200 characters span several chunks");
        assert_eq!(chunks(&after), n);
        assert_eq!(before.refs[..n - 1], after.refs[..n - 1]);
        assert_ne!(before.refs[n - 1], after.refs[n - 1]);
        assert_ne!(before.refs[n], after.refs[n], "count changed");
    }

    #[test]
    fn equal_parts_are_one_blob() {
        let split = round_trip(&json!({"a": "same", "b": "same", "c": []}));
        assert_eq!(split.refs.len(), 2, "an empty array has no chunk");
        assert_eq!(split.blobs.len(), 1);
        assert_eq!(split.blobs[0].key, "a");
    }

    #[test]
    fn blobs_that_do_not_match_the_layout_are_an_error() {
        let split = split(&json!({"a": 1, "b": [1]})).expect("splits");
        let err = join(split.layout.clone(), vec![b"1".to_vec()]).expect_err("one missing");
        assert!(err.contains("does not match"), "{err}");
        let err = join(split.layout, vec![b"1".to_vec(), b"{}".to_vec()]).expect_err("not array");
        assert!(err.contains("not an array"), "{err}");
        let err = join(Layout::Whole, vec![b"nope".to_vec()]).expect_err("not json");
        assert!(err.starts_with("state blob:"), "{err}");
    }
}
