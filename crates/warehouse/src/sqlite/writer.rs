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
            .sum()
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
            job.batches
                .iter()
                .map(|batch| write_batch(conn, &job.connection, batch))
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
