//! Statement shapes (pure): MySQL's placeholder limit, and variable-length statements cut into
//! power-of-two sizes so the per-connection statement cache never churns.

/// MySQL allows 65,535 placeholders per statement; stay well below.
pub(super) const MAX_PLACEHOLDERS: usize = 60_000;

/// Splits `len` items into runs whose lengths are powers of two, largest first, each at most
/// `cap` (rounded down to a power of two): at most ~log2(len) statements of few distinct shapes.
pub(super) fn pow2_chunks(len: usize, cap: usize) -> Vec<std::ops::Range<usize>> {
    let cap = if cap == 0 { 1 } else { 1usize << cap.ilog2() };
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let rest = len - start;
        let n = (1usize << rest.ilog2()).min(cap);
        out.push(start..start + n);
        start += n;
    }
    out
}

/// `items` padded to the next power of two by repeating the last one (harmless in `IN (...)`).
pub(super) fn pad_pow2<T: Clone>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    if let Some(last) = items.last() {
        v.resize(items.len().next_power_of_two(), last.clone());
    }
    v
}

/// `?,?,...,?`: `n` placeholders.
pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}
