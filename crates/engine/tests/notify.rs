//! The notifier on a real mirror: events a backfill brought are history (nothing queued); an
//! incremental sync's new events are news. A backlog past the limit goes to a chat channel as
//! one roll-up message (every delivery `rolled_up`), while a webhook channel gets every event;
//! a digest rule holds its events until its time and then sends them as one message; events
//! older than the cut-off when they arrive are not sent. Receivers are real HTTP servers on
//! 127.0.0.1.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::notify::{Notifier, NotifyConfig};
use sm_engine::ops::notify::{self, ChannelInput, RuleInput};
use sm_engine::sync::{Quiet, SyncOptions, sync};
use sm_stripe::ApiKey;
use sm_warehouse::{DeliveryQuery, DeliveryUpdate};
use support::World;

fn channel(name: &str, kind: &str, url: String) -> ChannelInput {
    ChannelInput {
        name: name.into(),
        kind: kind.into(),
        url,
        secret: None,
        token: None,
        to: Vec::new(),
        from: None,
        ca_pem: None,
    }
}

fn rule(name: &str, channel: &str) -> RuleInput {
    RuleInput {
        name: name.into(),
        channel: channel.into(),
        events: Some("*".into()),
        include_test: true,
        ..Default::default()
    }
}

/// Rounds of the notifier until nothing is due (or 20 s pass).
async fn drain(notifier: &Arc<Notifier>, engine: &sm_engine::Engine) {
    let started = std::time::Instant::now();
    loop {
        notifier.round().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let store = engine.store.clone();
        let due = tokio::task::spawn_blocking(move || store.deliveries_due(sm_engine::now(), 10))
            .await
            .unwrap()
            .unwrap();
        let queued = engine.store.notify_queued(1).unwrap();
        if due.is_empty() && queued.is_empty() {
            // Workers record what they sent a moment after.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not drained");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_rolls_up_a_digest_waits_for_its_time_and_old_news_is_not_sent() {
    let world = World::start(10, 41, "notify").await;
    let engine = Arc::new(world.engine(None));
    let key = ApiKey::parse(&world.key("secret_test")).unwrap();
    let outcome = connect(&engine, key, ConnectOptions::default())
        .await
        .unwrap();
    let connection = sm_warehouse::Connection::new(outcome.account.account_id.clone(), false);
    let (chat_base, chat) = sm_test_support::receiver::start().await;
    let (hook_base, hook) = sm_test_support::receiver::start().await;
    let (digest_base, digest) = sm_test_support::receiver::start().await;
    notify::add_channel(
        &engine,
        channel("chat", "slack", format!("{chat_base}/services/x")),
    )
    .await
    .unwrap();
    notify::add_channel(
        &engine,
        channel("hook", "webhook", format!("{hook_base}/in")),
    )
    .await
    .unwrap();
    notify::add_channel(
        &engine,
        channel(
            "morning",
            "discord",
            format!("{digest_base}/api/webhooks/1/x"),
        ),
    )
    .await
    .unwrap();
    notify::add_rule(&engine, rule("chat-all", "chat"))
        .await
        .unwrap();
    notify::add_rule(&engine, rule("hook-all", "hook"))
        .await
        .unwrap();
    notify::add_rule(
        &engine,
        RuleInput {
            digest: Some("daily@09:00".into()),
            ..rule("mornings", "morning")
        },
    )
    .await
    .unwrap();

    // The backfill's events (the account's last 30 days) are history.
    sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    assert!(
        engine.store.notify_queued(10).unwrap().is_empty(),
        "a backfill queues nothing"
    );

    // News: an incremental sync's new events.
    world.activity(10, 7);
    let before = engine.store.event_count(&connection).unwrap();
    sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    let news = (engine.store.event_count(&connection).unwrap() - before) as usize;
    assert!(news > 5, "activity made events: {news}");
    assert_eq!(engine.store.notify_queued(1000).unwrap().len(), news);

    let notifier = Notifier::new(
        engine.clone(),
        NotifyConfig {
            rollup_after: 3,
            tick: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap();
    drain(&notifier, &engine).await;
    let chat_messages = chat.lock().await.clone();
    assert_eq!(chat_messages.len(), 1, "one roll-up: {chat_messages:?}");
    let rollup: Value = serde_json::from_str(&chat_messages[0]).unwrap();
    assert!(
        rollup["text"]
            .as_str()
            .unwrap()
            .contains(&format!("{news} events at once")),
        "{rollup}"
    );
    assert_eq!(
        hook.lock().await.len(),
        news,
        "a webhook channel gets every event"
    );
    assert!(
        digest.lock().await.is_empty(),
        "a digest waits for its time"
    );
    let rolled = engine
        .store
        .deliveries(&DeliveryQuery {
            limit: 1000,
            states: vec!["rolled_up".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rolled.len(), news);

    // The digest's time comes (moved here rather than waited for): one message for all.
    let held = engine
        .store
        .deliveries(&DeliveryQuery {
            limit: 1000,
            states: vec!["digest".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(held.len(), news);
    let nine_am_later: i64 = held[0].due_at;
    assert!(nine_am_later > sm_engine::now(), "due at the next 09:00");
    let now_due: Vec<DeliveryUpdate> = held
        .iter()
        .map(|d| DeliveryUpdate {
            id: d.id,
            state: d.state.clone(),
            attempts: 0,
            due_at: sm_engine::now() - 1,
            finished_at: None,
            last_error: None,
        })
        .collect();
    engine.store.update_deliveries(&now_due).unwrap();
    drain(&notifier, &engine).await;
    let digests = digest.lock().await.clone();
    assert_eq!(digests.len(), 1, "{digests:?}");
    let message: Value = serde_json::from_str(&digests[0]).unwrap();
    assert!(
        message["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .contains(&format!("Digest: {news} events")),
        "{message}"
    );

    // Old news: events made longer before they reached the mirror than the cut-off (here
    // 1 s, for the test; an hour by default) are not sent.
    let sent_before = hook.lock().await.len();
    let strict = Notifier::new(
        engine.clone(),
        NotifyConfig {
            max_age_secs: 1,
            tick: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap();
    world.activity(3, 8);
    tokio::time::sleep(Duration::from_secs(3)).await;
    sync(
        &engine,
        &connection,
        &SyncOptions::default(),
        Arc::new(Quiet),
    )
    .await
    .unwrap();
    drain(&strict, &engine).await;
    assert_eq!(hook.lock().await.len(), sent_before, "nothing for old news");
    assert!(strict.stats().too_old > 0, "{:?}", strict.stats());
}
