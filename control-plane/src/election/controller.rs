//! The election state machine of one shard: its state, what it knows of its replicas, the
//! inputs it is fed and the view it publishes ([`ShardController::info`]). Its steps are in
//! `step`.

mod step;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use walshard_contract::{Phase, Quorum, ReplicaInfo, Role, ShardInfo, ShardStatus, majority};

use super::action::{ControllerEvent, PromoteOutcome, ReconfigureError, SwitchoverError};
use super::detector::{DetectorConfig, FailureDetector, Heartbeat};
use super::vote::FenceAnswer;
use crate::cluster::ClusterSpecError;

/// Settings of a [`ShardController`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// When a server counts as suspected.
    pub detector: DetectorConfig,
    /// A fence round, promotion or step-down without an outcome for this long is abandoned and a
    /// new election (at a higher epoch) starts (default 5 s).
    pub election_timeout: Duration,
    /// After a fence round that could not reach a quorum, wait this long before the next one
    /// (default 1 s). Elections that were not started for lack of reachable replicas retry as soon
    /// as enough replicas answer heartbeats.
    pub retry_backoff: Duration,
    /// Once a fence quorum accepted, wait this long at most (from the start of the round) for the
    /// other replicas that answered heartbeats when the round started, so the choice sees every
    /// log it can (default 250 ms). Suspected replicas are never waited for.
    pub fence_grace: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            detector: DetectorConfig::default(),
            election_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(1),
            fence_grace: Duration::from_millis(250),
        }
    }
}

/// The controller's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerState {
    /// Not every replica has been heard from (or failed) yet.
    Starting,
    /// `primary` reports itself primary of `epoch` and is not suspected.
    Healthy {
        /// The primary's server.
        primary: String,
        /// Its epoch.
        epoch: u64,
    },
    /// Planned switchover: `from` was asked to step down to `to`.
    SteppingDown {
        /// The primary asked to step down.
        from: String,
        /// The replica to elect next.
        to: String,
        /// The primary's epoch.
        epoch: u64,
        /// When the switchover started (the step-down times out after `election_timeout`).
        since: Instant,
        /// The step-down call was emitted.
        sent: bool,
        /// The step-down call succeeded: the primary no longer takes writes.
        finished: bool,
    },
    /// Fence round at `epoch`; `started` is when the election (not this round) started.
    Electing {
        /// The epoch of this round.
        epoch: u64,
        /// The fence answers received so far in this round.
        answers: Vec<FenceAnswer>,
        /// The replica to prefer (a switchover's target): awaited, and it wins ties of
        /// `(last_epoch, last_lsn)`.
        preferred: Option<String>,
        /// When the election started (for its duration).
        started: Instant,
        /// When this round started (for `election_timeout` and `fence_grace`).
        round_started: Instant,
        /// Replicas that answered heartbeats when the round started (see `fence_grace`).
        awaited: Vec<String>,
    },
    /// `server` was asked to become primary of `epoch`.
    Promoting {
        /// The server being promoted.
        server: String,
        /// The epoch it is to lead.
        epoch: u64,
        /// The preferred winner carried from the election, for a retry.
        preferred: Option<String>,
        /// When the election started (for its duration).
        started: Instant,
        /// When the promote call was emitted (the promotion times out after `election_timeout`).
        since: Instant,
        /// The promote call came back without success (timeout, 503, other error).
        answered: bool,
        /// Set when the server refused the promotion (409); a new election follows.
        failed: Option<String>,
    },
    /// No election can complete now; retried at `retry_at` or when enough replicas are back.
    NoQuorum {
        /// Why no election can complete.
        reason: String,
        /// Since when the shard has no quorum.
        since: Instant,
        /// When the next election is tried at the latest.
        retry_at: Instant,
        /// Set when a switchover was under way: the old primary stepped down (stopped taking
        /// writes), so the election is due even if it still reports itself primary.
        preferred: Option<String>,
    },
}

impl ControllerState {
    /// The published [`Phase`] of this state.
    pub fn phase(&self) -> Phase {
        match self {
            ControllerState::Starting => Phase::Starting,
            ControllerState::Healthy { .. } => Phase::Healthy,
            ControllerState::SteppingDown { .. } => Phase::SteppingDown,
            ControllerState::Electing { .. } => Phase::Electing,
            ControllerState::Promoting { .. } => Phase::Promoting,
            ControllerState::NoQuorum { .. } => Phase::NoQuorum,
        }
    }
}

enum Assessment {
    Primary { server: String, epoch: u64 },
    Wait(String),
    Elect(String),
}

/// A replica-set change in progress: the joint configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Joint {
    /// The replica set before the change.
    previous: Vec<String>,
    /// 1 + the highest epoch seen at the change: every later election picks at least this.
    from_epoch: u64,
    /// The election the change needs, until the next poll starts it: `(preferred, why)`.
    due: Option<(Option<String>, String)>,
    /// The latest promotion under the joint rule: its epoch and the LSN of its no-op.
    noop: Option<(u64, u64)>,
}

/// The election state machine of one shard.
///
/// Feed it heartbeats ([`Self::observe_status`], [`Self::observe_failure`]) and the outcomes of
/// its actions, then call [`Self::poll`] for the next actions. `poll` is idempotent: it emits an
/// action once, when the state it belongs to is entered.
#[derive(Debug, Clone)]
pub struct ShardController {
    shard: String,
    replicas: Vec<String>,
    joint: Option<Joint>,
    write_quorum: Quorum,
    fence_quorum: usize,
    cfg: ControllerConfig,
    detector: FailureDetector,
    reports: BTreeMap<String, ShardStatus>,
    max_epoch_seen: u64,
    state: ControllerState,
    events: Vec<ControllerEvent>,
}

impl ShardController {
    /// A controller for `shard` replicated on `replicas` (duplicates are dropped). The fence quorum
    /// is a majority of the replicas.
    pub fn new(
        shard: impl Into<String>,
        replicas: Vec<String>,
        write_quorum: Quorum,
        cfg: ControllerConfig,
    ) -> Self {
        let replicas = dedup(replicas);
        Self {
            shard: shard.into(),
            fence_quorum: majority(replicas.len()),
            replicas,
            joint: None,
            write_quorum,
            cfg,
            detector: FailureDetector::new(cfg.detector),
            reports: BTreeMap::new(),
            max_epoch_seen: 0,
            state: ControllerState::Starting,
            events: Vec::new(),
        }
    }

    /// The shard id this controller elects for.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// The replica set (the new one during a change).
    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// The replica set before the change under way, if any.
    pub fn previous(&self) -> Option<&[String]> {
        self.joint.as_ref().map(|j| j.previous.as_slice())
    }

    /// Whether a replica-set change is under way.
    pub fn reconfiguring(&self) -> bool {
        self.joint.is_some()
    }

    /// The servers this controller polls and fences: the replicas, then the previous replicas
    /// not among them while a change is under way.
    pub fn members(&self) -> Vec<String> {
        let mut members = self.replicas.clone();
        if let Some(j) = &self.joint {
            members.extend(
                j.previous
                    .iter()
                    .filter(|p| !self.replicas.contains(p))
                    .cloned(),
            );
        }
        members
    }

    /// How many replicas must accept a fence for an election to win: a majority of the replica set.
    pub fn fence_quorum(&self) -> usize {
        self.fence_quorum
    }

    /// The current election state.
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// The failure detector fed with this shard's heartbeats.
    pub fn detector(&self) -> &FailureDetector {
        &self.detector
    }

    /// The highest epoch seen anywhere (reports, answers, own elections).
    pub fn max_epoch_seen(&self) -> u64 {
        self.max_epoch_seen
    }

    /// The healthy primary and its epoch.
    pub fn primary(&self) -> Option<(&str, u64)> {
        match &self.state {
            ControllerState::Healthy { primary, epoch } => Some((primary, *epoch)),
            _ => None,
        }
    }

    /// The latest successful status report of `server` for this shard.
    pub fn report(&self, server: &str) -> Option<&ShardStatus> {
        self.reports.get(server)
    }

    /// Events since the last call.
    pub fn drain_events(&mut self) -> Vec<ControllerEvent> {
        std::mem::take(&mut self.events)
    }

    fn is_replica(&self, server: &str) -> bool {
        self.replicas.iter().any(|r| r == server)
    }

    fn is_member(&self, server: &str) -> bool {
        self.is_replica(server)
            || self
                .joint
                .as_ref()
                .is_some_and(|j| j.previous.iter().any(|p| p == server))
    }

    /// A successful heartbeat: `server`'s status for this shard. Ignored unless `server` is a
    /// member (see [`Self::members`]).
    pub fn observe_status(&mut self, server: &str, status: &ShardStatus, now: Instant) {
        if !self.is_member(server) {
            return;
        }
        self.detector.record(server, Heartbeat::Ok, now);
        self.max_epoch_seen = self.max_epoch_seen.max(status.epoch);
        self.reports.insert(server.to_owned(), status.clone());
    }

    /// A failed heartbeat of `server` (`Failed` or `Refused`). The last report is kept.
    pub fn observe_failure(&mut self, server: &str, beat: Heartbeat, now: Instant) {
        if !self.is_member(server) {
            return;
        }
        let beat = if beat == Heartbeat::Ok {
            Heartbeat::Failed
        } else {
            beat
        };
        self.detector.record(server, beat, now);
    }

    /// The answer to a [`Action::Fence`](super::Action::Fence) sent at `epoch`.
    pub fn on_fence_answer(&mut self, epoch: u64, answer: FenceAnswer) {
        match &answer {
            FenceAnswer::Accepted { epoch: e, .. } | FenceAnswer::Rejected { epoch: e, .. } => {
                self.max_epoch_seen = self.max_epoch_seen.max(*e);
            }
            FenceAnswer::Unreachable { .. } => {}
        }
        debug!(shard = %self.shard, epoch, ?answer, "fence answer");
        // What the answer tells about the replica is newer than its last heartbeat.
        match &answer {
            FenceAnswer::Accepted {
                server,
                epoch: e,
                last_epoch,
                last_lsn,
            } => {
                if let Some(r) = self.reports.get_mut(server) {
                    r.role = Role::Fenced;
                    r.epoch = *e;
                    r.primary = None;
                    r.last_epoch = *last_epoch;
                    r.last_lsn = *last_lsn;
                }
            }
            FenceAnswer::Rejected { server, epoch: e } => {
                if let Some(r) = self.reports.get_mut(server) {
                    r.epoch = r.epoch.max(*e);
                }
            }
            FenceAnswer::Unreachable { .. } => {}
        }
        if let ControllerState::Electing {
            epoch: current,
            answers,
            ..
        } = &mut self.state
            && *current == epoch
        {
            answers.retain(|a| a.server() != answer.server());
            answers.push(answer);
        }
    }

    /// The outcome of a [`Action::Promote`](super::Action::Promote) of `server` at `epoch`.
    pub fn on_promote_result(
        &mut self,
        server: &str,
        epoch: u64,
        outcome: PromoteOutcome,
        now: Instant,
    ) {
        if let PromoteOutcome::Rejected { epoch: e } = outcome {
            self.max_epoch_seen = self.max_epoch_seen.max(e);
        }
        let ControllerState::Promoting {
            server: s,
            epoch: e,
            started,
            answered,
            failed,
            ..
        } = &mut self.state
        else {
            return;
        };
        if s != server || *e != epoch {
            return;
        }
        match outcome {
            PromoteOutcome::Done => {
                let started = *started;
                let report = self
                    .reports
                    .entry(server.to_owned())
                    .or_insert_with(ShardStatus::fresh);
                report.role = Role::Primary;
                report.epoch = epoch;
                report.primary = Some(server.to_owned());
                self.complete(
                    server.to_owned(),
                    epoch,
                    started,
                    now,
                    "promote answered 200",
                );
                self.settle_joint(server, epoch, true);
            }
            PromoteOutcome::Pending(msg) => {
                *answered = true;
                warn!(shard = %self.shard, epoch, server, %msg,
                    "promoted primary has not committed its no-op yet; waiting for its status");
            }
            PromoteOutcome::Rejected { epoch: theirs } => {
                *failed = Some(format!(
                    "{server} refused promotion at epoch {epoch} (it reports epoch {theirs})"
                ));
            }
            PromoteOutcome::Failed(msg) => {
                *answered = true;
                warn!(shard = %self.shard, epoch, server, %msg,
                    "promote call failed; waiting for the server's status");
            }
        }
    }

    /// The outcome of a [`Action::StepDown`](super::Action::StepDown) of `server`: its
    /// `last_lsn`, or why it failed. Either way the election follows, with the switchover target
    /// preferred.
    pub fn on_step_down_result(&mut self, server: &str, result: Result<u64, String>) {
        if let ControllerState::SteppingDown {
            from, to, finished, ..
        } = &mut self.state
            && from == server
        {
            match result {
                Ok(last_lsn) => {
                    info!(shard = %self.shard, from = %server, to = %to, last_lsn,
                        "primary stepped down");
                }
                Err(e) => {
                    warn!(shard = %self.shard, from = %server, to = %to, error = %e,
                        "step-down failed; electing anyway with the target preferred");
                }
            }
            *finished = true;
        }
    }

    /// Changes the shard's replica set to `replicas` (duplicates are dropped). Unchanged (as a
    /// set): nothing happens. Otherwise the new set applies at once (fence quorum: a majority of
    /// it), the old one is kept as the previous set, and the next [`Self::poll`] starts an
    /// election at a new epoch, whatever is under way, preferring the current primary if it
    /// stays. Its promotion carries the new list: that is how the primary learns its peers.
    ///
    /// Until that election's primary is known to have committed its no-op (promote answered
    /// 200, or its status shows its commit point at the no-op), every election also fences the
    /// previous replicas and follows the joint rule of [`decide_joint`](super::decide_joint);
    /// then the previous set and what was known of the servers that left are dropped. One change at a time: a change
    /// while another is under way is refused with [`ReconfigureError::Busy`] (retry later).
    pub fn reconfigure(&mut self, replicas: Vec<String>) -> Result<(), ReconfigureError> {
        let replicas = dedup(replicas);
        if replicas.is_empty() {
            return Err(ClusterSpecError::NoReplicas(self.shard.clone()).into());
        }
        if replicas.len() == self.replicas.len() && replicas.iter().all(|r| self.is_replica(r)) {
            return Ok(());
        }
        if self.joint.is_some() {
            return Err(ReconfigureError::Busy {
                shard: self.shard.clone(),
            });
        }
        let preferred = match &self.state {
            ControllerState::Healthy { primary, .. } => Some(primary.clone()),
            ControllerState::SteppingDown { to, .. } => Some(to.clone()),
            ControllerState::Electing { preferred, .. }
            | ControllerState::Promoting { preferred, .. }
            | ControllerState::NoQuorum { preferred, .. } => preferred.clone(),
            ControllerState::Starting => None,
        }
        .filter(|p| replicas.contains(p));
        let why = format!(
            "replica set changed from [{}] to [{}]",
            self.replicas.join(", "),
            replicas.join(", ")
        );
        info!(shard = %self.shard, %why, preferred = preferred.as_deref().unwrap_or("-"),
            "replica set change");
        let previous = std::mem::replace(&mut self.replicas, replicas);
        self.fence_quorum = majority(self.replicas.len());
        self.joint = Some(Joint {
            previous,
            from_epoch: self.max_epoch_seen.saturating_add(1),
            due: Some((preferred, why)),
            noop: None,
        });
        Ok(())
    }

    /// Starts a planned switchover of a healthy shard to `to`. The next [`Self::poll`] emits the
    /// step-down; the election after it prefers `to`.
    pub fn request_switchover(&mut self, to: &str, now: Instant) -> Result<(), SwitchoverError> {
        if !self.is_replica(to) {
            return Err(SwitchoverError::NotAReplica {
                shard: self.shard.clone(),
                to: to.to_owned(),
            });
        }
        let ControllerState::Healthy { primary, epoch } = &self.state else {
            return Err(SwitchoverError::Busy {
                shard: self.shard.clone(),
                state: self.state.phase(),
            });
        };
        if primary == to {
            info!(shard = %self.shard, to, "switchover target is already the primary");
            return Ok(());
        }
        if !self.detector.reachable(to) {
            return Err(SwitchoverError::Unreachable { to: to.to_owned() });
        }
        info!(shard = %self.shard, from = %primary, to, epoch = *epoch, "switchover requested");
        self.state = ControllerState::SteppingDown {
            from: primary.clone(),
            to: to.to_owned(),
            epoch: *epoch,
            since: now,
            sent: false,
            finished: false,
        };
        Ok(())
    }

    /// Whether the controller is waiting for the answer to an action it emitted (a fence round,
    /// a promotion, a step-down).
    pub fn awaiting_answers(&self) -> bool {
        match &self.state {
            ControllerState::Electing { .. } => true,
            ControllerState::Promoting { failed, .. } => failed.is_none(),
            ControllerState::SteppingDown { sent, finished, .. } => *sent && !*finished,
            ControllerState::Starting
            | ControllerState::Healthy { .. }
            | ControllerState::NoQuorum { .. } => false,
        }
    }

    /// Per-shard view for status output.
    pub fn info(&self, now: Instant) -> ShardInfo {
        let (primary, epoch, reason) = match &self.state {
            ControllerState::Healthy { primary, epoch } => (Some(primary.clone()), *epoch, None),
            ControllerState::SteppingDown { from, epoch, .. } => (Some(from.clone()), *epoch, None),
            ControllerState::NoQuorum { reason, .. } => {
                (None, self.max_epoch_seen, Some(reason.clone()))
            }
            ControllerState::Promoting { failed, .. } => {
                (None, self.max_epoch_seen, failed.clone())
            }
            ControllerState::Starting | ControllerState::Electing { .. } => {
                (None, self.max_epoch_seen, None)
            }
        };
        let primary_commit = primary
            .as_ref()
            .and_then(|p| self.reports.get(p))
            .map(|r| r.commit_lsn);
        let replicas = self
            .replicas
            .iter()
            .map(|name| {
                let r = self.reports.get(name);
                ReplicaInfo {
                    server: name.clone(),
                    reachable: self.detector.reachable(name),
                    suspected: self.detector.suspected(name, now),
                    role: r.map(|r| r.role),
                    epoch: r.map(|r| r.epoch),
                    last_epoch: r.map(|r| r.last_epoch),
                    last_lsn: r.map(|r| r.last_lsn),
                    commit_lsn: r.map(|r| r.commit_lsn),
                    applied_lsn: r.map(|r| r.applied_lsn),
                    halted: r.is_some_and(|r| r.halted.is_some()),
                    lag: primary_commit
                        .zip(r)
                        .map(|(c, r)| c.saturating_sub(r.applied_lsn)),
                }
            })
            .collect();
        let reachable = self
            .replicas
            .iter()
            .filter(|r| self.detector.reachable(r))
            .count();
        ShardInfo {
            shard: self.shard.clone(),
            state: self.state.phase(),
            reason,
            primary,
            epoch,
            quorum_reachable: reachable >= self.write_quorum.size(self.replicas.len()),
            replicas,
            reconfiguring: self.joint.is_some(),
        }
    }
}

/// `replicas` without repeats, in order.
fn dedup(replicas: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    replicas
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect()
}
