//! The lead's daily digest: one mail listing a team's conversations that are past their warning
//! point or overdue, built from the same [`Notice`] facts and the same escaping as the single
//! escalation mails, so customer text stays inert here too (field case BUG-30).

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use lettre::message::MultiPart;

use super::{assemble, escape_html, facts, Notice, NoticeKind, Origin, SUBJECT_TOKEN};
use crate::message::one_line;

/// One team's digest for one local date.
#[derive(Debug, Clone)]
pub struct Digest {
    /// The team's name.
    pub team: String,
    /// The local date it is for, on the team's calendar.
    pub date: NaiveDate,
    /// One notice per conversation, oldest first; each a [`NoticeKind::Warning`] or a
    /// [`NoticeKind::Breach`].
    pub entries: Vec<Notice>,
}

/// The digest's subject: our token, the team, how many, and the date.
pub fn digest_subject(digest: &Digest) -> String {
    let count = digest.entries.len();
    let noun = if count == 1 {
        "conversation needs"
    } else {
        "conversations need"
    };
    format!(
        "{SUBJECT_TOKEN}digest] {}: {count} {noun} attention on {}",
        one_line(&digest.team),
        digest.date.format("%a %Y-%m-%d")
    )
}

/// Builds the complete digest message. `message_id` is without angle brackets.
pub fn build_digest(
    digest: &Digest,
    origin: &Origin,
    to: &[String],
    message_id: &str,
    date: DateTime<Utc>,
) -> Result<Vec<u8>> {
    let body = MultiPart::alternative_plain_html(text_body(digest), html_body(digest));
    assemble(&digest_subject(digest), body, origin, to, message_id, date)
}

fn headline(digest: &Digest) -> String {
    format!(
        "These conversations of team {} are close to or past their response deadline, oldest \
         first. Please make sure each one is answered, or reassign it in Outlook by moving it to \
         another agent's folder.",
        one_line(&digest.team)
    )
}

fn status(notice: &Notice) -> String {
    match notice.kind {
        NoticeKind::Warning => format!("{} due soon", notice.clock),
        _ => format!("{} overdue", notice.clock),
    }
}

fn text_body(digest: &Digest) -> String {
    let mut text = headline(digest);
    text.push_str("\n\n");
    for (i, notice) in digest.entries.iter().enumerate() {
        text.push_str(&format!("{}. {}\n", i + 1, status(notice)));
        for (label, value) in facts(notice) {
            text.push_str(&format!("   {label}: {value}\n"));
        }
        text.push('\n');
    }
    text.push_str("This message was sent automatically by postroom; replies are not tracked.\n");
    text
}

fn html_body(digest: &Digest) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    html.push_str(&format!("<p>{}</p>\n", escape_html(&headline(digest))));
    for notice in &digest.entries {
        html.push_str(&format!(
            "<h3>{}</h3>\n<table>\n",
            escape_html(&status(notice))
        ));
        for (label, value) in facts(notice) {
            html.push_str(&format!(
                "<tr><th align=\"left\">{label}</th><td>{}</td></tr>\n",
                escape_html(&value)
            ));
        }
        html.push_str("</table>\n");
    }
    html.push_str("<p>This message was sent automatically by postroom; replies are not ");
    html.push_str("tracked.</p>\n</body></html>\n");
    html
}
