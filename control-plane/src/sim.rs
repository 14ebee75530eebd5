//! An in-memory cluster of simulated agents, for tests of the control plane (here, and in the
//! crates that embed it).
//!
//! Each simulated replica is a [`MemReplica`]: the agent's own rule book (`walshard-replica`:
//! fence, promote, accept a primary, append continuity and truncation, commit point, step-down,
//! restart) executed over an in-memory log. Replication is modelled as one append of the
//! primary's whole log to each secondary it can reach (the effect of the append protocol once it
//! converges), then an empty append carrying the commit point. The cluster records every
//! committed entry and flags violations of the invariants (a committed entry changed or lost, a
//! committed entry an append would truncate, two primaries in one epoch).
//!
//! Servers can be `Up`, `Crashed` (connection refused; restarts fenced), `Hung` (SIGSTOP: every
//! call times out, nothing replicates) or `Cut` (the control plane cannot reach it, its peers can).

pub mod http;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use walshard_replica::mem::MemReplica;
use walshard_replica::primary::epoch_start;
use walshard_replica::{Append, Refusal, WriteCheck, admit_write, quorum_commit, step_down_done};

use walshard_contract::{AgentStatus, FenceAccepted, Quorum, ReplicaRef, Role, ShardStatus};

use crate::runtime::{AgentApi, AgentCallError, FenceReply};

/// How a simulated server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Running normally.
    Up,
    /// Process dead: connection refused.
    Crashed,
    /// Process stopped: calls time out, no replication.
    Hung,
    /// Unreachable from the control plane only.
    Cut,
}

/// One simulated replica of a shard: the rule book's replica plus what its IO layer keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReplica {
    /// The replica's log and epochs, as the rule book keeps them.
    pub mem: MemReplica,
    /// Set by a step-down: the primary takes no more writes.
    pub stepping_down: bool,
    /// Set when primary: the shard's replicas and write quorum from the promote call.
    pub peers: Vec<String>,
    /// Set when primary: the write quorum from the promote call.
    pub quorum: Quorum,
}

impl Deref for SimReplica {
    type Target = MemReplica;
    fn deref(&self) -> &MemReplica {
        &self.mem
    }
}

impl SimReplica {
    fn fresh(server: &str) -> Self {
        Self {
            mem: MemReplica::new(server),
            stepping_down: false,
            peers: Vec::new(),
            quorum: Quorum::Majority,
        }
    }

    /// The role `/status` reports.
    pub fn role(&self) -> Role {
        self.mem.role()
    }

    /// The primary accepted for the promised epoch.
    pub fn primary(&self) -> Option<&str> {
        self.mem.promise().primary.as_deref()
    }

    fn status(&self) -> ShardStatus {
        ShardStatus {
            role: self.role(),
            epoch: self.promise().epoch,
            primary: self.primary().map(str::to_owned),
            accepting_writes: self.role() == Role::Primary
                && !self.stepping_down
                && epoch_start(&self.log, self.promise().epoch)
                    .is_some_and(|start| self.commit_lsn >= start),
            last_epoch: self.last_epoch(),
            last_lsn: self.last_lsn(),
            commit_lsn: self.commit_lsn,
            applied_lsn: self.commit_lsn,
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
            .or_insert_with(|| SimReplica::fresh(server));
    }

    /// The replica of `shard` on `server`, if it has one.
    pub fn replica(&self, server: &str, shard: &str) -> Option<&SimReplica> {
        self.servers.get(server)?.shards.get(shard)
    }

    /// How `server` behaves now; `None` for an unknown server.
    pub fn mode(&self, server: &str) -> Option<Mode> {
        self.servers.get(server).map(|s| s.mode)
    }

    /// Every agent call so far, as `"<verb> <server> [<shard> <arg>]"`.
    pub fn calls(&self) -> &[String] {
        &self.calls
    }

    /// Safety violations seen so far (a committed entry changed or lost, an append refused as committed); empty in a correct run.
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
                (r.role() == Role::Primary).then(|| (name.clone(), r.promise().epoch))
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
                r.mem.restart();
                r.stepping_down = false;
                r.peers.clear();
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
        // The agent's admission rule; the simulated primary hears every peer it can reach.
        let start = epoch_start(&r.log, r.promise().epoch).unwrap_or(u64::MAX);
        let quorum = r
            .quorum
            .size(r.peers.iter().filter(|p| *p != server).count() + 1);
        let check = WriteCheck {
            role: r.mem.role(),
            ready: r.commit_lsn >= start,
            draining: r.stepping_down,
            reachable: quorum,
            quorum,
        };
        admit_write(check).ok()?;
        let lsn = r.mem.propose()?;
        let only: Option<Vec<String>> = to.map(|t| t.iter().map(|s| (*s).to_owned()).collect());
        let committed = self.replicate(shard, server, only.as_deref());
        Some(committed >= lsn)
    }

    /// The replica of `shard` on `server` if the server runs (up, or only cut off from the
    /// control plane).
    fn running(&mut self, server: &str, shard: &str) -> Option<&mut SimReplica> {
        let s = self.servers.get_mut(server)?;
        if !matches!(s.mode, Mode::Up | Mode::Cut) {
            return None;
        }
        s.shards.get_mut(shard)
    }

    /// Replicates the primary's log to its reachable peers (optionally only `only`) with the
    /// rule book's append, advances the commit point with its quorum rule, and sends it to the
    /// replicas that follow the primary. A peer that answers a higher epoch makes the primary
    /// step down (as the agent does). Returns the primary's commit LSN.
    fn replicate(&mut self, shard: &str, primary: &str, only: Option<&[String]>) -> u64 {
        let Some(p) = self.replica(primary, shard).cloned() else {
            return 0;
        };
        let epoch = p.promise().epoch;
        let entries = p.entries();
        let whole = Append {
            prev_lsn: 0,
            prev_epoch: 0,
            commit_lsn: p.commit_lsn,
            entries: &entries,
        };
        // Like the agent: the quorum counts the primary and its peers, the primary once, whether
        // or not the promote list names it (a previous replica bridging a change does not).
        let voters: Vec<&String> = p.peers.iter().filter(|x| *x != primary).collect();
        let mut held = vec![0; voters.len() + 1];
        held[0] = p.last_lsn();
        let mut higher = None;
        for (i, peer) in voters.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(peer)) {
                continue;
            }
            let Some(r) = self.running(peer, shard) else {
                continue;
            };
            match r.mem.append(epoch, primary, &whole) {
                Ok(_) => held[i + 1] = p.last_lsn(),
                Err(Refusal::Stale { epoch: theirs, .. }) => {
                    higher = higher.max(Some(theirs));
                }
                Err(e @ Refusal::Committed { .. }) => self.violations.push(format!(
                    "shard {shard}: {peer} refused an append of primary {primary} (epoch {epoch}): {e}"
                )),
                Err(_) => {}
            }
        }
        let start = epoch_start(&p.log, epoch).unwrap_or(u64::MAX);
        let commit = quorum_commit(held, p.quorum.size(voters.len() + 1), start)
            .map_or(p.commit_lsn, |c| c.max(p.commit_lsn));
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
            if let Some(r) = self.running(primary, shard) {
                r.mem.commit_lsn = r.mem.commit_lsn.max(commit);
            }
        }
        // The commit point reaches every running replica that follows this primary.
        for peer in voters {
            let Some(r) = self.running(peer, shard) else {
                continue;
            };
            let follows = r.promise().epoch == epoch && r.primary() == Some(primary);
            let last = r.last_lsn();
            let Some(prev_epoch) = p.epoch_at(last).filter(|_| follows) else {
                continue;
            };
            let beat = Append {
                prev_lsn: last,
                prev_epoch,
                commit_lsn: commit,
                entries: &[],
            };
            let _ = r.mem.append(epoch, primary, &beat);
        }
        if let Some(theirs) = higher
            && let Some(r) = self.running(primary, shard)
        {
            r.mem.observe_epoch(theirs);
            r.stepping_down = false;
        }
        commit
    }

    fn reach(&mut self, server: &str, call: String) -> Result<&mut SimServer, AgentCallError> {
        self.calls.push(call);
        let s = self
            .servers
            .get_mut(server)
            .ok_or_else(|| AgentCallError::Transport(format!("no server {server}")))?;
        match s.mode {
            Mode::Up => Ok(s),
            Mode::Crashed => Err(AgentCallError::Refused),
            Mode::Hung | Mode::Cut => Err(AgentCallError::Timeout),
        }
    }

    /// `GET /status`.
    pub fn status(&mut self, server: &str) -> Result<AgentStatus, AgentCallError> {
        let s = self.reach(server, format!("status {server}"))?;
        Ok(AgentStatus {
            server: Some(server.to_owned()),
            schema: None,
            shards: s
                .shards
                .iter()
                .map(|(id, r)| (id.clone(), r.status()))
                .collect(),
            disk: None,
            archive: None,
        })
    }

    /// `POST /shards/{shard}/fence`.
    pub fn fence(
        &mut self,
        server: &str,
        shard: &str,
        epoch: u64,
    ) -> Result<FenceReply, AgentCallError> {
        let bump = self.bumps.remove(&(server.to_owned(), shard.to_owned()));
        let s = self.reach(server, format!("fence {server} {shard} {epoch}"))?;
        let r = s.shards.get_mut(shard).ok_or_else(|| not_found(shard))?;
        if let Some(b) = bump {
            r.mem.observe_epoch(b);
        }
        match r.mem.fence(epoch) {
            Ok((last_epoch, last_lsn)) => {
                r.stepping_down = false;
                Ok(FenceReply::Accepted(FenceAccepted {
                    epoch,
                    last_epoch,
                    last_lsn,
                }))
            }
            Err(_) => Ok(FenceReply::Rejected {
                epoch: r.promise().epoch,
                primary: r.primary().map(str::to_owned),
            }),
        }
    }

    /// `POST /shards/{shard}/promote`.
    pub fn promote(
        &mut self,
        server: &str,
        shard: &str,
        epoch: u64,
        replicas: &[ReplicaRef],
        quorum: Quorum,
    ) -> Result<(), AgentCallError> {
        let s = self.reach(server, format!("promote {server} {shard} {epoch}"))?;
        let r = s.shards.get_mut(shard).ok_or_else(|| not_found(shard))?;
        let noop = r.mem.promote(epoch).map_err(|e| AgentCallError::Conflict {
            epoch: r.promise().epoch,
            primary: r.primary().map(str::to_owned),
            message: format!("not fenced at exactly epoch {epoch}: {e}"),
        })?;
        r.peers = replicas.iter().map(|p| p.name.clone()).collect();
        r.quorum = quorum;
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
            Err(AgentCallError::Unavailable(
                "no-op not committed yet; still trying".into(),
            ))
        }
    }

    /// `POST /shards/{shard}/step-down`.
    pub fn step_down(
        &mut self,
        server: &str,
        shard: &str,
        to: &str,
    ) -> Result<u64, AgentCallError> {
        let s = self.reach(server, format!("step-down {server} {shard} {to}"))?;
        let r = s.shards.get_mut(shard).ok_or_else(|| not_found(shard))?;
        let peers = r.peers.iter().map(String::as_str);
        match r.mem.node.step_down(peers, to) {
            Ok(()) => {}
            Err(e @ Refusal::NotPeer(_)) => {
                return Err(AgentCallError::Status {
                    status: 400,
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(AgentCallError::Status {
                    status: 409,
                    message: "not primary".into(),
                });
            }
        }
        r.stepping_down = true;
        let last = r.last_lsn();
        let only = [to.to_owned()];
        self.replicate(shard, server, Some(&only));
        let target = self.replica(to, shard).map(|t| t.last_lsn());
        if self.mode(to) != Some(Mode::Crashed) && step_down_done(0, target, last) {
            Ok(last)
        } else {
            Err(AgentCallError::Timeout)
        }
    }
}

fn not_found(shard: &str) -> AgentCallError {
    AgentCallError::Status {
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
    /// An API over `cluster`, shared with its clones.
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
    async fn status(&self, server: &ReplicaRef) -> Result<AgentStatus, AgentCallError> {
        self.cluster().status(&server.name)
    }

    async fn fence(
        &self,
        server: &ReplicaRef,
        shard: &str,
        epoch: u64,
    ) -> Result<FenceReply, AgentCallError> {
        self.cluster().fence(&server.name, shard, epoch)
    }

    async fn promote(
        &self,
        server: &ReplicaRef,
        shard: &str,
        epoch: u64,
        replicas: Vec<ReplicaRef>,
        quorum: Quorum,
    ) -> Result<(), AgentCallError> {
        self.cluster()
            .promote(&server.name, shard, epoch, &replicas, quorum)
    }

    async fn step_down(
        &self,
        server: &ReplicaRef,
        shard: &str,
        to: &str,
    ) -> Result<u64, AgentCallError> {
        self.cluster().step_down(&server.name, shard, to)
    }
}
