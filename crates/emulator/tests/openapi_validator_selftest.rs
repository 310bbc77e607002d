//! Self-test of the OpenAPI validator in `support/openapi.rs`, against hand-written objects.
//!
//! Needs Stripe's spec3.json (API version 2023-08-16), which is not part of this repository:
//! run with `STRIPE_MIRROR_OPENAPI_SPEC=/path/to/spec3.json cargo test -p sm-emulator --test
//! openapi_validator_selftest`. Without the variable every test prints that it was skipped
//! and passes. Deliberately independent of the emulator library: serde_json only.

#![recursion_limit = "256"] // for the large `json!` literals below

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;
use support::openapi::Spec;

const SPEC_ENV: &str = "STRIPE_MIRROR_OPENAPI_SPEC";

/// The spec, parsed once per test binary; `None` (after saying so) when the variable is unset.
fn spec(test: &str) -> Option<&'static Spec> {
    static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let path = std::env::var_os(SPEC_ENV)?;
        Some(Spec::load(Path::new(&path)).unwrap_or_else(|e| panic!("{SPEC_ENV} is set but: {e}")))
    });
    if spec.is_none() {
        eprintln!("{test}: skipped: set {SPEC_ENV}=/path/to/stripe/openapi/spec3.json to run it");
    }
    spec.as_ref()
}

/// Asserts that exactly zero violations were found, printing them otherwise.
fn assert_valid(spec: &Spec, schema: &str, value: &Value) {
    let errors = spec.validate(schema, value);
    assert!(
        errors.is_empty(),
        "{schema} should be valid, got:\n  {}",
        errors.join("\n  ")
    );
}

/// Asserts that some violation mentions every one of `needles`; returns all violations.
fn assert_error(spec: &Spec, schema: &str, value: &Value, needles: &[&str]) -> Vec<String> {
    let errors = spec.validate(schema, value);
    assert!(
        errors.iter().any(|e| needles.iter().all(|n| e.contains(n))),
        "{schema}: expected an error containing {needles:?}, got:\n  {}",
        errors.join("\n  ")
    );
    errors
}

/// A customer as the 2023-08-16 API returns it (no `expand`, so no `sources`/`subscriptions`/`tax_ids`/`tax`).
fn customer() -> Value {
    json!({
        "id": "cus_1",
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": 1_692_144_000,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": "jenny@example.com",
        "invoice_prefix": "ABCD1234",
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null
        },
        "livemode": false,
        "metadata": {"order": "42"},
        "name": "Jenny Rosen",
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null
    })
}

fn price() -> Value {
    json!({
        "id": "price_1",
        "object": "price",
        "active": true,
        "billing_scheme": "per_unit",
        "created": 1_692_144_000,
        "currency": "usd",
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": null,
        "metadata": {},
        "nickname": null,
        "product": "prod_1",
        "recurring": {"aggregate_usage": null, "interval": "month", "interval_count": 1, "usage_type": "licensed"},
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": "recurring",
        "unit_amount": 1000,
        "unit_amount_decimal": "1000"
    })
}

/// A subscription with its (always-present) `items` list holding one item with an embedded price.
fn subscription() -> Value {
    json!({
        "id": "sub_1",
        "object": "subscription",
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": {"enabled": false},
        "billing_cycle_anchor": 1_692_144_000,
        "billing_thresholds": null,
        "cancel_at": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "cancellation_details": {"comment": null, "feedback": null, "reason": null},
        "collection_method": "charge_automatically",
        "created": 1_692_144_000,
        "currency": "usd",
        "current_period_end": 1_694_822_400,
        "current_period_start": 1_692_144_000,
        "customer": "cus_1",
        "days_until_due": null,
        "default_payment_method": null,
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discount": null,
        "ended_at": null,
        "items": {
            "object": "list",
            "data": [{
                "id": "si_1",
                "object": "subscription_item",
                "billing_thresholds": null,
                "created": 1_692_144_000,
                "metadata": {},
                "price": price(),
                "quantity": 1,
                "subscription": "sub_1",
                "tax_rates": []
            }],
            "has_more": false,
            "url": "/v1/subscription_items?subscription=sub_1"
        },
        "latest_invoice": "in_1",
        "livemode": false,
        "metadata": {},
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "payment_settings": {
            "payment_method_options": null,
            "payment_method_types": null,
            "save_default_payment_method": "off"
        },
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "start_date": 1_692_144_000,
        "status": "active",
        "test_clock": null,
        "transfer_data": null,
        "trial_end": null,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": null
    })
}

#[test]
fn loads_and_knows_schema_names() {
    let Some(spec) = spec("loads_and_knows_schema_names") else {
        return;
    };
    for name in [
        "customer",
        "deleted_customer",
        "invoice",
        "checkout.session",
        "subscription",
        "error",
    ] {
        assert!(spec.has_schema(name), "spec should have schema {name}");
    }
    // Lists have no schema of their own: they only occur inline (the caller handles "list").
    assert!(!spec.has_schema("list"));
    assert_error(
        spec,
        "no_such_schema",
        &json!({}),
        &["$:", "no_such_schema"],
    );
}

#[test]
fn minimal_customer_is_valid() {
    let Some(spec) = spec("minimal_customer_is_valid") else {
        return;
    };
    assert_valid(spec, "customer", &customer());
    // Only `id`, `object`, `created` and `livemode` are required.
    assert_valid(
        spec,
        "customer",
        &json!({"id": "cus_1", "object": "customer", "created": 1, "livemode": true}),
    );
}

#[test]
fn wrong_types_are_reported_with_their_path() {
    let Some(spec) = spec("wrong_types_are_reported_with_their_path") else {
        return;
    };
    let mut c = customer();
    c["created"] = json!("x");
    let errors = assert_error(
        spec,
        "customer",
        &c,
        &["$.created", "expected integer, got string"],
    );
    assert_eq!(errors.len(), 1, "{errors:?}");

    // An integer field written as a float (1.0) is a type error too.
    let mut c = customer();
    c["balance"] = json!(1.0);
    assert_error(
        spec,
        "customer",
        &c,
        &["$.balance", "expected integer, got number"],
    );

    // null where the spec does not say nullable.
    let mut c = customer();
    c["livemode"] = Value::Null;
    assert_error(
        spec,
        "customer",
        &c,
        &["$.livemode", "expected boolean, got null"],
    );

    // Nested: a field of a $ref'd object.
    let mut c = customer();
    c["invoice_settings"]["footer"] = json!(7);
    assert_error(
        spec,
        "customer",
        &c,
        &["$.invoice_settings.footer", "expected string, got integer"],
    );

    // Metadata values must be strings (additionalProperties schema); odd keys are quoted.
    let mut c = customer();
    c["metadata"]["a.b"] = json!(3);
    assert_error(
        spec,
        "customer",
        &c,
        &["$.metadata[\"a.b\"]", "expected string"],
    );
}

#[test]
fn invented_fields_and_missing_required_fields_are_errors() {
    let Some(spec) = spec("invented_fields_and_missing_required_fields_are_errors") else {
        return;
    };
    let mut c = customer();
    c["favourite_colour"] = json!("blue");
    assert_error(
        spec,
        "customer",
        &c,
        &["$.favourite_colour", "unknown property"],
    );

    let mut c = customer();
    c["invoice_settings"]["template"] = json!(null);
    assert_error(
        spec,
        "customer",
        &c,
        &["$.invoice_settings.template", "unknown property"],
    );

    let mut c = customer();
    c.as_object_mut().unwrap().remove("livemode");
    assert_error(spec, "customer", &c, &["$.livemode", "required"]);
}

#[test]
fn enums_are_enforced() {
    let Some(spec) = spec("enums_are_enforced") else {
        return;
    };
    let mut c = customer();
    c["tax_exempt"] = json!("sometimes");
    assert_error(
        spec,
        "customer",
        &c,
        &["$.tax_exempt", "\"sometimes\" is not one of"],
    );

    let mut c = customer();
    c["object"] = json!("person");
    assert_error(
        spec,
        "customer",
        &c,
        &["$.object", "is not one of [\"customer\"]"],
    );
}

#[test]
fn deleted_customer() {
    let Some(spec) = spec("deleted_customer") else {
        return;
    };
    // The deleted_* schemas share `object` with the live object; `deleted` is enum [true].
    assert_valid(
        spec,
        "deleted_customer",
        &json!({"id": "cus_1", "object": "customer", "deleted": true}),
    );
    assert_error(
        spec,
        "deleted_customer",
        &json!({"id": "cus_1", "object": "customer", "deleted": false}),
        &["$.deleted", "is not one of [true]"],
    );
    assert_error(
        spec,
        "deleted_customer",
        &json!({"id": "cus_1", "object": "customer"}),
        &["$.deleted", "required"],
    );
}

#[test]
fn subscription_with_nested_items_list() {
    let Some(spec) = spec("subscription_with_nested_items_list") else {
        return;
    };
    assert_valid(spec, "subscription", &subscription());

    // Errors inside the inline list schema and the $ref'd item and price carry the full path.
    let mut s = subscription();
    s["items"]["data"][0]["price"]["unit_amount"] = json!("1000");
    assert_error(
        spec,
        "subscription",
        &s,
        &[
            "$.items.data[0].price.unit_amount",
            "expected integer, got string",
        ],
    );

    let mut s = subscription();
    s["items"]["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("subscription");
    assert_error(
        spec,
        "subscription",
        &s,
        &["$.items.data[0].subscription", "required"],
    );

    let mut s = subscription();
    s["items"]["total_count"] = json!(1);
    assert_error(
        spec,
        "subscription",
        &s,
        &["$.items.total_count", "unknown property"],
    );

    let mut s = subscription();
    s["items"]["object"] = json!("search_result");
    assert_error(
        spec,
        "subscription",
        &s,
        &["$.items.object", "is not one of [\"list\"]"],
    );

    let mut s = subscription();
    s["items"].as_object_mut().unwrap().remove("url");
    assert_error(spec, "subscription", &s, &["$.items.url", "required"]);
}

#[test]
fn expandable_fields_accept_id_or_object() {
    let Some(spec) = spec("expandable_fields_accept_id_or_object") else {
        return;
    };
    // `customer` is anyOf [string, customer, deleted_customer].
    let mut s = subscription();
    s["customer"] = customer();
    assert_valid(spec, "subscription", &s);
    s["customer"] = json!({"id": "cus_1", "object": "customer", "deleted": true});
    assert_valid(spec, "subscription", &s);

    // Expanded but broken: the errors of the best-matching branch (customer), not of all three.
    let mut broken = customer();
    broken["created"] = json!("x");
    s["customer"] = broken;
    let errors = assert_error(
        spec,
        "subscription",
        &s,
        &["$.customer.created", "expected integer"],
    );
    assert_eq!(errors.len(), 1, "{errors:?}");

    // Neither an id nor an object: a one-line summary of the alternatives.
    s["customer"] = json!(42);
    assert_error(
        spec,
        "subscription",
        &s,
        &[
            "$.customer",
            "expected one of string | object(customer)",
            "got integer",
        ],
    );

    // Nullable expandable field.
    let mut s = subscription();
    s["latest_invoice"] = Value::Null;
    assert_valid(spec, "subscription", &s);
}

#[test]
fn error_body() {
    let Some(spec) = spec("error_body") else {
        return;
    };
    let body = json!({"error": {"type": "invalid_request_error", "message": "No such customer: 'cus_x'", "param": "id", "code": "resource_missing", "doc_url": "https://stripe.com/docs/error-codes/resource-missing"}});
    assert_valid(spec, "error", &body);
    // The optional error fields are absent, never null, in Stripe's responses.
    let body = json!({"error": {"type": "invalid_request_error", "message": "x", "param": null}});
    assert_error(
        spec,
        "error",
        &body,
        &["$.error.param", "expected string, got null"],
    );
    let body = json!({"error": {"type": "bad_error", "message": "x"}});
    assert_error(spec, "error", &body, &["$.error.type", "is not one of"]);
}
