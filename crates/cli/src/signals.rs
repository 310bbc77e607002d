//! Waiting for the user to stop a command: Ctrl-C (SIGINT) or SIGTERM, one place for every
//! command that runs until stopped or must stop cleanly.

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    /// The exit status a shell expects from a process stopped by this signal (128 + number).
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
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
