//! `token create|list|revoke`: API tokens for the REST API (`serve`). A token is printed once,
//! when made, and kept only as its hash.

use serde_json::json;
use sm_engine::ops::tokens;

use crate::CliError;
use crate::accounts_cmd::print_table;
use crate::context::{GlobalArgs, StoreOptions, print_json};
use crate::sync_cmd::format_time;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, clap::Subcommand)]
enum TokenAction {
    /// Make a token (printed once: keep it in a secret store).
    Create {
        /// Its name, to list and revoke it by.
        #[arg(long)]
        name: String,
        /// It may read, never change anything.
        #[arg(long)]
        read_only: bool,
    },
    /// The tokens there are (names and scopes, never the tokens).
    List,
    /// Revoke a token: requests with it are refused from now on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub async fn token(global: &GlobalArgs, args: TokenArgs) -> Result<(), CliError> {
    let engine = global.engine()?;
    match args.action {
        TokenAction::Create { name, read_only } => {
            let made = tokens::create(&engine, &name, read_only).await?;
            if global.json {
                print_json(
                    &json!({"name": made.record.name, "read_only": read_only, "token": *made.secret}),
                );
            } else {
                say!("{}", *made.secret);
                tell!(
                    "made the {} token \"{}\": it is shown this once; requests send it as `Authorization: Bearer …`",
                    if read_only { "read-only" } else { "read-write" },
                    made.record.name
                );
            }
        }
        TokenAction::List => {
            let all = tokens::list(&engine).await?;
            if global.json {
                print_json(&json!(all));
            } else if all.is_empty() {
                say!("No tokens. Make one: stripe-mirror token create --name NAME");
            } else {
                let rows: Vec<[String; 3]> = all
                    .iter()
                    .map(|t| {
                        [
                            t.name.clone(),
                            if t.read_only {
                                "read-only"
                            } else {
                                "read-write"
                            }
                            .into(),
                            format_time(t.created_at),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "SCOPE", "CREATED (UTC)"], &rows);
            }
        }
        TokenAction::Revoke { name } => {
            tokens::revoke(&engine, &name).await?;
            if global.json {
                print_json(&json!({"revoked": name}));
            } else {
                say!("Revoked the token \"{name}\".");
            }
        }
    }
    Ok(())
}
