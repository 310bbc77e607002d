//! `serve` (webhooks, scheduler, health, metrics) and `events` (the latest events, then new ones
//! as they arrive).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sm_server::{AppState, ServeConfig};

use crate::CliError;
use crate::context::{GlobalArgs, print_json};
use crate::sync_cmd::format_time;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    #[command(flatten)]
    pub stripe: crate::context::StripeOptions,
    /// Where to listen (127.0.0.1 by default: put a reverse proxy with TLS in front for Stripe).
    #[arg(long, default_value = "127.0.0.1:8787", env = "STRIPE_MIRROR_LISTEN")]
    listen: SocketAddr,
    /// The public base URL Stripe reaches this server at; with it, accounts whose key has
    /// rak_webhook_write get a managed webhook endpoint at {public_url}/webhooks/{account}/{mode}.
    #[arg(long, env = "STRIPE_MIRROR_PUBLIC_URL")]
    public_url: Option<String>,
    /// Seconds between incremental syncs of each account.
    #[arg(long, default_value_t = 300, env = "STRIPE_MIRROR_SYNC_INTERVAL")]
    interval: u64,
    /// Seconds a webhook signature's timestamp may be from now (1 to 86400; Stripe's own
    /// libraries use 300).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    tolerance: i64,
    /// Seconds after a charge, refund or payout event before its balance transactions (which
    /// have no events) are listed; deliveries meanwhile share one listing. 0: leave them to
    /// the next sync.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    balance_refresh_after: u64,
    /// Notifications are not sent for events made longer ago than this many seconds when they
    /// reached the mirror (a backlog after downtime is history, not news).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..=30 * 86_400))]
    notify_max_age: i64,
    /// A chat channel with more messages than this due at once gets one roll-up message.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    notify_rollup_after: u64,
    /// What this process does: `all` (everything), `worker` (claims connections, syncs them
    /// and applies their webhook deliveries; serves the API, dashboard and agent tools) or
    /// `intake` (verifies and keeps webhook deliveries; /healthz and /metrics). Any number of
    /// workers and intakes share one Postgres; a SQLite mirror is one `all` process.
    #[arg(long, default_value = "all", env = "STRIPE_MIRROR_ROLE", value_parser = sm_server::Role::NAMES)]
    role: String,
    /// How many connections this process holds at once, each syncing and applying its
    /// webhook deliveries; the others wait their turn or go to another worker.
    #[arg(long, default_value_t = 8, env = "STRIPE_MIRROR_MAX_LEASES", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_leases: u64,
}

pub async fn serve(global: &GlobalArgs, args: ServeArgs) -> Result<(), CliError> {
    if args.interval == 0 {
        return Err(CliError::usage("--interval must be at least 1 second"));
    }
    if let Some(url) = &args.public_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(CliError::usage(format!(
            "--public-url must start with https:// (or http:// for local tests), not {url}"
        )));
    }
    let role = sm_server::Role::parse(&args.role).unwrap_or(sm_server::Role::All);
    if role != sm_server::Role::All && !global.database.starts_with("postgres") {
        return Err(CliError::usage(format!(
            "--role {} needs a Postgres mirror (--database postgres://…): a SQLite mirror is one process, run it with --role all",
            role.name()
        )));
    }
    let engine = Arc::new(global.engine()?);
    // One runner per SQLite mirror: a sync started later is told this one holds it; a sync
    // already running is waited for; a second serve is refused.
    let what = "stripe-mirror serve";
    let _runner = match sm_engine::runner_lock::acquire(&global.database, what, false).await {
        Err(busy) if busy.message.contains("stripe-mirror sync") => {
            tell!("{}: waiting for it to finish", busy.message);
            sm_engine::runner_lock::acquire(&global.database, what, true).await?
        }
        other => other?,
    };
    let config = ServeConfig {
        role,
        max_leases: args.max_leases as usize,
        listen: args.listen,
        public_url: args.public_url.clone(),
        interval: Duration::from_secs(args.interval),
        tolerance_secs: args.tolerance,
        limits: Default::default(),
        answer_wait: Duration::ZERO,
        balance_refresh_after: (args.balance_refresh_after > 0)
            .then(|| Duration::from_secs(args.balance_refresh_after)),
        notify: sm_engine::notify::NotifyConfig {
            max_age_secs: args.notify_max_age,
            rollup_after: args.notify_rollup_after as usize,
            ..Default::default()
        },
    };
    let tokens = sm_engine::ops::tokens::list(&engine).await?.len();
    let state = AppState::new(engine, config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            CliError::io(format!(
                "could not listen on {}: {e} — choose another address with --listen",
                args.listen
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::io(e.to_string()))?;
    match role {
        sm_server::Role::All => tell!(
            "stripe-mirror serving on http://{address} (webhooks at /webhooks/ACCOUNT/MODE, /healthz, /metrics); syncing every {} s",
            args.interval
        ),
        sm_server::Role::Worker => tell!(
            "stripe-mirror worker on http://{address} (/healthz, /metrics, the API and dashboard): syncing every {} s, up to {} connections at once",
            args.interval,
            args.max_leases
        ),
        sm_server::Role::Intake => tell!(
            "stripe-mirror intake on http://{address} (webhooks at /webhooks/ACCOUNT/MODE, /healthz, /metrics): deliveries are kept for the workers"
        ),
    }
    let dashboard = args
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{address}"));
    if role.works() && tokens == 0 {
        tell!(
            "dashboard: {dashboard}/ — sign in with an API token; there is none yet: make one with `stripe-mirror token create --name NAME` (it is shown once)"
        );
    } else if role.works() {
        tell!(
            "dashboard: {dashboard}/ — sign in with an API token (`stripe-mirror token create --name NAME` makes another)"
        );
    }
    if role.works() {
        tell!(
            "agent tools (MCP, streamable HTTP): {dashboard}/mcp with `Authorization: Bearer <token>`"
        );
    }
    sm_server::serve_on(listener, state, shutdown_signal())
        .await
        .map_err(|e| CliError::io(e.to_string()))
}

/// Ctrl-C or SIGTERM: stop taking requests, let in-flight ones finish.
async fn shutdown_signal() {
    crate::signals::stop_requested().await;
    tell!("stopping: finishing requests in flight");
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection (name, acct_…, or acct_…:test|live).
    account: String,
    /// Keep printing new events as they arrive.
    #[arg(long)]
    follow: bool,
    /// How many of the latest events to print first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

fn print_event(event: &sm_warehouse::EventRow, json: bool) {
    if json {
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        print_json(
            &json!({"id": event.id, "type": event.event_type, "created": event.created, "object_id": event.object_id, "event": data}),
        );
    } else {
        say!(
            "{}  {}  {:<40} {}",
            format_time(event.created),
            event.id,
            event.event_type,
            event.object_id.clone().unwrap_or_default()
        );
    }
}

pub async fn events(global: &GlobalArgs, args: EventsArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    // Where the tail starts is read first: an event stored while the latest are read is shown
    // once, by one or the other.
    let mut position = sm_engine::ops::events::position_now(&engine, &record.connection).await?;
    let latest = sm_engine::ops::events::latest(&engine, &record.connection, args.limit).await?;
    let shown: HashSet<String> = latest.iter().map(|e| e.id.clone()).collect();
    for event in latest.iter().rev() {
        print_event(event, global.json);
    }
    if !args.follow {
        return Ok(());
    }
    // The mirror's events table is the stream: whatever writes to it (serve's webhooks, syncs)
    // shows up here, in the order it was stored, so a late delivery of an old event shows too.
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let newer =
            sm_engine::ops::events::stored_after(&engine, &record.connection, position, 1_000)
                .await?;
        for (at, event) in &newer {
            position = *at;
            if !shown.contains(&event.id) {
                print_event(event, global.json);
            }
        }
    }
}
