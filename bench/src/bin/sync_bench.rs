//! How fast and how frugally the engine mirrors an account (issue "Mirror every resource").
//!
//! `backfill`: one account of ≥ 1,000,000 objects in `stripe-mirror emulator` running as a child
//! process, mirrored with no rate limit into SQLite and into Postgres, each run in a fresh child
//! process of this benchmark so that its peak memory (`VmHWM`) is the mirror's alone. Then, on the
//! SQLite mirror, incremental runs after K changes, fitted to `requests ≈ a·K + b`.
//!
//! `paced`: the emulator enforcing Stripe's limits and the engine given all of the budget: the
//! run's time against the bound the limits allow, in test and in live mode, with every request
//! counted by a recording proxy between the engine and the emulator (statuses, endpoints).
//!
//! These print figures; they never assert. Build in release (see bench/README.md).

use sm_bench::{cores, load_average, process_ticks, round, secs, vm_kb, vm_kb_of};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer};
use sm_engine::connect::{ConnectOptions, connect};
use sm_engine::sync::{Progress, SyncOptions, SyncReport, sync};
use sm_engine::{Engine, EngineConfig, Vault};
use sm_stripe::ApiKey;
use sm_warehouse::{Connection, Counts};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// The goals.
const GOAL_SQLITE_OBJECTS_PER_SEC: f64 = 20_000.0;
const GOAL_POSTGRES_OBJECTS_PER_SEC: f64 = 10_000.0;
const GOAL_PEAK_MB: f64 = 200.0;
const GOAL_TEST_RATIO: f64 = 1.05;
const GOAL_LIVE_RATIO: f64 = 1.10;
/// Stripe's limits, requests per second.
const TEST_RATE: f64 = 25.0;
const LIVE_RATE: f64 = 100.0;
const ENDPOINT_RATE: f64 = 25.0;
/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;
/// The master key of every bench vault (a test value, as in the engine's tests).
const MASTER_KEY_BYTE: &str = "11";
const DEFAULT_EMULATOR_BIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/release/stripe-mirror"
);
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Parser)]
#[command(
    about = "Benchmarks of the sync engine: backfill rate and memory, paced runs, incremental cost"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Backfill ≥ 1,000,000 objects with no rate limit into SQLite and Postgres, then incremental runs.
    Backfill(BackfillArgs),
    /// Runs against the emulator enforcing Stripe's limits, with all of the budget: time vs bound.
    Paced(PacedArgs),
    /// Requests per event of an incremental run when the account's events are in the mirror's
    /// API version, and when they are in another (each changed object read again).
    Versions(VersionsArgs),
    /// One backfill run (a child process of `backfill`).
    #[command(hide = true)]
    BackfillOne(OneArgs),
    /// Incremental runs after K changes (a child process of `backfill`).
    #[command(hide = true)]
    Incremental(IncrementalArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn goal(self) -> f64 {
        match self {
            Backend::Sqlite => GOAL_SQLITE_OBJECTS_PER_SEC,
            Backend::Postgres => GOAL_POSTGRES_OBJECTS_PER_SEC,
        }
    }
}

#[derive(Debug, Args)]
struct BackfillArgs {
    /// Customers to seed (43,000 makes about 1,050,000 objects; seeding takes about 2 minutes).
    #[arg(long, default_value_t = 43_000)]
    scale: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stores to fill, each in its own runs.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<Backend>,
    /// Requests in flight per run (one run per value and backend).
    #[arg(long, short = 'c', value_delimiter = ',', default_value = "8,16")]
    concurrency: Vec<usize>,
    /// The Postgres server (each run gets a fresh schema of its own, dropped afterwards).
    #[arg(long, default_value = DEFAULT_POSTGRES_URL)]
    postgres_url: String,
    /// Folder of the SQLite files and the vault key.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The `stripe-mirror` binary run as the emulator.
    #[arg(long, default_value = DEFAULT_EMULATOR_BIN)]
    emulator_bin: PathBuf,
    /// Changes before each incremental run on the first SQLite mirror (`0`: no incremental runs).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    incremental: Vec<u64>,
    /// Keep the SQLite files and Postgres schemas.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Args)]
struct OneArgs {
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    key: String,
    #[arg(long)]
    database: String,
    #[arg(long)]
    vault: PathBuf,
    #[arg(long)]
    concurrency: usize,
    #[arg(long)]
    label: String,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 10.0)]
    every: f64,
}

#[derive(Debug, Args)]
struct IncrementalArgs {
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    account: String,
    #[arg(long)]
    database: String,
    #[arg(long)]
    vault: PathBuf,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, value_delimiter = ',')]
    changes: Vec<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeChoice {
    Test,
    Live,
    Both,
}

#[derive(Debug, Args)]
struct PacedArgs {
    /// Customers in test mode.
    #[arg(long, default_value_t = 300)]
    scale: u64,
    /// Customers in live mode.
    #[arg(long, default_value_t = 300)]
    live_scale: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = ModeChoice::Both)]
    mode: ModeChoice,
    /// Requests in flight (the pacer keeps them within the budget).
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// The share of Stripe's budget the engine may use.
    #[arg(long, default_value_t = 1.0)]
    budget_share: f64,
    /// Folder of the SQLite files.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    retries::install();
    let outcome = match cli.bench {
        Bench::Backfill(args) => backfill(args),
        Bench::Paced(args) => paced(args),
        Bench::BackfillOne(args) => backfill_one(args),
        Bench::Incremental(args) => incremental(args),
        Bench::Versions(args) => versions(args),
    };
    if let Err(e) = outcome {
        eprintln!("sync_bench: {e}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn bench_dir(dir: &Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let dir = dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sm-{name}-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn engine_on(database: &str, vault: &Path, api_base: &str, budget_share: f64) -> Result<Engine> {
    let store = sm_warehouse::open(database)?;
    let vault = Vault::open(Some(&MASTER_KEY_BYTE.repeat(32)), vault)?;
    Ok(Engine::new(
        Arc::from(store),
        vault,
        EngineConfig {
            api_base: api_base.to_owned(),
            budget_share,
            max_retries: 5,
        },
    ))
}

/// Objects written by a run (inserted + updated + deleted, every table).
fn objects_written(counts: &Counts) -> u64 {
    counts
        .tables
        .values()
        .map(|c| c.inserted + c.updated + c.deleted)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// backfill (figure 1) and incremental (figure 3)

/// `stripe-mirror emulator` as a child process.
struct EmulatorChild {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    base_url: String,
    account: String,
    secret_test: String,
}

impl EmulatorChild {
    fn start(bin: &Path, scale: u64, seed: u64) -> Result<EmulatorChild> {
        let mut child = Command::new(bin)
            .args(["emulator", "--listen", "127.0.0.1:0", "--json"])
            .args(["--scale", &scale.to_string(), "--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "could not run {}: {e} — build it with `cargo build --release -p stripe-mirror` or pass --emulator-bin",
                    bin.display()
                )
            })?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ready: Value = match serde_json::from_str(&line) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    format!("the emulator's first line is not its JSON ({e}): {line:?}").into(),
                );
            }
        };
        let account = &ready["accounts"][0];
        Ok(EmulatorChild {
            base_url: text(&ready["base_url"]),
            account: text(&account["id"]),
            secret_test: text(&account["keys"]["secret_test"]),
            child,
            _stdout: stdout,
        })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backfill(args: BackfillArgs) -> Result<()> {
    let dir = bench_dir(&args.dir, "sync-bench")?;
    let exe = std::env::current_exe()?;
    println!(
        "Seeding {} customers in `stripe-mirror emulator` (a child process)…{}",
        args.scale,
        load_note()
    );
    let started = Instant::now();
    let emulator = EmulatorChild::start(&args.emulator_bin, args.scale, args.seed)?;
    let seed_secs = started.elapsed().as_secs_f64();
    let http = http_client()?;
    let runtime = runtime()?;
    let account_info: Value = runtime.block_on(async {
        let url = format!(
            "{}/_emulator/accounts/{}",
            emulator.base_url, emulator.account
        );
        Ok::<_, Error>(serde_json::from_slice(
            &http.get(url).send().await?.bytes().await?,
        )?)
    })?;
    let objects_in_account = account_info["objects"]["test"].as_u64().unwrap_or(0);
    println!(
        "Emulator at {} (pid {}): {objects_in_account} objects in {}, ready in {seed_secs:.1} s, RSS {:.0} MB",
        emulator.base_url,
        emulator.pid(),
        emulator.account,
        vm_kb_of(&emulator.pid(), "VmRSS") as f64 / 1024.0
    );
    let vault = dir.join("vault.key");
    let mut runs = Vec::new();
    let mut first_sqlite: Option<String> = None;
    let mut postgres_schemas = Vec::new();
    for &backend in &args.backends {
        for &concurrency in &args.concurrency {
            let label = format!("{} c={concurrency}", backend.name());
            let database = match backend {
                Backend::Sqlite => {
                    let path = dir.join(format!("mirror-c{concurrency}.db"));
                    remove_sqlite(&path);
                    path.to_string_lossy().into_owned()
                }
                Backend::Postgres => {
                    let schema = format!("sm_bench_c{concurrency}_{}", std::process::id());
                    drop_schema(&args.postgres_url, &schema)?;
                    postgres_schemas.push(schema.clone());
                    with_schema(&args.postgres_url, &schema)
                }
            };
            println!("\n{label}: backfilling into {}…", database);
            let emulator_ticks = process_ticks(&emulator.pid());
            let wal_before = match backend {
                Backend::Postgres => postgres_wal_bytes(&args.postgres_url),
                Backend::Sqlite => None,
            };
            let postgres_before = postgres_ticks();
            let load_before = load_average();
            let mut result = run_self(
                &exe,
                &[
                    "backfill-one".into(),
                    "--base-url".into(),
                    emulator.base_url.clone(),
                    "--key".into(),
                    emulator.secret_test.clone(),
                    "--database".into(),
                    database.clone(),
                    "--vault".into(),
                    vault.to_string_lossy().into_owned(),
                    "--concurrency".into(),
                    concurrency.to_string(),
                    "--label".into(),
                    label.clone(),
                ],
            )?;
            let emulator_cpu = process_ticks(&emulator.pid()).saturating_sub(emulator_ticks) as f64
                / TICKS_PER_SECOND;
            let postgres_cpu =
                postgres_ticks().saturating_sub(postgres_before) as f64 / TICKS_PER_SECOND;
            let load_after = load_average();
            let secs = result["secs"].as_f64().unwrap_or(0.0);
            let objects = result["objects"].as_u64().unwrap_or(0);
            if let (Some(before), Some(after)) =
                (wal_before, postgres_wal_bytes(&args.postgres_url))
            {
                let wal = after.saturating_sub(before);
                println!(
                    "  {label}: the Postgres server wrote {:.2} GB of WAL = {:.1} kB per object",
                    wal as f64 / 1e9,
                    wal as f64 / 1e3 / objects.max(1) as f64
                );
                result["postgres_wal_bytes"] = json!(wal);
            }
            let rate = objects as f64 / secs.max(1e-9);
            let peak_mb = result["vm_hwm_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0;
            let size = match backend {
                Backend::Sqlite => sqlite_bytes(Path::new(&database)),
                Backend::Postgres => {
                    schema_bytes(&args.postgres_url, postgres_schemas.last().expect("pushed"))
                        .unwrap_or(0)
                }
            };
            println!(
                "  {label}: {objects} objects in {secs:.1} s = {rate:.0} objects/s — goal ≥ {:.0}/s: ratio {:.2}",
                backend.goal(),
                rate / backend.goal()
            );
            println!(
                "  {label}: peak memory (VmHWM of the mirror's process) {peak_mb:.1} MB — goal < {GOAL_PEAK_MB:.0} MB: ratio {:.2}; {} requests ({:.0}/s), {} retries; {} status",
                peak_mb / GOAL_PEAK_MB,
                result["requests"],
                result["requests"].as_f64().unwrap_or(0.0) / secs.max(1e-9),
                result["retries"],
                text(&result["status"])
            );
            println!(
                "  {label}: CPU: mirror {:.1} s ({:.0}% of one core), emulator {emulator_cpu:.1} s ({:.0}%), Postgres server processes {postgres_cpu:.1} s ({:.0}%), {} cores; database {:.0} MB; load average {load_before:.2} before, {load_after:.2} after",
                result["cpu_secs"].as_f64().unwrap_or(0.0),
                100.0 * result["cpu_secs"].as_f64().unwrap_or(0.0) / secs.max(1e-9),
                100.0 * emulator_cpu / secs.max(1e-9),
                100.0 * postgres_cpu / secs.max(1e-9),
                cores(),
                size as f64 / 1_048_576.0
            );
            result["postgres_cpu_secs"] = json!(round(postgres_cpu, 2));
            result["backend"] = json!(backend.name());
            result["goal_objects_per_sec"] = json!(backend.goal());
            result["ratio_to_goal"] = json!(round(rate / backend.goal(), 3));
            result["peak_ratio_to_goal"] = json!(round(peak_mb / GOAL_PEAK_MB, 3));
            result["emulator_cpu_secs"] = json!(round(emulator_cpu, 2));
            result["database_bytes"] = json!(size);
            result["load_before"] = json!(load_before);
            result["load_after"] = json!(load_after);
            runs.push(result);
            if backend == Backend::Sqlite && first_sqlite.is_none() {
                first_sqlite = Some(database.clone());
            }
        }
    }
    let mut incremental = Value::Null;
    let changes: Vec<u64> = args
        .incremental
        .iter()
        .copied()
        .filter(|&k| k > 0)
        .collect();
    if let (Some(database), false) = (first_sqlite.as_ref(), changes.is_empty()) {
        println!(
            "\nIncremental runs on {} after K changes (K = 0, then {})…",
            database,
            join(&changes)
        );
        let mut child_args: Vec<String> = vec![
            "incremental".into(),
            "--base-url".into(),
            emulator.base_url.clone(),
            "--account".into(),
            emulator.account.clone(),
            "--database".into(),
            database.clone(),
            "--vault".into(),
            vault.to_string_lossy().into_owned(),
            "--seed".into(),
            args.seed.to_string(),
            "--concurrency".into(),
            args.concurrency.first().copied().unwrap_or(8).to_string(),
        ];
        child_args.push("--changes".into());
        child_args.push(join(&changes));
        incremental = run_self(&exe, &child_args)?;
    } else if !changes.is_empty() {
        println!("\n(no SQLite run: the incremental runs are skipped)");
    }
    emulator.stop();
    if !args.keep {
        for schema in &postgres_schemas {
            let _ = drop_schema(&args.postgres_url, schema);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "{}",
        json!({
            "bench": "backfill",
            "scale": args.scale,
            "objects_in_account": objects_in_account,
            "seed_secs": round(seed_secs, 1),
            "cores": cores(),
            "runs": runs,
            "incremental": incremental,
        })
    );
    Ok(())
}

/// Counts objects while a sync runs (for progress lines), and notes when the per-customer
/// lists began (the second phase of a backfill).
struct Meter {
    objects: AtomicU64,
    started: Instant,
    per_customer: Mutex<Option<(f64, u64)>>,
    /// Objects per table since the last progress line: what is being written now.
    lately: Mutex<std::collections::HashMap<String, u64>>,
}

impl Meter {
    /// The tables written most since the last call, busiest first.
    fn busiest(&self) -> String {
        let mut lately: Vec<(String, u64)> = self.lately.lock().drain().collect();
        lately.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        lately
            .iter()
            .take(4)
            .map(|(table, n)| format!("{table} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Progress for Meter {
    fn begin(&self, table: &str, _: &str) {
        let per_parent = sm_engine::catalog::resource(table)
            .is_some_and(|r| matches!(r.source, sm_engine::catalog::Source::PerParent { .. }));
        let mut phase = self.per_customer.lock();
        if per_parent && phase.is_none() {
            *phase = Some((
                self.started.elapsed().as_secs_f64(),
                self.objects.load(Ordering::Relaxed),
            ));
        }
    }
    fn advance(&self, table: &str, objects: u64, _: f64) {
        self.objects.fetch_add(objects, Ordering::Relaxed);
        *self.lately.lock().entry(table.to_owned()).or_default() += objects;
    }
    fn end(&self, _: &str) {}
    fn note(&self, message: &str) {
        println!("    note: {message}");
    }
}

fn backfill_one(args: OneArgs) -> Result<()> {
    let runtime = runtime()?;
    let engine = engine_on(&args.database, &args.vault, &args.base_url, f64::INFINITY)?;
    let key = ApiKey::parse(&args.key)?;
    let outcome = runtime.block_on(connect(&engine, key, ConnectOptions::default()))?;
    let connection = Connection::new(outcome.account.account_id.clone(), false);
    let rss_before = vm_kb("VmRSS");
    let ticks_before = process_ticks("self");
    let retries_before = retries::total();
    let written_before = io_bytes("write_bytes");
    let started = Instant::now();
    let meter = Arc::new(Meter {
        objects: AtomicU64::new(0),
        started,
        per_customer: Mutex::new(None),
        lately: Mutex::new(std::collections::HashMap::new()),
    });
    let options = SyncOptions {
        full: false,
        concurrency: args.concurrency,
        tables: None,
        ..Default::default()
    };
    let report: SyncReport = runtime.block_on(async {
        let sync = sync(&engine, &connection, &options, meter.clone());
        tokio::pin!(sync);
        let every = secs(args.every);
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::select! {
                report = &mut sync => break report,
                _ = tokio::time::sleep(every) => {
                    let objects = meter.objects.load(Ordering::Relaxed);
                    let now = Instant::now();
                    println!(
                        "    {:>5.0} s: {objects:>9} objects ({:.0}/s lately), RSS {:.0} MB, peak {:.0} MB, load {:.2}; lately {}",
                        started.elapsed().as_secs_f64(),
                        (objects - last.1) as f64 / now.duration_since(last.0).as_secs_f64(),
                        vm_kb("VmRSS") as f64 / 1024.0,
                        vm_kb("VmHWM") as f64 / 1024.0,
                        load_average(),
                        meter.busiest()
                    );
                    let _ = std::io::stdout().flush();
                    last = (now, objects);
                }
            }
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_ticks("self").saturating_sub(ticks_before) as f64 / TICKS_PER_SECOND;
    let disk_written = io_bytes("write_bytes").saturating_sub(written_before);
    let objects = objects_written(&report.run.counts);
    let phase = *meter.per_customer.lock();
    if let Some((at, listed_then)) = phase {
        // The meter counts each list's own objects, not the children embedded in them.
        let rest = meter
            .objects
            .load(Ordering::Relaxed)
            .saturating_sub(listed_then);
        println!(
            "    {}: top-level lists took {at:.1} s ({listed_then} listed objects, {:.0}/s, embedded children not counted); then per-customer lists, refresh and events {:.1} s ({rest} listed objects)",
            args.label,
            listed_then as f64 / at.max(1e-9),
            secs - at,
        );
    }
    println!(
        "    {}: this process wrote {:.2} GB to disk = {:.1} kB per object written",
        args.label,
        disk_written as f64 / 1e9,
        disk_written as f64 / 1e3 / objects.max(1) as f64
    );
    let mut tables: Vec<(String, u64)> = report
        .run
        .counts
        .tables
        .iter()
        .map(|(t, c)| (t.clone(), c.inserted + c.updated + c.deleted))
        .collect();
    tables.sort_by_key(|t| std::cmp::Reverse(t.1));
    println!(
        "    {}: {} run {}, largest tables: {}",
        args.label,
        report.run.kind,
        report.run.status,
        tables
            .iter()
            .take(6)
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{}",
        json!({
            "bench": "backfill-one",
            "label": args.label,
            "concurrency": args.concurrency,
            "secs": round(secs, 2),
            "objects": objects,
            "events": report.run.counts.new_events,
            "objects_per_sec": round(objects as f64 / secs.max(1e-9), 0),
            "requests": report.run.requests,
            "retries": retries::total() - retries_before,
            "status": report.run.status,
            "vm_hwm_bytes": vm_kb("VmHWM") * 1024,
            "vm_rss_before_bytes": rss_before * 1024,
            "vm_rss_after_bytes": vm_kb("VmRSS") * 1024,
            "cpu_secs": round(cpu, 2),
            "disk_write_bytes": disk_written,
            "top_level_phase": phase.map(|(at, n)| json!({"secs": round(at, 2), "listed_objects": n})),
            "tables": tables.into_iter().collect::<BTreeMap<_, _>>(),
            "notes": report.notes,
        })
    );
    Ok(())
}

#[derive(Debug, Args)]
struct VersionsArgs {
    /// Customers in the emulated account.
    #[arg(long, default_value_t = 300)]
    scale: u64,
    /// Changes made before each incremental run.
    #[arg(long, default_value_t = 1000)]
    changes: u64,
    /// The other version the account's events come in.
    #[arg(long, default_value = "2022-08-01")]
    other: String,
}

/// Runs the same scenario twice (the account's default version equal to the mirror's, then
/// another): backfill, `changes` changes, one incremental run; prints requests per event.
fn versions(args: VersionsArgs) -> Result<()> {
    let runtime = runtime()?;
    let mut per_event = Vec::new();
    for version in [sm_stripe::API_VERSION.to_owned(), args.other.clone()] {
        let dir = bench_dir(&None, "versions")?;
        let measured = runtime.block_on(async {
            let emulator = sm_emulator::Emulator::new(7);
            let account = sm_emulator::control::create_account(
                &emulator,
                &sm_emulator::control::NewAccount {
                    scale: args.scale,
                    seed: Some(7),
                    api_version: Some(version.clone()),
                    ..Default::default()
                },
                7,
            )
            .map_err(|f| format!("{}", f.body))?;
            let server =
                sm_emulator::EmulatorServer::start(emulator, "127.0.0.1:0".parse()?).await?;
            let database = dir.join(format!("versions-{version}.db"));
            let _ = std::fs::remove_file(&database);
            let engine = engine_on(
                database.to_str().unwrap_or_default(),
                &dir.join("vault"),
                &server.base_url(),
                f64::INFINITY,
            )?;
            let key = sm_stripe::ApiKey::parse(
                account["keys"]["restricted_test"]
                    .as_str()
                    .unwrap_or_default(),
            )?;
            let outcome = sm_engine::connect::connect(&engine, key, Default::default()).await?;
            let connection = Connection::new(outcome.account.account_id.clone(), false);
            let options = SyncOptions::default();
            sync(
                &engine,
                &connection,
                &options,
                Arc::new(sm_engine::sync::Quiet),
            )
            .await?;
            let emulated = server
                .emulator
                .world
                .account(account["id"].as_str().unwrap_or_default())
                .ok_or("no account")?;
            let made = sm_emulator::seed::simulate_activity(
                &server.emulator,
                &emulated,
                sm_emulator::Mode::Test,
                args.changes,
                11,
            )
            .changes;
            let started = Instant::now();
            let report = sync(
                &engine,
                &connection,
                &options,
                Arc::new(sm_engine::sync::Quiet),
            )
            .await?;
            let secs = started.elapsed().as_secs_f64();
            server.stop().await;
            Ok::<_, Error>((
                made,
                report.run.counts.new_events,
                report.run.requests,
                secs,
            ))
        })?;
        let (made, events, requests, secs) = measured;
        let ratio = requests as f64 / events.max(1) as f64;
        println!(
            "events in {version:<12}: {made} changes, {events} events, {requests} requests in {secs:.2} s: {ratio:.3} requests per event"
        );
        per_event.push(ratio);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "reading changed objects again costs {:.2}× the requests per event ({:.3} → {:.3})",
        per_event[1] / per_event[0].max(f64::MIN_POSITIVE),
        per_event[0],
        per_event[1]
    );
    Ok(())
}

fn incremental(args: IncrementalArgs) -> Result<()> {
    let runtime = runtime()?;
    // A recording proxy in front of the emulator tells which endpoints the requests went to.
    let (proxy_base, proxy) = runtime.block_on(start_proxy(args.base_url.clone()))?;
    let engine = engine_on(&args.database, &args.vault, &proxy_base, f64::INFINITY)?;
    let connection = Connection::new(args.account.clone(), false);
    let http = http_client()?;
    let options = SyncOptions {
        full: false,
        concurrency: args.concurrency,
        tables: None,
        ..Default::default()
    };
    let mut points = Vec::new();
    let steps: Vec<u64> = std::iter::once(0)
        .chain(args.changes.iter().copied())
        .collect();
    for (n, &changes) in steps.iter().enumerate() {
        let (made, activity_secs) = if changes > 0 {
            let started = Instant::now();
            let url = format!(
                "{}/_emulator/accounts/{}/activity",
                args.base_url, args.account
            );
            let body = json!({"mode": "test", "changes": changes, "seed": args.seed.wrapping_add(n as u64 * 7919)});
            let answer: Value = runtime.block_on(async {
                let response = http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await?;
                Ok::<_, Error>(serde_json::from_slice(&response.bytes().await?)?)
            })?;
            (
                answer["changes"].as_u64().unwrap_or(0),
                started.elapsed().as_secs_f64(),
            )
        } else {
            (0, 0.0)
        };
        let retries_before = retries::total();
        let from = proxy.log.lock().len();
        let started = Instant::now();
        let report = runtime.block_on(sync(
            &engine,
            &connection,
            &options,
            Arc::new(sm_engine::sync::Quiet),
        ))?;
        let secs = started.elapsed().as_secs_f64();
        let mut by_endpoint: BTreeMap<String, u64> = BTreeMap::new();
        for seen in &proxy.log.lock()[from..] {
            let path = seen.path.as_str();
            *by_endpoint
                .entry(format!(
                    "{} {}",
                    seen.method,
                    sm_stripe::pacer::endpoint_of(path)
                ))
                .or_default() += 1;
        }
        let events = report.run.counts.new_events;
        let requests = report.run.requests;
        println!(
            "  K = {changes:>5} ({made} made in {activity_secs:.1} s, E = {events} events, {:.2} events/change): {requests} requests in {secs:.2} s, {} objects written; K/100 = {:.0}, E/100 = {:.0}; {} {}; load {:.2}",
            events as f64 / made.max(1) as f64,
            objects_written(&report.run.counts),
            changes as f64 / 100.0,
            events as f64 / 100.0,
            report.run.kind,
            report.run.status,
            load_average()
        );
        println!("    requests by endpoint: {}", top_counts(&by_endpoint, 8));
        points.push(json!({
            "by_endpoint": by_endpoint,
            "changes": changes,
            "made": made,
            "events": events,
            "requests": requests,
            "retries": retries::total() - retries_before,
            "objects": objects_written(&report.run.counts),
            "secs": round(secs, 3),
            "kind": report.run.kind,
            "status": report.run.status,
        }));
    }
    let by = |field: &str| -> Vec<(f64, f64)> {
        points
            .iter()
            .map(|p| {
                (
                    p[field].as_f64().unwrap_or(0.0),
                    p["requests"].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    let (a, b) = fit(&by("changes"));
    let (ae, be) = fit(&by("events"));
    println!(
        "  fit over K: requests ≈ {a:.4}·K + {b:.1} — the issue's K/100 is a = 0.01: ratio {:.2}",
        a / 0.01
    );
    println!(
        "  fit over events: requests ≈ {ae:.4}·E + {be:.1} — E/100 is 0.01: ratio {:.2}",
        ae / 0.01
    );
    println!(
        "{}",
        json!({
            "bench": "incremental",
            "points": points,
            "fit_changes": {"a": round(a, 5), "b": round(b, 2)},
            "fit_events": {"a": round(ae, 5), "b": round(be, 2)},
        })
    );
    Ok(())
}

/// Least squares `y ≈ a·x + b`.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if n < 2.0 {
        return (0.0, points.first().map_or(0.0, |p| p.1));
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let a = if var > 0.0 { cov / var } else { 0.0 };
    (a, mean_y - a * mean_x)
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

fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

fn sqlite_bytes(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len())
        })
        .sum()
}

fn with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}schema={schema}")
}

fn postgres_client(url: &str) -> Result<postgres::Client> {
    Ok(postgres::Client::connect(url, postgres::NoTls)?)
}

fn drop_schema(url: &str, schema: &str) -> Result<()> {
    let mut client = postgres_client(url)?;
    client.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
        schema.replace('"', "\"\"")
    ))?;
    Ok(())
}

fn schema_bytes(url: &str, schema: &str) -> Result<u64> {
    let mut client = postgres_client(url)?;
    let row = client.query_one(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        &[&schema],
    )?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

// ---------------------------------------------------------------------------------------------
// paced (figure 2)

/// What the recording proxy saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    /// Seconds since the proxy started.
    at: f64,
    method: String,
    path: String,
    status: u16,
}

/// A recording HTTP proxy between the engine and the emulator: every request is forwarded as is
/// and logged with its answer's status.
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    started: Instant,
    log: Mutex<Vec<Seen>>,
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let target = format!(
        "{}{}",
        proxy.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = parts.headers.clone();
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    let answer = async {
        let body = axum::body::to_bytes(body, 16 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let response = proxy
            .http
            .request(parts.method.clone(), target)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, headers, body))
    }
    .await;
    let (status, headers, body) = match answer {
        Ok(answer) => answer,
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            axum::http::HeaderMap::new(),
            axum::body::Bytes::from(error),
        ),
    };
    proxy.log.lock().push(Seen {
        at: proxy.started.elapsed().as_secs_f64(),
        method: parts.method.to_string(),
        path,
        status: status.as_u16(),
    });
    let mut response = axum::response::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != header::TRANSFER_ENCODING
            && name != header::CONNECTION
            && name != header::CONTENT_LENGTH
        {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

async fn start_proxy(upstream: String) -> Result<(String, Arc<Proxy>)> {
    let proxy = Arc::new(Proxy {
        upstream,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        started: Instant::now(),
        log: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    // Without TCP_NODELAY small answers can wait for delayed ACKs (40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, proxy))
}

fn paced(args: PacedArgs) -> Result<()> {
    let dir = bench_dir(&args.dir, "sync-paced")?;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("emu-server")
        .enable_all()
        .build()?;
    println!(
        "Seeding an account of {} test and {} live customers in-process…{}",
        args.scale,
        args.live_scale,
        load_note()
    );
    let (server, account, proxy_base, proxy) = server_runtime.block_on(async {
        let emulator = Emulator::new(args.seed);
        let account = create_account(
            &emulator,
            &NewAccount {
                name: Some("Paced Co".into()),
                seed: Some(args.seed),
                scale: args.scale,
                live_scale: args.live_scale,
                ..Default::default()
            },
            args.seed,
        )
        .map_err(|f| format!("could not create the account: {}", f.body))?;
        emulator.limits.settings.write().enabled = true;
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse()?).await?;
        let (proxy_base, proxy) = start_proxy(server.base_url()).await?;
        Ok::<_, Error>((server, account, proxy_base, proxy))
    })?;
    let limits = server.emulator.limits.settings.read().clone();
    println!(
        "Emulator limits on: test {}/s, live {}/s, {}/s per endpoint (its buckets hold one second of tokens); engine budget share {}, concurrency {}; a recording proxy in between",
        limits.test_per_second,
        limits.live_per_second,
        limits.endpoint_per_second,
        args.budget_share,
        args.concurrency
    );
    let runtime = runtime()?;
    let modes: &[bool] = match args.mode {
        ModeChoice::Test => &[false],
        ModeChoice::Live => &[true],
        ModeChoice::Both => &[false, true],
    };
    let mut results = Vec::new();
    for &livemode in modes {
        let mode = if livemode { "live" } else { "test" };
        let seeded = account["seeded"][mode]["total"].as_u64().unwrap_or(0);
        let key = text(
            &account["keys"][if livemode {
                "secret_live"
            } else {
                "secret_test"
            }],
        );
        let database = dir.join(format!("paced-{mode}.db"));
        remove_sqlite(&database);
        let engine = engine_on(
            &database.to_string_lossy(),
            &dir.join("vault.key"),
            &proxy_base,
            args.budget_share,
        )?;
        println!("\n{mode} mode: {seeded} objects seeded; connecting…");
        let outcome = runtime.block_on(connect(
            &engine,
            ApiKey::parse(&key)?,
            ConnectOptions::default(),
        ))?;
        let connection = Connection::new(outcome.account.account_id.clone(), livemode);
        // Let both the emulator's buckets and the engine's pacer fill up again after connect.
        std::thread::sleep(Duration::from_secs(2));
        let from = proxy.log.lock().len();
        let retries_before = retries::total();
        let retry_statuses_before = retries::by_reason();
        let load_before = load_average();
        let started = Instant::now();
        let report = runtime.block_on(sync(
            &engine,
            &connection,
            &SyncOptions {
                full: false,
                concurrency: args.concurrency,
                tables: None,
                ..Default::default()
            },
            Arc::new(sm_engine::sync::Quiet),
        ));
        let secs = started.elapsed().as_secs_f64();
        let load_after = load_average();
        let seen: Vec<Seen> = proxy.log.lock()[from..].to_vec();
        let retries = retries::total() - retries_before;
        let mut retry_reasons = retries::by_reason();
        for (reason, n) in retry_statuses_before {
            if let Some(count) = retry_reasons.get_mut(&reason) {
                *count -= n;
            }
        }
        retry_reasons.retain(|_, n| *n > 0);
        let (run_requests, status, objects, error) = match &report {
            Ok(report) => (
                report.run.requests,
                report.run.status.clone(),
                objects_written(&report.run.counts),
                None,
            ),
            Err(e) => (0, "failed".into(), 0, Some(e.message.clone())),
        };
        let mut result = paced_figures(
            mode,
            livemode,
            &seen,
            run_requests,
            secs,
            objects,
            retries,
            &retry_reasons,
        );
        println!(
            "  sync {status}{}; load average {load_before:.2} before, {load_after:.2} after",
            error
                .as_ref()
                .map(|e| format!(
                    " after {secs:.1} s: {e} — the time and ratio above cover only what was done before"
                ))
                .unwrap_or_default()
        );
        result["status"] = json!(status);
        result["error"] = json!(error);
        result["load_before"] = json!(load_before);
        result["load_after"] = json!(load_after);
        result["seeded_objects"] = json!(seeded);
        results.push(result);
    }
    server_runtime.block_on(server.stop());
    server_runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        json!({
            "bench": "paced",
            "scale": args.scale,
            "live_scale": args.live_scale,
            "budget_share": args.budget_share,
            "concurrency": args.concurrency,
            "runs": results,
        })
    );
    Ok(())
}

/// The figures of one paced run from what the proxy saw.
#[allow(clippy::too_many_arguments)]
fn paced_figures(
    mode: &str,
    livemode: bool,
    seen: &[Seen],
    run_requests: u64,
    secs: f64,
    objects: u64,
    retries: u64,
    retry_reasons: &BTreeMap<String, u64>,
) -> Value {
    let total = seen.len() as u64;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    // Per endpoint as the emulator limits them (`GET /v1/customers` covers everything under a
    // customer) and as the engine's pacer names them (ids left out, sub-resources kept).
    // Only admitted requests (not answered 429) count toward the bound: a refused one took no
    // token from the emulator's buckets.
    let mut by_emulator: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_pacer: BTreeMap<String, u64> = BTreeMap::new();
    for s in seen {
        *statuses.entry(s.status).or_default() += 1;
        if s.status == 429 {
            continue;
        }
        *by_emulator
            .entry(sm_emulator::api::endpoint_of(&s.method, &s.path))
            .or_default() += 1;
        *by_pacer
            .entry(sm_stripe::pacer::endpoint_of(&s.path))
            .or_default() += 1;
    }
    let failed: u64 = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let limited = statuses.get(&429).copied().unwrap_or(0);
    let (busiest, busiest_count) = by_emulator
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(e, n)| (e.clone(), *n))
        .unwrap_or_default();
    let requests = run_requests.max(total);
    let admitted = total - limited;
    let (bound, bound_why, goal) = if livemode {
        let global = admitted as f64 / LIVE_RATE;
        let endpoint = busiest_count as f64 / ENDPOINT_RATE;
        if endpoint > global {
            (
                endpoint,
                format!("{busiest_count} requests to {busiest} ÷ {ENDPOINT_RATE}/s"),
                GOAL_LIVE_RATIO,
            )
        } else {
            (
                global,
                format!("{admitted} admitted requests ÷ {LIVE_RATE}/s"),
                GOAL_LIVE_RATIO,
            )
        }
    } else {
        (
            admitted as f64 / TEST_RATE,
            format!("{admitted} admitted requests ÷ {TEST_RATE}/s"),
            GOAL_TEST_RATIO,
        )
    };
    let ratio = secs / bound.max(1e-9);
    println!(
        "  {mode}: {secs:.1} s for {requests} requests ({objects} objects written) — bound {bound:.1} s ({bound_why}): ratio {ratio:.3}, goal ≤ {goal:.2}",
    );
    println!(
        "  {mode}: statuses {} — {failed} failed requests ({limited} answered 429); client retries logged: {retries} {}; the run counted {run_requests} requests, the proxy {total}",
        statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        if retry_reasons.is_empty() {
            String::new()
        } else {
            format!("({retry_reasons:?})")
        }
    );
    println!(
        "  {mode}: admitted requests by the emulator's endpoints: {}",
        top_counts(&by_emulator, 6)
    );
    println!(
        "  {mode}: admitted requests by the pacer's endpoints: {}",
        top_counts(&by_pacer, 6)
    );
    // Requests per 5-second slice, to see where time goes (slow starts, serial tails).
    let slice = 5.0;
    let first = seen.first().map_or(0.0, |s| s.at);
    let slices = ((secs / slice).ceil() as usize).max(1);
    let mut per_slice = vec![0u64; slices];
    for s in seen {
        let i = (((s.at - first) / slice) as usize).min(slices - 1);
        per_slice[i] += 1;
    }
    println!(
        "  {mode}: requests/s per {slice:.0} s slice: {}",
        per_slice
            .iter()
            .map(|n| format!("{:.0}", *n as f64 / slice))
            .collect::<Vec<_>>()
            .join(" ")
    );
    json!({
        "mode": mode,
        "secs": round(secs, 2),
        "requests": requests,
        "admitted_requests": admitted,
        "run_requests": run_requests,
        "proxy_requests": total,
        "objects": objects,
        "bound_secs": round(bound, 2),
        "bound": bound_why,
        "ratio": round(ratio, 4),
        "goal_ratio": goal,
        "failed_requests": failed,
        "rate_limited": limited,
        "statuses": statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "client_retries": retries,
        "client_retry_reasons": retry_reasons,
        "by_emulator_endpoint": by_emulator,
        "by_pacer_endpoint": by_pacer,
        "requests_per_sec_by_5s": per_slice.iter().map(|n| *n as f64 / slice).collect::<Vec<_>>(),
    })
}

/// `name count, …` of the largest counts.
fn top_counts(map: &BTreeMap<String, u64>, how_many: usize) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(*e.1));
    v.iter()
        .take(how_many)
        .map(|(e, n)| format!("{e} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// The client's retries, counted from its `tracing` debug events ("…; retrying").

mod retries {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use parking_lot::Mutex;
    use tracing::field::{Field, Visit};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    static TOTAL: AtomicU64 = AtomicU64::new(0);
    static REASONS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

    /// Only the Stripe client's events reach the counter; everything else is off.
    struct Counter;

    fn wanted(metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target().starts_with("sm_stripe")
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        status: Option<u64>,
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            }
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "status" {
                self.status = Some(value);
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.name() == "status" {
                self.status = Some(value.max(0) as u64);
            }
        }
    }

    impl<S: Subscriber> Layer<S> for Counter {
        fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
            if wanted(metadata) {
                Interest::always()
            } else {
                Interest::never()
            }
        }
        fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
            wanted(metadata)
        }
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            if fields.message.contains("retrying") {
                TOTAL.fetch_add(1, Ordering::Relaxed);
                let reason = match fields.status {
                    Some(status) => status.to_string(),
                    None => fields
                        .message
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                *REASONS.lock().entry(reason).or_default() += 1;
            }
        }
    }

    pub fn install() {
        let subscriber = tracing_subscriber::registry().with(Counter);
        let _ = tracing::subscriber::set_global_default(subscriber);
    }

    pub fn total() -> u64 {
        TOTAL.load(Ordering::Relaxed)
    }

    pub fn by_reason() -> BTreeMap<String, u64> {
        REASONS.lock().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// /proc and small helpers

/// A plain keep-alive client for the control API.
fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().tcp_nodelay(true).build()?)
}

/// A counter of /proc/self/io (`write_bytes`: bytes this process caused to be written to disk).
fn io_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Bytes of WAL the Postgres server has written so far (`pg_stat_wal`, Postgres 14+).
fn postgres_wal_bytes(url: &str) -> Option<u64> {
    let mut client = postgres_client(url).ok()?;
    let row = client
        .query_one("SELECT wal_bytes::bigint FROM pg_stat_wal", &[])
        .ok()?;
    Some(row.get::<_, i64>(0).max(0) as u64)
}

/// CPU ticks of every process named `postgres` (the server and its backends, whoever they
/// serve: other work using the same server shows up here too), with the time of backends that
/// exited (a run's backend ends with it), which the postmaster holds as its children's time.
fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == "postgres")
        })
        .map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return 0;
            };
            // utime, stime, cutime, cstime.
            rest.split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn load_note() -> String {
    format!(" (load average {:.2})", load_average())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn join(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
