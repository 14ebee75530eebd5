//! The Wing–Gong–Lowe search of one key's history, within a [`Budget`] shared by all keys of a
//! check, and the explanation of a failed one.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::describe::{describe, show_value};
use super::history::{LinearizabilityLimits, RegisterKind, RegisterOp, RegisterOutcome};
use crate::invariants::json::canonical_json;

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

const MAX_OPS_LISTED: usize = 40;

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
