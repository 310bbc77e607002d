//! How fast the emulator serves list pages and how much memory its objects take.
//!
//! `pages`: seeds one account, then C keep-alive HTTP/1.1 clients walk `GET /v1/<resource>?limit=100`
//! for a fixed time, either following each page's last id (`walk`, as a mirror does) or asking for
//! random `starting_after` cursors from an id list fetched up front (`random`: no parsing on the
//! client, so it measures the server more purely). Prints pages/s against the 5,000 pages/s goal,
//! objects/s, MB/s, page size, latency percentiles and who used the CPU.
//!
//! `memory`: resident memory before and after seeding one account to ≥ 1,000,000 objects, and
//! before and after creating 10,000 small accounts, each in a fresh process.
//!
//! These print figures; they never assert. Build in release (see bench/README.md).

use sm_bench::{
    PAGE_LIMIT, machine_ticks, parse_page, process_ticks, round, scan_page, secs, thread_ticks,
    vm_kb,
};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer, Mode};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// The goal: list pages of 100 objects per second on loopback, on a 2-core machine.
const GOAL_PAGES_PER_SECOND: f64 = 5_000.0;
/// Thread names, so that CPU time can be told apart per side in one process (15 chars at most).
const SERVER_THREAD: &str = "emu-server";
const CLIENT_THREAD: &str = "bench-client";
/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;
/// Seeded objects per customer, a little under what seeding makes (for choosing a scale).
const OBJECTS_PER_CUSTOMER_ESTIMATE: f64 = 23.0;
const DEFAULT_SERVER_BIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/release/stripe-mirror"
);

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of the Stripe emulator: list pages per second and memory per object")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// List pages of 100 objects per second over loopback HTTP/1.1 keep-alive.
    Pages(PagesArgs),
    /// Resident memory of one account of ≥ 1,000,000 objects and of 10,000 small accounts.
    Memory(MemoryArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    /// The emulator runs in this process on its own Tokio runtime.
    InProcess,
    /// `stripe-mirror emulator` runs as a child process (build it with --release first).
    Child,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CursorMode {
    /// Follow each page's last id, as a mirror does, restarting at the top at the end.
    Walk,
    /// Random `starting_after` cursors from an id list fetched up front; the body is not parsed.
    Random,
    /// Both, one after the other.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Parse {
    /// Find the last object's id by scanning only the end of the body.
    Cheap,
    /// Parse the whole body with serde_json, as a real client would.
    Full,
}

#[derive(Debug, Args)]
struct PagesArgs {
    /// Where the emulator runs.
    #[arg(long, value_enum, default_value_t = ServerKind::InProcess)]
    server: ServerKind,
    /// The `stripe-mirror` binary for `--server child`.
    #[arg(long, default_value = DEFAULT_SERVER_BIN)]
    server_bin: PathBuf,
    /// Customers to seed (roughly 15-20 objects each).
    #[arg(long, default_value_t = 20_000)]
    scale: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds measured per resource and cursor mode.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run before each measurement and not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent keep-alive clients.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// Lists to page through, comma-separated (`charges`, `customers`, `invoices`, …).
    #[arg(long, value_delimiter = ',', default_value = "charges,customers")]
    resources: Vec<String>,
    #[arg(long, value_enum, default_value_t = CursorMode::Both)]
    cursor: CursorMode,
    /// How `walk` finds the next cursor.
    #[arg(long, value_enum, default_value_t = Parse::Cheap)]
    parse: Parse,
    /// Worker threads of the in-process server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Worker threads of the clients' runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// One account seeded to at least `--objects` objects.
    Big,
    /// `--accounts` accounts of `--account-scale` customers each.
    Small,
    /// Both, each in a fresh child process of this binary.
    Both,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    #[arg(long, value_enum, default_value_t = Scenario::Both)]
    scenario: Scenario,
    /// Objects the big account must reach.
    #[arg(long, default_value_t = 1_000_000)]
    objects: usize,
    /// Customers of the big account (default: enough for `--objects`).
    #[arg(long)]
    scale: Option<u64>,
    /// Small accounts to create.
    #[arg(long, default_value_t = 10_000)]
    accounts: u64,
    /// Customers per small account.
    #[arg(long, default_value_t = 3)]
    account_scale: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of list paging after building (0: none), to show the store still serves.
    #[arg(long, default_value_t = 3.0)]
    serve_secs: f64,
}

fn main() {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match cli.bench {
        Bench::Pages(args) => pages(args),
        Bench::Memory(args) => memory(args),
    };
    if let Err(e) = outcome {
        eprintln!("emulator_bench: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// pages

/// A running emulator with one seeded account.
struct Running {
    base_url: String,
    account: String,
    secret_test: String,
    seed_secs: f64,
    server: Server,
}

enum Server {
    InProcess {
        runtime: tokio::runtime::Runtime,
        server: EmulatorServer,
    },
    Child {
        child: Child,
        _stdout: BufReader<ChildStdout>,
    },
}

impl Running {
    /// CPU ticks the server has used so far.
    fn server_ticks(&self) -> u64 {
        match &self.server {
            Server::InProcess { .. } => thread_ticks("self", SERVER_THREAD),
            Server::Child { child, .. } => process_ticks(&child.id().to_string()),
        }
    }

    fn stop(self) {
        match self.server {
            Server::InProcess { runtime, server } => {
                runtime.block_on(server.stop());
                runtime.shutdown_timeout(Duration::from_secs(1));
            }
            Server::Child { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn start_in_process(args: &PagesArgs) -> Result<Running> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.max(1))
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let (server, account) = runtime.block_on(async {
        let emulator = Emulator::new(args.seed);
        let request = NewAccount {
            name: Some("Bench Co".into()),
            seed: Some(args.seed),
            scale: args.scale,
            ..Default::default()
        };
        let account = create_account(&emulator, &request, args.seed)
            .map_err(|f| format!("could not create the account: {}", f.body))?;
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse()?).await?;
        Ok::<_, Error>((server, account))
    })?;
    Ok(Running {
        base_url: server.base_url(),
        account: text(&account["id"]),
        secret_test: text(&account["keys"]["secret_test"]),
        seed_secs: started.elapsed().as_secs_f64(),
        server: Server::InProcess { runtime, server },
    })
}

fn start_child(args: &PagesArgs) -> Result<Running> {
    let started = Instant::now();
    let mut child = Command::new(&args.server_bin)
        .args(["emulator", "--listen", "127.0.0.1:0", "--json"])
        .args(["--scale", &args.scale.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "could not run {}: {e} — build it with `cargo build --release -p stripe-mirror` or pass --server-bin",
                args.server_bin.display()
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
    Ok(Running {
        base_url: text(&ready["base_url"]),
        account: text(&account["id"]),
        secret_test: text(&account["keys"]["secret_test"]),
        seed_secs: started.elapsed().as_secs_f64(),
        server: Server::Child {
            child,
            _stdout: stdout,
        },
    })
}

fn client_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()?)
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?)
}

fn bearer(key: &str) -> Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {key}"))?)
}

fn pages(args: PagesArgs) -> Result<()> {
    let cursor_modes: &[CursorMode] = match args.cursor {
        CursorMode::Both => &[CursorMode::Walk, CursorMode::Random],
        CursorMode::Walk => &[CursorMode::Walk],
        CursorMode::Random => &[CursorMode::Random],
    };
    println!(
        "Seeding {} customers ({} server)…",
        args.scale,
        match args.server {
            ServerKind::InProcess => "in-process",
            ServerKind::Child => "child-process",
        }
    );
    let running = match args.server {
        ServerKind::InProcess => start_in_process(&args)?,
        ServerKind::Child => start_child(&args)?,
    };
    let runtime = client_runtime(args.client_threads)?;
    let client = http_client()?;
    let key = bearer(&running.secret_test)?;
    let base: Arc<str> = running.base_url.as_str().into();
    let objects_in_account = runtime.block_on(async {
        let url = format!("{base}/_emulator/accounts/{}", running.account);
        let account: Value = serde_json::from_slice(&client.get(url).send().await?.bytes().await?)?;
        Ok::<_, Error>(account["objects"]["test"].as_u64().unwrap_or(0))
    })?;
    println!(
        "Emulator at {base}: {objects_in_account} objects in {} ({} customers), ready in {:.1} s; RSS {:.0} MB{}",
        running.account,
        args.scale,
        running.seed_secs,
        vm_kb("VmRSS") as f64 / 1024.0,
        if args.server == ServerKind::Child {
            " (this process)"
        } else {
            ""
        }
    );
    println!(
        "{} clients, {} s per run after {} s of warm-up, {} server / {} client threads, {} cores{}",
        args.concurrency,
        args.duration,
        args.warmup,
        if args.server == ServerKind::InProcess {
            args.server_threads.to_string()
        } else {
            "its own".into()
        },
        args.client_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_note()
    );
    let mut results = Vec::new();
    for resource in &args.resources {
        let resource: Arc<str> = resource.as_str().into();
        let ids = runtime.block_on(all_ids(&client, &key, &base, &resource))?;
        let scanner_ok = ids.scanner_agrees;
        if !scanner_ok {
            println!(
                "  note: the cheap id scan disagreed with serde_json on {resource}; walking with full parsing"
            );
        }
        let ids = Arc::new(ids.ids);
        for &mode in cursor_modes {
            let parse = if scanner_ok { args.parse } else { Parse::Full };
            let plan = Plan {
                client: client.clone(),
                keys: Arc::new(vec![key.clone()]),
                base: base.clone(),
                resource: resource.clone(),
                ids: ids.clone(),
                mode,
                parse,
            };
            if args.warmup > 0.0 {
                runtime.block_on(plan.run(args.concurrency, secs(args.warmup)));
            }
            let before = Usage::now(&running);
            let tally = runtime.block_on(plan.run(args.concurrency, secs(args.duration)));
            let usage = Usage::now(&running).since(&before);
            let result = report_run(&plan, &tally, &usage, args.concurrency);
            results.push(result);
        }
    }
    let sent = json!({
        "bench": "pages",
        "server": match args.server { ServerKind::InProcess => "in-process", ServerKind::Child => "child" },
        "scale": args.scale,
        "objects_in_account": objects_in_account,
        "seed_secs": round(running.seed_secs, 2),
        "concurrency": args.concurrency,
        "duration_secs": args.duration,
        "server_threads": if args.server == ServerKind::InProcess { json!(args.server_threads) } else { Value::Null },
        "client_threads": args.client_threads,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "goal_pages_per_sec": GOAL_PAGES_PER_SECOND,
        "runs": results,
    });
    running.stop();
    println!("{sent}");
    Ok(())
}

/// What one measured run is made of.
struct Plan {
    client: reqwest::Client,
    /// Authorization headers to use, one picked at random per request when there are several.
    keys: Arc<Vec<HeaderValue>>,
    base: Arc<str>,
    resource: Arc<str>,
    /// Every id of the list, newest first (for `random`).
    ids: Arc<Vec<String>>,
    mode: CursorMode,
    parse: Parse,
}

/// What the clients counted.
#[derive(Debug, Default)]
struct Tally {
    pages: u64,
    objects: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

impl Plan {
    async fn run(&self, concurrency: usize, duration: Duration) -> Tally {
        let started = Instant::now();
        let until = started + duration;
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|n| {
                let plan = self.clone_plan();
                tokio::spawn(async move { plan.work(until, n as u64).await })
            })
            .collect();
        let mut total = Tally::default();
        for worker in workers {
            let Ok(tally) = worker.await else {
                total.errors += 1;
                continue;
            };
            total.pages += tally.pages;
            total.objects += tally.objects;
            total.bytes += tally.bytes;
            total.errors += tally.errors;
            total.first_error = total.first_error.or(tally.first_error);
            total.latencies_us.extend(tally.latencies_us);
        }
        total.elapsed = started.elapsed();
        total
    }

    fn clone_plan(&self) -> Plan {
        Plan {
            client: self.client.clone(),
            keys: self.keys.clone(),
            base: self.base.clone(),
            resource: self.resource.clone(),
            ids: self.ids.clone(),
            mode: self.mode,
            parse: self.parse,
        }
    }

    async fn work(&self, until: Instant, worker: u64) -> Tally {
        let mut tally = Tally {
            latencies_us: Vec::with_capacity(1 << 16),
            ..Default::default()
        };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut cursor: Option<String> = None;
        let mut url = String::with_capacity(256);
        // Random cursors start where a full page still follows.
        let starts = self.ids.len().saturating_sub(PAGE_LIMIT).max(1);
        while Instant::now() < until {
            let mut expected = PAGE_LIMIT as u64;
            if self.mode == CursorMode::Random {
                if self.ids.is_empty() {
                    cursor = None;
                } else {
                    let at = rng.below(starts);
                    expected = (self.ids.len() - at - 1).min(PAGE_LIMIT) as u64;
                    cursor = Some(self.ids[at].clone());
                }
            }
            url.clear();
            url.push_str(&self.base);
            url.push_str("/v1/");
            url.push_str(&self.resource);
            url.push_str("?limit=100");
            if let Some(after) = &cursor {
                url.push_str("&starting_after=");
                url.push_str(after);
            }
            let key = if self.keys.len() == 1 {
                &self.keys[0]
            } else {
                &self.keys[rng.below(self.keys.len())]
            };
            let sent = Instant::now();
            let answer = async {
                let response = self
                    .client
                    .get(url.as_str())
                    .header(AUTHORIZATION, key.clone())
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            }
            .await;
            let latency = sent.elapsed();
            let body = match answer {
                Ok((status, body)) if status.is_success() => body,
                Ok((status, body)) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| {
                        format!("{status}: {}", String::from_utf8_lossy(&body))
                    });
                    cursor = None;
                    continue;
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| e.to_string());
                    cursor = None;
                    continue;
                }
            };
            tally.pages += 1;
            tally.bytes += body.len() as u64;
            tally
                .latencies_us
                .push(latency.as_micros().min(u32::MAX as u128) as u32);
            match self.mode {
                CursorMode::Random => tally.objects += expected,
                _ => {
                    let page = match self.parse {
                        Parse::Cheap => scan_page(&body),
                        Parse::Full => parse_page(&body),
                    };
                    match page {
                        Some(page) => {
                            tally.objects += page.count;
                            cursor = if page.has_more { page.last_id } else { None };
                        }
                        None => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert_with(|| {
                                format!(
                                    "unreadable page: {}",
                                    String::from_utf8_lossy(&body[..body.len().min(200)])
                                )
                            });
                            cursor = None;
                        }
                    }
                }
            }
        }
        tally
    }
}

struct AllIds {
    ids: Vec<String>,
    /// Whether [`scan_page`] found the same last id and `has_more` as serde_json on every page.
    scanner_agrees: bool,
}

/// Every id of a list, fetched with serde_json once before measuring; checks the cheap scanner.
async fn all_ids(
    client: &reqwest::Client,
    key: &HeaderValue,
    base: &str,
    resource: &str,
) -> Result<AllIds> {
    let mut ids = Vec::new();
    let mut scanner_agrees = true;
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/{resource}?limit=100");
        if let Some(after) = &after {
            url.push_str("&starting_after=");
            url.push_str(after);
        }
        let response = client
            .get(url)
            .header(AUTHORIZATION, key.clone())
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(format!(
                "GET /v1/{resource}: {status} {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        let page: Value = serde_json::from_slice(&body)?;
        let data = page["data"].as_array().ok_or("a list without data")?;
        ids.extend(data.iter().map(|o| text(&o["id"])));
        let agrees = match (scan_page(&body), parse_page(&body)) {
            (Some(scan), Some(full)) => {
                scan.has_more == full.has_more
                    && scan.count == full.count
                    && (!full.has_more || scan.last_id == full.last_id)
            }
            _ => false,
        };
        scanner_agrees &= agrees;
        if page["has_more"] != json!(true) || data.is_empty() {
            break;
        }
        after = ids.last().cloned();
    }
    Ok(AllIds {
        ids,
        scanner_agrees,
    })
}

/// CPU used over a run: the server's, the clients', and the whole machine's.
#[derive(Debug, Clone, Copy)]
struct Usage {
    at: Instant,
    server_ticks: u64,
    client_ticks: u64,
    machine_busy: u64,
    machine_total: u64,
}

impl Usage {
    fn now(running: &Running) -> Usage {
        let (machine_busy, machine_total) = machine_ticks();
        Usage {
            at: Instant::now(),
            server_ticks: running.server_ticks(),
            client_ticks: thread_ticks("self", CLIENT_THREAD),
            machine_busy,
            machine_total,
        }
    }

    fn since(&self, before: &Usage) -> Usage {
        Usage {
            at: before.at,
            server_ticks: self.server_ticks.saturating_sub(before.server_ticks),
            client_ticks: self.client_ticks.saturating_sub(before.client_ticks),
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_total: self.machine_total.saturating_sub(before.machine_total),
        }
    }
}

fn report_run(plan: &Plan, tally: &Tally, usage: &Usage, concurrency: usize) -> Value {
    let secs = tally.elapsed.as_secs_f64().max(1e-9);
    let pages_per_sec = tally.pages as f64 / secs;
    let objects_per_sec = tally.objects as f64 / secs;
    let mb_per_sec = tally.bytes as f64 / secs / 1e6;
    let avg_page = tally.bytes as f64 / tally.pages.max(1) as f64;
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let at = ((latencies.len() as f64 * p) as usize).min(latencies.len() - 1);
        latencies[at] as f64 / 1000.0
    };
    let (p50, p99, max) = (percentile(0.50), percentile(0.99), percentile(1.0));
    let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / secs;
    let server_cores = cores(usage.server_ticks);
    let client_cores = cores(usage.client_ticks);
    let machine_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy_share = usage.machine_busy as f64 / usage.machine_total.max(1) as f64;
    let other_cores = (busy_share * machine_cores - server_cores - client_cores).max(0.0);
    let server_ms_per_page =
        usage.server_ticks as f64 / TICKS_PER_SECOND * 1000.0 / tally.pages.max(1) as f64;
    let pages_per_server_core = if server_ms_per_page > 0.0 {
        1000.0 / server_ms_per_page
    } else {
        0.0
    };
    let mode = match (plan.mode, plan.parse) {
        (CursorMode::Random, _) => "random cursors, body not parsed",
        (_, Parse::Cheap) => "walk, last id scanned from the page's end",
        (_, Parse::Full) => "walk, every page parsed with serde_json",
    };
    println!();
    println!(
        "/v1/{} — {mode} — {concurrency} clients, {:.1} s",
        plan.resource, secs
    );
    println!(
        "  {:>9.0} pages/s   = {:.2}× the {:.0} pages/s goal",
        pages_per_sec,
        pages_per_sec / GOAL_PAGES_PER_SECOND,
        GOAL_PAGES_PER_SECOND
    );
    println!(
        "  {:>9.0} objects/s   {:.1} MB/s of JSON   average page {:.1} KB ({:.0} B/object)",
        objects_per_sec,
        mb_per_sec,
        avg_page / 1000.0,
        tally.bytes as f64 / tally.objects.max(1) as f64
    );
    println!("  latency p50 {p50:.2} ms   p99 {p99:.2} ms   max {max:.2} ms");
    println!(
        "  CPU: server {server_cores:.2} cores ({server_ms_per_page:.3} ms/page → {pages_per_server_core:.0} pages/s per server core), clients {client_cores:.2} cores, rest of machine {other_cores:.2} cores; machine {:.0}% busy",
        busy_share * 100.0
    );
    if tally.errors > 0 {
        println!(
            "  errors {} (first: {})",
            tally.errors,
            tally.first_error.as_deref().unwrap_or("?")
        );
    }
    json!({
        "resource": &*plan.resource,
        "cursor": match plan.mode { CursorMode::Random => "random", _ => "walk" },
        "parse": match (plan.mode, plan.parse) { (CursorMode::Random, _) => "none", (_, Parse::Cheap) => "cheap", (_, Parse::Full) => "full" },
        "secs": round(secs, 3),
        "pages": tally.pages,
        "pages_per_sec": round(pages_per_sec, 1),
        "goal_ratio": round(pages_per_sec / GOAL_PAGES_PER_SECOND, 3),
        "objects_per_sec": round(objects_per_sec, 0),
        "mb_per_sec": round(mb_per_sec, 1),
        "avg_page_bytes": round(avg_page, 0),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max, 3),
        "server_cores": round(server_cores, 2),
        "client_cores": round(client_cores, 2),
        "other_cores": round(other_cores, 2),
        "machine_busy": round(busy_share, 3),
        "server_ms_per_page": round(server_ms_per_page, 4),
        "pages_per_server_core_sec": round(pages_per_server_core, 0),
        "errors": tally.errors,
    })
}

/// A small xorshift generator for cursors and keys.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// memory

fn memory(args: MemoryArgs) -> Result<()> {
    match args.scenario {
        Scenario::Big => memory_big(&args),
        Scenario::Small => memory_small(&args),
        Scenario::Both => memory_both(&args),
    }
}

/// Runs each scenario in a fresh process of this binary, so that neither inherits the other's heap.
fn memory_both(args: &MemoryArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let common = |scenario: &str| -> Vec<String> {
        vec![
            "memory".into(),
            "--scenario".into(),
            scenario.into(),
            "--seed".into(),
            args.seed.to_string(),
            "--serve-secs".into(),
            args.serve_secs.to_string(),
        ]
    };
    let mut big_args = common("big");
    big_args.extend(["--objects".into(), args.objects.to_string()]);
    if let Some(scale) = args.scale {
        big_args.extend(["--scale".into(), scale.to_string()]);
    }
    let mut big = run_self(&exe, &big_args)?;
    // Seeding makes slightly fewer objects per customer than estimated: retry with the scale that
    // the first attempt suggests.
    if let Some(scale) = big["suggested_scale"].as_u64()
        && args.scale.is_none()
    {
        println!(
            "(short of {} objects: again with --scale {scale})",
            args.objects
        );
        big_args.extend(["--scale".into(), scale.to_string()]);
        big = run_self(&exe, &big_args)?;
    }
    println!();
    let mut small_args = common("small");
    small_args.extend([
        "--accounts".into(),
        args.accounts.to_string(),
        "--account-scale".into(),
        args.account_scale.to_string(),
    ]);
    let small = run_self(&exe, &small_args)?;
    println!("{}", json!({"bench": "memory", "big": big, "small": small}));
    Ok(())
}

/// Runs this binary with `args`, echoing its lines but the last (its JSON), which it returns.
fn run_self(exe: &std::path::Path, args: &[String]) -> Result<Value> {
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
        return Err(format!("{} {} failed: {status}", exe.display(), args.join(" ")).into());
    }
    Ok(last)
}

fn memory_big(args: &MemoryArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let inside = runtime.enter();
    let scale = args
        .scale
        .unwrap_or((args.objects as f64 / OBJECTS_PER_CUSTOMER_ESTIMATE).ceil() as u64);
    let emulator = Emulator::new(args.seed);
    let rss_before = vm_kb("VmRSS");
    println!(
        "One account of {scale} customers (target ≥ {} objects); RSS before {:.1} MB",
        args.objects,
        rss_before as f64 / 1024.0
    );
    let started = Instant::now();
    let request = NewAccount {
        name: Some("Big Co".into()),
        seed: Some(args.seed),
        scale,
        ..Default::default()
    };
    let account = create_account(&emulator, &request, args.seed)
        .map_err(|f| format!("could not create the account: {}", f.body))?;
    let seed_secs = started.elapsed().as_secs_f64();
    let rss_after = vm_kb("VmRSS");
    let peak = vm_kb("VmHWM");
    let id = text(&account["id"]);
    let stored = emulator.world.account(&id).ok_or("the account vanished")?;
    let (objects, json_bytes) = {
        let store = stored.mode(Mode::Test).read();
        (store.len(), store.json_bytes())
    };
    let seeded_total = account["seeded"]["test"]["total"].as_u64().unwrap_or(0);
    let delta = rss_after.saturating_sub(rss_before) * 1024;
    let per_object = delta as f64 / objects.max(1) as f64;
    let json_per_object = json_bytes as f64 / objects.max(1) as f64;
    println!(
        "  seeded {objects} objects (report total {seeded_total}) in {seed_secs:.1} s = {:.0} objects/s",
        objects as f64 / seed_secs
    );
    println!(
        "  RSS after {:.1} MB (+{:.1} MB), peak {:.1} MB",
        rss_after as f64 / 1024.0,
        delta as f64 / 1e6 / 1.048_576,
        peak as f64 / 1024.0
    );
    println!(
        "  {per_object:.0} bytes/object resident; JSON held {:.1} MB = {json_per_object:.0} bytes/object; everything else (indexes, ids, attrs, allocator) {:.0} bytes/object",
        json_bytes as f64 / 1e6,
        per_object - json_per_object
    );
    println!(
        "  largest kinds: {}",
        largest_kinds(&account["seeded"]["test"]["objects"], 8)
    );
    let suggested_scale = (objects < args.objects).then(|| {
        ((args.objects as f64 * 1.01) * scale as f64 / objects.max(1) as f64).ceil() as u64
    });
    if let Some(suggested) = suggested_scale {
        println!(
            "  short of {} objects: use --scale {suggested}",
            args.objects
        );
    }
    let key = text(&account["keys"]["secret_test"]);
    drop(inside);
    let serving = serve_check(runtime, emulator, vec![key], "charges", args.serve_secs)?;
    println!(
        "{}",
        json!({
            "bench": "memory-big",
            "scale": scale,
            "objects": objects,
            "seeded_total": seeded_total,
            "seed_secs": round(seed_secs, 2),
            "rss_before_bytes": rss_before * 1024,
            "rss_after_bytes": rss_after * 1024,
            "rss_peak_bytes": peak * 1024,
            "rss_delta_bytes": delta,
            "bytes_per_object": round(per_object, 1),
            "json_bytes": json_bytes,
            "json_bytes_per_object": round(json_per_object, 1),
            "suggested_scale": suggested_scale,
            "serving": serving,
        })
    );
    Ok(())
}

fn memory_small(args: &MemoryArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let inside = runtime.enter();
    let emulator = Emulator::new(args.seed);
    let rss_before = vm_kb("VmRSS");
    println!(
        "{} accounts of {} customers each; RSS before {:.1} MB",
        args.accounts,
        args.account_scale,
        rss_before as f64 / 1024.0
    );
    let started = Instant::now();
    let mut objects = 0u64;
    let mut ids = Vec::new();
    let step = (args.accounts / 5).max(1);
    let mut step_started = Instant::now();
    let mut step_ticks = process_ticks("self");
    let mut step_secs = Vec::new();
    let mut step_cpu_secs = Vec::new();
    for n in 0..args.accounts {
        let request = NewAccount {
            seed: Some(args.seed),
            scale: args.account_scale,
            ..Default::default()
        };
        let account = create_account(&emulator, &request, args.seed)
            .map_err(|f| format!("could not create account {n}: {}", f.body))?;
        objects += account["seeded"]["test"]["total"].as_u64().unwrap_or(0);
        if n == 0 {
            println!(
                "  the first account: {}",
                largest_kinds(&account["seeded"]["test"]["objects"], 6)
            );
        }
        if n % 97 == 0 {
            ids.push(text(&account["id"]));
        }
        if (n + 1) % step == 0 {
            let secs = step_started.elapsed().as_secs_f64();
            let ticks = process_ticks("self");
            let cpu = ticks.saturating_sub(step_ticks) as f64 / TICKS_PER_SECOND;
            step_secs.push(round(secs, 3));
            step_cpu_secs.push(round(cpu, 2));
            println!(
                "  {:>6} accounts: {secs:.2} s ({cpu:.2} s of CPU) for the last {step} ({:.0} accounts/s), RSS {:.1} MB",
                n + 1,
                step as f64 / secs,
                vm_kb("VmRSS") as f64 / 1024.0
            );
            step_ticks = ticks;
            step_started = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rss_after = vm_kb("VmRSS");
    let peak = vm_kb("VmHWM");
    let delta = rss_after.saturating_sub(rss_before) * 1024;
    let accounts = args.accounts.max(1) as f64;
    println!(
        "  created {} accounts with {objects} objects in {secs:.1} s = {:.0} accounts/s",
        args.accounts,
        args.accounts as f64 / secs
    );
    println!(
        "  RSS after {:.1} MB (+{:.1} MB), peak {:.1} MB: {:.0} bytes/account, {:.0} bytes/object",
        rss_after as f64 / 1024.0,
        delta as f64 / 1_048_576.0,
        peak as f64 / 1024.0,
        delta as f64 / accounts,
        delta as f64 / objects.max(1) as f64
    );
    // The secret test key of every 97th account: the clients spread requests over them.
    let keys: Vec<String> = ids
        .iter()
        .filter_map(|id| {
            emulator
                .world
                .keys_of(id)
                .into_iter()
                .find(|k| k.mode == Mode::Test && k.secret.starts_with("sk_test_"))
                .map(|k| k.secret)
        })
        .collect();
    drop(inside);
    let serving = serve_check(runtime, emulator, keys, "customers", args.serve_secs)?;
    println!(
        "{}",
        json!({
            "bench": "memory-small",
            "accounts": args.accounts,
            "account_scale": args.account_scale,
            "objects": objects,
            "secs": round(secs, 2),
            "secs_per_fifth": step_secs,
            "cpu_secs_per_fifth": step_cpu_secs,
            "rss_before_bytes": rss_before * 1024,
            "rss_after_bytes": rss_after * 1024,
            "rss_peak_bytes": peak * 1024,
            "rss_delta_bytes": delta,
            "bytes_per_account": round(delta as f64 / accounts, 0),
            "bytes_per_object": round(delta as f64 / objects.max(1) as f64, 1),
            "serving": serving,
        })
    );
    Ok(())
}

/// Serves the built emulator for a few seconds of list paging (8 clients, walking) and reports.
fn serve_check(
    runtime: tokio::runtime::Runtime,
    emulator: Arc<Emulator>,
    keys: Vec<String>,
    resource: &str,
    secs_to_run: f64,
) -> Result<Value> {
    if secs_to_run <= 0.0 || keys.is_empty() {
        return Ok(Value::Null);
    }
    let server = runtime.block_on(EmulatorServer::start(emulator, "127.0.0.1:0".parse()?))?;
    let clients = client_runtime(2)?;
    let plan = Plan {
        client: http_client()?,
        keys: Arc::new(keys.iter().map(|k| bearer(k)).collect::<Result<_>>()?),
        base: server.base_url().into(),
        resource: resource.into(),
        ids: Arc::new(Vec::new()),
        mode: CursorMode::Walk,
        parse: Parse::Cheap,
    };
    let tally = clients.block_on(plan.run(8, secs(secs_to_run)));
    let secs = tally.elapsed.as_secs_f64();
    let mut latencies = tally.latencies_us.clone();
    latencies.sort_unstable();
    let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "  serving /v1/{resource} over {} key(s), 8 clients walking: {:.0} pages/s, {:.0} objects/s, p50 {p50:.2} ms, {} errors{}",
        keys.len(),
        tally.pages as f64 / secs,
        tally.objects as f64 / secs,
        tally.errors,
        tally
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    runtime.block_on(server.stop());
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(json!({
        "resource": resource,
        "pages_per_sec": round(tally.pages as f64 / secs, 1),
        "objects_per_sec": round(tally.objects as f64 / secs, 0),
        "p50_ms": round(p50, 3),
        "errors": tally.errors,
    }))
}

// ---------------------------------------------------------------------------------------------
// /proc and small helpers

/// The one-minute load average, printed before the runs.
fn load_note() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one: f64 = load
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!("; load average {one:.2} before the runs")
}

/// `kind count, …` of a seed report's `objects`, largest first.
fn largest_kinds(objects: &Value, how_many: usize) -> String {
    let mut kinds: Vec<(&String, u64)> = objects
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let total: u64 = kinds.iter().map(|k| k.1).sum();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    let top: Vec<String> = kinds
        .iter()
        .take(how_many)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!("{total} objects: {}", top.join(", "))
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}
