//! Webhook delivery: each recorded event is POSTed, signed as API.md §7, to every enabled endpoint
//! of its account and mode that listens to its type; failures are retried with back-off. Switches
//! for tests: pause, shuffle (out of order), duplicate, delay, and signing with every secret of an
//! endpoint while it rolls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::catalog::Kind;
use crate::rng::Rng;
use crate::store::{ListQuery, ModeStore};
use crate::world::{Mode, World};

/// How deliveries behave; switchable at runtime.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeliverySettings {
    /// Hold every delivery until switched back on.
    pub paused: bool,
    /// Deliver in random order within each batch of `shuffle_window` events.
    pub shuffle: bool,
    pub shuffle_window: usize,
    /// Probability that a delivery is sent twice.
    pub duplicate: f64,
    /// Milliseconds to wait before each delivery.
    pub delay_ms: u64,
    /// Probability that a delivery is held back by `late_ms` (arrives after later ones).
    pub late: f64,
    pub late_ms: u64,
    /// First retry after this many milliseconds, doubling each time.
    pub retry_base_ms: u64,
    /// Attempts in all before a delivery is given up.
    pub max_attempts: u32,
    /// How long a receiver may take to answer.
    pub timeout_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            paused: false,
            shuffle: false,
            shuffle_window: 100,
            duplicate: 0.0,
            delay_ms: 0,
            late: 0.0,
            late_ms: 2_000,
            retry_base_ms: 1_000,
            max_attempts: 4,
            timeout_ms: 10_000,
        }
    }
}

/// Counts of what delivery did, for tests and the control API.
#[derive(Debug, Default, Serialize)]
pub struct DeliveryCounts {
    pub attempted: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub given_up: AtomicU64,
    pub duplicated: AtomicU64,
    /// Failed attempts that waited the whole timeout for an answer (of `failed_attempts`).
    pub timed_out: AtomicU64,
    /// Deliveries not finished yet: on the wire, waiting to be sent again after a failure, or
    /// held back (late ones, second copies). Zero: every delivery succeeded or was given up.
    pub pending: AtomicU64,
}

/// Counts a delivery as pending until its sending task ends, however it ends.
struct Pending(Arc<Webhooks>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.counts.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An event waiting to go out.
#[derive(Debug, Clone)]
pub struct Job {
    pub account: String,
    pub mode: Mode,
    pub event_type: String,
    pub payload: Arc<str>,
}

/// One POST of one event to one endpoint.
#[derive(Debug, Clone)]
struct Delivery {
    url: String,
    endpoint_id: String,
    account: String,
    mode: Mode,
    payload: Arc<str>,
    attempt: u32,
    /// Told when this delivery is first signed: its duplicate (if any) leaves a little over a
    /// second after that (Stripe's duplicates are separate sends, signed at their own moment,
    /// never byte-identical), not after a delay both started together (under load the first
    /// may leave late, and the two would share a signed second).
    signed: Option<Arc<parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>>,
}

/// The sending half, kept by the emulator.
#[derive(Debug)]
pub struct Webhooks {
    pub settings: RwLock<DeliverySettings>,
    pub counts: DeliveryCounts,
    /// How long each answered attempt took to be answered (2xx or not), in microseconds, in
    /// the order answers came (the first million): what a benchmark reads as the endpoint's
    /// answer latency.
    pub answer_micros: parking_lot::Mutex<Vec<u32>>,
    queue: mpsc::UnboundedSender<Job>,
}

impl Webhooks {
    /// Starts the delivery task; call inside a Tokio runtime.
    pub fn start(world: Arc<World>) -> Arc<Webhooks> {
        let (queue, jobs) = mpsc::unbounded_channel();
        let webhooks = Arc::new(Webhooks {
            settings: RwLock::new(DeliverySettings::default()),
            counts: DeliveryCounts::default(),
            answer_micros: Default::default(),
            queue,
        });
        tokio::spawn(run(Arc::downgrade(&webhooks), world, jobs));
        webhooks
    }

    pub fn enqueue(&self, job: Job) {
        let _ = self.queue.send(job);
    }
}

/// Whether an endpoint listening to `enabled` receives `event_type`.
pub fn listens(enabled: &Value, event_type: &str) -> bool {
    enabled
        .as_array()
        .is_some_and(|types| types.iter().any(|t| t == "*" || t == event_type))
}

/// How many enabled endpoints of a mode listen to `event_type`.
pub fn listener_count(store: &ModeStore, event_type: &str) -> u32 {
    endpoints(store)
        .iter()
        .filter(|(_, _, enabled, _)| listens(enabled, event_type))
        .count() as u32
}

/// `(id, url, enabled_events, api_version)` of every enabled endpoint.
fn endpoints(store: &ModeStore) -> Vec<(String, String, Value, Option<String>)> {
    let all = ListQuery {
        limit: 64,
        ..Default::default()
    };
    store
        .page(Kind::WebhookEndpoint, &all, |_| true)
        .0
        .into_iter()
        .map(|slot| store.value(slot))
        .filter(|e| e["status"] == json!("enabled"))
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["url"].as_str().unwrap_or_default().to_owned(),
                e["enabled_events"].clone(),
                e["api_version"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

async fn run(
    webhooks: std::sync::Weak<Webhooks>,
    world: Arc<World>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    // reqwest is built without a default TLS provider; deliveries to https endpoints use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Redirects are not followed: Stripe counts any 3xx as a failed delivery (API.md §7).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client builds");
    let mut rng = Rng::from_entropy();
    let mut held: Vec<Delivery> = Vec::new();
    loop {
        // Wait for work, but wake up now and then to release held deliveries once unpaused.
        let job = tokio::time::timeout(Duration::from_millis(50), jobs.recv()).await;
        let Some(webhooks) = webhooks.upgrade() else {
            return;
        };
        let settings = webhooks.settings.read().clone();
        match job {
            Ok(None) => return,
            Ok(Some(job)) => {
                held.extend(deliveries_for(&world, job));
                // Take whatever else is queued right now so that a batch can be shuffled.
                while held.len() < settings.shuffle_window.max(1) * 4 {
                    match jobs.try_recv() {
                        Ok(job) => held.extend(deliveries_for(&world, job)),
                        Err(_) => break,
                    }
                }
            }
            Err(_) => {}
        }
        if settings.paused || held.is_empty() {
            continue;
        }
        if settings.shuffle {
            for chunk in held.chunks_mut(settings.shuffle_window.max(2)) {
                for i in (1..chunk.len()).rev() {
                    chunk.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
        }
        for mut delivery in held.drain(..) {
            if rng.chance(settings.duplicate) {
                webhooks.counts.duplicated.fetch_add(1, Ordering::Relaxed);
                let (signed, first_signed) = tokio::sync::oneshot::channel();
                delivery.signed = Some(Arc::new(parking_lot::Mutex::new(Some(signed))));
                let mut echo = delivery.clone();
                echo.signed = None;
                webhooks.counts.pending.fetch_add(1, Ordering::Relaxed);
                let (webhooks, world, client) = (webhooks.clone(), world.clone(), client.clone());
                tokio::spawn(async move {
                    // A first copy never sent (its endpoint went) drops the sender: the
                    // duplicate then finds the endpoint gone too.
                    let _ = first_signed.await;
                    send(webhooks, world, client, echo, 1_100).await
                });
            }
            let late = if rng.chance(settings.late) {
                settings.late_ms
            } else {
                0
            };
            webhooks.counts.pending.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(send(
                webhooks.clone(),
                world.clone(),
                client.clone(),
                delivery,
                settings.delay_ms + late,
            ));
        }
    }
}

fn deliveries_for(world: &World, job: Job) -> Vec<Delivery> {
    let Some(account) = world.account(&job.account) else {
        return Vec::new();
    };
    let store = account.mode(job.mode).read();
    let versioned = account
        .versioned_events
        .load(std::sync::atomic::Ordering::Relaxed);
    endpoints(&store)
        .into_iter()
        .filter(|(_, _, enabled, _)| listens(enabled, &job.event_type))
        .map(|(endpoint_id, url, _, version)| {
            // An endpoint with a version of its own gets the event in it; the others in the
            // event's own version.
            // An endpoint with a version of its own always says so in `api_version`.
            let payload = if versioned || version.is_some() {
                let mut event: Value = serde_json::from_str(&job.payload).unwrap_or_default();
                crate::versions::render_delivery(&mut event, version.as_deref(), &store);
                Arc::from(event.to_string())
            } else {
                job.payload.clone()
            };
            Delivery {
                url,
                endpoint_id,
                account: job.account.clone(),
                mode: job.mode,
                payload,
                attempt: 1,
                signed: None,
            }
        })
        .collect()
}

async fn send(
    webhooks: Arc<Webhooks>,
    world: Arc<World>,
    client: reqwest::Client,
    mut delivery: Delivery,
    delay_ms: u64,
) {
    let _pending = Pending(webhooks.clone());
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    loop {
        let settings = webhooks.settings.read().clone();
        // Secrets are read at send time so that a roll between attempts is honoured; an endpoint
        // deleted or disabled meanwhile gets nothing more (Stripe stops retrying to it).
        let secrets: Vec<String> = match world.account(&delivery.account) {
            Some(account) => {
                let store = account.mode(delivery.mode).read();
                let enabled = store.slot_of(&delivery.endpoint_id).is_some_and(|slot| {
                    !store.get(slot).deleted && store.value(slot)["status"] == json!("enabled")
                });
                if !enabled {
                    return;
                }
                store
                    .webhook_secrets
                    .get(&delivery.endpoint_id)
                    .cloned()
                    .unwrap_or_default()
            }
            None => return,
        };
        if secrets.is_empty() {
            return; // The endpoint was deleted.
        }
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let timestamp = world.now();
        if let Some(signed) = delivery.signed.take()
            && let Some(tell) = signed.lock().take()
        {
            let _ = tell.send(());
        }
        let signature = sm_stripe::webhook::signature_header(
            &secret_refs,
            timestamp,
            delivery.payload.as_bytes(),
        );
        webhooks.counts.attempted.fetch_add(1, Ordering::Relaxed);
        let sent = std::time::Instant::now();
        let answer = client
            .post(&delivery.url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Stripe-Signature", signature)
            .header(
                "User-Agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .timeout(Duration::from_millis(settings.timeout_ms))
            .body(delivery.payload.to_string())
            .send()
            .await;
        if answer.is_ok() {
            let mut answers = webhooks.answer_micros.lock();
            // Bounded: an emulator left running keeps the first million.
            if answers.len() < 1_000_000 {
                answers.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
        }
        if matches!(&answer, Ok(response) if response.status().is_success()) {
            webhooks.counts.succeeded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        webhooks
            .counts
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        if matches!(&answer, Err(error) if error.is_timeout()) {
            webhooks.counts.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        if delivery.attempt >= settings.max_attempts {
            webhooks.counts.given_up.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let backoff = settings
            .retry_base_ms
            .saturating_mul(1 << (delivery.attempt - 1).min(16));
        delivery.attempt += 1;
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
}
