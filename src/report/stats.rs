//! Small statistics for the report: nearest-rank percentiles and fixed-bucket histograms.
//!
//! Percentiles use the nearest-rank method (the value at rank ⌈p·n/100⌉ of the sorted sample),
//! so every reported figure is a duration that really occurred and a lead can check it by hand
//! against a sorted list. Buckets are fixed, not derived from the data, so two reports (or two
//! mailboxes) can be compared bucket by bucket.

use serde::{Deserialize, Serialize};

/// Seconds in an hour and a day, for bucket bounds.
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// Upper bounds (inclusive, seconds) of the response-time histogram; a last bucket takes the
/// rest. Chosen around the budgets teams write (15 minutes to two days).
pub const RESPONSE_BOUNDS: [(i64, &str); 8] = [
    (15 * 60, "<=15m"),
    (30 * 60, "<=30m"),
    (HOUR, "<=1h"),
    (2 * HOUR, "<=2h"),
    (4 * HOUR, "<=4h"),
    (8 * HOUR, "<=8h"),
    (DAY, "<=1d"),
    (2 * DAY, "<=2d"),
];

/// The label of the response histogram's last, open-ended bucket.
pub const RESPONSE_REST: &str = ">2d";

/// Upper bounds (exclusive, seconds) of the backlog-age buckets; a last bucket takes the rest.
pub const AGE_BOUNDS: [(i64, &str); 5] = [
    (HOUR, "<1h"),
    (4 * HOUR, "1h-4h"),
    (DAY, "4h-1d"),
    (3 * DAY, "1d-3d"),
    (7 * DAY, "3d-7d"),
];

/// The label of the backlog's last, open-ended bucket.
pub const AGE_REST: &str = ">=7d";

/// One histogram bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Its label, such as `<=1h`.
    pub label: String,
    /// How many values fell in it.
    pub count: u64,
}

/// A sample of durations summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// How many values.
    pub count: u64,
    /// The median (p50), seconds.
    pub median_secs: Option<i64>,
    /// The 90th percentile, seconds.
    pub p90_secs: Option<i64>,
    /// The 99th percentile, seconds.
    pub p99_secs: Option<i64>,
    /// Counts per response-time bucket, `<=15m` up to `>2d`.
    pub histogram: Vec<Bucket>,
}

impl Distribution {
    /// Summarises `values` (seconds); sorts them in place.
    pub fn of(values: &mut [i64]) -> Distribution {
        values.sort_unstable();
        Distribution {
            count: values.len() as u64,
            median_secs: percentile(values, 50),
            p90_secs: percentile(values, 90),
            p99_secs: percentile(values, 99),
            histogram: histogram(values, &RESPONSE_BOUNDS, RESPONSE_REST, true),
        }
    }
}

/// The nearest-rank percentile `p` (1..=100) of an ascending slice; `None` when it is empty.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

/// The median of an unsorted sample (nearest rank); sorts it.
pub fn median(values: &mut [i64]) -> Option<i64> {
    values.sort_unstable();
    percentile(values, 50)
}

/// Counts `values` into buckets with the given upper bounds; `inclusive` says whether a value
/// equal to a bound belongs to that bucket.
pub fn histogram(
    values: &[i64],
    bounds: &[(i64, &str)],
    rest: &str,
    inclusive: bool,
) -> Vec<Bucket> {
    let mut counts = vec![0u64; bounds.len() + 1];
    for &v in values {
        let slot = bounds
            .iter()
            .position(|&(upper, _)| if inclusive { v <= upper } else { v < upper })
            .unwrap_or(bounds.len());
        counts[slot] += 1;
    }
    let labels = bounds.iter().map(|&(_, label)| label).chain([rest]);
    labels
        .zip(counts)
        .map(|(label, count)| Bucket {
            label: label.to_string(),
            count,
        })
        .collect()
}

/// A share as a percentage with one decimal, `None` when there is nothing to share.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

/// A duration in seconds, short and readable: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < HOUR => format!("{}m", s / 60),
        s if s < DAY => format!("{}h{:02}m", s / HOUR, (s % HOUR) / 60),
        s => format!("{}d{:02}h", s / DAY, (s % DAY) / HOUR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_real_values() {
        let sorted = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        let cases = [
            (50, 50),
            (90, 90),
            (99, 100),
            (1, 10),
            (100, 100),
            (91, 100),
        ];
        for (p, want) in cases {
            assert_eq!(percentile(&sorted, p), Some(want), "p{p}");
        }
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
    }

    #[test]
    fn median_of_an_even_sample_is_the_lower_middle() {
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
    }

    #[test]
    fn histogram_bounds_are_inclusive_for_responses_and_exclusive_for_ages() {
        let responses = histogram(&[900, 901, 200_000], &RESPONSE_BOUNDS, RESPONSE_REST, true);
        assert_eq!(responses[0].count, 1, "15m exactly is <=15m");
        assert_eq!(responses[1].count, 1);
        assert_eq!(responses.last().map(|b| b.count), Some(1));
        let ages = histogram(&[3600], &AGE_BOUNDS, AGE_REST, false);
        assert_eq!(
            (ages[0].count, ages[1].count),
            (0, 1),
            "an hour old is 1h-4h"
        );
    }

    #[test]
    fn durations_read_short() {
        let cases = [
            (5, "5s"),
            (125, "2m"),
            (3 * 3600 + 300, "3h05m"),
            (DAY + 4 * HOUR, "1d04h"),
        ];
        for (secs, want) in cases {
            assert_eq!(human(secs), want);
        }
    }

    #[test]
    fn percent_rounds_to_one_decimal() {
        assert_eq!(percent(2, 3), Some(66.7));
        assert_eq!(percent(0, 0), None);
    }
}
