//! Register histories: the operations the linearizability search checks, and its limits.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// What a register operation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Set the register to a value (an insert or update of the row).
    Write(Value),
    /// Read the register: the value seen, or `None` if the key was absent.
    Read(Option<Value>),
    /// Clear the register (delete the row).
    Delete,
}

/// Whether the client learned the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOutcome {
    /// Completed at `complete`; for a read, the value is what it returned.
    Ok,
    /// Timed out or failed ambiguously: a write or delete may have taken effect at any time after
    /// `invoke`, or never (`complete` is ignored). Unknown reads say nothing and are ignored.
    Unknown,
}

/// One operation on a register (one row key), with its real-time interval.
///
/// Times are nanoseconds on any clock shared by all clients (the [`AckLedger`] uses nanoseconds
/// since its creation). Operation A precedes B iff `A.complete < B.invoke`; equal times count as
/// concurrent. The register starts absent.
///
/// [`AckLedger`]: super::AckLedger
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisterOp {
    /// The register (row key) operated on.
    pub key: i64,
    /// The operation.
    pub kind: RegisterKind,
    /// When the client sent it.
    pub invoke: u64,
    /// When the client got the answer (ignored for unknown outcomes).
    pub complete: u64,
    /// Whether the answer is known.
    pub outcome: RegisterOutcome,
    /// Optional label for messages (e.g. the ledger record id).
    pub id: Option<usize>,
}

impl RegisterOp {
    fn new(key: i64, kind: RegisterKind, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp {
            key,
            kind,
            invoke,
            complete,
            outcome: RegisterOutcome::Ok,
            id: None,
        }
    }

    /// An acknowledged write of `value` to `key` during `[invoke, complete]`.
    pub fn write(key: i64, value: impl Into<Value>, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp::new(key, RegisterKind::Write(value.into()), invoke, complete)
    }

    /// An acknowledged read of `key` that returned `value` (`None`: absent).
    pub fn read(key: i64, value: Option<Value>, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp::new(key, RegisterKind::Read(value), invoke, complete)
    }

    /// An acknowledged delete of `key`.
    pub fn delete(key: i64, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp::new(key, RegisterKind::Delete, invoke, complete)
    }

    /// The same operation with an unknown outcome.
    pub fn unknown(mut self) -> RegisterOp {
        self.outcome = RegisterOutcome::Unknown;
        self
    }

    /// The same operation labelled `id` in messages.
    pub fn with_id(mut self, id: usize) -> RegisterOp {
        self.id = Some(id);
        self
    }
}

/// Bounds on the search, so a pathological history yields an inconclusive result instead of
/// hanging or exhausting memory. The step and time budgets cover one whole check (all keys);
/// the state budget applies per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearizabilityLimits {
    /// Search steps (list positions visited) in total.
    pub max_steps: u64,
    /// Distinct (linearized set, state) pairs remembered for one key.
    pub max_states: usize,
    /// Wall-clock time for the whole check.
    pub timeout: Duration,
}

impl Default for LinearizabilityLimits {
    /// 50 million steps, 2 million states per key, 60 s.
    fn default() -> Self {
        LinearizabilityLimits {
            max_steps: 50_000_000,
            max_states: 2_000_000,
            timeout: Duration::from_secs(60),
        }
    }
}
