//! Reducers: how one field of a state merges the writes of a superstep.
//!
//! As in LangGraph, each state key has a reducer (`Annotated[list, operator.add]`,
//! `add_messages`, …); a key without one keeps the last value and refuses two writes in
//! one superstep (LangGraph's `INVALID_CONCURRENT_GRAPH_UPDATE`). The [`state!`](crate::state)
//! macro pairs each field with one of these:
//!
//! | reducer | field type | a superstep's writes… |
//! |---|---|---|
//! | [`Overwrite`] | any `T` | replace the value; two writes is an error naming the field |
//! | [`Append`] | `Vec<T>` | are appended, in node order (`operator.add`) |
//! | [`MergeMap`] | `HashMap`/`BTreeMap` | insert their entries, later writes winning per key |
//! | [`AddMessages`] | `Vec<Message>` | append messages, replace those with a known id, remove on [`Message::remove`](super::Message::remove) (`add_messages`) |
//! | [`custom`]`(f)` | any `T` | fold into the value with `f(&mut value, write)` |

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

use super::GraphError;

/// Folds one superstep's writes to a field into its value.
pub trait Reducer<T> {
    /// Merges `writes` (in node order, never empty) into `value`.
    ///
    /// # Errors
    /// [`GraphError::ConcurrentUpdate`] naming `field` when the reducer takes one write
    /// per step and got several.
    fn reduce(&self, field: &'static str, value: &mut T, writes: Vec<T>) -> Result<(), GraphError>;
}

/// Keeps the last value; several writes in one superstep is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overwrite;

impl<T> Reducer<T> for Overwrite {
    fn reduce(&self, field: &'static str, value: &mut T, writes: Vec<T>) -> Result<(), GraphError> {
        let count = writes.len();
        match writes.into_iter().next() {
            Some(write) if count == 1 => {
                *value = write;
                Ok(())
            }
            _ => Err(GraphError::ConcurrentUpdate {
                field,
                writes: count,
            }),
        }
    }
}

/// Appends every write, in node order (LangGraph's `operator.add` on lists).
#[derive(Debug, Clone, Copy, Default)]
pub struct Append;

impl<T> Reducer<Vec<T>> for Append {
    fn reduce(
        &self,
        _: &'static str,
        value: &mut Vec<T>,
        writes: Vec<Vec<T>>,
    ) -> Result<(), GraphError> {
        for write in writes {
            value.extend(write);
        }
        Ok(())
    }
}

/// Inserts every entry of every write; a later write wins for a key.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeMap;

impl<K: Eq + Hash, V> Reducer<HashMap<K, V>> for MergeMap {
    fn reduce(
        &self,
        _: &'static str,
        value: &mut HashMap<K, V>,
        writes: Vec<HashMap<K, V>>,
    ) -> Result<(), GraphError> {
        for write in writes {
            value.extend(write);
        }
        Ok(())
    }
}

impl<K: Ord, V> Reducer<BTreeMap<K, V>> for MergeMap {
    fn reduce(
        &self,
        _: &'static str,
        value: &mut BTreeMap<K, V>,
        writes: Vec<BTreeMap<K, V>>,
    ) -> Result<(), GraphError> {
        for write in writes {
            value.extend(write);
        }
        Ok(())
    }
}

/// LangGraph's `add_messages` as a reducer: see [`add_messages`](super::add_messages).
#[derive(Debug, Clone, Copy, Default)]
pub struct AddMessages;

impl Reducer<Vec<super::Message>> for AddMessages {
    fn reduce(
        &self,
        _: &'static str,
        value: &mut Vec<super::Message>,
        writes: Vec<Vec<super::Message>>,
    ) -> Result<(), GraphError> {
        for write in writes {
            super::message::add_messages(value, write);
        }
        Ok(())
    }
}

/// A reducer from a function folding one write into the value.
#[derive(Clone, Copy)]
pub struct Custom<F>(F);

impl<F> std::fmt::Debug for Custom<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custom").finish_non_exhaustive()
    }
}

/// Wraps `f(&mut value, write)` as a [`Reducer`], e.g. a running sum:
/// `custom(|total: &mut u64, n: u64| *total += n)`.
pub fn custom<T, F: Fn(&mut T, T)>(f: F) -> Custom<F> {
    Custom(f)
}

impl<T, F: Fn(&mut T, T)> Reducer<T> for Custom<F> {
    fn reduce(&self, _: &'static str, value: &mut T, writes: Vec<T>) -> Result<(), GraphError> {
        for write in writes {
            (self.0)(value, write);
        }
        Ok(())
    }
}

/// Declares a graph state: a struct whose fields each have a [`Reducer`], and its update
/// type, a struct of the same fields as `Option`s (`None`: no write) with a builder
/// method per field. Implements [`State`](crate::graph::State) so that the writes of one
/// superstep are grouped per field and each field's reducer merges them.
///
/// Both structs derive `Clone`, `Debug`, `Default`, `PartialEq`, `Serialize` and
/// `Deserialize` (so the state can be checkpointed); field types need those too.
///
/// ```
/// use std::collections::HashMap;
/// use agent_core::graph::{Message, reducer::{Append, AddMessages, MergeMap, Overwrite, custom}};
///
/// agent_core::state! {
///     /// The state of my agent.
///     pub struct Agent / AgentUpdate {
///         /// The conversation.
///         pub messages: Vec<Message> => AddMessages,
///         /// The current step's name.
///         pub step: String => Overwrite,
///         /// Notes from every node.
///         pub notes: Vec<String> => Append,
///         /// Scores by name.
///         pub scores: HashMap<String, u32> => MergeMap,
///         /// A running total.
///         pub total: u64 => custom(|t: &mut u64, n: u64| *t += n),
///     }
/// }
///
/// let update = AgentUpdate::default().step("plan").notes(vec!["started".to_owned()]).total(2u64);
/// assert_eq!(update.step.as_deref(), Some("plan"));
/// ```
#[macro_export]
macro_rules! state {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident / $update:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty => $reducer:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, $crate::__private::serde::Serialize, $crate::__private::serde::Deserialize)]
        #[serde(crate = "::agent_core::__private::serde", default)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        #[doc = concat!("A partial write to [`", stringify!($name), "`]: `Some` fields are written.")]
        #[derive(Clone, Debug, Default, PartialEq, $crate::__private::serde::Serialize, $crate::__private::serde::Deserialize)]
        #[serde(crate = "::agent_core::__private::serde", default)]
        $vis struct $update {
            $( $(#[$fmeta])* $fvis $field: ::core::option::Option<$ty>, )*
        }

        impl $update {
            $(
                #[doc = concat!("Writes `", stringify!($field), "`.")]
                #[must_use]
                pub fn $field(mut self, value: impl ::core::convert::Into<$ty>) -> Self {
                    self.$field = ::core::option::Option::Some(value.into());
                    self
                }
            )*
        }

        impl $crate::graph::State for $name {
            type Update = $update;

            fn apply(&mut self, update: $update) -> ::core::result::Result<(), $crate::graph::GraphError> {
                <Self as $crate::graph::State>::apply_step(self, ::std::vec![update])
            }

            fn apply_step(&mut self, updates: ::std::vec::Vec<$update>) -> ::core::result::Result<(), $crate::graph::GraphError> {
                $( let mut $field: ::std::vec::Vec<$ty> = ::std::vec::Vec::new(); )*
                for update in updates {
                    $( if let ::core::option::Option::Some(value) = update.$field { $field.push(value); } )*
                }
                $(
                    if !$field.is_empty() {
                        $crate::graph::reducer::Reducer::reduce(&$reducer, stringify!($field), &mut self.$field, $field)?;
                    }
                )*
                ::core::result::Result::Ok(())
            }
        }
    };
}
