use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use proptest::prelude::*;

use reqwest::StatusCode;
use walshard_contract::{Phase, Quorum, Role};

use super::http::{endpoint, error_answer};
use super::*;
use crate::cluster::{ClusterSpec, ClusterSpecError};
use crate::election::{Action, ControllerState, ReconfigureError, SwitchoverError};
use crate::sim::{SimAgentApi, SimCluster};

const BEAT: Duration = Duration::from_millis(200);

fn spec(servers: usize, shards: &[(&str, &[usize])]) -> ClusterSpec {
    ClusterSpec {
        servers: (0..servers)
            .map(|i| (format!("S{i}"), format!("http://127.0.0.1:{}", 9000 + i)))
            .collect(),
        shards: shards
            .iter()
            .map(|(id, r)| {
                (
                    (*id).to_owned(),
                    r.iter().map(|i| format!("S{i}")).collect(),
                )
            })
            .collect(),
        write_quorum: Quorum::Majority,
    }
}

struct Harness {
    cp: ControlPlane<SimAgentApi>,
    registry: Registry,
    now: Instant,
}

impl Harness {
    fn new(spec: ClusterSpec) -> Self {
        let sim = SimCluster::new(&spec.shards);
        Self::with_sim(spec, sim)
    }

    fn with_sim(spec: ClusterSpec, sim: SimCluster) -> Self {
        let api = SimAgentApi::new(sim);
        let mut registry = Registry::default();
        let cp = ControlPlane::new(spec, api, ControlPlaneConfig::default(), &mut registry)
            .expect("valid spec");
        Self {
            cp,
            registry,
            now: Instant::now(),
        }
    }

    fn sim(&self) -> std::sync::MutexGuard<'_, SimCluster> {
        self.cp.api().cluster()
    }

    async fn tick(&mut self) -> TickSummary {
        let s = self.cp.tick(self.now).await;
        self.now += BEAT;
        s
    }

    async fn ticks(&mut self, n: usize) {
        for _ in 0..n {
            self.tick().await;
        }
    }

    fn primary(&self, shard: &str) -> Option<(String, u64)> {
        let t = self.cp.topology(self.now);
        let info = t.shards.get(shard)?;
        Some((info.primary.clone()?, info.epoch))
    }

    fn state(&self, shard: &str) -> &'static str {
        self.cp
            .controller(shard)
            .map_or("?", |c| c.state().phase().as_str())
    }

    fn calls(&self, verb: &str) -> Vec<String> {
        self.sim()
            .calls()
            .iter()
            .filter(|c| c.starts_with(verb))
            .cloned()
            .collect()
    }

    fn assert_safe(&self) {
        let sim = self.sim();
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    fn write(&self, shard: &str, to: Option<&[&str]>) -> Option<bool> {
        let (primary, _) = self.primary(shard)?;
        self.sim().write(shard, &primary, to)
    }
}

#[tokio::test]
async fn first_start_elects_one_primary_per_shard() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2]), ("sh2", &[1, 2, 0])]));
    let summary = h.tick().await;
    assert_eq!(summary.reachable.len(), 3);
    assert_eq!(summary.states["sh1"], Phase::Healthy);
    assert_eq!(summary.states["sh2"], Phase::Healthy);
    assert_eq!(
        summary
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Promote { .. }))
            .count(),
        2
    );
    for shard in ["sh1", "sh2"] {
        let (primary, epoch) = h.primary(shard).expect("a primary");
        assert_eq!(epoch, 1);
        assert_eq!(h.sim().primaries(shard), vec![(primary.clone(), 1)]);
        assert_eq!(
            h.sim().committed(shard),
            vec![(1, 1)],
            "the no-op of epoch 1"
        );
    }
    // Nothing more to do.
    let summary = h.tick().await;
    assert!(summary.actions.is_empty());
    assert_eq!(h.write("sh1", None), Some(true));
    h.assert_safe();

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &h.registry).unwrap();
    assert!(text.contains("walshard_operator_elections_completed_total{shard=\"sh1\"} 1"));
    assert!(text.contains("walshard_operator_shard_epoch{shard=\"sh2\"} 1"));
    assert!(text.contains("walshard_operator_election_duration_seconds_count{} 2"));
    assert!(text.contains("walshard_operator_server_up{server=\"S0\"} 1"));
}

#[tokio::test]
async fn dead_primary_is_replaced_by_the_secondary_with_the_longest_log() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    let (old, e1) = h.primary("sh1").unwrap();
    assert_eq!((old.as_str(), e1), ("S0", 1));
    // Committed writes reach everyone; then S2 falls behind: entries reach S1 only.
    for _ in 0..3 {
        assert_eq!(h.write("sh1", None), Some(true));
    }
    for _ in 0..4 {
        assert_eq!(h.write("sh1", Some(&["S1"])), Some(true));
    }
    h.tick().await;
    let lag = h.cp.topology(h.now).shards["sh1"].replicas[2].lag;
    assert_eq!(lag, Some(4));
    h.sim().crash("S0");
    let summary = h.tick().await;
    assert!(summary.unreachable.contains_key("S0"));
    assert_eq!(
        summary.states["sh1"],
        Phase::Healthy,
        "refusal is detected at once"
    );
    let (new, e2) = h.primary("sh1").unwrap();
    assert_eq!(new, "S1");
    assert_eq!(e2, 2);
    // The new primary committed its no-op after every committed entry.
    let committed = h.sim().committed("sh1");
    assert_eq!(committed.last(), Some(&(9, 2)));
    h.assert_safe();
    // S2 caught up; the old primary comes back fenced and rejoins as a secondary.
    h.sim().restore("S0");
    h.ticks(2).await;
    assert_eq!(h.primary("sh1"), Some(("S1".into(), 2)));
    assert_eq!(h.write("sh1", None), Some(true));
    assert_eq!(
        h.sim().replica("S0", "sh1").unwrap().role(),
        Role::Secondary
    );
    h.assert_safe();
}

#[tokio::test]
async fn hung_primary_is_replaced_after_missed_heartbeats() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    h.sim().hang("S0");
    h.tick().await;
    h.tick().await;
    assert_eq!(
        h.primary("sh1"),
        Some(("S0".into(), 1)),
        "two misses: not yet"
    );
    assert!(
        h.calls("fence").len() == 3,
        "only the first election fenced"
    );
    h.tick().await;
    let (new, epoch) = h.primary("sh1").unwrap();
    assert_ne!(new, "S0");
    assert_eq!(epoch, 2);
    // The frozen primary wakes up still believing it is primary of epoch 1: it cannot commit.
    h.sim().restore("S0");
    assert_eq!(h.sim().write("sh1", "S0", None), Some(false));
    h.tick().await;
    assert_eq!(h.primary("sh1"), Some((new, 2)));
    h.assert_safe();
}

#[tokio::test]
async fn primary_cut_off_from_the_control_plane_is_deposed() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    h.sim().cut("S0");
    h.ticks(3).await;
    let (new, epoch) = h.primary("sh1").unwrap();
    assert_ne!(new, "S0");
    assert_eq!(epoch, 2);
    // S0 kept running; the new primary's appends reached it and made it a secondary.
    assert_eq!(h.sim().write("sh1", "S0", None), None);
    assert_eq!(
        h.sim().replica("S0", "sh1").unwrap().primary(),
        Some(new.as_str())
    );
    assert_eq!(h.write("sh1", None), Some(true));
    h.assert_safe();
}

#[tokio::test]
async fn higher_epoch_in_a_fence_answer_triggers_a_retry() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    h.sim().bump_before_next_fence("S1", "sh1", 7);
    h.sim().crash("S0");
    h.tick().await;
    assert_eq!(
        h.calls("fence")
            .iter()
            .filter(|c| c.ends_with(" 2"))
            .count(),
        3
    );
    assert_eq!(
        h.calls("fence")
            .iter()
            .filter(|c| c.ends_with(" 8"))
            .count(),
        3
    );
    let (_, epoch) = h.primary("sh1").unwrap();
    assert_eq!(epoch, 8);
    h.assert_safe();
}

#[tokio::test]
async fn no_quorum_means_no_promotion() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    assert_eq!(h.write("sh1", None), Some(true));
    h.sim().crash("S0");
    h.sim().crash("S1");
    let promotes = h.calls("promote").len();
    h.ticks(10).await;
    assert_eq!(h.state("sh1"), "no-quorum");
    assert_eq!(h.calls("promote").len(), promotes, "no promotion");
    assert_eq!(
        h.calls("fence").len(),
        3,
        "no fencing without a reachable quorum"
    );
    let t = h.cp.topology(h.now);
    assert_eq!(t.primary("sh1"), None);
    assert!(t.shards["sh1"].reason.is_some());
    // One replica comes back: a quorum again.
    h.sim().restore("S1");
    h.tick().await;
    let (new, epoch) = h.primary("sh1").unwrap();
    assert!(new == "S1" || new == "S2");
    assert_eq!(epoch, 2);
    h.assert_safe();

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &h.registry).unwrap();
    assert!(text.contains("walshard_operator_elections_no_quorum_total{shard=\"sh1\"} 1"));
}

#[tokio::test]
async fn planned_switchover_moves_the_primary_to_the_target() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    for _ in 0..5 {
        h.write("sh1", None);
    }
    // S2 misses the last entries; the step-down catches it up before the election.
    for _ in 0..3 {
        h.write("sh1", Some(&["S1"]));
    }
    assert_eq!(
        h.cp.request_switchover("sh1", "S7", h.now),
        Err(SwitchoverError::NotAReplica {
            shard: "sh1".into(),
            to: "S7".into()
        })
    );
    assert_eq!(
        h.cp.request_switchover("sh9", "S2", h.now),
        Err(SwitchoverError::UnknownShard("sh9".into()))
    );
    h.cp.request_switchover("sh1", "S2", h.now).unwrap();
    let summary = h.tick().await;
    assert!(matches!(summary.actions[0], Action::StepDown { ref to, .. } if to == "S2"));
    assert_eq!(h.primary("sh1"), Some(("S2".into(), 2)));
    assert_eq!(h.write("sh1", None), Some(true));
    h.assert_safe();
}

#[tokio::test]
async fn flapping_heartbeats_do_not_elect() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    for i in 0..20 {
        if i % 2 == 0 {
            h.sim().hang("S0");
        } else {
            h.sim().restore("S0");
        }
        h.tick().await;
        assert_eq!(h.primary("sh1"), Some(("S0".into(), 1)), "tick {i}");
    }
    assert_eq!(h.calls("fence").len(), 3, "only the first election");
}

#[tokio::test]
async fn handle_reads_topology_and_requests_switchovers_while_running() {
    let spec = spec(3, &[("sh1", &[0, 1, 2])]);
    let api = SimAgentApi::new(SimCluster::new(&spec.shards));
    let mut registry = Registry::default();
    let mut cp =
        ControlPlane::new(spec, api, ControlPlaneConfig::default(), &mut registry).unwrap();
    let handle = cp.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cp.run(Duration::from_millis(10), async {
            let _ = stopped.await;
        })
        .await;
        cp
    });
    let mut watch = handle.watch();
    let primary = loop {
        watch.changed().await.unwrap();
        if let Some(p) = watch.borrow().primary("sh1") {
            break p.to_owned();
        }
    };
    let target = if primary == "S1" { "S2" } else { "S1" };
    handle.switchover("sh1", target).await.unwrap();
    loop {
        watch.changed().await.unwrap();
        if watch.borrow().primary("sh1") == Some(target) {
            break;
        }
    }
    assert_eq!(handle.topology().epoch("sh1"), Some(2));
    stop.send(()).unwrap();
    let cp = task.await.unwrap();
    assert!(matches!(
        cp.controller("sh1").unwrap().state(),
        ControllerState::Healthy { epoch: 2, .. }
    ));
    assert!(cp.api().cluster().violations().is_empty());
    drop(cp);
    assert_eq!(
        handle.switchover("sh1", "S0").await,
        Err(SwitchoverError::NotRunning)
    );
}

fn names(ids: &[usize]) -> Vec<String> {
    ids.iter().map(|i| format!("S{i}")).collect()
}

/// The promote actions of a tick: `(shard, server, epoch, replicas)`.
fn promotes(summary: &TickSummary) -> Vec<(String, String, u64, Vec<String>)> {
    summary
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Promote {
                shard,
                server,
                epoch,
                replicas,
                ..
            } => Some((shard.clone(), server.clone(), *epoch, replicas.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn reconfigure_adds_servers_and_shards_then_removes_a_server() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    assert_eq!(h.primary("sh1"), Some(("S0".into(), 1)));
    for _ in 0..3 {
        assert_eq!(h.write("sh1", None), Some(true));
    }
    // /add: S3 joins, with a replica of sh1 and of a new shard sh2 on S1, S2, S3.
    {
        let mut sim = h.sim();
        sim.add_replica("S3", "sh1");
        for s in ["S3", "S1", "S2"] {
            sim.add_replica(s, "sh2");
        }
    }
    let grown = spec(4, &[("sh1", &[0, 1, 2, 3]), ("sh2", &[3, 1, 2])]);
    h.cp.reconfigure(grown.clone(), h.now).unwrap();
    let t = h.cp.handle().topology();
    assert!(t.servers.contains_key("S3"), "published at once");
    assert_eq!(t.shards["sh2"].state, Phase::Starting);
    assert!(t.shards["sh1"].reconfiguring);
    assert!(!t.shards["sh2"].reconfiguring);
    assert_eq!(t.shards["sh1"].replicas.len(), 4);
    assert_eq!(
        h.cp.reconfigure(grown.clone(), h.now),
        Ok(()),
        "the same spec again"
    );
    let summary = h.tick().await;
    let p = promotes(&summary);
    assert!(
        p.contains(&("sh1".into(), "S0".into(), 2, names(&[0, 1, 2, 3]))),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(shard, _, epoch, r)| shard == "sh2" && *epoch == 1 && *r == names(&[3, 1, 2])),
        "{p:?}"
    );
    assert_eq!(h.primary("sh1"), Some(("S0".into(), 2)));
    assert!(h.primary("sh2").is_some());
    let t = h.cp.topology(h.now);
    assert!(!t.shards["sh1"].reconfiguring, "promote answered 200");
    assert_eq!(
        h.sim().replica("S0", "sh1").unwrap().peers,
        names(&[0, 1, 2, 3])
    );
    // S3 got sh1's log from the new primary.
    assert_eq!(h.write("sh1", None), Some(true));
    let log = h.sim().replica("S0", "sh1").unwrap().log.clone();
    assert_eq!(h.sim().replica("S3", "sh1").unwrap().log, log);
    h.assert_safe();

    // /rm S2: sh1 and sh2 lose their replica there.
    let mut shrunk = grown.clone();
    shrunk.servers.remove("S2");
    shrunk.shards.insert("sh1".into(), names(&[0, 1, 3]));
    shrunk.shards.insert("sh2".into(), names(&[3, 1]));
    h.cp.reconfigure(shrunk.clone(), h.now).unwrap();
    let t = h.cp.handle().topology();
    assert!(!t.servers.contains_key("S2"));
    assert!(t.shards["sh1"].reconfiguring && t.shards["sh2"].reconfiguring);
    // A second change of sh1 before the first completes: refused, and nothing changes.
    let mut again = shrunk.clone();
    again.shards.insert("sh1".into(), names(&[0, 1]));
    again.shards.insert("sh3".into(), names(&[0]));
    assert_eq!(
        h.cp.reconfigure(again, h.now),
        Err(ReconfigureError::Busy {
            shard: "sh1".into()
        })
    );
    assert!(h.cp.controller("sh3").is_none());
    assert_eq!(
        h.cp.controller("sh1").unwrap().replicas(),
        names(&[0, 1, 3])
    );
    let fenced = h.calls("fence").len();
    let summary = h.tick().await;
    // S2 is still polled and fenced while the changes are under way.
    assert!(summary.reachable.contains(&"S2".to_string()));
    assert!(
        h.calls("fence")[fenced..]
            .iter()
            .any(|c| c.starts_with("fence S2 sh1 "))
    );
    let p = promotes(&summary);
    assert!(
        p.contains(&("sh1".into(), "S0".into(), 3, names(&[0, 1, 3]))),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(shard, _, epoch, r)| shard == "sh2" && *epoch == 2 && *r == names(&[3, 1])),
        "{p:?}"
    );
    let t = h.cp.topology(h.now);
    assert!(!t.shards["sh1"].reconfiguring && !t.shards["sh2"].reconfiguring);
    // Done: S2 is no longer polled, and the caller may stop it.
    let polls = h.calls("status S2").len();
    h.sim().crash("S2");
    h.ticks(3).await;
    assert_eq!(h.calls("status S2").len(), polls);
    assert_eq!(h.primary("sh1"), Some(("S0".into(), 3)));
    assert_eq!(h.write("sh1", None), Some(true));
    assert_eq!(h.write("sh2", None), Some(true));
    h.assert_safe();

    // A shard removed: its controller and series go.
    let mut fewer = shrunk.clone();
    fewer.shards.remove("sh2");
    h.cp.reconfigure(fewer, h.now).unwrap();
    assert!(h.cp.controller("sh2").is_none());
    assert!(!h.cp.handle().topology().shards.contains_key("sh2"));
    h.tick().await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &h.registry).unwrap();
    // Gauges of the removed shard and server go; counters stay.
    assert!(!text.contains("shard_epoch{shard=\"sh2\"}"), "{text}");
    assert!(!text.contains("server_up{server=\"S2\"}"), "{text}");
    assert!(!text.contains("server=\"S2\""), "{text}");
}

#[tokio::test]
async fn reconfigure_refuses_invalid_specs_and_quorum_changes() {
    let mut h = Harness::new(spec(3, &[("sh1", &[0, 1, 2])]));
    h.tick().await;
    let before = h.cp.topology(h.now);
    let bad = spec(3, &[("sh1", &[0, 1, 5])]);
    assert!(matches!(
        h.cp.reconfigure(bad, h.now),
        Err(ReconfigureError::Invalid(
            ClusterSpecError::UnknownServer { .. }
        ))
    ));
    let mut all = spec(3, &[("sh1", &[0, 1, 2])]);
    all.write_quorum = Quorum::All;
    assert_eq!(
        h.cp.reconfigure(all, h.now),
        Err(ReconfigureError::WriteQuorum {
            from: Quorum::Majority,
            to: Quorum::All
        })
    );
    assert_eq!(h.cp.topology(h.now), before);
}

#[tokio::test]
async fn replacing_every_replica_moves_the_data_and_the_primary() {
    let mut h = Harness::new(spec(2, &[("sh1", &[0])]));
    h.tick().await;
    assert_eq!(h.primary("sh1"), Some(("S0".into(), 1)));
    for _ in 0..3 {
        assert_eq!(h.write("sh1", None), Some(true));
    }
    h.sim().add_replica("S1", "sh1");
    let mut moved = spec(2, &[("sh1", &[1])]);
    moved.servers.remove("S0");
    h.cp.reconfigure(moved, h.now).unwrap();
    let summary = h.tick().await;
    // S0 bridges (promoted with the new list, it copies its log to S1), then S1 is elected.
    let p = promotes(&summary);
    assert_eq!(
        p,
        vec![
            ("sh1".into(), "S0".into(), 2, names(&[1])),
            ("sh1".into(), "S1".into(), 3, names(&[1]))
        ]
    );
    assert_eq!(h.primary("sh1"), Some(("S1".into(), 3)));
    assert_eq!(h.sim().committed("sh1").len(), 6, "3 writes and 3 no-ops");
    assert_eq!(h.write("sh1", None), Some(true));
    h.assert_safe();
}

#[tokio::test]
async fn handle_reconfigures_a_running_control_plane() {
    let start = spec(3, &[("sh1", &[0, 1, 2])]);
    let mut sim = SimCluster::new(&start.shards);
    for s in ["S1", "S2", "S3"] {
        sim.add_replica(s, "sh2");
    }
    let api = SimAgentApi::new(sim);
    let mut registry = Registry::default();
    let mut cp =
        ControlPlane::new(start, api, ControlPlaneConfig::default(), &mut registry).unwrap();
    let handle = cp.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cp.run(Duration::from_millis(10), async {
            let _ = stopped.await;
        })
        .await;
        cp
    });
    let mut watch = handle.watch();
    while watch.borrow_and_update().primary("sh1").is_none() {
        watch.changed().await.unwrap();
    }
    let grown = spec(4, &[("sh1", &[0, 1, 2]), ("sh2", &[1, 2, 3])]);
    handle.reconfigure(grown).await.unwrap();
    assert!(
        handle.topology().shards.contains_key("sh2"),
        "published before the answer"
    );
    while watch.borrow_and_update().primary("sh2").is_none() {
        watch.changed().await.unwrap();
    }
    assert!(matches!(
        handle.reconfigure(spec(4, &[("sh1", &[0, 9])])).await,
        Err(ReconfigureError::Invalid(_))
    ));
    stop.send(()).unwrap();
    let cp = task.await.unwrap();
    assert!(cp.api().cluster().violations().is_empty());
    drop(cp);
    assert_eq!(
        handle.reconfigure(spec(1, &[])).await,
        Err(ReconfigureError::NotRunning)
    );
}

#[test]
fn spec_validation() {
    let mut s = spec(2, &[("sh1", &[0, 1])]);
    assert_eq!(s.validate(), Ok(()));
    s.shards
        .insert("sh2".into(), vec!["S0".into(), "S0".into()]);
    assert_eq!(
        s.validate(),
        Err(ClusterSpecError::DuplicateReplica {
            shard: "sh2".into(),
            server: "S0".into()
        })
    );
    s.shards.insert("sh2".into(), vec!["S5".into()]);
    assert!(matches!(
        s.validate(),
        Err(ClusterSpecError::UnknownServer { .. })
    ));
    s.shards.insert("sh2".into(), vec![]);
    assert_eq!(
        s.validate(),
        Err(ClusterSpecError::NoReplicas("sh2".into()))
    );
    let placement: crate::placement::Placement = [
        ("S0".to_string(), vec!["sh1".to_string()]),
        ("S1".to_string(), vec!["sh1".to_string()]),
    ]
    .into_iter()
    .collect();
    let from = ClusterSpec::from_placement(s.servers.clone(), &placement, Quorum::Majority);
    assert_eq!(from.shards["sh1"], vec!["S0", "S1"]);
}

#[test]
fn endpoints_are_built_segment_by_segment() {
    assert_eq!(
        endpoint("http://127.0.0.1:9000", &["shards", "sh1", "fence"])
            .unwrap()
            .as_str(),
        "http://127.0.0.1:9000/shards/sh1/fence"
    );
    assert_eq!(
        endpoint("http://h:1/base/", &["status"]).unwrap().as_str(),
        "http://h:1/base/status"
    );
    assert_eq!(
        endpoint("http://h:1", &["shards", "a/b c", "promote"])
            .unwrap()
            .as_str(),
        "http://h:1/shards/a%2Fb%20c/promote"
    );
    assert!(matches!(
        endpoint("not a url", &["status"]),
        Err(AgentCallError::BadUrl { .. })
    ));
}

#[test]
fn error_answers_are_classified() {
    let e = error_answer(
        StatusCode::CONFLICT,
        br#"{"message":"stale","status":"failure","epoch":9,"primary":"S1"}"#,
    );
    assert_eq!(
        e,
        AgentCallError::Conflict {
            epoch: 9,
            primary: Some("S1".into()),
            message: "stale".into()
        }
    );
    assert_eq!(
        error_answer(StatusCode::SERVICE_UNAVAILABLE, br#"{"message":"later"}"#),
        AgentCallError::Unavailable("later".into())
    );
    assert_eq!(
        error_answer(StatusCode::NOT_FOUND, b"nope"),
        AgentCallError::Status {
            status: 404,
            message: "nope".into()
        }
    );
    // A 409 without an epoch is an ordinary error.
    assert!(matches!(
        error_answer(StatusCode::CONFLICT, br#"{"message":"x"}"#),
        AgentCallError::Status { status: 409, .. }
    ));
}

#[test]
fn error_answers_are_classified_by_their_code() {
    // The code decides, whatever the status says.
    assert_eq!(
        error_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"message":"m","status":"failure","code":"no-majority"}"#
        ),
        AgentCallError::Unavailable("m".into())
    );
    assert!(matches!(
        error_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"message":"m","status":"failure","code":"invalid-request"}"#
        ),
        AgentCallError::Status { status: 503, .. }
    ));
    assert_eq!(
        error_answer(
            StatusCode::CONFLICT,
            br#"{"message":"m","status":"failure","code":"stale-epoch","epoch":4,"primary":null}"#
        ),
        AgentCallError::Conflict {
            epoch: 4,
            primary: None,
            message: "m".into()
        }
    );
    assert!(matches!(
        error_answer(
            StatusCode::from_u16(507).unwrap(),
            br#"{"message":"full","status":"failure","code":"disk-full"}"#
        ),
        AgentCallError::Status { status: 507, .. }
    ));
}

// -- random faults against the simulated cluster --------------------------------------------------

#[derive(Debug, Clone)]
enum Fault {
    Crash(usize),
    Hang(usize),
    Cut(usize),
    Restore(usize),
    Write {
        partial: Option<usize>,
    },
    Tick,
    Switchover(usize),
    /// Change sh1's replica set to the servers in the mask.
    Reconfigure(u8),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        1 => (0usize..5).prop_map(Fault::Crash),
        1 => (0usize..5).prop_map(Fault::Hang),
        1 => (0usize..5).prop_map(Fault::Cut),
        3 => (0usize..5).prop_map(Fault::Restore),
        3 => proptest::option::of(0usize..5).prop_map(|partial| Fault::Write { partial }),
        5 => Just(Fault::Tick),
        1 => (0usize..5).prop_map(Fault::Switchover),
        1 => (1u8..32).prop_map(Fault::Reconfigure),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Crashes, freezes, cuts, restarts and replica-set changes in any order: no committed entry
    /// is ever lost or changed, no epoch has two primaries, epochs never go back, and once every
    /// server is back the shard has exactly one primary at the highest epoch.
    #[test]
    fn random_faults_never_lose_committed_writes(
        n in prop_oneof![Just(3usize), Just(5usize)],
        faults in proptest::collection::vec(fault(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let replicas: Vec<usize> = (0..n).collect();
            // Every server can hold sh1; it starts on the first three.
            let sim = SimCluster::new(&spec(n, &[("sh1", &replicas)]).shards);
            let mut h = Harness::with_sim(spec(n, &[("sh1", &[0, 1, 2])]), sim);
            let mut epoch = 0u64;
            for f in faults {
                match f {
                    Fault::Crash(i) => h.sim().crash(&format!("S{}", i % n)),
                    Fault::Hang(i) => h.sim().hang(&format!("S{}", i % n)),
                    Fault::Cut(i) => h.sim().cut(&format!("S{}", i % n)),
                    Fault::Restore(i) => h.sim().restore(&format!("S{}", i % n)),
                    Fault::Write { partial } => {
                        // Writes go to whoever believes it is primary, deposed or not.
                        let primaries = h.sim().primaries("sh1");
                        for (p, _) in primaries {
                            let peer = partial.map(|i| format!("S{}", i % n));
                            let only: Option<Vec<&str>> = peer.as_deref().map(|p| vec![p]);
                            h.sim().write("sh1", &p, only.as_deref());
                        }
                    }
                    Fault::Tick => {
                        h.tick().await;
                        let e = h.cp.controller("sh1").unwrap().max_epoch_seen();
                        prop_assert!(e >= epoch, "epoch went back from {} to {}", epoch, e);
                        epoch = e;
                    }
                    Fault::Switchover(i) => {
                        let _ = h.cp.request_switchover("sh1", &format!("S{}", i % n), h.now);
                    }
                    Fault::Reconfigure(mask) => {
                        let set: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
                        if !set.is_empty() {
                            // Busy while the previous change is under way: fine.
                            let _ = h.cp.reconfigure(spec(n, &[("sh1", &set)]), h.now);
                        }
                    }
                }
                let v = h.sim().violations().to_vec();
                prop_assert!(v.is_empty(), "{:?}", v);
            }
            for i in 0..n {
                h.sim().restore(&format!("S{i}"));
            }
            // Fence rounds that timed out may need the election timeout to pass.
            for _ in 0..40 {
                h.tick().await;
                if h.state("sh1") == "healthy" {
                    break;
                }
            }
            prop_assert_eq!(h.state("sh1"), "healthy");
            let (primary, e) = h.primary("sh1").unwrap();
            let top = h.sim().primaries("sh1").into_iter().filter(|(_, pe)| *pe == e).collect::<Vec<_>>();
            prop_assert_eq!(top, vec![(primary.clone(), e)]);
            prop_assert_eq!(h.sim().write("sh1", &primary, None), Some(true));
            let v = h.sim().violations().to_vec();
            prop_assert!(v.is_empty(), "{:?}", v);
            Ok(())
        })?;
    }
}
