//! The `stripe-mirror` command. Each subcommand is a thin call into a library crate; this file
//! parses arguments, sets up logging, opens the store, and turns errors into messages and exit
//! codes (one table: `sm_engine::ErrorCode`).

mod accounts_cmd;
mod context;
mod emulator_cmd;
mod key_input;
mod serve_cmd;
mod sync_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

/// Mirror Stripe accounts into SQL: connect by API key, keep an exact copy, put it to work.
#[derive(Debug, Parser)]
#[command(name = "stripe-mirror", version, about)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect a Stripe account with an API key (from STRIPE_API_KEY, --key-file, --key-stdin or a prompt).
    Connect(accounts_cmd::ConnectArgs),
    /// List connected accounts.
    Accounts,
    /// What a connection's key may read and write, and what each feature still needs.
    Permissions(accounts_cmd::AccountArg),
    /// The Stripe dashboard link that pre-fills a minimal restricted key for the chosen features.
    KeyLink(accounts_cmd::KeyLinkArgs),
    /// Replace a connection's key (same account and mode).
    UpdateKey(accounts_cmd::UpdateKeyArgs),
    /// Rename a connection.
    Rename(accounts_cmd::RenameArgs),
    /// Remove a connection and every row of its data.
    Remove(accounts_cmd::RemoveArgs),
    /// Copy an account into the mirror: a backfill the first time, then only what changed.
    Sync(sync_cmd::SyncArgs),
    /// The history of a connection's syncs.
    Syncs(sync_cmd::SyncsArgs),
    /// Change how far back a connection is mirrored (YYYY-MM-DD, or `all`).
    SetStartDate(sync_cmd::StartDateArgs),
    /// Run a read-only SQL query on the mirror.
    Sql(sync_cmd::SqlArgs),
    /// Run the server: webhook intake, a sync of every account every interval, /healthz, /metrics.
    Serve(serve_cmd::ServeArgs),
    /// The latest events of a connection, and with --follow new ones as they arrive.
    Events(serve_cmd::EventsArgs),
    /// Run the built-in Stripe emulator (for tests, demos and trying an integration offline).
    Emulator(emulator_cmd::EmulatorArgs),
    /// A short tour: an emulated account, read over HTTP, with live changes.
    Demo(emulator_cmd::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("STRIPE_MIRROR_LOG").unwrap_or_else(|_| level.to_owned());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.global.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(70);
        }
    };
    let json = cli.global.json;
    let global = cli.global;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Connect(args) => accounts_cmd::connect(&global, args).await,
            Command::Accounts => accounts_cmd::accounts(&global).await,
            Command::Permissions(args) => accounts_cmd::permissions(&global, args).await,
            Command::KeyLink(args) => accounts_cmd::key_link(&global, args),
            Command::UpdateKey(args) => accounts_cmd::update_key(&global, args).await,
            Command::Rename(args) => accounts_cmd::rename(&global, args).await,
            Command::Remove(args) => accounts_cmd::remove(&global, args).await,
            Command::Sync(args) => sync_cmd::sync(&global, args).await,
            Command::Syncs(args) => sync_cmd::syncs(&global, args).await,
            Command::SetStartDate(args) => sync_cmd::set_start_date(&global, args).await,
            Command::Sql(args) => sync_cmd::sql(&global, args).await,
            Command::Serve(args) => serve_cmd::serve(&global, args).await,
            Command::Events(args) => serve_cmd::events(&global, args).await,
            Command::Emulator(args) => emulator_cmd::run(args).await,
            Command::Demo(args) => emulator_cmd::demo(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                println!(
                    "{}",
                    json!({"error": {"code": error.code, "message": error.message, "hint": error.hint}})
                );
            } else {
                eprintln!("error: {}", error.message);
                if let Some(hint) = &error.hint {
                    eprintln!("  what to do: {hint}");
                }
            }
            ExitCode::from(error.exit_code)
        }
    }
}

/// An error on its way to the user: words, what to do, and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
    pub exit_code: u8,
}

impl CliError {
    /// Bad input from the user (exit 2, as for usage errors).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: "invalid_input",
            message: message.into(),
            hint: None,
            exit_code: 2,
        }
    }
    /// Something in the environment failed: a port taken, a file unreadable (exit 74, EX_IOERR).
    pub fn io(message: impl Into<String>) -> Self {
        CliError {
            code: "io",
            message: message.into(),
            hint: None,
            exit_code: 74,
        }
    }
}

impl From<sm_engine::EngineError> for CliError {
    fn from(error: sm_engine::EngineError) -> Self {
        CliError {
            code: error.code.name(),
            message: error.message,
            hint: error.hint,
            exit_code: error.code.exit_code(),
        }
    }
}
