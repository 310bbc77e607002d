//! Notification bookkeeping, kept beside the mirror: channels (where messages go; their URLs
//! and passwords sealed by the engine), rules (which events go to which channel), the queue of
//! events waiting to be matched against the rules — written by [`crate::Store::apply`] in the
//! same transaction as the events themselves — and deliveries, one row per (event, rule,
//! channel) whatever the duplicates, replays and restarts (a unique key says so).

use serde::Serialize;

use crate::{Connection, EventRow};

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelRecord {
    /// `ch_…`, made by the engine.
    pub id: String,
    /// The name people use for it; unique.
    pub name: String,
    /// `slack`, `discord`, `teams`, `webhook`, `ntfy`, `email`.
    pub kind: String,
    /// Where it sends, for people: the host and a masked path, never a secret.
    pub target_masked: String,
    /// Its settings with their secrets (JSON), sealed by the engine's vault.
    #[serde(skip)]
    pub config_sealed: Vec<u8>,
    /// `untested`, `ok` or `failing`.
    pub status: String,
    /// Why it fails, in words (what the receiver said).
    pub status_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which events go to a channel; the engine owns what `spec` says (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRecord {
    /// `rule_…`, made by the engine.
    pub id: String,
    /// Unique.
    pub name: String,
    pub channel_id: String,
    pub spec: String,
    pub created_at: i64,
}

/// An event that arrived live (a webhook, or an incremental sync's read of new events) and
/// waits to be matched against the rules.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub connection: Connection,
    /// When it was stored (Unix time).
    pub queued_at: i64,
    pub event: EventRow,
}

/// A delivery to create (once: an existing one with the same event, rule and channel stays).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub connection: Connection,
    pub event_id: String,
    pub rule_id: String,
    pub channel_id: String,
    /// `pending` (send when due) or `digest` (wait for the rule's next digest at `due_at`).
    pub state: String,
    pub due_at: i64,
    pub created_at: i64,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub connection: Connection,
    pub event_id: String,
    pub event_type: String,
    pub event_created: i64,
    /// The event's JSON (empty when the event is gone with its connection).
    #[serde(skip)]
    pub event_data: String,
    pub rule_id: String,
    pub channel_id: String,
    /// `pending`, `digest`, `sent`, `rolled_up` (folded into a roll-up or digest message that
    /// was sent), `failed` (given up: the reason is in `last_error`) or `canceled` (its channel
    /// or rule was removed).
    pub state: String,
    /// Sending attempts made.
    pub attempts: i64,
    /// When it is next tried (or, for a digest, sent).
    pub due_at: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A delivery's new state after an attempt.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub id: i64,
    pub state: String,
    pub attempts: i64,
    pub due_at: i64,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
}

/// What [`crate::Store::deliveries`] lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub limit: usize,
    /// Only this channel's.
    pub channel_id: Option<String>,
    /// Only deliveries in these states (none: every state).
    pub states: Vec<String>,
    /// Only those created at or after this time.
    pub since: Option<i64>,
}

/// Delivery states that are finished: never tried again.
pub const FINISHED_STATES: &[&str] = &["sent", "rolled_up", "failed", "canceled"];
