//! How a [`ShardController`] advances: [`ShardController::poll`] and the election steps it takes.

use std::time::Instant;

use tracing::{debug, info, warn};
use walshard_contract::{Role, majority};

use super::{Assessment, ControllerState, ShardController};
use crate::election::action::{Action, ControllerEvent};
use crate::election::vote::{Decision, FenceAnswer, VoterSet, decide_joint};

impl ShardController {
    /// Whether `server` reports itself the primary of `epoch` (a previous replica bridging a
    /// replica-set change only once its no-op is committed).
    fn reports_primary(&self, server: &str, epoch: u64) -> bool {
        let bridge = !self.is_replica(server);
        self.reports
            .get(server)
            .is_some_and(|r| r.role == Role::Primary && r.epoch == epoch)
            && (!bridge || self.noop_reported(server, epoch))
    }

    /// Advances the state machine at `now` and returns the actions to execute.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        if let Some((preferred, why)) = self.joint.as_mut().and_then(|j| j.due.take()) {
            return self.start_election(now, preferred, &why, None);
        }
        match self.state.clone() {
            ControllerState::Starting | ControllerState::Healthy { .. } => {
                self.check_primary(now, None)
            }
            ControllerState::NoQuorum {
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
            ControllerState::NoQuorum { retry_at, .. } => self.check_primary(now, Some(retry_at)),
            ControllerState::SteppingDown {
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
                    self.state = ControllerState::SteppingDown {
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
            ControllerState::Electing {
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
                        self.state = ControllerState::Promoting {
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
            ControllerState::Promoting {
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
                    ControllerState::Healthy { primary, epoch: e } if *primary == server && *e == epoch);
                if changed {
                    info!(shard = %self.shard, primary = %server, epoch, previous = %self.state.phase(),
                        "shard has a primary");
                    self.state = ControllerState::Healthy {
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
        self.state = ControllerState::Electing {
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
    pub(super) fn settle_joint(&mut self, server: &str, epoch: u64, committed: bool) {
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
            ControllerState::NoQuorum {
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
                self.state = ControllerState::NoQuorum {
                    reason,
                    since: now,
                    retry_at,
                    preferred,
                };
            }
        }
    }

    pub(super) fn complete(
        &mut self,
        server: String,
        epoch: u64,
        started: Instant,
        now: Instant,
        why: &str,
    ) {
        let duration = now.saturating_duration_since(started);
        info!(shard = %self.shard, epoch, primary = %server, ?duration, why, "election completed");
        self.events.push(ControllerEvent::ElectionCompleted {
            shard: self.shard.clone(),
            epoch,
            primary: server.clone(),
            duration,
        });
        self.state = ControllerState::Healthy {
            primary: server,
            epoch,
        };
    }
}
