//! One runner per SQLite mirror: `sync` and `serve` hold an exclusive lock on `<database>.lock`
//! while they run, so a second one either waits or is told who holds the mirror, instead of
//! running a second backfill beside the first (each spending the whole rate budget). The lock is
//! the operating system's (released when the process ends, however it ends); the file says who
//! holds it. A Postgres mirror is shared by design (several processes: the scale-out work).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};

use crate::error::{EngineError, ErrorCode};

/// Held while a process runs the mirror; dropping it releases the mirror.
#[derive(Debug)]
pub struct RunnerLock {
    _file: File,
}

/// Takes the mirror for `what` (e.g. "stripe-mirror serve"). With `wait`, waits for the holder
/// to finish; otherwise a held mirror is an error (exit code 10) that names the holder. `None`
/// for Postgres.
pub async fn acquire(
    database: &str,
    what: &str,
    wait: bool,
) -> Result<Option<RunnerLock>, EngineError> {
    if database.starts_with("postgres") {
        return Ok(None);
    }
    let path = format!("{database}.lock");
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(|e| {
        EngineError::new(
            ErrorCode::Database,
            format!("could not open the mirror's lock file {path}: {e}"),
        )
    })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().to_owned();
            if !wait {
                let serve = holder.contains("serve");
                return Err(EngineError::new(
                    ErrorCode::Busy,
                    format!("the mirror {database} is in use by {holder}"),
                )
                .hint(if serve {
                    "serve syncs every account every --interval by itself: leave it to that, or stop serve first"
                } else {
                    "wait for it to finish, or pass --wait to start when it has"
                }));
            }
            tracing::warn!(%holder, "waiting for the mirror");
            file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                .await
                .map_err(|e| EngineError::new(ErrorCode::Internal, e.to_string()))?
                .map_err(|e| {
                    EngineError::new(ErrorCode::Database, format!("could not lock {path}: {e}"))
                })?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(EngineError::new(
                ErrorCode::Database,
                format!("could not lock {path}: {e}"),
            ));
        }
    }
    // Who holds it, for the next one to read.
    let note = format!(
        "process {} ({what}, since {})",
        std::process::id(),
        sm_stripe::http_date::format(crate::now())
    );
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(note.as_bytes()));
    Ok(Some(RunnerLock { _file: file }))
}
