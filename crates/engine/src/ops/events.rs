//! The events kept in the mirror: the account's history, beyond Stripe's 30 days.

use sm_warehouse::{Connection, EventRow};

use crate::{Engine, EngineError};

/// Events stored after storage position `after` (`(position, event)`, in storage order: a late
/// delivery of an old event comes after the events stored before it), at most `limit`.
pub async fn stored_after(
    engine: &Engine,
    connection: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, EventRow)>, EngineError> {
    let connection = connection.clone();
    engine
        .store_call(move |store| store.events_since(&connection, after, limit))
        .await
}

/// The newest `limit` events of a connection, newest first.
pub async fn latest(
    engine: &Engine,
    connection: &Connection,
    limit: usize,
) -> Result<Vec<EventRow>, EngineError> {
    let connection = connection.clone();
    engine
        .store_call(move |store| store.events(&connection, limit))
        .await
}
