//! The Postgres side of the notification bookkeeping (`crate::notify`): channels, rules, the
//! queue of live events and the deliveries.

use postgres::Row;

use super::{Failure, PostgresStore, now, prepared};
use crate::notify::{
    ChannelRecord, DeliveryQuery, DeliveryRecord, DeliveryUpdate, NewDelivery, QueuedEvent,
    RuleRecord,
};
use crate::{Connection, EventRow, Result, StoreError};

const CHANNEL_COLUMNS: &str =
    "id, name, kind, target_masked, config_sealed, status, status_message, created_at, updated_at";

fn channel(r: &Row) -> std::result::Result<ChannelRecord, postgres::Error> {
    Ok(ChannelRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        kind: r.try_get(2)?,
        target_masked: r.try_get(3)?,
        config_sealed: r.try_get(4)?,
        status: r.try_get(5)?,
        status_message: r.try_get(6)?,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}

/// The columns [`delivery`] reads, from `notify_deliveries d LEFT JOIN events e`.
const DELIVERY_COLUMNS: &str = "d.id, d.account_id, d.livemode, d.event_id, coalesce(e.type, ''), coalesce(e.created, 0), coalesce(e.data::text, ''), d.rule_id, d.channel_id, d.state, d.attempts, d.due_at, d.created_at, d.finished_at, d.last_error";
const DELIVERY_FROM: &str =
    "notify_deliveries d LEFT JOIN events e ON e.account_id = d.account_id AND e.id = d.event_id";

fn delivery(r: &Row) -> std::result::Result<DeliveryRecord, postgres::Error> {
    Ok(DeliveryRecord {
        id: r.try_get(0)?,
        connection: Connection {
            account_id: r.try_get(1)?,
            livemode: r.try_get(2)?,
        },
        event_id: r.try_get(3)?,
        event_type: r.try_get(4)?,
        event_created: r.try_get(5)?,
        event_data: r.try_get(6)?,
        rule_id: r.try_get(7)?,
        channel_id: r.try_get(8)?,
        state: r.try_get(9)?,
        attempts: r.try_get(10)?,
        due_at: r.try_get(11)?,
        created_at: r.try_get(12)?,
        finished_at: r.try_get(13)?,
        last_error: r.try_get(14)?,
    })
}

fn renamed<T>(result: Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    result.map_err(|e| match e {
        StoreError::Duplicate(_) => StoreError::Duplicate(what()),
        other => other,
    })
}

fn all<T>(
    rows: Vec<Row>,
    each: impl Fn(&Row) -> std::result::Result<T, postgres::Error>,
) -> std::result::Result<Vec<T>, Failure> {
    rows.iter()
        .map(each)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Failure::from)
}

impl PostgresStore {
    pub(super) fn insert_channel_row(&self, c: &ChannelRecord) -> Result<()> {
        renamed(
            self.write(|tx, _| {
                tx.execute(
                    &format!("INSERT INTO notify_channels ({CHANNEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                    &[&c.id, &c.name, &c.kind, &c.target_masked, &c.config_sealed, &c.status, &c.status_message, &c.created_at, &c.updated_at],
                )?;
                Ok(())
            }),
            || format!("a channel named {}", c.name),
        )
    }

    pub(super) fn update_channel_row(&self, c: &ChannelRecord) -> Result<()> {
        renamed(
            self.write(|tx, _| {
                tx.execute(
                    "UPDATE notify_channels SET name = $2, kind = $3, target_masked = $4, config_sealed = $5, status = $6, status_message = $7, updated_at = $8 WHERE id = $1",
                    &[&c.id, &c.name, &c.kind, &c.target_masked, &c.config_sealed, &c.status, &c.status_message, &c.updated_at],
                )?;
                Ok(())
            }),
            || format!("a channel named {}", c.name),
        )
    }

    pub(super) fn channel_rows(&self) -> Result<Vec<ChannelRecord>> {
        self.read(|client, _| {
            all(
                client.query(
                    &format!("SELECT {CHANNEL_COLUMNS} FROM notify_channels ORDER BY name"),
                    &[],
                )?,
                channel,
            )
        })
    }

    /// Deletes `id` from `table` and cancels the unfinished deliveries whose `column` is `id`.
    fn delete_with_deliveries(&self, table: &str, column: &str, id: &str) -> Result<bool> {
        self.write(|tx, _| {
            let existed = tx.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&id])? > 0;
            if table == "notify_channels" {
                tx.execute("DELETE FROM notify_rules WHERE channel_id = $1", &[&id])?;
            }
            tx.execute(
                &format!("UPDATE notify_deliveries SET state = 'canceled', finished_at = $2 WHERE {column} = $1 AND state IN ('pending', 'digest')"),
                &[&id, &now()],
            )?;
            Ok(existed)
        })
    }

    pub(super) fn delete_channel_row(&self, id: &str) -> Result<bool> {
        self.delete_with_deliveries("notify_channels", "channel_id", id)
    }

    pub(super) fn delete_rule_row(&self, id: &str) -> Result<bool> {
        self.delete_with_deliveries("notify_rules", "rule_id", id)
    }

    pub(super) fn insert_rule_row(&self, r: &RuleRecord) -> Result<()> {
        renamed(
            self.write(|tx, _| {
                tx.execute(
                    "INSERT INTO notify_rules (id, name, channel_id, spec, created_at) VALUES ($1, $2, $3, $4, $5)",
                    &[&r.id, &r.name, &r.channel_id, &r.spec, &r.created_at],
                )?;
                Ok(())
            }),
            || format!("a rule named {}", r.name),
        )
    }

    pub(super) fn rule_rows(&self) -> Result<Vec<RuleRecord>> {
        self.read(|client, _| {
            all(
                client.query(
                    "SELECT id, name, channel_id, spec, created_at FROM notify_rules ORDER BY name",
                    &[],
                )?,
                |r| {
                    Ok(RuleRecord {
                        id: r.try_get(0)?,
                        name: r.try_get(1)?,
                        channel_id: r.try_get(2)?,
                        spec: r.try_get(3)?,
                        created_at: r.try_get(4)?,
                    })
                },
            )
        })
    }

    pub(super) fn queued_rows(&self, limit: usize) -> Result<Vec<QueuedEvent>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                "SELECT q.account_id, q.livemode, q.queued_at, e.id, e.type, e.created, e.object_id, e.data::text
                 FROM notify_queue q JOIN events e ON e.account_id = q.account_id AND e.id = q.event_id
                 ORDER BY q.queued_at, q.seq LIMIT $1",
            )?;
            all(client.query(&select, &[&(limit as i64)])?, |r| {
                Ok(QueuedEvent {
                    connection: Connection {
                        account_id: r.try_get(0)?,
                        livemode: r.try_get(1)?,
                    },
                    queued_at: r.try_get(2)?,
                    event: EventRow {
                        id: r.try_get(3)?,
                        event_type: r.try_get(4)?,
                        created: r.try_get(5)?,
                        object_id: r.try_get(6)?,
                        data: r.try_get(7)?,
                    },
                })
            })
        })
    }

    pub(super) fn plan_rows(
        &self,
        matched: &[(Connection, String)],
        deliveries: &[NewDelivery],
    ) -> Result<u64> {
        self.write(|tx, statements| {
            let insert = prepared(
                statements,
                tx,
                "INSERT INTO notify_deliveries (account_id, livemode, event_id, rule_id, channel_id, state, due_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )?;
            let mut created = 0;
            for d in deliveries {
                created += tx.execute(
                    &insert,
                    &[
                        &d.connection.account_id,
                        &d.connection.livemode,
                        &d.event_id,
                        &d.rule_id,
                        &d.channel_id,
                        &d.state,
                        &d.due_at,
                        &d.created_at,
                    ],
                )?;
            }
            let take = prepared(
                statements,
                tx,
                "DELETE FROM notify_queue WHERE account_id = $1 AND livemode = $2 AND event_id = $3",
            )?;
            for (c, event_id) in matched {
                tx.execute(&take, &[&c.account_id, &c.livemode, event_id])?;
            }
            Ok(created)
        })
    }

    pub(super) fn due_rows(&self, now: i64, limit: usize) -> Result<Vec<DeliveryRecord>> {
        self.read(|client, statements| {
            let select = prepared(
                statements,
                client,
                &format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.state IN ('pending', 'digest') AND d.due_at <= $1 ORDER BY d.id LIMIT $2"),
            )?;
            all(client.query(&select, &[&now, &(limit as i64)])?, delivery)
        })
    }

    pub(super) fn update_delivery_rows(&self, updates: &[DeliveryUpdate]) -> Result<()> {
        self.write(|tx, statements| {
            let update = prepared(
                statements,
                tx,
                "UPDATE notify_deliveries SET state = $2, attempts = $3, due_at = $4, finished_at = $5, last_error = $6 WHERE id = $1",
            )?;
            for u in updates {
                tx.execute(
                    &update,
                    &[
                        &u.id,
                        &u.state,
                        &u.attempts,
                        &u.due_at,
                        &u.finished_at,
                        &u.last_error,
                    ],
                )?;
            }
            Ok(())
        })
    }

    pub(super) fn delivery_rows(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>> {
        self.read(|client, _| {
            let limit = query.limit as i64;
            let rows = client.query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM}
                     WHERE ($1::text IS NULL OR d.channel_id = $1)
                       AND (cardinality($2::text[]) = 0 OR d.state = ANY($2))
                       AND ($3::bigint IS NULL OR d.created_at >= $3)
                     ORDER BY d.id DESC LIMIT $4"
                ),
                &[&query.channel_id, &query.states, &query.since, &limit],
            )?;
            all(rows, delivery)
        })
    }

    pub(super) fn next_due(&self) -> Result<Option<i64>> {
        self.read(|client, _| {
            Ok(client
                .query_one(
                    "SELECT min(due_at) FROM notify_deliveries WHERE state IN ('pending', 'digest')",
                    &[],
                )?
                .try_get(0)?)
        })
    }
}
