//! Linearizability of single-key register histories: the Wing–Gong–Lowe search with
//! memoization on (linearized set, state), as in Porcupine, run per key.
//!
//! Linearizability is local (Herlihy & Wing): a history over many keys is linearizable iff each
//! key's sub-history is, so each key is searched on its own.
//!
//! The search keeps the history's call and return events in a doubly linked list sorted by time.
//! It walks the list from the front: at a call it tries to linearize that operation next (apply
//! it to the model state; if legal and the pair (linearized set, new state) was not seen before,
//! push it, unlink its call and return, and restart from the front). Reaching a return means the
//! operation it belongs to should have been linearized already, so the search backtracks by
//! popping the last choice. The history is linearizable iff the list empties. The cache of
//! visited (set, state) pairs prunes re-exploration of equivalent prefixes (Lowe 2017).

mod describe;
mod history;
mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub(crate) use describe::{describe, show_value};
pub use history::{LinearizabilityLimits, RegisterKind, RegisterOp, RegisterOutcome};
pub(crate) use search::{Budget, KeyVerdict, check_key};

use super::{Check, Violation};

/// Checks that `history` is linearizable as a set of registers (one per key), each starting
/// absent, with the default [`LinearizabilityLimits`].
///
/// The violation names each non-linearizable key with the longest linearizable prefix found and
/// the operations none of which could come next. Exceeding a limit gives a violation with
/// [`inconclusive`](Violation::inconclusive) set (unless another key definitely failed).
pub fn check_linearizable_register(history: &[RegisterOp]) -> Result<(), Violation> {
    check_linearizable_register_with(history, &LinearizabilityLimits::default())
}

/// [`check_linearizable_register`] with explicit limits.
pub fn check_linearizable_register_with(
    history: &[RegisterOp],
    limits: &LinearizabilityLimits,
) -> Result<(), Violation> {
    let mut by_key: BTreeMap<i64, Vec<&RegisterOp>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op);
    }
    let mut budget = Budget::new(limits);
    let mut problems = Vec::new();
    let mut inconclusive = Vec::new();
    for (key, ops) in by_key {
        match check_key(key, &ops, None, &mut budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Malformed(msg) => problems.push(msg),
            KeyVerdict::NotLinearizable(detail) => {
                problems.push(format!("key {key}: not linearizable; {detail}"));
            }
            KeyVerdict::Inconclusive(msg) => inconclusive.push(msg),
        }
    }
    Violation::from_findings(Check::Linearizability, problems, inconclusive)
}
