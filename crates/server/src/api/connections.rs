//! `/api/v1/connections`: connect an account by API key, list and read connections, rename,
//! move their start date or set their logo, rotate their key, remove them with their data;
//! their permissions, syncs and events; and the key link that pre-fills a restricted key.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sm_engine::ops::{connections, events, syncs};
use sm_engine::{EngineError, ErrorCode};
use sm_stripe::{ApiKey, Mode};
use zeroize::Zeroizing;

use super::{ApiResult, created, parse_body};
use crate::AppState;

/// The summary of the connection a path names (its `acct_…:test|live`, `acct_…` or name).
async fn summary_of(state: &AppState, reference: &str) -> ApiResult<connections::AccountSummary> {
    let record = state.engine.resolve(reference).await?;
    let label = record.connection.label();
    connections::list(&state.engine)
        .await?
        .into_iter()
        .find(|s| s.label == label)
        .ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no connection {label}")).into()
        })
}

pub async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let all = connections::list(&state.engine).await?;
    Ok(Json(json!({"object": "list", "data": all})))
}

pub async fn one(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(summary_of(&state, &reference).await?)))
}

/// What `POST /api/v1/connections` takes. The key is taken here once and never answered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConnection {
    api_key: String,
    /// `test` or `live`: the key must be of it.
    environment: String,
    account_id: Option<String>,
    #[serde(default)]
    restricted_only: bool,
    #[serde(default)]
    live_only: bool,
    name: Option<String>,
    /// Unix time the mirror goes back to.
    start_date: Option<i64>,
    api_version: Option<String>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<sm_warehouse::TokenRecord>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &idempotency_key
        && let Some(replayed) = state.idempotency.replay(&token.name, key, &body)?
    {
        return Ok(replayed);
    }
    let answer = connect(&state, &body).await;
    if let Some(key) = &idempotency_key {
        let (status, json) = match &answer {
            Ok(made) => (201, made.clone()),
            Err(error) => (
                error.0.code.http_status(),
                crate::error_response(&error.0).1.0,
            ),
        };
        state
            .idempotency
            .keep(&token.name, key, &body, status, &json);
    }
    answer.map(created)
}

/// Connects the account a `POST /api/v1/connections` body describes.
async fn connect(state: &AppState, body: &Bytes) -> ApiResult<Value> {
    let mut request: NewConnection = parse_body(body)?;
    // The key is wiped from memory once parsed.
    let key_text = Zeroizing::new(std::mem::take(&mut request.api_key));
    let mode = match request.environment.as_str() {
        "test" => Mode::Test,
        "live" => Mode::Live,
        other => {
            return Err(EngineError::invalid(format!(
                "environment must be test or live, not {other}"
            ))
            .into());
        }
    };
    let key = ApiKey::parse(&key_text).map_err(EngineError::from)?;
    let options = connections::ConnectOptions {
        policy: connections::KeyPolicy {
            expect_mode: Some(mode),
            expect_account: request.account_id,
            restricted_only: request.restricted_only,
            live_only: request.live_only,
        },
        name: request.name,
        start_date: request.start_date,
        webhook_secret: None,
        api_version: request.api_version,
    };
    let outcome = connections::connect(&state.engine, key, options).await?;
    Ok(json!({
        "connection": outcome.account,
        "permissions": outcome.permissions,
        "events_fetched": outcome.events_fetched,
    }))
}

/// What `PATCH /api/v1/connections/{connection}` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    name: Option<String>,
    /// Unix time, or null for all history.
    #[serde(default, deserialize_with = "present")]
    start_date: Option<Option<i64>>,
    /// An https:// or data:image/… URL, or null for Stripe's icon (or initials).
    #[serde(default, deserialize_with = "present")]
    logo: Option<Option<String>>,
}

/// Tells `"field": null` (clear it) from an absent field (no change).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

pub async fn change(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let request: Change = parse_body(&body)?;
    if request.name.is_none() && request.start_date.is_none() && request.logo.is_none() {
        return Err(
            EngineError::invalid("nothing to change: give name, start_date and/or logo").into(),
        );
    }
    let record = state.engine.resolve(&reference).await?;
    // Everything is checked before anything is written, so a refused change changes nothing.
    if let Some(name) = &request.name {
        let others = state.engine.store_call(|store| store.accounts()).await?;
        sm_engine::check_name(name, &others, Some(&record.connection))?;
    }
    if let Some(Some(logo)) = &request.logo {
        connections::check_logo(logo.trim())?;
    }
    if let Some(Some(start)) = request.start_date
        && start > sm_engine::now()
    {
        return Err(EngineError::invalid("the start date is in the future").into());
    }
    if let Some(name) = &request.name {
        connections::rename(&state.engine, &record.connection, name).await?;
    }
    if let Some(start) = request.start_date {
        connections::set_start_date(&state.engine, &record.connection, start).await?;
    }
    if let Some(logo) = request.logo {
        connections::set_logo(&state.engine, &record.connection, logo).await?;
    }
    Ok(Json(json!(
        summary_of(&state, &record.connection.label()).await?
    )))
}

/// What `PUT /api/v1/connections/{connection}/key` takes: the new key of the same account and
/// mode (a rolled or re-made restricted key). Taken once, never answered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    api_key: String,
}

pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let mut request: NewKey = parse_body(&body)?;
    let key_text = Zeroizing::new(std::mem::take(&mut request.api_key));
    let key = ApiKey::parse(&key_text).map_err(EngineError::from)?;
    let record = state.engine.resolve(&reference).await?;
    let outcome = connections::update_key(&state.engine, &record.connection, key).await?;
    Ok(Json(json!({
        "connection": summary_of(&state, &record.connection.label()).await?,
        "permissions": outcome.permissions,
    })))
}

/// `?mode=test|live&features=mirror,webhooks,agent-writes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLinkQuery {
    mode: Option<String>,
    features: Option<String>,
}

pub async fn key_link(Query(query): Query<KeyLinkQuery>) -> ApiResult<Json<Value>> {
    let mode = match query.mode.as_deref().unwrap_or("test") {
        "test" => Mode::Test,
        "live" => Mode::Live,
        other => {
            return Err(
                EngineError::invalid(format!("mode must be test or live, not {other}")).into(),
            );
        }
    };
    let features: Vec<String> = query
        .features
        .as_deref()
        .unwrap_or("mirror")
        .split(',')
        .map(str::to_owned)
        .collect();
    Ok(Json(json!(connections::key_link_for(mode, &features)?)))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = state.engine.resolve(&reference).await?;
    let outcome = connections::remove(&state.engine, &record.connection).await?;
    Ok(Json(json!(outcome)))
}

pub async fn permissions(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = state.engine.resolve(&reference).await?;
    Ok(Json(connections::permissions_json(&record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    limit: Option<usize>,
}

impl Paging {
    fn limit(&self) -> ApiResult<usize> {
        match self.limit {
            None => Ok(20),
            Some(n @ 1..=100) => Ok(n),
            Some(n) => Err(EngineError::invalid(format!("limit must be 1 to 100, not {n}")).into()),
        }
    }
}

pub async fn syncs(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<Value>> {
    let record = state.engine.resolve(&reference).await?;
    let runs = syncs::runs(&state.engine, &record.connection, paging.limit()?).await?;
    Ok(Json(json!({"object": "list", "data": runs})))
}

pub async fn one_sync(
    State(state): State<Arc<AppState>>,
    Path((reference, run)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let id: i64 = run.parse().map_err(|_| {
        EngineError::new(
            ErrorCode::NotFound,
            format!("no run {run}: runs are numbered"),
        )
    })?;
    let record = state.engine.resolve(&reference).await?;
    Ok(Json(json!(
        syncs::run(&state.engine, &record.connection, id).await?
    )))
}

pub async fn sync_now(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> ApiResult<Response> {
    let record = state.engine.resolve(&reference).await?;
    state.request_sync(&record.connection, sm_engine::sync::Trigger::Api);
    let label = record.connection.label();
    Ok((
        axum::http::StatusCode::ACCEPTED,
        [("Location", format!("/api/v1/connections/{label}/syncs"))],
        Json(json!({"queued": true, "connection": label, "runs": format!("/api/v1/connections/{label}/syncs")})),
    )
        .into_response())
}

/// Events newest first, Stripe's way: `limit`, `starting_after`, `type` (repeatable, or
/// `types[]`; `invoice.*` for a prefix).
pub async fn events(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let mut query = sm_warehouse::EventQuery {
        limit: 20,
        ..Default::default()
    };
    for (name, value) in super::form_pairs(raw.as_deref().unwrap_or_default()) {
        match name.as_str() {
            "limit" => {
                query.limit = value.parse().map_err(|_| {
                    EngineError::invalid(format!("limit must be 1 to 100, not `{value}`"))
                })?
            }
            "starting_after" => query.starting_after = Some(value),
            "type" | "types[]" => query.types.push(value),
            other => {
                return Err(EngineError::invalid(format!(
                    "events take limit, starting_after and type, not `{other}`"
                ))
                .into());
            }
        }
    }
    let record = state.engine.resolve(&reference).await?;
    let label = record.connection.label();
    let (page, has_more) = events::page(&state.engine, &record.connection, query).await?;
    let data: Vec<Value> = page
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": format!("/api/v1/connections/{label}/events"),
    })))
}
