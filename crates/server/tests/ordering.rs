//! Whatever the order, duplication or delay of deliveries, the final mirror equals the emulator's
//! state: over 10,000 events delivered fully shuffled (windows of 500), 30% twice, 10% held back
//! 1.5 s (arriving after later ones), through serve's managed endpoint — plus forged, expired,
//! unsigned and replayed deliveries, all refused without changing anything. No sync runs while
//! the deliveries flow (the interval is an hour): only webhooks move the mirror.
//!
//! Left out of the final comparison, on purpose: `balance_transactions`, which have no events
//! (API.md §6) and so only ever come by sync.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sm_emulator::webhooks::DeliverySettings;
use sm_engine::catalog::MIRRORED_EVENT_TYPES;
use support::{Proxy, Server, World, compare, deliver, describe, has_event, mirror_row, sign};

/// Tables only a sync fills; see the module comment.
const SYNC_ONLY: &[&str] = &["balance_transactions"];
const EVENTS_WANTED: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_shuffled_duplicated_late_deliveries_leave_the_mirror_exact() {
    let started = Instant::now();
    let world = World::start(20, 41, "ordering").await;
    // A coupon nothing else touches: the forged deliveries aim at it.
    let coupon = world
        .stripe_ok(
            "POST",
            "/v1/coupons",
            &[("percent_off", "10"), ("duration", "once"), ("name", "Ten")],
        )
        .await;
    let coupon_id = coupon["id"].as_str().unwrap().to_owned();
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    let (differences, compared) = compare(&world, &engine, &connection, &[]);
    assert!(
        differences.is_empty(),
        "after the backfill: {}",
        describe(&differences)
    );
    world.set_webhooks(DeliverySettings {
        shuffle: true,
        shuffle_window: 500,
        duplicate: 0.3,
        late: 0.1,
        late_ms: 1_500,
        retry_base_ms: 100,
        max_attempts: 6,
        timeout_ms: 30_000,
        ..Default::default()
    });

    // serve, whose managed endpoint points at a recording proxy in front of it.
    let proxy = Proxy::start().await;
    let server = Server::start(
        engine.clone(),
        Some(&proxy.base),
        Duration::from_secs(3600),
        300,
    )
    .await;
    proxy.forward_to(&server.base);
    server.wait_for_sync(&world.http, &connection.label()).await;
    let record = engine.account(&connection).await.unwrap();
    let endpoint = record
        .webhook_endpoint_id
        .clone()
        .expect("serve made the webhook endpoint");
    let secret = engine
        .vault
        .open_secret(
            record.webhook_secret_sealed.as_ref().unwrap(),
            &record.connection,
            sm_warehouse::SealedField::WebhookSecrets,
        )
        .unwrap()
        .to_string();
    let endpoints = world.stripe_ok("GET", "/v1/webhook_endpoints", &[]).await;
    assert_eq!(endpoints["data"][0]["id"], json!(endpoint));
    assert_eq!(
        endpoints["data"][0]["url"],
        json!(format!(
            "{}/webhooks/{}/test",
            proxy.base, connection.account_id
        ))
    );
    let syncs_before = engine.store.runs(&connection, 100).unwrap().len();
    let before: HashSet<String> = world
        .emulator_events()
        .into_iter()
        .map(|(id, ..)| id)
        .collect();
    let mirror_events_before = engine.store.event_count(&connection).unwrap();
    let setup_took = started.elapsed();

    // Changes until over 10,000 events went out, keeping the backlog bounded; forged and
    // replayed deliveries half-way.
    let listened = |world: &World| -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut other = 0;
        for (id, event_type, _) in world.emulator_events() {
            if before.contains(&id) {
                continue;
            }
            if MIRRORED_EVENT_TYPES.contains(&event_type.as_str()) {
                ids.push(id);
            } else {
                other += 1;
            }
        }
        (ids, other)
    };
    let mut changes = 0;
    let mut seed = 1_000;
    let mut forged_sent = None;
    let activity_started = Instant::now();
    let listened_before = world.emulator_event_count(MIRRORED_EVENT_TYPES);
    loop {
        let made = world.emulator_event_count(MIRRORED_EVENT_TYPES) - listened_before;
        if made >= EVENTS_WANTED {
            break;
        }
        if forged_sent.is_none() && made >= EVENTS_WANTED / 2 {
            forged_sent =
                Some(forge_and_replay(&world, &server, &proxy, &engine, &secret, &coupon_id).await);
        }
        let mirrored = engine.store.event_count(&connection).unwrap() - mirror_events_before;
        if made as u64 > mirrored + 1_500 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        changes += world.activity(50, seed).await;
        seed += 1;
        assert!(
            activity_started.elapsed() < Duration::from_secs(120),
            "too slow: {made} events in {:?}",
            activity_started.elapsed()
        );
    }
    let forged_sent = forged_sent.expect("forged deliveries were sent");
    let activity_took = activity_started.elapsed();

    // Deliveries settle: every event is in the mirror, nothing is on the wire, and the counts
    // stop moving (retries wait at most 1.6 s, late ones 1.5 s).
    let (ids, other_types) = listened(&world);
    let settle_started = Instant::now();
    let mut last = world.delivery_counts();
    let mut still_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let counts = world.delivery_counts();
        if counts != last || !counts.quiet() {
            last = counts;
            still_since = Instant::now();
        }
        let mirrored = support::mirror_event_ids(&engine, &connection);
        let missing = ids.iter().filter(|id| !mirrored.contains(*id)).count();
        if missing == 0 && still_since.elapsed() > Duration::from_secs(4) {
            break;
        }
        assert!(
            settle_started.elapsed() < Duration::from_secs(60),
            "deliveries did not settle in 60 s: {missing} events missing, {counts:?}"
        );
    }
    let settle_took = settle_started.elapsed();

    // No sync ran meanwhile: only webhooks moved the mirror.
    assert_eq!(
        engine.store.runs(&connection, 100).unwrap().len(),
        syncs_before,
        "no sync ran while deliveries flowed"
    );
    let counts = world.delivery_counts();
    let outcomes = server.webhook_outcomes(&world.http).await;
    let (deliveries, distinct, twice, out_of_order, statuses) = {
        let recorded = proxy.recorded.lock();
        (
            recorded.statuses.values().sum::<u64>(),
            recorded.copies.len(),
            recorded.copies.values().filter(|&&n| n > 1).count(),
            recorded.out_of_order,
            recorded.statuses.clone(),
        )
    };
    let (differences, compared_after) = compare(&world, &engine, &connection, SYNC_ONLY);
    eprintln!(
        "ordering: {} events of mirrored types (+{other_types} of other types, not sent), from {changes} changes; \
         {deliveries} deliveries reached serve ({} distinct events, {twice} delivered more than once, \
         {} out of order); answers {:?}; emulator counts {counts:?}; \
         serve outcomes {outcomes:?}; forged/replayed sent {forged_sent}; compared {compared_after} objects \
         (before: {compared}); setup {setup_took:?}, activity {activity_took:?}, settle {settle_took:?}, total {:?}",
        ids.len(),
        distinct,
        out_of_order,
        statuses,
        started.elapsed()
    );
    assert!(
        differences.is_empty(),
        "after {} events by webhook only: {}",
        ids.len(),
        describe(&differences)
    );
    assert!(ids.len() >= EVENTS_WANTED);
    assert_eq!(distinct, ids.len(), "every event was delivered");
    assert!(
        counts.duplicated as f64 >= 0.25 * ids.len() as f64,
        "about 30% sent twice: {counts:?}"
    );
    assert!(out_of_order > 1_000, "deliveries came out of order");
    assert_eq!(counts.given_up, 0, "no delivery was given up: {counts:?}");
    for (outcome, sent) in [
        ("rejected_missing_signature", 1),
        ("rejected_forged_signature", 2),
        ("rejected_expired_signature", 1),
    ] {
        assert_eq!(
            outcomes.get(outcome).copied().unwrap_or(0),
            sent,
            "{outcome}: only the forged ones: {outcomes:?}"
        );
    }
    // Same-second duplicates from the emulator are indistinguishable from replays: they are
    // refused too (and succeed on a retry with a new timestamp).
    assert_eq!(
        outcomes.get("rejected_replay").copied().unwrap_or(0),
        2 + statuses.get(&409).copied().unwrap_or(0),
        "{outcomes:?}"
    );
    assert_eq!(
        mirror_row(&engine, &connection, "coupons", &coupon_id)
            .unwrap()
            .1,
        world.emulator_object(&coupon_id).unwrap().1,
        "the forged deliveries' coupon is untouched"
    );
    server.stop().await;
}

/// Sends deliveries that must all be refused and change nothing: a forged `coupon.updated`
/// (newer than anything stored, so it would apply) signed with another secret, unsigned, and
/// correctly signed 10 minutes ago; a body changed under a captured signature; and a captured
/// genuine delivery replayed byte for byte and with its header dressed differently. Returns
/// what was sent, for the report.
async fn forge_and_replay(
    world: &World,
    server: &Server,
    proxy: &Proxy,
    engine: &sm_engine::Engine,
    secret: &str,
    coupon_id: &str,
) -> String {
    let connection = world.connection();
    let url = server.webhook_url(&connection.account_id);
    let coupon_before = mirror_row(engine, &connection, "coupons", coupon_id);
    let mut coupon = coupon_before.clone().unwrap().1;
    coupon["name"] = json!("FORGED");
    let now = sm_engine::now();
    let forged = |n: u32| -> Vec<u8> {
        support::event_json(
            &format!("evt_forged_{n}"),
            "coupon.updated",
            now + 100,
            coupon.clone(),
        )
    };
    let attempts: Vec<(&str, Vec<u8>, Option<String>, u16)> = vec![
        (
            "another secret",
            forged(1),
            Some(sign("whsec_someone_else_0123456789", now, &forged(1))),
            400,
        ),
        ("no signature", forged(2), None, 400),
        (
            "the right secret, 10 minutes ago",
            forged(3),
            Some(sign(secret, now - 600, &forged(3))),
            400,
        ),
    ];
    let mut sent = Vec::new();
    for (what, body, header, expected) in &attempts {
        let (status, answer) = deliver(&world.http, &url, body, header.as_deref()).await;
        assert_eq!(status, *expected, "{what}: {answer}");
        sent.push(format!("{what}: {status}"));
    }
    // A captured genuine delivery (the emulator's own bytes, answered 200).
    let (header, body) = {
        let recorded = proxy.recorded.lock();
        let (header, body, status) = recorded.captured.first().expect("a captured delivery");
        assert_eq!(*status, 200);
        (header.clone(), body.clone())
    };
    let (status, answer) = deliver(&world.http, &url, &body, Some(&header)).await;
    assert_eq!(status, 409, "a byte-for-byte replay: {answer}");
    sent.push(format!("byte-for-byte replay: {status}"));
    let (status, answer) =
        deliver(&world.http, &url, &body, Some(&format!("{header},v0=0a0b"))).await;
    assert_eq!(status, 409, "a replay with its header dressed: {answer}");
    sent.push(format!("replay with a v0 added: {status}"));
    let mut changed: Value = serde_json::from_slice(&body).unwrap();
    changed["id"] = json!("evt_forged_4");
    let changed = serde_json::to_vec(&changed).unwrap();
    let (status, answer) = deliver(&world.http, &url, &changed, Some(&header)).await;
    assert_eq!(
        status, 400,
        "a body changed under a captured signature: {answer}"
    );
    sent.push(format!("changed body, captured signature: {status}"));
    for n in 1..=4 {
        assert!(
            !has_event(engine, &connection, &format!("evt_forged_{n}")),
            "evt_forged_{n} was stored"
        );
    }
    assert_eq!(
        mirror_row(engine, &connection, "coupons", coupon_id),
        coupon_before,
        "the coupon is untouched"
    );
    sent.join(", ")
}
