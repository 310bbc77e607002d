//! Waiting for the user to stop a command: Ctrl-C (SIGINT) or SIGTERM, one place for every
//! command that runs until stopped or must stop cleanly.

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    /// The error code of a run stopped by this signal (its exit status is the one a shell
    /// expects: 128 + the signal's number).
    pub fn code(self) -> sm_engine::ErrorCode {
        match self {
            Stop::Interrupt => sm_engine::ErrorCode::Interrupted,
            Stop::Terminate => sm_engine::ErrorCode::Terminated,
        }
    }
}

/// Resolves when Ctrl-C or SIGTERM arrives.
pub async fn stop_requested() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Stop::Interrupt,
            _ = term.recv() => Stop::Terminate,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Stop::Interrupt
    }
}
