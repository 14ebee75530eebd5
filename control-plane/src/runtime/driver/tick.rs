//! One round of the loop: heartbeats to every server, the controllers' decisions and actions
//! until they settle or the tick's time is up, then the metrics and the published topology.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};
use walshard_contract::ReplicaRef;

use super::{ControlPlane, TickSummary};
use crate::election::Heartbeat;
use crate::runtime::agent_api::AgentApi;

impl<A: AgentApi> ControlPlane<A> {
    /// One round: heartbeats, decisions, actions. `now` is the time the tick starts; time spent
    /// inside the tick is added to it.
    pub async fn tick(&mut self, now: Instant) -> TickSummary {
        let t0 = Instant::now();
        let at = move || now + t0.elapsed();
        let mut summary = TickSummary::default();

        // 1. Heartbeats, all servers (and leaving ones) at once.
        let polls = self
            .spec
            .servers
            .iter()
            .chain(&self.leaving)
            .map(|(name, url)| {
                let api = Arc::clone(&self.api);
                let server = ReplicaRef {
                    name: name.clone(),
                    url: url.clone(),
                };
                async move {
                    let result = api.status(&server).await;
                    (server.name, result)
                }
            });
        let results = futures::future::join_all(polls).await;
        let t = at();
        for (server, result) in results {
            match result {
                Ok(status) => {
                    self.servers.record(&server, Heartbeat::Ok, t);
                    match &status.archive {
                        Some(reports) => {
                            self.archive.insert(server.clone(), reports.clone());
                        }
                        None => {
                            self.archive.remove(&server);
                        }
                    }
                    if status.disk.as_ref().is_some_and(|d| d.full) {
                        self.disk_full.insert(server.clone());
                    } else {
                        self.disk_full.remove(&server);
                    }
                    for c in self.controllers.values_mut() {
                        match status.shards.get(c.shard()) {
                            Some(s) => c.observe_status(&server, s, t),
                            None => c.observe_failure(&server, Heartbeat::Failed, t),
                        }
                    }
                    summary.reachable.push(server);
                }
                Err(e) => {
                    debug!(server = %server, error = %e, "heartbeat failed");
                    self.servers.record(&server, e.heartbeat(), t);
                    for c in self.controllers.values_mut() {
                        c.observe_failure(&server, e.heartbeat(), t);
                    }
                    summary.unreachable.insert(server, e.to_string());
                }
            }
        }

        // 2. Decisions and actions, until settled or out of time.
        let deadline = t0 + self.cfg.action_wait;
        let mut budget: BTreeMap<String, usize> = BTreeMap::new();
        loop {
            let t = at();
            while let Some(done) = self.inflight.try_join_next() {
                self.complete(done, t);
            }
            let shards: Vec<String> = self.controllers.keys().cloned().collect();
            for shard in shards {
                let used = budget.entry(shard.clone()).or_default();
                if *used >= self.cfg.max_actions_per_shard {
                    continue;
                }
                let Some(c) = self.controllers.get_mut(&shard) else {
                    continue;
                };
                let actions = c.poll(t);
                *used += actions.len();
                if *used >= self.cfg.max_actions_per_shard {
                    warn!(shard = %shard, "action budget of this tick spent");
                }
                for action in actions {
                    self.start(action.clone());
                    summary.actions.push(action);
                }
            }
            let waiting = self.controllers.iter().any(|(shard, c)| {
                c.awaiting_answers() && self.inflight_by_shard.get(shard).is_some_and(|n| *n > 0)
            });
            if !waiting {
                break;
            }
            let now_real = Instant::now();
            if now_real >= deadline {
                break;
            }
            let wake = (now_real + self.cfg.poll_step).min(deadline);
            if let Ok(Some(done)) =
                tokio::time::timeout_at(wake.into(), self.inflight.join_next()).await
            {
                self.complete(done, at());
            }
        }

        // 3. Metrics and topology.
        self.prune_leaving();
        let t = at();
        for c in self.controllers.values_mut() {
            for event in c.drain_events() {
                self.metrics.record(&event);
            }
        }
        let topology = self.topology(t);
        self.metrics.update(&topology);
        summary.states = topology
            .shards
            .iter()
            .map(|(id, s)| (id.clone(), s.state))
            .collect();
        summary.in_flight = self.inflight.len();
        self.topology.send_replace(topology);
        summary
    }
}
