//! `sync`, `syncs`, `set-start-date` and `sql`: running syncs with live progress, their history,
//! how far back a mirror goes, and a read-only SQL prompt onto the mirror.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use serde_json::json;
use sm_engine::Engine;
use sm_engine::sync::{self, Progress, SyncOptions};

use crate::CliError;
use crate::accounts_cmd::{parse_date, print_table};
use crate::context::{GlobalArgs, print_json};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    #[command(flatten)]
    pub stripe: crate::context::StripeOptions,
    /// The connection to sync (name, acct_…, or acct_…:test|live).
    account: Option<String>,
    /// Sync every connected account.
    #[arg(long, conflicts_with = "account")]
    all: bool,
    /// Re-backfill everything from the start date.
    #[arg(long)]
    full: bool,
    /// Requests in flight at once per account (they stay within the rate budget).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Mirror only these tables, e.g. `customers,charges` (tables they hang from come along).
    #[arg(
        long,
        value_delimiter = ',',
        env = "STRIPE_MIRROR_SYNC_ONLY",
        value_name = "TABLES"
    )]
    only: Vec<String>,
    /// When another process is syncing this mirror, wait for it instead of stopping.
    #[arg(long)]
    wait: bool,
    /// Leave these tables out, e.g. `balance_transactions,files`.
    #[arg(
        long,
        value_delimiter = ',',
        env = "STRIPE_MIRROR_SYNC_SKIP",
        value_name = "TABLES"
    )]
    skip: Vec<String>,
}

/// Bars on a terminal; a line per resource every few seconds elsewhere.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, (ProgressBar, Instant, u64)>>,
    /// Without a terminal: when the last progress line was written, and each table's count then.
    last_line: Mutex<(Instant, HashMap<String, u64>)>,
    quiet: bool,
}

impl Bars {
    fn new(quiet: bool) -> Bars {
        let terminal = std::io::stderr().is_terminal() && !quiet;
        Bars {
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
            last_line: Mutex::new((Instant::now(), HashMap::new())),
            quiet,
        }
    }
}

impl Progress for Bars {
    fn begin(&self, table: &str, phase: &str) {
        let mut bars = self.bars.lock();
        if bars.contains_key(table) {
            return;
        }
        let bar = match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                // Whole objects per second (indicatif's own {per_sec} prints many decimals).
                let style = ProgressStyle::with_template(
                    "{spinner} {prefix:<30} {pos:>9} objects  {rate:>9}  {elapsed_precise}  {msg}",
                )
                .expect("a valid template")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                );
                bar.set_style(style);
                bar.set_prefix(table.to_owned());
                bar.set_message(phase.to_owned());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            None => ProgressBar::hidden(),
        };
        bars.insert(table.to_owned(), (bar, Instant::now(), 0));
    }

    fn advance(&self, table: &str, objects: u64, _covered: f64) {
        let mut bars = self.bars.lock();
        if let Some((bar, _, count)) = bars.get_mut(table) {
            bar.inc(objects);
            *count += objects;
        }
        if self.multi.is_none() && !self.quiet {
            // A line every 10 s: the total, and only the tables written since the last line.
            let mut last = self.last_line.lock();
            let elapsed = last.0.elapsed();
            if elapsed >= Duration::from_secs(10) {
                let total: u64 = bars.values().map(|(_, _, c)| c).sum();
                let before: u64 = last.1.values().sum();
                let mut lately: Vec<(u64, &String)> = bars
                    .iter()
                    .filter_map(|(t, (_, _, c))| {
                        let delta = c - last.1.get(t).copied().unwrap_or(0);
                        (delta > 0).then_some((delta, t))
                    })
                    .collect();
                lately.sort_by(|a, b| b.cmp(a));
                let shown: Vec<String> = lately
                    .iter()
                    .take(4)
                    .map(|(delta, t)| format!("{t} +{delta}"))
                    .collect();
                let more = lately.len().saturating_sub(shown.len());
                tell!(
                    "progress: {total} objects written ({:.0}/s lately): {}{}",
                    (total - before) as f64 / elapsed.as_secs_f64(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more tables")
                    } else {
                        String::new()
                    }
                );
                *last = (
                    Instant::now(),
                    bars.iter().map(|(t, (_, _, c))| (t.clone(), *c)).collect(),
                );
            }
        }
    }

    fn end(&self, table: &str) {
        if let Some((bar, _, _)) = self.bars.lock().get(table) {
            bar.set_message("done");
            bar.finish();
        }
    }

    fn note(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(format!("note: {message}"));
            }
            None => tell!("note: {message}"),
        }
    }
}

/// Syncs one connection with progress; returns its report as JSON.
pub async fn sync_one(
    engine: &Engine,
    reference: &str,
    options: &SyncOptions,
    quiet: bool,
) -> Result<serde_json::Value, CliError> {
    let record = engine.resolve(reference).await?;
    let bars = Arc::new(Bars::new(quiet));
    let started = Instant::now();
    let result = sync::sync(engine, &record.connection, options, bars.clone()).await;
    if let Some(multi) = &bars.multi {
        let _ = multi.clear();
    }
    let report = result?;
    let objects: u64 = report
        .run
        .counts
        .tables
        .values()
        .map(|c| c.inserted + c.updated + c.deleted)
        .sum();
    Ok(json!({
        "account": record.connection.label(),
        "name": record.name,
        "run": report.run,
        "skipped": report.skipped,
        "not_chosen": report.not_chosen,
        "budget_share": if report.budget_share.is_finite() { json!(report.budget_share) } else { json!(null) },
        "notes": report.notes,
        "seconds": started.elapsed().as_secs_f64(),
        "objects_written": objects,
    }))
}

fn print_report(report: &serde_json::Value) {
    let run = &report["run"];
    let pace = match report["budget_share"].as_f64() {
        Some(share) => format!("at --budget-share {share}"),
        None => "unpaced".to_owned(),
    };
    say!(
        "{} {} of \"{}\" ({}): {} in {:.1} s, {} requests {pace}",
        run["status"].as_str().unwrap_or_default(),
        run["kind"].as_str().unwrap_or_default(),
        report["name"].as_str().unwrap_or_default(),
        report["account"].as_str().unwrap_or_default(),
        summary_of_counts(&run["counts"]),
        report["seconds"].as_f64().unwrap_or(0.0),
        run["requests"]
    );
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| pair[0].as_str())
        .collect();
    if !skipped.is_empty() {
        say!(
            "  skipped (the key may not read them): {}",
            skipped.join(", ")
        );
    }
    let not_chosen: Vec<&str> = report["not_chosen"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    if !not_chosen.is_empty() {
        say!(
            "  skipped by choice (--only/--skip): {}",
            not_chosen.join(", ")
        );
    }
    for note in report["notes"].as_array().into_iter().flatten() {
        let note = note.as_str().unwrap_or_default();
        // Said above already.
        if note.starts_with("not mirrored by choice") {
            continue;
        }
        say!("  note: {note}");
    }
}

fn summary_of_counts(counts: &serde_json::Value) -> String {
    let mut totals = [0u64; 4];
    if let Some(tables) = counts["tables"].as_object() {
        for c in tables.values() {
            for (total, name) in
                totals
                    .iter_mut()
                    .zip(["inserted", "updated", "deleted", "unchanged"])
            {
                *total += c[name].as_u64().unwrap_or(0);
            }
        }
    }
    // Rows listed again as they were are said apart: "updated" means changed.
    let unchanged = if totals[3] > 0 {
        format!(" ({} listed again unchanged)", totals[3])
    } else {
        String::new()
    };
    format!(
        "{} inserted, {} updated, {} deleted{unchanged}, {} new events",
        totals[0],
        totals[1],
        totals[2],
        counts["new_events"].as_u64().unwrap_or(0)
    )
}

pub async fn sync(global: &GlobalArgs, args: SyncArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let tables = sm_engine::catalog::choose_tables(&args.only, &args.skip).map_err(|message| {
        CliError::from(
            sm_engine::EngineError::new(sm_engine::ErrorCode::InvalidInput, message)
                .hint("name tables as `stripe-mirror sql` shows them, separated by commas"),
        )
    })?;
    let options = SyncOptions {
        full: args.full,
        concurrency: args.concurrency.clamp(1, 64),
        tables,
        ..Default::default()
    };
    let references: Vec<String> = match (args.all, args.account) {
        (true, _) => sm_engine::ops::connections::list(&engine)
            .await?
            .into_iter()
            .map(|a| a.label)
            .collect(),
        (false, Some(account)) => vec![account],
        (false, None) => {
            let accounts = sm_engine::ops::connections::list(&engine).await?;
            match accounts.as_slice() {
                [one] => vec![one.label.clone()],
                [] => {
                    return Err(CliError::usage(
                        "no connected accounts: connect one first (stripe-mirror connect)",
                    ));
                }
                _ => {
                    return Err(CliError::usage(
                        "several accounts are connected: name one, or pass --all",
                    ));
                }
            }
        }
    };
    // One runner per SQLite mirror: beside a running sync or serve, wait (--wait) or stop here.
    let _runner =
        sm_engine::runner_lock::acquire(&global.database, "stripe-mirror sync", args.wait).await?;
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    let stop = crate::signals::stop_requested();
    tokio::pin!(stop);
    for reference in &references {
        let connection = engine.resolve(reference).await?.connection;
        let outcome = tokio::select! {
            outcome = sync_one(&engine, reference, &options, global.json) => outcome,
            signal = &mut stop => {
                // Rows are committed with their checkpoints as they go: nothing is half-written,
                // and the next run continues where this one stopped.
                let why = match signal {
                    crate::signals::Stop::Interrupt => "stopped by Ctrl-C; the next sync continues from its checkpoints",
                    crate::signals::Stop::Terminate => "stopped by SIGTERM; the next sync continues from its checkpoints",
                };
                sync::mark_interrupted(&engine, &connection, why).await?;
                return Err(CliError::of(
                    signal.code(),
                    format!("interrupted — run sync again to continue ({})", connection.label()),
                ));
            }
        };
        match outcome {
            Ok(report) => {
                if !global.json {
                    print_report(&report);
                }
                reports.push(report);
            }
            Err(error) => {
                if references.len() == 1 {
                    return Err(error);
                }
                tell!("error: {reference}: {}", error.message);
                failures.push(error);
            }
        }
    }
    if global.json {
        print_json(&json!(reports));
    }
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

#[derive(Debug, clap::Args)]
pub struct SyncsArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection (name, acct_…, or acct_…:test|live).
    account: String,
    /// How many runs to show, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

pub async fn syncs(global: &GlobalArgs, args: SyncsArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let runs = sm_engine::ops::syncs::runs(&engine, &record.connection, args.limit).await?;
    if global.json {
        print_json(&json!(runs));
        return Ok(());
    }
    if runs.is_empty() {
        say!(
            "No syncs yet for \"{}\". Run: stripe-mirror sync {}",
            record.name,
            record.connection.label()
        );
        return Ok(());
    }
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|run| {
            let counts = serde_json::to_value(&run.counts).unwrap_or_default();
            let duration = run
                .ended_at
                .map(|end| format!("{} s", end - run.started_at))
                .unwrap_or_else(|| "running".into());
            [
                run.id.to_string(),
                format_time(run.started_at),
                run.kind.clone(),
                if run.trigger.is_empty() {
                    "-".into()
                } else {
                    run.trigger.clone()
                },
                run.status.clone(),
                duration,
                format!("{} req", run.requests),
                format!(
                    "{}{}",
                    summary_of_counts(&counts),
                    run.error
                        .as_ref()
                        .map(|e| format!(" — {e}"))
                        .unwrap_or_default()
                ),
            ]
        })
        .collect();
    print_table(
        &[
            "RUN",
            "STARTED (UTC)",
            "KIND",
            "TRIGGER",
            "STATUS",
            "TOOK",
            "REQUESTS",
            "CHANGES",
        ],
        &rows,
    );
    Ok(())
}

/// `2026-11-22 21:04:05`.
pub fn format_time(unix: i64) -> String {
    sm_stripe::http_date::iso(unix)
}

#[derive(Debug, clap::Args)]
pub struct StartDateArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection (name, acct_…, or acct_…:test|live).
    account: String,
    /// YYYY-MM-DD or a unix time; `all` for all history.
    date: String,
}

pub async fn set_start_date(global: &GlobalArgs, args: StartDateArgs) -> Result<(), CliError> {
    let start = if args.date == "all" {
        None
    } else {
        Some(parse_date(&args.date).map_err(CliError::usage)?)
    };
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let change =
        sm_engine::ops::connections::set_start_date(&engine, &record.connection, start).await?;
    if global.json {
        print_json(&json!(change));
    } else {
        say!(
            "\"{}\" now mirrors from {}; {}",
            change.name,
            start
                .map(format_time)
                .unwrap_or_else(|| "the beginning".into()),
            change.advice
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// A read-only query, e.g. "SELECT status, count(*) FROM subscriptions GROUP BY status".
    query: String,
}

pub async fn sql(global: &GlobalArgs, args: SqlArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let query = args.query.clone();
    if global.json {
        // Numbers as numbers, booleans as booleans, NULL as null.
        let (names, rows) = sm_engine::ops::query::values(&engine, &query).await?;
        let objects: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|row| serde_json::Value::Object(names.iter().cloned().zip(row).collect()))
            .collect();
        print_json(&json!(objects));
        return Ok(());
    }
    let (names, rows) = sm_engine::ops::query::text(&engine, &query).await?;
    say!("{}", names.join(" | "));
    for row in &rows {
        say!(
            "{}",
            row.iter()
                .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    say!("({} rows)", rows.len());
    Ok(())
}
