//! The replica rule book of walshard (docs/replication.md): what one replica of a shard may do
//! given what it has promised and what its log holds, and what the primary's commit point is.
//!
//! Pure, in the spirit of raft-rs's `RawNode`/`Ready` and openraft's engine/command split: no IO,
//! no clock, no locks, no async. A rule takes the replica's state and an input and answers either
//! a [`Refusal`] or a [`Ready`]: the next state and the [`Effect`]s the IO layer must execute, in
//! order (persist the promise, truncate the log, append, raise the commit point, switch role).
//!
//! Two executors run these rules: the agent (`walshard-agent`, over its WAL and MySQL) and
//! [`mem::MemReplica`] (an in-memory log, used by the control plane's simulator and by this
//! crate's property tests).
//!
//! - [`rules`]: a replica's promises (fence, promote, accept a primary, observe an epoch,
//!   confirm, restart, step-down) and the append continuity check with its truncation plan.
//! - [`primary`]: the primary's side (quorum commit point, write admission, log back-up after a
//!   mismatch, step-down completion, snapshot-or-WAL and compaction bounds).
//! - [`mem`]: the in-memory executor.

#![warn(missing_docs)]

pub mod mem;
pub mod primary;
pub mod rules;

use serde::{Deserialize, Serialize};

pub use primary::{
    NotWritable, WriteCheck, admit_write, back_up, handover_target, quorum_commit, step_down_done,
};
pub use rules::{
    Append, AppendPlan, Effect, EntryId, LogFacts, Ready, Refusal, Replica, append_lookups,
    plan_append,
};

/// A term number; never decreases in what a replica promises.
pub type Epoch = u64;
/// A log position; contiguous from 1.
pub type Lsn = u64;

/// What a replica has promised, persisted before it acts on it (fencing depends on it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// Highest epoch promised; never decreases.
    pub epoch: Epoch,
    /// The primary accepted for `epoch`, once one is.
    pub primary: Option<String>,
}

/// A replica's role in its shard (the wire's `"role"`).
pub use walshard_contract::Role;
