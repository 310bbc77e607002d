//! `/api/v1/notifications/…`: channels (add, list masked, send a test, remove), rules (add,
//! list in words, remove) and the log of what was sent — each a thin edge over
//! `sm_engine::ops::notify`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use sm_engine::ops::notify::{self, ChannelInput, RuleInput};

use super::{ApiResult, created, parse_body};
use crate::AppState;

/// What `POST /api/v1/notifications/channels` takes. The URL (a secret for Slack, Discord and
/// Teams), a webhook's secret and an ntfy token are sealed and never answered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChannel {
    name: String,
    /// slack, discord, teams, webhook, ntfy or email.
    kind: String,
    url: String,
    secret: Option<String>,
    token: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    from: Option<String>,
    /// PEM text of CA certificates an email server may be signed by.
    ca_pem: Option<String>,
}

pub async fn channels(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"data": notify::channels(&state.engine).await?}),
    ))
}

pub async fn add_channel(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Response> {
    let request: NewChannel = parse_body(&body)?;
    let added = notify::add_channel(
        &state.engine,
        ChannelInput {
            name: request.name,
            kind: request.kind,
            url: request.url,
            secret: request.secret,
            token: request.token,
            to: request.to,
            from: request.from,
            ca_pem: request.ca_pem,
        },
    )
    .await?;
    Ok(created(json!(added)))
}

pub async fn test_channel(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        notify::test_channel(&state.engine, &channel).await?
    )))
}

pub async fn remove_channel(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
) -> ApiResult<Json<Value>> {
    let rules = notify::remove_channel(&state.engine, &channel).await?;
    Ok(Json(json!({"removed": channel, "rules_removed": rules})))
}

/// What `POST /api/v1/notifications/rules` takes (the CLI's flags, by name).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    name: String,
    channel: String,
    events: Option<String>,
    account: Option<String>,
    #[serde(default)]
    include_test: bool,
    min_amount: Option<String>,
    quiet_hours: Option<String>,
    digest: Option<String>,
    /// `utc_offset` is its older name.
    #[serde(alias = "utc_offset")]
    time_zone: Option<String>,
}

pub async fn rules(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"data": notify::rules(&state.engine).await?})))
}

pub async fn add_rule(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Response> {
    let request: NewRule = parse_body(&body)?;
    let rule = notify::add_rule(
        &state.engine,
        RuleInput {
            name: request.name,
            channel: request.channel,
            events: request.events,
            account: request.account,
            include_test: request.include_test,
            min_amount: request.min_amount,
            quiet_hours: request.quiet_hours,
            digest: request.digest,
            time_zone: request.time_zone,
        },
    )
    .await?;
    Ok(created(json!(rule)))
}

pub async fn remove_rule(
    State(state): State<Arc<AppState>>,
    Path(rule): Path<String>,
) -> ApiResult<Json<Value>> {
    notify::remove_rule(&state.engine, &rule).await?;
    Ok(Json(json!({"removed": rule})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    channel: Option<String>,
    /// Comma-separated states.
    state: Option<String>,
    limit: Option<usize>,
}

pub async fn log(
    State(state): State<Arc<AppState>>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let states = query
        .state
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let entries = notify::log(
        &state.engine,
        query.channel.as_deref(),
        states,
        query.limit.unwrap_or(50),
    )
    .await?;
    Ok(Json(json!({"data": entries})))
}
