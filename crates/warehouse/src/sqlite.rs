//! The SQLite backend: one file, WAL mode, one connection behind a mutex (SQLite has one writer
//! anyway). Typed columns are virtual generated columns over `json_extract(data, …)`.
//!
//! Batches are written by a thread of their own, many in one transaction (`writer.rs`); other
//! writes (accounts, runs, cursors) take the connection's lock between its rounds. Reads have
//! connections of their own, and checkpoints a thread of their own (`checkpointer.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{OptionalExtension, params};

mod checkpointer;
mod lease;
mod notify;
mod sandbox;
mod writer;

use crate::schema::{ColumnType, TABLES, table};
use crate::{
    AccountRecord, Backend, Batch, BindSealed, Connection, Counts, EventRow, Guard, Result,
    RunRecord, SCHEMA_VERSION, SEALED_VALUES_BOUND, SealedField, Store, StoreError, Stored,
    StoredRow, Window,
};

/// A mirror in a SQLite file.
pub struct SqliteStore {
    path: String,
    /// The connection that writes; the writer thread holds it through each round.
    db: Arc<Mutex<rusqlite::Connection>>,
    /// Connections for reads, which in WAL mode never wait for the writer: they see what is
    /// committed (every batch is, once `apply` returns).
    readers: Vec<Mutex<rusqlite::Connection>>,
    /// Where a read waits when every reader is busy.
    next_reader: AtomicUsize,
    /// Read-only connections for users' SQL, behind the boundary of `sandbox.rs`.
    sandboxes: Vec<Mutex<sandbox::Sandbox>>,
    /// Writes queued batches; stops before the checkpointer, having written what was queued.
    writer: writer::Writer,
    /// Copies the log into the file off the write path (the connection's own checkpoints are
    /// off); declared last, so its connection closes last and leaves no log behind.
    _checkpointer: checkpointer::Checkpointer,
}

/// Batches of up to this many rows per table look each row up before inserting it.
const LOOKUP_FIRST_ROWS: usize = 4;

/// Read connections per store.
const READERS: usize = 2;
/// Connections for users' SQL per store.
const SANDBOXES: usize = 2;
/// Prepared statements kept per connection: three per table written, and the reads (the
/// default of 16 made every delivery prepare its statements again).
const STATEMENT_CACHE: usize = 256;

fn db_error(error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, _) = &error
        && code.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Duplicate(error.to_string());
    }
    StoreError::Database(error.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `CREATE TABLE` for a resource table.
fn create_table_sql(t: &crate::Table) -> String {
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  account_id TEXT NOT NULL,\n  id TEXT NOT NULL,\n  livemode INTEGER NOT NULL,\n  created INTEGER,\n  deleted INTEGER NOT NULL DEFAULT 0,\n  data TEXT NOT NULL,\n  version INTEGER NOT NULL,\n  synced_at INTEGER NOT NULL,\n  parent_id TEXT",
        t.name
    );
    for column in t.columns {
        let affinity = match column.sql_type {
            ColumnType::Text => "TEXT",
            ColumnType::Integer | ColumnType::Boolean => "INTEGER",
            ColumnType::Real => "REAL",
        };
        sql.push_str(&format!(
            ",\n  {} {affinity} GENERATED ALWAYS AS (json_extract(data, '$.{}')) VIRTUAL",
            column.name, column.path
        ));
    }
    sql.push_str(",\n  PRIMARY KEY (account_id, id)\n);\n");
    sql.push_str(&format!(
        "CREATE INDEX IF NOT EXISTS {0}_created ON {0} (account_id, created);\n",
        t.name
    ));
    sql.push_str(&format!("CREATE INDEX IF NOT EXISTS {0}_parent ON {0} (account_id, parent_id) WHERE parent_id IS NOT NULL;\n", t.name));
    // Pages as Stripe lists them (`page`): newest first, without `created` last.
    sql.push_str(&format!(
        "CREATE INDEX IF NOT EXISTS {0}_page ON {0} (account_id, livemode, COALESCE(created, -1), id);\n",
        t.name
    ));
    for column in t.indexed.iter().filter(|c| **c != "parent_id") {
        sql.push_str(&format!(
            "CREATE INDEX IF NOT EXISTS {0}_{1} ON {0} (account_id, {1});\n",
            t.name, column
        ));
    }
    sql
}

/// A trigram index of each customer's email, name and metadata, for
/// [`Store::search_customers`]: `customer_search` (FTS5) holds the words under a number that
/// `customer_search_keys` gives each (account, customer) for good (a table's own rowid may
/// change with VACUUM). Triggers keep it in step with every write to `customers`, whichever
/// path makes it.
const CUSTOMER_SEARCH: &str = "
CREATE TABLE IF NOT EXISTS customer_search_keys (
  n INTEGER PRIMARY KEY,
  account_id TEXT NOT NULL,
  id TEXT NOT NULL,
  UNIQUE (account_id, id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS customer_search USING fts5(words, tokenize = 'trigram');
CREATE TRIGGER IF NOT EXISTS customer_search_insert AFTER INSERT ON customers BEGIN
  INSERT OR IGNORE INTO customer_search_keys (account_id, id) VALUES (new.account_id, new.id);
  INSERT INTO customer_search (rowid, words)
    SELECT n, coalesce(new.email, '') || char(10) || coalesce(new.name, '') || char(10) || coalesce(json_extract(new.data, '$.metadata'), '')
    FROM customer_search_keys WHERE account_id = new.account_id AND id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS customer_search_update AFTER UPDATE OF data ON customers BEGIN
  DELETE FROM customer_search WHERE rowid = (SELECT n FROM customer_search_keys WHERE account_id = old.account_id AND id = old.id);
  INSERT INTO customer_search (rowid, words)
    SELECT n, coalesce(new.email, '') || char(10) || coalesce(new.name, '') || char(10) || coalesce(json_extract(new.data, '$.metadata'), '')
    FROM customer_search_keys WHERE account_id = new.account_id AND id = new.id;
END;
CREATE TRIGGER IF NOT EXISTS customer_search_delete AFTER DELETE ON customers BEGIN
  DELETE FROM customer_search WHERE rowid = (SELECT n FROM customer_search_keys WHERE account_id = old.account_id AND id = old.id);
  DELETE FROM customer_search_keys WHERE account_id = old.account_id AND id = old.id;
END;
";

/// Fills the customer index from the customers stored before it existed (schema 7).
const CUSTOMER_SEARCH_BACKFILL: &str = "
INSERT OR IGNORE INTO customer_search_keys (account_id, id) SELECT account_id, id FROM customers;
INSERT INTO customer_search (rowid, words)
  SELECT k.n, coalesce(c.email, '') || char(10) || coalesce(c.name, '') || char(10) || coalesce(json_extract(c.data, '$.metadata'), '')
  FROM customers c JOIN customer_search_keys k ON k.account_id = c.account_id AND k.id = c.id;
";

const SYSTEM_TABLES: &str = "
CREATE TABLE IF NOT EXISTS api_tokens (
  name TEXT PRIMARY KEY,
  hash BLOB NOT NULL,
  read_only INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stripe_mirror_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  name TEXT NOT NULL,
  stripe_name TEXT,
  icon_url TEXT,
  key_kind TEXT NOT NULL,
  key_masked TEXT NOT NULL,
  key_sealed BLOB NOT NULL,
  permissions TEXT NOT NULL,
  status TEXT NOT NULL,
  status_message TEXT,
  start_date INTEGER,
  webhook_endpoint_id TEXT,
  webhook_secret_sealed BLOB,
  api_base TEXT,
  api_version TEXT,
  logo_url TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, livemode)
);
CREATE TABLE IF NOT EXISTS events (
  account_id TEXT NOT NULL,
  id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  type TEXT NOT NULL,
  created INTEGER NOT NULL,
  object_id TEXT,
  data TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, id)
);
CREATE INDEX IF NOT EXISTS events_created ON events (account_id, livemode, created);
CREATE INDEX IF NOT EXISTS events_object ON events (account_id, object_id);
-- Ordered by rowid within a connection (SQLite ends every index with it): a tail of new
-- events, and the last one's position, are ranges of it.
CREATE INDEX IF NOT EXISTS events_position ON events (account_id, livemode);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  kind TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  status TEXT NOT NULL,
  counts TEXT NOT NULL,
  requests INTEGER NOT NULL,
  error TEXT,
  progress TEXT,
  triggered_by TEXT
);
CREATE INDEX IF NOT EXISTS runs_account ON runs (account_id, livemode, id);
CREATE TABLE IF NOT EXISTS cursors (
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  scope TEXT NOT NULL,
  window_start INTEGER NOT NULL,
  window_end INTEGER NOT NULL,
  state TEXT NOT NULL,
  after_id TEXT,
  PRIMARY KEY (account_id, livemode, scope, window_start)
);
CREATE TABLE IF NOT EXISTS sync_state (
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (account_id, livemode, key)
);
CREATE TABLE IF NOT EXISTS notify_channels (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  target_masked TEXT NOT NULL,
  config_sealed BLOB NOT NULL,
  status TEXT NOT NULL,
  status_message TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_rules (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  channel_id TEXT NOT NULL,
  spec TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_queue (
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  queued_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, livemode, event_id)
);
CREATE TABLE IF NOT EXISTS notify_deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  rule_id TEXT NOT NULL,
  channel_id TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  due_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  finished_at INTEGER,
  last_error TEXT,
  UNIQUE (account_id, livemode, event_id, rule_id, channel_id)
);
CREATE INDEX IF NOT EXISTS notify_deliveries_due ON notify_deliveries (due_at) WHERE state IN ('pending', 'digest');
CREATE INDEX IF NOT EXISTS notify_deliveries_channel ON notify_deliveries (channel_id, id);
CREATE TABLE IF NOT EXISTS sync_leases (
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  owner TEXT,
  lease_until INTEGER,
  epoch INTEGER NOT NULL DEFAULT 0,
  inbox_since INTEGER,
  PRIMARY KEY (account_id, livemode)
);
CREATE INDEX IF NOT EXISTS sync_leases_due ON sync_leases (due_at);
CREATE TABLE IF NOT EXISTS inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT NOT NULL,
  livemode INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  body TEXT NOT NULL,
  UNIQUE (account_id, livemode, event_id)
);
";

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub fn open(path: &str) -> Result<SqliteStore> {
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            return Err(StoreError::Unavailable {
                target: path.into(),
                detail: format!("the folder {} does not exist", parent.display()),
            });
        }
        private_files(Path::new(path)).map_err(|e| StoreError::Unavailable {
            target: path.into(),
            detail: format!("could not create the file: {e}"),
        })?;
        let mut db = rusqlite::Connection::open(path).map_err(|e| StoreError::Unavailable {
            target: path.into(),
            detail: e.to_string(),
        })?;
        let unavailable = |e: rusqlite::Error| StoreError::Unavailable {
            target: path.into(),
            detail: e.to_string(),
        };
        Self::configure(&db, path)?;
        wait_when_busy(&mut db).map_err(unavailable)?;
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let checkpointer =
            checkpointer::Checkpointer::start(Path::new(path)).map_err(unavailable)?;
        let db = Arc::new(Mutex::new(db));
        let mut store = SqliteStore {
            path: path.into(),
            db: db.clone(),
            readers: Vec::new(),
            next_reader: AtomicUsize::new(0),
            sandboxes: Vec::new(),
            writer: writer::Writer::start(db),
            _checkpointer: checkpointer,
        };
        store.migrate()?;
        for _ in 0..READERS {
            let mut reader = rusqlite::Connection::open(path).map_err(unavailable)?;
            // A small cache: after every commit a reader drops what it cached, and its reads
            // are lookups by key.
            reader
                .execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -2048;")
                .map_err(unavailable)?;
            wait_when_busy(&mut reader).map_err(unavailable)?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            store.readers.push(Mutex::new(reader));
        }
        for _ in 0..SANDBOXES {
            store.sandboxes.push(Mutex::new(
                sandbox::Sandbox::open(path).map_err(unavailable)?,
            ));
        }
        Ok(store)
    }

    /// Sets the connection up: WAL, and its own checkpoints off (see `checkpointer.rs`).
    fn configure(db: &rusqlite::Connection, path: &str) -> Result<()> {
        // A 32 MiB page cache keeps the indexes' upper levels in memory through a backfill.
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| StoreError::Unavailable { target: path.into(), detail: e.to_string() })
    }

    /// A connection for a read.
    fn reader(&self) -> MutexGuard<'_, rusqlite::Connection> {
        if let Some(reader) = self.readers.iter().find_map(|r| r.try_lock()) {
            return reader;
        }
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed);
        self.readers[turn % self.readers.len()].lock()
    }

    /// The connection for a write of its own, between the writer's rounds.
    fn writer(&self) -> Result<MutexGuard<'_, rusqlite::Connection>> {
        Ok(self.db.lock())
    }

    fn migrate(&self) -> Result<()> {
        let db = self.writer()?;
        db.execute_batch(SYSTEM_TABLES).map_err(db_error)?;
        let found: Option<i64> = db
            .query_row(
                "SELECT value FROM stripe_mirror_meta WHERE key = 'schema_version'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db_error)?
            .and_then(|v| v.parse().ok());
        if let Some(found) = found
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let mut ddl = String::from("BEGIN IMMEDIATE;\n");
        // Columns added to accounts since schema 1: the API a connection was made against
        // (2), the API version its rows are kept in (3), the logo the user chose (4).
        for column in ["api_base", "api_version", "logo_url"] {
            let present = db
                .prepare("SELECT 1 FROM pragma_table_info('accounts') WHERE name = ?1")
                .and_then(|mut s| s.exists([column]))
                .map_err(db_error)?;
            if !present {
                ddl.push_str(&format!("ALTER TABLE accounts ADD COLUMN {column} TEXT;\n"));
            }
        }
        // A run's live progress (4).
        let progress_present = db
            .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'progress'")
            .and_then(|mut s| s.exists([]))
            .map_err(db_error)?;
        if !progress_present {
            ddl.push_str("ALTER TABLE runs ADD COLUMN progress TEXT;\n");
        }
        // What started a run (5).
        let trigger_present = db
            .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'triggered_by'")
            .and_then(|mut s| s.exists([]))
            .map_err(db_error)?;
        if !trigger_present {
            ddl.push_str("ALTER TABLE runs ADD COLUMN triggered_by TEXT;\n");
        }
        // Deliveries make a lease row claimable (10).
        let stamp_present = db
            .prepare("SELECT 1 FROM pragma_table_info('sync_leases') WHERE name = 'inbox_since'")
            .and_then(|mut s| s.exists([]))
            .map_err(db_error)?;
        if !stamp_present {
            ddl.push_str("ALTER TABLE sync_leases ADD COLUMN inbox_since INTEGER;\n");
        }
        for t in TABLES {
            ddl.push_str(&create_table_sql(t));
        }
        // The customer index (7), filled from what is stored when it is new.
        let search_present = db
            .prepare("SELECT 1 FROM sqlite_master WHERE name = 'customer_search'")
            .and_then(|mut s| s.exists([]))
            .map_err(db_error)?;
        ddl.push_str(CUSTOMER_SEARCH);
        if !search_present {
            ddl.push_str(CUSTOMER_SEARCH_BACKFILL);
        }
        ddl.push_str(&format!("INSERT OR REPLACE INTO stripe_mirror_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;"));
        db.execute_batch(&ddl).map_err(db_error)
    }
}

/// The ids of a table's rows whose `column` is a value, through that column's own index:
/// without statistics the planner took the page index (every row of the account, each looked
/// up in the table), and an invoice event on an account with 250,000 line items read them all.
fn ids_where_sql(table_name: &str, column: &str, indexed: bool) -> String {
    let index = if column == "parent_id" {
        format!("INDEXED BY {table_name}_parent")
    } else if indexed {
        format!("INDEXED BY {table_name}_{column}")
    } else {
        String::new()
    };
    let not_null = if column == "parent_id" {
        " AND parent_id IS NOT NULL"
    } else {
        ""
    };
    format!(
        "SELECT id FROM {table_name} {index} WHERE account_id = ?1 AND {column} = ?3{not_null} AND livemode = ?2 AND deleted = 0"
    )
}

/// Waits for a lock held by another connection in short, even steps, for up to ten seconds.
/// SQLite's own busy timeout sleeps 1, 2, 5, 10, 15, 20, 25… ms: a writer that met the
/// checkpointer's brief lock once lost tens of milliseconds, the tail of webhook latency.
/// Creates the database file readable by its owner only (SQLite gives its `-wal` and `-shm`
/// files the database's mode), or warns when an existing one, or its log, is looser: it holds
/// every connected account's data and their sealed keys.
fn private_files(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists() {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                // Another process made it first: its mode is checked below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(meta) = std::fs::metadata(&file) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        file = %file.display(),
                        mode = %format!("{mode:o}"),
                        "other users can read the mirror's database (every account's data and sealed keys): run chmod 600 on it and its -wal and -shm files"
                    );
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(crate) fn wait_when_busy(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    const STEP: std::time::Duration = std::time::Duration::from_micros(200);
    const ATTEMPTS: i32 = 50_000;
    conn.busy_handler(Some(|attempt: i32| {
        std::thread::sleep(STEP);
        attempt < ATTEMPTS
    }))
}

fn checked_table(name: &str) -> Result<&'static crate::Table> {
    table(name).ok_or_else(|| StoreError::UnknownTable(name.into()))
}

fn read_account(row: &rusqlite::Row) -> rusqlite::Result<AccountRecord> {
    let permissions: String = row.get("permissions")?;
    Ok(AccountRecord {
        connection: Connection {
            account_id: row.get("account_id")?,
            livemode: row.get("livemode")?,
        },
        name: row.get("name")?,
        stripe_name: row.get("stripe_name")?,
        icon_url: row.get("icon_url")?,
        key_kind: row.get("key_kind")?,
        key_masked: row.get("key_masked")?,
        key_sealed: row.get("key_sealed")?,
        permissions: serde_json::from_str(&permissions).unwrap_or(serde_json::Value::Null),
        status: row.get("status")?,
        status_message: row.get("status_message")?,
        start_date: row.get("start_date")?,
        webhook_endpoint_id: row.get("webhook_endpoint_id")?,
        webhook_secret_sealed: row.get("webhook_secret_sealed")?,
        api_base: row.get("api_base")?,
        api_version: row.get("api_version")?,
        logo_url: row.get("logo_url")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// `id, deleted, data, version` of a mirrored row, its JSON as stored.
fn read_raw_row(r: &rusqlite::Row) -> rusqlite::Result<crate::RawRow> {
    Ok(crate::RawRow {
        id: r.get(0)?,
        deleted: r.get(1)?,
        data: r.get(2)?,
        version: r.get(3)?,
    })
}

/// `id, deleted, data, version` of a mirrored row.
fn read_stored_row(r: &rusqlite::Row) -> rusqlite::Result<StoredRow> {
    let data: String = r.get(2)?;
    Ok(StoredRow {
        id: r.get(0)?,
        deleted: r.get(1)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        version: r.get(3)?,
    })
}

fn read_run(row: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
    let counts: String = row.get("counts")?;
    Ok(RunRecord {
        id: row.get("id")?,
        connection: Connection {
            account_id: row.get("account_id")?,
            livemode: row.get("livemode")?,
        },
        kind: row.get("kind")?,
        trigger: row
            .get::<_, Option<String>>("triggered_by")?
            .unwrap_or_default(),
        started_at: row.get("started_at")?,
        ended_at: row.get("ended_at")?,
        status: row.get("status")?,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        requests: row.get::<_, i64>("requests")? as u64,
        error: row.get("error")?,
        progress: row
            .get::<_, Option<String>>("progress")?
            .and_then(|p| serde_json::from_str(&p).ok()),
    })
}

/// Writes a batch on `tx` (inside the caller's transaction).
fn write_batch(tx: &rusqlite::Connection, c: &Connection, batch: &Batch) -> Result<Counts> {
    if let Some(fence) = &batch.fence {
        lease::check_fence(tx, c, fence)?;
    }
    let mut counts = Counts::default();
    let synced_at = now();
    for (table_name, rows, guard) in &batch.rows {
        checked_table(table_name)?;
        let tally = counts.tables.entry((*table_name).to_owned()).or_default();
        // A new row takes one statement (the insert finds no conflict); a stored one is read,
        // judged by the guard here, and updated: most rows of a backfill are new.
        let mut insert = tx
            .prepare_cached(&format!(
                "INSERT INTO {table_name} (account_id, id, livemode, created, deleted, data, version, synced_at, parent_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (account_id, id) DO NOTHING"
            ))
            .map_err(db_error)?;
        let mut lookup = tx
            .prepare_cached(&format!(
                "SELECT version, deleted, data IS ?3 FROM {table_name} WHERE account_id = ?1 AND id = ?2"
            ))
            .map_err(db_error)?;
        // An object written again as it is moves its version and sync time only (the sweep
        // after a re-backfill reads the sync time), and is not counted as updated.
        let mut touch = tx
            .prepare_cached(&format!(
                "UPDATE {table_name} SET created = COALESCE(?3, created), version = ?4, synced_at = ?5, parent_id = COALESCE(?6, parent_id)
                 WHERE account_id = ?1 AND id = ?2"
            ))
            .map_err(db_error)?;
        let mut update = tx
            .prepare_cached(&format!(
                "UPDATE {table_name} SET created = COALESCE(?4, created), deleted = ?5, data = ?6, version = ?7, synced_at = ?8, parent_id = COALESCE(?9, parent_id)
                 WHERE account_id = ?1 AND id = ?2"
            ))
            .map_err(db_error)?;
        // A few rows are a webhook's or an incremental page's, mostly of stored objects:
        // for them the lookup comes first, so an update takes two statements, not three.
        let lookup_first = rows.len() <= LOOKUP_FIRST_ROWS;
        let mut stored_version = |id: &str, data: &str| {
            lookup
                .query_row(params![c.account_id, id, data], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(db_error)
        };
        for row in rows {
            // The insert and the update number their parameters alike (the update leaves
            // `livemode`, ?3, as it is), so one list serves both.
            let values = params![
                c.account_id,
                row.id,
                c.livemode,
                row.created,
                row.deleted,
                row.data,
                row.version,
                synced_at,
                row.parent_id
            ];
            let stored: Option<(i64, bool, bool)> = if lookup_first {
                stored_version(&row.id, &row.data)?
            } else {
                None
            };
            let stored = match stored {
                Some(stored) => stored,
                None => {
                    if insert.execute(values).map_err(db_error)? == 1 {
                        if row.deleted {
                            tally.deleted += 1;
                        } else {
                            tally.inserted += 1;
                        }
                        continue;
                    }
                    stored_version(&row.id, &row.data)?
                        .ok_or_else(|| db_error(rusqlite::Error::QueryReturnedNoRows))?
                }
            };
            let (version, was_deleted, same_data) = stored;
            let write = match guard {
                Guard::AtLeast => row.version >= version,
                Guard::Newer => row.version > version,
            };
            if !write {
                tally.skipped += 1;
                continue;
            }
            if same_data && row.deleted == was_deleted {
                touch
                    .execute(params![
                        c.account_id,
                        row.id,
                        row.created,
                        row.version,
                        synced_at,
                        row.parent_id
                    ])
                    .map_err(db_error)?;
                tally.unchanged += 1;
                continue;
            }
            update.execute(values).map_err(db_error)?;
            if row.deleted && !was_deleted {
                tally.deleted += 1;
            } else {
                tally.updated += 1;
            }
        }
    }
    for deletion in &batch.deletions {
        checked_table(deletion.table)?;
        let tally = counts.tables.entry(deletion.table.to_owned()).or_default();
        let mut mark = tx
                .prepare_cached(&format!(
                    "UPDATE {} SET deleted = 1, version = ?3, synced_at = ?4 WHERE account_id = ?1 AND id = ?2 AND deleted = 0 AND version <= ?3",
                    deletion.table
                ))
                .map_err(db_error)?;
        for id in &deletion.ids {
            tally.deleted += mark
                .execute(params![c.account_id, id, deletion.version, synced_at])
                .map_err(db_error)? as u64;
        }
    }
    {
        let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO events (account_id, id, livemode, type, created, object_id, data, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(db_error)?;
        // Live events new to the mirror wait for the notification rules, when there are any.
        let notify = batch.notify
            && !batch.events.is_empty()
            && tx
                .prepare_cached("SELECT 1 FROM notify_rules LIMIT 1")
                .and_then(|mut s| s.exists([]))
                .map_err(db_error)?;
        for event in &batch.events {
            let new = insert
                .execute(params![
                    c.account_id,
                    event.id,
                    c.livemode,
                    event.event_type,
                    event.created,
                    event.object_id,
                    event.data,
                    synced_at
                ])
                .map_err(db_error)? as u64;
            counts.new_events += new;
            if notify && new > 0 {
                tx.prepare_cached("INSERT OR IGNORE INTO notify_queue (account_id, livemode, event_id, queued_at) VALUES (?1, ?2, ?3, ?4)")
                    .and_then(|mut s| s.execute(params![c.account_id, c.livemode, event.id, synced_at]))
                    .map_err(db_error)?;
            }
        }
        if batch.replace_windows {
            tx.execute(
                "DELETE FROM cursors WHERE account_id = ?1 AND livemode = ?2",
                params![c.account_id, c.livemode],
            )
            .map_err(db_error)?;
        }
        for key in &batch.remove_state {
            tx.execute(
                "DELETE FROM sync_state WHERE account_id = ?1 AND livemode = ?2 AND key = ?3",
                params![c.account_id, c.livemode, key],
            )
            .map_err(db_error)?;
        }
        let mut window = tx
                .prepare_cached("INSERT OR REPLACE INTO cursors (account_id, livemode, scope, window_start, window_end, state, after_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(db_error)?;
        for w in &batch.windows {
            window
                .execute(params![
                    c.account_id,
                    c.livemode,
                    w.scope,
                    w.start,
                    w.end,
                    w.state,
                    w.after
                ])
                .map_err(db_error)?;
        }
        let mut state = tx.prepare_cached("INSERT OR REPLACE INTO sync_state (account_id, livemode, key, value) VALUES (?1, ?2, ?3, ?4)").map_err(db_error)?;
        for (key, value) in &batch.state {
            state
                .execute(params![c.account_id, c.livemode, key, value])
                .map_err(db_error)?;
        }
    }
    Ok(counts)
}

impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn describe(&self) -> String {
        self.path.clone()
    }

    fn insert_account(&self, a: &AccountRecord) -> Result<()> {
        let db = self.writer()?;
        db.execute(
            "INSERT INTO accounts (account_id, livemode, name, stripe_name, icon_url, key_kind, key_masked, key_sealed, permissions, status, status_message, start_date, webhook_endpoint_id, webhook_secret_sealed, created_at, updated_at, api_base, api_version, logo_url)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            params![a.connection.account_id, a.connection.livemode, a.name, a.stripe_name, a.icon_url, a.key_kind, a.key_masked, a.key_sealed, a.permissions.to_string(), a.status, a.status_message, a.start_date, a.webhook_endpoint_id, a.webhook_secret_sealed, a.created_at, a.updated_at, a.api_base, a.api_version, a.logo_url],
        )
        .map_err(|e| match db_error(e) {
            StoreError::Duplicate(_) => StoreError::Duplicate(a.connection.label()),
            other => other,
        })?;
        Ok(())
    }

    fn update_account(&self, a: &AccountRecord) -> Result<()> {
        let db = self.writer()?;
        let changed = db
            .execute(
                "UPDATE accounts SET name = ?3, stripe_name = ?4, icon_url = ?5, key_kind = ?6, key_masked = ?7, key_sealed = ?8, permissions = ?9, status = ?10, status_message = ?11, start_date = ?12, webhook_endpoint_id = ?13, webhook_secret_sealed = ?14, updated_at = ?15, api_base = ?16, api_version = ?17, logo_url = ?18
                 WHERE account_id = ?1 AND livemode = ?2",
                params![a.connection.account_id, a.connection.livemode, a.name, a.stripe_name, a.icon_url, a.key_kind, a.key_masked, a.key_sealed, a.permissions.to_string(), a.status, a.status_message, a.start_date, a.webhook_endpoint_id, a.webhook_secret_sealed, a.updated_at, a.api_base, a.api_version, a.logo_url],
            )
            .map_err(db_error)?;
        if changed == 0 {
            return Err(StoreError::Database(format!(
                "no connection {}",
                a.connection.label()
            )));
        }
        Ok(())
    }

    fn account(&self, c: &Connection) -> Result<Option<AccountRecord>> {
        let db = self.reader();
        db.prepare_cached("SELECT * FROM accounts WHERE account_id = ?1 AND livemode = ?2")
            .and_then(|mut s| s.query_row(params![c.account_id, c.livemode], read_account))
            .optional()
            .map_err(db_error)
    }

    fn accounts(&self) -> Result<Vec<AccountRecord>> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached("SELECT * FROM accounts ORDER BY created_at, account_id, livemode")
            .map_err(db_error)?;
        let rows = statement.query_map([], read_account).map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn bind_sealed_values(&self, bind: &mut BindSealed<'_>) -> Result<Option<usize>> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let done: Option<String> = tx
            .query_row(
                "SELECT value FROM stripe_mirror_meta WHERE key = ?1",
                [SEALED_VALUES_BOUND],
                |row| row.get(0),
            )
            .optional()
            .map_err(db_error)?;
        if done.is_some() {
            return Ok(Some(0));
        }
        let mut changes = Vec::new();
        {
            let mut select = tx
                .prepare(
                    "SELECT account_id, livemode, key_sealed, webhook_secret_sealed FROM accounts",
                )
                .map_err(db_error)?;
            let mut rows = select.query([]).map_err(db_error)?;
            while let Some(row) = rows.next().map_err(db_error)? {
                let connection = Connection::new(
                    row.get::<_, String>(0).map_err(db_error)?,
                    row.get::<_, bool>(1).map_err(db_error)?,
                );
                for (index, field) in [(2, SealedField::ApiKey), (3, SealedField::WebhookSecrets)] {
                    let Some(old) = row.get::<_, Option<Vec<u8>>>(index).map_err(db_error)? else {
                        continue;
                    };
                    let Some(new) = bind(&connection, field, &old) else {
                        return Ok(None);
                    };
                    if new != old {
                        changes.push((connection.clone(), field, new));
                    }
                }
            }
        }
        for (connection, field, new) in &changes {
            tx.execute(
                &format!(
                    "UPDATE accounts SET {} = ?3 WHERE account_id = ?1 AND livemode = ?2",
                    field.column()
                ),
                params![connection.account_id, connection.livemode, new],
            )
            .map_err(db_error)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO stripe_mirror_meta (key, value) VALUES (?1, ?2)",
            params![SEALED_VALUES_BOUND, now().to_string()],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(Some(changes.len()))
    }

    fn remove_account(&self, c: &Connection) -> Result<u64> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let mut removed = 0u64;
        for t in TABLES.iter().map(|t| t.name).chain(["events"]) {
            removed += tx
                .execute(
                    &format!("DELETE FROM {t} WHERE account_id = ?1 AND livemode = ?2"),
                    params![c.account_id, c.livemode],
                )
                .map_err(db_error)? as u64;
        }
        for t in [
            "runs",
            "cursors",
            "sync_state",
            "inbox",
            "notify_queue",
            "sync_leases",
            "accounts",
        ] {
            tx.execute(
                &format!("DELETE FROM {t} WHERE account_id = ?1 AND livemode = ?2"),
                params![c.account_id, c.livemode],
            )
            .map_err(db_error)?;
        }
        // Deliveries stay as history; those not sent are canceled with the connection.
        tx.execute(
            "UPDATE notify_deliveries SET state = 'canceled', finished_at = ?3 WHERE account_id = ?1 AND livemode = ?2 AND state IN ('pending', 'digest')",
            params![c.account_id, c.livemode, now()],
        )
        .map_err(db_error)?;
        // The customer index's deletions are markers until its segments merge: merged now, so
        // that no trace of the removed customers' words stays in it.
        tx.execute(
            "INSERT INTO customer_search (customer_search) VALUES ('optimize')",
            [],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(removed)
    }

    fn apply(&self, c: &Connection, batch: &Batch) -> Result<Counts> {
        let mut counts = self.apply_all(c, std::slice::from_ref(batch))?;
        Ok(counts.pop().unwrap_or_default())
    }

    fn apply_all(&self, c: &Connection, batches: &[Batch]) -> Result<Vec<Counts>> {
        self.writer.write(c, batches.to_vec())
    }

    fn apply_all_then(
        &self,
        c: &Connection,
        batches: Vec<Batch>,
        done: Box<dyn FnOnce(Result<Vec<Counts>>) + Send>,
    ) {
        self.writer.submit(writer::Job {
            connection: c.clone(),
            batches,
            inbox: Vec::new(),
            forget: Vec::new(),
            done,
        });
    }

    fn writes_queued(&self) -> bool {
        true
    }

    fn sweep(
        &self,
        c: &Connection,
        table_name: &str,
        synced_before: i64,
        created_from: i64,
    ) -> Result<u64> {
        checked_table(table_name)?;
        let db = self.writer()?;
        let marked = db
            .execute(
                &format!("UPDATE {table_name} SET deleted = 1, synced_at = ?3 WHERE account_id = ?1 AND livemode = ?2 AND deleted = 0 AND synced_at < ?3 AND COALESCE(created, 0) >= ?4"),
                params![c.account_id, c.livemode, synced_before, created_from],
            )
            .map_err(db_error)?;
        Ok(marked as u64)
    }

    fn versions(
        &self,
        c: &Connection,
        table_name: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Stored>> {
        checked_table(table_name)?;
        let db = self.reader();
        let mut lookup = db
            .prepare_cached(&format!(
                "SELECT version, deleted FROM {table_name} WHERE account_id = ?1 AND id = ?2"
            ))
            .map_err(db_error)?;
        let mut found = HashMap::new();
        for id in ids {
            if let Some(stored) = lookup
                .query_row(params![c.account_id, id], |r| {
                    Ok(Stored {
                        version: r.get(0)?,
                        deleted: r.get(1)?,
                    })
                })
                .optional()
                .map_err(db_error)?
            {
                found.insert(id.clone(), stored);
            }
        }
        Ok(found)
    }

    fn ids_where(
        &self,
        c: &Connection,
        table_name: &str,
        column: &str,
        value: &str,
    ) -> Result<Vec<String>> {
        let t = checked_table(table_name)?;
        if column != "parent_id" && !t.columns.iter().any(|col| col.name == column) {
            return Err(StoreError::Database(format!(
                "{table_name} has no column {column}"
            )));
        }
        let db = self.reader();
        let mut statement = db
            .prepare_cached(&ids_where_sql(
                table_name,
                column,
                t.indexed.contains(&column),
            ))
            .map_err(db_error)?;
        let rows = statement
            .query_map(params![c.account_id, c.livemode, value], |r| r.get(0))
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(db_error)
    }

    fn rows_raw(&self, c: &Connection, table_name: &str) -> Result<Vec<crate::RawRow>> {
        checked_table(table_name)?;
        let db = self.reader();
        let mut statement = db.prepare(&format!("SELECT id, deleted, data, version FROM {table_name} WHERE account_id = ?1 AND livemode = ?2 ORDER BY id")).map_err(db_error)?;
        let rows = statement
            .query_map(params![c.account_id, c.livemode], |r| {
                Ok(crate::RawRow {
                    id: r.get(0)?,
                    deleted: r.get(1)?,
                    data: r.get(2)?,
                    version: r.get(3)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn page_raw(
        &self,
        c: &Connection,
        table_name: &str,
        query: &crate::PageQuery,
    ) -> Result<(Vec<crate::RawRow>, bool)> {
        use crate::page::{Param, page_sql};
        checked_table(table_name)?;
        let db = self.reader();
        let cursor: Option<(Option<i64>, String)> = match crate::page::cursor_id(query) {
            Some((id, _)) => Some(
                db.prepare_cached(&format!("SELECT created, id FROM {table_name} WHERE account_id = ?1 AND livemode = ?2 AND id = ?3"))
                    .and_then(|mut s| s.query_row(
                    params![c.account_id, c.livemode, id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                ))
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| {
                    StoreError::BadQuery(format!("no object {id} in {table_name} to page from"))
                })?,
            ),
            None => None,
        };
        let (sql, extra) = page_sql(
            table_name,
            table_name,
            query,
            cursor.as_ref().map(|(created, id)| (*created, id.as_str())),
            |n| format!("?{n}"),
            "data",
        )?;
        let mut values: Vec<rusqlite::types::Value> =
            vec![c.account_id.clone().into(), i64::from(c.livemode).into()];
        values.extend(extra.into_iter().map(|p| match p {
            Param::Text(s) => rusqlite::types::Value::Text(s),
            Param::Integer(n) => rusqlite::types::Value::Integer(n),
            Param::Boolean(b) => rusqlite::types::Value::Integer(i64::from(b)),
            Param::Real(f) => rusqlite::types::Value::Real(f),
        }));
        let mut statement = db.prepare_cached(&sql).map_err(db_error)?;
        let mut rows: Vec<crate::RawRow> = statement
            .query_map(rusqlite::params_from_iter(values), read_raw_row)
            .map_err(db_error)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_error)?;
        let more = rows.len() > query.limit.clamp(1, 100);
        rows.truncate(query.limit.clamp(1, 100));
        if crate::page::cursor_id(query).is_some_and(|(_, newer)| newer) {
            rows.reverse();
        }
        Ok((rows, more))
    }

    fn rows_by_id(
        &self,
        c: &Connection,
        table_name: &str,
        ids: &[String],
    ) -> Result<Vec<StoredRow>> {
        checked_table(table_name)?;
        let db = self.reader();
        let mut statement = db.prepare_cached(&format!("SELECT id, deleted, data, version FROM {table_name} WHERE account_id = ?1 AND livemode = ?2 AND id = ?3")).map_err(db_error)?;
        let mut found = Vec::new();
        for id in ids {
            if let Some(row) = statement
                .query_row(params![c.account_id, c.livemode, id], read_stored_row)
                .optional()
                .map_err(db_error)?
            {
                found.push(row);
            }
        }
        Ok(found)
    }

    fn search_customers(&self, c: &Connection, text: &str, limit: usize) -> Result<Vec<String>> {
        // The same test on every path: the index only narrows the rows it is asked of.
        const MATCHES: &str = "c.deleted = 0 AND (lower(c.email) LIKE ?3 ESCAPE '\\' OR lower(c.name) LIKE ?3 ESCAPE '\\' OR lower(json_extract(c.data, '$.metadata')) LIKE ?3 ESCAPE '\\')";
        let pattern = crate::contains_pattern(text);
        let db = self.reader();
        let collect = |sql: &str, extra: Option<String>| -> Result<Vec<String>> {
            let mut statement = db.prepare_cached(sql).map_err(db_error)?;
            let mut values: Vec<rusqlite::types::Value> = vec![
                c.account_id.clone().into(),
                i64::from(c.livemode).into(),
                pattern.clone().into(),
                (limit as i64).into(),
            ];
            values.extend(extra.map(Into::into));
            let rows = statement
                .query_map(rusqlite::params_from_iter(values), |r| r.get(0))
                .map_err(db_error)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db_error)
        };
        let newest = collect(
            &format!(
                "SELECT c.data FROM (SELECT deleted, email, name, data, created, id FROM customers WHERE account_id = ?1 AND livemode = ?2 ORDER BY COALESCE(created, -1) DESC, id DESC LIMIT {}) c WHERE {MATCHES} ORDER BY COALESCE(c.created, -1) DESC, c.id DESC LIMIT ?4",
                crate::SEARCH_NEWEST_FIRST
            ),
            None,
        )?;
        if newest.len() >= limit {
            return Ok(newest);
        }
        // Three characters or more: the trigram index finds every row holding the text (as a
        // phrase, quotes doubled). Fewer: too short for trigrams, so the index's own small
        // table of words is read through instead of every customer's JSON.
        let (condition, phrase) = if text.chars().count() >= 3 {
            (
                "customer_search MATCH ?5",
                Some(format!("\"{}\"", text.replace('"', "\"\""))),
            )
        } else {
            ("customer_search.words LIKE ?3 ESCAPE '\\'", None)
        };
        // CROSS JOIN keeps the index as the outer loop: left to itself the planner walked every
        // customer of the account and read each one's JSON.
        collect(
            &format!(
                "SELECT c.data FROM customer_search CROSS JOIN customer_search_keys k ON k.n = customer_search.rowid CROSS JOIN customers c ON c.account_id = k.account_id AND c.id = k.id WHERE {condition} AND k.account_id = ?1 AND c.livemode = ?2 AND {MATCHES} ORDER BY COALESCE(c.created, -1) DESC, c.id DESC LIMIT ?4"
            ),
            phrase,
        )
    }

    fn count(&self, c: &Connection, table_name: &str) -> Result<(u64, u64)> {
        checked_table(table_name)?;
        let db = self.reader();
        db.query_row(
            &format!("SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted = 1), 0) FROM {table_name} WHERE account_id = ?1 AND livemode = ?2"),
            params![c.account_id, c.livemode],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .map_err(db_error)
    }

    fn events_page(&self, c: &Connection, query: &crate::EventQuery) -> Result<Vec<EventRow>> {
        let db = self.reader();
        let mut values: Vec<rusqlite::types::Value> =
            vec![c.account_id.clone().into(), i64::from(c.livemode).into()];
        let mut sql = String::from(
            "SELECT id, type, created, object_id, data FROM events WHERE account_id = ?1 AND livemode = ?2",
        );
        let (types, type_params) = query.type_clause(3, |n| format!("?{n}"));
        sql.push_str(&types);
        values.extend(type_params.into_iter().map(Into::into));
        if let Some(after) = &query.starting_after {
            let (created, position): (i64, i64) = db
                .query_row(
                    "SELECT created, rowid FROM events WHERE account_id = ?1 AND livemode = ?2 AND id = ?3",
                    params![c.account_id, c.livemode, after],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| StoreError::BadQuery(format!("no event {after} to page from")))?;
            let n = values.len();
            sql.push_str(&format!(
                " AND created <= ?{} AND (created < ?{} OR rowid < ?{})",
                n + 1,
                n + 1,
                n + 2
            ));
            values.push(created.into());
            values.push(position.into());
        }
        sql.push_str(&format!(
            " ORDER BY created DESC, rowid DESC LIMIT {}",
            query.limit
        ));
        let mut statement = db.prepare_cached(&sql).map_err(db_error)?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    event_type: r.get(1)?,
                    created: r.get(2)?,
                    object_id: r.get(3)?,
                    data: r.get(4)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn last_event_position(&self, c: &Connection) -> Result<i64> {
        let db = self.reader();
        db.query_row(
            "SELECT rowid FROM events WHERE account_id = ?1 AND livemode = ?2 ORDER BY rowid DESC LIMIT 1",
            params![c.account_id, c.livemode],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|p| p.unwrap_or(0))
        .map_err(db_error)
    }

    fn event_count(&self, c: &Connection) -> Result<u64> {
        let db = self.reader();
        db.query_row(
            "SELECT COUNT(*) FROM events WHERE account_id = ?1 AND livemode = ?2",
            params![c.account_id, c.livemode],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .map_err(db_error)
    }

    fn events_since(
        &self,
        c: &Connection,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, EventRow)>> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached("SELECT rowid, id, type, created, object_id, data FROM events WHERE account_id = ?1 AND livemode = ?2 AND rowid > ?3 ORDER BY rowid LIMIT ?4")
            .map_err(db_error)?;
        let rows = statement
            .query_map(
                params![c.account_id, c.livemode, after, limit as i64],
                |r| {
                    Ok((
                        r.get(0)?,
                        EventRow {
                            id: r.get(1)?,
                            event_type: r.get(2)?,
                            created: r.get(3)?,
                            object_id: r.get(4)?,
                            data: r.get(5)?,
                        },
                    ))
                },
            )
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn has_event(&self, c: &Connection, id: &str) -> Result<bool> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT 1 FROM events WHERE account_id = ?1 AND id = ?2 AND livemode = ?3",
            )
            .map_err(db_error)?;
        statement
            .exists(params![c.account_id, id, c.livemode])
            .map_err(db_error)
    }

    fn windows(&self, c: &Connection) -> Result<Vec<Window>> {
        let db = self.reader();
        let mut statement = db.prepare("SELECT scope, window_start, window_end, state, after_id FROM cursors WHERE account_id = ?1 AND livemode = ?2 ORDER BY scope, window_start").map_err(db_error)?;
        let rows = statement
            .query_map(params![c.account_id, c.livemode], |r| {
                Ok(Window {
                    scope: r.get(0)?,
                    start: r.get(1)?,
                    end: r.get(2)?,
                    state: r.get(3)?,
                    after: r.get(4)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn reset_windows(&self, c: &Connection, windows: &[Window]) -> Result<()> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        tx.execute(
            "DELETE FROM cursors WHERE account_id = ?1 AND livemode = ?2",
            params![c.account_id, c.livemode],
        )
        .map_err(db_error)?;
        {
            let mut insert = tx.prepare("INSERT INTO cursors (account_id, livemode, scope, window_start, window_end, state, after_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").map_err(db_error)?;
            for w in windows {
                insert
                    .execute(params![
                        c.account_id,
                        c.livemode,
                        w.scope,
                        w.start,
                        w.end,
                        w.state,
                        w.after
                    ])
                    .map_err(db_error)?;
            }
        }
        tx.commit().map_err(db_error)
    }

    fn state(&self, c: &Connection, key: &str) -> Result<Option<String>> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT value FROM sync_state WHERE account_id = ?1 AND livemode = ?2 AND key = ?3",
            )
            .map_err(db_error)?;
        statement
            .query_row(params![c.account_id, c.livemode, key], |r| r.get(0))
            .optional()
            .map_err(db_error)
    }

    fn set_state(&self, c: &Connection, key: &str, value: Option<&str>) -> Result<()> {
        let db = self.writer()?;
        match value {
            Some(value) => db.execute("INSERT OR REPLACE INTO sync_state (account_id, livemode, key, value) VALUES (?1, ?2, ?3, ?4)", params![c.account_id, c.livemode, key, value]),
            None => db.execute("DELETE FROM sync_state WHERE account_id = ?1 AND livemode = ?2 AND key = ?3", params![c.account_id, c.livemode, key]),
        }
        .map(|_| ())
        .map_err(db_error)
    }

    fn inbox_add(&self, c: &Connection, event_id: &str, at: i64, body: &str) -> Result<bool> {
        self.writer.keep(c, event_id, at, body)
    }

    fn inbox_pending(
        &self,
        c: &Connection,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::InboxEntry>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached("SELECT seq, event_id, received_at, body FROM inbox WHERE account_id = ?1 AND livemode = ?2 AND seq > ?4 ORDER BY seq LIMIT ?3")
            .map_err(db_error)?;
        let rows = select
            .query_map(
                params![c.account_id, c.livemode, limit as i64, after],
                |r| {
                    Ok(crate::InboxEntry {
                        seq: r.get(0)?,
                        event_id: r.get(1)?,
                        received_at: r.get(2)?,
                        body: r.get(3)?,
                    })
                },
            )
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn inbox_remove(&self, c: &Connection, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.writer.forget(c, seqs)
    }

    fn inbox_depths(&self) -> Result<Vec<crate::InboxDepth>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached("SELECT account_id, livemode, count(*), min(received_at) FROM inbox GROUP BY account_id, livemode ORDER BY account_id, livemode")
            .map_err(db_error)?;
        let rows = select
            .query_map([], |r| {
                Ok(crate::InboxDepth {
                    connection: Connection {
                        account_id: r.get(0)?,
                        livemode: r.get(1)?,
                    },
                    waiting: r.get::<_, i64>(2)? as u64,
                    oldest_received_at: r.get(3)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn lease_due(&self, c: &Connection, at: i64) -> Result<()> {
        self.lease_due_row(c, at)
    }

    fn lease_claim(
        &self,
        owner: &str,
        now: i64,
        hold_for: i64,
        at_most: usize,
    ) -> Result<Vec<crate::Lease>> {
        self.lease_claim_rows(owner, now, hold_for, at_most)
    }

    fn lease_renew(&self, lease: &crate::Lease, until: i64) -> Result<bool> {
        self.lease_renew_row(lease, until)
    }

    fn lease_release(&self, lease: &crate::Lease, due_at: i64) -> Result<bool> {
        self.lease_release_row(lease, due_at)
    }

    fn lease_inbox_mark(&self, lease: &crate::Lease, since: Option<i64>) -> Result<bool> {
        self.lease_inbox_mark_row(lease, since)
    }

    fn leases(&self) -> Result<Vec<crate::LeaseRow>> {
        self.lease_rows()
    }

    fn lease_next_due(&self) -> Result<Option<i64>> {
        self.reader()
            .query_row(
                "SELECT min(min(due_at, coalesce(inbox_since, due_at))) FROM sync_leases WHERE owner IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(db_error)
    }

    fn hold_exclusive(&self, _name: &str) -> Result<Option<Box<dyn std::any::Any + Send>>> {
        Ok(Some(Box::new(())))
    }

    fn lease_release_all(&self, now: i64) -> Result<u64> {
        self.writer()?
            .execute(
                "UPDATE sync_leases SET owner = NULL, lease_until = NULL, due_at = min(due_at, ?1) WHERE owner IS NOT NULL",
                params![now],
            )
            .map(|n| n as u64)
            .map_err(db_error)
    }

    fn insert_channel(&self, channel: &crate::ChannelRecord) -> Result<()> {
        self.insert_channel_row(channel)
    }

    fn update_channel(&self, channel: &crate::ChannelRecord) -> Result<()> {
        self.update_channel_row(channel)
    }

    fn channels(&self) -> Result<Vec<crate::ChannelRecord>> {
        self.channel_rows()
    }

    fn delete_channel(&self, id: &str) -> Result<bool> {
        self.delete_channel_row(id)
    }

    fn insert_rule(&self, rule: &crate::RuleRecord) -> Result<()> {
        self.insert_rule_row(rule)
    }

    fn rules(&self) -> Result<Vec<crate::RuleRecord>> {
        self.rule_rows()
    }

    fn delete_rule(&self, id: &str) -> Result<bool> {
        self.delete_rule_row(id)
    }

    fn notify_queued(&self, limit: usize) -> Result<Vec<crate::QueuedEvent>> {
        self.queued_rows(limit)
    }

    fn notify_plan(
        &self,
        matched: &[(Connection, String)],
        deliveries: &[crate::NewDelivery],
    ) -> Result<u64> {
        self.plan_rows(matched, deliveries)
    }

    fn deliveries_due(&self, now: i64, limit: usize) -> Result<Vec<crate::DeliveryRecord>> {
        self.due_rows(now, limit)
    }

    fn update_deliveries(&self, updates: &[crate::DeliveryUpdate]) -> Result<()> {
        self.update_delivery_rows(updates)
    }

    fn deliveries(&self, query: &crate::DeliveryQuery) -> Result<Vec<crate::DeliveryRecord>> {
        self.delivery_rows(query)
    }

    fn next_delivery_due(&self) -> Result<Option<i64>> {
        self.next_due()
    }

    fn insert_token(&self, t: &crate::TokenRecord) -> Result<()> {
        let db = self.writer()?;
        db.execute(
            "INSERT INTO api_tokens (name, hash, read_only, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![t.name, t.hash, t.read_only, t.created_at],
        )
        .map_err(|e| match db_error(e) {
            StoreError::Duplicate(_) => StoreError::Duplicate(format!("a token named {}", t.name)),
            other => other,
        })?;
        Ok(())
    }

    fn tokens(&self) -> Result<Vec<crate::TokenRecord>> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT name, hash, read_only, created_at FROM api_tokens ORDER BY name",
            )
            .map_err(db_error)?;
        let rows = statement
            .query_map([], |r| {
                Ok(crate::TokenRecord {
                    name: r.get(0)?,
                    hash: r.get(1)?,
                    read_only: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn delete_token(&self, name: &str) -> Result<bool> {
        let db = self.writer()?;
        db.execute("DELETE FROM api_tokens WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(db_error)
    }

    fn start_run(&self, c: &Connection, kind: &str, trigger: &str, started_at: i64) -> Result<i64> {
        let db = self.writer()?;
        db.execute("INSERT INTO runs (account_id, livemode, kind, started_at, status, counts, requests, triggered_by) VALUES (?1, ?2, ?3, ?4, 'running', '{}', 0, ?5)", params![c.account_id, c.livemode, kind, started_at, trigger]).map_err(db_error)?;
        Ok(db.last_insert_rowid())
    }

    fn finish_run(&self, run: &RunRecord) -> Result<()> {
        let db = self.writer()?;
        let counts = serde_json::to_string(&run.counts).unwrap_or_else(|_| "{}".into());
        let progress = run.progress.as_ref().map(|p| p.to_string());
        db.execute("UPDATE runs SET ended_at = ?2, status = ?3, counts = ?4, requests = ?5, error = ?6, kind = ?7, progress = ?8 WHERE id = ?1", params![run.id, run.ended_at, run.status, counts, run.requests as i64, run.error, run.kind, progress]).map_err(db_error)?;
        Ok(())
    }

    fn run(&self, c: &Connection, id: i64) -> Result<Option<RunRecord>> {
        let db = self.reader();
        db.query_row(
            "SELECT * FROM runs WHERE account_id = ?1 AND livemode = ?2 AND id = ?3",
            params![c.account_id, c.livemode, id],
            read_run,
        )
        .optional()
        .map_err(db_error)
    }

    fn latest_runs(&self) -> Result<Vec<RunRecord>> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached("SELECT * FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY account_id, livemode)")
            .map_err(db_error)?;
        let rows = statement.query_map([], read_run).map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn states_of_all(&self, keys: &[&str]) -> Result<Vec<(Connection, String, String)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.reader();
        let marks: Vec<String> = (1..=keys.len()).map(|n| format!("?{n}")).collect();
        let mut statement = db
            .prepare_cached(&format!(
                "SELECT account_id, livemode, key, value FROM sync_state WHERE key IN ({})",
                marks.join(", ")
            ))
            .map_err(db_error)?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(keys.iter()), |r| {
                Ok((
                    Connection {
                        account_id: r.get(0)?,
                        livemode: r.get(1)?,
                    },
                    r.get(2)?,
                    r.get(3)?,
                ))
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn latest_event_at(&self, c: &Connection) -> Result<Option<i64>> {
        let db = self.reader();
        let mut statement = db
            .prepare_cached(
                "SELECT max(created) FROM events WHERE account_id = ?1 AND livemode = ?2",
            )
            .map_err(db_error)?;
        statement
            .query_row(params![c.account_id, c.livemode], |r| r.get(0))
            .map_err(db_error)
    }

    fn runs(&self, c: &Connection, limit: usize) -> Result<Vec<RunRecord>> {
        let db = self.reader();
        let mut statement = db.prepare_cached("SELECT * FROM runs WHERE account_id = ?1 AND livemode = ?2 ORDER BY id DESC LIMIT ?3").map_err(db_error)?;
        let rows = statement
            .query_map(params![c.account_id, c.livemode, limit as i64], read_run)
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    fn sandboxed_query(&self, sql: &str, _reader_secret: &str) -> Result<crate::ValuesResult> {
        let mut sandbox = match self.sandboxes.iter().find_map(|s| s.try_lock()) {
            Some(free) => free,
            None => {
                let turn = self.next_reader.fetch_add(1, Ordering::Relaxed);
                self.sandboxes[turn % self.sandboxes.len()].lock()
            }
        };
        sandbox.run(sql)
    }

    fn query_values(&self, sql: &str) -> Result<crate::ValuesResult> {
        use serde_json::Value;
        let bad = |e: rusqlite::Error| StoreError::BadQuery(e.to_string());
        let db = self.reader();
        let mut statement = db.prepare(sql).map_err(bad)?;
        if !statement.readonly() {
            return Err(StoreError::BadQuery(
                "only read-only queries (SELECT …) may be run here".into(),
            ));
        }
        let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let width = names.len();
        // A query that runs past the time limit is interrupted (a recursive CTE that never
        // ends would hold this reader forever).
        let (finished, waiting) = std::sync::mpsc::channel::<()>();
        let interrupt = db.get_interrupt_handle();
        let watchdog = std::thread::spawn(move || {
            if waiting.recv_timeout(crate::QUERY_TIME_LIMIT)
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                interrupt.interrupt();
            }
        });
        let stop_watchdog = || {
            let _ = finished.send(());
        };
        let bad = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                StoreError::BadQuery(format!(
                    "the query ran longer than {} s and was stopped",
                    crate::QUERY_TIME_LIMIT.as_secs()
                ))
            }
            other => StoreError::BadQuery(other.to_string()),
        };
        let result = (|| {
            let mut rows = statement.query([]).map_err(bad)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(bad)? {
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let value: rusqlite::types::Value = row.get(i).map_err(db_error)?;
                    values.push(match value {
                        rusqlite::types::Value::Null => Value::Null,
                        rusqlite::types::Value::Integer(n) => Value::from(n),
                        rusqlite::types::Value::Real(f) => Value::from(f),
                        rusqlite::types::Value::Text(s) => Value::String(s),
                        rusqlite::types::Value::Blob(b) => {
                            Value::String(format!("<{} bytes>", b.len()))
                        }
                    });
                }
                out.push(values);
            }
            Ok(out)
        })();
        stop_watchdog();
        let _ = watchdog.join();
        Ok((names, result?))
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    /// What SQLite plans for a statement on a fresh mirror (no statistics, as users have).
    fn plan(sql: &str) -> String {
        let dir = std::env::temp_dir().join(format!("sm-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plan.db");
        drop(crate::open(path.to_str().unwrap()).unwrap());
        let db = rusqlite::Connection::open(&path).unwrap();
        let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = statement
            .query_map(params!["acct", 0, "x"], |r| r.get::<_, String>(3))
            .unwrap();
        let plan = rows.map(Result::unwrap).collect::<Vec<_>>().join("; ");
        let _ = std::fs::remove_dir_all(&dir);
        plan
    }

    #[test]
    fn children_are_found_through_their_parent_index() {
        let found = plan(&ids_where_sql("invoice_line_items", "parent_id", true));
        assert!(found.contains("invoice_line_items_parent"), "{found}");
        let found = plan(&ids_where_sql("subscription_items", "parent_id", true));
        assert!(found.contains("subscription_items_parent"), "{found}");
    }
}
