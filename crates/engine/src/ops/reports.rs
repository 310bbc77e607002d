//! Revenue reports from a connection's mirror (the metrics are `sm_reports`'s; this reads what
//! they need and rebuilds each subscription's history). Every surface asks here.
//!
//! History: each `customer.subscription.*` event kept in the mirror is a version of its
//! subscription as it stood then (observed). Before a subscription's first kept event its state
//! is rebuilt: the first event's object with its `previous_attributes` undone, from the
//! subscription's start (trialing until its trial ended); a subscription no kept event names is
//! rebuilt from its current object alone (active from its start, canceled when it ended). A
//! report says from when on its figures are observed.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};
use sm_reports::calendar::{Interval, Zone, periods};
use sm_reports::failed::{FailedPayments, failed_payments};
use sm_reports::revenue::{RevenuePeriod, revenue};
use sm_reports::{Movement, PeriodMetrics, Settings, SubscriptionHistory};
use sm_warehouse::{Connection, EventQuery, EventRow, Store, StoreError};

use crate::{Engine, EngineError};

/// The fields of a subscription MRR is computed from, read straight from its JSON (the rest
/// of the object — metadata, invoice settings, the product behind each price… — is skipped,
/// not built: on 30,000 subscriptions that was most of a report's time).
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(default)]
struct SlimSubscription {
    #[serde(skip_serializing_if = "Value::is_null")]
    id: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    customer: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    status: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    currency: Value,
    items: SlimItems,
    #[serde(skip_serializing_if = "Value::is_null")]
    discount: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    discounts: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    start_date: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    created: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    trial_start: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    trial_end: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    ended_at: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    canceled_at: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    current_period_start: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    cancel_at_period_end: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    cancel_at: Value,
}

#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(default)]
struct SlimItems {
    data: Vec<SlimItem>,
}

#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(default)]
struct SlimItem {
    #[serde(skip_serializing_if = "Value::is_null")]
    id: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    quantity: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<SlimPrice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<SlimPrice>,
    #[serde(skip_serializing_if = "Value::is_null")]
    discounts: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    discount: Value,
}

/// A price (or a legacy plan) as MRR reads it.
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(default)]
struct SlimPrice {
    #[serde(skip_serializing_if = "Value::is_null")]
    id: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    currency: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    unit_amount: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    unit_amount_decimal: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    billing_scheme: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    tiers: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    tiers_mode: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    transform_quantity: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    recurring: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    tax_behavior: Value,
    #[serde(rename = "type", skip_serializing_if = "Value::is_null")]
    kind: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    interval: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    interval_count: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    usage_type: Value,
}

/// A subscription's JSON as the small object MRR reads (the whole object when it has a shape
/// the slim one does not expect, such as a price named by id); none when it is not JSON.
fn slim(json: &str) -> Option<Value> {
    match serde_json::from_str::<SlimSubscription>(json) {
        Ok(slim) => serde_json::to_value(slim).ok(),
        Err(_) => serde_json::from_str(json).ok(),
    }
}

/// An event's object (slim) and `previous_attributes`.
fn slim_event(json: &str) -> Option<(Value, Value)> {
    match serde_json::from_str::<SlimEvent>(json) {
        Ok(event) => Some((
            serde_json::to_value(event.data.object).ok()?,
            event.data.previous_attributes,
        )),
        Err(_) => {
            let mut event: Value = serde_json::from_str(json).ok()?;
            Some((
                event["data"]["object"].take(),
                event["data"]["previous_attributes"].take(),
            ))
        }
    }
}

/// A `customer.subscription.*` event: its object, slim, and its `previous_attributes`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SlimEvent {
    data: SlimEventData,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SlimEventData {
    object: SlimSubscription,
    previous_attributes: Value,
}

/// What a report covers and how it counts.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `[from, to)`, instants.
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    /// Only this currency (lowercase); none: every currency.
    pub currency: Option<String>,
    /// The zone periods are cut in.
    pub time_zone: Zone,
    pub settings: Settings,
    /// Compute only what this report shows (none: everything).
    pub only: Option<ReportKind>,
}

/// A connection's revenue report: every figure per period and currency.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub account: String,
    pub livemode: bool,
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    pub time_zone: Zone,
    pub settings: Settings,
    /// From this instant on subscription states are observed (kept events); before it they
    /// are rebuilt. None: no subscription event is kept, everything is rebuilt.
    pub observed_from: Option<i64>,
    pub subscriptions: usize,
    pub mrr: Vec<PeriodMetrics>,
    pub movements: Vec<Movement>,
    pub revenue: Vec<RevenuePeriod>,
    pub failed_payments: Vec<(i64, i64, Vec<FailedPayments>)>,
    /// Things the figures leave out, in words.
    pub notes: Vec<String>,
}

/// Every kept event of the given types, oldest first (storage order within a second).
fn all_events(
    store: &dyn Store,
    connection: &Connection,
    types: &[&str],
) -> Result<Vec<EventRow>, StoreError> {
    let mut all = Vec::new();
    let mut query = EventQuery {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        starting_after: None,
        limit: 1_000,
    };
    loop {
        let page = store.events_page(connection, &query)?;
        let full = page.len() == query.limit;
        query.starting_after = page.last().map(|e| e.id.clone());
        all.extend(page);
        if !full {
            break;
        }
    }
    all.reverse();
    Ok(all)
}

/// `object` with `previous` (an event's `previous_attributes`) written over it: the object as
/// it was just before the event.
fn undo(object: &Value, previous: &Value) -> Value {
    let mut before = object.clone();
    if let (Some(fields), Some(target)) = (previous.as_object(), before.as_object_mut()) {
        for (key, value) in fields {
            target.insert(key.clone(), value.clone());
        }
    }
    before
}

/// The rebuilt versions of a subscription from its start until `until`, from `state` (as it
/// stood at `until`, or as it is now when nothing was observed): trialing until its trial
/// ended, paying from then, and its status now from when it most likely began (the current
/// period's start for a renewal that went unpaid, its end for a cancellation).
fn rebuilt(state: &Value, until: Option<i64>) -> Vec<(i64, Value)> {
    let start = state["start_date"]
        .as_i64()
        .or_else(|| state["created"].as_i64())
        .unwrap_or(0);
    let status = state["status"].as_str().unwrap_or_default();
    let with_status = |status: &str| {
        let mut version = state.clone();
        version["status"] = json!(status);
        if status != "canceled" {
            version["cancel_at_period_end"] = json!(false);
            version["cancel_at"] = Value::Null;
        }
        version
    };
    let mut versions = Vec::new();
    if matches!(status, "incomplete" | "incomplete_expired") {
        // Never paid.
        versions.push((start, state.clone()));
    } else {
        let trial_end = state["trial_end"].as_i64().filter(|end| *end > start);
        let ended = state["ended_at"]
            .as_i64()
            .or_else(|| state["canceled_at"].as_i64());
        let paying_from = match trial_end {
            Some(trial_end) => {
                versions.push((
                    state["trial_start"].as_i64().unwrap_or(start),
                    with_status("trialing"),
                ));
                trial_end
            }
            None => start,
        };
        // When its present status began: never before it could have paid.
        let now_from = match status {
            "trialing" => None,
            "active" => Some(paying_from),
            "canceled" => Some(ended.unwrap_or(paying_from)),
            _ => Some(
                state["current_period_start"]
                    .as_i64()
                    .unwrap_or(paying_from)
                    .max(paying_from),
            ),
        };
        if let Some(at) = now_from {
            // Paying in between only when the present status came later (a subscription
            // canceled during its trial never paid).
            if at > paying_from {
                versions.push((paying_from, with_status("active")));
            }
            versions.push((at, state.clone()));
        }
    }
    if let Some(until) = until {
        versions.retain(|(at, _)| *at < until);
    }
    versions
}

/// Every subscription's history, from its kept events and its current row.
fn histories(
    subscriptions: Vec<sm_warehouse::RawRow>,
    events: &[EventRow],
) -> (Vec<SubscriptionHistory>, Option<i64>) {
    let mut by_subscription: HashMap<String, Vec<(i64, Value, Value)>> = HashMap::new();
    let mut observed_from: Option<i64> = None;
    for event in events {
        let Some((mut object, previous)) = slim_event(&event.data) else {
            continue;
        };
        let Some(id) = object["id"].as_str().map(str::to_owned) else {
            continue;
        };
        observed_from = Some(observed_from.map_or(event.created, |o: i64| o.min(event.created)));
        if event.event_type == "customer.subscription.deleted" {
            object["status"] = json!("canceled");
        }
        by_subscription
            .entry(id)
            .or_default()
            .push((event.created, object, previous));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for row in &subscriptions {
        seen.insert(row.id.clone());
    }
    let mut current: HashMap<String, Value> = subscriptions
        .into_iter()
        .filter_map(|row| Some((row.id, slim(&row.data)?)))
        .collect();
    let mut ids: Vec<String> = current.keys().cloned().collect();
    ids.extend(
        by_subscription
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned(),
    );
    ids.sort();
    for id in ids {
        let observed = by_subscription.remove(&id).unwrap_or_default();
        let now = current.remove(&id);
        let mut versions = Vec::new();
        match observed.first() {
            Some((first_at, object, previous)) => {
                let first_at = *first_at;
                let created = object["created"].as_i64().unwrap_or(first_at);
                if created < first_at {
                    versions.extend(rebuilt(&undo(object, previous), Some(first_at)));
                }
                // The row may be newer than the last kept event (listed since): its state then
                // holds from when it ended, or from the last event on.
                let newer = observed.last().and_then(|(last_at, last, _)| {
                    let now = now.filter(|now| now["status"] != last["status"])?;
                    let at = now["ended_at"].as_i64().unwrap_or(*last_at).max(*last_at);
                    Some((at, now))
                });
                versions.extend(observed.into_iter().map(|(at, object, _)| (at, object)));
                versions.extend(newer);
            }
            None => {
                if let Some(now) = now {
                    versions.extend(rebuilt(&now, None));
                }
            }
        }
        let customer = versions
            .last()
            .and_then(|(_, v)| match &v["customer"] {
                Value::String(id) => Some(id.clone()),
                Value::Object(c) => c.get("id").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default();
        versions.sort_by_key(|(at, _)| *at);
        out.push(SubscriptionHistory {
            id,
            customer,
            versions,
        });
    }
    (out, observed_from)
}

/// The revenue report of `account` (name or id), read from the mirror.
pub async fn report(
    engine: &Engine,
    account: &str,
    options: ReportOptions,
) -> Result<Report, EngineError> {
    if options.to <= options.from {
        return Err(EngineError::invalid(
            "the report's end must come after its start: give --to later than --from",
        ));
    }
    let record = engine.resolve(account).await?;
    let connection = record.connection.clone();
    let options_for = options.clone();
    let report = engine
        .store_call(move |store| build(store, &connection, options_for))
        .await?;
    Ok(report)
}

fn build(
    store: &dyn Store,
    connection: &Connection,
    options: ReportOptions,
) -> Result<Report, StoreError> {
    let spans = periods(
        options.from,
        options.to,
        options.interval,
        &options.time_zone,
    );
    let until = spans.last().map_or(options.to, |(_, end)| *end);
    let wanted = |currency: &str| options.currency.as_deref().is_none_or(|c| c == currency);
    let wants = |kind: ReportKind| options.only.is_none_or(|only| only == kind);
    let needs_mrr = [
        ReportKind::Summary,
        ReportKind::Mrr,
        ReportKind::Movements,
        ReportKind::Churn,
    ]
    .into_iter()
    .any(wants);
    let (mut movements, mut histories, mut observed_from) = (Vec::new(), Vec::new(), None);
    let coupons: HashMap<String, Value> = if needs_mrr {
        store
            .rows(connection, "coupons")?
            .into_iter()
            .map(|row| (row.id, row.data))
            .collect()
    } else {
        HashMap::new()
    };
    let lookup = |id: &str| coupons.get(id).cloned();
    if needs_mrr {
        let subscriptions = store.rows_raw(connection, "subscriptions")?;
        let events = all_events(store, connection, &["customer.subscription.*"])?;
        (histories, observed_from) = self::histories(subscriptions, &events);
        movements = sm_reports::movements(&histories, &options.settings, &lookup, until);
        movements.retain(|m| wanted(&m.currency));
    }
    let mrr = sm_reports::period_metrics(&movements, &spans, &options.settings);
    let revenue = if wants(ReportKind::Revenue) || wants(ReportKind::Summary) {
        let transactions: Vec<sm_reports::revenue::BalanceTransaction> = store
            .rows_raw(connection, "balance_transactions")?
            .into_iter()
            .filter(|row| !row.deleted)
            .filter_map(|row| serde_json::from_str(&row.data).ok())
            .collect();
        let mut revenue = revenue(&transactions, &spans, false);
        revenue.retain(|r| wanted(&r.currency));
        revenue
    } else {
        Vec::new()
    };
    let failed = if wants(ReportKind::FailedPayments) {
        let charges: Vec<Value> = store
            .rows(connection, "charges")?
            .into_iter()
            .map(|row| row.data)
            .collect();
        // Drafts were never asked to be paid; deleted ones are gone.
        let invoices: Vec<Value> = store
            .rows(connection, "invoices")?
            .into_iter()
            .filter(|row| !row.deleted && row.data["status"] != "draft")
            .map(|row| row.data)
            .collect();
        let trial_ends: HashMap<String, i64> = store
            .rows(connection, "subscriptions")?
            .into_iter()
            .filter_map(|row| Some((row.id, row.data["trial_end"].as_i64()?)))
            .collect();
        let trial_end = |invoice: &Value| {
            let subscription = match &invoice["subscription"] {
                Value::String(id) => Some(id.as_str()),
                Value::Object(s) => s.get("id").and_then(Value::as_str),
                _ => invoice["parent"]["subscription_details"]["subscription"].as_str(),
            };
            subscription.and_then(|id| trial_ends.get(id).copied())
        };
        let failed_events: std::collections::HashSet<String> =
            all_events(store, connection, &["invoice.payment_failed"])?
                .into_iter()
                .filter_map(|e| e.object_id)
                .collect();
        let first_failed = |invoice: &Value| {
            invoice["id"]
                .as_str()
                .is_some_and(|id| failed_events.contains(id))
                || invoice["attempt_count"].as_i64().unwrap_or(0) > 1
                || (invoice["status"] == "open" && invoice["attempted"] == true)
        };
        let facts = sm_reports::failed::InvoiceFacts {
            first_attempt_failed: &first_failed,
            trial_end: &trial_end,
        };
        failed_payments(&charges, &invoices, &spans, &facts)
            .into_iter()
            .map(|(start, end, mut rows)| {
                rows.retain(|r| wanted(&r.currency));
                (start, end, rows)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut notes = vec![
        "tax-inclusive prices are counted with their tax (the invoice share is not taken yet)"
            .to_owned(),
    ];
    let metered: u32 = histories
        .iter()
        .filter_map(|h| h.versions.last())
        .map(|(at, v)| {
            sm_reports::subscription_mrr(v, *at, &options.settings, &lookup).metered_items
        })
        .sum();
    if metered > 0 {
        notes.push(format!(
            "{metered} metered subscription items count 0 in MRR, as Stripe counts them"
        ));
    }
    match observed_from {
        _ if !needs_mrr => {}
        Some(at) if at > options.from => notes.push(format!(
            "subscription states before {} are rebuilt from the subscriptions themselves, not observed",
            sm_reports::calendar::date_label(at, &options.time_zone)
        )),
        None => notes.push("no subscription event is kept: every state is rebuilt from the subscriptions themselves".into()),
        _ => {}
    }
    Ok(Report {
        account: connection.account_id.clone(),
        livemode: connection.livemode,
        from: options.from,
        to: options.to,
        interval: options.interval,
        time_zone: options.time_zone,
        settings: options.settings,
        observed_from,
        subscriptions: histories.len(),
        mrr,
        movements: movements
            .into_iter()
            .filter(|m| m.at >= options.from && m.at < until)
            .collect(),
        revenue,
        failed_payments: failed,
        notes,
    })
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// MRR at the start, the five movements, MRR at the end, subscribers; with a headline.
    Summary,
    /// MRR and ARR at each period's end, subscribers, ARPA.
    Mrr,
    /// The movements of each period.
    Movements,
    /// Churn rates: subscribers (rolling 30 days), gross and net MRR, quick ratio, LTV.
    Churn,
    /// Net revenue from balance transactions by reporting category.
    Revenue,
    /// Failed charges and renewal invoices whose first attempt failed, with recovery.
    FailedPayments,
}

impl ReportKind {
    pub const ALL: [ReportKind; 6] = [
        ReportKind::Summary,
        ReportKind::Mrr,
        ReportKind::Movements,
        ReportKind::Churn,
        ReportKind::Revenue,
        ReportKind::FailedPayments,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Summary => "summary",
            ReportKind::Mrr => "mrr",
            ReportKind::Movements => "movements",
            ReportKind::Churn => "churn",
            ReportKind::Revenue => "revenue",
            ReportKind::FailedPayments => "failed-payments",
        }
    }

    pub fn parse(text: &str) -> Result<ReportKind, EngineError> {
        ReportKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text || kind.name().replace('-', "_") == text)
            .ok_or_else(|| {
                EngineError::invalid(format!(
                    "no report {text:?}: choose one of {}",
                    ReportKind::ALL.map(ReportKind::name).join(", ")
                ))
            })
    }
}

/// A report's question as a surface receives it (flags, a query string, tool arguments):
/// text, checked here so that every surface refuses the same input with the same words.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ReportQuery {
    /// First day, YYYY-MM-DD (default: the start of the month eleven months ago).
    pub from: Option<String>,
    /// The day after the last, YYYY-MM-DD (default: tomorrow, so today is included).
    pub to: Option<String>,
    /// day, week or month (default month).
    pub interval: Option<String>,
    pub currency: Option<String>,
    /// An IANA name (Europe/Paris), +02:00, -0530 or UTC (default UTC); `utc_offset` is its
    /// older name.
    #[serde(alias = "utc_offset")]
    pub time_zone: Option<String>,
    /// forever_only (default), recurring or all.
    pub discount_mode: Option<String>,
    /// at_period_end (default) or at_request.
    pub churn_recognition: Option<String>,
    pub delinquency_churn_days: Option<u32>,
    pub week_factor: Option<String>,
    pub days_per_month: Option<String>,
    pub net_same_period_new_churn: Option<bool>,
}

impl ReportQuery {
    /// The options it asks for, as of `now`; a clear refusal for anything malformed.
    pub fn options(&self, now: i64) -> Result<ReportOptions, EngineError> {
        use sm_reports::calendar::{next_period, parse_date, period_start};
        use sm_reports::{ChurnRecognition, DiscountMode, Ratio};
        let zone = Zone::parse(self.time_zone.as_deref().unwrap_or("UTC"))
            .map_err(|e| EngineError::invalid(format!("time_zone: {e}")))?;
        let date = |name: &str, text: &str| {
            parse_date(text, &zone).ok_or_else(|| {
                EngineError::invalid(format!("{name} must be a date as YYYY-MM-DD, not {text:?}"))
            })
        };
        let to = match &self.to {
            Some(text) => date("to", text)?,
            None => next_period(
                period_start(now, Interval::Day, &zone),
                Interval::Day,
                &zone,
            ),
        };
        let from = match &self.from {
            Some(text) => date("from", text)?,
            None => {
                let mut start = period_start(to - 1, Interval::Month, &zone);
                for _ in 0..11 {
                    start = period_start(start - 1, Interval::Month, &zone);
                }
                start
            }
        };
        if to <= from {
            return Err(EngineError::invalid(
                "the report's end must come after its start: give a `to` later than `from`",
            ));
        }
        // Periods are listed one by one: bound how many a report may have.
        let days = (to - from) / 86_400;
        let interval = match self.interval.as_deref() {
            None => Interval::Month,
            Some(text) => text.parse().map_err(EngineError::invalid)?,
        };
        if interval == Interval::Day && days > 3_700 {
            return Err(EngineError::invalid(
                "at most ten years by day: choose interval week or month for a longer range",
            ));
        }
        let factor = |name: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    Ratio::parse_decimal(t)
                        .filter(|r| r.is_positive())
                        .ok_or_else(|| {
                            EngineError::invalid(format!(
                                "{name} must be a positive number such as 4.33, not {t:?}"
                            ))
                        })
                })
                .transpose()
        };
        let settings = Settings {
            discount_mode: match self
                .discount_mode
                .as_deref()
                .map(|m| m.replace('-', "_"))
                .as_deref()
            {
                None | Some("forever_only") => DiscountMode::ForeverOnly,
                Some("recurring") => DiscountMode::Recurring,
                Some("all") => DiscountMode::All,
                Some(other) => {
                    return Err(EngineError::invalid(format!(
                        "discount_mode must be forever_only, recurring or all, not {other:?}"
                    )));
                }
            },
            churn_recognition: match self
                .churn_recognition
                .as_deref()
                .map(|m| m.replace('-', "_"))
                .as_deref()
            {
                None | Some("at_period_end") => ChurnRecognition::AtPeriodEnd,
                Some("at_request") => ChurnRecognition::AtRequest,
                Some(other) => {
                    return Err(EngineError::invalid(format!(
                        "churn_recognition must be at_period_end or at_request, not {other:?}"
                    )));
                }
            },
            delinquency_churn_days: self.delinquency_churn_days,
            week_factor: factor("week_factor", &self.week_factor)?,
            days_per_month: factor("days_per_month", &self.days_per_month)?,
            net_same_period_new_churn: self.net_same_period_new_churn.unwrap_or(false),
        };
        let currency = match self.currency.as_deref() {
            Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(c.to_ascii_lowercase())
            }
            Some(c) => {
                return Err(EngineError::invalid(format!(
                    "currency must be a three-letter code such as usd, not {c:?}"
                )));
            }
            None => None,
        };
        Ok(ReportOptions {
            from,
            to,
            interval,
            currency,
            time_zone: zone,
            settings,
            only: None,
        })
    }
}

/// A cell of a report's table: its text, and for a figure its number (minor units for
/// amounts, a fraction for rates; null where there is none).
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub number: Option<Value>,
    /// As a spreadsheet reads it: amounts in major units without symbols (`-1234.50`), rates
    /// as fractions, counts as integers, text as itself.
    pub plain: String,
}

/// A report as a table: what every surface shows (the CLI's table and CSV, the API's JSON,
/// the dashboard's page).
#[derive(Debug, Clone)]
pub struct ReportTable {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    /// The column a chart shows.
    pub chart_column: Option<usize>,
}

fn text_cell(t: impl Into<String>) -> Cell {
    let text = t.into();
    Cell {
        plain: text.clone(),
        text,
        number: None,
    }
}

/// Minor units as a plain decimal in major units: 123450 usd → `1234.50`, 1200 jpy → `1200`.
fn plain_amount(value: i64, currency: &str) -> String {
    let places = crate::money::decimals(currency);
    if places == 0 {
        return value.to_string();
    }
    let scale = 10i64.pow(places);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale as u64,
        abs % scale as u64,
        width = places as usize
    )
}

fn micros_cell(micros: i128, currency: &str) -> Cell {
    minor_cell(sm_reports::micros_to_minor(micros), currency)
}

fn minor_cell(value: i64, currency: &str) -> Cell {
    Cell {
        text: crate::money::format(value, currency),
        number: Some(json!(value)),
        plain: plain_amount(value, currency),
    }
}

fn count_cell(n: u64) -> Cell {
    Cell {
        text: n.to_string(),
        number: Some(json!(n)),
        plain: n.to_string(),
    }
}

fn fraction_cell(value: Option<f64>, text: impl Fn(f64) -> String) -> Cell {
    Cell {
        text: value.map_or_else(|| "—".to_owned(), &text),
        number: Some(value.map_or(Value::Null, |v| json!(v))),
        plain: value.map_or_else(String::new, |v| format!("{v}")),
    }
}

fn rate_cell(value: Option<f64>) -> Cell {
    fraction_cell(value, |v| format!("{:.2}%", v * 100.0))
}

fn ratio_cell(value: Option<f64>) -> Cell {
    fraction_cell(value, |v| format!("{v:.2}"))
}

fn money_cell(value: Option<f64>, currency: &str) -> Cell {
    match value {
        Some(v) => minor_cell(v.round() as i64, currency),
        None => fraction_cell(None, |_| String::new()),
    }
}

impl Report {
    fn period_label(&self, start: i64) -> String {
        sm_reports::calendar::date_label(start, &self.time_zone)
    }

    fn metric_rows(&self, cells: impl Fn(&PeriodMetrics) -> Vec<Cell>) -> Vec<Vec<Cell>> {
        self.mrr
            .iter()
            .map(|p| {
                let mut row = vec![
                    text_cell(self.period_label(p.start)),
                    text_cell(p.currency.clone()),
                ];
                row.extend(cells(p));
                row
            })
            .collect()
    }

    /// The report as a table of `kind`.
    pub fn table(&self, kind: ReportKind) -> ReportTable {
        match kind {
            ReportKind::Mrr => ReportTable {
                columns: vec!["period", "currency", "mrr", "arr", "subscribers", "arpa"],
                rows: self.metric_rows(|p| {
                    vec![
                        micros_cell(p.mrr_end, &p.currency),
                        micros_cell(p.mrr_end * 12, &p.currency),
                        count_cell(p.subscribers_end),
                        money_cell(p.arpa, &p.currency),
                    ]
                }),
                chart_column: Some(2),
            },
            ReportKind::Movements | ReportKind::Summary => ReportTable {
                columns: vec![
                    "period",
                    "currency",
                    "mrr_start",
                    "new",
                    "reactivation",
                    "expansion",
                    "contraction",
                    "churn",
                    "mrr_end",
                    "subscribers",
                ],
                rows: self.metric_rows(|p| {
                    vec![
                        micros_cell(p.mrr_start, &p.currency),
                        micros_cell(p.new, &p.currency),
                        micros_cell(p.reactivation, &p.currency),
                        micros_cell(p.expansion, &p.currency),
                        micros_cell(-p.contraction, &p.currency),
                        micros_cell(-p.churn, &p.currency),
                        micros_cell(p.mrr_end, &p.currency),
                        count_cell(p.subscribers_end),
                    ]
                }),
                chart_column: Some(8),
            },
            ReportKind::Churn => ReportTable {
                columns: vec![
                    "period",
                    "currency",
                    "churned",
                    "subscriber_churn_30d",
                    "gross_mrr_churn",
                    "net_mrr_churn",
                    "quick_ratio",
                    "ltv",
                ],
                rows: self.metric_rows(|p| {
                    vec![
                        count_cell(p.churned_subscribers),
                        rate_cell(p.subscriber_churn_rate),
                        rate_cell(p.gross_mrr_churn_rate),
                        rate_cell(p.net_mrr_churn_rate),
                        ratio_cell(p.quick_ratio),
                        money_cell(p.ltv, &p.currency),
                    ]
                }),
                chart_column: None,
            },
            ReportKind::Revenue => ReportTable {
                columns: vec![
                    "period",
                    "currency",
                    "gross_sales",
                    "refunds",
                    "disputes",
                    "fees",
                    "net_revenue",
                    "payouts",
                    "ending_balance",
                ],
                rows: self
                    .revenue
                    .iter()
                    .map(|r| {
                        vec![
                            text_cell(self.period_label(r.start)),
                            text_cell(r.currency.clone()),
                            minor_cell(r.gross_sales, &r.currency),
                            minor_cell(r.refunds, &r.currency),
                            minor_cell(r.disputes, &r.currency),
                            minor_cell(-r.fees, &r.currency),
                            minor_cell(r.net_revenue, &r.currency),
                            minor_cell(r.payouts, &r.currency),
                            minor_cell(r.ending_balance, &r.currency),
                        ]
                    })
                    .collect(),
                chart_column: Some(6),
            },
            ReportKind::FailedPayments => ReportTable {
                columns: vec![
                    "period",
                    "currency",
                    "failed_charges",
                    "failed_amount",
                    "renewals",
                    "renewals_failed",
                    "recovered",
                    "failure_rate",
                    "recovery_rate",
                    "top_decline",
                ],
                rows: self
                    .failed_payments
                    .iter()
                    .flat_map(|(start, _, rows)| {
                        rows.iter().map(move |f| {
                            let top = f
                                .decline_reasons
                                .iter()
                                .max_by_key(|(_, n)| **n)
                                .map_or_else(String::new, |(reason, n)| format!("{reason} ({n})"));
                            vec![
                                text_cell(self.period_label(*start)),
                                text_cell(f.currency.clone()),
                                count_cell(f.failed_charges),
                                minor_cell(f.failed_charge_amount, &f.currency),
                                count_cell(f.renewals),
                                count_cell(f.renewals_failed),
                                count_cell(f.renewals_recovered),
                                rate_cell(f.failure_rate),
                                rate_cell(f.recovery_rate),
                                text_cell(top),
                            ]
                        })
                    })
                    .collect(),
                chart_column: Some(2),
            },
        }
    }

    /// The headline per currency: the last period's MRR, ARR, subscribers and churn, and the
    /// range's net revenue (minor units, and formatted).
    pub fn headline(&self) -> Value {
        let mut by_currency = serde_json::Map::new();
        for p in self
            .mrr
            .iter()
            .filter(|p| self.mrr.iter().rfind(|q| q.currency == p.currency) == Some(*p))
        {
            let net: i64 = self
                .revenue
                .iter()
                .filter(|r| r.currency == p.currency)
                .map(|r| r.net_revenue)
                .sum();
            let mrr = sm_reports::micros_to_minor(p.mrr_end);
            let arr = sm_reports::micros_to_minor(p.mrr_end * 12);
            by_currency.insert(
                p.currency.clone(),
                json!({
                    "mrr": mrr,
                    "mrr_formatted": crate::money::format(mrr, &p.currency),
                    "arr": arr,
                    "arr_formatted": crate::money::format(arr, &p.currency),
                    "subscribers": p.subscribers_end,
                    "subscriber_churn_30d": p.subscriber_churn_rate,
                    "net_revenue": net,
                    "net_revenue_formatted": crate::money::format(net, &p.currency),
                }),
            );
        }
        Value::Object(by_currency)
    }

    /// The report of `kind` as JSON: the range, settings and notes, and each period as an
    /// object (figures as numbers, each with its `…_formatted` text).
    pub fn to_json(&self, kind: ReportKind) -> Value {
        let table = self.table(kind);
        let rows: Vec<Value> = table
            .rows
            .iter()
            .map(|row| {
                let mut object = serde_json::Map::new();
                for (name, cell) in table.columns.iter().zip(row) {
                    match &cell.number {
                        Some(number) => {
                            object.insert((*name).to_owned(), number.clone());
                            object.insert(format!("{name}_formatted"), json!(cell.text));
                        }
                        None => {
                            object.insert((*name).to_owned(), json!(cell.text));
                        }
                    }
                }
                Value::Object(object)
            })
            .collect();
        let mut answer = json!({
            "report": kind.name(),
            "account": self.account,
            "livemode": self.livemode,
            "from": sm_reports::calendar::date_label(self.from, &self.time_zone),
            "to": sm_reports::calendar::date_label(self.to, &self.time_zone),
            "interval": self.interval,
            "time_zone": self.time_zone,
            "settings": self.settings,
            "observed_from": self.observed_from,
            "periods": rows,
            "notes": self.notes,
        });
        if kind == ReportKind::Summary {
            answer["summary"] = self.headline();
        }
        answer
    }
}

impl ReportTable {
    /// Comma-separated values, a header line first, each cell in its plain form. Text that a
    /// spreadsheet would take for a formula (=, +, -, @ first) is prefixed with `'`.
    pub fn csv(&self) -> String {
        let cell = |cell: &Cell| {
            let text = if cell.number.is_none() && cell.plain.starts_with(['=', '+', '-', '@']) {
                format!("'{}", cell.plain)
            } else {
                cell.plain.clone()
            };
            if text.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text
            }
        };
        // Lines end in CRLF, as RFC 4180 (and the SQL page's download) has them.
        let mut out = self.columns.join(",");
        out.push_str("\r\n");
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(cell).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn statuses(versions: &[(i64, Value)]) -> Vec<(i64, String)> {
        versions
            .iter()
            .map(|(at, v)| {
                (
                    *at / DAY,
                    v["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn rebuilt_histories_never_pay_when_they_could_not_have() {
        // Canceled on day 3 of a 14-day trial: trialing, then canceled; never paying.
        let canceled_in_trial = json!({"status": "canceled", "start_date": 0, "trial_start": 0,
            "trial_end": 14 * DAY, "ended_at": 3 * DAY, "canceled_at": 3 * DAY});
        assert_eq!(
            statuses(&rebuilt(&canceled_in_trial, None)),
            [(0, "trialing".into()), (3, "canceled".into())]
        );
        // Its first paid period went unpaid: trialing, then unpaid at once.
        let unpaid_after_trial = json!({"status": "unpaid", "start_date": 0, "trial_start": 0,
            "trial_end": 14 * DAY, "current_period_start": 14 * DAY});
        assert_eq!(
            statuses(&rebuilt(&unpaid_after_trial, None)),
            [(0, "trialing".into()), (14, "unpaid".into())]
        );
        // Paid for months, then canceled.
        let churned = json!({"status": "canceled", "start_date": 0, "ended_at": 90 * DAY});
        assert_eq!(
            statuses(&rebuilt(&churned, None)),
            [(0, "active".into()), (90, "canceled".into())]
        );
        // Before a first kept event on day 50: only what came before it.
        assert_eq!(
            statuses(&rebuilt(&churned, Some(50 * DAY))),
            [(0, "active".into())]
        );
    }
}
