//! The linearizability checker on hand-made and generated histories.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::invariants::{Check, Violation};
use proptest::prelude::*;
use serde_json::json;

fn w(v: i64, invoke: u64, complete: u64) -> RegisterOp {
    RegisterOp::write(0, v, invoke, complete)
}
fn r(v: Option<i64>, invoke: u64, complete: u64) -> RegisterOp {
    RegisterOp::read(0, v.map(Value::from), invoke, complete)
}
fn d(invoke: u64, complete: u64) -> RegisterOp {
    RegisterOp::delete(0, invoke, complete)
}

fn ok(h: &[RegisterOp]) {
    if let Err(v) = check_linearizable_register(h) {
        panic!("expected linearizable, got: {v}");
    }
}

fn bad(h: &[RegisterOp]) -> Violation {
    let v = check_linearizable_register(h).expect_err("expected a violation");
    assert!(!v.inconclusive, "{v}");
    assert_eq!(v.check, Check::Linearizability);
    v
}

#[test]
fn empty_and_sequential_histories() {
    ok(&[]);
    ok(&[r(None, 0, 1)]);
    ok(&[w(1, 0, 1), r(Some(1), 2, 3), w(2, 4, 5), r(Some(2), 6, 7)]);
    ok(&[w(1, 0, 1), d(2, 3), r(None, 4, 5)]);
}

#[test]
fn concurrent_read_may_see_old_or_new() {
    ok(&[w(1, 0, 1), w(2, 10, 20), r(Some(1), 11, 12)]);
    ok(&[w(1, 0, 1), w(2, 10, 20), r(Some(2), 11, 12)]);
    // Equal timestamps count as concurrent.
    ok(&[w(1, 0, 10), r(None, 10, 11)]);
}

#[test]
fn stale_read_after_completed_write_is_rejected() {
    let v = bad(&[w(1, 0, 1), w(2, 2, 3), r(Some(1), 4, 5)]);
    let msg = v.to_string();
    assert!(msg.contains("key 0"), "{msg}");
    assert!(msg.contains("read→1 [4, 5]"), "{msg}");
    // A read of a never-written value.
    bad(&[w(1, 0, 1), r(Some(7), 2, 3)]);
    // A read of absent after a completed write.
    bad(&[w(1, 0, 1), r(None, 2, 3)]);
    // A read that sees a deleted value.
    bad(&[w(1, 0, 1), d(2, 3), r(Some(1), 4, 5)]);
}

#[test]
fn reads_seeing_write_order_reversed_are_rejected() {
    // Writes of 1 and 2 overlap; reader A sees 1 then 2, reader B sees 2 then 1.
    bad(&[
        w(1, 0, 100),
        w(2, 0, 100),
        r(Some(1), 10, 20),
        r(Some(2), 30, 40),
        r(Some(2), 10, 20),
        r(Some(1), 30, 40),
    ]);
    // Without reader B it is fine.
    ok(&[
        w(1, 0, 100),
        w(2, 0, 100),
        r(Some(1), 10, 20),
        r(Some(2), 30, 40),
    ]);
}

#[test]
fn unknown_writes_may_or_may_not_happen() {
    // Took effect (seen by a later read) ...
    ok(&[w(1, 0, 1), w(2, 2, 3).unknown(), r(Some(2), 10, 11)]);
    // ... or never happened.
    ok(&[w(1, 0, 1), w(2, 2, 3).unknown(), r(Some(1), 10, 11)]);
    // ... or happened late, long after its client gave up.
    ok(&[
        w(1, 0, 1),
        w(2, 2, 3).unknown(),
        r(Some(1), 10, 11),
        r(Some(2), 20, 21),
    ]);
    // But not before it was invoked.
    bad(&[w(1, 0, 1), r(Some(2), 2, 3), w(2, 5, 6).unknown()]);
    // And not twice: once seen, a later completed write hides it.
    bad(&[
        w(2, 0, 1).unknown(),
        r(Some(2), 2, 3),
        w(3, 4, 5),
        r(Some(2), 6, 7),
    ]);
    // Unknown deletes likewise.
    ok(&[w(1, 0, 1), d(2, 3).unknown(), r(None, 4, 5)]);
    ok(&[w(1, 0, 1), d(2, 3).unknown(), r(Some(1), 4, 5)]);
}

#[test]
fn unknown_reads_are_ignored() {
    ok(&[w(1, 0, 1), r(Some(9), 2, 3).unknown()]);
}

#[test]
fn keys_are_checked_independently() {
    let h = vec![
        RegisterOp::write(1, 1, 0, 1),
        RegisterOp::write(2, 2, 0, 1),
        RegisterOp::read(1, Some(json!(1)), 2, 3),
        RegisterOp::read(2, Some(json!(1)), 2, 3),
    ];
    let v = check_linearizable_register(&h).expect_err("key 2 is stale");
    assert_eq!(v.problems.len(), 1);
    assert!(v.problems[0].starts_with("key 2:"), "{v}");
}

#[test]
fn json_values_compare_canonically() {
    ok(&[
        RegisterOp::write(0, json!({"a": 1, "b": 2}), 0, 1),
        RegisterOp::read(0, Some(json!({"b": 2, "a": 1})), 2, 3),
    ]);
}

#[test]
fn malformed_interval_is_reported() {
    let v = bad(&[w(1, 5, 4).with_id(3)]);
    assert!(
        v.to_string()
            .contains("#3 write(1) [5, 4] completes before"),
        "{v}"
    );
}

#[test]
fn limits_make_the_result_inconclusive() {
    // 30 concurrent writes, then two reads after all of them that see different values:
    // impossible, but proving it means trying every order of the writes.
    let mut h: Vec<RegisterOp> = (0..30).map(|v| w(v, 0, 100)).collect();
    h.push(r(Some(0), 200, 201));
    h.push(r(Some(1), 202, 203));
    let limits = LinearizabilityLimits {
        max_steps: 1_000,
        ..LinearizabilityLimits::default()
    };
    let v = check_linearizable_register_with(&h, &limits).expect_err("inconclusive");
    assert!(v.inconclusive, "{v}");
    assert!(v.to_string().contains("step limit"), "{v}");
    let limits = LinearizabilityLimits {
        max_states: 10,
        ..LinearizabilityLimits::default()
    };
    let v = check_linearizable_register_with(&h, &limits).expect_err("inconclusive");
    assert!(
        v.inconclusive && v.to_string().contains("state limit"),
        "{v}"
    );
    let limits = LinearizabilityLimits {
        timeout: Duration::ZERO,
        ..LinearizabilityLimits::default()
    };
    let v = check_linearizable_register_with(&h, &limits).expect_err("inconclusive");
    assert!(
        v.inconclusive && v.to_string().contains("time limit"),
        "{v}"
    );
    // A definite violation on another key wins over an inconclusive one.
    h.push(RegisterOp::write(1, 1, 0, 1));
    h.push(RegisterOp::read(1, None, 2, 3));
    let v = check_linearizable_register_with(&h, &limits).expect_err("violation");
    assert!(!v.inconclusive, "{v}");
    assert_eq!(v.problems.len(), 2, "{v}");
}

#[test]
fn read_of_never_written_value_names_the_read() {
    let v = bad(&[w(1, 0, 1), r(Some(7), 2, 3).with_id(9)]);
    assert!(
        v.to_string()
            .contains("#9 read→7 [2, 3] returns a value that no write"),
        "{v}"
    );
}

#[test]
fn memoization_prunes_equivalent_prefixes() {
    // 300 rounds of three mutually concurrent writes followed by a read of the third value:
    // each round has two valid orders, so a failure at the very end makes a search without
    // the (set, state) cache backtrack through 2^300 combinations. With it, it is linear.
    let mut h = Vec::new();
    for round in 0..300u64 {
        let t = round * 100;
        let v = round as i64 * 3;
        h.push(w(v, t, t + 50));
        h.push(w(v + 1, t, t + 50));
        h.push(w(v + 2, t, t + 50));
        h.push(r(Some(v + 2), t + 60, t + 70));
    }
    ok(&h);
    // A stale read at the end (a value from round 0) must be rejected, not time out.
    h.push(r(Some(2), 100_000, 100_001));
    let limits = LinearizabilityLimits {
        timeout: Duration::from_secs(30),
        ..LinearizabilityLimits::default()
    };
    let v = check_linearizable_register_with(&h, &limits).expect_err("stale");
    assert!(!v.inconclusive, "{v}");
}

#[test]
fn identical_unknown_retries_do_not_blow_up_the_search() {
    // 40 timed-out retries of the same write (and of a delete), then reads: without the
    // invoke-order rule for identical unknown ops this explores 2^40 subsets.
    let mut h = vec![w(1, 0, 1)];
    for i in 0..40 {
        h.push(w(2, 10 + i, 11 + i).unknown());
        h.push(d(10 + i, 11 + i).unknown());
    }
    let tight = LinearizabilityLimits {
        max_states: 20_000,
        ..LinearizabilityLimits::default()
    };
    let mut reads = h.clone();
    reads.push(r(Some(1), 100, 101));
    reads.push(r(None, 102, 103));
    reads.push(r(Some(2), 104, 105));
    reads.push(r(Some(1), 106, 107));
    let v = check_linearizable_register_with(&reads, &tight).expect_err("1 cannot come back");
    assert!(!v.inconclusive, "{v}");
    reads.pop();
    reads.push(r(None, 106, 107));
    reads.push(r(Some(2), 108, 109));
    check_linearizable_register_with(&reads, &tight).expect("linearizable");
}

/// One generated operation: kind, value, how far before/after its linearization point the
/// interval extends, and for writes/deletes whether the client lost the answer and (then)
/// whether it took effect.
#[derive(Debug, Clone)]
struct GenOp {
    kind: u8,
    value: i64,
    before: u64,
    after: u64,
    unknown: bool,
    took_effect: bool,
}

fn gen_op() -> impl Strategy<Value = GenOp> {
    (
        0u8..3,
        0i64..4,
        0u64..250,
        0u64..250,
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(kind, value, before, after, unknown, took_effect)| GenOp {
            kind,
            value,
            before,
            after,
            unknown,
            took_effect,
        })
}

/// Runs the ops against a real sequential register, op i taking effect at time 100*i + 1000,
/// its interval stretching around that point (so intervals overlap up to ±2 neighbours).
fn history(ops: &[GenOp]) -> Vec<RegisterOp> {
    let mut state: Option<i64> = None;
    let mut out = Vec::new();
    for (i, g) in ops.iter().enumerate() {
        let t = 100 * i as u64 + 1_000;
        let (invoke, complete) = (t - g.before, t + g.after);
        let op = match g.kind {
            0 => {
                if !g.unknown || g.took_effect {
                    state = Some(g.value);
                }
                w(g.value, invoke, complete)
            }
            1 => {
                if !g.unknown || g.took_effect {
                    state = None;
                }
                d(invoke, complete)
            }
            _ => r(state, invoke, complete),
        };
        out.push(if g.unknown { op.unknown() } else { op }.with_id(i));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn histories_of_a_real_register_are_accepted(ops in prop::collection::vec(gen_op(), 0..60)) {
        let h = history(&ops);
        if let Err(v) = check_linearizable_register(&h) {
            prop_assert!(false, "rejected a linearizable history: {v}");
        }
    }

    #[test]
    fn a_read_of_a_never_written_value_is_rejected(
        ops in prop::collection::vec(gen_op(), 1..60),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut h = history(&ops);
        let reads: Vec<usize> = h
            .iter()
            .enumerate()
            .filter(|(_, op)| {
                matches!(op.kind, RegisterKind::Read(_)) && op.outcome == RegisterOutcome::Ok
            })
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        let i = reads[pick.index(reads.len())];
        h[i].kind = RegisterKind::Read(Some(json!(1_000_000)));
        let v = check_linearizable_register(&h);
        prop_assert!(matches!(&v, Err(v) if !v.inconclusive), "{v:?}");
    }
}
