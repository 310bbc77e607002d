//! Test support: an in-process emulator with a seeded account, an engine on a real SQLite file
//! (or Postgres when `STRIPE_MIRROR_TEST_POSTGRES_URL` is set and asked for), and the comparison
//! of the mirror with the emulator's own state.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer, Mode};
use sm_engine::catalog::by_object;
use sm_engine::{Engine, EngineConfig, Vault};
use sm_warehouse::Connection;

pub struct World {
    pub server: EmulatorServer,
    pub account: Value,
    pub dir: std::path::PathBuf,
}

impl World {
    pub async fn start(scale: u64, seed: u64, name: &str) -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emulator = Emulator::new(seed);
        let account = create_account(
            &emulator,
            &NewAccount {
                scale,
                seed: Some(seed),
                name: Some("Exact Co".into()),
                ..Default::default()
            },
            seed,
        )
        .unwrap();
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("sm-engine-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        World {
            server,
            account,
            dir,
        }
    }

    pub fn key(&self, role: &str) -> String {
        self.account["keys"][role].as_str().unwrap().to_owned()
    }

    pub fn account_id(&self) -> String {
        self.account["id"].as_str().unwrap().to_owned()
    }

    /// An engine on a SQLite file in the test's folder (or on `database` when given), with no
    /// pacing (the emulator enforces no limits unless asked).
    pub fn engine(&self, database: Option<&str>) -> Engine {
        let path = self.dir.join("mirror.db");
        let target = database
            .map(str::to_owned)
            .unwrap_or_else(|| path.to_str().unwrap().to_owned());
        let store = sm_warehouse::open(&target).unwrap();
        let vault = Vault::open(Some(&"11".repeat(32)), &self.dir.join("key")).unwrap();
        Engine::new(
            Arc::from(store),
            vault,
            EngineConfig {
                api_base: self.server.base_url(),
                budget_share: f64::INFINITY,
                max_retries: 3,
            },
        )
    }

    /// A burst of changes through the emulator's API path (events, webhooks).
    pub fn activity(&self, changes: u64, seed: u64) -> u64 {
        let emulator = &self.server.emulator;
        let account = emulator.world.account(&self.account_id()).unwrap();
        sm_emulator::seed::simulate_activity(emulator, &account, Mode::Test, changes, seed).changes
    }
}

/// Compares every mirrored table with the emulator's own objects. Returns the differences found
/// (empty: exact) and how many objects were compared.
pub fn compare(world: &World, engine: &Engine, connection: &Connection) -> (Vec<String>, usize) {
    let account = world
        .server
        .emulator
        .world
        .account(&world.account_id())
        .unwrap();
    let store = account.mode(Mode::Test).read();
    let mut expected: HashMap<&'static str, HashMap<String, (bool, Value)>> = HashMap::new();
    let deleted_customers: std::collections::HashSet<String> = store
        .slots()
        .filter(|&slot| store.get(slot).deleted && store.get(slot).kind.info().object == "customer")
        .map(|slot| store.value(slot)["id"].as_str().unwrap().to_owned())
        .collect();
    for slot in store.slots() {
        let stored = store.get(slot);
        let Some(resource) = by_object(stored.kind.info().object) else {
            continue;
        };
        let value = store.value(slot);
        // Payment methods attached to no customer are not in any list Stripe offers.
        if resource.table == "payment_methods" && value["customer"].is_null() {
            continue;
        }
        // Lists under a deleted customer are gone from Stripe's API: such children may or may not
        // have been mirrored before the deletion; either is right.
        let per_customer = matches!(
            resource.source,
            sm_engine::catalog::Source::PerParent { .. }
        );
        if per_customer
            && value["customer"]
                .as_str()
                .is_some_and(|c| deleted_customers.contains(c))
        {
            continue;
        }
        expected.entry(resource.table).or_default().insert(
            value["id"].as_str().unwrap().to_owned(),
            (stored.deleted, value),
        );
    }
    drop(store);
    let mut differences = Vec::new();
    let mut compared = 0;
    for resource in sm_engine::catalog::RESOURCES {
        let rows = engine.store.rows(connection, resource.table).unwrap();
        let mirrored: HashMap<String, (bool, Value)> = rows
            .into_iter()
            .map(|r| (r.id, (r.deleted, r.data)))
            .collect();
        let wanted = expected.remove(resource.table).unwrap_or_default();
        for (id, (deleted, value)) in &wanted {
            compared += 1;
            match (mirrored.get(id), deleted) {
                (None, true) => {}
                (Some((true, _)), true) => {}
                (Some((false, _)), true) => differences.push(format!(
                    "{}/{id}: deleted in Stripe, live in the mirror",
                    resource.table
                )),
                (None, false) => {
                    differences.push(format!("{}/{id}: missing from the mirror", resource.table))
                }
                (Some((true, _)), false) => differences.push(format!(
                    "{}/{id}: marked deleted but exists",
                    resource.table
                )),
                (Some((false, data)), false) => {
                    if data != value {
                        differences.push(format!(
                            "{}/{id}: fields differ: {}",
                            resource.table,
                            first_difference(value, data)
                        ));
                    }
                }
            }
        }
        for (id, (_, data)) in &mirrored {
            let orphan = data["customer"]
                .as_str()
                .is_some_and(|c| deleted_customers.contains(c))
                && matches!(
                    resource.source,
                    sm_engine::catalog::Source::PerParent { .. }
                );
            if !wanted.contains_key(id) && !orphan {
                differences.push(format!(
                    "{}/{id}: in the mirror, unknown to Stripe",
                    resource.table
                ));
            }
        }
    }
    (differences, compared)
}

fn first_difference(expected: &Value, actual: &Value) -> String {
    if let (Some(e), Some(a)) = (expected.as_object(), actual.as_object()) {
        for (key, value) in e {
            if a.get(key) != Some(value) {
                return format!(
                    "{key}: Stripe {} / mirror {}",
                    short(value),
                    a.get(key).map(short).unwrap_or_else(|| "(absent)".into())
                );
            }
        }
        for key in a.keys() {
            if !e.contains_key(key) {
                return format!("{key}: only in the mirror");
            }
        }
    }
    "values differ".into()
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}…", &text[..80])
    } else {
        text
    }
}
