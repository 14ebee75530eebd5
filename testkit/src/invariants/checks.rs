//! Final-state, convergence and single-primary checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::json::{canonical_json, row_key, rows_checksum};
use super::ledger::{AckLedger, Record, records_to_register_ops};
use super::linearizability::{
    Budget, KeyVerdict, LinearizabilityLimits, RegisterKind, RegisterOp, RegisterOutcome,
    check_key, describe, show_value,
};
use super::{Check, Violation};

/// Checks that the final table explains the acknowledged operations, with the default
/// [`LinearizabilityLimits`]. See [`check_acked_present_with`].
pub fn check_acked_present(
    ledger: &AckLedger,
    final_rows: &BTreeMap<i64, Value>,
) -> Result<(), Violation> {
    check_acked_present_with(
        &ledger.records(),
        final_rows,
        &LinearizabilityLimits::default(),
    )
}

/// Checks that `final_rows` (key → row, read after every client stopped) is explained by the
/// recorded operations: for each key, some linearizable order of its acknowledged writes,
/// updates and deletes plus any subset of its unknown (or still pending) ones must end in the
/// final state. Failed operations and those answered [`NoEffect`](super::OpResult::NoEffect) are
/// taken to have changed nothing; reads are ignored here (use [`check_linearizable_register`]
/// for them). Rows are compared as [`canonical_json`].
///
/// In particular: a key whose acknowledged write is followed by no possible delete or update
/// must hold exactly that row, and a key no client wrote (acknowledged or unknown) must be
/// absent. Each problem names its key.
///
/// [`check_linearizable_register`]: super::check_linearizable_register
pub fn check_acked_present_with(
    records: &[Record],
    final_rows: &BTreeMap<i64, Value>,
    limits: &LinearizabilityLimits,
) -> Result<(), Violation> {
    let ops = records_to_register_ops(records, false);
    let mut by_key: BTreeMap<i64, Vec<&RegisterOp>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(op.key).or_default().push(op);
    }
    let keys: BTreeSet<i64> = by_key.keys().chain(final_rows.keys()).copied().collect();
    let mut budget = Budget::new(limits);
    let mut problems = Vec::new();
    let mut inconclusive = Vec::new();
    for key in keys {
        let kops: &[&RegisterOp] = by_key.get(&key).map_or(&[], Vec::as_slice);
        let final_row = final_rows.get(&key);
        let writes: Vec<&RegisterOp> = kops
            .iter()
            .copied()
            .filter(|o| matches!(o.kind, RegisterKind::Write(_)))
            .collect();
        if let Some(row) = final_row
            && writes.is_empty()
        {
            problems.push(format!(
                "key {key}: present with {} but no client wrote it (no acknowledged or unknown write/update)",
                show_value(Some(row))
            ));
            continue;
        }
        match check_key(key, kops, Some(final_row), &mut budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Malformed(msg) => problems.push(msg),
            KeyVerdict::Inconclusive(msg) => inconclusive.push(msg),
            KeyVerdict::NotLinearizable(detail) => {
                problems.push(format!(
                    "{}; {detail}",
                    diagnose(key, kops, &writes, final_row)
                ));
            }
        }
    }
    Violation::from_findings(Check::AckedPresent, problems, inconclusive)
}

/// The first sentence of an acked-present problem: what is wrong with the key, in plain terms.
fn diagnose(
    key: i64,
    kops: &[&RegisterOp],
    writes: &[&RegisterOp],
    final_row: Option<&Value>,
) -> String {
    let acked = |o: &&&RegisterOp| o.outcome == RegisterOutcome::Ok;
    let last_acked_write = writes.iter().filter(acked).max_by_key(|o| o.complete);
    let deletes = kops
        .iter()
        .filter(|o| matches!(o.kind, RegisterKind::Delete))
        .count();
    match final_row {
        None => match last_acked_write {
            Some(w) if deletes == 0 => format!(
                "key {key}: acknowledged {} is missing from the final state, and no delete of the key was issued",
                describe(w)
            ),
            Some(w) => format!(
                "key {key}: missing from the final state, which no order of its operations explains (latest acknowledged: {})",
                describe(w)
            ),
            None => format!(
                "key {key}: missing from the final state, which no order of its operations explains"
            ),
        },
        Some(row) => {
            let canon = canonical_json(row);
            let wrote_it = writes
                .iter()
                .any(|o| matches!(&o.kind, RegisterKind::Write(v) if canonical_json(v) == canon));
            if !wrote_it {
                format!(
                    "key {key}: final row {} was never written by any client",
                    show_value(Some(row))
                )
            } else {
                format!(
                    "key {key}: final row {} is stale or resurrected: no order of its operations ends with it",
                    show_value(Some(row))
                )
            }
        }
    }
}

/// Checks that every replica holds the same rows. `replicas` is `(name, rows)`; rows are
/// compared as [`canonical_json`] and grouped by [`row_key`] (rows without an integer key are
/// identified by their whole content).
///
/// For each pair of replicas that differ, the problem names both replicas, their row counts and
/// [`rows_checksum`]s, and the first differing key with each side's row. A key present twice
/// on one replica is a problem too.
pub fn check_convergence(replicas: &[(String, Vec<Value>)]) -> Result<(), Violation> {
    #[derive(PartialEq, Eq, PartialOrd, Ord, Clone)]
    enum Id {
        Key(i64),
        Row(String),
    }
    impl std::fmt::Display for Id {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Id::Key(k) => write!(f, "key {k}"),
                Id::Row(r) => write!(f, "keyless row {r}"),
            }
        }
    }
    let mut problems = Vec::new();
    let mut tables: Vec<BTreeMap<Id, Vec<String>>> = Vec::with_capacity(replicas.len());
    for (name, rows) in replicas {
        let mut table: BTreeMap<Id, Vec<String>> = BTreeMap::new();
        for row in rows {
            let canon = canonical_json(row);
            let id = row_key(row).map_or_else(|| Id::Row(canon.clone()), Id::Key);
            table.entry(id).or_default().push(canon);
        }
        for (id, rows) in &mut table {
            rows.sort_unstable();
            if let Id::Key(_) = id
                && rows.len() > 1
            {
                problems.push(format!("replica {name}: {id} appears {} times", rows.len()));
            }
        }
        tables.push(table);
    }
    let show = |rows: Option<&Vec<String>>| match rows {
        None => "nothing".to_owned(),
        Some(rows) => rows
            .iter()
            .map(|r| show_value(serde_json::from_str::<Value>(r).ok().as_ref()))
            .collect::<Vec<_>>()
            .join(" + "),
    };
    for a in 0..replicas.len() {
        for b in a + 1..replicas.len() {
            if tables[a] == tables[b] {
                continue;
            }
            let first = tables[a]
                .keys()
                .chain(tables[b].keys())
                .filter(|id| tables[a].get(*id) != tables[b].get(*id))
                .min();
            let (name_a, rows_a) = &replicas[a];
            let (name_b, rows_b) = &replicas[b];
            let mut msg = format!(
                "replicas {name_a} ({} rows, checksum {:016x}) and {name_b} ({} rows, checksum {:016x}) differ",
                rows_a.len(),
                rows_checksum(rows_a),
                rows_b.len(),
                rows_checksum(rows_b),
            );
            if let Some(id) = first {
                msg.push_str(&format!(
                    "; first at {id}: {name_a} has {}, {name_b} has {}",
                    show(tables[a].get(id)),
                    show(tables[b].get(id)),
                ));
            }
            problems.push(msg);
        }
    }
    Violation::from_problems(Check::Convergence, problems)
}

/// Checks that at most one server acted as primary (accepted or committed writes) per shard and
/// epoch. `history` is `(shard, epoch, server)` observations, in any order and with repeats.
/// Each problem names the shard, the epoch and every server seen as its primary.
pub fn check_single_primary<S: AsRef<str>, V: AsRef<str>>(
    history: &[(S, u64, V)],
) -> Result<(), Violation> {
    let mut primaries: BTreeMap<(&str, u64), BTreeSet<&str>> = BTreeMap::new();
    for (shard, epoch, server) in history {
        primaries
            .entry((shard.as_ref(), *epoch))
            .or_default()
            .insert(server.as_ref());
    }
    let problems = primaries
        .into_iter()
        .filter(|(_, servers)| servers.len() > 1)
        .map(|((shard, epoch), servers)| {
            format!(
                "shard {shard} epoch {epoch}: {} servers acted as primary: {}",
                servers.len(),
                servers.into_iter().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    Violation::from_problems(Check::SinglePrimary, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::{Op, OpResult, Status};
    use serde_json::json;

    fn rec(id: usize, op: Op, invoke: u64, complete: u64, status: Status) -> Record {
        Record {
            id,
            op,
            invoke_ns: invoke,
            complete_ns: Some(complete),
            status,
        }
    }
    fn write(key: i64, row: Value) -> Op {
        Op::Write { key, row }
    }
    fn update(key: i64, row: Value) -> Op {
        Op::Update { key, row }
    }
    const APPLIED: Status = Status::Ok(OpResult::Applied);

    fn check(records: &[Record], rows: &[(i64, Value)]) -> Result<(), Violation> {
        let rows: BTreeMap<i64, Value> = rows.iter().cloned().collect();
        check_acked_present_with(records, &rows, &LinearizabilityLimits::default())
    }

    #[test]
    fn canonical_json_ignores_field_order() {
        let a = json!({"b": [1, {"y": 2, "x": 1}], "a": null});
        let b = json!({"a": null, "b": [1, {"x": 1, "y": 2}]});
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":null,"b":[1,{"x":1,"y":2}]}"#);
    }

    #[test]
    fn row_keys() {
        assert_eq!(row_key(&json!({"Stud_id": 5, "name": "x"})), Some(5));
        assert_eq!(row_key(&json!([7, "x"])), Some(7));
        assert_eq!(row_key(&json!({"name": "x", "Stud_id": 5})), None);
        assert_eq!(row_key(&json!(3)), None);
    }

    #[test]
    fn checksum_is_order_independent_and_stable() {
        let a = vec![json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "b"})];
        let b = vec![json!({"id": 2, "v": "b"}), json!({"v": "a", "id": 1})];
        assert_eq!(rows_checksum(&a), rows_checksum(&b));
        assert_ne!(rows_checksum(&a), rows_checksum(&a[..1]));
        assert_ne!(
            rows_checksum(&[json!("ab"), json!("c")]),
            rows_checksum(&[json!("a"), json!("bc")])
        );
        // Pinned: the checksum must not change between runs or versions.
        assert_eq!(rows_checksum(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(rows_checksum(&[json!(1)]), 0x07f7_c907_b4b8_b319);
    }

    #[test]
    fn acked_writes_present() {
        let records = [
            rec(0, write(1, json!({"id": 1})), 0, 10, APPLIED),
            rec(1, write(2, json!({"id": 2})), 0, 10, Status::Unknown),
            rec(2, write(3, json!({"id": 3})), 0, 10, Status::Failed),
            rec(
                3,
                write(4, json!({"id": 4})),
                0,
                10,
                Status::Ok(OpResult::NoEffect),
            ),
        ];
        // Unknown write 2 may or may not be there.
        check(&records, &[(1, json!({"id": 1}))]).expect("ok");
        check(&records, &[(1, json!({"id": 1})), (2, json!({"id": 2}))]).expect("ok");
        // Lost acked write.
        let v = check(&records, &[]).expect_err("lost");
        assert_eq!(v.problems.len(), 1, "{v}");
        assert!(
            v.problems[0].starts_with("key 1: acknowledged #0 write({\"id\":1})"),
            "{v}"
        );
        // Failed and no-effect writes must not appear.
        for k in [3, 4] {
            let v = check(&records, &[(1, json!({"id": 1})), (k, json!({"id": k}))])
                .expect_err("never written");
            assert!(
                v.problems[0].starts_with(&format!("key {k}: present with")),
                "{v}"
            );
        }
        // Never-mentioned key.
        let v = check(&records, &[(1, json!({"id": 1})), (99, json!({"id": 99}))])
            .expect_err("phantom");
        assert!(v.problems[0].contains("key 99: present with"), "{v}");
        // Wrong content.
        let v = check(&records, &[(1, json!({"id": 1, "x": 1}))]).expect_err("wrong row");
        assert!(
            v.problems[0].starts_with("key 1: final row {\"id\":1,\"x\":1} was never written"),
            "{v}"
        );
    }

    #[test]
    fn later_updates_and_deletes() {
        let records = [
            rec(0, write(1, json!({"id": 1, "v": 1})), 0, 10, APPLIED),
            rec(1, update(1, json!({"id": 1, "v": 2})), 20, 30, APPLIED),
            rec(2, write(2, json!({"id": 2})), 0, 10, APPLIED),
            rec(3, Op::Delete { key: 2 }, 20, 30, Status::Unknown),
            rec(4, write(3, json!({"id": 3})), 0, 10, APPLIED),
            rec(5, Op::Delete { key: 3 }, 20, 30, APPLIED),
        ];
        let good = [(1, json!({"id": 1, "v": 2})), (2, json!({"id": 2}))];
        check(&records, &good).expect("ok");
        check(&records, &good[..1]).expect("unknown delete happened");
        // Stale: the update was acknowledged after the write completed.
        let v = check(
            &records,
            &[(1, json!({"id": 1, "v": 1})), (2, json!({"id": 2}))],
        )
        .expect_err("stale");
        assert!(v.problems[0].starts_with("key 1: final row"), "{v}");
        assert!(v.problems[0].contains("stale or resurrected"), "{v}");
        // Resurrected: the delete of key 3 was acknowledged.
        let v = check(
            &records,
            &[(1, json!({"id": 1, "v": 2})), (3, json!({"id": 3}))],
        )
        .expect_err("resurrected");
        assert!(v.problems[0].starts_with("key 3: final row"), "{v}");
    }

    #[test]
    fn concurrent_update_and_delete_either_order() {
        let records = [
            rec(0, write(1, json!(1)), 0, 10, APPLIED),
            rec(1, update(1, json!(2)), 20, 40, APPLIED),
            rec(2, Op::Delete { key: 1 }, 30, 50, APPLIED),
        ];
        check(&records, &[]).expect("delete last");
        check(&records, &[(1, json!(2))]).expect("update last");
        check(&records, &[(1, json!(1))]).expect_err("write can't be last");
        let v = check(
            &[
                rec(0, write(1, json!(1)), 0, 10, APPLIED),
                rec(1, Op::Delete { key: 1 }, 20, 30, APPLIED),
                rec(2, write(1, json!(3)), 40, 50, APPLIED),
            ],
            &[],
        )
        .expect_err("lost re-insert");
        assert!(
            v.problems[0].starts_with("key 1: missing from the final state"),
            "{v}"
        );
    }

    #[test]
    fn pending_ops_count_as_unknown_and_reads_are_ignored() {
        let records = [
            Record {
                id: 0,
                op: write(1, json!(1)),
                invoke_ns: 0,
                complete_ns: None,
                status: Status::Pending,
            },
            rec(
                1,
                Op::Read { key: 1 },
                0,
                5,
                Status::Ok(OpResult::Read(Some(json!(7)))),
            ),
        ];
        check(&records, &[]).expect("ok");
        check(&records, &[(1, json!(1))]).expect("ok");
    }

    #[test]
    fn check_acked_present_reads_the_ledger() {
        let ledger = AckLedger::new();
        ledger
            .begin(write(5, json!({"id": 5})))
            .ok(OpResult::Applied);
        ledger.begin(write(6, json!({"id": 6}))).unknown();
        let mut rows = BTreeMap::new();
        rows.insert(5, json!({"id": 5}));
        check_acked_present(&ledger, &rows).expect("ok");
        rows.clear();
        let v = check_acked_present(&ledger, &rows).expect_err("lost");
        assert_eq!(v.check, Check::AckedPresent);
        assert!(v.to_string().contains("key 5"), "{v}");
    }

    #[test]
    fn convergence() {
        let r = |k: i64, v: &str| json!({"id": k, "v": v});
        let a = ("a".to_owned(), vec![r(1, "x"), r(2, "y")]);
        let b = ("b".to_owned(), vec![r(2, "y"), r(1, "x")]);
        check_convergence(&[a.clone(), b.clone()]).expect("same rows");
        check_convergence(&[]).expect("nothing");
        check_convergence(std::slice::from_ref(&a)).expect("one");
        let c = ("c".to_owned(), vec![r(1, "x"), r(2, "z"), r(3, "w")]);
        let v = check_convergence(&[a.clone(), b, c]).expect_err("c differs");
        assert_eq!(v.problems.len(), 2, "{v}");
        assert!(
            v.problems[0]
                .contains(r#"first at key 2: a has {"id":2,"v":"y"}, c has {"id":2,"v":"z"}"#),
            "{v}"
        );
        let d = ("d".to_owned(), vec![r(1, "x")]);
        let v = check_convergence(&[a.clone(), d]).expect_err("d misses 2");
        assert!(v.problems[0].contains("first at key 2: a has"), "{v}");
        assert!(v.problems[0].contains("d has nothing"), "{v}");
        let e = ("e".to_owned(), vec![r(1, "x"), r(1, "x"), r(2, "y")]);
        let v = check_convergence(&[a, e]).expect_err("duplicate");
        assert!(
            v.problems[0].contains("replica e: key 1 appears 2 times"),
            "{v}"
        );
    }

    #[test]
    fn single_primary() {
        check_single_primary::<&str, &str>(&[]).expect("empty");
        check_single_primary(&[
            ("sh1", 1, "s1"),
            ("sh1", 1, "s1"),
            ("sh1", 2, "s2"),
            ("sh2", 1, "s2"),
        ])
        .expect("ok");
        let history = vec![
            ("sh1".to_owned(), 3, "s1".to_owned()),
            ("sh1".to_owned(), 3, "s2".to_owned()),
            ("sh2".to_owned(), 3, "s3".to_owned()),
        ];
        let v = check_single_primary(&history).expect_err("two primaries");
        assert_eq!(v.check, Check::SinglePrimary);
        assert_eq!(
            v.problems,
            ["shard sh1 epoch 3: 2 servers acted as primary: s1, s2"]
        );
    }
}
