//! A Stripe of our own: accounts with test and live modes, secret/restricted/publishable keys with
//! `rak_` permissions, the objects of a billing account, events, signed webhook deliveries, rate
//! limits and injected faults — served over real HTTP so that every test, the demo and the
//! benchmarks talk to it exactly as they would talk to Stripe.
//!
//! Start it in-process with [`EmulatorServer::start`] (port 0 picks a free port), or as
//! `stripe-mirror emulator`. `/v1/…` is the Stripe API; `/_emulator/…` is the control API
//! (see `control.rs` and the README).

pub mod api;
pub mod catalog;
pub mod control;
pub mod failure;
pub mod form;
pub mod limits;
pub mod objects;
pub mod ops;
pub mod rng;
pub mod seed;
pub mod server;
pub mod store;
pub mod versions;
pub mod webhooks;
pub mod world;

use std::sync::Arc;

pub use server::EmulatorServer;
pub use world::{KeyKind, Mode};

use crate::api::IdempotencyStore;
use crate::failure::Failure;
use crate::limits::Limits;
use crate::objects::{Origin, Tx};
use crate::webhooks::{Job, Webhooks};
use crate::world::{Account, World};

/// The API version the emulator's objects are shaped after (that of the OpenAPI spec it is checked
/// against) and the default `Stripe-Version` it answers with.
pub const API_VERSION: &str = "2023-08-16";

/// The whole emulator: world, limits, idempotency memory and webhook delivery.
#[derive(Debug)]
pub struct Emulator {
    pub world: Arc<World>,
    pub limits: Limits,
    pub idempotency: IdempotencyStore,
    pub webhooks: Arc<Webhooks>,
    /// `/v1` requests received, by `METHOD /path` (ids as sent): what a test counts to prove a
    /// client left an endpoint alone. `GET`/`DELETE /_emulator/requests` read and reset it.
    pub requests: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
}

impl Emulator {
    /// A new, empty emulator whose random choices follow `seed`. Needs a Tokio runtime (webhooks).
    pub fn new(seed: u64) -> Arc<Emulator> {
        let world = Arc::new(World::new(seed));
        Arc::new(Emulator {
            webhooks: Webhooks::start(world.clone()),
            world,
            limits: Limits::new(seed),
            idempotency: IdempotencyStore::default(),
            requests: Default::default(),
        })
    }

    /// Runs `change` as one write transaction on an account's mode, then hands the events it
    /// recorded to webhook delivery. Every change to emulated data goes through here.
    pub fn write<T>(
        &self,
        account: &Account,
        mode: Mode,
        origin: Origin,
        change: impl FnOnce(&mut Tx) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.write_at(account, mode, origin, self.world.now(), true, change)
    }

    /// [`Emulator::write`] with the clock set to `now` and events recorded or not (seeding history).
    pub fn write_at<T>(
        &self,
        account: &Account,
        mode: Mode,
        origin: Origin,
        now: i64,
        record_events: bool,
        change: impl FnOnce(&mut Tx) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut rng = rng::Rng::new(self.world.rng.lock().next_u64());
        let (result, jobs) = {
            let mut store = account.mode(mode).write();
            let listening: Vec<serde_json::Value> = {
                let all = store::ListQuery {
                    limit: 64,
                    ..Default::default()
                };
                store
                    .page(catalog::Kind::WebhookEndpoint, &all, |_| true)
                    .0
                    .into_iter()
                    .map(|slot| store.value(slot))
                    .filter(|e| e["status"] == "enabled")
                    .map(|e| e["enabled_events"].clone())
                    .collect()
            };
            let listeners = |event_type: &str| {
                listening
                    .iter()
                    .filter(|enabled| webhooks::listens(enabled, event_type))
                    .count() as u32
            };
            let mut tx = Tx {
                store: &mut store,
                now,
                rng: &mut rng,
                origin,
                record_events,
                new_events: Vec::new(),
                listeners: &listeners,
                api_version: account.api_version.read().clone(),
            };
            if record_events && versions::differs(&tx.api_version) {
                account
                    .versioned_events
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let result = change(&mut tx);
            let new_events = std::mem::take(&mut tx.new_events);
            let jobs: Vec<Job> = if listening.is_empty() {
                Vec::new()
            } else {
                new_events
                    .into_iter()
                    .map(|slot| {
                        let event = store.get(slot);
                        let event_type = event.attrs[0].as_deref().unwrap_or_default().to_owned();
                        Job {
                            account: account.id.clone(),
                            mode,
                            event_type,
                            payload: Arc::from(&*event.json),
                        }
                    })
                    .collect()
            };
            (result, jobs)
        };
        for job in jobs {
            self.webhooks.enqueue(job);
        }
        result
    }
}
