//! API versions as Stripe has them: an account's default version renders its events and the
//! answers to requests without `Stripe-Version`; a request's own version wins; events keep the
//! version they were made in after an upgrade; the modelled differences (PaymentIntent
//! `charges`, Charge `refunds` before 2022-11-15; subscription periods on items and
//! `invoice.parent` from 2025-03-31.basil) appear exactly where they should.

mod support;

use serde_json::{Value, json};
use support::harness::Harness;

const OLD: &str = "2022-08-01";
const BASIL: &str = "2025-03-31.basil";

async fn latest_event(h: &Harness, key: &str, event_type: &str) -> Value {
    let reply = h
        .get(key, &format!("/v1/events?limit=1&type={event_type}"))
        .await;
    reply.json["data"][0].clone()
}

#[tokio::test]
async fn an_account_default_version_renders_events_and_answers() {
    let h = Harness::start(3).await;
    let id = h.account_id().to_owned();
    let key = h.key("secret_test");
    h.control(
        "POST",
        &format!("/accounts/{id}/api_version"),
        json!({"api_version": OLD}),
    )
    .await;

    // A payment made now: its events and its retrieval speak 2022-08-01.
    let pi = h
        .post(
            &key,
            "/v1/payment_intents",
            &[
                ("amount", "1200"),
                ("currency", "usd"),
                ("confirm", "true"),
                ("payment_method", "pm_card_visa"),
            ],
        )
        .await;
    assert_eq!(pi.status, 200, "{}", pi.text);
    assert_eq!(pi.header("stripe-version"), Some(OLD));
    let pi_id = pi.json["id"].as_str().unwrap().to_owned();
    assert_eq!(pi.json["charges"]["object"], "list", "{}", pi.text);
    assert!(pi.json.get("latest_charge").is_none());
    let event = latest_event(&h, &key, "payment_intent.succeeded").await;
    let old_event_id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["api_version"], OLD);
    assert_eq!(
        event["data"]["object"]["charges"]["data"][0]["object"],
        "charge"
    );
    assert_eq!(
        event["data"]["object"]["charges"]["data"][0]["refunds"]["object"], "list",
        "a charge of 2022-08-01 carries its refunds"
    );
    // The request's own version wins.
    let pinned = h
        .send(
            h.http
                .get(format!("{}/v1/payment_intents/{pi_id}", h.base))
                .bearer_auth(&key)
                .header("Stripe-Version", "2023-08-16"),
        )
        .await;
    assert!(pinned.json.get("charges").is_none() && pinned.json["latest_charge"].is_string());
    assert_eq!(pinned.header("stripe-version"), Some("2023-08-16"));
    // ... but not for events: they keep their own.
    let listed = h
        .send(
            h.http
                .get(format!(
                    "{}/v1/events?limit=1&type=payment_intent.succeeded",
                    h.base
                ))
                .bearer_auth(&key)
                .header("Stripe-Version", "2023-08-16"),
        )
        .await;
    assert_eq!(listed.json["data"][0]["api_version"], OLD);
    assert!(listed.json["data"][0]["data"]["object"]["charges"].is_object());

    // An upgrade to basil: new events are basil, the old one stays as it was.
    h.control(
        "POST",
        &format!("/accounts/{id}/api_version"),
        json!({"api_version": BASIL}),
    )
    .await;
    let customer = h
        .post(&key, "/v1/customers", &[("email", "v@example.com")])
        .await;
    let price = h.get(&key, "/v1/prices?limit=1&type=recurring").await.json["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = h
        .post(
            &key,
            "/v1/subscriptions",
            &[
                ("customer", customer.json["id"].as_str().unwrap()),
                ("items[0][price]", &price),
            ],
        )
        .await;
    assert_eq!(sub.status, 200, "{}", sub.text);
    assert!(sub.json.get("current_period_end").is_none(), "{}", sub.text);
    assert!(sub.json["items"]["data"][0]["current_period_end"].is_i64());
    let event = latest_event(&h, &key, "customer.subscription.created").await;
    assert_eq!(event["api_version"], BASIL);
    assert!(
        event["data"]["object"]
            .get("current_period_start")
            .is_none()
    );
    let invoice = latest_event(&h, &key, "invoice.created").await;
    assert_eq!(
        invoice["data"]["object"]["parent"]["subscription_details"]["subscription"],
        sub.json["id"]
    );
    assert!(invoice["data"]["object"].get("subscription").is_none());
    let old = h
        .get(&key, &format!("/v1/events/{old_event_id}"))
        .await
        .json;
    assert_eq!(old["api_version"], OLD, "an older event keeps its version");
    assert!(old["data"]["object"]["charges"].is_object());

    // Nonsense versions are refused.
    let bad = h
        .send(
            h.http
                .get(format!("{}/v1/customers", h.base))
                .bearer_auth(&key)
                .header("Stripe-Version", "latest"),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.message().contains("Invalid Stripe API version"));
}
