//! Writes as a billing account lives by them, and the events each records: what a Stripe client
//! sends, what it gets back, and what `/v1/events` says happened.

mod support;

use serde_json::{Value, json};
use support::harness::Harness;

/// The newest events of the given types, newest first.
async fn events(h: &Harness, key: &str, query: &str) -> Vec<Value> {
    h.get(key, &format!("/v1/events?limit=100{query}"))
        .await
        .json["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn subscription_lifecycle_records_stripes_events() {
    let h = Harness::start(2).await;
    let key = h.key("secret_test");
    let price = h
        .post(
            &key,
            "/v1/prices",
            &[
                ("currency", "usd"),
                ("unit_amount", "1500"),
                ("recurring[interval]", "month"),
                ("product_data[name]", "Pro"),
            ],
        )
        .await;
    assert_eq!(price.status, 200, "{}", price.text);
    let price_id = price.json["id"].as_str().unwrap();
    let customer = h
        .post(
            &key,
            "/v1/customers",
            &[("email", "sub@example.com"), ("metadata[crm]", "42")],
        )
        .await
        .json;
    assert_eq!(customer["metadata"], json!({"crm": "42"}));
    let customer_id = customer["id"].as_str().unwrap();

    let sub = h
        .post(
            &key,
            "/v1/subscriptions",
            &[
                ("customer", customer_id),
                ("items[0][price]", price_id),
                ("items[0][quantity]", "2"),
            ],
        )
        .await;
    assert_eq!(sub.status, 200, "{}", sub.text);
    let sub = sub.json;
    let sub_id = sub["id"].as_str().unwrap();
    assert_eq!(sub["status"], json!("active"));
    let item_id = sub["items"]["data"][0]["id"].as_str().unwrap();

    let created = events(&h, &key, "&type=customer.subscription.created").await;
    assert_eq!(created[0]["data"]["object"]["id"], json!(sub_id));
    assert_eq!(
        created[0]["data"]["object"]["items"]["data"][0]["quantity"],
        json!(2)
    );
    let paid = events(&h, &key, "&type=invoice.paid").await;
    assert_eq!(paid[0]["data"]["object"]["subscription"], json!(sub_id));
    assert_eq!(paid[0]["data"]["object"]["amount_paid"], json!(3000));
    assert!(
        events(&h, &key, "&type=charge.succeeded")
            .await
            .iter()
            .any(|e| e["data"]["object"]["amount"] == json!(3000))
    );

    // Quantity change: customer.subscription.updated with the old items in previous_attributes.
    let updated = h
        .post(
            &key,
            &format!("/v1/subscriptions/{sub_id}"),
            &[("items[0][id]", item_id), ("items[0][quantity]", "5")],
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["items"]["data"][0]["quantity"], json!(5));
    let update_event = &events(&h, &key, "&type=customer.subscription.updated").await[0];
    assert_eq!(
        update_event["data"]["object"]["items"]["data"][0]["quantity"],
        json!(5)
    );
    assert_eq!(
        update_event["data"]["previous_attributes"]["items"]["data"][0]["quantity"],
        json!(2)
    );
    assert_eq!(
        h.get(&key, &format!("/v1/subscription_items/{item_id}"))
            .await
            .json["quantity"],
        json!(5)
    );

    // Cancel: customer.subscription.deleted, but the subscription stays (status=all shows it).
    let canceled = h.delete(&key, &format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!(canceled.json["status"], json!("canceled"));
    let deleted_event = &events(&h, &key, "&type=customer.subscription.deleted").await[0];
    assert_eq!(deleted_event["data"]["object"]["id"], json!(sub_id));
    assert_eq!(
        h.get(&key, &format!("/v1/subscriptions/{sub_id}"))
            .await
            .json["status"],
        json!("canceled")
    );
    let all = h
        .list_all(
            &key,
            "/v1/subscriptions",
            &format!("&status=all&customer={customer_id}"),
        )
        .await;
    assert_eq!(all.len(), 1);
    assert!(
        h.list_all(
            &key,
            "/v1/subscriptions",
            &format!("&customer={customer_id}")
        )
        .await
        .is_empty()
    );

    // Wildcards and types[] select events.
    let subscription_events = events(&h, &key, "&type=customer.subscription.*").await;
    assert_eq!(subscription_events.len(), 3);
    let two_types = events(
        &h,
        &key,
        "&types[]=customer.created&types[]=invoice.finalized",
    )
    .await;
    assert!(
        two_types
            .iter()
            .all(|e| e["type"] == json!("customer.created")
                || e["type"] == json!("invoice.finalized"))
    );
    assert!(
        two_types
            .iter()
            .any(|e| e["type"] == json!("invoice.finalized"))
    );
}

#[tokio::test]
async fn invoices_finalize_pay_void_and_refunds_move_the_charge() {
    let h = Harness::start(2).await;
    let key = h.key("secret_test");
    let customer = h
        .post(&key, "/v1/customers", &[("email", "inv@example.com")])
        .await
        .json;
    let customer_id = customer["id"].as_str().unwrap();
    let invoice = h
        .post(&key, "/v1/invoices", &[("customer", customer_id)])
        .await
        .json;
    let invoice_id = invoice["id"].as_str().unwrap();
    assert_eq!(invoice["status"], json!("draft"));
    let item = h
        .post(
            &key,
            "/v1/invoiceitems",
            &[
                ("customer", customer_id),
                ("invoice", invoice_id),
                ("amount", "4200"),
                ("currency", "usd"),
                ("description", "Consulting"),
            ],
        )
        .await;
    assert_eq!(item.status, 200, "{}", item.text);
    let draft = h
        .get(&key, &format!("/v1/invoices/{invoice_id}"))
        .await
        .json;
    assert_eq!(draft["amount_due"], json!(4200));
    assert_eq!(draft["lines"]["data"][0]["invoice_item"], item.json["id"]);

    let finalized = h
        .post(&key, &format!("/v1/invoices/{invoice_id}/finalize"), &[])
        .await
        .json;
    assert_eq!(finalized["status"], json!("open"));
    assert!(finalized["number"].is_string());
    let paid = h
        .post(&key, &format!("/v1/invoices/{invoice_id}/pay"), &[])
        .await
        .json;
    assert_eq!(paid["status"], json!("paid"));
    assert_eq!(paid["amount_paid"], json!(4200));
    let again = h
        .post(&key, &format!("/v1/invoices/{invoice_id}/pay"), &[])
        .await;
    assert_eq!(again.status, 400, "a paid invoice cannot be paid again");

    let charge_id = paid["charge"].as_str().unwrap();
    let refund = h
        .post(
            &key,
            "/v1/refunds",
            &[("charge", charge_id), ("amount", "1000")],
        )
        .await;
    assert_eq!(refund.status, 200, "{}", refund.text);
    let charge = h.get(&key, &format!("/v1/charges/{charge_id}")).await.json;
    assert_eq!(charge["amount_refunded"], json!(1000));
    assert_eq!(charge["refunded"], json!(false));
    let too_much = h
        .post(
            &key,
            "/v1/refunds",
            &[("charge", charge_id), ("amount", "9999")],
        )
        .await;
    assert_eq!(too_much.status, 400);
    let txn = h
        .get(
            &key,
            &format!(
                "/v1/balance_transactions/{}",
                refund.json["balance_transaction"].as_str().unwrap()
            ),
        )
        .await
        .json;
    assert_eq!(txn["amount"], json!(-1000));

    let second = h
        .post(
            &key,
            "/v1/invoices",
            &[
                ("customer", customer_id),
                ("collection_method", "send_invoice"),
                ("days_until_due", "30"),
            ],
        )
        .await
        .json;
    let second_id = second["id"].as_str().unwrap();
    h.post(&key, &format!("/v1/invoices/{second_id}/finalize"), &[])
        .await;
    let voided = h
        .post(&key, &format!("/v1/invoices/{second_id}/void"), &[])
        .await
        .json;
    assert_eq!(voided["status"], json!("void"));
    for event_type in [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.voided",
        "refund.created",
        "charge.refunded",
        "invoiceitem.created",
    ] {
        assert!(
            !events(&h, &key, &format!("&type={event_type}"))
                .await
                .is_empty(),
            "{event_type} recorded"
        );
    }
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_other_parameters() {
    let h = Harness::start(1).await;
    let key = h.key("secret_test");
    let send = |email: &'static str, idem: &'static str| {
        h.http
            .post(format!("{}/v1/customers", h.base))
            .bearer_auth(&key)
            .header("Idempotency-Key", idem)
            .header("Stripe-Version", "2023-08-16")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("email={email}"))
    };
    let first = h.send(send("a@example.com", "key-1")).await;
    let replay = h.send(send("a@example.com", "key-1")).await;
    assert_eq!(first.json["id"], replay.json["id"]);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.header("stripe-version"), Some("2023-08-16"));
    assert_ne!(first.header("request-id"), replay.header("request-id"));
    let conflict = h.send(send("b@example.com", "key-1")).await;
    assert_eq!(conflict.status, 400);
    assert_eq!(conflict.json["error"]["type"], json!("idempotency_error"));
    assert_eq!(
        h.list_all(&key, "/v1/customers", "").await.len(),
        2,
        "one seeded customer and one created once"
    );
    // Other versions are echoed as asked.
    let versioned = h
        .send(
            h.http
                .get(format!("{}/v1/customers", h.base))
                .bearer_auth(&key)
                .header("Stripe-Version", "2026-07-29.dahlia"),
        )
        .await;
    assert_eq!(
        versioned.header("stripe-version"),
        Some("2026-07-29.dahlia")
    );
}

#[tokio::test]
async fn events_older_than_thirty_days_disappear_when_the_clock_moves() {
    let h = Harness::start(30).await;
    let key = h.key("secret_test");
    let recent = events(&h, &key, "").await;
    assert!(!recent.is_empty(), "seeded data has recent events");
    let some_event = recent[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.get(&key, &format!("/v1/events/{some_event}"))
            .await
            .status,
        200
    );
    h.control("POST", "/clock", json!({"advance": 31 * 86_400}))
        .await;
    assert!(events(&h, &key, "").await.is_empty());
    assert_eq!(
        h.get(&key, &format!("/v1/events/{some_event}"))
            .await
            .status,
        404
    );
    // New changes record new events at the new time.
    h.post(&key, "/v1/customers", &[("email", "later@example.com")])
        .await;
    let after = events(&h, &key, "").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["type"], json!("customer.created"));
    assert_eq!(after[0]["api_version"], json!("2023-08-16"));
    assert!(
        after[0]["request"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
}

#[tokio::test]
async fn checkout_payment_links_webhook_endpoints_and_payouts() {
    let h = Harness::start(20).await;
    let key = h.key("secret_test");
    let price = h.list_all(&key, "/v1/prices", "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = h
        .post(
            &key,
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("success_url", "https://example.com/ok"),
                ("line_items[0][price]", &price),
                ("line_items[0][quantity]", "1"),
            ],
        )
        .await;
    assert_eq!(session.status, 200, "{}", session.text);
    assert!(session.json["id"].as_str().unwrap().starts_with("cs_test_"));
    let expired = h
        .post(
            &key,
            &format!(
                "/v1/checkout/sessions/{}/expire",
                session.json["id"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    assert_eq!(expired.json["status"], json!("expired"));
    let link = h
        .post(
            &key,
            "/v1/payment_links",
            &[
                ("line_items[0][price]", &price),
                ("line_items[0][quantity]", "1"),
            ],
        )
        .await;
    assert!(
        link.json["url"]
            .as_str()
            .unwrap()
            .starts_with("https://buy.stripe.com/test_")
    );
    let endpoint = h
        .post(
            &key,
            "/v1/webhook_endpoints",
            &[
                ("url", "https://example.com/hook"),
                ("enabled_events[]", "customer.created"),
                ("api_version", "2023-08-16"),
            ],
        )
        .await;
    assert!(
        endpoint.json["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let listed = h.list_all(&key, "/v1/webhook_endpoints", "").await;
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown at creation only"
    );
    let payout = h
        .post(
            &key,
            "/v1/payouts",
            &[("amount", "5000"), ("currency", "usd")],
        )
        .await
        .json;
    assert_eq!(payout["status"], json!("pending"));
    let canceled = h
        .post(
            &key,
            &format!("/v1/payouts/{}/cancel", payout["id"].as_str().unwrap()),
            &[],
        )
        .await
        .json;
    assert_eq!(canceled["status"], json!("canceled"));
}
