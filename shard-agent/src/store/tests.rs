use super::statements::{pad_pow2, pow2_chunks};
use proptest::prelude::*;

#[test]
fn pow2_chunks_examples() {
    assert!(pow2_chunks(0, 8).is_empty());
    assert_eq!(pow2_chunks(37, 64), vec![0..32, 32..36, 36..37]);
    assert_eq!(pow2_chunks(20, 6), vec![0..4, 4..8, 8..12, 12..16, 16..20]);
    assert_eq!(pad_pow2(&[1, 2, 3]), vec![1, 2, 3, 3]);
    assert_eq!(pad_pow2::<i32>(&[]), Vec::<i32>::new());
}

proptest! {
    #[test]
    fn pow2_chunks_cover_exactly_in_order(len in 0usize..5000, cap in 1usize..3000) {
        let chunks = pow2_chunks(len, cap);
        let mut next = 0;
        for c in &chunks {
            prop_assert_eq!(c.start, next);
            prop_assert!(c.len().is_power_of_two() && c.len() <= cap);
            next = c.end;
        }
        prop_assert_eq!(next, len);
    }
}
