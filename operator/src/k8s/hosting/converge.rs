//! The converger: moves the spec the control plane runs towards the desired one, one safe step
//! at a time ([`super::plan::next_spec`]), sending `/config` to agents that lack shards first.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use walshard_control_plane::ClusterSpec;
use walshard_control_plane::election::ReconfigureError;
use walshard_control_plane::fleet_ops;

use super::database::{RETRY_CAP, Shared};
use super::plan::{self, Desired};

/// What a converger step left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The control plane runs the desired spec: nothing to retry.
    Settled,
    /// A change was handed to the control plane or an agent accepted its `/config`.
    Progressed,
    /// Something is still to be done (an agent to configure, a primary to switch over, a
    /// record to write, a change refused as `Busy`).
    Waiting,
}

impl Shared {
    /// One converger step: `/config`, switchovers, the record, then the change.
    pub(super) async fn converge_once(&self) -> Step {
        let desired = self.desired.borrow().clone();
        let topology = self.handle.topology();
        let applied = self.progress().applied.clone();
        let (next, handovers) = plan::next_spec(&desired.spec, &applied, &topology);

        let lost = plan::unconfigured(&topology);
        let mut servers = lost.clone();
        {
            let p = self.progress();
            servers.extend(
                plan::newcomers(&applied, &next)
                    .into_iter()
                    .filter(|pair| !p.configured.contains(pair))
                    .map(|(server, _)| server),
            );
        }
        let mut step = Step::Settled;
        if !servers.is_empty() {
            step = if self
                .configure(&desired, [&applied, &next], &servers, &lost)
                .await
            {
                Step::Progressed
            } else {
                Step::Waiting
            };
        }
        if !handovers.is_empty() {
            step = Step::Waiting;
        }
        for h in &handovers {
            if let Err(e) = self.hand_over(h).await {
                debug!(database = %self.key(), error = %e, "switchover not requested");
            }
        }

        let progress = self.progress().clone();
        let next = plan::gate(&next, &progress.applied, &desired.spec, |server, shard| {
            progress
                .configured
                .contains(&(server.to_owned(), shard.to_owned()))
        });
        let record = plan::settled(&progress.applied, &topology, progress.record.as_ref());
        if progress.record.as_ref() != Some(&record) {
            if let Err(e) = self.persist(&record).await {
                warn!(database = %self.key(), error = %e, "cannot record the settled replica sets; changes wait");
                return Step::Waiting;
            }
            self.progress().record = Some(record);
        }
        if next == progress.applied {
            return step;
        }
        match self.handle.reconfigure(next.clone()).await {
            Ok(()) => {
                info!(database = %self.key(), shards = ?next.shards, "replica sets changing");
                self.progress().applied = next;
                Step::Progressed
            }
            Err(ReconfigureError::Busy { shard }) => {
                debug!(database = %self.key(), %shard, "a change is under way; retrying");
                Step::Waiting
            }
            Err(e) => {
                warn!(database = %self.key(), error = %e, "reconfiguration refused");
                Step::Waiting
            }
        }
    }

    /// Sends `/config` to `servers` (concurrently) with every shard they hold in `specs`;
    /// `lost` ones reported a shard missing, so what they confirmed before is forgotten. A
    /// server whose `/config` fails is tried again after a pause of its own backoff. `true` when
    /// some agent accepted its `/config`.
    async fn configure(
        &self,
        desired: &Desired,
        specs: [&ClusterSpec; 2],
        servers: &BTreeSet<String>,
        lost: &BTreeSet<String>,
    ) -> bool {
        let now = Instant::now();
        let due: Vec<(String, String, BTreeSet<String>)> = {
            let mut p = self.progress();
            p.configured.retain(|(server, _)| !lost.contains(server));
            servers
                .iter()
                .filter(|s| p.attempts.get(*s).is_none_or(|(at, _)| *at <= now))
                .filter_map(|server| {
                    let url = specs.iter().find_map(|s| s.servers.get(server))?.clone();
                    let held = plan::held_by(
                        server,
                        [&desired.spec.shards, &specs[0].shards, &specs[1].shards],
                    );
                    Some((server.clone(), url, held))
                })
                .collect()
        };
        let calls = due.into_iter().map(|(server, url, held)| async move {
            let body = fleet_ops::agent_config(
                &desired.layout.schema,
                &desired.layout.shards,
                held.iter().map(String::as_str),
            );
            let result = match &body {
                Some(body) => fleet_ops::configure_agent(&self.http, &url, &self.token, body).await,
                None => Ok(()),
            };
            (server, held, result)
        });
        let mut accepted = false;
        for (server, held, result) in futures::future::join_all(calls).await {
            let mut p = self.progress();
            match result {
                Ok(()) => {
                    debug!(database = %self.key(), %server, shards = ?held, "agent configured");
                    accepted = true;
                    p.attempts.remove(&server);
                    p.configured
                        .extend(held.into_iter().map(|shard| (server.clone(), shard)));
                }
                Err(e) => {
                    let mut pauses = p
                        .attempts
                        .remove(&server)
                        .map_or_else(|| self.retry.start(), |(_, pauses)| pauses);
                    let delay = pauses.next_pause();
                    p.attempts.insert(server.clone(), (now + delay, pauses));
                    debug!(database = %self.key(), %server, error = %e, retry_in = ?delay, "agent not configured yet");
                }
            }
        }
        accepted
    }
}

/// Moves the running spec towards the desired one on every topology or spec change; while a
/// step waits for something, again after a jittered pause of the converger's backoff (doubling
/// from `retry` up to [`RETRY_CAP`], reset by progress), and at least every [`RETRY_CAP`].
pub(super) async fn converge(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut topology = shared.handle.watch();
    let mut desired = shared.desired.subscribe();
    let mut pauses = shared.retry.start();
    loop {
        let pause = match shared.converge_once().await {
            Step::Settled => {
                pauses.reset();
                RETRY_CAP
            }
            Step::Progressed => {
                pauses.reset();
                pauses.next_pause()
            }
            Step::Waiting => pauses.next_pause(),
        };
        tokio::select! {
            r = topology.changed() => if r.is_err() { return },
            r = desired.changed() => if r.is_err() { return },
            () = tokio::time::sleep(pause) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}
