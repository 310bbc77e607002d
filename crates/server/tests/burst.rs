//! Intake under ordinary bursts, as `serve` runs (every delivery answered once stored, applied
//! behind): six bursts of 300 changes a few seconds apart, delivered as Stripe does — shuffled,
//! 30% twice, 10% late, a 10 s timeout, retries. No delivery may time out or be given up, and once
//! the inbox has drained the mirror equals the emulator in every table (balance transactions,
//! which no event carries, listed soon after the payment events that made them).
//!
//! Before the inbox (issue "Webhook intake under a burst"), this scenario drew thousands of
//! timeouts: deliveries waited in their handlers on refetches paced by the rate budget.

mod support;

use std::time::{Duration, Instant};

use sm_emulator::webhooks::DeliverySettings;
use support::{Server, World, compare, describe, settle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_answered_at_once_and_applied_behind() {
    let world = World::start(20, 43, "burst").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    world.set_webhooks(DeliverySettings {
        shuffle: true,
        shuffle_window: 300,
        duplicate: 0.3,
        late: 0.1,
        late_ms: 1_500,
        retry_base_ms: 200,
        max_attempts: 8,
        timeout_ms: 10_000,
        ..Default::default()
    });
    // Balance transactions (no events carry them) listed two seconds after payment events.
    let server = Server::start_config(
        engine.clone(),
        Some(""),
        Duration::from_secs(3600),
        300,
        Default::default(),
        Duration::ZERO,
        Some(Duration::from_secs(2)),
    )
    .await;
    server.wait_for_sync(&world.http, &connection.label()).await;
    let syncs_before = engine.store.runs(&connection, 100).unwrap().len();

    let started = Instant::now();
    let mut changes = 0;
    for burst in 0..6 {
        changes += world.activity(300, 7_000 + burst).await;
        tokio::time::sleep(Duration::from_millis(3_000 + 400 * burst)).await;
    }
    let bursts_took = started.elapsed();

    let settled = settle(&world, &engine).await;
    let counts = world.delivery_counts();
    let outcomes = server.webhook_outcomes(&world.http).await;
    eprintln!(
        "burst: {changes} changes in 6 bursts over {bursts_took:?}; settled {settled:?} later; emulator {counts:?}; serve {outcomes:?}"
    );
    assert_eq!(counts.given_up, 0, "no delivery given up: {counts:?}");
    assert_eq!(
        counts.failed_attempts, 0,
        "no delivery timed out or failed: {counts:?}"
    );
    assert_eq!(
        outcomes.get("apply_failed").copied().unwrap_or(0),
        0,
        "{outcomes:?}"
    );
    assert_eq!(
        engine.store.runs(&connection, 100).unwrap().len(),
        syncs_before,
        "only webhooks moved the mirror"
    );
    // Every table; the last listing of balance transactions follows the last payment events.
    let compared_from = Instant::now();
    let (differences, compared) = loop {
        let (differences, compared) = compare(&world, &engine, &connection, &[]);
        if differences.is_empty() || compared_from.elapsed() > Duration::from_secs(30) {
            break (differences, compared);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        outcomes.get("refetched").copied().unwrap_or(0) > 0
            && outcomes.get("coalesced").copied().unwrap_or(0) > 0,
        "ties were settled by refetches, some shared: {outcomes:?}"
    );
    assert!(
        differences.is_empty(),
        "after {compared} objects compared: {}",
        describe(&differences)
    );
}

/// Senders that hang up before the answer: each delivery's answer waits for its apply (10 s at
/// most, as the tests run serve), and the sender gives up after 25 ms, closing the connection,
/// then delivers again. A hang-up must cut nothing short — the apply runs in the inbox worker's
/// task, not the handler's — so once deliveries settle every object equals the emulator's, in
/// content and so in the order its changes were applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_hanging_up_mid_delivery_cut_nothing_short() {
    let world = World::start(20, 47, "hangup").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    world.set_webhooks(DeliverySettings {
        shuffle: true,
        shuffle_window: 100,
        duplicate: 0.3,
        retry_base_ms: 100,
        max_attempts: 40,
        timeout_ms: 25,
        ..Default::default()
    });
    let server = Server::start_with(
        engine.clone(),
        Some(""),
        Duration::from_secs(3600),
        300,
        Default::default(),
        Duration::from_secs(10),
    )
    .await;
    server.wait_for_sync(&world.http, &connection.label()).await;
    let mut changes = 0;
    for burst in 0..3 {
        changes += world.activity(200, 8_000 + burst).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    let settled = settle(&world, &engine).await;
    let counts = world.delivery_counts();
    let outcomes = server.webhook_outcomes(&world.http).await;
    eprintln!(
        "hang-ups: {changes} changes; settled {settled:?} after the last; emulator {counts:?}; serve {outcomes:?}"
    );
    assert!(counts.timed_out > 0, "senders hung up: {counts:?}");
    assert_eq!(counts.given_up, 0, "{counts:?}");
    assert_eq!(
        outcomes.get("apply_failed").copied().unwrap_or(0),
        0,
        "{outcomes:?}"
    );
    let (differences, compared) = compare(&world, &engine, &connection, &["balance_transactions"]);
    assert!(
        differences.is_empty(),
        "after {compared} objects compared: {}",
        describe(&differences)
    );
}
