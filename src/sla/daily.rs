//! Once-a-day mails: the daily reminder about a breached clock and the lead's daily digest.
//!
//! Both are tied to a local time of day on a business calendar (`reminder = "09:00"` on a policy,
//! `digest = "08:30"` on a team) and answer one question for an instant `now`: "whose day's mail
//! may go out now?" The answer is a local date, which the caller puts into the outbox key, so a
//! day's mail is sent at most once however often it asks and across restarts (field case BUG-21:
//! the same reminder every night, and reminders at midnight and on Sundays).
//!
//! The rules, in the calendar's zone: a day's slot opens at its time of day and closes at the end
//! of that local date, so a daemon that was down at 09:00 still sends that day's mail when it
//! comes back the same day, while days that passed while it was down are never sent afterwards.
//! A mail goes out only while the calendar is open (a closing instant counts as open, as for
//! escalations), so a holiday, a weekend or a time before opening gets nothing.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use crate::calendar::{resolve_local, Calendar};

/// A local time of day, `"HH:MM"`, from `00:00` to `23:59`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(NaiveTime);

impl TimeOfDay {
    /// Parses `"09:00"` or `"9:00"`.
    pub fn parse(text: &str) -> Result<TimeOfDay, String> {
        let wrong =
            || format!("`{text}` is not a time of day; write it as \"HH:MM\" on a 24-hour clock");
        let (hours, minutes) = text.trim().split_once(':').ok_or_else(wrong)?;
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(hours, 2) || minutes.len() != 2 || !digits(minutes, 2) {
            return Err(wrong());
        }
        let (h, m): (u32, u32) = (
            hours.parse().map_err(|_| wrong())?,
            minutes.parse().map_err(|_| wrong())?,
        );
        NaiveTime::from_hms_opt(h, m, 0)
            .map(TimeOfDay)
            .ok_or_else(|| format!("`{text}` is not a time of day between 00:00 and 23:59"))
    }

    /// The instant of this time on local `date` in the calendar's zone. A time skipped by a DST
    /// change is the first instant after the gap; a repeated one is its first occurrence.
    pub fn on(self, calendar: &Calendar, date: NaiveDate) -> Option<DateTime<Utc>> {
        resolve_local(calendar.timezone(), date.and_time(self.0))
    }
}

/// The local date in `calendar`'s zone of an instant.
pub fn local_date(calendar: &Calendar, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&calendar.timezone()).date_naive()
}

/// How long after a slot that falls exactly on a closing time its mail may still go out: the
/// escalation tick (30 s) never lands on the closing instant itself.
const CLOSING_GRACE: chrono::Duration = chrono::Duration::minutes(10);

/// The local date whose daily slot at `time` may be used at `now`: today's, once its time has
/// come and while the calendar is open. `None` before the time, outside hours, and on days the
/// calendar does not open at all. A slot at a closing time (a digest at 17:00 on an office open
/// until 17:00) goes out in the few minutes after it.
pub fn slot_due(calendar: &Calendar, time: TimeOfDay, now: DateTime<Utc>) -> Option<NaiveDate> {
    let today = local_date(calendar, now);
    let slot = time.on(calendar, today)?;
    let at_closing = calendar.within_hours(slot) && !calendar.is_open(slot);
    let open = calendar.within_hours(now) || (at_closing && now - slot <= CLOSING_GRACE);
    (now >= slot && open).then_some(today)
}

impl TimeOfDay {
    /// Minutes since midnight.
    pub fn minute(self) -> u16 {
        use chrono::Timelike;
        (self.0.hour() * 60 + self.0.minute()) as u16
    }
}

/// The local date whose reminder about a breached clock may go out at `now`, if any.
///
/// `news` is the latest instant the people concerned heard about the breach: the breach itself,
/// or the latest escalation mail about it. No reminder is sent on the day of that news, so the
/// breach mail and a reminder never arrive on the same day (a breach at 11:00 is reminded of the
/// next business day at the reminder time, not that same morning, and an escalation level that
/// went out later in the day is not followed by a reminder of the same thing). The caller checks
/// that the clock is breached and still running.
pub fn reminder_due(
    calendar: &Calendar,
    time: TimeOfDay,
    news: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<NaiveDate> {
    slot_due(calendar, time, now).filter(|day| local_date(calendar, news) < *day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::CalendarConfig;

    fn calendar(extra: &str) -> Calendar {
        let text = format!("name = \"office\"\ntimezone = \"Europe/Berlin\"\n{extra}");
        let config: CalendarConfig = toml::from_str(&text).unwrap();
        Calendar::from_config(&config).unwrap()
    }

    /// Mon-Fri 09:00-17:00 Berlin, closed on Thursday 2025-03-13.
    fn office() -> Calendar {
        calendar(
            "mon = [\"09:00-17:00\"]\ntue = [\"09:00-17:00\"]\nwed = [\"09:00-17:00\"]\n\
             thu = [\"09:00-17:00\"]\nfri = [\"09:00-17:00\"]\nholidays = [\"2025-03-13\"]\n",
        )
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn times_of_day_parse_and_bad_ones_say_how_to_write_them() {
        let cases = [("09:00", (9, 0)), ("9:05", (9, 5)), (" 23:59 ", (23, 59))];
        for (text, (h, m)) in cases {
            let expected = TimeOfDay(NaiveTime::from_hms_opt(h, m, 0).unwrap());
            assert_eq!(TimeOfDay::parse(text), Ok(expected), "{text}");
        }
        for bad in [
            "9am", "0900", "24:00", "09:60", "9:5", "", "-1:00", "09:00:00",
        ] {
            let err = TimeOfDay::parse(bad).expect_err(bad);
            assert!(err.contains("time of day"), "{bad}: {err}");
        }
    }

    #[test]
    fn bug_21_reminders_on_the_next_business_mornings_only() {
        let (cal, nine) = (office(), TimeOfDay::parse("09:00").unwrap());
        // Breach mail Monday 2025-03-10 11:00 Berlin (10:00Z).
        let news = at("2025-03-10T11:00:00+01:00");
        let cases = [
            // The breach day itself: never, neither before nor after the breach.
            ("2025-03-10T09:00:00+01:00", None),
            ("2025-03-10T16:00:00+01:00", None),
            // Midnight and early morning on Tuesday: closed, and before 09:00.
            ("2025-03-11T00:00:00+01:00", None),
            ("2025-03-11T08:59:59+01:00", None),
            ("2025-03-11T09:00:00+01:00", Some("2025-03-11")),
            // Down at 09:00 and back at 14:00: that day's reminder still goes out.
            ("2025-03-11T14:00:00+01:00", Some("2025-03-11")),
            // After closing it waits for the next morning, which is Wednesday's own slot.
            ("2025-03-11T18:00:00+01:00", None),
            ("2025-03-12T09:00:30+01:00", Some("2025-03-12")),
            // Thursday is a holiday, Saturday and Sunday are closed.
            ("2025-03-13T09:00:00+01:00", None),
            ("2025-03-15T09:00:00+01:00", None),
            ("2025-03-16T12:00:00+01:00", None),
            ("2025-03-17T09:00:00+01:00", Some("2025-03-17")),
        ];
        for (now, expected) in cases {
            assert_eq!(
                reminder_due(&cal, nine, news, at(now)),
                expected.map(day),
                "{now}"
            );
        }
    }

    #[test]
    fn no_reminder_on_the_day_a_later_escalation_went_out() {
        let (cal, nine) = (office(), TimeOfDay::parse("09:00").unwrap());
        // The breach was on Monday, but its mail only went out on Tuesday at 10:00 (the daemon
        // was down): Tuesday gets no reminder on top, Wednesday does.
        let news = at("2025-03-11T10:00:00+01:00");
        assert_eq!(
            reminder_due(&cal, nine, news, at("2025-03-11T10:00:30+01:00")),
            None
        );
        assert_eq!(
            reminder_due(&cal, nine, news, at("2025-03-12T09:00:00+01:00")),
            Some(day("2025-03-12"))
        );
    }

    #[test]
    fn a_slot_before_opening_goes_out_at_the_opening() {
        let cal = calendar("mon = [\"13:00-17:00\"]\n");
        let nine = TimeOfDay::parse("09:00").unwrap();
        assert_eq!(slot_due(&cal, nine, at("2025-03-10T12:59:00+01:00")), None);
        assert_eq!(
            slot_due(&cal, nine, at("2025-03-10T13:00:00+01:00")),
            Some(day("2025-03-10"))
        );
    }

    #[test]
    fn a_slot_at_closing_time_goes_out_just_after_it_and_a_later_one_never() {
        let cal = calendar("mon = [\"09:00-17:00\"]\n");
        let five = TimeOfDay::parse("17:00").unwrap();
        // The tick comes 20 s after closing: still that day's digest.
        assert_eq!(
            slot_due(&cal, five, at("2025-03-10T17:00:20+01:00")),
            Some(day("2025-03-10"))
        );
        assert_eq!(slot_due(&cal, five, at("2025-03-10T17:11:00+01:00")), None);
        let six = TimeOfDay::parse("18:00").unwrap();
        assert_eq!(slot_due(&cal, six, at("2025-03-10T18:00:20+01:00")), None);
        assert!(cal.reaches(five.minute()) && !cal.reaches(six.minute()));
    }

    #[test]
    fn a_slot_inside_a_dst_gap_is_the_first_instant_after_it() {
        // Berlin skips 02:00-03:00 on Sunday 2025-03-30; a 24/7 calendar.
        let cal = calendar("always = true\n");
        let half_two = TimeOfDay::parse("02:30").unwrap();
        let slot = half_two.on(&cal, day("2025-03-30")).unwrap();
        assert_eq!(slot, at("2025-03-30T03:00:00+02:00"));
        assert_eq!(slot_due(&cal, half_two, slot), Some(day("2025-03-30")));
        assert_eq!(
            slot_due(&cal, half_two, slot - chrono::Duration::seconds(1)),
            None
        );
    }
}
