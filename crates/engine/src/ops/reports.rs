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
use sm_reports::calendar::{Interval, periods};
use sm_reports::failed::{FailedPayments, failed_payments};
use sm_reports::revenue::{RevenuePeriod, revenue};
use sm_reports::{Movement, PeriodMetrics, Settings, SubscriptionHistory};
use sm_warehouse::{Connection, EventQuery, EventRow, Store, StoreError};

use crate::{Engine, EngineError};

/// What a report covers and how it counts.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `[from, to)`, instants.
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    /// Only this currency (lowercase); none: every currency.
    pub currency: Option<String>,
    /// Seconds east of UTC that periods are cut in.
    pub utc_offset: i64,
    pub settings: Settings,
}

/// A connection's revenue report: every figure per period and currency.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub account: String,
    pub livemode: bool,
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    pub utc_offset: i64,
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
        let now_from = match status {
            "trialing" => None,
            "active" => Some(paying_from),
            "canceled" => ended.filter(|at| *at > paying_from),
            _ => state["current_period_start"]
                .as_i64()
                .filter(|at| *at > paying_from),
        };
        if status != "trialing" && now_from != Some(paying_from) {
            versions.push((paying_from, with_status("active")));
        }
        if let Some(at) = now_from {
            versions.push((at, state.clone()));
        } else if status == "canceled" {
            // Ended during its trial (or at once).
            versions.push((ended.unwrap_or(paying_from), state.clone()));
        }
    }
    if let Some(until) = until {
        versions.retain(|(at, _)| *at < until);
    }
    versions
}

/// Every subscription's history, from its kept events and its current row.
fn histories(
    subscriptions: Vec<sm_warehouse::StoredRow>,
    events: &[EventRow],
) -> (Vec<SubscriptionHistory>, Option<i64>) {
    let mut by_subscription: HashMap<String, Vec<(i64, Value, Value)>> = HashMap::new();
    let mut observed_from: Option<i64> = None;
    for event in events {
        let Ok(parsed) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        let object = parsed["data"]["object"].clone();
        let Some(id) = object["id"].as_str() else {
            continue;
        };
        observed_from = Some(observed_from.map_or(event.created, |o: i64| o.min(event.created)));
        let mut object = object.clone();
        if event.event_type == "customer.subscription.deleted" {
            object["status"] = json!("canceled");
        }
        by_subscription.entry(id.to_owned()).or_default().push((
            event.created,
            object,
            parsed["data"]["previous_attributes"].clone(),
        ));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for row in &subscriptions {
        seen.insert(row.id.clone());
    }
    let current: HashMap<String, Value> = subscriptions
        .into_iter()
        .map(|row| (row.id, row.data))
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
        let now = current.get(&id);
        let mut versions = Vec::new();
        match observed.first() {
            Some((first_at, object, previous)) => {
                let created = object["created"].as_i64().unwrap_or(*first_at);
                if created < *first_at {
                    versions.extend(rebuilt(&undo(object, previous), Some(*first_at)));
                }
                for (at, object, _) in &observed {
                    versions.push((*at, object.clone()));
                }
                // The row may be newer than the last kept event (listed since): its state then
                // holds from when it ended, or from the last event on.
                if let Some(now) = now
                    && let Some((last_at, last, _)) = observed.last()
                    && now["status"] != last["status"]
                {
                    let at = now["ended_at"].as_i64().unwrap_or(*last_at).max(*last_at);
                    versions.push((at, now.clone()));
                }
            }
            None => {
                if let Some(now) = now {
                    versions.extend(rebuilt(now, None));
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
    let subscriptions = store.rows(connection, "subscriptions")?;
    let events = all_events(store, connection, &["customer.subscription.*"])?;
    let coupons: HashMap<String, Value> = store
        .rows(connection, "coupons")?
        .into_iter()
        .map(|row| (row.id, row.data))
        .collect();
    let (histories, observed_from) = histories(subscriptions, &events);
    let lookup = |id: &str| coupons.get(id).cloned();
    let spans = periods(
        options.from,
        options.to,
        options.interval,
        options.utc_offset,
    );
    let until = spans.last().map_or(options.to, |(_, end)| *end);
    let mut movements = sm_reports::movements(&histories, &options.settings, &lookup, until);
    let wanted = |currency: &str| options.currency.as_deref().is_none_or(|c| c == currency);
    movements.retain(|m| wanted(&m.currency));
    let mrr = sm_reports::period_metrics(&movements, &spans, &options.settings);
    let transactions: Vec<Value> = store
        .rows(connection, "balance_transactions")?
        .into_iter()
        .filter(|row| !row.deleted)
        .map(|row| row.data)
        .collect();
    let mut revenue = revenue(&transactions, &spans, false);
    revenue.retain(|r| wanted(&r.currency));
    let charges: Vec<Value> = store
        .rows(connection, "charges")?
        .into_iter()
        .map(|row| row.data)
        .collect();
    let invoices: Vec<Value> = store
        .rows(connection, "invoices")?
        .into_iter()
        .map(|row| row.data)
        .collect();
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
    let failed = spans
        .iter()
        .map(|&(start, end)| {
            let mut rows = failed_payments(&charges, &invoices, start, end, &first_failed);
            rows.retain(|r| wanted(&r.currency));
            (start, end, rows)
        })
        .collect();
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
        Some(at) if at > options.from => notes.push(format!(
            "subscription states before {} are rebuilt from the subscriptions themselves, not observed",
            sm_reports::calendar::date_label(at, options.utc_offset)
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
        utc_offset: options.utc_offset,
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
