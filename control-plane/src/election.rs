//! Failure detection and elections, sans IO: [`detector`] (who is suspected), [`vote`] (who
//! wins a fence round), [`controller`] (the per-shard state machine, [`ShardController::poll`]).
//!
//! Nothing here sleeps, sends or reads a clock: every input carries the time it was observed
//! (`now: Instant`), and the outputs are [`Action`]s for a runtime to execute and feed back. The
//! steps follow docs/replication.md, "Election (control plane)":
//!
//! 1. **Detect** ([`FailureDetector`], [`ShardController::poll`]): the shard's primary is suspected
//!    (3 missed heartbeats, 600 ms without success, or a connection refusal), or no replica reports
//!    itself primary at the highest epoch any replica reports (e.g. every replica fenced at epoch 0
//!    at first start, or the old primary restarted and came back fenced).
//! 2. **Pick** E' = 1 + the highest epoch seen (in any status report, fence or promote answer, or
//!    an earlier election of this controller), so epochs strictly increase.
//! 3. **Fence** every replica at E' ([`Action::Fence`]); a 409 makes the round retry at 1 + the
//!    epoch it reported ([`Decision::Retry`]).
//! 4. **Choose** ([`decide`]), once a fence quorum (majority of R) accepted E': the highest
//!    `(last_epoch, last_lsn)`, ties to the preferred replica, then the lowest name; and
//!    **promote** it with the shard's replica list ([`Action::Promote`]).
//! 5. The promoted agent commits its no-op; the controller is `Healthy` when promote answers 200 or
//!    the server reports itself primary of E'.
//!
//! A planned switchover ([`ShardController::request_switchover`]) first asks the primary to step
//! down to the target ([`Action::StepDown`]), then runs the election with the target preferred.
//!
//! A replica-set change ([`ShardController::reconfigure`]) switches to the new set at once, keeps
//! the old one as `previous` (a joint configuration) and runs an election at a new epoch; the
//! promotion carries the new list. Until the new primary's no-op is known committed, elections
//! fence both sets and follow the joint rule of [`decide_joint`]: the winner must have a log at
//! least as long as those of a majority of each set. One change at a time.

pub mod action;
pub mod controller;
pub mod detector;
pub mod vote;

pub use action::{Action, ControllerEvent, PromoteOutcome, ReconfigureError, SwitchoverError};
pub use controller::{ControllerConfig, ControllerState, ShardController};
pub use detector::{DetectorConfig, FailureDetector, Heartbeat};
pub use vote::{Decision, FenceAnswer, VoterSet, decide, decide_joint};

#[cfg(test)]
mod tests;
