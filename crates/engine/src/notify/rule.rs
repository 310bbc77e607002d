//! Notification rules: which events (types, accounts, mode, a minimum amount) go to a channel,
//! and when (now, after quiet hours, or in a daily or weekly digest at a local time).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sm_reports::calendar::Zone;
use sm_warehouse::Connection;

use crate::error::EngineError;

/// The events a rule sends when none are chosen: what people who watch Stripe accounts ask for
/// (payments in and failed, refunds, disputes, subscriptions won and lost, payouts that failed,
/// fraud warnings), not the noise (every customer, every update).
pub const DEFAULT_EVENTS: &[&str] = &[
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.dispute.created",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "payout.failed",
    "radar.early_fraud_warning.created",
];

/// A rule's choices, stored as JSON with the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Event types, exact or ending in `.*` (a prefix), or `*` for every event.
    pub events: Vec<String>,
    /// One account (`acct_…`), or every account when `None`.
    pub account: Option<String>,
    /// Whether test-mode events are sent too (marked as test); live only by default.
    #[serde(default)]
    pub include_test: bool,
    /// Events with an amount below this (in minor units) are not sent; events without an
    /// amount (a new subscription) are.
    #[serde(default)]
    pub min_amount: Option<i64>,
    /// The currency `min_amount` is in; events in other currencies are then not sent. `None`:
    /// `min_amount` is in major units of the event's own currency.
    #[serde(default)]
    pub min_currency: Option<String>,
    /// Messages due in these hours wait until they end (then a backlog becomes a roll-up).
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Instead of one message per event, one digest at a local time.
    #[serde(default)]
    pub digest: Option<Digest>,
    /// The zone of quiet hours and digests (stored by name; rules stored before zones had
    /// names hold seconds east of UTC under `utc_offset`).
    #[serde(default, alias = "utc_offset")]
    pub time_zone: Zone,
}

/// From `start` to `end` (minutes after local midnight; `end` may be the next morning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Minutes after local midnight.
    pub at: u32,
    /// `None`: every day; `Some(0..=6)`: weekly, on that day (0 = Monday).
    pub weekday: Option<u32>,
}

impl RuleSpec {
    /// Whether an event of `connection` matches (type, account, mode, amount).
    pub fn matches(&self, connection: &Connection, event_type: &str, event: &Value) -> bool {
        if !self.include_test && !connection.livemode {
            return false;
        }
        if self
            .account
            .as_ref()
            .is_some_and(|a| *a != connection.account_id)
        {
            return false;
        }
        if !self.events.iter().any(|t| type_matches(t, event_type)) {
            return false;
        }
        match (
            self.min_amount,
            amount_of(event_type, &event["data"]["object"]),
        ) {
            (Some(min), Some((amount, currency))) => match &self.min_currency {
                Some(wanted) => wanted.eq_ignore_ascii_case(&currency) && amount >= min,
                None => {
                    let scale = 10i64.pow(crate::money::decimals(&currency));
                    amount >= min.saturating_mul(scale)
                }
            },
            _ => true,
        }
    }

    /// When a message for an event matched now is due: now, the end of quiet hours, or the next
    /// digest; and whether it waits for a digest.
    pub fn due(&self, now: i64) -> (i64, bool) {
        if let Some(digest) = self.digest {
            return (self.next_digest(digest, now), true);
        }
        if let Some(quiet) = self.quiet_hours {
            let zone = &self.time_zone;
            let minute = (zone.local_second(now) / 60) as u32;
            let inside = if quiet.start <= quiet.end {
                (quiet.start..quiet.end).contains(&minute)
            } else {
                minute >= quiet.start || minute < quiet.end
            };
            if inside {
                let today = zone.local_day(now);
                let end_second = i64::from(quiet.end) * 60;
                let mut end = zone.instant_of(today, end_second);
                if end <= now {
                    end = zone.instant_of(today + 1, end_second);
                }
                return (end, false);
            }
        }
        (now, false)
    }

    /// The first digest time after `now`.
    fn next_digest(&self, digest: Digest, now: i64) -> i64 {
        let zone = &self.time_zone;
        let second = i64::from(digest.at) * 60;
        let mut day = zone.local_day(now);
        loop {
            let at = zone.instant_of(day, second);
            // 1970-01-01 was a Thursday (3, counting Monday as 0).
            let weekday = (day + 3).rem_euclid(7) as u32;
            if at > now && digest.weekday.is_none_or(|w| w == weekday) {
                return at;
            }
            day += 1;
        }
    }

    /// The rule in words, for lists.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.events.len() <= 3 {
            self.events.join(", ")
        } else {
            format!("{} event types", self.events.len())
        }];
        parts.push(match &self.account {
            Some(a) => format!("account {a}"),
            None => "every account".into(),
        });
        parts.push(
            if self.include_test {
                "live and test"
            } else {
                "live only"
            }
            .into(),
        );
        if let Some(min) = self.min_amount {
            parts.push(match &self.min_currency {
                Some(c) => format!("from {}", crate::money::format(min, c)),
                None => format!("from {min} (in each currency)"),
            });
        }
        if let Some(q) = self.quiet_hours {
            parts.push(format!("quiet {}–{}", clock(q.start), clock(q.end)));
        }
        if let Some(d) = self.digest {
            parts.push(match d.weekday {
                None => format!("daily digest at {}", clock(d.at)),
                Some(w) => format!("weekly digest {} {}", WEEKDAYS[w as usize], clock(d.at)),
            });
        }
        if (self.quiet_hours.is_some() || self.digest.is_some()) && self.time_zone != Zone::utc() {
            parts.push(self.time_zone.name().to_owned());
        }
        parts.join(" · ")
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Whether a rule's event type (`charge.succeeded`, `charge.*`, `*`) covers `event_type`.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// The amount an event is about, in minor units, with its currency: a payment's amount, a
/// refund's amount refunded, an invoice's amount paid (or due), a payout's amount.
pub fn amount_of(event_type: &str, object: &Value) -> Option<(i64, String)> {
    let currency = object["currency"].as_str()?.to_owned();
    let amount = match object["object"].as_str()? {
        "charge" if event_type == "charge.refunded" => object["amount_refunded"].as_i64(),
        "invoice" => {
            if object["status"] == "paid" {
                object["amount_paid"].as_i64()
            } else {
                object["amount_due"].as_i64()
            }
        }
        "charge" | "payment_intent" | "refund" | "dispute" | "payout" | "checkout.session" => {
            object["amount"]
                .as_i64()
                .or_else(|| object["amount_total"].as_i64())
        }
        _ => None,
    }?;
    Some((amount, currency))
}

/// Parses `--events`: a comma-separated list of types (`charge.succeeded`, `charge.*`, `*`),
/// or `default`.
pub fn parse_events(text: &str) -> Result<Vec<String>, EngineError> {
    let mut events = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "default" {
            events.extend(DEFAULT_EVENTS.iter().map(|e| (*e).to_owned()));
            continue;
        }
        let body = part.strip_suffix(".*").unwrap_or(part);
        let shaped = part == "*"
            || (!body.is_empty()
                && body.split('.').all(|w| {
                    !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }));
        if !shaped {
            return Err(EngineError::invalid(format!(
                "`{part}` is not an event type: they look like charge.succeeded, or charge.* for every charge event"
            )));
        }
        if !events.iter().any(|e| e == part) {
            events.push(part.to_owned());
        }
    }
    if events.is_empty() {
        return Err(EngineError::invalid("no event types given").hint(
            "give types separated by commas (charge.succeeded,payout.failed), `default`, or `*`",
        ));
    }
    Ok(events)
}

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_clock(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && m.to_string().len() <= 2).then_some(h * 60 + m)
}

/// Parses `--quiet-hours 22:00-07:00`.
pub fn parse_quiet_hours(text: &str) -> Result<QuietHours, EngineError> {
    let bad = || {
        EngineError::invalid(format!(
            "`{text}` is not a span of hours: write it as 22:00-07:00 (local time, see --time-zone)"
        ))
    };
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let (start, end) = (
        parse_clock(start).ok_or_else(bad)?,
        parse_clock(end).ok_or_else(bad)?,
    );
    if start == end {
        return Err(bad());
    }
    Ok(QuietHours { start, end })
}

/// Parses `--digest daily@09:00` or `weekly@mon09:00`.
pub fn parse_digest(text: &str) -> Result<Digest, EngineError> {
    let bad = || {
        EngineError::invalid(format!(
            "`{text}` is not a digest time: write daily@09:00 or weekly@mon09:00 (local time, see --time-zone)"
        ))
    };
    let (every, at) = text.split_once('@').ok_or_else(bad)?;
    match every {
        "daily" => Ok(Digest {
            at: parse_clock(at).ok_or_else(bad)?,
            weekday: None,
        }),
        "weekly" => {
            let day = at.get(..3).ok_or_else(bad)?.to_ascii_lowercase();
            let weekday = WEEKDAYS.iter().position(|d| *d == day).ok_or_else(bad)? as u32;
            Ok(Digest {
                at: parse_clock(&at[3..]).ok_or_else(bad)?,
                weekday: Some(weekday),
            })
        }
        _ => Err(bad()),
    }
}

/// Parses `--min-amount 50` (major units of each event's currency) or `50usd` / `49.99 USD`
/// (that currency only): (minor units or major units, currency).
pub fn parse_min_amount(text: &str) -> Result<(i64, Option<String>), EngineError> {
    let bad = || {
        EngineError::invalid(format!(
            "`{text}` is not an amount: write 50 (in each event's currency) or 50usd / 49.99eur (that currency only)"
        ))
    };
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, currency) = (
        text[..split].trim(),
        text[split..].trim().to_ascii_lowercase(),
    );
    if number.is_empty() || number.starts_with('-') {
        return Err(bad());
    }
    if currency.is_empty() {
        let whole: i64 = number.parse().map_err(|_| bad())?;
        return Ok((whole, None));
    }
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(bad());
    }
    let places = crate::money::decimals(&currency) as usize;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > places || whole.is_empty() {
        return Err(bad());
    }
    let minor: i64 = format!("{whole}{fraction:0<places$}")
        .parse()
        .map_err(|_| bad())?;
    Ok((minor, Some(currency)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400;

    fn spec() -> RuleSpec {
        RuleSpec {
            events: DEFAULT_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            account: None,
            include_test: false,
            min_amount: None,
            min_currency: None,
            quiet_hours: None,
            digest: None,
            time_zone: Zone::utc(),
        }
    }

    fn charge(amount: i64, currency: &str) -> Value {
        json!({"data": {"object": {"object": "charge", "amount": amount, "currency": currency}}})
    }

    #[test]
    fn rules_choose_by_type_account_mode_and_amount() {
        let live = Connection::new("acct_1", true);
        let test = Connection::new("acct_1", false);
        let mut rule = spec();
        assert!(rule.matches(&live, "charge.succeeded", &charge(100, "usd")));
        assert!(
            !rule.matches(&test, "charge.succeeded", &charge(100, "usd")),
            "live only"
        );
        assert!(!rule.matches(&live, "customer.created", &charge(100, "usd")));
        rule.include_test = true;
        rule.account = Some("acct_2".into());
        assert!(!rule.matches(&test, "charge.succeeded", &charge(100, "usd")));
        rule.account = None;
        rule.min_amount = Some(50);
        assert!(!rule.matches(&live, "charge.succeeded", &charge(4_999, "usd")));
        assert!(rule.matches(&live, "charge.succeeded", &charge(5_000, "usd")));
        assert!(
            rule.matches(&live, "charge.succeeded", &charge(50, "jpy")),
            "zero-decimal"
        );
        (rule.min_amount, rule.min_currency) = (Some(5_000), Some("usd".into()));
        assert!(!rule.matches(&live, "charge.succeeded", &charge(900_000, "jpy")));
        let sub = json!({"data": {"object": {"object": "subscription", "currency": "usd"}}});
        assert!(
            rule.matches(&live, "customer.subscription.created", &sub),
            "no amount: sent"
        );
        rule.events = vec!["charge.*".into()];
        assert!(rule.matches(&live, "charge.dispute.created", &charge(9_000, "usd")));
    }

    #[test]
    fn quiet_hours_and_digests_move_the_due_time() {
        let mut rule = spec();
        // 2026-12-07 (a Monday) 23:30 UTC.
        let monday_2330: i64 = 1_796_686_200;
        let day_start = monday_2330 - monday_2330.rem_euclid(DAY);
        assert_eq!(rule.due(monday_2330), (monday_2330, false));
        rule.quiet_hours = Some(parse_quiet_hours("22:00-07:00").unwrap());
        assert_eq!(rule.due(monday_2330).0, day_start + DAY + 7 * 3600);
        assert_eq!(rule.due(day_start + 12 * 3600).0, day_start + 12 * 3600);
        rule.time_zone = Zone::fixed(3600).unwrap();
        assert_eq!(
            rule.due(day_start + 5 * 3600 + 1800).0,
            day_start + 6 * 3600
        );
        rule.time_zone = Zone::utc();
        rule.digest = Some(parse_digest("daily@09:00").unwrap());
        assert_eq!(rule.due(day_start + 8 * 3600), (day_start + 9 * 3600, true));
        assert_eq!(rule.due(day_start + 9 * 3600).0, day_start + DAY + 9 * 3600);
        rule.digest = Some(parse_digest("weekly@mon09:00").unwrap());
        let due = rule.due(day_start + 10 * 3600).0;
        assert_eq!((due.div_euclid(DAY) + 3).rem_euclid(7), 0, "a Monday");
        assert!(due > day_start + 6 * DAY);
    }

    #[test]
    fn a_digest_keeps_its_local_time_across_a_change_of_clocks() {
        let mut rule = spec();
        rule.time_zone = Zone::parse("Europe/Paris").unwrap();
        rule.digest = Some(parse_digest("daily@09:00").unwrap());
        // 2024-03-30 12:00 UTC: the next 09:00 in Paris is on the 31st, after clocks went
        // forward (+02:00), so 07:00 UTC; the one before the change was 08:00 UTC.
        assert_eq!(rule.due(1_711_800_000), (1_711_868_400, true));
        assert_eq!(rule.due(1_711_700_000), (1_711_785_600, true));
        // Quiet hours 22:00-07:00 in New York, on 2024-11-03 (clocks back at 02:00): from
        // 04:00 UTC (midnight there, -04:00) they end at 07:00 -05:00, 12:00 UTC.
        rule.digest = None;
        rule.time_zone = Zone::parse("America/New_York").unwrap();
        rule.quiet_hours = Some(parse_quiet_hours("22:00-07:00").unwrap());
        assert_eq!(rule.due(1_730_606_400).0, 1_730_635_200);
        assert!(
            rule.describe().ends_with("America/New_York"),
            "{}",
            rule.describe()
        );
    }

    #[test]
    fn settings_are_parsed_or_refused_in_words() {
        assert_eq!(
            parse_min_amount("49.99usd").unwrap(),
            (4_999, Some("usd".into()))
        );
        assert_eq!(
            parse_min_amount("5000 JPY").unwrap(),
            (5_000, Some("jpy".into()))
        );
        assert_eq!(parse_min_amount("50").unwrap(), (50, None));
        assert!(parse_min_amount("1.234usd").is_err());
        assert!(parse_min_amount("-5").is_err());
        assert_eq!(parse_events("default").unwrap().len(), DEFAULT_EVENTS.len());
        assert_eq!(
            parse_events("charge.*, payout.failed").unwrap(),
            ["charge.*", "payout.failed"]
        );
        assert!(parse_events("Charge Succeeded").is_err());
        assert!(parse_quiet_hours("22:00").is_err());
        assert!(parse_digest("monthly@09:00").is_err());
        assert_eq!(parse_digest("weekly@fri17:30").unwrap().weekday, Some(4));
    }
}
