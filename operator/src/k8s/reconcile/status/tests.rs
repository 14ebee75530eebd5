use std::collections::BTreeMap;

use super::*;
use walshard_contract::ShardInfo;

fn shard(id: &str, primary: Option<&str>, state: Phase) -> (String, ShardInfo) {
    (
        id.to_owned(),
        ShardInfo {
            shard: id.to_owned(),
            state,
            reason: None,
            primary: primary.map(str::to_owned),
            epoch: 1,
            quorum_reachable: true,
            replicas: Vec::new(),
            reconfiguring: false,
        },
    )
}

fn server(name: &str, ready: bool, rolled_out: bool) -> ServerState {
    ServerState {
        server: name.to_owned(),
        ready,
        rolled_out,
    }
}

fn ready_observation() -> Observation {
    Observation {
        generation: Some(3),
        shards: vec!["sh1".into(), "sh2".into()],
        servers: vec![server("Server0", true, true), server("Server1", true, true)],
        router: RouterState {
            replicas: 2,
            ready: 2,
            rolled_out: true,
        },
        topology: Some(Topology {
            shards: BTreeMap::from([
                shard("sh1", Some("Server0"), Phase::Healthy),
                shard("sh2", Some("Server1"), Phase::Healthy),
            ]),
            servers: BTreeMap::new(),
            archive: BTreeMap::new(),
        }),
        ..Observation::default()
    }
}

fn reasons(o: &Observation) -> [(bool, &'static str); 3] {
    verdicts(o).map(|v| (v.status, v.reason))
}

#[test]
fn everything_ready_is_ready_reconciled_and_not_degraded() {
    assert_eq!(
        reasons(&ready_observation()),
        [
            (true, reason::ALL_READY),
            (false, reason::RECONCILED),
            (false, reason::AS_EXPECTED)
        ]
    );
}

#[test]
fn a_server_rolling_out_is_progressing_and_not_ready() {
    let mut o = ready_observation();
    o.servers[1] = server("Server1", false, false);
    let [ready, progressing, degraded] = verdicts(&o);
    assert_eq!(
        (ready.status, ready.reason),
        (false, reason::SERVERS_NOT_READY)
    );
    assert_eq!(ready.message, "1/2 servers ready; waiting for Server1");
    assert_eq!(
        (progressing.status, progressing.reason),
        (true, reason::ROLLING_OUT)
    );
    assert!(!degraded.status);
}

#[test]
fn a_router_without_ready_replicas_is_not_ready() {
    let mut o = ready_observation();
    o.router.ready = 0;
    assert_eq!(reasons(&o)[0], (false, reason::ROUTER_NOT_READY));
    assert_eq!(reasons(&o)[1], (true, reason::ROLLING_OUT));
}

#[test]
fn an_election_under_way_is_progressing_and_no_quorum_is_degraded() {
    let mut o = ready_observation();
    if let Some(t) = o.topology.as_mut() {
        t.shards.extend([shard("sh2", None, Phase::Electing)]);
    }
    assert_eq!(
        reasons(&o),
        [
            (false, reason::NO_PRIMARY),
            (true, reason::ELECTING),
            (false, reason::AS_EXPECTED)
        ]
    );
    if let Some(t) = o.topology.as_mut() {
        t.shards.extend([shard("sh2", None, Phase::NoQuorum)]);
    }
    assert_eq!(
        reasons(&o),
        [
            (false, reason::NO_PRIMARY),
            (false, reason::RECONCILED),
            (true, reason::NO_QUORUM)
        ]
    );
}

#[test]
fn no_control_plane_view_means_no_primaries() {
    let mut o = ready_observation();
    o.topology = None;
    let [ready, progressing, _] = verdicts(&o);
    assert_eq!(ready.reason, reason::NO_PRIMARY);
    assert_eq!(ready.message, "shards without a primary: sh1, sh2");
    assert_eq!(progressing.reason, reason::ELECTING);
}

#[test]
fn draining_comes_first_and_drain_failures_degrade() {
    let mut o = ready_observation();
    o.draining = vec!["Server4".into()];
    o.drain_failures = vec![("Server5".into(), "busy".into())];
    let [ready, progressing, degraded] = verdicts(&o);
    assert!(
        ready.status,
        "a drain does not make the remaining fleet unready"
    );
    assert_eq!(progressing.reason, reason::DRAINING);
    assert_eq!(degraded.reason, reason::DRAIN_FAILED);
    assert_eq!(
        degraded.message,
        "draining failed (retrying): Server5: busy"
    );
}

#[test]
fn long_lists_are_cut() {
    let names: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(list(&refs), "s0, s1, s2, s3, s4, s5, s6, s7 and 3 more");
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("valid timestamp")
}

#[test]
fn transition_times_move_only_when_a_status_flips_and_unchanged_status_needs_no_write() {
    let o = ready_observation();
    let first = observed(&o, None, at(100));
    assert!(first.is_ready());
    assert_eq!(first.servers_ready, 2);
    assert_eq!(first.router_ready, 2);
    let current = ShardedDatabaseStatus {
        observed_generation: first.observed_generation,
        conditions: first.conditions.clone(),
        servers: 2,
        servers_ready: 2,
        router_ready: 2,
        // The control plane's fields do not matter.
        primaries: "2/2".into(),
        ..ShardedDatabaseStatus::default()
    };
    let again = observed(&o, Some(&current), at(200));
    assert_eq!(again, first, "same observation, same status, old times");
    assert!(again.is_shown_by(Some(&current)));

    let mut worse = o.clone();
    worse.servers[0].ready = false;
    let changed = observed(&worse, Some(&current), at(300));
    assert!(!changed.is_shown_by(Some(&current)));
    let time = |s: &OwnedStatus, t: &str| s.condition(t).map(|c| c.last_transition_time.0);
    assert_eq!(
        time(&changed, CONDITION_READY),
        Some(at(300)),
        "Ready flipped"
    );
    assert_eq!(
        time(&changed, CONDITION_PROGRESSING),
        Some(at(300)),
        "Progressing flipped"
    );
    assert_eq!(
        time(&changed, CONDITION_DEGRADED),
        Some(at(100)),
        "Degraded did not"
    );
}

#[test]
fn paused_keeps_ready_degraded_and_the_counters() {
    let o = ready_observation();
    let before = observed(&o, None, at(100));
    let current = ShardedDatabaseStatus {
        observed_generation: Some(3),
        conditions: before.conditions.clone(),
        servers: 2,
        servers_ready: 2,
        router_ready: 2,
        ..ShardedDatabaseStatus::default()
    };
    let p = paused(Some(4), Some(&current), at(200));
    assert_eq!(p.observed_generation, Some(4));
    assert_eq!((p.servers, p.servers_ready, p.router_ready), (2, 2, 2));
    assert!(p.is_ready());
    let progressing = p.condition(CONDITION_PROGRESSING).expect("progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", reason::PAUSED)
    );
    assert_eq!(
        progressing.last_transition_time.0,
        at(100),
        "was False already"
    );
    assert_eq!(
        p.condition(CONDITION_READY),
        {
            let mut c = before.condition(CONDITION_READY).cloned();
            if let Some(c) = c.as_mut() {
                c.observed_generation = Some(4);
            }
            c
        }
        .as_ref()
    );
}

#[test]
fn a_blocked_spec_says_why_in_every_condition() {
    let b = blocked(
        Some(2),
        None,
        reason::INVALID_SPEC,
        "spec.shards: bad",
        at(5),
    );
    let summary: Vec<(&str, &str, &str)> = b
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (CONDITION_READY, "False", reason::INVALID_SPEC),
            (CONDITION_PROGRESSING, "False", reason::INVALID_SPEC),
            (CONDITION_DEGRADED, "True", reason::INVALID_SPEC)
        ]
    );
    assert!(b.conditions.iter().all(|c| c.message == "spec.shards: bad"));
    let json = serde_json::to_value(&b).expect("serializes");
    assert_eq!(json["observedGeneration"], 2);
    assert_eq!(json["servers"], 0);
    assert!(
        json.get("primaries").is_none(),
        "the control plane's field is not claimed"
    );
    assert!(
        json.get("shards").is_none(),
        "the control plane's field is not claimed"
    );
}

#[test]
fn a_layout_overriding_a_user_edit_degrades_while_ready() {
    let mut o = ready_observation();
    o.layout_overrides = true;
    assert_eq!(
        reasons(&o),
        [
            (true, reason::ALL_READY),
            (false, reason::RECONCILED),
            (true, reason::LAYOUT_OVERRIDES_SPEC)
        ]
    );
    let degraded = &verdicts(&o)[2];
    assert!(
        degraded.message.contains("remove spec.layout"),
        "{degraded:?}"
    );
    o.apply_failures = vec![("StatefulSet x".to_owned(), "422".to_owned())];
    assert_eq!(reasons(&o)[2], (true, reason::APPLY_FAILED), "worse first");
}
