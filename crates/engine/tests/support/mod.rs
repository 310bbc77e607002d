//! Test support: an in-process emulator with a seeded account, an engine on a real SQLite file
//! (or Postgres when `STRIPE_MIRROR_TEST_POSTGRES_URL` is set and asked for), and the comparison
//! of the mirror with the emulator's own state.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::Value;
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer, Mode};
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
        self.engine_retrying(database, 3)
    }

    /// `engine`, retrying each request up to `max_retries` times.
    pub fn engine_retrying(&self, database: Option<&str>, max_retries: u32) -> Engine {
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
                max_retries,
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

/// Compares every mirrored table with the emulator's own objects, by the rules of
/// `sm_test_support`. Returns the differences found (empty: exact) and how many objects were
/// compared.
pub fn compare(world: &World, engine: &Engine, connection: &Connection) -> (Vec<String>, usize) {
    let account = world
        .server
        .emulator
        .world
        .account(&world.account_id())
        .unwrap();
    let comparison = sm_test_support::compare(
        &sm_test_support::emulator_objects(&account),
        engine.store.as_ref(),
        connection,
        Default::default(),
    );
    (comparison.differences(), comparison.compared)
}
