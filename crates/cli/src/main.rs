//! The `stripe-mirror` command. Each subcommand is a thin call into a library crate; this file
//! parses arguments, sets up logging, opens the store, and turns errors into messages and exit
//! codes (one table: `sm_engine::ErrorCode`).

/// `println!` that never panics: once standard output is closed (the reader of a pipe left, as
/// `| head` does), what is said is dropped, so a long run is never failed by its own output.
/// Short commands stop at once instead (SIGPIPE, see `main`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see `say!`).
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod accounts_cmd;
mod config_file;
mod context;
mod emulator_cmd;
mod key_input;
mod notify_cmd;
mod report_cmd;
mod serve_cmd;
mod signals;
mod sync_cmd;
mod tables_cmd;
mod token_cmd;

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
    #[command(
        after_help = "Examples:\n  STRIPE_API_KEY=rk_live_… stripe-mirror connect --mode live --restricted-only\n  stripe-mirror connect --key-file stripe.key --name Acme --start-date 2024-01-01"
    )]
    Connect(accounts_cmd::ConnectArgs),
    /// List connected accounts.
    #[command(after_help = "Examples:\n  stripe-mirror accounts\n  stripe-mirror accounts --json")]
    Accounts(context::StoreOnly),
    /// What a connection's key may read and write, and what each feature still needs.
    #[command(
        after_help = "Examples:\n  stripe-mirror permissions Acme\n  stripe-mirror permissions acct_1Nv0FGQ9RKHgCVdK:live --json"
    )]
    Permissions(accounts_cmd::AccountArg),
    /// The Stripe dashboard link that pre-fills a minimal restricted key for the chosen features.
    #[command(
        after_help = "Examples:\n  stripe-mirror key-link --mode live --features mirror,webhooks"
    )]
    KeyLink(accounts_cmd::KeyLinkArgs),
    /// Replace a connection's key (same account and mode).
    #[command(after_help = "Examples:\n  STRIPE_API_KEY=rk_live_… stripe-mirror update-key Acme")]
    UpdateKey(accounts_cmd::UpdateKeyArgs),
    /// Set or roll a connection's webhook signing secret (its data is untouched).
    #[command(
        after_help = "Examples:\n  stripe-mirror webhook-secret Acme --secret-file whsec.txt\n  stripe-mirror webhook-secret Acme --secret-stdin --keep-old"
    )]
    WebhookSecret(accounts_cmd::WebhookSecretArgs),
    /// Rename a connection.
    #[command(after_help = "Examples:\n  stripe-mirror rename acct_1Nv0FGQ9RKHgCVdK \"Acme EU\"")]
    Rename(accounts_cmd::RenameArgs),
    /// Choose the logo shown for a connection (the dashboard, the API), or go back to Stripe's.
    #[command(
        after_help = "Examples:\n  stripe-mirror set-logo acct_1Nv0FGQ9RKHgCVdK https://cdn.example.com/acme.png\n  stripe-mirror set-logo \"Acme EU\" none"
    )]
    SetLogo(accounts_cmd::SetLogoArgs),
    /// Remove a connection and every row of its data.
    #[command(
        after_help = "Examples:\n  stripe-mirror remove Acme\n  stripe-mirror remove acct_1Nv0FGQ9RKHgCVdK:test --yes"
    )]
    Remove(accounts_cmd::RemoveArgs),
    /// Copy an account into the mirror: a backfill the first time, then only what changed.
    #[command(
        after_help = "Examples:\n  stripe-mirror sync --all\n  stripe-mirror sync Acme --only customers,subscriptions,invoices"
    )]
    Sync(sync_cmd::SyncArgs),
    /// The history of a connection's syncs.
    #[command(after_help = "Examples:\n  stripe-mirror syncs Acme --limit 5")]
    Syncs(sync_cmd::SyncsArgs),
    /// Keep a connection's mirror in another Stripe API version (the next sync lists it again).
    #[command(
        after_help = "Examples:\n  stripe-mirror set-api-version Acme 2024-06-20\n  stripe-mirror set-api-version acct_1Nv0FGQ9RKHgCVdK:live 2023-08-16"
    )]
    SetApiVersion(accounts_cmd::ApiVersionArgs),
    /// Change how far back a connection is mirrored (YYYY-MM-DD, or `all`).
    #[command(
        after_help = "Examples:\n  stripe-mirror set-start-date Acme 2024-01-01\n  stripe-mirror set-start-date Acme all"
    )]
    SetStartDate(sync_cmd::StartDateArgs),
    /// The mirror's tables and their typed columns (what to filter on in SQL).
    #[command(after_help = "Examples:\n  stripe-mirror tables\n  stripe-mirror tables --markdown")]
    Tables(tables_cmd::TablesArgs),
    /// API tokens for the REST API: create (printed once), list, revoke.
    #[command(
        after_help = "Examples:\n  stripe-mirror token create --name ci --read-only\n  stripe-mirror token revoke ci"
    )]
    Token(token_cmd::TokenArgs),
    /// Notifications: channels (Slack, Discord, Teams, ntfy, signed webhooks), rules, and the log
    /// of what was sent (`serve` sends them).
    #[command(
        after_help = "Examples:\n  stripe-mirror notify channel add ops --kind slack --url-stdin < slack-url.txt\n  stripe-mirror notify channel test ops\n  stripe-mirror notify rule add payments --channel ops\n  stripe-mirror notify log --state failed"
    )]
    Notify(notify_cmd::NotifyArgs),
    /// The effective settings and where each came from (flag, environment, file, default).
    #[command(
        after_help = "Examples:\n  stripe-mirror config\n  stripe-mirror config --config /etc/stripe-mirror.toml --json"
    )]
    Config,
    /// Run a read-only SQL query on the mirror.
    #[command(
        after_help = "Examples:\n  stripe-mirror sql \"SELECT status, count(*) FROM subscriptions GROUP BY status\"\n  stripe-mirror sql --json \"SELECT id, email FROM customers LIMIT 5\""
    )]
    Sql(sync_cmd::SqlArgs),
    /// Run the server: webhook intake, a sync of every account every interval, /healthz, /metrics.
    #[command(
        after_help = "Examples:\n  stripe-mirror serve --public-url https://mirror.example.com\n  stripe-mirror serve --listen 127.0.0.1:8787 --interval 60"
    )]
    Serve(serve_cmd::ServeArgs),
    /// Agent tools over MCP on standard input and output: reads of every connected account from
    /// the mirror (list_accounts, list_objects, get_object, recent_events, query_sql), and writes
    /// through Stripe where a key allows them (create_customer, create_refund, …).
    #[command(after_help = "Examples:
  stripe-mirror mcp
  stripe-mirror mcp --read-only --database /var/lib/stripe-mirror.db")]
    Mcp(McpArgs),
    /// The latest events of a connection, and with --follow new ones as they arrive.
    #[command(
        after_help = "Examples:\n  stripe-mirror events Acme --limit 20\n  stripe-mirror events Acme --follow"
    )]
    Events(serve_cmd::EventsArgs),
    /// Revenue reports from the mirror: MRR and its movements, churn, net revenue, failed payments.
    #[command(
        after_help = "Examples:\n  stripe-mirror report summary Acme\n  stripe-mirror report mrr Acme --from 2024-01-01 --interval week --currency usd\n  stripe-mirror report movements acct_1Nv0FGQ9RKHgCVdK:live --csv > movements.csv\n  stripe-mirror report churn Acme --json --delinquency-churn-days 30"
    )]
    Report(report_cmd::ReportArgs),
    /// Run the built-in Stripe emulator (for tests, demos and trying an integration offline).
    #[command(
        after_help = "Examples:\n  stripe-mirror emulator --listen 127.0.0.1:12111 --scale 1000 --json"
    )]
    Emulator(emulator_cmd::EmulatorArgs),
    /// A short tour: an emulated account, read over HTTP, with live changes.
    #[command(
        after_help = "Examples:\n  stripe-mirror demo\n  stripe-mirror demo --scale 1000 --file demo.db\n  stripe-mirror demo --serve 127.0.0.1:8080"
    )]
    Demo(emulator_cmd::DemoArgs),
}

impl Command {
    /// The store and Stripe options given after the command, where it takes them.
    fn options(
        &self,
    ) -> (
        Option<&context::StoreOptions>,
        Option<&context::StripeOptions>,
    ) {
        match self {
            Command::Connect(a) => (Some(&a.store), Some(&a.stripe)),
            Command::Accounts(a) => (Some(&a.store), None),
            Command::Permissions(a) => (Some(&a.store), None),
            Command::UpdateKey(a) => (Some(&a.store), Some(&a.stripe)),
            Command::WebhookSecret(a) => (Some(&a.store), None),
            Command::Rename(a) => (Some(&a.store), None),
            Command::SetLogo(a) => (Some(&a.store), None),
            Command::Remove(a) => (Some(&a.store), Some(&a.stripe)),
            Command::Sync(a) => (Some(&a.store), Some(&a.stripe)),
            Command::Syncs(a) => (Some(&a.store), None),
            Command::SetStartDate(a) => (Some(&a.store), None),
            Command::SetApiVersion(a) => (Some(&a.store), None),
            Command::Sql(a) => (Some(&a.store), None),
            Command::Serve(a) => (Some(&a.store), Some(&a.stripe)),
            Command::Events(a) => (Some(&a.store), None),
            Command::Report(a) => (Some(&a.store), None),
            Command::Mcp(a) => (Some(&a.store), None),
            Command::Token(a) => (Some(&a.store), None),
            Command::Notify(a) => (Some(&a.store), None),
            Command::KeyLink(_)
            | Command::Config
            | Command::Tables(_)
            | Command::Emulator(_)
            | Command::Demo(_) => (None, None),
        }
    }
}

/// `stripe-mirror mcp`: where the mirror is.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub store: context::StoreOptions,
    /// Serve the read tools only: no tool that writes to Stripe is offered.
    #[arg(long)]
    pub read_only: bool,
}

/// No core dumps, ever: one would hold the master key and opened API keys in clear.
fn no_core_dumps() {
    #[cfg(unix)]
    {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: sets this process's own limit from a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
            eprintln!("warning: could not turn core dumps off");
        }
    }
}

fn main() -> ExitCode {
    no_core_dumps();
    // The configuration file first: its settings sit below flags and the environment.
    let args: Vec<String> = std::env::args().collect();
    let loaded = match config_file::load(&args) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(sm_engine::ErrorCode::InvalidInput.exit_code());
        }
    };
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // Short commands end quietly when their reader leaves (`stripe-mirror sql … | head`), as
    // Unix tools do; runs that must not stop half-way keep going and drop their output.
    let long_running = matches!(
        cli.command,
        Command::Sync(_)
            | Command::Serve(_)
            | Command::Demo(_)
            | Command::Emulator(_)
            | Command::Events(_)
            | Command::Mcp(_)
    );
    #[cfg(unix)]
    if !long_running {
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
            tell!("error: could not start the async runtime: {error}");
            return ExitCode::from(sm_engine::ErrorCode::Internal.exit_code());
        }
    };
    let json = cli.global.json;
    // Options given after the command win over those given before it.
    let (store, stripe) = cli.command.options();
    let global = cli.global.with(store, stripe);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Connect(args) => accounts_cmd::connect(&global, args).await,
            Command::Accounts(_) => accounts_cmd::accounts(&global).await,
            Command::Permissions(args) => accounts_cmd::permissions(&global, args).await,
            Command::KeyLink(args) => accounts_cmd::key_link(&global, args),
            Command::UpdateKey(args) => accounts_cmd::update_key(&global, args).await,
            Command::Rename(args) => accounts_cmd::rename(&global, args).await,
            Command::SetLogo(args) => accounts_cmd::set_logo(&global, args).await,
            Command::WebhookSecret(args) => accounts_cmd::webhook_secret(&global, args).await,
            Command::Remove(args) => accounts_cmd::remove(&global, args).await,
            Command::Sync(args) => sync_cmd::sync(&global, args).await,
            Command::Syncs(args) => sync_cmd::syncs(&global, args).await,
            Command::SetStartDate(args) => sync_cmd::set_start_date(&global, args).await,
            Command::SetApiVersion(args) => accounts_cmd::set_api_version(&global, args).await,
            Command::Sql(args) => sync_cmd::sql(&global, args).await,
            Command::Tables(args) => tables_cmd::tables(&global, args),
            Command::Config => context::show_config(&global, &loaded, &matches),
            Command::Token(args) => token_cmd::token(&global, args).await,
            Command::Notify(args) => notify_cmd::notify(&global, args).await,
            Command::Serve(args) => serve_cmd::serve(&global, args).await,
            Command::Events(args) => serve_cmd::events(&global, args).await,
            Command::Report(args) => report_cmd::run(&global, args).await,
            Command::Mcp(args) => {
                let engine = std::sync::Arc::new(global.engine()?);
                sm_mcp::serve_stdio(engine, args.read_only)
                    .await
                    .map_err(CliError::io)
            }
            Command::Emulator(args) => emulator_cmd::run(args).await,
            Command::Demo(args) => emulator_cmd::demo(args, json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                say!(
                    "{}",
                    json!({"error": {"code": error.code, "message": error.message, "hint": error.hint}})
                );
            } else {
                tell!("error: {}", error.message);
                if let Some(hint) = &error.hint {
                    tell!("  what to do: {hint}");
                }
            }
            ExitCode::from(error.exit_code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Splits a command line as a shell would for these simple lines: words, "quoted words",
    /// leading `NAME=value` assignments and `# comments` dropped.
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let (mut quoted, mut any) = (None, false);
        for c in line.chars() {
            match (quoted, c) {
                (None, '#') if !any => break,
                (None, '"' | '\'') => {
                    quoted = Some(c);
                    any = true;
                }
                (Some(q), c) if c == q => quoted = None,
                (None, ' ' | '\t') => {
                    if any {
                        words.push(std::mem::take(&mut word));
                        any = false;
                    }
                }
                (_, c) => {
                    word.push(c);
                    any = true;
                }
            }
        }
        if any {
            words.push(word);
        }
        while words
            .first()
            .is_some_and(|w| w.contains('=') && !w.starts_with('-'))
        {
            words.remove(0);
        }
        words
    }

    /// The `stripe-mirror …` part of a line (also after `cargo run --release --`), as words.
    fn invocation(line: &str) -> Option<Vec<String>> {
        let words = words(line);
        let start = if words.first().is_some_and(|w| w == "stripe-mirror") {
            1
        } else if words.starts_with(&["cargo".into(), "run".into()]) {
            let separator = words.iter().position(|w| w == "--")?;
            // Another package's binary (the benchmarks) is not ours to parse.
            if words[..separator].iter().any(|w| w == "-p" || w == "--bin") {
                return None;
            }
            separator + 1
        } else {
            return None;
        };
        let mut argv = vec!["stripe-mirror".to_owned()];
        argv.extend(
            words[start..]
                .iter()
                .take_while(|w| !matches!(w.as_str(), "&&" | "|" | ">" | "&" | "<" | "<<<"))
                .cloned(),
        );
        Some(argv)
    }

    #[test]
    fn every_help_ends_with_examples_that_parse() {
        let command = Cli::command();
        for sub in command.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let examples: Vec<&str> = help.lines().skip(1).map(str::trim).collect();
            assert!(
                help.starts_with("Examples:") && !examples.is_empty(),
                "`{} --help` has no examples",
                sub.get_name()
            );
            for example in examples {
                let argv = invocation(example).expect("an example starts with stripe-mirror");
                assert_eq!(argv[1], sub.get_name(), "{example}");
                if let Err(error) = Cli::try_parse_from(&argv) {
                    panic!("the example `{example}` does not parse: {error}");
                }
            }
        }
    }

    /// Every command line in the README's ```sh blocks parses as the binary would parse it
    /// (the blocks CI does not run need a real key, a Postgres or a long-running process).
    #[test]
    fn every_readme_command_parses() {
        let readme = include_str!("../../../README.md");
        let mut in_block = false;
        let mut checked = 0;
        let mut previous = "";
        for line in readme.lines() {
            if line.starts_with("```") {
                in_block = line == "```sh";
                assert!(
                    !in_block
                        || previous.starts_with("<!-- ci: run")
                        || previous.starts_with("<!-- ci: parse only"),
                    "a ```sh block in the README needs a `<!-- ci: run -->` or `<!-- ci: parse only (why) -->` line above it (after `{previous}`)"
                );
                previous = line;
                continue;
            }
            previous = line;
            if !in_block {
                continue;
            }
            let Some(argv) = invocation(line) else {
                continue;
            };
            if argv.len() < 2 {
                continue;
            }
            if let Err(error) = Cli::try_parse_from(&argv) {
                panic!("the README line `{line}` does not parse: {error}");
            }
            checked += 1;
        }
        assert!(checked >= 5, "only {checked} README command lines found");
    }

    /// The README's table list is what `tables --markdown` prints.
    #[test]
    fn the_readme_lists_every_table() {
        let readme = include_str!("../../../README.md");
        let listed = readme
            .split("<!-- tables:begin -->\n")
            .nth(1)
            .and_then(|rest| rest.split("<!-- tables:end -->").next())
            .expect("README.md has a <!-- tables:begin --> … <!-- tables:end --> section");
        assert_eq!(
            listed.trim(),
            tables_cmd::markdown().trim(),
            "README.md's table list differs from `stripe-mirror tables --markdown`: paste its output"
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            words(r#"STRIPE_API_KEY=rk_x stripe-mirror sql "SELECT 1" --json  # note"#),
            ["stripe-mirror", "sql", "SELECT 1", "--json"]
        );
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
    /// An error of `code`: its name and exit code come from the one error table.
    pub fn of(code: sm_engine::ErrorCode, message: impl Into<String>) -> Self {
        CliError::from(sm_engine::EngineError::new(code, message))
    }
    /// Bad input from the user (exit 2, as for usage errors).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::of(sm_engine::ErrorCode::InvalidInput, message)
    }
    /// Something in the environment failed: a port taken, a file unreadable (exit 74, EX_IOERR).
    pub fn io(message: impl Into<String>) -> Self {
        CliError::of(sm_engine::ErrorCode::LocalIo, message)
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
