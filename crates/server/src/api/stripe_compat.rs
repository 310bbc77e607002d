//! Stripe-compatible reads from the mirror: `GET /stripe/v1/<resource>` and
//! `/stripe/v1/<resource>/<id>` answer in Stripe's own shapes, so an app points its Stripe
//! SDK's reads at the mirror (no rate limit, no round trip to Stripe). The SDK's API key is a
//! mirror token; `Stripe-Account: acct_…` (or `acct_…:live`) chooses the connection. Lists take
//! Stripe's `limit`, `starting_after`, `ending_before`, `created[…]` and filters (`customer`,
//! `status`…, the typed columns); subscriptions leave canceled ones out unless `status` says
//! otherwise, as Stripe does. Errors have Stripe's shape, so SDKs raise their own exceptions.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sm_engine::catalog::{RESOURCES, Resource, Source};
use sm_engine::{EngineError, ErrorCode};
use sm_warehouse::PageQuery;

use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/stripe/v1/{*path}", get(read))
}

/// An error in Stripe's shape: `{"error": {"type", "message", "code"?, "param"?}}`.
fn stripe_error(status: StatusCode, kind: &str, message: String, code: Option<&str>) -> Response {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (status, Json(json!({"error": error}))).into_response()
}

fn from_engine(error: EngineError) -> Response {
    let status =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code) = match error.code {
        ErrorCode::Unauthorized => ("invalid_request_error", None),
        ErrorCode::NotFound => ("invalid_request_error", Some("resource_missing")),
        ErrorCode::InvalidInput => ("invalid_request_error", Some("parameter_invalid")),
        _ => ("api_error", None),
    };
    let message = match &error.hint {
        Some(hint) => format!("{} ({hint})", error.message),
        None => error.message,
    };
    stripe_error(status, kind, message, code)
}

/// The resource a path names, and the id it retrieves (if any) and the customer it is listed
/// under (for `customers/{id}/tax_ids` and the like).
fn route(path: &str) -> Option<(&'static Resource, Option<String>, Option<String>)> {
    let path = path.trim_matches('/');
    for resource in RESOURCES {
        match resource.source {
            Source::List => {
                let collection = resource.path.trim_start_matches("/v1/");
                if path == collection {
                    return Some((resource, None, None));
                }
                if let Some(id) = path
                    .strip_prefix(collection)
                    .and_then(|r| r.strip_prefix('/'))
                    && !id.contains('/')
                {
                    return Some((resource, Some(id.to_owned()), None));
                }
            }
            Source::PerParent { segment, .. } => {
                let parts: Vec<&str> = path.split('/').collect();
                if let ["customers", customer, s, rest @ ..] = parts.as_slice()
                    && *s == segment
                    && rest.len() <= 1
                {
                    return Some((
                        resource,
                        rest.first().map(|id| (*id).to_owned()),
                        Some((*customer).to_owned()),
                    ));
                }
            }
            Source::Embedded { .. } => {}
        }
    }
    None
}

async fn read(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // The SDK's API key is a mirror token.
    if let Err(error) = super::token_of(&state, &headers).await {
        return from_engine(if error.code == ErrorCode::Unauthorized {
            EngineError::new(
                ErrorCode::Unauthorized,
                "Invalid API Key provided: use a token from `stripe-mirror token create` as the API key",
            )
        } else {
            error
        });
    }
    match answer(
        &state,
        &path,
        &headers,
        query.as_deref().unwrap_or_default(),
    )
    .await
    {
        Ok(answer) => answer,
        Err(error) => from_engine(error),
    }
}

async fn answer(
    state: &AppState,
    path: &str,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response, EngineError> {
    let account = headers
        .get("stripe-account")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let record = match account {
        Some(account) => state.engine.resolve(&account).await?,
        None => {
            let all = state.engine.store_call(|store| store.accounts()).await?;
            match all.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(EngineError::invalid(
                        "name the connection with the Stripe-Account header (acct_…, or acct_…:live)",
                    ));
                }
            }
        }
    };
    let (resource, id, customer) = route(path).ok_or_else(|| {
        EngineError::new(
            ErrorCode::NotFound,
            format!("Unrecognized request URL (GET: /v1/{path}): the mirror answers reads of the resources it keeps"),
        )
    })?;
    let connection = record.connection;
    if let Some(id) = id {
        let object = sm_engine::ops::objects::get(&state.engine, &connection, resource.table, &id)
            .await
            .map_err(|e| {
                if e.code == ErrorCode::NotFound {
                    EngineError::new(
                        ErrorCode::NotFound,
                        format!("No such {}: '{id}'", resource.object),
                    )
                } else {
                    e
                }
            })?;
        if object["deleted"] == json!(true) && resource.table != "customers" {
            return Err(EngineError::new(
                ErrorCode::NotFound,
                format!("No such {}: '{id}'", resource.object),
            ));
        }
        return Ok(Json(object).into_response());
    }
    let mut page = PageQuery {
        limit: 10,
        ..Default::default()
    };
    if let Some(customer) = customer {
        page.filters.push(("customer".into(), customer));
    }
    let mut status_given = false;
    for (name, value) in form_pairs(query) {
        let bad = |what: &str| EngineError::invalid(format!("Invalid {what}: {value}"));
        match name.as_str() {
            "limit" => page.limit = value.parse().map_err(|_| bad("integer"))?,
            "starting_after" => page.starting_after = Some(value),
            "ending_before" => page.ending_before = Some(value),
            "created" => {
                let at: i64 = value.parse().map_err(|_| bad("timestamp"))?;
                page.created_gte = Some(at);
                page.created_lt = Some(at + 1);
            }
            "created[gte]" => page.created_gte = Some(value.parse().map_err(|_| bad("timestamp"))?),
            "created[gt]" => {
                page.created_gte = Some(value.parse::<i64>().map_err(|_| bad("timestamp"))? + 1)
            }
            "created[lt]" => page.created_lt = Some(value.parse().map_err(|_| bad("timestamp"))?),
            "created[lte]" => {
                page.created_lt = Some(value.parse::<i64>().map_err(|_| bad("timestamp"))? + 1)
            }
            name if name.starts_with("expand") => {}
            "status" if resource.table == "subscriptions" && value == "all" => status_given = true,
            _ => {
                status_given |= name == "status";
                page.filters.push((name, value));
            }
        }
    }
    if resource.table == "subscriptions" && !status_given {
        page.exclude = Some(("status".into(), "canceled".into()));
    }
    let (data, has_more) =
        sm_engine::ops::objects::page(&state.engine, &connection, resource.table, page).await?;
    Ok(super::list_page(
        &data,
        has_more,
        &format!("/v1/{}", path.trim_matches('/')),
    ))
}

/// `a=1&b=x%20y` as pairs, percent-decoded.
pub(crate) fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 3 <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
