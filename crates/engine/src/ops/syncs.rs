//! Syncs: run one now, the history of runs, and recording an interruption.

use sm_warehouse::{Connection, RunRecord};

pub use crate::sync::{Progress, Quiet, SyncOptions, SyncReport, Trigger, mark_interrupted, sync};
use crate::{Engine, EngineError};

/// A connection's runs, newest first.
pub async fn runs(
    engine: &Engine,
    connection: &Connection,
    limit: usize,
) -> Result<Vec<RunRecord>, EngineError> {
    let connection = connection.clone();
    engine
        .store_call(move |store| store.runs(&connection, limit))
        .await
}

/// One run of a connection, with its per-table counts and, while it runs, its progress.
pub async fn run(
    engine: &Engine,
    connection: &Connection,
    id: i64,
) -> Result<RunRecord, EngineError> {
    let owned = connection.clone();
    engine
        .store_call(move |store| store.run(&owned, id))
        .await?
        .ok_or_else(|| {
            EngineError::new(
                crate::ErrorCode::NotFound,
                format!("no run {id} of {}", connection.label()),
            )
        })
}
