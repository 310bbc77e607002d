//! Syncs: run one now, the history of runs, and recording an interruption.

use sm_warehouse::{Connection, RunRecord};

pub use crate::sync::{Progress, Quiet, SyncOptions, SyncReport, mark_interrupted, sync};
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
