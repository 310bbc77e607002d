//! A run's live progress, kept where every surface can read it: each table's phase, objects
//! written and share of its history covered, recorded as the sync reports it (and passed on to
//! the caller's own display), and written to the run's row every few seconds while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::sync::Progress;

/// How often a running sync writes its progress to its run's row.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// One table's progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableProgress {
    /// `backfill`, `refresh`, `events`…; empty until it starts.
    pub phase: String,
    pub objects: u64,
    /// The share of its history covered (0 to 1).
    pub covered: f64,
    pub done: bool,
}

/// What a run's `progress` holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunProgress {
    /// The share of the run done (0 to 1): each table counts alike.
    pub covered: f64,
    /// Whole percent, for words like "Syncing 41%".
    pub percent: u8,
    pub tables: BTreeMap<String, TableProgress>,
}

/// Records what a sync reports, and passes it on.
pub struct RecordingProgress {
    inner: Arc<dyn Progress>,
    tables: Mutex<BTreeMap<String, TableProgress>>,
}

impl RecordingProgress {
    /// Progress over `tables` (all not started), shown by `inner` as well.
    pub fn new(inner: Arc<dyn Progress>, tables: impl IntoIterator<Item = String>) -> Self {
        RecordingProgress {
            inner,
            tables: Mutex::new(
                tables
                    .into_iter()
                    .map(|t| (t, TableProgress::default()))
                    .collect(),
            ),
        }
    }

    /// The progress so far. `finished`: the run ended, every table counts as done.
    pub fn snapshot(&self, finished: bool) -> RunProgress {
        let tables = self.tables.lock().clone();
        let shares: Vec<f64> = tables
            .values()
            .map(|t| {
                if t.done || finished {
                    1.0
                } else {
                    t.covered.clamp(0.0, 1.0)
                }
            })
            .collect();
        let covered = if shares.is_empty() {
            if finished { 1.0 } else { 0.0 }
        } else {
            shares.iter().sum::<f64>() / shares.len() as f64
        };
        RunProgress {
            covered,
            // Never 100 % before the end.
            percent: if finished {
                100
            } else {
                ((covered * 100.0).floor() as u8).min(99)
            },
            tables,
        }
    }

    fn with(&self, table: &str, change: impl FnOnce(&mut TableProgress)) {
        change(self.tables.lock().entry(table.to_owned()).or_default());
    }
}

impl Progress for RecordingProgress {
    fn begin(&self, table: &str, phase: &str) {
        self.with(table, |t| {
            t.phase = phase.to_owned();
            t.done = false;
        });
        self.inner.begin(table, phase);
    }

    fn advance(&self, table: &str, objects: u64, covered: f64) {
        self.with(table, |t| {
            t.objects += objects;
            t.covered = t.covered.max(covered);
        });
        self.inner.advance(table, objects, covered);
    }

    fn end(&self, table: &str) {
        self.with(table, |t| {
            t.done = true;
            t.covered = 1.0;
        });
        self.inner.end(table);
    }

    fn note(&self, message: &str) {
        self.inner.note(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_count_alike_and_the_end_is_100() {
        let progress = RecordingProgress::new(
            Arc::new(crate::sync::Quiet),
            ["customers".to_owned(), "charges".to_owned()],
        );
        assert_eq!(progress.snapshot(false).percent, 0);
        progress.begin("customers", "backfill");
        progress.advance("customers", 40, 0.5);
        assert_eq!(progress.snapshot(false).percent, 25);
        progress.end("customers");
        progress.end("charges");
        assert_eq!(progress.snapshot(false).percent, 99);
        assert_eq!(progress.snapshot(true).percent, 100);
        assert_eq!(progress.snapshot(true).tables["customers"].objects, 40);
    }
}
