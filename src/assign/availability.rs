//! Whether an agent can take new work at a given instant: away periods and working hours from
//! the config, and the run-time away flag set by `postroom agent away|back`.
//!
//! Dates and hours are read in the agent's own time zone (`time_zone`, UTC when absent), so an
//! away period "2025-03-10 to 2025-03-14" means those calendar days where the agent lives.

use anyhow::Result;
use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::Deserialize;

use crate::config::AgentConfig;
use crate::decide::StateView;
use crate::rules::parsed::{HourMinute, Parsed};

/// `away = [{ from = 2025-03-10, until = 2025-03-14 }]`: whole days, both inclusive, in the
/// agent's time zone. Write the dates unquoted, as TOML dates.
#[derive(Debug, Clone, Deserialize)]
pub struct AwayPeriod {
    /// The first day away.
    pub from: toml::value::Datetime,
    /// The last day away.
    pub until: toml::value::Datetime,
}

/// `working_hours = { days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }`
/// in the agent's time zone. Outside these hours the agent gets no new conversations.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkingHours {
    /// Working days: `mon` ... `sun`.
    pub days: Vec<String>,
    /// Start of the working day, `HH:MM`.
    pub start: Parsed<HourMinute>,
    /// End of the working day, `HH:MM` (exclusive; `24:00` for midnight).
    pub end: Parsed<HourMinute>,
}

/// A TOML date without a time, as a calendar date.
pub fn toml_date(value: &toml::value::Datetime) -> Option<NaiveDate> {
    if value.time.is_some() || value.offset.is_some() {
        return None;
    }
    let date = value.date?;
    NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
}

/// A weekday from its three-letter English name.
pub fn weekday(name: &str) -> Option<Weekday> {
    match name.to_ascii_lowercase().as_str() {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

/// Why the agent cannot take new work at `now`, or `None` when they can.
pub fn unavailable(
    agent: &AgentConfig,
    now: DateTime<Utc>,
    state: &dyn StateView,
) -> Result<Option<String>> {
    if state.agent_away(&agent.id)? {
        return Ok(Some("marked away (`postroom agent away`)".into()));
    }
    Ok(configured_absence(agent, now))
}

/// The config side of [`unavailable`]: away periods, then working hours.
pub fn configured_absence(agent: &AgentConfig, now: DateTime<Utc>) -> Option<String> {
    let zone = agent
        .time_zone
        .as_ref()
        .and_then(Parsed::get)
        .map(|z| z.0)
        .unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&zone);
    let today = local.date_naive();
    for period in &agent.away {
        let (Some(from), Some(until)) = (toml_date(&period.from), toml_date(&period.until)) else {
            continue;
        };
        if from <= today && today <= until {
            return Some(format!("away from {from} until {until}"));
        }
    }
    let hours = agent.working_hours.as_ref()?;
    let (Some(start), Some(end)) = (hours.start.get(), hours.end.get()) else {
        return None;
    };
    let working_day = hours
        .days
        .iter()
        .filter_map(|d| weekday(d))
        .any(|d| d == local.weekday());
    let time = local.time();
    if working_day && start.0 <= time && time < end.0 {
        return None;
    }
    Some(format!(
        "outside working hours ({} {}-{} {})",
        hours.days.join(","),
        hours.start.text,
        hours.end.text,
        zone.name()
    ))
}
