//! Many key-range reads as one statement (pure): the ranges merged into the fewest disjoint ones
//! the statement selects, and its rows split back per requested range.

use walshard_contract::{KeyRange, Row};

/// The non-empty ranges of `ranges` merged where they overlap or touch, ascending.
pub(super) fn covering(ranges: &[KeyRange]) -> Vec<KeyRange> {
    let mut sorted: Vec<KeyRange> = ranges.iter().copied().filter(|r| r.low <= r.high).collect();
    sorted.sort_by_key(|r| r.low);
    let mut out: Vec<KeyRange> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.low <= last.high.saturating_add(1) => last.high = last.high.max(r.high),
            _ => out.push(r),
        }
    }
    out
}

/// For each range of `ranges`, the rows of `rows` (ascending by key, as the statement orders
/// them) whose key it holds.
pub(super) fn split(rows: &[Row], ranges: &[KeyRange]) -> Vec<Vec<Row>> {
    ranges
        .iter()
        .map(|r| {
            let from = rows.partition_point(|row| row.key() < r.low);
            let to = rows.partition_point(|row| row.key() <= r.high);
            rows.get(from..to.max(from))
                .map(<[Row]>::to_vec)
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use walshard_contract::Value;

    fn r(low: i64, high: i64) -> KeyRange {
        KeyRange { low, high }
    }

    fn row(key: i64) -> Row {
        Row(vec![Value::Int(key)])
    }

    #[test]
    fn overlapping_and_touching_ranges_merge_and_empty_ones_drop() {
        let got = covering(&[r(10, 19), r(1, 5), r(6, 8), r(15, 30), r(9, 3), r(40, 40)]);
        assert_eq!(got, vec![r(1, 8), r(10, 30), r(40, 40)]);
        assert_eq!(
            covering(&[r(i64::MAX - 1, i64::MAX), r(i64::MAX, i64::MAX)]).len(),
            1
        );
    }

    proptest! {
        /// Reading the covering ranges and splitting gives each range exactly the rows a read
        /// of that range alone would.
        #[test]
        fn split_covering_equals_reading_each_range(
            keys in proptest::collection::btree_set(-50i64..50, 0..40),
            ranges in proptest::collection::vec((-60i64..60, -60i64..60), 0..12),
        ) {
            let ranges: Vec<KeyRange> = ranges.into_iter().map(|(a, b)| r(a, b)).collect();
            let stored: Vec<Row> = keys.iter().map(|k| row(*k)).collect();
            let cover = covering(&ranges);
            let selected: Vec<Row> = stored
                .iter()
                .filter(|x| cover.iter().any(|c| c.low <= x.key() && x.key() <= c.high))
                .cloned()
                .collect();
            let got = split(&selected, &ranges);
            for (range, rows) in ranges.iter().zip(got) {
                let alone: Vec<Row> = stored
                    .iter()
                    .filter(|x| range.low <= x.key() && x.key() <= range.high)
                    .cloned()
                    .collect();
                prop_assert_eq!(rows, alone);
            }
        }
    }
}
