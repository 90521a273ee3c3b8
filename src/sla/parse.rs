//! Reading the durations and percentages admins write in `[[sla]]`.
//!
//! Durations are business time on the policy's calendar: `"4h"` is four open hours, wherever the
//! nights and weekends fall. A day (`d`) is 24 hours of business time, not one working day: on a
//! Mon–Fri 09:00–17:00 calendar `"1d"` spans three working days, so a one-working-day promise is
//! written `"8h"`. The hints say so, because that is the surprise an admin meets.

use chrono::Duration;

/// The longest duration accepted anywhere in an SLA: 365 days of business time. Longer promises
/// are not SLAs anyone tracks by mail, and the cap keeps every deadline computation short.
pub const MAX_BUDGET_SECS: i64 = 365 * 24 * 3600;

/// Units in the order they must appear, with their length in seconds.
const UNITS: [(char, i64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses `"4h"`, `"30m"`, `"1h30m"`, `"2d"`, `"0m"`: numbers each followed by a unit, largest
/// unit first, each unit once. Spaces between parts are allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("the duration is empty".into());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut last_unit: Option<usize> = None;
    for c in compact.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == c.to_ascii_lowercase()) else {
            return Err(format!(
                "`{text}` has an unknown unit `{c}`; use d, h, m or s"
            ));
        };
        if number.is_empty() {
            return Err(format!("`{text}` has no number before `{c}`"));
        }
        if last_unit.is_some_and(|last| rank <= last) {
            return Err(format!(
                "`{text}` repeats a unit or puts a smaller one first; write it like 1h30m"
            ));
        }
        let value: i64 = number
            .parse()
            .map_err(|_| format!("`{text}` is too long"))?;
        total = value
            .checked_mul(UNITS[rank].1)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("`{text}` is too long"))?;
        number.clear();
        last_unit = Some(rank);
    }
    if !number.is_empty() {
        return Err(format!(
            "`{text}` ends without a unit; write it like 4h or 30m"
        ));
    }
    if total > MAX_BUDGET_SECS {
        return Err(format!("`{text}` is longer than 365d of business time"));
    }
    Ok(Duration::seconds(total))
}

/// A share of an SLA budget, kept in hundredths of a percent so `"87.5%"` is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(u16);

impl Percent {
    /// Hundredths of a percent in a whole: 100 %.
    const WHOLE: i64 = 10_000;

    /// That share of `budget`, rounded down to the second.
    pub fn of(self, budget: Duration) -> Duration {
        Duration::seconds(budget.num_seconds() * i64::from(self.0) / Self::WHOLE)
    }
}

/// Parses `"75%"` or `"87.5%"`: more than 0 % and less than 100 %, at most two decimals.
pub fn parse_percent(text: &str) -> Result<Percent, String> {
    let trimmed = text.trim();
    let Some(number) = trimmed.strip_suffix('%') else {
        return Err(format!(
            "`{text}` is not a percentage; write it like \"75%\""
        ));
    };
    let (whole, fraction) = number.trim().split_once('.').unwrap_or((number.trim(), ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 3
        || !digits(whole)
        || fraction.len() > 2
        || !digits(fraction)
    {
        return Err(format!(
            "`{text}` is not a percentage; write it like \"75%\" or \"87.5%\""
        ));
    }
    let whole: u16 = whole
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    let hundredths: u16 = format!("{fraction:0<2}")
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    let value = u32::from(whole) * 100 + u32::from(hundredths);
    match u16::try_from(value) {
        Ok(value) if value > 0 && i64::from(value) < Percent::WHOLE => Ok(Percent(value)),
        _ => Err(format!("`{text}` must be more than 0% and less than 100%")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_seconds() {
        let cases = [
            ("4h", 4 * 3600),
            ("30m", 1800),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2d", 2 * 86_400),
            ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
            ("0m", 0),
            ("90M", 5400),
            ("365d", MAX_BUDGET_SECS),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::seconds(secs)), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let cases = [
            ("4x", "unknown unit `x`"),
            ("4", "ends without a unit"),
            ("1h30", "ends without a unit"),
            ("h", "no number before `h`"),
            ("30m1h", "smaller one first"),
            ("1h1h", "repeats a unit"),
            ("-4h", "unknown unit `-`"),
            ("", "empty"),
            ("366d", "longer than 365d"),
            ("99999999999999999999h", "too long"),
        ];
        for (text, reason) in cases {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn percentages_parse_exactly_and_apply_to_budgets() {
        let four_hours = Duration::hours(4);
        let cases = [
            ("75%", Duration::hours(3)),
            (" 50 % ", Duration::hours(2)),
            ("87.5%", Duration::minutes(210)),
            ("0.01%", Duration::seconds(1)),
            ("99.99%", Duration::seconds(14_398)),
        ];
        for (text, share) in cases {
            assert_eq!(
                parse_percent(text).map(|p| p.of(four_hours)),
                Ok(share),
                "{text}"
            );
        }
        for bad in ["75", "0%", "100%", "120%", "7.555%", "x%", "%", "-5%"] {
            assert!(parse_percent(bad).is_err(), "{bad} should be refused");
        }
    }
}
