//! `tables`: every table of the mirror with its typed columns (what to filter on without
//! `json_extract`), the Stripe object it holds and the permission that fills it. The README's
//! table list is this command's `--markdown` output, checked by a test.

use serde_json::json;
use sm_engine::catalog::RESOURCES;
use sm_warehouse::schema::{ColumnType, Table, table};

use crate::CliError;
use crate::context::{GlobalArgs, print_json};

#[derive(Debug, clap::Args)]
pub struct TablesArgs {
    /// Print a Markdown table (as in the README).
    #[arg(long)]
    markdown: bool,
}

/// Columns every resource table has, before its typed ones.
const CORE_COLUMNS: &str = "account_id, id, livemode, created, deleted, data (the object as JSON), version, synced_at, parent_id";
/// The events table's columns.
const EVENT_COLUMNS: &str =
    "account_id, id, livemode, type, created, object_id, data (the event as JSON), received_at";

fn type_name(column_type: ColumnType) -> &'static str {
    match column_type {
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::Boolean => "boolean",
        ColumnType::Real => "real",
    }
}

/// `name type` for each typed column, with the JSON path where it differs from the name.
fn typed_columns(t: &Table) -> Vec<String> {
    t.columns
        .iter()
        .map(|c| {
            let from = if c.path == c.name {
                String::new()
            } else {
                format!(" ← {}", c.path)
            };
            format!("{} {}{from}", c.name, type_name(c.sql_type))
        })
        .collect()
}

/// The README's list of tables.
pub fn markdown() -> String {
    let mut text = format!(
        "Every table below also has the columns {CORE_COLUMNS}; primary key (account_id, id).\n\n\
         | table | Stripe object | typed columns | filled with |\n|---|---|---|---|\n"
    );
    for resource in RESOURCES {
        let Some(t) = table(resource.table) else {
            continue;
        };
        text.push_str(&format!(
            "| `{}` | `{}` | {} | `{}` |\n",
            t.name,
            resource.object,
            typed_columns(t).join(", "),
            resource.permission
        ));
    }
    text.push_str(&format!(
        "| `events` | `event` | {EVENT_COLUMNS} | `rak_event_read` |\n"
    ));
    text
}

pub fn tables(global: &GlobalArgs, args: TablesArgs) -> Result<(), CliError> {
    if global.json {
        let list: Vec<serde_json::Value> = RESOURCES
            .iter()
            .filter_map(|r| table(r.table).map(|t| (r, t)))
            .map(|(r, t)| {
                json!({
                    "table": t.name,
                    "object": r.object,
                    "permission": r.permission,
                    "columns": t.columns.iter().map(|c| json!({"name": c.name, "type": type_name(c.sql_type), "json_path": c.path})).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(
            &json!({"core_columns": CORE_COLUMNS, "tables": list, "events_columns": EVENT_COLUMNS}),
        );
        return Ok(());
    }
    if args.markdown {
        say!("{}", markdown().trim_end());
        return Ok(());
    }
    say!("Every table has: {CORE_COLUMNS}.");
    say!(
        "Typed columns to filter on (text, integer, boolean, real; ← the JSON path they come from):\n"
    );
    for resource in RESOURCES {
        if let Some(t) = table(resource.table) {
            say!("{:<30} {}", t.name, typed_columns(t).join(", "));
        }
    }
    say!("{:<30} {EVENT_COLUMNS}", "events");
    say!("\nAny other field: json_extract(data, '$.field') on SQLite, data->>'field' on Postgres.");
    Ok(())
}
