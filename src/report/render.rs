//! A [`Report`] as text: an aligned table for people, JSON and CSV for tools.
//!
//! JSON is the report's serde form; CSV is "long": one `section,key,metric,value` row per
//! number, so new sections never shift columns. Both are described in `docs/report-format.md`
//! and pinned by snapshot tests. Mail-derived text (subjects, sender domains) is quoted in CSV
//! and stripped of control characters in the table, so a hostile subject cannot move a
//! terminal's cursor or colour the screen.

use std::fmt::Write;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::stats::human;
use super::{Counts, Distribution, Report};

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Aligned text for a terminal.
    Table,
    /// The stable JSON document.
    Json,
    /// The stable long CSV.
    Csv,
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => table(report),
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Csv => csv(report),
    })
}

/// The long CSV: a header, then one row per number. Empty numbers (a median of nothing) are
/// empty cells.
pub fn csv(report: &Report) -> String {
    let mut out = String::from("section,key,metric,value\n");
    let mut row = |section: &str, key: &str, metric: &str, value: String| {
        let _ = writeln!(out, "{section},{},{metric},{value}", csv_field(key));
    };
    for day in &report.volume.days {
        counts(&mut row, "volume_day", &day.date.to_string(), &day.counts);
    }
    for hour in &report.volume.hours {
        counts(
            &mut row,
            "volume_hour",
            &format!("{:02}", hour.hour),
            &hour.counts,
        );
    }
    let b = &report.backlog;
    row("backlog", "all", "open", b.open.to_string());
    row("backlog", "all", "waiting", b.waiting.to_string());
    row("backlog", "all", "unassigned", b.unassigned.to_string());
    for bucket in &b.age {
        row(
            "backlog_age",
            &bucket.label,
            "count",
            bucket.count.to_string(),
        );
    }
    if let Some(old) = &b.oldest_waiting {
        row(
            "backlog_oldest",
            &old.conversation,
            "age_secs",
            old.age_secs.to_string(),
        );
    }
    let fr = &report.first_response;
    distribution(&mut row, "first_response_elapsed", &fr.elapsed);
    distribution(&mut row, "first_response_business", &fr.business);
    row(
        "first_response",
        "all",
        "unanswered",
        fr.unanswered.to_string(),
    );
    row(
        "first_response",
        "all",
        "answered_by_flag",
        fr.answered_by_flag.to_string(),
    );
    for a in &report.agents {
        row("agent", &a.agent, "assigned", a.assigned.to_string());
        row("agent", &a.agent, "open", a.open.to_string());
        row("agent", &a.agent, "closed", a.closed.to_string());
        row(
            "agent",
            &a.agent,
            "median_first_response_secs",
            opt(a.median_first_response_secs),
        );
        let business = opt(a.median_first_response_business_secs);
        row(
            "agent",
            &a.agent,
            "median_first_response_business_secs",
            business,
        );
    }
    for s in &report.sla {
        let key = format!("{}/{}/{}", s.mailbox, s.policy, s.target);
        for (metric, n) in [
            ("met", s.met),
            ("breached", s.breached),
            ("at_risk", s.at_risk),
            ("running", s.running),
            ("unevaluated", s.unevaluated),
        ] {
            row("sla", &key, metric, n.to_string());
        }
        let compliance = s
            .compliance_percent
            .map(|p| format!("{p:.1}"))
            .unwrap_or_default();
        row("sla", &key, "compliance_percent", compliance);
    }
    let bd = &report.breakdowns;
    for (section, rows) in [
        ("sender_domain", &bd.sender_domain),
        ("tag", &bd.tag),
        ("rule", &bd.rule),
    ] {
        for r in rows {
            row(
                section,
                &r.key,
                "conversations",
                r.conversations.to_string(),
            );
            row(section, &r.key, "open", r.open.to_string());
            row(section, &r.key, "answered", r.answered.to_string());
            row(
                section,
                &r.key,
                "median_first_response_secs",
                opt(r.median_first_response_secs),
            );
        }
    }
    out
}

fn counts(row: &mut impl FnMut(&str, &str, &str, String), section: &str, key: &str, c: &Counts) {
    row(section, key, "received", c.received.to_string());
    row(section, key, "assigned", c.assigned.to_string());
    row(section, key, "closed", c.closed.to_string());
}

fn distribution(row: &mut impl FnMut(&str, &str, &str, String), section: &str, d: &Distribution) {
    row(section, "all", "count", d.count.to_string());
    row(section, "all", "median_secs", opt(d.median_secs));
    row(section, "all", "p90_secs", opt(d.p90_secs));
    row(section, "all", "p99_secs", opt(d.p99_secs));
    for bucket in &d.histogram {
        row(section, &bucket.label, "count", bucket.count.to_string());
    }
}

fn opt(value: Option<i64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180), doubling quotes.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Text safe for a terminal: control characters (escape sequences included) become spaces.
pub fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The human table.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = write_table(&mut out, report);
    out
}

fn write_table(out: &mut String, r: &Report) -> std::fmt::Result {
    let scope = r
        .mailbox
        .as_deref()
        .map(terminal_safe)
        .unwrap_or_else(|| "all mailboxes".into());
    writeln!(
        out,
        "report for {scope}, {} to {} (UTC)",
        r.window.from.format("%F %R"),
        r.window.to.format("%F %R")
    )?;
    let t = &r.volume.total;
    writeln!(
        out,
        "\nvolume: {} received, {} assigned, {} closed",
        t.received, t.assigned, t.closed
    )?;
    writeln!(
        out,
        "  {:<12} {:>9} {:>9} {:>7}",
        "date", "received", "assigned", "closed"
    )?;
    for d in &r.volume.days {
        let c = &d.counts;
        writeln!(
            out,
            "  {:<12} {:>9} {:>9} {:>7}",
            d.date, c.received, c.assigned, c.closed
        )?;
    }
    let busiest = r
        .volume
        .hours
        .iter()
        .max_by_key(|h| (h.counts.received, 24 - h.hour));
    if let Some(h) = busiest.filter(|h| h.counts.received > 0) {
        writeln!(
            out,
            "  busiest hour (UTC): {:02}:00 with {} received",
            h.hour, h.counts.received
        )?;
    }
    let b = &r.backlog;
    writeln!(
        out,
        "\nbacklog now: {} open, {} waiting, {} unassigned",
        b.open, b.waiting, b.unassigned
    )?;
    let ages: Vec<String> = b
        .age
        .iter()
        .map(|x| format!("{} {}", x.label, x.count))
        .collect();
    writeln!(out, "  by age: {}", ages.join(", "))?;
    if let Some(o) = &b.oldest_waiting {
        let subject = terminal_safe(&o.subject);
        writeln!(
            out,
            "  oldest waiting: {} ({}) for {}: {subject}",
            o.conversation,
            o.owner.as_deref().unwrap_or("unassigned"),
            human(o.age_secs)
        )?;
    }
    let fr = &r.first_response;
    writeln!(
        out,
        "\nfirst response ({} answered, {} of them by the \\Answered flag only; {} unanswered):",
        fr.elapsed.count, fr.answered_by_flag, fr.unanswered
    )?;
    for (label, d) in [("elapsed", &fr.elapsed), ("business", &fr.business)] {
        let f = |v: Option<i64>| v.map(human).unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {label:<9} median {:>7}  p90 {:>7}  p99 {:>7}",
            f(d.median_secs),
            f(d.p90_secs),
            f(d.p99_secs)
        )?;
    }
    let hist: Vec<String> = fr
        .business
        .histogram
        .iter()
        .map(|x| format!("{} {}", x.label, x.count))
        .collect();
    writeln!(out, "  business histogram: {}", hist.join(", "))?;
    writeln!(
        out,
        "\nagents:\n  {:<16} {:>8} {:>5} {:>7} {:>10} {:>10}",
        "agent", "assigned", "open", "closed", "median fr", "business"
    )?;
    for a in &r.agents {
        let f = |v: Option<i64>| v.map(human).unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {:<16} {:>8} {:>5} {:>7} {:>10} {:>10}",
            terminal_safe(&a.agent),
            a.assigned,
            a.open,
            a.closed,
            f(a.median_first_response_secs),
            f(a.median_first_response_business_secs)
        )?;
    }
    writeln!(out, "\nsla:")?;
    if r.sla.is_empty() {
        writeln!(out, "  no conversation in the window has an SLA policy")?;
    }
    for s in &r.sla {
        let c = s
            .compliance_percent
            .map(|p| format!("{p:.1}%"))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {}/{} {}: {} met, {} breached, {} at risk, {} running, {} unevaluated: {c}",
            s.mailbox, s.policy, s.target, s.met, s.breached, s.at_risk, s.running, s.unevaluated
        )?;
    }
    let sections = [
        ("sender domains", &r.breakdowns.sender_domain),
        ("tags", &r.breakdowns.tag),
        ("rules", &r.breakdowns.rule),
    ];
    for (title, rows) in sections {
        writeln!(out, "\n{title}:")?;
        if rows.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for d in rows.iter().take(20) {
            writeln!(
                out,
                "  {:<32} {:>5} conversations, {:>4} open",
                terminal_safe(&d.key),
                d.conversations,
                d.open
            )?;
        }
    }
    Ok(())
}
