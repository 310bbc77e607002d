//! `POST /api/v1/sql`: a read-only query on the mirror, rows as JSON objects (numbers stay
//! numbers), at most [`MAX_ROWS`] of them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiResult, parse_body};
use crate::AppState;

/// Rows answered at most; `truncated` says when there were more.
pub const MAX_ROWS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    query: String,
}

pub async fn query(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: Query = parse_body(&body)?;
    let (names, rows) = sm_engine::ops::query::values(&state.engine, &request.query).await?;
    let truncated = rows.len() > MAX_ROWS;
    let data: Vec<Value> = rows
        .into_iter()
        .take(MAX_ROWS)
        .map(|row| Value::Object(names.iter().cloned().zip(row).collect()))
        .collect();
    Ok(Json(
        json!({"columns": names, "rows": data, "truncated": truncated}),
    ))
}
