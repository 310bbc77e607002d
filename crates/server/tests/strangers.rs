//! What an unauthenticated caller learns from `serve`: nothing internal. A delivery that fails
//! verification is answered alike whether its account is connected or not; `/healthz` says only
//! that the process lives and `/metrics` is refused without a token; and forged deliveries to a
//! connected account cost no database read or decryption each.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use support::{Server, World, deliver, has_event, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_learn_nothing_and_forgeries_are_cheap() {
    let world = World::start(2, 99, "strangers").await;
    let engine = world.engine();
    let connection = world
        .connect(&engine, Some("whsec_the_real_one_0123456789"))
        .await;
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let http = reqwest::Client::new();
    let event = json!({"id": "evt_forged", "object": "event", "type": "customer.updated", "livemode": false,
        "created": sm_engine::now(), "data": {"object": {"id": "cus_x", "object": "customer"}}})
    .to_string();
    let forged = sign("whsec_not_it", sm_engine::now(), event.as_bytes());

    // A forgery to a connected account and to one that is not: the same answer.
    let known = deliver(
        &http,
        &server.webhook_url(&connection.account_id),
        event.as_bytes(),
        Some(&forged),
    )
    .await;
    let unknown = deliver(
        &http,
        &server.webhook_url("acct_1NotConnectedHere"),
        event.as_bytes(),
        Some(&forged),
    )
    .await;
    assert_eq!(known.0, 400, "{known:?}");
    assert_eq!(known, unknown, "the answers tell connected accounts apart");
    assert_eq!(known.1["error"]["code"], "invalid_signature");
    // And without a signature, or with an expired one: alike too.
    for header in [None, Some(sign("whsec_x", 1_000, event.as_bytes()))] {
        let a = deliver(
            &http,
            &server.webhook_url(&connection.account_id),
            event.as_bytes(),
            header.as_deref(),
        )
        .await;
        let b = deliver(
            &http,
            &server.webhook_url("acct_1NotConnectedHere"),
            event.as_bytes(),
            header.as_deref(),
        )
        .await;
        assert_eq!(a, b);
    }

    // /healthz: alive, nothing more, without a token; its detail with one. /metrics: a token.
    let bare: serde_json::Value = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bare, json!({"status": "ok"}));
    let detail = server.health(&http).await;
    assert!(
        detail["accounts"][connection.label()].is_object(),
        "{detail}"
    );
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 401);
    let text = metrics.text().await.unwrap();
    assert!(!text.contains(&connection.account_id), "{text}");

    // 10,000 forgeries to the connected account: a handful of secret reads.
    let reads_before = server.state.secret_reads.load(Ordering::Relaxed);
    let url = server.webhook_url(&connection.account_id);
    let mut sent = 0;
    while sent < 10_000 {
        let batch: Vec<_> = (0..50)
            .map(|n| {
                let (http, url, body) = (http.clone(), url.clone(), event.clone());
                let header = sign(
                    "whsec_not_it",
                    sm_engine::now(),
                    format!("{body}{n}").as_bytes(),
                );
                tokio::spawn(
                    async move { deliver(&http, &url, body.as_bytes(), Some(&header)).await.0 },
                )
            })
            .collect();
        for request in batch {
            assert_eq!(request.await.unwrap(), 400);
        }
        sent += 50;
    }
    let reads = server.state.secret_reads.load(Ordering::Relaxed) - reads_before;
    eprintln!("10,000 forged deliveries: {reads} secret reads");
    assert!(reads <= 10, "{reads} secret reads for 10,000 forgeries");
    server.stop().await;
}

/// A webhook secret's sealed value copied onto another connection's row does not open there: a
/// delivery signed with that secret is not accepted for the other account (it was, before
/// sealed values were bound to their row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_moved_to_another_row_is_refused() {
    let world = World::start(2, 98, "moved-secret").await;
    let engine = world.engine();
    let secret = "whsec_test_mode_secret_0123456789";
    let connection = world.connect(&engine, Some(secret)).await;
    let mut other = engine.account(&connection).await.unwrap();
    other.connection = sm_warehouse::Connection::new("acct_1OtherLiveRow", true);
    other.name = "Other live".into();
    engine.store.insert_account(&other).unwrap();
    let server = Server::start(engine.clone(), None, Duration::from_secs(3600), 300).await;
    let http = reqwest::Client::new();
    let event = |id: &str, livemode: bool| {
        json!({"id": id, "object": "event", "type": "customer.updated", "livemode": livemode,
            "created": sm_engine::now(), "data": {"object": {"id": "cus_x", "object": "customer"}}})
        .to_string()
    };
    let moved = event("evt_to_the_moved_row", true);
    let signed = sign(secret, sm_engine::now(), moved.as_bytes());
    let answer = deliver(
        &http,
        &server.webhook_url("acct_1OtherLiveRow"),
        moved.as_bytes(),
        Some(&signed),
    )
    .await;
    assert!(answer.0 >= 400, "the moved secret was accepted: {answer:?}");
    assert!(!answer.1.to_string().contains("whsec_"), "{answer:?}");
    assert!(!has_event(
        &engine,
        &other.connection,
        "evt_to_the_moved_row"
    ));
    // On its own row the secret still works.
    let own = event("evt_on_its_own_row", false);
    let signed = sign(secret, sm_engine::now(), own.as_bytes());
    let answer = deliver(
        &http,
        &server.webhook_url(&connection.account_id),
        own.as_bytes(),
        Some(&signed),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    server.stop().await;
}
