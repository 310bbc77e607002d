//! Options every command shares, and opening the engine from them. Precedence: flags, then
//! `STRIPE_MIRROR_…` environment variables, then defaults.
//!
//! Where the mirror is (`--database`, `--master-key-file`) and how Stripe is called
//! (`--api-base`, `--budget-share`, `--no-pacing`, `--max-retries`) are given before the command
//! or after it; a command's `--help` lists only the groups it uses ([`StoreOptions`],
//! [`StripeOptions`]). Output options (`--json`, `-v`, `--log-json`) apply to every command.

use std::sync::Arc;

use sm_engine::{Engine, EngineConfig, EngineError, ErrorCode, Vault};

use crate::CliError;

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Where the mirror lives: a SQLite file, or postgres://user@host/db[?schema=stripe].
    #[arg(
        long,
        env = "STRIPE_MIRROR_DATABASE_URL",
        default_value = "stripe-mirror.db"
    )]
    pub database: String,
    /// The Stripe API's base URL (an emulator's, for tests).
    #[arg(
        long,
        env = "STRIPE_MIRROR_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub api_base: String,
    /// The file holding the master key that seals API keys (made with mode 0600 on first use;
    /// default: ~/.config/stripe-mirror/master.key, or under $XDG_CONFIG_HOME).
    /// STRIPE_MIRROR_MASTER_KEY (64 hex) wins.
    #[arg(long, env = "STRIPE_MIRROR_MASTER_KEY_FILE")]
    pub master_key_file: Option<std::path::PathBuf>,
    /// The share of each account's Stripe rate limit the mirror may use (0–1; the rest is left
    /// for the account's own traffic).
    #[arg(long, env = "STRIPE_MIRROR_BUDGET_SHARE", default_value_t = 0.5)]
    pub budget_share: f64,
    /// No pacing at all: for a local emulator, which has no rate limits unless told to (refused
    /// for Stripe's own API).
    #[arg(long, env = "STRIPE_MIRROR_NO_PACING")]
    pub no_pacing: bool,
    /// How many times a failed Stripe request is retried (network errors, 409, 429, 5xx).
    #[arg(long, env = "STRIPE_MIRROR_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// The configuration file (default: ./stripe-mirror.toml when it exists). Flags and the
    /// environment win over it.
    #[arg(long, global = true, env = "STRIPE_MIRROR_CONFIG", value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log more (-v info, -vv debug, -vvv trace). Logs go to standard error.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// Where the mirror lives, for the commands that open it (also accepted before the command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreOptions {
    /// Where the mirror lives: a SQLite file, or postgres://user@host/db[?schema=stripe]
    /// (default: STRIPE_MIRROR_DATABASE_URL, else stripe-mirror.db).
    #[arg(long, value_name = "DATABASE")]
    database: Option<String>,
    /// The file holding the master key that seals API keys (default:
    /// ~/.config/stripe-mirror/master.key). STRIPE_MIRROR_MASTER_KEY (64 hex) wins.
    #[arg(long, value_name = "PATH")]
    master_key_file: Option<std::path::PathBuf>,
}

/// A command that only opens the mirror.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreOnly {
    #[command(flatten)]
    pub store: StoreOptions,
}

/// How Stripe is called, for the commands that call it (also accepted before the command).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StripeOptions {
    /// The Stripe API's base URL (an emulator's; default: STRIPE_MIRROR_API_BASE, else the
    /// connection's own, else https://api.stripe.com).
    #[arg(long, value_name = "URL")]
    api_base: Option<String>,
    /// The share of each account's Stripe rate limit to use, 0–1 (default 0.5: the rest is left
    /// for the account's own traffic).
    #[arg(long, value_name = "SHARE")]
    budget_share: Option<f64>,
    /// No pacing at all: for a local emulator only (refused for Stripe's own API).
    #[arg(long)]
    no_pacing: bool,
    /// How many times a failed Stripe request is retried (network errors, 409, 429, 5xx).
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
}

impl GlobalArgs {
    /// These options with those given after the command on top.
    pub fn with(&self, store: Option<&StoreOptions>, stripe: Option<&StripeOptions>) -> GlobalArgs {
        let mut merged = self.clone();
        if let Some(store) = store {
            if let Some(database) = &store.database {
                merged.database = database.clone();
            }
            if let Some(file) = &store.master_key_file {
                merged.master_key_file = Some(file.clone());
            }
        }
        if let Some(stripe) = stripe {
            if let Some(base) = &stripe.api_base {
                merged.api_base = base.clone();
            }
            if let Some(share) = stripe.budget_share {
                merged.budget_share = share;
            }
            merged.no_pacing |= stripe.no_pacing;
            if let Some(retries) = stripe.max_retries {
                merged.max_retries = retries;
            }
        }
        merged
    }
}

impl GlobalArgs {
    /// Opens the store (creating and migrating it) and the vault.
    pub fn engine(&self) -> Result<Engine, CliError> {
        if !(self.budget_share > 0.0 && self.budget_share <= 1.0) {
            return Err(CliError::from(
                EngineError::invalid(format!(
                    "--budget-share must be above 0 and at most 1 (a share of Stripe's rate limit), not {}",
                    self.budget_share
                ))
                .hint("against a local emulator, --no-pacing turns pacing off"),
            ));
        }
        sm_engine::check_api_base(self.api_base.trim_end_matches('/')).map_err(CliError::from)?;
        let store =
            sm_warehouse::open(&self.database).map_err(|e| CliError::from(EngineError::from(e)))?;
        let env_key = std::env::var("STRIPE_MIRROR_MASTER_KEY").ok();
        let key_file = self.master_key_file();
        if env_key.is_none()
            && self.master_key_file.is_none()
            && let Some(warning) = sm_engine::vault::default_key_location(&self.database).warning
        {
            tell!("warning: {warning}");
        }
        let vault = Vault::open(env_key.as_deref(), &key_file)
            .map_err(|e| CliError::from(EngineError::from(e)))?;
        let config = EngineConfig {
            api_base: self.api_base.trim_end_matches('/').to_owned(),
            budget_share: if self.no_pacing {
                f64::INFINITY
            } else {
                self.budget_share
            },
            max_retries: self.max_retries,
        };
        let engine = Engine::new(Arc::from(store), vault, config);
        engine.bind_sealed_values().map_err(CliError::from)?;
        Ok(engine)
    }
}

impl GlobalArgs {
    /// The SQLite files that opening the engine would create now (none for Postgres or files
    /// that exist), so that a failed first command can take them back.
    pub fn absent_database_files(&self) -> Vec<std::path::PathBuf> {
        if self.database.starts_with("postgres") {
            return Vec::new();
        }
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", self.database)))
            .filter(|path| !path.exists())
            .collect()
    }

    /// The master key file in use: the one named, else the key's home.
    pub fn master_key_file(&self) -> std::path::PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| sm_engine::vault::default_key_location(&self.database).path)
    }
}

/// Prints a value as JSON (pretty for people reading `--json` output in a terminal is not needed:
/// one line per answer keeps it easy to pipe).
pub fn print_json(value: &serde_json::Value) {
    say!("{value}");
}

/// A `yes/no` question on the terminal: `Some(answer)`, or `None` when there is no terminal
/// to ask on.
pub fn confirm(question: &str) -> Option<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Some(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// No terminal to ask on, and no `--yes`.
pub fn not_confirmed(what: &str) -> CliError {
    CliError::from(
        EngineError::new(
            ErrorCode::InvalidInput,
            format!("not confirmed (no terminal to ask on): {what}"),
        )
        .hint("pass --yes to confirm without a question"),
    )
}

/// `config`: each setting's effective value and where it came from.
pub fn show_config(
    global: &GlobalArgs,
    loaded: &crate::config_file::Loaded,
    matches: &clap::ArgMatches,
) -> Result<(), CliError> {
    use crate::config_file::{SETTINGS, Source, masked};
    let file = loaded
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none)".into());
    let rows: Vec<[String; 4]> = SETTINGS
        .iter()
        .map(|setting| {
            // The settings that are also options before the command.
            let top_level = [
                "database",
                "api_base",
                "master_key_file",
                "budget_share",
                "no_pacing",
                "max_retries",
            ];
            let flag = top_level.contains(&setting.name)
                && matches.value_source(setting.name)
                    == Some(clap::parser::ValueSource::CommandLine);
            let (value, source) = if flag {
                let value = match setting.name {
                    "database" => global.database.clone(),
                    "api_base" => global.api_base.clone(),
                    "master_key_file" => global
                        .master_key_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    "budget_share" => global.budget_share.to_string(),
                    "no_pacing" => global.no_pacing.to_string(),
                    "max_retries" => global.max_retries.to_string(),
                    _ => String::new(),
                };
                (value, "flag".to_owned())
            } else {
                match loaded
                    .provided
                    .iter()
                    .find(|(name, _)| *name == setting.name)
                {
                    Some((_, source)) => (
                        std::env::var(setting.env).unwrap_or_default(),
                        match source {
                            Source::Environment => format!("environment ({})", setting.env),
                            Source::File => format!("file ({file})"),
                        },
                    ),
                    None => (setting.default.to_owned(), "default".to_owned()),
                }
            };
            [
                setting.name.to_owned(),
                masked(&value),
                source,
                setting.about.to_owned(),
            ]
        })
        .collect();
    if global.json {
        let settings: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|[name, value, source, _]| {
                (
                    name.clone(),
                    serde_json::json!({"value": value, "from": source}),
                )
            })
            .collect();
        print_json(&serde_json::json!({"file": loaded.path, "settings": settings}));
        return Ok(());
    }
    say!("configuration file: {file}");
    crate::accounts_cmd::print_table(&["SETTING", "VALUE", "FROM", "WHAT"], &rows);
    Ok(())
}
