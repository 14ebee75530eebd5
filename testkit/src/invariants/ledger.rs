//! [`AckLedger`]: a thread-safe record of client operations and what the clients were told.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::linearizability::{RegisterKind, RegisterOp, RegisterOutcome};

/// One client operation on a keyed row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Insert `row` under `key`.
    Write {
        /// The row's key.
        key: i64,
        /// The full row as the client sent it.
        row: Value,
    },
    /// Replace the row under `key` with `row`.
    Update {
        /// The row's key.
        key: i64,
        /// The full new row.
        row: Value,
    },
    /// Remove the row under `key`.
    Delete {
        /// The row's key.
        key: i64,
    },
    /// A strong (linearizable) read of `key`. Do not record eventual reads here: they may be
    /// stale by design and would fail the linearizability check.
    Read {
        /// The row's key.
        key: i64,
    },
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> i64 {
        match self {
            Op::Write { key, .. }
            | Op::Update { key, .. }
            | Op::Delete { key }
            | Op::Read { key } => *key,
        }
    }
}

/// What a definite (acknowledged) answer said.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// A write, update or delete took effect.
    Applied,
    /// A write, update or delete was definitely answered but changed nothing (a duplicate key on
    /// insert, no such row on update/delete). The checkers treat it like a failure: no effect.
    NoEffect,
    /// A read's answer: the row, or `None` if the key was absent.
    Read(Option<Value>),
}

/// Where an operation stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Begun, no outcome recorded yet (treated as unknown by the checkers).
    Pending,
    /// Definitely answered.
    Ok(OpResult),
    /// Definitely did not take effect (e.g. rejected by validation before anything was logged).
    Failed,
    /// Timed out or the connection broke: it may or may not have taken effect.
    Unknown,
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Position in the ledger (order of [`AckLedger::begin`] calls).
    pub id: usize,
    /// The operation.
    pub op: Op,
    /// When it began, in nanoseconds since the ledger was created.
    pub invoke_ns: u64,
    /// When its outcome was recorded (`None` while pending).
    pub complete_ns: Option<u64>,
    /// Its outcome.
    pub status: Status,
}

/// Counts of records by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    /// Acknowledged: [`Status::Ok`].
    pub ok: usize,
    /// [`Status::Failed`].
    pub failed: usize,
    /// [`Status::Unknown`].
    pub unknown: usize,
    /// [`Status::Pending`].
    pub pending: usize,
}

struct Inner {
    start: Instant,
    records: Mutex<Vec<Record>>,
}

/// A thread-safe ledger of client operations. Cloning is cheap and shares the ledger.
///
/// ```
/// use walshard_testkit::invariants::{AckLedger, Op, OpResult};
/// let ledger = AckLedger::new();
/// let op = ledger.begin(Op::Write { key: 1, row: serde_json::json!({"id": 1}) });
/// // ... send it ...
/// op.ok(OpResult::Applied); // or op.fail(), op.unknown(); dropping the handle = unknown
/// ```
#[derive(Clone)]
pub struct AckLedger {
    inner: Arc<Inner>,
}

impl Default for AckLedger {
    fn default() -> Self {
        AckLedger::new()
    }
}

impl std::fmt::Debug for AckLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLedger")
            .field("summary", &self.summary())
            .finish()
    }
}

impl AckLedger {
    /// An empty ledger; its clock starts now.
    pub fn new() -> AckLedger {
        AckLedger {
            inner: Arc::new(Inner {
                start: Instant::now(),
                records: Mutex::new(Vec::new()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        // A panic while holding the lock cannot leave a record half-written; keep going.
        self.inner
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that `op` is being sent now. Call it just before sending.
    pub fn begin(&self, op: Op) -> OpHandle {
        let mut records = self.lock();
        let id = records.len();
        let invoke_ns = self.now_ns();
        records.push(Record {
            id,
            op,
            invoke_ns,
            complete_ns: None,
            status: Status::Pending,
        });
        OpHandle {
            ledger: self.clone(),
            id,
            done: false,
        }
    }

    fn finish(&self, id: usize, status: Status) {
        let complete_ns = self.now_ns();
        let mut records = self.lock();
        if let Some(r) = records.get_mut(id) {
            r.complete_ns = Some(complete_ns);
            r.status = status;
        }
    }

    /// A snapshot of every record, in `begin` order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Counts by status.
    pub fn summary(&self) -> LedgerSummary {
        let mut s = LedgerSummary::default();
        for r in self.lock().iter() {
            match r.status {
                Status::Pending => s.pending += 1,
                Status::Ok(_) => s.ok += 1,
                Status::Failed => s.failed += 1,
                Status::Unknown => s.unknown += 1,
            }
        }
        s
    }

    /// The records as a JSON array, for dumping next to a failed check.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.records()).unwrap_or(Value::Null)
    }

    /// The ledger as register operations for
    /// [`check_linearizable_register`](super::check_linearizable_register), one register per
    /// key.
    ///
    /// Writes and updates become register writes, deletes deletes, acknowledged reads reads.
    /// Failed ops and ops answered [`OpResult::NoEffect`] changed nothing and are left out, and
    /// so are reads without an answer. Pending and unknown writes/deletes become
    /// [`RegisterOutcome::Unknown`].
    pub fn register_history(&self) -> Vec<RegisterOp> {
        records_to_register_ops(&self.records(), true)
    }
}

/// Converts records to register operations; `with_reads` keeps acknowledged reads.
pub(crate) fn records_to_register_ops(records: &[Record], with_reads: bool) -> Vec<RegisterOp> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let outcome = match &r.status {
            Status::Failed | Status::Ok(OpResult::NoEffect) => continue,
            Status::Ok(_) => RegisterOutcome::Ok,
            Status::Pending | Status::Unknown => RegisterOutcome::Unknown,
        };
        let kind = match (&r.op, &r.status) {
            (Op::Write { row, .. } | Op::Update { row, .. }, _) => RegisterKind::Write(row.clone()),
            (Op::Delete { .. }, _) => RegisterKind::Delete,
            (Op::Read { .. }, Status::Ok(OpResult::Read(v))) if with_reads => {
                RegisterKind::Read(v.clone())
            }
            (Op::Read { .. }, _) => continue,
        };
        out.push(RegisterOp {
            key: r.op.key(),
            kind,
            invoke: r.invoke_ns,
            complete: r.complete_ns.unwrap_or(u64::MAX),
            outcome,
            id: Some(r.id),
        });
    }
    out
}

/// The pending operation returned by [`AckLedger::begin`]. Record its outcome with
/// [`ok`](Self::ok), [`fail`](Self::fail) or [`unknown`](Self::unknown); dropping it without one
/// (a cancelled future, a `?` return) records it as unknown.
#[derive(Debug)]
pub struct OpHandle {
    ledger: AckLedger,
    id: usize,
    done: bool,
}

impl OpHandle {
    /// The record's id.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The client got a definite answer.
    ///
    /// # Panics
    ///
    /// If `result` does not fit the operation: reads need [`OpResult::Read`], writes, updates
    /// and deletes need [`OpResult::Applied`] or [`OpResult::NoEffect`]. That is a bug in the
    /// test, not in the system under test.
    pub fn ok(mut self, result: OpResult) {
        let is_read = {
            let records = self.ledger.lock();
            records
                .get(self.id)
                .is_some_and(|r| matches!(r.op, Op::Read { .. }))
        };
        let fits = is_read == matches!(result, OpResult::Read(_));
        if !fits {
            self.done = true;
            self.ledger.finish(self.id, Status::Unknown);
            panic!(
                "AckLedger op #{}: result {result:?} does not fit the operation (reads need OpResult::Read, writes Applied/NoEffect)",
                self.id
            );
        }
        self.finish(Status::Ok(result));
    }

    /// The operation definitely did not take effect.
    pub fn fail(mut self) {
        self.finish(Status::Failed);
    }

    /// The outcome is unknown (timeout, broken connection, 5xx after sending): it may or may
    /// not have taken effect.
    pub fn unknown(mut self) {
        self.finish(Status::Unknown);
    }

    fn finish(&mut self, status: Status) {
        self.done = true;
        self.ledger.finish(self.id, status);
    }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Status::Unknown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_outcomes_and_drop_is_unknown() {
        let ledger = AckLedger::new();
        ledger
            .begin(Op::Write {
                key: 1,
                row: json!({"id": 1}),
            })
            .ok(OpResult::Applied);
        ledger.begin(Op::Delete { key: 2 }).fail();
        ledger.begin(Op::Read { key: 1 }).unknown();
        drop(ledger.begin(Op::Update {
            key: 1,
            row: json!({"id": 1, "v": 2}),
        }));
        let pending = ledger.begin(Op::Read { key: 3 });
        assert_eq!(
            ledger.summary(),
            LedgerSummary {
                ok: 1,
                failed: 1,
                unknown: 2,
                pending: 1
            }
        );
        pending.ok(OpResult::Read(None));
        let records = ledger.records();
        assert_eq!(records.len(), 5);
        assert!(records.iter().all(|r| r.complete_ns.is_some()));
        assert!(
            records
                .iter()
                .all(|r| r.complete_ns.is_some_and(|c| c >= r.invoke_ns))
        );
        assert_eq!(records[3].status, Status::Unknown);
        assert_eq!(ledger.to_json()[0]["op"]["op"], "write");
    }

    #[test]
    fn register_history_skips_failed_no_effect_and_unanswered_reads() {
        let ledger = AckLedger::new();
        ledger
            .begin(Op::Write {
                key: 1,
                row: json!(1),
            })
            .ok(OpResult::NoEffect);
        ledger.begin(Op::Delete { key: 1 }).fail();
        ledger.begin(Op::Read { key: 1 }).unknown();
        ledger
            .begin(Op::Update {
                key: 1,
                row: json!(2),
            })
            .unknown();
        ledger
            .begin(Op::Read { key: 1 })
            .ok(OpResult::Read(Some(json!(2))));
        let h = ledger.register_history();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].kind, RegisterKind::Write(json!(2)));
        assert_eq!(h[0].outcome, RegisterOutcome::Unknown);
        assert_eq!(h[1].kind, RegisterKind::Read(Some(json!(2))));
        assert_eq!(h[1].id, Some(4));
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn mismatched_result_panics() {
        let ledger = AckLedger::new();
        ledger.begin(Op::Read { key: 1 }).ok(OpResult::Applied);
    }

    #[test]
    fn ledger_and_handles_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send + 'static>() {}
        send_sync::<AckLedger>();
        send::<OpHandle>();
    }

    #[test]
    fn handles_cross_threads() {
        let ledger = AckLedger::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let ledger = ledger.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        let key = t * 100 + i;
                        ledger
                            .begin(Op::Write {
                                key,
                                row: json!(key),
                            })
                            .ok(OpResult::Applied);
                    }
                });
            }
        });
        assert_eq!(ledger.summary().ok, 200);
        let ids: Vec<usize> = ledger.records().iter().map(|r| r.id).collect();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
    }
}
