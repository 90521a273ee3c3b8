//! The `when` part of a rule: which facts of a message it looks at and how it compares them.
//!
//! A [`Condition`] is a TOML table whose keys name facts (`subject`, `from_domain`, `header`...)
//! and whose values say how to compare ([`Matcher`]: `equals`, `contains`, `regex`, `one_of`).
//! Every key present must hold; `all`, `any` and `not` nest further conditions. Evaluation
//! returns a [`Verdict`] that says, in words, what matched or what did not, so `explain` can show
//! the reasoning rather than a bare yes or no.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::parsed::{Parsed, Pattern};
use super::Facts;
use crate::message::{one_line, Automated};

/// Longest piece of message text quoted in an explanation: enough to recognise a subject or an
/// address, short enough that an explanation line stays one line on a terminal.
const QUOTE_CHARS: usize = 80;

/// A condition on a message. Every key that is set must hold; an empty table holds for every
/// message.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Condition {
    /// The sender's address (lowercased), e.g. `{ equals = "ceo@customer.example" }`.
    pub from: Option<Matcher>,
    /// The domain of the sender's address, e.g. `{ one_of = ["vip.example", "big.example"] }`.
    pub from_domain: Option<Matcher>,
    /// Any `To` address: which alias of the shared mailbox the message was sent to.
    pub to: Option<Matcher>,
    /// Any `Cc` address.
    pub cc: Option<Matcher>,
    /// Any `To` or `Cc` address.
    pub recipient: Option<Matcher>,
    /// The decoded subject on one line.
    pub subject: Option<Matcher>,
    /// The start of the first text part (the envelope's bounded excerpt, never the whole body).
    pub body: Option<Matcher>,
    /// Headers by name (case does not matter), e.g. `header.x-priority = { equals = "1" }`.
    /// Holds when any occurrence of the header matches.
    #[serde(default)]
    pub header: BTreeMap<String, Matcher>,
    /// Any attachment file name, e.g. `{ regex = "\\.(pdf|xlsx)$" }`.
    pub attachment: Option<Matcher>,
    /// Whether the message carries at least one named attachment.
    pub has_attachment: Option<bool>,
    /// Size in bytes strictly above this.
    pub size_above: Option<u64>,
    /// Size in bytes strictly below this.
    pub size_below: Option<u64>,
    /// The automatic-mail kind: `no`, `auto_reply`, `bounce`, `read_receipt` or `generated`.
    pub automated: Option<Matcher>,
    /// Whether the message came through a mailing list (List-Id, List-Unsubscribe, Precedence).
    pub mailing_list: Option<bool>,
    /// A spam score header above a threshold.
    pub spam_score: Option<SpamScore>,
    /// Whether the message arrived inside the mailbox's business hours.
    pub business_hours: Option<bool>,
    /// Every one of these holds.
    #[serde(default)]
    pub all: Vec<Condition>,
    /// At least one of these holds.
    #[serde(default)]
    pub any: Vec<Condition>,
    /// This does not hold.
    pub not: Option<Box<Condition>>,
}

/// How a text fact is compared. Set exactly one key; comparisons ignore case.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Matcher {
    /// The whole value equals this (surrounding white space ignored).
    pub equals: Option<String>,
    /// The value contains this.
    pub contains: Option<String>,
    /// The value matches this regular expression (compiled once at load).
    pub regex: Option<Parsed<Pattern>>,
    /// The whole value equals one of these.
    pub one_of: Option<Vec<String>>,
}

/// `spam_score = { header = "X-Spam-Score", above = 5.0 }`.
#[derive(Debug, Clone, Deserialize)]
pub struct SpamScore {
    /// The header carrying the score; SpamAssassin's `X-Spam-Score` unless told otherwise.
    /// `X-Spam-Status: Yes, score=7.1 ...` and Exchange's `X-MS-Exchange-Organization-SCL`
    /// are read as well when named here.
    #[serde(default = "default_spam_header")]
    pub header: String,
    /// Holds when the score is strictly above this.
    pub above: f64,
}

fn default_spam_header() -> String {
    "x-spam-score".into()
}

/// The outcome of evaluating a condition, with the reasons in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the condition holds.
    pub holds: bool,
    /// Why: what matched when it holds, the first thing that failed when it does not.
    pub reasons: Vec<String>,
}

impl Verdict {
    fn yes(reason: String) -> Verdict {
        Verdict {
            holds: true,
            reasons: vec![reason],
        }
    }

    fn no(reason: String) -> Verdict {
        Verdict {
            holds: false,
            reasons: vec![reason],
        }
    }

    fn from(holds: bool, reason: String) -> Verdict {
        Verdict {
            holds,
            reasons: vec![reason],
        }
    }
}

impl Condition {
    /// Evaluates the condition against a message's facts.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Verdict {
        let mut reasons = Vec::new();
        for check in self.checks(facts) {
            if !check.holds {
                return check;
            }
            reasons.extend(check.reasons);
        }
        if reasons.is_empty() {
            reasons.push("no conditions: matches every message".into());
        }
        Verdict {
            holds: true,
            reasons,
        }
    }

    /// One verdict per key that is set, in a fixed order.
    fn checks(&self, facts: &Facts<'_>) -> Vec<Verdict> {
        let env = facts.envelope;
        let from = env.from.as_ref();
        let to: Vec<&str> = env.to.iter().map(|p| p.address.as_str()).collect();
        let cc: Vec<&str> = env.cc.iter().map(|p| p.address.as_str()).collect();
        let text = |m: &Option<Matcher>, what: &str, values: &[&str]| {
            m.as_ref().map(|m| m.evaluate(what, values))
        };
        let mut out: Vec<Verdict> = [
            text(
                &self.from,
                "from",
                &from
                    .map(|p| p.address.as_str())
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
            text(
                &self.from_domain,
                "from domain",
                &from.map(|p| p.domain()).into_iter().collect::<Vec<_>>(),
            ),
            text(&self.to, "to", &to),
            text(&self.cc, "cc", &cc),
            text(
                &self.recipient,
                "recipient",
                &[to.as_slice(), cc.as_slice()].concat(),
            ),
            text(&self.subject, "subject", &[env.subject.as_str()]),
            self.body
                .as_ref()
                .map(|m| m.evaluate_quiet("body", &env.body_excerpt)),
            text(
                &self.attachment,
                "attachment",
                &env.attachments
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            text(
                &self.automated,
                "automated kind",
                &[automated_name(env.automated)],
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (name, matcher) in &self.header {
            out.push(matcher.evaluate(&format!("header {name}"), &header_values(facts, name)));
        }
        out.extend(self.flag_checks(facts));
        out.extend(self.nested_checks(facts));
        out
    }

    /// Yes/no and numeric facts.
    fn flag_checks(&self, facts: &Facts<'_>) -> Vec<Verdict> {
        let env = facts.envelope;
        let mut out = Vec::new();
        if let Some(want) = self.has_attachment {
            let has = !env.attachments.is_empty();
            out.push(Verdict::from(
                has == want,
                format!("has attachment is {has}"),
            ));
        }
        if let Some(limit) = self.size_above {
            let ok = env.size > limit;
            out.push(Verdict::from(
                ok,
                format!("size {} {} {limit}", env.size, gt(ok)),
            ));
        }
        if let Some(limit) = self.size_below {
            let ok = env.size < limit;
            let rel = if ok { "is below" } else { "is not below" };
            out.push(Verdict::from(
                ok,
                format!("size {} {rel} {limit}", env.size),
            ));
        }
        if let Some(want) = self.mailing_list {
            let is = env.mailing_list;
            out.push(Verdict::from(is == want, format!("mailing list is {is}")));
        }
        if let Some(spam) = &self.spam_score {
            out.push(spam.evaluate(facts));
        }
        if let Some(want) = self.business_hours {
            out.push(match facts.in_business_hours {
                Some(inside) => Verdict::from(
                    inside == want,
                    format!(
                        "arrived {} business hours",
                        if inside { "inside" } else { "outside" }
                    ),
                ),
                None => Verdict::no("business hours unknown (no calendar for this mailbox)".into()),
            });
        }
        out
    }

    /// `all`, `any` and `not`.
    fn nested_checks(&self, facts: &Facts<'_>) -> Vec<Verdict> {
        let mut out = Vec::new();
        for (i, cond) in self.all.iter().enumerate() {
            let v = cond.evaluate(facts);
            out.push(prefixed(v, &format!("all[{i}]")));
        }
        if !self.any.is_empty() {
            let verdicts: Vec<Verdict> = self.any.iter().map(|c| c.evaluate(facts)).collect();
            out.push(match verdicts.iter().position(|v| v.holds) {
                Some(i) => prefixed(verdicts[i].clone(), &format!("any[{i}]")),
                None => Verdict::no(format!(
                    "none of the {} `any` conditions holds",
                    verdicts.len()
                )),
            });
        }
        if let Some(inner) = &self.not {
            let v = inner.evaluate(facts);
            let why = v.reasons.join("; ");
            out.push(Verdict::from(!v.holds, format!("not ({why})")));
        }
        out
    }
}

fn prefixed(v: Verdict, label: &str) -> Verdict {
    Verdict {
        holds: v.holds,
        reasons: v
            .reasons
            .into_iter()
            .map(|r| format!("{label}: {r}"))
            .collect(),
    }
}

fn gt(ok: bool) -> &'static str {
    if ok {
        "is above"
    } else {
        "is not above"
    }
}

/// The name an admin writes for an automatic-mail kind.
pub fn automated_name(kind: Automated) -> &'static str {
    match kind {
        Automated::No => "no",
        Automated::AutoReply => "auto_reply",
        Automated::Bounce => "bounce",
        Automated::ReadReceipt => "read_receipt",
        Automated::Generated => "generated",
    }
}

/// The kinds an `automated` condition may name.
pub const AUTOMATED_NAMES: &[&str] = &["no", "auto_reply", "bounce", "read_receipt", "generated"];

fn header_values<'a>(facts: &'a Facts<'_>, name: &str) -> Vec<&'a str> {
    let name = name.to_ascii_lowercase();
    facts
        .envelope
        .headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

impl SpamScore {
    fn evaluate(&self, facts: &Facts<'_>) -> Verdict {
        let values = header_values(facts, &self.header);
        let score = values.iter().find_map(|v| spam_score(v));
        match score {
            Some(score) if score > self.above => {
                Verdict::yes(format!("{} {score} is above {}", self.header, self.above))
            }
            Some(score) => Verdict::no(format!(
                "{} {score} is not above {}",
                self.header, self.above
            )),
            None => Verdict::no(format!("no readable score in header {}", self.header)),
        }
    }
}

/// Reads a score from `7.1`, `Yes, score=7.1 required=5.0` or `5`.
fn spam_score(value: &str) -> Option<f64> {
    let value = value.trim();
    if let Ok(score) = value.parse::<f64>() {
        return Some(score).filter(|s| s.is_finite());
    }
    let start = value.to_ascii_lowercase().find("score=")? + "score=".len();
    let number: String = value[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    number.parse::<f64>().ok().filter(|s| s.is_finite())
}

impl Matcher {
    /// Holds when any of `values` matches; the reason quotes the value that did.
    pub fn evaluate(&self, what: &str, values: &[&str]) -> Verdict {
        if values.is_empty() {
            return Verdict::no(format!("message has no {what}"));
        }
        for value in values {
            if let Some(how) = self.matches(value) {
                return Verdict::yes(format!("{what} {} {how}", quote(value)));
            }
        }
        let shown: Vec<String> = values.iter().take(3).map(|v| quote(v)).collect();
        let more = if values.len() > 3 { ", ..." } else { "" };
        Verdict::no(format!(
            "{what} {}{more} {}",
            shown.join(", "),
            self.negated()
        ))
    }

    /// Like [`Matcher::evaluate`] but never quotes the value: mail bodies stay out of
    /// explanations, which end up in logs and in the store.
    pub fn evaluate_quiet(&self, what: &str, value: &str) -> Verdict {
        match self.matches(value) {
            Some(how) => Verdict::yes(format!("{what} {how}")),
            None => Verdict::no(format!("{what} {}", self.negated())),
        }
    }

    /// How the value matched, in words, or `None`.
    fn matches(&self, value: &str) -> Option<String> {
        let value = value.trim();
        if let Some(want) = &self.equals {
            return same(value, want).then(|| format!("equals {}", quote(want)));
        }
        if let Some(want) = &self.contains {
            let hit = value.to_lowercase().contains(&want.to_lowercase());
            return hit.then(|| format!("contains {}", quote(want)));
        }
        if let Some(pattern) = &self.regex {
            let hit = pattern.get().is_some_and(|p| p.0.is_match(value));
            return hit.then(|| format!("matches /{}/", pattern.text));
        }
        if let Some(options) = &self.one_of {
            let hit = options.iter().find(|o| same(value, o))?;
            return Some(format!("is one of the list ({})", quote(hit)));
        }
        None
    }

    /// The comparison, negated, for a failure reason.
    fn negated(&self) -> String {
        if let Some(want) = &self.equals {
            format!("does not equal {}", quote(want))
        } else if let Some(want) = &self.contains {
            format!("does not contain {}", quote(want))
        } else if let Some(pattern) = &self.regex {
            format!("does not match /{}/", pattern.text)
        } else if let Some(options) = &self.one_of {
            format!("is not one of {} listed values", options.len())
        } else {
            "has nothing to compare with".into()
        }
    }

    /// How many comparison keys are set; validation wants exactly one.
    pub fn operator_count(&self) -> usize {
        [
            self.equals.is_some(),
            self.contains.is_some(),
            self.regex.is_some(),
            self.one_of.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count()
    }

    /// The literal values an `equals` or `one_of` compares with.
    pub fn literals(&self) -> Vec<&str> {
        self.equals
            .iter()
            .map(String::as_str)
            .chain(self.one_of.iter().flatten().map(String::as_str))
            .collect()
    }
}

fn same(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Quotes message text for an explanation: one line, cut at [`QUOTE_CHARS`].
fn quote(text: &str) -> String {
    let line = one_line(text);
    let mut cut: String = line.chars().take(QUOTE_CHARS).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}
