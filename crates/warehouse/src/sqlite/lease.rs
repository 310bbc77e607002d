//! The SQLite side of leases (`crate::lease`). One process holds a SQLite mirror (the runner
//! lock), so claims need no skipping of locked rows: each runs in a write transaction of its
//! own, and the fence is checked in the transaction of the batch it guards.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error};
use crate::lease::{Fence, Lease, LeaseRow, NEVER, judge_fence};
use crate::{Connection, Result};

/// Refuses a batch whose writer no longer holds the connection at the fence's epoch.
pub(super) fn check_fence(tx: &rusqlite::Connection, c: &Connection, fence: &Fence) -> Result<()> {
    let held: Option<(Option<String>, i64)> = tx
        .prepare_cached(
            "SELECT owner, epoch FROM sync_leases WHERE account_id = ?1 AND livemode = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![c.account_id, c.livemode], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(db_error)?;
    judge_fence(c, fence, held)
}

/// Stamps `c`'s lease row with `at` as the time deliveries began to wait, unless stamped
/// already (made when it has none, due at once), in the transaction keeping a delivery.
pub(super) fn stamp_inbox(tx: &rusqlite::Connection, c: &Connection, at: i64) -> Result<()> {
    let stamped = tx
        .prepare_cached(
            "UPDATE sync_leases SET inbox_since = ?3 WHERE account_id = ?1 AND livemode = ?2 AND inbox_since IS NULL",
        )
        .and_then(|mut s| s.execute(params![c.account_id, c.livemode, at]))
        .map_err(db_error)?;
    if stamped == 0 {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO sync_leases (account_id, livemode, due_at, inbox_since) VALUES (?1, ?2, ?3, ?3)",
        )
        .and_then(|mut s| s.execute(params![c.account_id, c.livemode, at]))
        .map_err(db_error)?;
    }
    Ok(())
}

fn lease_row(r: &rusqlite::Row) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        connection: Connection {
            account_id: r.get(0)?,
            livemode: r.get(1)?,
        },
        due_at: r.get(2)?,
        owner: r.get(3)?,
        until: r.get(4)?,
        epoch: r.get(5)?,
        inbox_since: r.get(6)?,
    })
}

impl SqliteStore {
    pub(super) fn lease_due_row(&self, c: &Connection, at: i64) -> Result<()> {
        self.writer()?
            .prepare_cached(
                "INSERT INTO sync_leases (account_id, livemode, due_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, livemode) DO UPDATE SET due_at = min(due_at, excluded.due_at)",
            )
            .and_then(|mut s| s.execute(params![c.account_id, c.livemode, at]))
            .map(|_| ())
            .map_err(db_error)
    }

    pub(super) fn lease_claim_rows(
        &self,
        owner: &str,
        now: i64,
        hold_for: i64,
        at_most: usize,
    ) -> Result<Vec<Lease>> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let until = now + hold_for;
        let claimed = {
            let mut due = tx
                .prepare_cached(
                    "SELECT account_id, livemode, (due_at <= ?1 OR owner IS NOT NULL) FROM sync_leases
                     WHERE (owner IS NULL AND (due_at <= ?1 OR inbox_since IS NOT NULL)) OR (owner IS NOT NULL AND lease_until < ?1)
                     ORDER BY CASE WHEN owner IS NULL THEN min(due_at, coalesce(inbox_since, due_at)) ELSE lease_until END LIMIT ?2",
                )
                .map_err(db_error)?;
            let due: Vec<(Connection, bool)> = due
                .query_map(params![now, at_most as i64], |r| {
                    Ok((
                        Connection {
                            account_id: r.get(0)?,
                            livemode: r.get(1)?,
                        },
                        r.get(2)?,
                    ))
                })
                .and_then(|rows| rows.collect())
                .map_err(db_error)?;
            let mut claim = tx
                .prepare_cached(
                    "UPDATE sync_leases SET owner = ?3, lease_until = ?4, epoch = epoch + 1,
                       due_at = CASE WHEN ?6 THEN ?5 ELSE due_at END
                     WHERE account_id = ?1 AND livemode = ?2 RETURNING epoch",
                )
                .map_err(db_error)?;
            let mut claimed = Vec::with_capacity(due.len());
            for (connection, sync_due) in due {
                let epoch: i64 = claim
                    .query_row(
                        params![
                            connection.account_id,
                            connection.livemode,
                            owner,
                            until,
                            NEVER,
                            sync_due
                        ],
                        |r| r.get(0),
                    )
                    .map_err(db_error)?;
                claimed.push(Lease {
                    connection,
                    owner: owner.to_owned(),
                    epoch,
                    until,
                    sync_due,
                });
            }
            claimed
        };
        tx.commit().map_err(db_error)?;
        Ok(claimed)
    }

    pub(super) fn lease_renew_row(&self, lease: &Lease, until: i64) -> Result<bool> {
        self.writer()?
            .prepare_cached(
                "UPDATE sync_leases SET lease_until = ?5
                 WHERE account_id = ?1 AND livemode = ?2 AND owner = ?3 AND epoch = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    lease.connection.account_id,
                    lease.connection.livemode,
                    lease.owner,
                    lease.epoch,
                    until
                ])
            })
            .map(|n| n > 0)
            .map_err(db_error)
    }

    pub(super) fn lease_release_row(&self, lease: &Lease, due_at: i64) -> Result<bool> {
        self.writer()?
            .prepare_cached(
                "UPDATE sync_leases SET owner = NULL, lease_until = NULL, due_at = min(due_at, ?5)
                 WHERE account_id = ?1 AND livemode = ?2 AND owner = ?3 AND epoch = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    lease.connection.account_id,
                    lease.connection.livemode,
                    lease.owner,
                    lease.epoch,
                    due_at
                ])
            })
            .map(|n| n > 0)
            .map_err(db_error)
    }

    pub(super) fn lease_inbox_mark_row(&self, lease: &Lease, since: Option<i64>) -> Result<bool> {
        self.writer()?
            .prepare_cached(
                "UPDATE sync_leases SET inbox_since = ?5
                 WHERE account_id = ?1 AND livemode = ?2 AND owner = ?3 AND epoch = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    lease.connection.account_id,
                    lease.connection.livemode,
                    lease.owner,
                    lease.epoch,
                    since
                ])
            })
            .map(|n| n > 0)
            .map_err(db_error)
    }

    pub(super) fn lease_rows(&self) -> Result<Vec<LeaseRow>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached("SELECT account_id, livemode, due_at, owner, lease_until, epoch, inbox_since FROM sync_leases ORDER BY account_id, livemode")
            .map_err(db_error)?;
        select
            .query_map([], lease_row)
            .and_then(|rows| rows.collect())
            .map_err(db_error)
    }
}
