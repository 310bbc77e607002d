//! The Postgres side of leases (`crate::lease`), for any number of processes: a claim takes
//! due rows with `FOR UPDATE SKIP LOCKED` (two workers never wait for or take the same row),
//! and a batch's fence is read `FOR SHARE` in the batch's transaction, so a claim cannot take
//! the connection over between the check and the commit.

use std::collections::HashMap;

use postgres::{Row, Statement};

use super::{Failure, PostgresStore, Step, prepared};
use crate::lease::{Fence, Lease, LeaseRow, NEVER, judge_fence};
use crate::{Connection, Result};

/// Refuses a batch whose writer no longer holds the connection at the fence's epoch.
pub(super) fn check_fence(
    tx: &mut postgres::Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    c: &Connection,
    fence: &Fence,
) -> Step<()> {
    let read = prepared(
        statements,
        tx,
        "SELECT owner, epoch FROM sync_leases WHERE account_id = $1 AND livemode = $2 FOR SHARE",
    )?;
    let held = tx
        .query_opt(&read, &[&c.account_id, &c.livemode])?
        .map(|r| (r.get::<_, Option<String>>(0), r.get::<_, i64>(1)));
    judge_fence(c, fence, held).map_err(Failure::Store)
}

/// Stamps `c`'s lease row with `at` as the time deliveries began to wait, unless stamped
/// already (made when it has none, due at once), in the transaction keeping a delivery. A
/// stamped row is not written again: a burst of deliveries does not queue on its row lock.
pub(super) fn stamp_inbox(
    tx: &mut postgres::Transaction<'_>,
    statements: &mut HashMap<String, Statement>,
    c: &Connection,
    at: i64,
) -> Step<()> {
    let stamp = prepared(
        statements,
        tx,
        "UPDATE sync_leases SET inbox_since = $3 WHERE account_id = $1 AND livemode = $2 AND inbox_since IS NULL",
    )?;
    if tx.execute(&stamp, &[&c.account_id, &c.livemode, &at])? == 0 {
        let make = prepared(
            statements,
            tx,
            "INSERT INTO sync_leases (account_id, livemode, due_at, inbox_since) VALUES ($1, $2, $3, $3) ON CONFLICT DO NOTHING",
        )?;
        tx.execute(&make, &[&c.account_id, &c.livemode, &at])?;
    }
    Ok(())
}

fn lease_row(r: &Row) -> std::result::Result<LeaseRow, postgres::Error> {
    Ok(LeaseRow {
        connection: Connection {
            account_id: r.try_get(0)?,
            livemode: r.try_get(1)?,
        },
        due_at: r.try_get(2)?,
        owner: r.try_get(3)?,
        until: r.try_get(4)?,
        epoch: r.try_get(5)?,
        inbox_since: r.try_get(6)?,
    })
}

impl PostgresStore {
    pub(super) fn lease_due_row(&self, c: &Connection, at: i64) -> Result<()> {
        self.write(|tx, statements| {
            let upsert = prepared(
                statements,
                tx,
                "INSERT INTO sync_leases (account_id, livemode, due_at) VALUES ($1, $2, $3)
                 ON CONFLICT (account_id, livemode) DO UPDATE SET due_at = least(sync_leases.due_at, excluded.due_at)",
            )?;
            tx.execute(&upsert, &[&c.account_id, &c.livemode, &at])?;
            Ok(())
        })
    }

    pub(super) fn lease_claim_rows(
        &self,
        owner: &str,
        now: i64,
        hold_for: i64,
        at_most: usize,
    ) -> Result<Vec<Lease>> {
        let until = now + hold_for;
        let limit = at_most as i64;
        self.write(|tx, statements| {
            let claim = prepared(
                statements,
                tx,
                "WITH due AS (
                   SELECT account_id, livemode, (due_at <= $1 OR owner IS NOT NULL) AS sync_due FROM sync_leases
                   WHERE (owner IS NULL AND (due_at <= $1 OR inbox_since IS NOT NULL)) OR (owner IS NOT NULL AND lease_until < $1)
                   ORDER BY CASE WHEN owner IS NULL THEN least(due_at, coalesce(inbox_since, due_at)) ELSE lease_until END
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
                 )
                 UPDATE sync_leases l SET owner = $3, lease_until = $4, epoch = l.epoch + 1,
                   due_at = CASE WHEN due.sync_due THEN $5 ELSE l.due_at END
                 FROM due WHERE l.account_id = due.account_id AND l.livemode = due.livemode
                 RETURNING l.account_id, l.livemode, l.epoch, due.sync_due",
            )?;
            let rows = tx.query(&claim, &[&now, &limit, &owner, &until, &NEVER])?;
            rows.iter()
                .map(|r| {
                    Ok(Lease {
                        connection: Connection {
                            account_id: r.try_get(0)?,
                            livemode: r.try_get(1)?,
                        },
                        owner: owner.to_owned(),
                        epoch: r.try_get(2)?,
                        until,
                        sync_due: r.try_get(3)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()
                .map_err(Failure::from)
        })
    }

    pub(super) fn lease_renew_row(&self, lease: &Lease, until: i64) -> Result<bool> {
        self.write(|tx, statements| {
            let renew = prepared(
                statements,
                tx,
                "UPDATE sync_leases SET lease_until = $5
                 WHERE account_id = $1 AND livemode = $2 AND owner = $3 AND epoch = $4",
            )?;
            let c = &lease.connection;
            Ok(tx.execute(
                &renew,
                &[
                    &c.account_id,
                    &c.livemode,
                    &lease.owner,
                    &lease.epoch,
                    &until,
                ],
            )? > 0)
        })
    }

    pub(super) fn lease_release_row(&self, lease: &Lease, due_at: i64) -> Result<bool> {
        self.write(|tx, statements| {
            let release = prepared(
                statements,
                tx,
                "UPDATE sync_leases SET owner = NULL, lease_until = NULL, due_at = least(due_at, $5)
                 WHERE account_id = $1 AND livemode = $2 AND owner = $3 AND epoch = $4",
            )?;
            let c = &lease.connection;
            Ok(tx.execute(
                &release,
                &[
                    &c.account_id,
                    &c.livemode,
                    &lease.owner,
                    &lease.epoch,
                    &due_at,
                ],
            )? > 0)
        })
    }

    pub(super) fn lease_inbox_mark_row(&self, lease: &Lease, since: Option<i64>) -> Result<bool> {
        self.write(|tx, statements| {
            let mark = prepared(
                statements,
                tx,
                "UPDATE sync_leases SET inbox_since = $5
                 WHERE account_id = $1 AND livemode = $2 AND owner = $3 AND epoch = $4",
            )?;
            let c = &lease.connection;
            Ok(tx.execute(
                &mark,
                &[
                    &c.account_id,
                    &c.livemode,
                    &lease.owner,
                    &lease.epoch,
                    &since,
                ],
            )? > 0)
        })
    }

    pub(super) fn lease_rows(&self) -> Result<Vec<LeaseRow>> {
        self.read(|client, _| {
            client
                .query(
                    "SELECT account_id, livemode, due_at, owner, lease_until, epoch, inbox_since FROM sync_leases ORDER BY account_id, livemode",
                    &[],
                )?
                .iter()
                .map(lease_row)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Failure::from)
        })
    }
}
