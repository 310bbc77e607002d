//! Webhook intake behind the answer. A verified delivery is kept in the inbox (one durable write,
//! which also stamps the connection's lease row) and answered at once; whichever worker holds
//! the connection's lease — this process or another on the same Postgres — applies what waits
//! through the connection's `Intake` (the one write path: ordering, ties settled by refetching),
//! every write fenced by that lease, and forgets each delivery once applied. The answer's
//! latency so depends on neither refetches nor the rate budget, and no client hang-up can cut
//! an apply short: it runs in a lane's task, never in a handler.
//!
//! Order: deliveries about one object go to one lane and are applied in arrival order; lanes
//! run side by side. A delivery applied but not yet forgotten (a kill between the two) is
//! applied again later and found a duplicate: nothing is lost or written twice.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sm_engine::intake::Outcome;
use sm_warehouse::Connection;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::AppState;

/// Lanes per connection: deliveries of different objects applied side by side.
const LANES: usize = 8;
/// Deliveries read from the inbox at a time.
const ROUND: usize = 512;
/// Deliveries handed to lanes and not yet applied, at most: the rest wait in the inbox.
const IN_LANES_AT_MOST: usize = 4 * ROUND;
/// The longest pause after a failed apply before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The connections this process holds (each with what wakes its inbox's applier), and callers
/// waiting for a delivery's outcome.
#[derive(Default)]
pub struct Inboxes {
    held: parking_lot::Mutex<HashMap<Connection, Arc<Notify>>>,
    waiting: parking_lot::Mutex<HashMap<(Connection, String), oneshot::Sender<&'static str>>>,
}

impl AppState {
    /// Tells whoever applies `connection`'s inbox here that a delivery was kept: its holder in
    /// this process, else this process's scheduler (which claims it when it has room). A worker
    /// elsewhere finds the stamped row by itself.
    pub fn wake_inbox(&self, connection: &Connection) {
        if let Some(notify) = self.inboxes.held.lock().get(connection) {
            notify.notify_one();
            return;
        }
        if self.config.role.works() {
            self.wake_scheduler.notify_one();
        }
    }

    /// How many connections this process holds now.
    pub fn leases_held(&self) -> usize {
        self.inboxes.held.lock().len()
    }

    /// The connections this process holds now.
    pub fn held_connections(&self) -> Vec<Connection> {
        let mut held: Vec<Connection> = self.inboxes.held.lock().keys().cloned().collect();
        held.sort_by_key(|c| c.label());
        held
    }

    /// A receiver of the outcome of the delivery of `event_id`, once applied.
    pub fn outcome_of(
        &self,
        connection: &Connection,
        event_id: &str,
    ) -> oneshot::Receiver<&'static str> {
        let (sender, receiver) = oneshot::channel();
        self.inboxes
            .waiting
            .lock()
            .insert((connection.clone(), event_id.to_owned()), sender);
        receiver
    }

    /// Forgets a caller that stopped waiting.
    pub fn stop_waiting(&self, connection: &Connection, event_id: &str) {
        self.inboxes
            .waiting
            .lock()
            .remove(&(connection.clone(), event_id.to_owned()));
    }

    fn tell_outcome(&self, connection: &Connection, event_id: &str, outcome: &'static str) {
        if let Some(sender) = self
            .inboxes
            .waiting
            .lock()
            .remove(&(connection.clone(), event_id.to_owned()))
        {
            let _ = sender.send(outcome);
        }
    }
}

/// Whether an event's change made a balance transaction (of which no event tells).
fn moves_balance(event: &Value) -> bool {
    let kind = event["type"].as_str().unwrap_or_default();
    // `charge.` takes in `charge.dispute.*` and `charge.refunded`.
    ["charge.", "refund.", "payout.", "topup."]
        .iter()
        .any(|prefix| kind.starts_with(prefix))
}

impl AppState {
    /// Lists `connection`'s balance transactions created since `since` (less a minute, and not
    /// before the last listing began) once `balance_refresh_after` has passed; what asks
    /// meanwhile shares that listing.
    pub fn refresh_balance_soon(self: &Arc<Self>, connection: &Connection, since: i64) {
        let Some(after) = self.config.balance_refresh_after else {
            return;
        };
        // What the last listing saw is not listed again: a backlog of old payment events
        // applied minutes later asks only for what is new since.
        let listed = self.balance_listed.lock().get(connection).copied();
        let since = (since - 60).max(listed.map_or(i64::MIN, |at| at - 60));
        let mut due = self.balance_due.lock();
        if let Some(from) = due.get_mut(connection) {
            *from = (*from).min(since);
            return;
        }
        due.insert(connection.clone(), since);
        let (state, connection) = (self.clone(), connection.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(since) = state.balance_due.lock().remove(&connection) else {
                return;
            };
            let listing_from = sm_engine::now();
            match sm_engine::sync::refresh_balance_transactions(&state.engine, &connection, since)
                .await
            {
                Ok(listed) => {
                    state
                        .balance_listed
                        .lock()
                        .insert(connection.clone(), listing_from);
                    state.metrics.record_balance_refresh(&connection, true);
                    tracing::debug!(account = %connection.label(), listed, "balance transactions listed after payment events");
                }
                Err(error) => {
                    state.metrics.record_balance_refresh(&connection, false);
                    tracing::warn!(account = %connection.label(), error = %error.message, "could not list balance transactions after payment events; the next sync does");
                }
            }
        });
    }
}

/// The metric and answer name of an outcome.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Applied => "applied",
        Outcome::Refetched => "refetched",
        Outcome::Stale => "stale",
        Outcome::Kept => "kept",
        Outcome::Duplicate => "duplicate",
        Outcome::Coalesced => "coalesced",
    }
}

/// The lane of an event: by the object it is about, so that one object's events keep their
/// order.
fn lane_of(event: &Value) -> usize {
    let object = &event["data"]["object"];
    let mut hasher = std::hash::DefaultHasher::new();
    (
        object["object"].as_str().unwrap_or_default(),
        object["id"].as_str().or(event["id"].as_str()),
    )
        .hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}

/// A lane's deliveries gathered by object, each object's in arrival order, objects in the
/// order they first arrived: what one object's deliveries share (one refetch) is done once.
fn by_object(lane: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut groups: Vec<Vec<Entry>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for entry in lane {
        let object = &entry.2["data"]["object"];
        let key = (
            object["object"].as_str().unwrap_or_default().to_owned(),
            object["id"].as_str().unwrap_or(entry.1.as_str()).to_owned(),
        );
        match index.get(&key) {
            Some(&at) => groups[at].push(entry),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![entry]);
            }
        }
    }
    groups
}

/// A delivery as the worker hands it to a lane: its inbox number, event id and event.
type Entry = (i64, String, Value);

/// How long a holder goes on applying deliveries that keep arriving after its sync is done,
/// before it gives the connection up (stamped, so that it is claimed again at once, maybe by
/// another worker): thousands of connections take turns.
const SLICE: Duration = Duration::from_secs(20);
/// How often a holder looks at the inbox when nothing woke it (deliveries kept by another
/// process's intake wake nothing here).
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Applies `lease`'s connection's inbox while it is held: until `sync_done` turns true and the
/// inbox is found empty after the stamp was cleared (true), or until [`SLICE`] after the sync
/// is done with deliveries still arriving (false: the row is left stamped). Lanes are tasks of
/// their own, each fed in arrival order and never waiting for another; what they applied is
/// forgotten in batches. Every write carries the lease's fence.
pub(crate) async fn apply_while_held(
    state: &Arc<AppState>,
    lease: &sm_warehouse::Lease,
    mut sync_done: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let connection = lease.connection.clone();
    let notify = Arc::new(Notify::new());
    state
        .inboxes
        .held
        .lock()
        .insert(connection.clone(), notify.clone());
    let _unregister = Unregister(state.clone(), connection.clone());
    let fence = lease.fence();
    // Dropped with this applier: lanes still retrying a failed apply then stop.
    let (_holding, holder) = tokio::sync::watch::channel(());
    let (applied, mut finished) = mpsc::unbounded_channel::<i64>();
    let lanes: Vec<mpsc::UnboundedSender<Vec<Entry>>> = (0..LANES)
        .map(|_| {
            let (feed, entries) = mpsc::unbounded_channel();
            tokio::spawn(lane(
                state.clone(),
                connection.clone(),
                fence.clone(),
                holder.clone(),
                entries,
                applied.clone(),
            ));
            feed
        })
        .collect();
    // The newest delivery handed to a lane, and how many handed are not yet applied.
    let (mut handed, mut in_lanes) = (0i64, 0usize);
    let mut backoff = Duration::ZERO;
    // Applied deliveries not yet removed from the inbox: removed together.
    let mut done = Vec::new();
    // The stamp was cleared and nothing was found since.
    let mut cleared = false;
    let mut slice_ends: Option<tokio::time::Instant> = None;
    loop {
        while let Ok(seq) = finished.try_recv() {
            done.push(seq);
        }
        if !done.is_empty() {
            in_lanes -= done.len();
            forget(state, &connection, std::mem::take(&mut done)).await;
        }
        if in_lanes == 0 {
            // Everything handed is applied and forgotten: what the inbox holds now waits. On
            // Postgres a delivery numbered below one already handed may commit after it, so
            // the next look starts from the beginning.
            handed = 0;
        }
        let mut read = 0;
        if in_lanes < IN_LANES_AT_MOST {
            let pending = {
                let connection = connection.clone();
                state
                    .engine
                    .store_call(move |store| store.inbox_pending(&connection, handed, ROUND))
                    .await
            };
            match pending {
                Ok(pending) => {
                    backoff = Duration::ZERO;
                    read = pending.len();
                    let mut by_lane: Vec<Vec<Entry>> = vec![Vec::new(); LANES];
                    for entry in pending {
                        handed = handed.max(entry.seq);
                        in_lanes += 1;
                        match serde_json::from_str::<Value>(&entry.body) {
                            Ok(event) => {
                                by_lane[lane_of(&event)].push((entry.seq, entry.event_id, event))
                            }
                            // Verified and parsed before it was kept: this cannot happen, and
                            // must not block the inbox if it does.
                            Err(_) => {
                                let _ = applied.send(entry.seq);
                            }
                        }
                    }
                    for (feed, entries) in lanes.iter().zip(by_lane) {
                        if !entries.is_empty() {
                            let _ = feed.send(entries);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(account = %connection.label(), error = %error.message, "could not read the webhook inbox");
                    backoff = next_backoff(backoff);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        if read > 0 {
            cleared = false;
        }
        if read == ROUND {
            continue;
        }
        if *sync_done.borrow() && in_lanes == 0 && read == 0 {
            if cleared {
                return true;
            }
            // Cleared, then looked at once more (the next round): a delivery kept before the
            // clear is found by that look, one kept after stamps the row again.
            let (held, state_) = (lease.clone(), state.clone());
            match state_
                .engine
                .store_call(move |store| store.lease_inbox_mark(&held, None))
                .await
            {
                Ok(true) => cleared = true,
                // Not held any more: another worker applies the rest.
                Ok(false) => return true,
                Err(error) => {
                    tracing::warn!(account = %connection.label(), error = %error.message, "could not clear the inbox stamp");
                    tokio::time::sleep(next_backoff(Duration::ZERO)).await;
                }
            }
            continue;
        }
        if *sync_done.borrow() {
            let ends = *slice_ends.get_or_insert_with(|| tokio::time::Instant::now() + SLICE);
            if tokio::time::Instant::now() >= ends {
                let (held, state_) = (lease.clone(), state.clone());
                let _ = state_
                    .engine
                    .store_call(move |store| store.lease_inbox_mark(&held, Some(sm_engine::now())))
                    .await;
                return false;
            }
        }
        // Woken by the next delivery, a lane that applied something, the sync's end, or a look
        // now and then (an intake elsewhere wakes nothing here).
        tokio::select! {
            _ = notify.notified() => {}
            Some(seq) = finished.recv() => done.push(seq),
            _ = sync_done.changed() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

/// Takes a connection off this process's held list when its applier ends (or is dropped).
struct Unregister(Arc<AppState>, Connection);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.inboxes.held.lock().remove(&self.1);
    }
}

/// Removes applied deliveries from the inbox. One applied and not removed (this fails, or
/// the process stops first) is applied again later and found a duplicate.
async fn forget(state: &AppState, connection: &Connection, seqs: Vec<i64>) {
    let owned = connection.clone();
    let forgotten = state
        .engine
        .store_call(move |store| store.inbox_remove(&owned, &seqs))
        .await;
    if let Err(error) = forgotten {
        tracing::warn!(account = %connection.label(), error = %error.message, "could not clear applied deliveries from the inbox");
    }
}

/// One lane: applies what it is handed, in order, each object's deliveries waiting together as
/// one group; an apply that fails is tried again (with back-off) before anything after it.
async fn lane(
    state: Arc<AppState>,
    connection: Connection,
    fence: sm_warehouse::Fence,
    holder: tokio::sync::watch::Receiver<()>,
    mut entries: mpsc::UnboundedReceiver<Vec<Entry>>,
    applied: mpsc::UnboundedSender<i64>,
) {
    while let Some(mut waiting) = entries.recv().await {
        // What else was handed meanwhile joins, so that one object's deliveries group.
        while let Ok(more) = entries.try_recv() {
            waiting.extend(more);
        }
        for group in by_object(waiting) {
            let events: Vec<Value> = group.iter().map(|(.., event)| event.clone()).collect();
            let mut backoff = Duration::ZERO;
            loop {
                let outcomes = match state.intake(&connection).await {
                    Ok(intake) => {
                        intake.fence_with(Some(fence.clone()));
                        intake.accept_group(&events).await
                    }
                    Err(error) => Err(error),
                };
                match outcomes {
                    Ok(outcomes) => {
                        for ((seq, event_id, event), outcome) in group.iter().zip(outcomes) {
                            if outcome != Outcome::Duplicate && moves_balance(event) {
                                state.refresh_balance_soon(
                                    &connection,
                                    event["created"].as_i64().unwrap_or_else(sm_engine::now),
                                );
                            }
                            let name = outcome_name(outcome);
                            state.metrics.record_webhook(&connection, name);
                            state.tell_outcome(&connection, event_id, name);
                            let _ = applied.send(*seq);
                        }
                        break;
                    }
                    // The holder is gone (its lease was lost or the process stops): whoever
                    // holds the connection next applies these (they stay in the inbox).
                    Err(_) if holder.has_changed().is_err() => return,
                    Err(error) => {
                        // This object's later deliveries wait behind it.
                        state.metrics.record_webhook(&connection, "apply_failed");
                        tracing::warn!(account = %connection.label(), event = %group[0].1, error = %error.message, "stored deliveries could not be applied yet; they are tried again");
                        backoff = next_backoff(backoff);
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }
    }
}

fn next_backoff(now: Duration) -> Duration {
    (now * 2).clamp(Duration::from_millis(500), MAX_BACKOFF)
}

/// At start: connections with deliveries kept and not yet applied (the process stopped before
/// it applied them) are made due, so that a worker claims them first.
pub async fn resume(state: &Arc<AppState>) {
    match state.engine.store_call(|store| store.inbox_depths()).await {
        Ok(depths) => {
            let at = sm_engine::now();
            for depth in depths {
                tracing::info!(account = %depth.connection.label(), waiting = depth.waiting, "webhook deliveries stored before the restart wait to be applied");
                let connection = depth.connection.clone();
                let marked = state
                    .engine
                    .store_call(move |store| store.lease_due(&connection, at))
                    .await;
                if let Err(error) = marked {
                    tracing::warn!(error = %error.message, "could not mark a connection due");
                }
            }
        }
        Err(error) => {
            tracing::warn!(error = %error.message, "could not read the webhook inbox at start")
        }
    }
}
