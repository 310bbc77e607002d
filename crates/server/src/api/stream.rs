//! `GET /api/v1/connections/{connection}/events/stream`: the connection's events as they are
//! stored, as Server-Sent Events. The mirror's events table is the stream: whatever writes to
//! it (webhooks, syncs, another process on the same database) shows up, in the order it was
//! stored, so a late delivery of an old event shows too. Each message's data is a Stripe event
//! and its `id` the event's storage position: a client that reconnects with `Last-Event-ID`
//! misses nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use sm_engine::ops::events;
use sm_engine::{EngineError, ErrorCode};
use sm_warehouse::Connection;

use super::ApiResult;
use crate::AppState;

/// How often the events table is looked at.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Events sent per look, at most.
const BATCH: usize = 500;
/// Live streams open at once, over every token.
pub const MAX_STREAMS: usize = 64;
/// A comment sent when nothing happened, so that proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Counts a stream while it is open.
/// One of the [`MAX_STREAMS`] live streams, given back when dropped.
pub(crate) struct Slot(Arc<AppState>);

/// A live stream's slot, when fewer than [`MAX_STREAMS`] are open.
pub(crate) fn take_slot(state: &Arc<AppState>) -> Option<Slot> {
    if state.open_streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        state.open_streams.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Slot(state.clone()))
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a stream is, and what it still has to send.
struct Tail {
    state: Arc<AppState>,
    connection: Connection,
    position: i64,
    pending: std::collections::VecDeque<Event>,
    ended: bool,
    _slot: Slot,
}

pub async fn events_stream(
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let record = state.engine.resolve(&reference).await?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    EngineError::invalid(
                        "Last-Event-ID must be the id of a message this stream sent (a whole number)",
                    )
                })?,
        ),
        None => None,
    };
    let Some(slot) = take_slot(&state) else {
        return Err(EngineError::new(
            ErrorCode::Busy,
            format!("{MAX_STREAMS} live streams are open already"),
        )
        .hint("close one, or poll GET …/events with starting_after")
        .into());
    };
    // Without Last-Event-ID, only what is stored from now on.
    let position = match resume {
        Some(position) => position,
        None => events::position_now(&state.engine, &record.connection).await?,
    };
    let tail = Tail {
        state: state.clone(),
        connection: record.connection.clone(),
        position,
        pending: Default::default(),
        ended: false,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        loop {
            if let Some(event) = tail.pending.pop_front() {
                return Some((Ok::<Event, std::convert::Infallible>(event), tail));
            }
            if tail.ended {
                return None;
            }
            tokio::time::sleep(POLL_EVERY).await;
            match events::stored_after(&tail.state.engine, &tail.connection, tail.position, BATCH)
                .await
            {
                Ok(newer) => {
                    for (at, event) in newer {
                        tail.position = at;
                        tail.pending
                            .push_back(Event::default().id(at.to_string()).data(event.data));
                    }
                }
                Err(error) => {
                    // Said once, then the stream ends; the client reconnects with its
                    // Last-Event-ID and misses nothing.
                    tracing::warn!(error = %error, "an event stream stopped");
                    tail.pending
                        .push_back(Event::default().event("error").data(error.message));
                    tail.ended = true;
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
