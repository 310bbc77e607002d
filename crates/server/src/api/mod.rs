//! The REST API under `/api/v1`: JSON in and out, a bearer token (`stripe-mirror token
//! create`) on every request, errors as `{"error": {"code", "message", "hint"}}` from the one
//! error table. Each route is one row of [`ROUTES`]: the router is built from that table and
//! the OpenAPI document describes it, so neither can have a route the other lacks. Handlers
//! are thin: they parse, call `sm_engine::ops`, and answer.

mod connections;
mod notify;
mod objects;
mod openapi;
pub(crate) mod reports;
mod sql;
pub(crate) mod stream;
pub mod stripe_compat;

pub(crate) use stripe_compat::form_pairs;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sm_engine::{EngineError, ErrorCode};

use crate::AppState;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take before it is answered with an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One route: its method, path, what it does, and whether a read-only token may call it.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub read_only_allowed: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    read_only_allowed: bool,
) -> Route {
    Route {
        method,
        path,
        summary,
        read_only_allowed,
    }
}

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    route(
        "GET",
        "/api/v1/openapi.json",
        "This API as an OpenAPI 3.1 document",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections",
        "Every connection with its status in words",
        true,
    ),
    route(
        "POST",
        "/api/v1/connections",
        "Connect a Stripe account with an API key",
        false,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}",
        "One connection",
        true,
    ),
    route(
        "PATCH",
        "/api/v1/connections/{connection}",
        "Rename a connection, change its start date or set its logo",
        false,
    ),
    route(
        "DELETE",
        "/api/v1/connections/{connection}",
        "Remove a connection and every row of its data",
        false,
    ),
    route(
        "PUT",
        "/api/v1/connections/{connection}/key",
        "Rotate the connection's API key: a new key of the same account and mode",
        false,
    ),
    route(
        "GET",
        "/api/v1/key-link",
        "The Stripe dashboard link that pre-fills a restricted key: mode=test|live, features=mirror,webhooks,agent-writes",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/permissions",
        "What the connection's key may read and write",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/syncs",
        "The connection's syncs, newest first",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/syncs/{run}",
        "One sync: per-table counts, requests, and while it runs its progress (each table's phase, objects and share covered; percent)",
        true,
    ),
    route(
        "POST",
        "/api/v1/connections/{connection}/syncs",
        "Sync the connection now (202: queued; its run appears in the list)",
        false,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/events",
        "The events kept in the mirror, newest first: limit, starting_after, type (repeatable; invoice.* for a prefix)",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/events/stream",
        "The connection's events as they are stored, as Server-Sent Events (each message's data a Stripe event, its id a position to resume from with Last-Event-ID)",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/objects/{table}",
        "A page of a table's objects, newest first: limit, starting_after, created[gte], created[lt], and typed columns as filters",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/objects/{table}/{id}",
        "One mirrored object",
        true,
    ),
    route(
        "GET",
        "/api/v1/connections/{connection}/reports/{report}",
        "A revenue report (summary, mrr, movements, churn, revenue, failed-payments) by period and currency: from, to (YYYY-MM-DD), interval (day|week|month), currency, time_zone (Europe/Paris or +02:00), discount_mode, churn_recognition, delinquency_churn_days, week_factor, days_per_month, net_same_period_new_churn; format=csv for a download",
        true,
    ),
    route(
        "POST",
        "/api/v1/sql",
        "A read-only SQL query on the mirror",
        true,
    ),
    route(
        "GET",
        "/api/v1/notifications/channels",
        "Notification channels, their targets masked, status (untested, ok, failing) and why one fails",
        true,
    ),
    route(
        "POST",
        "/api/v1/notifications/channels",
        "Add a channel: name, kind (slack, discord, teams, webhook, ntfy, email), url, and secret (webhook), token (ntfy), to, from, ca_pem (email); sealed, never answered (a webhook's made secret is answered once)",
        false,
    ),
    route(
        "POST",
        "/api/v1/notifications/channels/{channel}/test",
        "Send a test message now; the channel is marked ok, or failing with the receiver's words",
        false,
    ),
    route(
        "DELETE",
        "/api/v1/notifications/channels/{channel}",
        "Remove a channel with its rules (what it had not sent is canceled)",
        false,
    ),
    route(
        "GET",
        "/api/v1/notifications/rules",
        "Notification rules, each in words",
        true,
    ),
    route(
        "POST",
        "/api/v1/notifications/rules",
        "Add a rule: name, channel, events (types, charge.*, *, or default), account, include_test, min_amount (50 or 49.99usd), quiet_hours (22:00-07:00), digest (daily@09:00, weekly@mon09:00), time_zone (Europe/Paris or +01:00)",
        false,
    ),
    route(
        "DELETE",
        "/api/v1/notifications/rules/{rule}",
        "Remove a rule (what it had not sent is canceled)",
        false,
    ),
    route(
        "GET",
        "/api/v1/notifications/log",
        "What was sent, when, and what failed, newest first: channel, state (pending, digest, sent, rolled_up, failed, canceled; comma-separated), limit",
        true,
    ),
];

/// The handler of a route of [`ROUTES`].
fn handler(route: &Route) -> MethodRouter<Arc<AppState>> {
    match (route.method, route.path) {
        ("GET", "/api/v1/openapi.json") => get(openapi::document),
        ("GET", "/api/v1/connections") => get(connections::list),
        ("POST", "/api/v1/connections") => post(connections::create),
        ("GET", "/api/v1/connections/{connection}") => get(connections::one),
        ("PATCH", "/api/v1/connections/{connection}") => patch(connections::change),
        ("DELETE", "/api/v1/connections/{connection}") => delete(connections::remove),
        ("PUT", "/api/v1/connections/{connection}/key") => put(connections::rotate_key),
        ("GET", "/api/v1/key-link") => get(connections::key_link),
        ("GET", "/api/v1/connections/{connection}/permissions") => get(connections::permissions),
        ("GET", "/api/v1/connections/{connection}/syncs") => get(connections::syncs),
        ("POST", "/api/v1/connections/{connection}/syncs") => post(connections::sync_now),
        ("GET", "/api/v1/connections/{connection}/syncs/{run}") => get(connections::one_sync),
        ("GET", "/api/v1/connections/{connection}/events") => get(connections::events),
        ("GET", "/api/v1/connections/{connection}/events/stream") => get(stream::events_stream),
        ("GET", "/api/v1/connections/{connection}/objects/{table}") => get(objects::page),
        ("GET", "/api/v1/connections/{connection}/objects/{table}/{id}") => get(objects::one),
        ("GET", "/api/v1/connections/{connection}/reports/{report}") => get(reports::one),
        ("POST", "/api/v1/sql") => post(sql::query),
        ("GET", "/api/v1/notifications/channels") => get(notify::channels),
        ("POST", "/api/v1/notifications/channels") => post(notify::add_channel),
        ("POST", "/api/v1/notifications/channels/{channel}/test") => post(notify::test_channel),
        ("DELETE", "/api/v1/notifications/channels/{channel}") => delete(notify::remove_channel),
        ("GET", "/api/v1/notifications/rules") => get(notify::rules),
        ("POST", "/api/v1/notifications/rules") => post(notify::add_rule),
        ("DELETE", "/api/v1/notifications/rules/{rule}") => delete(notify::remove_rule),
        ("GET", "/api/v1/notifications/log") => get(notify::log),
        (method, path) => unreachable!("{method} {path} has no handler"),
    }
}

/// The API's routes, behind the token check, the body limit and the time limit.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(route.path, handler(route));
    }
    router
        .layer(axum::middleware::from_fn_with_state(state, authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A list in Stripe's shape, `{"object":"list","data":[…],"has_more":…,"url":"…"}`, its
/// objects' JSON text sent on as stored (parsing and writing it again was most of a page's
/// cost).
pub fn list_page(data: &[String], has_more: bool, url: &str) -> Response {
    let mut body = Vec::with_capacity(data.iter().map(|d| d.len() + 1).sum::<usize>() + 96);
    body.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, object) in data.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(object.as_bytes());
    }
    body.extend_from_slice(if has_more {
        b"],\"has_more\":true,\"url\":"
    } else {
        b"],\"has_more\":false,\"url\":"
    });
    // A string, escaped as JSON.
    let _ = serde_json::to_writer(&mut body, url);
    body.push(b'}');
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// An engine error as an API answer.
pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::error_response(&self.0).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body of `T`: malformed JSON, a wrong type or an unknown field is bad input that says
/// where.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return Err(EngineError::invalid("the request needs a JSON body").into());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            EngineError::invalid(format!("the JSON body is not what this route takes: {e}"))
                .hint("GET /api/v1/openapi.json describes every route's body"),
        )
    })
}

/// Checks the bearer token of every request (and that a read-only token only reads), and
/// bounds how long a request may take.
async fn authorize(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let refuse = |state: &AppState, reason: &'static str, error: EngineError| {
        state.metrics.record_api_refusal(reason);
        ApiError(error).into_response()
    };
    let token = match token_of(&state, request.headers()).await {
        Ok(token) => token,
        Err(error) => return ApiError(error).into_response(),
    };
    if token.read_only && !read_only_allowed(request.method(), request.uri().path()) {
        return refuse(
            &state,
            "read_only_token",
            EngineError::new(
                ErrorCode::Forbidden,
                format!("the token \"{}\" may only read", token.name),
            ),
        );
    }
    // Handlers learn who asked (idempotency keys are kept per token).
    request.extensions_mut().insert(token);
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(EngineError::new(
            ErrorCode::Upstream,
            format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ))
        .into_response(),
    }
}

/// The token a request carries, checked against the stored ones; a missing or unknown one is
/// `unauthorized`, counted in `/metrics`. Both HTTP surfaces (`/api`, `/stripe`) check here.
pub(crate) async fn token_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<sm_warehouse::TokenRecord, EngineError> {
    let Some(presented) = bearer(headers) else {
        state.metrics.record_api_refusal("no_token");
        return Err(EngineError::new(
            ErrorCode::Unauthorized,
            "this API needs `Authorization: Bearer <token>`",
        )
        .hint("make a token with `stripe-mirror token create --name NAME`"));
    };
    sm_engine::ops::tokens::check(&state.engine, &state.recent_tokens, &presented)
        .await?
        .ok_or_else(|| {
            state.metrics.record_api_refusal("unknown_token");
            EngineError::new(
                ErrorCode::Unauthorized,
                "the token is not valid (unknown or revoked)",
            )
        })
}

/// Whether a read-only token may call `method path`: reads, and routes marked so.
fn read_only_allowed(method: &Method, path: &str) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    ROUTES
        .iter()
        .any(|r| r.read_only_allowed && r.method == method.as_str() && r.path == path)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// Answers to requests sent with an `Idempotency-Key`, per token and key: a retry with the
/// same body gets the first answer again; the same key with another body is refused. Holds the
/// newest [`IDEMPOTENCY_KEYS`] (the body itself is kept only as its SHA-256: it may hold a key).
#[derive(Default)]
pub struct IdempotencyKeys {
    answers: parking_lot::Mutex<KeptAnswers>,
}

/// `(token, key)` → (the body's SHA-256, status, answer); and the keys oldest first.
type KeptAnswers = (
    std::collections::HashMap<(String, String), ([u8; 32], u16, Value)>,
    std::collections::VecDeque<(String, String)>,
);

/// Idempotency keys remembered at most.
pub const IDEMPOTENCY_KEYS: usize = 10_000;

impl IdempotencyKeys {
    fn digest(body: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(body).into()
    }

    /// The answer kept for `(token, key)` if the body is the same; an error if it is not.
    pub fn replay(&self, token: &str, key: &str, body: &[u8]) -> ApiResult<Option<Response>> {
        let answers = self.answers.lock();
        match answers.0.get(&(token.to_owned(), key.to_owned())) {
            None => Ok(None),
            Some((digest, status, answer)) if *digest == Self::digest(body) => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                Ok(Some(
                    (
                        status,
                        [("Idempotent-Replayed", "true")],
                        axum::Json(answer.clone()),
                    )
                        .into_response(),
                ))
            }
            Some(_) => Err(EngineError::invalid(format!(
                "the Idempotency-Key {key} was used with another body"
            ))
            .hint("use a new key for a new request")
            .into()),
        }
    }

    /// Keeps an answer (not a server error: those may be retried).
    pub fn keep(&self, token: &str, key: &str, body: &[u8], status: u16, answer: &Value) {
        if status >= 500 {
            return;
        }
        let mut answers = self.answers.lock();
        let (map, order) = &mut *answers;
        if map.len() >= IDEMPOTENCY_KEYS
            && let Some(oldest) = order.pop_front()
        {
            map.remove(&oldest);
        }
        let id = (token.to_owned(), key.to_owned());
        order.push_back(id.clone());
        map.insert(id, (Self::digest(body), status, answer.clone()));
    }
}

/// `201 Created` with a JSON body.
pub fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}
