//! Read-only SQL on the mirror. A query the database refuses is the user's to fix: it comes
//! back as bad input with "did you mean" and the list of tables.

use sm_warehouse::{QueryResult, ValuesResult};

use crate::{Engine, EngineError};

/// Column names and rows of typed JSON values.
pub async fn values(engine: &Engine, sql: &str) -> Result<ValuesResult, EngineError> {
    let sql = sql.to_owned();
    engine
        .store_call(move |store| store.query_values(&sql))
        .await
}

/// Column names and rows as text (`None` for NULL).
pub async fn text(engine: &Engine, sql: &str) -> Result<QueryResult, EngineError> {
    let sql = sql.to_owned();
    engine.store_call(move |store| store.query(&sql)).await
}
