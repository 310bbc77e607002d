//! Webhook intake: `POST /webhooks/{account}/{mode}`. The signature is checked exactly as API.md
//! §7 (any `v1`, tolerance, constant time); missing, forged, expired or replayed signatures get a
//! 4xx and change nothing; the event is stored and applied in one transaction before the 2xx, so
//! a crash right after loses nothing (Stripe retries anything not acknowledged). Also the
//! managed endpoint each account gets when it may have one.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sm_engine::catalog::{Feature, MIRRORED_EVENT_TYPES};
use sm_engine::connect::PermissionReport;
use sm_engine::{EngineError, ErrorCode, now};
use sm_stripe::webhook::{SignatureError, verify};
use sm_warehouse::{AccountRecord, Connection};

use crate::AppState;

/// Signed payloads (account, `t` and body) seen within the tolerance window: the same twice is
/// a replay. Kept by signed timestamp, so that what falls out of the window (and would be refused
/// as expired anyway) is dropped a whole second at a time: pruning costs nothing per delivery
/// however many are remembered (a scan of every entry on each insert once past 100,000 cut
/// sustained intake from 5,000 to 1,300 events/s within a minute).
pub struct ReplayGuard {
    /// Signed timestamp → hashes of the payloads signed at it.
    seen: Mutex<BTreeMap<i64, HashSet<u64>>>,
    /// Seeded per process, so that nobody can choose bodies that collide.
    hasher: RandomState,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard {
            seen: Mutex::new(BTreeMap::new()),
            hasher: RandomState::new(),
        }
    }
}

/// The window remembered when the tolerance check is off (tolerance 0): replays older than it
/// get through then, as any delivery of any age does.
const UNCHECKED_TOLERANCE_WINDOW_SECS: i64 = 300;

impl ReplayGuard {
    /// True the first time `body` signed at `signed_at` is seen for `connection`; forgets what
    /// was signed more than the tolerance before `now`.
    fn first_time(
        &self,
        connection: &Connection,
        signed_at: i64,
        body: &[u8],
        now: i64,
        tolerance: i64,
    ) -> bool {
        let window = if tolerance > 0 {
            tolerance
        } else {
            UNCHECKED_TOLERANCE_WINDOW_SECS
        };
        let digest = self.hasher.hash_one((connection, body));
        let mut seen = self.seen.lock();
        while let Some(entry) = seen.first_entry() {
            if *entry.key() >= now - window {
                break;
            }
            entry.remove();
        }
        seen.entry(signed_at).or_default().insert(digest)
    }

    /// How many signed payloads are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.lock().values().map(HashSet::len).sum()
    }
}

fn replay_guard() -> &'static ReplayGuard {
    static GUARD: std::sync::OnceLock<ReplayGuard> = std::sync::OnceLock::new();
    GUARD.get_or_init(ReplayGuard::default)
}

/// A refusal, through the one error table (status and JSON body from its code).
fn refuse(code: ErrorCode, message: String) -> (StatusCode, Json<Value>) {
    crate::error_response(&EngineError::new(code, message))
}

/// The answer to a delivery no secret verifies, whether the account is connected or not.
fn no_match() -> (StatusCode, Json<Value>) {
    refuse(
        ErrorCode::InvalidSignature,
        SignatureError::NoMatch.to_string(),
    )
}

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path((account, mode)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let livemode = match mode.as_str() {
        "live" => true,
        "test" => false,
        _ => {
            return refuse(
                ErrorCode::NotFound,
                format!("no such mode {mode}: use /webhooks/acct_…/test or /live"),
            );
        }
    };
    // A path that names no account id is answered like any delivery no secret verifies (and
    // never reaches a log line or a label).
    if !sm_engine::is_account_id(&account) {
        state
            .metrics
            .record_webhook_anywhere("rejected_unknown_account");
        return no_match();
    }
    let received = std::time::Instant::now();
    let connection = Connection::new(account, livemode);
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = now();
    // What can be judged from the header alone is judged first, the same for every account.
    if let Err(error) = sm_stripe::webhook::check_header(header, now, state.config.tolerance_secs) {
        let outcome = match error {
            SignatureError::Missing => "rejected_missing_signature",
            SignatureError::Malformed => "rejected_malformed_signature",
            SignatureError::OutsideTolerance { .. } => "rejected_expired_signature",
            SignatureError::NoMatch => "rejected_forged_signature",
        };
        state.metrics.record_webhook_anywhere(outcome);
        return refuse(ErrorCode::InvalidSignature, error.to_string());
    }
    // Then the secret. An account that is not connected, one without a secret and a signature
    // that matches none are answered alike, so that a stranger learns nothing of which accounts
    // are connected; the log tells the operator which it was.
    let mut verified = None;
    // The cached secret first; a signature that matches nothing is checked once more against
    // the record as stored now (the secret may have been set or rolled since), at most every
    // few seconds per connection, so that forged deliveries cost no database reads.
    for fresh in [false, true] {
        if fresh && !state.may_read_secret_again(&connection) {
            break;
        }
        let secret = match state.webhook_secret(&connection, fresh).await {
            Ok(Some(secret)) => secret,
            Ok(None) if !fresh => continue,
            Ok(None) => {
                state
                    .metrics
                    .record_webhook(&connection, "rejected_no_secret");
                tracing::warn!(account = %connection.label(), "a delivery for a connection without a webhook signing secret: serve with --public-url, or set one with `stripe-mirror webhook-secret`");
                return no_match();
            }
            Err(error) if error.code == ErrorCode::NotFound => {
                state
                    .metrics
                    .record_webhook_anywhere("rejected_unknown_account");
                tracing::debug!(account = %connection.label(), "a delivery for an account that is not connected");
                return no_match();
            }
            Err(error) => {
                return crate::error_response(&error);
            }
        };
        let outcome = verify_any(header, &body, &secret, now, state.config.tolerance_secs);
        let settled = !matches!(outcome, Err(SignatureError::NoMatch));
        verified = Some(outcome);
        if settled {
            break;
        }
    }
    let signed_at = match verified.unwrap_or(Err(SignatureError::NoMatch)) {
        Ok(signed_at) => {
            if state.metrics.note_signature_accepted(&connection) {
                forget_refusals(&state, &connection);
            }
            signed_at
        }
        Err(error) => {
            let outcome = match error {
                SignatureError::Missing => "rejected_missing_signature",
                SignatureError::Malformed => "rejected_malformed_signature",
                SignatureError::OutsideTolerance { .. } => "rejected_expired_signature",
                SignatureError::NoMatch => "rejected_forged_signature",
            };
            state.metrics.record_webhook(&connection, outcome);
            if matches!(error, SignatureError::NoMatch)
                && let Some((count, since)) = state.metrics.note_signature_refused(&connection, now)
            {
                record_refusals(&state, &connection, count, since);
            }
            return if matches!(error, SignatureError::NoMatch) {
                no_match()
            } else {
                refuse(ErrorCode::InvalidSignature, error.to_string())
            };
        }
    };
    // A replay is the same signed payload (`t` and body) again, however its header is dressed
    // (extra `v0`/`v1`, spaces, order): keying on the header text let those through.
    if !replay_guard().first_time(
        &connection,
        signed_at,
        &body,
        now,
        state.config.tolerance_secs,
    ) {
        state.metrics.record_webhook(&connection, "rejected_replay");
        return refuse(
            ErrorCode::Replayed,
            "this exact signed delivery was received before".into(),
        );
    }
    let event: Value = match serde_json::from_slice::<Value>(&body) {
        Ok(event) if event["object"] == "event" && event["id"].is_string() => event,
        _ => {
            state
                .metrics
                .record_webhook(&connection, "rejected_not_an_event");
            return refuse(
                ErrorCode::NotAnEvent,
                "the body is not a Stripe event".into(),
            );
        }
    };
    if event["livemode"].as_bool() != Some(livemode) {
        state
            .metrics
            .record_webhook(&connection, "rejected_wrong_mode");
        return refuse(
            ErrorCode::NotAnEvent,
            format!(
                "a {} event sent to the {} endpoint",
                if livemode { "test" } else { "live" },
                connection.label()
            ),
        );
    }
    // Kept first (the one write before the answer), applied behind it by the inbox's worker.
    let event_id = event["id"].as_str().unwrap_or_default().to_owned();
    let waiting =
        (!state.config.answer_wait.is_zero()).then(|| state.outcome_of(&connection, &event_id));
    let kept = {
        let (connection, event_id) = (connection.clone(), event_id.clone());
        let body = String::from_utf8_lossy(&body).into_owned();
        state
            .engine
            .store_call(move |store| store.inbox_add(&connection, &event_id, now, &body))
            .await
    };
    if let Err(error) = kept {
        // Not stored: answer an error so that Stripe delivers it again.
        state.stop_waiting(&connection, &event_id);
        state.metrics.record_webhook(&connection, "failed");
        tracing::warn!(account = %connection.label(), error = %error.message, "a delivery could not be stored");
        return crate::error_response(&error);
    }
    state.metrics.record_webhook(&connection, "queued");
    state.metrics.record_answer(received.elapsed());
    state.wake_inbox(&connection);
    // Optionally (`answer_wait`), the outcome when the apply is done within the wait; the
    // delivery is kept whatever happens to this request.
    let outcome = match waiting {
        Some(receiver) => {
            let outcome = tokio::time::timeout(state.config.answer_wait, receiver).await;
            state.stop_waiting(&connection, &event_id);
            match outcome {
                Ok(Ok(name)) => name,
                _ => "queued",
            }
        }
        None => "queued",
    };
    (
        StatusCode::OK,
        Json(json!({"received": true, "outcome": outcome})),
    )
}

/// Checks a signature against each accepted secret (one per line: the current one, and during a
/// roll the previous one). Errors that do not depend on the secret are the first one's.
fn verify_any(
    header: Option<&str>,
    body: &[u8],
    secrets: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let mut outcome = Err(SignatureError::NoMatch);
    for secret in secrets.lines().filter(|s| !s.is_empty()) {
        outcome = verify(header, body, secret, now, tolerance_secs);
        if !matches!(outcome, Err(SignatureError::NoMatch)) {
            break;
        }
    }
    outcome
}

/// A run of deliveries refused for their signature: said in the log and kept in the mirror,
/// so that `accounts` (another process) and `/healthz` say it. Written at most once a minute.
fn record_refusals(state: &Arc<AppState>, connection: &Connection, count: u64, since: i64) {
    tracing::warn!(
        account = %connection.label(),
        refused = count,
        "webhooks refused: the signing secret does not match — update it with `stripe-mirror webhook-secret {}`",
        connection.label()
    );
    let (engine, connection) = (state.engine.clone(), connection.clone());
    tokio::spawn(async move {
        let value = format!("{count} {since}");
        let _ = engine
            .store_call(move |store| {
                store.set_state(&connection, sm_engine::WEBHOOKS_REFUSED, Some(&value))
            })
            .await;
    });
}

/// A delivery verified after refused ones: the secret matches again.
fn forget_refusals(state: &Arc<AppState>, connection: &Connection) {
    tracing::info!(account = %connection.label(), "webhooks verify again");
    let (engine, connection) = (state.engine.clone(), connection.clone());
    tokio::spawn(async move {
        let _ = engine
            .store_call(move |store| {
                store.set_state(&connection, sm_engine::WEBHOOKS_REFUSED, None)
            })
            .await;
    });
}

/// Makes the account's webhook endpoint when a public URL is known and the key may, and records
/// in words whether changes arrive in real time or by polling.
pub async fn manage_endpoint(state: &AppState, record: &AccountRecord) {
    let connection = &record.connection;
    let interval = state.config.interval.as_secs();
    let polling = format!("polling every {interval} s");
    let report = PermissionReport::from_json(&record.permissions);
    let realtime = if record.webhook_secret_sealed.is_some() {
        match &record.webhook_endpoint_id {
            Some(endpoint) => format!("real-time on (endpoint {endpoint})"),
            None => "real-time on (an endpoint made by hand)".to_owned(),
        }
    } else if let Some(public_url) = &state.config.public_url {
        if report.missing(Feature::Webhooks).is_empty() {
            match create_endpoint(state, record, public_url).await {
                Ok(endpoint) => format!("real-time on (endpoint {endpoint})"),
                Err(error) => format!(
                    "real-time off: the webhook endpoint could not be made ({}) — {polling}",
                    error.message
                ),
            }
        } else {
            format!("real-time off: needs rak_webhook_write — {polling}")
        }
    } else {
        format!("real-time off: no --public-url — {polling}")
    };
    let connection = connection.clone();
    let _ = state
        .engine
        .store_call(move |store| {
            store.set_state(&connection, "realtime", Some(&realtime))?;
            store.set_state(
                &connection,
                sm_engine::SCHEDULE_SECS,
                Some(&interval.to_string()),
            )
        })
        .await;
}

async fn create_endpoint(
    state: &AppState,
    record: &AccountRecord,
    public_url: &str,
) -> Result<String, EngineError> {
    let key = state.engine.open_key(record)?;
    let client = state.engine.client_for(record, &key)?;
    let mode = if record.connection.livemode {
        "live"
    } else {
        "test"
    };
    let url = format!(
        "{}/webhooks/{}/{mode}",
        public_url.trim_end_matches('/'),
        record.connection.account_id
    );
    let mut params = vec![
        ("url".to_owned(), url),
        // Deliveries in the version the mirror keeps: no object needs reading again.
        (
            "api_version".to_owned(),
            sm_engine::mirror_api_version(record).to_owned(),
        ),
        ("description".to_owned(), "stripe-mirror".to_owned()),
        ("metadata[stripe_mirror]".to_owned(), "1".to_owned()),
    ];
    params.extend(
        MIRRORED_EVENT_TYPES
            .iter()
            .map(|t| ("enabled_events[]".to_owned(), (*t).to_owned())),
    );
    let mut endpoint = client.post("/v1/webhook_endpoints", &params).await?;
    let id = endpoint["id"].as_str().unwrap_or_default().to_owned();
    // Taken out of the answer so that the one copy is zeroized when dropped.
    let secret = match endpoint["secret"].take() {
        serde_json::Value::String(secret) => zeroize::Zeroizing::new(secret),
        _ => {
            return Err(EngineError::new(
                ErrorCode::Upstream,
                "the new webhook endpoint came without its secret",
            ));
        }
    };
    let mut updated = state.engine.account(&record.connection).await?;
    updated.webhook_endpoint_id = Some(id.clone());
    updated.webhook_secret_sealed = Some(state.engine.vault.seal(
        &secret,
        &record.connection,
        sm_warehouse::SealedField::WebhookSecrets,
    ));
    updated.updated_at = now();
    state
        .engine
        .store_call(move |store| store.update_account(&updated))
        .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_signed_payload_twice_is_a_replay_and_is_forgotten_past_the_tolerance() {
        let guard = ReplayGuard::default();
        let acme = Connection::new("acct_acme", false);
        let other = Connection::new("acct_other", false);
        let now = 1_800_000_000;
        assert!(guard.first_time(&acme, now, b"{\"id\":1}", now, 300));
        assert!(!guard.first_time(&acme, now, b"{\"id\":1}", now + 5, 300));
        // Another body, another timestamp, another account: each a first time.
        assert!(guard.first_time(&acme, now, b"{\"id\":2}", now, 300));
        assert!(guard.first_time(&acme, now + 1, b"{\"id\":1}", now + 1, 300));
        assert!(guard.first_time(&other, now, b"{\"id\":1}", now, 300));
        assert_eq!(guard.remembered(), 4);
        // Signed more than the tolerance ago: dropped (such a delivery is refused as expired).
        assert!(guard.first_time(&acme, now + 301, b"{\"id\":3}", now + 301, 300));
        assert_eq!(guard.remembered(), 2);
        assert!(!guard.first_time(&acme, now + 1, b"{\"id\":1}", now + 301, 300));
    }

    #[test]
    fn what_is_remembered_stays_within_the_window_however_many_arrive() {
        let guard = ReplayGuard::default();
        let acme = Connection::new("acct_acme", false);
        let start = 1_800_000_000;
        for n in 0..200_000i64 {
            // 100 deliveries a second for 2,000 s, each signed as it arrives.
            let now = start + n / 100;
            assert!(guard.first_time(&acme, now, &n.to_le_bytes(), now, 300));
        }
        // 301 seconds (now − 300 … now) of 100 each.
        assert_eq!(guard.remembered(), 30_100);
    }
}
