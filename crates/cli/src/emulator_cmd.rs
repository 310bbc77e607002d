//! `stripe-mirror emulator` and `stripe-mirror demo`: run the built-in Stripe emulator.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer};

use crate::CliError;

#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to serve on; port 0 picks a free port.
    #[arg(
        long,
        default_value = "127.0.0.1:12111",
        env = "STRIPE_MIRROR_EMULATOR_LISTEN"
    )]
    listen: SocketAddr,
    /// Seed of every generated id and object: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Customers to generate in each account's test mode (about 15 objects each).
    #[arg(long, default_value_t = 100)]
    scale: u64,
    /// Customers to generate in each account's live mode.
    #[arg(long, default_value_t = 0)]
    live_scale: u64,
    /// How many accounts to create.
    #[arg(long, default_value_t = 1)]
    accounts: u64,
    /// Print one JSON line with the base URL and each account's keys, then serve.
    #[arg(long)]
    json: bool,
}

/// Starts the emulator with seeded accounts; returns it and a description of its accounts.
async fn start(
    listen: SocketAddr,
    seed: u64,
    scale: u64,
    live_scale: u64,
    accounts: u64,
) -> Result<(EmulatorServer, Vec<Value>), CliError> {
    let emulator: Arc<Emulator> = Emulator::new(seed);
    let mut made = Vec::new();
    for n in 0..accounts {
        let request = NewAccount {
            seed: Some(seed),
            scale,
            live_scale,
            name: Some(if accounts == 1 {
                "Emulated Co".into()
            } else {
                format!("Emulated Co {}", n + 1)
            }),
            ..Default::default()
        };
        let account = create_account(&emulator, &request, seed).map_err(|f| {
            CliError::usage(
                f.body["error"]["message"]
                    .as_str()
                    .unwrap_or("could not create an account")
                    .to_owned(),
            )
        })?;
        made.push(account);
    }
    let server = EmulatorServer::start(emulator, listen)
        .await
        .map_err(|e| CliError::io(format!("could not listen on {listen}: {e} — choose another address with --listen 127.0.0.1:PORT (0 picks a free port)")))?;
    Ok((server, made))
}

pub async fn run(args: EmulatorArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let (server, accounts) = start(
        args.listen,
        args.seed,
        args.scale,
        args.live_scale,
        args.accounts,
    )
    .await?;
    let base_url = server.base_url();
    if args.json {
        let accounts: Vec<Value> = accounts
            .iter()
            .map(|a| json!({"id": a["id"], "name": a["name"], "keys": a["keys"]}))
            .collect();
        println!("{}", json!({"base_url": base_url, "accounts": accounts}));
    } else {
        println!(
            "Stripe emulator serving on {base_url} ({} account(s), ready in {:.1} s)",
            accounts.len(),
            started.elapsed().as_secs_f64()
        );
        for account in accounts.iter().take(5) {
            let total = account["seeded"]["test"]["total"].as_u64().unwrap_or(0);
            println!(
                "  {}  {}  {total} test objects",
                account["id"].as_str().unwrap_or_default(),
                account["name"].as_str().unwrap_or_default()
            );
            println!(
                "    secret test key:     {}",
                account["keys"]["secret_test"].as_str().unwrap_or_default()
            );
            println!(
                "    restricted test key: {} (may read everything)",
                account["keys"]["restricted_test"]
                    .as_str()
                    .unwrap_or_default()
            );
        }
        println!(
            "Try: curl {base_url}/v1/customers -u KEY:   Control API: {base_url}/_emulator   Stop: Ctrl-C"
        );
    }
    wait_for_stop().await;
    server.stop().await;
    Ok(())
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Customers to generate.
    #[arg(long, default_value_t = 300)]
    scale: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Seeds an account, reads every resource back over HTTP with the restricted key, makes a burst of
/// changes and shows the events they recorded.
pub async fn demo(args: DemoArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let (server, accounts) = start(
        "127.0.0.1:0".parse().expect("a valid address"),
        args.seed,
        args.scale,
        0,
        1,
    )
    .await?;
    let base = server.base_url();
    let account = &accounts[0];
    let key = account["keys"]["restricted_test"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "Emulator on {base}: account {} seeded in {:.1} s",
        account["id"].as_str().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    let client = HttpProbe::new(&base, &key)?;
    println!("\nObjects per resource, read over HTTP with a restricted read-only key:");
    let mut requests = 0;
    let read_started = std::time::Instant::now();
    for (label, path, extra) in [
        ("customers", "/v1/customers", ""),
        ("products", "/v1/products", ""),
        ("prices (active)", "/v1/prices", "&active=true"),
        ("prices (archived)", "/v1/prices", "&active=false"),
        ("subscriptions", "/v1/subscriptions", "&status=all"),
        ("invoices", "/v1/invoices", ""),
        ("payment intents", "/v1/payment_intents", ""),
        ("charges", "/v1/charges", ""),
        ("refunds", "/v1/refunds", ""),
        ("disputes", "/v1/disputes", ""),
        ("balance transactions", "/v1/balance_transactions", ""),
        ("payouts", "/v1/payouts", ""),
        ("coupons", "/v1/coupons", ""),
        ("events (last 30 days)", "/v1/events", ""),
    ] {
        let (count, pages) = client.count(path, extra).await?;
        requests += pages;
        println!("  {label:<24} {count:>7}");
    }
    println!(
        "  ({requests} list requests in {:.2} s)",
        read_started.elapsed().as_secs_f64()
    );
    let report = sm_emulator::seed::simulate_activity(
        &server.emulator,
        &server
            .emulator
            .world
            .account(account["id"].as_str().unwrap_or_default())
            .expect("the account exists"),
        sm_emulator::Mode::Test,
        50,
        args.seed,
    );
    println!(
        "\nApplied {} live changes: {}",
        report.changes,
        report
            .by_operation
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let latest = client.get("/v1/events?limit=5").await?;
    println!("Newest events:");
    for event in latest["data"].as_array().into_iter().flatten() {
        println!(
            "  {}  {:<36} {}",
            event["id"].as_str().unwrap_or_default(),
            event["type"].as_str().unwrap_or_default(),
            event["data"]["object"]["id"].as_str().unwrap_or_default()
        );
    }
    println!(
        "\nRun it yourself: stripe-mirror emulator --json   (README: the control API, keys, faults)"
    );
    server.stop().await;
    Ok(())
}

/// A tiny HTTP reader for the demo (the real client lives in the `stripe` crate).
struct HttpProbe {
    client: sm_stripe::Client,
}

impl HttpProbe {
    fn new(base: &str, key: &str) -> Result<Self, CliError> {
        let config = sm_stripe::ClientConfig {
            api_base: base.to_owned(),
            budget_share: f64::INFINITY,
            ..Default::default()
        };
        let key = sm_stripe::ApiKey::parse(key).map_err(|e| CliError::usage(e.to_string()))?;
        Ok(HttpProbe {
            client: sm_stripe::Client::new(config, key).map_err(|e| CliError::io(e.to_string()))?,
        })
    }

    async fn get(&self, path_and_query: &str) -> Result<Value, CliError> {
        let client = &self.client;
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let params: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        client
            .get(path, &params)
            .await
            .map_err(|e| CliError::io(e.to_string()))
    }

    /// Walks a whole list; returns objects and pages.
    async fn count(&self, path: &str, extra: &str) -> Result<(usize, usize), CliError> {
        let mut count = 0;
        let mut pages = 0;
        let mut after: Option<String> = None;
        loop {
            let cursor = after
                .as_ref()
                .map(|id| format!("&starting_after={id}"))
                .unwrap_or_default();
            let page = self
                .get(&format!("{path}?limit=100{extra}{cursor}"))
                .await?;
            pages += 1;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            count += data.len();
            if page["has_more"] != json!(true) || data.is_empty() {
                return Ok((count, pages));
            }
            after = data
                .last()
                .and_then(|o| o["id"].as_str())
                .map(str::to_owned);
        }
    }
}
