//! The controllers' actions as tasks: fence, promote and step-down calls to the agents run
//! concurrently, and each answer is fed back to its shard's controller as it arrives.

use std::sync::Arc;
use std::time::Instant;

use tracing::{error, warn};
use walshard_contract::ReplicaRef;

use super::ControlPlane;
use crate::election::{Action, FenceAnswer, PromoteOutcome};
use crate::runtime::agent_api::{AgentApi, AgentCallError, FenceReply};

/// A finished action task: which call it was and the agent's answer.
pub(super) enum Completion {
    Fence {
        shard: String,
        server: String,
        epoch: u64,
        result: Result<FenceReply, AgentCallError>,
    },
    Promote {
        shard: String,
        server: String,
        epoch: u64,
        result: Result<(), AgentCallError>,
    },
    StepDown {
        shard: String,
        server: String,
        result: Result<u64, AgentCallError>,
    },
}

impl Completion {
    fn shard(&self) -> &str {
        match self {
            Completion::Fence { shard, .. }
            | Completion::Promote { shard, .. }
            | Completion::StepDown { shard, .. } => shard,
        }
    }
}

impl<A: AgentApi> ControlPlane<A> {
    /// Spawns the task that executes `action`.
    pub(super) fn start(&mut self, action: Action) {
        let api = Arc::clone(&self.api);
        let Some(server) = self.server_ref(action.server()) else {
            error!(?action, "action on a server missing from the spec");
            return;
        };
        *self
            .inflight_by_shard
            .entry(action.shard().to_owned())
            .or_default() += 1;
        match action {
            Action::Fence { shard, epoch, .. } => {
                self.inflight.spawn(async move {
                    let result = api.fence(&server, &shard, epoch).await;
                    Completion::Fence {
                        shard,
                        server: server.name,
                        epoch,
                        result,
                    }
                });
            }
            Action::Promote {
                shard,
                epoch,
                replicas,
                quorum,
                ..
            } => {
                let refs: Vec<ReplicaRef> = replicas
                    .iter()
                    .filter_map(|r| self.spec.server_ref(r))
                    .collect();
                self.inflight.spawn(async move {
                    let result = api.promote(&server, &shard, epoch, refs, quorum).await;
                    Completion::Promote {
                        shard,
                        server: server.name,
                        epoch,
                        result,
                    }
                });
            }
            Action::StepDown { shard, to, .. } => {
                self.inflight.spawn(async move {
                    let result = api.step_down(&server, &shard, &to).await;
                    Completion::StepDown {
                        shard,
                        server: server.name,
                        result,
                    }
                });
            }
        }
    }

    /// Feeds a finished action to its controller.
    pub(super) fn complete(
        &mut self,
        done: Result<Completion, tokio::task::JoinError>,
        now: Instant,
    ) {
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                // The shard's controller times the lost answer out by itself.
                error!(error = %e, "an agent call task failed");
                return;
            }
        };
        if let Some(n) = self.inflight_by_shard.get_mut(done.shard()) {
            *n = n.saturating_sub(1);
        }
        // A shard removed by `reconfigure`: its late answers are dropped.
        let Some(c) = self.controllers.get_mut(done.shard()) else {
            return;
        };
        match done {
            Completion::Fence {
                server,
                epoch,
                result,
                ..
            } => {
                let answer = match result {
                    Ok(FenceReply::Accepted(a)) => FenceAnswer::Accepted {
                        server,
                        epoch: a.epoch,
                        last_epoch: a.last_epoch,
                        last_lsn: a.last_lsn,
                    },
                    Ok(FenceReply::Rejected { epoch: theirs, .. })
                    | Err(AgentCallError::Conflict { epoch: theirs, .. }) => {
                        FenceAnswer::Rejected {
                            server,
                            epoch: theirs,
                        }
                    }
                    Err(e) => {
                        warn!(shard = %c.shard(), server = %server, epoch, error = %e, "fence failed");
                        FenceAnswer::Unreachable { server }
                    }
                };
                c.on_fence_answer(epoch, answer);
            }
            Completion::Promote {
                server,
                epoch,
                result,
                ..
            } => {
                let outcome = match result {
                    Ok(()) => PromoteOutcome::Done,
                    Err(AgentCallError::Unavailable(m)) => PromoteOutcome::Pending(m),
                    Err(AgentCallError::Conflict { epoch: theirs, .. }) => {
                        PromoteOutcome::Rejected { epoch: theirs }
                    }
                    Err(e) => PromoteOutcome::Failed(e.to_string()),
                };
                c.on_promote_result(&server, epoch, outcome, now);
            }
            Completion::StepDown { server, result, .. } => {
                c.on_step_down_result(&server, result.map_err(|e| e.to_string()));
            }
        }
    }
}
