//! The dashboard page: per mailbox, charts of the last two weeks, the open queue and the
//! quarantine, reloaded by a meta refresh.
//!
//! The page is one HTML document with no script at all and one stylesheet whose hash the
//! Content-Security-Policy names, so a browser refuses anything else inline even if escaping
//! ever failed. Every piece of stored text goes through [`escape`].

use std::fmt::Write;

use anyhow::Result;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::svg::{bars, escape, stacked, Series};
use crate::config::{Config, MailboxConfig};
use crate::report::{self, human, Clocks, Data, Options, Report, Window};
use crate::sla::State;
use crate::store::{Conversation, ConversationState, Store};

/// The days the charts cover: two working weeks show a trend without crowding the bars.
const CHART_DAYS: i64 = 14;

/// The most queue rows shown per mailbox; the rest are counted. A wall screen cannot show more,
/// and the page stays small when a queue overflows.
const QUEUE_ROWS: usize = 200;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:16px;background:#f4f5f7;\
color:#111}h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;\
border-bottom:2px solid #2b6cb0}\
h3{font-size:14px;margin:14px 0 6px}p.meta{color:#555;font-size:12px;margin:0}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:10px}\
svg.chart{width:100%;height:auto;background:#fff;border:1px solid #ddd}\
.kpis{display:flex;gap:10px;flex-wrap:wrap}.kpi{background:#fff;border:1px solid #ddd;\
padding:6px 12px}.kpi b{display:block;font-size:20px}table{border-collapse:collapse;\
background:#fff;font-size:12px;width:100%}\
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}th{background:#eef}\
.breached{color:#b00;font-weight:bold}.at_risk{color:#b60}";

/// The page's Content-Security-Policy: nothing but this page's own stylesheet.
pub fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// Renders the whole page at `now`.
pub fn page(
    config: &Config,
    clocks: &Clocks,
    store: &Store,
    now: DateTime<Utc>,
    refresh_secs: u64,
) -> Result<String> {
    // Every section below reports over the same window, so one read of that window serves all.
    let all = Options {
        mailbox: None,
        window: Window::since(now, Duration::days(CHART_DAYS)),
        recompute: false,
    };
    let data = Data::load_for(store, &all)?;
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_secs}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>postroom</title><style>{STYLE}</style></head><body>\
         <h1>postroom</h1><p class=\"meta\">{} UTC, refreshes every {refresh_secs}s; \
         charts cover the last {CHART_DAYS} days</p>",
        now.format("%F %T")
    );
    for mailbox in &config.mailboxes {
        let options = Options {
            mailbox: Some(mailbox.name.clone()),
            window: Window::since(now, Duration::days(CHART_DAYS)),
            recompute: false,
        };
        let report = report::build(config, clocks, &data, &options, now);
        html.push_str(&mailbox_section(mailbox, &report));
        queue(&mut html, clocks, &data.conversations, &mailbox.name, now);
        quarantine(&mut html, store, &mailbox.name)?;
    }
    html.push_str("</body></html>");
    Ok(html)
}

fn mailbox_section(mailbox: &MailboxConfig, r: &Report) -> String {
    let mut html = format!(
        "<section><h2>{}</h2><div class=\"kpis\">",
        escape(&mailbox.name)
    );
    let fr = r
        .first_response
        .business
        .median_secs
        .map(human)
        .unwrap_or_else(|| "-".into());
    for (label, value) in [
        ("open", r.backlog.open.to_string()),
        ("waiting", r.backlog.waiting.to_string()),
        ("unassigned", r.backlog.unassigned.to_string()),
        ("received (14d)", r.volume.total.received.to_string()),
        ("median first response (business)", fr),
    ] {
        let _ = write!(
            html,
            "<div class=\"kpi\">{}<b>{}</b></div>",
            escape(label),
            escape(&value)
        );
    }
    html.push_str("</div><div class=\"charts\">");
    html.push_str(&charts(r).join(""));
    html.push_str("</div></section>");
    html
}

fn charts(r: &Report) -> Vec<String> {
    let days: Vec<String> = r
        .volume
        .days
        .iter()
        .map(|d| d.date.format("%m-%d").to_string())
        .collect();
    let series = |name: &str, color, values: Vec<u64>| Series {
        name: name.into(),
        color,
        values,
    };
    let volume = bars(
        "Volume per day",
        &days,
        &[
            series(
                "received",
                "#2b6cb0",
                r.volume.days.iter().map(|d| d.counts.received).collect(),
            ),
            series(
                "closed",
                "#38a169",
                r.volume.days.iter().map(|d| d.counts.closed).collect(),
            ),
        ],
    );
    let ages: Vec<String> = r.backlog.age.iter().map(|b| b.label.clone()).collect();
    let backlog = bars(
        "Open backlog by age",
        &ages,
        &[series(
            "open",
            "#dd6b20",
            r.backlog.age.iter().map(|b| b.count).collect(),
        )],
    );
    let fr = &r.first_response;
    let buckets: Vec<String> = fr
        .elapsed
        .histogram
        .iter()
        .map(|b| b.label.clone())
        .collect();
    let response = bars(
        "First response time",
        &buckets,
        &[
            series(
                "elapsed",
                "#805ad5",
                fr.elapsed.histogram.iter().map(|b| b.count).collect(),
            ),
            series(
                "business",
                "#2b6cb0",
                fr.business.histogram.iter().map(|b| b.count).collect(),
            ),
        ],
    );
    let agents: Vec<String> = r.agents.iter().map(|a| a.agent.clone()).collect();
    let workload = bars(
        "Workload per agent",
        &agents,
        &[
            series("open", "#dd6b20", r.agents.iter().map(|a| a.open).collect()),
            series(
                "assigned",
                "#2b6cb0",
                r.agents.iter().map(|a| a.assigned).collect(),
            ),
            series(
                "closed",
                "#38a169",
                r.agents.iter().map(|a| a.closed).collect(),
            ),
        ],
    );
    let policies: Vec<String> = r
        .sla
        .iter()
        .map(|s| format!("{} {}", s.policy, s.target))
        .collect();
    let sla = stacked(
        "SLA compliance",
        &policies,
        &[
            series("met", "#38a169", r.sla.iter().map(|s| s.met).collect()),
            series(
                "running",
                "#a0aec0",
                r.sla.iter().map(|s| s.running).collect(),
            ),
            series(
                "at risk",
                "#d69e2e",
                r.sla.iter().map(|s| s.at_risk).collect(),
            ),
            series(
                "breached",
                "#c53030",
                r.sla.iter().map(|s| s.breached).collect(),
            ),
        ],
    );
    vec![volume, backlog, response, workload, sla]
}

/// The open queue, most urgent first: by SLA deadline, then by age.
fn queue(
    html: &mut String,
    clocks: &Clocks,
    all: &[Conversation],
    mailbox: &str,
    now: DateTime<Utc>,
) {
    let mut open: Vec<(&Conversation, Option<report::Standing>)> = all
        .iter()
        .filter(|c| c.mailbox == mailbox && c.state == ConversationState::Open)
        .map(|c| (c, clocks.standing(c, now)))
        .collect();
    open.sort_by_key(|(c, s)| {
        (
            s.as_ref()
                .map(|s| s.evaluation.breach_at)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            c.started,
        )
    });
    let _ = write!(
        html,
        "<h3>Open queue ({})</h3><table><tr><th>conversation</th><th>subject</th><th>from</th>\
         <th>owner</th><th>age</th><th>deadline</th></tr>",
        open.len()
    );
    for (conv, standing) in open.iter().take(QUEUE_ROWS) {
        let deadline = match standing {
            Some(s) => {
                let class = match s.evaluation.state {
                    State::Breached => "breached",
                    State::Warned => "at_risk",
                    State::Running | State::Met => "",
                };
                format!(
                    "<span class=\"{class}\">{} ({})</span>",
                    s.evaluation.breach_at.format("%F %R"),
                    escape(&s.policy)
                )
            }
            None => "-".into(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{deadline}</td></tr>",
            escape(&conv.id),
            escape(&conv.subject),
            escape(conv.from.as_deref().unwrap_or("")),
            escape(conv.owner.as_deref().unwrap_or("unassigned")),
            human((now - conv.started).num_seconds())
        );
    }
    html.push_str("</table>");
    if open.len() > QUEUE_ROWS {
        let _ = write!(
            html,
            "<p class=\"meta\">{} more not shown</p>",
            open.len() - QUEUE_ROWS
        );
    }
}

fn quarantine(html: &mut String, store: &Store, mailbox: &str) -> Result<()> {
    let entries = store.quarantined(Some(mailbox))?;
    let _ = write!(html, "<h3>Quarantine ({})</h3>", entries.len());
    if entries.is_empty() {
        return Ok(());
    }
    html.push_str(
        "<table><tr><th>folder</th><th>UID</th><th>reason</th><th>attempts</th>\
         <th>last try</th></tr>",
    );
    for q in entries {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&q.folder),
            q.uid,
            escape(&q.reason),
            q.attempts,
            q.at.format("%F %R")
        );
    }
    html.push_str("</table>");
    Ok(())
}
