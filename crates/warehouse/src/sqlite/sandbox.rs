//! A user's SQL on SQLite, inside the boundary of `crate::sandbox`: a connection opened
//! read-only, an authorizer that allows reading the mirror's tables and calling harmless
//! functions and refuses everything else (ATTACH, PRAGMA, writes, bookkeeping tables), and a
//! progress handler that stops a query past its time or memory limit.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use rusqlite::OpenFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit as SqliteLimit;

use crate::sandbox::{
    BYTE_LIMIT, Limit, MEMORY_LIMIT, ROW_LIMIT, SEALED_COLUMNS, SQLITE_FUNCTIONS,
    SQLITE_TABLE_FUNCTIONS, TIME_LIMIT, VALUE_LIMIT,
};
use crate::{Result, StoreError, ValuesResult};

/// Virtual machine steps between two looks at the clock and the memory in use.
const STEPS_BETWEEN_CHECKS: i32 = 10_000;

/// One sandboxed connection, and what its hooks report.
pub(super) struct Sandbox {
    db: rusqlite::Connection,
    /// Why the authorizer refused the statement being prepared.
    refusal: Arc<Mutex<Option<String>>>,
    /// The running query's deadline and memory ceiling, and the limit it reached.
    watch: Arc<Mutex<Watch>>,
}

struct Watch {
    deadline: Instant,
    memory_ceiling: i64,
    reached: Option<Limit>,
}

fn memory_in_use() -> i64 {
    // SAFETY: a plain read of SQLite's global counter.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

/// What the authorizer says to one action of a statement being prepared.
fn authorize(context: &AuthContext<'_>) -> std::result::Result<Authorization, String> {
    match context.action {
        AuthAction::Select | AuthAction::Recursive => Ok(Authorization::Allow),
        AuthAction::Read {
            table_name,
            column_name,
        } => {
            let table = table_name.to_ascii_lowercase();
            // No column: rows are counted, not read (`count(*)`), of a table or of a common
            // table expression, whose name is the user's.
            if column_name.is_empty() && !crate::sandbox::BOOKKEEPING.contains(&table.as_str()) {
                return Ok(Authorization::Allow);
            }
            if table == "accounts" && SEALED_COLUMNS.contains(&column_name) {
                return Err(crate::sandbox::refused_sealed());
            }
            if crate::sandbox::readable(&table)
                || SQLITE_TABLE_FUNCTIONS.contains(&table.as_str())
                || table == "sqlite_master"
                || table == "sqlite_schema"
            {
                Ok(Authorization::Allow)
            } else if crate::sandbox::BOOKKEEPING.contains(&table.as_str()) {
                Err(crate::sandbox::refused_table(&table))
            } else {
                Err(format!("reading {table} is not allowed here"))
            }
        }
        AuthAction::Function { function_name } => {
            let name = function_name.to_ascii_lowercase();
            if SQLITE_FUNCTIONS.contains(&name.as_str()) {
                Ok(Authorization::Allow)
            } else {
                Err(format!("the function {name}() is not allowed here"))
            }
        }
        AuthAction::Pragma { pragma_name, .. } => {
            Err(format!("PRAGMA {pragma_name} is not allowed here"))
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Err("ATTACH and DETACH are not allowed here".into())
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Err("transactions are not allowed here: send one SELECT".into())
        }
        _ => Err("only SELECT statements that read the mirror are allowed here".into()),
    }
}

impl Sandbox {
    /// Opens `path` read-only, with its limits and hooks in place.
    pub(super) fn open(path: &str) -> rusqlite::Result<Sandbox> {
        let mut db = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Sorts and temporary tables of a big query go to a temporary file, not to memory.
        db.execute_batch(
            "PRAGMA query_only = ON; PRAGMA cache_size = -2048; PRAGMA temp_store = FILE; PRAGMA trusted_schema = OFF;",
        )?;
        db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        db.set_limit(SqliteLimit::SQLITE_LIMIT_ATTACHED, 0)?;
        db.set_limit(SqliteLimit::SQLITE_LIMIT_LENGTH, VALUE_LIMIT)?;
        db.set_limit(SqliteLimit::SQLITE_LIMIT_SQL_LENGTH, 100_000)?;
        super::wait_when_busy(&mut db)?;
        let refusal = Arc::new(Mutex::new(None));
        let watch = Arc::new(Mutex::new(Watch {
            deadline: Instant::now(),
            memory_ceiling: i64::MAX,
            reached: None,
        }));
        let said = refusal.clone();
        db.authorizer(Some(move |context: AuthContext<'_>| {
            match authorize(&context) {
                Ok(answer) => answer,
                Err(why) => {
                    // The first refusal is the one the user needs to read.
                    said.lock().get_or_insert(why);
                    Authorization::Deny
                }
            }
        }))?;
        let watching = watch.clone();
        db.progress_handler(
            STEPS_BETWEEN_CHECKS,
            Some(move || {
                let mut watch = watching.lock();
                if Instant::now() > watch.deadline {
                    watch.reached = Some(Limit::Time);
                } else if memory_in_use() > watch.memory_ceiling {
                    watch.reached = Some(Limit::Memory);
                }
                watch.reached.is_some()
            }),
        )?;
        Ok(Sandbox { db, refusal, watch })
    }

    /// Runs one read-only query: column names and rows of typed values.
    pub(super) fn run(&mut self, sql: &str) -> Result<ValuesResult> {
        use serde_json::Value;
        *self.refusal.lock() = None;
        {
            let mut watch = self.watch.lock();
            watch.deadline = Instant::now() + TIME_LIMIT;
            watch.memory_ceiling = memory_in_use().saturating_add(MEMORY_LIMIT);
            watch.reached = None;
        }
        let failed = |error: rusqlite::Error,
                      refusal: &Mutex<Option<String>>,
                      watch: &Mutex<Watch>| {
            if let Some(why) = refusal.lock().take() {
                return StoreError::QueryRefused(why);
            }
            if let Some(limit) = watch.lock().reached {
                return limit.error();
            }
            match error {
                rusqlite::Error::MultipleStatement => StoreError::QueryRefused(
                    "send one statement at a time (found more than one)".into(),
                ),
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::TooBig => {
                    StoreError::QueryLimit(format!(
                        "a value grew past {} MiB and the query was stopped",
                        VALUE_LIMIT / (1024 * 1024)
                    ))
                }
                other => StoreError::BadQuery(other.to_string()),
            }
        };
        let (refusal, watch) = (self.refusal.clone(), self.watch.clone());
        let mut statement = self
            .db
            .prepare(sql)
            .map_err(|e| failed(e, &refusal, &watch))?;
        if !statement.readonly() {
            return Err(StoreError::QueryRefused(
                "only read-only queries (SELECT …) may be run here".into(),
            ));
        }
        let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let width = names.len();
        let mut rows = statement
            .query([])
            .map_err(|e| failed(e, &refusal, &watch))?;
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while let Some(row) = rows.next().map_err(|e| failed(e, &refusal, &watch))? {
            if out.len() == ROW_LIMIT {
                return Err(Limit::Rows.error());
            }
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let value: rusqlite::types::Value =
                    row.get(i).map_err(|e| failed(e, &refusal, &watch))?;
                values.push(match value {
                    rusqlite::types::Value::Null => Value::Null,
                    rusqlite::types::Value::Integer(n) => Value::from(n),
                    rusqlite::types::Value::Real(f) => Value::from(f),
                    rusqlite::types::Value::Text(s) => {
                        bytes += s.len();
                        Value::String(s)
                    }
                    rusqlite::types::Value::Blob(b) => {
                        Value::String(format!("<{} bytes>", b.len()))
                    }
                });
            }
            if bytes > BYTE_LIMIT {
                return Err(Limit::Bytes.error());
            }
            out.push(values);
        }
        Ok((names, out))
    }
}
