//! The events kept in the mirror: the account's history, beyond Stripe's 30 days.

use sm_warehouse::{Connection, EventQuery, EventRow};

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

/// The storage position of the connection's last stored event: a tail starting here sees only
/// what is stored from now on.
pub async fn position_now(engine: &Engine, connection: &Connection) -> Result<i64, EngineError> {
    let connection = connection.clone();
    engine
        .store_call(move |store| store.last_event_position(&connection))
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

/// Event types a page may filter by at once.
pub const MAX_TYPES: usize = 20;

/// A page of a connection's events, newest first, and whether more follow: of the given types
/// (`invoice.paid`, or `invoice.*` for every invoice event; none: all), after `starting_after`.
pub async fn page(
    engine: &Engine,
    connection: &Connection,
    mut query: EventQuery,
) -> Result<(Vec<EventRow>, bool), EngineError> {
    if !(1..=100).contains(&query.limit) {
        return Err(EngineError::invalid(format!(
            "limit must be 1 to 100, not {}",
            query.limit
        )));
    }
    if query.types.len() > MAX_TYPES {
        return Err(EngineError::invalid(format!(
            "at most {MAX_TYPES} event types at once, not {}",
            query.types.len()
        )));
    }
    for t in &query.types {
        let name = t.strip_suffix(".*").unwrap_or(t);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !valid {
            return Err(EngineError::invalid(format!(
                "`{t}` is not an event type: write it as Stripe does (`invoice.paid`), or `invoice.*` for every invoice event"
            )));
        }
    }
    let limit = query.limit;
    query.limit += 1;
    let connection = connection.clone();
    let mut events = engine
        .store_call(move |store| store.events_page(&connection, &query))
        .await?;
    let more = events.len() > limit;
    events.truncate(limit);
    Ok((events, more))
}
