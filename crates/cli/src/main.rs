//! The `stripe-mirror` command. Each subcommand is a thin call into a library crate; this file
//! parses arguments, sets up logging and turns errors into messages and exit codes.

mod emulator_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mirror Stripe accounts into SQL: connect by API key, keep an exact copy, put it to work.
#[derive(Debug, Parser)]
#[command(name = "stripe-mirror", version, about)]
struct Cli {
    /// Log more (-v: debug, -vv: trace). Logs go to standard error.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the built-in Stripe emulator (for tests, demos and trying an integration offline).
    Emulator(emulator_cmd::EmulatorArgs),
    /// A short tour of the emulator: seed an account, read it over HTTP, make changes, show events.
    Demo(emulator_cmd::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("STRIPE_MIRROR_LOG").unwrap_or_else(|_| level.to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Emulator(args) => emulator_cmd::run(args).await,
            Command::Demo(args) => emulator_cmd::demo(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.message);
            ExitCode::from(error.exit_code)
        }
    }
}

/// An error on its way to the user: words and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit_code: u8,
}

impl CliError {
    /// Bad input from the user (exit 2, as for usage errors).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit_code: 2,
        }
    }
    /// Something in the environment failed: a port taken, a file unreadable (exit 74, EX_IOERR).
    pub fn io(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit_code: 74,
        }
    }
}
