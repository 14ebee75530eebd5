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
//!
//! A replica-set change ([`ShardController::reconfigure`]) switches to the new set at once, keeps
//! the old one as `previous` (a joint configuration) and runs an election at a new epoch; the
//! promotion carries the new list. Until the new primary's no-op is known committed, elections
//! fence both sets and follow the joint rule of [`decide_joint`]: the winner must have a log at
//! least as long as those of a majority of each set. One change at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::runtime::SpecError;
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

    /// Drops what is known of `server` (it left the cluster).
    pub fn forget(&mut self, server: &str) {
        self.servers.remove(server);
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
    /// Too few replicas accepted to ever reach the fence quorum (or, in a joint round, to ever
    /// give a new replica enough votes) in this round.
    NoQuorum,
    /// A fence quorum accepted `epoch`; `server` has the highest `(last_epoch, last_lsn)` (in a
    /// joint round: of the new replicas with enough votes).
    Promote { server: String, epoch: u64 },
}

/// A replica set and how many of its replicas must vote in an election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterSet<'a> {
    pub replicas: &'a [String],
    pub quorum: usize,
}

impl<'a> VoterSet<'a> {
    /// `replicas` with a majority quorum.
    pub fn majority(replicas: &'a [String]) -> Self {
        Self {
            replicas,
            quorum: majority(replicas.len()),
        }
    }
}

/// Decides a fence round at `epoch` for a shard with `replicas` ([`decide_joint`] without a
/// previous set).
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
    decide_joint(
        VoterSet { replicas, quorum },
        None,
        epoch,
        answers,
        preferred,
    )
}

/// Decides a fence round at `epoch`, during a replica-set change when `previous` is set.
///
/// Raft's vote rule, with the fence acceptance as the vote: an acceptor votes for a candidate
/// whose `(last_epoch, last_lsn)` is at least its own. A candidate qualifies with `quorum`
/// votes in `new` and, when set, `quorum` votes in `previous`. Every committed entry is on a
/// quorum of the set it was committed in, that quorum meets the candidate's voters, and a log at
/// least as long as a voter's holds the voter's committed entries (docs/replication.md,
/// invariant 3). An empty newcomer therefore never wins while previous replicas with data
/// answer: they do not vote for it.
///
/// The winner is a qualified acceptor of `new`. Only when no replica of `new` can qualify any
/// more (e.g. every replica replaced by empty newcomers) does a qualified previous replica win:
/// promoted with the new list, it counts itself in its commit quorum (a majority of the new
/// replicas and itself), which meets every majority of `new`; once its no-op is committed an
/// election in `new` alone is safe.
///
/// - Any rejection carrying an epoch ≥ ours → [`Decision::Retry`] at 1 + the highest such epoch.
/// - A winner: once the preferred replica (if in `new`) has answered, [`Decision::Promote`] the
///   qualified one with the highest `(last_epoch, last_lsn)`; ties go to the preferred replica,
///   then to the lowest name. Without `previous` this is the acceptor with the highest log, once
///   `quorum` accepted.
/// - Otherwise [`Decision::NeedMore`] while the unanswered replicas could still make a winner,
///   else [`Decision::NoQuorum`].
///
/// Answers from servers in neither set are ignored; a later answer of a server replaces an
/// earlier one; acceptances of another epoch do not count. Quorums are at least 1.
pub fn decide_joint(
    new: VoterSet<'_>,
    previous: Option<VoterSet<'_>>,
    epoch: u64,
    answers: &[FenceAnswer],
    preferred: Option<&str>,
) -> Decision {
    let sets: Vec<VoterSet<'_>> = std::iter::once(new).chain(previous).collect();
    let members: BTreeSet<&str> = sets
        .iter()
        .flat_map(|s| s.replicas.iter().map(String::as_str))
        .collect();
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
    let accepted: BTreeMap<&str, (u64, u64)> = latest
        .values()
        .filter_map(|a| match a {
            FenceAnswer::Accepted {
                server,
                epoch: e,
                last_epoch,
                last_lsn,
            } if *e == epoch => Some((server.as_str(), (*last_epoch, *last_lsn))),
            _ => None,
        })
        .collect();
    // Votes of `set` for a log (`None`: longer than any), and its unanswered replicas.
    let votes = |set: &VoterSet<'_>, log: Option<(u64, u64)>| {
        set.replicas
            .iter()
            .filter(|r| {
                accepted
                    .get(r.as_str())
                    .is_some_and(|l| log.is_none_or(|log| *l <= log))
            })
            .count()
    };
    let pending = |set: &VoterSet<'_>| {
        set.replicas
            .iter()
            .filter(|r| !latest.contains_key(r.as_str()))
            .count()
    };
    let in_new = |s: &str| new.replicas.iter().any(|r| r == s);
    let qualifies = |log: (u64, u64)| {
        sets.iter()
            .all(|set| votes(set, Some(log)) >= set.quorum.max(1))
    };
    // Could a candidate with `log` (`None`: an unanswered one) still qualify?
    let could = |log: Option<(u64, u64)>| {
        sets.iter()
            .all(|set| votes(set, log) + pending(set) >= set.quorum.max(1))
    };
    let best = |eligible: &dyn Fn(&str) -> bool| {
        accepted
            .iter()
            .filter(|(s, log)| eligible(s) && qualifies(**log))
            .max_by(|(a, la), (b, lb)| {
                la.cmp(lb)
                    .then_with(|| (Some(**a) == preferred).cmp(&(Some(**b) == preferred)))
                    .then_with(|| b.cmp(a))
            })
            .map(|(s, _)| *s)
    };
    let winner = match best(&in_new) {
        Some(w) => Some(w),
        None => {
            let new_possible = (pending(&new) > 0 && could(None))
                || accepted
                    .iter()
                    .any(|(s, log)| in_new(s) && could(Some(*log)));
            if new_possible {
                return Decision::NeedMore;
            }
            // No new replica can win: a previous one bridges (see the doc above).
            best(&|_| true)
        }
    };
    if let Some(server) = winner {
        if let Some(p) = preferred
            && in_new(p)
            && !latest.contains_key(p)
        {
            return Decision::NeedMore;
        }
        return Decision::Promote {
            server: server.to_owned(),
            epoch,
        };
    }
    let unanswered = sets.iter().any(|set| pending(set) > 0);
    let possible = (unanswered && could(None)) || accepted.values().any(|log| could(Some(*log)));
    if possible {
        Decision::NeedMore
    } else {
        Decision::NoQuorum
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
    /// promoted one included unless it is a previous replica bridging a change: see
    /// [`decide_joint`]) and write `quorum`; answer with [`ShardController::on_promote_result`].
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

/// Why a change of replica sets was refused; nothing changed then.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReconfigureError {
    /// The new spec fails [`crate::runtime::ClusterSpec::validate`] (or a replica set is empty).
    #[error("invalid cluster spec: {0}")]
    Invalid(#[from] SpecError),
    /// The write quorum is fixed for the control plane's lifetime.
    #[error("the write quorum cannot change at runtime (from {from:?} to {to:?})")]
    WriteQuorum { from: Quorum, to: Quorum },
    /// The shard's previous change has not completed yet: retry later.
    #[error("shard {shard:?} is still changing its replica set: try again later")]
    Busy { shard: String },
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
    /// The replica set (the new one during a change).
    pub replicas: Vec<ReplicaInfo>,
    /// A replica-set change is under way: elections also need the previous set, and another
    /// change is refused until the new primary has committed in the new set.
    #[serde(default)]
    pub reconfiguring: bool,
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
            state: ShardState::Starting,
            events: Vec::new(),
        }
    }

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

    /// Changes the shard's replica set to `replicas` (duplicates are dropped). Unchanged (as a
    /// set): nothing happens. Otherwise the new set applies at once (fence quorum: a majority of
    /// it), the old one is kept as the previous set, and the next [`Self::poll`] starts an
    /// election at a new epoch, whatever is under way, preferring the current primary if it
    /// stays. Its promotion carries the new list: that is how the primary learns its peers.
    ///
    /// Until that election's primary is known to have committed its no-op (promote answered
    /// 200, or its status shows its commit point at the no-op), every election also fences the
    /// previous replicas and follows the joint rule of [`decide_joint`]; then the previous set
    /// and what was known of the servers that left are dropped. One change at a time: a change
    /// while another is under way is refused with [`ReconfigureError::Busy`] (retry later).
    pub fn reconfigure(&mut self, replicas: Vec<String>) -> Result<(), ReconfigureError> {
        let replicas = dedup(replicas);
        if replicas.is_empty() {
            return Err(SpecError::NoReplicas(self.shard.clone()).into());
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
            ShardState::Healthy { primary, .. } => Some(primary.clone()),
            ShardState::SteppingDown { to, .. } => Some(to.clone()),
            ShardState::Electing { preferred, .. }
            | ShardState::Promoting { preferred, .. }
            | ShardState::NoQuorum { preferred, .. } => preferred.clone(),
            ShardState::Starting => None,
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
    /// Whether `server` reports itself the primary of `epoch` (a previous replica bridging a
    /// replica-set change only once its no-op is committed).
    fn reports_primary(&self, server: &str, epoch: u64) -> bool {
        let bridge = !self.is_replica(server);
        self.reports
            .get(server)
            .is_some_and(|r| r.role == Role::Primary && r.epoch == epoch)
            && (!bridge || self.noop_reported(server, epoch))
    }

    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        if let Some((preferred, why)) = self.joint.as_mut().and_then(|j| j.due.take()) {
            return self.start_election(now, preferred, &why, None);
        }
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
                let decision = decide_joint(
                    VoterSet {
                        replicas: &self.replicas,
                        quorum: self.fence_quorum,
                    },
                    self.joint.as_ref().map(|j| VoterSet::majority(&j.previous)),
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
                        let reason = self.no_quorum_reason(epoch, &answers);
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
                        if let Some(j) = &mut self.joint
                            && let Some(FenceAnswer::Accepted { last_lsn, .. }) = winner
                        {
                            j.noop = Some((epoch, last_lsn.saturating_add(1)));
                        }
                        info!(
                            shard = %self.shard, epoch, winner = %server,
                            preferred = preferred.as_deref().unwrap_or("-"),
                            answers = ?answers,
                            why = if self.joint.is_some() {
                                "highest (last_epoch, last_lsn) with a joint quorum of votes, a new replica if one has"
                            } else {
                                "highest (last_epoch, last_lsn) of the fence quorum"
                            },
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
                        if self.reports_primary(&server, epoch) {
                            // Already the primary of this epoch: nothing to send; what follows
                            // from it is decided now, so a second poll has nothing to add.
                            return self.poll(now);
                        }
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
                if self.reports_primary(&server, epoch) {
                    self.complete(
                        server.clone(),
                        epoch,
                        started,
                        now,
                        "server reports itself primary",
                    );
                    self.settle_joint(&server, epoch, false);
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
            reconfiguring: self.joint.is_some(),
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
                if let Some(j) = &self.joint
                    && epoch < j.from_epoch
                {
                    // A primary of the old set: it must learn the new one from a promotion.
                    if retry_at.is_some_and(|t| now < t) {
                        return Vec::new();
                    }
                    let why = format!(
                        "primary {server} of epoch {epoch} was promoted before the replica set changed"
                    );
                    return self.start_election(now, Some(server), &why, None);
                }
                self.settle_joint(&server, epoch, false);
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
    /// 1 + the highest epoch seen, fencing every member; or enters `NoQuorum` when fewer than a
    /// fence quorum of replicas (during a change: of each set) answer heartbeats.
    fn start_election(
        &mut self,
        now: Instant,
        preferred: Option<String>,
        why: &str,
        started: Option<Instant>,
    ) -> Vec<Action> {
        let reachable = |set: &[String]| set.iter().filter(|r| self.detector.reachable(r)).count();
        let down: Vec<String> = self
            .members()
            .into_iter()
            .filter(|r| !self.detector.reachable(r))
            .collect();
        let short = match &self.joint {
            None => (reachable(&self.replicas) < self.fence_quorum).then(|| {
                format!(
                    "only {} of {} replicas answer heartbeats and a fence quorum needs {}",
                    reachable(&self.replicas),
                    self.replicas.len(),
                    self.fence_quorum
                )
            }),
            Some(j) => {
                let prev_quorum = majority(j.previous.len());
                (reachable(&self.replicas) < self.fence_quorum
                    || reachable(&j.previous) < prev_quorum)
                    .then(|| {
                        format!(
                            "a joint fence quorum during the replica set change needs {} of the {} new replicas and {} of the {} previous ones, and {} and {} answer heartbeats",
                            self.fence_quorum,
                            self.replicas.len(),
                            prev_quorum,
                            j.previous.len(),
                            reachable(&self.replicas),
                            reachable(&j.previous)
                        )
                    })
            }
        };
        if let Some(short) = short {
            let reason = format!("{why}, but {short} (down: {})", down.join(", "));
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
        let members = self.members();
        let awaited = members
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
        members
            .into_iter()
            .map(|server| Action::Fence {
                shard: self.shard.clone(),
                server,
                epoch,
            })
            .collect()
    }

    /// Why the fence round at `epoch` cannot elect anyone, from its `answers`.
    fn no_quorum_reason(&self, epoch: u64, answers: &[FenceAnswer]) -> String {
        let accepted = |r: &String| {
            answers.iter().any(|a| {
                matches!(a, FenceAnswer::Accepted { server, epoch: e, .. } if server == r && *e == epoch)
            })
        };
        let accepted_by = |set: &[String]| set.iter().filter(|r| accepted(r)).count();
        let others: Vec<String> = self
            .members()
            .into_iter()
            .filter(|r| !accepted(r))
            .collect();
        match &self.joint {
            None => format!(
                "{} of {} replicas accepted epoch {epoch}, a fence quorum needs {} (no answer from {})",
                accepted_by(&self.replicas),
                self.replicas.len(),
                self.fence_quorum,
                others.join(", ")
            ),
            Some(j) => format!(
                "during the replica set change a new replica needs the votes of {} of the {} new replicas and {} of the {} previous ones (acceptors whose log is not longer than its own); {} new and {} previous accepted epoch {epoch} (no acceptance from {})",
                self.fence_quorum,
                self.replicas.len(),
                majority(j.previous.len()),
                j.previous.len(),
                accepted_by(&self.replicas),
                accepted_by(&j.previous),
                others.join(", ")
            ),
        }
    }

    /// Whether `server`'s status shows it primary of `epoch` with the no-op of the joint
    /// promotion at `epoch` committed.
    fn noop_reported(&self, server: &str, epoch: u64) -> bool {
        self.joint
            .as_ref()
            .and_then(|j| j.noop)
            .is_some_and(|(e, lsn)| {
                e == epoch
                    && self.reports.get(server).is_some_and(|r| {
                        r.role == Role::Primary && r.epoch == epoch && r.commit_lsn >= lsn
                    })
            })
    }

    /// Ends the replica-set change once `server`, primary of `epoch`, is known to have committed
    /// its no-op in the new set: `committed` (promote answered 200) or its status report shows
    /// the commit point at the no-op of the joint promotion. Then the previous set, and what is
    /// known of the servers that left, is dropped.
    fn settle_joint(&mut self, server: &str, epoch: u64, committed: bool) {
        let Some(j) = &self.joint else {
            return;
        };
        if epoch < j.from_epoch {
            return;
        }
        if !committed && !self.noop_reported(server, epoch) {
            return;
        }
        info!(shard = %self.shard, primary = server, epoch, replicas = ?self.replicas,
            "replica set change completed");
        let Some(j) = self.joint.take() else {
            return;
        };
        for gone in j.previous.iter().filter(|p| !self.replicas.contains(p)) {
            self.reports.remove(gone);
            self.detector.forget(gone);
        }
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

/// `replicas` without repeats, in order.
fn dedup(replicas: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    replicas
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
