//! How fast `serve` takes in webhook deliveries into SQLite (issue "Real time").
//!
//! Both scenarios mirror a small emulated account into SQLite, connected with a webhook signing
//! secret of our own, run `serve` in this process on 127.0.0.1:0, and POST validly signed
//! deliveries of realistic events to `/webhooks/{account}/test`: updates of the account's own
//! customers, subscriptions, invoices, products and prices (the objects as the mirror holds them,
//! with a `metadata.bench_seq` and a `created` that grows per object), plus events of a kind the
//! mirror does not hold.
//!
//! `throughput`: C keep-alive clients, each sending as soon as the last answer came, for a fixed
//! time: accepted events per second against the 5,000/s goal, outcomes, latency, CPU.
//!
//! `latency`: an open-loop schedule at a fixed rate (1,000/s): the time from each delivery's
//! scheduled send to its 200 (which comes only after the commit, so it bounds "visible"), and for
//! 1% of deliveries the row read back through a separate read-only SQLite connection.
//!
//! Each scenario runs in a fresh child process (`all`), since the server's replay memory is
//! process-wide. These print figures; they never assert. Build in release (see bench/README.md).

use sm_bench::{
    cores, load_average, machine_ticks, process_ticks, round, secs, thread_ticks, vm_kb,
    wait_for_first_sync,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer};
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::sync::{Quiet, SyncOptions, sync};
use sm_engine::{Engine, EngineConfig, Vault};
use sm_server::{AppState, ServeConfig};
use sm_stripe::ApiKey;
use sm_warehouse::Connection;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// The goals.
const GOAL_EVENTS_PER_SEC: f64 = 5_000.0;
const GOAL_P99_MS: f64 = 50.0;
/// The window of the per-window rates a throughput run prints.
const RATE_WINDOW_SECS: usize = 5;
const SECRET: &str = "whsec_bench_intake_0123456789abcdef";
/// Thread names, so that CPU time can be told apart per side in one process (15 chars at most).
const SERVER_THREAD: &str = "intake-server";
/// The SQLite store's own threads (its writer and checkpointer), counted with the server.
const STORE_THREADS: &str = "sm-sqlite";
const CLIENT_THREAD: &str = "bench-client";
const EMULATOR_THREAD: &str = "emu-server";
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Parser)]
#[command(
    about = "Benchmarks of webhook intake: events per second and delivery-to-visible latency"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Both scenarios, each in a fresh child process.
    All(Common),
    /// Closed loop: C clients for a fixed time; accepted events per second.
    Throughput(Common),
    /// Open loop at a fixed rate; delivery-to-visible latency percentiles.
    Latency(Common),
    /// The latency scenario with notifications off and on, alternating, `--pairs` times
    /// (each run in a fresh child process): the medians of intake's p99 and their ratio, and
    /// the notifications' own end-to-end p99.
    NotifyOverhead {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 3)]
        pairs: usize,
    },
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Customers in the emulated account.
    #[arg(long, default_value_t = 500)]
    scale: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds measured: a minute, since "sustained" is the goal (a cost that grows with what
    /// the server remembers once showed only after 15 s).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds sent before measuring and not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent keep-alive clients (throughput).
    #[arg(long, short = 'c', default_value_t = 16)]
    clients: usize,
    /// Deliveries per second (latency).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Share of deliveries read back through a separate read-only connection (latency).
    #[arg(long, default_value_t = 0.01)]
    verify: f64,
    /// Event mix, `kind=weight` (customer, subscription, invoice, product, price, unknown).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "customer=60,subscription=15,invoice=10,product=5,price=5,unknown=5"
    )]
    mix: Vec<String>,
    /// Worker threads of the server's runtime (its blocking pool is named the same).
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Worker threads of the clients' runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Folder of the SQLite mirror (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Hostile connections held open through the measured run (latency): a quarter each send
    /// half a request head, trickle a body a byte a second, sit idle after one request, or push
    /// a body past the size limit; each is opened again a second after the server closes it.
    #[arg(long, default_value_t = 0)]
    hostile: usize,
    /// Notifications on: a Standard Webhooks channel to a sink in this process and 50 rules
    /// (one choosing every event, 49 that choose other types, accounts or amounts), so that
    /// every delivery is matched against 50 rules and sent on (latency: the time from each
    /// delivery's scheduled send to its notification at the sink).
    #[arg(long)]
    notify: bool,
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match cli.bench {
        Bench::All(common) => all(common),
        Bench::Throughput(common) => scenario(common, Scenario::Throughput),
        Bench::Latency(common) => scenario(common, Scenario::Latency),
        Bench::NotifyOverhead { common, pairs } => notify_overhead(common, pairs),
    };
    if let Err(e) = outcome {
        eprintln!("intake_bench: {e}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Throughput,
    Latency,
}

fn all(common: Common) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut passed: Vec<String> = vec![
        "--scale".into(),
        common.scale.to_string(),
        "--seed".into(),
        common.seed.to_string(),
        "--duration".into(),
        common.duration.to_string(),
        "--warmup".into(),
        common.warmup.to_string(),
        "--clients".into(),
        common.clients.to_string(),
        "--rate".into(),
        common.rate.to_string(),
        "--verify".into(),
        common.verify.to_string(),
        "--mix".into(),
        common.mix.join(","),
        "--server-threads".into(),
        common.server_threads.to_string(),
        "--client-threads".into(),
        common.client_threads.to_string(),
        "--hostile".into(),
        common.hostile.to_string(),
    ];
    if common.notify {
        passed.push("--notify".into());
    }
    if let Some(dir) = &common.dir {
        passed.push("--dir".into());
        passed.push(dir.to_string_lossy().into_owned());
    }
    let mut results = Vec::new();
    for name in ["throughput", "latency"] {
        let mut child_args = vec![name.to_owned()];
        child_args.extend(passed.iter().cloned());
        results.push(run_self(&exe, &child_args)?);
        println!();
    }
    println!("{}", json!({"bench": "intake", "scenarios": results}));
    Ok(())
}

/// Intake's p99 with notifications off and on, alternating (see `Bench::NotifyOverhead`).
fn notify_overhead(common: Common, pairs: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let base: Vec<String> = vec![
        "latency".into(),
        "--scale".into(),
        common.scale.to_string(),
        "--seed".into(),
        common.seed.to_string(),
        "--duration".into(),
        common.duration.to_string(),
        "--rate".into(),
        common.rate.to_string(),
    ];
    let (mut off, mut on, mut e2e) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..pairs.max(1) {
        for notify in [false, true] {
            let mut args = base.clone();
            if notify {
                args.push("--notify".into());
            }
            let result = run_self(&exe, &args)?;
            let p99 = result["p99_ms"].as_f64().unwrap_or(f64::NAN);
            if notify {
                on.push(p99);
                e2e.push(
                    result["notifications"]["p99_ms"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                );
            } else {
                off.push(p99);
            }
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (off_median, on_median, e2e_median) = (median(&mut off), median(&mut on), median(&mut e2e));
    println!(
        "notification overhead over {pairs} pairs of {:.0} s at {:.0}/s: intake p99 off {off:?} ms (median {off_median:.2}), on {on:?} ms (median {on_median:.2}): ratio {:.3} — goal at most 1.20; notifications' end-to-end p99 median {e2e_median:.1} ms — goal < {GOAL_NOTIFY_P99_MS:.0} ms",
        common.duration,
        common.rate,
        on_median / off_median
    );
    println!(
        "{}",
        json!({"bench": "notify_overhead", "intake_p99_off_ms": off, "intake_p99_on_ms": on, "ratio": on_median / off_median, "notify_p99_ms": e2e})
    );
    Ok(())
}

/// Runs this binary with `args`, echoing its lines but the last (its JSON), which it returns.
fn run_self(exe: &Path, args: &[String]) -> Result<Value> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut last = Value::Null;
    for line in stdout.lines() {
        let line = line?;
        match serde_json::from_str::<Value>(&line) {
            Ok(value) if value.get("bench").is_some() => last = value,
            _ => {
                println!("{line}");
                let _ = std::io::stdout().flush();
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("{} {} failed: {status}", exe.display(), args[0]).into());
    }
    Ok(last)
}

// ---------------------------------------------------------------------------------------------
// Setting up: an emulated account, its SQLite mirror, `serve`.

struct Setup {
    emulator_runtime: tokio::runtime::Runtime,
    emulator: EmulatorServer,
    server_runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    url: String,
    database: PathBuf,
    dir: PathBuf,
    remove_dir: bool,
    connection: Connection,
    events: Arc<Events>,
    setup_secs: f64,
}

fn setup(common: &Common) -> Result<Setup> {
    let started = Instant::now();
    let (dir, remove_dir) = match &common.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("sm-intake-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let database = dir.join("intake.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let emulator_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(EMULATOR_THREAD)
        .enable_all()
        .build()?;
    let (emulator, account) = emulator_runtime.block_on(async {
        let emulator = Emulator::new(common.seed);
        let account = create_account(
            &emulator,
            &NewAccount {
                name: Some("Intake Co".into()),
                seed: Some(common.seed),
                scale: common.scale,
                ..Default::default()
            },
            common.seed,
        )
        .map_err(|f| format!("could not create the account: {}", f.body))?;
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse()?).await?;
        Ok::<_, Error>((server, account))
    })?;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.server_threads.max(1))
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let store = sm_warehouse::open(&database.to_string_lossy())?;
    let vault = Vault::open(Some(&"11".repeat(32)), &dir.join("vault.key"))?;
    let engine = Arc::new(Engine::new(
        Arc::from(store),
        vault,
        EngineConfig {
            api_base: emulator.base_url(),
            budget_share: f64::INFINITY,
            max_retries: 3,
        },
    ));
    let key = ApiKey::parse(account["keys"]["secret_test"].as_str().unwrap_or_default())?;
    let (connection, url, stop, served, objects) = server_runtime.block_on(async {
        let outcome = connect(
            &engine,
            key,
            ConnectOptions {
                webhook_secret: Some(SECRET.into()),
                ..Default::default()
            },
        )
        .await?;
        let connection = Connection::new(outcome.account.account_id.clone(), false);
        let report = sync(
            &engine,
            &connection,
            &SyncOptions::default(),
            Arc::new(Quiet),
        )
        .await?;
        if report.run.status != "succeeded" {
            return Err(format!("the backfill ended {}", report.run.status).into());
        }
        let mut objects = BTreeMap::new();
        for kind in Kind::ALL {
            let Some(table) = kind.table() else { continue };
            let connection = connection.clone();
            let rows = engine
                .store_call(move |store| store.rows(&connection, table))
                .await?;
            let live: Vec<Value> = rows
                .into_iter()
                .filter(|r| !r.deleted)
                .map(|r| r.data)
                .collect();
            objects.insert(kind, live);
        }
        if common.notify {
            notify_setup(&engine, &connection).await?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = AppState::new(
            engine.clone(),
            ServeConfig {
                role: sm_server::Role::All,
                max_leases: 8,
                listen: address,
                public_url: None,
                interval: Duration::from_secs(3600),
                tolerance_secs: sm_stripe::webhook::DEFAULT_TOLERANCE_SECS,
                limits: Default::default(),
                answer_wait: std::time::Duration::ZERO,
                balance_refresh_after: Some(std::time::Duration::from_secs(10)),
                notify: Default::default(),
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(sm_server::serve_on(listener, state, async move {
            let _ = stopped.await;
        }));
        let base = format!("http://{address}");
        let token = sm_engine::ops::tokens::create(&engine, "intake-bench", true)
            .await?
            .secret
            .to_string();
        wait_for_first_sync(&base, &connection.label(), &token).await?;
        let url = format!("{base}/webhooks/{}/test", connection.account_id);
        Ok::<_, Error>((connection, url, stop, served, objects))
    })?;
    let events = Arc::new(Events::new(objects, &common.mix, sm_engine::now() + 10)?);
    Ok(Setup {
        emulator_runtime,
        emulator,
        server_runtime,
        stop,
        served,
        url,
        database,
        dir,
        remove_dir,
        connection,
        events,
        setup_secs: started.elapsed().as_secs_f64(),
    })
}

impl Setup {
    fn stop(self) {
        let _ = self.stop.send(());
        let served = self.served;
        self.server_runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
        });
        self.server_runtime.shutdown_timeout(Duration::from_secs(1));
        self.emulator_runtime.block_on(self.emulator.stop());
        self.emulator_runtime
            .shutdown_timeout(Duration::from_secs(1));
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events: realistic deliveries, rendered from per-object templates.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Customer,
    Subscription,
    Invoice,
    Product,
    Price,
    Unknown,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Customer,
        Kind::Subscription,
        Kind::Invoice,
        Kind::Product,
        Kind::Price,
        Kind::Unknown,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Product => "product",
            Kind::Price => "price",
            Kind::Unknown => "unknown",
        }
    }

    /// The mirror's table of this kind's objects.
    fn table(self) -> Option<&'static str> {
        match self {
            Kind::Customer => Some("customers"),
            Kind::Subscription => Some("subscriptions"),
            Kind::Invoice => Some("invoices"),
            Kind::Product => Some("products"),
            Kind::Price => Some("prices"),
            Kind::Unknown => None,
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Kind::Customer => "customer.updated",
            Kind::Subscription => "customer.subscription.updated",
            Kind::Invoice => "invoice.updated",
            Kind::Product => "product.updated",
            Kind::Price => "price.updated",
            Kind::Unknown => "issuing_cardholder.updated",
        }
    }
}

const SEQ: &str = "@@SEQ@@";
const CREATED: &str = "\"@@CREATED@@\"";

/// One object events are made about: its event template and its own clock.
struct Subject {
    id: String,
    /// The event's JSON with `@@SEQ@@` (the event id's and metadata's number) and
    /// `"@@CREATED@@"` (the event's `created`) to fill in.
    template: String,
    /// The next `created` (per object, so each object's events only move forward).
    clock: AtomicI64,
}

/// Every subject, and the schedule of kinds that gives the mix.
struct Events {
    subjects: BTreeMap<Kind, Vec<Subject>>,
    /// Kinds in proportion to their weights, cycled through by sequence number.
    wheel: Vec<Kind>,
    next: AtomicU64,
}

/// One rendered delivery.
struct Delivery {
    seq: u64,
    kind: Kind,
    id: String,
    created: i64,
    body: String,
}

impl Events {
    fn new(objects: BTreeMap<Kind, Vec<Value>>, mix: &[String], start: i64) -> Result<Events> {
        let mut weights = BTreeMap::new();
        for entry in mix {
            let (name, weight) = entry
                .split_once('=')
                .ok_or_else(|| format!("--mix wants kind=weight, not {entry:?}"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| format!("no event kind {name:?} (customer, subscription, invoice, product, price, unknown)"))?;
            let weight: usize = weight.trim().parse()?;
            weights.insert(kind, weight);
        }
        // The process in the event ids, so that a second run never repeats one.
        let prefix = format!("evt_bench{:x}", std::process::id());
        let mut subjects: BTreeMap<Kind, Vec<Subject>> = BTreeMap::new();
        for (kind, list) in objects {
            let made = list
                .into_iter()
                .map(|object| Subject::new(kind, object, &prefix, start))
                .collect::<Vec<_>>();
            subjects.insert(kind, made);
        }
        // Objects of a kind the mirror does not hold, made up.
        subjects.insert(
            Kind::Unknown,
            (0..100)
                .map(|n| {
                    let object = json!({
                        "id": format!("ich_bench{n:04}"), "object": "issuing.cardholder",
                        "created": start - 86_400, "livemode": false, "metadata": {},
                        "name": format!("Cardholder {n}"), "status": "active", "type": "individual"
                    });
                    Subject::new(Kind::Unknown, object, &prefix, start)
                })
                .collect(),
        );
        let mut wheel = Vec::new();
        for (kind, weight) in &weights {
            if subjects.get(kind).is_some_and(|s| !s.is_empty()) {
                wheel.extend(std::iter::repeat_n(*kind, *weight));
            }
        }
        if wheel.is_empty() {
            return Err("the mix names no kind the account has objects of".into());
        }
        // Interleave the kinds (a deterministic shuffle) so that any stretch has the mix.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for i in (1..wheel.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            wheel.swap(i, (state % (i as u64 + 1)) as usize);
        }
        Ok(Events {
            subjects,
            wheel,
            next: AtomicU64::new(0),
        })
    }

    /// The next delivery: the next kind of the mix, an object of it, its next `created`.
    fn next(&self) -> Delivery {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let kind = self.wheel[(seq % self.wheel.len() as u64) as usize];
        let subjects = &self.subjects[&kind];
        // Spread over the objects with a multiplicative hash, so consecutive events rarely
        // touch the same object (which would make them race as real deliveries sometimes do).
        let index = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % subjects.len();
        let subject = &subjects[index];
        let created = subject.clock.fetch_add(1, Ordering::Relaxed);
        let body = subject
            .template
            .replace(SEQ, &seq.to_string())
            .replace(CREATED, &created.to_string());
        Delivery {
            seq,
            kind,
            id: subject.id.clone(),
            created,
            body,
        }
    }

    fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.subjects
            .iter()
            .map(|(k, s)| (k.name(), s.len()))
            .collect()
    }
}

impl Subject {
    fn new(kind: Kind, mut object: Value, prefix: &str, start: i64) -> Subject {
        let id = object["id"].as_str().unwrap_or_default().to_owned();
        let previous = object["metadata"]["bench_seq"].clone();
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["metadata"]["bench_seq"] = json!(SEQ);
        let event = json!({
            "id": format!("{prefix}_{SEQ}"),
            "object": "event",
            "api_version": sm_stripe::API_VERSION,
            "created": "@@CREATED@@",
            "data": {
                "object": object,
                "previous_attributes": {"metadata": {"bench_seq": previous}},
            },
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind.event_type(),
        });
        Subject {
            id,
            template: event.to_string(),
            clock: AtomicI64::new(start),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sending

/// What one delivery got.
struct Answer {
    status: u16,
    outcome: String,
    latency: Duration,
}

async fn deliver(http: &reqwest::Client, url: &str, delivery: &Delivery) -> Answer {
    let t = sm_engine::now();
    let signature = sm_stripe::webhook::signature_header(&[SECRET], t, delivery.body.as_bytes());
    let started = Instant::now();
    let answer = async {
        let response = http
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Stripe-Signature", signature)
            .body(delivery.body.clone())
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    }
    .await;
    let latency = started.elapsed();
    match answer {
        Ok((status, body)) => Answer {
            status,
            outcome: outcome_of(&body),
            latency,
        },
        Err(error) => Answer {
            status: 0,
            outcome: format!("network: {error}"),
            latency,
        },
    }
}

/// `"outcome":"applied"` of a 200's answer, or the error code of a refusal.
fn outcome_of(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return "unreadable answer".into();
    };
    value["outcome"]
        .as_str()
        .or_else(|| value["error"]["code"].as_str())
        .unwrap_or("no outcome")
        .to_owned()
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: u64,
    outcomes: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
    by_kind: BTreeMap<&'static str, u64>,
    latencies_us: Vec<u32>,
    /// Deliveries accepted in each whole second of a closed loop, to show whether the rate
    /// holds as the database grows.
    accepted_per_second: Vec<u64>,
}

impl Tally {
    fn add(&mut self, kind: Kind, answer: &Answer) {
        *self.statuses.entry(answer.status).or_default() += 1;
        *self.outcomes.entry(answer.outcome.clone()).or_default() += 1;
        *self.by_kind.entry(kind.name()).or_default() += 1;
        if answer.status == 200 {
            self.accepted += 1;
        } else {
            self.refused += 1;
        }
        self.latencies_us
            .push(answer.latency.as_micros().min(u32::MAX as u128) as u32);
    }

    fn merge(&mut self, other: Tally) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
        if self.accepted_per_second.len() < other.accepted_per_second.len() {
            self.accepted_per_second
                .resize(other.accepted_per_second.len(), 0);
        }
        for (mine, theirs) in self
            .accepted_per_second
            .iter_mut()
            .zip(other.accepted_per_second)
        {
            *mine += theirs;
        }
    }

    /// Counts an accepted delivery in second `second` of the loop.
    fn count_second(&mut self, second: usize) {
        if self.accepted_per_second.len() <= second {
            self.accepted_per_second.resize(second + 1, 0);
        }
        self.accepted_per_second[second] += 1;
    }

    /// Events per second in consecutive windows of `window` whole seconds (a last, partial
    /// second is left out).
    fn window_rates(&self, secs: f64, window: usize) -> Vec<f64> {
        let whole = (secs.floor() as usize).min(self.accepted_per_second.len());
        self.accepted_per_second[..whole]
            .chunks(window.max(1))
            .map(|chunk| chunk.iter().sum::<u64>() as f64 / chunk.len() as f64)
            .collect()
    }
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?)
}

/// C clients, each sending the next delivery as soon as it has an answer, until `until`.
async fn closed_loop(
    http: &reqwest::Client,
    url: &Arc<str>,
    events: &Arc<Events>,
    clients: usize,
    duration: Duration,
) -> (Tally, Duration) {
    let started = Instant::now();
    let until = started + duration;
    let workers: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (http, url, events) = (http.clone(), url.clone(), events.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < until {
                    let delivery = events.next();
                    let answer = deliver(&http, &url, &delivery).await;
                    tally.add(delivery.kind, &answer);
                    if answer.status == 200 {
                        tally.count_second(started.elapsed().as_secs() as usize);
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        if let Ok(tally) = worker.await {
            total.merge(tally);
        }
    }
    (total, started.elapsed())
}

/// A delivery to read back from the mirror after its 200.
struct Check {
    table: &'static str,
    id: String,
    event_id: String,
    created: i64,
    seq: u64,
    scheduled: Instant,
}

/// What the read-back found.
#[derive(Default)]
struct Checked {
    verified: u64,
    /// The row had moved past this delivery (a later event of the same object came first).
    superseded: u64,
    missing: u64,
    first_problem: Option<String>,
    /// Scheduled send to the moment the read-only connection saw the row.
    visible_us: Vec<u32>,
}

/// Reads rows back through a separate read-only connection, on its own thread.
fn start_checker(
    database: &Path,
    account: String,
) -> Result<(
    std::sync::mpsc::Sender<Check>,
    std::thread::JoinHandle<Checked>,
)> {
    let db = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(Duration::from_secs(5))?;
    let (send, receive) = std::sync::mpsc::channel::<Check>();
    let handle = std::thread::Builder::new()
        .name("bench-checker".into())
        .spawn(move || {
            let mut checked = Checked::default();
            for check in receive {
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    let row: Option<(i64, Option<String>)> = db
                        .prepare_cached(&format!(
                            "SELECT version, json_extract(data, '$.metadata.bench_seq') FROM {} WHERE account_id = ?1 AND id = ?2",
                            check.table
                        ))
                        .and_then(|mut s| {
                            s.query_row(rusqlite::params![account, check.id], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })
                        })
                        .ok();
                    let event_kept = db
                        .prepare_cached("SELECT 1 FROM events WHERE account_id = ?1 AND id = ?2")
                        .and_then(|mut s| {
                            s.query_row(rusqlite::params![account, check.event_id], |_| Ok(()))
                        })
                        .is_ok();
                    let seen = match &row {
                        Some((version, seq)) if *version == check.created => {
                            if seq.as_deref() == Some(check.seq.to_string().as_str()) {
                                Some(false)
                            } else {
                                checked.first_problem.get_or_insert_with(|| {
                                    format!(
                                        "{} {}: version {version} holds bench_seq {seq:?}, not {}",
                                        check.table, check.id, check.seq
                                    )
                                });
                                None
                            }
                        }
                        Some((version, _)) if *version > check.created => Some(true),
                        _ => None,
                    };
                    match (seen, event_kept) {
                        (Some(superseded), true) => {
                            checked.visible_us.push(
                                check.scheduled.elapsed().as_micros().min(u32::MAX as u128) as u32,
                            );
                            if superseded {
                                checked.superseded += 1;
                            } else {
                                checked.verified += 1;
                            }
                            break;
                        }
                        _ if Instant::now() > deadline => {
                            checked.missing += 1;
                            checked.first_problem.get_or_insert_with(|| {
                                format!(
                                    "{} {} (event {}): not visible 2 s after its 200 (row {row:?}, event kept {event_kept})",
                                    check.table, check.id, check.event_id
                                )
                            });
                            break;
                        }
                        _ => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }
            checked
        })?;
    Ok((send, handle))
}

/// Deliveries at `rate` per second on a fixed schedule (not waiting for answers), for
/// `duration`; every `verify_every`-th is read back after its 200.
async fn open_loop(
    http: &reqwest::Client,
    url: &Arc<str>,
    events: &Arc<Events>,
    rate: f64,
    duration: Duration,
    checker: Option<(std::sync::mpsc::Sender<Check>, u64)>,
) -> (Tally, Duration, u64) {
    let count = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut late = 0u64;
    // Finished deliveries are reaped as the loop goes: a task's memory (the size of its future)
    // stays until it is joined, 2 kB a delivery.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        while tasks.try_join_next().is_some() {}
        let scheduled = started + interval.mul_f64(n as f64);
        let now = Instant::now();
        if scheduled > now {
            tokio::time::sleep_until(scheduled.into()).await;
        } else if now - scheduled > Duration::from_millis(1) {
            late += 1;
        }
        let delivery = events.next();
        if let Some(probe) = PROBE.get() {
            probe
                .sent
                .lock()
                .insert(event_id_of(&delivery.body).to_owned(), scheduled);
        }
        let (http, url, tally) = (http.clone(), url.clone(), tally.clone());
        let check = checker.as_ref().and_then(|(send, every)| {
            (n % every == 0)
                .then(|| delivery.kind.table().map(|t| (send.clone(), t)))
                .flatten()
        });
        tasks.spawn(async move {
            let mut answer = deliver(&http, &url, &delivery).await;
            // From the scheduled send, so that a sender falling behind shows as latency.
            answer.latency = scheduled.elapsed();
            if let Some((send, table)) = check
                && answer.status == 200
            {
                let _ = send.send(Check {
                    table,
                    id: delivery.id.clone(),
                    event_id: event_id_of(&delivery.body).to_owned(),
                    created: delivery.created,
                    seq: delivery.seq,
                    scheduled,
                });
            }
            tally.lock().add(delivery.kind, &answer);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock());
    (tally, elapsed, late)
}

/// The event id at the start of a rendered body (`{"id":"evt_…",`).
fn event_id_of(body: &str) -> &str {
    body.strip_prefix("{\"id\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The scenarios

fn scenario(common: Common, which: Scenario) -> Result<()> {
    let name = match which {
        Scenario::Throughput => "throughput",
        Scenario::Latency => "latency",
    };
    let setup = setup(&common)?;
    println!(
        "intake {name}: account {} of {} customers mirrored into {} and `serve` on {} in {:.1} s; subjects {:?}; {} cores, {} server / {} client threads{}",
        setup.connection.account_id,
        common.scale,
        setup.database.display(),
        setup.url,
        setup.setup_secs,
        setup.events.counts(),
        cores(),
        common.server_threads,
        common.client_threads,
        load_note()
    );
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.client_threads.max(1))
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()?;
    let http = http_client()?;
    let url: Arc<str> = setup.url.as_str().into();
    let events = setup.events.clone();
    let mut result = match which {
        Scenario::Throughput => {
            if common.warmup > 0.0 {
                clients.block_on(closed_loop(
                    &http,
                    &url,
                    &events,
                    common.clients,
                    secs(common.warmup),
                ));
            }
            let before = Usage::now();
            let (tally, elapsed) = clients.block_on(closed_loop(
                &http,
                &url,
                &events,
                common.clients,
                secs(common.duration),
            ));
            let usage = Usage::now().since(&before);
            report_throughput(&common, tally, elapsed, &usage)
        }
        Scenario::Latency => {
            if common.warmup > 0.0 {
                clients.block_on(open_loop(
                    &http,
                    &url,
                    &events,
                    common.rate,
                    secs(common.warmup),
                    None,
                ));
            }
            let (send, checker) =
                start_checker(&setup.database, setup.connection.account_id.clone())?;
            let every = if common.verify > 0.0 {
                (1.0 / common.verify).round().max(1.0) as u64
            } else {
                u64::MAX
            };
            let rss_before_mb = vm_kb("VmRSS") as f64 / 1024.0;
            let hostile = (common.hostile > 0).then(|| {
                let address = url
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                clients.block_on(async { Hostile::start(address, common.hostile).await })
            });
            if let Some(probe) = PROBE.get() {
                // Only the measured run's events count.
                clients.block_on(probe.settle(Duration::from_secs(30)));
                probe.sent.lock().clear();
                probe.received.lock().clear();
            }
            let before = Usage::now();
            let (tally, elapsed, late) = clients.block_on(open_loop(
                &http,
                &url,
                &events,
                common.rate,
                secs(common.duration),
                Some((send, every)),
            ));
            let usage = Usage::now().since(&before);
            let checked = checker.join().map_err(|_| "the checker panicked")?;
            let mut result = report_latency(&common, tally, elapsed, late, checked, &usage);
            if let Some(probe) = PROBE.get() {
                let drained = clients.block_on(probe.settle(Duration::from_secs(60)));
                result["notifications"] = probe.report(drained);
            }
            if let Some(hostile) = hostile {
                let (opened, closed_by_server, open_at_end) = clients.block_on(hostile.stop());
                let peak_mb = vm_kb("VmHWM") as f64 / 1024.0;
                println!(
                    "  hostile connections: {} held open at a time; {opened} opened, {closed_by_server} closed by the server's deadlines and limits, {open_at_end} open at the end; memory before the run {rss_before_mb:.0} MB, peak {peak_mb:.0} MB (server, clients and emulator together)",
                    common.hostile
                );
                result["hostile"] = json!({
                    "held": common.hostile,
                    "opened": opened,
                    "closed_by_server": closed_by_server,
                    "open_at_end": open_at_end,
                    "rss_before_bytes": (rss_before_mb * 1_048_576.0) as u64,
                });
            }
            result
        }
    };
    drop(clients);
    let database_bytes = ["", "-wal"]
        .iter()
        .map(|s| {
            std::fs::metadata(format!("{}{s}", setup.database.display())).map_or(0, |m| m.len())
        })
        .sum::<u64>();
    setup.stop();
    // Server, clients (each delivery's latency kept: 4 bytes) and emulator share the process.
    let peak_mb = vm_kb("VmHWM") as f64 / 1024.0;
    println!(
        "  peak memory of this process (server, clients and emulator together) {peak_mb:.0} MB; database and log {:.0} MB",
        database_bytes as f64 / 1_048_576.0
    );
    result["database_bytes"] = json!(database_bytes);
    result["process_peak_bytes"] = json!(vm_kb("VmHWM") * 1024);
    println!("{result}");
    Ok(())
}

/// Connections that hold the server's resources without ever finishing a request.
struct Hostile {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    opened: Arc<AtomicU64>,
    closed_by_server: Arc<AtomicU64>,
}

impl Hostile {
    async fn start(address: String, count: usize) -> Hostile {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let opened = Arc::new(AtomicU64::new(0));
        let closed_by_server = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..count {
            let (address, mut stopped) = (address.clone(), stopped.clone());
            let (opened, closed) = (opened.clone(), closed_by_server.clone());
            tasks.spawn(async move {
                // Spread the first connects over a second, as an attacker's would arrive.
                tokio::time::sleep(Duration::from_micros((n as u64 * 1_000_000) / count as u64))
                    .await;
                while !*stopped.borrow() {
                    let Ok(stream) = tokio::net::TcpStream::connect(&address).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = misbehave(stream, n % 4, &address) => {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Opened again a second later: 1,000 connections held, not a connect flood
                    // (which would measure this client's CPU more than the server).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        Hostile {
            stop,
            tasks,
            opened,
            closed_by_server,
        }
    }

    /// Stops them; (opened, closed by the server, still open at the stop).
    async fn stop(mut self) -> (u64, u64, u64) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let opened = self.opened.load(Ordering::Relaxed);
        let closed = self.closed_by_server.load(Ordering::Relaxed);
        // Each task holds one connection at most: what was opened and not closed was open.
        (opened, closed, opened - closed)
    }
}

/// One hostile connection of kind `kind`; returns when the server has closed it.
async fn misbehave(mut stream: tokio::net::TcpStream, kind: usize, host: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = |length: usize| {
        format!(
            "POST /webhooks/acct_1Hostile/test HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    let wrote = match kind {
        // Half a request head, then nothing.
        0 => {
            stream
                .write_all(
                    format!("POST /webhooks/acct_1Hostile/test HTTP/1.1\r\nhost: {host}\r\n")
                        .as_bytes(),
                )
                .await
        }
        // A body announced at 500 kB and trickled a byte a second.
        1 => match stream.write_all(head(500_000).as_bytes()).await {
            Ok(()) => loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            },
            Err(e) => Err(e),
        },
        // One finished request, then the connection kept idle.
        2 => {
            stream
                .write_all(format!("GET /healthz HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
                .await
        }
        // A body past the limit (2 MiB), pushed as fast as the server takes it.
        _ => match stream.write_all(head(2 << 20).as_bytes()).await {
            Ok(()) => {
                let chunk = vec![b'x'; 64 << 10];
                for _ in 0..32 {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if wrote.is_err() {
        return;
    }
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            return;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)] as f64 / 1000.0
}

fn report_throughput(common: &Common, tally: Tally, elapsed: Duration, usage: &Usage) -> Value {
    let secs = elapsed.as_secs_f64();
    let rate = tally.accepted as f64 / secs;
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    println!(
        "  {} clients for {secs:.1} s: {} deliveries accepted (200) = {rate:.0} events/s — goal ≥ {GOAL_EVENTS_PER_SEC:.0}/s: ratio {:.2}; {} refused",
        common.clients,
        tally.accepted,
        rate / GOAL_EVENTS_PER_SEC,
        tally.refused
    );
    println!(
        "  outcomes: {}; statuses: {}; kinds sent: {}",
        show(&tally.outcomes),
        show(&tally.statuses),
        show(&tally.by_kind)
    );
    println!(
        "  latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    let windows = tally.window_rates(secs, RATE_WINDOW_SECS);
    let slowest = windows.iter().copied().fold(f64::INFINITY, f64::min);
    if !windows.is_empty() {
        println!(
            "  events/s in each {RATE_WINDOW_SECS} s: {} — slowest {slowest:.0} (ratio {:.2} to the goal)",
            windows
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            slowest / GOAL_EVENTS_PER_SEC
        );
    }
    usage.print(secs, tally.accepted);
    json!({
        "bench": "intake-throughput",
        "clients": common.clients,
        "secs": round(secs, 3),
        "accepted": tally.accepted,
        "refused": tally.refused,
        "events_per_sec": round(rate, 1),
        "goal_events_per_sec": GOAL_EVENTS_PER_SEC,
        "ratio_to_goal": round(rate / GOAL_EVENTS_PER_SEC, 3),
        "window_secs": RATE_WINDOW_SECS,
        "events_per_sec_by_window": windows.iter().map(|r| round(*r, 0)).collect::<Vec<_>>(),
        "slowest_window_ratio_to_goal": if windows.is_empty() { Value::Null } else { json!(round(slowest / GOAL_EVENTS_PER_SEC, 3)) },
        "outcomes": tally.outcomes,
        "statuses": tally.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "kinds": tally.by_kind,
        "p50_ms": round(percentile(&latencies, 0.5), 3),
        "p90_ms": round(percentile(&latencies, 0.9), 3),
        "p99_ms": round(percentile(&latencies, 0.99), 3),
        "max_ms": round(percentile(&latencies, 1.0), 3),
        "cpu": usage.json(secs, tally.accepted),
    })
}

fn report_latency(
    common: &Common,
    tally: Tally,
    elapsed: Duration,
    late: u64,
    checked: Checked,
    usage: &Usage,
) -> Value {
    let secs = elapsed.as_secs_f64();
    let sent = tally.accepted + tally.refused;
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    let mut visible = checked.visible_us.clone();
    visible.sort_unstable();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "  {sent} deliveries scheduled at {:.0}/s over {secs:.1} s ({:.0}/s achieved; {late} sent more than 1 ms late): {} accepted, {} refused",
        common.rate,
        sent as f64 / secs,
        tally.accepted,
        tally.refused
    );
    println!(
        "  scheduled send → 200 (after the commit): p50 {:.2} ms, p90 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms — goal p99 < {GOAL_P99_MS:.0} ms: ratio {:.3}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 1.0),
        p99 / GOAL_P99_MS
    );
    println!(
        "  read back through a read-only connection ({} of every {:.0}): {} exact, {} already moved on by a later event, {} not visible{}; scheduled send → seen there p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        1,
        (1.0 / common.verify.max(1e-9)).round(),
        checked.verified,
        checked.superseded,
        checked.missing,
        checked
            .first_problem
            .as_deref()
            .map(|p| format!(" (first problem: {p})"))
            .unwrap_or_default(),
        percentile(&visible, 0.5),
        percentile(&visible, 0.99),
        percentile(&visible, 1.0)
    );
    println!(
        "  outcomes: {}; statuses: {}",
        show(&tally.outcomes),
        show(&tally.statuses)
    );
    usage.print(secs, tally.accepted);
    json!({
        "bench": "intake-latency",
        "rate": common.rate,
        "secs": round(secs, 3),
        "sent": sent,
        "late_sends": late,
        "accepted": tally.accepted,
        "refused": tally.refused,
        "p50_ms": round(percentile(&latencies, 0.5), 3),
        "p90_ms": round(percentile(&latencies, 0.9), 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(percentile(&latencies, 1.0), 3),
        "goal_p99_ms": GOAL_P99_MS,
        "ratio_to_goal": round(p99 / GOAL_P99_MS, 4),
        "verified": checked.verified,
        "superseded": checked.superseded,
        "not_visible": checked.missing,
        "first_problem": checked.first_problem,
        "visible_p50_ms": round(percentile(&visible, 0.5), 3),
        "visible_p99_ms": round(percentile(&visible, 0.99), 3),
        "visible_max_ms": round(percentile(&visible, 1.0), 3),
        "outcomes": tally.outcomes,
        "statuses": tally.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "cpu": usage.json(secs, tally.accepted),
    })
}

fn show<K: std::fmt::Display>(map: &BTreeMap<K, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// CPU per side, from /proc

/// CPU ticks per side and of the whole machine.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    server: u64,
    clients: u64,
    emulator: u64,
    process: u64,
    machine_busy: u64,
    machine_total: u64,
}

impl Usage {
    fn now() -> Usage {
        let (machine_busy, machine_total) = machine_ticks();
        Usage {
            server: thread_ticks("self", SERVER_THREAD) + thread_ticks("self", STORE_THREADS),
            clients: thread_ticks("self", CLIENT_THREAD),
            emulator: thread_ticks("self", EMULATOR_THREAD),
            process: process_ticks("self"),
            machine_busy,
            machine_total,
        }
    }

    fn since(&self, before: &Usage) -> Usage {
        Usage {
            server: self.server.saturating_sub(before.server),
            clients: self.clients.saturating_sub(before.clients),
            emulator: self.emulator.saturating_sub(before.emulator),
            process: self.process.saturating_sub(before.process),
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_total: self.machine_total.saturating_sub(before.machine_total),
        }
    }

    fn cores(ticks: u64, secs: f64) -> f64 {
        ticks as f64 / TICKS_PER_SECOND / secs.max(1e-9)
    }

    fn print(&self, secs: f64, accepted: u64) {
        let rest = self.machine_busy.saturating_sub(self.process);
        println!(
            "  CPU (cores busy): server {:.2} ({:.0} µs per accepted event), clients {:.2}, emulator {:.2}, this process {:.2}, rest of the machine {:.2}; load average {:.2}",
            Usage::cores(self.server, secs),
            self.server as f64 / TICKS_PER_SECOND * 1e6 / accepted.max(1) as f64,
            Usage::cores(self.clients, secs),
            Usage::cores(self.emulator, secs),
            Usage::cores(self.process, secs),
            Usage::cores(rest, secs),
            load_average()
        );
    }

    fn json(&self, secs: f64, accepted: u64) -> Value {
        json!({
            "server_cores": round(Usage::cores(self.server, secs), 3),
            "server_us_per_event": round(self.server as f64 / TICKS_PER_SECOND * 1e6 / accepted.max(1) as f64, 1),
            "client_cores": round(Usage::cores(self.clients, secs), 3),
            "emulator_cores": round(Usage::cores(self.emulator, secs), 3),
            "process_cores": round(Usage::cores(self.process, secs), 3),
            "rest_of_machine_cores": round(Usage::cores(self.machine_busy.saturating_sub(self.process), secs), 3),
            "load_average": load_average(),
        })
    }
}

fn load_note() -> String {
    format!("; load average {:.2}", load_average())
}

// ---------------------------------------------------------------------------------------------
// Notifications (`--notify`)

/// What the notification sink saw, against when each event's delivery was scheduled.
#[derive(Default)]
struct Probe {
    sent: Mutex<std::collections::HashMap<String, Instant>>,
    received: Mutex<Vec<(String, Instant)>>,
}

static PROBE: std::sync::OnceLock<Arc<Probe>> = std::sync::OnceLock::new();
const NOTIFY_THREAD: &str = "bench-sink";
const GOAL_NOTIFY_P99_MS: f64 = 1_000.0;

impl Probe {
    /// Waits until the sink has had nothing new for 2 s (at most `limit`); how long it took.
    async fn settle(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        let mut last = (self.received.lock().len(), Instant::now());
        while started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.received.lock().len();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        started.elapsed()
    }

    fn report(&self, drained: Duration) -> Value {
        let sent = self.sent.lock().clone();
        let received = self.received.lock().clone();
        let mut seen = std::collections::HashSet::new();
        let mut latencies: Vec<u32> = Vec::new();
        let mut repeats = 0;
        for (event, at) in &received {
            if !seen.insert(event.clone()) {
                repeats += 1;
                continue;
            }
            if let Some(scheduled) = sent.get(event) {
                latencies.push(at.saturating_duration_since(*scheduled).as_micros() as u32);
            }
        }
        latencies.sort_unstable();
        let p99 = percentile(&latencies, 0.99);
        println!(
            "  notifications (50 rules, one choosing every event; a Standard Webhooks sink): {} of {} events sent on, {repeats} repeats; scheduled delivery → at the sink p50 {:.1} ms, p90 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms — goal p99 < {GOAL_NOTIFY_P99_MS:.0} ms: ratio {:.3}; the last arrived within {:.1} s of the run's end",
            latencies.len(),
            sent.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 1.0),
            p99 / GOAL_NOTIFY_P99_MS,
            drained.as_secs_f64().max(2.0) - 2.0,
        );
        json!({
            "events": sent.len(),
            "sent_on": latencies.len(),
            "repeats": repeats,
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": p99,
            "max_ms": percentile(&latencies, 1.0),
            "goal_p99_ms": GOAL_NOTIFY_P99_MS,
        })
    }
}

/// Starts the sink (its own runtime and thread) and makes the channel and the 50 rules.
async fn notify_setup(engine: &Arc<Engine>, connection: &Connection) -> Result<()> {
    use sm_engine::ops::notify::{self, ChannelInput, RuleInput};
    let probe = PROBE.get_or_init(|| Arc::new(Probe::default())).clone();
    let (ready, address) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(NOTIFY_THREAD.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the sink");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a port for the sink");
                let _ = ready.send(listener.local_addr().expect("an address"));
                let app = axum::Router::new().route(
                    "/in",
                    axum::routing::post(move |body: bytes::Bytes| {
                        let probe = probe.clone();
                        async move {
                            let at = Instant::now();
                            let event = serde_json::from_slice::<Value>(&body)
                                .ok()
                                .and_then(|v| v["event_id"].as_str().map(str::to_owned))
                                .unwrap_or_default();
                            probe.received.lock().push((event, at));
                            "ok"
                        }
                    }),
                );
                let _ = axum::serve(listener, app).await;
            });
        })?;
    let address = address.recv()?;
    notify::add_channel(
        engine,
        ChannelInput {
            name: "sink".into(),
            kind: "webhook".into(),
            url: format!("http://{address}/in"),
            secret: None,
            token: None,
            to: Vec::new(),
            from: None,
            ca_pem: None,
        },
    )
    .await?;
    let other_types = [
        "payout.failed",
        "charge.dispute.created",
        "radar.early_fraud_warning.created",
        "charge.refunded",
        "payment_intent.payment_failed",
        "invoice.payment_failed",
        "checkout.session.completed",
    ];
    for n in 0..49 {
        let mut rule = RuleInput {
            name: format!("other-{n}"),
            channel: "sink".into(),
            include_test: true,
            ..Default::default()
        };
        match n % 3 {
            // Types the bench's events never have.
            0 => rule.events = Some(other_types[n % other_types.len()].into()),
            // Every type, live events only (the bench's are test events).
            1 => {
                rule.events = Some("*".into());
                rule.include_test = false;
            }
            // Every invoice event at a minimum amount no bench invoice reaches.
            _ => {
                rule.events = Some("invoice.*".into());
                rule.min_amount = Some("1000000usd".into());
            }
        }
        notify::add_rule(engine, rule).await?;
    }
    notify::add_rule(
        engine,
        RuleInput {
            name: "everything".into(),
            channel: "sink".into(),
            events: Some("*".into()),
            account: Some(connection.account_id.clone()),
            include_test: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}
