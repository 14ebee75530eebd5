//! The replicated state machine's operations and their outcomes.
//!
//! An [`Op`] is what a WAL entry carries. Applying the same log to the same state always gives the
//! same [`Outcome`], on any replica: data-dependent failures (a duplicate key, a missing row) are
//! outcomes decided at apply time, not errors, so every replica reaches the same state.

use serde::{Deserialize, Serialize};
use walshard_contract::{OnDuplicate, Patch, Row};

/// One logged operation on a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Insert rows. Keys already stored are skipped, or reject the whole op, per `on_duplicate`
    /// (entries logged before the field existed were all-or-nothing: `Error`).
    Write {
        /// The rows, each complete (every column of the schema, the key first).
        rows: Vec<Row>,
        /// What to do with a key already stored.
        #[serde(default = "strict")]
        on_duplicate: OnDuplicate,
    },
    /// Replace every non-key column of the row with this key (logged by earlier versions; new
    /// updates are [`Op::Patch`]).
    Update {
        /// The key of the row to change.
        key: i64,
        /// The whole new row (its key column is not written).
        row: Row,
    },
    /// Set some columns of the row with this key.
    Patch {
        /// The key of the row to change.
        key: i64,
        /// The columns to set (the key column is never written).
        patch: Patch,
    },
    /// Remove the row with this key.
    Delete {
        /// The key of the row to remove.
        key: i64,
    },
    /// Changes nothing; a new primary commits one in its epoch before serving.
    Noop,
}

/// What applying an op did. Stored with the op id so a retried op gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `count` rows inserted; `skipped` keys were stored already and left unchanged.
    Written {
        /// Rows inserted.
        count: usize,
        /// Keys of the op's rows that were stored already, ascending.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skipped: Vec<i64>,
    },
    /// The row existed and the update or patch set its columns (an empty patch only confirmed
    /// that it exists).
    Updated {
        /// The row's key.
        key: i64,
    },
    /// The row existed and was removed.
    Deleted {
        /// The removed row's key.
        key: i64,
    },
    /// The op changes nothing (a no-op entry).
    Nothing,
    /// Keys already present; nothing of the op was written.
    Conflict {
        /// The op's keys that were stored already.
        keys: Vec<i64>,
    },
    /// No row with this key.
    NotFound {
        /// The key looked for.
        key: i64,
    },
}

/// The outcome of each write of a batch and the rows to insert, given the keys already stored:
/// decided in log order, as if the writes were applied one by one (a key written by an earlier
/// write of the batch counts as stored for the later ones). `writes` are `(rows, on_duplicate)`.
pub fn plan_writes<'a>(
    writes: &[(&'a [Row], OnDuplicate)],
    stored: impl IntoIterator<Item = i64>,
) -> (Vec<Outcome>, Vec<&'a Row>) {
    let mut present: std::collections::HashSet<i64> = stored.into_iter().collect();
    let mut insert = Vec::new();
    let outcomes = writes
        .iter()
        .map(|&(rows, on_duplicate)| {
            let mut clash: Vec<i64> = rows
                .iter()
                .map(Row::key)
                .filter(|k| present.contains(k))
                .collect();
            clash.sort_unstable();
            if on_duplicate == OnDuplicate::Error && !clash.is_empty() {
                return Outcome::Conflict { keys: clash };
            }
            let fresh: Vec<&Row> = rows
                .iter()
                .filter(|r| !present.contains(&r.key()))
                .collect();
            present.extend(fresh.iter().map(|r| r.key()));
            let count = fresh.len();
            insert.extend(fresh);
            Outcome::Written {
                count,
                skipped: clash,
            }
        })
        .collect();
    (outcomes, insert)
}

fn strict() -> OnDuplicate {
    OnDuplicate::Error
}

/// A WAL payload that is not an encoded [`Op`] (its JSON does not parse as one).
#[derive(Debug, thiserror::Error)]
#[error("WAL payload is not a valid operation: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// First byte of a stamped payload: `STAMPED | at_ms u64 LE | op JSON`. Payloads logged before
/// stamps existed are the bare JSON (starting with `{` or `"`), so both decode.
const STAMPED: u8 = 0x01;

impl Op {
    /// The WAL payload of this op, stamped with the primary's clock (`at_ms`, milliseconds since
    /// the Unix epoch): point-in-time restore replays entries up to a time (docs/backup.md).
    pub fn encode(&self, at_ms: u64) -> Result<bytes::Bytes, serde_json::Error> {
        let mut out = Vec::with_capacity(64);
        out.push(STAMPED);
        out.extend_from_slice(&at_ms.to_le_bytes());
        serde_json::to_writer(&mut out, self)?;
        Ok(bytes::Bytes::from(out))
    }

    /// The op of a WAL payload, stamped ([`Op::encode`]) or bare JSON (logged before stamps).
    pub fn decode(payload: &[u8]) -> Result<Op, DecodeError> {
        Ok(serde_json::from_slice(json_of(payload))?)
    }

    /// The time stamp of a payload (`None` for one logged before stamps existed).
    pub fn stamp(payload: &[u8]) -> Option<u64> {
        match payload {
            [STAMPED, at @ ..] => Some(u64::from_le_bytes(at.get(..8)?.try_into().ok()?)),
            _ => None,
        }
    }
}

fn json_of(payload: &[u8]) -> &[u8] {
    match payload {
        [STAMPED, rest @ ..] => rest.get(8..).unwrap_or_default(),
        _ => payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walshard_contract::Value;

    fn row(k: i64) -> Row {
        Row(vec![
            Value::Int(k),
            Value::Str(format!("r{k}")),
            Value::Int(k),
        ])
    }

    #[test]
    fn a_batch_of_writes_is_planned_as_if_applied_one_by_one() {
        let (a, b, c) = ([row(1), row(2)], [row(2), row(3)], [row(3), row(4)]);
        let writes = [
            (&a[..], OnDuplicate::Skip),
            (&b[..], OnDuplicate::Skip),
            (&c[..], OnDuplicate::Error),
        ];
        let (outcomes, insert) = plan_writes(&writes, [1]);
        assert_eq!(
            outcomes,
            [
                Outcome::Written {
                    count: 1,
                    skipped: vec![1]
                },
                Outcome::Written {
                    count: 1,
                    skipped: vec![2]
                },
                Outcome::Conflict { keys: vec![3] },
            ]
        );
        let keys: Vec<i64> = insert.iter().map(|r| r.key()).collect();
        assert_eq!(keys, [2, 3]);
    }

    #[test]
    fn ops_round_trip() {
        let ops = [
            Op::Write {
                rows: vec![Row(vec![
                    Value::Int(1),
                    Value::Str("a".into()),
                    Value::Int(3),
                ])],
                on_duplicate: OnDuplicate::Skip,
            },
            Op::Patch {
                key: 2,
                patch: Patch {
                    cells: vec![(2, Value::Int(9))],
                },
            },
            Op::Update {
                key: 1,
                row: Row(vec![Value::Int(1), Value::Null, Value::Float(1.5)]),
            },
            Op::Delete { key: 7 },
            Op::Noop,
        ];
        for (at, op) in ops.into_iter().enumerate() {
            let payload = op.encode(1_700_000_000_000 + at as u64).expect("encode");
            assert_eq!(Op::decode(&payload).expect("decode"), op);
            assert_eq!(Op::stamp(&payload), Some(1_700_000_000_000 + at as u64));
        }
        assert_eq!(Op::stamp(br#"{"Delete":{"key":7}}"#), None);
        assert_eq!(
            Op::decode(br#"{"Delete":{"key":7}}"#).expect("an unstamped payload"),
            Op::Delete { key: 7 }
        );
        assert!(Op::decode(b"{\"Nope\":1}").is_err());
        // A write logged before `on_duplicate` existed was all-or-nothing.
        assert_eq!(
            Op::decode(br#"{"Write":{"rows":[[1,"a",3]]}}"#).expect("decode"),
            Op::Write {
                rows: vec![Row(vec![
                    Value::Int(1),
                    Value::Str("a".into()),
                    Value::Int(3)
                ])],
                on_duplicate: OnDuplicate::Error,
            }
        );
    }
}
