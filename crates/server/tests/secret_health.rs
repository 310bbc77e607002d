//! A wrong webhook signing secret does not fail silently: a run of refused signatures shows in
//! `/healthz` (status degraded, in words) and in the account's state that `accounts` reads; a new
//! secret set without touching the data makes deliveries verify again, and during a roll both
//! the old and the new secret are accepted.

mod support;

use std::time::Duration;

use sm_engine::connect::set_webhook_secret;
use support::{Server, World, deliver, event_json, sign};

const WRONG: &str = "whsec_what_the_mirror_was_given_0000";
const RIGHT: &str = "whsec_what_stripe_signs_with_111111";
const NEXT: &str = "whsec_the_rolled_secret_2222222222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_signatures_are_said_and_a_new_secret_mends_them() {
    let world = World::start(3, 71, "secret-health").await;
    let engine = world.engine();
    let connection = world.connect(&engine, Some(WRONG)).await;
    world.sync(&engine).await;
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let label = connection.label();
    server.wait_for_sync(&world.http, &label).await;
    let url = server.webhook_url(&connection.account_id);
    let rows_before = engine.store.event_count(&connection).unwrap();

    // Stripe signs with the right secret; the mirror was given another: each is refused.
    let now = sm_engine::now();
    for n in 0..6 {
        let body = event_json(
            &format!("evt_refused_{n}"),
            "customer.updated",
            now,
            serde_json::json!({"id": "cus_x", "object": "customer"}),
        );
        let (status, _) = deliver(&world.http, &url, &body, Some(&sign(RIGHT, now, &body))).await;
        assert_eq!(status, 400);
    }
    let health = server.health(&world.http).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let words = health["accounts"][&label]["webhooks"]
        .as_str()
        .unwrap_or_default();
    assert!(
        words.contains("webhooks refused: the signing secret does not match — update it"),
        "{health}"
    );
    // Written down for other processes (`accounts`), once.
    let written = support::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        engine
            .store
            .state(&connection, sm_engine::WEBHOOKS_REFUSED)
            .unwrap()
            .is_some_and(|v| v.starts_with("5 "))
    })
    .await;
    assert!(written, "the refusals were not recorded");

    // The right secret, set without touching the data; then a roll keeps both accepted.
    set_webhook_secret(&engine, &connection, RIGHT, false)
        .await
        .unwrap();
    assert_eq!(engine.store.event_count(&connection).unwrap(), rows_before);
    assert!(
        engine
            .store
            .state(&connection, sm_engine::WEBHOOKS_REFUSED)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        set_webhook_secret(&engine, &connection, NEXT, true)
            .await
            .unwrap(),
        2
    );
    for (n, secret) in [RIGHT, NEXT].into_iter().enumerate() {
        let body = event_json(
            &format!("evt_accepted_{n}"),
            "customer.updated",
            now,
            serde_json::json!({"id": "cus_x", "object": "customer"}),
        );
        let (status, answer) =
            deliver(&world.http, &url, &body, Some(&sign(secret, now, &body))).await;
        assert_eq!(status, 200, "{secret}: {answer}");
    }
    let health = server.health(&world.http).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["accounts"][&label]["webhooks"].is_null(), "{health}");
    // A secret no longer in use is refused again.
    let body = event_json(
        "evt_old",
        "customer.updated",
        now,
        serde_json::json!({"id": "cus_x", "object": "customer"}),
    );
    let (status, _) = deliver(&world.http, &url, &body, Some(&sign(WRONG, now, &body))).await;
    assert_eq!(status, 400);
    server.stop().await;
}
