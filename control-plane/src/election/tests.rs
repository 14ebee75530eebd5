use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use walshard_contract::{Phase, Quorum, Role, ShardStatus, majority};

use super::*;
use crate::cluster::ClusterSpecError;

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
        accepting_writes: role == Role::Primary,
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

#[test]
fn decide_joint_needs_votes_from_both_sets() {
    // {S0, S1, S2} → {S0..S6}: S3..S6 are empty newcomers.
    let previous = names(3);
    let new = names(7);
    let (new_set, prev_set) = (VoterSet::majority(&new), VoterSet::majority(&previous));
    let newcomers: Vec<FenceAnswer> = (3..7)
        .map(|i| accepted(&format!("S{i}"), 3, 0, 0))
        .collect();
    // Alone, the newcomers are a majority of the new set: the plain rule would elect an empty log.
    assert_eq!(
        decide(&new, 4, 3, &newcomers, None),
        Decision::Promote {
            server: "S3".into(),
            epoch: 3
        }
    );
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 3, &newcomers, None),
        Decision::NeedMore
    );
    // One previous replica with data: it does not vote for an empty log, and alone it is no
    // majority of the previous set.
    let mut answers = newcomers.clone();
    answers.push(accepted("S1", 3, 2, 9));
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 3, &answers, None),
        Decision::NeedMore
    );
    // A second one: S1 has the votes of S1 and S2 in the previous set.
    answers.push(accepted("S2", 3, 2, 8));
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 3, &answers, None),
        Decision::Promote {
            server: "S1".into(),
            epoch: 3
        }
    );
    // Two previous replicas down: never.
    let mut answers = newcomers;
    answers.push(accepted("S0", 3, 2, 9));
    for s in ["S1", "S2"] {
        answers.push(FenceAnswer::Unreachable { server: s.into() });
    }
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 3, &answers, None),
        Decision::NoQuorum
    );
}

#[test]
fn decide_joint_prefers_new_replicas_and_bridges_a_full_replacement() {
    // {S0, S1, S2} → {S1, S2}: the removed S0 has the longest log (an uncommitted tail).
    let previous = names(3);
    let new: Vec<String> = vec!["S1".into(), "S2".into()];
    let (new_set, prev_set) = (VoterSet::majority(&new), VoterSet::majority(&previous));
    let answers = [
        accepted("S0", 4, 3, 9),
        accepted("S1", 4, 3, 8),
        accepted("S2", 4, 3, 7),
    ];
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 4, &answers, None),
        Decision::Promote {
            server: "S1".into(),
            epoch: 4
        }
    );
    // {S0, S1, S2} → {S0, S3, S4}, S1 and S2 holding more than S0: S0 may lack what they
    // committed, and the newcomers are empty. No new replica can win: S1 bridges.
    let new: Vec<String> = vec!["S0".into(), "S3".into(), "S4".into()];
    let new_set = VoterSet::majority(&new);
    let answers = [
        accepted("S0", 4, 3, 5),
        accepted("S1", 4, 3, 8),
        accepted("S2", 4, 3, 8),
        accepted("S3", 4, 0, 0),
        accepted("S4", 4, 0, 0),
    ];
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 4, &answers, None),
        Decision::Promote {
            server: "S1".into(),
            epoch: 4
        }
    );
    // Not while a new replica might still win.
    assert_eq!(
        decide_joint(new_set, Some(prev_set), 4, &answers[..4], None),
        Decision::NeedMore
    );
}

fn log_strategy() -> impl Strategy<Value = (u64, u64)> {
    (0u64..4, 0u64..6)
}

proptest! {
    /// An entry committed on a majority of the previous set, and one committed on a majority of
    /// the new set, are both in the winner's log; a previous replica wins only when no new one
    /// qualifies; once every replica accepted, someone wins.
    #[test]
    fn decide_joint_keeps_committed_entries(
        prev_mask in 1u8..128,
        new_mask in 1u8..128,
        logs in proptest::collection::vec(log_strategy(), 7),
        kinds in proptest::collection::vec(0u8..4, 7),
        committed_prev in log_strategy(),
        committed_new in proptest::option::of(log_strategy()),
        rotate in 0usize..7,
        preferred in proptest::option::of(0usize..7),
    ) {
        let pick = |mask: u8| -> Vec<String> {
            (0..7).filter(|i| mask & (1 << i) != 0).map(|i| format!("S{i}")).collect()
        };
        let (previous, new) = (pick(prev_mask), pick(new_mask));
        let mut logs: BTreeMap<String, (u64, u64)> =
            (0..7).map(|i| (format!("S{i}"), logs[i])).collect();
        // A majority of each set holds its committed entry (a log at least that long).
        let mut hold = |set: &[String], c: (u64, u64)| {
            for i in 0..majority(set.len()) {
                let s = &set[(rotate + i) % set.len()];
                let l = logs.entry(s.clone()).or_default();
                *l = (*l).max(c);
            }
        };
        hold(&previous, committed_prev);
        if let Some(c) = committed_new {
            hold(&new, c);
        }
        let answers: Vec<FenceAnswer> = (0..7)
            .filter_map(|i| {
                let server = format!("S{i}");
                match kinds[i] {
                    0 | 1 => {
                        let (le, ll) = logs[&server];
                        Some(accepted(&server, 5, le, ll))
                    }
                    2 => Some(FenceAnswer::Unreachable { server }),
                    _ => None,
                }
            })
            .collect();
        let preferred = preferred.map(|p| format!("S{p}"));
        let d = decide_joint(
            VoterSet::majority(&new),
            Some(VoterSet::majority(&previous)),
            5,
            &answers,
            preferred.as_deref(),
        );
        if let Decision::Promote { server, epoch } = &d {
            prop_assert_eq!(*epoch, 5);
            if !new.contains(server) {
                let new_qualifies = new.iter().any(|n| {
                    answers.iter().any(|a| matches!(a, FenceAnswer::Accepted { server: s, .. } if s == n))
                        && [&previous, &new].iter().all(|set| {
                            let votes = set
                                .iter()
                                .filter(|v| {
                                    answers.iter().any(|a| matches!(a, FenceAnswer::Accepted { server: s, .. } if s == *v))
                                        && logs[*v] <= logs[n]
                                })
                                .count();
                            votes >= majority(set.len())
                        })
                });
                prop_assert!(!new_qualifies, "{} bridges though a new replica qualifies", server);
            }
            let won_accepted = answers
                .iter()
                .any(|a| matches!(a, FenceAnswer::Accepted { server: s, .. } if s == server));
            prop_assert!(won_accepted, "{} did not accept", server);
            let won = logs[server];
            prop_assert!(won >= committed_prev, "winner {:?} lacks {:?}", won, committed_prev);
            if let Some(c) = committed_new {
                prop_assert!(won >= c, "winner {:?} lacks {:?}", won, c);
            }
        }
        let members: BTreeSet<&String> = previous.iter().chain(&new).collect();
        let all_accepted = members.iter().all(|m| {
            answers.iter().any(|a| matches!(a, FenceAnswer::Accepted { server, .. } if server == *m))
        });
        if all_accepted {
            prop_assert!(matches!(d, Decision::Promote { .. }), "{:?}", d);
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
    assert_eq!(c.state(), &ControllerState::Starting);
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

// -- replica-set changes -------------------------------------------------------------------------

fn started_reasons(c: &mut ShardController) -> Vec<(u64, String)> {
    c.drain_events()
        .into_iter()
        .filter_map(|e| match e {
            ControllerEvent::ElectionStarted { epoch, reason, .. } => Some((epoch, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn adding_a_replica_reelects_the_primary_with_the_new_list() {
    let t0 = Instant::now();
    let mut c = healthy(4, [12, 12, 11], t0);
    let t = t0 + ms(200);
    c.observe_status("S3", &ShardStatus::fresh(), t);
    assert!(c.report("S3").is_none(), "not a replica yet: ignored");
    assert_eq!(c.reconfigure(names(4)), Ok(()));
    assert!(c.reconfiguring());
    assert_eq!(c.previous(), Some(names(3).as_slice()));
    assert_eq!(c.replicas(), names(4).as_slice());
    assert_eq!(c.fence_quorum(), 3);
    for (i, role) in [Role::Primary, Role::Secondary, Role::Secondary]
        .iter()
        .enumerate()
    {
        let lsn = [12, 12, 11][i];
        c.observe_status(&format!("S{i}"), &status(*role, 4, Some("S0"), (4, lsn)), t);
    }
    c.observe_status("S3", &ShardStatus::fresh(), t);
    let actions = c.poll(t);
    assert_eq!(
        fences(&actions),
        (0..4).map(|i| (format!("S{i}"), 5)).collect::<Vec<_>>()
    );
    assert!(c.poll(t).is_empty(), "poll is idempotent");
    assert!(matches!(c.state(), ControllerState::Electing { preferred: Some(p), .. } if p == "S0"));
    assert!(c.info(t).reconfiguring);
    // S1 has the same log as S0 and a joint quorum answers without S0: the old primary is
    // still waited for, and wins.
    c.on_fence_answer(5, accepted("S1", 5, 4, 12));
    c.on_fence_answer(5, accepted("S2", 5, 4, 11));
    c.on_fence_answer(5, accepted("S3", 5, 0, 0));
    assert!(c.poll(t + ms(300)).is_empty());
    c.on_fence_answer(5, accepted("S0", 5, 4, 12));
    assert_eq!(
        c.poll(t + ms(301)),
        vec![Action::Promote {
            shard: "sh1".into(),
            server: "S0".into(),
            epoch: 5,
            replicas: names(4),
            quorum: Quorum::Majority,
        }]
    );
    c.on_promote_result("S0", 5, PromoteOutcome::Done, t + ms(302));
    assert_eq!(c.primary(), Some(("S0", 5)));
    assert!(!c.reconfiguring());
    assert_eq!(c.previous(), None);
    let info = c.info(t + ms(302));
    assert!(!info.reconfiguring);
    assert_eq!(info.replicas.len(), 4);
    let started = started_reasons(&mut c);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, 5);
    assert!(started[0].1.contains("replica set changed"), "{started:?}");
}

#[test]
fn joint_rule_never_promotes_an_empty_newcomer() {
    let t0 = Instant::now();
    let mut c = healthy(2, [9, 9, 8], t0);
    c.reconfigure(names(7)).unwrap();
    assert_eq!(c.fence_quorum(), 4);
    for i in 3..7 {
        c.observe_status(&format!("S{i}"), &ShardStatus::fresh(), t0);
    }
    let actions = c.poll(t0);
    assert_eq!(fences(&actions).len(), 7);
    assert!(fences(&actions).iter().all(|(_, e)| *e == 3));
    // The old primary crashed meanwhile (so it is not waited for), and the four empty
    // newcomers answer first: a majority of the new set.
    c.on_fence_answer(
        3,
        FenceAnswer::Unreachable {
            server: "S0".into(),
        },
    );
    for i in 3..7 {
        c.on_fence_answer(3, accepted(&format!("S{i}"), 3, 0, 0));
    }
    assert!(c.poll(t0 + ms(1)).is_empty());
    assert!(
        c.poll(t0 + ms(400)).is_empty(),
        "not after the fence grace either"
    );
    // One previous replica with data: still no majority of the previous set.
    c.on_fence_answer(3, accepted("S1", 3, 2, 9));
    assert!(c.poll(t0 + ms(401)).is_empty());
    assert_eq!(c.state().phase(), Phase::Electing);
    // S2 answers: S1 has the votes of S1 and S2.
    c.on_fence_answer(3, accepted("S2", 3, 2, 8));
    let actions = c.poll(t0 + ms(402));
    assert_eq!(
        actions,
        vec![Action::Promote {
            shard: "sh1".into(),
            server: "S1".into(),
            epoch: 3,
            replicas: names(7),
            quorum: Quorum::Majority,
        }]
    );
}

#[test]
fn joint_rule_without_a_previous_majority_is_no_quorum() {
    let t0 = Instant::now();
    let mut c = healthy(2, [9, 9, 8], t0);
    c.reconfigure(names(7)).unwrap();
    let t = t0 + ms(200);
    for i in 3..7 {
        c.observe_status(&format!("S{i}"), &ShardStatus::fresh(), t);
    }
    c.observe_failure("S1", Heartbeat::Refused, t);
    c.observe_failure("S2", Heartbeat::Refused, t);
    // 5 of 7 new replicas answer heartbeats, but only 1 of the 3 previous ones.
    assert!(c.poll(t).is_empty(), "nothing is fenced");
    assert_eq!(c.state().phase(), Phase::NoQuorum);
    let info = c.info(t);
    assert!(info.reconfiguring);
    let reason = info.reason.unwrap_or_default();
    assert!(reason.contains("joint fence quorum"), "{reason}");
    assert!(reason.contains("2 of the 3 previous"), "{reason}");
    // S0 stays primary of the old set meanwhile, and is elected again once S2 is back.
    assert!(c.poll(t + ms(200)).is_empty());
    let t = t + ms(400);
    c.observe_status("S2", &status(Role::Secondary, 2, Some("S0"), (2, 8)), t);
    let actions = c.poll(t);
    assert_eq!(fences(&actions).len(), 7);
    assert!(matches!(c.state(), ControllerState::Electing { preferred: Some(p), .. } if p == "S0"));
    // Fence answers may also make it impossible: S0 and S2 do not answer after all.
    let epoch = fences(&actions)[0].1;
    for (server, e) in fences(&actions) {
        let answer = if server == "S0" || server == "S1" || server == "S2" {
            FenceAnswer::Unreachable { server }
        } else {
            accepted(&server, e, 0, 0)
        };
        c.on_fence_answer(epoch, answer);
    }
    assert!(c.poll(t + ms(1)).is_empty());
    let reason = c.info(t + ms(1)).reason.unwrap_or_default();
    assert!(
        reason.contains("during the replica set change") && reason.contains("0 previous"),
        "{reason}"
    );
    assert_eq!(c.state().phase(), Phase::NoQuorum);
}

#[test]
fn removing_a_secondary_keeps_the_primary() {
    let t0 = Instant::now();
    let mut c = healthy(3, [7, 7, 6], t0);
    let kept: Vec<String> = vec!["S0".into(), "S1".into()];
    c.reconfigure(kept.clone()).unwrap();
    assert_eq!(c.fence_quorum(), 2);
    assert_eq!(
        c.members(),
        names(3),
        "S2 is fenced until the change completes"
    );
    let actions = c.poll(t0);
    assert_eq!(
        fences(&actions),
        vec![("S0".into(), 4), ("S1".into(), 4), ("S2".into(), 4)]
    );
    let logs: BTreeMap<&str, (u64, u64)> = [("S0", (3, 7)), ("S1", (3, 7)), ("S2", (3, 6))].into();
    accept_all(&mut c, &actions, &logs);
    let actions = c.poll(t0 + ms(1));
    assert!(
        matches!(&actions[..], [Action::Promote { server, epoch: 4, replicas, .. }]
        if server == "S0" && *replicas == kept)
    );
    c.on_promote_result("S0", 4, PromoteOutcome::Done, t0 + ms(2));
    assert_eq!(c.primary(), Some(("S0", 4)));
    assert!(!c.reconfiguring());
    assert_eq!(c.members(), kept);
    // What was known of S2 is gone, and its reports are ignored from now on.
    assert!(c.report("S2").is_none());
    assert!(!c.detector().observed("S2"));
    c.observe_status(
        "S2",
        &status(Role::Primary, 9, Some("S2"), (9, 9)),
        t0 + ms(200),
    );
    assert!(c.report("S2").is_none());
    assert!(c.poll(t0 + ms(200)).is_empty());
    assert_eq!(c.primary(), Some(("S0", 4)));
    assert_eq!(c.info(t0 + ms(200)).replicas.len(), 2);
}

#[test]
fn removing_the_primary_elects_the_longest_remaining_log() {
    let t0 = Instant::now();
    let mut c = healthy(3, [9, 8, 7], t0);
    c.reconfigure(vec!["S1".into(), "S2".into(), "S3".into()])
        .unwrap();
    c.observe_status("S3", &ShardStatus::fresh(), t0);
    let actions = c.poll(t0);
    assert!(matches!(
        c.state(),
        ControllerState::Electing {
            preferred: None,
            ..
        }
    ));
    assert_eq!(
        fences(&actions),
        vec![
            ("S1".into(), 4),
            ("S2".into(), 4),
            ("S3".into(), 4),
            ("S0".into(), 4)
        ]
    );
    // The removed primary has the longest log (a tail it never committed): it cannot win, and
    // does not block S1.
    let logs: BTreeMap<&str, (u64, u64)> = [("S0", (3, 9)), ("S1", (3, 8)), ("S2", (3, 7))].into();
    accept_all(&mut c, &actions, &logs);
    let actions = c.poll(t0 + ms(1));
    assert!(
        matches!(&actions[..], [Action::Promote { server, epoch: 4, replicas, .. }]
        if server == "S1" && replicas.len() == 3 && !replicas.contains(&"S0".to_string()))
    );
    c.on_promote_result("S1", 4, PromoteOutcome::Done, t0 + ms(2));
    assert_eq!(c.primary(), Some(("S1", 4)));
    assert!(!c.reconfiguring());
}

#[test]
fn one_replica_set_change_at_a_time() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 5], t0);
    assert_eq!(c.reconfigure(names(3)), Ok(()), "unchanged: nothing to do");
    let mut shuffled = names(3);
    shuffled.reverse();
    assert_eq!(c.reconfigure(shuffled), Ok(()), "the order does not matter");
    assert!(!c.reconfiguring());
    assert!(c.poll(t0).is_empty());
    assert_eq!(
        c.reconfigure(Vec::new()),
        Err(ReconfigureError::Invalid(ClusterSpecError::NoReplicas(
            "sh1".into()
        )))
    );
    c.reconfigure(names(4)).unwrap();
    assert_eq!(
        c.reconfigure(names(4)),
        Ok(()),
        "the same change again is accepted"
    );
    assert_eq!(
        c.reconfigure(names(5)),
        Err(ReconfigureError::Busy {
            shard: "sh1".into()
        })
    );
    assert_eq!(
        c.replicas(),
        names(4).as_slice(),
        "the refusal changed nothing"
    );
    c.observe_status("S3", &ShardStatus::fresh(), t0);
    let actions = c.poll(t0);
    accept_all(&mut c, &actions, &BTreeMap::new());
    assert!(promote_of(&c.poll(t0 + ms(1))).is_some());
    assert!(matches!(
        c.reconfigure(names(5)),
        Err(ReconfigureError::Busy { .. })
    ));
    c.on_promote_result("S0", 3, PromoteOutcome::Done, t0 + ms(2));
    assert_eq!(c.reconfigure(names(5)), Ok(()), "the change completed");
    assert_eq!(c.previous(), Some(names(4).as_slice()));
}

#[test]
fn joint_configuration_ends_once_the_new_primary_commits_its_noop() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 5], t0);
    c.reconfigure(names(4)).unwrap();
    c.observe_status("S3", &ShardStatus::fresh(), t0);
    let actions = c.poll(t0);
    let logs: BTreeMap<&str, (u64, u64)> = [("S0", (2, 5)), ("S1", (2, 5)), ("S2", (2, 5))].into();
    accept_all(&mut c, &actions, &logs);
    assert_eq!(promote_of(&c.poll(t0 + ms(1))), Some(("S0".into(), 3)));
    c.on_promote_result(
        "S0",
        3,
        PromoteOutcome::Failed("timed out".into()),
        t0 + ms(2),
    );
    // S0 reports itself primary of epoch 3, its no-op (LSN 6) not committed yet: healthy, but
    // the change is not over (a failover now would still need the previous set).
    let t = t0 + ms(200);
    let mut p = status(Role::Primary, 3, Some("S0"), (3, 6));
    p.commit_lsn = 5;
    c.observe_status("S0", &p, t);
    assert!(c.poll(t).is_empty());
    assert_eq!(c.primary(), Some(("S0", 3)));
    assert!(c.reconfiguring());
    let t = t + ms(200);
    p.commit_lsn = 6;
    c.observe_status("S0", &p, t);
    assert!(c.poll(t).is_empty());
    assert!(!c.reconfiguring(), "the no-op is committed");
    assert_eq!(c.previous(), None);
    assert_eq!(c.primary(), Some(("S0", 3)));
}

#[test]
fn primary_of_the_old_set_is_elected_again_with_the_new_list() {
    let t0 = Instant::now();
    let mut c = healthy(2, [5, 5, 5], t0);
    let t = t0 + ms(200);
    c.observe_failure("S0", Heartbeat::Refused, t);
    c.observe_failure("S1", Heartbeat::Refused, t);
    c.observe_status("S2", &status(Role::Secondary, 2, Some("S0"), (2, 5)), t);
    assert!(c.poll(t).is_empty());
    assert!(matches!(
        c.state(),
        ControllerState::NoQuorum {
            preferred: None,
            ..
        }
    ));
    c.reconfigure(names(4)).unwrap();
    c.observe_status("S3", &ShardStatus::fresh(), t);
    assert!(c.poll(t).is_empty(), "2 of 4 new replicas reachable");
    // S0 was only cut off: it still reports itself primary of epoch 2, with the old list.
    let t = t + ms(200);
    c.observe_status("S0", &status(Role::Primary, 2, Some("S0"), (2, 5)), t);
    c.observe_status("S1", &status(Role::Secondary, 2, Some("S0"), (2, 5)), t);
    let actions = c.poll(t);
    assert_eq!(fences(&actions).len(), 4);
    assert!(fences(&actions).iter().all(|(_, e)| *e == 3));
    assert!(matches!(c.state(), ControllerState::Electing { preferred: Some(p), .. } if p == "S0"));
    let logs: BTreeMap<&str, (u64, u64)> = [("S0", (2, 5)), ("S1", (2, 5)), ("S2", (2, 5))].into();
    accept_all(&mut c, &actions, &logs);
    assert!(
        matches!(&c.poll(t + ms(1))[..], [Action::Promote { server, epoch: 3, replicas, .. }]
        if server == "S0" && *replicas == names(4))
    );
}

#[test]
fn replacing_every_replica_bridges_through_a_previous_one() {
    let t0 = Instant::now();
    let mut c = ShardController::new(
        "sh1",
        vec!["S0".into()],
        Quorum::Majority,
        ControllerConfig::default(),
    );
    c.observe_status("S0", &status(Role::Primary, 1, Some("S0"), (1, 4)), t0);
    assert!(c.poll(t0).is_empty());
    assert_eq!(c.primary(), Some(("S0", 1)));
    let only_s1: Vec<String> = vec!["S1".into()];
    c.reconfigure(only_s1.clone()).unwrap();
    c.observe_status("S1", &ShardStatus::fresh(), t0);
    let actions = c.poll(t0);
    assert_eq!(fences(&actions), vec![("S1".into(), 2), ("S0".into(), 2)]);
    assert!(matches!(
        c.state(),
        ControllerState::Electing {
            preferred: None,
            ..
        }
    ));
    // The empty S1 never gets S0's vote: S0 is promoted with the new list and copies its log
    // to S1 (its no-op commits on both).
    c.on_fence_answer(2, accepted("S1", 2, 0, 0));
    c.on_fence_answer(2, accepted("S0", 2, 1, 4));
    assert_eq!(
        c.poll(t0 + ms(1)),
        vec![Action::Promote {
            shard: "sh1".into(),
            server: "S0".into(),
            epoch: 2,
            replicas: only_s1.clone(),
            quorum: Quorum::Majority,
        }]
    );
    c.on_promote_result("S0", 2, PromoteOutcome::Done, t0 + ms(2));
    assert!(!c.reconfiguring());
    assert_eq!(c.members(), only_s1);
    // Then an election in the new set alone moves the primary there.
    let actions = c.poll(t0 + ms(3));
    assert_eq!(fences(&actions), vec![("S1".into(), 3)]);
    c.on_fence_answer(3, accepted("S1", 3, 2, 5));
    assert_eq!(promote_of(&c.poll(t0 + ms(4))), Some(("S1".into(), 3)));
    c.on_promote_result("S1", 3, PromoteOutcome::Done, t0 + ms(5));
    assert_eq!(c.primary(), Some(("S1", 3)));
}

#[test]
fn bridging_primary_completes_from_status_only_once_its_noop_is_committed() {
    let t0 = Instant::now();
    let mut c = ShardController::new(
        "sh1",
        vec!["S0".into()],
        Quorum::Majority,
        ControllerConfig::default(),
    );
    c.observe_status("S0", &status(Role::Primary, 1, Some("S0"), (1, 4)), t0);
    c.poll(t0);
    c.reconfigure(vec!["S1".into()]).unwrap();
    c.observe_status("S1", &ShardStatus::fresh(), t0);
    c.poll(t0);
    c.on_fence_answer(2, accepted("S1", 2, 0, 0));
    c.on_fence_answer(2, accepted("S0", 2, 1, 4));
    assert_eq!(promote_of(&c.poll(t0 + ms(1))), Some(("S0".into(), 2)));
    c.on_promote_result(
        "S0",
        2,
        PromoteOutcome::Failed("timed out".into()),
        t0 + ms(2),
    );
    let t = t0 + ms(200);
    let mut p = status(Role::Primary, 2, Some("S0"), (2, 5));
    p.commit_lsn = 4;
    c.observe_status("S0", &p, t);
    assert!(
        c.poll(t).is_empty(),
        "no-op (LSN 5) not committed: keep waiting"
    );
    assert_eq!(c.state().phase(), Phase::Promoting);
    assert!(c.reconfiguring());
    let t = t + ms(200);
    p.commit_lsn = 5;
    c.observe_status("S0", &p, t);
    let actions = c.poll(t);
    assert!(!c.reconfiguring());
    assert_eq!(fences(&actions), vec![("S1".into(), 3)]);
}
