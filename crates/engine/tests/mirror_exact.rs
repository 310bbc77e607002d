//! After a sync the mirror equals the emulator's own state, object for object and field for
//! field: subscriptions in every status, archived prices, deleted objects, sub-lists longer than
//! their embedded page, and objects changed while the backfill ran.

mod support;

use std::sync::Arc;

use serde_json::json;
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::sync::{Quiet, SyncOptions, sync};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;
use support::{World, compare};

/// Adds a subscription with 12 items (and so an invoice with 12 lines) through the API.
async fn big_subscription(world: &World) {
    let http = reqwest::Client::new();
    let key = world.key("secret_test");
    let post = |path: &str, form: Vec<(String, String)>| {
        http.post(format!("{}{path}", world.server.base_url()))
            .bearer_auth(&key)
            .form(&form)
            .send()
    };
    let product: serde_json::Value = post("/v1/products", vec![("name".into(), "Seats".into())])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customer: serde_json::Value = post(
        "/v1/customers",
        vec![("email".into(), "big@example.com".into())],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut form = vec![(
        "customer".to_owned(),
        customer["id"].as_str().unwrap().to_owned(),
    )];
    for n in 0..12 {
        let price: serde_json::Value = post(
            "/v1/prices",
            vec![
                ("product".into(), product["id"].as_str().unwrap().into()),
                ("currency".into(), "usd".into()),
                ("unit_amount".into(), (100 + n).to_string()),
                ("recurring[interval]".into(), "month".into()),
            ],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        form.push((
            format!("items[{n}][price]"),
            price["id"].as_str().unwrap().to_owned(),
        ));
    }
    let sub: serde_json::Value = post("/v1/subscriptions", form)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sub["items"]["has_more"], json!(true));
}

async fn exact_after_changes_during_and_after_backfill(database: Option<&str>, name: &str) {
    let world = World::start(200, 11, name).await;
    big_subscription(&world).await;
    let engine = Arc::new(world.engine(database));
    let key = ApiKey::parse(&world.key("restricted_test")).unwrap();
    let outcome = connect(&engine, key, ConnectOptions::default())
        .await
        .unwrap();
    let connection = Connection::new(outcome.account.account_id.clone(), false);

    // Changes keep arriving while the backfill runs.
    let backfill = {
        let engine = engine.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            sync(
                &engine,
                &connection,
                &SyncOptions {
                    concurrency: 4,
                    ..Default::default()
                },
                Arc::new(Quiet),
            )
            .await
        })
    };
    let mut made = 0;
    let mut round = 0;
    while !backfill.is_finished() {
        made += world.activity(5, 100 + round);
        round += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = backfill.await.unwrap().unwrap();
    assert_eq!(report.run.kind, "backfill");
    assert_eq!(report.run.status, "succeeded", "{:?}", report.notes);
    assert!(made > 0, "changes were made during the backfill");
    // Changes made after the run read its last events page belong to the next run: one more,
    // with nothing changing, brings the mirror level.
    let settle = sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(settle.run.kind, "incremental");
    assert_exact(
        &format!("after the backfill ({made} changes during it)"),
        compare(&world, &engine, &connection),
    );

    // Then more changes, and an incremental run.
    world.activity(300, 7);
    let report = sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert_eq!(report.run.kind, "incremental");
    let compared = assert_exact(
        "after the incremental run",
        compare(&world, &engine, &connection),
    );

    // The mirror holds what a user expects to query.
    let (_, statuses) = engine
        .store
        .query("SELECT DISTINCT status FROM subscriptions ORDER BY status")
        .unwrap();
    let statuses: Vec<String> = statuses.into_iter().filter_map(|r| r[0].clone()).collect();
    for status in [
        "active",
        "canceled",
        "past_due",
        "trialing",
        "unpaid",
        "incomplete",
        "incomplete_expired",
        "paused",
    ] {
        assert!(
            statuses.contains(&status.to_owned()),
            "a {status} subscription is mirrored: {statuses:?}"
        );
    }
    let (_, archived) = engine
        .store
        .query("SELECT count(*) FROM prices WHERE NOT active")
        .unwrap();
    assert_ne!(
        archived[0][0].as_deref(),
        Some("0"),
        "archived prices are mirrored"
    );
    let (_, deleted) = engine
        .store
        .query("SELECT count(*) FROM customers WHERE deleted")
        .unwrap();
    assert_ne!(
        deleted[0][0].as_deref(),
        Some("0"),
        "deleted customers are marked"
    );
    let (_, items) = engine.store.query("SELECT max(n) FROM (SELECT count(*) AS n FROM subscription_items WHERE NOT deleted GROUP BY subscription) AS t").unwrap();
    assert_eq!(
        items[0][0].as_deref(),
        Some("12"),
        "items beyond the embedded page are mirrored"
    );
    let (_, lines) = engine.store.query("SELECT max(n) FROM (SELECT count(*) AS n FROM invoice_line_items GROUP BY parent_id) AS t").unwrap();
    assert_eq!(
        lines[0][0].as_deref(),
        Some("12"),
        "invoice lines beyond the embedded page are mirrored"
    );
    assert!(compared > 3_000, "compared {compared} objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mirror_is_exact() {
    exact_after_changes_during_and_after_backfill(None, "exact-sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mirror_is_exact() {
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run the Postgres exactness test"
        );
        return;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}schema=sm_exact_{}", std::process::id());
    exact_after_changes_during_and_after_backfill(Some(&target), "exact-postgres").await;
}

/// Stripe's API through every fault the emulator has, one request in ten: resets, bodies cut
/// short, 200s carrying a proxy's HTML page, 500, 503, both kinds of 429, slow answers. Each is
/// asked again within the retry budget, and the mirror still equals the emulator's objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_made_through_every_fault_is_exact() {
    let world = World::start(60, 23, "exact-faults").await;
    let engine = Arc::new(world.engine_retrying(None, 6));
    let key = ApiKey::parse(&world.key("restricted_test")).unwrap();
    let outcome = connect(&engine, key, ConnectOptions::default())
        .await
        .unwrap();
    let connection = Connection::new(outcome.account.account_id.clone(), false);
    *world.server.emulator.limits.faults.write() = sm_emulator::limits::FaultSettings {
        reset: 0.0125,
        truncated: 0.0125,
        html: 0.0125,
        server_error: 0.0125,
        unavailable: 0.0125,
        rate_limit: 0.0125,
        lock_timeout: 0.0125,
        slow: 0.0125,
        slow_ms: 50,
    };
    let mut requests = 0;
    for (changes, seed) in [(0, 0), (150, 31)] {
        if changes > 0 {
            world.activity(changes, seed);
        }
        let report = sync(
            &engine,
            &connection,
            &SyncOptions {
                concurrency: 4,
                ..Default::default()
            },
            Arc::new(Quiet),
        )
        .await
        .unwrap();
        assert_eq!(report.run.status, "succeeded", "{:?}", report.notes);
        requests += report.run.requests;
    }
    *world.server.emulator.limits.faults.write() = Default::default();
    let compared = assert_exact("through faults", compare(&world, &engine, &connection));
    assert!(compared > 500, "compared {compared} objects");
    eprintln!("{requests} requests, one in ten faulty; {compared} objects exact");
}

/// Fails, listing the first 30 differences, unless the mirror was exact; how many objects were
/// compared.
fn assert_exact(when: &str, (differences, compared): (Vec<String>, usize)) -> usize {
    assert!(
        differences.is_empty(),
        "{when}, {} differences of {compared}:\n{}",
        differences.len(),
        differences[..differences.len().min(30)].join("\n")
    );
    compared
}
