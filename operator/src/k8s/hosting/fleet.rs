//! [`HostedPlanes`] as the reconciler's [`Fleet`].

use walshard_contract::Topology;
use walshard_k8s_api::spec::ShardedDatabase;

use super::HostedPlanes;
use crate::k8s::reconcile::{AgentAccess, Fleet, FleetError};

impl Fleet for HostedPlanes {
    async fn ensure(&self, db: &ShardedDatabase, access: &AgentAccess) -> Result<(), FleetError> {
        HostedPlanes::ensure(self, db, access)
            .await
            .map_err(FleetError::new)
    }

    async fn remove(&self, namespace: &str, name: &str) {
        HostedPlanes::remove(self, namespace, name).await;
    }

    fn topology(&self, namespace: &str, name: &str) -> Option<Topology> {
        HostedPlanes::topology(self, namespace, name)
    }

    async fn drain(&self, namespace: &str, name: &str, server: &str) -> Result<bool, FleetError> {
        HostedPlanes::drain(self, namespace, name, server)
            .await
            .map_err(FleetError::new)
    }

    async fn handover(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<bool, FleetError> {
        HostedPlanes::handover(self, namespace, name, server)
            .await
            .map_err(FleetError::new)
    }

    async fn switchover(
        &self,
        namespace: &str,
        name: &str,
        shard: &str,
        to: &str,
    ) -> Result<bool, FleetError> {
        HostedPlanes::switchover(self, namespace, name, shard, to)
            .await
            .map_err(FleetError::new)
    }
}
