//! `/healthz` and Prometheus `/metrics`: per account, the last successful sync, the lag behind
//! it, objects written, sync errors, and webhooks accepted and rejected by outcome. Both sit on
//! the public listener beside the webhooks, so what they tell needs an API token: without one,
//! `/healthz` answers a bare liveness `{"status":"ok"}` and `/metrics` is refused.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use parking_lot::Mutex;
use sm_engine::now;
use sm_warehouse::{Connection, RunRecord};

use crate::AppState;

#[derive(Debug, Default, Clone)]
struct AccountMetrics {
    last_success: Option<i64>,
    last_attempt: Option<i64>,
    objects_written: u64,
    sync_errors: u64,
    last_error: Option<String>,
    webhooks: BTreeMap<&'static str, u64>,
    /// Balance transactions listed after payment events: (done, failed).
    balance_refreshes: (u64, u64),
    /// Deliveries refused for their signature since the last one that verified, and since when.
    refused_in_a_row: u64,
    refused_since: i64,
    /// When the run of refusals was last written to the mirror (0: not written).
    refused_written_at: i64,
}

/// Refused signatures in a row before a connection's webhooks count as refused: one forged
/// request is noise, a run of them is a wrong secret.
pub const REFUSED_RUN: u64 = 5;

use sm_engine::ops::connections::refused_words;

/// Counters kept in memory since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    accounts: Mutex<BTreeMap<Connection, AccountMetrics>>,
    /// API requests refused before reaching a route, by reason.
    api_refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Webhook deliveries refused before an account was looked at (a bad header, an account
    /// not connected), by outcome: kept apart so that strangers' URLs add no labels.
    unattributed_webhooks: Mutex<BTreeMap<&'static str, u64>>,
    /// How long stored deliveries took to answer, counted per bucket of [`ANSWER_BUCKETS`] (the
    /// last counts the slower ones), with the sum of their seconds.
    answers: Mutex<([u64; ANSWER_BUCKETS.len() + 1], f64)>,
}

/// Upper bounds, in seconds, of the buckets of `stripe_mirror_webhook_answer_seconds`.
pub const ANSWER_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    /// Notes a finished sync (or its error).
    /// The connections this process has tried to sync.
    pub fn attempted(&self) -> Vec<Connection> {
        self.accounts
            .lock()
            .iter()
            .filter(|(_, a)| a.last_attempt.is_some())
            .map(|(c, _)| c.clone())
            .collect()
    }

    pub fn record_sync(
        &self,
        connection: &Connection,
        started: i64,
        outcome: Result<&RunRecord, String>,
    ) {
        let mut accounts = self.accounts.lock();
        let entry = accounts.entry(connection.clone()).or_default();
        entry.last_attempt = Some(started);
        match outcome {
            Ok(run) => {
                entry.last_success = run.ended_at;
                entry.objects_written += run
                    .counts
                    .tables
                    .values()
                    .map(|c| c.inserted + c.updated + c.deleted)
                    .sum::<u64>();
                entry.last_error = None;
            }
            Err(message) => {
                entry.sync_errors += 1;
                entry.last_error = Some(message);
            }
        }
    }

    /// Notes one webhook delivery by outcome (`applied`, `duplicate`, `rejected_signature`…).
    /// Notes a webhook delivery refused before its account counted (see `unattributed_webhooks`).
    pub fn record_webhook_anywhere(&self, outcome: &'static str) {
        *self
            .unattributed_webhooks
            .lock()
            .entry(outcome)
            .or_default() += 1;
    }

    /// Notes how long a stored delivery took from its request to its answer.
    pub fn record_answer(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        let bucket = ANSWER_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(ANSWER_BUCKETS.len());
        let mut answers = self.answers.lock();
        answers.0[bucket] += 1;
        answers.1 += seconds;
    }

    /// Notes a listing of balance transactions made after payment events.
    pub fn record_balance_refresh(&self, connection: &Connection, done: bool) {
        let mut accounts = self.accounts.lock();
        let entry = &mut accounts
            .entry(connection.clone())
            .or_default()
            .balance_refreshes;
        if done {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    pub fn record_webhook(&self, connection: &Connection, outcome: &'static str) {
        *self
            .accounts
            .lock()
            .entry(connection.clone())
            .or_default()
            .webhooks
            .entry(outcome)
            .or_default() += 1;
    }

    /// Notes a delivery refused for its signature; returns the run's length and start when it
    /// should be written down (the run reached [`REFUSED_RUN`], then at most once a minute).
    pub fn note_signature_refused(&self, connection: &Connection, now: i64) -> Option<(u64, i64)> {
        let mut accounts = self.accounts.lock();
        let entry = accounts.entry(connection.clone()).or_default();
        if entry.refused_in_a_row == 0 {
            entry.refused_since = now;
        }
        entry.refused_in_a_row += 1;
        let due = entry.refused_in_a_row >= REFUSED_RUN && now - entry.refused_written_at >= 60;
        due.then(|| {
            entry.refused_written_at = now;
            (entry.refused_in_a_row, entry.refused_since)
        })
    }

    /// Notes a delivery whose signature verified; true when a written run of refusals ends.
    pub fn note_signature_accepted(&self, connection: &Connection) -> bool {
        let mut accounts = self.accounts.lock();
        let Some(entry) = accounts.get_mut(connection) else {
            return false;
        };
        let written = entry.refused_written_at != 0;
        entry.refused_in_a_row = 0;
        entry.refused_written_at = 0;
        written
    }

    /// Notes an API request refused for its token (`no_token`, `unknown_token`,
    /// `read_only_token`).
    pub fn record_api_refusal(&self, reason: &'static str) {
        *self.api_refusals.lock().entry(reason).or_default() += 1;
    }

    /// Forgets connections that are no longer connected (removed accounts leave `/healthz` and
    /// `/metrics` instead of showing a lag that only grows).
    pub fn retain(&self, connected: &[Connection]) {
        self.accounts.lock().retain(|c, _| connected.contains(c));
    }

    /// The Prometheus text exposition.
    pub fn render(&self, inbox: &[sm_warehouse::InboxDepth]) -> String {
        let accounts = self.accounts.lock().clone();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let now = now();
        metric(
            "stripe_mirror_last_success_timestamp_seconds",
            "gauge",
            "When the last sync of the account succeeded.",
            accounts
                .iter()
                .filter_map(|(c, m)| m.last_success.map(|t| (labels(c), t as f64)))
                .collect(),
        );
        metric(
            "stripe_mirror_sync_lag_seconds",
            "gauge",
            "Seconds since the last successful sync.",
            accounts
                .iter()
                .filter_map(|(c, m)| m.last_success.map(|t| (labels(c), (now - t) as f64)))
                .collect(),
        );
        metric(
            "stripe_mirror_objects_written_total",
            "counter",
            "Objects inserted, updated or deleted by syncs.",
            accounts
                .iter()
                .map(|(c, m)| (labels(c), m.objects_written as f64))
                .collect(),
        );
        metric(
            "stripe_mirror_sync_errors_total",
            "counter",
            "Syncs that failed.",
            accounts
                .iter()
                .map(|(c, m)| (labels(c), m.sync_errors as f64))
                .collect(),
        );
        metric(
            "stripe_mirror_webhooks_total",
            "counter",
            "Webhook deliveries: queued when stored, then applied, refetched, coalesced (covered by a refetch made for another delivery of its object), stale, kept or duplicate when applied (apply_failed: tried again later); rejected_*.",
            accounts
                .iter()
                .flat_map(|(c, m)| {
                    m.webhooks.iter().map(move |(outcome, n)| {
                        (format!("{},outcome=\"{outcome}\"", labels(c)), *n as f64)
                    })
                })
                .chain(
                    self.unattributed_webhooks
                        .lock()
                        .iter()
                        .map(|(outcome, n)| {
                            (
                                format!("account=\"\",mode=\"\",outcome=\"{outcome}\""),
                                *n as f64,
                            )
                        }),
                )
                .collect(),
        );
        metric(
            "stripe_mirror_balance_refreshes_total",
            "counter",
            "Listings of balance transactions made soon after charge, refund or payout events (outcome done or failed).",
            accounts
                .iter()
                .filter(|(_, m)| m.balance_refreshes != (0, 0))
                .flat_map(|(c, m)| {
                    [
                        ("done", m.balance_refreshes.0),
                        ("failed", m.balance_refreshes.1),
                    ]
                    .map(|(outcome, n)| (format!("{},outcome=\"{outcome}\"", labels(c)), n as f64))
                })
                .collect(),
        );
        metric(
            "stripe_mirror_inbox_waiting",
            "gauge",
            "Webhook deliveries stored and not yet applied.",
            inbox
                .iter()
                .map(|d| (labels(&d.connection), d.waiting as f64))
                .collect(),
        );
        metric(
            "stripe_mirror_inbox_lag_seconds",
            "gauge",
            "How long the oldest delivery not yet applied has waited.",
            inbox
                .iter()
                .map(|d| {
                    (
                        labels(&d.connection),
                        (now - d.oldest_received_at).max(0) as f64,
                    )
                })
                .collect(),
        );
        metric(
            "stripe_mirror_api_refused_total",
            "counter",
            "API requests refused for their token (no_token, unknown_token, read_only_token).",
            self.api_refusals
                .lock()
                .iter()
                .map(|(reason, n)| (format!("reason=\"{reason}\""), *n as f64))
                .collect(),
        );
        let (counts, sum) = *self.answers.lock();
        let _ = writeln!(
            out,
            "# HELP stripe_mirror_webhook_answer_seconds How long verified deliveries took from their body read to their answer once stored (the time in serve).\n# TYPE stripe_mirror_webhook_answer_seconds histogram"
        );
        let mut below = 0;
        for (bound, n) in ANSWER_BUCKETS.iter().zip(counts) {
            below += n;
            let _ = writeln!(
                out,
                "stripe_mirror_webhook_answer_seconds_bucket{{le=\"{bound}\"}} {below}"
            );
        }
        below += counts[ANSWER_BUCKETS.len()];
        let _ = writeln!(
            out,
            "stripe_mirror_webhook_answer_seconds_bucket{{le=\"+Inf\"}} {below}\nstripe_mirror_webhook_answer_seconds_sum {sum}\nstripe_mirror_webhook_answer_seconds_count {below}"
        );
        out
    }

    /// `{account: {last_success, last_error, webhooks}}` for `/healthz`, and whether every
    /// account is well.
    fn health(&self, inbox: &[sm_warehouse::InboxDepth]) -> (bool, serde_json::Value) {
        let accounts = self.accounts.lock();
        let mut well = true;
        let now = now();
        let map = accounts
            .iter()
            .map(|(c, m)| {
                let webhooks = (m.refused_in_a_row >= REFUSED_RUN)
                    .then(|| refused_words(m.refused_in_a_row, m.refused_since));
                well &= webhooks.is_none() && m.last_error.is_none();
                let waiting = inbox.iter().find(|d| &d.connection == c);
                (
                    c.label(),
                    serde_json::json!({
                        "last_success": m.last_success,
                        "last_attempt": m.last_attempt,
                        "last_error": m.last_error,
                        "webhooks": webhooks,
                        "inbox_waiting": waiting.map_or(0, |d| d.waiting),
                        "inbox_lag_seconds": waiting.map_or(0, |d| (now - d.oldest_received_at).max(0)),
                    }),
                )
            })
            .collect();
        (well, serde_json::Value::Object(map))
    }
}

pub async fn prometheus(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Err(error) = crate::api::token_of(&state, &headers).await {
        return crate::api::ApiError(error.hint(
            "Prometheus sends one with `authorization: {credentials: TOKEN}` (a read-only token from `stripe-mirror token create --read-only`)",
        ))
        .into_response();
    }
    let inbox = state
        .engine
        .store_call(|store| store.inbox_depths())
        .await
        .unwrap_or_default();
    let mut text = state.metrics.render(&inbox);
    text.push_str(&process_metrics(&state));
    if let Some(notifier) = state.notifier.lock().clone() {
        text.push_str(&notify_metrics(&notifier.stats()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A connection's Prometheus labels.
fn labels(c: &Connection) -> String {
    format!(
        "account=\"{}\",mode=\"{}\"",
        c.account_id,
        if c.livemode { "live" } else { "test" }
    )
}

/// This process: its role, and the connections it holds (labelled by account and mode).
fn process_metrics(state: &AppState) -> String {
    let held = state.held_connections();
    let mut out = format!(
        "# HELP stripe_mirror_process Which role this process runs (all, worker or intake) and its lease holder name.\n# TYPE stripe_mirror_process gauge\nstripe_mirror_process{{role=\"{}\",holder=\"{}\"}} 1\n",
        state.config.role.name(),
        state.worker_id.replace(['\\', '"'], "_")
    );
    let _ = write!(
        out,
        "# HELP stripe_mirror_leases_held Connections this process holds now (syncing or applying webhook deliveries).\n# TYPE stripe_mirror_leases_held gauge\nstripe_mirror_leases_held {}\n# HELP stripe_mirror_leases_max Connections this process holds at most at once.\n# TYPE stripe_mirror_leases_max gauge\nstripe_mirror_leases_max {}\n",
        held.len(),
        if state.config.role.works() {
            state.config.max_leases
        } else {
            0
        }
    );
    out.push_str("# HELP stripe_mirror_lease_held Whether this process holds the connection now.\n# TYPE stripe_mirror_lease_held gauge\n");
    for connection in held {
        let _ = writeln!(out, "stripe_mirror_lease_held{{{}}} 1", labels(&connection));
    }
    out
}

/// The notifier's counts since start, in the Prometheus text exposition.
fn notify_metrics(stats: &sm_engine::notify::NotifyStats) -> String {
    let mut out = String::from(
        "# HELP stripe_mirror_notifications_total Notification deliveries since start, by outcome: planned (made from matched events), sent, rolled_up (in a roll-up or digest that was sent), retried, failed (given up or refused), too_old (events not sent because they arrived past the cut-off).\n# TYPE stripe_mirror_notifications_total counter\n",
    );
    for (outcome, value) in [
        ("planned", stats.planned),
        ("sent", stats.sent),
        ("rolled_up", stats.rolled_up),
        ("retried", stats.retried),
        ("failed", stats.failed),
        ("too_old", stats.too_old),
    ] {
        let _ = writeln!(
            out,
            "stripe_mirror_notifications_total{{outcome=\"{outcome}\"}} {value}"
        );
    }
    out
}

/// Liveness for anyone; each account's state for a caller with a token.
pub async fn healthz(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let authorized = headers.contains_key(header::AUTHORIZATION)
        && crate::api::token_of(&state, &headers).await.is_ok();
    if !authorized {
        return axum::Json(serde_json::json!({"status": "ok"})).into_response();
    }
    let inbox = state
        .engine
        .store_call(|store| store.inbox_depths())
        .await
        .unwrap_or_default();
    let (well, accounts) = state.metrics.health(&inbox);
    let process = serde_json::json!({
        "role": state.config.role.name(),
        "holder": state.worker_id,
        "leases_held": state.held_connections().iter().map(|c| c.label()).collect::<Vec<_>>(),
        "max_leases": if state.config.role.works() { state.config.max_leases } else { 0 },
    });
    axum::Json(
        serde_json::json!({"status": if well { "ok" } else { "degraded" }, "process": process, "accounts": accounts}),
    )
    .into_response()
}
