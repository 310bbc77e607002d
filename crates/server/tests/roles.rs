//! An intake and a worker as separate processes on one Postgres (two engines, two servers, as
//! `serve --role intake` and `serve --role worker` run): Stripe's deliveries reach only the
//! intake, which keeps and answers them; the worker claims the connection its deliveries
//! stamped and applies them, and the mirror ends equal to the emulator's objects. Each role
//! answers only its own routes. Skipped without `STRIPE_MIRROR_TEST_POSTGRES_URL`.

mod support;

use std::time::Duration;

use sm_emulator::webhooks::DeliverySettings;
use sm_server::Role;
use support::{Server, World, compare, describe, settle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_keeps_deliveries_and_a_worker_applies_them() {
    let Ok(url) = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: intake and worker roles on Postgres — set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it"
        );
        return;
    };
    let world = World::start(10, 63, "roles").await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}schema=sm_roles_{}", std::process::id());
    let worker_engine = world.engine_on(&target);
    let intake_engine = world.engine_on(&target);
    let connection = world.connect(&worker_engine, None).await;
    world.sync(&worker_engine).await;
    world.set_webhooks(DeliverySettings {
        shuffle: true,
        shuffle_window: 100,
        duplicate: 0.2,
        retry_base_ms: 200,
        max_attempts: 8,
        timeout_ms: 10_000,
        ..Default::default()
    });
    // As `serve` runs: every delivery answered once kept.
    let answered_once_kept = (300, Default::default(), Duration::ZERO);
    let intake = Server::start_role(
        intake_engine.clone(),
        None,
        Duration::from_secs(3600),
        answered_once_kept,
        None,
        Role::Intake,
    )
    .await;
    // The worker makes the account's endpoint, pointing at the intake.
    let worker = Server::start_role(
        worker_engine.clone(),
        Some(&intake.base),
        Duration::from_secs(3600),
        answered_once_kept,
        None,
        Role::Worker,
    )
    .await;
    worker.wait_for_sync(&world.http, &connection.label()).await;
    let endpoints = world.stripe_ok("GET", "/v1/webhook_endpoints", &[]).await;
    assert_eq!(
        endpoints["data"][0]["url"],
        format!("{}/webhooks/{}/test", intake.base, connection.account_id)
    );
    let syncs_before = worker_engine.store.runs(&connection, 100).unwrap().len();

    let mut changes = 0;
    for burst in 0..3 {
        changes += world.activity(150, 9_100 + burst).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let settled = settle(&world, &worker_engine).await;
    let counts = world.delivery_counts();
    let kept = intake.webhook_outcomes(&world.http).await;
    let applied = worker.webhook_outcomes(&world.http).await;
    eprintln!(
        "roles: {changes} changes; settled {settled:?} later; emulator {counts:?}; intake {kept:?}; worker {applied:?}"
    );
    assert_eq!(counts.given_up, 0, "{counts:?}");
    assert_eq!(counts.failed_attempts, 0, "{counts:?}");
    let delivered: u64 = kept.values().sum();
    assert!(
        delivered > 0 && kept.keys().all(|outcome| outcome == "queued"),
        "the intake only keeps: {kept:?}"
    );
    let applied_total: u64 = applied
        .iter()
        .filter(|(outcome, _)| *outcome != "apply_failed")
        .map(|(_, n)| n)
        .sum();
    assert!(
        applied_total > 0 && !applied.contains_key("apply_failed"),
        "the worker applied what the intake kept: {applied:?}"
    );
    assert_eq!(
        worker_engine.store.runs(&connection, 100).unwrap().len(),
        syncs_before,
        "no sync ran: the deliveries did it"
    );
    let (differences, compared) = compare(
        &world,
        &worker_engine,
        &connection,
        &["balance_transactions"],
    );
    assert!(
        differences.is_empty(),
        "after {compared} objects compared: {}",
        describe(&differences)
    );
    let lease = worker_engine
        .store
        .leases()
        .unwrap()
        .into_iter()
        .find(|l| l.connection == connection)
        .unwrap();
    assert_eq!(lease.inbox_since, None, "nothing waits: {lease:?}");
    assert_eq!(intake.state.leases_held(), 0, "an intake holds nothing");
    // Each process says what it is and what it holds.
    let metrics = world
        .http
        .get(format!("{}/metrics", intake.base))
        .bearer_auth(&intake.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("stripe_mirror_process{role=\"intake\"")
            && metrics.contains("stripe_mirror_leases_held 0")
            && metrics.contains("stripe_mirror_leases_max 0"),
        "{metrics}"
    );
    let health = worker.health(&world.http).await;
    assert_eq!(
        (&health["process"]["role"], &health["process"]["max_leases"]),
        (&serde_json::json!("worker"), &serde_json::json!(8)),
        "{health}"
    );

    // Each role answers its own routes only.
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("an answer").status().as_u16()
    };
    let webhook_path = format!("/webhooks/{}/test", connection.account_id);
    assert_eq!(
        status(
            world
                .http
                .post(format!("{}{webhook_path}", worker.base))
                .body("{}")
        )
        .await,
        404,
        "a worker takes no webhooks"
    );
    assert_eq!(
        status(
            world
                .http
                .get(format!("{}/api/v1/accounts", intake.base))
                .bearer_auth(&worker.token)
        )
        .await,
        404,
        "an intake serves no API"
    );
    for server in [&intake, &worker] {
        assert_eq!(
            status(world.http.get(format!("{}/healthz", server.base))).await,
            200
        );
    }
    intake.stop().await;
    worker.stop().await;
}
