//! What both runtimes (local processes and the Kubernetes operator) do to a fleet around the
//! control plane, written once: the `/config` an agent gets, who takes over from a primary whose
//! server leaves, and when the topology has settled on a spec. The cluster spec of a placement is
//! [`ClusterSpec::from_placement`](crate::cluster::ClusterSpec::from_placement).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value as Json, json};
use thiserror::Error;
use walshard_contract::{Schema, ShardSpec};

use walshard_contract::{Phase, ShardInfo, Topology};

use crate::placement::ShardReplicas;

/// Timeout of one `POST /config`.
pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(10);

/// The staying replica of `info`'s shard that should take over its primary: the reachable,
/// unsuspected one with the highest `(last_epoch, last_lsn)` (ties: the lowest name, so the
/// choice is stable), or `None` when no staying replica qualifies.
pub fn switchover_target(info: &ShardInfo, staying: &[String]) -> Option<String> {
    info.replicas
        .iter()
        .filter(|r| staying.contains(&r.server) && r.reachable && !r.suspected)
        .max_by(|a, b| {
            (a.last_epoch, a.last_lsn)
                .cmp(&(b.last_epoch, b.last_lsn))
                .then_with(|| b.server.cmp(&a.server))
        })
        .map(|r| r.server.clone())
}

/// A primary that must move before its server leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The shard whose primary is on the leaving server.
    pub shard: String,
    /// The leaving server holding the primary.
    pub from: String,
    /// The staying replica to switch over to; `None` when none qualifies yet.
    pub to: Option<String>,
}

/// The shards whose primary is on one of `leaving`, each with its [`switchover_target`] among
/// its replicas in `next` (the replica sets after the change). Shards absent from `next` are
/// being removed and need no handover.
pub fn handovers(topology: &Topology, leaving: &[String], next: &ShardReplicas) -> Vec<Handover> {
    topology
        .shards
        .iter()
        .filter_map(|(shard, info)| {
            let from = info.primary.as_deref()?;
            if !leaving.iter().any(|s| s == from) {
                return None;
            }
            let staying = next.get(shard)?;
            Some(Handover {
                shard: shard.clone(),
                from: from.to_owned(),
                to: switchover_target(info, staying),
            })
        })
        .collect()
}

/// Whether `shard` is settled on `replicas`: healthy with a primary, no replica-set change under
/// way, and exactly `replicas` (in any order) as its set.
pub fn shard_settled(topology: &Topology, shard: &str, replicas: &[String]) -> bool {
    topology.shards.get(shard).is_some_and(|info| {
        let have: BTreeSet<&str> = info.replicas.iter().map(|r| r.server.as_str()).collect();
        let want: BTreeSet<&str> = replicas.iter().map(String::as_str).collect();
        info.state == Phase::Healthy
            && info.primary.is_some()
            && !info.reconfiguring
            && have == want
    })
}

/// How many shards of `expected` are [`shard_settled`].
pub fn settled_shards(topology: &Topology, expected: &ShardReplicas) -> usize {
    expected
        .iter()
        .filter(|(shard, replicas)| shard_settled(topology, shard, replicas))
        .count()
}

/// Every shard of `expected` is settled (only then may servers that left stop).
pub fn is_settled(topology: &Topology, expected: &ShardReplicas) -> bool {
    settled_shards(topology, expected) == expected.len()
}

/// The `POST /config` body of a server holding `held` (ids of `shards`):
/// `{"schema", "shards": [{"<key>_low", "Shard_id", "Shard_size"}]}`; `None` when it holds none.
/// Unknown ids are skipped.
pub fn agent_config<'a>(
    schema: &Schema,
    shards: &[ShardSpec],
    held: impl IntoIterator<Item = &'a str>,
) -> Option<Json> {
    let key = schema.key().as_str();
    let list: Vec<Json> = held
        .into_iter()
        .filter_map(|id| shards.iter().find(|s| s.id.as_str() == id))
        .map(|s| Json::Object(s.to_json(key)))
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(json!({"schema": schema, "shards": list}))
}

/// Why `POST /config` failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigureError {
    /// The request did not get an answer (the transport error).
    #[error("/config: {0}")]
    Unreachable(String),
    /// The agent answered with a non-success status.
    #[error("/config answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The answer's `message`, or its body when it has none.
        message: String,
    },
}

/// Sends `body` ([`agent_config`]) to the agent at `url` with the cluster token. The agent adds
/// the shards it lacks and accepts the same configuration again.
pub async fn configure_agent(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Json,
) -> Result<(), ConfigureError> {
    let resp = http
        .post(format!("{}/config", url.trim_end_matches('/')))
        .bearer_auth(token)
        .timeout(CONFIG_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(|e| ConfigureError::Unreachable(e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Json>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    Err(ConfigureError::Refused {
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use walshard_contract::Ident;

    use super::*;
    use walshard_contract::ReplicaInfo;

    fn replica(server: &str, reachable: bool, last: (u64, u64)) -> ReplicaInfo {
        ReplicaInfo {
            server: server.to_owned(),
            reachable,
            suspected: !reachable,
            role: None,
            epoch: None,
            last_epoch: Some(last.0),
            last_lsn: Some(last.1),
            commit_lsn: None,
            applied_lsn: None,
            halted: false,
            lag: None,
        }
    }

    fn shard(id: &str, primary: Option<&str>, replicas: Vec<ReplicaInfo>) -> ShardInfo {
        ShardInfo {
            shard: id.to_owned(),
            state: if primary.is_some() {
                Phase::Healthy
            } else {
                Phase::Electing
            },
            reason: None,
            primary: primary.map(str::to_owned),
            epoch: 3,
            quorum_reachable: true,
            replicas,
            reconfiguring: false,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_target_is_the_most_up_to_date_reachable_staying_replica() {
        let info = shard(
            "sh1",
            Some("S0"),
            vec![
                replica("S0", true, (3, 90)),
                replica("S1", true, (3, 80)),
                replica("S2", true, (3, 85)),
                replica("S3", false, (3, 89)),
            ],
        );
        assert_eq!(
            switchover_target(&info, &names(&["S1", "S2", "S3"])),
            Some("S2".to_owned()),
            "S3 is further ahead but unreachable"
        );
        assert_eq!(
            switchover_target(&info, &names(&["S1"])),
            Some("S1".to_owned())
        );
        assert_eq!(switchover_target(&info, &names(&["S3"])), None);
        assert_eq!(switchover_target(&info, &[]), None);
        let tie = shard(
            "sh1",
            Some("S0"),
            vec![replica("S2", true, (3, 5)), replica("S1", true, (3, 5))],
        );
        assert_eq!(
            switchover_target(&tie, &names(&["S1", "S2"])),
            Some("S1".to_owned()),
            "ties go to the lowest name"
        );
    }

    #[test]
    fn handovers_cover_the_leaving_primaries_of_staying_shards() {
        let mut topology = Topology::default();
        for (id, primary) in [("sh1", "S0"), ("sh2", "S1"), ("sh3", "S0")] {
            topology.shards.insert(
                id.to_owned(),
                shard(
                    id,
                    Some(primary),
                    vec![replica("S0", true, (1, 1)), replica("S1", true, (1, 1))],
                ),
            );
        }
        let next: ShardReplicas = [("sh1", vec!["S1"]), ("sh2", vec!["S1"])]
            .into_iter()
            .map(|(s, r)| (s.to_owned(), names(&r)))
            .collect();
        assert_eq!(
            handovers(&topology, &names(&["S0"]), &next),
            vec![Handover {
                shard: "sh1".to_owned(),
                from: "S0".to_owned(),
                to: Some("S1".to_owned()),
            }],
            "sh2's primary stays, sh3 is removed"
        );
        assert!(handovers(&topology, &names(&["S9"]), &next).is_empty());
    }

    #[test]
    fn settled_means_healthy_on_exactly_the_expected_set() {
        let mut topology = Topology::default();
        topology.shards.insert(
            "sh1".to_owned(),
            shard(
                "sh1",
                Some("S0"),
                vec![replica("S0", true, (1, 1)), replica("S1", true, (1, 1))],
            ),
        );
        let expected =
            |r: &[&str]| -> ShardReplicas { BTreeMap::from([("sh1".to_owned(), names(r))]) };
        assert!(is_settled(&topology, &expected(&["S1", "S0"])));
        assert!(!is_settled(&topology, &expected(&["S0"])));
        let mut changing = topology.clone();
        if let Some(info) = changing.shards.get_mut("sh1") {
            info.reconfiguring = true;
        }
        assert!(!is_settled(&changing, &expected(&["S0", "S1"])));
        let mut more = expected(&["S0", "S1"]);
        more.insert("sh2".to_owned(), names(&["S0"]));
        assert_eq!(settled_shards(&topology, &more), 1);
    }

    #[test]
    fn an_agent_gets_the_ranges_of_the_shards_it_holds() {
        let schema = Schema::seed_default();
        let shards: Vec<ShardSpec> = [("sh1", 0), ("sh2", 4096)]
            .into_iter()
            .map(|(id, low)| ShardSpec {
                id: Ident::new(id).expect("ident"),
                low,
                size: 4096,
            })
            .collect();
        let body = agent_config(&schema, &shards, ["sh2", "sh9"]).expect("holds sh2");
        assert_eq!(
            body["shards"],
            json!([{"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096}])
        );
        assert_eq!(body["schema"]["columns"][0], "Stud_id");
        assert_eq!(agent_config(&schema, &shards, []), None);
    }
}
