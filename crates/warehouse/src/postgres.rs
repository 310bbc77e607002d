//! The Postgres backend: the mirror in a schema of its own (default `stripe`), so that it sits
//! beside a user's tables. It behaves like the SQLite backend (`sqlite.rs`) and passes the same
//! suite; the differences are Postgres types: `jsonb` data, `boolean` flags, `bigint` numbers,
//! `bytea` sealed keys, typed columns as stored generated columns.
//!
//! A small pool of connections (`POOL_SIZE`), without TLS. Each session's
//! `search_path` is the mirror's schema, so unqualified names (ours and those of [`Store::query`])
//! resolve there. The driver is the synchronous `postgres` crate: like every call into a store,
//! calls must come from blocking threads (`spawn_blocking`), never from async code.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use postgres::config::Host;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, GenericClient, SimpleQueryMessage, Statement};

mod lease;
mod notify;
mod sandbox;
pub mod tls;

use tls::{SslMode, Tls, TlsRequest};

use crate::schema::{ColumnType, TABLES, table};
use crate::{
    AccountRecord, Backend, Batch, BindSealed, Connection, Counts, EventRow, Guard, ObjectRow,
    Result, RunRecord, SCHEMA_VERSION, SEALED_VALUES_BOUND, SealedField, Store, StoreError, Stored,
    StoredRow, Window,
};

/// The schema when the URL names none.
pub const DEFAULT_SCHEMA: &str = "stripe";

/// How long a connection may sit idle before it is pinged (a connection that went silent, a
/// network that drops packets, gives no sign until a request waits in vain).
const IDLE_CHECK: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const URL_HINT: &str = "check --database / STRIPE_MIRROR_DATABASE_URL";

/// Opens a Postgres store as a [`Store`].
pub fn open(target: &str) -> Result<Box<dyn Store>> {
    Ok(Box::new(PostgresStore::open(target)?))
}

/// A mirror in a Postgres schema.
pub struct PostgresStore {
    config: Config,
    /// How connections are encrypted and the server's certificate checked.
    tls: Tls,
    schema: String,
    /// The URL without password or `schema` parameter: what people and errors see.
    url: String,
    /// A few connections, so that batches of different windows (and deliveries) are written
    /// side by side: one server process is one core, and parsing JSON into `jsonb` is most of
    /// a write's cost.
    conns: Vec<Mutex<Conn>>,
    /// Where to wait when every connection is busy.
    next: std::sync::atomic::AtomicUsize,
    /// The connection users' SQL runs on, as the reader role (`postgres/sandbox.rs`).
    sql_reader: Mutex<Option<Client>>,
}

/// Connections per store.
const POOL_SIZE: usize = 3;

struct Conn {
    client: Option<Client>,
    /// Prepared statements of this connection, by SQL text.
    statements: HashMap<String, Statement>,
    last_used: Instant,
}

/// What a step inside a connection can fail with: the driver (mapped by the store, which knows
/// the URL), or an error of ours.
enum Failure {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(error: postgres::Error) -> Self {
        Failure::Pg(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

type Step<T> = std::result::Result<T, Failure>;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `"name"`: a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`: a SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn checked_table(name: &str) -> Result<&'static crate::Table> {
    table(name).ok_or_else(|| StoreError::UnknownTable(name.into()))
}

/// The driver's error in words: the server's message (with detail and hint), or the client's
/// error and its cause. Never contains the password (the driver's errors do not carry it).
fn error_text(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Whether an error means the connection is gone (rather than a statement failed).
fn is_connection_error(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        None => std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>()),
    }
}

/// Whether the server closed the connection (a restart, an administrator's
/// `pg_terminate_backend`): reads what it sent meanwhile, without waiting. The connection is
/// only read while a request runs, so without this the next request would fail.
fn hung_up(client: &mut Client) -> bool {
    {
        let mut notifications = client.notifications();
        let mut pending = notifications.iter();
        loop {
            match pending.next() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return true,
            }
        }
    }
    client.is_closed()
}

/// Runs `f` on a thread of its own, and waits. The driver blocks on a tokio runtime of its own,
/// which tokio refuses on a thread that runs async code (it panics): so that the store, like the
/// SQLite one, may be opened, used and dropped anywhere, nothing of the driver runs on the
/// caller's thread. A thread costs some tens of microseconds, a round trip to the server more.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("sm-postgres".into())
            .spawn_scoped(scope, move || span.in_scope(f))
            .expect("a thread for the Postgres driver");
        match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A prepared statement of this connection, prepared once.
fn prepared(
    statements: &mut HashMap<String, Statement>,
    client: &mut impl GenericClient,
    sql: &str,
) -> std::result::Result<Statement, postgres::Error> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    statements.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `--database` URL taken apart.
struct Target {
    /// What the driver connects with (the URL minus `schema`, `sslmode` and `sslrootcert`).
    config: Config,
    tls: Tls,
    schema: String,
    /// The URL without password or `schema`.
    url: String,
}

/// Reads `postgres://user[:password]@host[:port]/db[?schema=NAME][&other params]`. The driver
/// rejects parameters it does not know, so `schema` is taken out before it reads the rest.
fn parse_target(target: &str) -> Result<Target> {
    let invalid = |url: &str, detail: String| StoreError::Unavailable {
        target: url.to_owned(),
        detail: format!("not a valid Postgres URL: {detail}; {URL_HINT}"),
    };
    let Some((scheme, rest)) = target
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
    else {
        return Err(invalid(
            "(the database URL)",
            "it should start with postgres://".into(),
        ));
    };
    // The credentials end at the first `@` (as the driver reads them), the parameters start at
    // the first `?` after it.
    let (credentials, after) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (location, params) = match after.find('?') {
        Some(question) => (&after[..question], Some(&after[question + 1..])),
        None => (after, None),
    };
    let user = credentials.map(|c| c.split_once(':').map_or(c, |(user, _)| user));
    let mut schema = None;
    let mut tls = TlsRequest::default();
    let mut ssl_mode = None;
    let mut kept = Vec::new();
    let mut shown = Vec::new();
    for pair in params
        .into_iter()
        .flat_map(|p| p.split('&'))
        .filter(|p| !p.is_empty())
    {
        let key = percent_decode(pair.split_once('=').map_or(pair, |(key, _)| key));
        match key.as_str() {
            "schema" => schema = Some(percent_decode(pair.split_once('=').map_or("", |(_, v)| v))),
            "password" => kept.push(pair),
            // The driver knows only three modes and no roots: ours (`postgres/tls.rs`) do TLS.
            "sslmode" => {
                ssl_mode = Some(percent_decode(pair.split_once('=').map_or("", |(_, v)| v)));
                shown.push(pair);
            }
            "sslrootcert" => {
                let value = percent_decode(pair.split_once('=').map_or("", |(_, v)| v));
                tls.root_cert = Some(std::path::PathBuf::from(value));
                shown.push(pair);
            }
            _ => {
                kept.push(pair);
                shown.push(pair);
            }
        }
    }
    let join = |pairs: &[&str]| {
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    };
    let url = format!(
        "{scheme}://{}{location}{}",
        user.map(|u| format!("{u}@")).unwrap_or_default(),
        join(&shown)
    );
    let connect = format!(
        "{scheme}://{}{location}{}",
        credentials.map(|c| format!("{c}@")).unwrap_or_default(),
        join(&kept)
    );
    let mut config = Config::from_str(&connect).map_err(|e| invalid(&url, error_text(&e)))?;
    let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    if schema.is_empty() || schema.len() > 63 || schema.contains('\0') {
        return Err(invalid(
            &url,
            format!("the schema name {schema:?} must have 1 to 63 bytes"),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("stripe-mirror");
    }
    if let Some(mode) = ssl_mode {
        tls.mode = Some(SslMode::parse(&mode).map_err(|e| invalid(&url, e))?);
    }
    let tls = Tls::settle(&tls, &mut config).map_err(|e| invalid(&url, e))?;
    Ok(Target {
        config,
        tls,
        schema,
        url,
    })
}

/// A typed column's expression over `data`. Values of another JSON type than the column's give
/// NULL (as a text column would show them), so that one odd object never fails a page.
fn generated(path: &str, sql_type: ColumnType) -> String {
    let keys: Vec<String> = path.split('.').map(literal).collect();
    let (last, parents) = keys.split_last().expect("a path has a key");
    let parent: String = parents.iter().map(|key| format!("->{key}")).collect();
    let json = format!("data{parent}->{last}");
    let text = format!("data{parent}->>{last}");
    match sql_type {
        ColumnType::Text => format!("({text})"),
        // Numbers out of the type's range give NULL too (a cast error would fail the write).
        ColumnType::Integer => format!(
            "(CASE WHEN jsonb_typeof({json}) = 'number' AND abs(({text})::numeric) <= 9223372036854775807 THEN ({text})::numeric::bigint END)"
        ),
        ColumnType::Boolean => {
            format!("(CASE WHEN jsonb_typeof({json}) = 'boolean' THEN ({text})::boolean END)")
        }
        ColumnType::Real => format!(
            "(CASE WHEN jsonb_typeof({json}) = 'number' AND abs(({text})::numeric) < 1e308 THEN ({text})::double precision END)"
        ),
    }
}

/// The DDL of the mirror, as (relation it creates, statement), in order.
fn ddl() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, sql: String| out.push((name.to_owned(), sql));
    add(
        "accounts",
        "CREATE TABLE IF NOT EXISTS accounts (
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  name text NOT NULL,
  stripe_name text,
  icon_url text,
  key_kind text NOT NULL,
  key_masked text NOT NULL,
  key_sealed bytea NOT NULL,
  permissions jsonb NOT NULL,
  status text NOT NULL,
  status_message text,
  start_date bigint,
  webhook_endpoint_id text,
  webhook_secret_sealed bytea,
  api_base text,
  api_version text,
  logo_url text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  PRIMARY KEY (account_id, livemode)
)"
        .into(),
    );
    // `seq` keeps the order events arrived in (SQLite's rowid), to order events of one second.
    add(
        "events",
        "CREATE TABLE IF NOT EXISTS events (
  account_id text COLLATE \"C\" NOT NULL,
  id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  type text NOT NULL,
  created bigint NOT NULL,
  object_id text COLLATE \"C\",
  data jsonb NOT NULL,
  received_at bigint NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (account_id, id)
)"
        .into(),
    );
    add(
        "events_created",
        "CREATE INDEX IF NOT EXISTS events_created ON events (account_id, livemode, created)"
            .into(),
    );
    add(
        "events_position",
        "CREATE INDEX IF NOT EXISTS events_position ON events (account_id, livemode, seq)".into(),
    );
    add(
        "events_object",
        "CREATE INDEX IF NOT EXISTS events_object ON events (account_id, object_id)".into(),
    );
    add(
        "runs",
        "CREATE TABLE IF NOT EXISTS runs (
  id bigserial PRIMARY KEY,
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  kind text NOT NULL,
  started_at bigint NOT NULL,
  ended_at bigint,
  status text NOT NULL,
  counts jsonb NOT NULL,
  requests bigint NOT NULL,
  error text,
  progress jsonb,
  triggered_by text
)"
        .into(),
    );
    add(
        "runs_account",
        "CREATE INDEX IF NOT EXISTS runs_account ON runs (account_id, livemode, id)".into(),
    );
    add(
        "cursors",
        "CREATE TABLE IF NOT EXISTS cursors (
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  scope text COLLATE \"C\" NOT NULL,
  window_start bigint NOT NULL,
  window_end bigint NOT NULL,
  state text NOT NULL,
  after_id text COLLATE \"C\",
  PRIMARY KEY (account_id, livemode, scope, window_start)
)"
        .into(),
    );
    add(
        "api_tokens",
        "CREATE TABLE IF NOT EXISTS api_tokens (
  name text PRIMARY KEY,
  hash bytea NOT NULL,
  read_only boolean NOT NULL,
  created_at bigint NOT NULL
)"
        .into(),
    );
    add(
        "notify_channels",
        "CREATE TABLE IF NOT EXISTS notify_channels (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  kind text NOT NULL,
  target_masked text NOT NULL,
  config_sealed bytea NOT NULL,
  status text NOT NULL,
  status_message text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
)"
        .into(),
    );
    add(
        "notify_rules",
        "CREATE TABLE IF NOT EXISTS notify_rules (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  channel_id text NOT NULL,
  spec text NOT NULL,
  created_at bigint NOT NULL
)"
        .into(),
    );
    add(
        "notify_queue",
        "CREATE TABLE IF NOT EXISTS notify_queue (
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  event_id text COLLATE \"C\" NOT NULL,
  queued_at bigint NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (account_id, livemode, event_id)
)"
        .into(),
    );
    add(
        "notify_deliveries",
        "CREATE TABLE IF NOT EXISTS notify_deliveries (
  id bigserial PRIMARY KEY,
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  event_id text COLLATE \"C\" NOT NULL,
  rule_id text NOT NULL,
  channel_id text NOT NULL,
  state text NOT NULL,
  attempts bigint NOT NULL DEFAULT 0,
  due_at bigint NOT NULL,
  created_at bigint NOT NULL,
  finished_at bigint,
  last_error text,
  UNIQUE (account_id, livemode, event_id, rule_id, channel_id)
)"
        .into(),
    );
    add(
        "notify_deliveries_due",
        "CREATE INDEX IF NOT EXISTS notify_deliveries_due ON notify_deliveries (due_at) WHERE state IN ('pending', 'digest')".into(),
    );
    add(
        "notify_deliveries_channel",
        "CREATE INDEX IF NOT EXISTS notify_deliveries_channel ON notify_deliveries (channel_id, id)".into(),
    );
    add(
        "sync_leases",
        "CREATE TABLE IF NOT EXISTS sync_leases (
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  due_at bigint NOT NULL,
  owner text,
  lease_until bigint,
  epoch bigint NOT NULL DEFAULT 0,
  inbox_since bigint,
  PRIMARY KEY (account_id, livemode)
)"
        .into(),
    );
    add(
        "sync_leases_due",
        "CREATE INDEX IF NOT EXISTS sync_leases_due ON sync_leases (due_at)".into(),
    );
    add(
        "inbox",
        "CREATE TABLE IF NOT EXISTS inbox (
  seq bigserial PRIMARY KEY,
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  event_id text COLLATE \"C\" NOT NULL,
  received_at bigint NOT NULL,
  body text NOT NULL,
  UNIQUE (account_id, livemode, event_id)
)"
        .into(),
    );
    add(
        "sync_state",
        "CREATE TABLE IF NOT EXISTS sync_state (
  account_id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  key text COLLATE \"C\" NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (account_id, livemode, key)
)"
        .into(),
    );
    for t in TABLES {
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (
  account_id text COLLATE \"C\" NOT NULL,
  id text COLLATE \"C\" NOT NULL,
  livemode boolean NOT NULL,
  created bigint,
  deleted boolean NOT NULL DEFAULT false,
  data jsonb NOT NULL,
  version bigint NOT NULL,
  synced_at bigint NOT NULL,
  parent_id text COLLATE \"C\"",
            ident(t.name)
        );
        for column in t.columns {
            let sql_type = match column.sql_type {
                ColumnType::Text => "text",
                ColumnType::Integer => "bigint",
                ColumnType::Boolean => "boolean",
                ColumnType::Real => "double precision",
            };
            sql.push_str(&format!(
                ",\n  {} {sql_type} GENERATED ALWAYS AS {} STORED",
                ident(column.name),
                generated(column.path, column.sql_type)
            ));
        }
        sql.push_str(",\n  PRIMARY KEY (account_id, id)\n)");
        add(t.name, sql);
        let index = format!("{}_created", t.name);
        add(
            &index,
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} (account_id, created)",
                ident(&index),
                ident(t.name)
            ),
        );
        // Pages as Stripe lists them (`page`): newest first, without `created` last.
        let index = format!("{}_page", t.name);
        add(
            &index,
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} (account_id, livemode, (COALESCE(created, -1)), id)",
                ident(&index),
                ident(t.name)
            ),
        );
        // Children by parent (`ids_where(…, "parent_id", …)`); most rows have none.
        let index = format!("{}_parent", t.name);
        add(
            &index,
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} (account_id, parent_id) WHERE parent_id IS NOT NULL",
                ident(&index),
                ident(t.name)
            ),
        );
        for column in t.indexed {
            let index = format!("{}_{column}", t.name);
            add(
                &index,
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {} (account_id, {})",
                    ident(&index),
                    ident(t.name),
                    ident(column)
                ),
            );
        }
    }
    out
}

const ACCOUNT_COLUMNS: &str = "account_id, livemode, name, stripe_name, icon_url, key_kind, key_masked, key_sealed, permissions::text, status, status_message, start_date, webhook_endpoint_id, webhook_secret_sealed, created_at, updated_at, api_base, api_version, logo_url";

fn read_account(row: &postgres::Row) -> std::result::Result<AccountRecord, postgres::Error> {
    let permissions: String = row.try_get(8)?;
    Ok(AccountRecord {
        connection: Connection {
            account_id: row.try_get(0)?,
            livemode: row.try_get(1)?,
        },
        name: row.try_get(2)?,
        stripe_name: row.try_get(3)?,
        icon_url: row.try_get(4)?,
        key_kind: row.try_get(5)?,
        key_masked: row.try_get(6)?,
        key_sealed: row.try_get(7)?,
        permissions: serde_json::from_str(&permissions).unwrap_or(serde_json::Value::Null),
        status: row.try_get(9)?,
        status_message: row.try_get(10)?,
        start_date: row.try_get(11)?,
        webhook_endpoint_id: row.try_get(12)?,
        webhook_secret_sealed: row.try_get(13)?,
        created_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
        api_base: row.try_get(16)?,
        api_version: row.try_get(17)?,
        logo_url: row.try_get(18)?,
    })
}

/// `id, deleted, data, version` of a mirrored row.
fn read_stored_row(row: &postgres::Row) -> std::result::Result<StoredRow, postgres::Error> {
    let data: String = row.try_get(2)?;
    Ok(StoredRow {
        id: row.try_get(0)?,
        deleted: row.try_get(1)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        version: row.try_get(3)?,
    })
}

/// The columns `read_run` reads, in its order.
const RUN_SELECT: &str = "SELECT id, account_id, livemode, kind, started_at, ended_at, status, counts::text, requests, error, progress::text, triggered_by FROM runs";

fn read_run(row: &postgres::Row) -> std::result::Result<RunRecord, postgres::Error> {
    let counts: String = row.try_get(7)?;
    Ok(RunRecord {
        id: row.try_get(0)?,
        connection: Connection {
            account_id: row.try_get(1)?,
            livemode: row.try_get(2)?,
        },
        kind: row.try_get(3)?,
        trigger: row.try_get::<_, Option<String>>(11)?.unwrap_or_default(),
        started_at: row.try_get(4)?,
        ended_at: row.try_get(5)?,
        status: row.try_get(6)?,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        requests: row.try_get::<_, i64>(8)? as u64,
        error: row.try_get(9)?,
        progress: row
            .try_get::<_, Option<String>>(10)?
            .and_then(|p| serde_json::from_str(&p).ok()),
    })
}

/// A row the guard let through, with the `created` and `parent_id` it ends with (an earlier
/// write of the same id in the batch may have set them).
struct Write<'r> {
    row: &'r ObjectRow,
    created: Option<i64>,
    parent_id: Option<&'r str>,
}

/// The connection holding a [`Store::hold_exclusive`] lock. Closing a `postgres::Client` blocks
/// on a runtime of its own, which panics inside an async task: it is closed on a thread.
struct ExclusiveHold(Option<Client>);

impl Drop for ExclusiveHold {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            std::thread::spawn(move || drop(client));
        }
    }
}

impl PostgresStore {
    /// Connects to the server a `postgres://` URL names, creates the schema (default `stripe`)
    /// and brings its tables up to date.
    pub fn open(target: &str) -> Result<PostgresStore> {
        let Target {
            config,
            tls,
            schema,
            url,
        } = parse_target(target)?;
        let store = PostgresStore {
            config,
            tls,
            schema,
            url,
            conns: (0..POOL_SIZE)
                .map(|_| {
                    Mutex::new(Conn {
                        client: None,
                        statements: HashMap::new(),
                        last_used: Instant::now(),
                    })
                })
                .collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
            sql_reader: Mutex::new(None),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema the mirror is in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `host:port` of each server the URL names, for error messages.
    fn hosts(&self) -> String {
        let ports = self.config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) => format!("{name}:{}", port(i)),
                #[cfg(unix)]
                Host::Unix(path) => format!("{} (port {})", path.display(), port(i)),
            })
            .collect();
        if hosts.is_empty() {
            "the default host".into()
        } else {
            hosts.join(", ")
        }
    }

    fn unavailable(&self, error: &postgres::Error, lost: bool) -> StoreError {
        let text = error_text(error);
        let detail = match error.code() {
            Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
                format!("{text}; create it (createdb) or {URL_HINT}")
            }
            Some(code) if code.code().starts_with("28") => {
                format!("{text}; check the user and password: {URL_HINT}")
            }
            _ if text.contains("TLS") || text.contains("certificate") => format!(
                "{text}; the connection asks for sslmode={}: check that the server offers TLS, that its certificate chains to sslrootcert (or the system's roots) and, for verify-full, names the host",
                self.tls.mode.name()
            ),
            _ if lost => format!(
                "lost the connection: {text}; is Postgres still running at {}? {URL_HINT}",
                self.hosts()
            ),
            _ => format!(
                "{text}; is Postgres running at {}? {URL_HINT}",
                self.hosts()
            ),
        };
        StoreError::Unavailable {
            target: self.url.clone(),
            detail,
        }
    }

    fn db_error(&self, error: postgres::Error) -> StoreError {
        if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::Duplicate(error_text(&error))
        } else if is_connection_error(&error) {
            self.unavailable(&error, true)
        } else {
            StoreError::Database(error_text(&error))
        }
    }

    fn connect(&self) -> Result<Client> {
        let mut client = self
            .config
            .connect(self.tls.connector.clone())
            .map_err(|e| self.unavailable(&e, false))?;
        client
            .batch_execute(&format!("SET search_path TO {}", ident(&self.schema)))
            .map_err(|e| self.db_error(e))?;
        // Statements are prepared once per connection. A generic plan made while a table was
        // empty (a first sync, or a server without autovacuum) would scan the whole table for
        // ever after; planning each execution is cheap next to that. (Postgres 12 and later.)
        if let Err(error) = client.batch_execute("SET plan_cache_mode = force_custom_plan") {
            tracing::debug!(error = %error_text(&error), "plan_cache_mode not set");
        }
        Ok(client)
    }

    /// A live connection: reconnects when the last one closed, or when it sat idle and does not
    /// answer any more.
    fn ensure_connected(&self, conn: &mut Conn) -> Result<()> {
        let healthy = match conn.client.as_mut() {
            None => false,
            Some(client) => {
                !hung_up(client)
                    && (conn.last_used.elapsed() < IDLE_CHECK
                        || client.is_valid(PING_TIMEOUT).is_ok())
            }
        };
        if !healthy {
            if conn.client.take().is_some() {
                tracing::info!(target = %self.url, "reconnecting to Postgres");
            }
            conn.statements.clear();
            conn.client = Some(self.connect()?);
            conn.last_used = Instant::now();
        }
        Ok(())
    }

    /// Runs `step` on the connection. When the connection turns out broken, the step runs once
    /// more on a new connection if it said so far that nothing it did can have taken effect
    /// (`retry`); otherwise the error stands and the next call reconnects.
    fn with_conn<T: Send>(
        &self,
        step: impl FnMut(&mut Client, &mut HashMap<String, Statement>, &mut bool) -> Step<T> + Send,
    ) -> Result<T> {
        off_runtime(|| self.with_conn_here(step))
    }

    fn with_conn_here<T>(
        &self,
        mut step: impl FnMut(&mut Client, &mut HashMap<String, Statement>, &mut bool) -> Step<T>,
    ) -> Result<T> {
        // A free connection, else wait for one in turn.
        let mut conn = match self.conns.iter().find_map(|conn| conn.try_lock()) {
            Some(conn) => conn,
            None => {
                let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.conns[turn % self.conns.len()].lock()
            }
        };
        let mut attempts_left = 2;
        loop {
            attempts_left -= 1;
            self.ensure_connected(&mut conn)?;
            let Conn {
                client,
                statements,
                last_used,
            } = &mut *conn;
            let client = client.as_mut().expect("connected above");
            let mut retry = false;
            let result = step(client, statements, &mut retry);
            *last_used = Instant::now();
            let error = match result {
                Ok(value) => return Ok(value),
                Err(Failure::Store(error)) => return Err(error),
                Err(Failure::Pg(error)) => error,
            };
            // A failed statement may leave stale prepared statements behind (a table changed
            // under them, say): prepare again next time.
            statements.clear();
            if client.is_closed() || is_connection_error(&error) {
                conn.client = None;
                if retry && attempts_left > 0 {
                    tracing::warn!(target = %self.url, error = %error_text(&error), "lost the Postgres connection; retrying on a new one");
                    continue;
                }
            }
            return Err(self.db_error(error));
        }
    }

    /// Reads: run again on a new connection if the connection broke.
    fn read<T: Send>(
        &self,
        mut step: impl FnMut(&mut Client, &mut HashMap<String, Statement>) -> Step<T> + Send,
    ) -> Result<T> {
        self.with_conn(|client, statements, retry| {
            *retry = true;
            step(client, statements)
        })
    }

    /// Writes, in one transaction: run again on a new connection only if the connection broke
    /// at `BEGIN`, before anything was sent that could commit.
    fn write<T: Send>(
        &self,
        mut step: impl FnMut(&mut postgres::Transaction<'_>, &mut HashMap<String, Statement>) -> Step<T>
        + Send,
    ) -> Result<T> {
        self.with_conn(|client, statements, retry| {
            *retry = true;
            let mut tx = client.transaction()?;
            *retry = false;
            let value = step(&mut tx, statements)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// Creates the schema and whatever of the mirror's tables and indexes is missing, under an
    /// advisory lock, so that two processes opening at once do not race.
    fn migrate(&self) -> Result<()> {
        let schema = self.schema.clone();
        self.write(|tx, _| {
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('stripe-mirror'), hashtext($1))", &[&schema])?;
            // Only what is missing is created: opening needs no CREATE privilege once the
            // mirror exists, and takes no lock on its tables.
            let schema_exists = tx
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])?
                .is_some();
            if !schema_exists {
                tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)))?;
            }
            let existing: HashSet<String> = tx
                .query(
                    "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
                    &[&schema],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if !existing.contains("stripe_mirror_meta") {
                tx.batch_execute("CREATE TABLE IF NOT EXISTS stripe_mirror_meta (key text PRIMARY KEY, value text NOT NULL)")?;
            }
            let found: Option<i64> = tx
                .query_opt("SELECT value FROM stripe_mirror_meta WHERE key = 'schema_version'", &[])?
                .and_then(|row| row.get::<_, String>(0).parse().ok());
            if let Some(found) = found
                && found > SCHEMA_VERSION
            {
                return Err(StoreError::TooNew { found, supported: SCHEMA_VERSION }.into());
            }
            let missing: Vec<String> =
                ddl().into_iter().filter(|(name, _)| !existing.contains(name)).map(|(_, sql)| sql).collect();
            if !missing.is_empty() {
                tracing::info!(schema = %schema, statements = missing.len(), "creating the mirror's tables");
                tx.batch_execute(&missing.join(";\n"))?;
            }
            // Columns added to accounts since schema 1: the API a connection was made against
            // (2), the API version its rows are kept in (3), the logo the user chose (4).
            if existing.contains("accounts") && found.is_none_or(|v| v < 4) {
                tx.batch_execute(&format!(
                    "ALTER TABLE {0}.accounts ADD COLUMN IF NOT EXISTS api_base text; ALTER TABLE {0}.accounts ADD COLUMN IF NOT EXISTS api_version text; ALTER TABLE {0}.accounts ADD COLUMN IF NOT EXISTS logo_url text; ALTER TABLE {0}.runs ADD COLUMN IF NOT EXISTS progress jsonb",
                    ident(&schema)
                ))?;
            }
            // What started a run (5).
            if existing.contains("runs") && found.is_none_or(|v| v < 5) {
                tx.batch_execute(&format!(
                    "ALTER TABLE {0}.runs ADD COLUMN IF NOT EXISTS triggered_by text",
                    ident(&schema)
                ))?;
            }
            // Deliveries make a lease row claimable (10).
            if existing.contains("sync_leases") && found.is_none_or(|v| v < 10) {
                tx.batch_execute(&format!(
                    "ALTER TABLE {0}.sync_leases ADD COLUMN IF NOT EXISTS inbox_since bigint",
                    ident(&schema)
                ))?;
            }
            // The objects' JSON is compressed with lz4 where the server can (PostgreSQL 14 and
            // later, built with it): pglz took a tenth of the server's time in a backfill.
            let version: i64 = tx
                .query_one("SHOW server_version_num", &[])?
                .get::<_, String>(0)
                .parse()
                .unwrap_or(0);
            if version >= 140_000 {
                let pglz: Vec<String> = tx
                    .query(
                        "SELECT c.relname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attname = 'data' AND a.attcompression <> 'l'",
                        &[&schema],
                    )?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                for table in pglz {
                    let mut attempt = tx.transaction()?;
                    let altered = attempt.batch_execute(&format!(
                        "ALTER TABLE {}.{} ALTER COLUMN data SET COMPRESSION lz4",
                        ident(&schema),
                        ident(&table)
                    ));
                    match altered {
                        Ok(()) => attempt.commit()?,
                        // No lz4 in this server, or not the tables' owner: pglz it stays.
                        Err(error) => {
                            tracing::debug!(error = %error_text(&error), "data stays compressed with pglz");
                            break;
                        }
                    }
                }
            }
            if found != Some(SCHEMA_VERSION) {
                tx.execute(
                    "INSERT INTO stripe_mirror_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&SCHEMA_VERSION.to_string()],
                )?;
            }
            Ok(())
        })
    }

    /// Writes one batch inside the caller's transaction.
    fn write_batch(
        tx: &mut postgres::Transaction<'_>,
        statements: &mut HashMap<String, Statement>,
        c: &Connection,
        batch: &Batch,
    ) -> Step<Counts> {
        if let Some(fence) = &batch.fence {
            lease::check_fence(tx, statements, c, fence)?;
        }
        let mut counts = Counts::default();
        let synced_at = now();
        for entry in &batch.rows {
            let tally = counts.tables.entry(entry.0.to_owned()).or_default();
            Self::apply_rows(tx, statements, (c, synced_at), entry, tally)?;
        }
        for deletion in &batch.deletions {
            let tally = counts.tables.entry(deletion.table.to_owned()).or_default();
            if deletion.ids.is_empty() {
                continue;
            }
            let mark = prepared(
                statements,
                tx,
                &format!(
                    "UPDATE {} SET deleted = true, version = $3, synced_at = $4
                         WHERE account_id = $1 AND id = ANY($2) AND NOT deleted AND version <= $3",
                    ident(deletion.table)
                ),
            )?;
            tally.deleted += tx.execute(
                &mark,
                &[&c.account_id, &deletion.ids, &deletion.version, &synced_at],
            )?;
        }
        if !batch.events.is_empty() {
            // Live events new to the mirror also wait for the notification rules, when there
            // are any (written with them, in this transaction).
            let insert = prepared(
                statements,
                tx,
                if batch.notify {
                    "WITH added AS (
                       INSERT INTO events (account_id, id, livemode, type, created, object_id, data, received_at)
                       SELECT $1, u.id, $2, u.type, u.created, u.object_id, u.data::jsonb, $3
                       FROM UNNEST($4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[]) WITH ORDINALITY AS u (id, type, created, object_id, data, n)
                       ORDER BY u.n
                       ON CONFLICT (account_id, id) DO NOTHING
                       RETURNING id
                     ), queued AS (
                       INSERT INTO notify_queue (account_id, livemode, event_id, queued_at)
                       SELECT $1, $2, id, $3 FROM added WHERE EXISTS (SELECT 1 FROM notify_rules)
                       ON CONFLICT DO NOTHING
                     )
                     SELECT count(*) FROM added"
                } else {
                    "INSERT INTO events (account_id, id, livemode, type, created, object_id, data, received_at)
                     SELECT $1, u.id, $2, u.type, u.created, u.object_id, u.data::jsonb, $3
                     FROM UNNEST($4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[]) WITH ORDINALITY AS u (id, type, created, object_id, data, n)
                     ORDER BY u.n
                     ON CONFLICT (account_id, id) DO NOTHING"
                },
            )?;
            let ids: Vec<&str> = batch.events.iter().map(|e| e.id.as_str()).collect();
            let types: Vec<&str> = batch.events.iter().map(|e| e.event_type.as_str()).collect();
            let created: Vec<i64> = batch.events.iter().map(|e| e.created).collect();
            let objects: Vec<Option<&str>> = batch
                .events
                .iter()
                .map(|e| e.object_id.as_deref())
                .collect();
            let data: Vec<&str> = batch.events.iter().map(|e| e.data.as_str()).collect();
            let values: [&(dyn postgres::types::ToSql + Sync); 8] = [
                &c.account_id,
                &c.livemode,
                &synced_at,
                &ids,
                &types,
                &created,
                &objects,
                &data,
            ];
            counts.new_events += if batch.notify {
                tx.query_one(&insert, &values)?.try_get::<_, i64>(0)? as u64
            } else {
                tx.execute(&insert, &values)?
            };
        }
        if batch.replace_windows {
            let delete = prepared(
                statements,
                tx,
                "DELETE FROM cursors WHERE account_id = $1 AND livemode = $2",
            )?;
            tx.execute(&delete, &[&c.account_id, &c.livemode])?;
        }
        if !batch.remove_state.is_empty() {
            let remove = prepared(
                statements,
                tx,
                "DELETE FROM sync_state WHERE account_id = $1 AND livemode = $2 AND key = ANY($3)",
            )?;
            tx.execute(&remove, &[&c.account_id, &c.livemode, &batch.remove_state])?;
        }
        if !batch.windows.is_empty() {
            let upsert = prepared(
                    statements,
                    tx,
                    "INSERT INTO cursors (account_id, livemode, scope, window_start, window_end, state, after_id) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (account_id, livemode, scope, window_start) DO UPDATE SET window_end = EXCLUDED.window_end, state = EXCLUDED.state, after_id = EXCLUDED.after_id",
                )?;
            for w in &batch.windows {
                tx.execute(
                    &upsert,
                    &[
                        &c.account_id,
                        &c.livemode,
                        &w.scope,
                        &w.start,
                        &w.end,
                        &w.state,
                        &w.after,
                    ],
                )?;
            }
        }
        if !batch.state.is_empty() {
            let upsert = prepared(
                statements,
                tx,
                "INSERT INTO sync_state (account_id, livemode, key, value) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (account_id, livemode, key) DO UPDATE SET value = EXCLUDED.value",
            )?;
            for (key, value) in &batch.state {
                tx.execute(&upsert, &[&c.account_id, &c.livemode, key, value])?;
            }
        }
        Ok(counts)
    }

    /// Writes one table's rows of a batch: one read of the stored versions, the guard decided
    /// here row by row exactly as SQLite does (a later row of the same id sees the earlier
    /// write), one multi-row upsert.
    fn apply_rows(
        tx: &mut postgres::Transaction<'_>,
        statements: &mut HashMap<String, Statement>,
        (c, synced_at): (&Connection, i64),
        (table_name, rows, guard): &(&str, Vec<ObjectRow>, Guard),
        tally: &mut crate::TableCounts,
    ) -> Step<()> {
        let guard = *guard;
        if rows.is_empty() {
            return Ok(());
        }
        let name = ident(table_name);
        let lookup = prepared(
            statements,
            tx,
            // A join on the ids probes the key once per id; `id = ANY($2)` was planned as a
            // bitmap scan that sorted and rechecked every page.
            &format!(
                "SELECT t.id, t.version, t.deleted FROM UNNEST($2::text[]) AS u (id) JOIN {name} t ON t.account_id = $1 AND t.id = u.id"
            ),
        )?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut current: HashMap<String, (i64, bool)> = tx
            .query(&lookup, &[&c.account_id, &ids])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect::<std::result::Result<_, postgres::Error>>()?;
        // Of the rows already stored, those sent again as they are: written all the same (the
        // version and sync time move) but not counted as updated. Only stored rows' data is
        // sent for this, so a backfill of new rows pays nothing.
        let stored_rows: Vec<&ObjectRow> = rows
            .iter()
            .filter(|r| current.contains_key(&r.id))
            .collect();
        let mut same_data: HashSet<String> = HashSet::new();
        if !stored_rows.is_empty() {
            let compare = prepared(
                statements,
                tx,
                &format!(
                    "SELECT u.id FROM UNNEST($2::text[], $3::text[]) AS u (id, data) JOIN {name} t ON t.account_id = $1 AND t.id = u.id WHERE t.data = u.data::jsonb"
                ),
            )?;
            let ids: Vec<&str> = stored_rows.iter().map(|r| r.id.as_str()).collect();
            let data: Vec<&str> = stored_rows.iter().map(|r| r.data.as_str()).collect();
            for found in tx.query(&compare, &[&c.account_id, &ids, &data])? {
                same_data.insert(found.try_get(0)?);
            }
        }
        let mut writes: Vec<Write> = Vec::with_capacity(rows.len());
        let mut position: HashMap<&str, usize> = HashMap::new();
        for row in rows {
            let stored = current.get(&row.id).copied();
            // Compared with what was stored before this batch: only the id's first row.
            let same = same_data.remove(&row.id);
            let write = match (stored, guard) {
                (None, _) => true,
                (Some((version, _)), Guard::AtLeast) => row.version >= version,
                (Some((version, _)), Guard::Newer) => row.version > version,
            };
            if !write {
                tally.skipped += 1;
                continue;
            }
            match stored {
                None if row.deleted => tally.deleted += 1,
                None => tally.inserted += 1,
                Some((_, was_deleted)) if row.deleted && !was_deleted => tally.deleted += 1,
                Some((_, was_deleted)) if same && row.deleted == was_deleted => {
                    tally.unchanged += 1
                }
                Some(_) => tally.updated += 1,
            }
            current.insert(row.id.clone(), (row.version, row.deleted));
            // One statement cannot write a row twice: the last write of an id stands, keeping
            // a `created` or `parent_id` an earlier one set (`COALESCE` as in the upsert).
            match position.get(row.id.as_str()) {
                Some(&i) => {
                    writes[i] = Write {
                        row,
                        created: row.created.or(writes[i].created),
                        parent_id: row.parent_id.as_deref().or(writes[i].parent_id),
                    }
                }
                None => {
                    position.insert(&row.id, writes.len());
                    writes.push(Write {
                        row,
                        created: row.created,
                        parent_id: row.parent_id.as_deref(),
                    });
                }
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        // Rows locked in one order by every writer: two connections writing overlapping rows
        // wait for each other instead of deadlocking.
        writes.sort_unstable_by(|a, b| a.row.id.cmp(&b.row.id));
        // The guard again in the statement: a concurrent writer between the read and the write
        // cannot make an older version win.
        let condition = match guard {
            Guard::AtLeast => "t.version <= EXCLUDED.version",
            Guard::Newer => "t.version < EXCLUDED.version",
        };
        let upsert = prepared(
            statements,
            tx,
            &format!(
                "INSERT INTO {name} AS t (account_id, id, livemode, created, deleted, data, version, synced_at, parent_id)
                 SELECT $1, u.id, $2, u.created, u.deleted, u.data::jsonb, u.version, $3, u.parent_id
                 FROM UNNEST($4::text[], $5::bigint[], $6::boolean[], $7::text[], $8::bigint[], $9::text[]) AS u (id, created, deleted, data, version, parent_id)
                 ON CONFLICT (account_id, id) DO UPDATE SET created = COALESCE(EXCLUDED.created, t.created), deleted = EXCLUDED.deleted,
                   data = EXCLUDED.data, version = EXCLUDED.version, synced_at = EXCLUDED.synced_at, parent_id = COALESCE(EXCLUDED.parent_id, t.parent_id)
                 WHERE {condition}"
            ),
        )?;
        let ids: Vec<&str> = writes.iter().map(|w| w.row.id.as_str()).collect();
        let created: Vec<Option<i64>> = writes.iter().map(|w| w.created).collect();
        let deleted: Vec<bool> = writes.iter().map(|w| w.row.deleted).collect();
        let data: Vec<&str> = writes.iter().map(|w| w.row.data.as_str()).collect();
        let versions: Vec<i64> = writes.iter().map(|w| w.row.version).collect();
        let parents: Vec<Option<&str>> = writes.iter().map(|w| w.parent_id).collect();
        tx.execute(
            &upsert,
            &[
                &c.account_id,
                &c.livemode,
                &synced_at,
                &ids,
                &created,
                &deleted,
                &data,
                &versions,
                &parents,
            ],
        )?;
        Ok(())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the connection blocks on the driver's runtime too.
        for conn in &mut self.conns {
            if let Some(client) = conn.get_mut().client.take() {
                off_runtime(move || drop(client));
            }
        }
        if let Some(client) = self.sql_reader.get_mut().take() {
            off_runtime(move || drop(client));
        }
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn describe(&self) -> String {
        format!("{} (schema {})", self.url, self.schema)
    }

    fn insert_account(&self, a: &AccountRecord) -> Result<()> {
        let permissions = a.permissions.to_string();
        let result = self.write(|tx, statements| {
            let insert = prepared(
                statements,
                tx,
                "INSERT INTO accounts (account_id, livemode, name, stripe_name, icon_url, key_kind, key_masked, key_sealed, permissions, status, status_message, start_date, webhook_endpoint_id, webhook_secret_sealed, created_at, updated_at, api_base, api_version, logo_url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            )?;
            tx.execute(
                &insert,
                &[
                    &a.connection.account_id,
                    &a.connection.livemode,
                    &a.name,
                    &a.stripe_name,
                    &a.icon_url,
                    &a.key_kind,
                    &a.key_masked,
                    &a.key_sealed,
                    &permissions,
                    &a.status,
                    &a.status_message,
                    &a.start_date,
                    &a.webhook_endpoint_id,
                    &a.webhook_secret_sealed,
                    &a.created_at,
                    &a.updated_at,
                    &a.api_base,
                    &a.api_version,
                    &a.logo_url,
                ],
            )?;
            Ok(())
        });
        result.map_err(|e| match e {
            StoreError::Duplicate(_) => StoreError::Duplicate(a.connection.label()),
            other => other,
        })
    }

    fn update_account(&self, a: &AccountRecord) -> Result<()> {
        let permissions = a.permissions.to_string();
        let changed = self.write(|tx, statements| {
            let update = prepared(
                statements,
                tx,
                "UPDATE accounts SET name = $3, stripe_name = $4, icon_url = $5, key_kind = $6, key_masked = $7, key_sealed = $8, permissions = $9::text::jsonb, status = $10, status_message = $11, start_date = $12, webhook_endpoint_id = $13, webhook_secret_sealed = $14, updated_at = $15, api_base = $16, api_version = $17, logo_url = $18
                 WHERE account_id = $1 AND livemode = $2",
            )?;
            Ok(tx.execute(
                &update,
                &[
                    &a.connection.account_id,
                    &a.connection.livemode,
                    &a.name,
                    &a.stripe_name,
                    &a.icon_url,
                    &a.key_kind,
                    &a.key_masked,
                    &a.key_sealed,
                    &permissions,
                    &a.status,
                    &a.status_message,
                    &a.start_date,
                    &a.webhook_endpoint_id,
                    &a.webhook_secret_sealed,
                    &a.updated_at,
                    &a.api_base,
                    &a.api_version,
                    &a.logo_url,
                ],
            )?)
        })?;
        if changed == 0 {
            return Err(StoreError::Database(format!(
                "no connection {}",
                a.connection.label()
            )));
        }
        Ok(())
    }

    fn account(&self, c: &Connection) -> Result<Option<AccountRecord>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1 AND livemode = $2"
                ),
            )?;
            match client.query_opt(&select, &[&c.account_id, &c.livemode])? {
                Some(row) => Ok(Some(read_account(&row)?)),
                None => Ok(None),
            }
        })
    }

    fn accounts(&self) -> Result<Vec<AccountRecord>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, account_id, livemode"),
            )?;
            let rows = client.query(&select, &[])?;
            Ok(rows.iter().map(read_account).collect::<std::result::Result<_, _>>()?)
        })
    }

    fn bind_sealed_values(&self, bind: &mut BindSealed<'_>) -> Result<Option<usize>> {
        self.write(|tx, _| {
            // The rows are locked before the mark is read, so that a second process waits for
            // the first and then sees its mark.
            let rows = tx.query(
                "SELECT account_id, livemode, key_sealed, webhook_secret_sealed FROM accounts FOR UPDATE",
                &[],
            )?;
            let done = tx.query_opt(
                "SELECT value FROM stripe_mirror_meta WHERE key = $1",
                &[&SEALED_VALUES_BOUND],
            )?;
            if done.is_some() {
                return Ok(Some(0));
            }
            let mut changes = Vec::new();
            for row in &rows {
                let connection = Connection::new(row.get::<_, String>(0), row.get::<_, bool>(1));
                for (index, field) in [(2, SealedField::ApiKey), (3, SealedField::WebhookSecrets)] {
                    let Some(old) = row.get::<_, Option<Vec<u8>>>(index) else {
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
            for (connection, field, new) in &changes {
                tx.execute(
                    &format!(
                        "UPDATE accounts SET {} = $3 WHERE account_id = $1 AND livemode = $2",
                        field.column()
                    ),
                    &[&connection.account_id, &connection.livemode, new],
                )?;
            }
            tx.execute(
                "INSERT INTO stripe_mirror_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&SEALED_VALUES_BOUND, &now().to_string()],
            )?;
            Ok(Some(changes.len()))
        })
    }

    fn remove_account(&self, c: &Connection) -> Result<u64> {
        self.write(|tx, statements| {
            let mut removed = 0u64;
            for t in TABLES.iter().map(|t| t.name).chain(["events"]) {
                let delete = prepared(
                    statements,
                    tx,
                    &format!(
                        "DELETE FROM {} WHERE account_id = $1 AND livemode = $2",
                        ident(t)
                    ),
                )?;
                removed += tx.execute(&delete, &[&c.account_id, &c.livemode])?;
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
                let delete = prepared(
                    statements,
                    tx,
                    &format!("DELETE FROM {t} WHERE account_id = $1 AND livemode = $2"),
                )?;
                tx.execute(&delete, &[&c.account_id, &c.livemode])?;
            }
            // Deliveries stay as history; those not sent are canceled with the connection.
            tx.execute(
                "UPDATE notify_deliveries SET state = 'canceled', finished_at = $3 WHERE account_id = $1 AND livemode = $2 AND state IN ('pending', 'digest')",
                &[&c.account_id, &c.livemode, &now()],
            )?;
            Ok(removed)
        })
    }

    fn apply(&self, c: &Connection, batch: &Batch) -> Result<Counts> {
        let mut counts = self.apply_all(c, std::slice::from_ref(batch))?;
        Ok(counts.pop().unwrap_or_default())
    }

    fn apply_all(&self, c: &Connection, batches: &[Batch]) -> Result<Vec<Counts>> {
        for table_name in batches.iter().flat_map(|batch| {
            batch
                .rows
                .iter()
                .map(|r| r.0)
                .chain(batch.deletions.iter().map(|d| d.table))
        }) {
            checked_table(table_name)?;
        }
        self.write(|tx, statements| {
            batches
                .iter()
                .map(|batch| Self::write_batch(tx, statements, c, batch))
                .collect()
        })
    }

    fn parallel_writes(&self) -> usize {
        POOL_SIZE
    }

    fn versions(
        &self,
        c: &Connection,
        table_name: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Stored>> {
        checked_table(table_name)?;
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(|client, statements| {
            let lookup = prepared(
                statements,
                client,
                &format!(
                    "SELECT id, version, deleted FROM {} WHERE account_id = $1 AND id = ANY($2)",
                    ident(table_name)
                ),
            )?;
            let rows = client.query(&lookup, &[&c.account_id, &ids])?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in rows {
                found.insert(
                    row.try_get(0)?,
                    Stored {
                        version: row.try_get(1)?,
                        deleted: row.try_get(2)?,
                    },
                );
            }
            Ok(found)
        })
    }

    fn ids_where(
        &self,
        c: &Connection,
        table_name: &str,
        column: &str,
        value: &str,
    ) -> Result<Vec<String>> {
        let t = checked_table(table_name)?;
        let sql_type = match t.columns.iter().find(|col| col.name == column) {
            Some(col) => col.sql_type,
            None if column == "parent_id" => ColumnType::Text,
            None => {
                return Err(StoreError::Database(format!(
                    "{table_name} has no column {column}"
                )));
            }
        };
        // The value compares as SQLite compares it: text as text, numbers by their digits,
        // flags as 1/0 (or true/false).
        let (condition, value) = match sql_type {
            ColumnType::Text => (format!("{} = $3", ident(column)), value.to_owned()),
            ColumnType::Integer | ColumnType::Real => {
                (format!("{}::text = $3", ident(column)), value.to_owned())
            }
            ColumnType::Boolean => {
                let flag = match value {
                    "1" | "true" => "true",
                    "0" | "false" => "false",
                    _ => return Ok(Vec::new()),
                };
                (format!("{}::text = $3", ident(column)), flag.to_owned())
            }
        };
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "SELECT id FROM {} WHERE account_id = $1 AND livemode = $2 AND {condition} AND NOT deleted ORDER BY id",
                    ident(table_name)
                ),
            )?;
            let rows = client.query(&select, &[&c.account_id, &c.livemode, &value])?;
            Ok(rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, _>>()?)
        })
    }

    fn rows_raw(&self, c: &Connection, table_name: &str) -> Result<Vec<crate::RawRow>> {
        checked_table(table_name)?;
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "SELECT id, deleted, data::text, version FROM {} WHERE account_id = $1 AND livemode = $2 ORDER BY id",
                    ident(table_name)
                ),
            )?;
            let rows = client.query(&select, &[&c.account_id, &c.livemode])?;
            Ok(rows
                .iter()
                .map(|row| {
                    Ok::<_, postgres::Error>(crate::RawRow {
                        id: row.try_get(0)?,
                        deleted: row.try_get(1)?,
                        data: row.try_get(2)?,
                        version: row.try_get(3)?,
                    })
                })
                .collect::<std::result::Result<_, _>>()?)
        })
    }

    fn page_raw(
        &self,
        c: &Connection,
        table_name: &str,
        query: &crate::PageQuery,
    ) -> Result<(Vec<crate::RawRow>, bool)> {
        use crate::page::{Param, page_sql};
        checked_table(table_name)?;
        let name = ident(table_name);
        self.read(|client, _| {
            let cursor: Option<(Option<i64>, String)> = match crate::page::cursor_id(query) {
                Some((id, _)) => Some(
                    client
                        .query_opt(
                            &format!("SELECT created, id FROM {name} WHERE account_id = $1 AND livemode = $2 AND id = $3"),
                            &[&c.account_id, &c.livemode, &id],
                        )?
                        .map(|r| (r.get(0), r.get(1)))
                        .ok_or_else(|| {
                            StoreError::BadQuery(format!(
                                "no object {id} in {table_name} to page from"
                            ))
                        })?,
                ),
                None => None,
            };
            let (sql, extra) = page_sql(
                table_name,
                &name,
                query,
                cursor.as_ref().map(|(created, id)| (*created, id.as_str())),
                |n| format!("${n}"),
                "data::text",
            )?;
            let boxed: Vec<Box<dyn postgres::types::ToSql + Sync>> = extra
                .into_iter()
                .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
                    match p {
                        Param::Text(s) => Box::new(s),
                        Param::Integer(n) => Box::new(n),
                        Param::Boolean(b) => Box::new(b),
                        Param::Real(f) => Box::new(f),
                    }
                })
                .collect();
            let mut all: Vec<&(dyn postgres::types::ToSql + Sync)> =
                vec![&c.account_id, &c.livemode];
            all.extend(boxed.iter().map(|b| b.as_ref()));
            let mut rows = Vec::new();
            for row in client.query(&sql, &all)? {
                let data: String = row.try_get(2)?;
                rows.push(crate::RawRow {
                    id: row.try_get(0)?,
                    deleted: row.try_get(1)?,
                    data,
                    version: row.try_get(3)?,
                });
            }
            let more = rows.len() > query.limit.clamp(1, 100);
            rows.truncate(query.limit.clamp(1, 100));
            if crate::page::cursor_id(query).is_some_and(|(_, newer)| newer) {
                rows.reverse();
            }
            Ok((rows, more))
        })
    }

    fn rows_by_id(
        &self,
        c: &Connection,
        table_name: &str,
        ids: &[String],
    ) -> Result<Vec<StoredRow>> {
        checked_table(table_name)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "SELECT id, deleted, data::text, version FROM {} WHERE account_id = $1 AND livemode = $2 AND id = ANY($3)",
                    ident(table_name)
                ),
            )?;
            let rows = client.query(&select, &[&c.account_id, &c.livemode, &ids])?;
            Ok(rows.iter().map(read_stored_row).collect::<std::result::Result<_, _>>()?)
        })
    }

    fn search_customers(&self, c: &Connection, text: &str, limit: usize) -> Result<Vec<String>> {
        const MATCHES: &str = "NOT c.deleted AND (lower(c.email) LIKE $3 OR lower(c.name) LIKE $3 OR lower((c.data -> 'metadata')::text) LIKE $3)";
        let pattern = crate::contains_pattern(text);
        let limit = limit as i64;
        self.read(|client, statements| {
            // The newest customers first (see SEARCH_NEWEST_FIRST), then all of them.
            let newest = prepared(
                statements,
                client,
                &format!(
                    "SELECT c.data::text FROM (SELECT deleted, email, name, data, created, id FROM customers WHERE account_id = $1 AND livemode = $2 ORDER BY COALESCE(created, -1) DESC, id DESC LIMIT {}) c WHERE {MATCHES} ORDER BY COALESCE(c.created, -1) DESC, c.id DESC LIMIT $4",
                    crate::SEARCH_NEWEST_FIRST
                ),
            )?;
            let rows = client.query(&newest, &[&c.account_id, &c.livemode, &pattern, &limit])?;
            if rows.len() as i64 >= limit {
                return Ok(rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, _>>()?);
            }
            let all = prepared(
                statements,
                client,
                &format!(
                    "SELECT c.data::text FROM customers c WHERE c.account_id = $1 AND c.livemode = $2 AND {MATCHES} ORDER BY COALESCE(c.created, -1) DESC, c.id DESC LIMIT $4"
                ),
            )?;
            let rows = client.query(&all, &[&c.account_id, &c.livemode, &pattern, &limit])?;
            Ok(rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, _>>()?)
        })
    }

    fn count(&self, c: &Connection, table_name: &str) -> Result<(u64, u64)> {
        checked_table(table_name)?;
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "SELECT count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted) FROM {} WHERE account_id = $1 AND livemode = $2",
                    ident(table_name)
                ),
            )?;
            let row = client.query_one(&select, &[&c.account_id, &c.livemode])?;
            Ok((row.try_get::<_, i64>(0)? as u64, row.try_get::<_, i64>(1)? as u64))
        })
    }

    fn events_page(&self, c: &Connection, query: &crate::EventQuery) -> Result<Vec<EventRow>> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.read(|client, statements| {
            let mut sql = String::from("SELECT id, type, created, object_id, data::text FROM events WHERE account_id = $1 AND livemode = $2");
            let (types, type_params) = query.type_clause(3, |n| format!("${n}"));
            sql.push_str(&types);
            let mut params: Vec<Box<dyn postgres::types::ToSql + Sync>> = vec![
                Box::new(c.account_id.clone()),
                Box::new(c.livemode),
            ];
            params.extend(
                type_params
                    .into_iter()
                    .map(|p| Box::new(p) as Box<dyn postgres::types::ToSql + Sync>),
            );
            if let Some(after) = &query.starting_after {
                let found = client.query_opt(
                    "SELECT created, seq FROM events WHERE account_id = $1 AND livemode = $2 AND id = $3",
                    &[&c.account_id, &c.livemode, after],
                )?;
                let row = found.ok_or_else(|| {
                    StoreError::BadQuery(format!("no event {after} to page from"))
                })?;
                let (created, seq): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                let n = params.len();
                sql.push_str(&format!(
                    " AND created <= ${} AND (created < ${} OR seq < ${})",
                    n + 1,
                    n + 1,
                    n + 2
                ));
                params.push(Box::new(created));
                params.push(Box::new(seq));
            }
            sql.push_str(&format!(" ORDER BY created DESC, seq DESC LIMIT {limit}"));
            let select = prepared(statements, client, &sql)?;
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p.as_ref()).collect();
            let rows = client.query(&select, &refs)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(EventRow {
                    id: row.try_get(0)?,
                    event_type: row.try_get(1)?,
                    created: row.try_get(2)?,
                    object_id: row.try_get(3)?,
                    data: row.try_get(4)?,
                });
            }
            Ok(out)
        })
    }

    fn events_since(
        &self,
        c: &Connection,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, EventRow)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT seq, id, type, created, object_id, data::text FROM events WHERE account_id = $1 AND livemode = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )?;
            let rows = client.query(&select, &[&c.account_id, &c.livemode, &after, &limit])?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push((row.try_get(0)?, EventRow { id: row.try_get(1)?, event_type: row.try_get(2)?, created: row.try_get(3)?, object_id: row.try_get(4)?, data: row.try_get(5)? }));
            }
            Ok(out)
        })
    }

    fn has_event(&self, c: &Connection, id: &str) -> Result<bool> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT 1 FROM events WHERE account_id = $1 AND id = $2 AND livemode = $3",
            )?;
            Ok(!client
                .query(&select, &[&c.account_id, &id, &c.livemode])?
                .is_empty())
        })
    }

    fn last_event_position(&self, c: &Connection) -> Result<i64> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT seq FROM events WHERE account_id = $1 AND livemode = $2 ORDER BY seq DESC LIMIT 1",
            )?;
            let row = client.query_opt(&select, &[&c.account_id, &c.livemode])?;
            Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn event_count(&self, c: &Connection) -> Result<u64> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT count(*) FROM events WHERE account_id = $1 AND livemode = $2",
            )?;
            Ok(client
                .query_one(&select, &[&c.account_id, &c.livemode])?
                .try_get::<_, i64>(0)? as u64)
        })
    }

    fn windows(&self, c: &Connection) -> Result<Vec<Window>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT scope, window_start, window_end, state, after_id FROM cursors WHERE account_id = $1 AND livemode = $2 ORDER BY scope, window_start",
            )?;
            let rows = client.query(&select, &[&c.account_id, &c.livemode])?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(Window {
                    scope: row.try_get(0)?,
                    start: row.try_get(1)?,
                    end: row.try_get(2)?,
                    state: row.try_get(3)?,
                    after: row.try_get(4)?,
                });
            }
            Ok(out)
        })
    }

    fn sweep(
        &self,
        c: &Connection,
        table_name: &str,
        synced_before: i64,
        created_from: i64,
    ) -> Result<u64> {
        checked_table(table_name)?;
        self.write(|tx, statements| {
            let sweep = prepared(
                statements,
                tx,
                &format!(
                    "UPDATE {} SET deleted = true, synced_at = $3
                     WHERE account_id = $1 AND livemode = $2 AND NOT deleted AND synced_at < $3 AND COALESCE(created, 0) >= $4",
                    ident(table_name)
                ),
            )?;
            Ok(tx.execute(&sweep, &[&c.account_id, &c.livemode, &synced_before, &created_from])?)
        })
    }

    fn reset_windows(&self, c: &Connection, windows: &[Window]) -> Result<()> {
        self.write(|tx, statements| {
            let delete = prepared(
                statements,
                tx,
                "DELETE FROM cursors WHERE account_id = $1 AND livemode = $2",
            )?;
            tx.execute(&delete, &[&c.account_id, &c.livemode])?;
            if !windows.is_empty() {
                let insert = prepared(
                    statements,
                    tx,
                    "INSERT INTO cursors (account_id, livemode, scope, window_start, window_end, state, after_id)
                     SELECT $1, $2, u.scope, u.window_start, u.window_end, u.state, u.after_id
                     FROM UNNEST($3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[]) AS u (scope, window_start, window_end, state, after_id)",
                )?;
                let scopes: Vec<&str> = windows.iter().map(|w| w.scope.as_str()).collect();
                let starts: Vec<i64> = windows.iter().map(|w| w.start).collect();
                let ends: Vec<i64> = windows.iter().map(|w| w.end).collect();
                let states: Vec<&str> = windows.iter().map(|w| w.state.as_str()).collect();
                let afters: Vec<Option<&str>> = windows.iter().map(|w| w.after.as_deref()).collect();
                tx.execute(&insert, &[&c.account_id, &c.livemode, &scopes, &starts, &ends, &states, &afters])?;
            }
            Ok(())
        })
    }

    fn state(&self, c: &Connection, key: &str) -> Result<Option<String>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT value FROM sync_state WHERE account_id = $1 AND livemode = $2 AND key = $3",
            )?;
            match client.query_opt(&select, &[&c.account_id, &c.livemode, &key])? {
                Some(row) => Ok(Some(row.try_get(0)?)),
                None => Ok(None),
            }
        })
    }

    fn inbox_add(&self, c: &Connection, event_id: &str, at: i64, body: &str) -> Result<bool> {
        self.write(|tx, statements| {
            let insert = prepared(
                statements,
                tx,
                "INSERT INTO inbox (account_id, livemode, event_id, received_at, body) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )?;
            if tx.execute(&insert, &[&c.account_id, &c.livemode, &event_id, &at, &body])? == 0 {
                return Ok(false);
            }
            lease::stamp_inbox(tx, statements, c, at)?;
            Ok(true)
        })
    }

    fn inbox_pending(
        &self,
        c: &Connection,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::InboxEntry>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT seq, event_id, received_at, body FROM inbox WHERE account_id = $1 AND livemode = $2 AND seq > $4 ORDER BY seq LIMIT $3",
            )?;
            let rows = client.query(
                &select,
                &[&c.account_id, &c.livemode, &(limit as i64), &after],
            )?;
            rows.iter()
                .map(|row| {
                    Ok(crate::InboxEntry {
                        seq: row.try_get(0)?,
                        event_id: row.try_get(1)?,
                        received_at: row.try_get(2)?,
                        body: row.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn inbox_remove(&self, c: &Connection, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.write(|tx, statements| {
            let delete = prepared(
                statements,
                tx,
                "DELETE FROM inbox WHERE account_id = $1 AND livemode = $2 AND seq = ANY($3)",
            )?;
            tx.execute(&delete, &[&c.account_id, &c.livemode, &seqs])?;
            Ok(())
        })
    }

    fn inbox_depths(&self) -> Result<Vec<crate::InboxDepth>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT account_id, livemode, count(*), min(received_at) FROM inbox GROUP BY account_id, livemode ORDER BY account_id, livemode",
            )?;
            client
                .query(&select, &[])?
                .iter()
                .map(|row| {
                    Ok(crate::InboxDepth {
                        connection: Connection {
                            account_id: row.try_get(0)?,
                            livemode: row.try_get(1)?,
                        },
                        waiting: row.try_get::<_, i64>(2)? as u64,
                        oldest_received_at: row.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn set_state(&self, c: &Connection, key: &str, value: Option<&str>) -> Result<()> {
        self.write(|tx, statements| {
            match value {
                Some(value) => {
                    let upsert = prepared(
                        statements,
                        tx,
                        "INSERT INTO sync_state (account_id, livemode, key, value) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (account_id, livemode, key) DO UPDATE SET value = EXCLUDED.value",
                    )?;
                    tx.execute(&upsert, &[&c.account_id, &c.livemode, &key, &value])?;
                }
                None => {
                    let delete = prepared(
                        statements,
                        tx,
                        "DELETE FROM sync_state WHERE account_id = $1 AND livemode = $2 AND key = $3",
                    )?;
                    tx.execute(&delete, &[&c.account_id, &c.livemode, &key])?;
                }
            }
            Ok(())
        })
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
        self.read(|client, _| {
            Ok(client
                .query_one(
                    "SELECT min(least(due_at, coalesce(inbox_since, due_at))) FROM sync_leases WHERE owner IS NULL",
                    &[],
                )?
                .get(0))
        })
    }

    fn hold_exclusive(&self, name: &str) -> Result<Option<Box<dyn std::any::Any + Send>>> {
        let mut client = self.connect()?;
        let held: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('stripe-mirror'), hashtext($1))",
                &[&format!("{}:{name}", self.schema)],
            )
            .map_err(|e| self.db_error(e))?
            .get(0);
        // The lock lives as long as this connection: dropping the client frees it.
        Ok(held.then(|| Box::new(ExclusiveHold(Some(client))) as Box<dyn std::any::Any + Send>))
    }

    fn lease_release_all(&self, now: i64) -> Result<u64> {
        self.write(|tx, _| {
            Ok(tx.execute(
                "UPDATE sync_leases SET owner = NULL, lease_until = NULL, due_at = least(due_at, $1) WHERE owner IS NOT NULL",
                &[&now],
            )?)
        })
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
        let result = self.write(|tx, _| {
            tx.execute(
                "INSERT INTO api_tokens (name, hash, read_only, created_at) VALUES ($1, $2, $3, $4)",
                &[&t.name, &t.hash, &t.read_only, &t.created_at],
            )?;
            Ok(())
        });
        result.map_err(|e| match e {
            StoreError::Duplicate(_) => StoreError::Duplicate(format!("a token named {}", t.name)),
            other => other,
        })
    }

    fn tokens(&self) -> Result<Vec<crate::TokenRecord>> {
        self.read(|client, _| {
            client
                .query(
                    "SELECT name, hash, read_only, created_at FROM api_tokens ORDER BY name",
                    &[],
                )?
                .iter()
                .map(|r| {
                    Ok(crate::TokenRecord {
                        name: r.try_get(0)?,
                        hash: r.try_get(1)?,
                        read_only: r.try_get(2)?,
                        created_at: r.try_get(3)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()
                .map_err(Failure::from)
        })
    }

    fn delete_token(&self, name: &str) -> Result<bool> {
        self.write(|tx, _| Ok(tx.execute("DELETE FROM api_tokens WHERE name = $1", &[&name])? > 0))
    }

    fn start_run(&self, c: &Connection, kind: &str, trigger: &str, started_at: i64) -> Result<i64> {
        self.write(|tx, statements| {
            let insert = prepared(
                statements,
                tx,
                "INSERT INTO runs (account_id, livemode, kind, started_at, status, counts, requests, triggered_by) VALUES ($1, $2, $3, $4, 'running', '{}', 0, $5) RETURNING id",
            )?;
            Ok(tx.query_one(&insert, &[&c.account_id, &c.livemode, &kind, &started_at, &trigger])?.try_get(0)?)
        })
    }

    fn finish_run(&self, run: &RunRecord) -> Result<()> {
        let counts = serde_json::to_string(&run.counts).unwrap_or_else(|_| "{}".into());
        let requests = i64::try_from(run.requests).unwrap_or(i64::MAX);
        self.write(|tx, statements| {
            let update = prepared(
                statements,
                tx,
                "UPDATE runs SET ended_at = $2, status = $3, counts = $4::text::jsonb, requests = $5, error = $6, kind = $7, progress = $8::text::jsonb WHERE id = $1",
            )?;
            let progress = run.progress.as_ref().map(|p| p.to_string());
            tx.execute(&update, &[&run.id, &run.ended_at, &run.status, &counts, &requests, &run.error, &run.kind, &progress])?;
            Ok(())
        })
    }

    fn run(&self, c: &Connection, id: i64) -> Result<Option<RunRecord>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!("{RUN_SELECT} WHERE account_id = $1 AND livemode = $2 AND id = $3"),
            )?;
            let row = client.query_opt(&select, &[&c.account_id, &c.livemode, &id])?;
            Ok(row.as_ref().map(read_run).transpose()?)
        })
    }

    fn latest_runs(&self) -> Result<Vec<RunRecord>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "{RUN_SELECT} WHERE id IN (SELECT max(id) FROM runs GROUP BY account_id, livemode)"
                ),
            )?;
            let rows = client.query(&select, &[])?;
            Ok(rows
                .iter()
                .map(read_run)
                .collect::<std::result::Result<_, _>>()?)
        })
    }

    fn states_of_all(&self, keys: &[&str]) -> Result<Vec<(Connection, String, String)>> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT account_id, livemode, key, value FROM sync_state WHERE key = ANY($1)",
            )?;
            client
                .query(&select, &[&keys])?
                .iter()
                .map(|row| {
                    Ok((
                        Connection {
                            account_id: row.try_get(0)?,
                            livemode: row.try_get(1)?,
                        },
                        row.try_get(2)?,
                        row.try_get(3)?,
                    ))
                })
                .collect()
        })
    }

    fn latest_event_at(&self, c: &Connection) -> Result<Option<i64>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT max(created) FROM events WHERE account_id = $1 AND livemode = $2",
            )?;
            Ok(client
                .query_one(&select, &[&c.account_id, &c.livemode])?
                .try_get(0)?)
        })
    }

    fn runs(&self, c: &Connection, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!(
                    "{RUN_SELECT} WHERE account_id = $1 AND livemode = $2 ORDER BY id DESC LIMIT $3"
                ),
            )?;
            let rows = client.query(&select, &[&c.account_id, &c.livemode, &limit])?;
            Ok(rows
                .iter()
                .map(read_run)
                .collect::<std::result::Result<_, _>>()?)
        })
    }

    fn sandboxed_query(&self, sql: &str, reader_secret: &str) -> Result<crate::ValuesResult> {
        self.run_sandboxed(sql, reader_secret)
    }

    fn query_values(&self, sql: &str) -> Result<crate::ValuesResult> {
        use postgres::types::Type;
        // The server's refusal of the user's query is the user's to fix; a broken connection
        // is not.
        let bad = |e: postgres::Error| -> Failure {
            if e.as_db_error().is_some() {
                Failure::Store(StoreError::BadQuery(error_text(&e)))
            } else {
                Failure::Pg(e)
            }
        };
        self.read(|client, _| {
            // Parsed first: the extended protocol takes a single statement, so nothing can follow
            // it to end the read-only transaction; and a statement without rows is no query.
            let statement = client.prepare(sql).map_err(bad)?;
            if statement.columns().is_empty() {
                return Err(StoreError::BadQuery(
                    "only read-only queries (SELECT …) may be run here".into(),
                )
                .into());
            }
            let types: Vec<Type> = statement
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect();
            drop(statement);
            let typed = |i: usize, text: Option<&str>| typed_value(types.get(i), text);
            let mut tx = client.build_transaction().read_only(true).start()?;
            // A query that runs past the time limit is stopped by the server.
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                crate::QUERY_TIME_LIMIT.as_millis()
            ))?;
            let messages = tx.simple_query(sql).map_err(bad)?;
            tx.rollback()?;
            let mut names = None;
            let mut rows = Vec::new();
            for message in messages {
                match message {
                    SimpleQueryMessage::RowDescription(columns) => {
                        names.get_or_insert_with(|| {
                            columns
                                .iter()
                                .map(|c| c.name().to_owned())
                                .collect::<Vec<_>>()
                        });
                    }
                    SimpleQueryMessage::Row(row) => {
                        if names.is_none() {
                            names =
                                Some(row.columns().iter().map(|c| c.name().to_owned()).collect());
                        }
                        rows.push((0..row.len()).map(|i| typed(i, row.get(i))).collect());
                    }
                    _ => {}
                }
            }
            Ok((names.unwrap_or_default(), rows))
        })
    }
}

/// A value the simple protocol answered as text, given back its kind by the column's type:
/// numbers, booleans and JSON as themselves, the rest as strings.
fn typed_value(kind: Option<&postgres::types::Type>, text: Option<&str>) -> serde_json::Value {
    use postgres::types::Type;
    use serde_json::Value;
    let Some(text) = text else {
        return Value::Null;
    };
    if [Type::INT2, Type::INT4, Type::INT8, Type::OID]
        .iter()
        .any(|t| Some(t) == kind)
    {
        text.parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.into()))
    } else if let (Some(&Type::NUMERIC), Ok(whole)) = (kind, text.parse::<i64>()) {
        // `sum(amount)` is NUMERIC: a whole number stays one.
        Value::from(whole)
    } else if [Type::FLOAT4, Type::FLOAT8, Type::NUMERIC]
        .iter()
        .any(|t| Some(t) == kind)
    {
        text.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.into()))
    } else if kind == Some(&Type::BOOL) {
        Value::Bool(text == "t")
    } else if [Type::JSON, Type::JSONB].iter().any(|t| Some(t) == kind) {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()))
    } else {
        Value::String(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    #[test]
    fn urls_lose_password_and_schema() {
        let t = parse_target(
            "postgres://me:s3cr%40t@db.example:6543/mirror?schema=acme&application_name=x",
        )
        .unwrap();
        assert_eq!(t.schema, "acme");
        assert_eq!(
            t.url,
            "postgres://me@db.example:6543/mirror?application_name=x"
        );
        assert_eq!(t.config.get_password(), Some(&b"s3cr@t"[..]));
        assert_eq!(t.config.get_dbname(), Some("mirror"));
        let t =
            parse_target("postgresql://me@localhost/db?password=hunter2&sslmode=disable").unwrap();
        assert_eq!(t.schema, DEFAULT_SCHEMA);
        assert_eq!(t.url, "postgresql://me@localhost/db?sslmode=disable");
        assert_eq!(t.config.get_password(), Some(&b"hunter2"[..]));
        let t = parse_target("postgres://localhost?schema=My%20Mirror").unwrap();
        assert_eq!(
            (t.schema.as_str(), t.url.as_str()),
            ("My Mirror", "postgres://localhost")
        );
        let Err(StoreError::Unavailable { target, detail }) =
            parse_target("postgres://me:hunter2@localhost/db?bogus=1")
        else {
            panic!("unknown parameters are refused")
        };
        assert!(
            !target.contains("hunter2") && !detail.contains("hunter2"),
            "{target} {detail}"
        );
        assert!(parse_target("postgres://localhost/db?schema=").is_err());
    }

    #[test]
    fn tls_is_required_by_default_off_this_machine() {
        let mode = |url: &str| parse_target(url).map(|t| t.tls.mode);
        assert_eq!(
            mode("postgres://u@db.example.com/x").unwrap(),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://u@10.0.0.7:5433/x").unwrap(),
            SslMode::Require
        );
        for here in [
            "postgres://u@localhost/x",
            "postgres://u@127.0.0.1/x",
            "postgres://u@[::1]/x",
        ] {
            assert_eq!(mode(here).unwrap(), SslMode::Prefer, "{here}");
        }
        assert_eq!(
            mode("postgres://u@db.example.com/x?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://u@localhost/x?sslmode=verify-full").unwrap(),
            SslMode::VerifyFull
        );
        let Err(StoreError::Unavailable { target, detail }) =
            parse_target("postgres://u:hunter2@localhost/x?sslmode=bogus")
        else {
            panic!("an unknown sslmode is refused")
        };
        assert!(
            detail.contains("verify-full") && !target.contains("hunter2"),
            "{detail}"
        );
        assert!(
            parse_target("postgres://u@localhost/x?sslmode=require&sslrootcert=/nonexistent.crt")
                .is_err_and(|e| e.to_string().contains("/nonexistent.crt"))
        );
    }

    #[test]
    fn unreachable_servers_are_unavailable_without_password() {
        let Err(StoreError::Unavailable { target, detail }) =
            PostgresStore::open("postgres://me:hunter2@127.0.0.1:1/db?connect_timeout=2")
        else {
            panic!("nothing listens on port 1")
        };
        assert_eq!(target, "postgres://me@127.0.0.1:1/db?connect_timeout=2");
        assert!(
            detail.contains("is Postgres running at 127.0.0.1:1?"),
            "{detail}"
        );
        assert!(!detail.contains("hunter2"), "{detail}");
    }

    fn server() -> Option<String> {
        let url = std::env::var("STRIPE_MIRROR_TEST_POSTGRES_URL").ok();
        if url.is_none() {
            eprintln!("skipped: set STRIPE_MIRROR_TEST_POSTGRES_URL=postgres://… to run it");
        }
        url
    }

    fn with_schema(url: &str, schema: &str) -> String {
        format!(
            "{url}{}schema={schema}",
            if url.contains('?') { '&' } else { '?' }
        )
    }

    /// Drops the test's schema when the test ends, passed or not.
    struct DropSchema(String, String);

    impl Drop for DropSchema {
        fn drop(&mut self) {
            if let Ok(mut client) = Client::connect(&self.0, postgres::NoTls) {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&self.1)));
            }
        }
    }

    fn scratch(url: &str, name: &str) -> (String, DropSchema) {
        let schema = format!("sm_unit_{}_{name}", std::process::id());
        let dropper = DropSchema(url.to_owned(), schema.clone());
        drop(DropSchema(url.to_owned(), schema.clone()));
        (with_schema(url, &schema), dropper)
    }

    #[test]
    fn concurrent_opens_and_reopens() {
        let Some(url) = server() else { return };
        let (target, _drop) = scratch(&url, "concurrent");
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let target = target.clone();
                std::thread::spawn(move || PostgresStore::open(&target).map(|s| s.describe()))
            })
            .collect();
        for handle in opened {
            let described = handle.join().unwrap().unwrap();
            assert!(described.contains("(schema sm_unit_"), "{described}");
        }
        let store = PostgresStore::open(&target).unwrap();
        assert_eq!(
            store
                .query("SELECT value FROM stripe_mirror_meta")
                .unwrap()
                .1,
            [[Some(SCHEMA_VERSION.to_string())]]
        );
        // A newer mirror's schema is refused.
        store
            .write(|tx, _| Ok(tx.batch_execute("UPDATE stripe_mirror_meta SET value = '99'")?))
            .unwrap();
        assert!(matches!(
            PostgresStore::open(&target),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn queries_stay_read_only() {
        let Some(url) = server() else { return };
        let (target, _drop) = scratch(&url, "readonly");
        let store = PostgresStore::open(&target).unwrap();
        for sql in [
            "DELETE FROM customers",
            "COMMIT; DELETE FROM customers",
            "SELECT 1; DELETE FROM customers",
            "CREATE TABLE x (a int)",
            "WITH d AS (DELETE FROM customers RETURNING id) SELECT * FROM d",
            "DEALLOCATE ALL",
        ] {
            assert!(store.query(sql).is_err(), "{sql}");
        }
        let (names, rows) = store
            .query_values("SELECT 1 AS one, NULL::text AS nothing, true AS yes, '{\"a\": 1}'::jsonb AS j, 2.5::float8 AS half, 'x' AS t")
            .unwrap();
        assert_eq!(names, ["one", "nothing", "yes", "j", "half", "t"]);
        assert_eq!(
            rows,
            [[
                serde_json::json!(1),
                serde_json::Value::Null,
                serde_json::json!(true),
                serde_json::json!({"a": 1}),
                serde_json::json!(2.5),
                serde_json::json!("x"),
            ]]
        );
        let (_, rows) = store.query("SELECT 1, NULL::text, true").unwrap();
        assert_eq!(rows, [[Some("1".into()), None, Some("true".into())]]);
        let (names, rows) = store.query("SELECT id FROM customers").unwrap();
        assert_eq!((names, rows.len()), (vec!["id".to_owned()], 0));
        // The connection is still good for writes afterwards.
        let c = Connection::new("acct_1", false);
        store.set_state(&c, "k", Some("v")).unwrap();
        assert_eq!(store.state(&c, "k").unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn reconnects_when_the_server_hangs_up() {
        let Some(url) = server() else { return };
        let (target, _drop) = scratch(&url, "reconnect");
        let store = PostgresStore::open(&target).unwrap();
        let c = Connection::new("acct_1", false);
        let mut admin = Client::connect(&url, postgres::NoTls).unwrap();
        let mut hang_up = || {
            let pid: i32 = store.query("SELECT pg_backend_pid()").unwrap().1[0][0]
                .as_ref()
                .unwrap()
                .parse()
                .unwrap();
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
        };
        hang_up();
        store.set_state(&c, "k", Some("v")).unwrap();
        hang_up();
        assert_eq!(store.state(&c, "k").unwrap().as_deref(), Some("v"));
        hang_up();
        let batch = Batch {
            state: vec![("k".into(), "w".into())],
            ..Default::default()
        };
        store.apply(&c, &batch).unwrap();
        assert_eq!(store.state(&c, "k").unwrap().as_deref(), Some("w"));
    }

    struct RemoveDir(std::path::PathBuf);

    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A small deterministic generator (no dependency for tests).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Random batches (repeated ids, old and tied versions, deletions, missing `created`) give
    /// the same counts and the same rows in both backends.
    #[test]
    fn same_as_sqlite() {
        let Some(url) = server() else { return };
        let (target, _drop) = scratch(&url, "parity");
        let pg = PostgresStore::open(&target).unwrap();
        let dir = std::env::temp_dir().join(format!("sm-warehouse-parity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _remove = RemoveDir(dir.clone());
        let sqlite = SqliteStore::open(dir.join("mirror.sqlite").to_str().unwrap()).unwrap();
        let c = Connection::new("acct_parity", true);
        let mut rng = Lcg(7);
        for round in 0..60 {
            let mut batch = Batch::default();
            for table in ["customers", "charges"] {
                let rows = (0..rng.next(30))
                    .map(|_| {
                        let id = format!("{}_{}", &table[..2], rng.next(40));
                        let created = (rng.next(4) > 0).then(|| rng.next(1000) as i64);
                        let amount = rng.next(5000);
                        ObjectRow {
                            id: id.clone(),
                            created,
                            deleted: rng.next(8) == 0,
                            data: serde_json::json!({"id": id, "amount": amount, "paid": amount.is_multiple_of(2), "email": format!("{amount}@x.co"), "round": round}).to_string(),
                            version: rng.next(20) as i64,
                            parent_id: (rng.next(3) == 0).then(|| format!("in_{}", rng.next(3))),
                        }
                    })
                    .collect();
                let guard = if rng.next(2) == 0 {
                    Guard::AtLeast
                } else {
                    Guard::Newer
                };
                batch.rows.push((table, rows, guard));
                if rng.next(4) == 0 {
                    batch.deletions.push(crate::Deletion {
                        table,
                        ids: (0..rng.next(6))
                            .map(|_| format!("{}_{}", &table[..2], rng.next(40)))
                            .collect(),
                        version: rng.next(20) as i64,
                    });
                }
            }
            batch.events = (0..rng.next(5))
                .map(|_| EventRow {
                    id: format!("evt_{}", rng.next(30)),
                    event_type: "x".into(),
                    created: rng.next(3) as i64,
                    object_id: None,
                    data: "{}".into(),
                })
                .collect();
            assert_eq!(
                pg.apply(&c, &batch).unwrap(),
                sqlite.apply(&c, &batch).unwrap(),
                "round {round}"
            );
        }
        for (table, typed) in [("customers", "email"), ("charges", "amount")] {
            assert_eq!(pg.rows(&c, table).unwrap(), sqlite.rows(&c, table).unwrap());
            assert_eq!(
                pg.count(&c, table).unwrap(),
                sqlite.count(&c, table).unwrap()
            );
            let sql =
                format!("SELECT id, created, version, parent_id, {typed} FROM {table} ORDER BY id");
            assert_eq!(pg.query(&sql).unwrap(), sqlite.query(&sql).unwrap());
        }
        // Neither backend promises an order of `ids_where`.
        let ids_where = |store: &dyn Store, column: &str, value: &str| {
            let mut ids = store.ids_where(&c, "charges", column, value).unwrap();
            ids.sort();
            ids
        };
        let live = pg
            .rows(&c, "charges")
            .unwrap()
            .into_iter()
            .find(|r| !r.deleted)
            .unwrap();
        let amount = live.data["amount"].to_string();
        for (column, value) in [
            ("paid", "1"),
            ("paid", "0"),
            ("amount", amount.as_str()),
            ("parent_id", "in_1"),
        ] {
            let found = ids_where(&pg, column, value);
            assert!(!found.is_empty(), "{column} = {value}");
            assert_eq!(
                found,
                ids_where(&sqlite, column, value),
                "{column} = {value}"
            );
        }
        let ids: Vec<String> = (0..40).map(|i| format!("cu_{i}")).collect();
        assert_eq!(
            pg.versions(&c, "customers", &ids).unwrap(),
            sqlite.versions(&c, "customers", &ids).unwrap()
        );
        let events = |store: &dyn Store| {
            store
                .events(&c, 100)
                .unwrap()
                .into_iter()
                .map(|e| (e.id, e.created))
                .collect::<Vec<_>>()
        };
        assert_eq!(events(&pg), events(&sqlite));
    }

    /// Not a test: how fast `apply` writes. `cargo test -p sm-warehouse --lib -- --ignored
    /// --nocapture throughput` with STRIPE_MIRROR_TEST_POSTGRES_URL set.
    #[test]
    #[ignore]
    fn throughput() {
        let Some(url) = server() else { return };
        let (target, _drop) = scratch(&url, "throughput");
        let store = PostgresStore::open(&target).unwrap();
        let c = Connection::new("acct_bench", false);
        let total = 100_000;
        let page = 100;
        let batch = |first: usize, version: i64| {
            Batch {
            rows: vec![(
                "charges",
                (first..first + page)
                    .map(|i| {
                        let id = format!("ch_{i:08}");
                        let data = serde_json::json!({
                            "id": id, "object": "charge", "amount": 1000 + i, "amount_refunded": 0, "currency": "usd",
                            "customer": format!("cus_{:05}", i % 5000), "paid": true, "refunded": false, "status": "succeeded",
                            "created": 1_700_000_000 + i, "livemode": false, "metadata": {"order": i.to_string()},
                            "payment_intent": format!("pi_{i:08}"), "invoice": null, "description": "A charge of the benchmark",
                        });
                        ObjectRow { id, created: Some(1_700_000_000 + i as i64), deleted: false, data: data.to_string(), version, parent_id: None }
                    })
                    .collect(),
                Guard::AtLeast,
            )],
            windows: vec![Window { scope: "charges".into(), start: 0, end: 1, state: "partial".into(), after: Some(format!("ch_{first:08}")) }],
            ..Default::default()
        }
        };
        for (label, version) in [("insert", 1), ("update", 2)] {
            let batches: Vec<Batch> = (0..total / page)
                .map(|b| batch(b * page, version))
                .collect();
            let start = Instant::now();
            for b in &batches {
                store.apply(&c, b).unwrap();
            }
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "{label}: {total} rows in {seconds:.2} s: {:.0} rows/s",
                total as f64 / seconds
            );
        }
        assert_eq!(store.count(&c, "charges").unwrap(), (total as u64, 0));
    }
}
