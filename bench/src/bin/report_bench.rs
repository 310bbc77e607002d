//! How long a revenue report takes (issue "Revenue reports", point 5): a SQLite mirror (and a
//! Postgres one with `--postgres URL`) filled by a real backfill of an emulated account
//! (`--scale 43000` customers is about 1,000,000 objects), then each report over the last
//! `--years 3` by month, timed `--runs` times through `sm_engine::ops::reports` (what the CLI,
//! the API, the dashboard and the agent tool call). Prints the times, the subscriptions and
//! events read, and the ratio to the goals (summary: 2 s on SQLite, 3 s on Postgres). It never
//! asserts.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use sm_engine::ops::reports::{ReportKind, ReportQuery, report};
use sm_engine::{Engine, EngineConfig, Vault};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(about = "Revenue reports over a large mirror: seconds per report")]
struct Args {
    /// Customers of the emulated account (about 23 objects each).
    #[arg(long, default_value_t = 43_000)]
    scale: u64,
    /// Years the reports cover, by month, ending today.
    #[arg(long, default_value_t = 3)]
    years: u32,
    /// Times each report is run (the figures are the median and the slowest).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also a Postgres mirror at this URL (its own schema).
    #[arg(long)]
    postgres: Option<String>,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("sm-report-bench-{}", std::process::id()));
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
    let mut targets = vec![(
        "SQLite",
        dir.join("mirror.db").to_string_lossy().into_owned(),
        2.0,
    )];
    if let Some(url) = &args.postgres {
        let separator = if url.contains('?') { '&' } else { '?' };
        targets.push((
            "Postgres",
            format!(
                "{url}{separator}schema=sm_report_bench_{}",
                std::process::id()
            ),
            3.0,
        ));
    }
    let today = sm_engine::now();
    let from = {
        let (year, month, _) = sm_reports::calendar::civil_from_days(today.div_euclid(86_400));
        sm_reports::calendar::days_from_civil(year - i64::from(args.years), month, 1) * 86_400
    };
    let query = ReportQuery {
        from: Some(sm_reports::calendar::date_label(
            from,
            &sm_reports::calendar::Zone::utc(),
        )),
        interval: Some("month".into()),
        ..Default::default()
    };
    for (backend, target, goal) in targets {
        let engine = Arc::new(Engine::new(
            Arc::from(sm_warehouse::open(&target)?),
            Vault::open(Some(&"45".repeat(32)), &dir.join("key"))?,
            EngineConfig {
                api_base: emulated.base_url(),
                budget_share: f64::INFINITY,
                max_retries: 5,
            },
        ));
        let key =
            sm_stripe::ApiKey::parse(account["keys"]["secret_test"].as_str().unwrap_or_default())?;
        let outcome =
            sm_engine::ops::connections::connect(&engine, key, Default::default()).await?;
        let label = outcome.account.label.clone();
        let connection = sm_warehouse::Connection::new(outcome.account.account_id.clone(), false);
        let synced = Instant::now();
        sm_engine::ops::syncs::sync(
            &engine,
            &connection,
            &Default::default(),
            Arc::new(sm_engine::ops::syncs::Quiet),
        )
        .await?;
        let (subscriptions, _) = engine.store.count(&connection, "subscriptions")?;
        println!(
            "{backend}: mirrored in {:.0} s; {subscriptions} subscriptions, {} events",
            synced.elapsed().as_secs_f64(),
            engine.store.event_count(&connection)?
        );
        // Once over every report first, not counted: the backfill's log is still being copied
        // into the database file, and the first reads fill the page cache.
        for kind in ReportKind::ALL {
            let mut options = query.options(sm_engine::now())?;
            options.only = Some(kind);
            report(&engine, &label, options).await?;
        }
        for kind in ReportKind::ALL {
            let mut seconds = Vec::new();
            let mut periods = 0;
            for _ in 0..args.runs.max(1) {
                let mut options = query.options(sm_engine::now())?;
                options.only = Some(kind);
                let began = Instant::now();
                let answer = report(&engine, &label, options).await?;
                let _ = answer.to_json(kind);
                seconds.push(began.elapsed().as_secs_f64());
                periods = answer.table(kind).rows.len();
            }
            seconds.sort_by(f64::total_cmp);
            let median = seconds[seconds.len() / 2];
            let slowest = seconds[seconds.len() - 1];
            let ratio = if kind == ReportKind::Summary {
                format!(" (goal {goal:.0} s: ratio {:.2})", median / goal)
            } else {
                String::new()
            };
            println!(
                "  {backend} {:<16} {periods:>3} rows: median {median:.2} s, slowest {slowest:.2} s{ratio}",
                kind.name()
            );
        }
    }
    emulated.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
