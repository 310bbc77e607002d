//! Shared by the server's tests: an in-process emulator with a seeded account, an engine on a
//! real SQLite file, `serve` on 127.0.0.1:0, a recording proxy in front of it (what Stripe sent,
//! byte for byte, and how it was answered), signing and delivering by hand, `/metrics` read back,
//! and the exact comparison of the mirror with the emulator's own state (the rules of
//! crates/engine/tests/support/mod.rs `compare`, plus tables left out on purpose).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sm_emulator::catalog::Kind;
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::webhooks::DeliverySettings;
use sm_emulator::{Emulator, EmulatorServer, Mode};

use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::sync::{Quiet, SyncOptions, SyncReport, sync};
use sm_engine::{Engine, EngineConfig, Vault};
use sm_server::{AppState, ServeConfig};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;

/// An emulator with one seeded account, and a private directory for the mirror.
pub struct World {
    pub server: EmulatorServer,
    pub account: Value,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

impl World {
    pub async fn start(scale: u64, seed: u64, name: &str) -> World {
        World::start_in_version(scale, seed, name, None).await
    }

    /// [`World::start`] with the account's default API version set.
    pub async fn start_in_version(
        scale: u64,
        seed: u64,
        name: &str,
        api_version: Option<&str>,
    ) -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emulator = Emulator::new(seed);
        let account = create_account(
            &emulator,
            &NewAccount {
                scale,
                seed: Some(seed),
                name: Some("Serve Co".into()),
                api_version: api_version.map(str::to_owned),
                ..Default::default()
            },
            seed,
        )
        .expect("an emulated account");
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("the emulator listens");
        let dir = std::env::temp_dir().join(format!("sm-server-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a test directory");
        World {
            server,
            account,
            dir,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(32)
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn emulator(&self) -> &Arc<Emulator> {
        &self.server.emulator
    }

    pub fn key(&self, role: &str) -> String {
        self.account["keys"][role]
            .as_str()
            .expect("a key")
            .to_owned()
    }

    pub fn account_id(&self) -> String {
        self.account["id"].as_str().expect("an id").to_owned()
    }

    pub fn connection(&self) -> Connection {
        Connection::new(self.account_id(), false)
    }

    /// An engine on a SQLite file in the test's folder, with no pacing.
    pub fn engine(&self) -> Arc<Engine> {
        let path = self.dir.join("mirror.db");
        self.engine_on(path.to_str().expect("a UTF-8 path"))
    }

    /// [`World::engine`] on the database `target` names (a Postgres URL, say).
    pub fn engine_on(&self, target: &str) -> Arc<Engine> {
        let store = sm_warehouse::open(target).expect("a store");
        let vault = Vault::open(Some(&"22".repeat(32)), &self.dir.join("key")).expect("a vault");
        Arc::new(Engine::new(
            Arc::from(store),
            vault,
            EngineConfig {
                api_base: self.server.base_url(),
                budget_share: f64::INFINITY,
                max_retries: 3,
            },
        ))
    }

    /// Connects the account with its secret test key (which may also make webhook endpoints),
    /// optionally with the signing secret of an endpoint made by hand.
    pub async fn connect(&self, engine: &Engine, webhook_secret: Option<&str>) -> Connection {
        let key = ApiKey::parse(&self.key("secret_test")).expect("a key");
        let outcome = connect(
            engine,
            key,
            ConnectOptions {
                webhook_secret: webhook_secret.map(str::to_owned),
                ..Default::default()
            },
        )
        .await
        .expect("the account connects");
        Connection::new(outcome.account.account_id, false)
    }

    pub async fn sync(&self, engine: &Engine) -> SyncReport {
        let report = sync(
            engine,
            &self.connection(),
            &SyncOptions::default(),
            Arc::new(Quiet),
        )
        .await
        .expect("a sync");
        assert_eq!(report.run.status, "succeeded", "{:?}", report.notes);
        report
    }

    /// A Stripe API call with the secret test key (form-encoded parameters); status and JSON.
    pub async fn stripe(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base_url());
        let request = match method {
            "GET" => self.http.get(url).query(form),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).form(form),
        };
        let response = request
            .bearer_auth(self.key("secret_test"))
            .send()
            .await
            .expect("the emulator answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    /// Like [`World::stripe`], but the call must succeed.
    pub async fn stripe_ok(&self, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
        let (status, body) = self.stripe(method, path, form).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        body
    }

    /// The newest events, newest first.
    pub async fn latest_events(&self, limit: usize) -> Vec<Value> {
        let page = self
            .stripe_ok("GET", "/v1/events", &[("limit", &limit.to_string())])
            .await;
        page["data"].as_array().cloned().unwrap_or_default()
    }

    /// The emulator's delivery behaviour.
    pub fn set_webhooks(&self, settings: DeliverySettings) {
        *self.emulator().webhooks.settings.write() = settings;
    }

    /// What webhook delivery has done so far.
    pub fn delivery_counts(&self) -> DeliveryCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.emulator().webhooks.counts;
        DeliveryCounts {
            attempted: c.attempted.load(Relaxed),
            succeeded: c.succeeded.load(Relaxed),
            failed_attempts: c.failed_attempts.load(Relaxed),
            given_up: c.given_up.load(Relaxed),
            duplicated: c.duplicated.load(Relaxed),
            timed_out: c.timed_out.load(Relaxed),
            pending: c.pending.load(Relaxed),
        }
    }

    /// Realistic changes through the emulator's API path (events, webhooks), off the runtime's
    /// worker threads; how many were made.
    pub async fn activity(&self, changes: u64, seed: u64) -> u64 {
        let emulator = self.emulator().clone();
        let id = self.account_id();
        tokio::task::spawn_blocking(move || {
            let account = emulator.world.account(&id).expect("the account");
            sm_emulator::seed::simulate_activity(&emulator, &account, Mode::Test, changes, seed)
                .changes
        })
        .await
        .expect("activity")
    }

    /// Every test-mode event the emulator recorded: `(id, type, created)`.
    pub fn emulator_events(&self) -> Vec<(String, String, i64)> {
        let account = self
            .emulator()
            .world
            .account(&self.account_id())
            .expect("the account");
        let store = account.mode(Mode::Test).read();
        store
            .slots()
            .filter(|&slot| store.get(slot).kind == Kind::Event)
            .map(|slot| {
                let stored = store.get(slot);
                let value: Value = serde_json::from_str(&stored.json).expect("an event");
                (
                    value["id"].as_str().unwrap_or_default().to_owned(),
                    value["type"].as_str().unwrap_or_default().to_owned(),
                    stored.created,
                )
            })
            .collect()
    }

    /// How many test-mode events the emulator recorded of these types (cheap: no parsing).
    pub fn emulator_event_count(&self, types: &[&str]) -> usize {
        let account = self
            .emulator()
            .world
            .account(&self.account_id())
            .expect("the account");
        let store = account.mode(Mode::Test).read();
        store
            .slots()
            .map(|slot| store.get(slot))
            .filter(|stored| stored.kind == Kind::Event)
            .filter(|stored| {
                stored.attrs[0]
                    .as_deref()
                    .is_some_and(|event_type| types.contains(&event_type))
            })
            .count()
    }

    /// The emulator's own copy of an object.
    pub fn emulator_object(&self, id: &str) -> Option<(bool, Value)> {
        let account = self
            .emulator()
            .world
            .account(&self.account_id())
            .expect("the account");
        let store = account.mode(Mode::Test).read();
        store
            .slots()
            .find(|&slot| store.value(slot)["id"] == id)
            .map(|slot| (store.get(slot).deleted, store.value(slot)))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryCounts {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed_attempts: u64,
    pub given_up: u64,
    pub duplicated: u64,
    pub timed_out: u64,
    pub pending: u64,
}

impl DeliveryCounts {
    /// Every delivery finished: none on the wire, none waiting to be sent again.
    pub fn quiet(&self) -> bool {
        self.attempted == self.succeeded + self.failed_attempts && self.pending == 0
    }
}

/// `serve` running in this process on 127.0.0.1:0.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub state: Arc<AppState>,
    /// A read-only API token, for `/healthz`'s detail and `/metrics`.
    pub token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts serve; with `public_url`, webhook endpoints are made pointing there (`Some("")`:
    /// the server's own address).
    pub async fn start(
        engine: Arc<Engine>,
        public_url: Option<&str>,
        interval: Duration,
        tolerance_secs: i64,
    ) -> Server {
        Server::start_limited(
            engine,
            public_url,
            interval,
            tolerance_secs,
            Default::default(),
        )
        .await
    }

    /// [`Server::start`] with the listener's limits chosen.
    pub async fn start_limited(
        engine: Arc<Engine>,
        public_url: Option<&str>,
        interval: Duration,
        tolerance_secs: i64,
        limits: sm_server::listener::Limits,
    ) -> Server {
        // The tests read each delivery's outcome in its answer: it waits for the apply.
        Server::start_with(
            engine,
            public_url,
            interval,
            tolerance_secs,
            limits,
            Duration::from_secs(10),
        )
        .await
    }

    /// [`Server::start_limited`] with the answer's wait chosen (zero: as `serve` runs, every
    /// delivery answered once stored).
    pub async fn start_with(
        engine: Arc<Engine>,
        public_url: Option<&str>,
        interval: Duration,
        tolerance_secs: i64,
        limits: sm_server::listener::Limits,
        answer_wait: Duration,
    ) -> Server {
        Server::start_config(
            engine,
            public_url,
            interval,
            tolerance_secs,
            limits,
            answer_wait,
            None,
        )
        .await
    }

    /// [`Server::start_with`] that lists balance transactions `balance_refresh_after` a
    /// charge, refund or payout event (`None`: only by syncs).
    pub async fn start_config(
        engine: Arc<Engine>,
        public_url: Option<&str>,
        interval: Duration,
        tolerance_secs: i64,
        limits: sm_server::listener::Limits,
        answer_wait: Duration,
        balance_refresh_after: Option<Duration>,
    ) -> Server {
        Server::start_role(
            engine,
            public_url,
            interval,
            (tolerance_secs, limits, answer_wait),
            balance_refresh_after,
            sm_server::Role::All,
        )
        .await
    }

    /// [`Server::start_config`] in a role of its own: intake and worker as separate processes
    /// on one Postgres would run.
    pub async fn start_role(
        engine: Arc<Engine>,
        public_url: Option<&str>,
        interval: Duration,
        (tolerance_secs, limits, answer_wait): (i64, sm_server::listener::Limits, Duration),
        balance_refresh_after: Option<Duration>,
        role: sm_server::Role,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        let base = format!("http://{address}");
        let config = ServeConfig {
            role,
            max_leases: 8,
            listen: address,
            public_url: public_url.map(|url| {
                if url.is_empty() {
                    base.clone()
                } else {
                    url.to_owned()
                }
            }),
            interval,
            tolerance_secs,
            limits,
            answer_wait,
            balance_refresh_after,
            notify: Default::default(),
        };
        let token =
            sm_engine::ops::tokens::create(&engine, &format!("monitor-{}", address.port()), true)
                .await
                .map(|t| t.secret.to_string())
                .unwrap_or_default();
        let state = AppState::new(engine, config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sm_server::serve_on(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            state,
            token,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// `/webhooks/{account}/test`.
    pub fn webhook_url(&self, account: &str) -> String {
        format!("{}/webhooks/{account}/test", self.base)
    }

    /// Webhook deliveries by outcome, from `/metrics`.
    pub async fn webhook_outcomes(&self, http: &reqwest::Client) -> BTreeMap<String, u64> {
        let text = http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("text");
        let mut outcomes = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("stripe_mirror_webhooks_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Some(outcome) = labels
                .split(',')
                .find_map(|l| l.strip_prefix("outcome=\""))
                .map(|o| o.trim_end_matches('"').to_owned())
            else {
                continue;
            };
            *outcomes.entry(outcome).or_default() += value.parse::<f64>().unwrap_or(0.0) as u64;
        }
        outcomes
    }

    /// `/healthz`.
    pub async fn health(&self, http: &reqwest::Client) -> Value {
        http.get(format!("{}/healthz", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("/healthz answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits until the scheduler finished a successful sync of `label` (its first runs at once).
    pub async fn wait_for_sync(&self, http: &reqwest::Client, label: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.health(http).await;
            if !health["accounts"][label]["last_success"].is_null() {
                return;
            }
            assert!(
                health["accounts"][label]["last_error"].is_null(),
                "the scheduled sync failed: {health}"
            );
            assert!(
                Instant::now() < deadline,
                "no scheduled sync within 30 s: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `Stripe-Signature` for `body` signed with `secret` at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    sm_stripe::webhook::signature_header(&[secret], timestamp, body)
}

/// POSTs `body` to `url` with `signature` (none: no header); status and JSON answer.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value) {
    let mut request = http
        .post(url)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    let response = request.send().await.expect("serve answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One mirrored row: `(deleted, data, version)`.
pub fn mirror_row(
    engine: &Engine,
    connection: &Connection,
    table: &str,
    id: &str,
) -> Option<(bool, Value, i64)> {
    let (_, rows) = engine
        .store
        .query(&format!(
            "SELECT deleted, data, version FROM {table} WHERE account_id = '{}' AND livemode = 0 AND id = '{id}'",
            connection.account_id
        ))
        .expect("a query");
    rows.first().map(|row| {
        (
            row[0].as_deref() == Some("1"),
            serde_json::from_str(row[1].as_deref().unwrap_or("null")).expect("JSON data"),
            row[2].as_deref().unwrap_or("0").parse().expect("a version"),
        )
    })
}

/// Whether the mirror holds an event.
pub fn has_event(engine: &Engine, connection: &Connection, id: &str) -> bool {
    let (_, rows) = engine
        .store
        .query(&format!(
            "SELECT count(*) FROM events WHERE account_id = '{}' AND id = '{id}'",
            connection.account_id
        ))
        .expect("a query");
    rows[0][0].as_deref() == Some("1")
}

/// Ids of every event the mirror holds for a connection.
pub fn mirror_event_ids(engine: &Engine, connection: &Connection) -> HashSet<String> {
    let (_, rows) = engine
        .store
        .query(&format!(
            "SELECT id FROM events WHERE account_id = '{}' AND livemode = 0",
            connection.account_id
        ))
        .expect("a query");
    rows.into_iter().filter_map(|r| r[0].clone()).collect()
}

/// Compares every mirrored table but `excluded` with the emulator's own objects, by the rules
/// of `sm_test_support`. Returns the differences found (empty: exact) and how many objects were
/// compared.
pub fn compare(
    world: &World,
    engine: &Engine,
    connection: &Connection,
    excluded: &[&str],
) -> (Vec<String>, usize) {
    let account = world
        .emulator()
        .world
        .account(&world.account_id())
        .expect("the account");
    let comparison = sm_test_support::compare(
        &sm_test_support::emulator_objects(&account),
        engine.store.as_ref(),
        connection,
        sm_test_support::Scope {
            excluded,
            ..Default::default()
        },
    );
    (comparison.differences(), comparison.compared)
}

#[allow(unused_imports)]
pub use sm_test_support::describe;

/// What the recording proxy saw.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Deliveries per event id.
    pub copies: HashMap<String, u32>,
    /// Deliveries whose event is older than one delivered before it.
    pub out_of_order: u64,
    newest_created: i64,
    /// The first deliveries, exactly as they came: (Stripe-Signature, body, answer status).
    pub captured: Vec<(String, Bytes, u16)>,
}

/// A proxy in front of serve that forwards webhook deliveries unchanged and records them.
pub struct Proxy {
    pub base: String,
    pub recorded: Arc<Mutex<Recorded>>,
    upstream: Arc<Mutex<String>>,
}

impl Proxy {
    /// Forwards every POST to the upstream set with [`Proxy::forward_to`] (same path).
    pub async fn start() -> Proxy {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let upstream = Arc::new(Mutex::new(String::new()));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("an HTTP client");
        let (shared, target) = (recorded.clone(), upstream.clone());
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (client, recorded) = (client.clone(), shared.clone());
            let upstream = target.lock().clone();
            async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let mut request = client
                    .post(format!("{upstream}{uri}"))
                    .header("Content-Type", "application/json; charset=utf-8")
                    .body(body.clone());
                if let Some(signature) = &signature {
                    request = request.header("Stripe-Signature", signature);
                }
                let (status, answer) = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, response.bytes().await.unwrap_or_default())
                    }
                    Err(_) => (502, Bytes::new()),
                };
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let created = event["created"].as_i64().unwrap_or(0);
                let mut recorded = recorded.lock();
                *recorded.statuses.entry(status).or_default() += 1;
                if let Some(id) = event["id"].as_str() {
                    *recorded.copies.entry(id.to_owned()).or_default() += 1;
                }
                if created < recorded.newest_created {
                    recorded.out_of_order += 1;
                }
                recorded.newest_created = recorded.newest_created.max(created);
                if recorded.captured.len() < 50
                    && status == 200
                    && let Some(signature) = signature
                {
                    recorded.captured.push((signature, body, status));
                }
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    answer,
                )
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            base,
            recorded,
            upstream,
        }
    }

    /// Where deliveries go from now on (`http://127.0.0.1:PORT`).
    pub fn forward_to(&self, upstream: &str) {
        *self.upstream.lock() = upstream.to_owned();
    }
}

/// A JSON event body of `type` about `object`, as Stripe would send it.
pub fn event_json(id: &str, event_type: &str, created: i64, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "object": "event",
        "api_version": "2023-08-16",
        "created": created,
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
    }))
    .expect("JSON")
}

/// Waits for `check` to hold, polling every `every`, at most `limit`; whether it held.
pub async fn wait_until(limit: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until deliveries have settled — nothing on the wire, the counts still for 4 s, the
/// inbox empty — and says how long that took (at most 120 s).
pub async fn settle(world: &World, engine: &sm_engine::Engine) -> Duration {
    let settle = Instant::now();
    let mut last = world.delivery_counts();
    let mut still_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let counts = world.delivery_counts();
        if counts != last || !counts.quiet() {
            last = counts;
            still_since = Instant::now();
        }
        let waiting: u64 = engine
            .store
            .inbox_depths()
            .unwrap()
            .iter()
            .map(|d| d.waiting)
            .sum();
        if waiting == 0 && still_since.elapsed() > Duration::from_secs(4) {
            return settle.elapsed();
        }
        assert!(
            settle.elapsed() < Duration::from_secs(120),
            "did not settle in 120 s: {waiting} waiting in the inbox, {counts:?}"
        );
    }
}
