//! A test double of the per-database control planes: records every call, answers drains and
//! shows a topology as the test sets them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use walshard_contract::Topology;
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_operator::k8s::reconcile::{AgentAccess, Fleet, FleetError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `ensure` with the database's name, the token and the servers of its resolved spec.
    Ensure {
        name: String,
        token: String,
        servers: Vec<String>,
        shards: usize,
    },
    Remove {
        namespace: String,
        name: String,
    },
    Drain {
        name: String,
        server: String,
    },
    Handover {
        name: String,
        server: String,
    },
    Switchover {
        name: String,
        shard: String,
        to: String,
    },
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    topology: Option<Topology>,
    /// Answers of the next drains; `Ok(true)` once empty.
    drains: VecDeque<Result<bool, String>>,
}

#[derive(Clone, Default)]
pub struct FakeFleet(Arc<Mutex<State>>);

impl FakeFleet {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("fake fleet lock")
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn set_topology(&self, topology: Option<Topology>) {
        self.state().topology = topology;
    }

    pub fn answer_drains(&self, answers: impl IntoIterator<Item = Result<bool, String>>) {
        self.state().drains.extend(answers);
    }
}

impl Fleet for FakeFleet {
    async fn ensure(&self, db: &ShardedDatabase, access: &AgentAccess) -> Result<(), FleetError> {
        let resolved = db.spec.resolve().map_err(FleetError::new)?;
        self.state().calls.push(Call::Ensure {
            name: db.metadata.name.clone().unwrap_or_default(),
            token: access.token.clone(),
            servers: resolved.placement.keys().cloned().collect(),
            shards: resolved.shards.len(),
        });
        Ok(())
    }

    async fn remove(&self, namespace: &str, name: &str) {
        self.state().calls.push(Call::Remove {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    fn topology(&self, _namespace: &str, _name: &str) -> Option<Topology> {
        self.state().topology.clone()
    }

    async fn drain(&self, _namespace: &str, name: &str, server: &str) -> Result<bool, FleetError> {
        let mut state = self.state();
        state.calls.push(Call::Drain {
            name: name.to_owned(),
            server: server.to_owned(),
        });
        state
            .drains
            .pop_front()
            .unwrap_or(Ok(true))
            .map_err(FleetError::new)
    }

    /// Done once the topology shows `server` leading no shard (as the real control plane).
    async fn handover(
        &self,
        _namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<bool, FleetError> {
        let mut state = self.state();
        state.calls.push(Call::Handover {
            name: name.to_owned(),
            server: server.to_owned(),
        });
        Ok(!state.topology.as_ref().is_some_and(|t| {
            t.shards
                .values()
                .any(|s| s.primary.as_deref() == Some(server))
        }))
    }

    /// Done once the topology shows `to` as the primary of `shard`.
    async fn switchover(
        &self,
        _namespace: &str,
        name: &str,
        shard: &str,
        to: &str,
    ) -> Result<bool, FleetError> {
        let mut state = self.state();
        state.calls.push(Call::Switchover {
            name: name.to_owned(),
            shard: shard.to_owned(),
            to: to.to_owned(),
        });
        if shard == "sh9" {
            return Err(FleetError::new(format!(
                "switchover: unknown shard {shard:?}"
            )));
        }
        Ok(state.topology.as_ref().and_then(|t| t.primary(shard)) == Some(to))
    }
}
