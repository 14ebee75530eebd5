//! Planned handovers of a server that stays in the spec but is about to stop (a rolling restart,
//! a pod being deleted or evicted), and user switchovers: the same planned switchover the
//! drains use (`step-down` on the primary, then an election that prefers the target).

use tracing::info;

use super::{HostedPlanes, HostingError};
use walshard_contract::Topology;
use walshard_control_plane::fleet_ops::{self, Handover};
use walshard_control_plane::placement::ShardReplicas;

/// The switchovers that take every primary off `server`: each shard it leads goes to its most
/// up-to-date reachable other replica (`None` when none qualifies yet).
pub fn handovers_off(server: &str, replicas: &ShardReplicas, topology: &Topology) -> Vec<Handover> {
    let staying: ShardReplicas = replicas
        .iter()
        .map(|(shard, set)| {
            let others = set.iter().filter(|s| *s != server).cloned().collect();
            (shard.clone(), others)
        })
        .collect();
    fleet_ops::handovers(topology, &[server.to_owned()], &staying)
}

/// `to` is a replica of `shard` in `replicas`.
pub fn check_switchover(replicas: &ShardReplicas, shard: &str, to: &str) -> Result<(), String> {
    match replicas.get(shard) {
        None => Err(format!("unknown shard {shard:?}")),
        Some(set) if !set.iter().any(|s| s == to) => {
            Err(format!("{to:?} holds no replica of shard {shard:?}"))
        }
        Some(_) => Ok(()),
    }
}

impl HostedPlanes {
    /// One step of handing `server`'s primaries over: requests the switchovers of
    /// [`handovers_off`] and answers `true` once the topology shows `server` leading no shard.
    /// Call it until `true`, then stop the server.
    pub async fn handover(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<bool, HostingError> {
        let shared = self.running(namespace, name)?;
        let desired = shared.desired.borrow().clone();
        let topology = shared.handle.topology();
        let pending = handovers_off(server, &desired.spec.shards, &topology);
        for h in &pending {
            shared.hand_over(h).await?;
        }
        Ok(pending.is_empty())
    }

    /// A user switchover of `shard` to `to` (one of its replicas); `Ok(true)` once `to` is its
    /// primary, `Ok(false)` while under way.
    pub async fn switchover(
        &self,
        namespace: &str,
        name: &str,
        shard: &str,
        to: &str,
    ) -> Result<bool, HostingError> {
        let shared = self.running(namespace, name)?;
        let desired = shared.desired.borrow().clone();
        check_switchover(&desired.spec.shards, shard, to).map_err(HostingError::Switchover)?;
        let topology = shared.handle.topology();
        if topology.primary(shard) == Some(to) {
            return Ok(true);
        }
        let from = topology.primary(shard).unwrap_or_default().to_owned();
        info!(database = %shared.key(), shard, %from, to, "user switchover");
        shared
            .hand_over(&Handover {
                shard: shard.to_owned(),
                from,
                to: Some(to.to_owned()),
            })
            .await?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walshard_contract::{Phase, ReplicaInfo, ShardInfo};

    fn replica(server: &str, lsn: u64) -> ReplicaInfo {
        ReplicaInfo {
            server: server.to_owned(),
            reachable: true,
            suspected: false,
            role: None,
            epoch: Some(1),
            last_epoch: Some(1),
            last_lsn: Some(lsn),
            commit_lsn: None,
            applied_lsn: None,
            halted: false,
            lag: None,
        }
    }

    #[test]
    fn primaries_go_to_the_most_up_to_date_other_replica() {
        let replicas: ShardReplicas = [
            ("sh1".to_owned(), vec!["A".into(), "B".into(), "C".into()]),
            ("sh2".to_owned(), vec!["B".into(), "C".into(), "A".into()]),
        ]
        .into();
        let shard = |primary: &str, lsns: [u64; 3]| ShardInfo {
            shard: String::new(),
            state: Phase::Healthy,
            reason: None,
            primary: Some(primary.to_owned()),
            epoch: 1,
            quorum_reachable: true,
            replicas: vec![
                replica("A", lsns[0]),
                replica("B", lsns[1]),
                replica("C", lsns[2]),
            ],
            reconfiguring: false,
        };
        let topology = Topology {
            shards: [
                ("sh1".to_owned(), shard("A", [9, 7, 8])),
                ("sh2".to_owned(), shard("B", [9, 9, 9])),
            ]
            .into(),
            servers: Default::default(),
            archive: Default::default(),
        };
        let h = handovers_off("A", &replicas, &topology);
        assert_eq!(h.len(), 1, "A leads sh1 only: {h:?}");
        assert_eq!(
            (h[0].shard.as_str(), h[0].to.as_deref()),
            ("sh1", Some("C"))
        );
        assert!(handovers_off("C", &replicas, &topology).is_empty());
        assert!(check_switchover(&replicas, "sh1", "B").is_ok());
        assert!(check_switchover(&replicas, "sh9", "B").is_err());
        assert!(check_switchover(&replicas, "sh1", "D").is_err());
    }
}
