//! Linearizability of single-key register histories: the Wing–Gong–Lowe search with
//! memoization on (linearized set, state), as in Porcupine, run per key.
//!
//! Linearizability is local (Herlihy & Wing): a history over many keys is linearizable iff each
//! key's sub-history is, so each key is searched on its own.
//!
//! The search keeps the history's call and return events in a doubly linked list sorted by time.
//! It walks the list from the front: at a call it tries to linearize that operation next (apply
//! it to the model state; if legal and the pair (linearized set, new state) was not seen before,
//! push it, unlink its call and return, and restart from the front). Reaching a return means the
//! operation it belongs to should have been linearized already, so the search backtracks by
//! popping the last choice. The history is linearizable iff the list empties. The cache of
//! visited (set, state) pairs prunes re-exploration of equivalent prefixes (Lowe 2017).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::checks::canonical_json;
use super::{Check, Violation};

/// What a register operation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Set the register to a value (an insert or update of the row).
    Write(Value),
    /// Read the register: the value seen, or `None` if the key was absent.
    Read(Option<Value>),
    /// Clear the register (delete the row).
    Delete,
}

/// Whether the client learned the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOutcome {
    /// Completed at `complete`; for a read, the value is what it returned.
    Ok,
    /// Timed out or failed ambiguously: a write or delete may have taken effect at any time after
    /// `invoke`, or never (`complete` is ignored). Unknown reads say nothing and are ignored.
    Unknown,
}

/// One operation on a register (one row key), with its real-time interval.
///
/// Times are nanoseconds on any clock shared by all clients (the [`AckLedger`] uses nanoseconds
/// since its creation). Operation A precedes B iff `A.complete < B.invoke`; equal times count as
/// concurrent. The register starts absent.
///
/// [`AckLedger`]: super::AckLedger
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisterOp {
    /// The register (row key) operated on.
    pub key: i64,
    /// The operation.
    pub kind: RegisterKind,
    /// When the client sent it.
    pub invoke: u64,
    /// When the client got the answer (ignored for unknown outcomes).
    pub complete: u64,
    /// Whether the answer is known.
    pub outcome: RegisterOutcome,
    /// Optional label for messages (e.g. the ledger record id).
    pub id: Option<usize>,
}

impl RegisterOp {
    fn new(key: i64, kind: RegisterKind, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp {
            key,
            kind,
            invoke,
            complete,
            outcome: RegisterOutcome::Ok,
            id: None,
        }
    }

    /// An acknowledged write of `value` to `key` during `[invoke, complete]`.
    pub fn write(key: i64, value: impl Into<Value>, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp::new(key, RegisterKind::Write(value.into()), invoke, complete)
    }

    /// An acknowledged read of `key` that returned `value` (`None`: absent).
    pub fn read(key: i64, value: Option<Value>, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp::new(key, RegisterKind::Read(value), invoke, complete)
    }

    /// An acknowledged delete of `key`.
    pub fn delete(key: i64, invoke: u64, complete: u64) -> RegisterOp {
        RegisterOp::new(key, RegisterKind::Delete, invoke, complete)
    }

    /// The same operation with an unknown outcome.
    pub fn unknown(mut self) -> RegisterOp {
        self.outcome = RegisterOutcome::Unknown;
        self
    }

    /// The same operation labelled `id` in messages.
    pub fn with_id(mut self, id: usize) -> RegisterOp {
        self.id = Some(id);
        self
    }
}

/// Bounds on the search, so a pathological history yields an inconclusive result instead of
/// hanging or exhausting memory. The step and time budgets cover one whole check (all keys);
/// the state budget applies per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearizabilityLimits {
    /// Search steps (list positions visited) in total.
    pub max_steps: u64,
    /// Distinct (linearized set, state) pairs remembered for one key.
    pub max_states: usize,
    /// Wall-clock time for the whole check.
    pub timeout: Duration,
}

impl Default for LinearizabilityLimits {
    /// 50 million steps, 2 million states per key, 60 s.
    fn default() -> Self {
        LinearizabilityLimits {
            max_steps: 50_000_000,
            max_states: 2_000_000,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Checks that `history` is linearizable as a set of registers (one per key), each starting
/// absent, with the default [`LinearizabilityLimits`].
///
/// The violation names each non-linearizable key with the longest linearizable prefix found and
/// the operations none of which could come next. Exceeding a limit gives a violation with
/// [`inconclusive`](Violation::inconclusive) set (unless another key definitely failed).
pub fn check_linearizable_register(history: &[RegisterOp]) -> Result<(), Violation> {
    check_linearizable_register_with(history, &LinearizabilityLimits::default())
}

/// [`check_linearizable_register`] with explicit limits.
pub fn check_linearizable_register_with(
    history: &[RegisterOp],
    limits: &LinearizabilityLimits,
) -> Result<(), Violation> {
    let mut by_key: BTreeMap<i64, Vec<&RegisterOp>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op);
    }
    let mut budget = Budget::new(limits);
    let mut problems = Vec::new();
    let mut inconclusive = Vec::new();
    for (key, ops) in by_key {
        match check_key(key, &ops, None, &mut budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Malformed(msg) => problems.push(msg),
            KeyVerdict::NotLinearizable(detail) => {
                problems.push(format!("key {key}: not linearizable; {detail}"));
            }
            KeyVerdict::Inconclusive(msg) => inconclusive.push(msg),
        }
    }
    finish(Check::Linearizability, problems, inconclusive)
}

/// Builds the result of a check that has definite problems and inconclusive keys.
pub(crate) fn finish(
    check: Check,
    mut problems: Vec<String>,
    inconclusive: Vec<String>,
) -> Result<(), Violation> {
    if problems.is_empty() && inconclusive.is_empty() {
        return Ok(());
    }
    let only_inconclusive = problems.is_empty();
    problems.extend(inconclusive);
    Err(Violation {
        check,
        inconclusive: only_inconclusive,
        problems,
    })
}

/// The search budget shared by all keys of one check.
pub(crate) struct Budget {
    steps_left: u64,
    max_states: usize,
    /// `None` if the timeout is too large to represent (no deadline).
    deadline: Option<Instant>,
    timeout: Duration,
}

impl Budget {
    pub(crate) fn new(limits: &LinearizabilityLimits) -> Budget {
        Budget {
            steps_left: limits.max_steps,
            max_states: limits.max_states,
            deadline: Instant::now().checked_add(limits.timeout),
            timeout: limits.timeout,
        }
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// The result for one key.
pub(crate) enum KeyVerdict {
    Linearizable,
    /// The history itself is invalid (e.g. completes before invoked): a message with the key.
    Malformed(String),
    /// No linearization: an explanation (without the key prefix).
    NotLinearizable(String),
    /// A limit was hit: a message with the key.
    Inconclusive(String),
}

const INF: u128 = u128::MAX;

/// Interned operation kind: values are replaced by small ids (equal canonical JSON, equal id).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    Write(u32),
    Read(Option<u32>),
    Delete,
}

/// One operation of the search.
struct Item<'a> {
    step: Step,
    call: u128,
    ret: u128,
    /// `None` for the synthetic final read.
    op: Option<&'a RegisterOp>,
    final_value: Option<&'a Value>,
}

/// Checks one key's operations; with `final_read = Some(v)`, a read returning `v` is appended
/// after every operation has completed (unknown ones may still land after it, i.e. never).
pub(crate) fn check_key(
    key: i64,
    ops: &[&RegisterOp],
    final_read: Option<Option<&Value>>,
    budget: &mut Budget,
) -> KeyVerdict {
    let mut values: HashMap<String, u32> = HashMap::new();
    let mut intern = |v: &Value| -> u32 {
        let next = u32::try_from(values.len()).unwrap_or(u32::MAX);
        *values.entry(canonical_json(v)).or_insert(next)
    };
    let mut items: Vec<Item<'_>> = Vec::with_capacity(ops.len() + 1);
    for &op in ops {
        let unknown = op.outcome == RegisterOutcome::Unknown;
        if !unknown && op.complete < op.invoke {
            return KeyVerdict::Malformed(format!(
                "key {key}: {} completes before it was invoked",
                describe(op)
            ));
        }
        let step = match &op.kind {
            // An unknown read tells nothing.
            RegisterKind::Read(_) if unknown => continue,
            RegisterKind::Read(v) => Step::Read(v.as_ref().map(&mut intern)),
            RegisterKind::Write(v) => Step::Write(intern(v)),
            RegisterKind::Delete => Step::Delete,
        };
        items.push(Item {
            step,
            call: u128::from(op.invoke),
            ret: if unknown {
                INF
            } else {
                u128::from(op.complete)
            },
            op: Some(op),
            final_value: None,
        });
    }
    if let Some(v) = final_read {
        items.push(Item {
            step: Step::Read(v.map(&mut intern)),
            call: INF - 1,
            ret: INF,
            op: None,
            final_value: v,
        });
    }
    // Fast path with a clearer message: a read of a value no operation on this key wrote.
    let written: HashSet<u32> = items
        .iter()
        .filter_map(|it| match it.step {
            Step::Write(v) => Some(v),
            _ => None,
        })
        .collect();
    if let Some(it) = items
        .iter()
        .find(|it| matches!(it.step, Step::Read(Some(v)) if !written.contains(&v)))
    {
        return KeyVerdict::NotLinearizable(format!(
            "{} returns a value that no write of this key wrote",
            describe_item(it)
        ));
    }
    match search(&items, budget) {
        Search::Linearizable => KeyVerdict::Linearizable,
        Search::Inconclusive(why) => KeyVerdict::Inconclusive(format!(
            "key {key}: search stopped after {why} ({} ops); not verified",
            items.len()
        )),
        Search::NotLinearizable { longest } => {
            KeyVerdict::NotLinearizable(explain(&items, &longest))
        }
    }
}

enum Search {
    Linearizable,
    /// `longest`: item indices of the longest linearizable prefix found.
    NotLinearizable {
        longest: Vec<usize>,
    },
    Inconclusive(String),
}

fn apply(state: Option<u32>, step: Step) -> Option<Option<u32>> {
    match step {
        Step::Write(v) => Some(Some(v)),
        Step::Delete => Some(None),
        Step::Read(v) => (v == state).then_some(state),
    }
}

const NIL: usize = usize::MAX;

/// The WGL search over `items` (see the module docs).
fn search(items: &[Item<'_>], budget: &mut Budget) -> Search {
    let n = items.len();
    if n == 0 {
        return Search::Linearizable;
    }
    // Events sorted by time; at equal times calls come first (equal times are concurrent).
    let mut events: Vec<(u128, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, it) in items.iter().enumerate() {
        events.push((it.call, 0, i));
        events.push((it.ret, 1, i));
    }
    events.sort_unstable();
    let m = events.len();
    let head = m;
    let mut next = vec![NIL; m + 1];
    let mut prev = vec![NIL; m + 1];
    let mut call_node = vec![0usize; n];
    let mut ret_node = vec![0usize; n];
    for (node, &(_, kind, i)) in events.iter().enumerate() {
        if kind == 0 {
            call_node[i] = node;
        } else {
            ret_node[i] = node;
        }
        prev[node] = if node == 0 { head } else { node - 1 };
        next[node] = if node + 1 < m { node + 1 } else { NIL };
    }
    next[head] = 0;
    let is_call = |node: usize| events[node].1 == 0;
    let op_of = |node: usize| events[node].2;

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = next[node];
        if next[node] != NIL {
            prev[next[node]] = prev[node];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = node;
        if next[node] != NIL {
            prev[next[node]] = node;
        }
    };

    // Identical unknown ops (same step, e.g. retries of one write that all timed out) are
    // interchangeable: in any linearization, swapping two of them keeps every op after its
    // invoke (their responses are at infinity) and the states unchanged. So only linearize them
    // in invoke order: `pred[i]` must be linearized before `i`. This turns the 2^k subsets of k
    // such ops into k + 1 prefixes.
    let mut pred = vec![NIL; n];
    {
        let mut unknown: Vec<usize> = (0..n)
            .filter(|&i| items[i].ret == INF && items[i].op.is_some())
            .collect();
        unknown.sort_by_key(|&i| (items[i].call, i));
        let mut last: HashMap<Step, usize> = HashMap::new();
        for i in unknown {
            if let Some(p) = last.insert(items[i].step, i) {
                pred[i] = p;
            }
        }
    }
    let is_set = |bits: &[u64], i: usize| bits[i / 64] & (1 << (i % 64)) != 0;

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Option<u32>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u32>)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut state: Option<u32> = None;
    let mut entry = next[head];
    let mut steps: u64 = 0;

    while next[head] != NIL {
        if budget.steps_left == 0 {
            return Search::Inconclusive(format!("the step limit ({steps} steps on this key)"));
        }
        budget.steps_left -= 1;
        steps += 1;
        if steps.is_multiple_of(4096) && budget.expired() {
            return Search::Inconclusive(format!("the time limit of {:?}", budget.timeout));
        }
        if is_call(entry) {
            let i = op_of(entry);
            let ready = pred[i] == NIL || is_set(&linearized, pred[i]);
            if let Some(new_state) = apply(state, items[i].step).filter(|_| ready) {
                linearized[i / 64] |= 1 << (i % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    if cache.len() > budget.max_states {
                        return Search::Inconclusive(format!(
                            "the state limit ({} states)",
                            budget.max_states
                        ));
                    }
                    stack.push((i, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, call_node[i]);
                    unlink(&mut next, &mut prev, ret_node[i]);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(op, _)| op).collect();
                    }
                    entry = next[head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // The op of this return was not linearized before its response: backtrack.
            let Some((i, prev_state)) = stack.pop() else {
                return Search::NotLinearizable { longest };
            };
            linearized[i / 64] &= !(1 << (i % 64));
            state = prev_state;
            relink(&mut next, &mut prev, ret_node[i]);
            relink(&mut next, &mut prev, call_node[i]);
            entry = next[call_node[i]];
        }
    }
    Search::Linearizable
}

/// Longest JSON shown for one value in messages.
const MAX_VALUE_CHARS: usize = 80;
/// Most operations listed in one explanation.
const MAX_OPS_LISTED: usize = 40;

pub(crate) fn show_value(v: Option<&Value>) -> String {
    match v {
        None => "absent".to_owned(),
        Some(v) => {
            let s = canonical_json(v);
            if s.chars().count() > MAX_VALUE_CHARS {
                let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
                format!("{cut}…")
            } else {
                s
            }
        }
    }
}

/// `#id write({"a":1}) [invoke, complete]` or `... [invoke, ∞) unknown`.
pub(crate) fn describe(op: &RegisterOp) -> String {
    let mut s = String::new();
    if let Some(id) = op.id {
        let _ = write!(s, "#{id} ");
    }
    match &op.kind {
        RegisterKind::Write(v) => {
            let _ = write!(s, "write({})", show_value(Some(v)));
        }
        RegisterKind::Read(v) => {
            let _ = write!(s, "read→{}", show_value(v.as_ref()));
        }
        RegisterKind::Delete => s.push_str("delete"),
    }
    match op.outcome {
        RegisterOutcome::Ok => {
            let _ = write!(s, " [{}, {}]", op.invoke, op.complete);
        }
        RegisterOutcome::Unknown => {
            let _ = write!(s, " [{}, ∞) unknown", op.invoke);
        }
    }
    s
}

fn describe_item(item: &Item<'_>) -> String {
    match item.op {
        Some(op) => describe(op),
        None => format!("final state {}", show_value(item.final_value)),
    }
}

fn list(items: &[Item<'_>], indices: impl Iterator<Item = usize>) -> String {
    let all: Vec<usize> = indices.collect();
    let mut s = String::from("[");
    for (n, &i) in all.iter().take(MAX_OPS_LISTED).enumerate() {
        if n > 0 {
            s.push_str(", ");
        }
        s.push_str(&describe_item(&items[i]));
    }
    if all.len() > MAX_OPS_LISTED {
        let _ = write!(s, ", … {} more", all.len() - MAX_OPS_LISTED);
    }
    s.push(']');
    s
}

/// Explains a failed search: the longest linearizable prefix, and the operations that were
/// candidates to come next (those invoked before the earliest response among the rest).
fn explain(items: &[Item<'_>], longest: &[usize]) -> String {
    let done: HashSet<usize> = longest.iter().copied().collect();
    let rest: Vec<usize> = (0..items.len()).filter(|i| !done.contains(i)).collect();
    let first_ret = rest.iter().map(|&i| items[i].ret).min().unwrap_or(INF);
    let mut candidates: Vec<usize> = rest
        .iter()
        .copied()
        .filter(|&i| items[i].call <= first_ret)
        .collect();
    candidates.sort_by_key(|&i| (items[i].call, i));
    let mut all: Vec<usize> = (0..items.len()).collect();
    all.sort_by_key(|&i| (items[i].call, i));
    format!(
        "longest linearizable prefix ({} of {} ops): {}; none of these can come next: {}; all ops by invoke time: {}",
        longest.len(),
        items.len(),
        list(items, longest.iter().copied()),
        list(items, candidates.into_iter()),
        list(items, all.into_iter()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
