//! `/api/v1/connections/{connection}/objects/{table}`: mirrored objects in Stripe's list shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::Value;
use sm_engine::EngineError;
use sm_engine::ops::objects;
use sm_warehouse::PageQuery;

use super::ApiResult;
use crate::AppState;

fn integer(name: &str, value: &str) -> ApiResult<i64> {
    value.parse().map_err(|_| {
        EngineError::invalid(format!("{name} takes a unix time, not `{value}`")).into()
    })
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    Path((reference, table)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let record = state.engine.resolve(&reference).await?;
    let mut query = PageQuery {
        limit: 10,
        ..Default::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "limit" => {
                query.limit = value.parse().map_err(|_| {
                    EngineError::invalid(format!("limit must be 1 to 100, not `{value}`"))
                })?
            }
            "starting_after" => query.starting_after = Some(value.clone()),
            "created[gte]" => query.created_gte = Some(integer(name, value)?),
            "created[lt]" => query.created_lt = Some(integer(name, value)?),
            "created[gt]" => query.created_gte = Some(integer(name, value)? + 1),
            "created[lte]" => query.created_lt = Some(integer(name, value)? + 1),
            _ => query.filters.push((name.clone(), value.clone())),
        }
    }
    let (data, has_more) = objects::page(&state.engine, &record.connection, &table, query).await?;
    Ok(super::list_page(
        &data,
        has_more,
        &format!(
            "/api/v1/connections/{}/objects/{table}",
            record.connection.label()
        ),
    ))
}

pub async fn one(
    State(state): State<Arc<AppState>>,
    Path((reference, table, id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let record = state.engine.resolve(&reference).await?;
    Ok(Json(
        objects::get(&state.engine, &record.connection, &table, &id).await?,
    ))
}
