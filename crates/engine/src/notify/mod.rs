//! Notifications: chosen live events from any connected account, sent to Slack, Discord,
//! Microsoft Teams, ntfy, email or a signed webhook — once per (event, rule, channel), paced per
//! channel, never for a backfill or for old news.
//!
//! - [`rule`]: which events go where, and when (quiet hours, digests)
//! - [`message`]: what a message says, channel-neutral
//! - [`channel`]: each channel kind's format, secrets, pace and answers
//! - [`deliver`]: the notifier `serve` runs (plan, send, retry, roll up)
//!
//! The events themselves are queued by the store's apply, in the transaction that stores them
//! (`Batch::notify`), so nothing arrives without being considered.

pub mod channel;
pub mod deliver;
mod email;
pub mod message;
pub mod rule;

pub use channel::{ChannelKind, ChannelOptions, ChannelSettings};
pub use deliver::{Notifier, NotifyConfig, NotifyStats};
pub use rule::RuleSpec;
