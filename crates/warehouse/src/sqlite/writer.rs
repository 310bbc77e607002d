//! The SQLite store's writer: one thread that takes every batch queued for the mirror and
//! writes them together, in one transaction per round (group commit).
//!
//! A commit writes every page it touched to the log, so a hundred small commits cost far more
//! than one big one. Callers queue their batches and are told the outcome after the commit:
//! a webhook's request waits on a channel instead of holding a thread, and no caller waits
//! for the connection's lock in turn (that convoy cost a fifth of the intake's CPU in thread
//! wake-ups). While one round is written the next one gathers in the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::{db_error, write_batch};
use crate::{Batch, Connection, Counts, Result, StoreError};

/// A round stops taking jobs at this many rows (memory of the open transaction, and how long
/// its first caller waits).
const ROUND_MAX_ROWS: usize = 20_000;

/// What a caller is told once its batches are committed (or not).
pub(super) type Done = Box<dyn FnOnce(Result<Vec<Counts>>) + Send>;

/// Batches of one caller, written whole or not at all.
pub(super) struct Job {
    pub(super) connection: Connection,
    pub(super) batches: Vec<Batch>,
    /// Webhook deliveries to keep in the inbox (event id, when received, body), written before
    /// the batches; how many were new is added to the first batch's `new_events`. Kept through
    /// the writer so that a burst of deliveries shares commits instead of queueing for the
    /// connection one commit each.
    pub(super) inbox: Vec<(String, i64, String)>,
    /// Inbox deliveries applied, to remove (by number), with the batches.
    pub(super) forget: Vec<i64>,
    pub(super) done: Done,
}

impl Job {
    fn rows(&self) -> usize {
        self.batches
            .iter()
            .map(|batch| {
                batch
                    .rows
                    .iter()
                    .map(|(_, rows, _)| rows.len())
                    .sum::<usize>()
                    + batch.deletions.iter().map(|d| d.ids.len()).sum::<usize>()
                    + batch.events.len()
            })
            .sum::<usize>()
            + self.inbox.len()
            + self.forget.len()
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stopped: bool,
}

/// The running writer; finishes what is queued, then stops (and joins its thread) when
/// dropped.
pub(super) struct Writer {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(db: Arc<Mutex<rusqlite::Connection>>) -> Writer {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let shared = queue.clone();
        let thread = std::thread::Builder::new()
            .name("sm-sqlite-writer".into())
            .spawn(move || run(&db, &shared))
            .expect("a thread for SQLite writes");
        Writer {
            queue,
            thread: Some(thread),
        }
    }

    /// Queues a job; its `done` is called on the writer's thread after the commit.
    pub(super) fn submit(&self, job: Job) {
        let (queue, wake) = &*self.queue;
        let mut queue = queue.lock();
        if queue.stopped {
            drop(queue);
            (job.done)(Err(StoreError::Database("the store is closing".into())));
            return;
        }
        queue.jobs.push_back(job);
        wake.notify_one();
    }

    /// Keeps one webhook delivery in the inbox, in the next round; whether it was new.
    pub(super) fn keep(
        &self,
        connection: &Connection,
        event_id: &str,
        at: i64,
        body: &str,
    ) -> Result<bool> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.submit(Job {
            connection: connection.clone(),
            batches: vec![Batch::default()],
            inbox: vec![(event_id.to_owned(), at, body.to_owned())],
            forget: Vec::new(),
            done: Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        });
        let counts = receiver
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Database("the SQLite writer stopped".into())))?;
        Ok(counts.first().is_some_and(|c| c.new_events > 0))
    }

    /// Removes applied deliveries from the inbox, in the next round.
    pub(super) fn forget(&self, connection: &Connection, seqs: &[i64]) -> Result<()> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.submit(Job {
            connection: connection.clone(),
            batches: Vec::new(),
            inbox: Vec::new(),
            forget: seqs.to_vec(),
            done: Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        });
        receiver
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Database("the SQLite writer stopped".into())))
            .map(|_| ())
    }

    /// Queues a job and waits for its outcome (for callers on threads of their own).
    pub(super) fn write(
        &self,
        connection: &Connection,
        batches: Vec<Batch>,
    ) -> Result<Vec<Counts>> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.submit(Job {
            connection: connection.clone(),
            batches,
            inbox: Vec::new(),
            forget: Vec::new(),
            done: Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        });
        receiver
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Database("the SQLite writer stopped".into())))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.0.lock().stopped = true;
        self.queue.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: &Mutex<rusqlite::Connection>, queue: &(Mutex<Queue>, Condvar)) {
    let (queue, wake) = queue;
    loop {
        let round = {
            let mut queue = queue.lock();
            while queue.jobs.is_empty() && !queue.stopped {
                wake.wait(&mut queue);
            }
            if queue.jobs.is_empty() {
                return;
            }
            let mut round = Vec::new();
            let mut rows = 0;
            while let Some(job) = queue.jobs.front() {
                let job_rows = job.rows();
                if !round.is_empty() && rows + job_rows > ROUND_MAX_ROWS {
                    break;
                }
                rows += job_rows;
                round.extend(queue.jobs.pop_front());
            }
            round
        };
        // A panic while writing must not stop the writer (every later caller would wait
        // forever): the round's callers are told, and the open transaction is rolled back.
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let conn = db.lock();
            match write_round(&conn, &round) {
                Ok(each) => each.into_iter().map(Ok).collect(),
                Err(error) if round.len() == 1 => vec![Err(error)],
                // One job's failure must not fail the others: each is written again alone,
                // and only the failing one hears of it.
                Err(_) => round
                    .iter()
                    .map(|job| {
                        write_round(&conn, std::slice::from_ref(job))
                            .map(|mut each| each.pop().unwrap_or_default())
                    })
                    .collect(),
            }
        }));
        let outcomes: Vec<Result<Vec<Counts>>> = written.unwrap_or_else(|_| {
            let conn = db.lock();
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            round
                .iter()
                .map(|_| {
                    Err(StoreError::Database(
                        "writing the batch failed unexpectedly (a bug: see the log); nothing of it was kept".into(),
                    ))
                })
                .collect()
        });
        for (job, outcome) in round.into_iter().zip(outcomes) {
            (job.done)(outcome);
        }
    }
}

/// Writes the jobs in one transaction; each job's counts, one per batch.
fn write_round(conn: &rusqlite::Connection, round: &[Job]) -> Result<Vec<Vec<Counts>>> {
    // IMMEDIATE: a transaction that reads first and then writes can be refused at once,
    // whatever the busy handler, when another connection checkpoints.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_error)?;
    let written: Result<Vec<Vec<Counts>>> = round
        .iter()
        .map(|job| {
            let mut kept = 0;
            if !job.inbox.is_empty() {
                let mut insert = conn
                    .prepare_cached("INSERT OR IGNORE INTO inbox (account_id, livemode, event_id, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .map_err(db_error)?;
                for (event_id, at, body) in &job.inbox {
                    kept += insert
                        .execute(rusqlite::params![
                            job.connection.account_id,
                            job.connection.livemode,
                            event_id,
                            at,
                            body
                        ])
                        .map_err(db_error)? as u64;
                }
            }
            if kept > 0 {
                let first_at = job.inbox.first().map_or(0, |(_, at, _)| *at);
                super::lease::stamp_inbox(conn, &job.connection, first_at)?;
            }
            if !job.forget.is_empty() {
                let mut delete = conn
                    .prepare_cached(
                        "DELETE FROM inbox WHERE account_id = ?1 AND livemode = ?2 AND seq = ?3",
                    )
                    .map_err(db_error)?;
                for seq in &job.forget {
                    delete
                        .execute(rusqlite::params![
                            job.connection.account_id,
                            job.connection.livemode,
                            seq
                        ])
                        .map_err(db_error)?;
                }
            }
            job.batches
                .iter()
                .enumerate()
                .map(|(n, batch)| {
                    let mut counts = write_batch(conn, &job.connection, batch)?;
                    if n == 0 {
                        counts.new_events += kept;
                    }
                    Ok(counts)
                })
                .collect()
        })
        .collect();
    let committed = written.and_then(|written| {
        conn.execute_batch("COMMIT").map_err(db_error)?;
        Ok(written)
    });
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    committed
}
