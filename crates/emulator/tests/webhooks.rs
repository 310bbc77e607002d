//! Webhook endpoints and signed deliveries (API.md §7), seen from a receiver the test runs itself:
//! the secret shown once, signatures that verify, bodies that are the event JSON, only the enabled
//! types, retries, and the delivery switches (duplicate, shuffle, pause, delay, secret roll).

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sm_stripe::webhook::{SignatureError, verify};
use support::harness::Harness;
use tokio::net::TcpListener;

/// How long any wait for deliveries may last before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long to keep watching for deliveries that must not come (after the expected ones came).
const SETTLE: Duration = Duration::from_millis(300);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    headers: hyper::HeaderMap,
    body: Bytes,
    at: Instant,
    /// The status the receiver answered.
    answered: u16,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn signature(&self) -> Option<&str> {
        self.header("stripe-signature")
    }
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a delivery's body is JSON")
    }
    fn event_id(&self) -> String {
        self.event()["id"].as_str().expect("an event id").to_owned()
    }
    /// Verifies the signature against `secret` at the real current time with Stripe's tolerance.
    fn verify(&self, secret: &str) -> Result<i64, SignatureError> {
        verify(self.signature(), &self.body, secret, unix_now(), 300)
    }
    /// The `v1=` values of the signature header.
    fn v1_count(&self) -> usize {
        self.signature()
            .unwrap_or_default()
            .split(',')
            .filter(|part| part.trim().starts_with("v1="))
            .count()
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Got>>,
    /// Answer 500 to this many requests before answering 200 again.
    fail_next: AtomicUsize,
    /// Answer a 302 redirect (to a path that answers 200) to this many requests.
    redirect_next: AtomicUsize,
    /// Hold the answer to this many requests for two seconds.
    stall_next: AtomicUsize,
}

/// Takes one from a counter if it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl ReceiverState {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let mut response = Response::builder();
        let status = if take_one(&self.fail_next) {
            500
        } else if path != "/landing" && take_one(&self.redirect_next) {
            response = response.header("Location", "/landing");
            302
        } else {
            200
        };
        self.got.lock().unwrap().push(Got {
            method: parts.method.to_string(),
            path,
            headers: parts.headers,
            body,
            at: Instant::now(),
            answered: status,
        });
        if take_one(&self.stall_next) {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        response
            .status(status)
            .body(Full::new(Bytes::from_static(b"{\"received\":true}")))
            .expect("a valid response")
    }
}

/// A small HTTP/1.1 server on 127.0.0.1:0 that records every request it gets.
struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the receiver binds");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ReceiverState::default());
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything received so far, in arrival order.
    fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    /// Everything received at `path`, in arrival order.
    fn at(&self, path: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.path == path).collect()
    }

    fn count(&self) -> usize {
        self.state.got.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` requests arrived at `path`, then returns them all.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Got> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for {n} deliveries at {path}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Creates a test-mode endpoint through the API; returns `(id, secret)`.
async fn create_endpoint(h: &Harness, url: &str, events: &[&str]) -> (String, String) {
    create_endpoint_with(h, &h.key("secret_test"), url, events).await
}

/// Creates an endpoint with `key` (its mode is the key's); returns `(id, secret)`.
async fn create_endpoint_with(
    h: &Harness,
    key: &str,
    url: &str,
    events: &[&str],
) -> (String, String) {
    let mut form = vec![("url", url), ("api_version", "2023-08-16")];
    form.extend(events.iter().map(|e| ("enabled_events[]", *e)));
    let created = h.post(key, "/v1/webhook_endpoints", &form).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"]
        .as_str()
        .expect("an endpoint id")
        .to_owned();
    let secret = created.json["secret"]
        .as_str()
        .expect("a secret at creation")
        .to_owned();
    (id, secret)
}

async fn create_customer(h: &Harness, email: &str) -> String {
    let created = h
        .post(&h.key("secret_test"), "/v1/customers", &[("email", email)])
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.json["id"].as_str().unwrap().to_owned()
}

/// `GET /_emulator/webhooks` counts.
async fn delivery_counts(h: &Harness) -> Value {
    h.control("GET", "/webhooks", json!({})).await["counts"].clone()
}

/// Waits (bounded) until the delivery count `name` reaches `n`; returns all counts.
async fn wait_for_count(h: &Harness, name: &str, n: u64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let counts = delivery_counts(h).await;
        if counts[name].as_u64().unwrap_or(0) >= n {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "waited {DEADLINE:?} for {name} = {n}: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event id of the account's test mode, oldest first.
async fn event_ids_oldest_first(h: &Harness) -> Vec<String> {
    let mut ids: Vec<String> = h
        .list_all(&h.key("secret_test"), "/v1/events", "")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    ids.reverse();
    ids
}

#[tokio::test]
async fn the_signing_secret_is_returned_only_at_creation() {
    let h = Harness::start(0).await;
    let key = h.key("secret_test");
    let (id, secret) = create_endpoint(
        &h,
        "https://example.com/hooks",
        &["customer.created", "invoice.paid"],
    )
    .await;
    assert!(id.starts_with("we_"), "{id}");
    assert!(
        secret.starts_with("whsec_") && secret.len() > "whsec_".len() + 16,
        "{secret}"
    );

    let retrieved = h.get(&key, &format!("/v1/webhook_endpoints/{id}")).await;
    assert_eq!(retrieved.status, 200, "{}", retrieved.text);
    assert_eq!(retrieved.json["object"], json!("webhook_endpoint"));
    assert_eq!(retrieved.json["url"], json!("https://example.com/hooks"));
    assert_eq!(
        retrieved.json["enabled_events"],
        json!(["customer.created", "invoice.paid"])
    );
    assert_eq!(retrieved.json["status"], json!("enabled"));
    assert_eq!(retrieved.json["livemode"], json!(false));
    assert!(
        retrieved.json.get("secret").is_none(),
        "retrieve shows no secret: {}",
        retrieved.text
    );
    assert!(!retrieved.text.contains(&secret));

    let listed = h.get(&key, "/v1/webhook_endpoints").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let data = listed.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], json!(id));
    assert!(
        data[0].get("secret").is_none(),
        "list shows no secret: {}",
        listed.text
    );
    assert!(!listed.text.contains(&secret));

    // An update answers the endpoint without its secret too.
    let updated = h
        .post(
            &key,
            &format!("/v1/webhook_endpoints/{id}"),
            &[("enabled_events[]", "*")],
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["enabled_events"], json!(["*"]));
    assert!(updated.json.get("secret").is_none(), "{}", updated.text);

    // Each endpoint has a secret of its own.
    let (_, other_secret) = create_endpoint(&h, "https://example.com/other", &["*"]).await;
    assert_ne!(other_secret, secret);

    // Stripe's refusals: no events, or a URL that is not http(s).
    let no_events = h
        .post(
            &key,
            "/v1/webhook_endpoints",
            &[("url", "https://example.com/x")],
        )
        .await;
    assert_eq!(no_events.status, 400, "{}", no_events.text);
    assert_eq!(no_events.json["error"]["param"], json!("enabled_events"));
    let bad_url = h
        .post(
            &key,
            "/v1/webhook_endpoints",
            &[("url", "ftp://example.com"), ("enabled_events[]", "*")],
        )
        .await;
    assert_eq!(bad_url.status, 400, "{}", bad_url.text);
    assert_eq!(bad_url.json["error"]["param"], json!("url"));

    // At most 16 endpoints per account and mode; a deleted one frees its place.
    let mut ids = Vec::new();
    for n in 2..16 {
        ids.push(
            create_endpoint(&h, &format!("https://example.com/{n}"), &["*"])
                .await
                .0,
        );
    }
    let seventeenth = h
        .post(
            &key,
            "/v1/webhook_endpoints",
            &[("url", "https://example.com/17"), ("enabled_events[]", "*")],
        )
        .await;
    assert_eq!(seventeenth.status, 400, "{}", seventeenth.text);
    assert_eq!(
        seventeenth.json["error"]["type"],
        json!("invalid_request_error")
    );
    let gone = h
        .delete(&key, &format!("/v1/webhook_endpoints/{}", ids[0]))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    create_endpoint(&h, "https://example.com/17", &["*"]).await;
    // The other mode has its own 16.
    create_endpoint_with(
        &h,
        &h.key("secret_live"),
        "https://example.com/live",
        &["*"],
    )
    .await;
}

#[tokio::test]
async fn endpoints_hear_only_events_of_their_own_mode() {
    let h = Harness::start(0).await;
    let live_key = h.key("secret_live");
    let receiver = Receiver::start().await;
    let (_, test_secret) = create_endpoint(&h, &receiver.url("/test"), &["*"]).await;
    let (_, live_secret) =
        create_endpoint_with(&h, &live_key, &receiver.url("/live"), &["*"]).await;
    assert_ne!(test_secret, live_secret);

    create_customer(&h, "test@example.com").await;
    let live_customer = h
        .post(&live_key, "/v1/customers", &[("email", "live@example.com")])
        .await;
    assert_eq!(live_customer.status, 200, "{}", live_customer.text);

    let test = receiver.wait_for("/test", 1).await;
    let live = receiver.wait_for("/live", 1).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.at("/test").len(), 1);
    assert_eq!(receiver.at("/live").len(), 1);
    assert_eq!(test[0].event()["livemode"], json!(false));
    assert_eq!(live[0].event()["livemode"], json!(true));
    assert_eq!(
        live[0].event()["data"]["object"]["id"],
        live_customer.json["id"]
    );
    assert!(live[0].verify(&live_secret).is_ok());
    assert_eq!(live[0].verify(&test_secret), Err(SignatureError::NoMatch));
    assert!(test[0].verify(&test_secret).is_ok());
}

#[tokio::test]
async fn deliveries_are_signed_event_json_of_the_enabled_types_only() {
    let h = Harness::start(0).await;
    let key = h.key("secret_test");
    let receiver = Receiver::start().await;
    let (_, all_secret) = create_endpoint(&h, &receiver.url("/all"), &["*"]).await;
    let (_, updates_secret) =
        create_endpoint(&h, &receiver.url("/updates"), &["customer.updated"]).await;

    let customer = create_customer(&h, "ada@example.com").await;
    let updated = h
        .post(
            &key,
            &format!("/v1/customers/{customer}"),
            &[("name", "Ada Lovelace")],
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);

    let all = receiver.wait_for("/all", 2).await;
    let updates = receiver.wait_for("/updates", 1).await;
    wait_for_count(&h, "succeeded", 3).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        receiver.at("/all").len(),
        2,
        "the * endpoint gets both events, once each"
    );
    assert_eq!(
        receiver.at("/updates").len(),
        1,
        "customer.created never reaches an endpoint that did not enable it"
    );

    // The events the API lists are exactly what was delivered.
    let events = h.list_all(&key, "/v1/events", "").await;
    assert_eq!(events.len(), 2, "{events:?}");
    let mut listed: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut delivered: Vec<(String, String)> = all
        .iter()
        .map(|g| (g.event_id(), g.event()["type"].as_str().unwrap().to_owned()))
        .collect();
    listed.sort();
    delivered.sort();
    assert_eq!(delivered, listed);
    let types: Vec<&str> = delivered.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        types.contains(&"customer.created") && types.contains(&"customer.updated"),
        "{types:?}"
    );

    for got in all.iter().chain(updates.iter()) {
        assert_eq!(got.method, "POST");
        assert!(
            got.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{got:?}"
        );
        assert!(
            got.header("user-agent")
                .unwrap_or_default()
                .starts_with("Stripe/1.0"),
            "{got:?}"
        );
        // The body is the event exactly as GET /v1/events/{id} answers it.
        let event = got.event();
        let retrieved = h.get(&key, &format!("/v1/events/{}", got.event_id())).await;
        assert_eq!(retrieved.status, 200, "{}", retrieved.text);
        assert_eq!(retrieved.json, event);
        assert_eq!(event["object"], json!("event"));
        assert_eq!(event["livemode"], json!(false));
        assert_eq!(event["data"]["object"]["id"], json!(customer));
        let signed_at = got
            .header("stripe-signature")
            .and_then(|s| s.strip_prefix("t="))
            .and_then(|s| s.split(',').next())
            .and_then(|t| t.parse::<i64>().ok())
            .expect("t= first in the signature");
        assert!(
            (unix_now() - signed_at).abs() <= 5,
            "signed at the current time"
        );
    }
    for got in &all {
        assert!(
            got.verify(&all_secret).is_ok(),
            "{:?}",
            got.verify(&all_secret)
        );
        assert_eq!(
            got.verify(&updates_secret),
            Err(SignatureError::NoMatch),
            "another endpoint's secret does not verify"
        );
        assert_eq!(got.v1_count(), 1);
    }
    let update = &updates[0];
    assert_eq!(update.event()["type"], json!("customer.updated"));
    assert!(update.verify(&updates_secret).is_ok());
    assert_eq!(update.verify(&all_secret), Err(SignatureError::NoMatch));
    assert_eq!(
        update.event()["data"]["previous_attributes"].get("name"),
        Some(&json!(null))
    );
    // pending_webhooks counts the endpoints that listen to the event's type.
    let created_event = all
        .iter()
        .map(Got::event)
        .find(|e| e["type"] == "customer.created")
        .unwrap();
    assert_eq!(created_event["pending_webhooks"], json!(1));
    assert_eq!(update.event()["pending_webhooks"], json!(2));

    // A tampered body fails verification.
    assert_eq!(
        verify(
            update.signature(),
            b"{\"id\":\"evt_forged\"}",
            &updates_secret,
            unix_now(),
            300
        ),
        Err(SignatureError::NoMatch)
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_given_up() {
    let h = Harness::start(0).await;
    h.control(
        "PUT",
        "/webhooks",
        json!({"retry_base_ms": 50, "max_attempts": 4}),
    )
    .await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_endpoint(&h, &receiver.url("/hooks"), &["customer.created"]).await;

    // Two failures, then success: the same event arrives three times, each time freshly signed.
    receiver.state.fail_next.store(2, Ordering::SeqCst);
    create_customer(&h, "retry@example.com").await;
    let got = receiver.wait_for("/hooks", 3).await;
    let counts = wait_for_count(&h, "succeeded", 1).await;
    assert_eq!(
        got.iter().map(|g| g.answered).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    let id = got[0].event_id();
    assert!(got.iter().all(|g| g.event_id() == id), "one event, retried");
    assert!(got.iter().all(|g| g.verify(&secret).is_ok()));
    assert!(
        got[1].at.duration_since(got[0].at) >= Duration::from_millis(50),
        "retries back off"
    );
    assert_eq!(counts["attempted"], json!(3), "{counts}");
    assert_eq!(counts["failed_attempts"], json!(2), "{counts}");
    assert_eq!(counts["succeeded"], json!(1), "{counts}");
    assert_eq!(counts["given_up"], json!(0), "{counts}");

    // A receiver that always fails gets max_attempts attempts, then delivery gives up.
    receiver.state.fail_next.store(1_000, Ordering::SeqCst);
    create_customer(&h, "doomed@example.com").await;
    let counts = wait_for_count(&h, "given_up", 1).await;
    let doomed: Vec<Got> = receiver.at("/hooks").into_iter().skip(3).collect();
    assert_eq!(doomed.len(), 4, "max_attempts = 4");
    assert!(
        doomed
            .iter()
            .all(|g| g.event_id() == doomed[0].event_id() && g.answered == 500)
    );
    assert_eq!(counts["attempted"], json!(7), "{counts}");
    assert_eq!(counts["failed_attempts"], json!(6), "{counts}");
    assert_eq!(counts["succeeded"], json!(1), "{counts}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.at("/hooks").len(), 7, "nothing after giving up");
    receiver.state.fail_next.store(0, Ordering::SeqCst);

    // A redirect is a failure too (API.md §7: anything but 2xx, 3xx included): it is not followed.
    receiver.state.redirect_next.store(1, Ordering::SeqCst);
    create_customer(&h, "redirected@example.com").await;
    let got = receiver.wait_for("/hooks", 9).await;
    wait_for_count(&h, "succeeded", 2).await;
    let last_two = &got[7..];
    assert_eq!(
        last_two.iter().map(|g| g.answered).collect::<Vec<_>>(),
        vec![302, 200]
    );
    assert_eq!(
        last_two[0].event_id(),
        last_two[1].event_id(),
        "the redirected delivery is retried"
    );
    assert!(
        receiver.at("/landing").is_empty(),
        "the redirect is not followed"
    );
    let counts = delivery_counts(&h).await;
    assert_eq!(counts["failed_attempts"], json!(7), "{counts}");

    // A receiver slower than timeout_ms fails the attempt, and the retry gets through.
    h.control(
        "PUT",
        "/webhooks",
        json!({"retry_base_ms": 50, "max_attempts": 4, "timeout_ms": 200}),
    )
    .await;
    receiver.state.stall_next.store(1, Ordering::SeqCst);
    create_customer(&h, "slow-receiver@example.com").await;
    let got = receiver.wait_for("/hooks", 11).await;
    let counts = wait_for_count(&h, "succeeded", 3).await;
    assert_eq!(
        got[9].event_id(),
        got[10].event_id(),
        "the timed-out delivery is retried"
    );
    assert_eq!(counts["failed_attempts"], json!(8), "{counts}");
    assert_eq!(counts["given_up"], json!(1), "{counts}");
}

#[tokio::test]
async fn duplicate_sends_every_event_twice() {
    let h = Harness::start(0).await;
    h.control("PUT", "/webhooks", json!({"duplicate": 1.0}))
        .await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_endpoint(&h, &receiver.url("/hooks"), &["customer.created"]).await;
    for n in 0..3 {
        create_customer(&h, &format!("twice{n}@example.com")).await;
    }
    let got = receiver.wait_for("/hooks", 6).await;
    wait_for_count(&h, "succeeded", 6).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.count(), 6, "each of three events exactly twice");
    let mut ids: Vec<String> = got.iter().map(Got::event_id).collect();
    ids.sort();
    assert!(ids.chunks(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let mut listed = event_ids_oldest_first(&h).await;
    listed.sort();
    assert_eq!(ids, listed);
    assert!(got.iter().all(|g| g.verify(&secret).is_ok()));
    assert_eq!(delivery_counts(&h).await["duplicated"], json!(3));
}

#[tokio::test]
async fn shuffle_delivers_a_batch_out_of_order() {
    let h = Harness::start(5).await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_endpoint(&h, &receiver.url("/hooks"), &["*"]).await;
    let before = event_ids_oldest_first(&h).await;

    // Hold a batch of changes while paused, then let it go shuffled.
    h.control("PUT", "/webhooks", json!({"paused": true, "shuffle": true}))
        .await;
    let report = h
        .control(
            "POST",
            &format!("/accounts/{}/activity", h.account_id()),
            json!({"mode": "test", "changes": 60}),
        )
        .await;
    assert!(report["changes"].as_u64().unwrap() >= 50, "{report}");
    let created: Vec<String> = event_ids_oldest_first(&h)
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(created.len() >= 50, "{} events", created.len());
    h.control(
        "PUT",
        "/webhooks",
        json!({"paused": false, "shuffle": true}),
    )
    .await;

    let got = receiver.wait_for("/hooks", created.len()).await;
    wait_for_count(&h, "succeeded", created.len() as u64).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.count(), created.len(), "each event once");
    let arrived: Vec<String> = got.iter().map(Got::event_id).collect();
    assert_ne!(
        arrived, created,
        "shuffled: arrival order differs from creation order"
    );
    let (mut a, mut c) = (arrived.clone(), created.clone());
    a.sort();
    c.sort();
    assert_eq!(a, c, "the same events, no more, no fewer");
    assert!(got.iter().all(|g| g.verify(&secret).is_ok()));
}

#[tokio::test]
async fn paused_deliveries_wait_and_then_all_arrive() {
    let h = Harness::start(0).await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_endpoint(&h, &receiver.url("/hooks"), &["customer.created"]).await;
    h.control("PUT", "/webhooks", json!({"paused": true})).await;
    for n in 0..3 {
        create_customer(&h, &format!("held{n}@example.com")).await;
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(receiver.count(), 0, "nothing is delivered while paused");
    assert_eq!(delivery_counts(&h).await["attempted"], json!(0));
    let settings = h.control("GET", "/webhooks", json!({})).await["settings"].clone();
    assert_eq!(settings["paused"], json!(true));

    h.control("PUT", "/webhooks", json!({"paused": false}))
        .await;
    let got = receiver.wait_for("/hooks", 3).await;
    let mut ids: Vec<String> = got.iter().map(Got::event_id).collect();
    ids.sort();
    let mut listed = event_ids_oldest_first(&h).await;
    listed.sort();
    assert_eq!(ids, listed);
    // Signed when sent, not when recorded: still within tolerance.
    assert!(got.iter().all(|g| g.verify(&secret).is_ok()));
}

#[tokio::test]
async fn delay_holds_each_delivery_back() {
    let h = Harness::start(0).await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_endpoint(&h, &receiver.url("/hooks"), &["customer.created"]).await;
    h.control("PUT", "/webhooks", json!({"delay_ms": 400}))
        .await;
    let started = Instant::now();
    create_customer(&h, "later@example.com").await;
    let got = receiver.wait_for("/hooks", 1).await;
    assert!(
        got[0].at.duration_since(started) >= Duration::from_millis(400),
        "arrived after {:?}",
        got[0].at.duration_since(started)
    );
    assert!(got[0].verify(&secret).is_ok());

    // `late` holds back a share of deliveries (all of them here) by `late_ms` more.
    h.control("PUT", "/webhooks", json!({"late": 1.0, "late_ms": 300}))
        .await;
    let started = Instant::now();
    create_customer(&h, "late@example.com").await;
    let got = receiver.wait_for("/hooks", 2).await;
    assert!(
        got[1].at.duration_since(started) >= Duration::from_millis(300),
        "arrived after {:?}",
        got[1].at.duration_since(started)
    );
    assert!(got[1].verify(&secret).is_ok());
}

#[tokio::test]
async fn rolling_a_secret_signs_with_both_until_the_old_one_is_dropped() {
    let h = Harness::start(0).await;
    let receiver = Receiver::start().await;
    let (endpoint, old) = create_endpoint(&h, &receiver.url("/hooks"), &["customer.created"]).await;
    let roll_path = format!(
        "/accounts/{}/webhook_endpoints/{endpoint}/roll",
        h.account_id()
    );

    let rolled = h
        .control("POST", &roll_path, json!({"keep_old": true}))
        .await;
    let new = rolled["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{rolled}");
    assert_eq!(rolled["signing_with"], json!(2));
    create_customer(&h, "both@example.com").await;
    let got = receiver.wait_for("/hooks", 1).await;
    assert_eq!(got[0].v1_count(), 2, "{:?}", got[0].signature());
    assert!(got[0].verify(&old).is_ok(), "the old secret still verifies");
    assert!(got[0].verify(&new).is_ok(), "the new secret verifies");

    let rolled = h
        .control("POST", &roll_path, json!({"keep_old": false}))
        .await;
    let newest = rolled["secret"].as_str().unwrap().to_owned();
    assert_eq!(rolled["signing_with"], json!(1));
    create_customer(&h, "only-new@example.com").await;
    let got = receiver.wait_for("/hooks", 2).await;
    assert_eq!(got[1].v1_count(), 1, "{:?}", got[1].signature());
    assert!(got[1].verify(&newest).is_ok());
    assert_eq!(got[1].verify(&old), Err(SignatureError::NoMatch));
    assert_eq!(got[1].verify(&new), Err(SignatureError::NoMatch));

    // The roll is a control-API operation on an existing endpoint only.
    let missing = h
        .send(
            h.http
                .post(format!(
                    "{}/_emulator/accounts/{}/webhook_endpoints/we_missing/roll",
                    h.base,
                    h.account_id()
                ))
                .body("{}"),
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}

#[tokio::test]
async fn deleted_or_disabled_endpoints_get_nothing_more() {
    let h = Harness::start(0).await;
    let key = h.key("secret_test");
    let receiver = Receiver::start().await;
    let (deleted, _) = create_endpoint(&h, &receiver.url("/deleted"), &["customer.created"]).await;
    let (disabled, _) =
        create_endpoint(&h, &receiver.url("/disabled"), &["customer.created"]).await;
    let (_, kept_secret) = create_endpoint(&h, &receiver.url("/kept"), &["customer.created"]).await;

    create_customer(&h, "first@example.com").await;
    receiver.wait_for("/deleted", 1).await;
    receiver.wait_for("/disabled", 1).await;
    receiver.wait_for("/kept", 1).await;

    let gone = h
        .delete(&key, &format!("/v1/webhook_endpoints/{deleted}"))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.json["deleted"], json!(true));
    let off = h
        .post(
            &key,
            &format!("/v1/webhook_endpoints/{disabled}"),
            &[("disabled", "true")],
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    assert_eq!(off.json["status"], json!("disabled"));
    let listed = h.get(&key, "/v1/webhook_endpoints").await;
    assert_eq!(
        listed.json["data"].as_array().unwrap().len(),
        2,
        "a deleted endpoint is not listed"
    );

    create_customer(&h, "second@example.com").await;
    let kept = receiver.wait_for("/kept", 2).await;
    assert!(kept[1].verify(&kept_secret).is_ok());
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        receiver.at("/deleted").len(),
        1,
        "no delivery after deletion"
    );
    assert_eq!(
        receiver.at("/disabled").len(),
        1,
        "no delivery while disabled"
    );

    // A delivery held while paused is dropped if its endpoint is deleted or disabled before it
    // goes out; one disabled and enabled again in the meantime still gets it (as Stripe retries).
    h.control("PUT", "/webhooks", json!({"paused": true})).await;
    let (doomed, _) = create_endpoint(&h, &receiver.url("/doomed"), &["customer.created"]).await;
    let (switched_off, _) =
        create_endpoint(&h, &receiver.url("/switched-off"), &["customer.created"]).await;
    let (toggled, toggled_secret) =
        create_endpoint(&h, &receiver.url("/toggled"), &["customer.created"]).await;
    create_customer(&h, "third@example.com").await;
    let gone = h
        .delete(&key, &format!("/v1/webhook_endpoints/{doomed}"))
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let off = h
        .post(
            &key,
            &format!("/v1/webhook_endpoints/{switched_off}"),
            &[("disabled", "true")],
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    for disabled in ["true", "false"] {
        let toggle = h
            .post(
                &key,
                &format!("/v1/webhook_endpoints/{toggled}"),
                &[("disabled", disabled)],
            )
            .await;
        assert_eq!(toggle.status, 200, "{}", toggle.text);
    }
    h.control("PUT", "/webhooks", json!({"paused": false}))
        .await;
    receiver.wait_for("/kept", 3).await;
    let got = receiver.wait_for("/toggled", 1).await;
    assert!(got[0].verify(&toggled_secret).is_ok());
    tokio::time::sleep(SETTLE).await;
    assert!(
        receiver.at("/doomed").is_empty(),
        "held deliveries to a deleted endpoint are dropped"
    );
    assert!(
        receiver.at("/switched-off").is_empty(),
        "held deliveries to a disabled endpoint are dropped"
    );
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_counts_as_timed_out() {
    let h = Harness::start(0).await;
    h.control(
        "PUT",
        "/webhooks",
        json!({"retry_base_ms": 50, "max_attempts": 3, "timeout_ms": 500}),
    )
    .await;
    let receiver = Receiver::start().await;
    create_endpoint(&h, &receiver.url("/hooks"), &["customer.created"]).await;
    receiver.state.stall_next.store(1, Ordering::SeqCst);
    create_customer(&h, "slow@example.com").await;
    let counts = wait_for_count(&h, "succeeded", 1).await;
    assert_eq!(counts["failed_attempts"], json!(1), "{counts}");
    assert_eq!(counts["timed_out"], json!(1), "{counts}");
}

#[tokio::test]
async fn renewals_bill_active_subscriptions_as_a_month_start_does() {
    let h = Harness::start(30).await;
    let before = event_ids_oldest_first(&h).await;
    let report = h
        .control(
            "POST",
            &format!("/accounts/{}/renewals", h.account_id()),
            json!({"mode": "test", "subscriptions": 5}),
        )
        .await;
    assert_eq!(report["invoices"], json!(5), "{report}");
    let key = h.key("secret_test");
    let mut types: Vec<String> = Vec::new();
    for id in event_ids_oldest_first(&h).await {
        if before.contains(&id) {
            continue;
        }
        let event = h.get(&key, &format!("/v1/events/{id}")).await.json;
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    for kind in [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "charge.succeeded",
        "customer.subscription.updated",
    ] {
        assert_eq!(
            types.iter().filter(|t| *t == kind).count(),
            5,
            "{kind} once per renewal: {types:?}"
        );
    }
    // Asked again at once: those five are not due again.
    let again = h
        .control(
            "POST",
            &format!("/accounts/{}/renewals", h.account_id()),
            json!({"mode": "test", "subscriptions": 1000}),
        )
        .await;
    let renewed = again["invoices"].as_u64().unwrap();
    let active = h
        .list_all(&key, "/v1/subscriptions", "&status=active")
        .await
        .len() as u64;
    assert_eq!(renewed + 5, active, "{again}");
}
