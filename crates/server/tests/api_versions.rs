//! A real account's events arrive in its own API version, and the mirror stays in one: an
//! account whose default (2022-08-01) is older than the mirror's pinned version, changed through
//! the API, mirrored from the Events API *and* from deliveries to an endpoint made by hand in a
//! third version (2025-03-31.basil); then the account upgrades its default mid-stream. After
//! each step the mirror equals the emulator's objects at the pinned version in every table, and
//! the events are kept as Stripe sent them.

mod support;

use std::time::Duration;

use support::{Server, World, compare, describe, wait_until};

const OLD: &str = "2022-08-01";
const BASIL: &str = "2025-03-31.basil";

fn exact(world: &World, engine: &sm_engine::Engine, when: &str) {
    let (differences, compared) = compare(world, engine, &world.connection(), &[]);
    assert!(
        differences.is_empty(),
        "{when}: {} differences of {compared}:\n{}",
        differences.len(),
        describe(&differences)
    );
    eprintln!("{when}: {compared} objects equal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_keeps_one_version_whatever_the_events_are_in() {
    let world = World::start_in_version(30, 91, "versions", Some(OLD)).await;
    let engine = world.engine();
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    // An endpoint made by hand, in a third version, pointing at serve.
    let endpoint = world
        .stripe_ok(
            "POST",
            "/v1/webhook_endpoints",
            &[
                ("url", &server.webhook_url(&world.account_id())),
                ("enabled_events[]", "*"),
                ("api_version", BASIL),
            ],
        )
        .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let connection = world.connect(&engine, Some(&secret)).await;
    server.wait_for_sync(&world.http, &connection.label()).await;
    exact(&world, &engine, "after the backfill");

    // Changes through the API: their events are in 2022-08-01, their deliveries in basil.
    let emulator_requests =
        |world: &World| -> u64 { world.emulator().requests.lock().values().sum() };
    let before = emulator_requests(&world);
    let events_before = engine.store.event_count(&connection).unwrap();
    let (events_made_before, delivered_before) = (
        world.emulator_events().len(),
        world.delivery_counts().succeeded,
    );
    let made = world.activity(80, 5).await;
    // Every new event delivered (deliveries go out in turns: none on the wire is not yet all).
    let expected = (world.emulator_events().len() - events_made_before) as u64;
    let delivered = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let counts = world.delivery_counts();
        counts.quiet() && counts.succeeded - delivered_before >= expected
    })
    .await;
    assert!(
        delivered,
        "the deliveries went out: {expected} events, {:?}",
        world.delivery_counts().succeeded - delivered_before
    );
    // The deliveries alone (in basil) brought every object with events up to date, in the
    // mirror's version; what has no events waits for the sync.
    let (differences, compared) = compare(
        &world,
        &engine,
        &connection,
        &[
            "balance_transactions",
            "customer_balance_transactions",
            "checkout_sessions",
            "reviews",
        ],
    );
    assert!(
        differences.is_empty(),
        "from basil deliveries: {} differences of {compared}:\n{}",
        differences.len(),
        describe(&differences)
    );
    world.sync(&engine).await;
    let events = engine.store.event_count(&connection).unwrap() - events_before;
    let requests = emulator_requests(&world) - before;
    eprintln!(
        "{made} changes: {events} events (delivered and listed), {requests} requests in all ({:.2} per event) with versions differing",
        requests as f64 / events.max(1) as f64
    );
    exact(
        &world,
        &engine,
        "after events in 2022-08-01 and deliveries in basil",
    );

    // Events are kept as Stripe sent them: in the account's version.
    let (_, rows) = engine
        .store
        .query("SELECT data FROM events WHERE type = 'payment_intent.succeeded' ORDER BY created DESC LIMIT 1")
        .unwrap();
    let kept: serde_json::Value = serde_json::from_str(rows[0][0].as_deref().unwrap()).unwrap();
    // (the delivery in basil, or the Events API's copy in 2022-08-01, whichever came first)
    let object = &kept["data"]["object"];
    match kept["api_version"].as_str() {
        Some(OLD) => {
            assert!(object["charges"].is_object() && object.get("latest_charge").is_none())
        }
        Some(BASIL) => assert!(object.get("charges").is_none()),
        other => panic!("an event in {other:?}"),
    }
    // The mirror's rows are in its own version.
    let (_, rows) = engine
        .store
        .query("SELECT count(*) FROM payment_intents WHERE json_extract(data, '$.charges') IS NOT NULL")
        .unwrap();
    assert_eq!(
        rows[0][0].as_deref(),
        Some("0"),
        "no payment intent in 2022-08-01's shape"
    );
    assert_eq!(
        engine
            .store
            .state(&connection, sm_engine::ACCOUNT_API_VERSION)
            .unwrap()
            .as_deref(),
        Some(OLD),
        "the account's default is learned from its events"
    );

    // The account upgrades its default mid-stream; more changes; the mirror stays equal.
    world
        .emulator()
        .world
        .account(&world.account_id())
        .unwrap()
        .api_version
        .write()
        .clone_from(&BASIL.to_owned());
    let (events_made_before, delivered_before) = (
        world.emulator_events().len(),
        world.delivery_counts().succeeded,
    );
    world.activity(60, 6).await;
    let expected = (world.emulator_events().len() - events_made_before) as u64;
    wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let counts = world.delivery_counts();
        counts.quiet() && counts.succeeded - delivered_before >= expected
    })
    .await;
    world.sync(&engine).await;
    exact(&world, &engine, "after the upgrade to basil");
    assert_eq!(
        engine
            .store
            .state(&connection, sm_engine::ACCOUNT_API_VERSION)
            .unwrap()
            .as_deref(),
        Some(BASIL)
    );
    // The typed columns read the mirror's version: every subscription has its period.
    let (_, rows) = engine
        .store
        .query(
            "SELECT count(*) FROM subscriptions WHERE current_period_end IS NULL AND NOT deleted",
        )
        .unwrap();
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    server.stop().await;
}
