//! Latency summaries: percentiles of recorded samples (microseconds).

use serde::Serialize;

/// The nearest-rank percentile `p` (0 < p <= 100) of `sorted`, which is sorted ascending:
/// the smallest sample that at least `p` percent of the samples do not exceed.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Percentiles of one run, in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: u32,
    pub(crate) p90_us: u32,
    pub(crate) p99_us: u32,
    pub(crate) max_us: u32,
}

impl Latency {
    /// Sorts `samples` in place and summarizes them (all zero when there are none).
    pub(crate) fn of(samples: &mut [u32]) -> Self {
        samples.sort_unstable();
        let pct = |p| percentile(samples, p).unwrap_or(0);
        let mean_us = if samples.is_empty() { 0.0 } else { samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64 };
        Self { samples: samples.len(), mean_us, p50_us: pct(50.0), p90_us: pct(90.0), p99_us: pct(99.0), max_us: pct(100.0) }
    }
}

/// Microseconds of a duration, saturating.
pub(crate) fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u32> = (1..=100).collect();
        for (p, want) in [(1.0, 1), (50.0, 50), (90.0, 90), (99.0, 99), (99.9, 100), (100.0, 100)] {
            assert_eq!(percentile(&hundred, p), Some(want), "p{p} of 1..=100");
        }
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_first() {
        let mut samples = vec![900, 100, 300, 200, 500, 400, 700, 600, 800, 1000];
        let l = Latency::of(&mut samples);
        assert_eq!((l.samples, l.p50_us, l.p90_us, l.p99_us, l.max_us), (10, 500, 900, 1000, 1000));
        assert!((l.mean_us - 550.0).abs() < 1e-9);
        assert_eq!(Latency::of(&mut []), Latency::default());
    }
}
