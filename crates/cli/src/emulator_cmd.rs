//! `stripe-mirror emulator` runs the built-in Stripe emulator; `stripe-mirror demo` runs the whole
//! product against it: connect, backfill into SQLite, live changes, an incremental sync.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use sm_emulator::control::{NewAccount, create_account};
use sm_emulator::{Emulator, EmulatorServer};

use crate::CliError;
use crate::context::print_json;

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
        say!("{}", json!({"base_url": base_url, "accounts": accounts}));
    } else {
        say!(
            "Stripe emulator serving on {base_url} ({} account(s), ready in {:.1} s)",
            accounts.len(),
            started.elapsed().as_secs_f64()
        );
        for account in accounts.iter().take(5) {
            let total = account["seeded"]["test"]["total"].as_u64().unwrap_or(0);
            say!(
                "  {}  {}  {total} test objects",
                account["id"].as_str().unwrap_or_default(),
                account["name"].as_str().unwrap_or_default()
            );
            say!(
                "    secret test key:     {}",
                account["keys"]["secret_test"].as_str().unwrap_or_default()
            );
            say!(
                "    restricted test key: {} (may read everything)",
                account["keys"]["restricted_test"]
                    .as_str()
                    .unwrap_or_default()
            );
        }
        say!(
            "Try: curl {base_url}/v1/customers -u KEY:   Control API: {base_url}/_emulator   Stop: Ctrl-C"
        );
    }
    crate::signals::stop_requested().await;
    server.stop().await;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Customers in the emulated account (about 15–20 objects each).
    #[arg(long, default_value_t = 300)]
    scale: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The SQLite file to create (replaced if it exists).
    #[arg(long, default_value = "stripe-mirror-demo.db")]
    file: String,
    /// Live changes to make after the backfill.
    #[arg(long, default_value_t = 100)]
    changes: u64,
    /// Then serve the dashboard on the demo's mirror (at ADDRESS, default 127.0.0.1:8080) until
    /// Ctrl-C, with a token made for it; the emulator keeps running behind it.
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    serve: Option<std::net::SocketAddr>,
}

/// The README's first command: no key, no network. Starts the emulator with a seeded account,
/// connects it with a restricted test key, backfills into a SQLite file with progress bars,
/// applies a burst of live changes, syncs them, and ends with a summary.
pub async fn demo(args: DemoArgs, json: bool) -> Result<(), CliError> {
    // With --json, one JSON summary at the end instead of the tour's words.
    macro_rules! tour {
        ($($arg:tt)*) => {
            if !json {
                say!($($arg)*);
            }
        };
    }
    let started = std::time::Instant::now();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", args.file));
    }
    tour!(
        "1. Starting the built-in Stripe emulator with a seeded billing account ({} customers)…",
        args.scale
    );
    let (server, accounts) = start(
        "127.0.0.1:0".parse().expect("a valid address"),
        args.seed,
        args.scale,
        0,
        1,
    )
    .await?;
    let account = &accounts[0];
    let seeded = account["seeded"]["test"]["total"].as_u64().unwrap_or(0);
    tour!(
        "   {} on {} — {seeded} objects, ready in {:.1} s",
        account["id"].as_str().unwrap_or_default(),
        server.base_url(),
        started.elapsed().as_secs_f64()
    );

    let store = sm_warehouse::open(&args.file)
        .map_err(|e| CliError::from(sm_engine::EngineError::from(e)))?;
    // The user's own master key (made on first use), so that every line the demo suggests
    // opens this mirror as printed.
    let key_file = sm_engine::vault::default_key_location(&args.file).path;
    let env_key = std::env::var("STRIPE_MIRROR_MASTER_KEY").ok();
    let vault = sm_engine::Vault::open(env_key.as_deref(), &key_file)
        .map_err(|e| CliError::from(sm_engine::EngineError::from(e)))?;
    // The emulator is local and enforces no limits: pacing off, so the demo takes seconds.
    let config = sm_engine::EngineConfig {
        api_base: server.base_url(),
        budget_share: f64::INFINITY,
        max_retries: 3,
    };
    let engine = sm_engine::Engine::new(Arc::from(store), vault, config);
    engine.bind_sealed_values().map_err(CliError::from)?;
    let key = sm_stripe::ApiKey::parse(
        account["keys"]["restricted_test"]
            .as_str()
            .unwrap_or_default(),
    )
    .map_err(|e| CliError::usage(e.to_string()))?;
    tour!(
        "\n2. Connecting with a restricted read-only test key ({})…",
        key.masked()
    );
    let outcome = sm_engine::ops::connections::connect(&engine, key, Default::default()).await?;
    tour!(
        "   connected \"{}\" ({}): {}",
        outcome.account.name,
        outcome.account.label,
        outcome.permissions.summary()
    );
    let label = outcome.account.label.clone();

    tour!("\n3. Backfilling every resource into {}…", args.file);
    let options = sm_engine::sync::SyncOptions {
        trigger: sm_engine::sync::Trigger::Demo,
        ..Default::default()
    };
    let report = crate::sync_cmd::sync_one(&engine, &label, &options, json).await?;
    let backfill_report = report.clone();
    tour!(
        "   {} objects in {:.1} s with {} requests",
        report["objects_written"],
        report["seconds"].as_f64().unwrap_or(0.0),
        report["run"]["requests"]
    );

    tour!(
        "\n4. Making {} live changes in Stripe (new customers, upgrades, cancellations, refunds, deletions)…",
        args.changes
    );
    let emulated = server
        .emulator
        .world
        .account(account["id"].as_str().unwrap_or_default())
        .expect("the account exists");
    let activity = sm_emulator::seed::simulate_activity(
        &server.emulator,
        &emulated,
        sm_emulator::Mode::Test,
        args.changes,
        args.seed,
    );
    tour!(
        "   {}",
        activity
            .by_operation
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = crate::sync_cmd::sync_one(&engine, &label, &options, true).await?;
    let counts = &report["run"]["counts"];
    let (mut inserted, mut updated, mut deleted) = (0, 0, 0);
    for c in counts["tables"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, c)| c)
    {
        inserted += c["inserted"].as_u64().unwrap_or(0);
        updated += c["updated"].as_u64().unwrap_or(0);
        deleted += c["deleted"].as_u64().unwrap_or(0);
    }
    tour!(
        "   incremental sync from the events: {inserted} inserted, {updated} updated, {deleted} deleted, {} events kept, {} requests, {:.1} s",
        counts["new_events"],
        report["run"]["requests"],
        report["seconds"].as_f64().unwrap_or(0.0)
    );

    tour!("\n5. What is in the mirror, checked against the emulator's own objects:");
    let connection = sm_warehouse::Connection::new(outcome.account.account_id.clone(), false);
    let check = compare_with_emulator(&engine, &connection, &emulated)?;
    let mut rows: Vec<[String; 4]> = check
        .tables
        .iter()
        .map(|t| {
            [
                t.table.to_owned(),
                t.stripe.to_string(),
                t.mirror.to_string(),
                t.deleted.to_string(),
            ]
        })
        .collect();
    rows.push([
        "events".into(),
        "-".into(),
        engine
            .store
            .event_count(&connection)
            .unwrap_or(0)
            .to_string(),
        "0".into(),
    ]);
    if !json {
        crate::accounts_cmd::print_table(&["TABLE", "IN STRIPE", "MIRRORED", "DELETED"], &rows);
    }
    if !check.differences.is_empty() {
        return Err(CliError::from(
            sm_engine::EngineError::new(
                sm_engine::ErrorCode::Internal,
                format!(
                    "the mirror differs from the emulator in {} place(s): {}",
                    check.differences.len(),
                    check
                        .differences
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
            .hint("this is a bug in stripe-mirror: please report it with this output"),
        ));
    }
    let total: u64 = check.tables.iter().map(|t| t.mirror).sum();
    tour!(
        "   The mirror equals the emulator: {total} rows in {} tables, the same ids in each.",
        check.tables.len()
    );

    let queries = [
        (
            "Active subscriptions per price",
            "SELECT i.price, count(*) AS subscriptions FROM subscription_items i JOIN subscriptions s ON s.id = i.subscription AND s.account_id = i.account_id WHERE s.status = 'active' AND NOT i.deleted GROUP BY i.price ORDER BY subscriptions DESC LIMIT 5",
        ),
        (
            "Subscriptions by status",
            "SELECT status, count(*) AS n FROM subscriptions GROUP BY status ORDER BY n DESC",
        ),
        (
            "Revenue by month (paid invoices, cents)",
            "SELECT substr(datetime(created, 'unixepoch'), 1, 7) AS month, sum(amount_paid) AS paid FROM invoices WHERE status = 'paid' GROUP BY month ORDER BY month DESC LIMIT 6",
        ),
    ];
    for (title, sql) in queries {
        tour!(
            "\n   {title}:\n   $ stripe-mirror --database {} sql \"{sql}\"",
            args.file
        );
        if let Ok((names, result)) = engine.store.query(sql) {
            tour!("     {}", names.join(" | "));
            for row in result.iter().take(6) {
                tour!(
                    "     {}",
                    row.iter()
                        .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
        }
    }
    // The revenue report over the mirror just made: the last six months.
    let utc = sm_reports::calendar::Zone::utc();
    let today =
        sm_reports::calendar::period_start(sm_engine::now(), sm_reports::Interval::Day, &utc);
    let mut from = sm_reports::calendar::period_start(today, sm_reports::Interval::Month, &utc);
    for _ in 0..5 {
        from = sm_reports::calendar::period_start(from - 1, sm_reports::Interval::Month, &utc);
    }
    let revenue = sm_engine::ops::reports::report(
        &engine,
        &label,
        sm_engine::ops::reports::ReportOptions {
            from,
            to: today + 86_400,
            interval: sm_reports::Interval::Month,
            currency: None,
            time_zone: utc.clone(),
            settings: Default::default(),
            only: Some(sm_engine::ops::reports::ReportKind::Summary),
        },
    )
    .await?;
    tour!(
        "\n6. Revenue from the mirror (MRR by Stripe's rules; `stripe-mirror --database {} report summary {label}`):",
        args.file
    );
    tour!("     month       currency        MRR  subscribers      new     churn  net revenue");
    for period in &revenue.mrr {
        let net: i64 = revenue
            .revenue
            .iter()
            .filter(|r| r.start == period.start && r.currency == period.currency)
            .map(|r| r.net_revenue)
            .sum();
        let money = |micros: i128| {
            sm_engine::money::format(sm_reports::micros_to_minor(micros), &period.currency)
        };
        tour!(
            "     {}  {:<8} {:>10}  {:>11}  {:>7}  {:>8}  {:>11}",
            sm_reports::calendar::date_label(period.start, &utc),
            period.currency,
            money(period.mrr_end),
            period.subscribers_end,
            money(period.new + period.reactivation),
            money(period.churn),
            sm_engine::money::format(net, &period.currency)
        );
    }
    let path = std::fs::canonicalize(&args.file)
        .map(|p| p.display().to_string())
        .unwrap_or(args.file.clone());
    tour!(
        "\nThe mirror is the SQLite file {path}: open it with any SQLite client (`sqlite3 {}`), or run `stripe-mirror --database {} accounts`.",
        args.file,
        args.file
    );
    tour!(
        "Done in {:.1} s. With a real key: STRIPE_API_KEY=rk_live_… stripe-mirror connect && stripe-mirror sync",
        started.elapsed().as_secs_f64()
    );
    if args.serve.is_none() {
        tour!("See it in the dashboard: cargo run --release -- demo --serve");
    }
    if json {
        print_json(&json!({
            "file": path,
            "account": label,
            "seeded_objects": seeded,
            "backfill": backfill_report,
            "incremental": report,
            "tables": check.tables.iter().map(|t| json!({"table": t.table, "in_stripe": t.stripe, "mirrored": t.mirror, "deleted": t.deleted})).collect::<Vec<_>>(),
            "equal_to_the_emulator": check.differences.is_empty(),
            "mrr": revenue.mrr.iter().map(|p| json!({"month": sm_reports::calendar::date_label(p.start, &utc), "currency": p.currency, "mrr": sm_reports::micros_to_minor(p.mrr_end), "subscribers": p.subscribers_end})).collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    if let Some(address) = args.serve {
        serve_dashboard(Arc::new(engine), address).await?;
    }
    server.stop().await;
    Ok(())
}

/// `demo --serve`: the dashboard on the demo's mirror, signed in with a token made for it,
/// until Ctrl-C.
async fn serve_dashboard(
    engine: Arc<sm_engine::Engine>,
    address: std::net::SocketAddr,
) -> Result<(), CliError> {
    let token = sm_engine::ops::tokens::create(&engine, "demo", false).await?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        CliError::io(format!(
            "could not listen on {address}: {e} — choose another address: demo --serve 127.0.0.1:8081"
        ))
    })?;
    let state = sm_server::AppState::new(
        engine,
        sm_server::ServeConfig {
            role: sm_server::Role::All,
            max_leases: 8,
            listen: address,
            public_url: None,
            interval: std::time::Duration::from_secs(300),
            tolerance_secs: sm_stripe::webhook::DEFAULT_TOLERANCE_SECS,
            limits: Default::default(),
            answer_wait: std::time::Duration::ZERO,
            balance_refresh_after: Some(std::time::Duration::from_secs(10)),
            notify: Default::default(),
        },
    );
    tell!(
        "\nDashboard: http://{address}/ — sign in with the token {} (made for this demo). Ctrl-C stops it.",
        &*token.secret
    );
    sm_server::serve_on(listener, state, async {
        crate::signals::stop_requested().await;
    })
    .await
    .map_err(|e| CliError::io(e.to_string()))
}

/// One table's live objects: in the emulator, in the mirror; and rows marked deleted.
struct TableCheck {
    table: &'static str,
    stripe: u64,
    mirror: u64,
    deleted: u64,
}

struct Check {
    tables: Vec<TableCheck>,
    differences: Vec<String>,
}

/// Compares each mirrored table's live ids with the emulator's live objects of that kind.
/// Children listed under a deleted customer are left out on both sides: Stripe no longer lists
/// them, so the mirror may or may not have seen them.
fn compare_with_emulator(
    engine: &sm_engine::Engine,
    connection: &sm_warehouse::Connection,
    account: &sm_emulator::world::Account,
) -> Result<Check, CliError> {
    use sm_engine::catalog::{RESOURCES, Source, by_object};
    use std::collections::{BTreeSet, HashMap};
    let store = account.mode(sm_emulator::Mode::Test).read();
    let mut deleted_customers = BTreeSet::new();
    let mut expected: HashMap<&'static str, BTreeSet<String>> = HashMap::new();
    let mut children: Vec<(&'static str, String, Option<String>)> = Vec::new();
    for slot in store.slots() {
        let stored = store.get(slot);
        let value = store.value(slot);
        let id = value["id"].as_str().unwrap_or_default().to_owned();
        if stored.kind.info().object == "customer" && stored.deleted {
            deleted_customers.insert(id.clone());
        }
        let Some(resource) = by_object(stored.kind.info().object) else {
            continue;
        };
        // A payment method attached to no customer is in no list Stripe offers.
        if stored.deleted || (resource.table == "payment_methods" && value["customer"].is_null()) {
            continue;
        }
        let customer = value["customer"].as_str().map(str::to_owned);
        children.push((resource.table, id, customer));
    }
    drop(store);
    let per_parent = |table: &str| {
        sm_engine::catalog::resource(table)
            .is_some_and(|r| matches!(r.source, Source::PerParent { .. }))
    };
    for (table, id, customer) in children {
        if per_parent(table) && customer.is_some_and(|c| deleted_customers.contains(&c)) {
            continue;
        }
        expected.entry(table).or_default().insert(id);
    }
    let mut check = Check {
        tables: Vec::new(),
        differences: Vec::new(),
    };
    for resource in RESOURCES {
        let rows = engine
            .store
            .rows(connection, resource.table)
            .map_err(|e| CliError::from(sm_engine::EngineError::from(e)))?;
        let mut mirrored = BTreeSet::new();
        let mut deleted = 0;
        for row in rows {
            if row.deleted {
                deleted += 1;
            } else if !(per_parent(resource.table)
                && row.data["customer"]
                    .as_str()
                    .is_some_and(|c| deleted_customers.contains(c)))
            {
                mirrored.insert(row.id);
            }
        }
        let wanted = expected.remove(resource.table).unwrap_or_default();
        for id in wanted.symmetric_difference(&mirrored).take(3) {
            let side = if wanted.contains(id) {
                "missing from the mirror"
            } else {
                "in the mirror only"
            };
            check
                .differences
                .push(format!("{}/{id} {side}", resource.table));
        }
        if wanted.len() + mirrored.len() + deleted > 0 {
            check.tables.push(TableCheck {
                table: resource.table,
                stripe: wanted.len() as u64,
                mirror: mirrored.len() as u64,
                deleted: deleted as u64,
            });
        }
    }
    Ok(check)
}
