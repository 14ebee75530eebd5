//! What one phase (N writes or N reads) measured, and its summary.

use std::time::Duration;

use serde::Serialize;

/// How many failure messages a phase keeps.
pub const ERROR_SAMPLES: usize = 5;

/// The raw result of one phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseOutcome {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (non-200, transport error, SQL error).
    pub errors: u64,
    /// The first few failures, in request order.
    pub first_errors: Vec<String>,
    /// Wall time from the first request sent to the last answer.
    pub elapsed: Duration,
    /// Latency of every successful request.
    pub latencies: Vec<Duration>,
}

/// A phase's figures as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    /// Wall-clock seconds for the whole phase.
    pub secs: f64,
    /// Successful requests per second.
    pub per_sec: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl PhaseSummary {
    pub fn new(outcome: &PhaseOutcome) -> PhaseSummary {
        let mut sorted = outcome.latencies.clone();
        sorted.sort_unstable();
        let secs = outcome.elapsed.as_secs_f64();
        let ok = sorted.len() as u64;
        PhaseSummary {
            requests: outcome.requests,
            ok,
            errors: outcome.errors,
            first_errors: outcome.first_errors.clone(),
            secs,
            per_sec: (secs > 0.0).then(|| ok as f64 / secs),
            p50_ms: percentile(&sorted, 0.50).map(ms),
            p99_ms: percentile(&sorted, 0.99).map(ms),
            max_ms: sorted.last().copied().map(ms),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Nearest-rank percentile (`p` in 0..=1) of ascending `sorted`; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// `ours / theirs` throughput, when both are known.
pub fn ratio(ours: &PhaseSummary, theirs: &PhaseSummary) -> Option<f64> {
    match (ours.per_sec, theirs.per_sec) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(list: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        list.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted = millis(1..=100);
        assert_eq!(percentile(&sorted, 0.50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&sorted, 0.0), Some(Duration::from_millis(1)));
        let one = millis([7]);
        assert_eq!(percentile(&one, 0.99), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_summary_counts_successes_and_sorts_latencies() {
        let outcome = PhaseOutcome {
            requests: 5,
            errors: 1,
            first_errors: vec!["POST /write: 500".into()],
            elapsed: Duration::from_secs(2),
            latencies: millis([4, 1, 3, 2]),
        };
        let s = PhaseSummary::new(&outcome);
        assert_eq!((s.requests, s.ok, s.errors), (5, 4, 1));
        assert_eq!(s.per_sec, Some(2.0));
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.p99_ms, Some(4.0));
        assert_eq!(s.max_ms, Some(4.0));

        let empty = PhaseSummary::new(&PhaseOutcome::default());
        assert_eq!((empty.per_sec, empty.p50_ms), (None, None));
        assert_eq!(ratio(&s, &empty), None);
        let mut half = s.clone();
        half.per_sec = Some(1.0);
        assert_eq!(ratio(&half, &s), Some(0.5));
    }
}
