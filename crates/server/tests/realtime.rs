//! How fast changes reach the mirror. Without a webhook endpoint, `serve --interval 2` keeps the
//! mirror within one interval of Stripe (a change is there within 2 × interval). With serve's
//! managed endpoint, a change is in the mirror's SQLite file within a second of being made
//! (measured from before the API call, by a separate reader polling the file every 20 ms).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, World};

/// Polls the mirror's file (a connection of its own, like any reader) every 20 ms until the
/// customer's `metadata.touched` is `value`; how long that took, or `None` past `limit`.
async fn seen_after(
    reader: &dyn sm_warehouse::Store,
    account: &str,
    customer: &str,
    value: &str,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let sql =
        format!("SELECT data FROM customers WHERE account_id = '{account}' AND id = '{customer}'");
    loop {
        let (_, rows) = reader.query(&sql).expect("a query");
        let touched = rows
            .first()
            .and_then(|r| r[0].as_deref())
            .and_then(|data| serde_json::from_str::<Value>(data).ok())
            .map(|data| data["metadata"]["touched"] == value);
        if touched == Some(true) {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn touch(world: &World, customer: &str, value: &str) {
    world
        .stripe_ok(
            "POST",
            &format!("/v1/customers/{customer}"),
            &[("metadata[touched]", value)],
        )
        .await;
}

async fn first_customer(world: &World) -> String {
    let page = world
        .stripe_ok("GET", "/v1/customers", &[("limit", "1")])
        .await;
    page["data"][0]["id"]
        .as_str()
        .expect("a customer")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_keeps_the_mirror_within_one_interval() {
    let world = World::start(10, 51, "polling").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    let interval = Duration::from_secs(2);
    let server = Server::start(engine.clone(), None, interval, 300).await;
    server.wait_for_sync(&world.http, &connection.label()).await;
    let record = engine.account(&connection).await.unwrap();
    assert!(record.webhook_endpoint_id.is_none(), "no endpoint is made");
    let realtime = engine.store.state(&connection, "realtime").unwrap();
    assert_eq!(
        realtime.as_deref(),
        Some("real-time off: no --public-url — polling every 2 s")
    );
    let endpoints = world.stripe_ok("GET", "/v1/webhook_endpoints", &[]).await;
    assert_eq!(endpoints["data"].as_array().unwrap().len(), 0);

    let reader = sm_warehouse::open(world.dir.join("mirror.db").to_str().unwrap()).unwrap();
    let customer = first_customer(&world).await;
    let mut took = Vec::new();
    // Changes at different moments of the cycle.
    for (n, pause) in [700u64, 1_300, 300, 1_900].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let value = format!("poll-{n}");
        let changed = Instant::now();
        touch(&world, &customer, &value).await;
        let seen = seen_after(
            reader.as_ref(),
            &connection.account_id,
            &customer,
            &value,
            changed,
            interval * 2,
        )
        .await;
        took.push(seen);
    }
    eprintln!("polling every {interval:?}: change → mirror {took:?}");
    assert!(
        took.iter().all(Option::is_some),
        "every change is mirrored within 2 × interval: {took:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_webhooks_a_change_is_mirrored_within_a_second() {
    let world = World::start(10, 52, "webhooks").await;
    let engine = world.engine();
    let connection = world.connect(&engine, None).await;
    world.sync(&engine).await;
    // serve with a public URL (its own address) makes the account's endpoint; the interval is
    // long so that only webhooks can move the mirror.
    let server = Server::start(engine.clone(), Some(""), Duration::from_secs(3600), 300).await;
    server.wait_for_sync(&world.http, &connection.label()).await;
    let record = engine.account(&connection).await.unwrap();
    let endpoint = record.webhook_endpoint_id.expect("an endpoint was made");
    assert!(record.webhook_secret_sealed.is_some(), "its secret is kept");
    assert_eq!(
        engine
            .store
            .state(&connection, "realtime")
            .unwrap()
            .as_deref(),
        Some(format!("real-time on (endpoint {endpoint})").as_str())
    );
    let endpoints = world.stripe_ok("GET", "/v1/webhook_endpoints", &[]).await;
    assert_eq!(
        endpoints["data"][0]["url"],
        format!("{}/webhooks/{}/test", server.base, connection.account_id)
    );
    let runs = engine.store.runs(&connection, 100).unwrap().len();

    let reader = sm_warehouse::open(world.dir.join("mirror.db").to_str().unwrap()).unwrap();
    let customer = first_customer(&world).await;
    let mut took = Vec::new();
    for n in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let value = format!("hook-{n}");
        let changed = Instant::now();
        touch(&world, &customer, &value).await;
        let seen = seen_after(
            reader.as_ref(),
            &connection.account_id,
            &customer,
            &value,
            changed,
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|| panic!("change {n} not mirrored within 5 s"));
        took.push(seen);
    }
    assert_eq!(
        engine.store.runs(&connection, 100).unwrap().len(),
        runs,
        "no sync ran: the webhooks did it"
    );
    let mut sorted = took.clone();
    sorted.sort();
    eprintln!(
        "webhooks: change → mirror min {:?}, median {:?}, max {:?} ({took:?})",
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    assert!(
        sorted[sorted.len() - 1] < Duration::from_secs(1),
        "every change is in the mirror within a second: {took:?}"
    );
    server.stop().await;
}
