//! The customer reads the agent tools stand on (`ops::objects::search_customers`,
//! `customer_overview`), on SQLite and on Postgres (when `STRIPE_MIRROR_TEST_POSTGRES_URL` is
//! set): found by part of an email, a name or a metadata value, any case; a quote and LIKE's
//! wildcards taken literally; one customer with their subscriptions, invoices and payments.

mod support;

use std::sync::Arc;

use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::ops::objects::{customer_overview, search_customers};
use sm_engine::sync::{Quiet, SyncOptions, sync};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;
use support::World;

/// What the searches and the overview answered, to compare across backends.
async fn reads(database: Option<&str>, name: &str) -> Vec<String> {
    let world = World::start(20, 5, name).await;
    let made: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/customers", world.server.base_url()))
        .bearer_auth(world.key("secret_test"))
        .form(&[
            ("email", "grace.hopper@example.com"),
            ("name", "Grace O'Hopper"),
            ("metadata[tier]", "Platinum_50%"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let engine = Arc::new(world.engine(database));
    let key = ApiKey::parse(&world.key("restricted_test")).unwrap();
    let outcome = connect(&engine, key, ConnectOptions::default())
        .await
        .unwrap();
    let connection = Connection::new(outcome.account.account_id.clone(), false);
    sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    for (text, expect_found) in [
        ("HOPPER@EXAMPLE", true),
        ("o'hop", true),
        ("platinum_50%", true),
        // As LIKE patterns these would match her; taken literally they do not.
        ("platinum_5_%", false),
        ("o_hop", false),
    ] {
        let found = search_customers(&engine, &connection, text, 10)
            .await
            .unwrap();
        let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids.contains(&id.as_str()),
            expect_found,
            "{text:?} → {ids:?}"
        );
        if expect_found {
            assert_eq!(ids, vec![id.as_str()], "{text:?} finds only her");
        }
        seen.push(format!("{text}: {}", found.len()));
    }
    let bad = search_customers(&engine, &connection, " ", 10)
        .await
        .unwrap_err();
    assert_eq!(bad.code, sm_engine::ErrorCode::InvalidInput);

    let by_email = customer_overview(&engine, &connection, "grace.hopper@example.com", 5)
        .await
        .unwrap();
    assert_eq!(by_email["customer"]["id"], id.as_str());
    assert_eq!(by_email["customer"]["metadata"]["tier"], "Platinum_50%");
    // A seeded customer with payments: each payment's amount in words.
    let payer = sm_engine::ops::query::values(
        &engine,
        "SELECT customer, count(*) FROM charges WHERE customer IS NOT NULL AND currency = 'usd' GROUP BY customer ORDER BY 2 DESC, 1 LIMIT 1",
    )
    .await
    .unwrap()
    .1[0][0]
        .as_str()
        .unwrap()
        .to_owned();
    let overview = customer_overview(&engine, &connection, &payer, 2)
        .await
        .unwrap();
    let payments = overview["payments"].as_array().unwrap();
    assert!(!payments.is_empty() && payments.len() <= 2);
    for payment in payments {
        let amount = payment["amount"].as_i64().unwrap();
        assert_eq!(
            payment["amount_formatted"],
            sm_engine::money::format(amount, "usd")
        );
    }
    seen.push(format!(
        "{payer}: {} subscriptions, {} invoices, {} payments",
        overview["subscriptions"].as_array().unwrap().len(),
        overview["invoices"].as_array().unwrap().len(),
        payments.len()
    ));
    let missing = customer_overview(&engine, &connection, "cus_Nobody1", 5)
        .await
        .unwrap_err();
    assert_eq!(missing.code, sm_engine::ErrorCode::NotFound);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_found_and_shown_alike_on_sqlite_and_postgres() {
    let on_sqlite = reads(None, "customer-reads-sqlite").await;
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped the Postgres half: set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it"
        );
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}schema=sm_customers_{}", std::process::id());
    let on_postgres = reads(Some(&target), "customer-reads-postgres").await;
    assert_eq!(on_sqlite, on_postgres, "the same answers on both backends");
}
