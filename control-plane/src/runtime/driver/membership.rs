//! Changing the cluster a running [`ControlPlane`] manages: shards and servers added, removed or
//! moved, and the removed servers a shard's change under way still needs.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{debug, info};
use walshard_contract::ReplicaRef;

use super::ControlPlane;
use crate::cluster::ClusterSpec;
use crate::election::{ReconfigureError, ShardController};
use crate::runtime::agent_api::AgentApi;

impl<A: AgentApi> ControlPlane<A> {
    /// Manages `spec` from now on: servers (URLs may change), new shards, removed shards and
    /// changed replica sets. All or nothing: on an error nothing changed.
    ///
    /// New shards get a controller (elected on the next tick); a shard whose replica set changed
    /// runs a membership change ([`ShardController::reconfigure`]: an election under the joint
    /// rule, the promotion carrying the new list); removed shards are dropped (late answers of
    /// their calls are ignored), and so are removed servers, except that a server still in a
    /// changing shard's previous set keeps being polled and fenced until the change completes.
    /// The new topology is published at once.
    ///
    /// Refused with [`ReconfigureError::Busy`] while a shard whose set changes again is still
    /// completing its previous change (retry later), [`ReconfigureError::Invalid`] for a spec
    /// failing [`ClusterSpec::validate`], [`ReconfigureError::WriteQuorum`] when the write
    /// quorum differs. The caller keeps the agents of removed replicas running until the
    /// topology no longer shows their shards `reconfiguring`.
    pub fn reconfigure(&mut self, spec: ClusterSpec, now: Instant) -> Result<(), ReconfigureError> {
        spec.validate()?;
        if spec.write_quorum != self.spec.write_quorum {
            return Err(ReconfigureError::WriteQuorum {
                from: self.spec.write_quorum,
                to: spec.write_quorum,
            });
        }
        // Built aside, so a refusal changes nothing.
        let mut controllers = BTreeMap::new();
        for (shard, replicas) in &spec.shards {
            let c = match self.controllers.get(shard) {
                Some(c) => {
                    let mut c = c.clone();
                    c.reconfigure(replicas.clone())?;
                    c
                }
                None => {
                    info!(shard = %shard, replicas = ?replicas, "shard added");
                    ShardController::new(
                        shard.clone(),
                        replicas.clone(),
                        spec.write_quorum,
                        self.cfg.controller,
                    )
                }
            };
            controllers.insert(shard.clone(), c);
        }
        let old = std::mem::replace(&mut self.controllers, controllers);
        for (shard, mut c) in old {
            if self.controllers.contains_key(&shard) {
                continue;
            }
            info!(shard = %shard, "shard removed");
            for event in c.drain_events() {
                self.metrics.record(&event);
            }
            self.inflight_by_shard.remove(&shard);
            self.metrics.forget_shard(&shard, c.replicas());
        }
        let old = std::mem::replace(&mut self.spec, spec);
        for (server, url) in old.servers {
            if !self.spec.servers.contains_key(&server) {
                info!(server = %server, "server removed");
                self.leaving.insert(server, url);
            }
        }
        self.leaving
            .retain(|server, _| !self.spec.servers.contains_key(server));
        self.prune_leaving();
        for (shard, c) in &self.controllers {
            for server in old.shards.get(shard).into_iter().flatten() {
                if !c.replicas().contains(server) {
                    self.metrics.forget_replica(shard, server);
                }
            }
        }
        self.topology.send_replace(self.topology(now));
        Ok(())
    }

    /// Forgets the removed servers no shard needs any more.
    pub(super) fn prune_leaving(&mut self) {
        let needed: std::collections::BTreeSet<String> = self
            .controllers
            .values()
            .flat_map(ShardController::members)
            .collect();
        let gone: Vec<String> = self
            .leaving
            .keys()
            .filter(|s| !needed.contains(*s))
            .cloned()
            .collect();
        for server in gone {
            debug!(server = %server, "removed server no longer polled");
            self.leaving.remove(&server);
            self.servers.forget(&server);
            self.metrics.forget_server(&server);
        }
    }

    /// A server of the spec, or one leaving.
    pub(super) fn server_ref(&self, name: &str) -> Option<ReplicaRef> {
        self.spec.server_ref(name).or_else(|| {
            self.leaving.get(name).map(|url| ReplicaRef {
                name: name.to_owned(),
                url: url.clone(),
            })
        })
    }
}
