//! Webhook intake: one delivered event, verified elsewhere, applied through the same apply path
//! as a sync — but its order is unknown (Stripe delivers late, twice, out of order), so an object
//! only moves forward: a newer event applies, an older one is skipped, a tie is settled by
//! fetching the object. The event and its changes are written in one transaction before the
//! delivery is acknowledged.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sm_warehouse::{Connection, Guard};

use crate::Engine;
use crate::apply::{Applier, Rows, event_change, follow_ups, foreign_version, refetch};
use crate::catalog::RESOURCES;
use crate::connect::{PermissionReport, event_row};
use crate::error::EngineError;
use crate::sync::{Quiet, Run};

/// Applies deliveries for one connection. Cheap to share; made once per connection.
pub struct Intake {
    run: Run,
    readable: HashSet<&'static str>,
    /// Deliveries about one object are decided and written one at a time (striped by object):
    /// two same-second events decided side by side would both find the older stored version,
    /// and the strict guard would then keep whichever was written first, maybe the older one.
    locks: Vec<tokio::sync::Mutex<()>>,
}

/// Stripes of [`Intake::locks`].
const LOCK_STRIPES: usize = 64;

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored, and its object moved forward.
    Applied,
    /// Stored; a tie with the stored version was settled by fetching the object.
    Refetched,
    /// Stored; its object was already newer (a late or repeated delivery).
    Stale,
    /// Stored; the mirror holds no such object kind (or may not read it).
    Kept,
    /// Seen before: nothing changed.
    Duplicate,
    /// Stored; it waited together with a delivery of the same object that needed a refetch,
    /// and that one refetch (made after all of them happened) covers it too.
    Coalesced,
}

impl Intake {
    pub async fn open(engine: &Engine, connection: &Connection) -> Result<Intake, EngineError> {
        let record = engine.account(connection).await?;
        let key = engine.open_key(&record)?;
        let client = engine.client_for(&record, &key)?;
        let report = PermissionReport::from_json(&record.permissions);
        let readable = RESOURCES
            .iter()
            .filter(|r| report.can_read(r.table))
            .map(|r| r.table)
            .collect();
        Ok(Intake {
            run: Run::new(engine, connection, client, Arc::new(Quiet)).with_live_events(),
            readable,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// Writes from now on under `fence`: the lease of the worker applying this connection's
    /// inbox, so that a holder replaced while paused commits nothing more.
    pub fn fence_with(&self, fence: Option<sm_warehouse::Fence>) {
        self.run.set_fence(fence);
    }

    /// Stores and applies deliveries about one object that waited together, in the order
    /// given (their arrival). When one of them ties with the stored version (or was rendered in
    /// another API version), Stripe is asked once for the object as it is now — which is after
    /// every one of them happened — and that answer is written with all their events in one
    /// transaction, instead of one refetch per delivery: in a burst, every update of an
    /// invoice within one second ties with the one before it.
    pub async fn accept_group(&self, events: &[Value]) -> Result<Vec<Outcome>, EngineError> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        let change = event_change(first, &self.readable);
        let Some((resource, _, _, parent)) = change else {
            return self.accept_each(events).await;
        };
        if events.len() == 1 {
            return self.accept_each(events).await;
        }
        let id = first["data"]["object"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let _one_at_a_time = self.locks[self.stripe(resource.table, &id)].lock().await;
        let run = &self.run;
        let (connection, ids, lookup) = (
            run.connection.clone(),
            events
                .iter()
                .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>(),
            (resource.table, id.clone()),
        );
        let (seen, stored) = run
            .read_by_key(move |store| {
                let mut seen = Vec::with_capacity(ids.len());
                for id in &ids {
                    seen.push(store.has_event(&connection, id)?);
                }
                let stored = store
                    .versions(&connection, lookup.0, std::slice::from_ref(&lookup.1))?
                    .into_values()
                    .next();
                Ok((seen, stored))
            })
            .await?;
        // Walk the new ones as one at a time would, on the versions they would leave: does
        // any of them need Stripe's word?
        let mut version_now = stored.as_ref().map(|s| (s.version, s.deleted));
        let mut tie = false;
        for (event, seen) in events.iter().zip(&seen) {
            let Some((_, version, deleted, _)) =
                event_change(event, &self.readable).filter(|_| !seen)
            else {
                continue;
            };
            match version_now {
                Some((now, _)) if version < now => {}
                Some((now, now_deleted)) if version == now && deleted => {
                    if !now_deleted {
                        version_now = Some((version, true));
                    }
                }
                Some((now, _)) if version == now => {
                    tie = true;
                    break;
                }
                _ if !deleted && foreign_version(event, &run.client.config().api_version) => {
                    tie = true;
                    break;
                }
                _ => version_now = Some((version, deleted)),
            }
        }
        if !tie {
            drop(_one_at_a_time);
            return self.accept_each(events).await;
        }
        let fresh: Vec<&Value> = events
            .iter()
            .zip(&seen)
            .filter(|(_, seen)| !**seen)
            .map(|(event, _)| event)
            .collect();
        let newest = fresh
            .iter()
            .filter_map(|e| event_change(e, &self.readable).map(|(_, version, ..)| version))
            .max()
            .unwrap_or_default();
        let applier = Applier {
            run,
            readable: &self.readable,
        };
        let known: HashSet<String> = stored.map(|_| id.clone()).into_iter().collect();
        let mut rows = Rows::default();
        let current = refetch(
            &applier,
            resource,
            &first["data"]["object"],
            parent,
            &known,
            newest,
            &mut rows,
        )
        .await?
        .map(|(current, _)| current);
        // What follows from the object as Stripe now shows it (see `accept`).
        let seen_now: Vec<Value> = fresh
            .iter()
            .map(|event| {
                let mut seen = (*event).clone();
                if let Some(current) = &current {
                    seen["data"]["object"] = current.clone();
                }
                seen
            })
            .collect();
        let mut fetched = Rows::default();
        follow_ups(run, &applier, &seen_now, &mut fetched).await?;
        let mut batch = rows.into_batch(Guard::AtLeast);
        let fetched = fetched.into_batch(Guard::AtLeast);
        batch.rows.extend(fetched.rows);
        batch.deletions.extend(fetched.deletions);
        batch.events = fresh.iter().map(|e| event_row(e)).collect();
        run.apply(batch).await?;
        let mut refetched = false;
        Ok(seen
            .iter()
            .map(|seen| {
                if *seen {
                    Outcome::Duplicate
                } else if refetched {
                    Outcome::Coalesced
                } else {
                    refetched = true;
                    Outcome::Refetched
                }
            })
            .collect())
    }

    /// [`Intake::accept`] for each event in turn.
    async fn accept_each(&self, events: &[Value]) -> Result<Vec<Outcome>, EngineError> {
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(self.accept(event).await?);
        }
        Ok(outcomes)
    }

    /// The lock stripe of one object.
    fn stripe(&self, table: &str, id: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (table, Some(id)).hash(&mut hasher);
        (hasher.finish() % LOCK_STRIPES as u64) as usize
    }

    /// Stores one event and applies it.
    pub async fn accept(&self, event: &Value) -> Result<Outcome, EngineError> {
        let run = &self.run;
        let applier = Applier {
            run,
            readable: &self.readable,
        };
        let mut rows = Rows::default();
        // Objects the event implies without carrying (fresh reads of Stripe, versioned by its
        // clock): written when at least as new as the stored copy, whatever guard the event's
        // own object needs. Under the strict guard, an invoice item read in the same second as
        // its `invoiceitem.created` was skipped and kept `invoice: null`.
        let mut fetched = Rows::default();
        let mut guard = Guard::Newer;
        let mut outcome = Outcome::Kept;
        let change = event_change(event, &self.readable);
        let _one_at_a_time = match &change {
            Some((resource, ..)) => Some(
                self.locks[self.stripe(
                    resource.table,
                    event["data"]["object"]["id"].as_str().unwrap_or_default(),
                )]
                .lock()
                .await,
            ),
            None => None,
        };
        // One read, under the object's lock: whether the event is stored already (stored means
        // applied, in one transaction: a redelivery needs no work and no refetch), and the
        // stored version of its object (the ordering decision, and "is it known").
        let (connection, event_id) = (
            run.connection.clone(),
            event["id"].as_str().unwrap_or_default().to_owned(),
        );
        let lookup = change.as_ref().map(|(resource, ..)| {
            (
                resource.table,
                event["data"]["object"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        });
        let (seen, stored) = run
            .read_by_key(move |store| {
                if store.has_event(&connection, &event_id)? {
                    return Ok((true, None));
                }
                let stored = match lookup {
                    Some((table, id)) => store
                        .versions(&connection, table, std::slice::from_ref(&id))?
                        .into_values()
                        .next(),
                    None => None,
                };
                Ok((false, stored))
            })
            .await?;
        if seen {
            return Ok(Outcome::Duplicate);
        }
        if let Some((resource, version, deleted, parent)) = change {
            let object = &event["data"]["object"];
            let mut refetched: Option<Value> = None;
            let id = object["id"].as_str().unwrap_or_default().to_owned();
            let known: HashSet<String> = stored.map(|_| id.clone()).into_iter().collect();
            match stored {
                Some(stored) if version < stored.version => outcome = Outcome::Stale,
                Some(stored) if version == stored.version && deleted && stored.deleted => {
                    outcome = Outcome::Stale;
                }
                Some(stored) if version == stored.version && deleted => {
                    // Nothing follows a deletion: in a same-second tie it is the last word
                    // (under the strict guard it would be skipped and the object stay alive).
                    outcome = Outcome::Applied;
                    guard = Guard::AtLeast;
                    applier
                        .collect(
                            resource,
                            applier.object(resource, object).into_iter().collect(),
                            version,
                            true,
                            &mut rows,
                            &known,
                            parent,
                        )
                        .await?;
                }
                _ if !deleted
                    && (stored.is_some_and(|stored| version == stored.version)
                        || foreign_version(event, &run.client.config().api_version)) =>
                {
                    // Same second (which came last is unknown), or rendered in another API
                    // version than the mirror keeps (the event is kept as sent): Stripe knows
                    // the object as it is now, in the mirror's version. Ask it.
                    outcome = Outcome::Refetched;
                    guard = Guard::AtLeast;
                    refetched = refetch(
                        &applier, resource, object, parent, &known, version, &mut rows,
                    )
                    .await?
                    .map(|(current, _)| current);
                }
                _ => {
                    outcome = Outcome::Applied;
                    applier
                        .collect(
                            resource,
                            applier.object(resource, object).into_iter().collect(),
                            version,
                            deleted,
                            &mut rows,
                            &known,
                            parent,
                        )
                        .await?;
                }
            }
            if outcome != Outcome::Stale {
                // After a refetch, what Stripe answered is what was written (and its version
                // makes the remaining same-second events stale): its implications are due, not
                // those of the event's older snapshot — else an invoice refetched on a repeated
                // `invoice.created` (no lines yet) never linked the items its later lines name.
                let seen = match refetched {
                    Some(current) => {
                        let mut seen = event.clone();
                        seen["data"]["object"] = current;
                        std::borrow::Cow::Owned(seen)
                    }
                    None => std::borrow::Cow::Borrowed(event),
                };
                follow_ups(run, &applier, std::slice::from_ref(&*seen), &mut fetched).await?;
            }
        }
        let mut batch = rows.into_batch(guard);
        let fetched = fetched.into_batch(Guard::AtLeast);
        batch.rows.extend(fetched.rows);
        batch.deletions.extend(fetched.deletions);
        batch.events = vec![event_row(event)];
        let counts = run.apply(batch).await?;
        if counts.new_events == 0
            && outcome != Outcome::Refetched
            && counts
                .tables
                .values()
                .all(|c| c.inserted + c.updated + c.deleted == 0)
        {
            return Ok(Outcome::Duplicate);
        }
        Ok(outcome)
    }
}
