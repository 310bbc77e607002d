//! What a notification says, before any channel's format: what happened in words, the amount
//! formatted for its currency, who (customer name and email), what (the product), where (the
//! account's name and mode), links to the object in Stripe's dashboard and in ours, and the
//! event's id. Also the one message that stands for many (a roll-up or a digest).

use std::collections::BTreeMap;

use serde_json::Value;
use sm_warehouse::{AccountRecord, Connection, Store};

use crate::money;

/// A message for people, channel-neutral.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `Payment succeeded` (`[test] ` in front for a test-mode event).
    pub title: String,
    /// One line: `$49.00 USD from Jane Doe (jane@example.com)`.
    pub summary: String,
    /// Labelled facts in order: Amount, Customer, Product, Reason, Account, …
    pub facts: Vec<(String, String)>,
    pub stripe_url: Option<String>,
    pub mirror_url: Option<String>,
    /// The event's id (empty for a roll-up or digest).
    pub event_id: String,
    pub event_type: String,
    pub test: bool,
    /// When it happened (Unix time).
    pub occurred_at: i64,
    pub tone: Tone,
}

/// Good news, bad news, or neither (the colour of a card or embed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Neutral,
}

impl Tone {
    /// As an RGB number (Discord wants a decimal integer).
    pub fn rgb(self) -> u32 {
        match self {
            Tone::Good => 0x2e_b8_86,
            Tone::Bad => 0xd9_3f_3f,
            Tone::Neutral => 0x63_5b_ff,
        }
    }
}

/// What an event type is called, and whether it is good or bad news.
fn headline(event_type: &str) -> (String, Tone) {
    let known = match event_type {
        "charge.succeeded" | "payment_intent.succeeded" => Some(("Payment succeeded", Tone::Good)),
        "charge.failed" | "payment_intent.payment_failed" => Some(("Payment failed", Tone::Bad)),
        "invoice.payment_failed" => Some(("Invoice payment failed", Tone::Bad)),
        "invoice.paid" | "invoice.payment_succeeded" => Some(("Invoice paid", Tone::Good)),
        "charge.refunded" | "refund.created" => Some(("Refund", Tone::Neutral)),
        "charge.dispute.created" => Some(("Dispute opened", Tone::Bad)),
        "charge.dispute.closed" => Some(("Dispute closed", Tone::Neutral)),
        "customer.subscription.created" => Some(("New subscription", Tone::Good)),
        "customer.subscription.deleted" => Some(("Subscription canceled", Tone::Bad)),
        "customer.created" => Some(("New customer", Tone::Good)),
        "payout.paid" => Some(("Payout paid", Tone::Good)),
        "payout.failed" => Some(("Payout failed", Tone::Bad)),
        "radar.early_fraud_warning.created" => Some(("Early fraud warning", Tone::Bad)),
        _ => None,
    };
    match known {
        Some((title, tone)) => (title.to_owned(), tone),
        None => {
            // `customer.subscription.updated` → `Customer subscription updated`.
            let words = event_type.replace(['.', '_'], " ");
            let mut chars = words.chars();
            let title = chars
                .next()
                .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                .unwrap_or_default();
            (title, Tone::Neutral)
        }
    }
}

/// `$49.00 USD`, `¥5,000 JPY`, `12.500 KWD`: the amount people read, with its code.
pub fn amount_text(minor: i64, currency: &str) -> String {
    let formatted = money::format(minor, currency);
    let code = currency.to_ascii_uppercase();
    if formatted.ends_with(&code) {
        formatted
    } else {
        format!("{formatted} {code}")
    }
}

/// What the message needs from the mirror beside the event: the customer, the product.
#[derive(Debug, Default)]
pub struct Related {
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub product: Option<String>,
}

/// Reads what an event's object points at: its customer (name, email) and its product (through
/// its subscription's items, its invoice's lines, or a charge's invoice).
pub fn related(store: &dyn Store, connection: &Connection, object: &Value) -> Related {
    let mut related = Related {
        customer_name: str_of(&object["billing_details"]["name"])
            .or_else(|| str_of(&object["customer_name"])),
        customer_email: str_of(&object["billing_details"]["email"])
            .or_else(|| str_of(&object["customer_email"]))
            .or_else(|| str_of(&object["receipt_email"])),
        product: None,
    };
    let one = |table: &str, id: &str| -> Option<Value> {
        store
            .rows_by_id(connection, table, &[id.to_owned()])
            .ok()?
            .into_iter()
            .next()
            .map(|row| row.data)
    };
    let customer_id = match &object["customer"] {
        Value::String(id) => Some(id.clone()),
        Value::Object(c) => c.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    if let Some(id) = customer_id.filter(|_| object["object"] != "customer")
        && let Some(customer) = one("customers", &id)
    {
        related.customer_name = related.customer_name.or_else(|| str_of(&customer["name"]));
        related.customer_email = related
            .customer_email
            .or_else(|| str_of(&customer["email"]));
    }
    if object["object"] == "customer" {
        related.customer_name = str_of(&object["name"]);
        related.customer_email = str_of(&object["email"]);
    }
    // The first priced line: a subscription's items, an invoice's lines, a charge's invoice.
    let invoice = match object["object"].as_str() {
        Some("invoice") => Some(object.clone()),
        Some("charge") | Some("payment_intent") => {
            str_of(&object["invoice"]).and_then(|id| one("invoices", &id))
        }
        _ => None,
    };
    let lines = match object["object"].as_str() {
        Some("subscription") => object["items"]["data"].clone(),
        _ => invoice
            .as_ref()
            .map(|i| i["lines"]["data"].clone())
            .unwrap_or(Value::Null),
    };
    if let Some(first) = lines.as_array().and_then(|l| l.first()) {
        let price = if first["price"].is_object() {
            &first["price"]
        } else {
            &first["plan"]
        };
        let product_id = match &price["product"] {
            Value::String(id) => Some(id.clone()),
            Value::Object(p) => p.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        related.product = product_id
            .and_then(|id| one("products", &id))
            .and_then(|p| str_of(&p["name"]))
            .or_else(|| str_of(&first["description"]));
    }
    if related.product.is_none() {
        related.product = str_of(&object["description"]).filter(|_| object["object"] == "charge");
    }
    related
}

fn str_of(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Where an object is in Stripe's dashboard (test mode under `/test/`).
fn stripe_url(connection: &Connection, object: &Value) -> Option<String> {
    let id = object["id"].as_str()?;
    let path = match object["object"].as_str()? {
        "charge" => match object["payment_intent"].as_str() {
            Some(pi) => format!("payments/{pi}"),
            None => format!("payments/{id}"),
        },
        "payment_intent" => format!("payments/{id}"),
        "refund" | "dispute" => match object["payment_intent"].as_str() {
            Some(pi) => format!("payments/{pi}"),
            None => format!("{}s/{id}", object["object"].as_str()?),
        },
        "subscription" => format!("subscriptions/{id}"),
        "customer" => format!("customers/{id}"),
        "invoice" => format!("invoices/{id}"),
        "payout" => format!("payouts/{id}"),
        "product" => format!("products/{id}"),
        other => format!("{}s/{id}", other.replace('.', "_")),
    };
    let mode = if connection.livemode { "" } else { "test/" };
    Some(format!(
        "https://dashboard.stripe.com/{}/{mode}{path}",
        connection.account_id
    ))
}

/// The notice for one event.
pub fn for_event(
    account: &AccountRecord,
    event: &Value,
    related: &Related,
    dashboard_base: Option<&str>,
) -> Notice {
    let connection = &account.connection;
    let event_type = event["type"].as_str().unwrap_or_default();
    let object = &event["data"]["object"];
    let (title, tone) = headline(event_type);
    let mut facts = Vec::new();
    let amount = super::rule::amount_of(event_type, object).map(|(a, c)| amount_text(a, &c));
    let recurring = if object["object"] == "subscription" {
        subscription_amount(object)
    } else {
        None
    };
    if let Some(amount) = amount.clone().or_else(|| recurring.clone()) {
        facts.push(("Amount".to_owned(), amount));
    }
    let who = match (&related.customer_name, &related.customer_email) {
        (Some(name), Some(email)) => Some(format!("{name} ({email})")),
        (Some(name), None) => Some(name.clone()),
        (None, Some(email)) => Some(email.clone()),
        (None, None) => None,
    };
    if let Some(who) = &who {
        facts.push(("Customer".to_owned(), who.clone()));
    }
    if let Some(product) = &related.product {
        facts.push(("Product".to_owned(), product.clone()));
    }
    if let Some(reason) = reason(object) {
        facts.push(("Reason".to_owned(), reason));
    }
    facts.push((
        "Account".to_owned(),
        format!(
            "{} ({})",
            account.name,
            if connection.livemode { "live" } else { "test" }
        ),
    ));
    let summary = match (amount.or(recurring), &who) {
        (Some(amount), Some(who)) => format!("{amount} · {who}"),
        (Some(amount), None) => amount,
        (None, Some(who)) => who.clone(),
        (None, None) => object["id"].as_str().unwrap_or_default().to_owned(),
    };
    let mirror_url = dashboard_base.and_then(|base| {
        let table = crate::catalog::by_object(object["object"].as_str()?)?.table;
        Some(format!(
            "{}/accounts/{}/data/{table}/{}",
            base.trim_end_matches('/'),
            connection.label(),
            object["id"].as_str()?
        ))
    });
    Notice {
        title: if connection.livemode {
            title
        } else {
            format!("[test] {title}")
        },
        summary,
        facts,
        stripe_url: stripe_url(connection, object),
        mirror_url,
        event_id: event["id"].as_str().unwrap_or_default().to_owned(),
        event_type: event_type.to_owned(),
        test: !connection.livemode,
        occurred_at: event["created"].as_i64().unwrap_or_default(),
        tone,
    }
}

/// `$49.00 USD / month` for a subscription's items.
fn subscription_amount(object: &Value) -> Option<String> {
    let items = object["items"]["data"].as_array()?;
    let mut total = 0i64;
    let (mut currency, mut interval) = (None, None);
    for item in items {
        let price = &item["price"];
        total += price["unit_amount"].as_i64()? * item["quantity"].as_i64().unwrap_or(1);
        currency = currency.or_else(|| price["currency"].as_str().map(str::to_owned));
        interval = interval.or_else(|| price["recurring"]["interval"].as_str().map(str::to_owned));
    }
    let currency = currency?;
    Some(match interval {
        Some(every) => format!("{} / {every}", amount_text(total, &currency)),
        None => amount_text(total, &currency),
    })
}

/// Why it failed or was disputed, in the words Stripe gave.
fn reason(object: &Value) -> Option<String> {
    let text = |v: &Value| str_of(v);
    match object["object"].as_str()? {
        "charge" => text(&object["failure_message"])
            .or_else(|| {
                text(&object["outcome"]["seller_message"]).filter(|_| object["status"] == "failed")
            })
            .map(
                |m| match text(&object["outcome"]["reason"]).or(text(&object["failure_code"])) {
                    Some(code) => format!("{m} ({code})"),
                    None => m,
                },
            ),
        "payment_intent" => text(&object["last_payment_error"]["message"]),
        "payout" => text(&object["failure_message"]).or_else(|| text(&object["failure_code"])),
        "dispute" => text(&object["reason"]).map(|r| r.replace('_', " ")),
        "radar.early_fraud_warning" => text(&object["fraud_type"]).map(|r| r.replace('_', " ")),
        "invoice" => object["attempt_count"]
            .as_i64()
            .filter(|n| *n > 0 && object["status"] != "paid")
            .map(|n| format!("attempt {n}")),
        _ => None,
    }
}

/// One message standing for many events (a backlog rolled up, or a digest): how many of each
/// kind, with the amounts per currency.
pub fn summary_of(
    title: &str,
    events: &[(Connection, Value)],
    accounts: &[AccountRecord],
) -> Notice {
    let mut by_title: BTreeMap<String, (u64, BTreeMap<String, i64>)> = BTreeMap::new();
    for (_, event) in events {
        let event_type = event["type"].as_str().unwrap_or_default();
        let entry = by_title.entry(headline(event_type).0).or_default();
        entry.0 += 1;
        if let Some((amount, currency)) =
            super::rule::amount_of(event_type, &event["data"]["object"])
        {
            *entry.1.entry(currency).or_default() += amount;
        }
    }
    // The most frequent first (a chat message shows the first ten).
    let mut by_title: Vec<_> = by_title.into_iter().collect();
    by_title.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let facts = by_title
        .into_iter()
        .map(|(kind, (count, amounts))| {
            let totals: Vec<String> = amounts
                .iter()
                .map(|(currency, amount)| amount_text(*amount, currency))
                .collect();
            let value = if totals.is_empty() {
                count.to_string()
            } else {
                format!("{count} · {}", totals.join(" + "))
            };
            (kind, value)
        })
        .collect();
    let mut names: Vec<String> = Vec::new();
    for (connection, _) in events {
        let name = accounts
            .iter()
            .find(|a| a.connection == *connection)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| connection.account_id.clone());
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let test = events.iter().all(|(c, _)| !c.livemode);
    Notice {
        title: if test {
            format!("[test] {title}")
        } else {
            title.to_owned()
        },
        summary: format!(
            "{} events from {}",
            events.len(),
            if names.len() <= 3 {
                names.join(", ")
            } else {
                format!("{} accounts", names.len())
            }
        ),
        facts,
        stripe_url: None,
        mirror_url: None,
        event_id: String::new(),
        event_type: "summary".into(),
        test,
        occurred_at: events
            .iter()
            .filter_map(|(_, e)| e["created"].as_i64())
            .max()
            .unwrap_or_default(),
        tone: Tone::Neutral,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account(livemode: bool) -> AccountRecord {
        AccountRecord {
            connection: Connection::new("acct_1", livemode),
            name: "Acme".into(),
            stripe_name: None,
            icon_url: None,
            logo_url: None,
            key_kind: "restricted".into(),
            key_masked: String::new(),
            key_sealed: Vec::new(),
            permissions: Value::Null,
            status: "ok".into(),
            status_message: None,
            start_date: None,
            webhook_endpoint_id: None,
            webhook_secret_sealed: None,
            api_base: None,
            api_version: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_payment_in_words() {
        let event = json!({"id": "evt_1", "type": "charge.succeeded", "created": 100,
            "data": {"object": {"object": "charge", "id": "ch_1", "payment_intent": "pi_1",
                "amount": 4_900, "currency": "usd"}}});
        let related = Related {
            customer_name: Some("Jane".into()),
            customer_email: Some("jane@example.com".into()),
            product: Some("Pro".into()),
        };
        let notice = for_event(&account(true), &event, &related, Some("https://m.example/"));
        assert_eq!(notice.title, "Payment succeeded");
        assert_eq!(notice.summary, "$49.00 USD · Jane (jane@example.com)");
        assert_eq!(
            notice.stripe_url.as_deref(),
            Some("https://dashboard.stripe.com/acct_1/payments/pi_1")
        );
        assert_eq!(
            notice.mirror_url.as_deref(),
            Some("https://m.example/accounts/acct_1:live/data/charges/ch_1")
        );
        assert!(
            notice
                .facts
                .contains(&("Account".into(), "Acme (live)".into()))
        );
        let test = for_event(&account(false), &event, &related, None);
        assert_eq!(test.title, "[test] Payment succeeded");
        assert!(test.stripe_url.unwrap().contains("/acct_1/test/payments/"));
        let yen = json!({"id": "evt_2", "type": "charge.succeeded",
            "data": {"object": {"object": "charge", "id": "ch_2", "amount": 5_000, "currency": "jpy"}}});
        assert_eq!(
            for_event(&account(true), &yen, &Related::default(), None).summary,
            "¥5,000 JPY"
        );
    }

    #[test]
    fn many_events_in_one_message() {
        let c = Connection::new("acct_1", true);
        let pay = |amount| {
            (
                c.clone(),
                json!({"type": "charge.succeeded", "created": 5,
                "data": {"object": {"object": "charge", "amount": amount, "currency": "usd"}}}),
            )
        };
        let notice = summary_of(
            "12 more events",
            &[pay(1_000), pay(2_500)],
            &[account(true)],
        );
        assert_eq!(
            notice.facts,
            [("Payment succeeded".to_owned(), "2 · $35.00 USD".to_owned())]
        );
        assert_eq!(notice.summary, "2 events from Acme");
    }
}
