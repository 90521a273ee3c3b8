//! The period a report covers, from `--since` or `--from`/`--to`.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The longest window a report accepts: ten years of dates is already more rows than a person
/// reads, and the bound keeps a typo such as `--since 99999d` from allocating without end.
const MAX_DAYS: i64 = 3660;

/// A half-open period `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Its first instant.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub to: DateTime<Utc>,
}

impl Window {
    /// The `length` before `now`.
    pub fn since(now: DateTime<Utc>, length: Duration) -> Window {
        Window {
            from: now - length,
            to: now,
        }
    }

    /// Whole UTC dates, both included.
    pub fn dates_between(from: NaiveDate, to: NaiveDate) -> Result<Window> {
        if to < from {
            bail!("--to {to} is before --from {from}");
        }
        if (to - from).num_days() >= MAX_DAYS {
            bail!("the window is longer than {MAX_DAYS} days");
        }
        let start = from.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
        let end = to.and_hms_opt(0, 0, 0).context("midnight")?.and_utc() + Duration::days(1);
        Ok(Window {
            from: start,
            to: end,
        })
    }

    /// True when `at` lies inside.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.to
    }

    /// Every UTC date the window touches, in order.
    pub fn dates(&self) -> Vec<NaiveDate> {
        if self.to <= self.from {
            return Vec::new();
        }
        let first = self.from.date_naive();
        let last = (self.to - Duration::seconds(1)).date_naive();
        first.iter_days().take_while(|d| *d <= last).collect()
    }
}

/// Parses `--since`: a number and a unit, `m`, `h`, `d` or `w`, such as `7d` or `36h`.
pub fn parse_since(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a length such as 7d or 24h"))?;
    let length = match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => bail!("`{text}`: the unit must be m, h, d or w"),
    };
    if n == 0 || length.num_days() > MAX_DAYS {
        bail!("`{text}`: give a length between 1m and {MAX_DAYS}d");
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_the_four_units() {
        let cases = [
            ("90m", 90 * 60),
            ("36h", 36 * 3600),
            ("7d", 7 * 86400),
            ("2w", 14 * 86400),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_since(text).map(|d| d.num_seconds()).ok(),
                Some(secs),
                "{text}"
            );
        }
    }

    #[test]
    fn since_refuses_nonsense() {
        for text in ["", "7", "d", "0d", "7y", "-3d", "99999d"] {
            assert!(parse_since(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn date_windows_include_both_ends() {
        let d = |s: &str| s.parse::<NaiveDate>().ok().unwrap_or_default();
        let window = Window::dates_between(d("2025-03-01"), d("2025-03-03")).ok();
        let dates = window.map(|w| w.dates()).unwrap_or_default();
        assert_eq!(
            dates,
            vec![d("2025-03-01"), d("2025-03-02"), d("2025-03-03")]
        );
        assert!(Window::dates_between(d("2025-03-03"), d("2025-03-01")).is_err());
    }
}
