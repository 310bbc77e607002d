//! A user's read-only SQL on the mirror, inside the store's boundary (`sm_warehouse::sandbox`:
//! the mirror's tables only, harmless functions, time, memory, row and byte limits). A query
//! the database refuses is the user's to fix: it comes back as bad input with "did you mean"
//! and the list of tables; one that reaches past the boundary or a limit says which.

use sm_warehouse::{QueryResult, ValuesResult};

use crate::{Engine, EngineError};

/// Column names and rows of typed JSON values.
pub async fn values(engine: &Engine, sql: &str) -> Result<ValuesResult, EngineError> {
    let sql = sql.to_owned();
    let secret = engine.vault.derive(READER_PURPOSE);
    engine
        .store_call(move |store| store.sandboxed_query(&sql, &secret))
        .await
}

/// What the Postgres reader role's password is derived for.
const READER_PURPOSE: &str = "postgres sql reader role";

/// Column names and rows as text (`None` for NULL).
pub async fn text(engine: &Engine, sql: &str) -> Result<QueryResult, EngineError> {
    values(engine, sql).await.map(sm_warehouse::as_text)
}
