//! The SQLite side of the notification bookkeeping (`crate::notify`): channels, rules, the
//! queue of live events and the deliveries.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error, now};
use crate::notify::{
    ChannelRecord, DeliveryQuery, DeliveryRecord, DeliveryUpdate, NewDelivery, QueuedEvent,
    RuleRecord,
};
use crate::{Connection, EventRow, Result, StoreError};

const CHANNEL_COLUMNS: &str =
    "id, name, kind, target_masked, config_sealed, status, status_message, created_at, updated_at";

fn channel(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChannelRecord> {
    Ok(ChannelRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        target_masked: r.get(3)?,
        config_sealed: r.get(4)?,
        status: r.get(5)?,
        status_message: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// The columns [`delivery`] reads, from `notify_deliveries d LEFT JOIN events e`.
const DELIVERY_COLUMNS: &str = "d.id, d.account_id, d.livemode, d.event_id, coalesce(e.type, ''), coalesce(e.created, 0), coalesce(e.data, ''), d.rule_id, d.channel_id, d.state, d.attempts, d.due_at, d.created_at, d.finished_at, d.last_error";
const DELIVERY_FROM: &str =
    "notify_deliveries d LEFT JOIN events e ON e.account_id = d.account_id AND e.id = d.event_id";

fn delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        connection: Connection {
            account_id: r.get(1)?,
            livemode: r.get(2)?,
        },
        event_id: r.get(3)?,
        event_type: r.get(4)?,
        event_created: r.get(5)?,
        event_data: r.get(6)?,
        rule_id: r.get(7)?,
        channel_id: r.get(8)?,
        state: r.get(9)?,
        attempts: r.get(10)?,
        due_at: r.get(11)?,
        created_at: r.get(12)?,
        finished_at: r.get(13)?,
        last_error: r.get(14)?,
    })
}

fn renamed(error: StoreError, what: String) -> StoreError {
    match error {
        StoreError::Duplicate(_) => StoreError::Duplicate(what),
        other => other,
    }
}

impl SqliteStore {
    pub(super) fn insert_channel_row(&self, c: &ChannelRecord) -> Result<()> {
        let db = self.writer()?;
        db.execute(
            &format!("INSERT INTO notify_channels ({CHANNEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![c.id, c.name, c.kind, c.target_masked, c.config_sealed, c.status, c.status_message, c.created_at, c.updated_at],
        )
        .map_err(|e| renamed(db_error(e), format!("a channel named {}", c.name)))?;
        Ok(())
    }

    pub(super) fn update_channel_row(&self, c: &ChannelRecord) -> Result<()> {
        let db = self.writer()?;
        db.execute(
            "UPDATE notify_channels SET name = ?2, kind = ?3, target_masked = ?4, config_sealed = ?5, status = ?6, status_message = ?7, updated_at = ?8 WHERE id = ?1",
            params![c.id, c.name, c.kind, c.target_masked, c.config_sealed, c.status, c.status_message, c.updated_at],
        )
        .map_err(|e| renamed(db_error(e), format!("a channel named {}", c.name)))?;
        Ok(())
    }

    pub(super) fn channel_rows(&self) -> Result<Vec<ChannelRecord>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM notify_channels ORDER BY name"
            ))
            .map_err(db_error)?;
        select
            .query_map([], channel)
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_error)
    }

    /// Deletes `id` from `table` and cancels the unfinished deliveries whose `column` is `id`.
    fn delete_with_deliveries(&self, table: &str, column: &str, id: &str) -> Result<bool> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let existed = tx
            .execute(&format!("DELETE FROM {table} WHERE id = ?1"), params![id])
            .map_err(db_error)?
            > 0;
        if table == "notify_channels" {
            tx.execute(
                "DELETE FROM notify_rules WHERE channel_id = ?1",
                params![id],
            )
            .map_err(db_error)?;
        }
        tx.execute(
            &format!("UPDATE notify_deliveries SET state = 'canceled', finished_at = ?2 WHERE {column} = ?1 AND state IN ('pending', 'digest')"),
            params![id, now()],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(existed)
    }

    pub(super) fn delete_channel_row(&self, id: &str) -> Result<bool> {
        self.delete_with_deliveries("notify_channels", "channel_id", id)
    }

    pub(super) fn delete_rule_row(&self, id: &str) -> Result<bool> {
        self.delete_with_deliveries("notify_rules", "rule_id", id)
    }

    pub(super) fn insert_rule_row(&self, r: &RuleRecord) -> Result<()> {
        let db = self.writer()?;
        db.execute(
            "INSERT INTO notify_rules (id, name, channel_id, spec, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.id, r.name, r.channel_id, r.spec, r.created_at],
        )
        .map_err(|e| renamed(db_error(e), format!("a rule named {}", r.name)))?;
        Ok(())
    }

    pub(super) fn rule_rows(&self) -> Result<Vec<RuleRecord>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached(
                "SELECT id, name, channel_id, spec, created_at FROM notify_rules ORDER BY name",
            )
            .map_err(db_error)?;
        select
            .query_map([], |r| {
                Ok(RuleRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    channel_id: r.get(2)?,
                    spec: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_error)
    }

    pub(super) fn queued_rows(&self, limit: usize) -> Result<Vec<QueuedEvent>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached(
                "SELECT q.account_id, q.livemode, q.queued_at, e.id, e.type, e.created, e.object_id, e.data
                 FROM notify_queue q JOIN events e ON e.account_id = q.account_id AND e.id = q.event_id
                 ORDER BY q.queued_at, q.rowid LIMIT ?1",
            )
            .map_err(db_error)?;
        select
            .query_map(params![limit as i64], |r| {
                Ok(QueuedEvent {
                    connection: Connection {
                        account_id: r.get(0)?,
                        livemode: r.get(1)?,
                    },
                    queued_at: r.get(2)?,
                    event: EventRow {
                        id: r.get(3)?,
                        event_type: r.get(4)?,
                        created: r.get(5)?,
                        object_id: r.get(6)?,
                        data: r.get(7)?,
                    },
                })
            })
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_error)
    }

    pub(super) fn plan_rows(
        &self,
        matched: &[(Connection, String)],
        deliveries: &[NewDelivery],
    ) -> Result<u64> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let mut created = 0u64;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO notify_deliveries (account_id, livemode, event_id, rule_id, channel_id, state, due_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(db_error)?;
            for d in deliveries {
                created += insert
                    .execute(params![
                        d.connection.account_id,
                        d.connection.livemode,
                        d.event_id,
                        d.rule_id,
                        d.channel_id,
                        d.state,
                        d.due_at,
                        d.created_at
                    ])
                    .map_err(db_error)? as u64;
            }
            let mut take = tx
                .prepare_cached("DELETE FROM notify_queue WHERE account_id = ?1 AND livemode = ?2 AND event_id = ?3")
                .map_err(db_error)?;
            for (c, event_id) in matched {
                take.execute(params![c.account_id, c.livemode, event_id])
                    .map_err(db_error)?;
            }
        }
        tx.commit().map_err(db_error)?;
        Ok(created)
    }

    pub(super) fn due_rows(&self, now: i64, limit: usize) -> Result<Vec<DeliveryRecord>> {
        let db = self.reader();
        let mut select = db
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.state IN ('pending', 'digest') AND d.due_at <= ?1 ORDER BY d.id LIMIT ?2"
            ))
            .map_err(db_error)?;
        select
            .query_map(params![now, limit as i64], delivery)
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_error)
    }

    pub(super) fn update_delivery_rows(&self, updates: &[DeliveryUpdate]) -> Result<()> {
        let mut db = self.writer()?;
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        {
            let mut update = tx
                .prepare_cached("UPDATE notify_deliveries SET state = ?2, attempts = ?3, due_at = ?4, finished_at = ?5, last_error = ?6 WHERE id = ?1")
                .map_err(db_error)?;
            for u in updates {
                update
                    .execute(params![
                        u.id,
                        u.state,
                        u.attempts,
                        u.due_at,
                        u.finished_at,
                        u.last_error
                    ])
                    .map_err(db_error)?;
            }
        }
        tx.commit().map_err(db_error)
    }

    pub(super) fn delivery_rows(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>> {
        let db = self.reader();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE 1 = 1");
        if let Some(channel) = &query.channel_id {
            values.push(channel.clone().into());
            sql.push_str(&format!(" AND d.channel_id = ?{}", values.len()));
        }
        if !query.states.is_empty() {
            let mut marks = Vec::new();
            for state in &query.states {
                values.push(state.clone().into());
                marks.push(format!("?{}", values.len()));
            }
            sql.push_str(&format!(" AND d.state IN ({})", marks.join(", ")));
        }
        if let Some(since) = query.since {
            values.push(since.into());
            sql.push_str(&format!(" AND d.created_at >= ?{}", values.len()));
        }
        values.push((query.limit as i64).into());
        sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ?{}", values.len()));
        let mut select = db.prepare(&sql).map_err(db_error)?;
        select
            .query_map(rusqlite::params_from_iter(values), delivery)
            .map_err(db_error)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_error)
    }

    pub(super) fn next_due(&self) -> Result<Option<i64>> {
        let db = self.reader();
        db.query_row(
            "SELECT min(due_at) FROM notify_deliveries WHERE state IN ('pending', 'digest')",
            [],
            |r| r.get(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(db_error)
    }
}
