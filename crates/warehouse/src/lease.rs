//! Leases: which process syncs which connection, for several processes on one Postgres (and
//! the same code on SQLite, where one process holds them all).
//!
//! A connection's row says when it is next due, who holds it and until when, and an epoch that
//! grows with every claim. A worker claims due rows nobody holds (or whose holder let the lease
//! run out), renews its leases while it works and releases each with its next due time. While
//! a row is held its due time is [`NEVER`] unless something (a webhook's intake) makes it due
//! meanwhile; releasing keeps the earlier of that and the holder's next time, so no such
//! request is lost.
//!
//! Webhook deliveries make a row claimable too: an intake (of this process or another) keeps a
//! delivery and, in the same transaction, stamps the row's `inbox_since` unless it is stamped
//! already, so a burst costs one row update, not one each. A holder applies the inbox and,
//! before giving the row up, clears the stamp and looks once more: a delivery stored before
//! the clear is seen by that look, one stored after stamps the row again.
//! Every
//! batch a holder writes carries its [`Fence`]; the store checks it in the batch's own
//! transaction, so a holder that was paused past its lease and replaced can never commit — its
//! write fails with [`crate::StoreError::Fenced`] and nothing of it lands.

use serde::Serialize;

use crate::Connection;

/// The due time of a held row nothing has asked for since it was claimed.
pub const NEVER: i64 = i64::MAX;

/// A lease a worker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub connection: Connection,
    pub owner: String,
    pub epoch: i64,
    /// Held until this instant (Unix time) unless renewed.
    pub until: i64,
    /// Claimed because a sync was due (or a holder's lease ran out mid-run), not only because
    /// deliveries wait in the inbox.
    pub sync_due: bool,
}

impl Lease {
    /// What the writes made under this lease carry.
    pub fn fence(&self) -> Fence {
        Fence {
            owner: self.owner.clone(),
            epoch: self.epoch,
        }
    }
}

/// The lease a batch is written under: the store commits the batch only while this owner still
/// holds the connection at this epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

/// A connection's row: when it is due, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    pub connection: Connection,
    pub due_at: i64,
    pub owner: Option<String>,
    pub until: Option<i64>,
    pub epoch: i64,
    /// Since when deliveries have waited for a holder to apply them (none: nothing asked).
    pub inbox_since: Option<i64>,
}

/// Whether a batch under `fence` may be committed, given the row's holder and epoch as read in
/// the batch's transaction (`None`: no row); the refusal says who holds it now.
pub(crate) fn judge_fence(
    connection: &Connection,
    fence: &Fence,
    held: Option<(Option<String>, i64)>,
) -> Result<(), crate::StoreError> {
    let refusal = match held {
        Some((Some(owner), epoch)) if owner == fence.owner && epoch == fence.epoch => return Ok(()),
        Some((Some(owner), epoch)) => format!(
            "{} is now held by {owner} (epoch {epoch}), not by {} (epoch {}): the write was not committed",
            connection.label(),
            fence.owner,
            fence.epoch
        ),
        _ => format!(
            "{} has no lease: the write of {} (epoch {}) was not committed",
            connection.label(),
            fence.owner,
            fence.epoch
        ),
    };
    Err(crate::StoreError::Fenced(refusal))
}
