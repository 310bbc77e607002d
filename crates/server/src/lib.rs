//! `stripe-mirror serve`: a long-running process that receives Stripe's webhooks (verified,
//! stored durably in the inbox and answered; applied behind the answer through the engine's one
//! apply path), runs incremental syncs for every account on a schedule (with jitter, and right
//! after a connect), manages the webhook endpoints it may manage, and answers `/healthz` and
//! Prometheus `/metrics`. Its role says which half it does: an intake keeps deliveries, a worker
//! claims connections (leases) and syncs them and applies their inboxes; `all` does both. Any
//! number of each share one Postgres.

mod agent_tools;
pub mod api;
pub mod dashboard;
mod inbox;
pub mod listener;
pub mod metrics;

/// The one mapping of an engine error at the HTTP edge: the status from the error table, and
/// `{"error": {"code", "message", "hint"}}`.
pub fn error_response(
    error: &sm_engine::EngineError,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let status = axum::http::StatusCode::from_u16(error.code.http_status())
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let (message, hint) = shown_error(error);
    let mut body = serde_json::json!({"code": error.code.name(), "message": message});
    if let Some(hint) = hint {
        body["hint"] = serde_json::json!(hint);
    }
    (status, axum::Json(serde_json::json!({"error": body})))
}

/// What a caller is shown of an error: its message and hint, except that what went wrong
/// inside (a database's or the vault's words, a path) is for the log, not for whoever asked:
/// they get an id to find it by.
pub fn shown_error(error: &sm_engine::EngineError) -> (String, Option<String>) {
    if matches!(
        error.code,
        sm_engine::ErrorCode::Database
            | sm_engine::ErrorCode::Vault
            | sm_engine::ErrorCode::Internal
            | sm_engine::ErrorCode::LocalIo
    ) {
        let id = sm_engine::vault::random_bytes::<6>()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            .unwrap_or_default();
        tracing::error!(request_id = %id, code = error.code.name(), error = %error.message, "an internal error answered a request");
        return (
            format!("an internal error occurred (request id {id})"),
            Some("the server's log says more under this request id".to_owned()),
        );
    }
    (error.message.clone(), error.hint.clone())
}
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use parking_lot::RwLock;
use sm_engine::intake::Intake;
use sm_engine::{Engine, EngineError, now};
use sm_warehouse::{AccountRecord, Connection};
use zeroize::Zeroizing;

use crate::metrics::Metrics;

/// What a `serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Intake and worker in one process (the only role a SQLite mirror runs).
    All,
    /// Claims connections, syncs them and applies their inboxes; serves the API, dashboard and
    /// agent tools, but no webhooks.
    Worker,
    /// Verifies and keeps webhook deliveries, nothing else: no state of its own, so any
    /// number run behind a load balancer.
    Intake,
}

impl Role {
    pub const NAMES: [&'static str; 3] = ["all", "worker", "intake"];

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "all" => Some(Role::All),
            "worker" => Some(Role::Worker),
            "intake" => Some(Role::Intake),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Worker => "worker",
            Role::Intake => "intake",
        }
    }

    /// Whether this process claims connections (syncs, inboxes, notifications).
    pub fn works(self) -> bool {
        self != Role::Intake
    }

    /// Whether this process receives webhooks.
    pub fn takes_webhooks(self) -> bool {
        self != Role::Worker
    }
}

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Which half of the work this process does.
    pub role: Role,
    /// How many connections this process holds at once (each syncing and applying its inbox).
    pub max_leases: usize,
    /// Where to listen; 127.0.0.1 unless told otherwise.
    pub listen: SocketAddr,
    /// The public base URL Stripe reaches this server at (`https://mirror.example.com`);
    /// without it no webhook endpoint is made and changes arrive by polling.
    pub public_url: Option<String>,
    /// Seconds between incremental syncs of an account.
    pub interval: Duration,
    /// How far a signature's timestamp may be from now.
    pub tolerance_secs: i64,
    /// What each connection and request is held to (`listener.rs`).
    pub limits: listener::Limits,
    /// How long a webhook delivery's answer waits for its apply, to say the outcome (zero:
    /// answered as soon as it is stored, "queued"). The delivery is stored either way.
    pub answer_wait: Duration,
    /// How long after a charge, refund or payout event the balance transactions it made are
    /// listed (deliveries within it share one listing); `None`: only by each sync.
    pub balance_refresh_after: Option<Duration>,
    /// How notifications are sent (links point at `public_url`).
    pub notify: sm_engine::notify::NotifyConfig,
}

/// How many times, per connection and window, a webhook secret is read again for deliveries no
/// cached secret verifies.
pub const SECRET_REREADS: u32 = 8;
pub const SECRET_REREAD_WINDOW: Duration = Duration::from_secs(10);

/// What every handler shares.
pub struct AppState {
    pub engine: Arc<Engine>,
    /// This process as lease rows name their holder: host, process id and start time.
    pub worker_id: String,
    pub config: ServeConfig,
    pub metrics: Metrics,
    /// One intake per connection, made on first delivery.
    intakes: RwLock<HashMap<Connection, Arc<Intake>>>,
    /// Each connection's webhook signing secret, opened on first delivery and kept until its
    /// record changes (reading and decrypting it per delivery was an eighth of intake's time).
    secrets: RwLock<HashMap<Connection, CachedSecret>>,
    /// Connections asked to sync now (the API's sync-now); the scheduler runs them next, one
    /// at a time as it runs every sync, so a connection never syncs twice at once.
    sync_now: parking_lot::Mutex<HashMap<Connection, sm_engine::sync::Trigger>>,
    /// Answers to API requests sent with an `Idempotency-Key`.
    pub idempotency: api::IdempotencyKeys,
    wake_scheduler: tokio::sync::Notify,
    /// Per connection, when its current window of secret re-reads began and how many it has
    /// had (`may_read_secret_again`).
    secret_rereads: parking_lot::Mutex<HashMap<Connection, (std::time::Instant, u32)>>,
    /// Webhook secrets read from the database and opened, since start.
    pub secret_reads: std::sync::atomic::AtomicU64,
    /// API tokens found valid in the last second (`ops::tokens::check`).
    pub(crate) recent_tokens: sm_engine::ops::tokens::RecentTokens,
    /// Live event streams open now (`api/stream.rs`).
    pub(crate) open_streams: std::sync::atomic::AtomicUsize,
    /// `/mcp`: every tool, and the read tools only (for read-only tokens).
    pub(crate) agent_tools: sm_mcp::HttpTools,
    pub(crate) agent_read_tools: sm_mcp::HttpTools,
    /// The webhook inbox's workers (`inbox.rs`).
    pub(crate) inboxes: inbox::Inboxes,
    /// Connections whose balance transactions are to be listed soon, from when.
    pub(crate) balance_due: parking_lot::Mutex<HashMap<Connection, i64>>,
    /// When each connection's last listing of balance transactions began (this clock).
    pub(crate) balance_listed: parking_lot::Mutex<HashMap<Connection, i64>>,
    /// The running notifier, for `/metrics`.
    pub(crate) notifier: parking_lot::Mutex<Option<Arc<sm_engine::notify::Notifier>>>,
}

/// A webhook secret as opened from the record last updated at `updated_at`, with what the
/// connection's intake was made from.
struct CachedSecret {
    updated_at: i64,
    secret: Option<Arc<Zeroizing<String>>>,
    key_sealed: Vec<u8>,
    permissions: serde_json::Value,
    /// The API and version the connection's intake client talks to.
    api: (Option<String>, Option<String>),
}

impl AppState {
    /// Asks the scheduler to sync `connection` next (at once when it is idle).
    pub fn request_sync(&self, connection: &Connection, trigger: sm_engine::sync::Trigger) {
        self.sync_now.lock().insert(connection.clone(), trigger);
        self.wake_scheduler.notify_one();
    }

    pub fn new(engine: Arc<Engine>, config: ServeConfig) -> Arc<AppState> {
        let hosts = agent_tools::allowed_hosts(&config);
        Arc::new(AppState {
            agent_tools: sm_mcp::http_service(engine.clone(), false, hosts.clone()),
            agent_read_tools: sm_mcp::http_service(engine.clone(), true, hosts),
            inboxes: Default::default(),
            balance_due: Default::default(),
            balance_listed: Default::default(),
            notifier: Default::default(),
            engine,
            config,
            worker_id: worker_id(),
            metrics: Metrics::default(),
            intakes: RwLock::new(HashMap::new()),
            secrets: RwLock::new(HashMap::new()),
            sync_now: Default::default(),
            idempotency: Default::default(),
            wake_scheduler: tokio::sync::Notify::new(),
            open_streams: Default::default(),
            recent_tokens: Default::default(),
            secret_rereads: Default::default(),
            secret_reads: Default::default(),
        })
    }

    /// The intake of a connection (made and kept on first use; dropped when its key changes).
    pub async fn intake(&self, connection: &Connection) -> Result<Arc<Intake>, EngineError> {
        if let Some(intake) = self.intakes.read().get(connection) {
            return Ok(intake.clone());
        }
        let intake = Arc::new(Intake::open(&self.engine, connection).await?);
        // Deliveries racing here must share one intake (it orders deliveries about one object).
        Ok(self
            .intakes
            .write()
            .entry(connection.clone())
            .or_insert(intake)
            .clone())
    }

    /// Forgets what is cached of a connection (after a key rotation or removal seen by the
    /// scheduler).
    pub fn forget(&self, connection: &Connection) {
        self.intakes.write().remove(connection);
        self.secrets.write().remove(connection);
    }

    /// A connection's webhook signing secret (`None`: it has none); `fresh` reads the record
    /// again instead of the cache (a delivery whose signature matched nothing may be signed
    /// with a secret set since).
    pub async fn webhook_secret(
        &self,
        connection: &Connection,
        fresh: bool,
    ) -> Result<Option<Arc<Zeroizing<String>>>, EngineError> {
        if !fresh && let Some(cached) = self.secrets.read().get(connection) {
            return Ok(cached.secret.clone());
        }
        self.secret_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = self.engine.account(connection).await?;
        let secret = match &record.webhook_secret_sealed {
            Some(sealed) => Some(Arc::new(self.engine.vault.open_secret(
                sealed,
                connection,
                sm_warehouse::SealedField::WebhookSecrets,
            )?)),
            None => None,
        };
        self.secrets.write().insert(
            connection.clone(),
            CachedSecret {
                updated_at: record.updated_at,
                secret: secret.clone(),
                key_sealed: record.key_sealed.clone(),
                permissions: record.permissions.clone(),
                api: (record.api_base.clone(), record.api_version.clone()),
            },
        );
        Ok(secret)
    }

    /// Whether a signature that matched no cached secret may have the secret read again now
    /// (it may have been set or rolled by another process a moment ago): at most
    /// [`SECRET_REREADS`] times per connection in each [`SECRET_REREAD_WINDOW`], so that a flood
    /// of forged deliveries costs a handful of database reads and decryptions, not one each.
    /// The scheduler notices a changed record by itself too.
    pub fn may_read_secret_again(&self, connection: &Connection) -> bool {
        let mut windows = self.secret_rereads.lock();
        let now = std::time::Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (began, _)| now.duration_since(*began) < SECRET_REREAD_WINDOW);
        }
        let (began, count) = windows.entry(connection.clone()).or_insert((now, 0));
        if now.duration_since(*began) >= SECRET_REREAD_WINDOW {
            (*began, *count) = (now, 0);
        }
        *count += 1;
        *count <= SECRET_REREADS
    }

    /// Forgets cached secrets of connections whose record changed or went (a secret set by
    /// this process or another), and their intakes when the key or permissions changed. An
    /// intake otherwise stays: it orders the deliveries in flight (a sync's status update
    /// changes the record too).
    fn forget_changed(&self, accounts: &[AccountRecord]) {
        let mut secrets = self.secrets.write();
        secrets.retain(|connection, cached| {
            let record = accounts.iter().find(|a| &a.connection == connection);
            // The intake's client is the key's, in the connection's API and version.
            let same_key = record.is_some_and(|a| {
                a.key_sealed == cached.key_sealed
                    && a.permissions == cached.permissions
                    && (a.api_base.clone(), a.api_version.clone()) == cached.api
            });
            if !same_key {
                self.intakes.write().remove(connection);
            }
            record.is_some_and(|a| a.updated_at == cached.updated_at)
        });
    }
}

/// The HTTP routes of the process's role: an intake answers webhooks, `/healthz` and
/// `/metrics` only; a worker everything but webhooks.
pub fn router(state: Arc<AppState>) -> Router {
    let role = state.config.role;
    let mut routes = Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::prometheus));
    if role.takes_webhooks() {
        routes = routes.route("/webhooks/{account}/{mode}", post(webhook::receive));
    }
    if role.works() {
        routes = routes
            .route("/mcp", axum::routing::any(agent_tools::handle))
            .merge(api::router(state.clone()))
            .merge(dashboard::router())
            .merge(api::stripe_compat::router());
    }
    routes
        .fallback(|| async {
            api::ApiError(
                EngineError::new(sm_engine::ErrorCode::NotFound, "no such route")
                    .hint("GET /api/v1/openapi.json lists the API's routes"),
            )
        })
        .with_state(state)
}

/// Serves until `shutdown` resolves: the HTTP server, the scheduler, and endpoint management.
pub async fn serve(
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving");
    serve_on(listener, state, shutdown).await
}

/// [`serve`] on a listener already bound (tests bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let role = state.config.role;
    tracing::info!(
        role = role.name(),
        max_leases = state.config.max_leases,
        "role"
    );
    let (scheduler, notifier) = if role.works() {
        // Deliveries stored before a stop are applied before anything else.
        if state.engine.store.backend() == sm_warehouse::Backend::Sqlite {
            inbox::resume(&state).await;
        }
        (
            Some(tokio::spawn(scheduler(state.clone(), stopped.clone()))),
            start_notifier(&state, stopped),
        )
    } else {
        (None, None)
    };
    let limits = state.config.limits;
    let app = router(state);
    let result = listener::serve(listener, app, limits, shutdown).await;
    // In-flight syncs are resumable: stopping the scheduler mid-run loses nothing (its leases
    // are given up, due at once, for another process or the next start); a notification not
    // yet marked sent is sent after the restart.
    let _ = stop.send(true);
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    if let Some(notifier) = notifier {
        let _ = notifier.await;
    }
    result
}

/// Starts the notifier (`sm_engine::notify`) until `stopped` turns true.
fn start_notifier(
    state: &Arc<AppState>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut config = state.config.notify.clone();
    if config.dashboard_base.is_none() {
        config.dashboard_base = state.config.public_url.clone();
    }
    match sm_engine::notify::Notifier::new(state.engine.clone(), config) {
        Ok(notifier) => {
            *state.notifier.lock() = Some(notifier.clone());
            let engine = state.engine.clone();
            Some(tokio::spawn(async move {
                // One notifier across the processes of a mirror, or each would send every
                // message: the one holding the mirror-wide lock; the others wait to take over
                // (a killed holder's lock goes with its database connection).
                let mut waiting_said = false;
                let _held = loop {
                    match engine
                        .store_call(|store| store.hold_exclusive("notifier"))
                        .await
                    {
                        Ok(Some(held)) => break held,
                        Ok(None) if !waiting_said => {
                            waiting_said = true;
                            tracing::info!(
                                "another process sends the notifications; this one takes over if it stops"
                            );
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(error = %error.message, "could not take the notifier's lock")
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => return,
                    }
                };
                notifier
                    .run(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
            }))
        }
        Err(error) => {
            tracing::error!(error = %error.message, "notifications are off: the notifier could not start");
            None
        }
    }
}

/// A little deterministic spread, so that many accounts do not sync at the same moment.
fn jitter(connection: &Connection, interval: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in connection.label().bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let spread = (interval.as_millis() as u64 / 5).max(1);
    Duration::from_millis(hash % spread)
}

/// How long a claimed connection is held without renewal: a process that stops renewing
/// (killed, paused, cut off) loses it this long after its last renewal.
const LEASE_SECONDS: i64 = 60;

/// This process, as lease rows name their holder: host, process id and start time (a second
/// server in one process, as tests run them, counts as another).
fn worker_id() -> String {
    static SERVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nth = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    match nth {
        0 => format!("{host}:{}:{}", std::process::id(), now()),
        n => format!("{host}:{}:{}.{n}", std::process::id(), now()),
    }
}

/// Runs each account's incremental sync every interval (the first right away, spread by
/// jitter), applies webhook deliveries kept by any intake, sets up managed webhook endpoints,
/// and notices accounts connected meanwhile.
///
/// When a connection is next due lives in its lease row (`sync_leases`), not in this process:
/// the scheduler claims due connections (a sync due, or deliveries waiting) up to
/// `max_leases` at a time, and each is held by a task of its own ([`hold`]). Several processes
/// on one Postgres so share the accounts without syncing one twice at once; "sync now" makes a
/// connection due at once.
async fn scheduler(state: Arc<AppState>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let owner = state.worker_id.clone();
    // A SQLite mirror has one runner (its lock file): leases held are a killed process's.
    if state.engine.store.backend() == sm_warehouse::Backend::Sqlite {
        let freed = state
            .engine
            .store_call(|store| store.lease_release_all(now()))
            .await;
        if let Ok(n @ 1..) = freed {
            tracing::info!(
                connections = n,
                "freed the leases of a process that stopped"
            );
        }
    }
    // Other processes release connections and intakes elsewhere stamp them: look this often
    // at most when nothing wakes this one.
    let look_every = match state.engine.store.backend() {
        sm_warehouse::Backend::Sqlite => Duration::from_secs(5),
        _ => Duration::from_secs(1),
    };
    let mut known: std::collections::HashSet<Connection> = std::collections::HashSet::new();
    let mut asked: HashMap<Connection, sm_engine::sync::Trigger> = HashMap::new();
    let mut holds: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    loop {
        while holds.try_join_next().is_some() {}
        let accounts = match state.engine.store_call(|store| store.accounts()).await {
            Ok(accounts) => {
                let connected: Vec<Connection> =
                    accounts.iter().map(|a| a.connection.clone()).collect();
                state.metrics.retain(&connected);
                accounts
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not read the accounts");
                Vec::new()
            }
        };
        state.forget_changed(&accounts);
        // Connections without a lease row (new since any process scheduled them) are due soon,
        // spread by jitter; those asked to sync, at once. A row keeps the earlier of its due
        // time and these. Rows kept from before a restart keep their due times.
        let started = now();
        let unknown: Vec<Connection> = accounts
            .iter()
            .filter(|a| !known.contains(&a.connection))
            .map(|a| a.connection.clone())
            .collect();
        let mut due: Vec<(Connection, i64)> = Vec::new();
        if !unknown.is_empty() {
            let rows: std::collections::HashSet<Connection> = state
                .engine
                .store_call(|store| store.leases())
                .await
                .map(|rows| rows.into_iter().map(|r| r.connection).collect())
                .unwrap_or_default();
            due.extend(unknown.into_iter().filter(|c| !rows.contains(c)).map(|c| {
                let spread = jitter(&c, Duration::from_secs(2)).as_secs() as i64;
                (c, started + spread)
            }));
        }
        for (connection, trigger) in state.sync_now.lock().drain() {
            due.push((connection.clone(), started));
            asked.insert(connection, trigger);
        }
        if !due.is_empty() {
            let marked = state
                .engine
                .store_call(move |store| {
                    due.iter()
                        .try_for_each(|(connection, at)| store.lease_due(connection, *at))
                })
                .await;
            if let Err(error) = marked {
                tracing::warn!(error = %error, "could not mark connections due");
            }
        }
        known = accounts.iter().map(|a| a.connection.clone()).collect();
        asked.retain(|c, _| known.contains(c));

        let room = state.config.max_leases.saturating_sub(holds.len());
        let claimed = if room == 0 {
            Vec::new()
        } else {
            let claim_owner = owner.clone();
            state
                .engine
                .store_call(move |store| {
                    store.lease_claim(&claim_owner, now(), LEASE_SECONDS, room)
                })
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(error = %error, "could not claim a connection");
                    Vec::new()
                })
        };
        for lease in claimed {
            let Some(record) = accounts.iter().find(|a| a.connection == lease.connection) else {
                // Connected by another process since the accounts were read: next round.
                release(&state, lease, now()).await;
                continue;
            };
            let trigger = asked
                .remove(&lease.connection)
                .unwrap_or(sm_engine::sync::Trigger::Schedule);
            holds.spawn(hold(
                state.clone(),
                lease,
                record.clone(),
                trigger,
                stopped.clone(),
            ));
        }
        // Sleep until the next connection is due, or until asked, woken by a delivery, or a
        // held connection is given up.
        let next = state
            .engine
            .store_call(|store| store.lease_next_due())
            .await
            .ok()
            .flatten();
        let wait = next
            .map(|at| Duration::from_secs(at.saturating_sub(now()).max(0) as u64))
            .unwrap_or(look_every)
            .clamp(Duration::from_millis(200), look_every);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.wake_scheduler.notified() => {}
            Some(_) = holds.join_next(), if !holds.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    // Each hold gives its connection up, due at once, when it sees the stop.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while holds.join_next().await.is_some() {}
    })
    .await;
}

/// Holds one claimed connection: syncs it when a sync was due (every batch fenced by the
/// lease) while applying its inbox, renews the lease meanwhile, and releases it — next due
/// after the interval if it synced, as it was otherwise. A lease lost (this process paused
/// or cut off past it) ends the hold without a release: its holder now is someone else. A
/// stop gives it up due at once (every page is written with its checkpoint: whoever claims
/// it next continues where this run stopped).
async fn hold(
    state: Arc<AppState>,
    lease: sm_warehouse::Lease,
    record: AccountRecord,
    trigger: sm_engine::sync::Trigger,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let connection = lease.connection.clone();
    let (sync_finished, sync_done) = tokio::sync::watch::channel(!lease.sync_due);
    let work = async {
        let syncing = async {
            if !lease.sync_due {
                return;
            }
            webhook::manage_endpoint(&state, &record).await;
            let started = now();
            let options = sm_engine::sync::SyncOptions {
                trigger,
                fence: Some(lease.fence()),
                ..Default::default()
            };
            let outcome = sm_engine::sync::sync(
                &state.engine,
                &connection,
                &options,
                Arc::new(sm_engine::sync::Quiet),
            )
            .await;
            state.metrics.record_sync(
                &connection,
                started,
                outcome
                    .as_ref()
                    .map(|r| &r.run)
                    .map_err(|e| e.message.clone()),
            );
            if let Err(error) = &outcome {
                tracing::warn!(account = %connection.label(), error = %error.message, "sync failed");
                state.forget(&connection);
            }
            let _ = sync_finished.send(true);
        };
        tokio::join!(inbox::apply_while_held(&state, &lease, sync_done), syncing)
    };
    tokio::select! {
        _ = work => {
            let next = if lease.sync_due {
                now() + (state.config.interval + jitter(&connection, state.config.interval)).as_secs() as i64
            } else {
                sm_warehouse::NEVER
            };
            release(&state, lease, next).await;
        }
        _ = keep_renewing(&state, &lease) => {
            tracing::warn!(account = %connection.label(), "the lease was lost: another process holds the connection now");
            state.forget(&connection);
        }
        _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => {
            release(&state, lease, now()).await
        }
    }
}

/// Renews `lease` a few times per lease period; returns when it can no longer be renewed
/// (another process holds the connection), never while it can.
async fn keep_renewing(state: &AppState, lease: &sm_warehouse::Lease) {
    let period = Duration::from_secs((LEASE_SECONDS / 4).max(1) as u64);
    loop {
        tokio::time::sleep(period).await;
        let held = lease.clone();
        let renewed = state
            .engine
            .store_call(move |store| store.lease_renew(&held, now() + LEASE_SECONDS))
            .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => return,
            // The database is unreachable: the run's own writes will say so; keep trying.
            Err(error) => tracing::warn!(error = %error, "could not renew a lease"),
        }
    }
}

/// Gives a lease up, its connection next due at `due_at`.
async fn release(state: &AppState, lease: sm_warehouse::Lease, due_at: i64) {
    let released = state
        .engine
        .store_call(move |store| store.lease_release(&lease, due_at))
        .await;
    if let Err(error) = released {
        tracing::warn!(error = %error, "could not release a lease; it runs out by itself");
    }
}
