//! The control plane over real HTTP: `ControlPlane<HttpAgentApi>` against agents that serve
//! docs/replication.md's endpoints from a simulated cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use walshard_contract::Quorum;
use walshard_control_plane::sim::SimCluster;
use walshard_control_plane::sim::http::{Agent, TOKEN, serve_agent};
use walshard_control_plane::{
    ClusterSpec, ControlPlane, ControlPlaneConfig, HttpAgentApi, HttpTimeouts,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_and_switchover_over_http() {
    let shards: BTreeMap<String, Vec<String>> = [
        (
            "sh1".to_string(),
            vec!["S0".into(), "S1".into(), "S2".into()],
        ),
        (
            "sh2".to_string(),
            vec!["S2".into(), "S0".into(), "S1".into()],
        ),
    ]
    .into_iter()
    .collect();
    let sim = Arc::new(Mutex::new(SimCluster::new(&shards)));
    let mut servers = BTreeMap::new();
    for name in ["S0", "S1", "S2"] {
        let url = serve_agent(Agent {
            name: name.into(),
            sim: Arc::clone(&sim),
        })
        .await
        .expect("serves a simulated agent");
        servers.insert(name.to_string(), url);
    }
    let spec = ClusterSpec {
        servers,
        shards,
        write_quorum: Quorum::Majority,
    };
    let api = HttpAgentApi::new(TOKEN, HttpTimeouts::default()).unwrap();
    let mut registry = Registry::default();
    let mut cp =
        ControlPlane::new(spec, api, ControlPlaneConfig::default(), &mut registry).unwrap();
    let mut now = Instant::now();
    let beat = Duration::from_millis(200);

    // First start: every replica fenced at 0 → one primary per shard at epoch 1.
    cp.tick(now).await;
    now += beat;
    let t = cp.topology(now);
    let p1 = t.primary("sh1").expect("sh1 primary").to_owned();
    assert_eq!(t.epoch("sh1"), Some(1));
    assert!(t.primary("sh2").is_some());
    assert_eq!(sim.lock().unwrap().primaries("sh1"), vec![(p1.clone(), 1)]);
    assert!(sim.lock().unwrap().write("sh1", &p1, None).unwrap());

    // The primary's agent fails (503 on every call): three missed heartbeats, then an election.
    sim.lock().unwrap().crash(&p1);
    for _ in 0..3 {
        cp.tick(now).await;
        now += beat;
    }
    let t = cp.topology(now);
    let p2 = t.primary("sh1").expect("new sh1 primary").to_owned();
    assert_ne!(p2, p1);
    assert_eq!(t.epoch("sh1"), Some(2));
    assert!(sim.lock().unwrap().write("sh1", &p2, None).unwrap());

    // It comes back (fenced), then a planned switchover hands the primary to it.
    sim.lock().unwrap().restore(&p1);
    cp.tick(now).await;
    now += beat;
    cp.request_switchover("sh1", &p1, now).unwrap();
    cp.tick(now).await;
    now += beat;
    let t = cp.topology(now);
    assert_eq!(t.primary("sh1"), Some(p1.as_str()));
    assert_eq!(t.epoch("sh1"), Some(3));
    assert!(sim.lock().unwrap().write("sh1", &p1, None).unwrap());
    assert!(sim.lock().unwrap().violations().is_empty());
    let committed = sim.lock().unwrap().committed("sh1");
    assert_eq!(committed.len(), 6, "{committed:?}");
}
