//! The boundary around a user's SQL (`Store::sandboxed_query`: the CLI's `sql`, the REST API,
//! agent tools): what it may read, and the limits it runs under. Each backend enforces it with
//! its own means — SQLite with a read-only connection, an authorizer and a progress handler;
//! Postgres with a role that may only SELECT these tables — and both answer the same errors.

use std::time::Duration;

use crate::schema::TABLES;

/// How long a query may run before it is stopped.
pub const TIME_LIMIT: Duration = crate::QUERY_TIME_LIMIT;
/// Rows a query may answer; past this it is refused (add `LIMIT`, or read the database with
/// its own client).
pub const ROW_LIMIT: usize = 10_000;
/// Bytes of values a query may answer.
pub const BYTE_LIMIT: usize = 64 * 1024 * 1024;
/// Memory a SQLite query may take beyond what the process held when it started.
pub const MEMORY_LIMIT: i64 = 256 * 1024 * 1024;
/// The longest string or blob a SQLite query may build.
pub const VALUE_LIMIT: i32 = 32 * 1024 * 1024;

/// The columns of `accounts` a query may not read: the sealed key and webhook secret.
pub const SEALED_COLUMNS: &[&str] = &["key_sealed", "webhook_secret_sealed"];

/// The mirror's tables a user's SQL may read: every resource table, `events`, `runs` and
/// `accounts` (without its sealed columns). Not `api_tokens`, `cursors`, `sync_state` or
/// `stripe_mirror_meta`: the program's own bookkeeping.
pub fn readable_tables() -> impl Iterator<Item = &'static str> {
    TABLES
        .iter()
        .map(|t| t.name)
        .chain(["events", "runs", "accounts"])
}

/// Whether `table` is one a user's SQL may read.
pub fn readable(table: &str) -> bool {
    readable_tables().any(|t| t.eq_ignore_ascii_case(table))
}

/// What a read of a sealed column says (`SELECT *` reads them too).
pub fn refused_sealed() -> String {
    format!(
        "the sealed columns of accounts ({}) cannot be read here; name the columns you want instead of *",
        SEALED_COLUMNS.join(", ")
    )
}

/// Postgres functions refused by name before a query runs, whatever the reader role may do:
/// sleeps, locks, other connections, files, large objects, settings, transaction ids, and
/// functions that run a query given as text (which would hide the others). The role is the
/// boundary; this list keeps a token holder from holding locks or connections for the
/// length of the time limit.
pub const POSTGRES_REFUSED_FUNCTIONS: &[&str] = &[
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "dblink",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_exec",
    "dblink_send_query",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "lo_open",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_from_bytea",
    "loread",
    "lowrite",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_notify",
    "txid_current",
    "pg_current_xact_id",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "ts_stat",
    "pg_logical_emit_message",
    "pg_switch_wal",
    "pg_create_restore_point",
];

/// The first refused function a Postgres query names, if any: every word of the text, quoted or
/// not, compared case-insensitively (a string that merely mentions one is refused too).
pub fn postgres_refused_function(sql: &str) -> Option<&'static str> {
    sql.to_ascii_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find_map(|word| {
            POSTGRES_REFUSED_FUNCTIONS
                .iter()
                .find(|f| **f == word)
                .copied()
        })
}

/// Why a query stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Time,
    Memory,
    Rows,
    Bytes,
}

impl Limit {
    /// The error a query that reached this limit answers.
    pub fn error(self) -> crate::StoreError {
        crate::StoreError::QueryLimit(match self {
            Limit::Time => format!(
                "the query ran longer than {} s and was stopped",
                TIME_LIMIT.as_secs()
            ),
            Limit::Memory => format!(
                "the query needed more than {} MiB of memory and was stopped",
                MEMORY_LIMIT / (1024 * 1024)
            ),
            Limit::Rows => format!(
                "the query answers more than {ROW_LIMIT} rows: add LIMIT, or aggregate (count, sum …)"
            ),
            Limit::Bytes => format!(
                "the query answers more than {} MiB: select fewer columns or rows",
                BYTE_LIMIT / (1024 * 1024)
            ),
        })
    }
}

/// The program's own bookkeeping tables, which a user's SQL may not read.
pub const BOOKKEEPING: &[&str] = &[
    "api_tokens",
    "cursors",
    "sync_state",
    "stripe_mirror_meta",
    "inbox",
    "notify_channels",
    "notify_rules",
    "notify_queue",
    "notify_deliveries",
    "sync_leases",
];

/// What a refused read of a bookkeeping table says.
pub fn refused_table(table: &str) -> String {
    format!(
        "the table {table} cannot be read here: it is the program's own bookkeeping (token hashes, cursors, settings, notification channels)"
    )
}

/// SQLite functions a user's SQL may call: core scalar, aggregate, window, date, math and JSON
/// functions. Everything else (`load_extension`, `fts3_tokenizer`, `sqlite_compileoption_*`,
/// anything an extension adds) is refused.
pub const SQLITE_FUNCTIONS: &[&str] = &[
    // Core scalar.
    "abs",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "ifnull",
    "iif",
    "if",
    "instr",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "octet_length",
    "printf",
    "quote",
    "random",
    "randomblob",
    "replace",
    "round",
    "rtrim",
    "sign",
    "soundex",
    "substr",
    "substring",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unistr",
    "unistr_quote",
    "unlikely",
    "upper",
    "zeroblob",
    "sqlite_version",
    // Aggregate.
    "avg",
    "count",
    "group_concat",
    "string_agg",
    "sum",
    "total",
    "median",
    "percentile",
    // Window.
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // Date and time.
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
    "current_date",
    "current_time",
    "current_timestamp",
    // Math.
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // JSON.
    "json",
    "jsonb",
    "json_array",
    "jsonb_array",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "jsonb_extract",
    "->",
    "->>",
    "json_insert",
    "jsonb_insert",
    "json_object",
    "jsonb_object",
    "json_patch",
    "jsonb_patch",
    "json_pretty",
    "json_remove",
    "jsonb_remove",
    "json_replace",
    "jsonb_replace",
    "json_set",
    "jsonb_set",
    "json_type",
    "json_valid",
    "json_quote",
    "json_group_array",
    "jsonb_group_array",
    "json_group_object",
    "jsonb_group_object",
    "json_each",
    "json_tree",
    "jsonb_each",
    "jsonb_tree",
];

/// Table-valued functions a SQLite query may read from as if they were tables.
pub const SQLITE_TABLE_FUNCTIONS: &[&str] = &["json_each", "json_tree", "jsonb_each", "jsonb_tree"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_is_not_readable_and_the_mirror_is() {
        assert!(readable("customers"));
        assert!(readable("EVENTS"));
        assert!(readable("accounts"));
        for table in BOOKKEEPING {
            assert!(!readable(table), "{table}");
        }
    }
}
