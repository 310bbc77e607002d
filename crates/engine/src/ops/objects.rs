//! Mirrored objects as Stripe shows them: a table's page, newest first, with typed-column
//! filters, a `created` range and a cursor; one object by id.

use serde_json::Value;
use sm_warehouse::{Connection, PageQuery};

use crate::{Engine, EngineError, ErrorCode};

/// The table named `table` (a mirrored resource's), or bad input listing them.
fn checked(table: &str) -> Result<&'static str, EngineError> {
    crate::catalog::resource(table)
        .map(|r| r.table)
        .ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no table named {table}")).hint(format!(
                "the tables: {}",
                crate::catalog::RESOURCES
                    .iter()
                    .map(|r| r.table)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A page of objects (as Stripe sent them, each one's JSON text as stored: an answer sends it on
/// without parsing it) and whether more follow.
pub async fn page(
    engine: &Engine,
    connection: &Connection,
    table: &str,
    query: PageQuery,
) -> Result<(Vec<String>, bool), EngineError> {
    let table = checked(table)?;
    if !(1..=100).contains(&query.limit) {
        return Err(EngineError::invalid(format!(
            "limit must be 1 to 100, not {}",
            query.limit
        )));
    }
    let connection = connection.clone();
    let (rows, more) = engine
        .store_read(move |store| store.page_raw(&connection, table, &query))
        .await?;
    Ok((rows.into_iter().map(|r| r.data).collect(), more))
}

/// One object by id (a deleted one too, with `deleted` set as the mirror knows it).
pub async fn get(
    engine: &Engine,
    connection: &Connection,
    table: &str,
    id: &str,
) -> Result<Value, EngineError> {
    let table = checked(table)?;
    let (owned, ids) = (connection.clone(), vec![id.to_owned()]);
    let row = engine
        .store_read(move |store| store.rows_by_id(&owned, table, &ids))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            EngineError::new(
                ErrorCode::NotFound,
                format!("no {table} object {id} in the mirror"),
            )
        })?;
    let mut data = row.data;
    if row.deleted {
        data["deleted"] = Value::Bool(true);
    }
    Ok(data)
}

/// Each mirrored table's rows for a connection: (table, live rows, deleted rows), in the
/// catalog's order, as counted at the end of its last sync (counted now when it has not
/// finished one).
pub async fn counts(
    engine: &Engine,
    connection: &Connection,
) -> Result<Vec<(&'static str, u64, u64)>, EngineError> {
    let connection = connection.clone();
    engine
        // Counting is a scan per table: off the async threads.
        .store_call(move |store| {
            let kept: Option<std::collections::BTreeMap<String, (u64, u64)>> = store
                .state(&connection, crate::ROWS_BY_TABLE)?
                .and_then(|text| serde_json::from_str(&text).ok());
            crate::catalog::RESOURCES
                .iter()
                .map(|r| match kept.as_ref().and_then(|k| k.get(r.table)) {
                    Some((live, deleted)) => Ok((r.table, *live, *deleted)),
                    None => store
                        .count(&connection, r.table)
                        .map(|(live, deleted)| (r.table, live, deleted)),
                })
                .collect()
        })
        .await
}
