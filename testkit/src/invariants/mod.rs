//! Reusable invariant checkers for chaos suites.
//!
//! Everything here is a pure function over recorded data: no IO, no clocks except the
//! timestamps an [`AckLedger`] takes when operations start and finish.
//!
//! - [`AckLedger`] records client operations and their outcomes (ok, failed, unknown).
//! - [`check_acked_present`]: the final table is explained by the acknowledged operations plus
//!   some subset of the unknown ones, in a linearizable order (docs/replication.md invariant 8).
//! - [`check_convergence`] and [`rows_checksum`]: replicas hold the same rows (invariant 9).
//! - [`check_single_primary`]: at most one primary per shard and epoch (invariant 1).
//! - [`check_linearizable_register`]: strong single-key reads are linearizable (invariant 10),
//!   by a Wing–Gong–Lowe search with memoization, per key.
//!
//! A failed check returns a [`Violation`] whose message names the keys, replicas or servers
//! involved. A search that exceeds its limits returns a violation marked
//! [`inconclusive`](Violation::inconclusive) rather than hanging.

mod checks;
mod json;
mod ledger;
mod linearizability;

pub use checks::{
    check_acked_present, check_acked_present_with, check_convergence, check_single_primary,
};
pub use json::{canonical_json, row_key, rows_checksum};
pub use ledger::{AckLedger, LedgerSummary, Op, OpHandle, OpResult, Record, Status};
pub use linearizability::{
    LinearizabilityLimits, RegisterKind, RegisterOp, RegisterOutcome, check_linearizable_register,
    check_linearizable_register_with,
};

use std::fmt;

/// Problems listed in full in a [`Violation`]'s message; the rest are counted.
const MAX_LISTED: usize = 20;

/// Which checker reported a [`Violation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// [`check_acked_present`].
    AckedPresent,
    /// [`check_convergence`].
    Convergence,
    /// [`check_single_primary`].
    SinglePrimary,
    /// [`check_linearizable_register`].
    Linearizability,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::AckedPresent => "acknowledged writes present",
            Check::Convergence => "replica convergence",
            Check::SinglePrimary => "single primary per shard and epoch",
            Check::Linearizability => "linearizability",
        })
    }
}

/// A failed invariant check: which check, and one message per problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The check that failed.
    pub check: Check,
    /// True if the check could not decide within its limits (no definite violation was found,
    /// but the history was not verified either).
    pub inconclusive: bool,
    /// One message per problem (key, replica pair, shard/epoch), in a stable order.
    pub problems: Vec<String>,
}

impl Violation {
    pub(crate) fn new(check: Check, problems: Vec<String>) -> Violation {
        Violation {
            check,
            inconclusive: false,
            problems,
        }
    }

    /// `Ok(())` if there are no problems, else a violation.
    pub(crate) fn from_problems(check: Check, problems: Vec<String>) -> Result<(), Violation> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Violation::new(check, problems))
        }
    }

    /// `Ok(())` if there are neither definite problems nor inconclusive findings; else a
    /// violation listing both, marked inconclusive if there are no definite problems.
    pub(crate) fn from_findings(
        check: Check,
        mut problems: Vec<String>,
        inconclusive: Vec<String>,
    ) -> Result<(), Violation> {
        if problems.is_empty() && inconclusive.is_empty() {
            return Ok(());
        }
        let only_inconclusive = problems.is_empty();
        problems.extend(inconclusive);
        Err(Violation {
            check,
            inconclusive: only_inconclusive,
            problems,
        })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.inconclusive {
            "inconclusive"
        } else {
            "violated"
        };
        write!(
            f,
            "{} {verdict} ({} problem{})",
            self.check,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in self.problems.iter().take(MAX_LISTED) {
            write!(f, "\n  - {p}")?;
        }
        if self.problems.len() > MAX_LISTED {
            write!(f, "\n  ... and {} more", self.problems.len() - MAX_LISTED)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}
