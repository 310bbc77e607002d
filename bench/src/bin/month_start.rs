//! A month start, as `serve` meets it (issue "Webhook intake under a burst"): an emulated
//! account whose active subscriptions all renew within a minute — for each, an invoice created,
//! finalized and paid, with its payment intent, charge and balance transaction — while the
//! emulator delivers every event to `serve`'s managed webhook endpoint as Stripe does (shuffled,
//! 30% twice, 10% late, a 10 s timeout, retries) and enforces Stripe's rate limits.
//!
//! Prints: the delivery answers' latency (p50, p99, max; goal p99 under 50 ms), how long after
//! the last renewal the mirror held every event of the run with nothing left in its inbox, the
//! refetches per event (ties settled by asking Stripe, and every GET serve sent), and what
//! delivery did (attempts, timeouts, given up). It never asserts. Build in release (see
//! bench/README.md).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use sm_bench::wait_for_first_sync;
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::webhooks::DeliverySettings;
use sm_emulator::world::Mode;
use sm_emulator::{Emulator, EmulatorServer};
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::sync::{Quiet, SyncOptions, sync};
use sm_engine::{Engine, EngineConfig, Vault};
use sm_server::{AppState, ServeConfig};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;

type Error = Box<dyn std::error::Error + Send + Sync>;

const GOAL_P99_MS: f64 = 50.0;

#[derive(Debug, Parser)]
#[command(
    about = "A month-start billing run delivered to serve: answer latency, time until current, refetches per event"
)]
struct Args {
    /// Subscriptions that renew (each an invoice created, finalized and paid).
    #[arg(long, default_value_t = 5_000)]
    subscriptions: u64,
    /// Customers of the emulated account (enough that as many subscriptions are active).
    #[arg(long, default_value_t = 16_500)]
    scale: u64,
    /// Seconds over which the renewals happen.
    #[arg(long, default_value_t = 60)]
    spread: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Test mode (Stripe's 25 requests/s) instead of live (100/s), where month starts happen.
    #[arg(long)]
    test_mode: bool,
    /// Folder of the SQLite mirror (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("month_start: {error}");
        std::process::exit(1);
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[at]) / 1_000.0
}

fn run(args: Args) -> Result<(), Error> {
    let (dir, remove_dir) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("sm-month-start-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let database = dir.join("month-start.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let mode = if args.test_mode {
        Mode::Test
    } else {
        Mode::Live
    };
    let emulator_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("emu-server")
        .enable_all()
        .build()?;
    let setup_started = Instant::now();
    let (server, account) = emulator_runtime.block_on(async {
        let emulator = Emulator::new(args.seed);
        let account = create_account(
            &emulator,
            &NewAccount {
                name: Some("Month Start Co".into()),
                seed: Some(args.seed),
                scale: if args.test_mode { args.scale } else { 0 },
                live_scale: if args.test_mode { 0 } else { args.scale },
                ..Default::default()
            },
            args.seed,
        )
        .map_err(|f| format!("could not create the account: {}", f.body))?;
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse()?).await?;
        Ok::<_, Error>((server, account))
    })?;
    let emulator = server.emulator.clone();
    let account_id = account["id"].as_str().unwrap_or_default().to_owned();
    let world_account = emulator
        .world
        .account(&account_id)
        .ok_or("the emulated account is missing")?;
    let role = if args.test_mode {
        "secret_test"
    } else {
        "secret_live"
    };
    let key = ApiKey::parse(account["keys"][role].as_str().unwrap_or_default())?;

    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()?;
    // The engine as serve runs it: paced within its share of Stripe's rate budget.
    let engine_with = |budget_share: f64| -> Result<Arc<Engine>, Error> {
        let store = sm_warehouse::open(&database.to_string_lossy())?;
        let vault = Vault::open(Some(&"22".repeat(32)), &dir.join("vault.key"))?;
        Ok(Arc::new(Engine::new(
            Arc::from(store),
            vault,
            EngineConfig {
                api_base: server.base_url(),
                budget_share,
                ..Default::default()
            },
        )))
    };
    // The backfill is set-up, not measured: made unpaced, before Stripe's limits are on.
    let connection = server_runtime.block_on(async {
        let engine = engine_with(f64::INFINITY)?;
        let outcome = connect(&engine, key, ConnectOptions::default()).await?;
        let connection = Connection::new(outcome.account.account_id.clone(), !args.test_mode);
        let report = sync(
            &engine,
            &connection,
            &SyncOptions::default(),
            Arc::new(Quiet),
        )
        .await?;
        if report.run.status != "succeeded" {
            return Err::<_, Error>(format!("the backfill ended {}", report.run.status).into());
        }
        Ok(connection)
    })?;
    emulator.limits.settings.write().enabled = true;
    let engine = engine_with(EngineConfig::default().budget_share)?;
    let (base, token, stop, served, state) = server_runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let base = format!("http://{address}");
        let state = AppState::new(
            engine.clone(),
            ServeConfig {
                role: sm_server::Role::All,
                max_leases: 8,
                listen: address,
                // The emulator delivers to serve's own managed endpoint.
                public_url: Some(base.clone()),
                interval: Duration::from_secs(3600),
                tolerance_secs: sm_stripe::webhook::DEFAULT_TOLERANCE_SECS,
                limits: Default::default(),
                answer_wait: Duration::ZERO,
                balance_refresh_after: Some(Duration::from_secs(10)),
                notify: Default::default(),
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(sm_server::serve_on(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        let token = sm_engine::ops::tokens::create(&engine, "month-start", true)
            .await?
            .secret
            .to_string();
        wait_for_first_sync(&base, &connection.label(), &token).await?;
        Ok::<_, Error>((base, token, stop, served, state))
    })?;
    let mirrored = engine.store.count(&connection, "subscriptions")?;
    eprintln!(
        "set up in {:.0} s: {} mode, {} subscriptions mirrored, serve at {base}",
        setup_started.elapsed().as_secs_f64(),
        if args.test_mode { "test" } else { "live" },
        mirrored.0
    );
    *emulator.webhooks.settings.write() = DeliverySettings {
        shuffle: true,
        shuffle_window: 300,
        duplicate: 0.3,
        late: 0.1,
        late_ms: 1_500,
        retry_base_ms: 1_000,
        max_attempts: 8,
        timeout_ms: 10_000,
        ..Default::default()
    };
    let events_of = || -> HashSet<String> {
        let store = world_account.mode(mode).read();
        store
            .slots()
            .filter(|&slot| store.get(slot).kind == sm_emulator::catalog::Kind::Event)
            .filter_map(|slot| store.value(slot)["id"].as_str().map(str::to_owned))
            .collect::<HashSet<_>>()
    };
    let before = events_of();
    emulator.requests.lock().clear();
    emulator.webhooks.answer_micros.lock().clear();
    let counts_before = serde_json::to_value(&emulator.webhooks.counts)?;

    // The billing run: an even share of the renewals each second.
    let started = Instant::now();
    let per_second = args.subscriptions.div_ceil(args.spread.max(1));
    let mut invoices = 0;
    for second in 0..args.spread.max(1) {
        let report = sm_emulator::seed::renew_subscriptions(
            &emulator,
            &world_account,
            mode,
            per_second.min(args.subscriptions - invoices),
        );
        invoices += report.invoices;
        if invoices >= args.subscriptions || report.invoices == 0 {
            break;
        }
        let next = Duration::from_secs(second + 1);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let billed = started.elapsed();
    let run_events: Vec<String> = events_of()
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    eprintln!(
        "billing run: {invoices} invoices, {} events in {:.1} s",
        run_events.len(),
        billed.as_secs_f64()
    );

    // Current: every event of the run in the mirror, nothing waiting in the inbox. Looked at
    // lightly (the inbox's depth twice a second; the events only once it is empty, and then
    // only those not yet seen), so that the looking takes little of the two cores.
    let mut last_said = Instant::now();
    let mut missing: Vec<String> = run_events.clone();
    let current = loop {
        let waiting: u64 = engine
            .store
            .inbox_depths()?
            .iter()
            .filter(|d| d.connection == connection)
            .map(|d| d.waiting)
            .sum();
        if waiting == 0 {
            let mut still = Vec::new();
            for id in missing {
                if !engine.store.has_event(&connection, &id)? {
                    still.push(id);
                }
            }
            missing = still;
            if missing.is_empty() {
                break started.elapsed();
            }
        }
        if last_said.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:.0} s: {waiting} deliveries waiting in the inbox",
                started.elapsed().as_secs_f64()
            );
            last_said = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(1_800) {
            return Err(format!(
                "not current after 30 minutes: {} events missing, {waiting} waiting",
                missing.len()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(500));
    };

    let mut answers = emulator.webhooks.answer_micros.lock().clone();
    answers.sort_unstable();
    let counts = serde_json::to_value(&emulator.webhooks.counts)?;
    let delta = |field: &str| {
        counts[field].as_u64().unwrap_or(0) - counts_before[field].as_u64().unwrap_or(0)
    };
    let gets: u64 = emulator
        .requests
        .lock()
        .iter()
        .filter(|(request, _)| request.starts_with("GET "))
        .map(|(_, n)| n)
        .sum();
    let outcomes: Value = server_runtime.block_on(async {
        let text = reqwest::Client::new()
            .get(format!("{base}/metrics"))
            .bearer_auth(&token)
            .send()
            .await?
            .text()
            .await?;
        // serve's own side of the answer: its histogram's buckets (upper bound, count below).
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("stripe_mirror_webhook_answer_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (bound, count) = l.split_once("\"} ")?;
                Some((bound.parse().unwrap_or(f64::INFINITY), count.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0, |b| b.1).max(1);
        let within = |p: f64| {
            buckets
                .iter()
                .find(|(_, below)| *below as f64 >= p * total as f64)
                .map_or(f64::INFINITY, |(bound, _)| bound * 1_000.0)
        };
        eprintln!(
            "serve's side of the answers (its histogram): p50 within {} ms, p99 within {} ms",
            within(0.5),
            within(0.99)
        );
        let mut outcomes = serde_json::Map::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("stripe_mirror_webhooks_total{"))
        {
            let Some((labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some(outcome) = labels
                .split("outcome=\"")
                .nth(1)
                .and_then(|o| o.split('"').next())
            else {
                continue;
            };
            outcomes.insert(
                outcome.to_owned(),
                Value::from(value.parse::<f64>().unwrap_or(0.0) as u64),
            );
        }
        Ok::<_, Error>(Value::Object(outcomes))
    })?;
    let events = run_events.len().max(1) as f64;
    let refetched = outcomes["refetched"].as_u64().unwrap_or(0);
    let p99 = percentile(&answers, 0.99);
    println!(
        "month start: {invoices} invoices over {:.1} s, {} events, {} mode",
        billed.as_secs_f64(),
        run_events.len(),
        if args.test_mode { "test" } else { "live" }
    );
    println!(
        "answers: {} attempts answered; p50 {:.1} ms, p99 {:.1} ms (goal {GOAL_P99_MS} ms: ratio {:.2}), max {:.1} ms",
        answers.len(),
        percentile(&answers, 0.5),
        p99,
        p99 / GOAL_P99_MS,
        percentile(&answers, 1.0)
    );
    println!(
        "deliveries: {} attempted, {} succeeded, {} failed ({} timed out), {} given up, {} sent twice on purpose",
        delta("attempted"),
        delta("succeeded"),
        delta("failed_attempts"),
        delta("timed_out"),
        delta("given_up"),
        delta("duplicated")
    );
    println!(
        "current: {:.1} s after the first renewal, {:.1} s after the last",
        current.as_secs_f64(),
        (current.saturating_sub(billed)).as_secs_f64()
    );
    println!(
        "refetches: {refetched} ({:.3} per event); {} deliveries shared another's refetch; {gets} GETs to Stripe in all ({:.3} per event)",
        refetched as f64 / events,
        outcomes["coalesced"].as_u64().unwrap_or(0),
        gets as f64 / events
    );
    println!("outcomes: {outcomes}");

    let _ = stop.send(());
    server_runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
    });
    drop(state);
    server_runtime.shutdown_timeout(Duration::from_secs(1));
    emulator_runtime.block_on(server.stop());
    emulator_runtime.shutdown_timeout(Duration::from_secs(1));
    if remove_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
