//! How fast the mirror answers reads over HTTP: list pages of 100 through the Stripe-compatible
//! `/stripe/v1/customers` and the REST `/api/v1/connections/{c}/objects/charges`, walked with
//! `starting_after` by keep-alive clients (pages per second), and the latency of pages asked
//! for at a fixed rate (open loop). The mirror is a SQLite file filled by a real backfill of an
//! emulated account (`--scale 43000` customers is about 1,000,000 objects). The server runs on
//! threads of its own (`api-server`), the clients on theirs (`bench-client`), so that the CPU
//! each side spends per page is measured too. Clients find a page's last id by scanning the end
//! of its body (checked against serde_json on the first pages of each list), as
//! `emulator_bench` does. Prints figures and ratios to the goals (3,000 pages/s; p99 under 25 ms
//! at 500 requests/s); it never asserts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use sm_bench::{Page, parse_page, scan_page, thread_ticks};
use sm_engine::{Engine, EngineConfig, Vault};
use sm_server::{AppState, ServeConfig};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(about = "Reads of the mirror over HTTP: pages per second and latency")]
struct Args {
    /// Customers of the emulated account (about 23 objects each).
    #[arg(long, default_value_t = 43_000)]
    scale: u64,
    /// Clients walking pages side by side.
    #[arg(short, long, default_value_t = 8)]
    clients: usize,
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests per second of the latency measurement.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Connections on the dashboard's Accounts page: the mirrored one and copies of its record
    /// (their cards read runs, state and events as a real one's do).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Times each dashboard page is asked for, one after another.
    #[arg(long, default_value_t = 200)]
    page_loads: usize,
}

/// One page's body.
async fn fetch_body(
    http: &reqwest::Client,
    url: String,
    token: &str,
    label: &str,
) -> Result<bytes::Bytes, Error> {
    Ok(http
        .get(url)
        .bearer_auth(token)
        .header("Stripe-Account", label)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?)
}

/// One page, its last id found by the cheap scan.
async fn fetch_page(
    http: &reqwest::Client,
    url: String,
    token: &str,
    label: &str,
) -> Result<Page, Error> {
    let body = fetch_body(http, url, token, label).await?;
    scan_page(&body).ok_or_else(|| "a page the scanner cannot read".into())
}

/// CPU seconds spent so far by this process's threads named `prefix…`.
fn cpu_of(prefix: &str) -> f64 {
    thread_ticks("self", prefix) as f64 / 100.0
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("api-server")
        .enable_all()
        .build()?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let result = clients.block_on(run(args, server.handle().clone()));
    server.shutdown_background();
    result
}

async fn run(args: Args, server_runtime: tokio::runtime::Handle) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("sm-api-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let emulator = sm_emulator::Emulator::new(3);
    let account = sm_emulator::control::create_account(
        &emulator,
        &sm_emulator::control::NewAccount {
            scale: args.scale,
            seed: Some(3),
            ..Default::default()
        },
        3,
    )
    .map_err(|f| f.body.to_string())?;
    let emulated = sm_emulator::EmulatorServer::start(emulator, "127.0.0.1:0".parse()?).await?;
    println!(
        "emulator: {} objects in {:.0} s",
        account["seeded"]["test"]["total"],
        started.elapsed().as_secs_f64()
    );
    let database = dir.join("mirror.db");
    let engine = Arc::new(Engine::new(
        Arc::from(sm_warehouse::open(database.to_str().unwrap_or_default())?),
        Vault::open(Some(&"44".repeat(32)), &dir.join("key"))?,
        EngineConfig {
            api_base: emulated.base_url(),
            budget_share: f64::INFINITY,
            max_retries: 5,
        },
    ));
    let key =
        sm_stripe::ApiKey::parse(account["keys"]["secret_test"].as_str().unwrap_or_default())?;
    let outcome = sm_engine::ops::connections::connect(&engine, key, Default::default()).await?;
    let connection = sm_warehouse::Connection::new(outcome.account.account_id.clone(), false);
    let synced = Instant::now();
    let report = sm_engine::ops::syncs::sync(
        &engine,
        &connection,
        &Default::default(),
        Arc::new(sm_engine::ops::syncs::Quiet),
    )
    .await?;
    println!(
        "mirror: {} rows written in {:.0} s",
        report
            .run
            .counts
            .tables
            .values()
            .map(|c| c.inserted + c.updated)
            .sum::<u64>(),
        synced.elapsed().as_secs_f64()
    );
    emulated.stop().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(
        engine.clone(),
        ServeConfig {
            role: sm_server::Role::All,
            max_leases: 8,
            listen: listener.local_addr()?,
            public_url: None,
            interval: Duration::from_secs(86_400),
            tolerance_secs: 300,
            limits: Default::default(),
            answer_wait: std::time::Duration::ZERO,
            balance_refresh_after: Some(std::time::Duration::from_secs(10)),
            notify: Default::default(),
        },
    );
    let server = server_runtime.spawn(sm_server::serve_on(listener, state, std::future::pending()));
    let token = sm_engine::ops::tokens::create(&engine, "bench", true)
        .await?
        .secret
        .to_string();
    let label = connection.label();
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    for (name, path) in [
        ("/stripe/v1/customers", "/stripe/v1/customers".to_owned()),
        (
            "/api/v1/…/objects/charges",
            format!("/api/v1/connections/{label}/objects/charges"),
        ),
    ] {
        // The scanner agrees with serde_json on the list's first pages.
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let mut url = format!("{base}{path}?limit=100");
            if let Some(after) = &after {
                url.push_str(&format!("&starting_after={after}"));
            }
            let body = fetch_body(&http, url, &token, &label).await?;
            let (scanned, parsed) = (scan_page(&body), parse_page(&body));
            if scanned.is_none()
                || scanned.as_ref().map(|p| &p.last_id) != parsed.as_ref().map(|p| &p.last_id)
            {
                return Err(format!("{name}: the cheap scan disagrees with serde_json").into());
            }
            after = parsed.and_then(|p| p.last_id);
        }
        let pages = Arc::new(AtomicU64::new(0));
        let (server_cpu, client_cpu) = (cpu_of("api-server"), cpu_of("bench-client"));
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        let mut clients = Vec::new();
        for n in 0..args.clients {
            let (http, base, path, token, label, pages) = (
                http.clone(),
                base.clone(),
                path.clone(),
                token.clone(),
                label.clone(),
                pages.clone(),
            );
            clients.push(tokio::spawn(async move {
                // Each client starts at its own place in the list.
                let mut after: Option<String> = None;
                let mut skip = n;
                while Instant::now() < deadline {
                    let mut url = format!("{base}{path}?limit=100");
                    if let Some(after) = &after {
                        url.push_str(&format!("&starting_after={after}"));
                    }
                    let page = fetch_page(&http, url, &token, &label).await?;
                    pages.fetch_add(1, Ordering::Relaxed);
                    let last = page.last_id;
                    after = if page.has_more && skip == 0 {
                        last
                    } else if skip > 0 {
                        skip -= 1;
                        last
                    } else {
                        None
                    };
                }
                Ok::<_, Error>(())
            }));
        }
        let began = Instant::now();
        for client in clients {
            client.await??;
        }
        let count = pages.load(Ordering::Relaxed) as f64;
        let rate = count / began.elapsed().as_secs_f64();
        let server_per_page = (cpu_of("api-server") - server_cpu) / count;
        let client_per_page = (cpu_of("bench-client") - client_cpu) / count;
        println!(
            "{name}: {rate:.0} pages of 100 per second with {} clients (goal 3,000: ratio {:.2}); CPU per page: server {:.0} µs, clients {:.0} µs; the server alone would answer {:.0} pages per core-second",
            args.clients,
            rate / 3_000.0,
            server_per_page * 1e6,
            client_per_page * 1e6,
            1.0 / server_per_page.max(1e-9)
        );
    }

    // Latency: pages asked for at a fixed rate, whatever the answers take (open loop).
    let first = fetch_body(
        &http,
        format!("{base}/stripe/v1/customers?limit=100"),
        &token,
        &label,
    )
    .await?;
    let first: serde_json::Value = serde_json::from_slice(&first)?;
    let cursors: Vec<String> = first["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect();
    let total = args.rate * args.duration;
    let every = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(every);
    for n in 0..total {
        tick.tick().await;
        let (http, url, token, label) = (
            http.clone(),
            format!(
                "{base}/stripe/v1/customers?limit=100&starting_after={}",
                cursors[n as usize % cursors.len().max(1)]
            ),
            token.clone(),
            label.clone(),
        );
        sent.push(tokio::spawn(async move {
            let asked = Instant::now();
            let response = http
                .get(url)
                .bearer_auth(&token)
                .header("Stripe-Account", &label)
                .send()
                .await?;
            let _ = response.bytes().await?;
            Ok::<_, Error>(asked.elapsed())
        }));
    }
    let mut took = Vec::with_capacity(sent.len());
    for request in sent {
        took.push(request.await??);
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "latency at {} requests/s for {} s: p50 {:.1} ms, p99 {:.1} ms (goal 25 ms: ratio {:.2}), max {:.1} ms",
        args.rate,
        args.duration,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3 / 25.0,
        took.last().map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
    );
    dashboard(&args, &engine, &http, &base, &connection).await?;
    server.abort();
    agent_tools(&args, &database, &connection)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The agent tools through the real `stripe-mirror mcp` (the binary beside this one, built in
/// release) over stdio, JSON-RPC as an MCP client sends it: each read tool called
/// `--page-loads` times one after another; p50 and p99 against the 20 ms goal.
fn agent_tools(
    args: &Args,
    database: &std::path::Path,
    connection: &sm_warehouse::Connection,
) -> Result<(), Error> {
    use std::io::{BufRead, BufReader, Write};
    let binary = std::env::current_exe()?.with_file_name("stripe-mirror");
    if !binary.exists() {
        println!(
            "agent tools: skipped ({} is not built: cargo build --release)",
            binary.display()
        );
        return Ok(());
    }
    let mut child = std::process::Command::new(&binary)
        .args(["mcp", "--database"])
        .arg(database)
        .env("STRIPE_MIRROR_MASTER_KEY", "44".repeat(32))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut input = child.stdin.take().ok_or("no stdin")?;
    let mut output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut next_id = 0u64;
    let mut send = |message: serde_json::Value| -> Result<(), Error> {
        writeln!(input, "{message}")?;
        Ok(input.flush()?)
    };
    let mut call = |send: &mut dyn FnMut(serde_json::Value) -> Result<(), Error>,
                    method: &str,
                    params: serde_json::Value|
     -> Result<serde_json::Value, Error> {
        next_id += 1;
        send(
            serde_json::json!({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params}),
        )?;
        let mut line = String::new();
        loop {
            line.clear();
            if output.read_line(&mut line)? == 0 {
                return Err("the MCP server closed its output".into());
            }
            let answer: serde_json::Value = serde_json::from_str(&line)?;
            if answer["id"] == serde_json::json!(next_id) {
                return Ok(answer);
            }
        }
    };
    call(
        &mut send,
        "initialize",
        serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "api_bench", "version": "1"}}),
    )?;
    send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
    let label = connection.label();
    let page = call(
        &mut send,
        "tools/call",
        serde_json::json!({"name": "list_objects", "arguments": {"account": label, "table": "customers", "limit": 10}}),
    )?;
    let text = page["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let first: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let customer = first["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let email = first["data"][0]["email"].as_str().unwrap_or_default();
    // A part of an email that few customers share: its local part's last six characters.
    let part: String = email
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    // A first name: shared by a share of all customers, few of them among the newest.
    let first_name = first["data"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let tools = [
        ("list_accounts", serde_json::json!({})),
        (
            "list_objects customers, 10",
            serde_json::json!({"account": label, "table": "customers", "limit": 10, "starting_after": cursor}),
        ),
        (
            "list_objects charges, 100",
            serde_json::json!({"account": label, "table": "charges", "limit": 100}),
        ),
        (
            "get_object",
            serde_json::json!({"account": label, "id": customer}),
        ),
        (
            "recent_events invoice.*",
            serde_json::json!({"account": label, "types": ["invoice.*"], "limit": 20}),
        ),
        (
            "get_customer with subscriptions, invoices, payments",
            serde_json::json!({"account": label, "customer": customer, "limit": 10}),
        ),
        (
            "search_customers part of an email",
            serde_json::json!({"account": label, "text": part}),
        ),
        (
            "search_customers a first name",
            serde_json::json!({"account": label, "text": first_name}),
        ),
        (
            "search_customers two letters",
            serde_json::json!({"account": label, "text": "zq"}),
        ),
        (
            "query_sql one customer's subscriptions (an index)",
            serde_json::json!({"sql": format!("SELECT id, status FROM subscriptions WHERE account_id = '{}' AND customer = '{customer}'", connection.account_id)}),
        ),
        (
            "query_sql count by status",
            serde_json::json!({"sql": "SELECT status, count(*) FROM subscriptions GROUP BY status"}),
        ),
    ];
    for (name, arguments) in tools {
        let tool = name.split(' ').next().unwrap_or(name);
        let mut took = Vec::with_capacity(args.page_loads);
        for _ in 0..args.page_loads {
            let asked = Instant::now();
            let answer = call(
                &mut send,
                "tools/call",
                serde_json::json!({"name": tool, "arguments": arguments}),
            )?;
            took.push(asked.elapsed());
            if answer["result"]["isError"] == serde_json::json!(true)
                || answer.get("error").is_some()
            {
                return Err(format!("{name} failed: {answer}").into());
            }
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        println!(
            "agent tool {name}: p50 {:.1} ms, p99 {:.1} ms (goal 20 ms: ratio {:.2})",
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3 / 20.0
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// The dashboard's pages, each asked for `--page-loads` times by a signed-in client, with
/// `--connections` connections on the Accounts page: p50 and p99 against the 50 ms goal.
async fn dashboard(
    args: &Args,
    engine: &Engine,
    http: &reqwest::Client,
    base: &str,
    connection: &sm_warehouse::Connection,
) -> Result<(), Error> {
    let original = engine.account(connection).await?;
    for n in 1..args.connections {
        let mut copy = original.clone();
        copy.connection = sm_warehouse::Connection::new(format!("acct_1Bench{n:06}"), n % 2 == 0);
        copy.name = format!("Bench company {n}");
        engine.store.insert_account(&copy)?;
    }
    let token = sm_engine::ops::tokens::create(engine, "dashboard-bench", true)
        .await?
        .secret
        .to_string();
    // The cookie is on the redirect itself: not followed.
    let signed_in = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("{base}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2Faccounts"))
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("signing in gave no cookie")?
        .to_owned();
    let label = connection.label().replace(':', "%3A");
    let customer: serde_json::Value = serde_json::from_slice(
        &fetch_body(
            http,
            format!("{base}/api/v1/connections/{label}/objects/customers?limit=1"),
            &token,
            &connection.label(),
        )
        .await?,
    )?;
    let customer_id = customer["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pages = [
        ("Accounts (first 30 cards)", "/accounts".to_owned()),
        ("Accounts, page 4", "/accounts?page=4".to_owned()),
        ("Accounts, filtered", "/accounts?q=acct".to_owned()),
        ("Syncs", format!("/accounts/{label}/syncs")),
        ("Events", format!("/accounts/{label}/events")),
        (
            "Data (counts of every table)",
            format!("/accounts/{label}/data"),
        ),
        (
            "customers, a page of 50",
            format!("/accounts/{label}/data/customers"),
        ),
        (
            "one customer",
            format!("/accounts/{label}/data/customers/{customer_id}"),
        ),
        ("New connection", "/accounts/new".to_owned()),
    ];
    for (name, path) in pages {
        let mut took = Vec::with_capacity(args.page_loads);
        let mut bytes = 0;
        for _ in 0..args.page_loads {
            let asked = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?
                .error_for_status()?;
            bytes = response.bytes().await?.len();
            took.push(asked.elapsed());
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        println!(
            "dashboard {name} ({} connections): {bytes} bytes; p50 {:.1} ms, p99 {:.1} ms (goal 50 ms: ratio {:.2})",
            args.connections,
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3 / 50.0
        );
    }
    Ok(())
}
