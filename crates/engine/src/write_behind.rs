//! Writes a backfill's batches behind the workers that fetch them: a worker hands its page's
//! batch (rows and the window's checkpoint) over and goes on to the next page, while a writer
//! commits what has queued up meanwhile, many batches per transaction.
//!
//! Batches of one resource go to one lane and are committed in the order they were handed
//! over, so a checkpoint never lands before the rows of an earlier page of its window (a split
//! window keeps its resource's lane). The store says how many lanes it can write side by side.
//! Whatever is queued when the process dies is fetched again from the last checkpoint.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sm_warehouse::Batch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::EngineError;
use crate::sync::Run;

/// Rows written per transaction at most (the batches of a few seconds of fetching).
const GROUP_ROWS: usize = 5_000;
/// Batches queued per lane before a worker waits for the writer.
const LANE_DEPTH: usize = 32;

/// A batch handed over, with what its commit means for progress.
pub(crate) struct Handed {
    pub(crate) batch: Batch,
    pub(crate) table: &'static str,
    /// Objects of `table` in it, and whether it finishes its window.
    pub(crate) objects: u64,
    pub(crate) finishes_window: bool,
}

/// The lanes of one phase of a backfill.
pub(crate) struct WriteBehind {
    lanes: Vec<mpsc::Sender<Handed>>,
    writers: Vec<JoinHandle<()>>,
}

impl WriteBehind {
    /// Starts the writers for `run`.
    pub(crate) fn start(run: &Arc<Run>) -> WriteBehind {
        let count = run.parallel_writes().max(1);
        let mut lanes = Vec::with_capacity(count);
        let mut writers = Vec::with_capacity(count);
        for _ in 0..count {
            let (sender, receiver) = mpsc::channel(LANE_DEPTH);
            lanes.push(sender);
            writers.push(tokio::spawn(write(run.clone(), receiver)));
        }
        WriteBehind { lanes, writers }
    }

    /// Queues a batch (waiting while its lane is full).
    pub(crate) async fn hand_over(&self, handed: Handed) -> Result<(), EngineError> {
        let lane = lane_of(handed.table, self.lanes.len());
        self.lanes[lane].send(handed).await.map_err(|_| {
            EngineError::new(
                crate::ErrorCode::Internal,
                "the backfill's writer stopped before the backfill did",
            )
        })
    }

    /// Waits until everything handed over is committed (or the run failed).
    pub(crate) async fn finish(self) {
        drop(self.lanes);
        for writer in self.writers {
            let _ = writer.await;
        }
    }
}

/// A resource's lane: the same for every window of it.
fn lane_of(table: &str, lanes: usize) -> usize {
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % lanes as u64) as usize
}

/// One lane's writer: commits what has queued, in order, until the lane closes. After a failed
/// commit it drops the rest (the run has failed; its checkpoints stand where they were).
async fn write(run: Arc<Run>, mut receiver: mpsc::Receiver<Handed>) {
    while let Some(first) = receiver.recv().await {
        let mut rows = rows_of(&first.batch);
        let mut group = vec![first];
        while rows < GROUP_ROWS {
            match receiver.try_recv() {
                Ok(next) => {
                    rows += rows_of(&next.batch);
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        if run.stopped() {
            continue;
        }
        let (batches, done): (Vec<Batch>, Vec<_>) = group
            .into_iter()
            .map(|h| (h.batch, (h.table, h.objects, h.finishes_window)))
            .unzip();
        match run.apply_all(batches).await {
            Ok(()) => {
                for (table, objects, finishes) in done {
                    run.objects.fetch_add(objects, Ordering::Relaxed);
                    run.progress
                        .advance(table, objects, if finishes { 1.0 } else { 0.0 });
                }
            }
            Err(error) => run.fail(done[0].0, error),
        }
    }
}

fn rows_of(batch: &Batch) -> usize {
    batch
        .rows
        .iter()
        .map(|(_, rows, _)| rows.len())
        .sum::<usize>()
        + 1
}
