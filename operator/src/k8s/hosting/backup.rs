//! [`HostedPlanes`] as the backup manager's [`BaseBackups`]: a database's base backup is taken
//! through the agents its control plane runs with (their URLs and the cluster token), and its
//! archive lag comes from that control plane's topology.

use std::collections::BTreeMap;

use serde_json::json;
use tracing::debug;
use walshard_backup::take::{AgentRef, TakeProgress, take_base_backup};
use walshard_backup::{BackupStore, Manifest};
use walshard_contract::ArchiveReport;
use walshard_k8s_api::spec::ShardedDatabase;

use super::HostedPlanes;
use crate::k8s::backups::{BackupError, BaseBackups};

impl BaseBackups for HostedPlanes {
    async fn take(
        &self,
        db: &ShardedDatabase,
        store: &BackupStore,
    ) -> Result<Manifest, BackupError> {
        let namespace = db.metadata.namespace.clone().unwrap_or_default();
        let name = db.metadata.name.clone().unwrap_or_default();
        let shared = self
            .shared(&namespace, &name)
            .ok_or_else(|| BackupError::NotRunning {
                namespace: namespace.clone(),
                name: name.clone(),
            })?;
        let desired = shared.desired.borrow().clone();
        let agents: Vec<AgentRef> = desired
            .spec
            .servers
            .iter()
            .map(|(server, url)| AgentRef {
                server: server.clone(),
                url: url.clone(),
            })
            .collect();
        // What a restore rebuilds the fleet from: the same description `walshard backup
        // create` writes, so either kind of restore reads either kind of backup.
        let fleet = json!({
            "config": desired.layout.init_body(),
            "write_quorum": desired.spec.write_quorum,
            "wal_fsync": db.spec.durability.wal_fsync,
        });
        let key = shared.key();
        let progress = |p: TakeProgress<'_>| debug!(database = %key, progress = ?p, "base backup");
        Ok(take_base_backup(
            &shared.http,
            &shared.token,
            &agents,
            fleet,
            store,
            &progress,
        )
        .await?)
    }

    fn runs(&self, namespace: &str, name: &str) -> bool {
        self.shared(namespace, name).is_some()
    }

    fn archive(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, ArchiveReport>> {
        self.topology(namespace, name).map(|t| t.archive)
    }
}
