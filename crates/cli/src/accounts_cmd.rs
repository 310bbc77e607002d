//! `connect`, `accounts`, `permissions`, `key-link`, `update-key`, `rename`, `remove`,
//! `webhook-secret`, `set-api-version`: the commands around connected accounts. Each reads its
//! input, calls one operation (`sm_engine::ops::connections`), prints text or `--json`.

use serde_json::json;
use sm_engine::catalog::Feature;
use sm_engine::ops::connections::{
    self as connect, ConnectOptions, ConnectOutcome, KeyPolicy, PermissionReport,
};
use sm_engine::{EngineError, now};
use sm_stripe::{ApiKey, Mode};

use crate::CliError;
use crate::context::{GlobalArgs, confirm, not_confirmed, print_json};
use crate::key_input::KeySource;

fn parse_feature(text: &str) -> Result<Feature, String> {
    Feature::parse(text).ok_or_else(|| {
        format!("unknown feature `{text}`: choose from mirror, webhooks, agent-writes")
    })
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    match text.to_ascii_lowercase().as_str() {
        "test" => Ok(Mode::Test),
        "live" => Ok(Mode::Live),
        other => Err(format!("mode must be test or live, not {other}")),
    }
}

/// `YYYY-MM-DD` (UTC midnight) or a unix timestamp.
pub fn parse_date(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if !text.contains('-') {
        return Err(format!(
            "`{text}` is not a date: use YYYY-MM-DD (e.g. 2024-01-31) or a unix timestamp"
        ));
    }
    sm_stripe::http_date::parse_day(text)
        .ok_or_else(|| format!("`{text}` is not a date: use YYYY-MM-DD (e.g. 2024-01-31)"))
}

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    #[command(flatten)]
    pub stripe: crate::context::StripeOptions,
    #[command(flatten)]
    key: KeySource,
    /// Require a key of this mode.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// Require the key to belong to this account (acct_…).
    #[arg(long)]
    account: Option<String>,
    /// Refuse secret keys: only restricted keys (rk_…) are accepted.
    #[arg(long)]
    restricted_only: bool,
    /// Refuse test keys.
    #[arg(long)]
    live_only: bool,
    /// The Stripe API version to keep the mirror in (default 2023-08-16; from 2020-08-27 up to,
    /// not including, 2025-03-31).
    #[arg(long, value_name = "VERSION")]
    api_version: Option<String>,
    /// What the key is for (mirror, webhooks, agent-writes): connect says what those lack.
    #[arg(long, value_delimiter = ',', default_value = "mirror", value_parser = parse_feature)]
    features: Vec<Feature>,
    /// A name for this connection (default: the account's name in Stripe).
    #[arg(long)]
    name: Option<String>,
    /// How far back to mirror: YYYY-MM-DD or a unix time (default: all history).
    #[arg(long, value_parser = parse_date)]
    start_date: Option<i64>,
    /// The signing secret of a webhook endpoint you made by hand (a file holding whsec_…).
    #[arg(long, value_name = "PATH")]
    webhook_secret_file: Option<std::path::PathBuf>,
}

fn parse_key(text: &str) -> Result<ApiKey, CliError> {
    ApiKey::parse(text).map_err(|e| CliError::from(EngineError::from(e)))
}

/// `features`: what the key is for; what the others would need is left to `permissions`.
fn print_outcome(global: &GlobalArgs, verb: &str, outcome: &ConnectOutcome, features: &[Feature]) {
    if global.json {
        print_json(
            &json!({"account": outcome.account, "permissions": outcome.permissions, "events_fetched": outcome.events_fetched}),
        );
        return;
    }
    let a = &outcome.account;
    say!(
        "{verb} \"{}\" ({}) with {} key {}",
        a.name,
        a.label,
        a.key_kind,
        a.key
    );
    say!("  permissions: {}", outcome.permissions.summary());
    for &feature in features {
        let missing = outcome.permissions.missing(feature);
        if !missing.is_empty() {
            say!("  {}: missing {}", feature.name(), missing.join(", "));
        }
    }
    if outcome.events_fetched > 0 {
        say!("  fetched the {} latest events", outcome.events_fetched);
    }
    say!("  next: stripe-mirror permissions {}   (details)", a.label);
}

pub async fn connect(global: &GlobalArgs, args: ConnectArgs) -> Result<(), CliError> {
    // The key's shape is checked before anything is opened or sent.
    let args_features = args.features.clone();
    let text = args.key.read()?;
    let key = parse_key(&text)?;
    let policy = KeyPolicy {
        expect_mode: args.mode,
        expect_account: args.account,
        restricted_only: args.restricted_only,
        live_only: args.live_only,
    };
    policy.check_shape(&key)?;
    // A first connect that fails leaves nothing behind: not the database it made, nor the key
    // file it made; never a file that was there before or that another process made meanwhile.
    let absent = global.absent_database_files();
    let engine = match global.engine() {
        Ok(engine) => engine,
        Err(error) => {
            take_back(global, absent, None);
            return Err(error);
        }
    };
    let result = async {
        let webhook_secret = match &args.webhook_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        CliError::usage(format!("could not read {}: {e}", path.display()))
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            None => None,
        };
        let options = ConnectOptions {
            policy,
            name: args.name,
            start_date: args.start_date,
            webhook_secret,
            api_version: args.api_version,
        };
        Ok::<_, CliError>(connect::connect(&engine, key, options).await?)
    }
    .await;
    match result {
        Ok(outcome) => {
            print_outcome(global, "Connected", &outcome, &args_features);
            Ok(())
        }
        Err(error) => {
            let key_file = engine
                .vault
                .created_key_file
                .then(|| global.master_key_file());
            drop(engine);
            take_back(global, absent, key_file);
            Err(error)
        }
    }
}

/// After a failed first connect: removes the database files that were absent before it, and the
/// key file it made itself, but only while the database holds no connection (another process
/// may have connected one meanwhile, sealed with that key).
fn take_back(
    global: &GlobalArgs,
    absent: Vec<std::path::PathBuf>,
    key_file: Option<std::path::PathBuf>,
) {
    if absent.is_empty() && key_file.is_none() {
        return;
    }
    let holds_nothing = match sm_warehouse::open(&global.database) {
        Ok(store) => store.accounts().map(|a| a.is_empty()).unwrap_or(false),
        // A database that cannot be opened is not judged: it stays.
        Err(_) => false,
    };
    if !holds_nothing {
        return;
    }
    for path in absent.into_iter().chain(key_file) {
        let _ = std::fs::remove_file(path);
    }
}

pub async fn accounts(global: &GlobalArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let summaries = sm_engine::ops::connections::list(&engine).await?;
    if global.json {
        print_json(&json!(summaries));
        return Ok(());
    }
    if summaries.is_empty() {
        say!("No connected accounts. Connect one: STRIPE_API_KEY=rk_… stripe-mirror connect");
        return Ok(());
    }
    let rows: Vec<[String; 7]> = summaries
        .iter()
        .map(|s| {
            let last = s
                .last_sync
                .map(|t| format!("{} ago", ago(now() - t)))
                .unwrap_or_else(|| "never".into());
            [
                s.name.clone(),
                s.label.clone(),
                format!("{} {}", s.key_kind, s.key),
                s.permissions.clone(),
                last,
                s.status_words.clone(),
                s.mode.to_owned(),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "ACCOUNT",
            "KEY",
            "PERMISSIONS",
            "LAST SYNC",
            "STATUS",
            "MODE",
        ],
        &rows,
    );
    Ok(())
}

fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

/// Prints aligned columns; the last column may be long.
pub fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        say!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[derive(Debug, clap::Args)]
pub struct AccountArg {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
}

pub async fn permissions(global: &GlobalArgs, args: AccountArg) -> Result<(), CliError> {
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    if global.json {
        print_json(&connect::permissions_json(&record));
        return Ok(());
    }
    let report = PermissionReport::from_json(&record.permissions);
    say!(
        "\"{}\" ({}), key {} — {}",
        record.name,
        record.connection.label(),
        record.key_masked,
        report.summary()
    );
    say!("\nRead (mirror):");
    let reads: Vec<[String; 3]> = report
        .reads
        .iter()
        .map(|r| {
            [
                if r.allowed { "yes".into() } else { "NO".into() },
                r.table.clone(),
                r.permission.clone(),
            ]
        })
        .collect();
    print_table(&["READ", "RESOURCE", "PERMISSION"], &reads);
    say!(
        "  events: {} (rak_event_read)",
        if report.events { "yes" } else { "NO" }
    );
    say!("\nWrite (agent tools):");
    let writes: Vec<[String; 3]> = report
        .writes
        .iter()
        .map(|w| {
            [
                if w.allowed { "yes".into() } else { "NO".into() },
                w.operation.clone(),
                w.permission.clone(),
            ]
        })
        .collect();
    print_table(&["WRITE", "OPERATION", "PERMISSION"], &writes);
    say!("\nFeatures:");
    for feature in Feature::ALL {
        let missing = report.missing(feature);
        if missing.is_empty() {
            say!("  {:<13} ready", feature.name());
        } else {
            say!("  {:<13} missing {}", feature.name(), missing.join(", "));
        }
    }
    let all_missing: Vec<String> = Feature::ALL
        .iter()
        .flat_map(|f| report.missing(*f))
        .collect();
    if !all_missing.is_empty() {
        say!(
            "\nA key with everything: stripe-mirror key-link --mode {} --features mirror,webhooks,agent-writes",
            if record.connection.livemode {
                "live"
            } else {
                "test"
            }
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct KeyLinkArgs {
    /// Test or live dashboard.
    #[arg(long, value_parser = parse_mode, default_value = "test")]
    mode: Mode,
    /// Features the key is for, comma-separated: mirror, webhooks, agent-writes.
    #[arg(long, value_delimiter = ',', default_value = "mirror")]
    features: Vec<String>,
}

pub fn key_link(global: &GlobalArgs, args: KeyLinkArgs) -> Result<(), CliError> {
    let link = sm_engine::ops::connections::key_link_for(args.mode, &args.features)?;
    if global.json {
        print_json(&json!(link));
        return Ok(());
    }
    say!(
        "Create a restricted key with exactly these permissions ({}):",
        args.features.join(", ")
    );
    say!("\n  {}\n", link.url);
    say!("The dashboard may ignore the pre-filled list; if so, tick these by hand:");
    for permission in link.permissions {
        say!("  {permission}");
    }
    say!("\nThen: stripe-mirror connect   (paste the key when asked, or set STRIPE_API_KEY)");
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct UpdateKeyArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    #[command(flatten)]
    pub stripe: crate::context::StripeOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
    #[command(flatten)]
    key: KeySource,
}

pub async fn update_key(global: &GlobalArgs, args: UpdateKeyArgs) -> Result<(), CliError> {
    let text = args.key.read()?;
    let key = parse_key(&text)?;
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let outcome = connect::update_key(&engine, &record.connection, key).await?;
    print_outcome(global, "Updated the key of", &outcome, &[Feature::Mirror]);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
    /// The new name.
    name: String,
}

pub async fn rename(global: &GlobalArgs, args: RenameArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let renamed =
        sm_engine::ops::connections::rename(&engine, &record.connection, &args.name).await?;
    if global.json {
        print_json(&json!(renamed));
    } else {
        say!(
            "Renamed {} from \"{}\" to \"{}\"",
            renamed.account,
            renamed.old_name,
            renamed.name
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct SetLogoArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
    /// An https:// URL of an image, a data:image/…;base64,… URL under 48 KiB, or `none` to go
    /// back to Stripe's icon (or initials).
    logo: String,
}

pub async fn set_logo(global: &GlobalArgs, args: SetLogoArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let logo = (args.logo.trim() != "none").then(|| args.logo.clone());
    let changed = sm_engine::ops::connections::set_logo(&engine, &record.connection, logo).await?;
    if global.json {
        print_json(&json!(changed));
    } else {
        match &changed.logo_url {
            Some(url) if url.starts_with("data:") => say!(
                "{} ({}) shows the image given ({} characters)",
                changed.name,
                changed.account,
                url.len()
            ),
            Some(url) => say!("{} ({}) shows {url}", changed.name, changed.account),
            None => say!(
                "{} ({}) shows its initials (Stripe gives no icon)",
                changed.name,
                changed.account
            ),
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    #[command(flatten)]
    pub stripe: crate::context::StripeOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
    /// Do not ask.
    #[arg(long)]
    yes: bool,
}

pub async fn remove(global: &GlobalArgs, args: RemoveArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let question = format!(
        "Remove \"{}\" (account {}, {} mode) and every row of its data?",
        record.name,
        record.connection.account_id,
        if record.connection.livemode {
            "live"
        } else {
            "test"
        }
    );
    if !args.yes {
        match confirm(&question) {
            Some(true) => {}
            Some(false) => {
                say!("Nothing removed.");
                return Ok(());
            }
            None => return Err(not_confirmed(&question)),
        }
    }
    let outcome = connect::remove(&engine, &record.connection).await?;
    if global.json {
        print_json(&json!(outcome));
    } else {
        say!(
            "Removed \"{}\" ({}): {} rows deleted",
            record.name,
            outcome.label,
            outcome.rows_deleted
        );
        if let Some(endpoint) = &outcome.webhook_endpoint_deleted {
            say!("  deleted its webhook endpoint {endpoint}");
        }
        if let Some(warning) = &outcome.webhook_warning {
            say!("  warning: {warning}");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct WebhookSecretArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
    /// A file holding the endpoint's signing secret (whsec_…).
    #[arg(long, value_name = "PATH", conflicts_with = "secret_stdin")]
    secret_file: Option<std::path::PathBuf>,
    /// Read the signing secret from standard input.
    #[arg(long)]
    secret_stdin: bool,
    /// Keep accepting the secret in use beside the new one (a roll in the Stripe dashboard signs
    /// with both for a while); without it, the new secret replaces the old.
    #[arg(long)]
    keep_old: bool,
}

/// `webhook-secret`: sets or rolls a connection's webhook signing secret; its data is untouched.
pub async fn webhook_secret(global: &GlobalArgs, args: WebhookSecretArgs) -> Result<(), CliError> {
    let text = match (&args.secret_file, args.secret_stdin) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("could not read {}: {e}", path.display())))?,
        (None, true) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| CliError::usage(format!("could not read standard input: {e}")))?;
            text
        }
        (None, false) => {
            return Err(CliError::usage(
                "give the signing secret with --secret-file PATH or --secret-stdin (it is never taken from the command line)",
            ));
        }
    };
    let secret = zeroize::Zeroizing::new(text.trim().to_owned());
    let engine = global.engine()?;
    let record = engine.resolve(&args.account).await?;
    let accepted =
        connect::set_webhook_secret(&engine, &record.connection, &secret, args.keep_old).await?;
    if global.json {
        print_json(&json!({"account": record.connection.label(), "secrets_accepted": accepted}));
    } else {
        say!(
            "Set the webhook signing secret of \"{}\" ({}){}; a running serve uses it at the next delivery.",
            record.name,
            record.connection.label(),
            if accepted > 1 {
                " — the previous one is still accepted until the next change"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ApiVersionArgs {
    #[command(flatten)]
    pub store: crate::context::StoreOptions,
    /// The connection: its name, acct_…, or acct_…:test|live.
    account: String,
    /// The version to keep the mirror in, e.g. 2024-06-20.
    version: String,
}

/// `set-api-version`: keeps a connection's mirror in another API version (its next sync lists
/// every table again).
pub async fn set_api_version(global: &GlobalArgs, args: ApiVersionArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    // Not beside a running sync or serve: it would go on writing in the old version.
    let _runner =
        sm_engine::runner_lock::acquire(&global.database, "stripe-mirror set-api-version", false)
            .await?;
    let record = engine.resolve(&args.account).await?;
    let change = connect::set_api_version(&engine, &record.connection, &args.version).await?;
    if global.json {
        print_json(&json!(change));
    } else if change.changed {
        say!(
            "\"{}\" ({}) is now kept in API version {} (was {}): the next sync lists every table again in it; nothing is deleted meanwhile.",
            record.name,
            change.account,
            change.version,
            change.previous
        );
    } else {
        say!(
            "\"{}\" ({}) is already kept in API version {}: nothing to do.",
            record.name,
            change.account,
            change.version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_utc_midnight() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2024-02-29"), Ok(1_709_164_800));
        assert_eq!(parse_date("1700000000"), Ok(1_700_000_000));
        assert!(parse_date("2024-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }
}
