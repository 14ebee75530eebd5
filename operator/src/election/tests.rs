use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i}")).collect()
}

fn status(role: Role, epoch: u64, primary: Option<&str>, last: (u64, u64)) -> ShardStatus {
    ShardStatus {
        role,
        epoch,
        primary: primary.map(str::to_owned),
        last_epoch: last.0,
        last_lsn: last.1,
        commit_lsn: last.1,
        applied_lsn: last.1,
        first_lsn: 1,
        halted: None,
    }
}

fn accepted(server: &str, epoch: u64, last_epoch: u64, last_lsn: u64) -> FenceAnswer {
    FenceAnswer::Accepted {
        server: server.into(),
        epoch,
        last_epoch,
        last_lsn,
    }
}

fn fences(actions: &[Action]) -> Vec<(String, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fence { server, epoch, .. } => Some((server.clone(), *epoch)),
            _ => None,
        })
        .collect()
}

// -- failure detector ---------------------------------------------------------------------------

#[test]
fn detector_suspects_after_three_misses() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(DetectorConfig {
        timeout: Duration::from_secs(60),
        ..DetectorConfig::default()
    });
    assert!(!d.suspected("a", t0), "unknown servers are not suspected");
    d.record("a", Heartbeat::Ok, t0);
    d.record("a", Heartbeat::Failed, t0 + ms(200));
    d.record("a", Heartbeat::Failed, t0 + ms(400));
    assert!(!d.suspected("a", t0 + ms(400)));
    d.record("a", Heartbeat::Failed, t0 + ms(600));
    assert!(d.suspected("a", t0 + ms(600)));
    assert!(!d.reachable("a"));
    d.record("a", Heartbeat::Ok, t0 + ms(800));
    assert!(!d.suspected("a", t0 + ms(800)));
    assert!(d.reachable("a"));
}

#[test]
fn detector_suspects_after_timeout_without_success() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(DetectorConfig::default());
    d.record("a", Heartbeat::Ok, t0);
    d.record("a", Heartbeat::Failed, t0 + ms(500));
    assert!(!d.suspected("a", t0 + ms(500)));
    assert!(d.suspected("a", t0 + ms(600)));
    // Never answered at all: the timeout counts from the first observation.
    d.record("b", Heartbeat::Failed, t0);
    assert!(!d.suspected("b", t0 + ms(599)));
    assert!(d.suspected("b", t0 + ms(600)));
}

#[test]
fn detector_suspects_at_once_on_refusal_unless_configured_not_to() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(DetectorConfig::default());
    d.record("a", Heartbeat::Ok, t0);
    d.record("a", Heartbeat::Refused, t0 + ms(200));
    assert!(d.suspected("a", t0 + ms(200)));
    let mut d = FailureDetector::new(DetectorConfig {
        suspect_on_refused: false,
        ..DetectorConfig::default()
    });
    d.record("a", Heartbeat::Ok, t0);
    d.record("a", Heartbeat::Refused, t0 + ms(200));
    assert!(!d.suspected("a", t0 + ms(200)));
}

#[test]
fn detector_does_not_suspect_when_the_control_plane_stalls() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(DetectorConfig::default());
    d.record("a", Heartbeat::Ok, t0);
    assert!(!d.suspected("a", t0 + Duration::from_secs(30)));
}

#[test]
fn detector_ignores_a_single_missed_heartbeat() {
    let t0 = Instant::now();
    let mut d = FailureDetector::new(DetectorConfig::default());
    for i in 0..20u64 {
        let beat = if i % 2 == 1 {
            Heartbeat::Failed
        } else {
            Heartbeat::Ok
        };
        d.record("a", beat, t0 + ms(200 * i));
        assert!(!d.suspected("a", t0 + ms(200 * i)), "beat {i}");
    }
}

// -- decide ----------------------------------------------------------------------------------

#[test]
fn decide_promotes_the_highest_log() {
    let r = names(3);
    let answers = vec![
        accepted("S0", 5, 3, 100),
        accepted("S1", 5, 4, 2),
        accepted("S2", 5, 4, 1),
    ];
    assert_eq!(
        decide(&r, 2, 5, &answers, None),
        Decision::Promote {
            server: "S1".into(),
            epoch: 5
        },
        "last_epoch dominates last_lsn"
    );
}

#[test]
fn decide_breaks_ties_by_preference_then_name() {
    let r = names(3);
    let answers = vec![
        accepted("S2", 2, 1, 7),
        accepted("S1", 2, 1, 7),
        accepted("S0", 2, 1, 6),
    ];
    assert_eq!(
        decide(&r, 2, 2, &answers, None),
        Decision::Promote {
            server: "S1".into(),
            epoch: 2
        }
    );
    assert_eq!(
        decide(&r, 2, 2, &answers, Some("S2")),
        Decision::Promote {
            server: "S2".into(),
            epoch: 2
        }
    );
    // The preferred replica does not win against a longer log.
    assert_eq!(
        decide(&r, 2, 2, &answers, Some("S0")),
        Decision::Promote {
            server: "S1".into(),
            epoch: 2
        }
    );
}

#[test]
fn decide_waits_for_a_quorum() {
    let r = names(3);
    assert_eq!(decide(&r, 2, 1, &[], None), Decision::NeedMore);
    assert_eq!(
        decide(&r, 2, 1, &[accepted("S0", 1, 0, 0)], None),
        Decision::NeedMore
    );
    let one_down = [
        accepted("S0", 1, 0, 0),
        FenceAnswer::Unreachable {
            server: "S1".into(),
        },
    ];
    assert_eq!(decide(&r, 2, 1, &one_down, None), Decision::NeedMore);
    let two_down = [
        accepted("S0", 1, 0, 0),
        FenceAnswer::Unreachable {
            server: "S1".into(),
        },
        FenceAnswer::Unreachable {
            server: "S2".into(),
        },
    ];
    assert_eq!(decide(&r, 2, 1, &two_down, None), Decision::NoQuorum);
}

#[test]
fn decide_waits_for_the_preferred_replica() {
    let r = names(3);
    let answers = [accepted("S0", 3, 2, 9), accepted("S1", 3, 2, 9)];
    assert_eq!(decide(&r, 2, 3, &answers, Some("S2")), Decision::NeedMore);
    let mut answers = answers.to_vec();
    answers.push(FenceAnswer::Unreachable {
        server: "S2".into(),
    });
    assert_eq!(
        decide(&r, 2, 3, &answers, Some("S2")),
        Decision::Promote {
            server: "S0".into(),
            epoch: 3
        }
    );
}

#[test]
fn decide_retries_above_a_rejection() {
    let r = names(3);
    let answers = [
        accepted("S0", 3, 2, 9),
        accepted("S1", 3, 2, 9),
        FenceAnswer::Rejected {
            server: "S2".into(),
            epoch: 7,
        },
    ];
    assert_eq!(
        decide(&r, 2, 3, &answers, None),
        Decision::Retry { epoch: 8 }
    );
    // Equal epoch (a primary was accepted for it): retry above it too.
    let answers = [FenceAnswer::Rejected {
        server: "S2".into(),
        epoch: 3,
    }];
    assert_eq!(
        decide(&r, 2, 3, &answers, None),
        Decision::Retry { epoch: 4 }
    );
}

#[test]
fn decide_ignores_strangers_and_other_epochs() {
    let r = names(3);
    let answers = [
        accepted("S0", 3, 0, 0),
        accepted("X9", 3, 9, 9),
        accepted("S1", 2, 9, 9),
        FenceAnswer::Rejected {
            server: "X8".into(),
            epoch: 100,
        },
    ];
    assert_eq!(decide(&r, 2, 3, &answers, None), Decision::NeedMore);
    // A later answer of the same server replaces the earlier one.
    let answers = [
        accepted("S0", 3, 0, 0),
        accepted("S0", 3, 0, 0),
        FenceAnswer::Unreachable {
            server: "S1".into(),
        },
        FenceAnswer::Unreachable {
            server: "S2".into(),
        },
    ];
    assert_eq!(decide(&r, 2, 3, &answers, None), Decision::NoQuorum);
}

fn answer_strategy(n: usize) -> impl Strategy<Value = (usize, u8, u64, u64, u64)> {
    (0..n, 0u8..4, 0u64..4, 0u64..4, 0u64..6)
}

proptest! {
    #[test]
    fn decide_is_safe(
        n in 1usize..7,
        epoch in 1u64..5,
        raw in proptest::collection::vec(answer_strategy(7), 0..10),
        preferred in proptest::option::of(0usize..7),
    ) {
        let replicas = names(n);
        let quorum = majority(n);
        let answers: Vec<FenceAnswer> = raw
            .iter()
            .map(|&(i, kind, e, le, ll)| {
                let server = format!("S{}", i % n);
                match kind {
                    0 | 1 => accepted(&server, epoch, le, ll),
                    2 => FenceAnswer::Rejected { server, epoch: e + epoch.saturating_sub(2) },
                    _ => FenceAnswer::Unreachable { server },
                }
            })
            .collect();
        // The preferred replica is sometimes a stranger (ignored).
        let preferred = preferred.map(|p| format!("S{p}"));
        let pref_member = preferred.as_ref().filter(|p| replicas.contains(p));
        let d = decide(&replicas, quorum, epoch, &answers, preferred.as_deref());
        // The latest answer per server is what counts.
        let mut latest: BTreeMap<&str, &FenceAnswer> = BTreeMap::new();
        for a in &answers {
            latest.insert(a.server(), a);
        }
        let acc: Vec<(&str, u64, u64)> = latest
            .values()
            .filter_map(|a| match a {
                FenceAnswer::Accepted { server, last_epoch, last_lsn, .. } => Some((server.as_str(), *last_epoch, *last_lsn)),
                _ => None,
            })
            .collect();
        let max_rejected = latest.values().filter_map(|a| match a {
            FenceAnswer::Rejected { epoch: e, .. } if *e >= epoch => Some(*e),
            _ => None,
        }).max();
        match d {
            Decision::Promote { server, epoch: e } => {
                prop_assert_eq!(e, epoch);
                prop_assert!(max_rejected.is_none());
                prop_assert!(acc.len() >= quorum, "promoted with {} < {} answers", acc.len(), quorum);
                let (_, le, ll) = acc.iter().find(|(s, _, _)| *s == server).copied().expect("winner accepted");
                for (_, e2, l2) in &acc {
                    prop_assert!((le, ll) >= (*e2, *l2));
                }
                if let Some(p) = pref_member {
                    prop_assert!(latest.contains_key(p.as_str()), "decided before the preferred answered");
                    if let Some((_, pe, pl)) = acc.iter().find(|(s, _, _)| s == p) && (*pe, *pl) == (le, ll) {
                        prop_assert_eq!(&server, p);
                    }
                }
            }
            Decision::Retry { epoch: e } => {
                let m = max_rejected.expect("retry needs a rejection");
                prop_assert_eq!(e, m + 1);
                prop_assert!(e > epoch);
            }
            Decision::NoQuorum => {
                prop_assert!(max_rejected.is_none());
                prop_assert!(acc.len() + (n - latest.len()) < quorum);
            }
            Decision::NeedMore => {
                prop_assert!(max_rejected.is_none());
                prop_assert!(acc.len() < quorum || pref_member.is_some_and(|p| !latest.contains_key(p.as_str())));
            }
        }
    }
}

// -- controller ------------------------------------------------------------------------------

fn controller(n: usize) -> ShardController {
    ShardController::new(
        "sh1",
        names(n),
        Quorum::Majority,
        ControllerConfig::default(),
    )
}

/// Feeds every fence action an acceptance with the given logs.
fn accept_all(c: &mut ShardController, actions: &[Action], logs: &BTreeMap<&str, (u64, u64)>) {
    for (server, epoch) in fences(actions) {
        let (le, ll) = logs.get(server.as_str()).copied().unwrap_or((0, 0));
        c.on_fence_answer(epoch, accepted(&server, epoch, le, ll));
    }
}

fn promote_of(actions: &[Action]) -> Option<(String, u64)> {
    actions.iter().find_map(|a| match a {
        Action::Promote { server, epoch, .. } => Some((server.clone(), *epoch)),
        _ => None,
    })
}

#[test]
fn first_start_elects_one_primary() {
    let t0 = Instant::now();
    let mut c = controller(3);
    c.observe_status("S0", &ShardStatus::fresh(), t0);
    c.observe_status("S1", &ShardStatus::fresh(), t0);
    assert!(c.poll(t0).is_empty(), "waits until every replica was heard");
    assert_eq!(c.state(), &ShardState::Starting);
    c.observe_status("S2", &ShardStatus::fresh(), t0);
    let actions = c.poll(t0);
    assert_eq!(
        fences(&actions),
        vec![("S0".into(), 1), ("S1".into(), 1), ("S2".into(), 1)]
    );
    assert!(c.poll(t0).is_empty(), "poll is idempotent");
    accept_all(&mut c, &actions, &BTreeMap::new());
    let actions = c.poll(t0 + ms(1));
    assert_eq!(
        actions,
        vec![Action::Promote {
            shard: "sh1".into(),
            server: "S0".into(),
            epoch: 1,
            replicas: names(3),
            quorum: Quorum::Majority,
        }]
    );
    c.on_promote_result("S0", 1, PromoteOutcome::Done, t0 + ms(5));
    assert_eq!(c.primary(), Some(("S0", 1)));
    assert!(
        c.poll(t0 + ms(6)).is_empty(),
        "stays healthy on stale reports"
    );
    let events = c.drain_events();
    assert!(matches!(
        events[0],
        ControllerEvent::ElectionStarted { epoch: 1, .. }
    ));
    assert!(
        matches!(&events[1], ControllerEvent::ElectionCompleted { epoch: 1, primary, duration, .. } if primary == "S0" && *duration == ms(5))
    );
}

/// A controller with S0 primary of epoch `e` and S1, S2 secondaries, all logs `(e, lsn)`.
fn healthy(e: u64, lsns: [u64; 3], t: Instant) -> ShardController {
    let mut c = controller(3);
    for (i, lsn) in lsns.into_iter().enumerate() {
        let role = if i == 0 {
            Role::Primary
        } else {
            Role::Secondary
        };
        c.observe_status(&format!("S{i}"), &status(role, e, Some("S0"), (e, lsn)), t);
    }
    assert!(c.poll(t).is_empty());
    assert_eq!(c.primary(), Some(("S0", e)), "adopts the existing primary");
    c
}

#[test]
fn control_plane_restart_adopts_the_existing_primary_without_election() {
    let t0 = Instant::now();
    let mut c = healthy(4, [10, 10, 9], t0);
    assert!(c.drain_events().is_empty());
    assert_eq!(c.max_epoch_seen(), 4);
}

#[test]
fn waits_for_a_primary_named_by_secondaries() {
    let t0 = Instant::now();
    let mut c = controller(3);
    c.observe_failure("S0", Heartbeat::Failed, t0);
    c.observe_status("S1", &status(Role::Secondary, 4, Some("S0"), (4, 9)), t0);
    c.observe_status("S2", &status(Role::Secondary, 4, Some("S0"), (4, 9)), t0);
    assert!(c.poll(t0).is_empty());
    c.observe_status(
        "S0",
        &status(Role::Primary, 4, Some("S0"), (4, 9)),
        t0 + ms(200),
    );
    assert!(c.poll(t0 + ms(200)).is_empty());
    assert_eq!(c.primary(), Some(("S0", 4)));
}

#[test]
fn primary_failure_elects_the_highest_log_at_a_higher_epoch() {
    let t0 = Instant::now();
    let mut c = healthy(4, [12, 11, 9], t0);
    for i in 1..=3u64 {
        let t = t0 + ms(200 * i);
        c.observe_failure("S0", Heartbeat::Failed, t);
        c.observe_status("S1", &status(Role::Secondary, 4, Some("S0"), (4, 11)), t);
        c.observe_status("S2", &status(Role::Secondary, 4, Some("S0"), (4, 9)), t);
        let actions = c.poll(t);
        if i < 3 {
            assert!(actions.is_empty(), "no election after {i} misses");
            continue;
        }
        assert_eq!(
            fences(&actions),
            vec![("S0".into(), 5), ("S1".into(), 5), ("S2".into(), 5)]
        );
        c.on_fence_answer(
            5,
            FenceAnswer::Unreachable {
                server: "S0".into(),
            },
        );
        c.on_fence_answer(5, accepted("S2", 5, 4, 9));
        c.on_fence_answer(5, accepted("S1", 5, 4, 11));
        let actions = c.poll(t + ms(1));
        assert_eq!(promote_of(&actions), Some(("S1".into(), 5)));
        c.on_promote_result("S1", 5, PromoteOutcome::Done, t + ms(3));
        assert_eq!(c.primary(), Some(("S1", 5)));
    }
}

#[test]
fn refused_connection_triggers_an_election_at_once() {
    let t0 = Instant::now();
    let mut c = healthy(1, [3, 3, 3], t0);
    c.observe_failure("S0", Heartbeat::Refused, t0 + ms(200));
    c.observe_status(
        "S1",
        &status(Role::Secondary, 1, Some("S0"), (1, 3)),
        t0 + ms(200),
    );
    c.observe_status(
        "S2",
        &status(Role::Secondary, 1, Some("S0"), (1, 3)),
        t0 + ms(200),
    );
    assert_eq!(fences(&c.poll(t0 + ms(200))).len(), 3);
}

#[test]
fn flapping_primary_is_not_replaced() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 5], t0);
    for i in 1..30u64 {
        let t = t0 + ms(200 * i);
        if i % 2 == 1 {
            c.observe_failure("S0", Heartbeat::Failed, t);
        } else {
            c.observe_status("S0", &status(Role::Primary, 2, Some("S0"), (2, 5)), t);
        }
        c.observe_status("S1", &status(Role::Secondary, 2, Some("S0"), (2, 5)), t);
        c.observe_status("S2", &status(Role::Secondary, 2, Some("S0"), (2, 5)), t);
        assert!(c.poll(t).is_empty(), "tick {i}");
    }
    assert_eq!(c.primary(), Some(("S0", 2)));
}

#[test]
fn restarted_primary_reporting_fenced_triggers_an_election() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 5], t0);
    c.observe_status("S0", &status(Role::Fenced, 2, None, (2, 5)), t0 + ms(200));
    let actions = c.poll(t0 + ms(200));
    assert_eq!(fences(&actions).len(), 3);
    assert!(fences(&actions).iter().all(|(_, e)| *e == 3));
}

#[test]
fn rejection_retries_at_a_higher_epoch() {
    let t0 = Instant::now();
    let mut c = controller(3);
    for s in names(3) {
        c.observe_status(&s, &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    assert_eq!(fences(&actions)[0].1, 1);
    c.on_fence_answer(1, accepted("S0", 1, 0, 0));
    c.on_fence_answer(
        1,
        FenceAnswer::Rejected {
            server: "S1".into(),
            epoch: 6,
        },
    );
    let actions = c.poll(t0 + ms(1));
    assert_eq!(
        fences(&actions),
        vec![("S0".into(), 7), ("S1".into(), 7), ("S2".into(), 7)]
    );
    // Late answers of the old round are ignored.
    c.on_fence_answer(1, accepted("S2", 1, 0, 0));
    accept_all(&mut c, &actions, &BTreeMap::new());
    assert_eq!(promote_of(&c.poll(t0 + ms(2))), Some(("S0".into(), 7)));
    let started = c
        .drain_events()
        .iter()
        .filter(|e| matches!(e, ControllerEvent::ElectionStarted { .. }))
        .count();
    assert_eq!(started, 1, "a retry is the same election");
}

#[test]
fn no_quorum_when_two_of_three_are_down() {
    let t0 = Instant::now();
    let mut c = healthy(3, [7, 7, 7], t0);
    for i in 1..=10u64 {
        let t = t0 + ms(200 * i);
        c.observe_failure("S0", Heartbeat::Refused, t);
        c.observe_failure("S1", Heartbeat::Refused, t);
        c.observe_status("S2", &status(Role::Secondary, 3, Some("S0"), (3, 7)), t);
        assert!(
            c.poll(t).is_empty(),
            "never fences without a reachable quorum"
        );
        assert_eq!(c.state().phase(), Phase::NoQuorum);
    }
    let info = c.info(t0 + ms(2000));
    assert_eq!(info.primary, None);
    assert!(info.reason.as_deref().is_some_and(|r| r.contains("1 of 3")));
    assert!(!info.quorum_reachable);
    // One comes back: the election proceeds.
    let t = t0 + ms(2200);
    c.observe_status("S1", &status(Role::Secondary, 3, Some("S0"), (3, 6)), t);
    let actions = c.poll(t);
    assert_eq!(fences(&actions).len(), 3);
    assert!(fences(&actions).iter().all(|(_, e)| *e == 4));
}

#[test]
fn no_quorum_from_fence_answers_backs_off() {
    let t0 = Instant::now();
    let mut c = controller(3);
    for s in names(3) {
        c.observe_status(&s, &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    for (server, epoch) in fences(&actions) {
        if server == "S0" {
            c.on_fence_answer(epoch, accepted(&server, epoch, 0, 0));
        } else {
            c.on_fence_answer(epoch, FenceAnswer::Unreachable { server });
        }
    }
    assert!(c.poll(t0 + ms(1)).is_empty());
    assert_eq!(c.state().phase(), Phase::NoQuorum);
    assert!(c.poll(t0 + ms(500)).is_empty(), "backs off");
    let actions = c.poll(t0 + ms(1001));
    assert!(fences(&actions).iter().all(|(_, e)| *e == 2));
}

#[test]
fn planned_switchover_promotes_the_target() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 4], t0);
    assert_eq!(
        c.request_switchover("S9", t0),
        Err(SwitchoverError::NotAReplica {
            shard: "sh1".into(),
            to: "S9".into()
        })
    );
    assert_eq!(c.request_switchover("S0", t0), Ok(()), "already primary");
    assert_eq!(c.state().phase(), Phase::Healthy);
    c.request_switchover("S2", t0).unwrap();
    assert!(matches!(
        c.request_switchover("S1", t0),
        Err(SwitchoverError::Busy { .. })
    ));
    let actions = c.poll(t0);
    assert_eq!(
        actions,
        vec![Action::StepDown {
            shard: "sh1".into(),
            server: "S0".into(),
            to: "S2".into()
        }]
    );
    assert!(c.poll(t0 + ms(1)).is_empty());
    c.on_step_down_result("S0", Ok(5));
    let actions = c.poll(t0 + ms(2));
    assert!(fences(&actions).iter().all(|(_, e)| *e == 3));
    // Everyone has the same log now: the target wins the tie.
    let logs: BTreeMap<&str, (u64, u64)> = [("S0", (2, 5)), ("S1", (2, 5)), ("S2", (2, 5))].into();
    accept_all(&mut c, &actions, &logs);
    assert_eq!(promote_of(&c.poll(t0 + ms(3))), Some(("S2".into(), 3)));
    c.on_promote_result("S2", 3, PromoteOutcome::Done, t0 + ms(4));
    assert_eq!(c.primary(), Some(("S2", 3)));
}

#[test]
fn switchover_to_an_unreachable_replica_is_refused() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 4], t0);
    c.observe_failure("S2", Heartbeat::Failed, t0 + ms(200));
    assert_eq!(
        c.request_switchover("S2", t0 + ms(200)),
        Err(SwitchoverError::Unreachable { to: "S2".into() })
    );
}

#[test]
fn rejected_promotion_restarts_the_election_higher() {
    let t0 = Instant::now();
    let mut c = controller(3);
    for s in names(3) {
        c.observe_status(&s, &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    accept_all(&mut c, &actions, &BTreeMap::new());
    assert_eq!(promote_of(&c.poll(t0)), Some(("S0".into(), 1)));
    c.on_promote_result("S0", 1, PromoteOutcome::Rejected { epoch: 4 }, t0);
    let actions = c.poll(t0 + ms(1));
    assert!(fences(&actions).iter().all(|(_, e)| *e == 5));
}

#[test]
fn unanswered_promotion_completes_from_status() {
    let t0 = Instant::now();
    let mut c = controller(3);
    for s in names(3) {
        c.observe_status(&s, &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    accept_all(&mut c, &actions, &BTreeMap::new());
    assert_eq!(promote_of(&c.poll(t0)), Some(("S0".into(), 1)));
    c.on_promote_result(
        "S0",
        1,
        PromoteOutcome::Failed("timed out".into()),
        t0 + ms(2000),
    );
    c.on_promote_result(
        "S0",
        1,
        PromoteOutcome::Pending("no quorum yet".into()),
        t0 + ms(2000),
    );
    assert!(c.poll(t0 + ms(2000)).is_empty());
    assert_eq!(c.state().phase(), Phase::Promoting);
    c.observe_status(
        "S0",
        &status(Role::Primary, 1, Some("S0"), (1, 1)),
        t0 + ms(2200),
    );
    assert!(c.poll(t0 + ms(2200)).is_empty());
    assert_eq!(c.primary(), Some(("S0", 1)));
}

#[test]
fn stuck_promotion_times_out_into_a_new_election() {
    let t0 = Instant::now();
    let mut c = controller(3);
    for s in names(3) {
        c.observe_status(&s, &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    accept_all(&mut c, &actions, &BTreeMap::new());
    assert!(promote_of(&c.poll(t0)).is_some());
    let t = t0 + Duration::from_secs(6);
    for s in names(3) {
        c.observe_status(&s, &status(Role::Fenced, 1, None, (0, 0)), t);
    }
    let actions = c.poll(t);
    assert!(fences(&actions).iter().all(|(_, e)| *e == 2));
    assert_eq!(fences(&actions).len(), 3);
}

#[test]
fn fence_grace_waits_for_reachable_replicas() {
    let t0 = Instant::now();
    let mut c = controller(3);
    for s in names(3) {
        c.observe_status(&s, &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    assert_eq!(fences(&actions).len(), 3);
    c.on_fence_answer(1, accepted("S0", 1, 0, 0));
    c.on_fence_answer(1, accepted("S1", 1, 0, 0));
    assert!(
        c.poll(t0 + ms(100)).is_empty(),
        "S2 answered heartbeats: wait"
    );
    assert_eq!(promote_of(&c.poll(t0 + ms(250))), Some(("S0".into(), 1)));
}

#[test]
fn info_reports_lag_against_the_primary_commit_point() {
    let t0 = Instant::now();
    let mut c = controller(3);
    let mut p = status(Role::Primary, 2, Some("S0"), (2, 20));
    p.commit_lsn = 18;
    p.applied_lsn = 18;
    c.observe_status("S0", &p, t0);
    c.observe_status("S1", &status(Role::Secondary, 2, Some("S0"), (2, 15)), t0);
    c.observe_failure("S2", Heartbeat::Failed, t0);
    c.poll(t0);
    let info = c.info(t0);
    assert_eq!(info.state, Phase::Healthy);
    assert_eq!(info.primary.as_deref(), Some("S0"));
    assert_eq!(info.epoch, 2);
    assert!(info.quorum_reachable);
    let lag: Vec<Option<u64>> = info.replicas.iter().map(|r| r.lag).collect();
    assert_eq!(lag, vec![Some(0), Some(3), None]);
    assert!(!info.replicas[2].reachable);
}

// -- controller under random inputs ------------------------------------------------------------

#[derive(Debug, Clone)]
enum Input {
    Status {
        server: usize,
        role: u8,
        epoch: u64,
        primary: Option<usize>,
        last: (u64, u64),
    },
    Fail {
        server: usize,
        refused: bool,
    },
    Advance(u64),
    Answer {
        server: usize,
        kind: u8,
        bump: u64,
        last: (u64, u64),
    },
    Promoted(u8),
    SteppedDown(bool),
    Switchover(usize),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => (
            0usize..5,
            0u8..3,
            0u64..6,
            proptest::option::of(0usize..5),
            (0u64..6, 0u64..8)
        )
            .prop_map(|(server, role, epoch, primary, last)| Input::Status {
                server,
                role,
                epoch,
                primary,
                last
            }),
        2 => (0usize..5, any::<bool>()).prop_map(|(server, refused)| Input::Fail { server, refused }),
        2 => (0u64..1500).prop_map(Input::Advance),
        5 => (0usize..5, 0u8..4, 0u64..3, (0u64..6, 0u64..8)).prop_map(|(server, kind, bump, last)| {
            Input::Answer {
                server,
                kind,
                bump,
                last,
            }
        }),
        1 => (0u8..4).prop_map(Input::Promoted),
        1 => any::<bool>().prop_map(Input::SteppedDown),
        1 => (0usize..5).prop_map(Input::Switchover),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever it is told, the controller fences above every epoch it has heard of, never
    /// promotes without a quorum of acceptances of that epoch, always promotes the highest log
    /// among them, and its election epochs strictly increase.
    #[test]
    fn controller_decisions_are_safe(
        n in 1usize..6,
        inputs in proptest::collection::vec(input(), 1..80),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let replicas = names(n);
        let mut c = ShardController::new("sh1", replicas.clone(), Quorum::Majority, ControllerConfig::default());
        let quorum = majority(n);
        let mut heard_max = 0u64;
        let mut last_round = 0u64;
        let mut last_promote = 0u64;
        let mut pending_fences: BTreeMap<String, u64> = BTreeMap::new();
        let mut accepted_by_epoch: BTreeMap<u64, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
        let mut pending_promote: Option<(String, u64)> = None;
        let mut pending_step_down: Option<String> = None;
        for inp in inputs {
            match inp {
                Input::Status { server, role, epoch, primary, last } => {
                    let role = [Role::Primary, Role::Secondary, Role::Fenced][role as usize];
                    let primary = primary.map(|p| format!("S{}", p % n));
                    let s = status(role, epoch, primary.as_deref(), (last.0.min(epoch), last.1));
                    heard_max = heard_max.max(epoch);
                    c.observe_status(&format!("S{}", server % n), &s, now);
                }
                Input::Fail { server, refused } => {
                    let beat = if refused { Heartbeat::Refused } else { Heartbeat::Failed };
                    c.observe_failure(&format!("S{}", server % n), beat, now);
                }
                Input::Advance(d) => now += ms(d),
                Input::Answer { server, kind, bump, last } => {
                    let server = format!("S{}", server % n);
                    if let Some(epoch) = pending_fences.remove(&server) {
                        let answer = match kind {
                            0 | 1 => {
                                accepted_by_epoch.entry(epoch).or_default().insert(server.clone(), last);
                                accepted(&server, epoch, last.0, last.1)
                            }
                            2 => {
                                heard_max = heard_max.max(epoch + bump);
                                FenceAnswer::Rejected { server, epoch: epoch + bump }
                            }
                            _ => FenceAnswer::Unreachable { server },
                        };
                        c.on_fence_answer(epoch, answer);
                    }
                }
                Input::Promoted(kind) => {
                    if let Some((server, epoch)) = pending_promote.take() {
                        let outcome = match kind {
                            0 => PromoteOutcome::Done,
                            1 => PromoteOutcome::Pending("slow".into()),
                            2 => {
                                heard_max = heard_max.max(epoch + 1);
                                PromoteOutcome::Rejected { epoch: epoch + 1 }
                            }
                            _ => PromoteOutcome::Failed("timeout".into()),
                        };
                        c.on_promote_result(&server, epoch, outcome, now);
                    }
                }
                Input::SteppedDown(ok) => {
                    if let Some(server) = pending_step_down.take() {
                        c.on_step_down_result(&server, if ok { Ok(1) } else { Err("timeout".into()) });
                    }
                }
                Input::Switchover(to) => {
                    let _ = c.request_switchover(&format!("S{}", to % n), now);
                }
            }
            let actions = c.poll(now);
            let round: Vec<u64> = fences(&actions).iter().map(|(_, e)| *e).collect();
            if let Some(&e) = round.first() {
                prop_assert!(round.iter().all(|x| *x == e));
                prop_assert_eq!(round.len(), n, "fences every replica");
                prop_assert!(e > last_round, "round epochs increase: {} after {}", e, last_round);
                prop_assert!(e > heard_max, "fences at {} but heard of {}", e, heard_max);
                last_round = e;
                heard_max = heard_max.max(e);
                pending_fences = fences(&actions).into_iter().collect();
            }
            for a in &actions {
                match a {
                    Action::Promote { server, epoch, replicas: r, .. } => {
                        prop_assert_eq!(r, &replicas);
                        prop_assert_eq!(*epoch, last_round);
                        prop_assert!(*epoch > last_promote);
                        last_promote = *epoch;
                        let acc = accepted_by_epoch.get(epoch).cloned().unwrap_or_default();
                        prop_assert!(acc.len() >= quorum, "promote with {} acceptances", acc.len());
                        let best = acc.values().max().copied();
                        prop_assert_eq!(acc.get(server).copied(), best);
                        pending_promote = Some((server.clone(), *epoch));
                    }
                    Action::StepDown { server, .. } => pending_step_down = Some(server.clone()),
                    Action::Fence { .. } => {}
                }
            }
            prop_assert!(c.poll(now).is_empty(), "poll is idempotent");
        }
    }
}
