//! The durable checkpointers against real databases: one suite of behaviour (`suite`)
//! run for `SqliteSaver` on files in a temporary folder (`sqlite`) and for
//! `PostgresSaver` on a real PostgreSQL (`postgres`), and each saver's own tests.

mod postgres;
mod sqlite;
mod suite;

use agent_core::graph::{
    Message,
    reducer::{AddMessages, Append, Overwrite},
};

agent_core::state! {
    /// A chat with a counter and a log.
    pub struct Chat / ChatUpdate {
        /// The history.
        pub messages: Vec<Message> => AddMessages,
        /// Bumped by `tick`.
        pub count: u32 => Overwrite,
        /// One line per node run.
        pub log: Vec<String> => Append,
    }
}
