//! Failure detection and elections, sans IO.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::wire::{Quorum, Role, ShardStatus, majority};

// ---------------------------------------------------------------------------------------------
// Failure detector
// ---------------------------------------------------------------------------------------------

/// Heartbeat and suspicion settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// How often the runtime polls `GET /status` (default 200 ms).
    pub heartbeat: Duration,
    /// Consecutive failed heartbeats after which a server is suspected (default 3).
    pub misses: u32,
    /// Time without a successful heartbeat after which a failing server is suspected
    /// (default 600 ms).
    pub timeout: Duration,
    /// Suspect at once on a connection refusal (default true: nothing listens there).
    pub suspect_on_refused: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(200),
            misses: 3,
            timeout: Duration::from_millis(600),
            suspect_on_refused: true,
        }
    }
}

/// The result of one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Heartbeat {
    /// The server answered.
    Ok,
    /// Timeout, HTTP error, bad answer, or the server does not report the shard.
    Failed,
    /// The connection was refused: nothing listens at the server's address.
    Refused,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    first_seen: Instant,
    last_ok: Option<Instant>,
    last: Heartbeat,
    consecutive_failures: u32,
}

/// Per-server heartbeat bookkeeping.
///
/// A server is suspected only while its latest heartbeat failed, and then after
/// [`DetectorConfig::misses`] consecutive failures, [`DetectorConfig::timeout`] without success, or
/// at once on a refusal. One successful heartbeat clears the suspicion, so a single missed
/// heartbeat never triggers an election, and a stalled control plane (no heartbeats recorded at all)
/// does not suspect anyone.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    cfg: DetectorConfig,
    servers: BTreeMap<String, Health>,
}

impl FailureDetector {
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg,
            servers: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Records a heartbeat result observed at `now`.
    pub fn record(&mut self, server: &str, beat: Heartbeat, now: Instant) {
        let h = self.servers.entry(server.to_owned()).or_insert(Health {
            first_seen: now,
            last_ok: None,
            last: beat,
            consecutive_failures: 0,
        });
        h.last = beat;
        match beat {
            Heartbeat::Ok => {
                h.last_ok = Some(now);
                h.consecutive_failures = 0;
            }
            Heartbeat::Failed | Heartbeat::Refused => {
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            }
        }
    }

    /// Whether `server` is suspected dead at `now`. A server never heard of is not suspected.
    pub fn suspected(&self, server: &str, now: Instant) -> bool {
        let Some(h) = self.servers.get(server) else {
            return false;
        };
        match h.last {
            Heartbeat::Ok => false,
            Heartbeat::Refused if self.cfg.suspect_on_refused => true,
            Heartbeat::Failed | Heartbeat::Refused => {
                let since = h.last_ok.unwrap_or(h.first_seen);
                h.consecutive_failures >= self.cfg.misses
                    || now.saturating_duration_since(since) >= self.cfg.timeout
            }
        }
    }

    /// Whether the latest heartbeat of `server` succeeded.
    pub fn reachable(&self, server: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|h| h.last == Heartbeat::Ok)
    }

    /// Whether any heartbeat of `server` was recorded.
    pub fn observed(&self, server: &str) -> bool {
        self.servers.contains_key(server)
    }

    /// Consecutive failed heartbeats of `server`.
    pub fn failures(&self, server: &str) -> u32 {
        self.servers
            .get(server)
            .map_or(0, |h| h.consecutive_failures)
    }
}

// ---------------------------------------------------------------------------------------------
// Election decision
// ---------------------------------------------------------------------------------------------

/// One replica's answer to `fence {epoch}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum FenceAnswer {
    /// 200: promised `epoch`; the end of its log is `(last_epoch, last_lsn)`.
    Accepted {
        server: String,
        epoch: u64,
        last_epoch: u64,
        last_lsn: u64,
    },
    /// 409: it has promised `epoch` already (higher, or equal with a primary accepted).
    Rejected { server: String, epoch: u64 },
    /// No answer (refused, timeout, other error).
    Unreachable { server: String },
}

impl FenceAnswer {
    pub fn server(&self) -> &str {
        match self {
            FenceAnswer::Accepted { server, .. }
            | FenceAnswer::Rejected { server, .. }
            | FenceAnswer::Unreachable { server } => server,
        }
    }
}

/// What to do with the fence answers collected so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not enough answers yet to decide.
    NeedMore,
    /// A replica has promised an epoch ≥ ours: fence again at `epoch`.
    Retry { epoch: u64 },
    /// Too few replicas accepted to ever reach the fence quorum in this round.
    NoQuorum,
    /// A fence quorum accepted `epoch`; `server` has the highest `(last_epoch, last_lsn)`.
    Promote { server: String, epoch: u64 },
}

/// Decides a fence round at `epoch` for a shard with `replicas`.
///
/// - Any rejection carrying an epoch ≥ ours → [`Decision::Retry`] at 1 + the highest such epoch
///   (the rejecting replica could never follow a primary of our epoch).
/// - Fewer than `quorum` acceptances: [`Decision::NeedMore`] while the unanswered replicas could
///   still make up the quorum, else [`Decision::NoQuorum`].
/// - A quorum accepted, and the preferred replica (if any) has answered: [`Decision::Promote`] the
///   acceptor with the highest `(last_epoch, last_lsn)`; ties go to the preferred replica, then to
///   the lowest name.
///
/// Answers from servers outside `replicas` are ignored; a later answer of a server replaces an
/// earlier one; acceptances of another epoch do not count. `quorum` is at least 1.
pub fn decide(
    replicas: &[String],
    quorum: usize,
    epoch: u64,
    answers: &[FenceAnswer],
    preferred: Option<&str>,
) -> Decision {
    let members: BTreeSet<&str> = replicas.iter().map(String::as_str).collect();
    let mut latest: BTreeMap<&str, &FenceAnswer> = BTreeMap::new();
    for a in answers {
        if members.contains(a.server()) {
            latest.insert(a.server(), a);
        }
    }
    let higher = latest
        .values()
        .filter_map(|a| match a {
            FenceAnswer::Rejected { epoch: e, .. } if *e >= epoch => Some(*e),
            _ => None,
        })
        .max();
    if let Some(e) = higher {
        return Decision::Retry {
            epoch: e.saturating_add(1),
        };
    }
    let accepted: Vec<(&str, u64, u64)> = latest
        .values()
        .filter_map(|a| match a {
            FenceAnswer::Accepted {
                server,
                epoch: e,
                last_epoch,
                last_lsn,
            } if *e == epoch => Some((server.as_str(), *last_epoch, *last_lsn)),
            _ => None,
        })
        .collect();
    let quorum = quorum.max(1);
    let pending = members.len() - latest.len();
    if accepted.len() < quorum {
        return if accepted.len() + pending >= quorum {
            Decision::NeedMore
        } else {
            Decision::NoQuorum
        };
    }
    if let Some(p) = preferred
        && members.contains(p)
        && !latest.contains_key(p)
    {
        return Decision::NeedMore;
    }
    let best = accepted.iter().max_by(|a, b| {
        (a.1, a.2)
            .cmp(&(b.1, b.2))
            .then_with(|| (Some(a.0) == preferred).cmp(&(Some(b.0) == preferred)))
            .then_with(|| b.0.cmp(a.0))
    });
    match best {
        Some((server, _, _)) => Decision::Promote {
            server: (*server).to_owned(),
            epoch,
        },
        None => Decision::NoQuorum,
    }
}

// ---------------------------------------------------------------------------------------------
// Per-shard controller
// ---------------------------------------------------------------------------------------------

/// Settings of a [`ShardController`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
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

/// What the controller asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `POST /shards/{shard}/fence {"epoch"}` on `server`; answer with
    /// [`ShardController::on_fence_answer`].
    Fence {
        shard: String,
        server: String,
        epoch: u64,
    },
    /// `POST /shards/{shard}/promote` on `server` with the shard's `replicas` (all of them, the
    /// promoted one included) and write `quorum`; answer with
    /// [`ShardController::on_promote_result`].
    Promote {
        shard: String,
        server: String,
        epoch: u64,
        replicas: Vec<String>,
        quorum: Quorum,
    },
    /// `POST /shards/{shard}/step-down {"to"}` on the primary `server`; answer with
    /// [`ShardController::on_step_down_result`].
    StepDown {
        shard: String,
        server: String,
        to: String,
    },
}

impl Action {
    pub fn shard(&self) -> &str {
        match self {
            Action::Fence { shard, .. }
            | Action::Promote { shard, .. }
            | Action::StepDown { shard, .. } => shard,
        }
    }

    pub fn server(&self) -> &str {
        match self {
            Action::Fence { server, .. }
            | Action::Promote { server, .. }
            | Action::StepDown { server, .. } => server,
        }
    }
}

/// How a promote call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteOutcome {
    /// 200: the no-op of the epoch is committed.
    Done,
    /// 503: the server is primary but its no-op is not committed yet; it keeps trying.
    Pending(String),
    /// 409: the server is not fenced at exactly our epoch; it reported `epoch`.
    Rejected { epoch: u64 },
    /// Anything else (timeout, transport, other status): unknown; status reports will tell.
    Failed(String),
}

/// Notable moments, for metrics; drained with [`ShardController::drain_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    ElectionStarted {
        shard: String,
        epoch: u64,
        reason: String,
    },
    ElectionCompleted {
        shard: String,
        epoch: u64,
        primary: String,
        duration: Duration,
    },
    NoQuorum {
        shard: String,
        reason: String,
    },
}

/// The controller's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Not every replica has been heard from (or failed) yet.
    Starting,
    /// `primary` reports itself primary of `epoch` and is not suspected.
    Healthy { primary: String, epoch: u64 },
    /// Planned switchover: `from` was asked to step down to `to`.
    SteppingDown {
        from: String,
        to: String,
        epoch: u64,
        since: Instant,
        sent: bool,
        finished: bool,
    },
    /// Fence round at `epoch`; `started` is when the election (not this round) started.
    Electing {
        epoch: u64,
        answers: Vec<FenceAnswer>,
        preferred: Option<String>,
        started: Instant,
        round_started: Instant,
        /// Replicas that answered heartbeats when the round started (see `fence_grace`).
        awaited: Vec<String>,
    },
    /// `server` was asked to become primary of `epoch`.
    Promoting {
        server: String,
        epoch: u64,
        preferred: Option<String>,
        started: Instant,
        since: Instant,
        /// The promote call came back without success (timeout, 503, other error).
        answered: bool,
        failed: Option<String>,
    },
    /// No election can complete now; retried at `retry_at` or when enough replicas are back.
    NoQuorum {
        reason: String,
        since: Instant,
        retry_at: Instant,
        /// Set when a switchover was under way: the old primary stepped down (stopped taking
        /// writes), so the election is due even if it still reports itself primary.
        preferred: Option<String>,
    },
}

/// The kind of a [`ShardState`], for status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Starting,
    Healthy,
    SteppingDown,
    Electing,
    Promoting,
    NoQuorum,
}

impl Phase {
    /// `starting`, `healthy`, `stepping-down`, `electing`, `promoting` or `no-quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Healthy => "healthy",
            Phase::SteppingDown => "stepping-down",
            Phase::Electing => "electing",
            Phase::Promoting => "promoting",
            Phase::NoQuorum => "no-quorum",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ShardState {
    pub fn phase(&self) -> Phase {
        match self {
            ShardState::Starting => Phase::Starting,
            ShardState::Healthy { .. } => Phase::Healthy,
            ShardState::SteppingDown { .. } => Phase::SteppingDown,
            ShardState::Electing { .. } => Phase::Electing,
            ShardState::Promoting { .. } => Phase::Promoting,
            ShardState::NoQuorum { .. } => Phase::NoQuorum,
        }
    }
}

/// Why a switchover request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SwitchoverError {
    #[error("unknown shard {0:?}")]
    UnknownShard(String),
    #[error("{to:?} holds no replica of shard {shard:?}")]
    NotAReplica { shard: String, to: String },
    #[error("shard {shard:?} is {state}, not healthy: try again later")]
    Busy { shard: String, state: Phase },
    #[error("{to:?} is not reachable")]
    Unreachable { to: String },
    #[error("the control plane is not running")]
    NotRunning,
}

/// One replica as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub server: String,
    /// Latest heartbeat succeeded.
    pub reachable: bool,
    pub suspected: bool,
    /// From the latest successful status report (possibly stale when not reachable).
    pub role: Option<Role>,
    pub epoch: Option<u64>,
    pub last_epoch: Option<u64>,
    pub last_lsn: Option<u64>,
    pub commit_lsn: Option<u64>,
    pub applied_lsn: Option<u64>,
    pub halted: bool,
    /// Primary's `commit_lsn` − this replica's `applied_lsn`, when both are known.
    pub lag: Option<u64>,
}

/// A shard as the control plane sees it: what a router or CLI needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub shard: String,
    pub state: Phase,
    /// Why the shard is not healthy (no-quorum reason, failed promotion), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The writable primary, when healthy (or stepping down, until the election).
    pub primary: Option<String>,
    /// The primary's epoch when healthy, else the highest epoch seen.
    pub epoch: u64,
    /// A write quorum of replicas answers heartbeats (a healthy primary can commit).
    pub quorum_reachable: bool,
    pub replicas: Vec<ReplicaInfo>,
}

enum Assessment {
    Primary { server: String, epoch: u64 },
    Wait(String),
    Elect(String),
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
    write_quorum: Quorum,
    fence_quorum: usize,
    cfg: ControllerConfig,
    detector: FailureDetector,
    reports: BTreeMap<String, ShardStatus>,
    max_epoch_seen: u64,
    state: ShardState,
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
        let mut seen = BTreeSet::new();
        let replicas: Vec<String> = replicas
            .into_iter()
            .filter(|r| seen.insert(r.clone()))
            .collect();
        Self {
            shard: shard.into(),
            fence_quorum: majority(replicas.len()),
            replicas,
            write_quorum,
            cfg,
            detector: FailureDetector::new(cfg.detector),
            reports: BTreeMap::new(),
            max_epoch_seen: 0,
            state: ShardState::Starting,
            events: Vec::new(),
        }
    }

    pub fn shard(&self) -> &str {
        &self.shard
    }

    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    pub fn fence_quorum(&self) -> usize {
        self.fence_quorum
    }

    pub fn state(&self) -> &ShardState {
        &self.state
    }

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
            ShardState::Healthy { primary, epoch } => Some((primary, *epoch)),
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

    /// A successful heartbeat: `server`'s status for this shard.
    pub fn observe_status(&mut self, server: &str, status: &ShardStatus, now: Instant) {
        if !self.is_replica(server) {
            return;
        }
        self.detector.record(server, Heartbeat::Ok, now);
        self.max_epoch_seen = self.max_epoch_seen.max(status.epoch);
        self.reports.insert(server.to_owned(), status.clone());
    }

    /// A failed heartbeat of `server` (`Failed` or `Refused`). The last report is kept.
    pub fn observe_failure(&mut self, server: &str, beat: Heartbeat, now: Instant) {
        if !self.is_replica(server) {
            return;
        }
        let beat = if beat == Heartbeat::Ok {
            Heartbeat::Failed
        } else {
            beat
        };
        self.detector.record(server, beat, now);
    }

    /// The answer to a [`Action::Fence`] sent at `epoch`.
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
        if let ShardState::Electing {
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

    /// The outcome of a [`Action::Promote`] of `server` at `epoch`.
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
        let ShardState::Promoting {
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

    /// The outcome of a [`Action::StepDown`] of `server`: its `last_lsn`, or why it failed. Either
    /// way the election follows, with the switchover target preferred.
    pub fn on_step_down_result(&mut self, server: &str, result: Result<u64, String>) {
        if let ShardState::SteppingDown {
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

    /// Starts a planned switchover of a healthy shard to `to`. The next [`Self::poll`] emits the
    /// step-down; the election after it prefers `to`.
    pub fn request_switchover(&mut self, to: &str, now: Instant) -> Result<(), SwitchoverError> {
        if !self.is_replica(to) {
            return Err(SwitchoverError::NotAReplica {
                shard: self.shard.clone(),
                to: to.to_owned(),
            });
        }
        let ShardState::Healthy { primary, epoch } = &self.state else {
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
        self.state = ShardState::SteppingDown {
            from: primary.clone(),
            to: to.to_owned(),
            epoch: *epoch,
            since: now,
            sent: false,
            finished: false,
        };
        Ok(())
    }

    /// Advances the state machine at `now` and returns the actions to execute.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        match self.state.clone() {
            ShardState::Starting | ShardState::Healthy { .. } => self.check_primary(now, None),
            ShardState::NoQuorum {
                retry_at,
                preferred: Some(to),
                ..
            } => {
                if now < retry_at {
                    return Vec::new();
                }
                let why = format!("resuming the switchover to {to}");
                self.start_election(now, Some(to), &why, None)
            }
            ShardState::NoQuorum { retry_at, .. } => self.check_primary(now, Some(retry_at)),
            ShardState::SteppingDown {
                from,
                to,
                epoch,
                since,
                sent,
                finished,
            } => {
                if !sent && self.detector.suspected(&from, now) {
                    let why = format!("primary {from} suspected before stepping down to {to}");
                    return self.start_election(now, Some(to), &why, None);
                }
                if !sent {
                    self.state = ShardState::SteppingDown {
                        from: from.clone(),
                        to: to.clone(),
                        epoch,
                        since,
                        sent: true,
                        finished,
                    };
                    return vec![Action::StepDown {
                        shard: self.shard.clone(),
                        server: from,
                        to,
                    }];
                }
                let why = if finished {
                    format!("switchover from {from} to {to}")
                } else if self.detector.suspected(&from, now) {
                    format!("primary {from} suspected during switchover to {to}")
                } else if now.saturating_duration_since(since) >= self.cfg.election_timeout {
                    format!("step-down of {from} timed out")
                } else {
                    return Vec::new();
                };
                self.start_election(now, Some(to), &why, None)
            }
            ShardState::Electing {
                epoch,
                answers,
                preferred,
                started,
                round_started,
                awaited,
            } => {
                if self.max_epoch_seen > epoch {
                    let why = format!(
                        "epoch {} seen while fencing at epoch {epoch}",
                        self.max_epoch_seen
                    );
                    return self.start_election(now, preferred, &why, Some(started));
                }
                let decision = decide(
                    &self.replicas,
                    self.fence_quorum,
                    epoch,
                    &answers,
                    preferred.as_deref(),
                );
                match decision {
                    Decision::NeedMore => {
                        if now.saturating_duration_since(round_started) >= self.cfg.election_timeout
                        {
                            let why = format!("fence round at epoch {epoch} timed out");
                            self.start_election(now, preferred, &why, Some(started))
                        } else {
                            Vec::new()
                        }
                    }
                    Decision::Retry { epoch: next } => {
                        self.max_epoch_seen = self.max_epoch_seen.max(next.saturating_sub(1));
                        let why = format!(
                            "a replica rejected epoch {epoch} with epoch {}",
                            next.saturating_sub(1)
                        );
                        self.start_election(now, preferred, &why, Some(started))
                    }
                    Decision::NoQuorum => {
                        let accepted = answers
                            .iter()
                            .filter(|a| matches!(a, FenceAnswer::Accepted { .. }))
                            .count();
                        let unreachable: Vec<&str> = answers
                            .iter()
                            .filter(|a| !matches!(a, FenceAnswer::Accepted { .. }))
                            .map(FenceAnswer::server)
                            .collect();
                        let reason = format!(
                            "{accepted} of {} replicas accepted epoch {epoch}, a fence quorum needs {} (no answer from {})",
                            self.replicas.len(),
                            self.fence_quorum,
                            unreachable.join(", ")
                        );
                        self.enter_no_quorum(now, reason, true, preferred);
                        Vec::new()
                    }
                    Decision::Promote { server, epoch } => {
                        let missing = awaited
                            .iter()
                            .any(|r| !answers.iter().any(|a| a.server() == r));
                        if missing
                            && now.saturating_duration_since(round_started) < self.cfg.fence_grace
                        {
                            return Vec::new();
                        }
                        let winner = answers.iter().find(|a| a.server() == server);
                        info!(
                            shard = %self.shard, epoch, winner = %server,
                            preferred = preferred.as_deref().unwrap_or("-"),
                            answers = ?answers,
                            why = "highest (last_epoch, last_lsn) of the fence quorum",
                            ?winner,
                            "promoting"
                        );
                        self.state = ShardState::Promoting {
                            server: server.clone(),
                            epoch,
                            preferred,
                            started,
                            since: now,
                            answered: false,
                            failed: None,
                        };
                        vec![Action::Promote {
                            shard: self.shard.clone(),
                            server,
                            epoch,
                            replicas: self.replicas.clone(),
                            quorum: self.write_quorum,
                        }]
                    }
                }
            }
            ShardState::Promoting {
                server,
                epoch,
                preferred,
                started,
                since,
                answered,
                failed,
            } => {
                let report = self.reports.get(&server);
                if report.is_some_and(|r| r.role == Role::Primary && r.epoch == epoch) {
                    self.complete(server, epoch, started, now, "server reports itself primary");
                    return self.check_primary(now, None);
                }
                let why = if let Some(f) = failed {
                    f
                } else if answered && self.detector.suspected(&server, now) {
                    format!("{server} suspected while being promoted")
                } else if let Some(r) = report.filter(|r| r.epoch > epoch) {
                    format!(
                        "{server} moved on to epoch {} while being promoted",
                        r.epoch
                    )
                } else if now.saturating_duration_since(since) >= self.cfg.election_timeout {
                    format!("promotion of {server} at epoch {epoch} timed out")
                } else {
                    return Vec::new();
                };
                self.start_election(now, preferred, &why, Some(started))
            }
        }
    }

    /// Whether the controller is waiting for the answer to an action it emitted (a fence round,
    /// a promotion, a step-down).
    pub fn awaiting_answers(&self) -> bool {
        match &self.state {
            ShardState::Electing { .. } => true,
            ShardState::Promoting { failed, .. } => failed.is_none(),
            ShardState::SteppingDown { sent, finished, .. } => *sent && !*finished,
            ShardState::Starting | ShardState::Healthy { .. } | ShardState::NoQuorum { .. } => {
                false
            }
        }
    }

    /// Per-shard view for status output.
    pub fn info(&self, now: Instant) -> ShardInfo {
        let (primary, epoch, reason) = match &self.state {
            ShardState::Healthy { primary, epoch } => (Some(primary.clone()), *epoch, None),
            ShardState::SteppingDown { from, epoch, .. } => (Some(from.clone()), *epoch, None),
            ShardState::NoQuorum { reason, .. } => {
                (None, self.max_epoch_seen, Some(reason.clone()))
            }
            ShardState::Promoting { failed, .. } => (None, self.max_epoch_seen, failed.clone()),
            ShardState::Starting | ShardState::Electing { .. } => (None, self.max_epoch_seen, None),
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
        }
    }

    // -- internals ---------------------------------------------------------------------------

    /// Is there a reachable primary? (Healthy / Starting / NoQuorum.)
    fn assess(&self, now: Instant) -> Assessment {
        if let Some(r) = self.replicas.iter().find(|r| !self.detector.observed(r)) {
            return Assessment::Wait(format!("no heartbeat from {r} yet"));
        }
        let Some(max_epoch) = self.reports.values().map(|r| r.epoch).max() else {
            return Assessment::Elect("no replica has answered a heartbeat".into());
        };
        let primaries: Vec<&String> = self
            .replicas
            .iter()
            .filter(|r| {
                self.reports
                    .get(*r)
                    .is_some_and(|s| s.role == Role::Primary && s.epoch == max_epoch)
            })
            .collect();
        match primaries.as_slice() {
            [p] => {
                if self.detector.suspected(p, now) {
                    Assessment::Elect(format!(
                        "primary {p} suspected ({} missed heartbeats)",
                        self.detector.failures(p)
                    ))
                } else {
                    Assessment::Primary {
                        server: (*p).clone(),
                        epoch: max_epoch,
                    }
                }
            }
            [] => {
                // A control plane (re)starting while the primary's first heartbeat failed:
                // secondaries name it; wait until it is heard from or suspected.
                for s in self.reports.values() {
                    if s.epoch == max_epoch
                        && s.role == Role::Secondary
                        && let Some(q) = &s.primary
                        && self.is_replica(q)
                        && !self.reports.contains_key(q)
                        && !self.detector.suspected(q, now)
                    {
                        return Assessment::Wait(format!("primary {q} not heard from yet"));
                    }
                }
                Assessment::Elect(format!(
                    "no replica reports itself primary at epoch {max_epoch}"
                ))
            }
            many => Assessment::Elect(format!(
                "{} replicas report themselves primary at epoch {max_epoch}",
                many.len()
            )),
        }
    }

    fn check_primary(&mut self, now: Instant, retry_at: Option<Instant>) -> Vec<Action> {
        match self.assess(now) {
            Assessment::Primary { server, epoch } => {
                let changed = !matches!(&self.state,
                    ShardState::Healthy { primary, epoch: e } if *primary == server && *e == epoch);
                if changed {
                    info!(shard = %self.shard, primary = %server, epoch, previous = %self.state.phase(),
                        "shard has a primary");
                    self.state = ShardState::Healthy {
                        primary: server,
                        epoch,
                    };
                }
                Vec::new()
            }
            Assessment::Wait(why) => {
                debug!(shard = %self.shard, %why, "waiting before deciding");
                Vec::new()
            }
            Assessment::Elect(why) => {
                if retry_at.is_some_and(|t| now < t) {
                    return Vec::new();
                }
                self.start_election(now, None, &why, None)
            }
        }
    }

    /// Starts an election (or, with `started`, a new round of the current one) at
    /// 1 + the highest epoch seen, fencing every replica; or enters `NoQuorum` when fewer than a
    /// fence quorum of replicas answer heartbeats.
    fn start_election(
        &mut self,
        now: Instant,
        preferred: Option<String>,
        why: &str,
        started: Option<Instant>,
    ) -> Vec<Action> {
        let reachable = self
            .replicas
            .iter()
            .filter(|r| self.detector.reachable(r))
            .count();
        if reachable < self.fence_quorum {
            let down: Vec<&str> = self
                .replicas
                .iter()
                .filter(|r| !self.detector.reachable(r))
                .map(String::as_str)
                .collect();
            let reason = format!(
                "{why}, but only {reachable} of {} replicas answer heartbeats and a fence quorum needs {} (down: {})",
                self.replicas.len(),
                self.fence_quorum,
                down.join(", ")
            );
            self.enter_no_quorum(now, reason, false, preferred);
            return Vec::new();
        }
        let epoch = self.max_epoch_seen.saturating_add(1);
        self.max_epoch_seen = epoch;
        if started.is_none() {
            self.events.push(ControllerEvent::ElectionStarted {
                shard: self.shard.clone(),
                epoch,
                reason: why.to_owned(),
            });
            info!(shard = %self.shard, epoch, why, preferred = preferred.as_deref().unwrap_or("-"),
                "election started");
        } else {
            info!(shard = %self.shard, epoch, why, preferred = preferred.as_deref().unwrap_or("-"),
                "election retried at a higher epoch");
        }
        let awaited = self
            .replicas
            .iter()
            .filter(|r| self.detector.reachable(r))
            .cloned()
            .collect();
        self.state = ShardState::Electing {
            epoch,
            answers: Vec::new(),
            preferred,
            started: started.unwrap_or(now),
            round_started: now,
            awaited,
        };
        self.replicas
            .iter()
            .map(|server| Action::Fence {
                shard: self.shard.clone(),
                server: server.clone(),
                epoch,
            })
            .collect()
    }

    fn enter_no_quorum(
        &mut self,
        now: Instant,
        reason: String,
        backoff: bool,
        preferred: Option<String>,
    ) {
        let retry_at = if backoff {
            now + self.cfg.retry_backoff
        } else {
            now
        };
        match &mut self.state {
            ShardState::NoQuorum {
                reason: old,
                retry_at: at,
                preferred: old_preferred,
                ..
            } => {
                if *old != reason {
                    warn!(shard = %self.shard, %reason, "no quorum");
                    *old = reason;
                }
                *at = retry_at;
                if preferred.is_some() {
                    *old_preferred = preferred;
                }
            }
            _ => {
                warn!(shard = %self.shard, %reason, "no quorum");
                self.events.push(ControllerEvent::NoQuorum {
                    shard: self.shard.clone(),
                    reason: reason.clone(),
                });
                self.state = ShardState::NoQuorum {
                    reason,
                    since: now,
                    retry_at,
                    preferred,
                };
            }
        }
    }

    fn complete(&mut self, server: String, epoch: u64, started: Instant, now: Instant, why: &str) {
        let duration = now.saturating_duration_since(started);
        info!(shard = %self.shard, epoch, primary = %server, ?duration, why, "election completed");
        self.events.push(ControllerEvent::ElectionCompleted {
            shard: self.shard.clone(),
            epoch,
            primary: server.clone(),
            duration,
        });
        self.state = ShardState::Healthy {
            primary: server,
            epoch,
        };
    }
}

#[cfg(test)]
mod tests;
