//! Copies the SQLite write-ahead log into the database file on a thread of its own, so that
//! writers never pay for it: the store's connections run with automatic checkpoints off.
//!
//! Once a second the log is copied without blocking writers (a passive checkpoint). While
//! writers keep writing it never catches up fully, and the log only starts over once it has:
//! past `RESTART_FRAMES` frames the checkpointer copies the rest with writers paused for a
//! moment (a restart checkpoint), and the next write starts the log over from its beginning.
//!
//! The log file is never shortened: on a file system mounted with `discard` (this project's
//! machine) a truncation waits for the disk to discard the freed blocks, 150–250 ms during
//! which no write could commit — the whole tail of webhook latency. Measured there: copying
//! every 100 ms wrote a fifth more in a backfill (a page written many times in between is
//! copied each time).

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How often the log is copied.
const PERIOD: Duration = Duration::from_secs(1);
/// Log frames (pages of 4 KiB, so 64 MiB) past which writers are paused for a moment so the
/// log starts over.
const RESTART_FRAMES: i64 = 16_384;

/// The running checkpointer; stops (and joins its thread) when dropped.
pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` with a connection of its own.
    pub(super) fn start(path: &Path) -> rusqlite::Result<Checkpointer> {
        let mut conn = rusqlite::Connection::open(path)?;
        super::wait_when_busy(&mut conn)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sm-sqlite-checkpoint".into())
            .spawn(move || run(conn, &signal))
            .expect("a thread for SQLite checkpoints");
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(conn: rusqlite::Connection, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    loop {
        {
            let mut stopped = stopped.lock();
            if !*stopped {
                wake.wait_for(&mut stopped, PERIOD);
            }
            if *stopped {
                return;
            }
        }
        // (frames in the log, frames copied): a failure here is retried next period; the
        // data is safe in the log meanwhile.
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match passive {
            Ok((frames, _)) if frames > RESTART_FRAMES => {
                if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                {
                    tracing::debug!(%error, "a restart checkpoint did not complete");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "a checkpoint did not complete"),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
