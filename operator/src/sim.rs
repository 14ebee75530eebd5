//! An in-memory cluster of simulated agents, for tests of the control plane (here, and in the
//! crates that embed it).
//!
//! Each simulated replica keeps what docs/replication.md says a replica persists — `max_epoch`,
//! the primary accepted per epoch, a log of `(epoch, lsn)` entries — and applies the doc's rules to
//! fence, promote, step-down and appends. Replication is modelled as a whole-log catch-up of the
//! secondaries a primary can reach (the effect of the append/truncate protocol once it converges).
//! The cluster records every committed entry and flags violations of the invariants (a committed
//! entry changed or lost, two primaries in one epoch).
//!
//! Servers can be `Up`, `Crashed` (connection refused; restarts fenced), `Hung` (SIGSTOP: every
//! call times out, nothing replicates) or `Cut` (the control plane cannot reach it, its peers can).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::runtime::{AgentApi, ApiError};
use crate::wire::{AgentStatus, FenceAccepted, FenceReply, Quorum, Role, ServerRef, ShardStatus};

/// How a simulated server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Process dead: connection refused.
    Crashed,
    /// Process stopped: calls time out, no replication.
    Hung,
    /// Unreachable from the control plane only.
    Cut,
}

/// One simulated replica of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReplica {
    pub max_epoch: u64,
    pub primary_of_epoch: BTreeMap<u64, String>,
    pub role: Role,
    pub primary: Option<String>,
    /// `log[i]` is the epoch of the entry at LSN `i + 1`.
    pub log: Vec<u64>,
    pub commit_lsn: u64,
    pub applied_lsn: u64,
    pub stepping_down: bool,
    /// Set when primary: the shard's replicas and write quorum from the promote call.
    pub peers: Vec<String>,
    pub quorum: Quorum,
}

impl SimReplica {
    fn fresh() -> Self {
        Self {
            max_epoch: 0,
            primary_of_epoch: BTreeMap::new(),
            role: Role::Fenced,
            primary: None,
            log: Vec::new(),
            commit_lsn: 0,
            applied_lsn: 0,
            stepping_down: false,
            peers: Vec::new(),
            quorum: Quorum::Majority,
        }
    }

    pub fn last_lsn(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn last_epoch(&self) -> u64 {
        self.log.last().copied().unwrap_or(0)
    }

    fn status(&self) -> ShardStatus {
        ShardStatus {
            role: self.role,
            epoch: self.max_epoch,
            primary: self.primary.clone(),
            last_epoch: self.last_epoch(),
            last_lsn: self.last_lsn(),
            commit_lsn: self.commit_lsn,
            applied_lsn: self.applied_lsn,
            first_lsn: u64::from(!self.log.is_empty()),
            halted: None,
        }
    }
}

#[derive(Debug, Clone)]
struct SimServer {
    mode: Mode,
    shards: BTreeMap<String, SimReplica>,
}

/// The simulated cluster.
#[derive(Debug, Clone, Default)]
pub struct SimCluster {
    servers: BTreeMap<String, SimServer>,
    /// `(shard, lsn)` → epoch of every committed entry.
    committed: BTreeMap<(String, u64), u64>,
    /// `(shard, epoch)` → the server that became primary of it.
    promoted: BTreeMap<(String, u64), String>,
    /// Raised before the next fence of `(server, shard)`: another elector got there first.
    bumps: BTreeMap<(String, String), u64>,
    violations: Vec<String>,
    calls: Vec<String>,
}

impl SimCluster {
    /// Servers holding replicas per `shards` (shard → servers), every replica fresh: fenced at
    /// epoch 0 with an empty log, as at first start.
    pub fn new(shards: &BTreeMap<String, Vec<String>>) -> Self {
        let mut c = Self::default();
        for (shard, servers) in shards {
            for s in servers {
                c.add_replica(s, shard);
            }
        }
        c
    }

    /// Gives `server` a fresh replica of `shard` (fenced at epoch 0, empty), as a runtime does
    /// before adding it to the shard's replica set; a new server starts up. An existing replica
    /// is kept.
    pub fn add_replica(&mut self, server: &str, shard: &str) {
        self.servers
            .entry(server.to_owned())
            .or_insert_with(|| SimServer {
                mode: Mode::Up,
                shards: BTreeMap::new(),
            })
            .shards
            .entry(shard.to_owned())
            .or_insert_with(SimReplica::fresh);
    }

    pub fn replica(&self, server: &str, shard: &str) -> Option<&SimReplica> {
        self.servers.get(server)?.shards.get(shard)
    }

    pub fn mode(&self, server: &str) -> Option<Mode> {
        self.servers.get(server).map(|s| s.mode)
    }

    /// Every agent call so far, as `"<verb> <server> [<shard> <arg>]"`.
    pub fn calls(&self) -> &[String] {
        &self.calls
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Committed entries of `shard`: `(lsn, epoch)`.
    pub fn committed(&self, shard: &str) -> Vec<(u64, u64)> {
        self.committed
            .iter()
            .filter(|((s, _), _)| s == shard)
            .map(|((_, lsn), e)| (*lsn, *e))
            .collect()
    }

    /// Servers that currently report themselves primary of `shard`, with their epoch.
    pub fn primaries(&self, shard: &str) -> Vec<(String, u64)> {
        self.servers
            .iter()
            .filter_map(|(name, s)| {
                let r = s.shards.get(shard)?;
                (r.role == Role::Primary).then(|| (name.clone(), r.max_epoch))
            })
            .collect()
    }

    /// Kills the process (connection refused).
    pub fn crash(&mut self, server: &str) {
        self.set_mode(server, Mode::Crashed);
    }

    /// Freezes the process (SIGSTOP).
    pub fn hang(&mut self, server: &str) {
        self.set_mode(server, Mode::Hung);
    }

    /// Cuts the control plane off from `server`.
    pub fn cut(&mut self, server: &str) {
        self.set_mode(server, Mode::Cut);
    }

    /// Brings a server back: a crashed one restarts fenced at its persisted `max_epoch` (its
    /// commit point falls back to what it applied); a hung or cut one resumes as it was.
    pub fn restore(&mut self, server: &str) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if s.mode == Mode::Crashed {
            for r in s.shards.values_mut() {
                r.role = Role::Fenced;
                r.primary = None;
                r.stepping_down = false;
                r.peers.clear();
                r.commit_lsn = r.applied_lsn;
            }
        }
        s.mode = Mode::Up;
    }

    fn set_mode(&mut self, server: &str, mode: Mode) {
        if let Some(s) = self.servers.get_mut(server) {
            s.mode = mode;
        }
    }

    /// Makes the next fence of `shard` on `server` meet `max_epoch` ≥ `epoch` (another elector got
    /// there first).
    pub fn bump_before_next_fence(&mut self, server: &str, shard: &str, epoch: u64) {
        self.bumps
            .insert((server.to_owned(), shard.to_owned()), epoch);
    }

    /// A client write of `shard` at `server`: appended if it is a writable primary, replicated to
    /// the peers it can reach (all when `to` is `None`, else only those listed). Returns whether it
    /// committed, or `None` if `server` does not take writes.
    pub fn write(&mut self, shard: &str, server: &str, to: Option<&[&str]>) -> Option<bool> {
        let s = self.servers.get_mut(server)?;
        if !matches!(s.mode, Mode::Up | Mode::Cut) {
            return None;
        }
        let r = s.shards.get_mut(shard)?;
        if r.role != Role::Primary || r.stepping_down {
            return None;
        }
        let epoch = r.max_epoch;
        r.log.push(epoch);
        let lsn = r.last_lsn();
        let only: Option<Vec<String>> = to.map(|t| t.iter().map(|s| (*s).to_owned()).collect());
        let committed = self.replicate(shard, server, only.as_deref());
        Some(committed >= lsn)
    }

    /// Replicates the primary's log to its reachable peers (optionally only `only`), then advances
    /// the commit point. Returns the primary's commit LSN.
    fn replicate(&mut self, shard: &str, primary: &str, only: Option<&[String]>) -> u64 {
        let Some(p) = self.replica(primary, shard).cloned() else {
            return 0;
        };
        let epoch = p.max_epoch;
        let mut acks = 1usize;
        for peer in &p.peers {
            if peer == primary || only.is_some_and(|o| !o.contains(peer)) {
                continue;
            }
            let Some(server) = self.servers.get_mut(peer) else {
                continue;
            };
            if !matches!(server.mode, Mode::Up | Mode::Cut) {
                continue;
            }
            let Some(r) = server.shards.get_mut(shard) else {
                continue;
            };
            let accepted_primary = r.primary_of_epoch.get(&epoch);
            if epoch < r.max_epoch || accepted_primary.is_some_and(|a| a != primary) {
                continue; // 409 stale epoch
            }
            r.max_epoch = epoch;
            r.primary_of_epoch.insert(epoch, primary.to_owned());
            r.role = Role::Secondary;
            r.primary = Some(primary.to_owned());
            r.log = p.log.clone();
            acks += 1;
        }
        let last = p.last_lsn();
        // Like the agent: the quorum counts the primary and its peers, the primary once, whether
        // or not the promote list names it (a previous replica bridging a change does not).
        let voters = p.peers.iter().filter(|x| *x != primary).count() + 1;
        // The commit point only moves on an entry of the primary's own epoch (the no-op first).
        let commit = if acks >= p.quorum.size(voters) && p.last_epoch() == epoch {
            last
        } else {
            p.commit_lsn
        };
        if commit > p.commit_lsn {
            for (i, e) in p.log.iter().enumerate().take(commit as usize) {
                let key = (shard.to_owned(), i as u64 + 1);
                if let Some(old) = self.committed.insert(key, *e)
                    && old != *e
                {
                    self.violations.push(format!(
                        "shard {shard}: committed entry at lsn {} changed epoch {old} -> {e} (primary {primary}, epoch {epoch})",
                        i + 1
                    ));
                }
            }
            let highest = self
                .committed
                .keys()
                .filter(|(s, _)| s == shard)
                .map(|(_, l)| *l)
                .max()
                .unwrap_or(0);
            if highest > commit {
                self.violations.push(format!(
                    "shard {shard}: primary {primary} of epoch {epoch} committed up to {commit} but lsn {highest} was committed before"
                ));
            }
        }
        for peer in p.peers.iter().chain(std::iter::once(&primary.to_owned())) {
            let Some(server) = self.servers.get_mut(peer) else {
                continue;
            };
            if !matches!(server.mode, Mode::Up | Mode::Cut) {
                continue;
            }
            if let Some(r) = server.shards.get_mut(shard)
                && r.primary_of_epoch.get(&epoch).is_some_and(|a| a == primary)
                && r.max_epoch == epoch
            {
                r.commit_lsn = r.commit_lsn.max(commit.min(r.last_lsn()));
                r.applied_lsn = r.commit_lsn;
            }
        }
        commit
    }

    fn reach(&mut self, server: &str, call: String) -> Result<&mut SimServer, ApiError> {
        self.calls.push(call);
        let s = self
            .servers
            .get_mut(server)
            .ok_or_else(|| ApiError::Transport(format!("no server {server}")))?;
        match s.mode {
            Mode::Up => Ok(s),
            Mode::Crashed => Err(ApiError::Refused),
            Mode::Hung | Mode::Cut => Err(ApiError::Timeout),
        }
    }

    /// `GET /status`.
    pub fn status(&mut self, server: &str) -> Result<AgentStatus, ApiError> {
        let s = self.reach(server, format!("status {server}"))?;
        Ok(AgentStatus {
            server: Some(server.to_owned()),
            shards: s
                .shards
                .iter()
                .map(|(id, r)| (id.clone(), r.status()))
                .collect(),
        })
    }

    /// `POST /shards/{shard}/fence`.
    pub fn fence(&mut self, server: &str, shard: &str, epoch: u64) -> Result<FenceReply, ApiError> {
        let bump = self.bumps.remove(&(server.to_owned(), shard.to_owned()));
        let s = self.reach(server, format!("fence {server} {shard} {epoch}"))?;
        let r = s.shards.get_mut(shard).ok_or_else(|| not_found(shard))?;
        if let Some(b) = bump {
            r.max_epoch = r.max_epoch.max(b);
        }
        if epoch > r.max_epoch || (epoch == r.max_epoch && !r.primary_of_epoch.contains_key(&epoch))
        {
            r.max_epoch = epoch;
            r.role = Role::Fenced;
            r.primary = None;
            r.stepping_down = false;
            Ok(FenceReply::Accepted(FenceAccepted {
                epoch,
                last_epoch: r.last_epoch(),
                last_lsn: r.last_lsn(),
            }))
        } else {
            Ok(FenceReply::Rejected {
                epoch: r.max_epoch,
                primary: r.primary_of_epoch.get(&r.max_epoch).cloned(),
            })
        }
    }

    /// `POST /shards/{shard}/promote`.
    pub fn promote(
        &mut self,
        server: &str,
        shard: &str,
        epoch: u64,
        replicas: &[ServerRef],
        quorum: Quorum,
    ) -> Result<(), ApiError> {
        let s = self.reach(server, format!("promote {server} {shard} {epoch}"))?;
        let r = s.shards.get_mut(shard).ok_or_else(|| not_found(shard))?;
        if r.role != Role::Fenced || r.max_epoch != epoch || r.primary_of_epoch.contains_key(&epoch)
        {
            return Err(ApiError::Conflict {
                epoch: r.max_epoch,
                primary: r.primary_of_epoch.get(&r.max_epoch).cloned(),
                message: format!("not fenced at exactly epoch {epoch}"),
            });
        }
        r.primary_of_epoch.insert(epoch, server.to_owned());
        r.role = Role::Primary;
        r.primary = Some(server.to_owned());
        r.peers = replicas.iter().map(|p| p.name.clone()).collect();
        r.quorum = quorum;
        r.log.push(epoch); // the no-op
        let noop = r.last_lsn();
        if let Some(other) = self
            .promoted
            .insert((shard.to_owned(), epoch), server.to_owned())
            && other != server
        {
            self.violations.push(format!(
                "shard {shard}: two primaries of epoch {epoch}: {other} and {server}"
            ));
        }
        if self.replicate(shard, server, None) >= noop {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "no-op not committed yet; still trying".into(),
            ))
        }
    }

    /// `POST /shards/{shard}/step-down`.
    pub fn step_down(&mut self, server: &str, shard: &str, to: &str) -> Result<u64, ApiError> {
        let s = self.reach(server, format!("step-down {server} {shard} {to}"))?;
        let r = s.shards.get_mut(shard).ok_or_else(|| not_found(shard))?;
        if r.role != Role::Primary {
            return Err(ApiError::Status {
                status: 409,
                message: "not primary".into(),
            });
        }
        r.stepping_down = true;
        let last = r.last_lsn();
        let only = [to.to_owned()];
        self.replicate(shard, server, Some(&only));
        match self.replica(to, shard) {
            Some(t) if t.last_lsn() >= last && self.mode(to) != Some(Mode::Crashed) => Ok(last),
            _ => Err(ApiError::Timeout),
        }
    }
}

fn not_found(shard: &str) -> ApiError {
    ApiError::Status {
        status: 404,
        message: format!("no shard {shard}"),
    }
}

/// [`AgentApi`] over a shared [`SimCluster`].
#[derive(Debug, Clone, Default)]
pub struct SimAgentApi {
    cluster: Arc<Mutex<SimCluster>>,
}

impl SimAgentApi {
    pub fn new(cluster: SimCluster) -> Self {
        Self {
            cluster: Arc::new(Mutex::new(cluster)),
        }
    }

    /// The cluster, to inspect or break it between ticks.
    pub fn cluster(&self) -> MutexGuard<'_, SimCluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AgentApi for SimAgentApi {
    async fn status(&self, server: &ServerRef) -> Result<AgentStatus, ApiError> {
        self.cluster().status(&server.name)
    }

    async fn fence(
        &self,
        server: &ServerRef,
        shard: &str,
        epoch: u64,
    ) -> Result<FenceReply, ApiError> {
        self.cluster().fence(&server.name, shard, epoch)
    }

    async fn promote(
        &self,
        server: &ServerRef,
        shard: &str,
        epoch: u64,
        replicas: Vec<ServerRef>,
        quorum: Quorum,
    ) -> Result<(), ApiError> {
        self.cluster()
            .promote(&server.name, shard, epoch, &replicas, quorum)
    }

    async fn step_down(&self, server: &ServerRef, shard: &str, to: &str) -> Result<u64, ApiError> {
        self.cluster().step_down(&server.name, shard, to)
    }
}
