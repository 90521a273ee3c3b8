//! Config values that are text in TOML but something richer in memory: regexes, time zones,
//! clock times.
//!
//! Each is parsed once, while the config is deserialised, so nothing is compiled per message.
//! A value that does not parse does not stop deserialisation: [`Parsed`] keeps the text and the
//! error, and validation reports it with its key path and line next to every other problem.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveTime;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer};

/// A value parsed from its TOML text at load, or the reason it could not be.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    /// The text as written in the config.
    pub text: String,
    /// The parsed value, or the parse error as a sentence.
    pub value: Result<T, String>,
}

impl<T> Parsed<T> {
    /// The value, if it parsed.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().ok()
    }

    /// The parse error, if any.
    pub fn error(&self) -> Option<&str> {
        self.value.as_ref().err().map(String::as_str)
    }
}

impl<T: FromStr> FromStr for Parsed<T>
where
    T::Err: fmt::Display,
{
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Parsed {
            text: text.to_string(),
            value: text.parse::<T>().map_err(|e| e.to_string()),
        })
    }
}

impl<'de, T: FromStr> Deserialize<'de> for Parsed<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let Ok(parsed) = text.parse();
        Ok(parsed)
    }
}

/// A regular expression, matched case-insensitively: admins write `invoice` and expect it to
/// find "Invoice" too. `(?-i)` inside the pattern turns that off.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

/// Compiled regexes are capped so a pathological pattern in the config cannot take the daemon's
/// memory; one megabyte is far above any routing pattern we have seen.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl FromStr for Pattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RegexBuilder::new(text)
            .case_insensitive(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|e| one_line_error(&e.to_string()))
    }
}

/// The regex crate reports errors over several lines with a caret; a config problem is one line.
fn one_line_error(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .unwrap_or("invalid pattern")
        .trim_start_matches("error: ")
        .to_string()
}

/// A wall-clock time written `HH:MM`, such as `09:00` or `17:30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourMinute(pub NaiveTime);

impl FromStr for HourMinute {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "24:00" {
            // The end of a working day may be written as midnight of the next; it is kept as
            // the last representable instant of the day so `start <= t < end` still works.
            return Ok(HourMinute(
                NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999)
                    .ok_or("24:00 is not representable".to_string())?,
            ));
        }
        NaiveTime::parse_from_str(text, "%H:%M")
            .map(HourMinute)
            .map_err(|_| format!("`{text}` is not a time of day written HH:MM"))
    }
}

/// An IANA time zone name such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(pub chrono_tz::Tz);

impl FromStr for Zone {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<chrono_tz::Tz>()
            .map(Zone)
            .map_err(|_| format!("`{text}` is not an IANA time zone name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_regex_is_kept_as_an_error_on_one_line() {
        let bad: Parsed<Pattern> = "inv(oice".parse().unwrap();
        assert_eq!(bad.text, "inv(oice");
        let message = bad.error().unwrap();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("unclosed"), "{message}");
    }

    #[test]
    fn patterns_ignore_case_unless_told_otherwise() {
        let p: Pattern = "invoice".parse().unwrap();
        assert!(p.0.is_match("Your INVOICE"));
        let strict: Pattern = "(?-i)invoice".parse().unwrap();
        assert!(!strict.0.is_match("Your INVOICE"));
    }

    #[test]
    fn clock_times_and_zones_parse_or_explain() {
        assert!("09:30".parse::<HourMinute>().is_ok());
        assert!("24:00".parse::<HourMinute>().is_ok());
        assert!("9.30".parse::<HourMinute>().is_err());
        assert!("Europe/Berlin".parse::<Zone>().is_ok());
        assert!("Mars/Olympus".parse::<Zone>().is_err());
    }
}
