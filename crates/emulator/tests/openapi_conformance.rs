//! Every object the emulator sends, checked against the schemas of Stripe's OpenAPI spec
//! (API version 2023-08-16) with the validator in `support/openapi.rs`.
//!
//! Needs Stripe's spec3.json, which is not part of this repository: run with
//! `STRIPE_MIRROR_OPENAPI_SPEC=/path/to/stripe/openapi/spec3.json cargo test -p sm-emulator --test
//! openapi_conformance`. Without the variable the test says it was skipped and passes.
//!
//! Over real HTTP, against a seeded account (scale 400, so that rare objects such as disputes,
//! early fraud warnings, reviews, files, credit notes and subscription schedules exist), it checks:
//! * the answers of the write operations (create, update, actions) and the deleted stubs;
//! * every page of every list the emulator serves (every row of `catalog::KINDS`, top-level and
//!   child lists), each list envelope and each object in it, events' `data.object` included;
//! * a retrieve of the first and last object of each list;
//! * `GET /v1/account`, `GET /v1/balance` and a few error bodies.
//!
//! All violations are collected and reported together, grouped by schema and path.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use sm_emulator::catalog::{KINDS, Kind, ListPath};
use support::harness::{Harness, Reply};
use support::openapi::Spec;

const SPEC_ENV: &str = "STRIPE_MIRROR_OPENAPI_SPEC";

/// Customers to seed: enough for every rare object to occur at least once with the default seed.
const SCALE: u64 = 400;

/// Seeded kinds that only occur now and then; each must be present for the test to mean much.
const RARE_SEEDED: &[&str] = &[
    "dispute",
    "radar.early_fraud_warning",
    "review",
    "file",
    "credit_note",
    "subscription_schedule",
    "tax_id",
    "customer_balance_transaction",
    "setup_intent",
    "checkout.session",
    "invoiceitem",
];

/// Kinds the emulator serves but that nothing it offers can create (application fees come from
/// Connect charges): their lists are checked, but they may well be empty.
const NEVER_CREATED: &[Kind] = &[Kind::ApplicationFee];

/// Most violation groups the failure message shows.
const REPORT_GROUPS: usize = 50;

/// One schema violation, where it was seen.
struct Violation {
    schema: String,
    /// The request and object that carried it, e.g. `GET /v1/customers [cus_123]`.
    place: String,
    /// The validator's message, starting with the JSON path.
    message: String,
}

/// Collects validations and their violations.
struct Checker<'a> {
    spec: &'a Spec,
    /// Top-level objects validated, by schema.
    validated: BTreeMap<String, usize>,
    /// Objects seen in lists, by kind.
    listed: BTreeMap<Kind, usize>,
    violations: Vec<Violation>,
}

impl<'a> Checker<'a> {
    fn new(spec: &'a Spec) -> Self {
        Checker {
            spec,
            validated: BTreeMap::new(),
            listed: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, schema: &str, place: &str, message: String) {
        self.violations.push(Violation {
            schema: schema.to_owned(),
            place: place.to_owned(),
            message,
        });
    }

    /// Validates `value` against the named schema.
    fn check_as(&mut self, schema: &str, place: &str, value: &Value) {
        *self.validated.entry(schema.to_owned()).or_default() += 1;
        let place = match value.get("id").and_then(Value::as_str) {
            Some(id) => format!("{place} [{id}]"),
            None => place.to_owned(),
        };
        for message in self.spec.validate(schema, value) {
            self.violation(schema, &place, message);
        }
        // An event's `data.object` is free-form in the spec: check it against its own schema.
        if schema == "event" {
            let object = &value["data"]["object"];
            let event_type = value["type"].as_str().unwrap_or("?");
            self.check_object(&format!("{place} data.object of {event_type}"), object);
        }
    }

    /// Validates an object against the schema its `object` field names (`deleted_*` for stubs).
    fn check_object(&mut self, place: &str, value: &Value) {
        let Some(object) = value.get("object").and_then(Value::as_str) else {
            self.violation(
                "?",
                place,
                format!("$.object: missing; got {}", brief(value)),
            );
            return;
        };
        let schema = if value.get("deleted") == Some(&json!(true)) {
            format!("deleted_{object}")
        } else {
            object.to_owned()
        };
        if !self.spec.has_schema(&schema) {
            self.violation(
                &schema,
                place,
                format!("$: no schema named `{schema}` in the spec"),
            );
            return;
        }
        self.check_as(&schema, place, value);
    }

    /// Checks a reply's status and validates its body against `schema`.
    fn check_reply(&mut self, schema: &str, place: &str, reply: &Reply) -> Value {
        if reply.status != 200 {
            self.violation(
                schema,
                place,
                format!(
                    "$: HTTP {} instead of 200: {}",
                    reply.status,
                    shorten(&reply.text)
                ),
            );
            return Value::Null;
        }
        self.check_as(schema, place, &reply.json);
        reply.json.clone()
    }

    /// Checks a list envelope: exactly `object: "list"`, `data` (an array), `has_more` (a
    /// boolean) and `url` (the list's path).
    fn check_envelope(&mut self, place: &str, body: &Value, url: &str) {
        let mut problems = Vec::new();
        match body.as_object() {
            None => problems.push(format!("$: expected a list object, got {}", brief(body))),
            Some(fields) => {
                if fields.get("object") != Some(&json!("list")) {
                    problems.push(format!(
                        "$.object: expected \"list\", got {:?}",
                        fields.get("object")
                    ));
                }
                if !fields.get("data").is_some_and(Value::is_array) {
                    problems.push("$.data: expected array".to_owned());
                }
                if !fields.get("has_more").is_some_and(Value::is_boolean) {
                    problems.push("$.has_more: expected boolean".to_owned());
                }
                match fields.get("url").and_then(Value::as_str) {
                    None => problems.push("$.url: expected string".to_owned()),
                    Some(u) if u != url => {
                        problems.push(format!("$.url: expected {url:?}, got {u:?}"))
                    }
                    Some(_) => {}
                }
                for key in fields.keys() {
                    if !["object", "data", "has_more", "url"].contains(&key.as_str()) {
                        problems.push(format!("$.{key}: unknown property of a list"));
                    }
                }
            }
        }
        *self
            .validated
            .entry("(list envelope)".to_owned())
            .or_default() += 1;
        for message in problems {
            self.violation("(list envelope)", place, message);
        }
    }

    /// Every page of a list (`path` may carry a query), envelopes and objects validated.
    /// Returns the objects.
    async fn walk(&mut self, h: &Harness, key: &str, kind: Kind, path: &str) -> Vec<Value> {
        let (url, query) = match path.split_once('?') {
            Some((url, query)) => (url, format!("&{query}")),
            None => (path, String::new()),
        };
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let request = format!("{url}?limit=100{query}{cursor}");
            let place = format!("GET {request}");
            let reply = h.get(key, &request).await;
            if reply.status != 200 {
                self.violation(
                    "(list envelope)",
                    &place,
                    format!("$: HTTP {}: {}", reply.status, shorten(&reply.text)),
                );
                return all;
            }
            self.check_envelope(&place, &reply.json, url);
            let data = reply.json["data"].as_array().cloned().unwrap_or_default();
            for object in &data {
                if object["object"] != json!(kind.info().object) {
                    self.violation(
                        kind.info().object,
                        &place,
                        format!(
                            "$.object: a {} list holds {}",
                            kind.info().object,
                            brief(&object["object"])
                        ),
                    );
                }
                self.check_object(&format!("GET {url}"), object);
            }
            *self.listed.entry(kind).or_default() += data.len();
            let more = reply.json["has_more"] == json!(true);
            let last = data
                .last()
                .and_then(|o| o["id"].as_str())
                .map(str::to_owned);
            all.extend(data);
            match (more, last) {
                (true, Some(last)) => cursor = format!("&starting_after={last}"),
                _ => return all,
            }
        }
    }

    /// The failure report: counts, then the first violation groups (schema + path, array
    /// indexes folded) with how often each occurred and an example.
    fn report(&self) -> String {
        let mut groups: BTreeMap<(String, String), (usize, &Violation)> = BTreeMap::new();
        let mut order = Vec::new();
        for v in &self.violations {
            let key = (v.schema.clone(), fold_indexes(&v.message));
            let entry = groups.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                (0, v)
            });
            entry.0 += 1;
        }
        let mut out = format!(
            "{} schema violations in {} groups ({} objects validated against {} schemas)\n",
            self.violations.len(),
            groups.len(),
            self.validated.values().sum::<usize>(),
            self.validated.len()
        );
        order.sort();
        for key in order.iter().take(REPORT_GROUPS) {
            let (count, example) = groups[key];
            out.push_str(&format!(
                "\n[{}] {}  (×{count})\n    e.g. {}: {}\n",
                key.0, key.1, example.place, example.message
            ));
        }
        if groups.len() > REPORT_GROUPS {
            out.push_str(&format!(
                "\n… and {} more groups\n",
                groups.len() - REPORT_GROUPS
            ));
        }
        out
    }
}

/// `$.lines.data[3].period: …` → `$.lines.data[*].period: …`, for grouping.
fn fold_indexes(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '[' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('*');
        }
    }
    out
}

fn brief(value: &Value) -> String {
    shorten(&value.to_string())
}

fn shorten(text: &str) -> String {
    if text.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &text[..cut])
    } else {
        text.to_owned()
    }
}

/// The id of an answer, or a placeholder that makes later requests fail visibly.
fn id(value: &Value) -> String {
    value["id"].as_str().unwrap_or("missing_id").to_owned()
}

#[tokio::test]
async fn emulator_objects_match_stripes_openapi_spec() {
    let Some(path) = std::env::var_os(SPEC_ENV) else {
        eprintln!(
            "skipped: set {SPEC_ENV}=…/spec3.json to validate the emulator against Stripe's OpenAPI spec"
        );
        return;
    };
    let spec =
        Spec::load(Path::new(&path)).unwrap_or_else(|e| panic!("{SPEC_ENV} is set but: {e}"));
    let h = Harness::start(SCALE).await;
    let seeded = &h.account["seeded"]["test"]["objects"];
    let missing: Vec<&str> = RARE_SEEDED
        .iter()
        .copied()
        .filter(|kind| seeded[*kind].as_u64().unwrap_or(0) == 0)
        .collect();
    let rare: Vec<String> = RARE_SEEDED
        .iter()
        .map(|kind| format!("{kind}: {}", seeded[*kind]))
        .collect();
    eprintln!("seeded (scale {SCALE}): {}", rare.join(", "));
    assert!(
        missing.is_empty(),
        "scale {SCALE} seeded none of {missing:?}: {seeded}"
    );
    for row in KINDS.iter() {
        assert!(
            spec.has_schema(row.object),
            "the spec has no schema for {}",
            row.object
        );
    }

    let mut c = Checker::new(&spec);
    let key = h.key("secret_test");
    write_operations(&mut c, &h, &key).await;
    lists_and_retrieves(&mut c, &h, &key).await;
    account_and_balance(&mut c, &h, &key).await;
    errors(&mut c, &h, &key).await;

    let empty: Vec<&str> = KINDS
        .iter()
        .filter(|row| {
            !NEVER_CREATED.contains(&row.kind) && c.listed.get(&row.kind).copied().unwrap_or(0) == 0
        })
        .map(|row| row.object)
        .collect();
    let counts: Vec<String> = c
        .validated
        .iter()
        .map(|(schema, n)| format!("{schema}: {n}"))
        .collect();
    eprintln!(
        "validated {} objects against {} schemas ({} violations)\n  {}",
        c.validated.values().sum::<usize>(),
        c.validated.len(),
        c.violations.len(),
        counts.join("\n  ")
    );
    assert!(c.violations.is_empty(), "{}", c.report());
    assert!(empty.is_empty(), "no objects were listed for {empty:?}");
}

/// Write operations: each answer validated against the schema of what it returns.
async fn write_operations(c: &mut Checker<'_>, h: &Harness, key: &str) {
    macro_rules! post {
        ($schema:expr, $path:expr, $form:expr) => {{
            let path: String = $path.into();
            let reply = h.post(key, &path, $form).await;
            c.check_reply($schema, &format!("POST {path}"), &reply)
        }};
    }
    macro_rules! delete {
        ($schema:expr, $path:expr) => {{
            let path: String = $path.into();
            let reply = h.delete(key, &path).await;
            c.check_reply($schema, &format!("DELETE {path}"), &reply)
        }};
    }

    // Catalog.
    let product = post!(
        "product",
        "/v1/products",
        &[
            ("name", "Conformance"),
            ("description", "Checked against the spec"),
            ("metadata[k]", "v")
        ]
    );
    let product_id = id(&product);
    post!(
        "product",
        format!("/v1/products/{product_id}"),
        &[("description", "Still checked")]
    );
    let price = post!(
        "price",
        "/v1/prices",
        &[
            ("product", &product_id),
            ("currency", "usd"),
            ("unit_amount", "1500"),
            ("recurring[interval]", "month"),
            ("nickname", "Monthly")
        ]
    );
    let price_id = id(&price);
    let second_price = post!(
        "price",
        "/v1/prices",
        &[
            ("product", &product_id),
            ("currency", "usd"),
            ("unit_amount", "300"),
            ("recurring[interval]", "month")
        ]
    );
    let one_time = post!(
        "price",
        "/v1/prices",
        &[
            ("product", &product_id),
            ("currency", "usd"),
            ("unit_amount", "2500")
        ]
    );
    let one_time_id = id(&one_time);
    post!(
        "price",
        format!("/v1/prices/{}", id(&second_price)),
        &[("nickname", "Add-on"), ("metadata[k]", "v")]
    );
    post!(
        "price",
        "/v1/prices",
        &[
            ("product_data[name]", "Inline product"),
            ("currency", "eur"),
            ("unit_amount", "900")
        ]
    );
    let plan = post!(
        "plan",
        "/v1/plans",
        &[
            ("product", &product_id),
            ("currency", "usd"),
            ("amount", "2000"),
            ("interval", "month"),
            ("nickname", "Conformance plan")
        ]
    );
    post!(
        "plan",
        format!("/v1/plans/{}", id(&plan)),
        &[("nickname", "Renamed plan")]
    );
    let coupon = post!(
        "coupon",
        "/v1/coupons",
        &[
            ("percent_off", "25"),
            ("duration", "once"),
            ("name", "Quarter off")
        ]
    );
    let amount_coupon = post!(
        "coupon",
        "/v1/coupons",
        &[
            ("amount_off", "500"),
            ("currency", "usd"),
            ("duration", "repeating"),
            ("duration_in_months", "3")
        ]
    );
    post!(
        "coupon",
        format!("/v1/coupons/{}", id(&coupon)),
        &[("name", "Renamed coupon")]
    );
    let promo = post!(
        "promotion_code",
        "/v1/promotion_codes",
        &[("coupon", &id(&coupon)), ("code", "CONFORM25")]
    );
    post!(
        "promotion_code",
        format!("/v1/promotion_codes/{}", id(&promo)),
        &[("metadata[k]", "v")]
    );
    let tax_rate = post!(
        "tax_rate",
        "/v1/tax_rates",
        &[
            ("display_name", "Sales tax"),
            ("percentage", "7.25"),
            ("inclusive", "false"),
            ("jurisdiction", "CA")
        ]
    );
    post!(
        "tax_rate",
        format!("/v1/tax_rates/{}", id(&tax_rate)),
        &[("description", "California")]
    );

    // A customer with a card, a tax id and a balance adjustment.
    let customer = post!(
        "customer",
        "/v1/customers",
        &[
            ("email", "conformance@example.com"),
            ("name", "Conformance Check"),
            ("metadata[k]", "v"),
            ("address[line1]", "1 Main St"),
            ("address[country]", "US")
        ]
    );
    let customer_id = id(&customer);
    post!(
        "customer",
        format!("/v1/customers/{customer_id}"),
        &[("phone", "+15550001111"), ("description", "Updated")]
    );
    let pm = post!(
        "payment_method",
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123")
        ]
    );
    post!(
        "payment_method",
        format!("/v1/payment_methods/{}/attach", id(&pm)),
        &[("customer", &customer_id)]
    );
    let tax_id = post!(
        "tax_id",
        format!("/v1/customers/{customer_id}/tax_ids"),
        &[("type", "eu_vat"), ("value", "DE123456789")]
    );
    post!(
        "customer_balance_transaction",
        format!("/v1/customers/{customer_id}/balance_transactions"),
        &[
            ("amount", "-500"),
            ("currency", "usd"),
            ("description", "Goodwill credit")
        ]
    );
    let setup = post!(
        "setup_intent",
        "/v1/setup_intents",
        &[("customer", &customer_id)]
    );
    post!(
        "setup_intent",
        format!("/v1/setup_intents/{}/confirm", id(&setup)),
        &[]
    );
    let setup_to_cancel = post!(
        "setup_intent",
        "/v1/setup_intents",
        &[("customer", &customer_id)]
    );
    post!(
        "setup_intent",
        format!("/v1/setup_intents/{}/cancel", id(&setup_to_cancel)),
        &[]
    );

    // Subscriptions and their items and schedules.
    let sub = post!(
        "subscription",
        "/v1/subscriptions",
        &[
            ("customer", &customer_id),
            ("items[0][price]", &price_id),
            ("items[0][quantity]", "2"),
            ("metadata[k]", "v")
        ]
    );
    let sub_id = id(&sub);
    let trial = post!(
        "subscription",
        "/v1/subscriptions",
        &[
            ("customer", &customer_id),
            ("items[0][price]", &price_id),
            ("trial_period_days", "7")
        ]
    );
    post!(
        "subscription",
        format!("/v1/subscriptions/{}", id(&trial)),
        &[("trial_end", "now")]
    );
    post!(
        "subscription",
        format!("/v1/subscriptions/{sub_id}"),
        &[("cancel_at_period_end", "true")]
    );
    let item = post!(
        "subscription_item",
        "/v1/subscription_items",
        &[
            ("subscription", &sub_id),
            ("price", &id(&second_price)),
            ("quantity", "3")
        ]
    );
    post!(
        "subscription_item",
        format!("/v1/subscription_items/{}", id(&item)),
        &[("quantity", "4")]
    );
    delete!(
        "deleted_subscription_item",
        format!("/v1/subscription_items/{}", id(&item))
    );
    post!(
        "subscription_schedule",
        "/v1/subscription_schedules",
        &[
            ("customer", &customer_id),
            ("phases[0][items][0][price]", &price_id),
            ("phases[0][items][0][quantity]", "1")
        ]
    );
    let to_cancel = post!(
        "subscription",
        "/v1/subscriptions",
        &[("customer", &customer_id), ("items[0][price]", &price_id)]
    );
    delete!(
        "subscription",
        format!("/v1/subscriptions/{}", id(&to_cancel))
    );

    // Invoices: items, draft, finalize, pay, void, credit note.
    post!(
        "invoiceitem",
        "/v1/invoiceitems",
        &[
            ("customer", &customer_id),
            ("amount", "1200"),
            ("currency", "usd"),
            ("description", "Setup")
        ]
    );
    post!(
        "invoiceitem",
        "/v1/invoiceitems",
        &[
            ("customer", &customer_id),
            ("price", &one_time_id),
            ("quantity", "2")
        ]
    );
    let invoice = post!(
        "invoice",
        "/v1/invoices",
        &[
            ("customer", &customer_id),
            ("pending_invoice_items_behavior", "include"),
            ("description", "Conformance")
        ]
    );
    let invoice_id = id(&invoice);
    post!(
        "invoice",
        format!("/v1/invoices/{invoice_id}"),
        &[("footer", "Thanks")]
    );
    post!(
        "invoice",
        format!("/v1/invoices/{invoice_id}/finalize"),
        &[]
    );
    let paid = post!("invoice", format!("/v1/invoices/{invoice_id}/pay"), &[]);
    post!(
        "credit_note",
        "/v1/credit_notes",
        &[
            ("invoice", &id(&paid)),
            ("amount", "100"),
            ("memo", "Partial credit")
        ]
    );
    let to_void = post!(
        "invoice",
        "/v1/invoices",
        &[
            ("customer", &customer_id),
            ("collection_method", "send_invoice"),
            ("days_until_due", "30")
        ]
    );
    post!(
        "invoiceitem",
        "/v1/invoiceitems",
        &[
            ("customer", &customer_id),
            ("invoice", &id(&to_void)),
            ("amount", "700"),
            ("currency", "usd")
        ]
    );
    post!(
        "invoice",
        format!("/v1/invoices/{}/finalize", id(&to_void)),
        &[]
    );
    post!(
        "invoice",
        format!("/v1/invoices/{}/void", id(&to_void)),
        &[]
    );
    let uncollectible = post!(
        "invoice",
        "/v1/invoices",
        &[
            ("customer", &customer_id),
            ("collection_method", "send_invoice"),
            ("days_until_due", "30")
        ]
    );
    post!(
        "invoiceitem",
        "/v1/invoiceitems",
        &[
            ("customer", &customer_id),
            ("invoice", &id(&uncollectible)),
            ("amount", "800"),
            ("currency", "usd")
        ]
    );
    post!(
        "invoice",
        format!("/v1/invoices/{}/finalize", id(&uncollectible)),
        &[]
    );
    post!(
        "invoice",
        format!("/v1/invoices/{}/mark_uncollectible", id(&uncollectible)),
        &[]
    );

    // Payments: intents (confirm, manual capture, cancel), charges, refunds, payouts.
    let pi = post!(
        "payment_intent",
        "/v1/payment_intents",
        &[
            ("amount", "2000"),
            ("currency", "usd"),
            ("customer", &customer_id),
            ("description", "Conformance")
        ]
    );
    let confirmed = post!(
        "payment_intent",
        format!("/v1/payment_intents/{}/confirm", id(&pi)),
        &[("payment_method", &id(&pm))]
    );
    let manual = post!(
        "payment_intent",
        "/v1/payment_intents",
        &[
            ("amount", "3000"),
            ("currency", "usd"),
            ("customer", &customer_id),
            ("capture_method", "manual"),
            ("payment_method", &id(&pm)),
            ("confirm", "true")
        ]
    );
    post!(
        "payment_intent",
        format!("/v1/payment_intents/{}/capture", id(&manual)),
        &[]
    );
    let to_cancel = post!(
        "payment_intent",
        "/v1/payment_intents",
        &[("amount", "4000"), ("currency", "usd")]
    );
    post!(
        "payment_intent",
        format!("/v1/payment_intents/{}/cancel", id(&to_cancel)),
        &[("cancellation_reason", "abandoned")]
    );
    let charge = post!(
        "charge",
        "/v1/charges",
        &[
            ("amount", "1000"),
            ("currency", "usd"),
            ("source", "tok_visa"),
            ("description", "Direct charge")
        ]
    );
    post!(
        "charge",
        format!("/v1/charges/{}", id(&charge)),
        &[("description", "Updated charge")]
    );
    post!(
        "refund",
        "/v1/refunds",
        &[
            ("charge", &id(&charge)),
            ("amount", "400"),
            ("reason", "requested_by_customer")
        ]
    );
    post!(
        "refund",
        "/v1/refunds",
        &[("payment_intent", &id(&confirmed))]
    );
    let payout = post!(
        "payout",
        "/v1/payouts",
        &[
            ("amount", "1100"),
            ("currency", "usd"),
            ("description", "Manual payout")
        ]
    );
    post!("payout", format!("/v1/payouts/{}/cancel", id(&payout)), &[]);
    post!(
        "payout",
        "/v1/payouts",
        &[("amount", "1200"), ("currency", "usd")]
    );
    post!(
        "topup",
        "/v1/topups",
        &[
            ("amount", "5000"),
            ("currency", "usd"),
            ("description", "Top-up")
        ]
    );
    post!(
        "transfer",
        "/v1/transfers",
        &[
            ("amount", "700"),
            ("currency", "usd"),
            ("destination", "acct_1ConnectedAcct01")
        ]
    );

    // Checkout and payment links.
    let session = post!(
        "checkout.session",
        "/v1/checkout/sessions",
        &[
            ("mode", "payment"),
            ("customer", &customer_id),
            ("success_url", "https://example.com/ok"),
            ("cancel_url", "https://example.com/cancel"),
            ("line_items[0][price]", &one_time_id),
            ("line_items[0][quantity]", "1")
        ]
    );
    post!(
        "checkout.session",
        format!("/v1/checkout/sessions/{}/expire", id(&session)),
        &[]
    );
    post!(
        "checkout.session",
        "/v1/checkout/sessions",
        &[
            ("mode", "subscription"),
            ("success_url", "https://example.com/ok"),
            ("line_items[0][price]", &price_id),
            ("line_items[0][quantity]", "1")
        ]
    );
    let link = post!(
        "payment_link",
        "/v1/payment_links",
        &[
            ("line_items[0][price]", &price_id),
            ("line_items[0][quantity]", "1")
        ]
    );
    post!(
        "payment_link",
        format!("/v1/payment_links/{}", id(&link)),
        &[("active", "false")]
    );

    // Webhook endpoints: the create answer carries `secret`, which the schema includes. The URL
    // refuses connections at once; deliveries fail quietly.
    let endpoint = post!(
        "webhook_endpoint",
        "/v1/webhook_endpoints",
        &[
            ("url", "http://127.0.0.1:9/hook"),
            ("enabled_events[]", "customer.created"),
            ("description", "Conformance")
        ]
    );
    post!(
        "webhook_endpoint",
        "/v1/webhook_endpoints",
        &[
            ("url", "http://127.0.0.1:9/kept"),
            ("enabled_events[]", "invoice.paid")
        ]
    );
    post!(
        "webhook_endpoint",
        format!("/v1/webhook_endpoints/{}", id(&endpoint)),
        &[("disabled", "true")]
    );

    // Deleted stubs.
    delete!(
        "deleted_webhook_endpoint",
        format!("/v1/webhook_endpoints/{}", id(&endpoint))
    );
    delete!(
        "deleted_tax_id",
        format!("/v1/customers/{customer_id}/tax_ids/{}", id(&tax_id))
    );
    let doomed_product = post!("product", "/v1/products", &[("name", "Doomed")]);
    delete!(
        "deleted_product",
        format!("/v1/products/{}", id(&doomed_product))
    );
    delete!("deleted_plan", format!("/v1/plans/{}", id(&plan)));
    delete!(
        "deleted_coupon",
        format!("/v1/coupons/{}", id(&amount_coupon))
    );
    let doomed_item = post!(
        "invoiceitem",
        "/v1/invoiceitems",
        &[
            ("customer", &customer_id),
            ("amount", "100"),
            ("currency", "usd")
        ]
    );
    delete!(
        "deleted_invoiceitem",
        format!("/v1/invoiceitems/{}", id(&doomed_item))
    );
    let draft = post!("invoice", "/v1/invoices", &[("customer", &customer_id)]);
    delete!("deleted_invoice", format!("/v1/invoices/{}", id(&draft)));
    let doomed_customer = post!(
        "customer",
        "/v1/customers",
        &[("email", "doomed@example.com")]
    );
    // Deleting a customer cancels its subscription first.
    post!(
        "subscription",
        "/v1/subscriptions",
        &[
            ("customer", &id(&doomed_customer)),
            ("items[0][price]", &price_id)
        ]
    );
    delete!(
        "deleted_customer",
        format!("/v1/customers/{}", id(&doomed_customer))
    );
    let stub = h
        .get(key, &format!("/v1/customers/{}", id(&doomed_customer)))
        .await;
    c.check_reply("deleted_customer", "GET a deleted customer", &stub);
}

/// Every list of every kind, page by page, and a retrieve of the first and last of each.
async fn lists_and_retrieves(c: &mut Checker<'_>, h: &Harness, key: &str) {
    let customers = c.walk(h, key, Kind::Customer, "/v1/customers").await;
    let subscriptions = c
        .walk(h, key, Kind::Subscription, "/v1/subscriptions?status=all")
        .await;
    let invoices = c.walk(h, key, Kind::Invoice, "/v1/invoices").await;
    // Kind -> retrieve paths of the first and last object listed.
    let mut found: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    let mut remember =
        |kind: Kind, objects: &[Value], retrieve: &dyn Fn(&Value) -> Option<String>| {
            for object in [objects.first(), objects.last()].into_iter().flatten() {
                if let Some(path) = retrieve(object) {
                    found.entry(kind).or_default().push(path);
                }
            }
        };
    let top = |collection: &'static str| {
        move |o: &Value| Some(format!("/v1/{collection}/{}", o["id"].as_str()?))
    };
    remember(Kind::Customer, &customers, &top("customers"));
    remember(Kind::Subscription, &subscriptions, &top("subscriptions"));
    remember(Kind::Invoice, &invoices, &top("invoices"));
    let mut seen_kinds: BTreeSet<Kind> = [Kind::Customer, Kind::Subscription, Kind::Invoice].into();

    for row in KINDS.iter() {
        if seen_kinds.contains(&row.kind) {
            continue;
        }
        seen_kinds.insert(row.kind);
        match (row.kind, row.list) {
            (Kind::SubscriptionItem, _) => {
                let mut items = Vec::new();
                for sub in &subscriptions {
                    let path = format!(
                        "/v1/subscription_items?subscription={}",
                        sub["id"].as_str().unwrap_or_default()
                    );
                    items.extend(c.walk(h, key, row.kind, &path).await);
                }
                remember(row.kind, &items, &top("subscription_items"));
            }
            (Kind::Price, _) => {
                let mut prices = c.walk(h, key, row.kind, "/v1/prices").await;
                prices.extend(c.walk(h, key, row.kind, "/v1/prices?active=false").await);
                remember(row.kind, &prices, &top("prices"));
            }
            (_, ListPath::TopLevel(collection)) => {
                let objects = c.walk(h, key, row.kind, &format!("/v1/{collection}")).await;
                remember(row.kind, &objects, &top(collection));
            }
            (_, ListPath::Child { parent, segment }) => {
                let parents = match parent {
                    Kind::Customer => &customers,
                    Kind::Invoice => &invoices,
                    other => panic!("no parents listed for {other:?}"),
                };
                let mut children = Vec::new();
                for parent_object in parents {
                    let parent_id = parent_object["id"].as_str().unwrap_or_default();
                    let collection = match parent {
                        Kind::Customer => "customers",
                        _ => "invoices",
                    };
                    children.extend(
                        c.walk(
                            h,
                            key,
                            row.kind,
                            &format!("/v1/{collection}/{parent_id}/{segment}"),
                        )
                        .await,
                    );
                }
                // Line items have no retrieve endpoint on Stripe; the others do.
                match row.kind {
                    Kind::InvoiceLineItem => {}
                    Kind::PaymentMethod => {
                        remember(row.kind, &children, &top("payment_methods"));
                        // Also listed at `/v1/payment_methods?customer=…`.
                        if let Some(customer) =
                            children.first().and_then(|pm| pm["customer"].as_str())
                        {
                            c.walk(
                                h,
                                key,
                                row.kind,
                                &format!("/v1/payment_methods?customer={customer}&type=card"),
                            )
                            .await;
                        }
                    }
                    _ => remember(row.kind, &children, &|o: &Value| {
                        Some(format!(
                            "/v1/customers/{}/{segment}/{}",
                            o["customer"].as_str()?,
                            o["id"].as_str()?
                        ))
                    }),
                }
            }
        }
    }

    for (kind, paths) in found {
        for path in paths {
            let reply = h.get(key, &path).await;
            c.check_reply(kind.info().object, &format!("GET {path}"), &reply);
        }
    }
}

async fn account_and_balance(c: &mut Checker<'_>, h: &Harness, key: &str) {
    let account = h.get(key, "/v1/account").await;
    c.check_reply("account", "GET /v1/account", &account);
    let balance = h.get(key, "/v1/balance").await;
    c.check_reply("balance", "GET /v1/balance", &balance);
    let live = h.get(&h.key("secret_live"), "/v1/balance").await;
    c.check_reply("balance", "GET /v1/balance (live, empty)", &live);
}

/// A few failures of different kinds, each body checked against the `error` schema.
async fn errors(c: &mut Checker<'_>, h: &Harness, key: &str) {
    let mut replies = vec![
        (
            "no key",
            h.send(h.http.get(format!("{}/v1/customers", h.base))).await,
        ),
        (
            "invalid key",
            h.get("sk_test_madeUpKeyThatNobodyIssued1234S8wL", "/v1/customers")
                .await,
        ),
        (
            "missing object",
            h.get(key, "/v1/customers/cus_doesNotExist").await,
        ),
        (
            "unknown parameter",
            h.post(key, "/v1/customers", &[("colour", "red")]).await,
        ),
        (
            "missing parameter",
            h.post(key, "/v1/prices", &[("unit_amount", "100")]).await,
        ),
        ("bad limit", h.get(key, "/v1/customers?limit=101").await),
        ("unknown URL", h.get(key, "/v1/no_such_things").await),
        (
            "bad integer",
            h.post(
                key,
                "/v1/payment_intents",
                &[("amount", "ten"), ("currency", "usd")],
            )
            .await,
        ),
    ];
    let restricted = h.restricted_key("test", &["rak_customer_read"]).await;
    replies.push((
        "missing permission",
        h.get(&restricted, "/v1/subscriptions").await,
    ));
    let draft = h
        .post(key, "/v1/invoices", &[("customer", "cus_doesNotExist")])
        .await;
    replies.push(("invalid customer param", draft));
    let customer = h
        .post(key, "/v1/customers", &[("email", "errors@example.com")])
        .await;
    let invoice = h
        .post(key, "/v1/invoices", &[("customer", &id(&customer.json))])
        .await;
    replies.push((
        "wrong state",
        h.post(
            key,
            &format!("/v1/invoices/{}/void", id(&invoice.json)),
            &[],
        )
        .await,
    ));
    h.send(
        h.http
            .post(format!("{}/v1/customers", h.base))
            .bearer_auth(key)
            .header("Idempotency-Key", "conformance-key")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("email=a%40example.com"),
    )
    .await;
    let reused = h
        .send(
            h.http
                .post(format!("{}/v1/customers", h.base))
                .bearer_auth(key)
                .header("Idempotency-Key", "conformance-key")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("email=b%40example.com"),
        )
        .await;
    replies.push(("idempotency key reused", reused));
    for (what, reply) in replies {
        let place = format!("error: {what} (HTTP {})", reply.status);
        if reply.status < 400 {
            c.violation(
                "error",
                &place,
                format!(
                    "$: expected an error status, got {}: {}",
                    reply.status,
                    shorten(&reply.text)
                ),
            );
            continue;
        }
        c.check_as("error", &place, &reply.json);
    }
}
