//! `notify channel add|list|test|remove`, `notify rule add|list|remove`, `notify log`: where
//! notifications go, which events they are, and what was sent. `serve` sends them.

use std::io::BufRead;

use serde_json::json;
use sm_engine::ops::notify::{self, ChannelInput, RuleInput};

use crate::CliError;
use crate::accounts_cmd::print_table;
use crate::context::{GlobalArgs, StoreOptions, print_json};
use crate::sync_cmd::format_time;

#[derive(Debug, clap::Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    #[command(subcommand)]
    action: NotifyAction,
}

#[derive(Debug, clap::Subcommand)]
enum NotifyAction {
    /// Where messages go: Slack, Discord, Teams, ntfy, email, or a signed webhook.
    #[command(subcommand)]
    Channel(ChannelAction),
    /// Which events go to which channel.
    #[command(subcommand)]
    Rule(RuleAction),
    /// What was sent, when, and what failed (newest first).
    Log {
        /// Only this channel's messages.
        #[arg(long)]
        channel: Option<String>,
        /// Only these states: pending, digest, sent, rolled_up, failed, canceled (comma-separated).
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ChannelAction {
    /// Add a channel. Its URL (which for Slack, Discord and Teams is its secret) is sealed with
    /// the master key and shown masked from then on.
    #[command(after_help = "Examples:
  stripe-mirror notify channel add ops --kind slack --url-stdin < slack-url.txt
  STRIPE_MIRROR_CHANNEL_URL=https://discord.com/api/webhooks/… stripe-mirror notify channel add team --kind discord
  stripe-mirror notify channel add billing-hook --kind webhook --url https://example.com/stripe-notices
  stripe-mirror notify channel add phone --kind ntfy --url https://ntfy.sh/acme-payments
  stripe-mirror notify channel add finance --kind email --url-stdin --to finance@acme.com --from alerts@acme.com <<< 'smtp://alerts%40acme.com:PASSWORD@smtp.acme.com:587'")]
    Add {
        /// Its name, for rules and lists.
        name: String,
        /// slack, discord, teams, webhook, ntfy or email.
        #[arg(long)]
        kind: String,
        /// Where to send (a URL on the command line is visible to other users of this machine:
        /// prefer --url-stdin or the environment variable).
        #[arg(long, env = "STRIPE_MIRROR_CHANNEL_URL", hide_env_values = true)]
        url: Option<String>,
        /// Read the URL from the first line of standard input.
        #[arg(long, conflicts_with = "url")]
        url_stdin: bool,
        /// A webhook channel's Standard Webhooks secret (whsec_…); one is made and shown once
        /// when none is given.
        #[arg(long, env = "STRIPE_MIRROR_CHANNEL_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// An ntfy access token.
        #[arg(long, env = "STRIPE_MIRROR_NTFY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// An email channel's recipients (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        /// An email channel's sender (an address the server lets you send from).
        #[arg(long)]
        from: Option<String>,
        /// A PEM file of CA certificates the mail server's certificate may be signed by,
        /// beside the system's.
        #[arg(long)]
        ca_file: Option<std::path::PathBuf>,
    },
    /// The channels, their status and why one fails.
    List,
    /// Send a test message now; the channel is marked ok, or failing with the receiver's words.
    Test { name: String },
    /// Remove a channel with its rules; what it had not sent is canceled.
    Remove { name: String },
}

#[derive(Debug, clap::Subcommand)]
enum RuleAction {
    /// Add a rule: these events, from these accounts, to this channel.
    #[command(after_help = "Examples:
  stripe-mirror notify rule add payments --channel ops
  stripe-mirror notify rule add big-payments --channel ops --events charge.succeeded --min-amount 500usd
  stripe-mirror notify rule add acme-all --channel team --events 'charge.*,customer.subscription.*' --account Acme --test
  stripe-mirror notify rule add morning --channel ops --digest daily@09:00 --time-zone Europe/Paris
  stripe-mirror notify rule add nights --channel phone --quiet-hours 22:00-07:00 --time-zone America/New_York")]
    Add {
        name: String,
        /// The channel's name.
        #[arg(long)]
        channel: String,
        /// Event types (charge.succeeded, charge.*, *), comma-separated, or `default`: payment
        /// succeeded and failed, refund, dispute opened, subscription created and canceled,
        /// payout failed, early fraud warning.
        #[arg(long)]
        events: Option<String>,
        /// One account (acct_… or a connection's name); every account when left out.
        #[arg(long)]
        account: Option<String>,
        /// Test-mode events too (marked [test]); live only when left out.
        #[arg(long)]
        test: bool,
        /// Leave out smaller amounts: 50 (in each event's currency) or 49.99usd (that currency
        /// only). Events without an amount are sent.
        #[arg(long)]
        min_amount: Option<String>,
        /// Hold messages during these local hours (22:00-07:00), then send them.
        #[arg(long)]
        quiet_hours: Option<String>,
        /// One digest instead of a message per event: daily@09:00 or weekly@mon09:00.
        #[arg(long)]
        digest: Option<String>,
        /// The time zone of --quiet-hours and --digest: an IANA name (Europe/Paris, following
        /// its clock changes) or an offset (+01:00); UTC when left out.
        #[arg(long, visible_alias = "utc-offset", allow_hyphen_values = true)]
        time_zone: Option<String>,
    },
    /// The rules, in words.
    List,
    /// Remove a rule; what it had not sent is canceled.
    Remove { name: String },
}

fn read_first_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("could not read the URL from standard input: {e}")))?;
    Ok(line.trim().to_owned())
}

pub async fn notify(global: &GlobalArgs, args: NotifyArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    match args.action {
        NotifyAction::Channel(ChannelAction::Add {
            name,
            kind,
            url,
            url_stdin,
            secret,
            token,
            to,
            from,
            ca_file,
        }) => {
            let ca_pem = match ca_file {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    CliError::io(format!("could not read {}: {e}", path.display()))
                })?),
                None => None,
            };
            let url = match (url, url_stdin) {
                (_, true) => read_first_line()?,
                (Some(url), false) => url,
                (None, false) => {
                    return Err(CliError::usage(
                        "give the channel's URL: --url-stdin (safest), STRIPE_MIRROR_CHANNEL_URL, or --url",
                    ));
                }
            };
            let added = notify::add_channel(
                &engine,
                ChannelInput {
                    name,
                    kind,
                    url,
                    secret,
                    token,
                    to,
                    from,
                    ca_pem,
                },
            )
            .await?;
            if global.json {
                print_json(&json!(added));
            } else {
                say!(
                    "Added the {} channel \"{}\" ({}).",
                    added.channel.kind,
                    added.channel.name,
                    added.channel.target
                );
                if let Some(secret) = &added.signing_secret {
                    say!("{secret}");
                    tell!(
                        "that is its signing secret, shown this once: the receiver checks each message's webhook-signature with it (Standard Webhooks)"
                    );
                }
                tell!(
                    "next: `stripe-mirror notify channel test {}`, then a rule: `stripe-mirror notify rule add NAME --channel {}`",
                    added.channel.name,
                    added.channel.name
                );
            }
        }
        NotifyAction::Channel(ChannelAction::List) => {
            let all = notify::channels(&engine).await?;
            if global.json {
                print_json(&json!(all));
            } else if all.is_empty() {
                say!(
                    "No channels. Add one: stripe-mirror notify channel add NAME --kind slack --url-stdin"
                );
            } else {
                let rows: Vec<[String; 5]> = all
                    .iter()
                    .map(|c| {
                        [
                            c.name.clone(),
                            c.kind.clone(),
                            c.target.clone(),
                            match &c.status_message {
                                Some(why) => format!("{}: {why}", c.status),
                                None => c.status.clone(),
                            },
                            c.rules.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "KIND", "SENDS TO", "STATUS", "RULES"], &rows);
            }
        }
        NotifyAction::Channel(ChannelAction::Test { name }) => {
            let outcome = notify::test_channel(&engine, &name).await?;
            if let Some(refusal) = outcome.refusal() {
                return Err(refusal.into());
            }
            if global.json {
                print_json(&json!(outcome));
            } else {
                say!(
                    "Sent a test message to \"{}\": it was taken.",
                    outcome.channel.name
                );
            }
        }
        NotifyAction::Channel(ChannelAction::Remove { name }) => {
            let rules = notify::remove_channel(&engine, &name).await?;
            if global.json {
                print_json(&json!({"removed": name, "rules_removed": rules}));
            } else {
                say!("Removed the channel \"{name}\" and its {rules} rule(s).");
            }
        }
        NotifyAction::Rule(RuleAction::Add {
            name,
            channel,
            events,
            account,
            test,
            min_amount,
            quiet_hours,
            digest,
            time_zone,
        }) => {
            let rule = notify::add_rule(
                &engine,
                RuleInput {
                    name,
                    channel,
                    events,
                    account,
                    include_test: test,
                    min_amount,
                    quiet_hours,
                    digest,
                    time_zone,
                },
            )
            .await?;
            if global.json {
                print_json(&json!(rule));
            } else {
                say!(
                    "Added the rule \"{}\" → {}: {}.",
                    rule.name,
                    rule.channel,
                    rule.description
                );
                tell!(
                    "`stripe-mirror serve` sends what it matches from now on (never a backfill's events)"
                );
            }
        }
        NotifyAction::Rule(RuleAction::List) => {
            let all = notify::rules(&engine).await?;
            if global.json {
                print_json(&json!(all));
            } else if all.is_empty() {
                say!("No rules. Add one: stripe-mirror notify rule add NAME --channel CHANNEL");
            } else {
                let rows: Vec<[String; 3]> = all
                    .iter()
                    .map(|r| [r.name.clone(), r.channel.clone(), r.description.clone()])
                    .collect();
                print_table(&["NAME", "CHANNEL", "SENDS"], &rows);
            }
        }
        NotifyAction::Rule(RuleAction::Remove { name }) => {
            notify::remove_rule(&engine, &name).await?;
            if global.json {
                print_json(&json!({"removed": name}));
            } else {
                say!("Removed the rule \"{name}\".");
            }
        }
        NotifyAction::Log {
            channel,
            state,
            limit,
        } => {
            let entries = notify::log(&engine, channel.as_deref(), state, limit).await?;
            if global.json {
                print_json(&json!(entries));
            } else if entries.is_empty() {
                say!("Nothing sent yet.");
            } else {
                let rows: Vec<[String; 6]> = entries
                    .iter()
                    .map(|e| {
                        [
                            format_time(e.finished_at.unwrap_or(e.created_at)),
                            e.channel.clone(),
                            e.event_type.clone(),
                            e.connection.clone(),
                            match e.state.as_str() {
                                "pending" | "digest" if e.attempts > 0 => {
                                    format!(
                                        "{} (try {} at {})",
                                        e.state,
                                        e.attempts + 1,
                                        format_time(e.due_at)
                                    )
                                }
                                "digest" => format!("digest at {}", format_time(e.due_at)),
                                other => other.to_owned(),
                            },
                            e.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "WHEN (UTC)",
                        "CHANNEL",
                        "EVENT",
                        "ACCOUNT",
                        "STATE",
                        "ERROR",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(())
}
