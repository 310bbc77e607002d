//! Where the mirror lives: the [`Store`] trait and its two backends, SQLite (the default: a file
//! in the working directory) and Postgres (a schema of its own, default `stripe`).
//!
//! The trait is synchronous: SQLite is, and the engine calls the store from blocking threads
//! (`spawn_blocking`), so one simple interface serves both. Every change to mirrored objects goes
//! through [`Store::apply`], which writes rows, events, the cursor that produced them and sync
//! state in one transaction, with the ordering guard of [`Guard`].

pub mod lease;
pub mod notify;
pub mod page;
pub mod postgres;
pub mod sandbox;
pub mod schema;
pub mod sqlite;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use lease::{Fence, Lease, LeaseRow, NEVER};
pub use notify::{
    ChannelRecord, DeliveryQuery, DeliveryRecord, DeliveryUpdate, NewDelivery, QueuedEvent,
    RuleRecord,
};
pub use page::PageQuery;
pub use schema::{TABLES, Table};

/// What went wrong in the store, in backend-neutral kinds (the engine never reads driver text).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same key exists (a duplicate connection, say).
    #[error("already exists: {0}")]
    Duplicate(String),
    /// The database could not be opened or reached.
    #[error("could not open the database {target}: {detail}")]
    Unavailable { target: String, detail: String },
    /// The database was made by a newer stripe-mirror.
    #[error(
        "the database schema is version {found}, newer than this stripe-mirror understands ({supported}); upgrade stripe-mirror"
    )]
    TooNew { found: i64, supported: i64 },
    /// Anything else the database said.
    #[error("database error: {0}")]
    Database(String),
    /// A query the user wrote was refused or failed (a syntax error, an unknown table or column,
    /// a write): the database's words.
    #[error("{0}")]
    BadQuery(String),
    /// A user's query reaches past the SQL boundary (`sandbox.rs`): a bookkeeping table, a
    /// function or statement that is not a read.
    #[error("{0}")]
    QueryRefused(String),
    /// A user's query reached a limit of the SQL boundary (time, memory, rows, bytes).
    #[error("{0}")]
    QueryLimit(String),
    /// A table name that is not one of [`TABLES`].
    #[error("no table named {0}")]
    UnknownTable(String),
    /// A batch written under a lease its writer no longer holds (see `lease.rs`).
    #[error("fenced: {0}")]
    Fenced(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One connection of the mirror: a Stripe account in one mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Connection {
    pub account_id: String,
    pub livemode: bool,
}

impl Connection {
    pub fn new(account_id: impl Into<String>, livemode: bool) -> Self {
        Connection {
            account_id: account_id.into(),
            livemode,
        }
    }
    /// `acct_…:live` or `acct_…:test`: how commands name a connection.
    pub fn label(&self) -> String {
        format!(
            "{}:{}",
            self.account_id,
            if self.livemode { "live" } else { "test" }
        )
    }
}

/// A connected account as stored: everything but the key in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub connection: Connection,
    /// The name the user gave (or Stripe's display name at first connect).
    pub name: String,
    /// Stripe's display name and icon, when the key may read them.
    pub stripe_name: Option<String>,
    pub icon_url: Option<String>,
    /// A logo the user chose (an https URL or a small data URL), shown instead of Stripe's icon.
    pub logo_url: Option<String>,
    /// `secret` or `restricted`.
    pub key_kind: String,
    /// `rk_live_…a1b2`.
    pub key_masked: String,
    /// The key, sealed by the vault (nonce and ciphertext); never the key in clear.
    pub key_sealed: Vec<u8>,
    /// What the permission probe found (JSON, engine-defined).
    pub permissions: serde_json::Value,
    /// `ok`, `failing`, …, with the reason in words.
    pub status: String,
    pub status_message: Option<String>,
    /// Unix time the mirror goes back to; `None`: all history.
    pub start_date: Option<i64>,
    pub webhook_endpoint_id: Option<String>,
    pub webhook_secret_sealed: Option<Vec<u8>>,
    /// The API the connection was made against when it is not Stripe's own (an emulator's
    /// URL); later commands use it without being told again.
    pub api_base: Option<String>,
    /// The API version the mirror keeps this connection's rows in, when the user chose one
    /// (`None`: the version the engine pins).
    pub api_version: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A webhook delivery kept in the inbox until it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Its place in arrival order.
    pub seq: i64,
    pub event_id: String,
    pub received_at: i64,
    /// The event's JSON as delivered.
    pub body: String,
}

/// The deliveries a connection has waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxDepth {
    pub connection: Connection,
    pub waiting: u64,
    /// When the oldest arrived (Unix time).
    pub oldest_received_at: i64,
}

/// An API token of the REST API: its name, the SHA-256 of the token (never the token), and
/// whether it may only read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    #[serde(skip)]
    pub hash: Vec<u8>,
    pub read_only: bool,
    pub created_at: i64,
}

/// How a write decides between the stored version of an object and an incoming one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Write when the incoming version is at least the stored one (lists, refetches, events
    /// replayed in their known order).
    AtLeast,
    /// Write only when strictly newer (deliveries whose order is unknown; ties are refetched).
    Newer,
}

/// One object to upsert.
#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub id: String,
    pub created: Option<i64>,
    pub deleted: bool,
    /// The object as Stripe sent it (compact JSON).
    pub data: String,
    /// Ordering version: the event's `created`, or the time a list or retrieve was answered.
    pub version: i64,
    /// The parent object's id for child objects (an invoice line's invoice, which the line itself
    /// does not name in this API version); `None` keeps what is stored.
    pub parent_id: Option<String>,
}

/// One event to keep (forever: Stripe keeps 30 days).
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub object_id: Option<String>,
    pub data: String,
}

/// What [`Store::events_page`] asks for.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Event types, exact or ending in `.*` (a prefix); empty: every type.
    pub types: Vec<String>,
    /// The id of the last event of the previous page.
    pub starting_after: Option<String>,
    pub limit: usize,
}

impl EventQuery {
    /// The `AND (type = … OR type LIKE …)` clause for these types, with its parameters, the
    /// first numbered `first` (`placeholder(n)` writes one).
    pub fn type_clause(
        &self,
        first: usize,
        placeholder: impl Fn(usize) -> String,
    ) -> (String, Vec<String>) {
        if self.types.is_empty() {
            return (String::new(), Vec::new());
        }
        let mut terms = Vec::new();
        let mut params = Vec::new();
        for t in &self.types {
            let n = first + params.len();
            match t.strip_suffix('*') {
                Some(prefix) => {
                    // LIKE's own wildcards in a type are taken literally.
                    terms.push(format!("type LIKE {} ESCAPE '\\'", placeholder(n)));
                    params.push(format!(
                        "{}%",
                        prefix
                            .replace('\\', "\\\\")
                            .replace('%', "\\%")
                            .replace('_', "\\_")
                    ));
                }
                None => {
                    terms.push(format!("type = {}", placeholder(n)));
                    params.push(t.clone());
                }
            }
        }
        (format!(" AND ({})", terms.join(" OR ")), params)
    }
}

/// A backfill window of one table: `[start, end)` on `created`, with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The cursor's scope: a table name, or `table/parent_id` for child lists.
    pub scope: String,
    pub start: i64,
    pub end: i64,
    /// `pending`, `partial` (with `after`) or `done`.
    pub state: String,
    /// The last id written, for `starting_after` on resume.
    pub after: Option<String>,
}

/// Everything one page of work writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Rows per table.
    pub rows: Vec<(&'static str, Vec<ObjectRow>, Guard)>,
    pub events: Vec<EventRow>,
    /// Window progress to record with these rows.
    pub windows: Vec<Window>,
    /// Sync state to set (`events.position`, …).
    pub state: Vec<(String, String)>,
    /// Rows to mark deleted without changing their data (children gone from their parent).
    pub deletions: Vec<Deletion>,
    /// Drop every window of the connection before writing `windows` (a new backfill plan).
    pub replace_windows: bool,
    /// Sync state keys to remove.
    pub remove_state: Vec<String>,
    /// The events arrived live (a webhook, an incremental sync's new events — not a backfill):
    /// those not seen before are queued for the notification rules, in the same transaction,
    /// when any rule exists.
    pub notify: bool,
    /// Written under this lease: committed only while its owner still holds the connection at
    /// its epoch, checked in the batch's own transaction.
    pub fence: Option<Fence>,
}

/// Objects of a table to mark deleted, when `version` is at least the stored one.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub table: &'static str,
    pub ids: Vec<String>,
    pub version: i64,
}

/// What a batch changed, per table: (inserted, updated, deleted) — deleted counts rows newly
/// marked deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub tables: HashMap<String, TableCounts>,
    /// Events not seen before.
    pub new_events: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Rows the guard refused (an older version than stored).
    pub skipped: u64,
    /// Rows written again as they were (the same object, listed or sent again): their version
    /// and sync time move, nothing else; not counted as updated.
    #[serde(default)]
    pub unchanged: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        for (table, c) in &other.tables {
            let mine = self.tables.entry(table.clone()).or_default();
            mine.inserted += c.inserted;
            mine.updated += c.updated;
            mine.deleted += c.deleted;
            mine.skipped += c.skipped;
            mine.unchanged += c.unchanged;
        }
        self.new_events += other.new_events;
    }
}

/// One sync run, as history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: i64,
    pub connection: Connection,
    /// `backfill`, `incremental`, `full`.
    pub kind: String,
    /// What started it: `command`, `schedule`, `dashboard`, `api`, `demo` (empty for runs
    /// recorded before schema 5).
    #[serde(default)]
    pub trigger: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// `running`, `succeeded`, `failed`, `partial`.
    pub status: String,
    pub counts: Counts,
    pub requests: u64,
    pub error: Option<String>,
    /// Each table's phase, objects and share covered, and the run's percent: written every
    /// few seconds while it runs, and its last state after.
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
}

/// Column names, then rows of values as text (`None` for SQL NULL).
pub type QueryResult = (Vec<String>, Vec<Vec<Option<String>>>);
/// How long a user's query may run before it is stopped (`Store::query_values`).
pub const QUERY_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Column names and rows of typed values.
pub type ValuesResult = (Vec<String>, Vec<Vec<serde_json::Value>>);

/// The stored version and deletion flag of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub version: i64,
    pub deleted: bool,
}

/// A mirrored row as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub id: String,
    pub deleted: bool,
    pub data: serde_json::Value,
    /// The ordering version it was written with.
    pub version: i64,
}

/// A row of a page as stored: its JSON text untouched (written by the mirror from Stripe's
/// answer, so valid), so that an answer can carry it without parsing it and writing it again.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub id: String,
    pub deleted: bool,
    pub data: String,
    pub version: i64,
}

/// How many of a connection's newest customers [`Store::search_customers`] reads first: when
/// that many hold enough matches, they are the newest ones and nothing else is read (a common
/// word such as a mail domain answers here); otherwise an index of the text (SQLite) or a
/// scan finds the rest.
pub const SEARCH_NEWEST_FIRST: usize = 500;

/// `text` as a LIKE pattern that finds it anywhere, with `\` as the escape of LIKE's
/// wildcards (`ESCAPE '\'`).
pub fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A column of `accounts` holding a sealed secret; part of what the value is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedField {
    ApiKey,
    WebhookSecrets,
}

impl SealedField {
    pub const ALL: [SealedField; 2] = [SealedField::ApiKey, SealedField::WebhookSecrets];

    pub fn column(self) -> &'static str {
        match self {
            SealedField::ApiKey => "key_sealed",
            SealedField::WebhookSecrets => "webhook_secret_sealed",
        }
    }
}

/// The re-sealing step of [`Store::bind_sealed_values`]: a value's new form, or `None` to stop.
pub type BindSealed<'a> = dyn FnMut(&Connection, SealedField, &[u8]) -> Option<Vec<u8>> + Send + 'a;

/// The `stripe_mirror_meta` key marking a database whose sealed values are all bound.
pub const SEALED_VALUES_BOUND: &str = "sealed_values_bound";

/// The mirror's storage. Both backends pass the same test suite (`tests/suite.rs`).
pub trait Store: Send + Sync {
    fn backend(&self) -> Backend;
    /// Where the data is, for people: a file path, or a URL without password and the schema.
    fn describe(&self) -> String;

    // Accounts.
    /// Adds a connection; [`StoreError::Duplicate`] when it exists.
    fn insert_account(&self, account: &AccountRecord) -> Result<()>;
    fn update_account(&self, account: &AccountRecord) -> Result<()>;
    fn account(&self, connection: &Connection) -> Result<Option<AccountRecord>>;
    fn accounts(&self) -> Result<Vec<AccountRecord>>;
    /// Deletes a connection and every row of its data (objects, events, runs, cursors, state);
    /// returns how many object and event rows went.
    fn remove_account(&self, connection: &Connection) -> Result<u64>;
    /// Once per database, in one transaction: gives every sealed value to `bind` and stores
    /// what it answers in place of the value (values sealed before they were bound to their
    /// row get bound), then marks the database done so that it never happens again. `Some(n)`:
    /// `n` values changed; `None`: `bind` refused one and nothing was written.
    fn bind_sealed_values(&self, bind: &mut BindSealed<'_>) -> Result<Option<usize>>;

    // The webhook inbox: verified deliveries kept until they are applied.
    /// Keeps one delivery (the event's JSON); false when the event is kept already. A new one
    /// stamps the connection's lease row (`inbox_since`) in the same transaction, making it
    /// claimable by whichever worker is free (see `lease.rs`).
    fn inbox_add(
        &self,
        connection: &Connection,
        event_id: &str,
        received_at: i64,
        body: &str,
    ) -> Result<bool>;
    /// The oldest kept deliveries of a connection after the one numbered `after` (0: from the
    /// first), in the order they arrived.
    fn inbox_pending(
        &self,
        connection: &Connection,
        after: i64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>>;
    /// Forgets deliveries that were applied.
    fn inbox_remove(&self, connection: &Connection, seqs: &[i64]) -> Result<()>;
    /// Each connection with deliveries waiting: how many, and when the oldest arrived.
    fn inbox_depths(&self) -> Result<Vec<InboxDepth>>;

    // Leases (see `lease.rs`).
    /// Makes `connection` due no later than `at` (its row is made when it has none).
    fn lease_due(&self, connection: &Connection, at: i64) -> Result<()>;
    /// Claims for `owner`, until `now + hold_for`, up to `at_most` connections due by `now`
    /// (or with deliveries waiting in the inbox) that nobody holds or whose lease ran out, the
    /// longest-waiting first; each claim raises the epoch and says whether a sync is due. Rows
    /// another process is claiming or writing under at this moment are skipped.
    fn lease_claim(
        &self,
        owner: &str,
        now: i64,
        hold_for: i64,
        at_most: usize,
    ) -> Result<Vec<Lease>>;
    /// Holds `lease` until `until`; false when it is no longer held (taken over or released).
    fn lease_renew(&self, lease: &Lease, until: i64) -> Result<bool>;
    /// Gives `lease` up, the connection next due at `due_at`; false when it was not held.
    fn lease_release(&self, lease: &Lease, due_at: i64) -> Result<bool>;
    /// Sets the row's inbox stamp while `lease` is held (false: it is not). A holder clears it
    /// (`None`) and looks at the inbox once more before releasing; one giving up with
    /// deliveries still waiting stamps it, so that the next claim takes them.
    fn lease_inbox_mark(&self, lease: &Lease, since: Option<i64>) -> Result<bool>;
    /// Every connection's lease row.
    fn leases(&self) -> Result<Vec<LeaseRow>>;
    /// When the next connection nobody holds is due or was stamped by an intake (none: no such
    /// connection).
    fn lease_next_due(&self) -> Result<Option<i64>>;
    /// Holds the mirror-wide role `name` (the notifier) for this process alone while what is
    /// returned lives (`None`: another process holds it now). Postgres: a session advisory lock
    /// on a connection of its own, freed when the process dies; SQLite: always granted (one
    /// process holds the file).
    fn hold_exclusive(&self, name: &str) -> Result<Option<Box<dyn std::any::Any + Send>>>;
    /// Frees every held lease, its connection due at once (how many were held): for a process
    /// that knows no other holder can be alive (a SQLite mirror's runner, after a kill).
    fn lease_release_all(&self, now: i64) -> Result<u64>;

    // Notifications (see `notify.rs`).
    /// Adds a channel; [`StoreError::Duplicate`] when its name is taken.
    fn insert_channel(&self, channel: &ChannelRecord) -> Result<()>;
    /// Saves a channel's name, settings and status.
    fn update_channel(&self, channel: &ChannelRecord) -> Result<()>;
    /// Every channel, by name.
    fn channels(&self) -> Result<Vec<ChannelRecord>>;
    /// Deletes a channel with its rules, and cancels its unfinished deliveries; whether it
    /// existed.
    fn delete_channel(&self, id: &str) -> Result<bool>;
    /// Adds a rule; [`StoreError::Duplicate`] when its name is taken.
    fn insert_rule(&self, rule: &RuleRecord) -> Result<()>;
    /// Every rule, by name.
    fn rules(&self) -> Result<Vec<RuleRecord>>;
    /// Deletes a rule and cancels its unfinished deliveries; whether it existed.
    fn delete_rule(&self, id: &str) -> Result<bool>;
    /// The oldest events queued for matching (with the events), at most `limit`.
    fn notify_queued(&self, limit: usize) -> Result<Vec<QueuedEvent>>;
    /// In one transaction: creates `deliveries` (one that exists stays as it is) and takes the
    /// `matched` events off the queue. How many deliveries were new.
    fn notify_plan(
        &self,
        matched: &[(Connection, String)],
        deliveries: &[NewDelivery],
    ) -> Result<u64>;
    /// Unfinished deliveries (`pending`, `digest`) due at `now`, oldest first (a message retried
    /// after a 429 keeps its place before those made while it waited).
    fn deliveries_due(&self, now: i64, limit: usize) -> Result<Vec<DeliveryRecord>>;
    /// Records attempts' outcomes, in one transaction.
    fn update_deliveries(&self, updates: &[DeliveryUpdate]) -> Result<()>;
    /// Deliveries, newest first (see [`DeliveryQuery`]).
    fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>>;
    /// When the next unfinished delivery is due, if any.
    fn next_delivery_due(&self) -> Result<Option<i64>>;

    // The mirror.
    /// Writes a batch in one transaction.
    fn apply(&self, connection: &Connection, batch: &Batch) -> Result<Counts>;
    /// Writes batches in their order, each whole or not at all (backends write them in one
    /// transaction); the counts of each.
    fn apply_all(&self, connection: &Connection, batches: &[Batch]) -> Result<Vec<Counts>> {
        batches
            .iter()
            .map(|batch| self.apply(connection, batch))
            .collect()
    }
    /// Writes batches as `apply_all` does and hands the outcome to `done`. A backend with a
    /// writer of its own (`writes_queued`) queues them and returns at once, calling `done` on
    /// its writer's thread; the others write on the calling thread, which may block.
    fn apply_all_then(
        &self,
        connection: &Connection,
        batches: Vec<Batch>,
        done: Box<dyn FnOnce(Result<Vec<Counts>>) + Send>,
    ) {
        done(self.apply_all(connection, &batches))
    }
    /// Whether `apply_all_then` returns without blocking.
    fn writes_queued(&self) -> bool {
        false
    }
    /// How many writes the backend usefully runs side by side.
    fn parallel_writes(&self) -> usize {
        1
    }
    /// After a re-backfill: marks deleted the live rows of `table` created at or after
    /// `created_from` that were not written since `synced_before` (they were not listed again, so
    /// Stripe no longer has them). Returns how many were marked.
    fn sweep(
        &self,
        connection: &Connection,
        table: &str,
        synced_before: i64,
        created_from: i64,
    ) -> Result<u64>;
    /// A page of a table's objects, newest first, as Stripe lists them (see [`PageQuery`]);
    /// and whether more follow. An unknown cursor or filter is [`StoreError::BadQuery`].
    fn page(
        &self,
        connection: &Connection,
        table: &str,
        query: &PageQuery,
    ) -> Result<(Vec<StoredRow>, bool)> {
        let (rows, more) = self.page_raw(connection, table, query)?;
        let rows = rows
            .into_iter()
            .map(|r| StoredRow {
                id: r.id,
                deleted: r.deleted,
                data: serde_json::from_str(&r.data).unwrap_or(serde_json::Value::Null),
                version: r.version,
            })
            .collect();
        Ok((rows, more))
    }
    /// [`Store::page`] with each object's JSON as stored (what an answer sends on).
    fn page_raw(
        &self,
        connection: &Connection,
        table: &str,
        query: &PageQuery,
    ) -> Result<(Vec<RawRow>, bool)>;
    /// Live customers whose email, name or metadata (a key or a value) contains `text`, in
    /// any ASCII case, newest first, at most `limit`: the JSON of each as stored. `text` is
    /// matched literally (`%`, `_` and a backslash are not wildcards).
    fn search_customers(
        &self,
        connection: &Connection,
        text: &str,
        limit: usize,
    ) -> Result<Vec<String>>;
    /// Stored versions of the given ids of a table.
    fn versions(
        &self,
        connection: &Connection,
        table: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Stored>>;
    /// Ids of live (not deleted) rows of `table` whose typed column `column` (or `parent_id`)
    /// equals `value` (the items of a subscription, the lines of an invoice).
    fn ids_where(
        &self,
        connection: &Connection,
        table: &str,
        column: &str,
        value: &str,
    ) -> Result<Vec<String>>;
    /// Every row of a table for a connection (deleted included), for comparisons and exports.
    fn rows(&self, connection: &Connection, table: &str) -> Result<Vec<StoredRow>> {
        Ok(self
            .rows_raw(connection, table)?
            .into_iter()
            .map(|row| StoredRow {
                data: serde_json::from_str(&row.data).unwrap_or(serde_json::Value::Null),
                id: row.id,
                deleted: row.deleted,
                version: row.version,
            })
            .collect())
    }
    /// [`Store::rows`] with each object's JSON as stored (for readers that take a few fields).
    fn rows_raw(&self, connection: &Connection, table: &str) -> Result<Vec<RawRow>>;
    /// The rows of a table with these ids (deleted included; ids not stored are left out).
    fn rows_by_id(
        &self,
        connection: &Connection,
        table: &str,
        ids: &[String],
    ) -> Result<Vec<StoredRow>>;
    /// (live rows, deleted rows) of a table.
    fn count(&self, connection: &Connection, table: &str) -> Result<(u64, u64)>;
    /// Events kept for a connection, newest first.
    /// The newest `limit` events, newest first.
    fn events(&self, connection: &Connection, limit: usize) -> Result<Vec<EventRow>> {
        self.events_page(
            connection,
            &EventQuery {
                limit,
                ..Default::default()
            },
        )
    }
    /// When the connection's newest kept event was made (`created`), without reading it.
    fn latest_event_at(&self, connection: &Connection) -> Result<Option<i64>> {
        Ok(self.events(connection, 1)?.first().map(|e| e.created))
    }
    /// A page of events, newest first (ties in storage order, newest stored first): of the
    /// given types (`customer.created`, or `customer.*` for a prefix; none: every type), after
    /// the event `starting_after`.
    fn events_page(&self, connection: &Connection, query: &EventQuery) -> Result<Vec<EventRow>>;
    fn event_count(&self, connection: &Connection) -> Result<u64>;
    /// The storage position of the connection's last stored event (0: none): where a tail
    /// of new events starts.
    fn last_event_position(&self, connection: &Connection) -> Result<i64>;
    /// Events stored after position `after` (0: from the start), in the order they were stored,
    /// with each one's position: a tail that sees late deliveries too.
    fn events_since(
        &self,
        connection: &Connection,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, EventRow)>>;
    /// Whether an event is stored already.
    fn has_event(&self, connection: &Connection, id: &str) -> Result<bool>;

    // Backfill cursors and sync state.
    fn windows(&self, connection: &Connection) -> Result<Vec<Window>>;
    /// Replaces every window of a connection (a new plan, or none for `--full`).
    fn reset_windows(&self, connection: &Connection, windows: &[Window]) -> Result<()>;
    fn state(&self, connection: &Connection, key: &str) -> Result<Option<String>>;
    fn set_state(&self, connection: &Connection, key: &str, value: Option<&str>) -> Result<()>;

    // API tokens.
    /// Stores a token; [`StoreError::Duplicate`] when its name is taken.
    fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Deletes a token; whether it existed.
    fn delete_token(&self, name: &str) -> Result<bool>;

    // Runs.
    fn start_run(
        &self,
        connection: &Connection,
        kind: &str,
        trigger: &str,
        started_at: i64,
    ) -> Result<i64>;
    /// Saves a run's state: its progress while it runs (status `running`), its end after.
    fn finish_run(&self, run: &RunRecord) -> Result<()>;
    /// One run of a connection.
    fn run(&self, connection: &Connection, id: i64) -> Result<Option<RunRecord>>;
    /// Newest first.
    fn runs(&self, connection: &Connection, limit: usize) -> Result<Vec<RunRecord>>;
    /// Every connection's newest run, in one read (the list of connections shows them).
    fn latest_runs(&self) -> Result<Vec<RunRecord>>;
    /// Every connection's values of the sync-state `keys`, in one read: (connection, key, value).
    fn states_of_all(&self, keys: &[&str]) -> Result<Vec<(Connection, String, String)>>;

    /// Runs a user's read-only SQL inside the boundary of `sandbox.rs` (the mirror's tables
    /// only, harmless functions, time, memory, row and byte limits): column names, and rows of
    /// JSON values (numbers as numbers, booleans as booleans, JSON columns as JSON, text as
    /// strings, NULL as null). `reader_secret` is the password of the Postgres reader role
    /// (derived from the master key by the engine); SQLite needs none.
    fn sandboxed_query(&self, sql: &str, reader_secret: &str) -> Result<ValuesResult>;

    /// Runs the program's own read-only SQL (its checks and tests), outside the boundary:
    /// never a user's SQL, which goes through [`Store::sandboxed_query`].
    fn query_values(&self, sql: &str) -> Result<ValuesResult>;

    /// [`Store::query_values`] with every value as text (`None` for NULL): for tests.
    fn query(&self, sql: &str) -> Result<QueryResult> {
        self.query_values(sql).map(as_text)
    }
}

/// Typed query results as text (`None` for NULL, strings as they are, the rest as JSON).
pub fn as_text((names, rows): ValuesResult) -> QueryResult {
    let rows = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| match value {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(text) => Some(text),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .collect();
    (names, rows)
}

/// Opens the store a `--database` value names: `postgres://…` (optionally `?schema=name`), or a
/// SQLite file path. Creates and migrates the schema.
pub fn open(target: &str) -> Result<Box<dyn Store>> {
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        postgres::open(target)
    } else {
        Ok(Box::new(sqlite::SqliteStore::open(target)?))
    }
}

/// The schema version these backends create (9: leases, `sync_leases`).
pub const SCHEMA_VERSION: i64 = 10;
