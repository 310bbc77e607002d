//! Deterministic seeded data: a realistic billing account made by the same operations the API
//! runs, with the clock set back in time. `scale` is the number of customers; each brings a payment
//! method, usually a subscription (every status, spread over three years) with its invoices,
//! payment intents, charges and balance transactions, and sometimes refunds, disputes, tax ids,
//! balance adjustments, pending invoice items, checkout sessions and setup intents. Changes in the
//! last 30 days record their events, as Stripe keeps them.
//!
//! [`simulate_activity`] makes a burst of live changes through the ordinary write path, so that
//! they record events and go out as webhooks.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::Kind;
use crate::failure::Failure;
use crate::objects::{Origin, Params, Tx};
use crate::ops;
use crate::rng::Rng;
use crate::store::{ListQuery, ModeStore, NO_PARENT, Slot};
use crate::world::{Account, Mode};
use crate::{Emulator, versions};

/// How far back seeded history starts.
const HISTORY_SECS: i64 = 3 * 365 * 86_400;
/// Events of changes newer than this are kept, as on Stripe.
const EVENT_WINDOW_SECS: i64 = 30 * 86_400;
/// Most invoices a seeded subscription carries (its latest periods).
const MAX_INVOICES_PER_SUBSCRIPTION: i64 = 8;

/// Objects per kind after seeding.
#[derive(Debug, Default, Serialize)]
pub struct SeedReport {
    pub objects: BTreeMap<String, usize>,
    pub total: usize,
}

fn params(value: Value) -> Params {
    Params(match value {
        Value::Object(map) => map,
        _ => Map::new(),
    })
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "John",
    "Katherine",
    "Tim",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Lamarr",
    "Backus",
    "Johnson",
    "Berners-Lee",
];
const PRODUCT_NAMES: &[&str] = &[
    "Starter",
    "Pro",
    "Team",
    "Business",
    "Enterprise",
    "Analytics add-on",
    "Extra seats",
    "Priority support",
    "Storage pack",
    "API access",
];

/// Fills one account's mode with `scale` customers and everything around them.
pub fn seed_account(
    emulator: &Emulator,
    account: &Account,
    mode: Mode,
    seed: u64,
    scale: u64,
) -> SeedReport {
    let present = emulator.world.now();
    let start = present - HISTORY_SECS;
    let mut rng = Rng::new(seed);
    let mut store = account.mode(mode).write();
    let no_listeners = |_: &str| 0u32;
    let mut tx = Tx {
        store: &mut store,
        now: start,
        rng: &mut rng,
        origin: Origin::default(),
        record_events: false,
        new_events: Vec::new(),
        listeners: &no_listeners,
        api_version: account.api_version.read().clone(),
    };
    if versions::differs(&tx.api_version) {
        account
            .versioned_events
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let catalog = seed_catalog(&mut tx, start, present, scale);
    for n in 0..scale {
        // Customers arrive uniformly over the history, oldest first, as they would have.
        let at = start
            + ((n as i64 * (HISTORY_SECS - 86_400)) / scale.max(1) as i64)
            + tx.rng.between(0, 3_600);
        seed_customer(&mut tx, &catalog, at, present);
    }
    seed_payouts(&mut tx, start, present, scale);
    report(tx.store)
}

/// Prices to subscribe to and one-off prices, by currency.
struct SeedCatalog {
    recurring: Vec<Value>,
    one_off: Vec<Value>,
}

fn at(tx: &mut Tx, when: i64, present: i64) {
    tx.now = when;
    tx.record_events = when >= present - EVENT_WINDOW_SECS;
}

fn seed_catalog(tx: &mut Tx, start: i64, present: i64, scale: u64) -> SeedCatalog {
    let mut recurring = Vec::new();
    let mut one_off = Vec::new();
    let products = (3 + scale / 500).min(PRODUCT_NAMES.len() as u64 * 20) as usize;
    for n in 0..products {
        at(tx, start + n as i64 * 3_600, present);
        let name = format!(
            "{}{}",
            PRODUCT_NAMES[n % PRODUCT_NAMES.len()],
            if n >= PRODUCT_NAMES.len() {
                format!(" {}", n / PRODUCT_NAMES.len() + 1)
            } else {
                String::new()
            }
        );
        let product = ops::create(tx, Kind::Product, params(json!({"name": name, "description": format!("The {name} plan"), "metadata": {"tier": (n % 3).to_string()}}))).expect("seed product");
        let product_id = text(&product["id"]);
        let base = 900 + (n as i64 % 7) * 1_100;
        // An archived older price, then the current monthly and yearly ones.
        let old = ops::create(tx, Kind::Price, params(json!({"product": product_id, "currency": "usd", "unit_amount": (base - 200).to_string(), "recurring": {"interval": "month"}, "nickname": format!("{name} monthly (2023)")}))).expect("seed price");
        let old_slot = tx.store.slot_of(&text(&old["id"])).unwrap();
        let mut archived = old.clone();
        archived["active"] = json!(false);
        tx.save(old_slot, &archived);
        for (interval, amount) in [("month", base), ("year", base * 10)] {
            let price = ops::create(tx, Kind::Price, params(json!({"product": product_id, "currency": if n % 5 == 4 { "eur" } else { "usd" }, "unit_amount": amount.to_string(), "recurring": {"interval": interval}, "nickname": format!("{name} {interval}ly"), "lookup_key": format!("{}_{interval}", product_id.to_lowercase())}))).expect("seed price");
            recurring.push(price);
        }
        if n % 2 == 0 {
            one_off.push(ops::create(tx, Kind::Price, params(json!({"product": product_id, "currency": "usd", "unit_amount": (base * 3).to_string(), "nickname": format!("{name} setup fee")}))).expect("seed price"));
        }
    }
    at(tx, start + 86_400, present);
    for (n, interval) in ["month", "year", "month"].iter().enumerate() {
        let product = text(&recurring[n * 2 % recurring.len()]["product"]);
        ops::create(tx, Kind::Plan, params(json!({"id": format!("legacy-{interval}-{n}"), "amount": (1_500 * (n + 1)).to_string(), "currency": "usd", "interval": interval, "product": product, "nickname": format!("Legacy {interval}ly plan")}))).expect("seed plan");
    }
    for (n, body) in [
        json!({"percent_off": "20", "duration": "repeating", "duration_in_months": "3", "name": "Launch 20%"}),
        json!({"amount_off": "500", "currency": "usd", "duration": "once", "name": "Five off"}),
        json!({"percent_off": "50", "duration": "forever", "name": "Nonprofit"}),
    ]
    .into_iter()
    .enumerate()
    {
        at(tx, start + 2 * 86_400 + n as i64, present);
        let coupon = ops::create(tx, Kind::Coupon, params(body)).expect("seed coupon");
        let id = text(&coupon["id"]);
        ops::create(tx, Kind::PromotionCode, params(json!({"coupon": id, "code": format!("SAVE{}", n + 1)}))).expect("seed promotion code");
    }
    for (n, (name, percentage)) in [("Sales tax", "8.875"), ("VAT", "20"), ("GST", "5")]
        .into_iter()
        .enumerate()
    {
        at(tx, start + 3 * 86_400 + n as i64, present);
        ops::create(tx, Kind::TaxRate, params(json!({"display_name": name, "percentage": percentage, "inclusive": "false", "jurisdiction": "US"}))).expect("seed tax rate");
    }
    for n in 0..3 {
        at(tx, start + 4 * 86_400 + n, present);
        let price = text(&recurring[(n as usize * 2) % recurring.len()]["id"]);
        ops::create(
            tx,
            Kind::PaymentLink,
            params(json!({"line_items": [{"price": price, "quantity": "1"}]})),
        )
        .expect("seed payment link");
    }
    SeedCatalog { recurring, one_off }
}

/// Subscription statuses and how often each occurs in seeded data.
const STATUSES: &[(&str, u64)] = &[
    ("active", 45),
    ("canceled", 22),
    ("past_due", 8),
    ("trialing", 7),
    ("unpaid", 3),
    ("incomplete", 4),
    ("incomplete_expired", 3),
    ("paused", 8),
];

fn seed_customer(tx: &mut Tx, catalog: &SeedCatalog, created: i64, present: i64) {
    at(tx, created, present);
    let first = *tx.rng.pick(FIRST_NAMES);
    let last = *tx.rng.pick(LAST_NAMES);
    let number = tx.rng.below(1_000_000);
    let customer = ops::create(
        tx,
        Kind::Customer,
        params(json!({
            "email": format!("{}.{}{number}@example.com", first.to_lowercase(), last.to_lowercase()),
            "name": format!("{first} {last}"),
            "description": format!("Customer since {}", created / 86_400),
            "metadata": {"crm_id": format!("crm_{number}")},
            "address": {"line1": format!("{} Main St", number % 999 + 1), "city": "Springfield", "country": "US", "postal_code": format!("{:05}", number % 99_999)},
        })),
    )
    .expect("seed customer");
    let customer_id = text(&customer["id"]);
    let customer_slot = tx.store.slot_of(&customer_id).unwrap();
    // A card on file.
    let pm = ops::create(tx, Kind::PaymentMethod, params(json!({"type": "card", "card": {"number": format!("42424242424{:05}", number % 100_000)}}))).expect("seed payment method");
    ops::action(
        tx,
        Kind::PaymentMethod,
        &text(&pm["id"]),
        "attach",
        params(json!({"customer": customer_id})),
    )
    .expect("attach");
    if tx.rng.chance(0.1) {
        ops::create_child(
            tx,
            &customer_id,
            Kind::TaxId,
            params(json!({"type": "eu_vat", "value": format!("DE{:09}", number)})),
        )
        .expect("seed tax id");
    }
    if tx.rng.chance(0.05) {
        let amount = -(tx.rng.between(1, 50) * 100);
        ops::customer_balance_transaction(tx, customer_slot, amount, "usd", "adjustment", None)
            .expect("seed balance");
    }
    if tx.rng.chance(0.05) {
        at(tx, created + 600, present);
        ops::create(
            tx,
            Kind::SetupIntent,
            params(json!({"customer": customer_id})),
        )
        .expect("seed setup intent");
    }
    if tx.rng.chance(0.05) && !catalog.one_off.is_empty() {
        at(tx, created + 60, present);
        let price = text(&tx.rng.pick(&catalog.one_off)["id"]);
        ops::create(tx, Kind::CheckoutSession, params(json!({"mode": "payment", "customer": customer_id, "success_url": "https://example.com/thanks", "line_items": [{"price": price, "quantity": "1"}]}))).expect("seed checkout");
    }
    if tx.rng.chance(0.7) {
        seed_subscription(tx, catalog, &customer_id, created + 120, present);
    } else {
        // One-off buyers: a few payments, some refunded or disputed.
        let payments = tx.rng.between(1, 3);
        for k in 0..payments {
            let when = created + 300 + k * tx.rng.between(86_400, 90 * 86_400);
            if when >= present {
                break;
            }
            at(tx, when, present);
            let amount = tx.rng.between(5, 500) * 100;
            let pi = ops::create(tx, Kind::PaymentIntent, params(json!({"amount": amount.to_string(), "currency": "usd", "customer": customer_id, "confirm": "true", "description": "One-off purchase"}))).expect("seed payment");
            after_payment(tx, &text(&pi["latest_charge"]), when, present);
        }
    }
    if tx.rng.chance(0.02) {
        at(tx, (created + 30 * 86_400).min(present - 60), present);
        ops::create(tx, Kind::InvoiceItem, params(json!({"customer": customer_id, "amount": "2500", "currency": "usd", "description": "Onboarding call"}))).expect("seed invoice item");
    }
    if tx.rng.chance(0.05) {
        // A recent profile change, so that `customer.updated` with previous attributes exists.
        let when = present - tx.rng.between(60, EVENT_WINDOW_SECS - 60);
        at(tx, when, present);
        ops::update(
            tx,
            Kind::Customer,
            &customer_id,
            params(json!({"phone": format!("+1555{number:07}")})),
        )
        .expect("seed update");
    }
}

/// Refunds and disputes happen to a few charges.
fn after_payment(tx: &mut Tx, charge_id: &str, paid_at: i64, present: i64) {
    let Some(charge_slot) = tx.store.slot_of(charge_id) else {
        return;
    };
    if tx.rng.chance(0.05) {
        let when = (paid_at + tx.rng.between(3_600, 20 * 86_400)).min(present - 1);
        at(tx, when, present);
        let amount = tx.store.value(charge_slot)["amount"].as_i64().unwrap_or(0);
        let partial = if tx.rng.chance(0.5) {
            Some(amount / 2)
        } else {
            None
        };
        let _ = ops::refund_charge(tx, charge_slot, partial, Some("requested_by_customer"));
    } else if tx.rng.chance(0.01) {
        let when = (paid_at + tx.rng.between(86_400, 40 * 86_400)).min(present - 1);
        at(tx, when, present);
        seed_dispute(tx, charge_slot);
    }
}

fn seed_dispute(tx: &mut Tx, charge_slot: Slot) {
    let mut charge = tx.store.value(charge_slot);
    let mut dispute = tx.blank(Kind::Dispute, tx.now);
    dispute["amount"] = charge["amount"].clone();
    dispute["charge"] = charge["id"].clone();
    dispute["currency"] = charge["currency"].clone();
    dispute["payment_intent"] = charge["payment_intent"].clone();
    dispute["payment_method_details"] =
        json!({"card": {"brand": "visa", "network_reason_code": "10.4"}, "type": "card"});
    dispute["reason"] = json!("fraudulent");
    dispute["status"] = json!("needs_response");
    dispute["evidence_details"] = json!({"due_by": tx.now + 7 * 86_400, "has_evidence": false, "past_due": false, "submission_count": 0});
    tx.insert(Kind::Dispute, &dispute, NO_PARENT);
    charge["disputed"] = json!(true);
    tx.save_as(charge_slot, &charge, None);
    let mut warning = tx.blank(Kind::EarlyFraudWarning, tx.now - 3_600);
    warning["actionable"] = json!(false);
    warning["charge"] = charge["id"].clone();
    warning["fraud_type"] = json!("made_with_stolen_card");
    warning["payment_intent"] = charge["payment_intent"].clone();
    tx.insert(Kind::EarlyFraudWarning, &warning, NO_PARENT);
    let mut review = tx.blank(Kind::Review, tx.now - 1_800);
    review["charge"] = charge["id"].clone();
    review["open"] = json!(false);
    review["opened_reason"] = json!("rule");
    review["reason"] = json!("approved");
    review["payment_intent"] = charge["payment_intent"].clone();
    tx.insert(Kind::Review, &review, NO_PARENT);
    let mut file = tx.blank(Kind::File, tx.now);
    file["purpose"] = json!("dispute_evidence");
    file["size"] = json!(48_213);
    file["filename"] = json!("receipt.pdf");
    file["type"] = json!("pdf");
    file["url"] = json!(format!(
        "https://files.stripe.com/v1/files/{}/contents",
        file["id"].as_str().unwrap_or_default()
    ));
    tx.insert(Kind::File, &file, NO_PARENT);
}

fn weighted_status(rng: &mut Rng) -> &'static str {
    let total: u64 = STATUSES.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    for (status, weight) in STATUSES {
        if roll < *weight {
            return status;
        }
        roll -= weight;
    }
    "active"
}

fn seed_subscription(
    tx: &mut Tx,
    catalog: &SeedCatalog,
    customer_id: &str,
    created: i64,
    present: i64,
) {
    at(tx, created, present);
    let status = weighted_status(tx.rng);
    // A few subscriptions carry more items than the embedded page shows.
    let item_count = if tx.rng.chance(0.01) {
        12
    } else if tx.rng.chance(0.2) {
        2
    } else {
        1
    };
    let first = tx.rng.pick(&catalog.recurring).clone();
    let interval = first["recurring"]["interval"].clone();
    let currency = first["currency"].clone();
    let mut items =
        vec![json!({"price": first["id"], "quantity": tx.rng.between(1, 5).to_string()})];
    let same_cycle: Vec<&Value> = catalog
        .recurring
        .iter()
        .filter(|p| {
            p["recurring"]["interval"] == interval
                && p["currency"] == currency
                && p["id"] != first["id"]
        })
        .collect();
    for k in 1..item_count.min(same_cycle.len() + 1) {
        items.push(json!({"price": same_cycle[(k - 1) % same_cycle.len()]["id"], "quantity": "1"}));
    }
    let trial = status == "trialing" || tx.rng.chance(0.1);
    let mut body = json!({"customer": customer_id, "items": items, "metadata": {"source": "seed"}});
    if trial {
        body["trial_period_days"] = json!("14");
    }
    if status == "trialing" {
        // Trials are recent by nature.
        let when = present - tx.rng.between(86_400, 13 * 86_400);
        at(tx, when, present);
    }
    let Ok(sub) = ops::create(tx, Kind::Subscription, params(body)) else {
        return;
    };
    let sub_id = text(&sub["id"]);
    let sub_slot = tx.store.slot_of(&sub_id).unwrap();
    if status == "trialing" {
        return;
    }
    let period = ops::interval_seconds(&first);
    let started = tx.now;
    let ends_at = match status {
        "canceled" | "incomplete_expired" => {
            (started + tx.rng.between(1, 18) * period.min(60 * 86_400)).min(present - 3_600)
        }
        _ => present,
    };
    // Bill each period up to the end, keeping the latest few invoices.
    let periods = ((ends_at - started) / period).max(0);
    let mut period_start = if trial {
        started + 14 * 86_400
    } else {
        started + period
    };
    let skip = (periods - MAX_INVOICES_PER_SUBSCRIPTION).max(0);
    period_start += skip * period;
    let mut k = skip;
    while period_start < ends_at && k < periods {
        at(tx, period_start, present);
        let mut object = tx.store.value(sub_slot);
        object["current_period_start"] = json!(period_start);
        object["current_period_end"] = json!(period_start + period);
        if object["status"] == json!("trialing") {
            object["status"] = json!("active");
        }
        tx.save_as(sub_slot, &object, None);
        let last = period_start + period >= ends_at;
        let unpaid = last && matches!(status, "past_due" | "unpaid" | "incomplete");
        if let Ok(invoice) =
            ops::invoice_subscription_period(tx, sub_slot, "subscription_cycle", !unpaid)
        {
            let invoice_json = tx.store.value(invoice);
            let mut object = tx.store.value(sub_slot);
            object["latest_invoice"] = invoice_json["id"].clone();
            tx.save_as(sub_slot, &object, None);
            if let Some(charge) = invoice_json["charge"].as_str() {
                let charge = charge.to_owned();
                after_payment(tx, &charge, period_start, present);
            }
            if tx.rng.chance(0.01) && invoice_json["status"] == json!("paid") {
                let _ = ops::create(
                    tx,
                    Kind::CreditNote,
                    params(json!({"invoice": invoice_json["id"], "amount": "100"})),
                );
            }
        }
        period_start += period;
        k += 1;
    }
    // Finally the subscription reaches its seeded status.
    at(tx, ends_at.min(present - 1).max(started), present);
    match status {
        "canceled" => {
            let _ = ops::cancel_subscription(tx, sub_slot);
        }
        "active" => {
            if tx.rng.chance(0.1) {
                let when = present - tx.rng.between(60, EVENT_WINDOW_SECS - 60);
                at(tx, when, present);
                let _ = ops::update(
                    tx,
                    Kind::Subscription,
                    &sub_id,
                    params(json!({"cancel_at_period_end": "true"})),
                );
            } else if tx.rng.chance(0.01) {
                let _ = ops::create(
                    tx,
                    Kind::SubscriptionSchedule,
                    params(
                        json!({"customer": customer_id, "phases": [{"items": [{"price": first["id"], "quantity": 1}]}]}),
                    ),
                );
            }
        }
        other => {
            let mut object = tx.store.value(sub_slot);
            object["status"] = json!(other);
            if other == "paused" {
                object["pause_collection"] = json!({"behavior": "void", "resumes_at": null});
            }
            if other == "incomplete_expired" {
                object["ended_at"] = json!(tx.now);
            }
            tx.save(sub_slot, &object);
        }
    }
}

fn seed_payouts(tx: &mut Tx, start: i64, present: i64, scale: u64) {
    // Weekly payouts, the latest still in transit; a small account has only its recent ones
    // (a business with a handful of customers does not pay out every week for years).
    let weeks = (present - start) / (7 * 86_400);
    let first = weeks
        .saturating_sub((scale as i64 / 2).clamp(4, weeks))
        .max(1);
    for week in first..weeks {
        let when = start + week * 7 * 86_400;
        at(tx, when, present);
        let amount = (scale as i64 * 40 + tx.rng.between(1_000, 90_000)).max(100);
        let status = if week == weeks - 1 {
            "in_transit"
        } else {
            "paid"
        };
        let _ = ops::payout(tx, amount, "usd", status, None);
    }
}

fn report(store: &ModeStore) -> SeedReport {
    let mut objects = BTreeMap::new();
    for slot in store.slots() {
        *objects
            .entry(store.get(slot).kind.info().object.to_owned())
            .or_insert(0) += 1;
    }
    SeedReport {
        total: store.len(),
        objects,
    }
}

/// What [`simulate_activity`] did.
#[derive(Debug, Default, Serialize)]
pub struct ActivityReport {
    pub changes: u64,
    pub by_operation: BTreeMap<&'static str, u64>,
}

/// Applies `changes` random changes through the ordinary write path (events and webhooks
/// included): new customers and subscriptions, quantity changes, cancellations, invoices paid,
/// refunds, deleted customers, archived prices, product updates.
pub fn simulate_activity(
    emulator: &Emulator,
    account: &Account,
    mode: Mode,
    changes: u64,
    seed: u64,
) -> ActivityReport {
    let mut rng = Rng::new(seed);
    let mut report = ActivityReport::default();
    for _ in 0..changes {
        let choice = rng.below(100);
        let operation_seed = rng.next_u64();
        let done = emulator.write(account, mode, Origin::default(), |tx| {
            let mut local = Rng::new(operation_seed);
            one_change(tx, &mut local, choice)
        });
        if let Ok(name) = done {
            report.changes += 1;
            *report.by_operation.entry(name).or_insert(0) += 1;
        }
    }
    report
}

/// What [`renew_subscriptions`] did.
#[derive(Debug, Default, Serialize)]
pub struct RenewalReport {
    /// Invoices created, finalized and (when charged automatically) paid.
    pub invoices: u64,
}

/// A month start: up to `count` active subscriptions not renewed in the last minute each move
/// to a new period now and bill it — an invoice created, finalized and paid (a payment intent,
/// a charge and its balance transaction), one transaction each through the ordinary write path
/// (events and webhooks included), as Stripe's billing run does at the first of the month.
pub fn renew_subscriptions(
    emulator: &Emulator,
    account: &Account,
    mode: Mode,
    count: u64,
) -> RenewalReport {
    let due: Vec<String> = {
        let store = account.mode(mode).read();
        store
            .slots()
            .filter(|&slot| {
                let stored = store.get(slot);
                stored.kind == Kind::Subscription && !stored.deleted
            })
            .map(|slot| store.value(slot))
            // Not renewed within the last minute (a caller may ask again and again).
            .filter(|sub| {
                sub["status"] == json!("active")
                    && sub["current_period_start"].as_i64().unwrap_or(0) < emulator.world.now() - 60
            })
            .filter_map(|sub| sub["id"].as_str().map(str::to_owned))
            .take(count as usize)
            .collect()
    };
    let mut report = RenewalReport::default();
    for id in due {
        let renewed = emulator.write(account, mode, Origin::default(), |tx| {
            let slot = tx
                .store
                .slot_of(&id)
                .ok_or_else(|| Failure::no_such("subscription", &id))?;
            let mut sub = tx.store.value(slot);
            let previous = json!({
                "current_period_start": sub["current_period_start"],
                "current_period_end": sub["current_period_end"],
                "latest_invoice": sub["latest_invoice"],
            });
            let period = sub["current_period_end"].as_i64().unwrap_or(tx.now)
                - sub["current_period_start"].as_i64().unwrap_or(tx.now);
            sub["current_period_start"] = json!(tx.now);
            sub["current_period_end"] = json!(tx.now + period.max(86_400));
            // The invoice bills the new period; one event tells the whole change after it.
            tx.save_as(slot, &sub, None);
            let invoice = ops::invoice_subscription_period(tx, slot, "subscription_cycle", true)?;
            let invoice_id = tx.store.value(invoice)["id"].clone();
            let mut sub = tx.store.value(slot);
            sub["latest_invoice"] = invoice_id;
            tx.save_as(slot, &sub, None);
            tx.event("customer.subscription.updated", &sub, Some(previous));
            Ok(())
        });
        if renewed.is_ok() {
            report.invoices += 1;
        }
    }
    report
}

fn random_live(
    store: &ModeStore,
    kind: Kind,
    rng: &mut Rng,
    keep: impl Fn(&Value) -> bool,
) -> Option<Slot> {
    // Sample among the newest objects, which is where activity concentrates.
    let (slots, _) = store.page(
        kind,
        &ListQuery {
            limit: 200,
            ..Default::default()
        },
        |_| true,
    );
    let candidates: Vec<Slot> = slots
        .into_iter()
        .filter(|&s| keep(&store.value(s)))
        .collect();
    (!candidates.is_empty()).then(|| *rng.pick(&candidates))
}

fn one_change(tx: &mut Tx, rng: &mut Rng, choice: u64) -> Result<&'static str, Failure> {
    let id_of = |tx: &Tx, slot: Slot| text(&tx.store.value(slot)["id"]);
    match choice {
        0..=19 => {
            let n = rng.below(1_000_000);
            ops::create(
                tx,
                Kind::Customer,
                params(
                    json!({"email": format!("new{n}@example.com"), "name": format!("New Customer {n}")}),
                ),
            )?;
            Ok("customer.create")
        }
        20..=34 => {
            let slot = random_live(tx.store, Kind::Customer, rng, |_| true)
                .ok_or_else(|| Failure::state("no customer"))?;
            let id = id_of(tx, slot);
            ops::update(
                tx,
                Kind::Customer,
                &id,
                params(json!({"metadata": {"touched": rng.below(1000).to_string()}})),
            )?;
            Ok("customer.update")
        }
        35..=49 => {
            let customer = random_live(tx.store, Kind::Customer, rng, |_| true)
                .ok_or_else(|| Failure::state("no customer"))?;
            let price = random_live(tx.store, Kind::Price, rng, |p| {
                p["active"] == json!(true) && p["type"] == json!("recurring")
            })
            .ok_or_else(|| Failure::state("no price"))?;
            let (customer, price) = (id_of(tx, customer), id_of(tx, price));
            ops::create(
                tx,
                Kind::Subscription,
                params(json!({"customer": customer, "items": [{"price": price, "quantity": "1"}]})),
            )?;
            Ok("subscription.create")
        }
        50..=64 => {
            let sub = random_live(tx.store, Kind::Subscription, rng, |s| {
                s["status"] == json!("active")
            })
            .ok_or_else(|| Failure::state("no subscription"))?;
            let item = tx
                .store
                .children(sub, Kind::SubscriptionItem)
                .first()
                .copied()
                .ok_or_else(|| Failure::state("no item"))?;
            let (sub, item) = (id_of(tx, sub), id_of(tx, item));
            ops::update(
                tx,
                Kind::Subscription,
                &sub,
                params(json!({"items": [{"id": item, "quantity": rng.between(1, 9).to_string()}]})),
            )?;
            Ok("subscription.update_quantity")
        }
        65..=74 => {
            let sub = random_live(tx.store, Kind::Subscription, rng, |s| {
                s["status"] == json!("active")
            })
            .ok_or_else(|| Failure::state("no subscription"))?;
            let sub = id_of(tx, sub);
            ops::delete(tx, Kind::Subscription, &sub)?;
            Ok("subscription.cancel")
        }
        75..=84 => {
            let customer = random_live(tx.store, Kind::Customer, rng, |_| true)
                .ok_or_else(|| Failure::state("no customer"))?;
            let customer = id_of(tx, customer);
            ops::create(
                tx,
                Kind::InvoiceItem,
                params(
                    json!({"customer": customer, "amount": (rng.between(1, 99) * 100).to_string(), "currency": "usd", "description": "Usage"}),
                ),
            )?;
            let invoice = ops::create(
                tx,
                Kind::Invoice,
                params(json!({"customer": customer, "pending_invoice_items_behavior": "include"})),
            )?;
            ops::action(
                tx,
                Kind::Invoice,
                &text(&invoice["id"]),
                "pay",
                Params::default(),
            )?;
            Ok("invoice.pay")
        }
        85..=89 => {
            let charge = random_live(tx.store, Kind::Charge, rng, |c| {
                c["refunded"] == json!(false)
            })
            .ok_or_else(|| Failure::state("no charge"))?;
            ops::refund_charge(tx, charge, None, Some("requested_by_customer"))?;
            Ok("refund.create")
        }
        90..=93 => {
            let customer = random_live(tx.store, Kind::Customer, rng, |_| true)
                .ok_or_else(|| Failure::state("no customer"))?;
            let customer = id_of(tx, customer);
            ops::delete(tx, Kind::Customer, &customer)?;
            Ok("customer.delete")
        }
        94..=96 => {
            let price = random_live(tx.store, Kind::Price, rng, |p| p["active"] == json!(true))
                .ok_or_else(|| Failure::state("no price"))?;
            let price = id_of(tx, price);
            ops::update(tx, Kind::Price, &price, params(json!({"active": "false"})))?;
            Ok("price.archive")
        }
        _ => {
            let product = random_live(tx.store, Kind::Product, rng, |_| true)
                .ok_or_else(|| Failure::state("no product"))?;
            let product = id_of(tx, product);
            ops::update(
                tx,
                Kind::Product,
                &product,
                params(json!({"description": format!("Revised {}", rng.below(100))})),
            )?;
            Ok("product.update")
        }
    }
}
