//! Keeping a mirror exact: the first run backfills every readable resource in `created` windows
//! (split while running, so dense ranges are listed side by side within the account's rate
//! budget), each page written with its checkpoint in one transaction; then events are replayed
//! from the position recorded before the backfill began. Later runs replay events from where the
//! last stopped, and re-list recent windows of what has no events.
//!
//! Every object change goes through [`Applier`]: the one apply path, whatever the source.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use sm_stripe::Client;
use sm_stripe::error::ErrorKind;
use sm_warehouse::{AccountRecord, Batch, Connection, Counts, Guard, RunRecord, Window};

use crate::apply::{Applier, Rows, event_change, follow_ups, foreign_version, refetch};
use crate::catalog::{RESOURCES, Resource, Source};
use crate::connect::{PermissionReport, event_row};
use crate::error::{EngineError, ErrorCode};
use crate::write_behind::{Handed, WriteBehind};
use crate::{Engine, now};

/// Stripe keeps events this long; a position older than this cannot be replayed.
pub const EVENT_RETENTION_SECS: i64 = 30 * 86_400;
/// Margin kept from the retention edge, so a replay never starts on an event about to vanish.
const RETENTION_MARGIN_SECS: i64 = 3_600;
/// Events are read again from this long before the last read to the end (an event may become
/// listable a moment after its `created` time).
const READ_MARGIN_SECS: i64 = 300;
/// Windows narrower than this are not split further.
const MIN_SPLIT_SECS: i64 = 120;
/// The beginning of Stripe, for "all history".
const STRIPE_EPOCH: i64 = 1_262_304_000; // 2010-01-01
/// Customers per window of per-customer lists.
const PARENTS_PER_WINDOW: usize = 200;
/// At most this many customers' lists are written per batch of a per-customer window.
const PARENTS_PER_BATCH: usize = 25;

/// State keys.
const POSITION: &str = "events.position";
const POSITION_CREATED: &str = "events.position_created";
const BACKFILL_AT: &str = "backfill.started_at";
const BACKFILL_DONE: &str = "backfill.done";
const REFRESH_SINCE: &str = "refresh.since";
const SWEEP_BEFORE: &str = "backfill.sweep_before";
/// Tables whose backfill finished and whose changes were applied ever since (`customers,charges`).
const BACKFILL_TABLES: &str = "backfill.tables";
/// Tables an unfinished backfill plan still lists.
const PLAN_TABLES: &str = "backfill.plan_tables";
/// The server's time when the Events API was last read to its end: no event older than this
/// was left unread.
const READ_AT: &str = "events.read_at";
/// Set when the mirror's API version changed, to the new version, until a backfill is planned.
const VERSION_CHANGED: &str = "mirror.api_version_changed";

/// What a sync run should do.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Re-backfill everything, even when a backfill finished before.
    pub full: bool,
    /// Requests in flight at once (the pacer keeps them within the rate budget).
    pub concurrency: usize,
    /// The tables to keep (`catalog::choose_tables`); `None`: every table the key may read.
    pub tables: Option<std::collections::BTreeSet<&'static str>>,
    /// What started the run, kept in its history.
    pub trigger: Trigger,
    /// The lease the run holds (`serve`'s scheduler): every batch it writes is committed only
    /// while that lease is still held.
    pub fence: Option<sm_warehouse::Fence>,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// `stripe-mirror sync`.
    #[default]
    Command,
    /// `serve`'s interval.
    Schedule,
    /// "Sync now" on the dashboard.
    Dashboard,
    /// `POST /api/v1/connections/{id}/syncs`.
    Api,
    /// `stripe-mirror demo`.
    Demo,
    /// The first sync of a connection just made on the dashboard.
    Connected,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Command => "command",
            Trigger::Schedule => "schedule",
            Trigger::Dashboard => "dashboard",
            Trigger::Api => "api",
            Trigger::Demo => "demo",
            Trigger::Connected => "new connection",
        }
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            full: false,
            concurrency: 8,
            tables: None,
            trigger: Trigger::Command,
            fence: None,
        }
    }
}

/// Live progress, for bars on a terminal and lines elsewhere.
pub trait Progress: Send + Sync {
    /// A resource's work began; `total_span` is its seconds of history to cover (0: unknown).
    fn begin(&self, table: &str, phase: &str);
    /// `objects` more objects written for `table`; `covered` is the fraction of its history done.
    fn advance(&self, table: &str, objects: u64, covered: f64);
    fn end(&self, table: &str);
    /// A sentence worth showing.
    fn note(&self, message: &str);
}

/// Progress that shows nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: &str, _: &str) {}
    fn advance(&self, _: &str, _: u64, _: f64) {}
    fn end(&self, _: &str) {}
    fn note(&self, _: &str) {}
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run: RunRecord,
    /// Resources skipped, with the permission they need.
    pub skipped: Vec<(String, String)>,
    /// Readable tables left out by choice (`--only`, `--skip`).
    pub not_chosen: Vec<String>,
    /// The share of the account's rate limit the run used.
    pub budget_share: f64,
    pub notes: Vec<String>,
}

/// The shared state of one run.
pub(crate) struct Run {
    engine_store: Arc<dyn sm_warehouse::Store>,
    pub(crate) connection: Connection,
    pub(crate) client: Client,
    counts: Mutex<Counts>,
    pub(crate) progress: Arc<dyn Progress>,
    notes: Mutex<Vec<String>>,
    /// Set when the run must stop (an error every task would hit).
    failed: Mutex<Option<EngineError>>,
    stop: AtomicBool,
    /// Tables whose permission went missing during the run.
    lost: Mutex<HashSet<&'static str>>,
    /// Tables this run's backfill found empty: a page of them holds no object the mirror
    /// knows (windows do not overlap), so its parents need no lookup.
    fresh: Mutex<HashSet<&'static str>>,
    pub(crate) objects: AtomicU64,
    /// Objects read again this run because their events were in another API version
    /// (`table/id` → the version written): read again only for an event made at or after it.
    pub(crate) refetched: Mutex<std::collections::HashMap<String, i64>>,
    /// The events this run writes arrived live (webhooks, an incremental sync's new events),
    /// so they are queued for the notification rules; a backfill's are history.
    live_events: AtomicBool,
    /// The lease every batch of this run is written under (see `SyncOptions::fence`).
    fence: Mutex<Option<sm_warehouse::Fence>>,
}

impl Run {
    pub(crate) fn new(
        engine: &Engine,
        connection: &Connection,
        client: Client,
        progress: Arc<dyn Progress>,
    ) -> Run {
        Run {
            engine_store: engine.store.clone(),
            connection: connection.clone(),
            client,
            counts: Mutex::new(Counts::default()),
            progress,
            notes: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
            stop: AtomicBool::new(false),
            lost: Mutex::new(HashSet::new()),
            fresh: Mutex::new(HashSet::new()),
            objects: AtomicU64::new(0),
            refetched: Mutex::new(std::collections::HashMap::new()),
            live_events: AtomicBool::new(false),
            fence: Mutex::new(None),
        }
    }

    /// Marks the events this run writes as live (see `live_events`).
    pub(crate) fn with_live_events(self) -> Run {
        self.set_live_events();
        self
    }

    /// Every batch written from now on carries `fence` (see `SyncOptions::fence`).
    pub(crate) fn set_fence(&self, fence: Option<sm_warehouse::Fence>) {
        *self.fence.lock() = fence;
    }

    pub(crate) fn set_live_events(&self) {
        self.live_events.store(true, Ordering::Relaxed);
    }

    pub(crate) async fn store<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn sm_warehouse::Store) -> sm_warehouse::Result<T> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = self.engine_store.clone();
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| {
                EngineError::new(ErrorCode::Internal, format!("a database task failed: {e}"))
            })?
            .map_err(EngineError::from)
    }

    /// A read by key, made on this thread when the database is an embedded file (it takes
    /// microseconds there; handing it to a blocking thread and back cost more than the read);
    /// a database over the network is read on a blocking thread, as `store` does.
    pub(crate) async fn read_by_key<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn sm_warehouse::Store) -> sm_warehouse::Result<T> + Send + 'static,
    ) -> Result<T, EngineError> {
        if self.engine_store.backend() == sm_warehouse::Backend::Sqlite {
            return call(self.engine_store.as_ref()).map_err(EngineError::from);
        }
        self.store(call).await
    }

    /// Writes batches in order, many in one transaction. The one way the mirror is written.
    async fn write(&self, mut batches: Vec<Batch>) -> Result<Vec<Counts>, EngineError> {
        let live = self.live_events.load(Ordering::Relaxed);
        let fence = self.fence.lock().clone();
        for batch in &mut batches {
            batch.notify |= live;
            if fence.is_some() {
                batch.fence = fence.clone();
            }
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let done: Box<dyn FnOnce(sm_warehouse::Result<Vec<Counts>>) + Send> =
            Box::new(move |outcome| {
                let _ = sender.send(outcome);
            });
        if self.engine_store.writes_queued() {
            self.engine_store
                .apply_all_then(&self.connection, batches, done);
        } else {
            let (store, connection) = (self.engine_store.clone(), self.connection.clone());
            tokio::task::spawn_blocking(move || store.apply_all_then(&connection, batches, done));
        }
        let all = receiver
            .await
            .map_err(|_| EngineError::new(ErrorCode::Internal, "a database write was dropped"))?
            .map_err(EngineError::from)?;
        let mut counts = self.counts.lock();
        for one in &all {
            counts.add(one);
        }
        Ok(all)
    }

    pub(crate) async fn apply_all(&self, batches: Vec<Batch>) -> Result<(), EngineError> {
        self.write(batches).await.map(|_| ())
    }

    /// How many batches the store writes side by side.
    pub(crate) fn parallel_writes(&self) -> usize {
        self.engine_store.parallel_writes()
    }

    pub(crate) async fn apply(&self, batch: Batch) -> Result<Counts, EngineError> {
        let mut all = self.write(vec![batch]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    fn note(&self, message: String) {
        self.progress.note(&message);
        self.notes.lock().push(message);
    }

    /// Records a failure that ends the run, unless the failure is a permission lost for one
    /// resource, which only ends that resource.
    pub(crate) fn fail(&self, table: &'static str, error: EngineError) {
        if error.code == ErrorCode::PermissionMissing {
            if self.lost.lock().insert(table) {
                self.note(format!("skipped the rest of {table}: {}", error.message));
            }
            return;
        }
        let mut failed = self.failed.lock();
        if failed.is_none() {
            *failed = Some(error);
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs one sync of a connection.
pub async fn sync(
    engine: &Engine,
    connection: &Connection,
    options: &SyncOptions,
    progress: Arc<dyn Progress>,
) -> Result<SyncReport, EngineError> {
    let mut record = engine.account(connection).await?;
    let key = engine.open_key(&record)?;
    let client = engine.client_for(&record, &key)?;
    let report = PermissionReport::from_json(&record.permissions);
    let readable: HashSet<&'static str> = RESOURCES
        .iter()
        .filter(|r| report.can_read(r.table))
        .map(|r| r.table)
        .collect();
    let skipped: Vec<(String, String)> = RESOURCES
        .iter()
        .filter(|r| !readable.contains(r.table))
        .filter(|r| options.tables.as_ref().is_none_or(|t| t.contains(r.table)))
        .map(|r| (r.table.to_owned(), r.permission.to_owned()))
        .collect();
    let not_chosen: Vec<String> = RESOURCES
        .iter()
        .filter(|r| readable.contains(r.table))
        .filter(|r| {
            options
                .tables
                .as_ref()
                .is_some_and(|t| !t.contains(r.table))
        })
        .map(|r| r.table.to_owned())
        .collect();
    let readable: HashSet<&'static str> = readable
        .into_iter()
        .filter(|t| {
            options
                .tables
                .as_ref()
                .is_none_or(|chosen| chosen.contains(t))
        })
        .collect();
    let started_at = now();
    let state = |key: &'static str| {
        let connection = connection.clone();
        move |store: &dyn sm_warehouse::Store| store.state(&connection, key)
    };
    let backfilled = engine.store_call(state(BACKFILL_DONE)).await?.is_some();
    let kind = if options.full {
        "full"
    } else if backfilled {
        "incremental"
    } else {
        "backfill"
    };
    let trigger = options.trigger.as_str();
    let run_id = engine
        .store_call({
            let connection = connection.clone();
            move |store| {
                // Runs still "running" were cut short (the process was killed): say so.
                close_running(store, &connection, "the process stopped before this run ended; the next run continued from its checkpoints")?;
                store.start_run(&connection, kind, trigger, started_at)
            }
        })
        .await?;
    // The run's progress is recorded (and shown by the caller as before), and written to its
    // row every few seconds, so that every surface sees it while it runs.
    let recorder = Arc::new(crate::run_progress::RecordingProgress::new(
        progress.clone(),
        readable.iter().map(|t| (*t).to_owned()),
    ));
    let run = Arc::new(Run::new(
        engine,
        connection,
        client.clone(),
        recorder.clone(),
    ));
    run.set_fence(options.fence.clone());
    for (table, permission) in &skipped {
        run.note(format!("skipping {table}: missing {permission}"));
    }
    if !not_chosen.is_empty() {
        run.note(format!(
            "not mirrored by choice (--only/--skip): {}",
            not_chosen.join(", ")
        ));
    }
    if !report.events {
        run.note(
            "events are not readable (missing rak_event_read): changes are found by listing again"
                .into(),
        );
    }
    let requests_before = client.requests_made();
    let (stop_ticker, ticker) = {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (run, recorder, client) = (run.clone(), recorder.clone(), client.clone());
        let live = RunRecord {
            id: run_id,
            connection: connection.clone(),
            kind: kind.to_owned(),
            trigger: trigger.to_owned(),
            started_at,
            ended_at: None,
            status: "running".into(),
            counts: Default::default(),
            requests: 0,
            error: None,
            progress: None,
        };
        let ticker = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(crate::run_progress::PROGRESS_EVERY) => {}
                    _ = stopped.changed() => return,
                }
                let mut now_record = live.clone();
                now_record.counts = run.counts.lock().clone();
                now_record.requests = client.requests_made() - requests_before;
                now_record.progress = serde_json::to_value(recorder.snapshot(false)).ok();
                // A failed progress write is not the run's failure: the next tick tries again.
                if let Err(error) = run.store(move |store| store.finish_run(&now_record)).await {
                    tracing::debug!(error = %error, "could not save a run's progress");
                }
            }
        });
        (stop, ticker)
    };
    let outcome = run_phases(engine, &run, &record, &readable, options, report.events).await;
    // The last progress write lands before the run's end is written.
    let _ = stop_ticker.send(true);
    let _ = ticker.await;
    let (kind, failure) = match outcome {
        Ok(effective) => (effective, run.failed.lock().take()),
        Err(error) => (kind, Some(error)),
    };
    let counts = run.counts.lock().clone();
    let lost = !run.lost.lock().is_empty();
    let run_record = RunRecord {
        id: run_id,
        connection: connection.clone(),
        kind: kind.to_owned(),
        trigger: trigger.to_owned(),
        started_at,
        ended_at: Some(now()),
        status: match (&failure, lost || !skipped.is_empty()) {
            (Some(_), _) => "failed".into(),
            (None, true) => "partial".into(),
            (None, false) => "succeeded".into(),
        },
        counts,
        requests: client.requests_made() - requests_before,
        error: failure.as_ref().map(|e| e.message.clone()),
        progress: serde_json::to_value(recorder.snapshot(failure.is_none())).ok(),
    };
    // The account's status says why the last run failed, in words, until one succeeds.
    record.status = if failure.is_some() {
        "failing".into()
    } else {
        "ok".into()
    };
    record.status_message = failure.as_ref().map(|e| e.message.clone()).or_else(|| {
        (!skipped.is_empty()).then(|| {
            format!(
                "skipping {} resource(s): missing {}",
                skipped.len(),
                skipped
                    .iter()
                    .map(|s| s.1.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    });
    record.updated_at = now();
    let saved = run_record.clone();
    engine
        .store_call(move |store| {
            store.finish_run(&saved)?;
            // Only the status is the run's to write: the name, key or start date may have
            // changed while it ran (a rename in the dashboard), so the row is read again.
            let mut fresh = store.account(&record.connection)?.unwrap_or(record.clone());
            fresh.status = record.status.clone();
            fresh.status_message = record.status_message.clone();
            fresh.updated_at = record.updated_at;
            store.update_account(&fresh)?;
            // The rows held per table, for the dashboard: counted again only where this run
            // inserted or deleted rows (a count is a scan), the others kept from before.
            let changed = |table: &str| {
                saved
                    .counts
                    .tables
                    .get(table)
                    .is_none_or(|c| c.inserted > 0 || c.deleted > 0)
            };
            let before: std::collections::BTreeMap<String, (u64, u64)> = store
                .state(&record.connection, crate::ROWS_BY_TABLE)?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            let mut now_held = std::collections::BTreeMap::new();
            for table in sm_warehouse::TABLES {
                let held = match before.get(table.name) {
                    Some(held) if !changed(table.name) => *held,
                    _ => store.count(&record.connection, table.name)?,
                };
                now_held.insert(table.name.to_owned(), held);
            }
            let rows: u64 = now_held.values().map(|(live, _)| live).sum();
            if saved.status != "failed"
                && let Some(ended) = saved.ended_at
            {
                store.set_state(
                    &record.connection,
                    crate::LAST_SUCCESS_AT,
                    Some(&ended.to_string()),
                )?;
            }
            store.set_state(
                &record.connection,
                crate::ROWS_BY_TABLE,
                Some(&serde_json::to_string(&now_held).unwrap_or_default()),
            )?;
            store.set_state(
                &record.connection,
                crate::ROWS_MIRRORED,
                Some(&rows.to_string()),
            )
        })
        .await?;
    let reread = run.refetched.lock().len();
    if reread > 0 {
        run.note(format!(
            "read {reread} objects again in API version {}: their events came in another",
            run.client.config().api_version
        ));
    }
    let notes = run.notes.lock().clone();
    match failure {
        Some(error) => Err(error),
        None => Ok(SyncReport {
            run: run_record,
            skipped,
            not_chosen,
            budget_share: engine.config.budget_share,
            notes,
        }),
    }
}

/// The tables whose every backfill window is done (a table listed per parent has windows of
/// its own name; an embedded one is complete with its parent).
fn completed_by_windows(windows: &[Window]) -> HashSet<&'static str> {
    let mut complete: HashSet<&'static str> = RESOURCES
        .iter()
        .filter(|r| !matches!(r.source, Source::Embedded { .. }))
        .filter(|r| {
            let mine: Vec<&Window> = windows
                .iter()
                .filter(|w| parse_scope(&w.scope).is_some_and(|(s, _)| s.table == r.table))
                .collect();
            !mine.is_empty() && mine.iter().all(|w| w.state == "done")
        })
        .map(|r| r.table)
        .collect();
    for r in RESOURCES {
        if let Source::Embedded { parent_table, .. } = r.source
            && complete.contains(parent_table)
        {
            complete.insert(r.table);
        }
    }
    complete
}

/// A set of tables kept in the sync state as `customers,charges`.
fn table_set(value: Option<String>) -> Option<HashSet<&'static str>> {
    value.map(|v| {
        v.split(',')
            .filter_map(|t| crate::catalog::resource(t).map(|r| r.table))
            .collect()
    })
}

fn table_list(tables: &HashSet<&'static str>) -> String {
    let mut names: Vec<&str> = tables.iter().copied().collect();
    names.sort_unstable();
    names.join(",")
}

/// Sorted, for sentences.
fn sorted(tables: impl IntoIterator<Item = &'static str>) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = tables.into_iter().collect();
    names.sort_unstable();
    names
}

/// After the mirror's API version changed: every table is to be listed again, and the next
/// sync says why.
pub(crate) fn mark_version_change(
    store: &dyn sm_warehouse::Store,
    connection: &Connection,
    version: &str,
) -> sm_warehouse::Result<()> {
    store.set_state(connection, BACKFILL_TABLES, Some(""))?;
    store.set_state(connection, VERSION_CHANGED, Some(version))
}

/// Marks a connection's runs still "running" as interrupted, with `why`.
fn close_running(
    store: &dyn sm_warehouse::Store,
    connection: &Connection,
    why: &str,
) -> sm_warehouse::Result<()> {
    for mut stale in store
        .runs(connection, 50)?
        .into_iter()
        .filter(|r| r.status == "running")
    {
        stale.status = "interrupted".into();
        stale.ended_at = Some(now());
        stale.error = Some(why.to_owned());
        store.finish_run(&stale)?;
    }
    Ok(())
}

/// Records at once that a connection's sync was stopped (Ctrl-C, SIGTERM) before it ended: what
/// it wrote is kept with its checkpoints, and the next sync continues from there.
pub async fn mark_interrupted(
    engine: &Engine,
    connection: &Connection,
    why: &str,
) -> Result<(), EngineError> {
    let (connection, why) = (connection.clone(), why.to_owned());
    engine
        .store_call(move |store| close_running(store, &connection, &why))
        .await
}

async fn run_phases(
    engine: &Engine,
    run: &Arc<Run>,
    record: &AccountRecord,
    chosen: &HashSet<&'static str>,
    options: &SyncOptions,
    events_readable: bool,
) -> Result<&'static str, EngineError> {
    let connection = &run.connection;
    let get_state = |key: &'static str| {
        let connection = connection.clone();
        move |store: &dyn sm_warehouse::Store| store.state(&connection, key)
    };
    let done = engine.store_call(get_state(BACKFILL_DONE)).await?.is_some();
    let ever_planned = engine.store_call(get_state(BACKFILL_AT)).await?.is_some();
    let recorded = table_set(engine.store_call(get_state(BACKFILL_TABLES)).await?);
    // Tables whose backfill finished and whose events were applied ever since. A mirror from
    // before this was recorded: the tables whose every window is done (a table the key could
    // not read then has none, and is backfilled now).
    let complete: HashSet<&'static str> = match recorded {
        Some(complete) => complete,
        None if done => {
            let connection = connection.clone();
            let windows = run.store(move |store| store.windows(&connection)).await?;
            let complete = completed_by_windows(&windows);
            run.apply(Batch {
                state: vec![(BACKFILL_TABLES.to_owned(), table_list(&complete))],
                ..Default::default()
            })
            .await?;
            complete
        }
        None => HashSet::new(),
    };
    // Tables the unfinished backfill plan covers (an older mirror's plan covered every table).
    let mut plan_tables: Option<HashSet<&'static str>> =
        table_set(engine.store_call(get_state(PLAN_TABLES)).await?)
            .or_else(|| (ever_planned && !done).then(|| chosen.clone()));
    // Planned tables left out of this run: their events are not applied from here on, so what
    // their windows listed so far would go stale. They leave the plan, and are planned afresh
    // (listed from the start) when chosen again.
    if let Some(planned) = &plan_tables
        && !planned.is_subset(chosen)
    {
        let kept: HashSet<&'static str> = planned.intersection(chosen).copied().collect();
        run.apply(Batch {
            state: vec![(PLAN_TABLES.to_owned(), table_list(&kept))],
            ..Default::default()
        })
        .await?;
        plan_tables = Some(kept);
    }
    let position_created: Option<i64> = engine
        .store_call(get_state(POSITION_CREATED))
        .await?
        .and_then(|v| v.parse().ok());
    let read_at: Option<i64> = engine
        .store_call(get_state(READ_AT))
        .await?
        .and_then(|v| v.parse().ok());
    let (_, server_now) = run
        .client
        .get_timed("/v1/events", &[("limit".into(), "1".into())])
        .await
        .or_else(|e| {
            if events_readable {
                Err(e)
            } else {
                Ok((Value::Null, None))
            }
        })?;
    let server_now = server_now.unwrap_or_else(now);
    let oldest_replayable = server_now - EVENT_RETENTION_SECS + RETENTION_MARGIN_SECS;
    // Events may have been missed only when the Events API was last read to the end longer ago
    // than Stripe keeps them (a quiet account's last event may be old; its reads are not).
    let last_read = read_at.max(position_created);
    let expired = (!complete.is_empty() || plan_tables.is_some())
        && events_readable
        && last_read.is_some_and(|at| at < oldest_replayable);
    if expired {
        run.note(format!(
            "events were last read {} days ago and Stripe keeps them for 30 days: changes since may be gone from the Events API, so this run re-backfills",
            (server_now - last_read.unwrap_or(0)) / 86_400
        ));
    }
    // Tables mirrored before but left out now: their events are not applied from here on, so
    // they are no longer complete and the next run that includes them lists them again.
    let dropped: Vec<&'static str> = sorted(complete.difference(chosen).copied());
    let complete: HashSet<&'static str> = complete.intersection(chosen).copied().collect();
    if !dropped.is_empty() {
        run.note(format!(
            "not keeping {} up to date this run (not chosen): the next sync that includes them lists them again",
            dropped.join(", ")
        ));
        run.apply(Batch {
            state: vec![(BACKFILL_TABLES.to_owned(), table_list(&complete))],
            ..Default::default()
        })
        .await?;
    }
    let version_changed = engine.store_call(get_state(VERSION_CHANGED)).await?;
    if let Some(version) = &version_changed {
        run.note(format!(
            "re-backfilling every table: the mirror is now kept in API version {version}"
        ));
    }
    let missing: HashSet<&'static str> = chosen.difference(&complete).copied().collect();
    let need_backfill = options.full || expired || !missing.is_empty();
    let resume = !options.full
        && !expired
        && version_changed.is_none()
        && plan_tables
            .as_ref()
            .is_some_and(|planned| missing.is_subset(planned));
    let kind = if !need_backfill {
        // Only an incremental run's new events are news (for the notification rules).
        run.set_live_events();
        "incremental"
    } else if options.full || expired {
        "full"
    } else {
        "backfill"
    };
    if need_backfill && !resume {
        // A new plan, written in one transaction with where events stand: changes made during
        // the backfill are replayed from there.
        let everything = options.full || expired || complete.is_empty();
        let target: HashSet<&'static str> = if everything {
            chosen.clone()
        } else {
            // Only what is missing (and what an unfinished plan still had to list).
            let mut target = missing.clone();
            if let Some(planned) = &plan_tables {
                target.extend(planned.intersection(chosen));
            }
            target
        };
        if !everything {
            run.note(format!(
                "listing {} for the first time (or again); the other tables stay as they are",
                sorted(target.iter().copied()).join(", ")
            ));
        }
        let plan = plan_windows(
            &target,
            record.start_date.unwrap_or(STRIPE_EPOCH),
            server_now,
        );
        let mut state = vec![
            (BACKFILL_AT.to_owned(), server_now.to_string()),
            (PLAN_TABLES.to_owned(), table_list(&target)),
        ];
        // Replay every event Stripe still has. On a first backfill they are the account's
        // history (each subscription's states over its last 30 days, which revenue reports
        // start from); later, lists leave out what was deleted, and only the events say so.
        // Events older than what the lists read change nothing. Otherwise (a `--full` or a
        // partial plan with a valid position) the position stays: every change since the last
        // run is replayed, deletions included.
        if events_readable
            && (!ever_planned || expired || last_read.is_none_or(|at| at < oldest_replayable))
        {
            state.push((POSITION.to_owned(), String::new()));
            state.push((POSITION_CREATED.to_owned(), oldest_replayable.to_string()));
            // A first backfill has missed nothing yet: read as of now, so that resuming it
            // later continues the plan instead of taking the old start for lost events.
            let read_at = if ever_planned {
                oldest_replayable
            } else {
                server_now
            };
            state.push((READ_AT.to_owned(), read_at.to_string()));
        }
        let mut remove_state = vec![BACKFILL_DONE.to_owned(), VERSION_CHANGED.to_owned()];
        if ever_planned {
            // Rows a re-backfill does not list again are gone from Stripe (deleted longer ago
            // than events reach back): the sweep after the backfill marks them.
            state.push((SWEEP_BEFORE.to_owned(), now().to_string()));
        } else {
            remove_state.push(SWEEP_BEFORE.to_owned());
        }
        let complete_now: HashSet<&'static str> = complete.difference(&target).copied().collect();
        state.push((BACKFILL_TABLES.to_owned(), table_list(&complete_now)));
        run.apply(Batch {
            windows: plan,
            replace_windows: true,
            state,
            remove_state,
            ..Default::default()
        })
        .await?;
    }
    if need_backfill {
        let planned = table_set(engine.store_call(get_state(PLAN_TABLES)).await?)
            .unwrap_or_else(|| chosen.clone());
        let listing: HashSet<&'static str> = planned.intersection(chosen).copied().collect();
        let leftover: HashSet<&'static str> = planned.difference(chosen).copied().collect();
        let backfill_at: i64 = engine
            .store_call(get_state(BACKFILL_AT))
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(now);
        backfill(run, chosen, &listing, options.concurrency).await?;
        if run.stopped() {
            return Ok(kind);
        }
        if let Some(before) = engine
            .store_call(get_state(SWEEP_BEFORE))
            .await?
            .and_then(|v| v.parse::<i64>().ok())
        {
            let created_from = record.start_date.unwrap_or(0);
            let tables: Vec<&'static str> = RESOURCES
                .iter()
                .filter(|r| listing.contains(r.table) && r.source == Source::List)
                .map(|r| r.table)
                .collect();
            let connection = connection.clone();
            let swept = run
                .store(move |store| {
                    tables
                        .iter()
                        .map(|table| {
                            Ok((
                                *table,
                                store.sweep(&connection, table, before, created_from)?,
                            ))
                        })
                        .collect::<sm_warehouse::Result<Vec<_>>>()
                })
                .await?;
            let total: u64 = swept.iter().map(|(_, n)| n).sum();
            if total > 0 {
                run.note(format!(
                    "marked {total} rows deleted that Stripe no longer lists"
                ));
            }
            let mut counts = run.counts.lock();
            for (table, n) in swept {
                counts.tables.entry(table.to_owned()).or_default().deleted += n;
            }
        }
        let lost = run.lost.lock().clone();
        let mut complete_now =
            table_set(engine.store_call(get_state(BACKFILL_TABLES)).await?).unwrap_or_default();
        complete_now.retain(|t| chosen.contains(t));
        complete_now.extend(listing.iter().filter(|t| !lost.contains(*t)));
        // What has no events is re-listed from the refresh point on: a plan that listed only
        // some tables must not move it past what the others have not seen.
        let previous_refresh: Option<i64> = engine
            .store_call(get_state(REFRESH_SINCE))
            .await?
            .and_then(|v| v.parse().ok());
        let refresh_since = match previous_refresh {
            Some(previous) if !listing.is_superset(chosen) => previous.min(backfill_at),
            _ => backfill_at,
        };
        let mut state = vec![
            (BACKFILL_TABLES.to_owned(), table_list(&complete_now)),
            (REFRESH_SINCE.to_owned(), refresh_since.to_string()),
        ];
        let mut remove_state = vec![SWEEP_BEFORE.to_owned()];
        if leftover.is_empty() {
            state.push((BACKFILL_DONE.to_owned(), "1".to_owned()));
            remove_state.push(PLAN_TABLES.to_owned());
        } else {
            state.push((PLAN_TABLES.to_owned(), table_list(&leftover)));
        }
        run.apply(Batch {
            state,
            remove_state,
            ..Default::default()
        })
        .await?;
    }
    // What has no creation events and appeared since the last run (or during the backfill).
    refresh_recent(run, chosen, server_now).await?;
    if events_readable && !run.stopped() {
        replay_events(run, chosen, last_read, oldest_replayable, server_now).await?;
    }
    Ok(kind)
}

/// The scope of a list pass: `prices#1` for the second pass of prices.
fn scope(resource: &Resource, pass: usize) -> String {
    if resource.passes.len() > 1 {
        format!("{}#{pass}", resource.table)
    } else {
        resource.table.to_owned()
    }
}

fn parse_scope(scope: &str) -> Option<(&'static Resource, usize)> {
    let (table, pass) = scope
        .split_once('#')
        .map(|(t, p)| (t, p.parse().unwrap_or(0)))
        .unwrap_or((scope, 0));
    crate::catalog::resource(table).map(|r| (r, pass))
}

/// One window per top-level list pass, covering `[start, end)`; per-customer lists are planned
/// once customers are in.
fn plan_windows(readable: &HashSet<&'static str>, start: i64, end: i64) -> Vec<Window> {
    let mut plan = Vec::new();
    for resource in RESOURCES
        .iter()
        .filter(|r| readable.contains(r.table) && r.source == Source::List)
    {
        for pass in 0..resource.passes.len() {
            let (start, end) = if resource.created_filter {
                (start, end + 1)
            } else {
                (0, 0)
            };
            plan.push(Window {
                scope: scope(resource, pass),
                start,
                end,
                state: "pending".into(),
                after: None,
            });
        }
    }
    plan
}

/// Runs every unfinished window, top-level lists first, then per-customer lists.
/// `readable` is what this run mirrors (embedded children are written when their table is in
/// it); `listing` the tables whose windows it lists.
async fn backfill(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    listing: &HashSet<&'static str>,
    concurrency: usize,
) -> Result<(), EngineError> {
    let connection = run.connection.clone();
    let windows = run.store(move |store| store.windows(&connection)).await?;
    let pending: Vec<Window> = windows
        .iter()
        .filter(|w| {
            w.state != "done"
                && parse_scope(&w.scope)
                    .is_some_and(|(r, _)| r.source == Source::List && listing.contains(r.table))
        })
        .cloned()
        .collect();
    let connection = run.connection.clone();
    let embedding: Vec<&'static str> = RESOURCES
        .iter()
        .filter(|r| !crate::apply::embedded_fields(r, readable).is_empty())
        .map(|r| r.table)
        .collect();
    let fresh = run
        .store(move |store| {
            let mut fresh = Vec::new();
            for table in embedding {
                if store.count(&connection, table)? == (0, 0) {
                    fresh.push(table);
                }
            }
            Ok(fresh)
        })
        .await?;
    run.fresh.lock().extend(fresh);
    announce(run, listing, "backfill");
    run_windows(run, readable, pending, concurrency).await;
    run.fresh.lock().clear();
    if run.stopped() {
        return Ok(());
    }
    // Per-customer lists: planned from the customers now in the mirror, by `created` ranges, so
    // that the plan survives a restart unchanged.
    let connection = run.connection.clone();
    let windows = run.store(move |store| store.windows(&connection)).await?;
    let mut plan: Vec<Window> = Vec::new();
    for resource in RESOURCES
        .iter()
        .filter(|r| listing.contains(r.table) && matches!(r.source, Source::PerParent { .. }))
    {
        if windows.iter().any(|w| w.scope == resource.table) {
            plan.extend(
                windows
                    .iter()
                    .filter(|w| w.scope == resource.table && w.state != "done")
                    .cloned(),
            );
            continue;
        }
        let Source::PerParent { parent_table, .. } = resource.source else {
            continue;
        };
        // Each window runs from its first parent's `created` to the next window's.
        let starts = parent_window_starts(run, parent_table).await?;
        let mut new_windows: Vec<Window> = starts
            .iter()
            .enumerate()
            .map(|(i, start)| Window {
                scope: resource.table.into(),
                start: *start,
                end: starts.get(i + 1).copied().unwrap_or(i64::MAX),
                state: "pending".into(),
                after: None,
            })
            .collect();
        if new_windows.is_empty() {
            new_windows.push(Window {
                scope: resource.table.into(),
                start: 0,
                end: 0,
                state: "done".into(),
                after: None,
            });
        }
        run.apply(Batch {
            windows: new_windows.clone(),
            ..Default::default()
        })
        .await?;
        plan.extend(new_windows.into_iter().filter(|w| w.state != "done"));
    }
    for resource in RESOURCES
        .iter()
        .filter(|r| listing.contains(r.table) && matches!(r.source, Source::PerParent { .. }))
    {
        run.progress.begin(resource.table, "backfill");
    }
    run_windows(run, readable, plan, concurrency).await;
    for resource in RESOURCES.iter().filter(|r| listing.contains(r.table)) {
        run.progress.end(resource.table);
    }
    Ok(())
}

fn announce(run: &Run, readable: &HashSet<&'static str>, phase: &str) {
    for resource in RESOURCES
        .iter()
        .filter(|r| readable.contains(r.table) && r.source == Source::List)
    {
        run.progress.begin(resource.table, phase);
    }
}

/// Where each window of about `PARENTS_PER_WINDOW` parents starts, on the parents' `created`.
/// Edges fall between distinct values, since windows are half-open on `created`.
async fn parent_window_starts(
    run: &Run,
    parent_table: &'static str,
) -> Result<Vec<i64>, EngineError> {
    let sql = parents_sql(&run.connection, parent_table, None, "created");
    let (_, rows) = run.store(move |store| store.query(&sql)).await?;
    let mut created: Vec<i64> = rows
        .into_iter()
        .filter_map(|r| r.first().cloned().flatten().and_then(|v| v.parse().ok()))
        .collect();
    created.sort_unstable();
    // Chunk edges must fall between distinct values.
    let mut starts = Vec::new();
    let mut count = 0;
    for (i, value) in created.iter().enumerate() {
        if i == 0 || (count >= PARENTS_PER_WINDOW && *value != created[i - 1]) {
            starts.push(*value);
            count = 0;
        }
        count += 1;
    }
    Ok(starts)
}

/// `SELECT {column} FROM {table}` of a connection's live rows, optionally within `created` bounds.
fn parents_sql(
    connection: &Connection,
    table: &str,
    range: Option<(i64, i64)>,
    column: &str,
) -> String {
    // Account ids are `acct_` and alphanumerics: safe to inline; checked anyway.
    let account: String = connection
        .account_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut sql = format!(
        "SELECT {column} FROM {table} WHERE account_id = '{account}' AND livemode = {} AND NOT deleted",
        connection.livemode
    );
    if let Some((start, end)) = range {
        sql.push_str(&format!(" AND created >= {start} AND created < {end}"));
    }
    sql.push_str(" ORDER BY created, id");
    sql
}

/// A queue of windows worked by `concurrency` tasks; windows may split while running.
async fn run_windows(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    windows: Vec<Window>,
    concurrency: usize,
) {
    let queue = Arc::new(WindowQueue {
        windows: Mutex::new(windows.into_iter().collect()),
        workers: concurrency.max(1) as u64,
        busy: AtomicU64::new(0),
        wake: tokio::sync::Notify::new(),
    });
    let readable = Arc::new(readable.clone());
    let writer = Arc::new(WriteBehind::start(run));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (run, queue, readable, writer) =
            (run.clone(), queue.clone(), readable.clone(), writer.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(window) = queue.take().await else {
                    break;
                };
                if !run.stopped() {
                    let (resource, _) =
                        parse_scope(&window.scope).expect("planned scopes are known");
                    if !run.lost.lock().contains(resource.table) {
                        let result = work_window(&run, &readable, &queue, &writer, window).await;
                        if let Err(error) = result {
                            run.fail(resource.table, error);
                        }
                    }
                }
                queue.done();
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    if let Ok(writer) = Arc::try_unwrap(writer) {
        writer.finish().await;
    }
}

struct WindowQueue {
    windows: Mutex<VecDeque<Window>>,
    workers: u64,
    busy: AtomicU64,
    wake: tokio::sync::Notify,
}

impl WindowQueue {
    /// The next window; `None` when the queue is empty and nobody can add to it.
    async fn take(&self) -> Option<Window> {
        loop {
            let notified = self.wake.notified();
            {
                let mut windows = self.windows.lock();
                if let Some(window) = windows.pop_front() {
                    self.busy.fetch_add(1, Ordering::SeqCst);
                    return Some(window);
                }
                if self.busy.load(Ordering::SeqCst) == 0 {
                    self.wake.notify_waiters();
                    return None;
                }
            }
            notified.await;
        }
    }

    fn push(&self, window: Window) {
        self.windows.lock().push_back(window);
        self.wake.notify_one();
    }

    fn done(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Whether a worker is idle, or about to be: nothing queued, and not everyone busy.
    fn idle_workers_wanted(&self) -> bool {
        self.windows.lock().is_empty() && self.busy.load(Ordering::SeqCst) < self.workers
    }
}

async fn work_window(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    queue: &WindowQueue,
    writer: &WriteBehind,
    window: Window,
) -> Result<(), EngineError> {
    let (resource, pass) = parse_scope(&window.scope).expect("planned scopes are known");
    match resource.source {
        Source::List => list_window(run, readable, queue, writer, resource, pass, window).await,
        Source::PerParent { .. } => parent_window(run, readable, writer, resource, window).await,
        Source::Embedded { .. } => Ok(()),
    }
}

/// Pages one window of a top-level list, each page written with the window's progress.
async fn list_window(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    queue: &WindowQueue,
    writer: &WriteBehind,
    resource: &'static Resource,
    pass: usize,
    mut window: Window,
) -> Result<(), EngineError> {
    let applier = Applier { run, readable };
    let whole_list = window.start == 0 && window.end == 0;
    loop {
        if run.stopped() || run.lost.lock().contains(resource.table) {
            return Ok(());
        }
        let mut params: Vec<(String, String)> = resource.passes[pass]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params.push(("limit".into(), "100".into()));
        if !whole_list {
            params.push(("created[gte]".into(), window.start.to_string()));
            params.push(("created[lt]".into(), window.end.to_string()));
        }
        if let Some(after) = &window.after {
            params.push(("starting_after".into(), after.clone()));
        }
        let page = run.client.get_list(resource.path, &params).await?;
        let version = page.server_time.unwrap_or_else(now);
        let objects = applier.objects(resource, &page)?;
        let last = objects.last().map(|o| (o.id.clone(), o.created));
        let known = if run.fresh.lock().contains(resource.table) {
            HashSet::new()
        } else {
            applier.known_parents(resource, &objects).await?
        };
        let mut rows = Rows::default();
        applier
            .collect(resource, objects, version, false, &mut rows, &known, None)
            .await?;
        let mut next_windows = Vec::new();
        match (page.has_more, last) {
            (true, Some((last_id, last_created))) => {
                let last_created = last_created.unwrap_or(window.start);
                // A dense window: when others are idle, hand the older half of what is left to them.
                // What is left of the window is older than this page's last object, so the
                // split may come at any page: the cursor stays in the newer half.
                if !whole_list
                    && last_created - window.start > MIN_SPLIT_SECS
                    && queue.idle_workers_wanted()
                {
                    let middle = window.start + (last_created - window.start) / 2;
                    let older = Window {
                        scope: window.scope.clone(),
                        start: window.start,
                        end: middle,
                        state: "pending".into(),
                        after: None,
                    };
                    window = Window {
                        scope: window.scope.clone(),
                        start: middle,
                        end: window.end,
                        state: "partial".into(),
                        after: Some(last_id),
                    };
                    next_windows.push(older.clone());
                    next_windows.push(window.clone());
                    let mut batch = rows.into_batch(Guard::AtLeast);
                    batch.windows = next_windows;
                    record(writer, resource, batch, &window).await?;
                    queue.push(older);
                    continue;
                }
                window.state = "partial".into();
                window.after = Some(last_id);
            }
            _ => {
                window.state = "done".into();
                window.after = None;
            }
        }
        let mut batch = rows.into_batch(Guard::AtLeast);
        batch.windows = vec![window.clone()];
        record(writer, resource, batch, &window).await?;
        if window.state == "done" {
            return Ok(());
        }
    }
}

/// Hands a batch to the writer (which reports progress once it is committed).
async fn record(
    writer: &WriteBehind,
    resource: &'static Resource,
    batch: Batch,
    window: &Window,
) -> Result<(), EngineError> {
    let objects: u64 = batch
        .rows
        .iter()
        .filter(|(t, _, _)| *t == resource.table)
        .map(|(_, r, _)| r.len() as u64)
        .sum();
    writer
        .hand_over(Handed {
            batch,
            table: resource.table,
            objects,
            finishes_window: window.state == "done",
        })
        .await
}

/// Lists a resource under each parent of one window (customers created in `[start, end)`),
/// each parent's rows written with the window's progress (`after` = that parent) in one
/// transaction, so that a restart goes on from the next parent.
async fn parent_window(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    writer: &WriteBehind,
    resource: &'static Resource,
    mut window: Window,
) -> Result<(), EngineError> {
    let Source::PerParent {
        parent_table,
        parent_path,
        segment,
    } = resource.source
    else {
        return Ok(());
    };
    let sql = parents_sql(
        &run.connection,
        parent_table,
        Some((window.start, window.end)),
        "id",
    );
    let (_, parents) = run.store(move |store| store.query(&sql)).await?;
    let parents: Vec<String> = parents
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    // Parents are in a fixed order (created, id): skip those a previous run finished.
    let resume_at = match &window.after {
        Some(after) => parents
            .iter()
            .position(|p| p == after)
            .map(|i| i + 1)
            .unwrap_or(0),
        None => 0,
    };
    let applier = Applier { run, readable };
    // Several parents' rows go in one batch (most parents have one or two children): the
    // checkpoint names the last parent written, and a restart lists again only the parents
    // after it.
    let mut rows = Rows::default();
    let mut unwritten = 0;
    let todo = &parents[resume_at..];
    for (index, parent) in todo.iter().enumerate() {
        if run.stopped() {
            return Ok(());
        }
        let mut cursor = run
            .client
            .list_pages(&format!("{parent_path}/{parent}/{segment}"), vec![]);
        loop {
            match cursor.next_raw_page().await {
                Ok(Some(page)) => {
                    let version = page.server_time.unwrap_or_else(now);
                    let objects = applier.objects(resource, &page)?;
                    applier
                        .collect(
                            resource,
                            objects,
                            version,
                            false,
                            &mut rows,
                            &HashSet::new(),
                            Some(parent),
                        )
                        .await?;
                }
                Ok(None) => break,
                // The parent was deleted meanwhile: nothing to list under it.
                Err(error) if matches!(error.kind(), Some(ErrorKind::NotFound { .. })) => break,
                Err(error) => return Err(error.into()),
            }
        }
        unwritten += 1;
        let last = index + 1 == todo.len();
        if last || unwritten >= PARENTS_PER_BATCH || rows.len() >= 100 {
            window.state = if last { "done" } else { "partial" }.into();
            window.after = (!last).then(|| parent.clone());
            let mut batch = std::mem::take(&mut rows).into_batch(Guard::AtLeast);
            batch.windows = vec![window.clone()];
            record(writer, resource, batch, &window).await?;
            unwritten = 0;
        }
    }
    if window.state == "done" {
        return Ok(());
    }
    window.state = "done".into();
    window.after = None;
    let batch = Batch {
        windows: vec![window.clone()],
        ..Default::default()
    };
    record(writer, resource, batch, &window).await
}

/// Re-lists recent windows of what has no creation events (balance transactions, checkout
/// sessions, reviews), from the last run on.
async fn refresh_recent(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    server_now: i64,
) -> Result<(), EngineError> {
    let connection = run.connection.clone();
    let since: i64 = run
        .store(move |store| store.state(&connection, REFRESH_SINCE))
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(now);
    let windows: Vec<Window> = RESOURCES
        .iter()
        .filter(|r| {
            readable.contains(r.table)
                && r.source == Source::List
                && (!r.has_events || matches!(r.table, "checkout_sessions" | "reviews"))
        })
        .flat_map(|r| {
            // Balance transactions change status (pending → available) without events: look two days further back.
            let margin = if r.table == "balance_transactions" {
                2 * 86_400
            } else {
                3_600
            };
            (0..r.passes.len()).map(move |pass| Window {
                scope: scope(r, pass),
                start: since - margin,
                end: 0,
                state: "pending".into(),
                after: None,
            })
        })
        .collect();
    relist(run, readable, windows).await?;
    run.apply(Batch {
        state: vec![(REFRESH_SINCE.to_owned(), server_now.to_string())],
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Lists the balance transactions created since `since` again, through the one write path:
/// they have no events, and a charge, refund or payout makes one without saying so. `serve`
/// asks for this soon after such events instead of leaving them to the next sync (which also
/// looks two days back for the ones whose status moved). The count listed; 0 when the key may
/// not read them.
pub async fn refresh_balance_transactions(
    engine: &Engine,
    connection: &Connection,
    since: i64,
) -> Result<u64, EngineError> {
    let record = engine.account(connection).await?;
    if !PermissionReport::from_json(&record.permissions).can_read("balance_transactions") {
        return Ok(0);
    }
    let key = engine.open_key(&record)?;
    let client = engine.client_for(&record, &key)?;
    let run = Arc::new(Run::new(engine, connection, client, Arc::new(Quiet)));
    let resource = crate::catalog::resource("balance_transactions").expect("catalogued");
    let readable: HashSet<&'static str> = [resource.table].into();
    let windows = (0..resource.passes.len())
        .map(|pass| Window {
            scope: scope(resource, pass),
            start: since,
            end: 0,
            state: "pending".into(),
            after: None,
        })
        .collect();
    relist(&run, &readable, windows).await?;
    let listed = run
        .counts
        .lock()
        .tables
        .get(resource.table)
        .map_or(0, |c| c.inserted + c.updated + c.unchanged);
    Ok(listed)
}

/// Lists each window from its start to now (no checkpoints: cheap to redo).
async fn relist(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    windows: Vec<Window>,
) -> Result<(), EngineError> {
    for window in windows {
        let (resource, pass) = parse_scope(&window.scope).expect("known scope");
        run.progress.begin(resource.table, "refresh");
        // Refresh windows are not checkpointed: they are cheap to redo.
        let mut window = window;
        let applier = Applier { run, readable };
        loop {
            let mut params: Vec<(String, String)> = resource.passes[pass]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            params.extend([
                ("limit".into(), "100".into()),
                // No upper bound: what appeared while this run went is listed too.
                ("created[gte]".into(), window.start.to_string()),
            ]);
            if let Some(after) = &window.after {
                params.push(("starting_after".into(), after.clone()));
            }
            let page = run.client.get_list(resource.path, &params).await?;
            let objects = applier.objects(resource, &page)?;
            let count = objects.len() as u64;
            let last = objects.last().map(|o| o.id.clone());
            let known = applier.known_parents(resource, &objects).await?;
            let mut rows = Rows::default();
            applier
                .collect(
                    resource,
                    objects,
                    page.server_time.unwrap_or_else(now),
                    false,
                    &mut rows,
                    &known,
                    None,
                )
                .await?;
            run.apply(rows.into_batch(Guard::AtLeast)).await?;
            run.progress.advance(resource.table, count, 0.0);
            match (page.has_more, last) {
                (true, Some(last)) => window.after = Some(last),
                _ => break,
            }
        }
        run.progress.end(resource.table);
    }
    Ok(())
}

/// Replays events newer than the position, oldest first, page by page; each page is written with
/// the new position in one transaction. When the position's own event has aged out of Stripe's
/// 30 days but the Events API was read to its end since (`last_read`), events are read by time
/// from there instead. Reading to the end records `server_now` as the time of the last read.
async fn replay_events(
    run: &Arc<Run>,
    readable: &HashSet<&'static str>,
    last_read: Option<i64>,
    oldest_replayable: i64,
    server_now: i64,
) -> Result<(), EngineError> {
    let connection = run.connection.clone();
    let (position, position_created) = run
        .store(move |store| {
            Ok((
                store.state(&connection, POSITION)?.unwrap_or_default(),
                store
                    .state(&connection, POSITION_CREATED)?
                    .and_then(|v| v.parse::<i64>().ok()),
            ))
        })
        .await?;
    run.progress.begin("events", "events");
    let applier = Applier { run, readable };
    let read_from = if position.is_empty() {
        // No event existed when the backfill began: every event since then.
        Some(position_created.unwrap_or(0))
    } else if position_created.is_some_and(|created| created < oldest_replayable) {
        // A quiet account: its last event is old, but nothing newer went unread.
        Some(last_read.unwrap_or(0) - READ_MARGIN_SECS)
    } else {
        None
    };
    if let Some(since) = read_from {
        // Read every event since then, then apply them oldest first.
        let mut all = Vec::new();
        let mut cursor = run.client.list_pages(
            "/v1/events",
            vec![("created[gte]".into(), since.to_string())],
        );
        while let Some(page) = cursor.next_page().await? {
            all.extend(page.data);
        }
        all.reverse();
        for chunk in all.chunks(100) {
            apply_events(run, &applier, chunk).await?;
        }
    } else {
        let mut cursor = run
            .client
            .list_pages("/v1/events", vec![("ending_before".into(), position)]);
        loop {
            let page = match cursor.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(error) if matches!(error.kind(), Some(ErrorKind::NotFound { .. })) => {
                    // The position's event is gone (past 30 days): the next run re-backfills.
                    let connection = run.connection.clone();
                    run.store(move |store| {
                        store.set_state(&connection, POSITION_CREATED, Some("0"))?;
                        store.set_state(&connection, READ_AT, Some("0"))
                    })
                    .await?;
                    return Err(EngineError::new(
                        ErrorCode::Upstream,
                        "the events position is older than Stripe's 30 days of events",
                    )
                    .hint("run sync again: it re-backfills"));
                }
                Err(error) => return Err(error.into()),
            };
            let mut events = page.data;
            events.reverse();
            apply_events(run, &applier, &events).await?;
        }
    }
    run.apply(Batch {
        state: vec![(READ_AT.to_owned(), server_now.to_string())],
        ..Default::default()
    })
    .await?;
    run.progress.end("events");
    Ok(())
}

/// Applies events in their known order (oldest first) through the apply path, with the new
/// position, in one batch.
async fn apply_events(
    run: &Run,
    applier: &Applier<'_>,
    events: &[Value],
) -> Result<(), EngineError> {
    let Some(newest) = events.last() else {
        return Ok(());
    };
    let mut rows = Rows::default();
    let pinned = run.client.config().api_version.clone();
    // What follow-ups read: each event, or for an event read again, Stripe's answer in its stead.
    let mut seen: Vec<std::borrow::Cow<'_, Value>> = Vec::with_capacity(events.len());
    for event in events {
        seen.push(std::borrow::Cow::Borrowed(event));
        let Some((resource, version, deleted, parent)) = event_change(event, applier.readable)
        else {
            continue;
        };
        let Some(object) = applier.object(resource, &event["data"]["object"]) else {
            continue;
        };
        let objects = vec![object];
        let known = applier.known_parents(resource, &objects).await?;
        if !deleted && foreign_version(event, &pinned) {
            // Rendered in another API version than the mirror keeps: the object is read again
            // in the mirror's own, once per run however many events name it — again only for
            // an event made at or after that read (its change may be newer). The events are
            // kept as Stripe sent them.
            let object = &event["data"]["object"];
            let key = format!(
                "{}/{}",
                resource.table,
                object["id"].as_str().unwrap_or_default()
            );
            let due = run
                .refetched
                .lock()
                .get(&key)
                .is_none_or(|read_at| version >= *read_at);
            if due {
                let answer = refetch(
                    applier, resource, object, parent, &known, version, &mut rows,
                )
                .await?;
                let read_at = answer.as_ref().map_or(version, |(_, v)| *v);
                run.refetched.lock().insert(key, read_at);
                if let Some((current, _)) = answer {
                    let mut answered = event.clone();
                    answered["data"]["object"] = current;
                    *seen.last_mut().expect("pushed above") = std::borrow::Cow::Owned(answered);
                }
            }
            continue;
        }
        applier
            .collect(
                resource, objects, version, deleted, &mut rows, &known, parent,
            )
            .await?;
    }
    let seen: Vec<Value> = seen.into_iter().map(std::borrow::Cow::into_owned).collect();
    follow_ups(run, applier, &seen, &mut rows).await?;
    let count = events.len() as u64;
    let mut batch = rows.into_batch(Guard::AtLeast);
    batch.events = events.iter().map(event_row).collect();
    batch.state = vec![
        (
            POSITION.to_owned(),
            newest["id"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            POSITION_CREATED.to_owned(),
            newest["created"].as_i64().unwrap_or(0).to_string(),
        ),
    ];
    // The account's default API version, as its newest event shows it.
    if let Some(version) = newest["api_version"].as_str() {
        batch
            .state
            .push((crate::ACCOUNT_API_VERSION.to_owned(), version.to_owned()));
    }
    run.apply(batch).await?;
    run.progress.advance("events", count, 0.0);
    Ok(())
}
