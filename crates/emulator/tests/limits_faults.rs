//! Rate limits (API.md §4) and injected faults, over real HTTP: what a Stripe client sees when it
//! goes too fast or when Stripe or the network misbehaves, and proof that our client rides through.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_stripe::{ApiKey, Client, ClientConfig};
use support::harness::{Harness, Reply};
use tokio::task::JoinSet;

/// Reads one answer completely, as [`Harness::send`] does, but from a spawned task.
async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the emulator answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// Sends one GET per path, all at once, with `key`; answers in completion order.
async fn burst(h: &Harness, key: &str, paths: &[&str]) -> Vec<Reply> {
    let mut set = JoinSet::new();
    for path in paths {
        set.spawn(reply(
            h.http.get(format!("{}{path}", h.base)).bearer_auth(key),
        ));
    }
    set.join_all().await
}

fn statuses(replies: &[Reply]) -> (usize, Vec<&Reply>) {
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    let other: Vec<u16> = replies
        .iter()
        .map(|r| r.status)
        .filter(|s| *s != 200 && *s != 429)
        .collect();
    assert!(other.is_empty(), "only 200 and 429 expected, got {other:?}");
    (ok, limited)
}

/// Checks a 429 `rate_limit` answer: Stripe's exact error fields and retry headers.
fn assert_rate_limited(reply: &Reply, livemode: bool, reason: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text);
    let error = reply.json["error"].as_object().expect("an error object");
    let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(
        fields,
        ["code", "doc_url", "message", "type"],
        "{}",
        reply.text
    );
    assert_eq!(error["code"], json!("rate_limit"));
    assert_eq!(
        error["doc_url"],
        json!("https://stripe.com/docs/error-codes/rate-limit")
    );
    assert_eq!(error["type"], json!("invalid_request_error"));
    let message = reply.message();
    if livemode {
        assert!(
            message.starts_with("Request rate limit exceeded. "),
            "{message}"
        );
    } else {
        assert!(
            message.starts_with("Testmode request rate limit exceeded, "),
            "{message}"
        );
    }
    assert!(
        message.contains("https://stripe.com/docs/rate-limits"),
        "{message}"
    );
    assert_eq!(
        reply.header("stripe-rate-limited-reason"),
        Some(reason),
        "{:?}",
        reply.headers
    );
    assert_eq!(reply.header("stripe-should-retry"), Some("true"));
    assert!(
        reply
            .header("request-id")
            .unwrap_or_default()
            .starts_with("req_")
    );
}

#[tokio::test]
async fn rate_limits_are_off_by_default() {
    let h = Harness::start(2).await;
    let key = h.key("secret_test");
    assert_eq!(
        h.control("GET", "/limits", json!({})).await["enabled"],
        json!(false)
    );
    for _ in 0..4 {
        let replies = burst(&h, &key, &["/v1/customers"; 50]).await;
        assert!(
            replies.iter().all(|r| r.status == 200),
            "{:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn test_mode_bursts_are_limited_per_account_and_refill() {
    let h = Harness::start(2).await;
    let key = h.key("secret_test");
    let limits = h.control("PUT", "/limits", json!({"enabled": true})).await;
    let expected = json!({"enabled": true, "live_per_second": 100.0, "test_per_second": 25.0, "endpoint_per_second": 25.0});
    assert_eq!(limits, expected);
    assert_eq!(h.control("GET", "/limits", json!({})).await, expected);

    let replies = burst(&h, &key, &["/v1/customers"; 60]).await;
    let (ok, limited) = statuses(&replies);
    assert!(ok >= 25, "the bucket starts full: {ok} admitted");
    assert!(!limited.is_empty(), "60 at once exceed test mode's 25/s");
    for reply in &limited {
        assert_rate_limited(reply, false, "global-rate");
    }

    // Another account has a budget of its own.
    // (Made in-process: `POST /_emulator/accounts` deadlocks on the world's rng lock, see control.rs.)
    let other = create_account(
        &h.server.emulator,
        &NewAccount {
            name: Some("Other".into()),
            ..Default::default()
        },
        7,
    )
    .expect("another account");
    let other_key = other["keys"]["secret_test"].as_str().unwrap().to_owned();
    let replies = burst(&h, &other_key, &["/v1/customers"; 20]).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "one account's exhaustion never slows another"
    );

    // A second later the budget is back.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let replies = burst(&h, &key, &["/v1/customers"; 20]).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn live_mode_limits_each_endpoint_and_the_account() {
    let h = Harness::start(0).await;
    let key = h.key("secret_live");
    h.control("PUT", "/limits", json!({"enabled": true})).await;

    // One endpoint: 25/s even though the account may do 100/s.
    let replies = burst(&h, &key, &["/v1/customers"; 60]).await;
    let (ok, limited) = statuses(&replies);
    assert!(ok >= 25, "{ok} admitted");
    assert!(
        !limited.is_empty(),
        "60 at once on one endpoint exceed 25/s"
    );
    for reply in &limited {
        assert_rate_limited(reply, true, "endpoint-rate");
    }
    // Spread over other endpoints, the same account gets far more than 25 through at once.
    let mut paths = Vec::new();
    for path in ["/v1/products", "/v1/prices", "/v1/invoices"] {
        paths.extend([path; 20]);
    }
    let replies = burst(&h, &key, &paths).await;
    let (ok, limited) = statuses(&replies);
    assert_eq!(ok, 60, "{:?}", limited.first().map(|r| &r.text));

    // Beyond the account's own rate, whatever the endpoints (lowered here to 30/s).
    h.control(
        "PUT",
        "/limits",
        json!({"enabled": true, "live_per_second": 30.0}),
    )
    .await;
    let mut paths = Vec::new();
    for path in ["/v1/subscriptions", "/v1/charges", "/v1/coupons"] {
        paths.extend([path; 20]);
    }
    let replies = burst(&h, &key, &paths).await;
    let (_, limited) = statuses(&replies);
    assert!(!limited.is_empty(), "60 at once exceed the account's 30/s");
    for reply in &limited {
        assert_rate_limited(reply, true, "global-rate");
    }

    // Test mode of the same account is a separate budget.
    let test = burst(&h, &h.key("secret_test"), &["/v1/customers"; 20]).await;
    assert!(test.iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn limits_and_faults_switch_at_runtime() {
    let h = Harness::start(2).await;
    let key = h.key("secret_test");

    let limits = json!({"enabled": true, "live_per_second": 100.0, "test_per_second": 5.0, "endpoint_per_second": 25.0});
    assert_eq!(
        h.control(
            "PUT",
            "/limits",
            json!({"enabled": true, "test_per_second": 5.0})
        )
        .await,
        limits
    );
    assert_eq!(h.control("GET", "/limits", json!({})).await, limits);
    assert_eq!(h.control("GET", "", json!({})).await["limits"], limits);
    let replies = burst(&h, &key, &["/v1/customers"; 12]).await;
    let (ok, limited) = statuses(&replies);
    assert!(ok >= 5 && !limited.is_empty(), "{ok} admitted of 12 at 5/s");
    h.control("PUT", "/limits", json!({"enabled": false})).await;
    let replies = burst(&h, &key, &["/v1/customers"; 30]).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "limits off at once"
    );

    let faults = json!({
        "rate_limit": 0.0, "lock_timeout": 0.0, "server_error": 0.25, "unavailable": 0.0,
        "slow": 0.5, "slow_ms": 10, "reset": 0.0, "truncated": 0.125, "html": 0.0
    });
    let put = h
        .control(
            "PUT",
            "/faults",
            json!({"server_error": 0.25, "slow": 0.5, "slow_ms": 10, "truncated": 0.125}),
        )
        .await;
    assert_eq!(put, faults);
    assert_eq!(h.control("GET", "/faults", json!({})).await, faults);
    assert_eq!(h.control("GET", "", json!({})).await["faults"], faults);

    h.control("PUT", "/faults", json!({"server_error": 1.0}))
        .await;
    assert_eq!(h.get(&key, "/v1/customers").await.status, 500);
    let none = json!({
        "rate_limit": 0.0, "lock_timeout": 0.0, "server_error": 0.0, "unavailable": 0.0,
        "slow": 0.0, "slow_ms": 0, "reset": 0.0, "truncated": 0.0, "html": 0.0
    });
    assert_eq!(h.control("PUT", "/faults", json!({})).await, none);
    assert_eq!(h.control("GET", "/faults", json!({})).await, none);
    assert_eq!(h.get(&key, "/v1/customers").await.status, 200);

    // Settings that are not JSON are refused and change nothing.
    let bad = h
        .send(
            h.http
                .put(format!("{}/_emulator/faults", h.base))
                .body("server_error=1"),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(h.control("GET", "/faults", json!({})).await, none);
}

/// A client that gives up quickly, so that a fault which hangs fails the test instead.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_fault_looks_like_what_stripe_or_the_network_does() {
    let h = Harness::start(3).await;
    let key = h.key("secret_test");
    let faults = |settings: Value| h.control("PUT", "/faults", settings);

    faults(json!({"rate_limit": 1.0})).await;
    let limited = h.get(&key, "/v1/customers").await;
    assert_rate_limited(&limited, false, "global-rate");
    let live = h.get(&h.key("secret_live"), "/v1/customers").await;
    assert_rate_limited(&live, true, "global-rate");
    let basic = h
        .send(
            h.http
                .get(format!("{}/v1/customers", h.base))
                .basic_auth(h.key("secret_live"), Some("")),
        )
        .await;
    assert_rate_limited(&basic, true, "global-rate");

    faults(json!({"lock_timeout": 1.0})).await;
    let lock = h.get(&key, "/v1/customers").await;
    assert_eq!(lock.status, 429, "{}", lock.text);
    assert_eq!(lock.json["error"]["code"], json!("lock_timeout"));
    assert_eq!(lock.json["error"]["type"], json!("invalid_request_error"));
    assert_eq!(lock.header("stripe-should-retry"), Some("true"));

    faults(json!({"server_error": 1.0})).await;
    let server = h
        .post(&key, "/v1/customers", &[("email", "never@example.com")])
        .await;
    assert_eq!(server.status, 500, "{}", server.text);
    assert_eq!(server.json["error"]["type"], json!("api_error"));
    assert!(
        server
            .header("request-id")
            .unwrap_or_default()
            .starts_with("req_")
    );

    faults(json!({"unavailable": 1.0})).await;
    let unavailable = h.get(&key, "/v1/customers").await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.text);
    assert_eq!(unavailable.json["error"]["type"], json!("api_error"));

    faults(json!({"html": 1.0})).await;
    let html = h.get(&key, "/v1/customers").await;
    assert_eq!(html.status, 200);
    assert!(
        html.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{:?}",
        html.headers
    );
    assert!(html.text.trim_start().starts_with('<'), "{}", html.text);
    assert!(
        serde_json::from_str::<Value>(&html.text).is_err(),
        "not JSON"
    );

    faults(json!({"truncated": 1.0})).await;
    let mut response = raw_client()
        .get(format!("{}/v1/customers", h.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("the head arrives");
    assert_eq!(response.status().as_u16(), 200);
    let announced: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(announced > 0);
    // Part of the body arrives, then the connection breaks before Content-Length is reached.
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break,
            Err(error) => {
                assert!(!error.is_timeout(), "cut, not hung: {error}");
                break;
            }
        }
    }
    assert!(
        received > 0 && received < announced,
        "{received} of {announced} bytes"
    );

    faults(json!({"reset": 1.0})).await;
    let started = Instant::now();
    let reset = raw_client()
        .get(format!("{}/v1/customers", h.base))
        .bearer_auth(&key)
        .send()
        .await;
    let error = reset.expect_err("the connection is reset");
    assert!(!error.is_timeout(), "reset, not hung: {error}");
    assert!(started.elapsed() < Duration::from_secs(5));

    faults(json!({"slow": 1.0, "slow_ms": 300})).await;
    let started = Instant::now();
    let slow = h.get(&key, "/v1/customers").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.status, 200, "{}", slow.text);
    assert_eq!(slow.json["data"].as_array().unwrap().len(), 3);

    // Faults are for the Stripe API only: the control API answered every PUT above.
    faults(json!({})).await;
    let fine = h.get(&key, "/v1/customers").await;
    assert_eq!(fine.status, 200, "{}", fine.text);
    assert_eq!(fine.json["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_stripe_client_rides_through_faults() {
    let h = Harness::start(5).await;
    h.control(
        "PUT",
        "/faults",
        json!({"server_error": 0.5, "reset": 0.2, "truncated": 0.1}),
    )
    .await;
    let config = ClientConfig {
        api_base: h.base.clone(),
        budget_share: f64::INFINITY,
        max_retries: 20,
        retry_base: Duration::from_millis(2),
        retry_cap: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let client = Client::new(config, ApiKey::parse(&h.key("secret_test")).unwrap()).unwrap();
    for n in 0..30 {
        let list = client
            .get("/v1/customers", &[])
            .await
            .unwrap_or_else(|e| panic!("GET {n} failed through retries: {e}"));
        assert_eq!(list["object"], json!("list"));
        assert_eq!(list["data"].as_array().unwrap().len(), 5);
    }
    assert!(
        client.requests_made() > 30,
        "faults were met and retried: {} requests",
        client.requests_made()
    );

    // Without retries the same faults reach the caller.
    let impatient = Client::new(
        ClientConfig {
            api_base: h.base.clone(),
            budget_share: f64::INFINITY,
            max_retries: 0,
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
        ApiKey::parse(&h.key("secret_test")).unwrap(),
    )
    .unwrap();
    let mut failures = 0;
    for _ in 0..20 {
        if impatient.get("/v1/customers", &[]).await.is_err() {
            failures += 1;
        }
    }
    assert!(failures > 0, "some of 20 unretried GETs meet a fault");
}
